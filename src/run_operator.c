/*-------------------------------------------------------------------------
 *
 * run_operator.c
 *	  A pipeline's operator over given events and explicit watermarks,
 *	  returning every row it emitted: semantic tests without Kafka.
 *
 *	 streamflink.run_operator(pipeline text, events text[],
 *							  watermarks timestamptz[] DEFAULT NULL,
 *							  final_watermark timestamptz DEFAULT 'infinity')
 *	 RETURNS TABLE (ord int, event int, watermark timestamptz, output text,
 *					op text, key jsonb, data jsonb, reason text)
 *
 * events[i] is a message's payload, decoded by the pipeline's source's
 * decoder; it is given to the operator (operator.h) with the watermark of
 * the moment.  watermarks[i] (NULL: no move) is the watermark set after
 * events[i]: the operator then fires what it passed.  The watermark starts
 * before every timestamp and never moves backwards (a smaller value is an
 * error).  After the last event it moves to final_watermark: by default
 * the end of input ('infinity': the last valid timestamp, as Flink's
 * MAX_WATERMARK ends a bounded input), which fires and cleans up
 * everything; NULL leaves it where it is.  'infinity' anywhere means that
 * last timestamp.
 *
 * One row per thing the operator and the harness did, in order (ord):
 *	- output 'result' or 'timed_out': a row the operator wrote to that output
 *	  of its sink, op 'insert' (a match; a window's first firing), 'upsert' (a
 *	  window fired again by a late event within the allowed lateness, or a
 *	  session whose row is in the sink) or 'retract' (a session merged
 *	  into another), data the row as jsonb with the sink table's column
 *	  names, key its key columns (for upserts and retractions: the columns
 *	  that identify a row of the sink; a retraction's data is its key);
 *	- output 'late_event': an event the operator refused as late, data the
 *	  decoded event, reason as in streamflink.late_events;
 *	- output 'dead_letter': a payload the decoder refused, reason as in
 *	  streamflink.dead_letters.
 * 'event' is the 1-based index of the event being processed, or after
 * which the watermark moved, when the row came; NULL for rows of the final
 * watermark.  'watermark' is the watermark then.  The final contents of a
 * sink table are the last upsert or insert per output and key that no
 * retraction follows.  Values are rendered with the session's settings
 * (TimeZone: the event times in a match's events; IntervalStyle: reasons),
 * where a worker has the server's.
 *
 * Nothing is written: the rows go to an in-memory sink (collect_sink.h),
 * the state to a private directory removed at the end (harness.h).  So the
 * pipeline may be running: its worker and this call share nothing.  A data
 * error in the operator (a division by zero in a condition) ends the call
 * with that error, where a worker would dead-letter the message after a
 * restart.
 *
 * Who may call it: superusers, and members of the pipeline's owning role
 * (tenants, for their own pipelines); the pipeline's code runs as its
 * owner, with the worker's search_path, as in the worker.
 *
 * Memory: a context of the call's own holds the run (operator, state,
 * collected rows), deleted at the end; RocksDB's by state_close.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "collect_sink.h"
#include "harness.h"
#include "operator_factory.h"
#include "run_as.h"
#include "state.h"
#include "watermark.h"

PG_FUNCTION_INFO_V1(streamflink_run_operator);

/* The last valid timestamp: the watermark of the end of a bounded input. */
#define RUN_FINAL_WATERMARK (END_TIMESTAMP - 1)

/* One row of the result. */
typedef struct RunRow
{
	int			event;			/* 0: the final watermark */
	TimestampTz watermark;
	const char *output;
	const char *op;				/* NULL for late events, dead letters */
	Jsonb	   *key;
	Jsonb	   *data;
	char	   *reason;
} RunRow;

typedef struct Run
{
	PipelineDef *def;
	MemoryContext cxt;			/* the run */
	MemoryContext msg_cxt;		/* one event */
	char	   *dir;
	TupleDesc	desc;
	HarnessInput in;
	TimestampTz *watermarks;	/* per event; DT_NOBEGIN: no move */
	bool		final;			/* move to final_watermark at the end */
	TimestampTz final_watermark;
	StateStore *store;
	Sink	   *sink;
	Operator   *op;
	Decoder    *decoder;
	TupleTableSlot *slot;
	TimestampTz watermark;
	List	   *rows;			/* RunRow, in order */
} Run;

