#!/usr/bin/env bash
#
# test/bench/state_profiles.sh: a tumbling window pipeline under each state
# profile (default, write_heavy, read_heavy, large_state), on a write-heavy
# workload (many keys: most events open a window of their own) and a
# read-heavy one (few keys, each window updated many times), with what
# streamflink.state_metrics shows (keys and memtable bytes: the largest
# sampled while the pipeline ran; the rest at its end) and the worker's
# peak RSS.
#
#   bash test/bench/state_profiles.sh   (PROFILE_BENCH_EVENTS=500000
#                                        PROFILE_BENCH_MANY_KEYS=100000
#                                        PROFILE_BENCH_FEW_KEYS=1000)
#
# A rate is events / seconds from start until the pipeline's watermark
# passed the final event (every window fired, checkpoints included), and
# vs_def its ratio to the default profile's rate on the same workload in
# the same run.  RocksDB's statistics are on (streamflink.state_statistics:
# the block cache hit ratio of every thread, compactions' reads included,
# needs them; they cost every profile alike); a metric RocksDB did not give is
# '-'.  Not a timed test: machines are noisy, compare the profiles of one
# run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

events=${PROFILE_BENCH_EVENTS:-500000}
many=${PROFILE_BENCH_MANY_KEYS:-100000}
few=${PROFILE_BENCH_FEW_KEYS:-1000}
profiles=${PROFILE_BENCH_PROFILES:-default write_heavy read_heavy large_state}
parts=4

sf_test_setup state_profiles
work=$SF_TEST_DIR

addr=$(sf_broker_start "$work/broker" "bench_many:$parts" "bench_few:$parts")
port=$(sf_free_port)
sf_bench_db "$work/pg" "$port" "streamflink.state_statistics = on"
q() { sf_psql "$work/pg" "$port" -d bench -Atq "$@"; }

produce() {   # topic keys
    awk -v n="$events" -v keys="$2" -v parts="$parts" 'BEGIN {
        base = 1704067200;
        for (i = 0; i < n; i++) {
            t = base + int(i / 1000);
            printf "%d\t{\"k\":%d,\"v\":%d,\"ts\":\"%s.%03dZ\"}\n", i % parts, (i * 7) % keys, i % 1000,
                strftime("%Y-%m-%dT%H:%M:%S", t, 1), i % 1000;
        }
        for (p = 0; p < parts; p++)
            printf "%d\t{\"k\":-1,\"v\":0,\"ts\":\"2031-01-01T00:00:00Z\"}\n", p;
    }' | test/produce "$addr" "$1" --partitions "$parts" >/dev/null
}
echo "producing $events events over $many keys and over $few keys"
produce bench_many "$many"
produce bench_few "$few"

q <<SQL
SELECT streamflink.create_source('many', '$addr', 'bench_many', 'json',
	columns => 'k int, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_source('few', '$addr', 'bench_few', 'json',
	columns => 'k int, v int, ts timestamptz', event_time => 'ts');
SQL

run() {   # pipeline -> "rate rss_kb metrics..."
    local t0 t1 pid rss peak=0 metrics sample maxkeys=0 maxmem=0 k m
    t0=$(date +%s.%N)
    q -c "SELECT streamflink.start('$1')" >/dev/null
    while [ "$(q -c "SELECT coalesce(watermark >= '2030-01-01', false) FROM streamflink.pipelines WHERE name = '$1'")" != t ]; do
        # a failed query (the server gone) must not keep this loop going
        sf_pg_running "$work/pg" || { echo "state_profiles: the server is gone" >&2; exit 1; }
        pid=$(q -c "SELECT pid FROM streamflink.pipelines WHERE name = '$1'")
        if [ -n "$pid" ] && rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null); then
            [ "${rss:-0}" -gt "$peak" ] && peak=$rss
        fi
        # the state's peak: keys and memtables while windows are open
        sample=$(q -F ' ' -c "SELECT estimated_keys, memtable_bytes FROM streamflink.state_metrics WHERE pipeline = '$1'")
        if [ -n "$sample" ]; then
            read -r k m <<<"$sample"
            [ "${k:-0}" -gt "$maxkeys" ] && maxkeys=$k
            [ "${m:-0}" -gt "$maxmem" ] && maxmem=$m
        fi
        sleep 0.2
    done
    t1=$(date +%s.%N)
    sleep 1.5   # one more metrics publication (about once a second)
    # one word per metric, '-' for NULL (a blank would shift the columns)
    metrics=$(q -F ' ' -P null=- -c "SELECT $maxkeys, live_sst_bytes, $maxmem, block_cache_capacity,
        block_cache_usage, round(block_cache_hit_ratio::numeric, 3), flushes, compactions,
        stall_micros FROM streamflink.state_metrics WHERE pipeline = '$1'")
    q -c "SELECT streamflink.stop('$1')" >/dev/null
    while [ "$(q -c "SELECT status FROM streamflink.pipelines WHERE name = '$1'")" != stopped ]; do
        sf_pg_running "$work/pg" || { echo "state_profiles: the server is gone" >&2; exit 1; }
        sleep 0.2
    done
    awk -v n="$events" -v a="$t0" -v b="$t1" -v r="$peak" -v m="$metrics" \
        'BEGIN { printf "%.0f %d %s", n / (b - a), r / 1024, m }'
}

printf '%-6s %-12s %10s %6s %8s %10s %10s %10s %9s %9s %6s %7s %6s %8s\n' workload profile events/s vs_def \
    rss_MB max_keys sst_bytes max_memtbl cache_cap cache_use hit flushes compac stall_us
for wl in many few; do
    base=
    for p in $profiles; do
        q -c "SELECT streamflink.create_window_pipeline('${wl}_$p', '$wl', 'k', 'tumble',
            'count(*) AS n, sum(v) AS total', '${wl}_${p}_out', size => '1 minute',
            state_profile => '$p')" >/dev/null
        read -r rate rss keys sst mem cap use hit fl co st <<<"$(run "${wl}_$p")"
        [ "$p" = default ] && base=$rate
        vs=$(awk -v r="$rate" -v b="${base:-0}" 'BEGIN { if (b > 0) printf "%.2f", r / b; else print "-" }')
        printf '%-6s %-12s %10s %6s %8s %10s %10s %10s %9s %9s %6s %7s %6s %8s\n' "$wl" "$p" "$rate" "$vs" \
            "$rss" "$keys" "$sst" "$mem" "$cap" "$use" "$hit" "$fl" "$co" "$st"
        q -c "SELECT streamflink.drop_pipeline('${wl}_$p', drop_sink => true)" >/dev/null
    done
done
echo "state_profiles: $events events per workload; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
