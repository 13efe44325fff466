/*-------------------------------------------------------------------------
 *
 * savepoint.c
 *	  Savepoints: taken by the checkpoint coordinator on request, kept until
 *	  dropped, restored by making one the last completed checkpoint (see
 *	  savepoint.h).
 *
 * What a savepoint's state means (key columns and types, window, aggregates,
 * pattern...) and whether it fits a pipeline are decided in SQL
 * (streamflink._state_meaning, streamflink._check_savepoint_fits), so that
 * start() refuses a savepoint before anything runs and the worker checks
 * the same again before it restores.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "rescale.h"
#include "savepoint.h"
#include "state_rescale.h"

PG_FUNCTION_INFO_V1(streamflink_take_savepoint);
PG_FUNCTION_INFO_V1(streamflink_state_format);
PG_FUNCTION_INFO_V1(streamflink_savepoint_removed);
PG_FUNCTION_INFO_V1(streamflink_rescale_savepoint);

/* Names are checked by the catalog too; never build a path from another. */
static void
check_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > SAVEPOINT_NAME_LEN ||
		strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != len ||
		(name[0] >= '0' && name[0] <= '9'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid savepoint name: \"%s\"", name),
				 errhint("Use a letter or underscore followed by up to 47 letters, digits or underscores.")));
}

char *
savepoint_dir(Oid dboid, int32 pipeline_id, const char *name)
{
	check_name(name);
	return psprintf("%s/savepoints/%s", state_pipeline_dir(dboid, pipeline_id), name);
}

/* --- the participant (in the worker) ------------------------------------- */

/*
 * Which savepoint checkpoint chk is, if any: a single worker's or task 0's
 * own request, or for the other tasks what task 0 announced in the slot.
 */
static bool
sp_current(SavepointParticipant *sp, Checkpoint *chk, char *name, int32 *row)
{
	WorkerSlot *slot;
	pid_t		pid;
	bool		found = false;

	if (sp->ntasks == 0 || sp->task == 0)
	{
		if (sp->pending[0] == '\0' || (sp->ntasks > 0 && sp->taking != chk->id))
			return false;
		strlcpy(name, sp->pending, SAVEPOINT_NAME_LEN + 1);
		*row = sp->row;
		return true;
	}
	slot = slot_find(MyDatabaseId, sp->def->id, &pid);
	if (slot == NULL)
		return false;
	SpinLockAcquire(&slot->mutex);
	if (slot->savepoint_for_checkpoint == chk->id && slot->savepoint_announcer == pid && pid != 0)
	{
		strlcpy(name, slot->savepoint_name, SAVEPOINT_NAME_LEN + 1);
		*row = slot->savepoint_row;
		found = true;
	}
	SpinLockRelease(&slot->mutex);
	return found;
}

