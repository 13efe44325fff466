#!/usr/bin/env bash
#
# test/fault_kafka_sink.sh: exactly-once of the Kafka sink under crashes.
#
# A hop-window pipeline writes its results to a Kafka topic
# (src/kafka_sink.c) while a known event set (test/gen_events.py) is
# produced in chunks; meanwhile its worker is killed with SIGKILL and the
# server stopped in immediate mode at random moments, and the worker
# crashes on purpose at every instant of the two-phase commit between
# Postgres and Kafka (failpoints): after PREPARE, after the checkpoint's
# decision (the Kafka transaction neither marked nor committed), after the
# marker was delivered but before commit_transaction, after
# commit_transaction but before the commit is recorded, and after the
# record.  Each failpoint strikes a checkpoint whose Kafka transaction holds
# messages ("rows", test/lib.sh's sf_failpoint_set): on a loaded machine a
# checkpoint may cover some partitions' events and fire no window, and a
# crash after its decision has nothing to send again.
#
# The test broker shows messages of aborted transactions too (it ignores
# isolation.level), so the topic is judged by the sink's own record: only
# messages whose headers (transactional_id, worker, checkpoint, run) name a
# transaction streamflink.kafka_sink_txn records as committed count.  Then:
#   - every recorded transaction has exactly its recorded number of
#     messages, sequences 0..n-1 (no message missing from a committed
#     transaction, none doubled);
#   - no (checkpoint, sequence) appears twice among counted messages (a
#     resend never doubles a committed transaction);
#   - the latest counted message of each key (by checkpoint, sequence) is
#     SQL's answer over the same events: no window missing, none wrong,
#     none extra;
#   - every committed transaction's marker is in the marker topic;
#   - recovery took both ways out of doubt: "committed to Kafka; recorded"
#     and "not committed; sent again".
#
# Run by test/run_tests.sh (fault part); alone: bash test/fault_kafka_sink.sh
# (as root).  Knobs: SF_KFAULT_EVENTS (40000), SF_KFAULT_KILLS (3),
# SF_KFAULT_RESTARTS (2), SF_KFAULT_SEED (random), SF_KEEP=1, and
# SF_KSINK_PARALLELISM (1): with N > 1 the pipeline runs as N tasks, each
# with its own producer and transactions; a kill -9 hits a random task, a
# failpoint the first task that reaches it, and every check above is made
# per task (transactions are (task, checkpoint, run)).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

