#!/usr/bin/env bash
#
# test/pmdeath_test.sh: a pipeline worker notices the postmaster's death
# while data flows.  The worker waits on its latch (WL_EXIT_ON_PM_DEATH)
# and on librdkafka's queue through a pipe, never inside librdkafka, and
# checks PostmasterIsAlive() between batches: after kill -9 of the
# postmaster, under a steady stream of messages, it must be gone within a
# few seconds (it used to keep consuming, an orphan holding its locks).
#
#   bash test/pmdeath_test.sh        (alone, or from test/run_tests.sh)
#
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

sf_test_setup pmdeath
work=$SF_TEST_DIR
say() { echo "pmdeath_test: $*"; }

addr=$(sf_broker_start "$work/broker" "pmd_stream:1")
port=$(sf_free_port)
pg=$work/pg
sf_pg_start "$pg" "$port"
sql() { sf_psql "$pg" "$port" -qAt "$@"; }

sql >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('s', brokers => '$addr', topic => 'pmd_stream',
       columns => 'a int, ts timestamptz', event_time => 'ts',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('p', source => 's', key => 'a',
       "window" => 'tumble', size => '1 second', aggregates => 'count(*) AS n',
       sink => 'p_out');
SELECT streamflink.start('p');
SQL

# A steady stream: batches of 2000 events every 50 ms, for up to 60 s.
python3 -c "
import sys
for k in range(2000):
    sys.stdout.write('0\t{\"a\": %d, \"ts\": \"2024-01-01T00:00:%02dZ\"}\n' % (k % 100, k % 60))
" > "$work/batch"
(
    for ((i = 0; i < 1200; i++)); do
        test/produce "$addr" pmd_stream < "$work/batch" >/dev/null 2>&1 || true
        sleep 0.05
    done
) &
producer=$!

pid=
for ((i = 0; i < 300; i++)); do
    pid=$(sql -c "SELECT pid FROM streamflink.pipelines WHERE name = 'p' AND status = 'running' AND events > 0" || true)
    [ -n "$pid" ] && break
    sleep 0.1
done
if [ -z "$pid" ]; then
    kill $producer 2>/dev/null || true
    say "FAILED: the pipeline never ran"
    exit 1
fi
e1=$(sql -c "SELECT events FROM streamflink.pipelines WHERE name = 'p'")
sleep 1
e2=$(sql -c "SELECT events FROM streamflink.pipelines WHERE name = 'p'")
say "worker $pid consuming: $e1 -> $e2 events"

pm=$(head -n 1 "$pg/postmaster.pid")
kill -9 "$pm"
say "killed the postmaster ($pm)"
gone=
for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
        gone=$i
        break
    fi
    sleep 0.1
done
kill $producer 2>/dev/null || true
wait $producer 2>/dev/null || true
if [ -z "$gone" ]; then
    say "FAILED: worker $pid still running 10 s after the postmaster died"
    kill -9 "$pid" 2>/dev/null || true
    exit 1
fi
say "ok: worker gone $((gone * 100)) ms after the postmaster died (events were flowing: $e1 -> $e2)"
