#!/usr/bin/env bash
#
# test/bench/state_scaling.sh: how the state backend scales with the number
# of keys, and whether checkpoints stay flat as state grows.
#
#   bash test/bench/state_scaling.sh              (both modes)
#   SCALE_BENCH_MODE=keys|flat                    (one of them)
#
# Mode "keys": the tumbling (1 minute) and hop (1 minute, sliding 20 s)
# count+sum pipelines over 1k, 100k and 1M keys (SCALE_BENCH_10M=1 adds
# 10M keys: 15M events, on 32 partitions for every level, see below;
# producing them took 84 s and the test broker 133 MB, the run itself is
# estimated in the README's Performance; SCALE_BENCH_KEYS="1000 100000" picks
# other levels, the first being the baseline; SCALE_BENCH_WINDOWS="tumble"
# one kind of window only; SCALE_BENCH_SINK=kafka writes the results to a
# Kafka topic of the test broker instead of a table, which leaves the
# Postgres table's cost of a row per window (an index insert into a unique
# index, a heap row, its WAL) out of the comparison).  A window of event time holds
# max(keys, 60000) events, so every key has a window open at once (1k keys:
# 60 events per key and window, as in the issue's measurement; more keys: one
# event per key and window), and a level has max(SCALE_BENCH_EVENTS
# (default 1M), 1.5 windows) events.  SCALE_BENCH_ONE_PER_WINDOW=1 gives
# every level one event per key and window (a window of event time holds
# as many events as there are keys): each event then opens a window, has
# its timer fire and writes a sink row at every level, and the levels
# differ by the number of keys (the state's size) alone.
# SCALE_BENCH_WINDOW_EVENTS=N: a window of event time holds N events at
# every level instead (N / keys events per key and window).  The issue's
# own measurement is SCALE_BENCH_EVENTS=4000000
# SCALE_BENCH_WINDOW_EVENTS=400000: 4M events over ten windows, 400 events
# per key and window at 1k keys, 4 at 100k (1M windows).
# SCALE_BENCH_PROFILE: the pipelines' state_profile (default: the
# server's); SCALE_BENCH_SOURCE_OPTIONS: the sources' librdkafka options
# (e.g. '{queued.max.messages.kbytes=4096}'); SCALE_BENCH_SETTING: more
# lines of the server's configuration, separated by ';' (e.g.
# 'streamflink.state_memory = 4GB;streamflink.state_cache_memory = 256MB').
# Per pipeline and level:
# events/s (from start until the watermark passed the last event: every
# window fired, checkpoints included) and the same from the first processed
# event on, with the start-up before it (see run_level), the worker's peak
# RSS (VmHWM) and peak private memory (RssAnon), the largest snapshot
# (state_bytes), the median checkpoint duration with its sync and async
# parts, the median new bytes per checkpoint, the worker's CPU seconds and
# microseconds per event, and the ratios to the first level (cpu/base: the
# first level's CPU per event over this one's, a rate ratio that other work
# on the machine disturbs less than rates).  Targets (issue 9): 100k keys
# >= 0.5 of the 1k rate, 10M keys >= 0.25, checkpoint duration at 10M
# within 2x of 1k, RSS flat.
#
# Mode "flat": a tumbling window of a day that never fires, fed in
# SCALE_FLAT_BATCHES (30) batches of SCALE_FLAT_BATCH (100000) events, each
# batch half new keys (the state grows by a constant step) and half updates
# of earlier keys, each batch produced once the previous one is
# checkpointed.  Per batch: the total state (state_bytes), and what its
# checkpoint(s) cost: sync and async time, new bytes.  Flat means those do
# not grow with the total state; the last lines compare the first and last
# thirds of the batches.  SCALE_FLAT_OPTIONS: the pipeline's state_options
# (e.g. 'max_bytes_for_level_base=4MB;target_file_size_base=1MB': RocksDB's
# level 1 small against the state, see the README's Performance).
#
# Levels run one after the other, each on the whole machine; a rate is
# noise on a shared machine, the ratios of one run are the result.  Not a
# timed test.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

