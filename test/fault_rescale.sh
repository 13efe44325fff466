#!/usr/bin/env bash
#
# test/fault_rescale.sh: rescaling from the last checkpoint (start(pipeline,
# parallelism => n), no savepoint) and from a savepoint, under crashes,
# exactly once.
#
# A hop-window pipeline reads the fault test's event set (test/gen_events.py,
# 4 partitions) in chunks, while:
#   1. a savepoint 's0' is taken while a chunk is being read;
#   2. 1 -> 3 from the last checkpoint, the worker killed (SIGKILL) in the
#      middle of the restore, after the first task's snapshot (failpoint
#      rescale_task_restored): the next start builds all three again;
#   3. a random task killed while a chunk is read;
#   4. an unclean stop: the stop's checkpoint crashes right after its
#      decision (failpoint after_decision), leaving decided prepared
#      transactions no running task resolves (and two more of task 2, made
#      here: one undecided, one decided); then 3 -> 2,
#      crashing just before the rescaled checkpoint commits
#      (rescale_restored): task 2's must be rolled back and committed;
#   5. an immediate shutdown while a chunk is read, a stop right after the
#      restart, then 2 -> 1, crashing right after the rescaled checkpoint
#      committed and before the unused task directories are removed
#      (rescale_committed): the next start removes them;
#   6. a start from savepoint 's0' (a rewind) at parallelism 2 followed at
#      once by an immediate shutdown: the restore happens after the restart;
#   7. the remaining chunks, the late and the final events; then repeated
#      rescales 1 -> 3 -> 1 -> 3 -> 1 of the caught-up pipeline: the state
#      directory must not grow, and no task directory but those of the
#      current tasks may be left.
# Every sink row must equal the answer SQL computes over the same events
# (loaded with COPY); the dead-letter and late-event tables must hold exactly
# the injected ones.
#
# Alone: bash test/fault_rescale.sh (as root).  Knobs: SF_FRS_EVENTS
# (30000), SF_FRS_SEED (random), SF_KEEP=1.

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

events=${SF_FRS_EVENTS:-30000}
seed=${SF_FRS_SEED:-$RANDOM}
RANDOM=$seed
parts=4
chunks=7

name=fault_rescale
topic=fault_rs
pipe=frs
. test/rides_fault.sh

