/*-------------------------------------------------------------------------
 *
 * sink_shim.c
 *	  TEMPORARY (branch h4): lets today's operators write into a sink of
 *	  the pinned interface (sink_iface.h), until helper h2's sink.h lands.
 *
 * DELETE AT THE MERGE with h2's branch, together with sink_iface.h, the
 * "-Wl,--wrap" line of the Makefile and the one call of sink_shim_adopt in
 * run_operator.c.  After that merge the operators open their outputs and
 * call sink_write themselves, which this file imitates.
 *
 * How: today window.c and cep.c call the concrete functions of sink.c
 * (sink_prepare_window, sink_emit_window, ...).  The linker's --wrap sends
 * their calls here (__wrap_X); a sink adopted by sink_shim_adopt gets them
 * as the pinned interface's open_output and write, any other sink goes on
 * to sink.c (__real_X) as before.  The outputs follow SINK_INTERFACE.md:
 * a window's "result" (keys, window_start, window_end, aggregates; the keys
 * and window_start identify a row; UPSERT, RETRACT for a merged session),
 * a pattern's "result" and "timed_out" (INSERT).
 *
 * Memory: an adopted sink's entry lives in the sink's memory context and
 * leaves the list when that context is reset or deleted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/memutils.h"

#include "aggregate.h"
#include "catalog.h"
#include "sink_iface.h"

typedef struct SinkInsert SinkInsert;

typedef struct ShimEntry
{
	Sink	   *sink;
	Oid			result_relid;	/* a plain insert there is "result", elsewhere
								 * "timed_out" */
	SinkOutput *window;			/* the window operator's output */
	int			nkeys;
	int			naggs;
	Datum	   *values;
	bool	   *nulls;
	MemoryContextCallback cb;
	struct ShimEntry *next;
} ShimEntry;

static ShimEntry *adopted = NULL;

static void
shim_forget(void *arg)
{
	ShimEntry **p;

	for (p = &adopted; *p; p = &(*p)->next)
		if (*p == arg)
		{
			*p = (*p)->next;
			break;
		}
}

/* Route today's sink calls for 'sink' (of the pinned interface) to it. */
extern void sink_shim_adopt(Sink *sink, Oid result_relid);

void
sink_shim_adopt(Sink *sink, Oid result_relid)
{
	MemoryContext cxt = GetMemoryChunkContext(sink);
	ShimEntry  *e = MemoryContextAllocZero(cxt, sizeof(ShimEntry));

	e->sink = sink;
	e->result_relid = result_relid;
	e->cb.func = shim_forget;
	e->cb.arg = e;
	MemoryContextRegisterResetCallback(cxt, &e->cb);
	e->next = adopted;
	adopted = e;
}

static ShimEntry *
shim_entry(Sink *sink)
{
	for (ShimEntry *e = adopted; e; e = e->next)
		if (e->sink == sink)
			return e;
	return NULL;
}

/* sink.c's functions, as today's sink.h declares them. */
extern void __real_sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs,
									   TupleDesc event_desc);
extern SinkInsert *__real_sink_prepare_insert(Sink *sink, Oid relid, int ncols,
											  const char *const *names, const Oid *types);
extern void __real_sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls);
extern void __real_sink_emit_window(Sink *sink, Datum *keys, bool *keynulls,
									TimestampTz start, TimestampTz end,
									Datum *values, bool *nulls);
extern void __real_sink_retract_window(Sink *sink, Datum *keys, bool *keynulls,
									   TimestampTz start);
extern void __real_sink_dead_letter(Sink *sink, int32 partition, int64 offset,
									const char *payload, size_t len, const char *error);

extern void __wrap_sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs,
									   TupleDesc event_desc);
extern SinkInsert *__wrap_sink_prepare_insert(Sink *sink, Oid relid, int ncols,
											  const char *const *names, const Oid *types);
extern void __wrap_sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls);
extern void __wrap_sink_emit_window(Sink *sink, Datum *keys, bool *keynulls,
									TimestampTz start, TimestampTz end,
									Datum *values, bool *nulls);
extern void __wrap_sink_retract_window(Sink *sink, Datum *keys, bool *keynulls,
									   TimestampTz start);
extern void __wrap_sink_dead_letter(Sink *sink, int32 partition, int64 offset,
									const char *payload, size_t len, const char *error);

