/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reading source and pipeline definitions from the catalog tables.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "catalog.h"

static int64
interval_us(Datum d, bool isnull)
{
	Interval   *i;
	int64		us;

	if (isnull)
		return -1;
	i = DatumGetIntervalP(d);
	/* Months were refused at creation; days count as 24 hours. */
	if (pg_mul_s64_overflow((int64) i->day, USECS_PER_DAY, &us) ||
		pg_add_s64_overflow(us, i->time, &us))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("interval out of range")));
	return us;
}

/* Find a column of a composite type by name: 0-based, or -1. */
static int
row_type_attno(Oid row_type, const char *colname, Oid *coltype)
{
	TupleDesc	desc;
	int			result = -1;

	/* A dropped row type: catalog_check_pipeline says so. */
	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(row_type)))
		return -1;
	desc = lookup_rowtype_tupdesc(row_type, -1);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), colname) == 0)
		{
			result = i;
			if (coltype)
				*coltype = att->atttypid;
			break;
		}
	}
	ReleaseTupleDesc(desc);
	return result;
}

/*
 * The columns catalog_load_pipeline reads, one line each: the name it is
 * read by and its SQL expression.  The query's SELECT list is made from
 * this list, and each column is found in the result by name (SPI_fnumber,
 * once per load), never by position: a new column is one line here plus
 * the line that reads it into PipelineDef.
 *
 * Columns added after 0.1 are read through to_jsonb: a 0.1 catalog (before
 * ALTER EXTENSION UPDATE) has none, and must still load, so that the worker
 * can refuse it with checkpoint_check_catalog_version's clear error.
 */
#define PIPELINE_COLUMNS(C) \
	C(id, "p.id") \
	C(name, "p.name") \
	C(state, "p.state") \
	C(key_columns, "p.key_columns") \
	C(window_kind, "p.window_kind") \
	C(window_size, "p.window_size") \
	C(window_slide, "p.window_slide") \
	C(session_gap, "p.session_gap") \
	C(allowed_lateness, "p.allowed_lateness") \
	C(checkpoint_interval, "p.checkpoint_interval") \
	C(aggregates, "p.aggregates") \
	C(sink, "p.sink::oid") \
	C(source_id, "s.id") \
	C(source_name, "s.name") \
	C(brokers, "s.brokers") \
	C(topic, "s.topic") \
	C(format, "s.format") \
	C(row_type, "s.row_type::oid") \
	C(event_time, "s.event_time") \
	C(max_out_of_orderness, "s.max_out_of_orderness") \
	C(idle_timeout, "s.idle_timeout") \
	C(options, "s.options") \
	C(kind, "p.kind") \
	C(pattern, "p.pattern") \
	C(define, "p.define") \
	C(measures, "p.measures") \
	C(skip, "p.skip") \
	C(within, "p.within") \
	C(timed_out, "p.timed_out::oid") \
	C(source_owner, "s.owner::oid") \
	C(owner, "p.owner::oid") \
	C(aggregates_tree, "p.aggregates_tree") \
	C(pattern_tree, "p.pattern_tree") \
	C(max_partial_matches, "p.max_partial_matches") \
	C(max_partial_match_events, "p.max_partial_match_events") \
	C(state_profile, "to_jsonb(p) ->> 'state_profile'") \
	C(state_options, "to_jsonb(p) ->> 'state_options'") \
	C(query_tree, "to_jsonb(p) ->> 'query_tree'") \
	C(start_position, "coalesce(to_jsonb(p) ->> 'start_position', to_jsonb(s) ->> 'start_position')") \
	C(key_format, "to_jsonb(s) ->> 'key_format'") \
	C(metadata, "to_jsonb(s) -> 'metadata'") \
	C(avro_schema, "to_jsonb(s) ->> 'avro_schema'") \
	C(schema_registry, "to_jsonb(s) ->> 'schema_registry'") \
	C(sink_topic, "to_jsonb(p) ->> 'sink_topic'") \
	C(sink_brokers, "to_jsonb(p) ->> 'sink_brokers'") \
	C(sink_format, "to_jsonb(p) ->> 'sink_format'") \
	C(sink_options, "ARRAY(SELECT pg_catalog.jsonb_array_elements_text(to_jsonb(p) -> 'sink_options'))") \
	C(parallelism, "(to_jsonb(p) ->> 'parallelism')::int") \
	C(checkpoint_mode, "to_jsonb(p) ->> 'checkpoint_mode'") \
	C(aligned_checkpoint_timeout, "(extract(epoch FROM (to_jsonb(p) ->> 'aligned_checkpoint_timeout')::interval) * 1000000)::int8") \
	C(local_aggregation, "(to_jsonb(p) ->> 'local_aggregation')::boolean") \
	/* a new column: one line above this one */

