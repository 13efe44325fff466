/*-------------------------------------------------------------------------
 *
 * task.h
 *	  The tasks of running pipelines: one per worker, in shared memory, for
 *	  the streamflink.tasks view; and the busy / idle / backpressured clock
 *	  each worker keeps (Flink's busyTimeMsPerSecond, idleTimeMsPerSecond,
 *	  backPressuredTimeMsPerSecond).
 *
 * A pipeline of parallelism N has tasks 0..N-1; a single-worker pipeline
 * has task 0.  A worker claims its task's entry at start and writes only
 * its own entry (under the entry's spinlock); backends read copies.  The
 * entries are max_worker_processes (at least streamflink.max_workers),
 * allocated at server start next to the worker slots (slot.h), which stay
 * one per pipeline (its status).
 *
 * Locking: in_use, dboid, pipeline_id, task and pid change under the
 * slots' LWLock; the rest under the entry's 'mutex'.  No memory of its
 * own but the shared array.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_TASK_H
#define STREAMFLINK_TASK_H

#include "storage/spin.h"
#include "utils/timestamp.h"

#include "hot_keys.h"

/* Partitions listed per task in the view; more are counted, not listed. */
#define TASK_MAX_LISTED_PARTITIONS 64

/* What a task reports (copied into its entry about five times a second). */
typedef struct TaskMetrics
{
	int			parallelism;
	int			nparts;			/* partitions its source side reads */
	int32		partitions[TASK_MAX_LISTED_PARTITIONS];
	int			key_group_first;
	int			key_group_last;
	int64		events_in;		/* events its operator side took */
	int64		events_out;		/* events its source side routed (to itself too) */
	double		events_per_second;	/* taken by its operator side */
	double		busy_ms_per_second;
	double		idle_ms_per_second;
	double		backpressured_ms_per_second;
	double		input_queue_fill;	/* 0..1, the fullest input queue */
	double		output_queue_fill;	/* 0..1, the fullest output queue */
	TimestampTz watermark;		/* its operator's; DT_NOBEGIN none yet */
	int64		last_checkpoint;
	HotKeysReport hot;			/* its top keys (hot_keys.h) */
} TaskMetrics;

typedef struct TaskSlot
{
	/* Under the slots' LWLock. */
	bool		in_use;
	Oid			dboid;
	int32		pipeline_id;
	int			task;
	pid_t		pid;
	/* Under 'mutex'. */
	slock_t		mutex;
	TaskMetrics m;
} TaskSlot;

extern Size task_shmem_size(void);
extern void task_shmem_init(void);

/*
 * Claim the entry of task 'task' of a pipeline, waiting up to timeout_ms
 * for a live previous holder (a worker of the pipeline's previous run
 * still leaving) to go.  ereports ERROR if the holder stays, and if none is
 * free unless !required (a single worker runs without one: NULL).
 */
extern TaskSlot *task_claim(Oid dboid, int32 pipeline_id, int task, int timeout_ms,
							bool required);
extern void task_release(TaskSlot *slot);

/* Is this process a task of the pipeline (the catalog's worker_only)? */
extern bool task_am_task_of(int32 pipeline_id);
extern void task_report(TaskSlot *slot, const TaskMetrics *m);

/*
 * Copies (palloc'd) of the running tasks of this database's pipelines the
 * caller may see (streamflink.tasks' rule); *n of them.
 */
extern TaskSlot *task_copy_visible(int *n);

/* --- the busy / idle / backpressured clock -------------------------------- */

typedef enum TaskTime
{
	TASK_BUSY,
	TASK_IDLE,
	TASK_BACKPRESSURED
} TaskTime;

typedef struct TaskClock
{
	TaskTime	current;
	TimestampTz since;			/* of the current state */
	TimestampTz window_start;	/* of the second being measured */
	int64		us[3];			/* in this second, by state */
	double		ms_per_second[3];	/* of the last full second */
	/*
	 * A parallel task's source side whose output is full: backpressured,
	 * whatever the process does meanwhile (its operator side may be busy).
	 */
	bool		out_blocked;
	TimestampTz out_since;
	int64		out_us;
	double		out_ms_per_second;
} TaskClock;

extern void task_clock_init(TaskClock *clock);

/* From now on the task is 'state'. */
extern void task_clock_switch(TaskClock *clock, TaskTime state);

/* The source side's output is full (true) or has room again (false). */
extern void task_clock_output(TaskClock *clock, bool blocked);

/* Roll the second over if it is past (call now and then). */
extern void task_clock_tick(TaskClock *clock, TimestampTz now);

#endif							/* STREAMFLINK_TASK_H */
