/*-------------------------------------------------------------------------
 *
 * replay.c
 *	  A deterministic, Kafka-free run of a pipeline's operator, for tests.
 *
 *	 streamflink._replay(pipeline text, payloads text[],
 *						 partitions int[] DEFAULT NULL, seed int DEFAULT 0,
 *						 p_advance float8 DEFAULT 0.25,
 *						 p_checkpoint float8 DEFAULT 0.05,
 *						 p_restore float8 DEFAULT 0.02,
 *						 max_restores int DEFAULT 3)
 *	 RETURNS TABLE (ord int, partition int, "offset" bigint,
 *					event_time timestamptz, watermark timestamptz,
 *					status text, reason text)
 *
 * Feeds payloads[i] as the message at position i of the arrival order, on
 * partition partitions[i] (0 if NULL), at offset "number of earlier
 * messages of that partition", to the pipeline's operator (operator.h) run
 * in the calling backend, exactly as the worker would: the source's
 * decoder, the worker's watermark rule (watermark.h, per-partition maximum
 * event time less the out-of-orderness; partitions are never idle here),
 * the real sink, dead-letter and late-event tables, inside the caller's
 * transaction.  A seed-driven pseudo-random generator (pg_prng) decides,
 * after each message:
 *	- with probability p_advance, to compute the watermark and let the
 *	  operator fire what it passed (the worker does so after each batch);
 *	- with probability p_checkpoint, to take a checkpoint: flush the
 *	  operator and the sink, snapshot the state (state_checkpoint) and
 *	  commit the subtransaction holding the sink rows written since the
 *	  previous one;
 *	- else, with probability p_restore (at most max_restores times), to
 *	  crash and recover: roll the subtransaction back, restore the last
 *	  snapshot (or nothing) into a fresh operator and sink, and feed the
 *	  messages after that checkpoint again (with new random decisions, as a
 *	  restarted worker sees other batches).
 * At the end of the input the watermark is computed once more, then moved
 * to the last valid timestamp (as Flink's MAX_WATERMARK ends a bounded
 * input), which fires and cleans up everything: a window operator with
 * windows still counted open then fails the call.
 *
 * One row per message, as its last (surviving) processing saw it: the
 * event time (NULL for a dead letter), the watermark when it arrived (what
 * the operator was given), and status 'accepted', 'late' or 'dead' with
 * the late event's or dead letter's reason.  A test can so compute which
 * events count from the documented lateness rule and the reported
 * watermarks, independently of the operator's decisions.
 *
 * Which events are late depends on the watermark when they arrive, so on
 * the watermark steps: runs to compare with each other should feed events
 * no later than the out-of-orderness, or compare per the reported
 * watermarks.  A data error in the operator (a division by zero in an
 * aggregate or a condition) ends the call with that error, where the worker
 * would send the message to the dead-letter table after a restart.  Dead
 * letters and late events are keyed by (pipeline, partition, offset):
 * replaying the same messages again in one transaction needs them deleted
 * first.
 *
 * The pipeline must not be running (its worker writes into the same sink)
 * and its source must have an event-time column.  State lives in a private
 * directory under base/pgsql_tmp, removed at the end, also on error (and by
 * the server's start-up clean-up of temporary files after a crash).  Only
 * superusers may call it by default: it runs the pipeline's aggregates or
 * conditions as the caller.
 *
 * Memory: everything of a run lives in a context of its own, each
 * incarnation (operator, sink, store) in a child deleted at its end;
 * RocksDB memory is freed by state_close.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "decode.h"
#include "harness.h"
#include "operator_factory.h"
#include "run_as.h"
#include "pg_sink.h"
#include "side_output.h"
#include "state.h"
#include "watermark.h"

PG_FUNCTION_INFO_V1(streamflink_replay);

/* Last valid timestamp: the watermark of the end of a bounded input. */
#define REPLAY_FINAL_WATERMARK (END_TIMESTAMP - 1)

typedef enum ReplayStatus
{
	REPLAY_NONE,
	REPLAY_ACCEPTED,
	REPLAY_LATE,
	REPLAY_DEAD
} ReplayStatus;

typedef struct ReplayResult
{
	ReplayStatus status;
	TimestampTz event_time;
	TimestampTz watermark;
	char	   *reason;			/* in the run's context */
} ReplayResult;