mode=${SCALE_BENCH_MODE:-keys flat}
base_events=${SCALE_BENCH_EVENTS:-1000000}
levels=${SCALE_BENCH_KEYS:-1000 100000 1000000}
if [ "${SCALE_BENCH_10M:-0}" = 1 ]; then
    levels="$levels 10000000"
fi
windows=${SCALE_BENCH_WINDOWS:-tumble hop}
sink_kind=${SCALE_BENCH_SINK:-table}
one_per_window=${SCALE_BENCH_ONE_PER_WINDOW:-0}
window_events=${SCALE_BENCH_WINDOW_EVENTS:-}
source_options=${SCALE_BENCH_SOURCE_OPTIONS:-"{}"}
profile=NULL
if [ -n "${SCALE_BENCH_PROFILE:-}" ]; then
    profile="'$SCALE_BENCH_PROFILE'"
fi
flat_options=${SCALE_FLAT_OPTIONS:-}
batches=${SCALE_FLAT_BATCHES:-30}
batch=${SCALE_FLAT_BATCH:-100000}
# The test broker keeps 5 MiB a partition (test/mock_broker.c) and an event
# takes about 7.3 bytes there (zstd): 8 partitions hold 5M events, the 10M
# level's 15M need 32 (measured: 8 lost 1.15M of partition 0's events).
# Every level runs with the same number, so that the levels compare.
if [ "${SCALE_BENCH_10M:-0}" = 1 ]; then
    parts=${SCALE_BENCH_PARTITIONS:-32}
else
    parts=${SCALE_BENCH_PARTITIONS:-8}
fi

sf_test_setup state_scaling
work=$SF_TEST_DIR

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
topics=()
for k in $levels; do
    topics+=("scale_$k:$parts")
    for kind in $windows; do
        topics+=("scale_out_${kind}_$k:1")
    done
done
addr=$(sf_broker_start "$work/broker" "${topics[@]}" "scale_flat:$parts")
port=$(sf_free_port)
# every checkpoint row kept: the figures are over all of them
settings=()
IFS=';' read -r -a settings <<<"${SCALE_BENCH_SETTING:-}"
sf_bench_db "$work/pg" "$port" "streamflink.checkpoint_history = 1000000" \
    ${settings[@]+"${settings[@]}"}
q() { sf_psql "$work/pg" "$port" -d bench -Atq "$@"; }

# The checkpoints of pipeline $1: count, median duration, sync, async (ms),
# median new bytes, largest snapshot.
checkpoint_figures() {
    q -F ' ' -c "SELECT count(*),
        round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY duration)) * 1000, 1),
        round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY sync_duration)) * 1000, 1),
        round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY async_duration)) * 1000, 1),
        round(percentile_cont(0.5) WITHIN GROUP (ORDER BY new_state_bytes)),
        max(state_bytes), sum(events)
        FROM streamflink.checkpoints WHERE pipeline = '$1'"
}

# --- mode keys -------------------------------------------------------------

