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
 * A row the sink refuses for a reason of its own data (a key too long for
 * the unique index, a user's CHECK constraint or trigger, a value out of a
 * domain's range) must not stop the pipeline: it would fail again at every
 * replay.  So each batch statement runs in a subtransaction (one per
 * statement, not per row); if it fails with such an error, its rows are
 * written again one at a time, each in its own subtransaction, and the
 * refused ones go to the dead-letter table with the row as JSON (see
 * sink_error_is_data).  Any other error (a dropped table, a lost
 * privilege) is no fault of a row and is raised as before.
 *
 * Statements on the user's tables run as the pipeline's owner, those on
 * the extension's own tables as the worker (run_as.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

#include "run_as.h"
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
	struct Sink *sink;			/* for dead letters */
	int			ncols;
	char	  **names;			/* column names, for a refused row's JSON */
	Oid		   *types;
	int16	   *typlen;
	bool	   *typbyval;
	char	   *typalign;
	SPIPlanPtr	plan;			/* NULL: rows go one by one */
	SPIPlanPtr	row_plan;
	SPIPlanPtr	json_plan;		/* a row as JSON text; made when needed */
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
	int64		refused;		/* result rows sent to the dead-letter table */
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
prepare(const char *sql, int nargs, Oid *argtypes, bool user_table)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	SPIPlanPtr	plan;

	if (user_table)
		run_as_owner(&as);
	else
		run_as_extension(&as);
	plan = SPI_prepare(sql, nargs, argtypes);
	run_as_restore(&as);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan");
	MemoryContextSwitchTo(cxt);
	return plan;
}

/*
 * Run a statement: on a user's table (sink, timed-out table) as the
 * pipeline's owner, so that its triggers, defaults, constraints and
 * privilege checks are the owner's; on the extension's own tables (dead
 * letters, late events) as the worker.
 */
static void
run(SPIPlanPtr plan, Datum *args, const char *nulls, int expected, bool user_table)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	int			ret;

	if (user_table)
		run_as_owner(&as);
	else
		run_as_extension(&as);
	ret = SPI_execute_plan(plan, args, nulls, false, 0);
	run_as_restore(&as);
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
			 const char *const *names_in, const Oid *types, int nident,
			 bool batchable)
{
	RowBatch   *b = palloc0(sizeof(RowBatch));
	Oid		   *arraytypes = palloc(sizeof(Oid) * ncols);
	StringInfoData params,
				arrays,
				names,
				ident;

	b->sink = sink;
	b->ncols = ncols;
	b->names = palloc(sizeof(char *) * ncols);
	for (int i = 0; i < ncols; i++)
		b->names[i] = pstrdup(names_in[i]);
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

		/*
		 * unnest() of several arrays expands an array of a composite type
		 * into the composite's fields, not one column: such rows go one by
		 * one, as those of a type with no array type.
		 */
		if (!OidIsValid(arraytypes[i]) || type_is_rowtype(types[i]))
			batchable = false;
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
		appendStringInfo(&names, "%sc%d", i ? ", " : "", i + 1);
		if (i < nident)
			appendStringInfo(&ident, "c%d, ", i + 1);
	}

	b->row_plan = prepare(psprintf("%s VALUES (%s) %s", head, params.data, tail),
						  ncols, b->types, true);
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
						  ncols, arraytypes, true);
	}

	/*
	 * Rows are kept until written even when they go one by one: a failed
	 * statement's rows are then still there to be retried.
	 */
	b->cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink sink batch",
								   ALLOCSET_DEFAULT_SIZES);
	b->values = palloc(sizeof(Datum) * SINK_BATCH_ROWS * ncols);
	b->nulls = palloc(sizeof(bool) * SINK_BATCH_ROWS * ncols);
	sink->batches = lappend(sink->batches, b);
	return b;
}

/*
 * Errors that are a row's own fault: data exceptions (class 22), integrity
 * violations (class 23: the sink's or a user's constraints, or a trigger
 * raising one), and a value too large for the sink (54000, e.g. a key
 * longer than a btree entry may be).  A trigger refusing a row with a
 * plain RAISE (P0001) is not one of them: it could as well be a bug, so it
 * stops the pipeline, which shows the error; a trigger that means to
 * refuse rows raises an integrity or data error.
 */