/* What a checkpoint keeps besides the state snapshot. */
typedef struct ReplayCheckpoint
{
	int			id;				/* 0: none (the empty start) */
	int			next;			/* first message after it */
	TimestampTz watermark;
	WatermarkPartition *parts;
} ReplayCheckpoint;

typedef struct Replay
{
	PipelineDef *def;
	MemoryContext cxt;			/* the run */
	MemoryContext inc_cxt;		/* the current incarnation */
	MemoryContext msg_cxt;		/* one message */
	char	   *dir;
	char	   *db_dir;
	TupleDesc	desc;
	/* input */
	int			n;
	char	  **payloads;		/* NULL: a message without value */
	int		   *lens;
	int		   *partitions;
	int64	   *offsets;
	int			nparts;
	ReplayResult *results;
	/* incarnation */
	StateStore *store;
	Sink	   *sink;
	SideOutput *side;
	Operator   *op;
	Decoder    *decoder;
	TupleTableSlot *slot;
	WatermarkPartition *parts;
	TimestampTz watermark;
	/* checkpoints */
	ReplayCheckpoint last;
	int			next_checkpoint_id;
	int			restores;
	/* subtransaction */
	ResourceOwner owner;
	int			level;			/* the caller's nesting level */
	/* the run's settings */
	pg_prng_state *rng;
	double		p_advance;
	double		p_checkpoint;
	double		p_restore;
	int			max_restores;
} Replay;

static char *
snapshot_dir(Replay *r, int id)
{
	return psprintf("%s/chk-%d", r->dir, id);
}

static void
begin_subxact(Replay *r)
{
	MemoryContext old = CurrentMemoryContext;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(old);
}

static void
end_subxact(Replay *r, bool commit)
{
	MemoryContext old = CurrentMemoryContext;

	if (commit)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(old);
	CurrentResourceOwner = r->owner;
}