/* This worker's (task's) positions, as savepoint row 'row''s offsets. */
static void
sp_write_offsets(SavepointParticipant *sp, Checkpoint *chk, int32 savepoint_id)
{
	SPIPlanPtr	plan;
	Oid			otypes[6] = {INT4OID, INT4OID, TEXTOID, INT4OID, INT8OID, TIMESTAMPTZOID};

	plan = SPI_prepare("INSERT INTO streamflink.savepoint_offset"
					   " (pipeline_id, savepoint_id, topic, partition, next_offset, max_event_time)"
					   " VALUES ($1, $2, $3, $4, $5, $6)", 6, otypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare savepoint_offset insert");
	/* a task's checkpoint has positions for its own partitions only */
	for (int p = 0; p < chk->nparts; p++)
	{
		PartitionPosition *pos = &chk->positions[p];
		Datum		oargs[6];
		char		onulls[6];

		if (pos->next_offset < 0)
			continue;
		memset(onulls, ' ', sizeof(onulls));
		oargs[0] = Int32GetDatum(sp->def->id);
		oargs[1] = Int32GetDatum(savepoint_id);
		oargs[2] = CStringGetTextDatum(sp->def->source.topic);
		oargs[3] = Int32GetDatum(p);
		oargs[4] = Int64GetDatum(pos->next_offset);
		oargs[5] = TimestampTzGetDatum(pos->max_event_time);
		if (pos->max_event_time == DT_NOBEGIN)
			onulls[5] = 'n';
		if (SPI_execute_plan(plan, oargs, onulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record savepoint offsets");
	}
}

static void
sp_prepare(void *arg, Checkpoint *chk)
{
	SavepointParticipant *sp = (SavepointParticipant *) arg;
	char	   *top;
	char	   *snap;
	char		name[SAVEPOINT_NAME_LEN + 1];
	Oid			types[6] = {INT4OID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID};
	Datum		args[6];
	char		nulls[6];
	int32		savepoint_id = 0;
	bool		isnull;

	if (!sp_current(sp, chk, name, &savepoint_id))
		return;

	/*
	 * The files first: the checkpoint's snapshot, hard-linked.  A directory
	 * of that name without a row is what a crash before the decision left
	 * (the requesting backend found the name free).  The tasks of a
	 * parallel pipeline each link their own range into the same directory.
	 */
	top = savepoint_dir(MyDatabaseId, sp->def->id, name);
	if (sp->ntasks == 0)
	{
		state_remove_dir(top);
		strlcpy(sp->link_dir, top, sizeof(sp->link_dir));
	}
	if (pg_mkdir_p(top, pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", top)));
	top = psprintf("%s/%d-%d", top, sp->range.lo, sp->range.hi);
	if (sp->ntasks > 0)
	{
		state_remove_dir(top);
		strlcpy(sp->link_dir, top, sizeof(sp->link_dir));
	}
	snap = checkpoint_snapshot_dir(sp->dir, chk->id);
	state_restore(top, snap);

	/* The row and the positions, in the epoch transaction. */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (sp->ntasks == 0)
	{
		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int32GetDatum(sp->def->id);
		args[1] = CStringGetTextDatum(name);
		args[2] = Int64GetDatum(chk->id);
		args[3] = Int64GetDatum((int64) chk->stats.state_bytes);
		args[4] = TimestampTzGetDatum(chk->watermark);
		if (chk->watermark == DT_NOBEGIN)
			nulls[4] = 'n';
		args[5] = Int32GetDatum(STATE_FORMAT_VERSION);
		if (SPI_execute_with_args("INSERT INTO streamflink.savepoint"
								  " (pipeline_id, name, checkpoint_id, size_bytes, watermark,"
								  "  state_format, parallelism, key_groups, meaning, fingerprint)"
								  " SELECT $1, $2, $3, $4, $5, $6, 1, " CppAsString2(STATE_KEY_GROUPS) ","
								  "  m, md5(m::text)"
								  "  FROM streamflink._state_meaning($1) m"
								  " RETURNING id",
								  6, types, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "could not record savepoint \"%s\"", name);
		savepoint_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												   1, &isnull));
	}
	/* a parallel pipeline's row comes with the decision (savepoint_record) */
	sp_write_offsets(sp, chk, savepoint_id);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

void
savepoint_record(SavepointParticipant *sp, Checkpoint *chk, int parallelism,
				 int64 state_bytes, TimestampTz watermark)
{
	Oid			types[8] = {INT4OID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID,
	INT4OID, INT4OID};
	Datum		args[8];
	char		nulls[8];

	if (sp->pending[0] == '\0' || sp->taking != chk->id)
		return;
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(sp->def->id);
	args[1] = CStringGetTextDatum(sp->pending);
	args[2] = Int64GetDatum(chk->id);
	args[3] = Int64GetDatum(state_bytes);
	args[4] = TimestampTzGetDatum(watermark);
	if (watermark == DT_NOBEGIN || watermark == DT_NOEND)
		nulls[4] = 'n';
	args[5] = Int32GetDatum(STATE_FORMAT_VERSION);
	args[6] = Int32GetDatum(parallelism);
	args[7] = Int32GetDatum(sp->row);
	if (SPI_execute_with_args("INSERT INTO streamflink.savepoint"
							  " (id, pipeline_id, name, checkpoint_id, size_bytes, watermark,"
							  "  state_format, parallelism, key_groups, meaning, fingerprint)"
							  " SELECT $8, $1, $2, $3, $4, $5, $6, $7, " CppAsString2(STATE_KEY_GROUPS) ","
							  "  m, md5(m::text)"
							  "  FROM streamflink._state_meaning($1) m",
							  8, types, args, nulls, false, 0) != SPI_OK_INSERT ||
		SPI_processed != 1)
		elog(ERROR, "could not record savepoint \"%s\"", sp->pending);
}

void
savepoint_set_task(SavepointParticipant *sp, int task, int ntasks)
{
	sp->task = task;
	sp->ntasks = ntasks;
	sp->range = state_key_group_range_for(task, ntasks);
}

bool
savepoint_parallel_request(SavepointParticipant *sp, WorkerSlot *slot, int64 next_id)
{
	bool		isnull;

	if (slot == NULL || sp->pending[0] != '\0' || !savepoint_requested(sp, slot))
		return false;

	/* its row's id now: the tasks write their positions under it */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT nextval('streamflink.savepoint_id_seq')::int4", false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not choose a savepoint id");
	sp->row = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	sp->taking = next_id;

	SpinLockAcquire(&slot->mutex);
	slot->savepoint_for_checkpoint = next_id;
	slot->savepoint_row = sp->row;
	slot->savepoint_announcer = MyProcPid;
	SpinLockRelease(&slot->mutex);
	return true;
}

void
savepoint_parallel_done(SavepointParticipant *sp, WorkerSlot *slot, int64 checkpoint_id)
{
	if (slot == NULL || sp->pending[0] == '\0' || checkpoint_id < sp->taking)
		return;
	savepoint_taken(sp, slot, sp->taking);
	sp->taking = 0;
}

bool
savepoint_is_checkpoint(SavepointParticipant *sp, int64 id)
{
	char		name[SAVEPOINT_NAME_LEN + 1];
	int32		row;
	Checkpoint	chk = {.id = id};

	return sp_current(sp, &chk, name, &row);
}

bool
savepoint_task_paused(SavepointParticipant *sp, int64 checkpoint_id)
{
	WorkerSlot *slot;
	pid_t		pid;
	bool		pause;
	TransactionId xid;

	if (sp->task == 0)
		return savepoint_paused(sp);
	/* a pause begins with a checkpoint: look again only after one, or while paused */
	if (checkpoint_id == sp->pause_checked && !sp->pause_seen)
		return false;
	sp->pause_checked = checkpoint_id;
	sp->pause_seen = false;
	slot = slot_find(MyDatabaseId, sp->def->id, &pid);
	if (slot == NULL)
		return false;
	SpinLockAcquire(&slot->mutex);
	pause = slot->savepoint_pause && slot->savepoint_announcer == pid && pid != 0 &&
		slot->savepoint_for_checkpoint > 0 && checkpoint_id >= slot->savepoint_for_checkpoint;
	xid = slot->savepoint_stop_xid;
	SpinLockRelease(&slot->mutex);
	/* as savepoint_paused: until the stopping transaction rolled back */
	sp->pause_seen = pause && TransactionIdIsValid(xid) &&
		(TransactionIdIsInProgress(xid) || TransactionIdDidCommit(xid));
	return sp->pause_seen;
}

static void
sp_commit(void *arg, Checkpoint *chk)
{
	SavepointParticipant *sp = (SavepointParticipant *) arg;

	sp->link_dir[0] = '\0';
}

/* Error cleanup: remove the files of a savepoint that will not exist. */
static void
sp_abort(void *arg, Checkpoint *chk)
{
	SavepointParticipant *sp = (SavepointParticipant *) arg;

	if (sp->link_dir[0] != '\0')
		(void) rmtree(sp->link_dir, true);
	sp->link_dir[0] = '\0';
}

CheckpointParticipant
savepoint_participant(SavepointParticipant *sp, const char *dir, PipelineDef *def,
					  WorkerSlot *slot)
{
	CheckpointParticipant p = {
		.name = "savepoint",
		.arg = sp,
		.prepare = sp_prepare,
		.commit = sp_commit,
		.abort = sp_abort
	};

	memset(sp, 0, sizeof(*sp));
	sp->dir = dir;
	sp->def = def;
	sp->range.lo = 0;
	sp->range.hi = STATE_KEY_GROUPS - 1;

	/* Tasks other than 0 have no slot: they learn of savepoints from task 0. */
	if (slot == NULL)
		return p;

	/* Requests made to a worker before us were answered by its exit. */
	SpinLockAcquire(&slot->mutex);
	slot->savepoint_done_seq = slot->savepoint_seq;
	slot->savepoint_checkpoint = 0;
	slot->savepoint_for_checkpoint = 0;
	sp->handled = slot->savepoint_seq;
	SpinLockRelease(&slot->mutex);
	return p;
}

bool
savepoint_requested(SavepointParticipant *sp, WorkerSlot *slot)
{
	bool		requested = false;

	SpinLockAcquire(&slot->mutex);
	if (slot->savepoint_seq != sp->handled)
	{
		sp->handled = slot->savepoint_seq;
		strlcpy(sp->pending, slot->savepoint_name, sizeof(sp->pending));
		sp->pause = slot->savepoint_pause;
		sp->stop_xid = slot->savepoint_stop_xid;
		requested = true;
	}
	SpinLockRelease(&slot->mutex);
	return requested;
}

void
savepoint_taken(SavepointParticipant *sp, WorkerSlot *slot, int64 checkpoint_id)
{
	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\": savepoint \"%s\" is checkpoint " INT64_FORMAT,
					sp->def->name, sp->pending, checkpoint_id)));
	sp->pending[0] = '\0';
	sp->paused = sp->pause;
	SpinLockAcquire(&slot->mutex);
	slot->savepoint_checkpoint = checkpoint_id;
	slot->savepoint_done_seq = sp->handled;
	SpinLockRelease(&slot->mutex);
}

bool
savepoint_paused(SavepointParticipant *sp)
{
	if (!sp->paused)
		return false;
	/* Committed: its stop is on the way (sent at commit).  Rolled back: go on. */
	if (TransactionIdIsInProgress(sp->stop_xid) || TransactionIdDidCommit(sp->stop_xid))
		return true;
	sp->paused = false;
	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\": the stop with savepoint rolled back, resuming",
					sp->def->name)));
	return false;
}

