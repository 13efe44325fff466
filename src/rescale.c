/*-------------------------------------------------------------------------
 *
 * rescale.c
 *	  Rescaling a stopped pipeline from its last completed checkpoint, and
 *	  the parts a savepoint restore shares (see rescale.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/stat.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "checkpoint.h"
#include "rescale.h"
#include "state_tuning.h"
#include "task.h"

/* How long a task of the previous run may take to leave. */
#define RESCALE_WAIT_MS 30000

static void read_last(int32 pipeline_id, int64 *id, int *parallelism, int64 *persisted);
static int	orphan_tasks(Oid dboid, int32 pipeline_id, int ntasks);

static char *
task_dir(const char *dir, int t)
{
	return t == 0 ? pstrdup(dir) : psprintf("%s/task-%d", dir, t);
}

void
rescale_build_task_snapshots(const char *dir, int64 id, int ntasks,
							 char **dirs, KeyGroupRange *ranges, int n,
							 const char *failpoint)
{
	StateTuning tuning;

	/*
	 * Task 0's worker, before any task starts: each database built, one at
	 * a time, may take the pipeline's whole share (the server's settings).
	 */
	state_tuning_resolve(NULL, NULL, true, true, 1, NULL, &tuning);
	for (int t = 0; t < ntasks; t++)
	{
		KeyGroupRange r = state_key_group_range_for(t, ntasks);
		char	   *tdir = task_dir(dir, t);
		char	   *chk;
		char	  **from = palloc(sizeof(char *) * n);
		int			nfrom = 0;
		int			exact = -1;

		if (pg_mkdir_p(tdir, pg_dir_create_mode) != 0 && errno != EEXIST)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create directory \"%s\": %m", tdir)));
		chk = checkpoint_snapshot_dir(tdir, id);
		state_remove_dir(chk);
		for (int j = 0; j < n; j++)
		{
			if (ranges[j].lo > r.hi || r.lo > ranges[j].hi)
				continue;
			if (ranges[j].lo == r.lo && ranges[j].hi == r.hi)
				exact = j;
			from[nfrom++] = dirs[j];
		}
		if (exact >= 0)
			state_restore(chk, dirs[exact]);
		else
			(void) state_restore_key_groups(chk, from, nfrom, r, &tuning);
		checkpoint_failpoint(failpoint);
	}
}

void
rescale_quiesce(Oid dboid, PipelineDef *def, int ntasks)
{
	int			resolved;
	int64		last;
	int			last_tasks;
	int64		persisted;

	/* the tasks of the last checkpoint's run, or of the new one */
	read_last(def->id, &last, &last_tasks, &persisted);
	ntasks = Max(ntasks, last_tasks);

	/*
	 * Task 0 of the previous run is gone (we hold its entry); its other
	 * tasks leave once they notice, and one of them could still prepare a
	 * transaction meanwhile: wait for each to go (task_claim waits for a
	 * live holder), so that nothing prepares after the resolution below.
	 */
	for (int t = 1; t < ntasks; t++)
	{
		TaskSlot   *slot = task_claim(dboid, def->id, t, RESCALE_WAIT_MS, false);

		if (slot != NULL)
			task_release(slot);
	}

	/*
	 * A Kafka sink's task sends the records of its own decided
	 * transactions again at its recovery (its outbox rows): committing a
	 * going task's transaction here would leave its records unsent.
	 */
	if (def->sink_topic != NULL &&
		orphan_tasks(dboid, def->id, Max(def->parallelism, 1)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" writes to a Kafka sink and has in-doubt transactions of tasks it would no longer run",
						def->name),
				 errhint("Start it once with its previous parallelism (its tasks resolve them and send their records), stop it with a savepoint, then rescale.")));

	/*
	 * Each new task resolves only its own in-doubt transactions: those of
	 * tasks that go would stay forever (holding their locks), and those of
	 * the last checkpoint hold positions the new tasks read.  The decision
	 * rows decide, as at any recovery.
	 */
	resolved = checkpoint_resolve_all_in_doubt(dboid, def->id);
	if (resolved > 0)
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": resolved %d in-doubt transaction(s) of its previous run before rescaling",
						def->name, resolved)));
}

