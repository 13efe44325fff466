/*-------------------------------------------------------------------------
 *
 * savepoint.h
 *	  Savepoints: checkpoints a user asked for by name, kept until dropped,
 *	  and the way a pipeline starts again from one.
 *
 * A savepoint is an ordinary checkpoint taken by the coordinator
 * (checkpoint.h) with one more participant: registered after the sink and
 * before the epoch transaction, its prepare hard-links the checkpoint's
 * state snapshot into the savepoint's directory and writes the savepoint's
 * row (with the positions, watermark, state format, parallelism and the
 * definition its state means, streamflink._state_meaning) into the epoch
 * transaction.  So the savepoint exists exactly when its checkpoint is
 * complete: recovery commits or rolls it back with the checkpoint.
 *
 * Files: <pipeline dir>/savepoints/<name>/<lo>-<hi>, one state snapshot
 * per key-group range (a single worker's 0-127; each task of a parallel
 * pipeline adds its own range), and a restore builds each task's snapshot
 * of the pipeline's parallelism from the ranges that overlap its own.
 *
 * Restoring is making the savepoint the pipeline's last completed
 * checkpoint: the worker, before recovery, gives it the next checkpoint id
 * (above any in-doubt one), links its snapshot as chk-<id> and copies its
 * positions, in one transaction that also clears the request.  Recovery
 * then runs as after any crash.
 *
 * A backend asks the running worker for a savepoint through the worker's
 * slot (slot.h) and waits for the answer; a stop with savepoint also
 * pauses the worker until the stopping transaction ends.
 *
 * Memory: the participant lives in the worker's TopMemoryContext; backend
 * functions allocate in the caller's context.  Threads: none of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SAVEPOINT_H
#define STREAMFLINK_SAVEPOINT_H

#include "checkpoint.h"
#include "slot.h"
#include "state_rescale.h"

/* Savepoint names are like pipeline names: letters, digits, underscores. */
#define SAVEPOINT_NAME_LEN 48

typedef struct SavepointParticipant
{
	const char *dir;			/* the pipeline's state directory */
	PipelineDef *def;
	uint64		handled;		/* last request seen (slot's savepoint_seq) */
	char		pending[SAVEPOINT_NAME_LEN + 1];	/* "" unless one is being taken */
	char		link_dir[MAXPGPATH];	/* its files, while being taken */
	bool		pause;			/* a stop with savepoint: pause after it */
	TransactionId stop_xid;		/* the stopping transaction */
	bool		paused;
	/* Parallel pipelines (savepoint_set_task): this task and its range. */
	int			task;
	int			ntasks;			/* 0: a single worker */
	KeyGroupRange range;
	int64		taking;			/* task 0: the checkpoint being the savepoint */
	int32		row;			/* task 0: its row's id */
	bool		aligned;		/* the checkpoint being aligned is a savepoint */
	int64		pause_checked;	/* savepoint_task_paused: last checkpoint seen */
	bool		pause_seen;		/* ... and whether it was to pause after */
} SavepointParticipant;

/* The participant (register it after the sink, before the epoch). */
extern CheckpointParticipant savepoint_participant(SavepointParticipant *sp,
												   const char *dir, PipelineDef *def,
												   WorkerSlot *slot);

/*
 * Parallel pipelines: every task registers the participant (slot NULL for
 * tasks other than 0), then says which task it is.  Each task links its
 * own snapshot as savepoints/<name>/<first>-<last key group> and writes its
 * partitions' positions in its prepared transaction; task 0 writes the
 * savepoint's row with the decision (savepoint_record), so the savepoint
 * exists exactly when every task's part of its checkpoint does.
 */
extern void savepoint_set_task(SavepointParticipant *sp, int task, int ntasks);

/*
 * Task 0's loop: a savepoint was asked for and is announced to the tasks
 * as checkpoint 'next_id', which the caller triggers now (true); later,
 * savepoint_parallel_done answers the request once that checkpoint is
 * complete.
 */
extern bool savepoint_parallel_request(SavepointParticipant *sp, WorkerSlot *slot, int64 next_id);
extern void savepoint_parallel_done(SavepointParticipant *sp, WorkerSlot *slot, int64 checkpoint_id);

/* Task 0, in the decision's transaction (SPI connected): the savepoint's row. */
extern void savepoint_record(SavepointParticipant *sp, Checkpoint *chk, int parallelism,
							 int64 state_bytes, TimestampTz watermark);

/*
 * Any task of a parallel pipeline, given its last completed checkpoint: a
 * stop with savepoint holds every task after the savepoint (see
 * savepoint_paused).
 */
extern bool savepoint_task_paused(SavepointParticipant *sp, int64 checkpoint_id);

/*
 * Any task of a parallel pipeline: whether checkpoint 'id' is a savepoint.
 * A savepoint is always aligned (as Flink's): a restore, perhaps into
 * other tasks, has no channel state to replay.
 */
extern bool savepoint_is_checkpoint(SavepointParticipant *sp, int64 id);

/*
 * In the worker's loop: a savepoint was asked for; take a checkpoint now
 * (sp->pending names it), then call savepoint_taken.
 */
extern bool savepoint_requested(SavepointParticipant *sp, WorkerSlot *slot);
extern void savepoint_taken(SavepointParticipant *sp, WorkerSlot *slot, int64 checkpoint_id);

/*
 * A stop with savepoint holds the worker after its savepoint until the
 * stopping transaction ends: true while it must not process anything (the
 * stop arrives with its commit), false once it rolled back.
 */
extern bool savepoint_paused(SavepointParticipant *sp);

/*
 * In the worker, before checkpoint_recover, outside any transaction: if
 * start(from_savepoint) asked for it, make the savepoint the last
 * completed checkpoint.  'dir' is the pipeline's directory: the snapshot
 * of every task of def->parallelism is built (task t's in task-t), each
 * from the savepoint's ranges that overlap its own, so a parallel
 * pipeline's task 0 calls it before it starts the other tasks.
 */
extern void savepoint_prepare_restore(Oid dboid, PipelineDef *def, const char *dir);

/*
 * In the worker, after checkpoint_recover, outside any transaction: remove
 * the files of savepoints whose checkpoint never completed.
 */
extern void savepoint_remove_orphans(PipelineDef *def, const char *dir);

/* Directory of a savepoint's files. */
extern char *savepoint_dir(Oid dboid, int32 pipeline_id, const char *name);

#endif							/* STREAMFLINK_SAVEPOINT_H */
