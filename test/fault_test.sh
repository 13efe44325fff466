#!/usr/bin/env bash
#
# test/fault_test.sh: exactly-once under crashes, for a hop-window pipeline.
#
# Produces a known event set (test/gen_events.py: 200,000 events over 4
# partitions, out of order, with malformed ones) in chunks while a pipeline
# runs, and meanwhile kills the pipeline's worker with SIGKILL (at least 5
# times) and stops the whole server with pg_ctl -m immediate (at least
# twice), at random moments, then crashes it right after PREPARE and right
# after the checkpoint's decision (failpoints).  Then 300 events a day late and a final event
# per partition.  Once the pipeline has drained, every sink row must equal
# the answer SQL computes over the same events loaded with COPY (no window
# missing, none wrong, none extra), and the dead-letter and late-event
# tables must hold exactly the injected malformed and late events.  A
# session reads live() before each fault, which ends it: no secondary of
# such a session may be left in the pipeline's directory at the end,
# although nobody calls live() afterwards (issue 7).
#
# With SF_FAULT_SQL=1 (the default), two pipelines written in SQL
# (create_pipeline) read the same source through the same faults: a hop
# window with WHERE and HAVING, and a stateless ingest (filter and
# projection into a table); each sink must equal the same query run by
# Postgres over the COPY'd events.
#
# Run by test/run_tests.sh; alone: bash test/fault_test.sh (as root).
# Knobs: SF_FAULT_EVENTS (200000), SF_FAULT_KILLS (5), SF_FAULT_RESTARTS (2),
# SF_FAULT_SEED (random), SF_FAULT_SQL (1): SQL-defined pipelines too,
# SF_KEEP=1 to keep everything after a failure,
# SF_FAULT_PARALLELISM (1): the pipeline's tasks; above 1 each kill -9 hits
# a random task, and a failpoint strikes whichever task reaches it first
# (after its own PREPARE, before the others'; after the decision);
# SF_FAULT_CHECKPOINT_MODE (aligned) and SF_FAULT_ALIGNED_TIMEOUT (none):
# the pipeline's checkpoint_mode and aligned_checkpoint_timeout;
# SF_FAULT_LOCAL_AGGREGATION (NULL: automatic, true, false): the window
# pipeline's local_aggregation (two-stage aggregation, parallelism > 1).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

events=${SF_FAULT_EVENTS:-200000}
kills=${SF_FAULT_KILLS:-5}
restarts=${SF_FAULT_RESTARTS:-2}
seed=${SF_FAULT_SEED:-$RANDOM}
with_sql=${SF_FAULT_SQL:-1}
par=${SF_FAULT_PARALLELISM:-1}
mode=${SF_FAULT_CHECKPOINT_MODE:-aligned}
align_timeout=${SF_FAULT_ALIGNED_TIMEOUT:+\'$SF_FAULT_ALIGNED_TIMEOUT\'}
align_timeout=${align_timeout:-NULL}
local_agg=${SF_FAULT_LOCAL_AGGREGATION:-NULL}
RANDOM=$seed
parts=4
chunks=$((kills + restarts + 3))

sf_rides_setup fault_test fault_rides "$parts" "$events" "$chunks"
say "seed $seed, $events events, $kills kills, $restarts immediate restarts, parallelism $par, $mode checkpoints, aligned timeout $align_timeout"
sf_rides_start surge surge_out fault_rides json \
    "parallelism => $par, checkpoint_mode => '$mode', aligned_checkpoint_timeout => $align_timeout,
       local_aggregation => $local_agg"
pipelines="'surge'"
if [ "$with_sql" = 1 ]; then
    sql >/dev/null <<'SQL'
SELECT streamflink.create_pipeline('sql_surge', $$
       SELECT geo, window_start, window_end, count(*) AS rides, avg(wait_s) AS avg_wait,
              max(wait_s) AS max_wait
       FROM streamflink.hop(rides, ts, slide => '30 seconds', size => '5 minutes')
       WHERE wait_s < 19
       GROUP BY geo, window_start, window_end
       HAVING count(*) > 1 $$,
       sink => 'sql_surge_out', allowed_lateness => '1 minute',
       checkpoint_interval => '300 milliseconds');
SELECT streamflink.create_pipeline('ingest', $$
       SELECT geo, wait_s * 60 AS wait_min, ts FROM rides WHERE wait_s >= 10 $$,
       sink => 'ingest_out', checkpoint_interval => '300 milliseconds');
SELECT streamflink.start('sql_surge');
SELECT streamflink.start('ingest');
SQL
    pipelines="'surge', 'sql_surge', 'ingest'"
fi
npipes=$(echo "$pipelines" | tr ',' '\n' | wc -l)
# Every pipeline's checkpointed offsets add up to N.
offsets_at() {
    echo "(SELECT count(*) = $npipes AND min(s) = $1 FROM (SELECT pipeline, sum(next_offset) AS s
           FROM streamflink.offsets WHERE pipeline IN ($pipelines) GROUP BY pipeline) o)"
}


