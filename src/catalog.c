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

static char *
text_or_null(HeapTuple tup, TupleDesc desc, int attno)
{
	char	   *s = SPI_getvalue(tup, desc, attno);

	return s;
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

PipelineDef *
catalog_load_pipeline(int32 id, const char *name)
{
	/*
	 * The state tuning columns are read through to_jsonb: a 0.1 catalog
	 * (before ALTER EXTENSION UPDATE) has none, and must still load, so
	 * that the worker can refuse it with checkpoint_check_catalog_version's
	 * clear error.
	 */
	static const char *query =
		"SELECT p.id, p.name, p.state, p.key_columns, p.window_kind,"
		"       p.window_size, p.window_slide, p.session_gap, p.allowed_lateness,"
		"       p.checkpoint_interval, p.aggregates, p.sink::oid,"
		"       s.id, s.name, s.brokers, s.topic, s.format, s.row_type::oid,"
		"       s.event_time, s.max_out_of_orderness, s.idle_timeout, s.options,"
		"       p.kind, p.pattern, p.define, p.measures, p.skip, p.within, p.timed_out::oid,"
		"       s.owner::oid, p.owner::oid, p.aggregates_tree, p.pattern_tree,"
		"       p.max_partial_matches, p.max_partial_match_events,"
		"       to_jsonb(p) ->> 'state_profile', to_jsonb(p) ->> 'state_options',"
		"       to_jsonb(p) ->> 'query_tree',"
		"       coalesce(to_jsonb(p) ->> 'start_position', to_jsonb(s) ->> 'start_position'),"
		"       to_jsonb(s) ->> 'key_format', to_jsonb(s) -> 'metadata',"
		"       to_jsonb(s) ->> 'avro_schema', to_jsonb(s) ->> 'schema_registry',"
		"       to_jsonb(p) ->> 'sink_topic', to_jsonb(p) ->> 'sink_brokers',"
		"       to_jsonb(p) ->> 'sink_format',"
		"       ARRAY(SELECT pg_catalog.jsonb_array_elements_text(to_jsonb(p) -> 'sink_options')),"
		"       (to_jsonb(p) ->> 'parallelism')::int, to_jsonb(p) ->> 'checkpoint_mode',"
		"       (extract(epoch FROM (to_jsonb(p) ->> 'aligned_checkpoint_timeout')::interval)"
		"        * 1000000)::int8,"
		"       (to_jsonb(p) ->> 'local_aggregation')::boolean"
		"  FROM streamflink.pipeline p JOIN streamflink.source s ON s.id = p.source_id"
		" WHERE CASE WHEN $2 IS NULL THEN p.id = $1 ELSE p.name = $2 END";
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];
	char		argnulls[2] = {' ', ' '};
	MemoryContext caller = CurrentMemoryContext;
	PipelineDef *def = NULL;
	int			ret;

	args[0] = Int32GetDatum(id);
	if (name)
		args[1] = CStringGetTextDatum(name);
	else
		argnulls[1] = 'n';

	SPI_connect();
	ret = SPI_execute_with_args(query, 2, argtypes, args, argnulls, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.pipeline: %s", SPI_result_code_string(ret));

	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		bool		isnull;
		Datum		d;
		char	   *kind;
		char	   *et;
		ArrayType  *arr;
		Datum	   *elems;
		int			nelems;

		def = palloc0(sizeof(PipelineDef));
		def->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		def->name = SPI_getvalue(tup, desc, 2);
		def->running = strcmp(SPI_getvalue(tup, desc, 3), "running") == 0;
		kind = SPI_getvalue(tup, desc, 5);
		def->window_kind = kind == NULL ? WINDOW_TUMBLE :
			strcmp(kind, "tumble") == 0 ? WINDOW_TUMBLE :
			strcmp(kind, "hop") == 0 ? WINDOW_HOP : WINDOW_SESSION;
		d = SPI_getbinval(tup, desc, 6, &isnull);
		def->size = interval_us(d, isnull);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		def->slide = interval_us(d, isnull);
		if (def->window_kind == WINDOW_TUMBLE)
			def->slide = def->size;
		d = SPI_getbinval(tup, desc, 8, &isnull);
		def->gap = interval_us(d, isnull);
		d = SPI_getbinval(tup, desc, 9, &isnull);
		def->allowed_lateness = interval_us(d, isnull);
		d = SPI_getbinval(tup, desc, 10, &isnull);
		def->checkpoint_interval = interval_us(d, isnull);
		def->aggregates = SPI_getvalue(tup, desc, 11);
		def->sink_relid = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));

		def->source.id = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
		def->source.name = SPI_getvalue(tup, desc, 14);
		def->source.brokers = SPI_getvalue(tup, desc, 15);
		def->source.topic = SPI_getvalue(tup, desc, 16);
		def->source.format = SPI_getvalue(tup, desc, 17);
		def->source.row_type = DatumGetObjectId(SPI_getbinval(tup, desc, 18, &isnull));
		et = text_or_null(tup, desc, 19);
		def->source.event_time_name = et;
		def->source.event_time_attno = -1;
		if (et)
			def->source.event_time_attno = row_type_attno(def->source.row_type, et,
														  &def->source.event_time_type);
		d = SPI_getbinval(tup, desc, 20, &isnull);
		def->source.max_out_of_orderness = interval_us(d, isnull);
		d = SPI_getbinval(tup, desc, 21, &isnull);
		def->source.idle_timeout = interval_us(d, isnull);

		d = SPI_getbinval(tup, desc, 22, &isnull);
		if (!isnull)
		{
			arr = DatumGetArrayTypeP(d);
			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
			for (int i = 0; i < nelems; i++)
				def->source.options = lappend(def->source.options, TextDatumGetCString(elems[i]));
		}

		kind = SPI_getvalue(tup, desc, 23);
		def->kind = strcmp(kind, "pattern") == 0 ? PIPELINE_PATTERN :
			strcmp(kind, "stateless") == 0 ? PIPELINE_STATELESS : PIPELINE_WINDOW;
		def->pattern = SPI_getvalue(tup, desc, 24);
		def->define = SPI_getvalue(tup, desc, 25);
		def->measures = SPI_getvalue(tup, desc, 26);
		def->skip = SPI_getvalue(tup, desc, 27);
		d = SPI_getbinval(tup, desc, 28, &isnull);
		def->within = interval_us(d, isnull);
		d = SPI_getbinval(tup, desc, 29, &isnull);
		def->timed_out_relid = isnull ? InvalidOid : DatumGetObjectId(d);
		def->source.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 30, &isnull));
		def->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 31, &isnull));
		def->aggregates_tree = SPI_getvalue(tup, desc, 32);
		def->pattern_tree = SPI_getvalue(tup, desc, 33);
		d = SPI_getbinval(tup, desc, 34, &isnull);
		def->max_partial_matches = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 35, &isnull);
		def->max_partial_match_events = isnull ? 0 : DatumGetInt32(d);
		def->state_profile = SPI_getvalue(tup, desc, 36);
		def->state_options = SPI_getvalue(tup, desc, 37);
		def->query_tree = SPI_getvalue(tup, desc, 38);
		def->source.start_position = SPI_getvalue(tup, desc, 39);
		if (def->source.start_position == NULL)
			def->source.start_position = pstrdup("earliest");
		def->source.key_format = SPI_getvalue(tup, desc, 40);
		def->source.metadata = SPI_getvalue(tup, desc, 41);
		if (def->source.metadata != NULL && strcmp(def->source.metadata, "null") == 0)
			def->source.metadata = NULL;
		def->source.avro_schema = SPI_getvalue(tup, desc, 42);
		def->source.schema_registry = SPI_getvalue(tup, desc, 43);
		def->sink_topic = SPI_getvalue(tup, desc, 44);
		def->sink_brokers = SPI_getvalue(tup, desc, 45);
		def->sink_format = SPI_getvalue(tup, desc, 46);
		d = SPI_getbinval(tup, desc, 47, &isnull);
		if (!isnull)
		{
			arr = DatumGetArrayTypeP(d);
			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
			for (int i = 0; i < nelems; i++)
				def->sink_options = lappend(def->sink_options, TextDatumGetCString(elems[i]));
		}
		/* parallel pipelines: 1 in a catalog without the column */
		d = SPI_getbinval(tup, desc, 48, &isnull);
		def->parallelism = isnull ? 1 : DatumGetInt32(d);
		{
			char	   *mode = SPI_getvalue(tup, desc, 49);

			def->unaligned_checkpoints = mode != NULL && strcmp(mode, "unaligned") == 0;
		}
		d = SPI_getbinval(tup, desc, 50, &isnull);
		def->aligned_checkpoint_timeout = isnull ? -1 : DatumGetInt64(d);
		/* two-stage aggregation: automatic in a catalog without the column */
		d = SPI_getbinval(tup, desc, 51, &isnull);
		def->local_aggregation = isnull ? -1 : (DatumGetBool(d) ? 1 : 0);

		d = SPI_getbinval(tup, desc, 4, &isnull);
		arr = DatumGetArrayTypeP(d);
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
		def->nkeys = nelems;
		def->key_attnos = palloc(sizeof(int) * Max(nelems, 1));
		for (int i = 0; i < nelems; i++)
		{
			char	   *col = TextDatumGetCString(elems[i]);

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
