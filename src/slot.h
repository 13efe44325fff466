/*-------------------------------------------------------------------------
 *
 * slot.h
 *	  The worker slots in shared memory that mirror what running pipeline
 *	  workers do.
 *
 * The catalog tables are the truth about pipelines; a slot only reports the
 * progress of the worker that owns it (for the streamflink.pipelines view)
 * and carries the request to stop.  There are streamflink.max_workers
 * slots, allocated at server start (the library must be preloaded).
 *
 * Locking: in_use, dboid, pipeline_id and pid change under the slots'
 * LWLock; the rest of a slot under its spinlock, 'mutex'.  A worker writes
 * its own slot's progress; backends read it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SLOT_H
#define STREAMFLINK_SLOT_H

#include "storage/spin.h"
#include "utils/timestamp.h"

#include "state.h"

#define SF_ERROR_LEN 512

/*
 * What a worker holding a slot is doing (the status column of
 * streamflink.pipelines, as slot_status_name() spells it).  A pipeline
 * without a slot is "starting" or "waiting for a worker slot": the view
 * says so itself.
 */
typedef enum SlotStatus
{
	SLOT_STARTING,
	SLOT_RECOVERING,
	SLOT_WAITING_FOR_BROKER,
	SLOT_RUNNING,
	SLOT_FAILED
} SlotStatus;

typedef struct WorkerSlot
{
	/* Set under the slots' LWLock. */
	bool		in_use;
	Oid			dboid;
	int32		pipeline_id;
	pid_t		pid;

	/* The rest under 'mutex'. */
	slock_t		mutex;
	bool		stop_requested;
	SlotStatus	status;
	char		error[SF_ERROR_LEN];
	TimestampTz started;
	int64		events;
	double		events_per_second;
	int64		rows_emitted;
	int64		dead_letters;
	int64		late_events;
	TimestampTz watermark;		/* DT_NOBEGIN until every partition has one */
	int64		lag;			/* messages behind the partitions' ends, -1 unknown */
	int64		last_checkpoint;
	TimestampTz last_checkpoint_at;
	int64		state_keys;		/* open windows held in state */
	int64		partial_matches_dropped;	/* CEP: discarded over the bound */
	StateMetrics state_metrics; /* RocksDB's numbers, streamflink.state_metrics */

	/* Savepoint requests (savepoint.c): one at a time, under 'mutex'. */
	uint64		savepoint_seq;	/* requests made by backends */
	uint64		savepoint_done_seq; /* requests answered by the worker */
	char		savepoint_name[64];
	bool		savepoint_pause;	/* a stop with savepoint */
	TransactionId savepoint_stop_xid;	/* ... and its transaction */
	int64		savepoint_checkpoint;	/* checkpoint of the last answer */
	/* A parallel pipeline's savepoint, as task 0 announced it to its tasks. */
	int64		savepoint_for_checkpoint;	/* the checkpoint it is taken as */
	int32		savepoint_row;	/* its streamflink.savepoint id */
	pid_t		savepoint_announcer;	/* task 0 that announced it */
} WorkerSlot;

/* streamflink.max_workers (only when preloaded: a server-start setting). */
extern void slot_define_settings(void);

/* Shared memory: its size (shmem_request_hook), its setup (shmem_startup_hook). */
extern Size slot_shmem_size(void);
extern void slot_shmem_init(void);

/* Errors out with a hint unless the library was preloaded. */
extern void slot_require_preload(void);

/* Number of slots (streamflink.max_workers), and of free ones. */
extern int	slot_count(void);
extern int	slot_free_count(void);

/*
 * For the worker: claim the slot of a pipeline (NULL with *taken if a live
 * worker holds it, NULL with *taken false if none is free), report in it,
 * release it.
 */
extern WorkerSlot *slot_claim(Oid dboid, int32 pipeline_id, bool *taken);
extern void slot_release(WorkerSlot *slot);
extern void slot_set_status(WorkerSlot *slot, SlotStatus status, const char *error);

/* The status as streamflink.pipelines shows it. */
extern const char *slot_status_name(SlotStatus status);

/* Ask the pipeline's worker, if any, to stop (its flag, then SIGTERM). */
extern void slot_request_stop(Oid dboid, int32 pipeline_id);

/*
 * The slot of a pipeline's worker and its pid, NULL if none.  The pointer
 * stays valid (slots live for the server's life) but may be claimed by
 * another pipeline later: compare dboid, pipeline_id and pid again.
 */
extern WorkerSlot *slot_find(Oid dboid, int32 pipeline_id, pid_t *pid);

/* Does a live worker run this pipeline?  Is this process its worker? */
extern bool slot_pipeline_has_worker(Oid dboid, int32 pipeline_id);
extern bool slot_am_worker_of(int32 pipeline_id);

/*
 * A consistent copy of every slot in use of database 'dboid' (for the
 * status view); returns how many, *copies palloc'd.
 */
extern int	slot_copy_all(Oid dboid, WorkerSlot **copies);

#endif							/* STREAMFLINK_SLOT_H */