void
__wrap_sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs, TupleDesc event_desc)
{
	ShimEntry  *e = shim_entry(sink);
	SinkRowDesc rd;
	const char **names;
	Oid		   *types;
	int			ncols;
	MemoryContext old;

	if (e == NULL)
	{
		__real_sink_prepare_window(sink, def, aggs, event_desc);
		return;
	}
	old = MemoryContextSwitchTo(GetMemoryChunkContext(e));
	e->nkeys = def->nkeys;
	e->naggs = agg_count(aggs);
	ncols = e->nkeys + 2 + e->naggs;
	names = palloc(sizeof(char *) * ncols);
	types = palloc(sizeof(Oid) * ncols);
	for (int i = 0; i < e->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(event_desc, def->key_attnos[i]);

		names[i] = NameStr(att->attname);
		types[i] = att->atttypid;
	}
	names[e->nkeys] = "window_start";
	names[e->nkeys + 1] = "window_end";
	types[e->nkeys] = types[e->nkeys + 1] = TIMESTAMPTZOID;
	for (int i = 0; i < e->naggs; i++)
	{
		names[e->nkeys + 2 + i] = agg_name(aggs, i);
		types[e->nkeys + 2 + i] = agg_result_type(aggs, i);
	}
	e->values = palloc0(sizeof(Datum) * ncols);
	e->nulls = palloc0(sizeof(bool) * ncols);
	rd.name = "result";
	rd.relid = def->sink_relid;
	rd.ncols = ncols;
	rd.colnames = names;
	rd.coltypes = types;
	rd.nkeys = e->nkeys + 1;
	e->window = sink_open_output(sink, &rd);
	MemoryContextSwitchTo(old);
}

SinkInsert *
__wrap_sink_prepare_insert(Sink *sink, Oid relid, int ncols, const char *const *names,
						   const Oid *types)
{
	ShimEntry  *e = shim_entry(sink);
	SinkRowDesc rd;

	if (e == NULL)
		return __real_sink_prepare_insert(sink, relid, ncols, names, types);
	rd.name = relid == e->result_relid ? "result" : "timed_out";
	rd.relid = relid;
	rd.ncols = ncols;
	rd.colnames = names;
	rd.coltypes = types;
	rd.nkeys = 0;
	return (SinkInsert *) sink_open_output(sink, &rd);
}

void
__wrap_sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls)
{
	if (shim_entry(sink) == NULL)
		__real_sink_insert(sink, ins, values, nulls);
	else
		sink_write(sink, (SinkOutput *) ins, SINK_INSERT, values, nulls);
}

/* A window row: keys, start, end, then the aggregates (or NULLs). */
static void
shim_window_row(ShimEntry *e, SinkOp op, Datum *keys, bool *keynulls,
				TimestampTz start, TimestampTz end, Datum *values, bool *nulls)
{
	int			k = e->nkeys;

	memcpy(e->values, keys, sizeof(Datum) * k);
	memcpy(e->nulls, keynulls, sizeof(bool) * k);
	e->values[k] = TimestampTzGetDatum(start);
	e->values[k + 1] = TimestampTzGetDatum(end);
	e->nulls[k] = false;
	e->nulls[k + 1] = values == NULL;
	for (int i = 0; i < e->naggs; i++)
	{
		e->values[k + 2 + i] = values ? values[i] : (Datum) 0;
		e->nulls[k + 2 + i] = values ? nulls[i] : true;
	}
	sink_write(e->sink, e->window, op, e->values, e->nulls);
}

void
__wrap_sink_emit_window(Sink *sink, Datum *keys, bool *keynulls,
						TimestampTz start, TimestampTz end, Datum *values, bool *nulls)
{
	ShimEntry  *e = shim_entry(sink);

	if (e == NULL)
		__real_sink_emit_window(sink, keys, keynulls, start, end, values, nulls);
	else
		shim_window_row(e, SINK_UPSERT, keys, keynulls, start, end, values, nulls);
}

void
__wrap_sink_retract_window(Sink *sink, Datum *keys, bool *keynulls, TimestampTz start)
{
	ShimEntry  *e = shim_entry(sink);

	if (e == NULL)
		__real_sink_retract_window(sink, keys, keynulls, start);
	else
		shim_window_row(e, SINK_RETRACT, keys, keynulls, start, 0, NULL, NULL);
}

/*
 * Only cep.c's poison rule writes a dead letter through the operator's
 * sink, for a message a worker's previous run failed on: never in a
 * backend (sf_poison is only set in a worker).
 */
void
__wrap_sink_dead_letter(Sink *sink, int32 partition, int64 offset,
						const char *payload, size_t len, const char *error)
{
	if (shim_entry(sink) == NULL)
		__real_sink_dead_letter(sink, partition, offset, payload, len, error);
	else
		elog(ERROR, "streamflink: a dead letter written to a collecting sink");
}
