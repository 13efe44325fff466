#!/usr/bin/env bash
#
# test/bench/kafka_sink.sh: the window benchmark with the Kafka sink next to
# the Postgres table sink and the raw produce rate, same run, same events.
#
#   bash test/bench/kafka_sink.sh          (as root; installs what is missing)
#
# 1M JSON events (SF_BENCH_EVENTS) over 4 partitions of the test broker,
# 1,000 keys, as test/bench/bench.sh.  Two window shapes:
#   - light output: tumbling 1 minute, count(*) and avg by key (as bench.sh:
#     about one result row per 60 events);
#   - heavy output: tumbling 1 second (about one result row per event), where
#     the sink's cost shows;
# each run twice from the start of the topic: into a Postgres table and into
# a Kafka topic (exactly once: transactions, outbox, markers), timed from
# start() until every event is checkpointed and, for Kafka, every
# transaction is committed and recorded.  The raw produce rate is
# test/produce sending as many messages as the heavy runs write (the
# heavy run's own result rows, JSON) to a topic of the same shape, without
# transactions.  Prints rates and ratios; machines are noisy: compare
# ratios.  Not part of the test suite's pass/fail.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

n=${SF_BENCH_EVENTS:-1000000}
parts=4
sf_test_setup bench_kafka_sink >/dev/null
work=$SF_TEST_DIR


echo "kafka_sink bench: generating $n events"
sf_bench_events "$n" "$parts" 1 >"$work/events.tsv"
total=$((n + parts))
chmod a+r "$work"/events.*

# Output topics: many partitions and zstd, as the test broker keeps at most
# 5 MiB per partition.
addr=$(sf_broker_start "$work/broker" "bench:$parts" out_light:16 out_light.markers:1 \
           out_heavy:16 out_heavy.markers:1 raw_out:16)
test/produce "$addr" bench --partitions "$parts" <"$work/events.tsv" 2>/dev/null

port=$(sf_free_port)
sf_bench_pg_start "$work/pg" "$port" "streamflink.checkpoint_history = 100000"
sql() { sf_psql "$work/pg" "$port" -qAt "$@"; }
sf_bench_source "$work/pg" "$port" "$addr"

# run NAME SIZE SINKARGS: create, start, wait, print the rate.
run() {
    local name=$1 size=$2 sinkargs=$3 t0 t1
    sql >/dev/null -c "SELECT streamflink.create_window_pipeline('$name', source => 'bench', key => 'k',
           \"window\" => 'tumble', size => '$size',
           aggregates => 'count(*) AS n, avg(v) AS mean', checkpoint_interval => '1 second', $sinkargs)"
    t0=$(sf_now)
    sql -c "SELECT streamflink.start('$name')" >/dev/null
    sf_wait_sql "$work/pg" "$port" "pipeline $name to finish" \
        "(SELECT coalesce(sum(next_offset), 0) = $total
                 AND NOT EXISTS (SELECT 1 FROM streamflink.kafka_sink_txn t
                                 JOIN streamflink.pipeline p ON p.id = t.pipeline_id
                                 WHERE p.name = '$name' AND t.committed IS NULL)
          FROM streamflink.offsets WHERE pipeline = '$name')" 12000 0.05 ||
        { echo "kafka_sink bench: pipeline $name did not finish" >&2; exit 1; }
    t1=$(sf_now)
    sql -c "SELECT streamflink.stop('$name')" >/dev/null
    sf_rate "$total" "$t0" "$t1"
}

rows_of() { sql -c "SELECT coalesce(sum(rows_emitted), 0) FROM streamflink.checkpoints WHERE pipeline = '$1'"; }

light_pg=$(run light_pg '1 minute' "sink => 'light_pg_out'")
echo "kafka_sink bench: light output, Postgres sink: $light_pg events/s ($(rows_of light_pg) rows)"
light_k=$(run light_k '1 minute' "sink => NULL, sink_topic => 'out_light', sink_brokers => '$addr', sink_options => '{compression.codec=zstd,linger.ms=20}'")
echo "kafka_sink bench: light output, Kafka sink: $light_k events/s ($(rows_of light_k) messages)"
heavy_pg=$(run heavy_pg '1 second' "sink => 'heavy_pg_out'")
heavy_rows=$(rows_of heavy_pg)
echo "kafka_sink bench: heavy output, Postgres sink: $heavy_pg events/s ($heavy_rows rows)"
heavy_k=$(run heavy_k '1 second' "sink => NULL, sink_topic => 'out_heavy', sink_brokers => '$addr', sink_options => '{compression.codec=zstd,linger.ms=20}'")
echo "kafka_sink bench: heavy output, Kafka sink: $heavy_k events/s ($(rows_of heavy_k) messages)"

# The raw produce rate of the same result rows, as JSON, no transactions.
sql -c "COPY (SELECT -1, row_to_json(o)::text FROM heavy_pg_out o) TO STDOUT" >"$work/rows.tsv"
raw=$(test/produce "$addr" raw_out <"$work/rows.tsv" 2>&1 | awk '/msg\/s/ { print int($(NF-1)) }')
echo "kafka_sink bench: raw produce of the heavy run's $(wc -l <"$work/rows.tsv") result rows: $raw msg/s"

# The Kafka runs wrote the same answer as the table runs (latest per key).
wrong=$(sql -c "SELECT count(*) FROM (
    SELECT k, window_start, n, mean FROM heavy_pg_out
    EXCEPT SELECT value::jsonb ->> 'k', (value::jsonb ->> 'window_start')::timestamptz,
                  (value::jsonb ->> 'n')::bigint, (value::jsonb ->> 'mean')::float8
           FROM streamflink._read_topic('$addr', 'out_heavy', 300000)) x")
echo "kafka_sink bench: heavy Kafka results differing from the table's: $wrong"

python3 - "$light_pg" "$light_k" "$heavy_pg" "$heavy_k" "$heavy_rows" "$raw" "$total" <<'PY'
import sys
light_pg, light_k, heavy_pg, heavy_k, heavy_rows, raw, total = map(float, sys.argv[1:])
rows_per_s = heavy_k * heavy_rows / total
print("kafka_sink bench: ratio Kafka sink / Postgres sink, light output: %.2f" % (light_k / light_pg))
print("kafka_sink bench: ratio Kafka sink / Postgres sink, heavy output: %.2f" % (heavy_k / heavy_pg))
print("kafka_sink bench: heavy run, Kafka sink %d messages/s / raw produce %d msg/s: %.2f"
      % (rows_per_s, raw, rows_per_s / raw))
PY
