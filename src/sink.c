/*-------------------------------------------------------------------------
 *
 * sink.c
 *	  Writing results, dead letters and late events into Postgres tables.
 *
 * Statements are prepared once and kept (SPI_keepplan) and run inside the
 * worker's open epoch transaction.  Result rows (windows, matches) are
 * batched: a batch is one statement over arrays, INSERT ... SELECT FROM
 * unnest($1, ..., $n), which costs a fraction of a statement per row.  The
 * worker flushes the batches at the end of each of its transactions
 * (sink_flush), so a checkpoint never leaves a row behind.  A window row
 * re-emitted within one batch (a late firing) is kept once, the latest:
 * DISTINCT ON with the sink's own equality, as its unique index has.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "sink.h"

/* Rows a batch holds before it is written. */
#define SINK_BATCH_ROWS 1000

/*
 * Rows for one INSERT statement, written together.  'plan' takes one array
 * per column; 'row_plan' one row, for a batch of one and for columns whose
 * type has no array type (then every row goes alone).
 */
typedef struct RowBatch
{
	int			ncols;
	Oid		   *types;
	int16	   *typlen;
	bool	   *typbyval;
	char	   *typalign;
	SPIPlanPtr	plan;
	SPIPlanPtr	row_plan;
	MemoryContext cxt;			/* the rows; reset by each write */
	int			n;
	Datum	   *values;			/* SINK_BATCH_ROWS x ncols */
	bool	   *nulls;
	Datum	   *args;			/* ncols */
	char	   *argnulls;
} RowBatch;

struct Sink
{
	int32		pipeline_id;
	Datum		topic;			/* text */
	int			nkeys;
	int			naggs;
	RowBatch   *upsert;
	SPIPlanPtr	retract;
	SPIPlanPtr	dead_letter;
	SPIPlanPtr	late_event;
	List	   *batches;		/* every RowBatch, to flush */
	Datum	   *args;
	char	   *argnulls;
	bool	   *argisnull;
	int64		rows;
};

struct SinkInsert
{
	RowBatch   *batch;
};

/*
 * SPI calls return in SPI's procedure context; callers of the sink keep
 * their own (per-message) context, so restore it.
 */
static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *argtypes)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan");
	MemoryContextSwitchTo(cxt);
	return plan;
}

static void
run(SPIPlanPtr plan, Datum *args, const char *nulls, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ret = SPI_execute_plan(plan, args, nulls, false, 0);

	MemoryContextSwitchTo(cxt);
	if (ret != expected)
		elog(ERROR, "sink statement failed: %s", SPI_result_code_string(ret));
}

/*
 * A batch of rows for "<head> <rows> <tail>": head is "INSERT INTO t (cols)",
 * tail what follows the rows (ON CONFLICT ...).  With nident > 0, the first
 * nident columns identify a row, and of rows with equal identities in one
 * batch only the last is written.
 */
static RowBatch *
batch_create(Sink *sink, const char *head, const char *tail, int ncols,
			 const Oid *types, int nident, bool batchable)
{
	RowBatch   *b = palloc0(sizeof(RowBatch));
	Oid		   *arraytypes = palloc(sizeof(Oid) * ncols);
	StringInfoData params,
				arrays,
				names,
				ident;

	b->ncols = ncols;
	b->types = palloc(sizeof(Oid) * ncols);
	memcpy(b->types, types, sizeof(Oid) * ncols);
	b->typlen = palloc(sizeof(int16) * ncols);
	b->typbyval = palloc(sizeof(bool) * ncols);
	b->typalign = palloc(sizeof(char) * ncols);
	b->args = palloc(sizeof(Datum) * ncols);
	b->argnulls = palloc(ncols);

	initStringInfo(&params);
	initStringInfo(&arrays);
	initStringInfo(&names);
	initStringInfo(&ident);
	for (int i = 0; i < ncols; i++)
	{
		get_typlenbyvalalign(types[i], &b->typlen[i], &b->typbyval[i], &b->typalign[i]);
		arraytypes[i] = get_array_type(types[i]);
		if (!OidIsValid(arraytypes[i]))
			batchable = false;
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
		appendStringInfo(&names, "%sc%d", i ? ", " : "", i + 1);
		if (i < nident)
			appendStringInfo(&ident, "c%d, ", i + 1);
	}

	b->row_plan = prepare(psprintf("%s VALUES (%s) %s", head, params.data, tail),
						  ncols, b->types);
	if (batchable)
	{
		if (nident > 0)
			appendStringInfo(&arrays,
							 "SELECT %s FROM (SELECT DISTINCT ON (%s) * "
							 "FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) "
							 "ORDER BY %sord DESC) d",
							 names.data, pnstrdup(ident.data, ident.len - 2),
							 params.data, names.data, ident.data);
		else
			appendStringInfo(&arrays, "SELECT * FROM unnest(%s)", params.data);
		b->plan = prepare(psprintf("%s %s %s", head, arrays.data, tail),
						  ncols, arraytypes);
		b->cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink sink batch",
									   ALLOCSET_DEFAULT_SIZES);
		b->values = palloc(sizeof(Datum) * SINK_BATCH_ROWS * ncols);
		b->nulls = palloc(sizeof(bool) * SINK_BATCH_ROWS * ncols);
	}
	sink->batches = lappend(sink->batches, b);
	return b;
}