#define PIPELINE_COLUMN_ENUM(name, expr) PCOL_##name,
#define PIPELINE_COLUMN_NAME(name, expr) #name,
#define PIPELINE_COLUMN_EXPR(name, expr) expr,

typedef enum PipelineColumn
{
	PIPELINE_COLUMNS(PIPELINE_COLUMN_ENUM)
	NUM_PIPELINE_COLUMNS
} PipelineColumn;

static const char *const pipeline_column_names[NUM_PIPELINE_COLUMNS] = {
	PIPELINE_COLUMNS(PIPELINE_COLUMN_NAME)
};

static const char *const pipeline_column_exprs[NUM_PIPELINE_COLUMNS] = {
	PIPELINE_COLUMNS(PIPELINE_COLUMN_EXPR)
};

/* The row being read, and where each column is in it. */
typedef struct PipelineRow
{
	HeapTuple	tup;
	TupleDesc	desc;
	int			attnos[NUM_PIPELINE_COLUMNS];
} PipelineRow;

static void
pipeline_row_init(PipelineRow *row, HeapTuple tup, TupleDesc desc)
{
	row->tup = tup;
	row->desc = desc;
	for (int i = 0; i < NUM_PIPELINE_COLUMNS; i++)
	{
		row->attnos[i] = SPI_fnumber(desc, pipeline_column_names[i]);
		if (row->attnos[i] <= 0)
			elog(ERROR, "streamflink pipeline query has no column \"%s\"",
				 pipeline_column_names[i]);
	}
}

/* A column as text (NULL for NULL), in the current memory context. */
static char *
col_text(PipelineRow *row, PipelineColumn col)
{
	return SPI_getvalue(row->tup, row->desc, row->attnos[col]);
}

static Datum
col_datum(PipelineRow *row, PipelineColumn col, bool *isnull)
{
	return SPI_getbinval(row->tup, row->desc, row->attnos[col], isnull);
}

/* An interval column in microseconds, -1 for NULL. */
static int64
col_interval(PipelineRow *row, PipelineColumn col)
{
	bool		isnull;
	Datum		d = col_datum(row, col, &isnull);

	return interval_us(d, isnull);
}

/* An int4 column, 'dflt' for NULL. */
static int32
col_int32(PipelineRow *row, PipelineColumn col, int32 dflt)
{
	bool		isnull;
	Datum		d = col_datum(row, col, &isnull);

	return isnull ? dflt : DatumGetInt32(d);
}

/* An oid column, InvalidOid for NULL. */
static Oid
col_oid(PipelineRow *row, PipelineColumn col)
{
	bool		isnull;
	Datum		d = col_datum(row, col, &isnull);

	return isnull ? InvalidOid : DatumGetObjectId(d);
}

/* A text[] column as a List of C strings, NIL for NULL. */
static List *
col_text_list(PipelineRow *row, PipelineColumn col)
{
	bool		isnull;
	Datum		d = col_datum(row, col, &isnull);
	List	   *result = NIL;
	Datum	   *elems;
	int			nelems;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &nelems);
	for (int i = 0; i < nelems; i++)
		result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

