# shellcheck shell=bash
#
# test/rides_fault.sh: the start and the verdict shared by the crash tests
# that run the crash tests' hop window (test/lib.sh's sf_rides_expected_sql)
# over test/gen_events.py's event set, read in chunks, around faults of their
# own (test/fault_savepoint.sh, test/fault_rescale.sh).  Source it after
# test/lib.sh, with these set:
#
#     name    the test's name (its directory under SF_WORK, the say prefix)
#     topic   the broker topic, of `parts` partitions
#     pipe    the pipeline; its sink table is ${pipe}_out
#     events  how many events; chunks: in how many chunks; seed: RANDOM's
#
# It sets up (sf_test_setup, the events, a broker, a server; the source
# 'rides' and the pipeline, started) and sets work, addr, port, pg and dir
# (the pipeline's state directory).  Functions:
#   say MSG...          echo "NAME: MSG"
#   count KIND          how many KIND events gen_events.py injected (late, malformed)
#   sql ARGS...; sql_retry ARGS...  psql -qAt to the server (retried while it restarts)
#   produce_file FILE; produce_chunk  produce FILE / the next chunk (counted in produced)
#   wait_for WHAT COND  sf_wait_sql; exits the test on time-out
#   running; stopped; caught_up  wait for the pipeline to run, to be stopped,
#                       and to run with every produced message checkpointed
#   worker_pid          the running pipeline's pid
#   failpoint POINT; failpoint_reached  sf_failpoint_set; sf_failpoint_wait (30 s), or exit
#   rides_verdict       compares the sink with the answer SQL computes over the
#                       same events, says so, and sets ok (1: right, 0: not) and
#                       expected, sink, missing, wrong, dead, late
#   rides_show_diff     the first windows missing or wrong (a failure's detail)

say() { echo "$name: $*"; }

sf_test_setup "$name"
work=$SF_TEST_DIR
say "seed $seed, $events events"

python3 test/gen_events.py "$work/events" "$events" "$parts" "$chunks" 20
chmod -R a+rX "$work"
count() { awk -v k="$1" '$1 == k { print $2 }' "$work/events/counts"; }

addr=$(sf_broker_start "$work/broker" "$topic:$parts")
port=$(sf_free_port)
pg=$work/pg
sf_pg_start "$pg" "$port"
sql() { sf_psql "$pg" "$port" -qAt "$@"; }
# While the server restarts, connections fail: retry for a while.
sql_retry() { sf_psql_retry "$pg" "$port" -qAt "$@"; }

sql >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('rides', brokers => '$addr', topic => '$topic',
       format => 'json', columns => 'geo text, wait_s float8, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('$pipe', source => 'rides', key => 'geo',
       "window" => 'hop', size => '5 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => '${pipe}_out', allowed_lateness => '1 minute',
       checkpoint_interval => '300 milliseconds');
SELECT streamflink.start('$pipe');
SQL
dir="$pg/streamflink/$(sql -c "SELECT oid FROM pg_database WHERE datname = current_database()")/$(sql -c "SELECT id FROM streamflink.pipeline WHERE name = '$pipe'")"

produced=0
chunk=0
produce_file() {
    test/produce "$addr" "$topic" --partitions "$parts" <"$1" 2>/dev/null
    produced=$((produced + $(wc -l <"$1")))
}
produce_chunk() {
    produce_file "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")"
    chunk=$((chunk + 1))
}
wait_for() { sf_wait_sql "$pg" "$port" "$1" "$2" || exit 1; }
running() { wait_for "the worker to run" "SELECT status = 'running' FROM streamflink.pipelines WHERE name = '$pipe'"; }
stopped() { wait_for "the stop" "SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = '$pipe'"; }
caught_up() {
    running
    wait_for "$produced messages to be checkpointed" \
        "coalesce((SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = '$pipe'), 0) >= $produced"
}
worker_pid() { sql_retry -c "SELECT pid FROM streamflink.pipelines WHERE name = '$pipe' AND status = 'running'"; }
failpoint() { sf_failpoint_set "$pg" "$1"; }
failpoint_reached() { sf_failpoint_wait "$pg" 30 || exit 1; }

rides_verdict() {
    sf_rides_expected_sql "$work/events/events.csv" | sql
    read -r expected sink missing wrong dead late <<<"$(sql -F ' ' -c "
SELECT (SELECT count(*) FROM expected),
       (SELECT count(*) FROM ${pipe}_out),
       (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM ${pipe}_out) x),
       (SELECT count(*) FROM (SELECT * FROM ${pipe}_out EXCEPT SELECT * FROM expected) x),
       (SELECT count(*) FROM streamflink.dead_letters),
       (SELECT count(*) FROM streamflink.late_events)")"
    say "windows: expected $expected, in sink $sink, missing $missing, wrong $wrong"
    say "dead letters: $dead (injected $(count malformed)); late events: $late (injected $(count late))"
    ok=1
    [ "$expected" -gt 0 ] && [ "$expected" = "$sink" ] && [ "$missing" = 0 ] && [ "$wrong" = 0 ] || ok=0
    [ "$dead" = "$(count malformed)" ] || ok=0
    [ "$late" = "$(count late)" ] || ok=0
}
rides_show_diff() { sf_show_window_diff "$pg" "$port" "${pipe}_out"; }