produce() { test/produce "$addr" fault_rides --partitions "$parts" <"$1" 2>/dev/null; }

worker_pid() {
    if [ "$par" -gt 1 ]; then
        # a random task, once all of them run
        sql_retry -c "SELECT pid FROM streamflink.tasks t
                      WHERE pipeline = 'surge'
                        AND (SELECT count(*) FROM streamflink.tasks WHERE pipeline = 'surge') = $par
                        AND EXISTS (SELECT 1 FROM streamflink.pipelines WHERE name = 'surge' AND status = 'running')
                      ORDER BY random() LIMIT 1"
    else
        sql_retry -c "SELECT pid FROM streamflink.pipelines WHERE name = 'surge' AND status = 'running'"
    fi
}

# Faults in a random order, a chunk of events produced before each.
mapfile -t faults < <(sf_fault_order "$seed" "$kills" "$restarts")

chunk=0
survived=0
for f in "${faults[@]}"; do
    produce "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")"
    chunk=$((chunk + 1))
    # Let it run a while, into the chunk.
    sf_wait_worker "$pg" worker_pid >/dev/null
    # A session reading live() while the fault strikes: the crash restart
    # or the shutdown ends it, and its secondary's directory must not stay.
    (sql -c "SELECT count(*) FROM streamflink.live('surge')" -c "SELECT pg_sleep(600)" \
         >/dev/null 2>&1 &)
    sf_fault_pause
    case $f in
        kill)
            pid=$(worker_pid)
            [ -n "$pid" ] || pid=$(worker_pid)
            say "kill -9 worker $pid"
            kill -9 "$pid" ;;
        restart)
            say "pg_ctl stop -m immediate, start"
            sf_pg_restart "$pg" immediate ;;
    esac
    survived=$((survived + 1))
done
# Then crashes at the two instants that leave a prepared transaction in
# doubt, through the worker's failpoint file: right after PREPARE (recovery
# must roll it back, the decision not being taken) and right after the
# decision row (recovery must commit it).
for point in after_prepare after_decision; do
    sf_failpoint_set "$pg" "$point"
    produce "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")"
    chunk=$((chunk + 1))
    sf_failpoint_wait "$pg" 30
    say "crash at failpoint $point"
    survived=$((survived + 1))
done
while [ -e "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")" ]; do
    produce "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")"
    chunk=$((chunk + 1))
done

main_total=$(cat "$work"/events/chunk-*.tsv | wc -l)
wait_for() { sf_wait_sql "$pg" "$port" "$@"; }
# Late events count as late only once the watermark is past the main
# events, for sure: after a checkpoint that covers all of them (recovery
# restores the watermark of the checkpoint it starts from).
wait_for "the main events to be checkpointed" "$(offsets_at "$main_total")"
produce "$work/events/late.tsv"
produce "$work/events/final.tsv"
total=$(count total)
wait_for "every event to be checkpointed" "$(offsets_at "$total")"

sf_rides_verdict surge surge_out
ckpts=$(sql -c "SELECT count(*) FROM streamflink.checkpoints WHERE pipeline = 'surge'")

