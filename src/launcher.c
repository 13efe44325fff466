/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Starts, after a server start, the pipelines that were running.
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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/snapmgr.h"

#include "streamflink.h"
#include "launcher.h"

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

			if (!sf_register_worker(dboid, id, InvalidTransactionId))
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