/* The last completed checkpoint's id and parallelism (0, 0: none). */
static void
last_checkpoint(int32 pipeline_id, int64 *id, int *parallelism, int64 *persisted)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(pipeline_id)};
	bool		isnull;

	*id = 0;
	*parallelism = 0;
	*persisted = 0;
	if (SPI_execute_with_args("SELECT id, parallelism, coalesce(persisted_bytes, 0)"
							  "  FROM streamflink.checkpoint"
							  " WHERE pipeline_id = $1 ORDER BY id DESC LIMIT 1",
							  1, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.checkpoint");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		*id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		*parallelism = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		*persisted = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
}

/* Read the last checkpoint in a transaction of its own. */
static void
read_last(int32 pipeline_id, int64 *id, int *parallelism, int64 *persisted)
{
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	last_checkpoint(pipeline_id, id, parallelism, persisted);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * One more than the highest task of an in-doubt prepared transaction of the
 * pipeline at or above task 'ntasks' (gids as checkpoint.c builds them:
 * streamflink:<db>:<pipeline>:<checkpoint>:<task>); 0 if none.
 */
static int
orphan_tasks(Oid dboid, int32 pipeline_id, int ntasks)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(psprintf("streamflink:%u:%d:%%", dboid, pipeline_id)),
	Int32GetDatum(ntasks)};
	bool		isnull;
	Datum		d;
	int			result;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT max(split_part(gid, ':', 5)::int) + 1"
							  "  FROM pg_catalog.pg_prepared_xacts"
							  " WHERE gid LIKE $1 AND split_part(gid, ':', 5)::int >= $2",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_prepared_xacts");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = isnull ? 0 : DatumGetInt32(d);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return result;
}

int64
rescale_next_checkpoint_id(Oid dboid, int32 pipeline_id)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	bool		isnull;

	args[0] = Int32GetDatum(pipeline_id);
	args[1] = CStringGetTextDatum(psprintf("streamflink:%u:%d:%%", dboid, pipeline_id));
	if (SPI_execute_with_args("SELECT greatest("
							  "  (SELECT max(id) FROM streamflink.checkpoint WHERE pipeline_id = $1),"
							  "  (SELECT max(split_part(gid, ':', 4)::bigint) FROM pg_catalog.pg_prepared_xacts"
							  "    WHERE gid LIKE $2), 0) + 1",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not choose a checkpoint id");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void
rescale_from_checkpoint(Oid dboid, PipelineDef *def, const char *dir)
{
	int64		last;
	int			old_tasks;
	int64		persisted;
	int			ntasks = Max(def->parallelism, 1);
	int64		id;
	char	  **dirs;
	KeyGroupRange *ranges;

	read_last(def->id, &last, &old_tasks, &persisted);
	if (last == 0 || old_tasks == ntasks)
	{
		/*
		 * No state to rescale; but a run of more tasks that crashed before
		 * its first checkpoint leaves in-doubt transactions no task of
		 * this parallelism resolves.
		 */
		int			orphans = orphan_tasks(dboid, def->id, ntasks);

		if (orphans > ntasks)
			rescale_quiesce(dboid, def, orphans);
		return;
	}

	/* start() refused these already; the catalog may have changed since */
	if (def->sink_topic != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" writes to a Kafka sink: its parallelism cannot change from %d to %d",
						def->name, old_tasks, ntasks),
				 errhint("Set its parallelism back to %d.", old_tasks)));

	rescale_quiesce(dboid, def, ntasks);

	/* The resolution made the last checkpoint's positions visible: read again. */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	last_checkpoint(def->id, &last, &old_tasks, &persisted);
	if (persisted > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("checkpoint " INT64_FORMAT " of pipeline \"%s\" holds channel state: it cannot be rescaled",
						last, def->name),
				 errdetail("An unaligned checkpoint keeps the records in flight between its %d task(s), routed by their key-group ranges.",
						   old_tasks),
				 errhint("Set its parallelism back to %d, start it, and stop it with a savepoint (always aligned) to rescale from.",
						 old_tasks)));

	/*
	 * The new checkpoint's id (no prepared transaction is left now, but a
	 * savepoint restore reasons the same way).
	 */
	id = rescale_next_checkpoint_id(dboid, def->id);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\": rescaling checkpoint " INT64_FORMAT " from %d to %d task(s) as checkpoint " INT64_FORMAT,
					def->name, last, old_tasks, ntasks, id)));

	/* The old tasks' snapshots of the last checkpoint, by their ranges. */
	dirs = palloc(sizeof(char *) * old_tasks);
	ranges = palloc(sizeof(KeyGroupRange) * old_tasks);
	for (int t = 0; t < old_tasks; t++)
	{
		struct stat st;

		dirs[t] = checkpoint_snapshot_dir(task_dir(dir, t), last);
		ranges[t] = state_key_group_range_for(t, old_tasks);
		if (stat(dirs[t], &st) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("state snapshot of checkpoint " INT64_FORMAT " of task %d is missing: \"%s\"",
							last, t, dirs[t]),
					 errhint("The pipeline's state directory was removed or restored from another backup.")));
	}

	/*
	 * A new task's directory that held no old task's state is left over
	 * from an earlier layout: start it empty.
	 */
	for (int t = old_tasks; t < ntasks; t++)
		state_remove_dir(task_dir(dir, t));

	rescale_build_task_snapshots(dir, id, ntasks, dirs, ranges, old_tasks,
								 "rescale_task_restored");

	/*
	 * Checkpoint id, with L's positions and watermark: its commit is the
	 * rescale.  Nothing before it changed what recovery reads.
	 */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Oid			types[4] = {INT4OID, INT8OID, INT8OID, INT4OID};
		Datum		args[4] = {Int32GetDatum(def->id), Int64GetDatum(id),
		Int64GetDatum(last), Int32GetDatum(ntasks)};

		if (SPI_execute_with_args("INSERT INTO streamflink.checkpoint"
								  " (pipeline_id, id, started, completed, duration, state_bytes,"
								  "  new_state_bytes, events, rows_emitted, watermark, state_format,"
								  "  parallelism)"
								  " SELECT $1, $2, now(), now(), interval '0', c.state_bytes, 0, 0, 0,"
								  "        c.watermark, c.state_format, $4"
								  "   FROM streamflink.checkpoint c"
								  "  WHERE c.pipeline_id = $1 AND c.id = $3",
								  4, types, args, NULL, false, 0) != SPI_OK_INSERT ||
			SPI_processed != 1 ||
			SPI_execute_with_args("INSERT INTO streamflink.checkpoint_offset"
								  " (pipeline_id, checkpoint_id, topic, partition, next_offset, max_event_time)"
								  " SELECT $1, $2, o.topic, o.partition, o.next_offset, o.max_event_time"
								  "   FROM streamflink.checkpoint_offset o"
								  "  WHERE o.pipeline_id = $1 AND o.checkpoint_id = $3",
								  3, types, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the rescaled checkpoint " INT64_FORMAT, id);
	}
	checkpoint_failpoint("rescale_restored");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\": checkpoint " INT64_FORMAT " of %d task(s) rescaled to %d as checkpoint " INT64_FORMAT,
					def->name, last, old_tasks, ntasks, id)));
	checkpoint_failpoint("rescale_committed");
	rescale_prune(dir, ntasks, id);
}

