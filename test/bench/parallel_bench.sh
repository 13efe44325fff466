#!/usr/bin/env bash
#
# test/bench/parallel_bench.sh: throughput of the window benchmark's
# pipeline (test/bench/bench.sh: tumbling 1-minute count(*) and avg by key,
# 1,000 keys, checkpoint every second, exactly-once sink) at parallelism 1,
# 2 and 4, one after the other in the same run on the same topic, with the
# ratios to parallelism 1.  While each runs, streamflink.tasks is sampled:
# the busiest task's busy and backpressured ms per second are printed.
#
#   bash test/bench/parallel_bench.sh          (as root; installs what is missing)
#
# Then backpressure: the same source into a window pipeline whose
# aggregate is deliberately slow in task 1 (a user-defined aggregate
# spending 100us per event there, SF_BENCH_SLOW_US), parallelism 2,
# checkpoint every 500 ms, run for SF_BENCH_BP_SECONDS (15) aligned, then
# unaligned: the checkpoints' median and max duration (from the trigger)
# and alignment, the channel state persisted, and each task's busy and
# backpressured time (task 1 busy, task 0 backpressured: its output to
# task 1 is full), with the aligned / unaligned ratio of the checkpoint
# durations (Flink's own benchmark: ~879 ms vs ~2.5 ms).
#
# SF_BENCH_EVENTS (1000000), SF_BENCH_PARTITIONS (4), SF_BENCH_PARALLELISM
# ("1 2 4"; empty: the backpressure part only).  Machines are noisy (and
# shared): compare ratios, not absolute numbers; on 2 cores parallelism 4
# has more tasks than cores.  Each
# pipeline's sink is compared with SQL's answer.  Not part of the test
# suite's pass/fail.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

n=${SF_BENCH_EVENTS:-1000000}
parts=${SF_BENCH_PARTITIONS:-4}
levels=${SF_BENCH_PARALLELISM-1 2 4}
sf_test_setup parallel_bench >/dev/null
work=$SF_TEST_DIR

echo "parallel_bench: generating $n events on $parts partitions"
sf_bench_events "$n" "$parts" 1 >"$work/events.tsv"
total=$((n + parts))
cut -f2 "$work/events.tsv" | python3 -c "
import json, sys
w = sys.stdout.write
for line in sys.stdin:
    e = json.loads(line)
    w('%s,%s,%s\n' % (e['k'], e['v'], e['ts']))" >"$work/events.csv"
chmod a+r "$work"/events.*

addr=$(sf_broker_start "$work/broker" "bench:$parts")
test/produce "$addr" bench --partitions "$parts" <"$work/events.tsv"

port=$(sf_free_port)
sf_bench_pg_start "$work/pg" "$port"
sql() { sf_psql "$work/pg" "$port" -qAt "$@"; }
sf_bench_source "$work/pg" "$port" "$addr"
sql >/dev/null <<SQL
CREATE UNLOGGED TABLE copied (k text, v float8, ts timestamptz);
\copy copied FROM '$work/events.csv' WITH (FORMAT csv)
CREATE TABLE grouped AS
SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start, count(*) AS n, avg(v) AS mean
FROM copied WHERE ts < '2024-01-01 02:00' GROUP BY 1, 2;
SQL

declare -A rates
for par in $levels; do
    name=bench_p$par
    sql >/dev/null <<SQL
SELECT streamflink.create_window_pipeline('$name', source => 'bench', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, avg(v) AS mean', sink => '${name}_out',
       checkpoint_interval => '1 second', parallelism => $par);
