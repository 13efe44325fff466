#!/usr/bin/env bash
#
# test/fault_savepoint.sh: savepoints under crashes, and exactly-once across
# stops with savepoint, rewinds and restores.
#
# A hop-window pipeline reads the fault test's event set (test/gen_events.py,
# 2 partitions) in chunks, while:
#   1. a savepoint 'a' is taken;
#   2. a savepoint 'b' is asked for while the worker is killed with SIGKILL
#      (it completes or fails clearly; either way its row and its files agree);
#   3. the worker crashes right after PREPARE of a savepoint's checkpoint ('c':
#      must not exist, its files removed) and right after its decision ('d':
#      must exist);
#   4. a stop with savepoint 'e' is followed at once by an immediate shutdown
#      (the pipeline stays stopped, 'e' is its last checkpoint);
#   5. 'a' is rescaled to 3, then 2 key-group range snapshots, and the
#      pipeline is started from it (a rewind: chunks already in the sink are
#      read again; the restore merges the ranges) and the worker crashes in
#      the middle of the restore, before it commits (failpoint), then
#      restores again;
#   6. an immediate shutdown while it runs;
#   7. a stop with savepoint 'f', a start from 'f' and an immediate shutdown
#      right after the start: the restore happens after the restart;
#   8. a SIGKILL while the last chunks are read.
# Then the late events and the final ones.  Every sink row must equal the
# answer SQL computes over the same events (loaded with COPY), the dead-letter
# and late-event tables must hold exactly the injected ones (a rewind writes
# those of the messages it reads again once), and every savepoint row must
# have its files and no files be left without a row.
#
# With SF_FSP_RESCALE=1, after 7.: the pipeline is rescaled 1 -> 3 -> 2 -> 1
# through stops with savepoint while chunks are produced, with a crash in
# the middle of the per-task restore into 3 tasks (failpoint) and a kill -9
# of task 0 while it runs with 2.
#
# Alone: bash test/fault_savepoint.sh (as root).  Knobs: SF_FSP_EVENTS
# (60000), SF_FSP_SEED (random), SF_FSP_RESCALE (0), SF_KEEP=1.

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

events=${SF_FSP_EVENTS:-60000}
seed=${SF_FSP_SEED:-$RANDOM}
RANDOM=$seed
parts=2
rescale=${SF_FSP_RESCALE:-0}
chunks=6
[ "$rescale" = 1 ] && chunks=9

name=fault_savepoint
topic=fault_sp
pipe=fsp
. test/rides_fault.sh

bad=0
# Savepoint rows and files agree (once a worker has started since a crash).
check_files() {
    local rows files
    rows=$(sql_retry -c "SELECT coalesce(string_agg(name, ' ' ORDER BY name), '') FROM streamflink.savepoints WHERE pipeline = 'fsp'")
    files=$(ls "$dir/savepoints" 2>/dev/null | sort | xargs)
    if [ "$rows" != "$files" ]; then
        say "$1: savepoints '$rows' but files '$files'"
        bad=1
    fi
}
has_savepoint() { [ "$(sql_retry -c "SELECT count(*) FROM streamflink.savepoints WHERE pipeline = 'fsp' AND name = '$1'")" = 1 ]; }
faults=0

# 1. A savepoint.
produce_chunk
caught_up
sql -c "SELECT streamflink.savepoint('fsp', 'a')" >/dev/null
has_savepoint a || { say "savepoint a missing"; bad=1; }

# 2. A savepoint while the worker is killed.
produce_chunk
running
pid=$(worker_pid)
(if sql -c "SELECT streamflink.savepoint('fsp', 'b')" >"$work/b.out" 2>&1; then
     echo 0 >"$work/b.rc"; else echo 1 >"$work/b.rc"; fi) &
sleep "0.$((RANDOM % 3))"
kill -9 "$pid" 2>/dev/null || true
faults=$((faults + 1))
wait
running
check_files "savepoint during kill -9"
if [ "$(cat "$work/b.rc")" = 0 ]; then
    has_savepoint b || { say "savepoint b reported done but missing"; bad=1; }
    say "savepoint b completed before the kill"
else
    say "savepoint b failed: $(grep -E "ERROR|FATAL|terminat" "$work/b.out" | head -1)"
fi

# 3. Crashes in a savepoint's checkpoint: after PREPARE, after the decision.
# Caught up, the worker takes no checkpoint but the savepoint's.
caught_up
failpoint after_prepare
sql -c "SELECT streamflink.savepoint('fsp', 'c')" >/dev/null 2>&1 && { say "savepoint c survived its crash?"; bad=1; }
failpoint_reached after_prepare
faults=$((faults + 1))
running
has_savepoint c && { say "savepoint c exists though its checkpoint was not decided"; bad=1; }
check_files "crash after prepare"
failpoint after_decision
sql -c "SELECT streamflink.savepoint('fsp', 'd')" >/dev/null 2>&1 || true
failpoint_reached after_decision
faults=$((faults + 1))
running
has_savepoint d || { say "savepoint d missing though its checkpoint was decided"; bad=1; }
check_files "crash after decision"