static void
batch_write(RowBatch *b)
{
	MemoryContext old;

	if (b->n == 0)
		return;
	if (b->n == 1)
	{
		for (int c = 0; c < b->ncols; c++)
			b->argnulls[c] = b->nulls[c] ? 'n' : ' ';
		run(b->row_plan, b->values, b->argnulls, SPI_OK_INSERT);
	}
	else
	{
		Datum	   *colvals = palloc(sizeof(Datum) * b->n);
		bool	   *colnulls = palloc(sizeof(bool) * b->n);
		int			dims[1] = {b->n};
		int			lbs[1] = {1};

		old = MemoryContextSwitchTo(b->cxt);
		for (int c = 0; c < b->ncols; c++)
		{
			for (int r = 0; r < b->n; r++)
			{
				colvals[r] = b->values[r * b->ncols + c];
				colnulls[r] = b->nulls[r * b->ncols + c];
			}
			b->args[c] = PointerGetDatum(construct_md_array(colvals, colnulls, 1, dims, lbs,
															b->types[c], b->typlen[c],
															b->typbyval[c], b->typalign[c]));
			b->argnulls[c] = ' ';
		}
		MemoryContextSwitchTo(old);
		run(b->plan, b->args, b->argnulls, SPI_OK_INSERT);
		pfree(colvals);
		pfree(colnulls);
	}
	b->n = 0;
	MemoryContextReset(b->cxt);
}

/* Add a row (copied); written alone if the batch cannot batch. */
static void
batch_add(RowBatch *b, Datum *values, bool *nulls)
{
	MemoryContext old;

	if (b->plan == NULL)
	{
		for (int c = 0; c < b->ncols; c++)
			b->argnulls[c] = nulls[c] ? 'n' : ' ';
		run(b->row_plan, values, b->argnulls, SPI_OK_INSERT);
		return;
	}
	old = MemoryContextSwitchTo(b->cxt);
	for (int c = 0; c < b->ncols; c++)
	{
		int			i = b->n * b->ncols + c;

		b->nulls[i] = nulls[c];
		b->values[i] = nulls[c] ? (Datum) 0 :
			datumCopy(values[c], b->typbyval[c], b->typlen[c]);
	}
	MemoryContextSwitchTo(old);
	if (++b->n == SINK_BATCH_ROWS)
		batch_write(b);
}

void
sink_flush(Sink *sink)
{
	ListCell   *lc;

	foreach(lc, sink->batches)
		batch_write((RowBatch *) lfirst(lc));
}

