/*-------------------------------------------------------------------------
 *
 * rescale.h
 *	  Rescaling a stopped pipeline: its state laid out again for a new
 *	  parallelism, from a savepoint (savepoint.h) or from its last completed
 *	  checkpoint.
 *
 * The state of a pipeline of parallelism M is M snapshots per checkpoint,
 * one per task's key-group range (task 0's in the pipeline's directory,
 * task t's in task-t).  A pipeline whose parallelism differs from that of
 * its last completed checkpoint L (start(pipeline, parallelism => N)) is
 * rescaled by task 0 before any other task starts: every task's in-doubt
 * transaction is resolved first (the new tasks resolve only their own), then
 * each new task's snapshot chk-<L+1> is built from the old snapshots chk-L
 * whose ranges overlap its own (state_rescale.h), and one transaction
 * records checkpoint L+1 with L's positions and watermark and parallelism
 * N.  Recovery then runs as after any crash: each task takes the positions
 * of the partitions it reads now.  A crash before that commit leaves L the
 * last checkpoint, so the next start builds again; after it, the task
 * directories no new task uses are removed (again at every start until
 * they are gone).
 *
 * Memory: the caller's context.  Threads: none of its own (RocksDB's, with
 * signals blocked, inside state.c).  Runs in task 0 (or the single
 * worker), outside any transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_RESCALE_H
#define STREAMFLINK_RESCALE_H

#include "catalog.h"
#include "state_rescale.h"

/*
 * Build checkpoint 'id''s snapshot of every task of 'ntasks' under the
 * pipeline directory 'dir' from the snapshots dirs[0..n-1] of key-group
 * ranges ranges[0..n-1] (covering every key group once): a range equal to
 * a task's is linked as is, others merged by range scans.  'failpoint' is
 * passed to checkpoint_failpoint after each task.
 */
extern void rescale_build_task_snapshots(const char *dir, int64 id, int ntasks,
										 char **dirs, KeyGroupRange *ranges, int n,
										 const char *failpoint);

/*
 * Before the state's layout changes: wait until no task of the pipeline's
 * previous run is alive (tasks 1 up to the greater of 'ntasks' and the
 * last checkpoint's parallelism), then resolve every task's in-doubt
 * prepared transactions.
 */
extern void rescale_quiesce(Oid dboid, PipelineDef *def, int ntasks);

/*
 * The id of a new checkpoint of pipeline 'pipeline_id' that replaces its
 * state (a rescale or a savepoint restore): above every completed one and
 * every prepared transaction of the pipeline (gids as checkpoint.c builds
 * them), so that recovery rolls those back and never takes the new row for
 * their decision.  In a transaction, with SPI connected.
 */
extern int64 rescale_next_checkpoint_id(Oid dboid, int32 pipeline_id);

/*
 * Task 0 (or the single worker), before recovery, when no savepoint
 * restore is pending: rescale from the last completed checkpoint if the
 * pipeline's parallelism differs from its.
 */
extern void rescale_from_checkpoint(Oid dboid, PipelineDef *def, const char *dir);

/*
 * After a rescale to checkpoint 'id' committed: remove the older snapshots
 * of the tasks 0..ntasks-1 (the old layout's), which recovery never reads.
 */
extern void rescale_prune(const char *dir, int ntasks, int64 id);

/*
 * Remove the task directories of the pipeline directory 'dir' that no task
 * uses: those of tasks at or above both the pipeline's parallelism and that
 * of its last completed checkpoint.
 */
extern void rescale_remove_unused(Oid dboid, PipelineDef *def, const char *dir);

#endif							/* STREAMFLINK_RESCALE_H */