SQL
    t0=$(sf_now)
    sql -c "SELECT streamflink.start('$name')" >/dev/null
    busy=0
    bp=0
    for ((i = 0; i < 12000; i++)); do
        done_=$(sql -c "SELECT coalesce(sum(next_offset), 0) = $total FROM streamflink.offsets WHERE pipeline = '$name'")
        [ "$done_" = t ] && break
        if ((i % 20 == 10)); then
            read -r b p <<<"$(sql -F ' ' -c "SELECT coalesce(round(max(busy_ms_per_second)), 0), coalesce(round(max(backpressured_ms_per_second)), 0)
                                            FROM streamflink.tasks WHERE pipeline = '$name'")"
            ((b > busy)) && busy=$b
            ((p > bp)) && bp=$p
        fi
        sleep 0.05
    done
    t1=$(sf_now)
    [ "$done_" = t ] || { echo "parallel_bench: $name did not finish"; exit 1; }
    rates[$par]=$(sf_rate "$total" "$t0" "$t1")
    ckpts=$(sql -c "SELECT count(*) || ' checkpoints, median ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration) * 1000)::numeric, 1) || ' ms, max alignment ' || coalesce(round(max(extract(epoch FROM alignment) * 1000)::numeric, 1), 0) || ' ms' FROM streamflink.checkpoints WHERE pipeline = '$name'")
    wrong=$(sql -c "SELECT count(*) FROM (SELECT k, window_start, n, mean FROM ${name}_out
                     EXCEPT SELECT * FROM grouped) x")
    echo "parallel_bench: parallelism $par: ${rates[$par]} events/s ($ckpts; busiest task $busy ms/s busy, most backpressured $bp ms/s; windows differing from SQL: $wrong)"
    sql -c "SELECT streamflink.stop('$name')" >/dev/null
    for ((i = 0; i < 600; i++)); do
        [ "$(sql -c "SELECT count(*) FROM streamflink.tasks")" = 0 ] && break
        sleep 0.1
    done
done

# --- backpressure: aligned vs unaligned under a slow operator ------------
slow_us=${SF_BENCH_SLOW_US:-100}
bp_seconds=${SF_BENCH_BP_SECONDS:-15}
sql >/dev/null <<SQL
CREATE FUNCTION slow_add(s bigint, v float8) RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	-- slow in task 1 only (its key groups): a busy wait, pg_sleep sleeps
	-- at least a millisecond
	IF (SELECT application_name FROM pg_stat_get_activity(pg_backend_pid())) LIKE '% task 1' THEN
		WHILE clock_timestamp() - t0 < interval '$slow_us microseconds' LOOP
		END LOOP;
	END IF;
	RETURN s + 1;
END
\$\$;
CREATE AGGREGATE slow_count(float8) (sfunc = slow_add, stype = bigint, initcond = '0');
SQL
declare -A ckpt_median
for mode in aligned unaligned; do
    name=bp_$mode
    sql >/dev/null <<SQL
SELECT streamflink.create_window_pipeline('$name', source => 'bench', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'slow_count(v) AS n', sink => '${name}_out',
       checkpoint_interval => '500 milliseconds', parallelism => 2, checkpoint_mode => '$mode');
SELECT streamflink.start('$name');
SQL
    sleep "$bp_seconds"
    tasks=$(sql -F ' ' -c "SELECT string_agg(format('task %s: busy %s, idle %s, backpressured %s ms/s, input fill %s, output fill %s',
                                                   task, round(busy_ms_per_second), round(idle_ms_per_second),
                                                   round(backpressured_ms_per_second),
                                                   round(input_queue_fill::numeric, 2), round(output_queue_fill::numeric, 2)), '; ' ORDER BY task)
                             FROM streamflink.tasks WHERE pipeline = '$name'")
    read -r n med mx align persisted <<<"$(sql -F ' ' -c "
        SELECT count(*),
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration) * 1000)::numeric, 1),
               round(max(extract(epoch FROM duration) * 1000)::numeric, 1),
               round(max(extract(epoch FROM alignment) * 1000)::numeric, 1),
               coalesce(sum(persisted_bytes), 0)
        FROM streamflink.checkpoints WHERE pipeline = '$name'")"
    ckpt_median[$mode]=$med
    echo "parallel_bench: backpressure, $mode: $n checkpoints in ${bp_seconds}s, duration median $med ms, max $mx ms, max alignment $align ms, persisted $persisted bytes; $tasks"
    sql -c "SELECT streamflink.stop('$name')" >/dev/null
    for ((i = 0; i < 600; i++)); do
        [ "$(sql -c "SELECT count(*) FROM streamflink.tasks")" = 0 ] && break
        sleep 0.1
    done
done
python3 -c "
a, u = float('${ckpt_median[aligned]:-0}' or 0), float('${ckpt_median[unaligned]:-0}' or 0)
print('parallel_bench: backpressure: median checkpoint duration aligned / unaligned: %s' % ('%.1f' % (a / u) if u > 0 else 'n/a'))"

echo "parallel_bench: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine lowers the ratios)"
for par in $levels; do
    [ "$par" = 1 ] && continue
    [ -n "${rates[1]:-}" ] || break
    python3 -c "print('parallel_bench: ratio parallelism $par / parallelism 1: %.2f' % (${rates[$par]} / ${rates[1]}))"
done