# Runs pipeline $1 over its topic's $2 events: "rate run_rate startup_s
# hwm_mb priv_mb figures...".  Polls streamflink.pipelines every 0.2 s
# (as sf_pipeline_wait) and samples the worker's RssAnon each time.
#   rate      events / (watermark past the last event - start())
#   run_rate  the events counted after the first poll that saw any
#             processed, over the time from that poll to the end: the
#             worker's start-up (fork, catalog, RocksDB open, the consumer
#             joining its partitions) left out.  Both ends are seen through
#             the same 0.2 s progress reports, so their delays cancel out;
#             "-" if less than a second of processing was seen.
#   startup_s start() to that first poll
#   hwm_mb    VmHWM: the peak RSS, which also counts every page of
#             shared_buffers the worker touched (the sink's inserts: 1M
#             rows at 100k keys, 17k at 1k)
#   priv_mb   the peak of RssAnon over the samples: the worker's private
#             memory (heap, RocksDB, librdkafka's queues), without
#             shared_buffers and mapped files
run_level() {
    local name=$1 n=$2 t0 t1 tf="" ef=0 pid=0 p ev done=f now anon peak=0 hwm cpu figures i
    t0=$(date +%s.%N)
    q -c "SELECT streamflink.start('$name')" >/dev/null
    for ((i = 0; i < 36000; i++)); do
        read -r p ev done <<<"$(q -F ' ' -c "SELECT coalesce(pid, 0), coalesce(events, 0),
            coalesce(watermark >= '2030-01-01', false) FROM streamflink.pipelines WHERE name = '$name'")"
        now=$(date +%s.%N)
        if [ "$p" != 0 ]; then
            pid=$p
            anon=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
            if [ "${anon:-0}" -gt "$peak" ]; then
                peak=$anon
            fi
        fi
        if [ -z "$tf" ] && [ "$ev" -gt 0 ]; then
            tf=$now
            ef=$ev
        fi
        [ "$done" = t ] && break
        sleep 0.2
    done
    [ "$done" = t ] || _sf_die "pipeline $name did not finish"
    t1=$now
    hwm=$(sf_proc_peak_rss_mb "$pid")
    cpu=$(sf_cpu_seconds "$pid")
    sf_pipeline_stop "$work/pg" "$port" bench "$name"
    figures=$(checkpoint_figures "$name")
    awk -v n="$n" -v a="$t0" -v b="$t1" -v f="${tf:-$t1}" -v ef="$ef" -v h="$hwm" -v pk="$peak" -v fig="$figures" -v cpu="$cpu" \
        'BEGIN { run = (b - f >= 1.0) ? sprintf("%.0f", (n - ef) / (b - f)) : "-";
                 printf "%.0f %s %.2f %d %.0f %s %s", n / (b - a), run, f - a, h, pk / 1024, fig, cpu }'
}

