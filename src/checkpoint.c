/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  Epoch transactions, two-phase commit and recovery of a pipeline.
 *
 * PREPARE TRANSACTION and COMMIT PREPARED cannot go through SPI; the worker
 * drives the transaction block itself (BeginTransactionBlock,
 * PrepareTransactionBlock, FinishPreparedTransaction), as the utility
 * commands do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "common/file_perm.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "checkpoint.h"
#include "state.h"

#define GID_PREFIX "streamflink"

/*
 * Completed checkpoints kept in streamflink.checkpoint and
 * checkpoint_offset per pipeline; older rows are deleted when a checkpoint
 * completes, in its decision transaction.
 */
int			checkpoint_history = 100;

void
checkpoint_define_settings(void)
{
	DefineCustomIntVariable("streamflink.checkpoint_history",
							"Completed checkpoints kept in the catalog per pipeline.",
							"Rows of older checkpoints (streamflink.checkpoint, checkpoint_offset) "
							"are deleted as new ones complete.",
							&checkpoint_history, 100, 2, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * Fault injection for the crash tests: if the file DataDir/streamflink/
 * failpoint names this point ("after_prepare" or "after_decision"), the
 * file is removed and the worker kills itself with SIGKILL, exactly where
 * a crash leaves an in-doubt prepared transaction to be rolled back or
 * committed by recovery.  One stat() per checkpoint when unused.
 */
static void
failpoint(const char *name)
{
	char		path[MAXPGPATH];
	char		buf[64];
	FILE	   *f;
	size_t		n;

	snprintf(path, sizeof(path), "%s/streamflink/failpoint", DataDir);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (strncmp(buf, name, strlen(name)) != 0)
		return;
	unlink(path);
	ereport(LOG, (errmsg("streamflink: failpoint %s: crashing on purpose", name)));
	kill(MyProcPid, SIGKILL);
	pg_usleep(10 * 1000 * 1000L);	/* SIGKILL is not deferred; never reached */
}

/*
 * The gid is built in a caller's buffer: PREPARE frees the transaction's
 * memory, and the gid is needed after it.
 */
static void
gid_for(char *gid, Oid dboid, int32 pipeline_id, int64 id)
{
	/* One worker per pipeline for now: worker 0. */
	snprintf(gid, GIDSIZE, GID_PREFIX ":%u:%d:" INT64_FORMAT ":0", dboid, pipeline_id, id);
}

int
checkpoint_resolve_in_doubt(Oid dboid, int32 pipeline_id)
{
	char	   *pattern = psprintf(GID_PREFIX ":%u:%d:%%", dboid, pipeline_id);
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(pattern), Int32GetDatum(pipeline_id)};
	List	   *gids = NIL;
	List	   *commit = NIL;
	ListCell   *lc,
			   *lc2;
	int			ret;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	ret = SPI_execute_with_args("SELECT x.gid, EXISTS (SELECT 1 FROM streamflink.checkpoint c"
								"  WHERE c.pipeline_id = $2"
								"    AND c.id = split_part(x.gid, ':', 4)::bigint)"
								"  FROM pg_prepared_xacts x"
								" WHERE x.gid LIKE $1 ORDER BY x.prepared",
								2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_prepared_xacts: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext spi = MemoryContextSwitchTo(TopMemoryContext);

		gids = lappend(gids, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		commit = lappend_int(commit, DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
																SPI_tuptable->tupdesc, 2,
																&isnull)));
		MemoryContextSwitchTo(spi);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	forboth(lc, gids, lc2, commit)
	{
		char	   *gid = (char *) lfirst(lc);
		bool		do_commit = lfirst_int(lc2);

		StartTransactionCommand();
		FinishPreparedTransaction(gid, do_commit);
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("streamflink: %s in-doubt transaction %s",
						do_commit ? "committed" : "rolled back", gid)));
	}
	return list_length(gids);
}

