#!/usr/bin/env bash
#
# test/bench/cep_bench.sh: events/s through the fraud pattern over 100k keys,
# next to a window pipeline's rate over the same topic in the same run.
#
#   bash test/bench/cep_bench.sh          (CEP_BENCH_EVENTS=1000000 CEP_BENCH_KEYS=100000)
#
# Both pipelines read the same topic from the beginning, one after the
# other (each gets the whole machine).  A rate is events / seconds from
# start until the pipeline's watermark passed the final event, i.e. until
# every event went through the operator and every match / window was
# emitted (end to end, checkpoints included).  Also each worker's CPU
# seconds over that time (user + system from /proc/<pid>/stat, every thread
# of the process, RocksDB's included), which a busy machine disturbs less.
# SF_BENCH_PERF=FILE writes a perf profile of each worker (3 s from 1 s
# after its start) to FILE.fraud and FILE.per_minute.  Also each worker's
# peak RSS (VmHWM) when its pipeline finished.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

events=${CEP_BENCH_EVENTS:-1000000}
keys=${CEP_BENCH_KEYS:-100000}
parts=4

sf_test_setup cep_bench
work=$SF_TEST_DIR

addr=$(sf_broker_start "$work/broker" "bench_cep:$parts")
port=$(sf_free_port)
# CEP_BENCH_PG_CONF: extra postgresql.conf lines, ';'-separated (e.g. a small
# streamflink.state_cache_memory with many keys, to show the worker's RSS
# stays bounded).
conf=()
IFS=';' read -r -a conf <<<"${CEP_BENCH_PG_CONF:-}"
sf_bench_db "$work/pg" "$port" ${conf[@]+"${conf[@]}"}
q() { sf_psql "$work/pg" "$port" -d bench -Atq "$@"; }

# Events: account 7i mod keys; every 13th a withdrawal over 5000, the rest
# payments of 0..149 (awk rand, fixed seed: two thirds are small); 1 ms
# apart, so a key's ten events span 15 minutes (about 5000 keys match).
# Then the final event per partition.
echo "producing $events events over $keys keys"
awk -v n="$events" -v keys="$keys" -v parts="$parts" 'BEGIN {
    srand(42);
    base = 1704067200;
    for (i = 0; i < n; i++) {
        acct = (i * 7) % keys;
        if (i % 13 == 0) { amt = 6000 + i % 100; kind = "WITHDRAWAL" }
        else { amt = int(rand() * 150); kind = "PAYMENT" }
        t = base + int(i / 1000);
        printf "%d\t{\"account\":%d,\"amount\":%d,\"kind\":\"%s\",\"ts\":\"%s.%03dZ\"}\n", i % parts, acct, amt, kind, strftime("%Y-%m-%dT%H:%M:%S", t, 1), i % 1000;
    }
    for (p = 0; p < parts; p++)
        printf "%d\t{\"account\":-1,\"amount\":0,\"kind\":\"END\",\"ts\":\"2031-01-01T00:00:00Z\"}\n", p;
}' | test/produce "$addr" bench_cep --partitions "$parts"

q <<SQL
SELECT streamflink.create_source('txns', '$addr', 'bench_cep', 'json',
	columns => 'account int, amount numeric, kind text, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('fraud', source => 'txns', key => 'account',
	pattern => 'small{5,} large',
	define => \$\$ small AS amount < 100, large AS amount > 5000 AND kind = 'WITHDRAWAL' \$\$,
	within => '1 hour', sink => 'fraud_alerts', skip => 'skip_past_last_event');
SELECT streamflink.create_window_pipeline('per_minute', 'txns', 'account', 'tumble',
	'count(*) AS n, sum(amount) AS total', 'per_minute_out', size => '1 minute');
SQL

tck=$(getconf CLK_TCK)
cpu_of() {   # pid -> user + system CPU seconds of the process
    awk -v tck="$tck" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / tck }' "/proc/$1/stat"
}

run() {   # name -> prints events/s; the worker's CPU seconds in $work/cpu_<name>
    local t0 t1 pid
    t0=$(date +%s.%N)
    q -c "SELECT streamflink.start('$1')" >/dev/null
    if [ -n "${SF_BENCH_PERF:-}" ]; then
        # Profile the worker for 3 s, from 1 s after its start (perf record
        # -g; report by DSO and symbol to FILE.<pipeline>).
        sleep 1
        pid=$(q -c "SELECT pid FROM streamflink.pipelines WHERE name = '$1'")
        perf record -q -F 999 -g -p "$pid" -o "$work/perf-$1.data" -- sleep 3 2>/dev/null || true
        for sort in dso sym; do
            perf report -i "$work/perf-$1.data" --comm postgres --percentage relative \
                --no-children --sort "$sort" --percent-limit 0.7 --stdio -g none 2>/dev/null || true
        done >"$SF_BENCH_PERF.$1"
    fi
    while [ "$(q -c "SELECT coalesce(watermark >= '2030-01-01', false) FROM streamflink.pipelines WHERE name = '$1'")" != t ]; do
        sleep 0.2
    done
    t1=$(date +%s.%N)
    pid=$(q -c "SELECT pid FROM streamflink.pipelines WHERE name = '$1'")
    cpu_of "$pid" >"$work/cpu_$1"
    # the main thread's share (the rest: librdkafka's and RocksDB's threads)
    awk -v tck="$tck" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / tck }' "/proc/$pid/task/$pid/stat" >"$work/maincpu_$1"
    # the worker's peak resident memory (VmHWM), in MB
    awk '$1 == "VmHWM:" { printf "%.0f", $2 / 1024 }' "/proc/$pid/status" >"$work/rss_$1"
    q -c "SELECT streamflink.stop('$1')" >/dev/null
    while [ "$(q -c "SELECT status FROM streamflink.pipelines WHERE name = '$1'")" != stopped ]; do
        sleep 0.2
    done
    awk -v n="$events" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

cep_rate=$(run fraud)
win_rate=$(run per_minute)
matches=$(q -c "SELECT count(*) FROM fraud_alerts")
windows=$(q -c "SELECT count(*) FROM per_minute_out")
echo "fraud pattern (small{5,} large, 1 hour, $keys keys): $cep_rate events/s, $matches matches"
echo "window pipeline (tumble 1 minute, count+sum):       $win_rate events/s, $windows windows"
echo "fraud pattern worker CPU: $(cat "$work/cpu_fraud") s"
echo "window pipeline worker CPU: $(cat "$work/cpu_per_minute") s"
echo "fraud pattern worker main thread CPU: $(cat "$work/maincpu_fraud") s"
echo "window pipeline worker main thread CPU: $(cat "$work/maincpu_per_minute") s"
echo "fraud pattern worker peak RSS: $(cat "$work/rss_fraud") MB"
echo "window pipeline worker peak RSS: $(cat "$work/rss_per_minute") MB"
awk -v c="$cep_rate" -v w="$win_rate" 'BEGIN { printf "ratio pattern/window: %.2f\n", c / w }'
