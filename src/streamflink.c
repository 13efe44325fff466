/*-------------------------------------------------------------------------
 *
 * streamflink.c
 *	  Module load: settings, shared memory, and the actions (called by the
 *	  catalog's triggers) that start and stop pipeline workers.
 *
 * Starts and stops take effect only when the transaction that asked for
 * them commits, so a rolled-back streamflink.start() leaves nothing
 * running.  A stop is sent at commit (as logical replication's launcher is
 * woken at commit).  A start registers the worker at once, so that a
 * start which cannot get a background worker fails with the reason; the
 * worker then waits for the starting transaction to end and leaves if the
 * pipeline is not marked running (see sf_start_at_commit).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include <signal.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/twophase.h"
#include "common/file_utils.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "checkpoint.h"
#include "streamflink.h"
#include "ddl_guard.h"
#include "launcher.h"
#include "producer.h"
#include "tenancy.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

int			sf_max_workers = 16;
int			sf_state_cache_entries = 200000;
int			sf_batch_size = 5000;
bool		sf_json_fast_path = true;

SfShared   *sf_shared = NULL;

volatile sig_atomic_t sf_termination_requested = false;
SfMessagePos sf_processing = {-1, -1};
SfMessagePos sf_poison = {-1, -1};
char	   *sf_poison_error = NULL;
bool		sf_poison_skipped = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* What to do with a pipeline when the current transaction commits. */
typedef enum PendingKind
{
	PENDING_STOP,
	PENDING_REMOVE_STATE
} PendingKind;

typedef struct PendingAction
{
	PendingKind kind;
	int32		pipeline_id;
} PendingAction;

static List *pending_actions = NIL;
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(streamflink_worker_status);

static Size
sf_shmem_size(void)
{
	return add_size(offsetof(SfShared, slots),
					mul_size(sizeof(WorkerSlot), sf_max_workers));
}

static void
sf_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sf_shmem_size());
	RequestNamedLWLockTranche("streamflink", 1);
}

static void
sf_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sf_shared = ShmemInitStruct("streamflink", sf_shmem_size(), &found);
	if (!found)
	{
		memset(sf_shared, 0, sf_shmem_size());
		sf_shared->lock = &(GetNamedLWLockTranche("streamflink"))->lock;
		sf_shared->nslots = sf_max_workers;
		for (int i = 0; i < sf_max_workers; i++)
			SpinLockInit(&sf_shared->slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	DefineCustomBoolVariable("streamflink.json_fast_path",
							 "Decodes JSON payloads with streamflink's one-pass scanner.",
							 "Off: Postgres' own JSON parser decodes every payload (slower; "
							 "the reference the scanner is tested against).",
							 &sf_json_fast_path, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.state_cache_entries",
							"Window states a worker keeps in memory between checkpoints.",
							"Above this, states are written back to RocksDB early; "
							"it bounds a worker's memory whatever the number of keys.",
							&sf_state_cache_entries, 200000, 100, INT_MAX / 2,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.batch_size",
							"Kafka messages a worker takes in one batch.",
							NULL,
							&sf_batch_size, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	producer_define_settings();
	checkpoint_define_settings();

	/* Also without preloading: a drop in any session must be checked. */
	ddl_guard_install();

	/*
	 * Without shared_preload_libraries the functions still load (to define
	 * pipelines and to say what is missing when one is started), but a
	 * server-start setting cannot be defined after startup.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("streamflink.max_workers",
								"Maximum number of pipeline workers running at once.",
								"Each running pipeline uses one background worker; "
								"max_worker_processes must leave room for them.",
								&sf_max_workers, 16, 1, 1024,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);

	/*
	 * Last: placeholders of the prefix not defined by now (misspelt
	 * settings in postgresql.conf) are removed with a warning, so every
	 * setting must be defined before.
	 */
	MarkGUCPrefixReserved("streamflink");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sf_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sf_shmem_startup;

	launcher_register();
}

void
sf_require_preload(void)
{
	if (sf_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamflink must be loaded via shared_preload_libraries"),
				 errhint("Add streamflink to shared_preload_libraries in postgresql.conf and restart the server.")));
}

void
sf_require_prepared_xacts(void)
{
	if (max_prepared_xacts <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamflink needs prepared transactions, but max_prepared_transactions is 0"),
				 errhint("Set max_prepared_transactions to at least the number of pipelines (for example 64) and restart the server.")));
}

