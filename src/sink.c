/*-------------------------------------------------------------------------
 *
 * sink.c
 *	  Writing results, dead letters and late events into Postgres tables.
 *
 * Statements are prepared once and kept (SPI_keepplan); each call runs one
 * of them inside the worker's open epoch transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "sink.h"

struct Sink
{
	int32		pipeline_id;
	Datum		topic;			/* text */
	int			nkeys;
	int			naggs;
	SPIPlanPtr	upsert;
	SPIPlanPtr	retract;
	SPIPlanPtr	dead_letter;
	SPIPlanPtr	late_event;
	Datum	   *args;
	char	   *argnulls;
	int64		rows;
};

struct SinkInsert
{
	int			ncols;
	SPIPlanPtr	plan;
	char	   *argnulls;
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
	StringInfoData cols,
				params,
				keys,
				updates,
				where;

	sink->nkeys = def->nkeys;
	sink->naggs = agg_count(aggs);
	nargs = sink->nkeys + 2 + sink->naggs;
	types = palloc(sizeof(Oid) * Max(nargs, 8));
	sink->args = repalloc(sink->args, sizeof(Datum) * Max(nargs, 8));
	sink->argnulls = repalloc(sink->argnulls, sizeof(char) * Max(nargs, 8));

	initStringInfo(&cols);
	initStringInfo(&params);
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
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
	}

	sink->upsert = prepare(psprintf("INSERT INTO %s (%s) VALUES (%s) "
									"ON CONFLICT (%swindow_start) DO UPDATE SET %s",
									relname, cols.data, params.data, keys.data,
									updates.data),
						   nargs, types);
	sink->retract = prepare(psprintf("DELETE FROM %s WHERE %swindow_start = $%d",
									 relname, where.data, sink->nkeys + 1),
							sink->nkeys + 1, types);
}

SinkInsert *
sink_prepare_insert(Sink *sink, Oid relid, int ncols, const char *const *names,
					const Oid *types)
{
	SinkInsert *ins = palloc0(sizeof(SinkInsert));
	StringInfoData cols,
				params;

	initStringInfo(&cols);
	initStringInfo(&params);
	for (int i = 0; i < ncols; i++)
	{
		appendStringInfo(&cols, "%s%s", i ? ", " : "", quote_identifier(names[i]));
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
	}
	ins->ncols = ncols;
	ins->argnulls = palloc(Max(ncols, 1));
	ins->plan = prepare(psprintf("INSERT INTO %s (%s) VALUES (%s)",
								 qualified_relname(relid), cols.data, params.data),
						ncols, (Oid *) types);
	return ins;
}

void
sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls)
{
	for (int i = 0; i < ins->ncols; i++)
		ins->argnulls[i] = nulls[i] ? 'n' : ' ';
	run(ins->plan, values, ins->argnulls, SPI_OK_INSERT);
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
	run(sink->upsert, sink->args, sink->argnulls, SPI_OK_INSERT);
	sink->rows++;
}

void
sink_retract_window(Sink *sink, Datum *keys, bool *keynulls, TimestampTz start)
{
	int			k = sink->nkeys;

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