/*
 * The key-group range snapshots of a savepoint ('<lo>-<hi>' directories),
 * sorted; errors out unless they cover every key group exactly once.
 */
static int
savepoint_ranges(const char *top, const char *name, char ***dirs, KeyGroupRange **ranges)
{
	DIR		   *d = AllocateDir(top);
	struct dirent *de;
	int			n = 0;
	int			cap = 8;
	int			next = 0;

	*dirs = palloc(sizeof(char *) * cap);
	*ranges = palloc(sizeof(KeyGroupRange) * cap);
	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the files of savepoint \"%s\" are missing: \"%s\"", name, top),
				 errhint("Drop the savepoint; the server's data directory was changed by hand or restored from another backup.")));
	while ((de = ReadDir(d, top)) != NULL)
	{
		int			lo;
		int			hi;
		char		rest;

		if (sscanf(de->d_name, "%d-%d%c", &lo, &hi, &rest) != 2)
			continue;
		if (n == cap)
		{
			cap *= 2;
			*dirs = repalloc(*dirs, sizeof(char *) * cap);
			*ranges = repalloc(*ranges, sizeof(KeyGroupRange) * cap);
		}
		(*dirs)[n] = psprintf("%s/%s", top, de->d_name);
		(*ranges)[n].lo = (uint16) Max(lo, 0);
		(*ranges)[n].hi = (uint16) Max(hi, 0);
		n++;
	}
	FreeDir(d);

	/* sort by lo (few: insertion sort), then check the cover */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && (*ranges)[j].lo < (*ranges)[j - 1].lo; j--)
		{
			KeyGroupRange r = (*ranges)[j];
			char	   *p = (*dirs)[j];

			(*ranges)[j] = (*ranges)[j - 1];
			(*dirs)[j] = (*dirs)[j - 1];
			(*ranges)[j - 1] = r;
			(*dirs)[j - 1] = p;
		}
	for (int i = 0; i < n; i++)
	{
		if ((*ranges)[i].lo != next || (*ranges)[i].hi < (*ranges)[i].lo)
			break;
		next = (*ranges)[i].hi + 1;
	}
	if (n == 0 || next != STATE_KEY_GROUPS)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the snapshots of savepoint \"%s\" do not cover key groups 0 to %d exactly once",
						name, STATE_KEY_GROUPS - 1),
				 errhint("Drop the savepoint; its directory \"%s\" was changed by hand.", top)));
	return n;
}