events=${SF_KFAULT_EVENTS:-40000}
kills=${SF_KFAULT_KILLS:-3}
restarts=${SF_KFAULT_RESTARTS:-2}
seed=${SF_KFAULT_SEED:-$RANDOM}
par=${SF_KSINK_PARALLELISM:-1}
RANDOM=$seed
parts=4
failpoints=(after_prepare after_decision kafka_before_commit kafka_after_commit kafka_after_record)
chunks=$((kills + restarts + ${#failpoints[@]} + 2))

# The output topic has 8 partitions and is compressed: the test broker keeps
# at most 5 MiB per partition (and silently drops older data).
sf_rides_setup fault_kafka_sink kfault_rides "$parts" "$events" "$chunks" \
    kfault_out:8 kfault_out.markers:1 -- "streamflink.checkpoint_history = 1000000"
say "seed $seed, parallelism $par, $events events, $kills kills, $restarts immediate restarts, failpoints ${failpoints[*]}"
sf_rides_start surge surge_outbox kfault_rides json \
    "parallelism => $par, sink_topic => 'kfault_out', sink_brokers => '$addr',
       sink_options => '{compression.codec=zstd,linger.ms=20}'"

produce() { test/produce "$addr" kfault_rides --partitions "$parts" <"$1" 2>/dev/null; }
chunk_file() { printf '%s/events/chunk-%02d.tsv' "$work" "$1"; }

# A running task's pid (a random one of the N), once all N run.
worker_pid() {
    sql_retry -c "SELECT t.pid FROM streamflink.pipelines p, streamflink.tasks t
                  WHERE p.name = 'surge' AND p.status = 'running' AND t.pipeline = 'surge'
                    AND (SELECT count(pid) FROM streamflink.tasks WHERE pipeline = 'surge') = $par
                  ORDER BY t.task OFFSET $((RANDOM % par)) LIMIT 1"
}
wait_worker() { sf_wait_worker "$pg" worker_pid >/dev/null; }

mapfile -t faults < <(sf_fault_order "$seed" "$kills" "$restarts")

chunk=0
survived=0
for f in "${faults[@]}"; do
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
    wait_worker
    sf_fault_pause
    case $f in
        kill)
            pid=$(worker_pid)
            say "kill -9 task $(sql_retry -c "SELECT task FROM streamflink.tasks WHERE pid = 0$pid") (pid $pid)"
            [ -z "$pid" ] || kill -9 "$pid" ;;
        restart)
            say "pg_ctl stop -m immediate, start"
            sf_pg_restart "$pg" immediate ;;
    esac
    survived=$((survived + 1))
done
# Every instant of the two-phase commit between Postgres and Kafka, each
# in a checkpoint with messages in its Kafka transaction (the kafka_* points
# are only reached in one).
for point in "${failpoints[@]}"; do
    wait_worker
    tasks=$(sql_retry -c "SELECT pid || ' ' || task FROM streamflink.tasks WHERE pipeline = 'surge'")
    sf_failpoint_set "$pg" "$point" rows
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
    sf_failpoint_wait "$pg" 60
    # the task that took it: its pid in the log line (log_line_prefix has %p)
    pid=$(grep "failpoint $point: crashing on purpose" "$pg/server.log" | tail -n 1 | sed -n 's/^[^[]*\[\([0-9]*\)\].*/\1/p')
    say "crash at failpoint $point (task $(awk -v p="$pid" '$1 == p { print $2 }' <<<"$tasks"))"
    survived=$((survived + 1))
done
while [ -e "$(chunk_file $chunk)" ]; do
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
done

main_total=$(cat "$work"/events/chunk-*.tsv | wc -l)
wait_for() { sf_wait_sql "$pg" "$port" "$@"; }
sf_wait_offsets "$pg" "$port" surge "$main_total"
produce "$work/events/late.tsv"
produce "$work/events/final.tsv"
total=$(count total)
sf_wait_offsets "$pg" "$port" surge "$total"
# The last checkpoint's Kafka commit is recorded, its outbox emptied.
wait_for "every Kafka transaction to be recorded" \
    "NOT EXISTS (SELECT 1 FROM streamflink.kafka_sink_txn WHERE committed IS NULL)
     AND NOT EXISTS (SELECT 1 FROM surge_outbox)"

sf_rides_expected_sql "$work/events/events.csv" | sql
sql <<SQL
-- Everything the broker has, and what of it counts: messages of
-- transactions the sink recorded as committed.
CREATE TABLE topic AS SELECT * FROM streamflink._read_topic('$addr', 'kfault_out', 120000);
CREATE TABLE markers AS SELECT * FROM streamflink._read_topic('$addr', 'kfault_out.markers', 120000);
CREATE TABLE counted AS
SELECT (m.headers ->> 'worker')::int AS worker,
       (m.headers ->> 'checkpoint')::bigint AS checkpoint, (m.headers ->> 'sequence')::bigint AS seq,
       m.key, m.value::jsonb AS value
FROM topic m
JOIN streamflink.kafka_sink_run r ON r.transactional_id = m.headers ->> 'transactional_id'
                                AND r.worker = (m.headers ->> 'worker')::int
JOIN streamflink.kafka_sink_txn t ON t.pipeline_id = r.pipeline_id AND t.worker = r.worker
                                 AND t.checkpoint_id = (m.headers ->> 'checkpoint')::bigint
                                 AND t.run = (m.headers ->> 'run')::bigint
WHERE t.committed IS NOT NULL;
-- The value of each key (geo, window_start) is its latest message.
CREATE VIEW latest AS
SELECT DISTINCT ON (key) (value ->> 'geo') AS geo, (value ->> 'window_start')::timestamptz AS window_start,
       (value ->> 'window_end')::timestamptz AS window_end, (value ->> 'rides')::bigint AS rides,
       (value ->> 'avg_wait')::float8 AS avg_wait, (value ->> 'max_wait')::float8 AS max_wait
FROM counted WHERE value IS NOT NULL ORDER BY key, checkpoint DESC, seq DESC;
SQL

read -r expected windows missing wrong in_topic counted_n dupes short gaps no_marker txns resent <<<"$(sql -F ' ' -c "
SELECT (SELECT count(*) FROM expected),
       (SELECT count(*) FROM latest),
       (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM latest) x),
       (SELECT count(*) FROM (SELECT * FROM latest EXCEPT SELECT * FROM expected) x),
       (SELECT count(*) FROM topic),
       (SELECT count(*) FROM counted),
       (SELECT count(*) - count(DISTINCT (worker, checkpoint, seq)) FROM counted),
       (SELECT count(*) FROM streamflink.kafka_sink_txn t
         WHERE t.messages <> (SELECT count(*) FROM counted c
                              WHERE c.worker = t.worker AND c.checkpoint = t.checkpoint_id)),
       (SELECT count(*) FROM (SELECT checkpoint FROM counted GROUP BY worker, checkpoint
                               HAVING min(seq) <> 0 OR max(seq) <> count(*) - 1) g),
       (SELECT count(*) FROM streamflink.kafka_sink_txn t JOIN streamflink.kafka_sink_run r USING (pipeline_id, worker)
         WHERE NOT EXISTS (SELECT 1 FROM markers m WHERE m.key = r.transactional_id
                             AND (m.value::jsonb ->> 'checkpoint')::bigint = t.checkpoint_id
                             AND (m.value::jsonb ->> 'run')::bigint = t.run
                             AND (m.value::jsonb ->> 'worker')::int = t.worker)),
       (SELECT count(*) FROM streamflink.kafka_sink_txn),
       (SELECT count(*) FROM streamflink.kafka_sink_txn WHERE resent)")"