PipelineDef *
catalog_load_pipeline(int32 id, const char *name)
{
	StringInfoData query;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	char		argnulls[2] = {' ', ' '};
	MemoryContext caller = CurrentMemoryContext;
	PipelineDef *def = NULL;
	int			ret;

	initStringInfo(&query);
	appendStringInfoString(&query, "SELECT ");
	for (int i = 0; i < NUM_PIPELINE_COLUMNS; i++)
		appendStringInfo(&query, "%s%s AS %s", i > 0 ? ", " : "",
						 pipeline_column_exprs[i], pipeline_column_names[i]);
	appendStringInfoString(&query,
						   " FROM streamflink.pipeline p JOIN streamflink.source s ON s.id = p.source_id"
						   " WHERE CASE WHEN $2 IS NULL THEN p.id = $1 ELSE p.name = $2 END");

	args[0] = Int32GetDatum(id);
	if (name)
		args[1] = CStringGetTextDatum(name);
	else
		argnulls[1] = 'n';

	SPI_connect();
	ret = SPI_execute_with_args(query.data, 2, argtypes, args, argnulls, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.pipeline: %s", SPI_result_code_string(ret));

	if (SPI_processed == 1)
	{
		PipelineRow row;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		char	   *kind;
		char	   *et;
		char	   *mode;
		List	   *keys;
		ListCell   *lc;

		pipeline_row_init(&row, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);

		def = palloc0(sizeof(PipelineDef));
		def->id = col_int32(&row, PCOL_id, 0);
		def->name = col_text(&row, PCOL_name);
		def->running = strcmp(col_text(&row, PCOL_state), "running") == 0;
		kind = col_text(&row, PCOL_window_kind);
		def->window_kind = kind == NULL ? WINDOW_TUMBLE :
			strcmp(kind, "tumble") == 0 ? WINDOW_TUMBLE :
			strcmp(kind, "hop") == 0 ? WINDOW_HOP : WINDOW_SESSION;
		def->size = col_interval(&row, PCOL_window_size);
		def->slide = col_interval(&row, PCOL_window_slide);
		if (def->window_kind == WINDOW_TUMBLE)
			def->slide = def->size;
		def->gap = col_interval(&row, PCOL_session_gap);
		def->allowed_lateness = col_interval(&row, PCOL_allowed_lateness);
		def->checkpoint_interval = col_interval(&row, PCOL_checkpoint_interval);
		def->aggregates = col_text(&row, PCOL_aggregates);
		def->sink_relid = col_oid(&row, PCOL_sink);

		def->source.id = col_int32(&row, PCOL_source_id, 0);
		def->source.name = col_text(&row, PCOL_source_name);
		def->source.brokers = col_text(&row, PCOL_brokers);
		def->source.topic = col_text(&row, PCOL_topic);
		def->source.format = col_text(&row, PCOL_format);
		def->source.row_type = col_oid(&row, PCOL_row_type);
		et = col_text(&row, PCOL_event_time);
		def->source.event_time_name = et;
		def->source.event_time_attno = -1;
		if (et)
			def->source.event_time_attno = row_type_attno(def->source.row_type, et,
														  &def->source.event_time_type);
		def->source.max_out_of_orderness = col_interval(&row, PCOL_max_out_of_orderness);
		def->source.idle_timeout = col_interval(&row, PCOL_idle_timeout);
		def->source.options = col_text_list(&row, PCOL_options);

		kind = col_text(&row, PCOL_kind);
		def->kind = strcmp(kind, "pattern") == 0 ? PIPELINE_PATTERN :
			strcmp(kind, "stateless") == 0 ? PIPELINE_STATELESS : PIPELINE_WINDOW;
		def->pattern = col_text(&row, PCOL_pattern);
		def->define = col_text(&row, PCOL_define);
		def->measures = col_text(&row, PCOL_measures);
		def->skip = col_text(&row, PCOL_skip);
		def->within = col_interval(&row, PCOL_within);
		def->timed_out_relid = col_oid(&row, PCOL_timed_out);
		def->source.owner = col_oid(&row, PCOL_source_owner);
		def->owner = col_oid(&row, PCOL_owner);
		def->aggregates_tree = col_text(&row, PCOL_aggregates_tree);
		def->pattern_tree = col_text(&row, PCOL_pattern_tree);
		def->max_partial_matches = col_int32(&row, PCOL_max_partial_matches, 0);
		def->max_partial_match_events = col_int32(&row, PCOL_max_partial_match_events, 0);
		def->state_profile = col_text(&row, PCOL_state_profile);
		def->state_options = col_text(&row, PCOL_state_options);
		def->query_tree = col_text(&row, PCOL_query_tree);
		def->source.start_position = col_text(&row, PCOL_start_position);
		if (def->source.start_position == NULL)
			def->source.start_position = pstrdup("earliest");
		def->source.key_format = col_text(&row, PCOL_key_format);
		def->source.metadata = col_text(&row, PCOL_metadata);
		if (def->source.metadata != NULL && strcmp(def->source.metadata, "null") == 0)
			def->source.metadata = NULL;
		def->source.avro_schema = col_text(&row, PCOL_avro_schema);
		def->source.schema_registry = col_text(&row, PCOL_schema_registry);
		def->sink_topic = col_text(&row, PCOL_sink_topic);
		def->sink_brokers = col_text(&row, PCOL_sink_brokers);
		def->sink_format = col_text(&row, PCOL_sink_format);
		def->sink_options = col_text_list(&row, PCOL_sink_options);
		/* parallel pipelines: 1 in a catalog without the column */
		def->parallelism = col_int32(&row, PCOL_parallelism, 1);
		mode = col_text(&row, PCOL_checkpoint_mode);
		def->unaligned_checkpoints = mode != NULL && strcmp(mode, "unaligned") == 0;
		{
			bool		isnull;
			Datum		d = col_datum(&row, PCOL_aligned_checkpoint_timeout, &isnull);

			def->aligned_checkpoint_timeout = isnull ? -1 : DatumGetInt64(d);
		}
		/* two-stage aggregation: automatic in a catalog without the column */
		{
			bool		isnull;
			Datum		d = col_datum(&row, PCOL_local_aggregation, &isnull);

			def->local_aggregation = isnull ? -1 : (DatumGetBool(d) ? 1 : 0);
		}

		keys = col_text_list(&row, PCOL_key_columns);
		def->nkeys = list_length(keys);
		def->key_attnos = palloc(sizeof(int) * Max(def->nkeys, 1));
		foreach(lc, keys)
		{
			char	   *col = (char *) lfirst(lc);
			int			i = foreach_current_index(lc);

			def->key_attnos[i] = row_type_attno(def->source.row_type, col, NULL);
			if (def->key_attnos[i] < 0 &&
				SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(def->source.row_type)))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("key column \"%s\" of pipeline \"%s\" no longer exists",
								col, def->name)));
		}
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return def;
}