void
rescale_prune(const char *dir, int ntasks, int64 id)
{
	/*
	 * The snapshots of the old layout: recovery reads checkpoint 'id' only,
	 * and no later checkpoint prunes them if none is taken before the next
	 * rescale.  Whatever streamflink.checkpoints_retained says: the old
	 * layout's snapshots cannot be restored in this one.
	 */
	for (int t = 0; t < ntasks; t++)
		checkpoint_prune(task_dir(dir, t), id, 1);
}

void
rescale_remove_unused(Oid dboid, PipelineDef *def, const char *dir)
{
	int64		last;
	int			last_tasks;
	int64		persisted;
	int			keep;
	DIR		   *d;
	struct dirent *de;
	List	   *doomed = NIL;
	ListCell   *lc;

	read_last(def->id, &last, &last_tasks, &persisted);
	keep = Max(Max(def->parallelism, 1), last_tasks);

	d = AllocateDir(dir);
	if (d == NULL)
		return;					/* nothing yet */
	while ((de = ReadDir(d, dir)) != NULL)
	{
		int			t;
		char		rest;

		if (sscanf(de->d_name, "task-%d%c", &t, &rest) == 1 && t >= keep)
			doomed = lappend(doomed, psprintf("%s/%s", dir, de->d_name));
	}
	FreeDir(d);
	foreach(lc, doomed)
	{
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": removing \"%s\", which no task of parallelism %d uses",
						def->name, (char *) lfirst(lc), keep)));
		state_remove_dir((char *) lfirst(lc));
	}
}