void
sf_fragment_error_callback(void *arg)
{
	SfFragmentErrorArg *fa = (SfFragmentErrorArg *) arg;
	int			pos = geterrposition();
	int			len = strlen(fa->fragment);

	if (pos > 0)
	{
		/*
		 * Positions are 1-based characters; the fragment is the query now.
		 * An error past its end (at what we appended, as in "count(*" then
		 * FROM) is at its end.
		 */
		pos -= pg_mbstrlen_with_len(fa->query, fa->offset);
		errposition(0);
		internalerrposition(Min(Max(pos, 1), Max(pg_mbstrlen_with_len(fa->fragment, len), 1)));
		internalerrquery(fa->fragment);
	}
	errcontext("in %s \"%s\"", fa->what, fa->fragment);
}

char *
sf_pipeline_dir(Oid dboid, int32 pipeline_id)
{
	return psprintf("%s/streamflink/%u/%d", DataDir, dboid, pipeline_id);
}

/*
 * The slot of a pipeline, or NULL.  A pipeline has at most one: a worker
 * claiming a slot takes over its pipeline's before any free one.  The
 * caller holds sf_shared->lock.
 */
static WorkerSlot *
pipeline_slot(Oid dboid, int32 pipeline_id)
{
	for (int i = 0; i < sf_shared->nslots; i++)
	{
		WorkerSlot *s = &sf_shared->slots[i];

		if (s->in_use && s->dboid == dboid && s->pipeline_id == pipeline_id)
			return s;
	}
	return NULL;
}

/* Is the process holding a slot alive? */
static bool
slot_pid_alive(WorkerSlot *s)
{
	return s->pid != 0 && kill(s->pid, 0) == 0;
}

/*
 * Claim the slot of a pipeline.  Returns NULL with *taken set if a live
 * worker already holds it (two workers of one pipeline would both consume
 * and both write), NULL with *taken false if no slot is free.
 */
WorkerSlot *
sf_claim_slot(Oid dboid, int32 pipeline_id, bool *taken)
{
	WorkerSlot *slot;

	LWLockAcquire(sf_shared->lock, LW_EXCLUSIVE);
	slot = pipeline_slot(dboid, pipeline_id);
	if (slot != NULL && slot->pid != MyProcPid && slot_pid_alive(slot))
	{
		LWLockRelease(sf_shared->lock);
		*taken = true;
		return NULL;
	}
	for (int i = 0; slot == NULL && i < sf_shared->nslots; i++)
		if (!sf_shared->slots[i].in_use)
			slot = &sf_shared->slots[i];
	*taken = false;
	if (slot == NULL)
	{
		LWLockRelease(sf_shared->lock);
		return NULL;
	}

	slot->in_use = true;
	slot->dboid = dboid;
	slot->pipeline_id = pipeline_id;
	slot->pid = MyProcPid;
	SpinLockAcquire(&slot->mutex);
	slot->stop_requested = false;
	strlcpy(slot->status, "starting", SF_STATUS_LEN);
	slot->error[0] = '\0';
	slot->started = GetCurrentTimestamp();
	slot->events = 0;
	slot->events_per_second = 0;
	slot->rows_emitted = 0;
	slot->dead_letters = 0;
	slot->late_events = 0;
	slot->watermark = DT_NOBEGIN;
	slot->lag = -1;
	slot->last_checkpoint = 0;
	slot->last_checkpoint_at = 0;
	slot->state_keys = 0;
	slot->partial_matches_dropped = 0;
	SpinLockRelease(&slot->mutex);
	LWLockRelease(sf_shared->lock);
	return slot;
}

void
sf_release_slot(WorkerSlot *slot)
{
	LWLockAcquire(sf_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->in_use = false;
		slot->pid = 0;
	}
	LWLockRelease(sf_shared->lock);
}

void
sf_slot_set_status(WorkerSlot *slot, const char *status, const char *error)
{
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->status, status, SF_STATUS_LEN);
	strlcpy(slot->error, error ? error : "", SF_ERROR_LEN);
	SpinLockRelease(&slot->mutex);
}