Sink *
sink_create(PipelineDef *def)
{
	Sink	   *sink = palloc0(sizeof(Sink));
	Oid			types[8];

	sink->pipeline_id = def->id;
	sink->topic = CStringGetTextDatum(def->source.topic);
	sink->args = palloc(sizeof(Datum) * 8);
	sink->argnulls = palloc(sizeof(char) * 8);

	types[0] = INT4OID;
	types[1] = TEXTOID;
	types[2] = INT4OID;
	types[3] = INT8OID;
	types[4] = BYTEAOID;
	types[5] = TEXTOID;
	sink->dead_letter = prepare("INSERT INTO streamflink.dead_letter "
								"(pipeline_id, topic, partition, \"offset\", payload, error) "
								"VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
	types[5] = TIMESTAMPTZOID;
	types[6] = TIMESTAMPTZOID;
	types[7] = TEXTOID;
	sink->late_event = prepare("INSERT INTO streamflink.late_event "
							   "(pipeline_id, topic, partition, \"offset\", payload, "
							   "event_time, watermark, reason) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, types);
	return sink;
}

static char *
qualified_relname(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

void
sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs, TupleDesc event_desc)
{
	char	   *relname = qualified_relname(def->sink_relid);
	int			nargs;
	Oid		   *types;
	bool		batchable = true;
	StringInfoData cols,
				keys,
				updates,
				where;

	sink->nkeys = def->nkeys;
	sink->naggs = agg_count(aggs);
	nargs = sink->nkeys + 2 + sink->naggs;
	types = palloc(sizeof(Oid) * Max(nargs, 8));
	sink->args = repalloc(sink->args, sizeof(Datum) * Max(nargs, 8));
	sink->argnulls = repalloc(sink->argnulls, sizeof(char) * Max(nargs, 8));
	sink->argisnull = palloc(sizeof(bool) * Max(nargs, 8));

	initStringInfo(&cols);
	initStringInfo(&keys);
	initStringInfo(&updates);
	initStringInfo(&where);
	for (int i = 0; i < nargs; i++)
	{
		const char *name;

		if (i < sink->nkeys)
		{
			Form_pg_attribute att = TupleDescAttr(event_desc, def->key_attnos[i]);

			name = quote_identifier(NameStr(att->attname));
			types[i] = att->atttypid;
			appendStringInfo(&keys, "%s, ", name);
			appendStringInfo(&where, "%s IS NOT DISTINCT FROM $%d AND ", name, i + 1);

			/*
			 * A batch keeps one row per key with the type's default
			 * collation; a key with another (maybe nondeterministic) one
			 * could count as one key in the unique index and two in the
			 * batch.  Such keys go row by row.
			 */
			if (att->attcollation != get_typcollation(att->atttypid))
				batchable = false;
		}
		else if (i < sink->nkeys + 2)
		{
			name = (i == sink->nkeys) ? "window_start" : "window_end";
			types[i] = TIMESTAMPTZOID;
		}
		else
		{
			name = quote_identifier(agg_name(aggs, i - sink->nkeys - 2));
			types[i] = agg_result_type(aggs, i - sink->nkeys - 2);
		}
		if (i >= sink->nkeys + 1)
			appendStringInfo(&updates, "%s%s = EXCLUDED.%s",
							 updates.len ? ", " : "", name, name);
		appendStringInfo(&cols, "%s%s", i ? ", " : "", name);
	}

	sink->upsert = batch_create(sink,
								psprintf("INSERT INTO %s (%s)", relname, cols.data),
								psprintf("ON CONFLICT (%swindow_start) DO UPDATE SET %s",
										 keys.data, updates.data),
								nargs, types, sink->nkeys + 1, batchable);
	sink->retract = prepare(psprintf("DELETE FROM %s WHERE %swindow_start = $%d",
									 relname, where.data, sink->nkeys + 1),
							sink->nkeys + 1, types);
}

SinkInsert *
sink_prepare_insert(Sink *sink, Oid relid, int ncols, const char *const *names,
					const Oid *types)
{
	SinkInsert *ins = palloc0(sizeof(SinkInsert));
	StringInfoData cols;

	initStringInfo(&cols);
	for (int i = 0; i < ncols; i++)
		appendStringInfo(&cols, "%s%s", i ? ", " : "", quote_identifier(names[i]));
	ins->batch = batch_create(sink,
							  psprintf("INSERT INTO %s (%s)", qualified_relname(relid), cols.data),
							  "", ncols, types, 0, true);
	return ins;
}

void
sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls)
{
	batch_add(ins->batch, values, nulls);
	sink->rows++;
}

static void
set_args(Sink *sink, int from, Datum *vals, bool *nulls, int n)
{
	for (int i = 0; i < n; i++)
	{
		sink->args[from + i] = vals[i];
		sink->argnulls[from + i] = nulls[i] ? 'n' : ' ';
	}
}

void
sink_emit_window(Sink *sink, Datum *keys, bool *keynulls,
				 TimestampTz start, TimestampTz end, Datum *values, bool *nulls)
{
	int			k = sink->nkeys;

	set_args(sink, 0, keys, keynulls, k);
	sink->args[k] = TimestampTzGetDatum(start);
	sink->argnulls[k] = ' ';
	sink->args[k + 1] = TimestampTzGetDatum(end);
	sink->argnulls[k + 1] = ' ';
	set_args(sink, k + 2, values, nulls, sink->naggs);
	for (int i = 0; i < k + 2 + sink->naggs; i++)
		sink->argisnull[i] = sink->argnulls[i] == 'n';
	batch_add(sink->upsert, sink->args, sink->argisnull);
	sink->rows++;
}

void
sink_retract_window(Sink *sink, Datum *keys, bool *keynulls, TimestampTz start)
{
	int			k = sink->nkeys;

	/* The row to remove may still be in the batch. */
	batch_write(sink->upsert);
	set_args(sink, 0, keys, keynulls, k);
	sink->args[k] = TimestampTzGetDatum(start);
	sink->argnulls[k] = ' ';
	run(sink->retract, sink->args, sink->argnulls, SPI_OK_DELETE);
}

static Datum
payload_datum(const char *payload, size_t len, char *isnull)
{
	bytea	   *b;

	*isnull = payload ? ' ' : 'n';
	if (payload == NULL)
		return (Datum) 0;
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), payload, len);
	return PointerGetDatum(b);
}