int64
checkpoint_last(int32 pipeline_id, int nparts, PartitionPosition *pos)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(pipeline_id)};
	int64		last = 0;
	bool		isnull;
	int			ret;

	for (int i = 0; i < nparts; i++)
	{
		pos[i].next_offset = -1;
		pos[i].max_event_time = DT_NOBEGIN;
	}

	SPI_connect();
	ret = SPI_execute_with_args("SELECT max(id) FROM streamflink.checkpoint WHERE pipeline_id = $1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.checkpoint");
	last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		last = 0;

	if (last > 0)
	{
		Oid			types2[2] = {INT4OID, INT8OID};
		Datum		args2[2] = {Int32GetDatum(pipeline_id), Int64GetDatum(last)};

		ret = SPI_execute_with_args("SELECT partition, next_offset, max_event_time"
									"  FROM streamflink.checkpoint_offset"
									" WHERE pipeline_id = $1 AND checkpoint_id = $2",
									2, types2, args2, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.checkpoint_offset");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			int32		p = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			Datum		met;

			if (p < 0 || p >= nparts)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("checkpoint " INT64_FORMAT " has partition %d but the topic has %d partitions",
								last, p, nparts),
						 errhint("Partitions of a topic cannot be removed; was the topic recreated?")));
			pos[p].next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			met = SPI_getbinval(tup, desc, 3, &isnull);
			pos[p].max_event_time = isnull ? DT_NOBEGIN : DatumGetTimestampTz(met);
		}
	}
	SPI_finish();
	return last;
}

char *
checkpoint_db_dir(const char *pipeline_dir)
{
	return psprintf("%s/db", pipeline_dir);
}

char *
checkpoint_snapshot_dir(const char *pipeline_dir, int64 id)
{
	return psprintf("%s/chk-" INT64_FORMAT, pipeline_dir, id);
}