/* A table a pipeline writes: still there, still a table. */
static void
check_table(PipelineDef *def, Oid relid, const char *what)
{
	char		relkind = get_rel_relkind(relid);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the %s of pipeline \"%s\" no longer exists", what, def->name),
				 errdetail("Relation %u was dropped.", relid),
				 errhint("Drop the pipeline with streamflink.drop_pipeline('%s') and create it again.",
						 def->name)));
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("the %s of pipeline \"%s\" is no longer a table", what, def->name)));
}

void
catalog_check_pipeline(PipelineDef *def)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(def->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of pipeline \"%s\" no longer exists", def->name),
				 errdetail("Role %u was dropped.", def->owner),
				 errhint("A pipeline runs as its owner; drop the pipeline and create it again as another role.")));
	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(def->source.row_type)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the row type of source \"%s\" no longer exists", def->source.name),
				 errdetail("Type %u was dropped.", def->source.row_type),
				 errhint("Drop the pipeline and the source, and create them again.")));
	if (def->source.event_time_attno < 0 && def->source.event_time_name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("event time column \"%s\" of source \"%s\" no longer exists",
						def->source.event_time_name, def->source.name)));
	check_table(def, def->sink_relid, "sink table");
	if (OidIsValid(def->timed_out_relid))
		check_table(def, def->timed_out_relid, "timed-out table");
}