static RunRow *
add_row(Run *r, int event, const char *output)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	RunRow	   *row = palloc0(sizeof(RunRow));

	row->event = event;
	row->watermark = r->watermark;
	row->output = output;
	r->rows = lappend(r->rows, row);
	MemoryContextSwitchTo(old);
	return row;
}

/* What the operator wrote since the last call, as rows of 'event'. */
static void
take_sink_rows(Run *r, int event)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	List	   *written = collect_sink_take(r->sink);
	ListCell   *lc;

	foreach(lc, written)
	{
		CollectedRow *cr = lfirst(lc);
		RunRow	   *row = add_row(r, event, cr->output);

		row->op = cr->op;
		row->key = cr->key;
		row->data = cr->row;
	}
	list_free(written);
	MemoryContextSwitchTo(old);
}

/* The decoded event as jsonb, in the run's context. */
static Jsonb *
event_jsonb(Run *r)
{
	Datum		tuple = ExecFetchSlotHeapTupleDatum(r->slot);
	char	   *json = TextDatumGetCString(DirectFunctionCall1(row_to_json, tuple));
	Datum		jb = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	Jsonb	   *copy = MemoryContextAlloc(r->cxt, VARSIZE(DatumGetPointer(jb)));

	memcpy(copy, DatumGetPointer(jb), VARSIZE(DatumGetPointer(jb)));
	return copy;
}

/* One event, as the worker's process_message handles it. */
static void
process_one(Run *r, int i)
{
	TimestampTz t = 0;
	char	   *error;
	RunRow	   *row;

	error = harness_decode(r->def, r->decoder, r->slot, r->in.payloads[i], r->in.lens[i], &t);
	if (error)
	{
		row = add_row(r, i + 1, "dead_letter");
		row->reason = MemoryContextStrdup(r->cxt, error);
		return;
	}
	if (operator_process(r->op, r->slot, t, r->watermark, (SfMessagePos) {0, i}))
		take_sink_rows(r, i + 1);
	else
	{
		char	   *reason = operator_late_reason(r->op);

		if (reason == NULL)
			reason = watermark_late_reason(r->def, t, r->watermark);
		take_sink_rows(r, i + 1);
		row = add_row(r, i + 1, "late_event");
		row->data = event_jsonb(r);
		row->reason = MemoryContextStrdup(r->cxt, reason);
	}
}

static void
advance(Run *r, int event, TimestampTz wm)
{
	if (wm < r->watermark)
	{
		/* (timestamptz_to_str returns a static buffer) */
		char	   *from = pstrdup(timestamptz_to_str(r->watermark));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 event > 0 ?
				 errmsg("watermark moves backwards after event %d: from %s to %s",
						event, from, timestamptz_to_str(wm)) :
				 errmsg("final watermark %s is before the watermark %s",
						timestamptz_to_str(wm), from),
				 errhint("A watermark never decreases; NULL leaves it where it is.")));
	}
	if (wm > r->watermark)
	{
		r->watermark = wm;
		operator_advance(r->op, wm);
		take_sink_rows(r, event);
	}
}

