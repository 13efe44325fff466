#!/usr/bin/env bash
#
# test/bench/ingest.sh: a stateless pipeline written in SQL (filter and
# projection, exactly once into a table) against baselines measured in the
# same run on the same topic.
#
#   bash test/bench/ingest.sh          (as root; installs what is missing)
#
# 1M JSON events (SF_BENCH_EVENTS) over 4 partitions of the test broker.
# Prints:
#   - raw librdkafka consume rate of the topic (test/consume_bench);
#   - streamflink end to end: from start() until the checkpoint holding the
#     last event's offset has committed, for
#       SELECT k, v * 2 AS v2, upper(k) AS k_upper, ts FROM bench WHERE v >= 1
#     (decode, filter and projection by the executor's expressions, rows
#     batched into the sink table in the epoch transaction, 2PC
#     checkpoints every second);
#   - kcat | COPY: kcat reads the topic and pipes the payloads into COPY of
#     a json column (no decoding, no exactly-once), then the same filter
#     and projection as INSERT ... SELECT into a typed table;
# and the ratios.  Machines are noisy: compare ratios, not absolute numbers.
# Not part of the test suite's pass/fail.  SF_BENCH_PERF=FILE writes a perf
# profile of the pipeline's worker (two seconds) to FILE.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

n=${SF_BENCH_EVENTS:-1000000}
parts=4
sf_test_setup ingest >/dev/null
work=$SF_TEST_DIR

echo "ingest: generating $n events"
sf_bench_events "$n" "$parts" >"$work/events.tsv"
total=$n

addr=$(sf_broker_start "$work/broker" "bench:$parts")
test/produce "$addr" bench --partitions "$parts" <"$work/events.tsv"

raw=$(test/consume_bench "$addr" bench "$total" 2>/dev/null | awk '$1 == "RATE" { print int($2) }')
echo "ingest: raw librdkafka consume: $raw msg/s"

port=$(sf_free_port)
sf_bench_pg_start "$work/pg" "$port"
sql() { sf_psql "$work/pg" "$port" -qAt "$@"; }
sf_bench_source "$work/pg" "$port" "$addr"
sql >/dev/null <<SQL
SELECT streamflink.create_pipeline('ingest', \$\$
       SELECT k, v * 2 AS v2, upper(k) AS k_upper, ts FROM bench WHERE v >= 1 \$\$,
       sink => 'ingest_out', checkpoint_interval => '1 second');
SQL
t0=$(sf_now)
sql -c "SELECT streamflink.start('ingest')" >/dev/null
if [ -n "${SF_BENCH_PERF:-}" ]; then
    # Profile the worker for two seconds.
    sf_bench_perf "$work/pg" "$port" ingest 2 "$SF_BENCH_PERF"
fi
sf_wait_offsets "$work/pg" "$port" ingest "$total" 12000 0.05 ||
    { echo "ingest: the pipeline did not finish"; exit 1; }
t1=$(sf_now)
sf=$(sf_rate "$total" "$t0" "$t1")
ckpts=$(sql -c "SELECT count(*) || ' checkpoints, median ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration) * 1000)::numeric, 1) || ' ms' FROM streamflink.checkpoints")
rows=$(sql -c "SELECT count(*) FROM ingest_out")
echo "ingest: streamflink stateless pipeline end to end: $sf events/s ($rows rows, $ckpts)"

# Without us: kcat reads the topic into COPY (payloads as json), then the
# same filter and projection into a typed table.
sql >/dev/null <<SQL
CREATE UNLOGGED TABLE copied_json (payload json);
CREATE TABLE copied_out (k text, v2 float8, k_upper text, ts timestamptz);
SQL
t2=$(sf_now)
kcat -C -b "$addr" -t bench -e -q -f '%s\n' -X fetch.wait.max.ms=10 2>/dev/null |
    sed 's/\\/\\\\/g' | sql -c "\\copy copied_json FROM STDIN"
t3=$(sf_now)
sql >/dev/null <<SQL
INSERT INTO copied_out
SELECT payload->>'k', (payload->>'v')::float8 * 2, upper(payload->>'k'), (payload->>'ts')::timestamptz
FROM copied_json WHERE (payload->>'v')::float8 >= 1;
SQL
t4=$(sf_now)
copied=$(sql -c "SELECT count(*) FROM copied_json")
copy_only=$(sf_rate "$copied" "$t2" "$t3")
copy_insert=$(sf_rate "$copied" "$t2" "$t4")
echo "ingest: kcat | COPY json: $copy_only events/s ($copied messages)"
echo "ingest: kcat | COPY json, then INSERT ... SELECT typed: $copy_insert events/s"
wrong=$(sql -c "SELECT count(*) FROM (SELECT * FROM ingest_out EXCEPT ALL SELECT * FROM copied_out) a")
missing=$(sql -c "SELECT count(*) FROM (SELECT * FROM copied_out EXCEPT ALL SELECT * FROM ingest_out) a")
echo "ingest: sink rows not in the COPY answer: $wrong; COPY rows not in the sink: $missing"

python3 - "$sf" "$raw" "$copy_only" "$copy_insert" <<'PY'
import sys
sf, raw, copy_only, copy_insert = map(float, sys.argv[1:])
print("ingest: ratio streamflink / raw consume: %.2f" % (sf / raw))
print("ingest: ratio streamflink / kcat | COPY json: %.2f" % (sf / copy_only))
print("ingest: ratio streamflink / kcat | COPY json + INSERT SELECT: %.2f" % (sf / copy_insert))
PY
