/*-------------------------------------------------------------------------
 *
 * streamflink.h
 *	  Shared memory, settings and the worker slots that mirror what running
 *	  pipeline workers do.
 *
 * The catalog tables are the truth about pipelines; a slot only reports the
 * progress of the worker that owns it (for the streamflink.pipelines view)
 * and carries the request to stop.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_H
#define STREAMFLINK_H

#include <signal.h>

#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define SF_STATUS_LEN 32
#define SF_ERROR_LEN 512

typedef struct WorkerSlot
{
	/* Set under SfShared->lock. */
	bool		in_use;
	Oid			dboid;
	int32		pipeline_id;
	pid_t		pid;

	/* The rest under 'mutex'. */
	slock_t		mutex;
	bool		stop_requested;
	char		status[SF_STATUS_LEN];
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
} WorkerSlot;

typedef struct SfShared
{
	LWLock	   *lock;
	int			nslots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} SfShared;

/* Settings. */
extern int	sf_max_workers;
extern int	sf_state_cache_entries;
extern int	sf_batch_size;
extern bool sf_json_fast_path;

extern SfShared *sf_shared;

/*
 * Set by a pipeline worker's SIGTERM handler, which does not raise a
 * Postgres interrupt (the worker's loop decides between a requested stop
 * and anything else).  An operator step that can run long checks it (see
 * cep.c).
 */
extern volatile sig_atomic_t sf_termination_requested;

/* Errors out with a hint unless the library was preloaded. */
extern void sf_require_preload(void);

/* Errors out with a hint unless prepared transactions are enabled. */
extern void sf_require_prepared_xacts(void);

/* Directory of a pipeline's state (RocksDB database and its snapshots). */
extern char *sf_pipeline_dir(Oid dboid, int32 pipeline_id);

/* Slot helpers used by the worker. */
extern WorkerSlot *sf_claim_slot(Oid dboid, int32 pipeline_id, bool *taken);
extern void sf_release_slot(WorkerSlot *slot);
extern void sf_slot_set_status(WorkerSlot *slot, const char *status,
							   const char *error);

/*
 * Parsing a user's SQL fragment (an aggregate list, a condition) inside a
 * query we build around it: an error context callback that reports syntax
 * and analysis errors at their position in the fragment, as the user wrote
 * it, instead of in our query or in the SQL call that passed it.
 */
typedef struct SfFragmentErrorArg
{
	const char *what;			/* e.g. "aggregate list" */
	const char *fragment;		/* the user's text */
	const char *query;			/* the query parsed, containing it */
	int			offset;			/* where (in bytes) it starts in the query */
} SfFragmentErrorArg;

extern void sf_fragment_error_callback(void *arg);

/*
 * The source message whose event a worker is processing, or partition -1.
 * The worker sets it around each message; an operator that defers events
 * (CEP buffers them until the watermark) keeps it with the event and sets
 * it again while it processes the event.  A data error raised meanwhile is
 * then the message's fault: the restarted worker sends that message to the
 * dead-letter table instead of failing on it again (see worker.c).
 */
typedef struct SfMessagePos
{
	int32		partition;
	int64		offset;
} SfMessagePos;

extern SfMessagePos sf_processing;

/*
 * The message whose processing failed with a data error in this worker's
 * previous run (partition -1: none), and that error.  Whoever meets it
 * (the worker reading it, or an operator processing a deferred event)
 * sends it to the dead-letter table instead of processing it, and sets
 * sf_poison_skipped.
 */
extern SfMessagePos sf_poison;
extern char *sf_poison_error;
extern bool sf_poison_skipped;

static inline bool
sf_message_is_poison(SfMessagePos pos)
{
	return sf_poison.partition >= 0 && pos.partition == sf_poison.partition &&
		pos.offset == sf_poison.offset;
}

/*
 * Register a pipeline's worker (streamflink.start() and the launcher).  The
 * worker first waits for transaction 'starter' to end, if valid.
 */
extern bool sf_register_worker(Oid dboid, int32 pipeline_id, TransactionId starter);

/*
 * Worker lifecycle, for the catalog's triggers (tenancy.c): the actions take
 * effect when the transaction commits.
 */
extern void sf_start_at_commit(int32 pipeline_id);
extern void sf_stop_at_commit(int32 pipeline_id);
extern void sf_remove_state_at_commit(int32 pipeline_id);
extern void sf_wait_stopped(int32 pipeline_id, int timeout_ms);
extern bool sf_pipeline_has_worker(Oid dboid, int32 pipeline_id);
extern bool sf_am_worker_of(int32 pipeline_id);

#endif							/* STREAMFLINK_H */
