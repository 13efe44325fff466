/*-------------------------------------------------------------------------
 *
 * collect_sink.c
 *	  A sink that keeps the rows an operator writes in memory, in order.
 *
 * See collect_sink.h.  Each output gets a blessed row descriptor made from
 * its column names and types; a write forms a tuple of it and turns it into
 * jsonb as row_to_json does (the names are the sink's columns, values as
 * JSON shows them), so the rows compare with a sink table's to_jsonb().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/tupdesc.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "collect_sink.h"
#include "sink.h"

struct SinkOutput
{
	char	   *name;
	int			ncols;
	int			nkeys;
	TupleDesc	desc;			/* all columns */
	TupleDesc	keydesc;		/* the first nkeys; NULL if none */
};

typedef struct CollectSink
{
	Sink		sink;			/* first: a CollectSink is a Sink */
	MemoryContext cxt;			/* the sink, its outputs and rows */
	MemoryContext scratch;		/* one write */
	List	   *rows;			/* CollectedRow, not yet taken */
} CollectSink;

static TupleDesc
make_desc(int ncols, const char *const *names, const Oid *types)
{
	TupleDesc	desc = CreateTemplateTupleDesc(ncols);

	for (int i = 0; i < ncols; i++)
		TupleDescInitEntry(desc, (AttrNumber) (i + 1), names[i], types[i], -1, 0);
	return BlessTupleDesc(desc);
}

static SinkOutput *
collect_open_output(Sink *sink, const SinkRowDesc *rd)
{
	CollectSink *cs = (CollectSink *) sink;
	MemoryContext old = MemoryContextSwitchTo(cs->cxt);
	SinkOutput *out = palloc0(sizeof(SinkOutput));

	out->name = pstrdup(rd->name);
	out->ncols = rd->ncols;
	out->nkeys = rd->nkeys;
	out->desc = make_desc(rd->ncols, rd->colnames, rd->coltypes);
	if (rd->nkeys > 0)
		out->keydesc = make_desc(rd->nkeys, rd->colnames, rd->coltypes);
	MemoryContextSwitchTo(old);
	return out;
}

/* Values as jsonb, by row_to_json (in the current context). */
static Jsonb *
to_jsonb_row(TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(desc, values, nulls);
	Datum		json;

	json = DirectFunctionCall1(row_to_json, HeapTupleGetDatum(tup));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(TextDatumGetCString(json))));
}

static Jsonb *
copy_jsonb(MemoryContext cxt, Jsonb *j)
{
	Jsonb	   *copy = MemoryContextAlloc(cxt, VARSIZE(j));

	memcpy(copy, j, VARSIZE(j));
	return copy;
}

static void
collect_write(Sink *sink, SinkOutput *out, SinkOp op, Datum *values, bool *nulls)
{
	CollectSink *cs = (CollectSink *) sink;
	MemoryContext old = MemoryContextSwitchTo(cs->scratch);
	Jsonb	   *row;
	Jsonb	   *key = NULL;
	CollectedRow *cr;

	if (op != SINK_INSERT && out->nkeys == 0)
		elog(ERROR, "streamflink: upsert or retract on output \"%s\", which has no key",
			 out->name);
	if (out->keydesc)
		key = to_jsonb_row(out->keydesc, values, nulls);
	/* A retraction's other values mean nothing (sink.h). */
	row = op == SINK_RETRACT ? key : to_jsonb_row(out->desc, values, nulls);

	MemoryContextSwitchTo(cs->cxt);
	cr = palloc(sizeof(CollectedRow));
	cr->output = out->name;
	cr->op = op == SINK_INSERT ? "insert" : op == SINK_UPSERT ? "upsert" : "retract";
	cr->key = key ? copy_jsonb(cs->cxt, key) : NULL;
	cr->row = copy_jsonb(cs->cxt, row);
	cs->rows = lappend(cs->rows, cr);
	MemoryContextSwitchTo(old);
	MemoryContextReset(cs->scratch);
	sink->rows_written++;
}

/* Nothing is batched, and there is no transaction to take part in. */
static void
collect_nothing(Sink *sink)
{
}

static void
collect_epoch_nothing(Sink *sink, int64 epoch)
{
}

static void
collect_destroy(Sink *sink)
{
	MemoryContextDelete(((CollectSink *) sink)->cxt);
}

static const SinkMethods collect_sink_methods = {
	.open_output = collect_open_output,
	.begin_epoch = collect_epoch_nothing,
	.write = collect_write,
	.flush = collect_nothing,
	.prepare = collect_epoch_nothing,
	.commit = collect_epoch_nothing,
	.abort = collect_epoch_nothing,
	.recover = collect_epoch_nothing,
	.destroy = collect_destroy,
};

Sink *
collect_sink_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "streamflink collect sink",
											  ALLOCSET_DEFAULT_SIZES);
	CollectSink *cs = MemoryContextAllocZero(cxt, sizeof(CollectSink));

	cs->sink.methods = &collect_sink_methods;
	cs->cxt = cxt;
	cs->scratch = AllocSetContextCreate(cxt, "streamflink collect sink row",
										ALLOCSET_DEFAULT_SIZES);
	return &cs->sink;
}

List *
collect_sink_take(Sink *sink)
{
	CollectSink *cs = (CollectSink *) sink;
	List	   *rows = list_copy(cs->rows);

	/* the list cells are the sink's; the rows stay until it is destroyed */
	list_free(cs->rows);
	cs->rows = NIL;
	return rows;
}
