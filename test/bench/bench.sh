#!/usr/bin/env bash
#
# test/bench/bench.sh: end-to-end throughput of a window pipeline, against
# two baselines measured in the same run on the same topic.
#
#   bash test/bench/bench.sh          (as root; installs what is missing)
#
# 1M JSON events (SF_BENCH_EVENTS) over 4 partitions of the test broker;
# pipeline: tumbling 1-minute count(*) and avg by key (1,000 keys),
# checkpoint every second, exactly-once sink.  Prints:
#   - raw librdkafka consume rate of the topic (test/consume_bench): the
#     ceiling of any Kafka consumer on this machine;
#   - streamflink end to end: from start() until the checkpoint that holds
#     the last event's offset has committed (decode, watermarks, RocksDB
#     state, 2PC checkpoints included);
#   - the do-it-yourself way: COPY the same messages into a table, then one
#     GROUP BY (no streaming, no exactly-once, no live results): once with
#     the JSON payloads as they are, once with the events pre-decoded to CSV;
# and the ratios.  Machines are noisy: compare ratios, not absolute numbers.
# Not part of the test suite's pass/fail.  SF_BENCH_PERF=FILE writes a perf
# profile of the pipeline's worker (its first second) to FILE.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

n=${SF_BENCH_EVENTS:-1000000}
parts=4
sf_test_setup bench >/dev/null
work=$SF_TEST_DIR

echo "bench: generating $n events"
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

raw=$(test/consume_bench "$addr" bench "$total" 2>/dev/null | awk '$1 == "RATE" { print int($2) }')
echo "bench: raw librdkafka consume: $raw msg/s"

port=$(sf_free_port)
sf_bench_pg_start "$work/pg" "$port"
sql() { sf_psql "$work/pg" "$port" -qAt "$@"; }
sf_bench_source "$work/pg" "$port" "$addr"
sql >/dev/null <<SQL
SELECT streamflink.create_window_pipeline('bench', source => 'bench', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, avg(v) AS mean', sink => 'bench_out',
       checkpoint_interval => '1 second');
SQL
t0=$(sf_now)
sql -c "SELECT streamflink.start('bench')" >/dev/null
if [ -n "${SF_BENCH_PERF:-}" ]; then
    # Profile the worker for a second.
    sf_bench_perf "$work/pg" "$port" bench 1 "$SF_BENCH_PERF"
fi
sf_wait_offsets "$work/pg" "$port" bench "$total" 6000 0.05 ||
    { echo "bench: the pipeline did not finish"; exit 1; }
t1=$(sf_now)
sf=$(sf_rate "$total" "$t0" "$t1")
ckpts=$(sql -c "SELECT count(*) || ' checkpoints, median ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration) * 1000)::numeric, 1) || ' ms, ' || pg_size_pretty(max(state_bytes)) || ' state' FROM streamflink.checkpoints")
rows=$(sql -c "SELECT count(*) FROM bench_out")
echo "bench: streamflink end to end: $sf events/s ($rows windows, $ckpts)"

# Without us: load the same messages with COPY, then one GROUP BY.  Twice:
# the JSON payloads as they are in Kafka (json column, fields extracted in
# the query), and the same events pre-decoded to CSV (typed columns).
cut -f2 "$work/events.tsv" | sed 's/\\/\\\\/g' >"$work/events.json"
chmod a+r "$work/events.json"
sql >/dev/null <<SQL
CREATE UNLOGGED TABLE copied_json (payload json);
CREATE UNLOGGED TABLE copied (k text, v float8, ts timestamptz);
SQL
t2=$(sf_now)
sql <<SQL >/dev/null
\copy copied_json FROM '$work/events.json'
CREATE TABLE grouped_json AS
SELECT payload->>'k' AS k, date_bin('1 minute', (payload->>'ts')::timestamptz, 'epoch') AS window_start,
       count(*) AS n, avg((payload->>'v')::float8) AS mean
FROM copied_json GROUP BY 1, 2;
SQL
t3=$(sf_now)
diy_json=$(sf_rate "$total" "$t2" "$t3")
echo "bench: COPY json then GROUP BY: $diy_json events/s"
t2=$(sf_now)
sql <<SQL >/dev/null
\copy copied FROM '$work/events.csv' WITH (FORMAT csv)
CREATE TABLE grouped AS
SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start, count(*) AS n, avg(v) AS mean
FROM copied GROUP BY 1, 2;
SQL
t3=$(sf_now)
diy=$(sf_rate "$total" "$t2" "$t3")
echo "bench: COPY pre-decoded csv then GROUP BY: $diy events/s"
# The answer must be right too: compare with SQL over the same events.
wrong=$(sql -c "SELECT count(*) FROM (SELECT k, window_start, n, mean FROM bench_out
                 EXCEPT SELECT * FROM grouped WHERE window_start < '2024-01-01 02:00') x")
echo "bench: sink windows differing from SQL's answer: $wrong"

python3 - "$sf" "$raw" "$diy_json" "$diy" <<'PY'
import sys
sf, raw, diy_json, diy = map(float, sys.argv[1:])
print("bench: ratio streamflink / raw consume: %.2f" % (sf / raw))
print("bench: ratio streamflink / COPY json + GROUP BY: %.2f" % (sf / diy_json))
print("bench: ratio streamflink / COPY csv + GROUP BY: %.2f" % (sf / diy))
PY