void
checkpoint_restore_state(const char *pipeline_dir, int64 id)
{
	char	   *db = checkpoint_db_dir(pipeline_dir);

	if (pg_mkdir_p((char *) pipeline_dir, pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", pipeline_dir)));
	if (id == 0)
	{
		/* Nothing completed yet: start from empty state. */
		state_remove_dir(db);
		return;
	}
	else
	{
		char	   *snap = checkpoint_snapshot_dir(pipeline_dir, id);
		struct stat st;

		if (stat(snap, &st) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("state snapshot of checkpoint " INT64_FORMAT " is missing: \"%s\"",
							id, snap),
					 errhint("The pipeline's state directory was removed or restored from another backup.")));
		state_restore(db, snap);
	}
}

void
checkpoint_begin_epoch(void)
{
	ConstraintsSetStmt *immediate = makeNode(ConstraintsSetStmt);

	StartTransactionCommand();
	BeginTransactionBlock();
	CommitTransactionCommand();

	/*
	 * SET CONSTRAINTS ALL IMMEDIATE: a deferred trigger on a sink table
	 * would otherwise fire at PREPARE TRANSACTION, where the worker runs as
	 * itself; so it fires with its statement, as the pipeline's owner.
	 */
	immediate->constraints = NIL;
	immediate->deferred = false;
	StartTransactionCommand();
	AfterTriggerSetState(immediate);
	CommitTransactionCommand();
}

void
checkpoint_complete(Oid dboid, PipelineDef *def, int64 id, int nparts,
					PartitionPosition *pos, EpochStats *stats)
{
	char		gid[GIDSIZE];
	Oid			types[6] = {INT4OID, INT8OID, TEXTOID, INT4OID, INT8OID, TIMESTAMPTZOID};
	Datum		args[9];
	char		nulls[9];
	SPIPlanPtr	plan;
	TimestampTz completed;

	gid_for(gid, dboid, def->id, id);

	/* 2. Positions, inside the epoch. */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	plan = SPI_prepare("INSERT INTO streamflink.checkpoint_offset"
					   " (pipeline_id, checkpoint_id, topic, partition, next_offset, max_event_time)"
					   " VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare checkpoint_offset insert");
	for (int p = 0; p < nparts; p++)
	{
		if (pos[p].next_offset < 0)
			continue;
		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int32GetDatum(def->id);
		args[1] = Int64GetDatum(id);
		args[2] = CStringGetTextDatum(def->source.topic);
		args[3] = Int32GetDatum(p);
		args[4] = Int64GetDatum(pos[p].next_offset);
		args[5] = TimestampTzGetDatum(pos[p].max_event_time);
		if (pos[p].max_event_time == DT_NOBEGIN)
			nulls[5] = 'n';
		if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record checkpoint offsets");
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	/* 3. Prepare. */
	StartTransactionCommand();
	if (!PrepareTransactionBlock(gid))
		elog(ERROR, "could not prepare transaction %s", gid);
	CommitTransactionCommand();
	failpoint("after_prepare");

	/* 4. The decision. */
	completed = GetCurrentTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Oid			ctypes[9] = {INT4OID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};

		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int32GetDatum(def->id);
		args[1] = Int64GetDatum(id);
		args[2] = TimestampTzGetDatum(stats->started);
		args[3] = TimestampTzGetDatum(completed);
		args[4] = Int64GetDatum(completed - stats->started);
		args[5] = Int64GetDatum((int64) stats->state_bytes);
		args[6] = Int64GetDatum((int64) stats->new_state_bytes);
		args[7] = Int64GetDatum(stats->events);
		args[8] = Int64GetDatum(stats->rows_emitted);
		if (SPI_execute_with_args("INSERT INTO streamflink.checkpoint"
								  " (pipeline_id, id, started, completed, duration,"
								  "  state_bytes, new_state_bytes, events, rows_emitted)"
								  " VALUES ($1, $2, $3, $4, $5 * interval '1 microsecond',"
								  "  $6, $7, $8, $9)",
								  9, ctypes, args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record checkpoint " INT64_FORMAT, id);

		/*
		 * History.  Recovery needs the last completed checkpoint (its
		 * offsets and snapshot) and the decision row of an in-doubt
		 * prepared transaction; the only one that can exist now is this
		 * checkpoint's (the previous one was committed before this epoch
		 * began, and a restart resolves every in-doubt one before the
		 * worker goes on).  So deleting ids at least two below this one
		 * (checkpoint_history >= 2) never touches what recovery reads.
		 */
		if (id > checkpoint_history)
		{
			Oid			ptypes[2] = {INT4OID, INT8OID};
			Datum		pargs[2] = {Int32GetDatum(def->id),
			Int64GetDatum(id - checkpoint_history)};

			if (SPI_execute_with_args("DELETE FROM streamflink.checkpoint_offset"
									  " WHERE pipeline_id = $1 AND checkpoint_id <= $2",
									  2, ptypes, pargs, NULL, false, 0) != SPI_OK_DELETE ||
				SPI_execute_with_args("DELETE FROM streamflink.checkpoint"
									  " WHERE pipeline_id = $1 AND id <= $2",
									  2, ptypes, pargs, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not prune checkpoint history");
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	failpoint("after_decision");

	/* 5. Commit the epoch's rows and positions. */
	StartTransactionCommand();
	FinishPreparedTransaction(gid, true);
	CommitTransactionCommand();

	/*
	 * The epoch's table changes are counted at COMMIT PREPARED; this is the
	 * one moment the worker is outside any transaction: report them, so
	 * that autovacuum sees the sink's churn (at most once a second).
	 */
	pgstat_report_stat(false);

	checkpoint_begin_epoch();
}

void
checkpoint_prune(const char *pipeline_dir, int64 keep_from)
{
	DIR		   *dir = AllocateDir(pipeline_dir);
	struct dirent *de;
	List	   *doomed = NIL;
	ListCell   *lc;

	while ((de = ReadDir(dir, pipeline_dir)) != NULL)
	{
		int64		n;

		if (strncmp(de->d_name, "chk-", 4) != 0)
			continue;
		n = strtoi64(de->d_name + 4, NULL, 10);
		if (n < keep_from)
			doomed = lappend(doomed, psprintf("%s/%s", pipeline_dir, de->d_name));
	}
	FreeDir(dir);
	foreach(lc, doomed)
		state_remove_dir((char *) lfirst(lc));
}