static void
run(void *arg)
{
	Run		   *r = arg;
	MemoryContext old;

	/* The worker's search_path; undone with the owner block. */
	(void) set_config_option("search_path", RUN_AS_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	old = MemoryContextSwitchTo(r->cxt);
	r->store = state_open(psprintf("%s/db", r->dir));
	r->decoder = decoder_create_for_source(&r->def->source, r->desc);
	r->slot = MakeSingleTupleTableSlot(r->desc, &TTSOpsVirtual);
	r->sink = collect_sink_create();

	/*
	 * No poison tracking and so no side output: operators set aside (as
	 * dead letters) only what a worker's poison rule skips.
	 */
	r->op = operator_create(r->def, r->store, r->sink, NULL, r->desc, NULL);
	r->watermark = DT_NOBEGIN;
	take_sink_rows(r, 0);
	MemoryContextSwitchTo(old);

	for (int i = 0; i < r->in.n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(r->msg_cxt);
		process_one(r, i);
		if (r->watermarks[i] != DT_NOBEGIN)
			advance(r, i + 1, r->watermarks[i]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(r->msg_cxt);
		operator_maybe_flush(r->op);
	}
	if (r->final)
		advance(r, 0, r->final_watermark);

	ExecDropSingleTupleTableSlot(r->slot);
	r->slot = NULL;
	state_close(r->store);
	r->store = NULL;
}

static void
run_cleanup(void *arg)
{
	Run		   *r = arg;

	if (r->store)
		state_close(r->store);
	r->store = NULL;
}

/* 'infinity' is the last valid timestamp, where a watermark ends. */
static TimestampTz
watermark_arg(TimestampTz t)
{
	return t == DT_NOEND ? RUN_FINAL_WATERMARK : t;
}

Datum
streamflink_run_operator(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	Run		   *r;
	MemoryContext cxt;
	MemoryContext old;
	int			ord = 0;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline and events must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	InitMaterializedSRF(fcinfo, 0);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink run_operator",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	r = palloc0(sizeof(Run));
	r->cxt = cxt;
	r->msg_cxt = AllocSetContextCreate(cxt, "streamflink run_operator event",
									   ALLOCSET_DEFAULT_SIZES);

	r->def = harness_load_pipeline(name, "run_operator");
	if (!superuser() && !has_privs_of_role(GetUserId(), r->def->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for pipeline \"%s\"", name),
				 errhint("Only members of the pipeline's owning role and superusers may run its operator.")));
	r->desc = harness_event_desc(r->def);

	/* The input. */
	harness_input(PG_GETARG_ARRAYTYPE_P(1), &r->in);
	r->watermarks = palloc(sizeof(TimestampTz) * Max(r->in.n, 1));
	for (int i = 0; i < r->in.n; i++)
		r->watermarks[i] = DT_NOBEGIN;
	if (!PG_ARGISNULL(2))
	{
		Datum	   *vals;
		bool	   *nulls;
		int			nw;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
						  TYPALIGN_DOUBLE, &vals, &nulls, &nw);
		if (nw != r->in.n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("watermarks has %d elements, events %d", nw, r->in.n),
					 errhint("watermarks[i] is the watermark after events[i]; NULL leaves it where it is.")));
		for (int i = 0; i < nw; i++)
			if (!nulls[i])
				r->watermarks[i] = watermark_arg(DatumGetTimestampTz(vals[i]));
	}
	r->final = !PG_ARGISNULL(3);
	if (r->final)
		r->final_watermark = watermark_arg(PG_GETARG_TIMESTAMPTZ(3));

	r->dir = harness_make_dir();
	harness_run(r->def, r->dir, run, run_cleanup, r);

	/* The result. */
	MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	foreach(lc, r->rows)
	{
		RunRow	   *row = lfirst(lc);
		Datum		values[8];
		bool		nulls[8] = {0};

		values[0] = Int32GetDatum(++ord);
		values[1] = Int32GetDatum(row->event);
		nulls[1] = row->event == 0;
		/* the end of input as it was given */
		values[2] = TimestampTzGetDatum(row->watermark == RUN_FINAL_WATERMARK ?
										DT_NOEND : row->watermark);
		nulls[2] = row->watermark == DT_NOBEGIN;
		values[3] = CStringGetTextDatum(row->output);
		values[4] = row->op ? CStringGetTextDatum(row->op) : (Datum) 0;
		nulls[4] = row->op == NULL;
		values[5] = JsonbPGetDatum(row->key);
		nulls[5] = row->key == NULL;
		values[6] = JsonbPGetDatum(row->data);
		nulls[6] = row->data == NULL;
		values[7] = row->reason ? CStringGetTextDatum(row->reason) : (Datum) 0;
		nulls[7] = row->reason == NULL;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return (Datum) 0;
}