/* --- restore (in the worker, before recovery) ----------------------------- */

/*
 * Reads pipeline 'pipeline_id''s pending savepoint restore into
 * SPI_tuptable: the savepoint's id, its pipeline (NULL if dropped), its name,
 * and whether the pipeline's owner may use it.  Returns how many rows: 0
 * when no restore is pending.
 */
static uint64
read_restore(int32 pipeline_id)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(pipeline_id)};

	if (SPI_execute_with_args("SELECT p.restore_savepoint, s.pipeline_id, s.name,"
							  "       pg_catalog.pg_has_role(p.owner, o.owner, 'USAGE')"
							  "  FROM streamflink.pipeline p"
							  "  LEFT JOIN streamflink.savepoint s ON s.id = p.restore_savepoint"
							  "  LEFT JOIN streamflink.pipeline o ON o.id = s.pipeline_id"
							  " WHERE p.id = $1 AND p.restore_savepoint IS NOT NULL",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.pipeline");
	return SPI_processed;
}

void
savepoint_prepare_restore(Oid dboid, PipelineDef *def, const char *dir)
{
	Datum		args[2];
	bool		isnull;
	int32		savepoint_id;
	int32		from_pipeline;
	char	   *name;
	int64		id;
	char	   *top;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	if (read_restore(def->id) == 0)
	{
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		/* no savepoint: a new parallelism rescales the last checkpoint */
		rescale_from_checkpoint(dboid, def, dir);
		rescale_remove_unused(dboid, def, dir);
		return;
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	/*
	 * The new tasks resolve only their own in-doubt transactions: resolve
	 * every old task's now, while none runs (outside any transaction).
	 */
	rescale_quiesce(dboid, def, Max(def->parallelism, 1));

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (read_restore(def->id) != 1)
		elog(ERROR, "could not read streamflink.pipeline");
	savepoint_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	from_pipeline = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the savepoint pipeline \"%s\" was started from no longer exists", def->name),
				 errhint("Stop the pipeline and start it again, without from_savepoint or from another savepoint.")));
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pipeline \"%s\" may not start from savepoint \"%s\" of another owner's pipeline",
						def->name, name)));

	/* The same check as start() made, in case the row was changed since. */
	args[0] = Int32GetDatum(def->id);
	args[1] = Int32GetDatum(savepoint_id);
	{
		Oid			ctypes[2] = {INT4OID, INT4OID};

		if (SPI_execute_with_args("SELECT streamflink._check_savepoint_fits($1, $2)",
								  2, ctypes, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not check savepoint");
	}

	/*
	 * The next checkpoint id: above every completed one and every in-doubt
	 * prepared transaction of the pipeline, which recovery then rolls back.
	 */
	id = rescale_next_checkpoint_id(dboid, def->id);

	/* Files: the savepoint's snapshot becomes chk-<id>. */
	top = savepoint_dir(dboid, from_pipeline, name);
	if (pg_mkdir_p((char *) dir, pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	{
		char	  **dirs;
		KeyGroupRange *ranges;
		int			n = savepoint_ranges(top, name, &dirs, &ranges);
		int			ntasks = Max(def->parallelism, 1);

		/*
		 * Each task of the pipeline's parallelism (one worker: task 0, all
		 * key groups) gets a snapshot of its own key-group range: a
		 * savepoint range that is exactly its own is linked as is, others
		 * are merged by range scans of those that overlap it (Flink's
		 * RocksDB restore clipping key-group ranges).
		 */
		rescale_build_task_snapshots(dir, id, ntasks, dirs, ranges, n,
									 "savepoint_task_restored");
	}

	/* The checkpoint's row and positions, and the request done. */
	{
		Oid			itypes[3] = {INT4OID, INT8OID, INT4OID};
		Datum		iargs[3] = {Int32GetDatum(def->id), Int64GetDatum(id),
		Int32GetDatum(savepoint_id)};

		/* the layout of the state now: the pipeline's parallelism */
		if (SPI_execute_with_args("INSERT INTO streamflink.checkpoint"
								  " (pipeline_id, id, started, completed, duration, state_bytes,"
								  "  new_state_bytes, events, rows_emitted, watermark, state_format,"
								  "  parallelism)"
								  " SELECT $1, $2, now(), now(), interval '0', s.size_bytes, 0, 0, 0,"
								  "        s.watermark, s.state_format, p.parallelism"
								  "   FROM streamflink.savepoint s, streamflink.pipeline p"
								  "  WHERE s.id = $3 AND p.id = $1",
								  3, itypes, iargs, NULL, false, 0) != SPI_OK_INSERT ||
			SPI_execute_with_args("INSERT INTO streamflink.checkpoint_offset"
								  " (pipeline_id, checkpoint_id, topic, partition, next_offset, max_event_time)"
								  " SELECT $1, $2, o.topic, o.partition, o.next_offset, o.max_event_time"
								  "   FROM streamflink.savepoint_offset o WHERE o.savepoint_id = $3",
								  3, itypes, iargs, NULL, false, 0) != SPI_OK_INSERT ||
			SPI_execute_with_args("UPDATE streamflink.pipeline SET restore_savepoint = NULL"
								  " WHERE id = $1",
								  1, itypes, iargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not restore savepoint \"%s\"", name);

		/*
		 * Dead letters and late events of the messages after the savepoint
		 * are written again as those are read again: as if the pipeline had
		 * never read past the savepoint, which is what its sink sees too.
		 */
		for (int t = 0; t < 2; t++)
		{
			const char *table = t == 0 ? "dead_letter" : "late_event";

			if (SPI_execute_with_args(psprintf("DELETE FROM streamflink.%s d"
											   " WHERE d.pipeline_id = $1 AND d.partition IS NOT NULL"
											   "   AND d.\"offset\" >= coalesce("
											   "     (SELECT o.next_offset FROM streamflink.savepoint_offset o"
											   "       WHERE o.savepoint_id = $3 AND o.partition = d.partition), 0)",
											   table),
									  3, itypes, iargs, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not restore savepoint \"%s\"", name);
		}
	}
	checkpoint_failpoint("savepoint_restored");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\": savepoint \"%s\" restored as checkpoint " INT64_FORMAT,
					def->name, name, id)));
	/* the old layout's files, now that nothing needs them */
	rescale_prune(dir, Max(def->parallelism, 1), id);
	rescale_remove_unused(dboid, def, dir);
}

/*
 * Files of savepoints that never completed: a crash (no abort callback)
 * between a savepoint's prepare and its decision leaves them.  After
 * checkpoint_recover, which has committed what was decided.
 */
void
savepoint_remove_orphans(PipelineDef *def, const char *dir)
{
	char	   *top = psprintf("%s/savepoints", dir);
	DIR		   *d;
	struct dirent *de;
	List	   *names = NIL;
	ListCell   *lc;
	Oid			types[2] = {INT4OID, TEXTOID};

	d = AllocateDir(top);
	if (d == NULL)
		return;					/* none taken yet */
	while ((de = ReadDir(d, top)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			names = lappend(names, pstrdup(de->d_name));
	FreeDir(d);
	if (names == NIL)
		return;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		Datum		args[2] = {Int32GetDatum(def->id), CStringGetTextDatum(name)};

		if (SPI_execute_with_args("SELECT 1 FROM streamflink.savepoint"
								  " WHERE pipeline_id = $1 AND name = $2",
								  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.savepoint");
		if (SPI_processed == 0)
		{
			ereport(LOG,
					(errmsg("streamflink pipeline \"%s\": removing the files of incomplete savepoint \"%s\"",
							def->name, name)));
			state_remove_dir(psprintf("%s/%s", top, name));
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* --- SQL functions (backends) --------------------------------------------- */

/*
 * streamflink._take_savepoint(pipeline_id, name, pause): ask the running
 * worker for a savepoint and wait for it; returns its checkpoint id.  The
 * caller (streamflink.savepoint, stop) checked ownership and the name and
 * holds the pipeline's row lock.
 */
Datum
streamflink_take_savepoint(PG_FUNCTION_ARGS)
{
	int32		pipeline_id = PG_GETARG_INT32(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		pause = PG_GETARG_BOOL(2);
	pid_t		pid;
	WorkerSlot *slot;
	uint64		seq = 0;
	SlotStatus	status;
	bool		busy;
	char	   *pipeline = NULL;
	MemoryContext caller = CurrentMemoryContext;

	check_name(name);
	slot_require_preload();

	/* Callable by tenants: the caller must own the pipeline. */
	{
		Oid			types[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(pipeline_id)};
		bool		isnull;
		bool		owner;

		SPI_connect();
		if (SPI_execute_with_args("SELECT pg_catalog.pg_has_role(current_user, owner, 'USAGE'), name"
								  "  FROM streamflink.pipeline WHERE id = $1",
								  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.pipeline");
		owner = SPI_processed == 1 &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (owner)
			pipeline = MemoryContextStrdup(caller,
										   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		SPI_finish();
		if (!owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be owner of the pipeline to take its savepoint")));
	}

	slot = slot_find(MyDatabaseId, pipeline_id, &pid);
	if (slot == NULL || pid == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" has no running worker", pipeline),
				 errhint("A savepoint is taken by the running pipeline: start it first, or wait until streamflink.pipelines shows it running.")));

	SpinLockAcquire(&slot->mutex);
	status = slot->status;
	busy = slot->savepoint_seq != slot->savepoint_done_seq;
	if (status == SLOT_RUNNING && !busy)
	{
		seq = ++slot->savepoint_seq;
		strlcpy(slot->savepoint_name, name, sizeof(slot->savepoint_name));
		slot->savepoint_pause = pause;
		slot->savepoint_stop_xid = pause ? GetTopTransactionId() : InvalidTransactionId;
	}
	SpinLockRelease(&slot->mutex);
	if (status != SLOT_RUNNING)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" is not running: its worker is %s", pipeline,
						slot_status_name(status)),
				 errhint("Try again once streamflink.pipelines shows it running.")));
	if (busy)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("another savepoint of pipeline \"%s\" is being taken", pipeline),
				 errhint("Try again in a moment.")));
	kill(pid, SIGUSR1);			/* sets its latch */

	for (;;)
	{
		pid_t		now_pid;
		WorkerSlot *s = slot_find(MyDatabaseId, pipeline_id, &now_pid);
		uint64		done;
		int64		checkpoint;
		char		error[SF_ERROR_LEN];

		SpinLockAcquire(&slot->mutex);
		done = slot->savepoint_done_seq;
		checkpoint = slot->savepoint_checkpoint;
		strlcpy(error, slot->error, sizeof(error));
		SpinLockRelease(&slot->mutex);
		if (s == slot && now_pid == pid && done >= seq)
		{
			if (checkpoint <= 0)
				break;
			PG_RETURN_INT64(checkpoint);
		}
		if (s != slot || now_pid != pid || kill(pid, 0) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the worker of pipeline \"%s\" ended before savepoint \"%s\" was complete",
							pipeline, name),
					 error[0] ? errdetail("Its last error: %s", error) : 0,
					 errhint("See streamflink.pipelines and the server log; no savepoint \"%s\" exists unless streamflink.savepoints lists it.",
							 name)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the worker of pipeline \"%s\" restarted before savepoint \"%s\" was complete",
					pipeline, name),
			 errhint("Take the savepoint again.")));
	PG_RETURN_NULL();			/* keep compiler quiet */
}

/* streamflink._state_format(): the state format this release writes. */
Datum
streamflink_state_format(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(STATE_FORMAT_VERSION);
}

/*
 * Files of deleted savepoints, removed when the deleting transaction
 * commits (drop_savepoint, and drop_pipeline by cascade).
 */
static List *doomed = NIL;
static bool callback_registered = false;

static void
savepoint_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		foreach(lc, doomed)
		{
			char	   *dir = (char *) lfirst(lc);
			struct stat st;

			if (stat(dir, &st) == 0 && !rmtree(dir, true))
				ereport(WARNING,
						(errmsg("could not remove savepoint directory \"%s\"", dir)));
		}
	}
	list_free_deep(doomed);
	doomed = NIL;
}

Datum
streamflink_savepoint_removed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	bool		isnull;
	int32		pipeline_id;
	char	   *name;
	MemoryContext old;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BY_DELETE(td->tg_event))
		elog(ERROR, "streamflink._savepoint_removed() must be an AFTER DELETE ... FOR EACH ROW trigger");
	desc = RelationGetDescr(td->tg_relation);
	pipeline_id = DatumGetInt32(heap_getattr(td->tg_trigtuple,
											 SPI_fnumber(desc, "pipeline_id"), desc, &isnull));
	name = TextDatumGetCString(heap_getattr(td->tg_trigtuple,
											SPI_fnumber(desc, "name"), desc, &isnull));
	if (!callback_registered)
	{
		RegisterXactCallback(savepoint_xact_callback, NULL);
		callback_registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	doomed = lappend(doomed, savepoint_dir(MyDatabaseId, pipeline_id, name));
	MemoryContextSwitchTo(old);
	return PointerGetDatum(NULL);
}

/*
 * streamflink._rescale_savepoint(pipeline_id, name, parallelism): rewrite a
 * savepoint's state as the snapshots 'parallelism' workers would own, one
 * per key-group range (state_key_group_range_for), each built from the old
 * snapshots whose ranges overlap it.  Superusers only (it opens RocksDB in
 * the backend).  The files are replaced at once (a rename), the row's
 * parallelism updated in the caller's transaction.
 */
Datum
streamflink_rescale_savepoint(PG_FUNCTION_ARGS)
{
	int32		pipeline_id = PG_GETARG_INT32(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		parallelism = PG_GETARG_INT32(2);
	char	   *top = savepoint_dir(MyDatabaseId, pipeline_id, name);
	char	   *building = psprintf("%s.rescaling", top);
	char	   *old = psprintf("%s.old", top);
	char	  **dirs;
	KeyGroupRange *ranges;
	int			n;
	int64		keys = 0;

	if (parallelism < 1 || parallelism > STATE_KEY_GROUPS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parallelism must be between 1 and %d (the key groups)", STATE_KEY_GROUPS)));
	n = savepoint_ranges(top, name, &dirs, &ranges);
	state_remove_dir(building);
	if (pg_mkdir_p(building, pg_dir_create_mode) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", building)));
	for (int i = 0; i < parallelism; i++)
	{
		KeyGroupRange r = state_key_group_range_for(i, parallelism);
		char	  **from = palloc(sizeof(char *) * n);
		int			nfrom = 0;

		for (int j = 0; j < n; j++)
			if (ranges[j].lo <= r.hi && r.lo <= ranges[j].hi)
				from[nfrom++] = dirs[j];
		/* in a backend: outside every worker's share, small */
		keys += state_restore_key_groups(psprintf("%s/%d-%d", building, r.lo, r.hi),
										 from, nfrom, r, NULL);
	}
	state_remove_dir(old);
	if (rename(top, old) != 0 || rename(building, top) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not replace savepoint directory \"%s\": %m", top)));
	state_remove_dir(old);
	PG_RETURN_INT64(keys);
}