bool
sf_register_worker(Oid dboid, int32 pipeline_id, TransactionId starter)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* A crashed worker comes back and recovers from its last checkpoint. */
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "streamflink", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "streamflink_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "streamflink pipeline %d", pipeline_id);
	strlcpy(worker.bgw_type, "streamflink pipeline", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(pipeline_id);
	memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
	memcpy(worker.bgw_extra + sizeof(Oid), &starter, sizeof(TransactionId));
	/* With the database's tablespace, the worker sees a dropped database. */
	memcpy(worker.bgw_extra + sizeof(Oid) + sizeof(TransactionId), &MyDatabaseTableSpace,
		   sizeof(Oid));
	worker.bgw_notify_pid = 0;

	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

static void
sf_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event == XACT_EVENT_COMMIT)
	{
		foreach(lc, pending_actions)
		{
			PendingAction *a = (PendingAction *) lfirst(lc);
			WorkerSlot *s;

			if (a->kind == PENDING_REMOVE_STATE)
			{
				char	   *dir = sf_pipeline_dir(MyDatabaseId, a->pipeline_id);
				struct stat st;

				/* A pipeline never started has no state directory. */
				if (stat(dir, &st) == 0 && !rmtree(dir, true))
					ereport(WARNING,
							(errmsg("could not remove state directory \"%s\"", dir)));
				continue;
			}

			LWLockAcquire(sf_shared->lock, LW_SHARED);
			s = pipeline_slot(MyDatabaseId, a->pipeline_id);
			if (s != NULL && s->pid != 0)
			{
				SpinLockAcquire(&s->mutex);
				s->stop_requested = true;
				SpinLockRelease(&s->mutex);
				kill(s->pid, SIGTERM);
			}
			LWLockRelease(sf_shared->lock);
		}
	}

	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		pending_actions = NIL;	/* memory went with TopTransactionContext */
}

static void
sf_add_pending(PendingKind kind, int32 pipeline_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingAction *a = palloc(sizeof(PendingAction));

	a->kind = kind;
	a->pipeline_id = pipeline_id;
	pending_actions = lappend(pending_actions, a);
	MemoryContextSwitchTo(old);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(sf_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/* Free worker slots (streamflink.max_workers less the running workers). */
static int
free_slots(void)
{
	int			used = 0;

	LWLockAcquire(sf_shared->lock, LW_SHARED);
	for (int i = 0; i < sf_shared->nslots; i++)
		if (sf_shared->slots[i].in_use)
			used++;
	LWLockRelease(sf_shared->lock);
	return sf_shared->nslots - used;
}

/*
 * The actions below are not SQL functions: the catalog's triggers call them
 * (see tenancy.c) when a pipeline's desired state changes or its row is
 * deleted, so whoever may change the row, and only they, may act on its
 * worker.
 *
 * A start registers the pipeline's worker now, so that a start that cannot
 * get a background worker fails here, with the reason, instead of leaving
 * the pipeline "starting" for ever.  The worker waits for this transaction
 * to end (its xid travels in bgw_extra) and leaves if the pipeline is then
 * not marked running: a rolled-back start starts nothing.
 */
void
sf_start_at_commit(int32 pipeline_id)
{
	sf_require_preload();
	sf_require_prepared_xacts();

	/* A worker still finishing its stop must be gone first. */
	sf_wait_stopped(pipeline_id, 30000);

	if (free_slots() <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many running pipelines"),
				 errdetail("All %d streamflink worker slots are in use.", sf_shared->nslots),
				 errhint("Stop a pipeline, or raise streamflink.max_workers and restart the server.")));

	if (!sf_register_worker(MyDatabaseId, pipeline_id, GetTopTransactionId()))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for pipeline %d", pipeline_id),
				 errdetail("All max_worker_processes (%d) background worker slots are in use.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes (each running pipeline needs one) and restart the server.")));
}

PG_FUNCTION_INFO_V1(streamflink_free_worker_slots);

