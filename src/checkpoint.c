/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  The checkpoint coordinator and its participants (see checkpoint.h).
 *
 * PREPARE TRANSACTION and COMMIT PREPARED cannot go through SPI; the epoch
 * participant drives the transaction block itself (BeginTransactionBlock,
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
#include "utils/timestamp.h"

#include "checkpoint.h"
#include "run_as.h"
#include "state.h"

#define GID_PREFIX "streamflink"

/*
 * Completed checkpoints kept in streamflink.checkpoint and
 * checkpoint_offset per pipeline; older rows are deleted when a checkpoint
 * completes, in its decision transaction.
 */
int			checkpoint_history = 100;

/*
 * Completed state snapshots kept on disk per pipeline (per task); older
 * ones are removed once a checkpoint completes.  Recovery reads only the
 * last one; more are for an operator who wants to go back by hand.
 */
int			checkpoints_retained = 1;

void
checkpoint_define_settings(void)
{
	DefineCustomIntVariable("streamflink.checkpoints_retained",
							"Completed state snapshots kept on disk per pipeline.",
							"Older snapshots (directories chk-<id> of the pipeline's state) are "
							"removed as new checkpoints complete; the last completed one is always "
							"kept.  Savepoints are not counted and never removed by this.",
							&checkpoints_retained, 1, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("streamflink.checkpoint_history",
							"Completed checkpoints kept in the catalog per pipeline.",
							"Rows of older checkpoints (streamflink.checkpoint, checkpoint_offset) "
							"are deleted as new ones complete.",
							&checkpoint_history, 100, 2, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * Fault injection for the crash tests: if the file DataDir/streamflink/
 * failpoint names this point ("after_prepare", "after_decision", or a
 * participant's own, see checkpoint.h), the
 * file is removed and the worker kills itself with SIGKILL, exactly where
 * a crash leaves an in-doubt prepared transaction to be rolled back or
 * committed by recovery.  One stat() per checkpoint when unused.
 *
 * The coordinator's points (chk given) also take "<point> rows": then only
 * a checkpoint whose sink wrote rows in its epoch is struck.  Which
 * checkpoint reaches a point first is a matter of timing (a slow machine
 * may checkpoint after some partitions' events, before any window fires),
 * and a test of a transactional sink needs its transaction to hold
 * messages at that instant.  A participant's point ignores the word.
 */
static void
failpoint(const char *name, const Checkpoint *chk)
{
	char		path[MAXPGPATH];
	char		buf[64];
	FILE	   *f;
	size_t		n;
	size_t		len = strlen(name);

	snprintf(path, sizeof(path), "%s/streamflink/failpoint", DataDir);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the point's name as the file's first word */
	if (strncmp(buf, name, len) != 0 ||
		(buf[len] != '\0' && buf[len] != '\n' && buf[len] != ' '))
		return;
	if (chk != NULL && buf[len] == ' ' && strncmp(buf + len + 1, "rows", 4) == 0 &&
		chk->stats.rows_emitted == 0)
		return;
	unlink(path);
	if (chk != NULL)
		ereport(LOG,
				(errmsg("streamflink: failpoint %s: crashing on purpose", name),
				 errdetail("Checkpoint " INT64_FORMAT ", its sink wrote " INT64_FORMAT " rows.",
						   chk->id, chk->stats.rows_emitted)));
	else
		ereport(LOG, (errmsg("streamflink: failpoint %s: crashing on purpose", name)));
	kill(MyProcPid, SIGKILL);
	pg_usleep(10 * 1000 * 1000L);	/* SIGKILL is not deferred; never reached */
}

void
checkpoint_failpoint(const char *name)
{
	failpoint(name, NULL);
}

/*
 * The gid is built in a caller's buffer: PREPARE frees the transaction's
 * memory, and the gid is needed after it.
 */
static void
gid_for(char *gid, Oid dboid, int32 pipeline_id, int64 id, int task)
{
	/* A single-worker pipeline's worker is task 0. */
	snprintf(gid, GIDSIZE, GID_PREFIX ":%u:%d:" INT64_FORMAT ":%d", dboid, pipeline_id, id, task);
}

static void restore_state(const char *pipeline_dir, int64 id);

/* --- the coordinator ------------------------------------------------------ */

struct CheckpointCoordinator
{
	Oid			dboid;
	PipelineDef *def;
	int			nparticipants;
	CheckpointParticipant participants[8];
	CompletedCheckpoint last;
	CheckpointGroup group;		/* parallel pipelines; zeroed: none */
};

CheckpointCoordinator *
checkpoint_coordinator_create(Oid dboid, PipelineDef *def)
{
	CheckpointCoordinator *c = palloc0(sizeof(CheckpointCoordinator));

	c->dboid = dboid;
	c->def = def;
	c->last.watermark = DT_NOBEGIN;
	return c;
}

void
checkpoint_register(CheckpointCoordinator *c, const CheckpointParticipant *p)
{
	if (c->nparticipants >= lengthof(c->participants))
		elog(ERROR, "too many checkpoint participants");
	c->participants[c->nparticipants++] = *p;
}

/* The last completed checkpoint's row: decision rows are committed alone. */
static void
read_last_completed(CheckpointCoordinator *c)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(c->def->id)};
	bool		isnull;

	c->last.id = 0;
	c->last.watermark = DT_NOBEGIN;
	c->last.state_format = STATE_FORMAT_VERSION;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("SELECT id, watermark, state_format FROM streamflink.checkpoint"
							  " WHERE pipeline_id = $1 ORDER BY id DESC LIMIT 1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.checkpoint");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		wm;

		c->last.id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		wm = SPI_getbinval(tup, desc, 2, &isnull);
		c->last.watermark = isnull ? DT_NOBEGIN : DatumGetTimestampTz(wm);
		c->last.state_format = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

int64
checkpoint_recover(CheckpointCoordinator *c)
{
	read_last_completed(c);
	for (int i = c->nparticipants - 1; i >= 0; i--)
	{
		CheckpointParticipant *p = &c->participants[i];

		if (p->recover)
			p->recover(p->arg, &c->last);
	}
	return c->last.id;
}

void
checkpoint_set_group(CheckpointCoordinator *c, const CheckpointGroup *g)
{
	c->group = *g;
}

const CompletedCheckpoint *
checkpoint_last_completed(CheckpointCoordinator *c)
{
	return &c->last;
}

void
checkpoint_positions(CheckpointCoordinator *c, int nparts, PartitionPosition *pos)
{
	Oid			argtypes[2] = {INT4OID, INT8OID};
	Datum		args[2] = {Int32GetDatum(c->def->id), Int64GetDatum(c->last.id)};
	bool		isnull;

	for (int i = 0; i < nparts; i++)
	{
		pos[i].next_offset = -1;
		pos[i].max_event_time = DT_NOBEGIN;
	}
	if (c->last.id == 0)
		return;

	SPI_connect();
	if (SPI_execute_with_args("SELECT partition, next_offset, max_event_time"
							  "  FROM streamflink.checkpoint_offset"
							  " WHERE pipeline_id = $1 AND checkpoint_id = $2",
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
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
							c->last.id, p, nparts),
					 errhint("Partitions of a topic cannot be removed; was the topic recreated?")));
		pos[p].next_offset = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		met = SPI_getbinval(tup, desc, 3, &isnull);
		pos[p].max_event_time = isnull ? DT_NOBEGIN : DatumGetTimestampTz(met);
	}
	SPI_finish();
}

void
checkpoint_begin_epoch(CheckpointCoordinator *c)
{
	for (int i = 0; i < c->nparticipants; i++)
	{
		CheckpointParticipant *p = &c->participants[i];

		if (p->begin_epoch)
			p->begin_epoch(p->arg, c->last.id + 1);
	}
}

/*
 * The decision: the checkpoint's row, committed on its own once every
 * participant is prepared.  Its presence decides recovery (see
 * resolve_in_doubt).
 */
static void
decide(CheckpointCoordinator *c, Checkpoint *chk)
{
	TimestampTz completed = GetCurrentTimestamp();
	Oid			types[13] = {INT4OID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, INT4OID,
	INT8OID, INT8OID};
	Datum		args[13];
	char		nulls[13];

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(c->def->id);
	args[1] = Int64GetDatum(chk->id);
	args[2] = TimestampTzGetDatum(chk->stats.started);
	args[3] = TimestampTzGetDatum(completed);
	args[4] = Int64GetDatum(completed - chk->stats.started);
	args[5] = Int64GetDatum((int64) chk->stats.state_bytes);
	args[6] = Int64GetDatum((int64) chk->stats.new_state_bytes);
	args[7] = Int64GetDatum(chk->stats.events);
	args[8] = Int64GetDatum(chk->stats.rows_emitted);
	args[9] = TimestampTzGetDatum(chk->watermark);
	if (chk->watermark == DT_NOBEGIN)
		nulls[9] = 'n';
	args[10] = Int32GetDatum(STATE_FORMAT_VERSION);
	/* sync: flush and snapshot; async: from there to this decision */
	args[11] = Int64GetDatum(chk->stats.sync_us);
	args[12] = Int64GetDatum(chk->stats.sync_end == DT_NOBEGIN ? 0 :
							 Max(0, completed - chk->stats.sync_end));
	if (chk->stats.sync_end == DT_NOBEGIN)
		nulls[11] = nulls[12] = 'n';
	if (SPI_execute_with_args("INSERT INTO streamflink.checkpoint"
							  " (pipeline_id, id, started, completed, duration,"
							  "  state_bytes, new_state_bytes, events, rows_emitted,"
							  "  watermark, state_format, sync_duration, async_duration)"
							  " VALUES ($1, $2, $3, $4, $5 * interval '1 microsecond',"
							  "  $6, $7, $8, $9, $10, $11,"
							  "  $12 * interval '1 microsecond', $13 * interval '1 microsecond')",
							  13, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record checkpoint " INT64_FORMAT, chk->id);
	/* a parallel pipeline's figures, in the same decision */
	if (c->group.record)
		c->group.record(c->group.arg, chk);

	/*
	 * History.  Recovery needs the last completed checkpoint (its offsets
	 * and snapshot) and the decision row of an in-doubt prepared
	 * transaction; the only one that can exist now is this checkpoint's
	 * (the previous one was committed before this epoch began, and a
	 * restart resolves every in-doubt one before the worker goes on).  So
	 * deleting ids at least two below this one (checkpoint_history >= 2)
	 * never touches what recovery reads.
	 */
	if (chk->id > checkpoint_history)
	{
		Oid			ptypes[2] = {INT4OID, INT8OID};
		Datum		pargs[2] = {Int32GetDatum(c->def->id),
		Int64GetDatum(chk->id - checkpoint_history)};

		if (SPI_execute_with_args("DELETE FROM streamflink.checkpoint_offset"
								  " WHERE pipeline_id = $1 AND checkpoint_id <= $2",
								  2, ptypes, pargs, NULL, false, 0) != SPI_OK_DELETE ||
			SPI_execute_with_args("DELETE FROM streamflink.checkpoint"
								  " WHERE pipeline_id = $1 AND id <= $2",
								  2, ptypes, pargs, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune checkpoint history");
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

int64
checkpoint_take(CheckpointCoordinator *c, Checkpoint *chk)
{
	volatile int prepared = -1;

	chk->id = c->last.id + 1;
	/* A checkpoint's duration is its own: from here to the decision. */
	chk->stats.started = GetCurrentTimestamp();
	chk->stats.sync_us = 0;
	chk->stats.sync_end = DT_NOBEGIN;

	/* 1. Prepare, in the order of registration. */
	PG_TRY();
	{
		for (int i = 0; i < c->nparticipants; i++)
		{
			prepared = i;
			c->participants[i].prepare(c->participants[i].arg, chk);
		}
	}
	PG_CATCH();
	{
		for (int i = prepared; i >= 0; i--)
		{
			CheckpointParticipant *p = &c->participants[i];

			if (p->abort)
				p->abort(p->arg, chk);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	failpoint("after_prepare", chk);

	/*
	 * 2. The decision.  In a parallel pipeline, one task decides once every
	 * task prepared; the others wait for its decision.
	 */
	if (c->group.prepared == NULL || c->group.prepared(c->group.arg, chk))
	{
		decide(c, chk);
		if (c->group.decided)
			c->group.decided(c->group.arg, chk);
	}
	c->last.id = chk->id;
	c->last.watermark = chk->watermark;
	c->last.state_format = STATE_FORMAT_VERSION;
	failpoint("after_decision", chk);

	/*
	 * 3. Commit, in reverse order: the epoch transaction first, so that
	 * its rows and positions become visible right after the decision (a
	 * reader of the last checkpoint's offsets waits no longer than that),
	 * then whatever the others have to do (pruning snapshots...).  Then
	 * the next epoch.
	 */
	for (int i = c->nparticipants - 1; i >= 0; i--)
		c->participants[i].commit(c->participants[i].arg, chk);
	checkpoint_begin_epoch(c);
	return chk->id;
}

/* --- the operator state --------------------------------------------------- */

static void
state_prepare(void *arg, Checkpoint *chk)
{
	StateParticipant *sp = (StateParticipant *) arg;
	char	   *snap = checkpoint_snapshot_dir(sp->dir, chk->id);
	char	   *prev = chk->id > 1 ? checkpoint_snapshot_dir(sp->dir, chk->id - 1) : NULL;
	TimestampTz begun = GetCurrentTimestamp();
	RunAs		as;

	/* Serializing states may run the owner's aggregate functions. */
	StartTransactionCommand();
	run_as_owner(&as);
	operator_flush(sp->op);
	run_as_restore(&as);
	CommitTransactionCommand();

	chk->stats.state_bytes = state_checkpoint(sp->store, snap);
	chk->stats.sync_end = GetCurrentTimestamp();
	chk->stats.sync_us = Max(0, chk->stats.sync_end - begun);

	/*
	 * The previous checkpoint (chk->id - 1 is always the last completed
	 * one) has its snapshot still: pruning keeps at least the last.
	 */
	chk->stats.new_state_bytes = state_checkpoint_incremental_bytes(snap, prev);
}

/* Older snapshots go, beyond streamflink.checkpoints_retained. */
static void
state_commit(void *arg, Checkpoint *chk)
{
	StateParticipant *sp = (StateParticipant *) arg;

	checkpoint_prune(sp->dir, chk->id, checkpoints_retained);
}

/* The name of the release that wrote a state format, for messages. */
static const char *
state_format_release(int format)
{
	switch (format)
	{
		case 1:
			return "streamflink 0.1";
		case 2:
		case 3:
		case 4:
			return "an earlier build of streamflink 0.2";
		case 5:
			return "streamflink 0.2";
		default:
			return format > STATE_FORMAT_VERSION ?
				psprintf("a newer release of streamflink (state format %d)", format) :
				psprintf("an unknown release of streamflink (state format %d)", format);
	}
}

static void
state_recover(void *arg, const CompletedCheckpoint *last)
{
	StateParticipant *sp = (StateParticipant *) arg;

	if (last->id > 0 && last->state_format != STATE_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the state of this pipeline was written by %s and cannot be read by %s",
						state_format_release(last->state_format),
						state_format_release(STATE_FORMAT_VERSION)),
				 errdetail("Checkpoint " INT64_FORMAT " has state format %d; this release reads format %d.",
						   last->id, last->state_format, STATE_FORMAT_VERSION),
				 errhint("Stop the pipeline, then drop and create it again (or run it with the release that wrote its state); its results so far stay in its sink table.")));
	restore_state(sp->dir, last->id);
}

CheckpointParticipant
checkpoint_state_participant(StateParticipant *sp)
{
	CheckpointParticipant p = {
		.name = "operator state",
		.arg = sp,
		.prepare = state_prepare,
		.commit = state_commit,
		.recover = state_recover
	};

	return p;
}

/* --- a sink --------------------------------------------------------------- */

static void
sink_part_begin_epoch(void *arg, int64 epoch)
{
	sink_begin_epoch((Sink *) arg, epoch);
}

static void
sink_part_prepare(void *arg, Checkpoint *chk)
{
	sink_prepare((Sink *) arg, chk->id);
	chk->stats.rows_emitted = sink_take_row_count((Sink *) arg);
}

static void
sink_part_commit(void *arg, Checkpoint *chk)
{
	sink_commit((Sink *) arg, chk->id);
}

static void
sink_part_abort(void *arg, Checkpoint *chk)
{
	sink_abort((Sink *) arg, chk->id);
}

static void
sink_part_recover(void *arg, const CompletedCheckpoint *last)
{
	sink_recover((Sink *) arg, last->id);
}

CheckpointParticipant
checkpoint_sink_participant(Sink *sink)
{
	CheckpointParticipant p = {
		.name = "sink",
		.arg = sink,
		.begin_epoch = sink_part_begin_epoch,
		.prepare = sink_part_prepare,
		.commit = sink_part_commit,
		.abort = sink_part_abort,
		.recover = sink_part_recover
	};

	return p;
}

/* --- the Postgres epoch transaction --------------------------------------- */

typedef struct EpochTransaction
{
	Oid			dboid;
	PipelineDef *def;
	int			task;			/* of a parallel pipeline; 0 for a single worker */
	char		gid[GIDSIZE];	/* of the checkpoint being taken */
} EpochTransaction;

/*
 * Commit or roll back the pipeline's in-doubt prepared transactions: each
 * is committed if its checkpoint's row (the decision) exists, else rolled
 * back.  Outside any transaction.  Returns how many were resolved.
 */
static int
resolve_in_doubt(Oid dboid, int32 pipeline_id, int task)
{
	/*
	 * A task resolves its own: the others' may be in use by their tasks.
	 * task < 0: every task's (checkpoint_resolve_all_in_doubt).
	 */
	char	   *pattern = task >= 0 ?
		psprintf(GID_PREFIX ":%u:%d:%%:%d", dboid, pipeline_id, task) :
		psprintf(GID_PREFIX ":%u:%d:%%", dboid, pipeline_id);
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

int
checkpoint_resolve_all_in_doubt(Oid dboid, int32 pipeline_id)
{
	return resolve_in_doubt(dboid, pipeline_id, -1);
}

static void
epoch_recover(void *arg, const CompletedCheckpoint *last)
{
	EpochTransaction *et = (EpochTransaction *) arg;

	/* The decision is the checkpoint row itself (see resolve_in_doubt). */
	resolve_in_doubt(et->dboid, et->def->id, et->task);
}

static void
epoch_begin(void *arg, int64 epoch)
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

/* Positions, inside the epoch; then PREPARE. */
static void
epoch_prepare(void *arg, Checkpoint *chk)
{
	EpochTransaction *et = (EpochTransaction *) arg;
	Oid			types[6] = {INT4OID, INT8OID, TEXTOID, INT4OID, INT8OID, TIMESTAMPTZOID};
	Datum		args[6];
	char		nulls[6];
	SPIPlanPtr	plan;

	gid_for(et->gid, et->dboid, et->def->id, chk->id, et->task);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	plan = SPI_prepare("INSERT INTO streamflink.checkpoint_offset"
					   " (pipeline_id, checkpoint_id, topic, partition, next_offset, max_event_time)"
					   " VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare checkpoint_offset insert");
	for (int p = 0; p < chk->nparts; p++)
	{
		PartitionPosition *pos = &chk->positions[p];

		if (pos->next_offset < 0)
			continue;
		memset(nulls, ' ', sizeof(nulls));
		args[0] = Int32GetDatum(et->def->id);
		args[1] = Int64GetDatum(chk->id);
		args[2] = CStringGetTextDatum(et->def->source.topic);
		args[3] = Int32GetDatum(p);
		args[4] = Int64GetDatum(pos->next_offset);
		args[5] = TimestampTzGetDatum(pos->max_event_time);
		if (pos->max_event_time == DT_NOBEGIN)
			nulls[5] = 'n';
		if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record checkpoint offsets");
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	StartTransactionCommand();
	if (!PrepareTransactionBlock(et->gid))
		elog(ERROR, "could not prepare transaction %s", et->gid);
	CommitTransactionCommand();
}

static void
epoch_commit(void *arg, Checkpoint *chk)
{
	EpochTransaction *et = (EpochTransaction *) arg;

	StartTransactionCommand();
	FinishPreparedTransaction(et->gid, true);
	CommitTransactionCommand();

	/*
	 * The epoch's table changes are counted at COMMIT PREPARED; this is the
	 * one moment the worker is outside any transaction: report them, so
	 * that autovacuum sees the sink's churn (at most once a second).
	 */
	pgstat_report_stat(false);
}

CheckpointParticipant
checkpoint_epoch_participant(Oid dboid, PipelineDef *def)
{
	return checkpoint_task_epoch_participant(dboid, def, 0);
}

CheckpointParticipant
checkpoint_task_epoch_participant(Oid dboid, PipelineDef *def, int task)
{
	EpochTransaction *et = palloc0(sizeof(EpochTransaction));
	CheckpointParticipant p = {
		.name = "Postgres epoch transaction",
		.arg = et,
		.begin_epoch = epoch_begin,
		.prepare = epoch_prepare,
		.commit = epoch_commit,
		.recover = epoch_recover
	};

	et->dboid = dboid;
	et->def = def;
	et->task = task;
	return p;
}

/* --- state directories, catalog ------------------------------------------- */

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

static void
restore_state(const char *pipeline_dir, int64 id)
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


static int
cmp_int64_desc(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x < y) ? 1 : (x > y) ? -1 : 0;
}

/*
 * Ids need not be consecutive (a pipeline restored from a savepoint goes on
 * above it), so the kept ones are found by listing, not by arithmetic.
 */
void
checkpoint_prune(const char *pipeline_dir, int64 last, int retained)
{
	DIR		   *dir = AllocateDir(pipeline_dir);
	struct dirent *de;
	List	   *names = NIL;
	int64	   *ids;
	int			n = 0;
	int64		keep_from;
	ListCell   *lc;

	while ((de = ReadDir(dir, pipeline_dir)) != NULL)
	{
		if (strncmp(de->d_name, "chk-", 4) == 0)
			names = lappend(names, pstrdup(de->d_name));
	}
	FreeDir(dir);

	/* the completed snapshots' ids, newest first */
	ids = palloc(sizeof(int64) * (list_length(names) + 1));
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		char	   *end;
		int64		id = strtoi64(name + 4, &end, 10);

		if (*end == '\0' && id <= last)
			ids[n++] = id;
	}
	qsort(ids, n, sizeof(int64), cmp_int64_desc);
	keep_from = n > Max(retained, 1) ? ids[Max(retained, 1) - 1] : 0;

	/* older ones, with any staging directory ("chk-<id>.tmp") they left */
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		int64		id = strtoi64(name + 4, NULL, 10);

		if (id < keep_from && id < last)
		{
			char	   *path = psprintf("%s/%s", pipeline_dir, name);

			state_remove_dir(path);
			pfree(path);
		}
	}
	/* once per checkpoint, in a long-lived context: free it all */
	list_free_deep(names);
	pfree(ids);
}

void
checkpoint_check_catalog_version(void)
{
	bool		isnull;
	char	   *version = NULL;

	SPI_connect();
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'streamflink'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_extension");
	if (SPI_processed == 1)
	{
		Datum		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			version = MemoryContextStrdup(CurTransactionContext, TextDatumGetCString(v));
	}
	SPI_finish();
	if (version == NULL || strcmp(version, STREAMFLINK_CATALOG_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the streamflink catalog of this database is version %s, the library is version %s",
						version ? version : "(none)", STREAMFLINK_CATALOG_VERSION),
				 errhint("Run ALTER EXTENSION streamflink UPDATE in this database, then start the pipeline again.")));
}
