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

sf_rides_setup fault_avro fault_avro "$parts" "$events" "$chunks"
say "seed $seed, $events events, $kills kills, $restarts immediate restarts"
# The JSON events as Avro, schema 1 in chunks 0-1, schema 2 from chunk 2.
/usr/bin/python3 test/avro_events.py "$work/events" "$work/avro" 2
registry=$(sf_registry_start "$work/registry" 1=test/avro/ride_micros_v1.avsc \
               2=test/avro/ride_micros_v2.avsc)
sf_rides_start surge surge_out fault_avro avro-confluent "" "schema_registry => '$registry'"

produce() { test/produce "$addr" fault_avro --partitions "$parts" --hex <"$1" 2>/dev/null; }
chunk_file() { printf '%s/avro/chunk-%02d.tsv' "$work" "$1"; }

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

main_total=$(cat "$work"/avro/chunk-*.tsv | wc -l)
sf_wait_offsets "$pg" "$port" surge "$main_total"
produce "$work/avro/late.tsv"
produce "$work/avro/final.tsv"
total=$(count total)
sf_wait_offsets "$pg" "$port" surge "$total"

sf_rides_verdict surge surge_out
registry_errors=$(sql -c "SELECT count(*) FROM streamflink.dead_letters WHERE error LIKE '%registry%'")
say "of the dead letters, registry errors: $registry_errors"
say "dead letters by reason:"
sql -c "SELECT count(*), regexp_replace(error, '[0-9]+', 'N', 'g') FROM streamflink.dead_letters GROUP BY 2 ORDER BY 1 DESC" |
    sed 's/^/    /'
say "recoveries: $(grep -c 'started from checkpoint' "$pg/server.log"); faults survived: $survived"
[ "$registry_errors" = 0 ] || ok=0
if [ "$ok" = 1 ]; then
    say "PASS: exactly once across $survived crashes, the last two with the schema registry down"
else
    say "FAIL (seed $seed)"
    sf_show_window_diff "$pg" "$port" surge_out
    exit 1
fi
