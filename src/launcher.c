/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Starting and stopping pipeline workers: after a server start, the
 *	  pipelines that were running; at commit, those a transaction started
 *	  or stopped.
 *
 * Dynamic background workers are not re-registered when the server
 * restarts, so a static launcher does it.  It connects to no database and
 * reads pg_database (a shared catalog), then starts one short-lived starter
 * per database; a starter looks for the extension in its database and
 * registers a worker for each pipeline marked running, then exits.
 *
 * The launcher is BGW_NEVER_RESTART: after a worker crash the postmaster
 * restarts the crashed pipeline workers themselves (bgw_restart_time), and
 * a second launcher run would only race them.
 *
 * Starts and stops take effect only when the transaction that asked for
 * them commits, so a rolled-back streamflink.start() leaves nothing
 * running.  A stop is sent at commit (as logical replication's launcher is
 * woken at commit).  A start registers the worker at once, so that a
 * start which cannot get a background worker fails with the reason; the
 * worker then waits for the starting transaction to end and leaves if the
 * pipeline is not marked running (see launcher_start_at_commit).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "common/file_utils.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "launcher.h"
#include "slot.h"
#include "state.h"

PGDLLEXPORT void streamflink_launcher_main(Datum arg);
PGDLLEXPORT void streamflink_starter_main(Datum arg);

void
launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "streamflink", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "streamflink_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "streamflink launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "streamflink launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
register_starter(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "streamflink", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "streamflink_starter_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "streamflink starter %u", dboid);
	strlcpy(worker.bgw_type, "streamflink starter", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(WARNING,
				(errmsg("streamflink launcher could not start a worker for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
	else
	{
		/* One at a time: each needs a worker slot only briefly. */
		WaitForBackgroundWorkerShutdown(handle);
	}
}

void
streamflink_launcher_main(Datum arg)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbs = NIL;
	ListCell   *lc;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
			dbs = lappend_oid(dbs, db->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();

	foreach(lc, dbs)
		register_starter(lfirst_oid(lc));

	proc_exit(0);
}

void
streamflink_starter_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	int			ret;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "starting streamflink pipelines");

	ret = SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'streamflink'", true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		ret = SPI_execute("SELECT id FROM streamflink.pipeline WHERE state = 'running' ORDER BY id",
						  true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.pipeline: %d", ret);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			int32		id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));

			if (!launcher_register_worker(dboid, id, InvalidTransactionId))
				ereport(WARNING,
						(errmsg("could not start the worker of streamflink pipeline %d", id),
						 errhint("Raise max_worker_processes.")));
			else
				ereport(LOG, (errmsg("streamflink: started pipeline %d", id)));
		}
	}

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}

bool
launcher_register_worker(Oid dboid, int32 pipeline_id, TransactionId starter)
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

static void
launcher_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event == XACT_EVENT_COMMIT)
	{
		foreach(lc, pending_actions)
		{
			PendingAction *a = (PendingAction *) lfirst(lc);

			if (a->kind == PENDING_REMOVE_STATE)
			{
				char	   *dir = state_pipeline_dir(MyDatabaseId, a->pipeline_id);
				struct stat st;

				/* A pipeline never started has no state directory. */
				if (stat(dir, &st) == 0 && !rmtree(dir, true))
					ereport(WARNING,
							(errmsg("could not remove state directory \"%s\"", dir)));
				continue;
			}

			slot_request_stop(MyDatabaseId, a->pipeline_id);
		}
	}

	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		pending_actions = NIL;	/* memory went with TopTransactionContext */
}

static void
add_pending(PendingKind kind, int32 pipeline_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingAction *a = palloc(sizeof(PendingAction));

	a->kind = kind;
	a->pipeline_id = pipeline_id;
	pending_actions = lappend(pending_actions, a);
	MemoryContextSwitchTo(old);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(launcher_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/* Errors out with a hint unless prepared transactions are enabled. */
static void
require_prepared_xacts(void)
{
	if (max_prepared_xacts <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamflink needs prepared transactions, but max_prepared_transactions is 0"),
				 errhint("Set max_prepared_transactions to at least the number of pipelines (for example 64) and restart the server.")));
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
launcher_start_at_commit(int32 pipeline_id)
{
	slot_require_preload();
	require_prepared_xacts();

	/* A worker still finishing its stop must be gone first. */
	launcher_wait_stopped(pipeline_id, 30000);

	if (slot_free_count() <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many running pipelines"),
				 errdetail("All %d streamflink worker slots are in use.", slot_count()),
				 errhint("Stop a pipeline, or raise streamflink.max_workers and restart the server.")));

	if (!launcher_register_worker(MyDatabaseId, pipeline_id, GetTopTransactionId()))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for pipeline %d", pipeline_id),
				 errdetail("All max_worker_processes (%d) background worker slots are in use.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes (each running pipeline needs one) and restart the server.")));
}

/* Ask the pipeline's worker to stop when the transaction commits. */
void
launcher_stop_at_commit(int32 pipeline_id)
{
	slot_require_preload();
	add_pending(PENDING_STOP, pipeline_id);
}

/*
 * Wait until no worker runs the pipeline: a stopping worker finishes with a
 * checkpoint, and a new start or a drop must not overlap with it.
 */
void
launcher_wait_stopped(int32 pipeline_id, int timeout_ms)
{
	for (int waited = 0;; waited += 100)
	{
		/* false without shared memory: no worker then */
		if (!slot_pipeline_has_worker(MyDatabaseId, pipeline_id))
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

/* Remove a dropped pipeline's state directory when the drop commits. */
void
launcher_remove_state_at_commit(int32 pipeline_id)
{
	add_pending(PENDING_REMOVE_STATE, pipeline_id);
}