static bool
sink_error_is_data(int sqlerrcode)
{
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/* Row r of the batch as the arguments of row_plan. */
static void
row_args(RowBatch *b, int r)
{
	for (int c = 0; c < b->ncols; c++)
		b->argnulls[c] = b->nulls[r * b->ncols + c] ? 'n' : ' ';
}

/* Rows from..n-1 of the batch, each its own statement. */
static void
write_rows(RowBatch *b, int from)
{
	for (int r = from; r < b->n; r++)
	{
		row_args(b, r);
		run(b->row_plan, &b->values[r * b->ncols], b->argnulls, SPI_OK_INSERT, true);
	}
}

/* The whole batch: one statement over arrays, or row by row if it cannot. */
static void
write_batch(RowBatch *b)
{
	Datum	   *colvals;
	bool	   *colnulls;
	int			dims[1] = {b->n};
	int			lbs[1] = {1};
	MemoryContext old;

	if (b->plan == NULL || b->n == 1)
	{
		write_rows(b, 0);
		return;
	}
	colvals = palloc(sizeof(Datum) * b->n);
	colnulls = palloc(sizeof(bool) * b->n);
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
	run(b->plan, b->args, b->argnulls, SPI_OK_INSERT, true);
	pfree(colvals);
	pfree(colnulls);
}

/*
 * Run write_batch (rows < 0) or the one row 'rows' in a subtransaction.
 * Returns NULL on success; on failure, the subtransaction is rolled back
 * and the error is returned if it is a row's fault, else raised again.
 */
static ErrorData *
try_write(RowBatch *b, int row)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (row < 0)
			write_batch(b);
		else
		{
			row_args(b, row);
			run(b->row_plan, &b->values[row * b->ncols], b->argnulls, SPI_OK_INSERT, true);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!sink_error_is_data(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}

/* A refused row to the dead-letter table: the row as JSON, and the error. */
static void
dead_letter_row(RowBatch *b, int row, ErrorData *edata)
{
	Sink	   *sink = b->sink;
	Datum		json;
	bool		isnull;
	char	   *rowjson;
	char	   *error;

	if (b->json_plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT to_jsonb(r)::text FROM (SELECT ");
		for (int c = 0; c < b->ncols; c++)
			appendStringInfo(&sql, "%s$%d AS %s", c ? ", " : "", c + 1,
							 quote_identifier(b->names[c]));
		appendStringInfoString(&sql, ") r");
		b->json_plan = prepare(sql.data, b->ncols, b->types, true);
	}
	row_args(b, row);
	run(b->json_plan, &b->values[row * b->ncols], b->argnulls, SPI_OK_SELECT, true);
	json = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	rowjson = isnull ? NULL : TextDatumGetCString(json);
	/* not the detail: it may name the tuple's place, which means nothing */
	error = psprintf("sink refused the row: %s", edata->message);
	sink_dead_letter_row(sink, rowjson, rowjson ? strlen(rowjson) : 0, error);
	sink->refused++;
}

static void
batch_write(RowBatch *b)
{
	ErrorData  *edata;

	if (b->n == 0)
		return;

	/*
	 * The common case is one statement (in one subtransaction); only when it
	 * fails are the rows tried one by one, to find the refused ones.
	 */
	edata = try_write(b, -1);
	if (edata != NULL)
	{
		FreeErrorData(edata);
		for (int r = 0; r < b->n; r++)
		{
			edata = try_write(b, r);
			if (edata != NULL)
			{
				dead_letter_row(b, r, edata);
				FreeErrorData(edata);
			}
		}
	}
	b->n = 0;
	MemoryContextReset(b->cxt);
}

/* Add a row (copied); the batch is written when full. */
static void
batch_add(RowBatch *b, Datum *values, bool *nulls)
{
	MemoryContext old;

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
								"VALUES ($1, $2, $3, $4, $5, $6)", 6, types, false);
	types[5] = TIMESTAMPTZOID;
	types[6] = TIMESTAMPTZOID;
	types[7] = TEXTOID;
	sink->late_event = prepare("INSERT INTO streamflink.late_event "
							   "(pipeline_id, topic, partition, \"offset\", payload, "
							   "event_time, watermark, reason) "
							   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, types, false);
	return sink;
}

/*
 * The table's name for our statements.  The OID comes from the catalog and
 * the table may have been dropped since (catalog_check_pipeline tells the
 * worker first; this is the last line).
 */
static char *
qualified_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = relname ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (relname == NULL || nspname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %u written by the pipeline no longer exists", relid)));
	return quote_qualified_identifier(nspname, relname);
}

void
sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs, TupleDesc event_desc)
{
	char	   *relname = qualified_relname(def->sink_relid);
	int			nargs;
	Oid		   *types;
	const char **rawnames;
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
	rawnames = palloc(sizeof(char *) * Max(nargs, 1));

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

			rawnames[i] = NameStr(att->attname);
			name = quote_identifier(rawnames[i]);
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
			name = rawnames[i] = (i == sink->nkeys) ? "window_start" : "window_end";
			types[i] = TIMESTAMPTZOID;
		}
		else
		{
			rawnames[i] = agg_name(aggs, i - sink->nkeys - 2);
			name = quote_identifier(rawnames[i]);
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
								nargs, rawnames, types, sink->nkeys + 1, batchable);
	sink->retract = prepare(psprintf("DELETE FROM %s WHERE %swindow_start = $%d",
									 relname, where.data, sink->nkeys + 1),
							sink->nkeys + 1, types, true);
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
							  "", ncols, names, types, 0, true);
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
	run(sink->retract, sink->args, sink->argnulls, SPI_OK_DELETE, true);
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
	run(sink->dead_letter, sink->args, sink->argnulls, SPI_OK_INSERT, false);
	sink->rows++;
}

void
sink_dead_letter_row(Sink *sink, const char *payload, size_t len, const char *error)
{
	common_args(sink, 0, 0, payload, len);
	sink->argnulls[2] = 'n';
	sink->argnulls[3] = 'n';
	sink->args[5] = CStringGetTextDatum(error);
	run(sink->dead_letter, sink->args, sink->argnulls, SPI_OK_INSERT, false);
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
	run(sink->late_event, sink->args, sink->argnulls, SPI_OK_INSERT, false);
	sink->rows++;
}

int64
sink_take_refused_count(Sink *sink)
{
	int64		n = sink->refused;

	sink->refused = 0;
	return n;
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