Datum
streamflink_free_worker_slots(PG_FUNCTION_ARGS)
{
	if (sf_shared == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT32(free_slots());
}

/* Ask the pipeline's worker to stop when the transaction commits. */
void
sf_stop_at_commit(int32 pipeline_id)
{
	sf_require_preload();
	sf_add_pending(PENDING_STOP, pipeline_id);
}

/*
 * Wait until no worker runs the pipeline: a stopping worker finishes with a
 * checkpoint, and a new start or a drop must not overlap with it.
 */
void
sf_wait_stopped(int32 pipeline_id, int timeout_ms)
{
	if (sf_shared == NULL)
		return;
	for (int waited = 0;; waited += 100)
	{
		if (!sf_pipeline_has_worker(MyDatabaseId, pipeline_id))
			break;
		if (waited >= timeout_ms)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("the worker of pipeline %d is still stopping", pipeline_id),
					 errhint("Try again in a moment.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Does a live worker run this pipeline? */
bool
sf_pipeline_has_worker(Oid dboid, int32 pipeline_id)
{
	WorkerSlot *s;
	bool		running;

	if (sf_shared == NULL)
		return false;
	LWLockAcquire(sf_shared->lock, LW_SHARED);
	s = pipeline_slot(dboid, pipeline_id);
	running = s != NULL && slot_pid_alive(s);
	LWLockRelease(sf_shared->lock);
	return running;
}

/* Is this process the worker of the pipeline? */
bool
sf_am_worker_of(int32 pipeline_id)
{
	WorkerSlot *s;
	bool		result;

	if (sf_shared == NULL)
		return false;
	LWLockAcquire(sf_shared->lock, LW_SHARED);
	s = pipeline_slot(MyDatabaseId, pipeline_id);
	result = s != NULL && s->pid == MyProcPid;
	LWLockRelease(sf_shared->lock);
	return result;
}

/* Remove a dropped pipeline's state directory when the drop commits. */
void
sf_remove_state_at_commit(int32 pipeline_id)
{
	sf_add_pending(PENDING_REMOVE_STATE, pipeline_id);
}

Datum
streamflink_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	List	   *visible = NIL;
	bool		all_visible = superuser();

	InitMaterializedSRF(fcinfo, 0);
	if (sf_shared == NULL)
		PG_RETURN_VOID();

	/*
	 * A worker's status and error may tell about its data: a role sees the
	 * workers of the pipelines it may see, as row-level security on the
	 * catalog decides (read as the caller).
	 */
	if (!all_visible)
		visible = sf_visible_pipelines();

	LWLockAcquire(sf_shared->lock, LW_SHARED);
	for (int i = 0; i < sf_shared->nslots; i++)
	{
		WorkerSlot *s = &sf_shared->slots[i];
		WorkerSlot	copy;
		Datum		values[16];
		bool		nulls[16];

		if (!s->in_use || s->dboid != MyDatabaseId)
			continue;
		if (!all_visible && !list_member_int(visible, s->pipeline_id))
			continue;
		SpinLockAcquire(&s->mutex);
		memcpy(&copy, s, sizeof(WorkerSlot));
		SpinLockRelease(&s->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(copy.pipeline_id);
		values[1] = Int32GetDatum(copy.pid);
		values[2] = CStringGetTextDatum(copy.status);
		if (copy.error[0])
			values[3] = CStringGetTextDatum(copy.error);
		else
			nulls[3] = true;
		values[4] = TimestampTzGetDatum(copy.started);
		values[5] = Int64GetDatum(copy.events);
		values[6] = Float8GetDatum(copy.events_per_second);
		values[7] = Int64GetDatum(copy.rows_emitted);
		values[8] = Int64GetDatum(copy.dead_letters);
		values[9] = Int64GetDatum(copy.late_events);
		if (TIMESTAMP_NOT_FINITE(copy.watermark))
			nulls[10] = true;
		else
			values[10] = TimestampTzGetDatum(copy.watermark);
		values[11] = Int64GetDatum(copy.lag);
		nulls[11] = copy.lag < 0;
		values[12] = Int64GetDatum(copy.last_checkpoint);
		nulls[12] = copy.last_checkpoint == 0;
		values[13] = TimestampTzGetDatum(copy.last_checkpoint_at);
		nulls[13] = copy.last_checkpoint_at == 0;
		values[14] = Int64GetDatum(copy.state_keys);
		values[15] = Int64GetDatum(copy.partial_matches_dropped);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(sf_shared->lock);
	PG_RETURN_VOID();
}