keys_mode() {
    local k per us n name kind rate run startup hwm priv r nck dur sync async newb stb ev cpu usev
    declare -A rates privs durs usevs
    echo "levels (keys): $levels; partitions: $parts"
    for k in $levels; do
        if [ -n "$window_events" ]; then
            per=$window_events
        elif [ "$one_per_window" = 1 ]; then
            per=$k
        else
            per=$(( k > 60000 ? k : 60000 ))
        fi
        us=$(( 60000000 / per ))
        n=$(( base_events > per * 3 / 2 ? base_events : per * 3 / 2 ))
        echo "producing $n events over $k keys ($per a window, one every $us us of event time)"
        { sf_bench_keyed_events "$n" "$k" "$parts" "$us"; sf_bench_keyed_events 0 1 "$parts" 0 -1; } |
            test/produce "$addr" "scale_$k" --partitions "$parts" 2>/dev/null
        # the test broker drops the oldest data beyond 5 MiB a partition
        sf_topic_intact "$addr" "scale_$k" "$parts"
        echo "$n" >"$work/n_$k"
        q -c "SELECT streamflink.create_source('s$k', '$addr', 'scale_$k', 'json',
            columns => 'k int, v int, ts timestamptz', event_time => 'ts',
            options => '$source_options')" >/dev/null
    done

    printf '\n%-6s %8s %9s %9s %7s %6s %7s %5s %10s %6s %7s %8s %8s %9s %7s %8s %5s %7s %6s %8s\n' window keys \
        events/s run_ev/s start_s hwm_MB priv_MB ckpts state_B ck_ms sync_ms async_ms new_B \
        rate/base ck/base priv/base ok cpu_s us/ev cpu/base
    for kind in $windows; do
        for k in $levels; do
            name="${kind}_$k"
            sink="'${name}_out'"
            if [ "$sink_kind" = kafka ]; then
                sink="NULL, sink_topic => 'scale_out_$name', sink_brokers => '$addr'"
            fi
            if [ "$kind" = tumble ]; then
                q -c "SELECT streamflink.create_window_pipeline('$name', 's$k', 'k', 'tumble',
                    'count(*) AS n, sum(v) AS total', sink => $sink, size => '1 minute',
                    state_profile => $profile)" >/dev/null
            else
                q -c "SELECT streamflink.create_window_pipeline('$name', 's$k', 'k', 'hop',
                    'count(*) AS n, sum(v) AS total', sink => $sink, size => '1 minute',
                    slide => '20 seconds', state_profile => $profile)" >/dev/null
            fi
            n=$(cat "$work/n_$k")
            read -r rate run startup hwm priv nck dur sync async newb stb ev cpu <<<"$(run_level "$name" "$n")"
            q -c "SELECT streamflink.drop_pipeline('$name', drop_sink => true)" >/dev/null
            # the baseline's rate: from the first event if measured, else from start()
            [ "$run" = - ] && r=$rate || r=$run
            usev=$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.2f", c * 1000000 / n }')
            if [ -z "${rates[$kind]:-}" ]; then
                rates[$kind]=$r
                usevs[$kind]=$usev
                privs[$kind]=$priv
                durs[$kind]=$dur
            fi
            # every event (and the final ones) went through the operator
            awk -v kind="$kind" -v k="$k" -v rate="$rate" -v run="$run" -v st="$startup" -v hwm="$hwm" \
                -v priv="$priv" -v nck="$nck" -v stb="$stb" -v dur="$dur" -v sync="$sync" -v async="$async" \
                -v newb="$newb" -v cpu="$cpu" -v r="$r" -v r0="${rates[$kind]}" -v p0="${privs[$kind]}" -v d0="${durs[$kind]}" \
                -v u="$usev" -v u0="${usevs[$kind]}" \
                -v ok="$([ "$ev" = $((n + parts)) ] && echo all || echo "$ev/$((n + parts))")" 'BEGIN {
                    printf "%-6s %8d %9d %9s %7.2f %6d %7d %5d %10d %6.1f %7.1f %8.1f %8d %9.2f %7.2f %8.2f %5s %7.2f %6.2f %8.2f\n",
                        kind, k, rate, run, st, hwm, priv, nck, stb, dur, sync, async, newb,
                        r / r0, dur / d0, priv / p0, ok, cpu, u, (u > 0 ? u0 / u : 0) }'
        done
    done
    echo "events/s: from start(); run_ev/s: from the first processed event (start_s: start-up before it);"
    echo "rate/base: run_ev/s (events/s where run_ev/s is -); hwm_MB: VmHWM, with the shared_buffers pages"
    echo "the sink touched; priv_MB: peak RssAnon, sampled every 0.2 s (priv/base); cpu_s: the worker's"
    echo "user + system CPU seconds, us/ev the same per event (cpu/base: the first level's us/ev over this"
    echo "level's, a rate ratio from CPU time, less sensitive than rates to other work on the machine)"
    echo "targets: rate/base >= 0.50 at 100k keys, >= 0.25 at 10M; ck/base <= 2 at 10M; priv/base ~ 1"
}

# --- mode flat -------------------------------------------------------------