# Sessions that read live() were ended by the faults; nobody reads it since,
# yet their secondaries are gone (removed by the restarted worker).
stale_live=$(find "$pg/streamflink" -maxdepth 3 -name 'live-*' | wc -l)

say "live() secondaries left by ended sessions: $stale_live"
say "checkpoints completed: $ckpts; faults survived: $survived"
say "recoveries: $(grep -c 'started from checkpoint' "$pg/server.log"), in-doubt transactions" \
    "committed: $(grep -c 'committed in-doubt' "$pg/server.log")," \
    "rolled back: $(grep -c 'rolled back in-doubt' "$pg/server.log")"
[ "$stale_live" = 0 ] || ok=0
if [ "$with_sql" = 1 ]; then
    # The same query run by Postgres over the same events.
    read -r sexp ssink smissing swrong sdead slate iexp isink imissing iextra idead ilate <<<"$(sql -F ' ' <<'SQL'
CREATE VIEW expected_sql AS
SELECT geo, ws AS window_start, ws + interval '5 minutes' AS window_end,
       count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait
FROM ride_events,
     generate_series(date_bin('30 seconds', ts, 'epoch') - interval '4 minutes 30 seconds',
                     date_bin('30 seconds', ts, 'epoch'), '30 seconds') ws
WHERE wait_s < 19
GROUP BY geo, ws
HAVING count(*) > 1;
CREATE VIEW expected_ingest AS
SELECT geo, wait_s * 60 AS wait_min, ts FROM ride_events WHERE wait_s >= 10;
SELECT (SELECT count(*) FROM expected_sql),
       (SELECT count(*) FROM sql_surge_out),
       (SELECT count(*) FROM (SELECT * FROM expected_sql EXCEPT SELECT * FROM sql_surge_out) x),
       (SELECT count(*) FROM (SELECT * FROM sql_surge_out EXCEPT SELECT * FROM expected_sql) x),
       (SELECT count(*) FROM streamflink.dead_letters WHERE pipeline = 'sql_surge'),
       (SELECT count(*) FROM streamflink.late_events WHERE pipeline = 'sql_surge'),
       (SELECT count(*) FROM expected_ingest),
       (SELECT count(*) FROM ingest_out),
       (SELECT count(*) FROM (SELECT * FROM expected_ingest EXCEPT ALL SELECT * FROM ingest_out) x),
       (SELECT count(*) FROM (SELECT * FROM ingest_out EXCEPT ALL SELECT * FROM expected_ingest) x),
       (SELECT count(*) FROM streamflink.dead_letters WHERE pipeline = 'ingest'),
       (SELECT count(*) FROM streamflink.late_events WHERE pipeline = 'ingest');
SQL
)"
    say "SQL window pipeline: expected $sexp, in sink $ssink, missing $smissing, wrong $swrong;" \
        "dead letters $sdead, late events $slate"
    say "SQL ingest pipeline: expected $iexp rows, in sink $isink, missing $imissing, extra" \
        "(duplicates included) $iextra; dead letters $idead, late events $ilate"
    [ "$sexp" -gt 0 ] && [ "$sexp" = "$ssink" ] && [ "$smissing" = 0 ] && [ "$swrong" = 0 ] || ok=0
    [ "$sdead" = "$(count malformed)" ] && [ "$slate" = "$(count late)" ] || ok=0
    [ "$iexp" -gt 0 ] && [ "$iexp" = "$isink" ] && [ "$imissing" = 0 ] && [ "$iextra" = 0 ] || ok=0
    [ "$idead" = "$(count malformed)" ] && [ "$ilate" = 0 ] || ok=0
fi
# Both ways out of doubt were taken.
grep -q 'rolled back in-doubt' "$pg/server.log" || { say "no in-doubt transaction was rolled back"; ok=0; }
grep -q 'committed in-doubt' "$pg/server.log" || { say "no in-doubt transaction was committed"; ok=0; }
if [ "$ok" = 1 ]; then
    say "PASS: exactly once across $survived crashes ($kills kill -9, $restarts immediate shutdowns, 2 at in-doubt failpoints)"
else
    say "FAIL (seed $seed)"
    sf_show_window_diff "$pg" "$port" surge_out
    exit 1
fi