prepared() { sql_retry -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'streamflink:%'"; }
task_dirs() { (cd "$dir" && ls -d task-* 2>/dev/null || true) | sort | xargs; }
# The state directory's bytes (hard links counted once), savepoints aside.
state_bytes() { du -sb --exclude=savepoints "$dir" | cut -f1; }
bad=0
expect_dirs() {
    local want=$1 got
    got=$(task_dirs)
    if [ "$got" != "$want" ]; then
        say "$2: task directories '$got', expected '$want'"
        bad=1
    fi
}
expect_tasks() {
    wait_for "$1 task(s)" "SELECT count(*) = $1 FROM streamflink.tasks WHERE pipeline = 'frs'"
    [ "$(sql_retry -c "SELECT parallelism FROM streamflink.checkpoints WHERE pipeline = 'frs' ORDER BY id DESC LIMIT 1")" = "$1" ] ||
        { say "the last checkpoint is not of $1 task(s)"; bad=1; }
}
rescales() { grep -c "rescaled to" "$pg/server.log" || true; }
# start(parallelism => N) with failpoint POINT set: the worker crashes there
# and the pipeline starts again.
start_crashing() {
    failpoint "$1"
    sql -c "SELECT streamflink.start('frs', parallelism => $2)" >/dev/null
    failpoint_reached "$1"
    faults=$((faults + 1))
}
faults=0

# 1. A savepoint while a chunk is read.
produce_chunk
caught_up
produce_chunk
sql -c "SELECT streamflink.savepoint('frs', 's0')" >/dev/null

# 2. 1 -> 3 from the last checkpoint, a kill -9 in the middle of the restore.
caught_up
sql -c "SELECT streamflink.stop('frs')" >/dev/null
stopped
start_crashing rescale_task_restored 3
running
expect_tasks 3
expect_dirs "task-1 task-2" "1 -> 3"
say "1 -> 3 after a crash in the restore: $(rescales) rescale(s) committed"

# 3. A random task killed while a chunk is read.
produce_chunk
sleep "0.$((RANDOM % 8))"
pid=$(sql_retry -c "SELECT pid FROM streamflink.tasks WHERE pipeline = 'frs' ORDER BY random() LIMIT 1")
kill -9 "$pid" 2>/dev/null || true
faults=$((faults + 1))
caught_up

# 4. An unclean stop (its checkpoint crashes after the decision), then 3 -> 2
# crashing before the rescaled checkpoint commits.
failpoint after_decision
produce_chunk
# (the checkpoint that crashes may be one before the stop: then the session
# dies, and the stop is sent again before the tasks restart and recover; a
# stop with nothing new to checkpoint takes none)
sql_retry -c "SELECT streamflink.stop('frs')" >/dev/null
for ((i = 0; i < 100; i++)); do
    [ -e "$pg/streamflink/failpoint" ] || break
    sleep 0.1
done
if [ -e "$pg/streamflink/failpoint" ]; then
    rm -f "$pg/streamflink/failpoint"
    say "no checkpoint crashed around the stop (it had nothing to checkpoint)"
else
    faults=$((faults + 1))
fi
stopped
# And two in-doubt transactions of task 2, which goes, so that only the
# rescale resolves them: one of a checkpoint never decided, with a row no
# window has (to be rolled back), one of a decided checkpoint (to be
# committed: its marker row must appear).
sql <<SQL
CREATE TABLE decided_marker (task int);
BEGIN;
INSERT INTO frs_out VALUES ('no such geo', now(), now(), 1, 1, 1);
SELECT format('PREPARE TRANSACTION %L', format('streamflink:%s:%s:%s:2',
       (SELECT oid FROM pg_database WHERE datname = current_database()),
       (SELECT id FROM streamflink.pipeline WHERE name = 'frs'),
       (SELECT max(id) + 1000 FROM streamflink.checkpoint))) \gexec
BEGIN;
INSERT INTO decided_marker VALUES (2);
SELECT format('PREPARE TRANSACTION %L', format('streamflink:%s:%s:%s:2',
       (SELECT oid FROM pg_database WHERE datname = current_database()),
       (SELECT id FROM streamflink.pipeline WHERE name = 'frs'),
       (SELECT max(id) - 1 FROM streamflink.checkpoint))) \gexec
SQL
say "unclean stop: $(prepared) in-doubt transaction(s) left"
start_crashing rescale_restored 2
running
expect_tasks 2
[ "$(prepared)" = 0 ] || { say "in-doubt transactions left after the rescale"; bad=1; }
[ "$(sql_retry -c "SELECT count(*) FROM decided_marker")" = 1 ] ||
    { say "the decided in-doubt transaction of task 2 was not committed"; bad=1; }
expect_dirs "task-1" "3 -> 2"

# 5. An immediate shutdown while a chunk is read, a stop at once, 2 -> 1
# crashing between the rescaled checkpoint and the removal of task-1.
produce_chunk
sleep "0.$((RANDOM % 8))"
sf_pg_restart "$pg" immediate
faults=$((faults + 1))
sql_retry -c "SELECT streamflink.stop('frs')" >/dev/null
stopped
say "immediate shutdown and stop: $(prepared) in-doubt transaction(s) left"
start_crashing rescale_committed 1
caught_up
expect_tasks 1
expect_dirs "" "2 -> 1"

# 6. A rewind to s0 rescaled to 2 tasks, an immediate shutdown right after
# the start: the restore happens after the restart.
sql -c "SELECT streamflink.stop('frs')" >/dev/null
stopped
sql -c "SELECT streamflink.start('frs', from_savepoint => 's0', parallelism => 2)" >/dev/null
sf_pg_restart "$pg" immediate
faults=$((faults + 1))
running
[ "$(sql_retry -c "SELECT restore_savepoint IS NULL FROM streamflink.pipeline WHERE name = 'frs'")" = t ] ||
    { say "restore of s0 still pending"; bad=1; }
caught_up
expect_tasks 2

# 7. The rest, then repeated rescales of the caught-up pipeline.
while [ -e "$(printf '%s/events/chunk-%02d.tsv' "$work" "$chunk")" ]; do
    produce_chunk
done
produce_file "$work/events/late.tsv"
produce_file "$work/events/final.tsv"
caught_up
sizes=()
for m in 1 3 1 3 1; do
    sql -c "SELECT streamflink.stop('frs')" >/dev/null
    stopped
    sql -c "SELECT streamflink.start('frs', parallelism => $m)" >/dev/null
    caught_up
    expect_tasks "$m"
    sizes+=("$m:$(state_bytes)")
done
expect_dirs "" "the end"
say "state bytes after each rescale (parallelism:bytes): ${sizes[*]}"
first=${sizes[0]#*:}
last=${sizes[4]#*:}
# the same state at parallelism 1 three times: no growth (10% for RocksDB's own files)
if [ "$last" -gt $((first + first / 10)) ]; then
    say "the state directory grew across rescales: $first -> $last bytes"
    bad=1
fi

rides_verdict
say "rescales committed: $(rescales); faults survived: $faults"
[ "$bad" = 0 ] || ok=0

if [ "$ok" = 1 ]; then
    say "PASS: exactly once across $faults faults around rescales from checkpoints and savepoints"
else
    say "FAIL (seed $seed)"
    rides_show_diff
    exit 1
fi
