#!/usr/bin/env bash
#
# test/fault_avro.sh: exactly-once under crashes for an Avro source in the
# Confluent wire format, with the schema registry stopped during replay.
#
# The events of test/fault_test.sh (test/gen_events.py, fewer of them),
# encoded as Avro by the Avro project's Python implementation
# (test/avro_events.py): schema id 1, then id 2 (a field added with a
# default, the event time nullable), the malformed ones still malformed
# (no magic byte, a truncated datum, a null event time).  They are produced
# in chunks while a hop-window pipeline runs; meanwhile its worker is
# killed with SIGKILL and the server stopped with pg_ctl -m immediate at
# random moments.  Once the worker has stored both schemas (streamflink.
# avro_schema), the registry is stopped for good, a chunk produced and
# the worker killed and the server crashed again: the replays and
# everything after them decode without the registry.  At the end every sink
# row must equal the answer SQL computes over the same events (no window
# missing, none wrong, none extra), and the dead-letter and late-event
# tables must hold exactly the injected malformed and late events.
#
# Run by test/run_tests.sh; alone: bash test/fault_avro.sh (as root).
# Knobs: SF_FAULT_AVRO_EVENTS (40000), SF_FAULT_KILLS (3), SF_FAULT_RESTARTS
# (1), SF_FAULT_SEED (random), SF_KEEP=1 to keep everything after a failure.

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

events=${SF_FAULT_AVRO_EVENTS:-40000}
kills=${SF_FAULT_KILLS:-3}
restarts=${SF_FAULT_RESTARTS:-1}
seed=${SF_FAULT_SEED:-$RANDOM}
RANDOM=$seed
parts=4
chunks=$((kills + restarts + 3))

sf_test_setup fault_avro
work=$SF_TEST_DIR

say() { echo "fault_avro: $*"; }
say "seed $seed, $events events, $kills kills, $restarts immediate restarts"

python3 test/gen_events.py "$work/json" "$events" "$parts" "$chunks" 20
/usr/bin/python3 test/avro_events.py "$work/json" "$work/events" 2
chmod -R a+rX "$work"
count() { awk -v k="$1" '$1 == k { print $2 }' "$work/events/counts"; }

addr=$(sf_broker_start "$work/broker" "fault_avro:$parts")
registry=$(sf_registry_start "$work/registry" 1=test/avro/ride_micros_v1.avsc \
               2=test/avro/ride_micros_v2.avsc)
port=$(sf_free_port)
pg=$work/pg
sf_pg_start "$pg" "$port"
sql() { sf_psql "$pg" "$port" -qAt "$@"; }
sql_retry() { sf_psql_retry "$pg" "$port" -qAt "$@"; }

sql >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('rides', brokers => '$addr', topic => 'fault_avro',
       format => 'avro-confluent', columns => 'geo text, wait_s float8, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds',
       options => '{fetch.wait.max.ms=10}', schema_registry => '$registry');
SELECT streamflink.create_window_pipeline('surge', source => 'rides', key => 'geo',
       "window" => 'hop', size => '5 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => 'surge_out', allowed_lateness => '1 minute',
       checkpoint_interval => '300 milliseconds');
SELECT streamflink.start('surge');
SQL

produce() { test/produce "$addr" fault_avro --partitions "$parts" --hex <"$1" 2>/dev/null; }
chunk_file() { printf '%s/events/chunk-%02d.tsv' "$work" "$1"; }

worker_pid() {
    sql_retry -c "SELECT pid FROM streamflink.pipelines WHERE name = 'surge' AND status = 'running'"
}
wait_worker() { sf_wait_worker "$pg" worker_pid >/dev/null; }
fault() {
    case $1 in
        kill)
            pid=$(worker_pid)
            say "kill -9 worker $pid"
            kill -9 "$pid" ;;
        restart)
            say "pg_ctl stop -m immediate, start"
            sf_pg_restart "$pg" immediate ;;
    esac
}
wait_for() { sf_wait_sql "$pg" "$port" "$@"; }

mapfile -t faults < <(sf_fault_order "$seed" "$kills" "$restarts")

chunk=0
survived=0
for f in "${faults[@]}"; do
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
    wait_worker
    sf_fault_pause
    fault "$f"
    survived=$((survived + 1))
done

# Both schemas resolved and stored (chunks 0-1 use id 1, the rest id 2):
# from now on the registry is down, replays included.
while [ "$chunk" -lt 3 ]; do
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
done
wait_for "both schemas to be stored" \
    "(SELECT count(*) FROM streamflink.avro_schema) = 2"
sf_registry_stop "$work/registry"
say "schema registry stopped"
produce "$(chunk_file $chunk)"
chunk=$((chunk + 1))
wait_worker
sf_fault_pause
fault kill
survived=$((survived + 1))
wait_worker
fault restart
survived=$((survived + 1))
while [ -e "$(chunk_file $chunk)" ]; do
    produce "$(chunk_file $chunk)"
    chunk=$((chunk + 1))
done

main_total=$(cat "$work"/events/chunk-*.tsv | wc -l)
sf_wait_offsets "$pg" "$port" surge "$main_total"
produce "$work/events/late.tsv"
produce "$work/events/final.tsv"
total=$(count total)
sf_wait_offsets "$pg" "$port" surge "$total"

sf_rides_expected_sql "$work/events/events.csv" | sql

read -r expected sink missing wrong dead late registry_errors <<<"$(sql -F ' ' -c "
SELECT (SELECT count(*) FROM expected),
       (SELECT count(*) FROM surge_out),
       (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM surge_out) x),
       (SELECT count(*) FROM (SELECT * FROM surge_out EXCEPT SELECT * FROM expected) x),
       (SELECT count(*) FROM streamflink.dead_letters),
       (SELECT count(*) FROM streamflink.late_events),
       (SELECT count(*) FROM streamflink.dead_letters WHERE error LIKE '%registry%')")"

say "windows: expected $expected, in sink $sink, missing $missing, wrong $wrong"
say "dead letters: $dead (injected $(count malformed)), of them registry errors: $registry_errors;" \
    "late events: $late (injected $(count late))"
say "dead letters by reason:"
sql -c "SELECT count(*), regexp_replace(error, '[0-9]+', 'N', 'g') FROM streamflink.dead_letters GROUP BY 2 ORDER BY 1 DESC" |
    sed 's/^/    /'
say "recoveries: $(grep -c 'started from checkpoint' "$pg/server.log"); faults survived: $survived"
ok=1
[ "$expected" -gt 0 ] && [ "$expected" = "$sink" ] && [ "$missing" = 0 ] && [ "$wrong" = 0 ] || ok=0
[ "$dead" = "$(count malformed)" ] || ok=0
[ "$registry_errors" = 0 ] || ok=0
[ "$late" = "$(count late)" ] || ok=0
if [ "$ok" = 1 ]; then
    say "PASS: exactly once across $survived crashes, the last two with the schema registry down"
else
    say "FAIL (seed $seed)"
    sf_show_window_diff "$pg" "$port" surge_out
    exit 1
fi