flat_mode() {
    local b first half last total nck
    echo "flat: $batches batches of $batch events (half new keys, half updates); state_options: '$flat_options'"
    q -c "SELECT streamflink.create_source('sflat', '$addr', 'scale_flat', 'json',
            columns => 'k int, v int, ts timestamptz', event_time => 'ts')" >/dev/null
    # a day-long window: nothing fires, every key's state stays
    q -c "SELECT streamflink.create_window_pipeline('flat', 'sflat', 'k', 'tumble',
            'count(*) AS n, sum(v) AS total', 'flat_out', size => '1 day',
            state_options => nullif('$flat_options', ''))" >/dev/null
    q -c "SELECT streamflink.start('flat')" >/dev/null
    half=$((batch / 2))
    total=0
    printf '\n%5s %11s %12s %6s %9s %9s %11s\n' batch keys state_bytes ckpts sync_ms async_ms new_bytes
    for ((b = 0; b < batches; b++)); do
        last=$(q -c "SELECT coalesce(max(id), 0) FROM streamflink.checkpoints WHERE pipeline = 'flat'")
        # new keys b*half .. (b+1)*half-1; updates of keys spread over all earlier ones
        {
            sf_bench_keyed_events "$half" 2000000000 "$parts" 1 $((b * half))
            awk -v n="$half" -v parts="$parts" -v b="$b" -v half="$half" 'BEGIN {
                srand(b + 1);
                for (i = 0; i < n; i++)
                    printf "%d\t{\"k\":%d,\"v\":1,\"ts\":\"2024-01-01T00:00:01Z\"}\n", i % parts,
                        7 * int(rand() * (b + 1) * half);
            }'
        } | test/produce "$addr" scale_flat --partitions "$parts" 2>/dev/null
        total=$((total + batch))
        sf_pipeline_wait "$work/pg" "$port" bench \
            "SELECT coalesce(sum(events), 0) >= $total FROM streamflink.checkpoints WHERE pipeline = 'flat'"
        q -F ' ' -c "SELECT $b, $(((b + 1) * half)), max(state_bytes), count(*),
                round(extract(epoch FROM sum(sync_duration)) * 1000, 1),
                round(extract(epoch FROM sum(async_duration)) * 1000, 1), sum(new_state_bytes)
            FROM streamflink.checkpoints WHERE pipeline = 'flat' AND id > $last" |
            tee -a "$work/flat" | awk '{ printf "%5d %11d %12d %6d %9.1f %9.1f %11d\n", $1, $2, $3, $4, $5, $6, $7 }'
    done
    sf_pipeline_stop "$work/pg" "$port" bench flat
    # what the last snapshot holds: SST files (hard links shared with the
    # database and earlier snapshots) and RocksDB's copied files
    local dir
    dir="$work/pg/streamflink/$(q -c "SELECT oid FROM pg_database WHERE datname = 'bench'")"
    dir="$dir/$(q -c "SELECT id FROM streamflink.pipeline WHERE name = 'flat'")"
    dir="$dir/chk-$(q -c "SELECT max(id) FROM streamflink.checkpoints WHERE pipeline = 'flat'")"
    echo "last snapshot $(basename "$dir"):"
    find "$dir" -maxdepth 1 -type f -printf '%f %s %n\n' | awk '{
        kind = ($1 ~ /\.sst$/) ? "SST" : ($1 ~ /^OPTIONS/ ? "OPTIONS (not counted)" : "other (" $1 ")");
        n[kind]++; bytes[kind] += $2; if ($3 == 1) single[kind] += $2 }
        END { for (k in n) printf "  %-32s %4d files %12d bytes (%d in files linked once)\n", k, n[k], bytes[k], single[k] }'
    awk -v n="$batches" '{ row[NR] = $0 } END {
        t = int(n / 3); if (t < 1) t = 1;
        for (i = 1; i <= t; i++) { split(row[i], a, " "); s1 += a[3]; y1 += a[5]; z1 += a[6]; w1 += a[7] }
        for (i = n - t + 1; i <= n; i++) { split(row[i], a, " "); s2 += a[3]; y2 += a[5]; z2 += a[6]; w2 += a[7] }
        printf "last third of the batches against the first: state x%.2f, sync x%.2f, async x%.2f, new bytes x%.2f\n",
            s2 / s1, y2 / y1, z2 / z1, w2 / w1;
        printf "growth with the state (x%.2f): sync %s, async %s, new bytes %s (flat: x1.5 or less)\n", s2 / s1,
            y2 / y1 <= 1.5 ? "flat" : "GROWS", z2 / z1 <= 1.5 ? "flat" : "GROWS", w2 / w1 <= 1.5 ? "flat" : "GROWS";
    }' "$work/flat"
}

for m in $mode; do
    case $m in
        keys) keys_mode ;;
        flat) flat_mode ;;
        *) _sf_die "unknown SCALE_BENCH_MODE: $m" ;;
    esac
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (a machine shared with other work: compare ratios, not rates)"