recorded=$(grep -c 'was committed to Kafka (run' "$pg/server.log" || true)
resent_log=$(grep -c 'was not committed to Kafka; sent its' "$pg/server.log" || true)
say "windows: expected $expected, latest per key in topic $windows, missing $missing, wrong $wrong"
say "messages in topic $in_topic (aborted ones stay visible on the test broker), of committed transactions $counted_n"
say "committed transactions $txns (resent by recovery $resent); doubled messages $dupes;" \
    "transactions short of their messages $short, with sequence gaps $gaps, without marker $no_marker"
say "recoveries: $(grep -c 'started from checkpoint' "$pg/server.log");" \
    "unconfirmed Kafka transactions found committed and recorded: $recorded; sent again: $resent_log"
if [ "$par" -gt 1 ]; then
    for ((t = 0; t < par; t++)); do
        say "task $t: committed transactions $(sql -c "SELECT count(*) FROM streamflink.kafka_sink_txn WHERE worker = $t")," \
            "found committed and recorded $(grep -c "task $t: checkpoint [0-9]* was committed to Kafka (run" "$pg/server.log" || true)," \
            "sent again $(grep -c "task $t: checkpoint [0-9]* was not committed to Kafka; sent its" "$pg/server.log" || true)"
    done
fi
say "faults survived: $survived"
ok=1
[ "$expected" -gt 0 ] && [ "$expected" = "$windows" ] && [ "$missing" = 0 ] && [ "$wrong" = 0 ] || ok=0
[ "$dupes" = 0 ] && [ "$short" = 0 ] && [ "$gaps" = 0 ] && [ "$no_marker" = 0 ] || ok=0
[ "$recorded" -gt 0 ] || { say "no unconfirmed transaction was found committed"; ok=0; }
[ "$resent_log" -gt 0 ] || { say "no unconfirmed transaction was sent again"; ok=0; }
if [ "$ok" = 1 ]; then
    say "PASS: exactly once in Kafka across $survived crashes ($kills kill -9, $restarts immediate shutdowns, ${#failpoints[@]} failpoints)"
else
    say "FAIL (seed $seed)"
    sf_show_window_diff "$pg" "$port" latest
    exit 1
fi