static void
common_args(Sink *sink, int32 partition, int64 offset, const char *payload, size_t len)
{
	memset(sink->argnulls, ' ', 8);
	sink->args[0] = Int32GetDatum(sink->pipeline_id);
	sink->args[1] = sink->topic;
	sink->args[2] = Int32GetDatum(partition);
	sink->args[3] = Int64GetDatum(offset);
	sink->args[4] = payload_datum(payload, len, &sink->argnulls[4]);
}

void
sink_dead_letter(Sink *sink, int32 partition, int64 offset,
				 const char *payload, size_t len, const char *error)
{
	common_args(sink, partition, offset, payload, len);
	sink->args[5] = CStringGetTextDatum(error);
	run(sink->dead_letter, sink->args, sink->argnulls, SPI_OK_INSERT);
	sink->rows++;
}

void
sink_late_event(Sink *sink, int32 partition, int64 offset,
				TimestampTz event_time, TimestampTz watermark,
				const char *payload, size_t len, const char *reason)
{
	common_args(sink, partition, offset, payload, len);
	sink->args[5] = TimestampTzGetDatum(event_time);
	sink->args[6] = TimestampTzGetDatum(watermark);
	sink->args[7] = CStringGetTextDatum(reason);
	run(sink->late_event, sink->args, sink->argnulls, SPI_OK_INSERT);
	sink->rows++;
}

int64
sink_take_row_count(Sink *sink)
{
	int64		n = sink->rows;

	sink->rows = 0;
	return n;
}

void
sink_destroy(Sink *sink)
{
	ListCell   *lc;

	foreach(lc, sink->batches)
	{
		RowBatch   *b = (RowBatch *) lfirst(lc);

		if (b->plan)
			SPI_freeplan(b->plan);
		SPI_freeplan(b->row_plan);
		if (b->cxt)
			MemoryContextDelete(b->cxt);
		b->n = 0;
	}
	list_free(sink->batches);
	sink->batches = NIL;
	if (sink->retract)
		SPI_freeplan(sink->retract);
	SPI_freeplan(sink->dead_letter);
	SPI_freeplan(sink->late_event);
	sink->upsert = NULL;
	sink->retract = sink->dead_letter = sink->late_event = NULL;
}