# 4. Stop with savepoint, then an immediate shutdown.
produce_chunk
caught_up
sql -c "SELECT streamflink.stop('fsp', savepoint => 'e')" >/dev/null
sf_pg_restart "$pg" immediate
faults=$((faults + 1))
[ "$(sql_retry -c "SELECT desired_state || '/' || status FROM streamflink.pipelines WHERE name = 'fsp'")" = stopped/stopped ] ||
    { say "pipeline not stopped after stop with savepoint"; bad=1; }
[ "$(sql_retry -c "SELECT (SELECT checkpoint FROM streamflink.savepoints WHERE name = 'e') = (SELECT max(id) FROM streamflink.checkpoints)")" = t ] ||
    { say "savepoint e is not the last checkpoint"; bad=1; }
check_files "stop with savepoint and immediate shutdown"

# 5. Rewind to 'a', rescaled first as 3 then 2 workers would own it (its
# key-group range snapshots merged again by the restore: 1 -> 3 -> 2 -> 1),
# crashing in the middle of the restore.
say "savepoint a rescaled: $(sql -c "SELECT streamflink.rescale_savepoint('fsp', 'a', 3)") keys to 3 ranges," \
    "$(sql -c "SELECT streamflink.rescale_savepoint('fsp', 'a', 2)") keys to 2: $(ls "$dir/savepoints/a" | xargs)"
failpoint savepoint_restored
sql -c "SELECT streamflink.start('fsp', from_savepoint => 'a')" >/dev/null
failpoint_reached savepoint_restored
faults=$((faults + 1))
running
say "restored after a crash in the restore: $(grep -c 'restored as checkpoint' "$pg/server.log") restore(s) committed"

# 6. An immediate shutdown while it runs.
produce_chunk
sleep "0.$((RANDOM % 8))"
sf_pg_restart "$pg" immediate
faults=$((faults + 1))
caught_up

# 7. Stop with savepoint 'f', start from it, immediate shutdown at once.
sql -c "SELECT streamflink.stop('fsp', savepoint => 'f')" >/dev/null
stopped
sql -c "SELECT streamflink.start('fsp', from_savepoint => 'f')" >/dev/null
sf_pg_restart "$pg" immediate
faults=$((faults + 1))
running
[ "$(sql_retry -c "SELECT restore_savepoint IS NULL FROM streamflink.pipeline WHERE name = 'fsp'")" = t ] ||
    { say "restore of f still pending"; bad=1; }

# 7b. Rescale 1 -> 3 -> 2 -> 1 through savepoints, with faults.
if [ "$rescale" = 1 ]; then
    for m in 3 2 1; do
        produce_chunk
        caught_up
        sql -c "SELECT streamflink.stop('fsp', savepoint => 'r$m')" >/dev/null
        stopped
        [ "$m" = 3 ] && failpoint savepoint_task_restored
        sql -c "SELECT streamflink.start('fsp', from_savepoint => 'r$m', parallelism => $m)" >/dev/null
        if [ "$m" = 3 ]; then
            failpoint_reached savepoint_task_restored
            faults=$((faults + 1))
        fi
        running
        if [ "$m" = 2 ]; then
            produce_chunk
            sleep "0.$((RANDOM % 8))"
            kill -9 "$(worker_pid)" 2>/dev/null || true
            faults=$((faults + 1))
            running
        fi
        say "rescaled to $m: savepoint r$m of $(sql -c "SELECT parallelism FROM streamflink.savepoints WHERE name = 'r$m'") task(s), ranges $(ls "$dir/savepoints/r$m" | xargs)"
    done
    [ "$(sql_retry -c "SELECT parallelism FROM streamflink.pipeline WHERE name = 'fsp'")" = 1 ] ||
        { say "not back to parallelism 1"; bad=1; }
fi

# 8. A kill -9 while the last chunks are read.
produce_chunk
sleep "0.$((RANDOM % 8))"
kill -9 "$(worker_pid)" 2>/dev/null || true
faults=$((faults + 1))
while [ -e "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")" ]; do
    produce_chunk
done
caught_up
check_files "the end"
produce_file "$work/events/late.tsv"
produce_file "$work/events/final.tsv"
caught_up

rides_verdict
nsp=$(sql -c "SELECT count(*) FROM streamflink.savepoints")
say "savepoints: $nsp ($(sql -c "SELECT string_agg(name, ' ' ORDER BY name) FROM streamflink.savepoints")); faults survived: $faults"
[ "$bad" = 0 ] || ok=0

# Dropping the pipeline drops its savepoints, files too.
sql -c "SELECT streamflink.stop('fsp')" >/dev/null
stopped
sql -c "SELECT streamflink.drop_pipeline('fsp')" >/dev/null
[ ! -e "$dir" ] || { say "state directory left after drop_pipeline"; ok=0; }
[ "$(sql -c "SELECT count(*) FROM streamflink.savepoint")" = 0 ] || { say "savepoint rows left after drop_pipeline"; ok=0; }

if [ "$ok" = 1 ]; then
    say "PASS: exactly once across $faults faults around savepoints, stops with savepoint and restores"
else
    say "FAIL (seed $seed)"
    rides_show_diff
    exit 1
fi