/* A fresh operator over the state of checkpoint r->last. */
static void
incarnation_start(Replay *r)
{
	MemoryContext old;

	if (r->last.id > 0)
		state_restore(r->db_dir, snapshot_dir(r, r->last.id));
	else
		state_remove_dir(r->db_dir);

	r->inc_cxt = AllocSetContextCreate(r->cxt, "streamflink replay incarnation",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(r->inc_cxt);
	r->store = state_open(r->db_dir);
	r->decoder = decoder_create_for_source(&r->def->source, r->desc);
	r->slot = MakeSingleTupleTableSlot(r->desc, &TTSOpsVirtual);
	r->side = side_output_create(r->def);
	r->sink = pg_sink_create(r->side);
	/* No poison messages in a replay: its errors are the caller's. */
	r->op = operator_create(r->def, r->store, r->sink, r->side, r->desc, NULL);
	r->parts = palloc(sizeof(WatermarkPartition) * r->nparts);
	memcpy(r->parts, r->last.parts, sizeof(WatermarkPartition) * r->nparts);
	r->watermark = r->last.watermark;
	MemoryContextSwitchTo(old);
}

static void
incarnation_end(Replay *r)
{
	if (r->sink)
		sink_destroy(r->sink);
	r->sink = NULL;
	if (r->side)
		side_output_destroy(r->side);
	r->side = NULL;
	if (r->slot)
		ExecDropSingleTupleTableSlot(r->slot);
	r->slot = NULL;
	if (r->store)
		state_close(r->store);
	r->store = NULL;
	r->op = NULL;
	if (r->inc_cxt)
		MemoryContextDelete(r->inc_cxt);
	r->inc_cxt = NULL;
}

static void
take_checkpoint(Replay *r, int next)
{
	int			id = ++r->next_checkpoint_id;
	MemoryContext old;

	operator_flush(r->op);
	sink_flush(r->sink);
	state_checkpoint(r->store, snapshot_dir(r, id));
	if (r->last.id > 0)
		state_remove_dir(snapshot_dir(r, r->last.id));

	old = MemoryContextSwitchTo(r->cxt);
	r->last.id = id;
	r->last.next = next;
	r->last.watermark = r->watermark;
	memcpy(r->last.parts, r->parts, sizeof(WatermarkPartition) * r->nparts);
	MemoryContextSwitchTo(old);

	end_subxact(r, true);
	begin_subxact(r);
}

/* Crash and recover from the last checkpoint; returns where to go on. */
static int
restore(Replay *r)
{
	incarnation_end(r);
	end_subxact(r, false);
	begin_subxact(r);
	r->restores++;
	incarnation_start(r);
	return r->last.next;
}

static void
advance(Replay *r, TimestampTz wm)
{
	if (wm > r->watermark)
	{
		r->watermark = wm;
		operator_advance(r->op, wm);
	}
}

static void
set_result(Replay *r, int i, ReplayStatus status, TimestampTz t, const char *reason)
{
	ReplayResult *res = &r->results[i];

	res->status = status;
	res->event_time = t;
	res->watermark = r->watermark;
	if (res->reason)
		pfree(res->reason);
	res->reason = reason ? MemoryContextStrdup(r->cxt, reason) : NULL;
}

/* One message, as worker.c's process_message handles it. */
static void
process_one(Replay *r, int i)
{
	int			p = r->partitions[i];
	WatermarkPartition *ps = &r->parts[p];
	char	   *error;
	TimestampTz t = 0;
	SfMessagePos pos = {p, r->offsets[i]};

	ps->pos.next_offset = r->offsets[i] + 1;
	error = harness_decode(r->def, r->decoder, r->slot, r->payloads[i], r->lens[i], &t);
	if (error)
	{
		side_output_dead_letter(r->side, p, pos.offset, r->payloads[i], r->lens[i], error);
		set_result(r, i, REPLAY_DEAD, DT_NOBEGIN, error);
		return;
	}

	watermark_observe(ps, t);
	if (operator_process(r->op, r->slot, t, r->watermark, pos))
		set_result(r, i, REPLAY_ACCEPTED, t, NULL);
	else
	{
		char	   *reason = operator_late_reason(r->op);

		if (reason == NULL)
			reason = watermark_late_reason(r->def, t, r->watermark);
		side_output_late_event(r->side, p, pos.offset, t, r->watermark,
							   r->payloads[i], r->lens[i], reason);
		set_result(r, i, REPLAY_LATE, t, reason);
	}
}

static void
run(void *arg)
{
	Replay	   *r = arg;
	pg_prng_state *rng = r->rng;
	double		p_advance = r->p_advance;
	double		p_checkpoint = r->p_checkpoint;
	double		p_restore = r->p_restore;
	int			max_restores = r->max_restores;
	int			i = 0;

	begin_subxact(r);
	incarnation_start(r);
	while (i < r->n)
	{
		MemoryContext old = MemoryContextSwitchTo(r->msg_cxt);

		CHECK_FOR_INTERRUPTS();
		process_one(r, i);
		MemoryContextSwitchTo(old);
		MemoryContextReset(r->msg_cxt);
		operator_maybe_flush(r->op);
		i++;

		if (pg_prng_double(rng) < p_advance)
			advance(r, watermark_compute(&r->def->source, r->parts, r->nparts,
										 0, r->watermark));
		if (pg_prng_double(rng) < p_checkpoint)
			take_checkpoint(r, i);
		else if (r->restores < max_restores && pg_prng_double(rng) < p_restore)
			i = restore(r);
	}
	advance(r, watermark_compute(&r->def->source, r->parts, r->nparts, 0, r->watermark));
	advance(r, REPLAY_FINAL_WATERMARK);

	/*
	 * Every window fired: a window operator's count of open windows (the
	 * status view's, kept as windows open and fire) is back to zero.
	 */
	if (r->def->kind == PIPELINE_WINDOW && operator_open_count(r->op) != 0)
		elog(ERROR, "replay: " INT64_FORMAT " windows open after the end of the input",
			 operator_open_count(r->op));
	operator_flush(r->op);
	sink_flush(r->sink);
	incarnation_end(r);
	end_subxact(r, true);
}

/* After an error in run(): what is no transaction's, and our subtransactions. */
static void
run_cleanup(void *arg)
{
	Replay	   *r = arg;

	while (GetCurrentTransactionNestLevel() > r->level)
		end_subxact(r, false);
	if (r->store)
		state_close(r->store);
	r->store = NULL;
}

Datum
streamflink_replay(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	ArrayType  *payloads;
	pg_prng_state rng;
	Replay	   *r;
	HarnessInput in;
	int			n;
	double		p_advance,
				p_checkpoint,
				p_restore;
	int			max_restores;
	MemoryContext cxt;
	MemoryContext old;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline and payloads must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	payloads = PG_GETARG_ARRAYTYPE_P(1);
	pg_prng_seed(&rng, PG_ARGISNULL(3) ? 0 : (uint64) (int64) PG_GETARG_INT32(3));
	p_advance = PG_ARGISNULL(4) ? 0.25 : PG_GETARG_FLOAT8(4);
	p_checkpoint = PG_ARGISNULL(5) ? 0.05 : PG_GETARG_FLOAT8(5);
	p_restore = PG_ARGISNULL(6) ? 0.02 : PG_GETARG_FLOAT8(6);
	max_restores = PG_ARGISNULL(7) ? 3 : PG_GETARG_INT32(7);

	InitMaterializedSRF(fcinfo, 0);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink replay",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	r = palloc0(sizeof(Replay));
	r->cxt = cxt;
	r->owner = CurrentResourceOwner;
	r->msg_cxt = AllocSetContextCreate(cxt, "streamflink replay message",
									   ALLOCSET_DEFAULT_SIZES);

	r->def = harness_load_pipeline(name, "replay");
	if (r->def->running)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("pipeline \"%s\" is running", name),
				 errhint("Replay writes into the pipeline's sink: stop it first.")));
	r->desc = harness_event_desc(r->def);

	/* The input. */
	harness_input(payloads, &in);
	n = r->n = in.n;
	r->payloads = in.payloads;
	r->lens = in.lens;
	r->partitions = palloc0(sizeof(int) * Max(n, 1));
	r->offsets = palloc(sizeof(int64) * Max(n, 1));
	r->results = palloc0(sizeof(ReplayResult) * Max(n, 1));
	if (!PG_ARGISNULL(2))
	{
		ArrayType  *parts = PG_GETARG_ARRAYTYPE_P(2);
		Datum	   *vals;
		bool	   *nulls;
		int			np;

		deconstruct_array(parts, INT4OID, 4, true, TYPALIGN_INT, &vals, &nulls, &np);
		if (np != n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("partitions has %d elements, payloads %d", np, n)));
		for (int i = 0; i < n; i++)
		{
			if (nulls[i] || DatumGetInt32(vals[i]) < 0 || DatumGetInt32(vals[i]) >= 1024)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("partition numbers must be between 0 and 1023")));
			r->partitions[i] = DatumGetInt32(vals[i]);
		}
	}
	r->nparts = 1;
	for (int i = 0; i < n; i++)
		r->nparts = Max(r->nparts, r->partitions[i] + 1);
	{
		int64	   *next = palloc0(sizeof(int64) * r->nparts);

		for (int i = 0; i < n; i++)
			r->offsets[i] = next[r->partitions[i]]++;
	}
	r->last.parts = palloc(sizeof(WatermarkPartition) * r->nparts);
	for (int p = 0; p < r->nparts; p++)
	{
		r->last.parts[p].pos.next_offset = -1;
		r->last.parts[p].pos.max_event_time = DT_NOBEGIN;
		r->last.parts[p].last_message = 0;
	}
	r->last.watermark = DT_NOBEGIN;

	/* A private directory for the state. */
	r->dir = harness_make_dir();
	r->db_dir = psprintf("%s/db", r->dir);

	r->level = GetCurrentTransactionNestLevel();
	r->rng = &rng;
	r->p_advance = p_advance;
	r->p_checkpoint = p_checkpoint;
	r->p_restore = p_restore;
	r->max_restores = max_restores;
	harness_run(r->def, r->dir, run, run_cleanup, r);

	/* The report. */
	MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	for (int i = 0; i < n; i++)
	{
		ReplayResult *res = &r->results[i];
		Datum		values[7];
		bool		nulls[7] = {0};
		static const char *const names[] = {"", "accepted", "late", "dead"};

		values[0] = Int32GetDatum(i + 1);
		values[1] = Int32GetDatum(r->partitions[i]);
		values[2] = Int64GetDatum(r->offsets[i]);
		values[3] = TimestampTzGetDatum(res->event_time);
		nulls[3] = res->status == REPLAY_DEAD;
		values[4] = TimestampTzGetDatum(res->watermark);
		values[5] = CStringGetTextDatum(names[res->status]);
		values[6] = res->reason ? CStringGetTextDatum(res->reason) : (Datum) 0;
		nulls[6] = res->reason == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return (Datum) 0;
}
