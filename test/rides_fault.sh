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
# It sets up (test/lib.sh's sf_rides_setup: the events, a broker, a server;
# sf_rides_start: the source 'rides' and the pipeline, started) and sets
# work, addr, port, pg and dir (the pipeline's state directory).  Functions:
#   say MSG...          echo "NAME: MSG"
#   count KIND          how many KIND events gen_events.py injected (late, malformed)
#   sql ARGS...; sql_retry ARGS...  psql -qAt to the server (retried while it restarts)
#   produce_file FILE; produce_chunk  produce FILE / the next chunk (counted in produced)
#   wait_for WHAT COND  sf_wait_sql; exits the test on time-out
#   running; stopped; caught_up  wait for the pipeline to run, to be stopped,
#                       and to run with every produced message checkpointed
#   worker_pid          the running pipeline's pid
#   failpoint POINT; failpoint_reached  sf_failpoint_set; sf_failpoint_wait (30 s), or exit
#   rides_verdict       sf_rides_verdict of the pipeline and its sink: compares
#                       the sink with the answer SQL computes over the same
#                       events, says so, and sets ok (1: right, 0: not) and
#                       expected, sink, missing, wrong, dead, late
#   rides_show_diff     the first windows missing or wrong (a failure's detail)

sf_rides_setup "$name" "$topic" "$parts" "$events" "$chunks"
say "seed $seed, $events events"
sf_rides_start "$pipe" "${pipe}_out" "$topic" json
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

rides_verdict() { sf_rides_verdict "$pipe" "${pipe}_out"; }
rides_show_diff() { sf_show_window_diff "$pg" "$port" "${pipe}_out"; }
