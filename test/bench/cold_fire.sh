#!/usr/bin/env bash
#
# test/bench/cold_fire.sh: firing windows whose state is in RocksDB only,
# as after a restart or a restore (the worker's cache empty).
#
#   bash test/bench/cold_fire.sh
#   COLD_BENCH_KEYS="100000 1000000"      (the levels: keys, one window each)
#
# Per level: a tumbling (1 minute) count+sum pipeline takes one event per
# key, all in the first minute, so nothing fires; it is stopped (a last
# checkpoint writes every window to RocksDB) and started again, and then
# one event in 2031 makes every window due at once.  Printed: the worker's
# CPU seconds and the wall time from that event until the watermark passed
# it (every window fired and its row written), and the windows per CPU
# second.  The due windows' state is read in batches of 1024
# (kstate_prefetch); the same script on a build without it is the
# comparison (see the README's Performance).  Not a timed test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

levels=${COLD_BENCH_KEYS:-100000 1000000}
parts=8

sf_test_setup cold_fire
work=$SF_TEST_DIR
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
topics=()
for k in $levels; do
    topics+=("cold_$k:$parts")
done
addr=$(sf_broker_start "$work/broker" "${topics[@]}")
port=$(sf_free_port)
sf_bench_db "$work/pg" "$port"
q() { sf_psql "$work/pg" "$port" -d bench -Atq "$@"; }

printf '%9s %8s %9s %12s\n' keys fire_s cpu_s windows/cpu_s
for k in $levels; do
    # one event per key ((7 i) mod k, k not a multiple of 7), all before 00:00:59
    sf_bench_keyed_events "$k" "$k" "$parts" $(( 59000000 / k )) |
        test/produce "$addr" "cold_$k" --partitions "$parts" 2>/dev/null
    sf_topic_intact "$addr" "cold_$k" "$parts"
    q -c "SELECT streamflink.create_source('c$k', '$addr', 'cold_$k', 'json',
        columns => 'k int, v int, ts timestamptz', event_time => 'ts')" >/dev/null
    q -c "SELECT streamflink.create_window_pipeline('cold_$k', 'c$k', 'k', 'tumble',
        'count(*) AS n, sum(v) AS total', sink => 'cold_out_$k', size => '1 minute')" >/dev/null
    q -c "SELECT streamflink.start('cold_$k')" >/dev/null
    sf_pipeline_wait "$work/pg" "$port" bench \
        "SELECT events = $k FROM streamflink.pipelines WHERE name = 'cold_$k'"
    sf_pipeline_stop "$work/pg" "$port" bench "cold_$k"
    [ "$(q -c "SELECT count(*) FROM cold_out_$k")" = 0 ] || _sf_die "windows fired before the restart"

    q -c "SELECT streamflink.start('cold_$k')" >/dev/null
    sf_pipeline_wait "$work/pg" "$port" bench \
        "SELECT status = 'running' AND pid IS NOT NULL FROM streamflink.pipelines WHERE name = 'cold_$k'"
    pid=$(q -c "SELECT pid FROM streamflink.pipelines WHERE name = 'cold_$k'")
    sleep 1
    c0=$(sf_cpu_seconds "$pid")
    t0=$(date +%s.%N)
    sf_bench_keyed_events 0 1 "$parts" 0 -1 | test/produce "$addr" "cold_$k" --partitions "$parts" 2>/dev/null
    sf_pipeline_wait "$work/pg" "$port" bench \
        "SELECT watermark >= '2030-01-01' FROM streamflink.pipelines WHERE name = 'cold_$k'"
    t1=$(date +%s.%N)
    c1=$(sf_cpu_seconds "$pid")
    sf_pipeline_stop "$work/pg" "$port" bench "cold_$k"
    rows=$(q -c "SELECT count(*) FROM cold_out_$k")
    [ "$rows" = "$k" ] || _sf_die "cold_$k wrote $rows windows, not $k"
    awk -v k="$k" -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" \
        'BEGIN { printf "%9d %8.2f %9.2f %12.0f\n", k, b - a, c1 - c0, k / (c1 - c0) }'
    q -c "SELECT streamflink.drop_pipeline('cold_$k', drop_sink => true)" >/dev/null
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
