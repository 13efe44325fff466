/*-------------------------------------------------------------------------
 *
 * avro_decode.c
 *	  Decoding Avro payloads into typed Postgres rows (see avro_decode.h).
 *
 * Per writer schema the decoder builds a plan once: the projection of the
 * reader schema onto the fields the writer has and the columns name (a
 * record schema avro-c resolves the writer against with its resolved
 * writer: promotions, unions, nested records), and per column either that
 * field, the reader's default, or NULL.  avro-c 1.11 neither applies
 * defaults nor knows logical types, so both are read from the schema's
 * JSON here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <avro.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "avro_decode.h"
#include "run_as.h"
#include "schema_registry.h"

/* Nesting a payload may have (recursive schemas). */
#define AVRO_MAX_DEPTH 64
/* Writer schemas (and failed lookups) a decoder keeps. */
#define AVRO_MAX_PLANS 1000
/* A failed registry lookup is retried after this long (microseconds). */
#define REGISTRY_RETRY_US (10 * USECS_PER_SEC)

/* Microseconds (days) from 1970-01-01 to 2000-01-01. */
#define UNIX_TO_PG_US (((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)) * USECS_PER_DAY)
#define UNIX_TO_PG_DAYS (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)

typedef enum AvroLogical
{
	LOGICAL_NONE,
	LOGICAL_DATE,
	LOGICAL_TIME_MILLIS,
	LOGICAL_TIME_MICROS,
	LOGICAL_TIMESTAMP_MILLIS,
	LOGICAL_TIMESTAMP_MICROS,
	LOGICAL_LOCAL_TIMESTAMP_MILLIS,
	LOGICAL_LOCAL_TIMESTAMP_MICROS,
	LOGICAL_DECIMAL
} AvroLogical;

/* What the schema's JSON says of a (reader) type: logical type, branches. */
typedef struct TypeInfo
{
	AvroLogical logical;
	int			scale;			/* decimal */
	int			nbranches;		/* a union: info per branch */
	struct TypeInfo *branches;
} TypeInfo;

typedef struct ColumnPlan
{
	int			field;			/* index in the projection, or -1 */
	TypeInfo	type;			/* of that field */
	bool		has_default;	/* field < 0: the reader's default ... */
	char	   *default_text;	/* ... as text (NULL: null) */
} ColumnPlan;

typedef struct WriterPlan
{
	int32		id;				/* schema id (-1: the inline schema) */
	char	   *error;			/* every message of it is a dead letter */
	TimestampTz retry_at;		/* error from the registry: ask again then */
	avro_schema_t writer;
	avro_schema_t projection;
	avro_value_iface_t *resolver;
	avro_value_iface_t *generic;
	avro_value_t dest;
	avro_value_t resolved;
	bool		have_values;
	bool		direct;			/* the projection is the writer: read into dest */
	ColumnPlan *cols;
} WriterPlan;

typedef struct FieldJson
{
	char	   *name;
	JsonbValue	type;
	bool		has_default;
	JsonbValue	def;
} FieldJson;

struct AvroDecoder
{
	bool		confluent;
	char	   *registry;
	int32		source_id;
	Oid			owner;
	int			ncols;
	char	  **names;
	Oid		   *types;
	int32	   *typmods;
	int			encoding;
	/* the reader schema, if given ('avro-confluent') */
	avro_schema_t reader;
	char	   *reader_json;
	List	   *plans;			/* WriterPlan *, most recently used first */
	char	   *registry_error; /* the registry's last failure ... */
	TimestampTz registry_retry_at;	/* ... before which it is not asked */
	WriterPlan *inline_plan;
	avro_reader_t memreader;
	MemoryContext cxt;
};

/* ---- schema JSON ---- */

static Jsonb *
parse_json(const char *text, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile jb = NULL;

	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*error = psprintf("invalid Avro schema: %s", edata->message);
		FreeErrorData(edata);
		jb = NULL;
	}
	PG_END_TRY();
	return jb;
}

static char *
jsonb_string(JsonbValue *v)
{
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static void
type_info(JsonbValue *t, TypeInfo *info)
{
	memset(info, 0, sizeof(TypeInfo));
	if (t->type != jbvBinary)
		return;
	if (JsonContainerIsArray(t->val.binary.data))
	{
		int			n = JsonContainerSize(t->val.binary.data);

		info->nbranches = n;
		info->branches = palloc0(sizeof(TypeInfo) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			JsonbValue *b = getIthJsonbValueFromContainer(t->val.binary.data, i);

			if (b)
				type_info(b, &info->branches[i]);
		}
	}
	else if (JsonContainerIsObject(t->val.binary.data))
	{
		JsonbValue	v;
		char	   *lt;

		if (getKeyJsonValueFromContainer(t->val.binary.data, "logicalType", 11, &v) == NULL)
			return;
		lt = jsonb_string(&v);
		if (lt == NULL)
			return;
		if (strcmp(lt, "date") == 0)
			info->logical = LOGICAL_DATE;
		else if (strcmp(lt, "time-millis") == 0)
			info->logical = LOGICAL_TIME_MILLIS;
		else if (strcmp(lt, "time-micros") == 0)
			info->logical = LOGICAL_TIME_MICROS;
		else if (strcmp(lt, "timestamp-millis") == 0)
			info->logical = LOGICAL_TIMESTAMP_MILLIS;
		else if (strcmp(lt, "timestamp-micros") == 0)
			info->logical = LOGICAL_TIMESTAMP_MICROS;
		else if (strcmp(lt, "local-timestamp-millis") == 0)
			info->logical = LOGICAL_LOCAL_TIMESTAMP_MILLIS;
		else if (strcmp(lt, "local-timestamp-micros") == 0)
			info->logical = LOGICAL_LOCAL_TIMESTAMP_MICROS;
		else if (strcmp(lt, "decimal") == 0)
		{
			info->logical = LOGICAL_DECIMAL;
			if (getKeyJsonValueFromContainer(t->val.binary.data, "scale", 5, &v) != NULL &&
				v.type == jbvNumeric)
				info->scale = DatumGetInt32(DirectFunctionCall1(numeric_int4,
																NumericGetDatum(v.val.numeric)));
		}
		/* other logical types (uuid, duration) are their base type */
	}
}

/* The record's fields as the JSON has them, or NULL with *error. */
static FieldJson *
record_fields(const char *json, int *nfields, char **error)
{
	Jsonb	   *jb = parse_json(json, error);
	JsonbValue	v;
	FieldJson  *fields;
	int			n;

	if (jb == NULL)
		return NULL;
	if (!JB_ROOT_IS_OBJECT(jb) ||
		getKeyJsonValueFromContainer(&jb->root, "fields", 6, &v) == NULL ||
		v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
	{
		*error = pstrdup("the Avro schema is not a record");
		return NULL;
	}
	n = JsonContainerSize(v.val.binary.data);
	fields = palloc0(sizeof(FieldJson) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *f = getIthJsonbValueFromContainer(v.val.binary.data, i);
		JsonbValue	x;

		if (f == NULL || f->type != jbvBinary || !JsonContainerIsObject(f->val.binary.data) ||
			getKeyJsonValueFromContainer(f->val.binary.data, "name", 4, &x) == NULL ||
			x.type != jbvString)
		{
			*error = pstrdup("invalid Avro schema: a record field without a name");
			return NULL;
		}
		fields[i].name = jsonb_string(&x);
		if (getKeyJsonValueFromContainer(f->val.binary.data, "type", 4, &fields[i].type) == NULL)
		{
			*error = psprintf("invalid Avro schema: field \"%s\" has no type", fields[i].name);
			return NULL;
		}
		if (getKeyJsonValueFromContainer(f->val.binary.data, "default", 7, &fields[i].def) != NULL)
			fields[i].has_default = true;
	}
	*nfields = n;
	return fields;
}

/* A JSON default as the text a column's input function takes. */
static char *
default_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return jsonb_string(v);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	}
}

static avro_schema_t
parse_schema(const char *json, char **error)
{
	avro_schema_t s = NULL;

	if (avro_schema_from_json_length(json, strlen(json), &s) != 0)
	{
		*error = psprintf("invalid Avro schema: %s", avro_strerror());
		return NULL;
	}
	if (!is_avro_record(s))
	{
		avro_schema_decref(s);
		*error = pstrdup("the Avro schema is not a record");
		return NULL;
	}
	return s;
}

/* ---- plans ---- */

static void
plan_free(WriterPlan *p)
{
	if (p->have_values)
	{
		avro_value_decref(&p->resolved);
		avro_value_decref(&p->dest);
	}
	if (p->resolver)
		avro_value_iface_decref(p->resolver);
	if (p->generic)
		avro_value_iface_decref(p->generic);
	if (p->projection)
		avro_schema_decref(p->projection);
	if (p->writer)
		avro_schema_decref(p->writer);
	p->have_values = false;
	p->resolver = p->generic = NULL;
	p->projection = p->writer = NULL;
}

/* A plan's avro-c objects and its memory. */
static void
plan_destroy(WriterPlan *p)
{
	plan_free(p);
	if (p->error)
		pfree(p->error);
	if (p->cols)
		pfree(p->cols);
	pfree(p);
}

static void
decoder_free(void *arg)
{
	AvroDecoder *ad = (AvroDecoder *) arg;
	ListCell   *lc;

	foreach(lc, ad->plans)
		plan_free((WriterPlan *) lfirst(lc));
	if (ad->inline_plan)
		plan_free(ad->inline_plan);
	if (ad->reader)
		avro_schema_decref(ad->reader);
	if (ad->memreader)
		avro_reader_free(ad->memreader);
}

/*
 * The plan for a writer schema (JSON).  A schema that cannot be used gives
 * a plan whose error every message of it carries.
 */
static WriterPlan *
build_plan(AvroDecoder *ad, int32 id, const char *writer_json)
{
	MemoryContext old = MemoryContextSwitchTo(ad->cxt);
	WriterPlan *p = palloc0(sizeof(WriterPlan));
	char	   *error = NULL;
	FieldJson  *rfields;
	int			nrfields = 0;
	avro_schema_t rschema;
	char	   *idtext = id >= 0 ? psprintf("writer schema %d", id) : pstrdup("the writer schema");

	p->id = id;
	p->cols = palloc0(sizeof(ColumnPlan) * ad->ncols);
	p->writer = parse_schema(writer_json, &error);
	if (p->writer == NULL)
		goto fail;
	rschema = ad->reader ? ad->reader : p->writer;
	rfields = record_fields(ad->reader ? ad->reader_json : writer_json, &nrfields, &error);
	if (rfields == NULL)
		goto fail;

	p->projection = avro_schema_record(avro_schema_name(p->writer),
									   avro_schema_namespace(p->writer));
	{
		int			nproj = 0;

		for (int c = 0; c < ad->ncols; c++)
		{
			ColumnPlan *cp = &p->cols[c];
			int			ri = avro_schema_record_field_get_index(rschema, ad->names[c]);
			int			wi = avro_schema_record_field_get_index(p->writer, ad->names[c]);
			int			fj;

			cp->field = -1;
			if (ri < 0)
				continue;		/* derived reader: the writer lacks it: NULL */
			for (fj = 0; fj < nrfields; fj++)
				if (strcmp(rfields[fj].name, ad->names[c]) == 0)
					break;
			if (fj >= nrfields)
				continue;
			if (wi < 0)
			{
				/* Avro's rule: the reader's default, else an error */
				if (!rfields[fj].has_default)
				{
					error = psprintf("%s has no field \"%s\", and the reader schema gives it no default",
									 idtext, ad->names[c]);
					goto fail;
				}
				cp->has_default = true;
				cp->default_text = default_text(&rfields[fj].def);
				continue;
			}
			if (avro_schema_record_field_append(p->projection, ad->names[c],
												avro_schema_record_field_get_by_index(rschema, ri)) != 0)
			{
				error = psprintf("cannot project the reader schema: %s", avro_strerror());
				goto fail;
			}
			type_info(&rfields[fj].type, &cp->type);
			cp->field = nproj++;
		}
	}

	p->resolver = avro_resolved_writer_new(p->writer, p->projection);
	if (p->resolver == NULL)
	{
		error = psprintf("%s cannot be read with the source's schema: %s",
						 idtext, avro_strerror());
		goto fail;
	}
	p->generic = avro_generic_class_from_schema(p->projection);
	if (p->generic == NULL ||
		avro_generic_value_new(p->generic, &p->dest) != 0)
	{
		error = psprintf("cannot read %s: %s", idtext, avro_strerror());
		goto fail;
	}
	if (avro_resolved_writer_new_value(p->resolver, &p->resolved) != 0)
	{
		avro_value_decref(&p->dest);
		error = psprintf("cannot read %s: %s", idtext, avro_strerror());
		goto fail;
	}
	avro_resolved_writer_set_dest(&p->resolved, &p->dest);
	p->have_values = true;
	/* nothing to resolve (the writer's fields are the columns, in order) */
	p->direct = avro_schema_equal(p->writer, p->projection) != 0;
	MemoryContextSwitchTo(old);
	return p;

fail:
	plan_free(p);
	p->error = error;
	MemoryContextSwitchTo(old);
	return p;
}

AvroDecoder *
avro_decoder_create(bool confluent, const char *schema, const char *registry,
					int32 source_id, Oid owner, int ncols, char **names,
					Oid *types, int32 *typmods)
{
	AvroDecoder *ad = palloc0(sizeof(AvroDecoder));
	MemoryContextCallback *cb = palloc0(sizeof(MemoryContextCallback));
	char	   *error = NULL;

	ad->confluent = confluent;
	ad->registry = registry ? pstrdup(registry) : NULL;
	ad->source_id = source_id;
	ad->owner = owner;
	ad->ncols = ncols;
	ad->names = names;
	ad->types = types;
	ad->typmods = typmods;
	ad->encoding = GetDatabaseEncoding();
	ad->cxt = CurrentMemoryContext;
	cb->func = decoder_free;
	cb->arg = ad;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);

	ad->memreader = avro_reader_memory("", 0);
	if (ad->memreader == NULL)
		elog(ERROR, "could not create an Avro reader: %s", avro_strerror());

	if (!confluent && schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an avro source needs its writer schema"),
				 errhint("Give it as avro_schema => '{\"type\": \"record\", ...}', or use format avro-confluent with a schema registry.")));
	if (confluent && registry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an avro-confluent source needs a schema registry"),
				 errhint("Give its URL as schema_registry => 'http://host:8081'.")));

	if (confluent && schema != NULL)
	{
		int			n;

		ad->reader = parse_schema(schema, &error);
		if (ad->reader == NULL || record_fields(schema, &n, &error) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid reader schema: %s", error)));
		ad->reader_json = pstrdup(schema);
		for (int c = 0; c < ncols; c++)
			if (avro_schema_record_field_get_index(ad->reader, names[c]) < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("column \"%s\" is not a field of the reader schema", names[c]),
						 errhint("Columns map to the reader schema's fields by name.")));
	}
	if (!confluent)
	{
		ad->inline_plan = build_plan(ad, -1, schema);
		if (ad->inline_plan->error)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s", ad->inline_plan->error),
					 errhint("avro_schema is the writer schema, in Avro's JSON form.")));
	}
	return ad;
}

/* ---- persisted schemas (streamflink.avro_schema) ---- */

typedef struct SchemaRow
{
	AvroDecoder *ad;
	int32		source_id;
	int32		id;
	char	   *schema;			/* in: to store; out: found */
	MemoryContext cxt;			/* where a found schema goes */
} SchemaRow;

static void
select_schema(SchemaRow *r)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];

	args[0] = Int32GetDatum(r->source_id);
	args[1] = Int32GetDatum(r->id);
	SPI_connect();
	if (SPI_execute_with_args("SELECT schema FROM streamflink.avro_schema"
							  " WHERE source_id = $1 AND schema_id = $2",
							  2, argtypes, args, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s)
			r->schema = MemoryContextStrdup(r->cxt, s);
	}
	SPI_finish();
}

static void
insert_schema(SchemaRow *r)
{
	Oid			argtypes[3] = {INT4OID, INT4OID, TEXTOID};
	Datum		args[3];

	args[0] = Int32GetDatum(r->source_id);
	args[1] = Int32GetDatum(r->id);
	args[2] = CStringGetTextDatum(r->schema);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO streamflink.avro_schema (source_id, schema_id, schema)"
							  " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
							  3, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store Avro schema %d", r->id);
	SPI_finish();
}

/*
 * Run a catalog access in an internal subtransaction: this runs inside
 * decode_message's PG_TRY, which turns errors into dead letters, so an
 * error here must leave no aborted transaction behind.  In a worker as the
 * worker (the owner's code is not involved); in a backend as the current
 * role, so that the table's row security applies.  Returns false with the
 * error logged.
 */
static bool
schema_row_access(void (*fn) (SchemaRow *), SchemaRow *r)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		RunAs		as;

		if (IsBackgroundWorker)
			run_as_extension(&as);
		fn(r);
		if (IsBackgroundWorker)
			run_as_restore(&as);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
			ReThrowError(edata);
		ereport(WARNING,
				(errmsg("streamflink.avro_schema, schema id %d: %s", r->id, edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static char *
stored_schema(AvroDecoder *ad, int32 id)
{
	SchemaRow	r = {ad, ad->source_id, id, NULL, CurrentMemoryContext};

	if (ad->source_id <= 0 || !IsTransactionState())
		return NULL;
	(void) schema_row_access(select_schema, &r);
	return r.schema;
}

/*
 * What a worker got from the registry is committed at once, in a
 * transaction of its own, before any message decoded with it goes further:
 * a replay after a crash then finds it, whatever epoch the crash lost.  The
 * worker's own transaction is the epoch's (it commits only with the next
 * checkpoint), so a short-lived background worker of its database does the
 * INSERT and the worker waits for it.  If none can be started (no free
 * max_worker_processes slot), the row goes into the epoch's transaction
 * instead, with a warning: it then commits with that checkpoint, and a
 * crash before it means asking the registry again on replay.
 */
typedef struct PersistRequest
{
	Oid			dboid;
	int32		source_id;
	int32		schema_id;
	bool		done;			/* set by the persister once committed */
	char		schema[FLEXIBLE_ARRAY_MEMBER];
} PersistRequest;

PGDLLEXPORT void streamflink_avro_persist_main(Datum arg);

void
streamflink_avro_persist_main(Datum arg)
{
	dsm_segment *seg;
	PersistRequest *req;
	SchemaRow	r;

	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(1);			/* the worker gave up waiting */
	req = (PersistRequest *) dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(req->dboid, InvalidOid, 0);
	r.ad = NULL;
	r.source_id = req->source_id;
	r.id = req->schema_id;
	r.schema = req->schema;
	r.cxt = CurrentMemoryContext;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	insert_schema(&r);
	PopActiveSnapshot();
	CommitTransactionCommand();
	req->done = true;
	dsm_detach(seg);
	proc_exit(0);
}

/* In its own transaction, through a background worker; false if not done. */
static bool
persist_committed(AvroDecoder *ad, int32 id, const char *schema)
{
	size_t		len = strlen(schema);
	dsm_segment *seg;
	PersistRequest *req;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	bool		done = false;

	seg = dsm_create(offsetof(PersistRequest, schema) + len + 1, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return false;
	req = (PersistRequest *) dsm_segment_address(seg);
	req->dboid = MyDatabaseId;
	req->source_id = ad->source_id;
	req->schema_id = id;
	req->done = false;
	memcpy(req->schema, schema, len + 1);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "streamflink", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "streamflink_avro_persist_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "streamflink avro schema %d of source %d",
			 id, ad->source_id);
	strlcpy(bgw.bgw_type, "streamflink avro schema", BGW_MAXLEN);
	bgw.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	bgw.bgw_notify_pid = MyProcPid;
	if (RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		(void) WaitForBackgroundWorkerShutdown(handle);
		done = req->done;
		pfree(handle);
	}
	dsm_detach(seg);
	return done;
}

static void
store_schema(AvroDecoder *ad, int32 id, const char *schema)
{
	SchemaRow	r = {ad, ad->source_id, id, (char *) schema, CurrentMemoryContext};

	if (ad->source_id <= 0 || !IsBackgroundWorker || !IsTransactionState())
		return;
	if (persist_committed(ad, id, schema))
		return;
	ereport(WARNING,
			(errmsg("could not store Avro schema %d of source %d in a transaction of its own",
					id, ad->source_id),
			 errdetail("It is stored with the next checkpoint; a crash before that means asking the schema registry again on replay."),
			 errhint("Raise max_worker_processes.")));
	(void) schema_row_access(insert_schema, &r);
}

static WriterPlan *
plan_for_id(AvroDecoder *ad, int32 id)
{
	ListCell   *lc;
	WriterPlan *p = NULL;
	char	   *schema;

	foreach(lc, ad->plans)
	{
		WriterPlan *q = (WriterPlan *) lfirst(lc);

		if (q->id == id)
		{
			p = q;
			break;
		}
	}
	if (p != NULL)
	{
		if (p->retry_at == 0 || GetCurrentTimestamp() < p->retry_at)
		{
			/* most recently used first: a topic mostly carries one id */
			if (lc != list_head(ad->plans))
			{
				MemoryContext old = MemoryContextSwitchTo(ad->cxt);

				ad->plans = list_delete_ptr(ad->plans, p);
				ad->plans = lcons(p, ad->plans);
				MemoryContextSwitchTo(old);
			}
			return p;
		}
		/* a failed lookup, to be retried */
		ad->plans = list_delete_ptr(ad->plans, p);
		plan_destroy(p);
		p = NULL;
	}

	schema = stored_schema(ad, id);
	if (schema == NULL)
	{
		bool		not_found = false;
		bool		unavailable = false;
		char	   *error = NULL;
		TimestampTz now = GetCurrentTimestamp();

		if (ad->registry_error != NULL && now < ad->registry_retry_at)
		{
			/* it just failed: not asked again for every message meanwhile */
			error = psprintf("%s (asked again after %d seconds)", ad->registry_error,
							 (int) (REGISTRY_RETRY_US / USECS_PER_SEC));
		}
		else
		{
			schema = registry_fetch_schema(ad->registry, ad->owner, id, &not_found,
											&unavailable, &error);
			if (ad->registry_error)
				pfree(ad->registry_error);
			ad->registry_error = NULL;
			if (schema == NULL && unavailable)
			{
				ad->registry_error = MemoryContextStrdup(ad->cxt, error);
				ad->registry_retry_at = now + REGISTRY_RETRY_US;
			}
		}
		if (schema != NULL)
			store_schema(ad, id, schema);
		else
		{
			MemoryContext old = MemoryContextSwitchTo(ad->cxt);

			p = palloc0(sizeof(WriterPlan));
			p->id = id;
			p->error = pstrdup(error);
			p->retry_at = now + REGISTRY_RETRY_US;
			MemoryContextSwitchTo(old);
		}
	}
	if (p == NULL)
		p = build_plan(ad, id, schema);

	/*
	 * Bounded: a producer sending random ids must not grow it without end.
	 * The least recently used plan goes (rebuilt if its id comes back).
	 */
	if (list_length(ad->plans) >= AVRO_MAX_PLANS)
	{
		WriterPlan *last = (WriterPlan *) llast(ad->plans);

		ad->plans = list_delete_last(ad->plans);
		plan_destroy(last);
	}
	{
		MemoryContext old = MemoryContextSwitchTo(ad->cxt);

		ad->plans = lcons(p, ad->plans);
		MemoryContextSwitchTo(old);
	}
	return p;
}

/* ---- the bounds walk ---- */

typedef struct Walk
{
	const uint8 *p;
	const uint8 *end;
	int64		budget;			/* array and map elements left */
	const char *error;
} Walk;

static bool
walk_long(Walk *w, int64 *out)
{
	uint64		v = 0;
	int			shift = 0;

	for (;;)
	{
		uint8		b;

		if (w->p >= w->end)
		{
			w->error = "truncated";
			return false;
		}
		b = *w->p++;
		if (shift == 63 && (b & 0x7e) != 0)
		{
			w->error = "varint overflows a long";
			return false;
		}
		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
			break;
		shift += 7;
		if (shift > 63)
		{
			w->error = "varint longer than 10 bytes";
			return false;
		}
	}
	*out = (int64) ((v >> 1) ^ (~(v & 1) + 1));
	return true;
}

static bool
walk_skip(Walk *w, int64 n)
{
	if (n < 0 || n > w->end - w->p)
	{
		w->error = n < 0 ? "negative length" : "length beyond the end of the payload";
		return false;
	}
	w->p += n;
	return true;
}

static bool
walk_value(Walk *w, avro_schema_t s, int depth)
{
	int64		v;

	check_stack_depth();
	if (depth > AVRO_MAX_DEPTH)
	{
		w->error = "nested too deeply";
		return false;
	}
	switch (avro_typeof(s))
	{
		case AVRO_NULL:
			return true;
		case AVRO_BOOLEAN:
			if (w->p >= w->end)
			{
				w->error = "truncated";
				return false;
			}
			if (*w->p > 1)
			{
				w->error = "invalid boolean";
				return false;
			}
			w->p++;
			return true;
		case AVRO_INT32:
			if (!walk_long(w, &v))
				return false;
			if (v < PG_INT32_MIN || v > PG_INT32_MAX)
			{
				w->error = "int out of range";
				return false;
			}
			return true;
		case AVRO_INT64:
			return walk_long(w, &v);
		case AVRO_FLOAT:
			return walk_skip(w, 4);
		case AVRO_DOUBLE:
			return walk_skip(w, 8);
		case AVRO_STRING:
		case AVRO_BYTES:
			return walk_long(w, &v) && walk_skip(w, v);
		case AVRO_FIXED:
			return walk_skip(w, avro_schema_fixed_size(s));
		case AVRO_ENUM:
			if (!walk_long(w, &v))
				return false;
			if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
			{
				w->error = "enum index out of range";
				return false;
			}
			return true;
		case AVRO_UNION:
			if (!walk_long(w, &v))
				return false;
			if (v < 0 || v >= (int64) avro_schema_union_size(s))
			{
				w->error = "union branch out of range";
				return false;
			}
			return walk_value(w, avro_schema_union_branch(s, (int) v), depth + 1);
		case AVRO_ARRAY:
		case AVRO_MAP:
			for (;;)
			{
				int64		count;

				if (!walk_long(w, &count))
					return false;
				if (count == 0)
					return true;
				if (count < 0)
				{
					int64		size;

					if (count == PG_INT64_MIN)
					{
						w->error = "invalid block count";
						return false;
					}
					count = -count;
					if (!walk_long(w, &size))
						return false;
					if (size < 0 || size > w->end - w->p)
					{
						w->error = "block size beyond the end of the payload";
						return false;
					}
				}
				if (count > w->budget)
				{
					w->error = "more array or map elements than the payload can hold";
					return false;
				}
				w->budget -= count;
				for (int64 i = 0; i < count; i++)
				{
					if (avro_typeof(s) == AVRO_MAP &&
						!(walk_long(w, &v) && walk_skip(w, v)))
						return false;
					if (!walk_value(w, avro_typeof(s) == AVRO_MAP ?
									avro_schema_map_values(s) :
									avro_schema_array_items(s), depth + 1))
						return false;
				}
			}
		case AVRO_RECORD:
			{
				size_t		n = avro_schema_record_size(s);

				for (size_t i = 0; i < n; i++)
					if (!walk_value(w, avro_schema_record_field_get_by_index(s, (int) i),
									depth + 1))
						return false;
				return true;
			}
		case AVRO_LINK:
			return walk_value(w, avro_schema_link_target(s), depth + 1);
		default:
			w->error = "unsupported Avro type";
			return false;
	}
}

/* ---- values ---- */

/* Through the column type's input function (decode.c: pure or subxact). */
static bool
via_input(Decoder *dec, int c, char *str, Datum *value, char **error)
{
	return decode_column_input(dec, c, str, value, error);
}

static bool
out_of_range(AvroDecoder *ad, int c, char **error)
{
	*error = psprintf("column \"%s\": value out of range for type %s",
					  ad->names[c], format_type_be(ad->types[c]));
	return false;
}

static Datum
decimal_numeric(const uint8 *b, size_t len, int scale)
{
	Numeric		n;
	bool		neg = len > 0 && (b[0] & 0x80);
	Datum		num = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));
	Datum		base = DirectFunctionCall1(int4_numeric, Int32GetDatum(256));

	/* two's complement, big-endian: sum of bytes, minus 256^len if negative */
	for (size_t i = 0; i < len; i++)
	{
		num = DirectFunctionCall2(numeric_mul, num, base);
		num = DirectFunctionCall2(numeric_add, num,
								  DirectFunctionCall1(int4_numeric, Int32GetDatum(b[i])));
	}
	if (neg)
	{
		Datum		full = DirectFunctionCall2(numeric_power, base,
											   DirectFunctionCall1(int4_numeric, Int32GetDatum((int32) len)));

		num = DirectFunctionCall2(numeric_sub, num, full);
	}
	if (scale != 0)
	{
		Datum		ten = DirectFunctionCall1(int4_numeric, Int32GetDatum(10));
		Datum		div = DirectFunctionCall2(numeric_power, ten,
											  DirectFunctionCall1(int4_numeric, Int32GetDatum(scale)));

		num = DirectFunctionCall2(numeric_div, num, div);
		num = DirectFunctionCall2(numeric_round, num, Int32GetDatum(scale));
	}
	n = DatumGetNumeric(num);
	return NumericGetDatum(n);
}

static bool convert_value(AvroDecoder *ad, Decoder *dec, int c, avro_value_t *v,
						  TypeInfo *ti, Datum *value, bool *isnull, char **error);

/* A value of a known Postgres type, to column c: directly or as text. */
static bool
convert_datum(AvroDecoder *ad, Decoder *dec, int c, Datum d, Oid type,
			  Datum *value, char **error)
{
	Oid			out;
	bool		varlena;

	if (ad->types[c] == type)
	{
		*value = d;
		return true;
	}
	getTypeOutputInfo(type, &out, &varlena);
	return via_input(dec, c, OidOutputFunctionCall(out, d), value, error);
}

static bool
convert_long(AvroDecoder *ad, Decoder *dec, int c, int64 i, AvroLogical lt,
			 Datum *value, char **error)
{
	Oid			t = ad->types[c];

	switch (lt)
	{
		case LOGICAL_DATE:
			if (!IS_VALID_DATE(i - UNIX_TO_PG_DAYS))
				return out_of_range(ad, c, error);
			return convert_datum(ad, dec, c, DateADTGetDatum((DateADT) (i - UNIX_TO_PG_DAYS)),
								 DATEOID, value, error);
		case LOGICAL_TIME_MILLIS:
		case LOGICAL_TIME_MICROS:
			{
				int64		us = lt == LOGICAL_TIME_MILLIS ? i * 1000 : i;

				if (us < 0 || us > USECS_PER_DAY)
					return out_of_range(ad, c, error);
				return convert_datum(ad, dec, c, TimeADTGetDatum(us), TIMEOID, value, error);
			}
		case LOGICAL_TIMESTAMP_MILLIS:
		case LOGICAL_TIMESTAMP_MICROS:
		case LOGICAL_LOCAL_TIMESTAMP_MILLIS:
		case LOGICAL_LOCAL_TIMESTAMP_MICROS:
			{
				int64		us;
				bool		millis = (lt == LOGICAL_TIMESTAMP_MILLIS ||
									  lt == LOGICAL_LOCAL_TIMESTAMP_MILLIS);
				bool		local = (lt == LOGICAL_LOCAL_TIMESTAMP_MILLIS ||
									 lt == LOGICAL_LOCAL_TIMESTAMP_MICROS);

				us = i;
				if ((millis && pg_mul_s64_overflow(i, 1000, &us)) ||
					pg_sub_s64_overflow(us, UNIX_TO_PG_US, &us) || !IS_VALID_TIMESTAMP(us))
					return out_of_range(ad, c, error);
				/* a timestamp column takes UTC's wall clock, as the event time does */
				if (t == TIMESTAMPTZOID || t == TIMESTAMPOID)
				{
					*value = TimestampTzGetDatum(us);
					return true;
				}
				return convert_datum(ad, dec, c, TimestampTzGetDatum(us),
									 local ? TIMESTAMPOID : TIMESTAMPTZOID, value, error);
			}
		default:
			break;
	}
	switch (t)
	{
		case INT8OID:
			*value = Int64GetDatum(i);
			return true;
		case INT4OID:
			if (i < PG_INT32_MIN || i > PG_INT32_MAX)
				return out_of_range(ad, c, error);
			*value = Int32GetDatum((int32) i);
			return true;
		case INT2OID:
			if (i < PG_INT16_MIN || i > PG_INT16_MAX)
				return out_of_range(ad, c, error);
			*value = Int16GetDatum((int16) i);
			return true;
		case FLOAT8OID:
			*value = Float8GetDatum((float8) i);
			return true;
		case FLOAT4OID:
			*value = Float4GetDatum((float4) i);
			return true;
		case NUMERICOID:
			if (ad->typmods[c] < 0)
			{
				*value = DirectFunctionCall1(int8_numeric, Int64GetDatum(i));
				return true;
			}
			break;
		default:
			break;
	}
	return via_input(dec, c, psprintf(INT64_FORMAT, i), value, error);
}

static bool
convert_double(AvroDecoder *ad, Decoder *dec, int c, double d, Datum *value,
			   char **error)
{
	switch (ad->types[c])
	{
		case FLOAT8OID:
			*value = Float8GetDatum(d);
			return true;
		case FLOAT4OID:
			{
				float4		f = (float4) d;

				if ((isinf(f) && !isinf(d)) || (f == 0.0f && d != 0.0))
					return out_of_range(ad, c, error);
				*value = Float4GetDatum(f);
				return true;
			}
		default:
			return via_input(dec, c, float8out_internal(d), value, error);
	}
}

static bool
convert_bytes(AvroDecoder *ad, Decoder *dec, int c, const void *buf, size_t len,
			  TypeInfo *ti, Datum *value, char **error)
{
	bytea	   *b;

	if (ti && ti->logical == LOGICAL_DECIMAL)
	{
		Datum		n = decimal_numeric(buf, len, ti->scale);

		if (ad->types[c] == NUMERICOID && ad->typmods[c] < 0)
		{
			*value = n;
			return true;
		}
		return via_input(dec, c, DatumGetCString(DirectFunctionCall1(numeric_out, n)),
						 value, error);
	}
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), buf, len);
	return convert_datum(ad, dec, c, PointerGetDatum(b), BYTEAOID, value, error);
}

/*
 * A value as JSON text: records and maps as objects, arrays as arrays,
 * a union as its branch's value, bytes and fixed as strings of code
 * points 0-255 (as Avro's JSON encoding), NaN and infinities as strings.
 * Not avro_value_to_json: it calls jansson's json_object(), which the
 * server's own json_object() (the SQL function) shadows in this process.
 */
static bool
avro_json(AvroDecoder *ad, StringInfo out, avro_value_t *v, char **error)
{
	check_stack_depth();
	switch (avro_value_get_type(v))
	{
		case AVRO_NULL:
			appendStringInfoString(out, "null");
			return true;
		case AVRO_BOOLEAN:
			{
				int			b;

				avro_value_get_boolean(v, &b);
				appendStringInfoString(out, b ? "true" : "false");
				return true;
			}
		case AVRO_INT32:
			{
				int32_t		i;

				avro_value_get_int(v, &i);
				appendStringInfo(out, "%d", (int) i);
				return true;
			}
		case AVRO_INT64:
			{
				int64_t		i;

				avro_value_get_long(v, &i);
				appendStringInfo(out, INT64_FORMAT, (int64) i);
				return true;
			}
		case AVRO_FLOAT:
		case AVRO_DOUBLE:
			{
				double		d;

				if (avro_value_get_type(v) == AVRO_FLOAT)
				{
					float		f;

					avro_value_get_float(v, &f);
					d = f;
				}
				else
					avro_value_get_double(v, &d);
				if (isnan(d) || isinf(d))
					escape_json(out, float8out_internal(d));
				else
					appendStringInfoString(out, float8out_internal(d));
				return true;
			}
		case AVRO_STRING:
			{
				const char *s;
				size_t		size;
				size_t		len;

				avro_value_get_string(v, &s, &size);
				len = size > 0 ? size - 1 : 0;
				if (memchr(s, '\0', len) != NULL ||
					!pg_verify_mbstr(ad->encoding, s, (int) len, true))
				{
					*error = psprintf("string is not valid %s (invalid byte sequence or NUL byte)",
									  GetDatabaseEncodingName());
					return false;
				}
				escape_json(out, pnstrdup(s, len));
				return true;
			}
		case AVRO_BYTES:
		case AVRO_FIXED:
			{
				const void *buf;
				size_t		len;

				if (avro_value_get_type(v) == AVRO_BYTES)
					avro_value_get_bytes(v, &buf, &len);
				else
					avro_value_get_fixed(v, &buf, &len);
				appendStringInfoChar(out, '"');
				for (size_t i = 0; i < len; i++)
				{
					uint8		b = ((const uint8 *) buf)[i];

					if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
						appendStringInfoChar(out, (char) b);
					else
						appendStringInfo(out, "\\u%04x", b);
				}
				appendStringInfoChar(out, '"');
				return true;
			}
		case AVRO_ENUM:
			{
				int			i;
				const char *sym;

				avro_value_get_enum(v, &i);
				sym = avro_schema_enum_get(avro_value_get_schema(v), i);
				if (sym == NULL)
				{
					*error = psprintf("enum index %d out of range", i);
					return false;
				}
				escape_json(out, sym);
				return true;
			}
		case AVRO_UNION:
			{
				avro_value_t branch;

				if (avro_value_get_current_branch(v, &branch) != 0)
				{
					*error = pstrdup(avro_strerror());
					return false;
				}
				return avro_json(ad, out, &branch, error);
			}
		case AVRO_RECORD:
		case AVRO_MAP:
		case AVRO_ARRAY:
			{
				size_t		n;
				bool		array = avro_value_get_type(v) == AVRO_ARRAY;

				avro_value_get_size(v, &n);
				appendStringInfoChar(out, array ? '[' : '{');
				for (size_t i = 0; i < n; i++)
				{
					avro_value_t child;
					const char *name = NULL;

					if (avro_value_get_by_index(v, i, &child, &name) != 0)
					{
						*error = pstrdup(avro_strerror());
						return false;
					}
					if (i > 0)
						appendStringInfoString(out, ", ");
					if (!array)
					{
						escape_json(out, name ? name : "");
						appendStringInfoString(out, ": ");
					}
					if (!avro_json(ad, out, &child, error))
						return false;
				}
				appendStringInfoChar(out, array ? ']' : '}');
				return true;
			}
		default:
			*error = pstrdup("unsupported Avro type");
			return false;
	}
}

static bool
convert_value(AvroDecoder *ad, Decoder *dec, int c, avro_value_t *v, TypeInfo *ti,
			  Datum *value, bool *isnull, char **error)
{
	*isnull = false;
	switch (avro_value_get_type(v))
	{
		case AVRO_UNION:
			{
				int			d;
				avro_value_t branch;

				if (avro_value_get_discriminant(v, &d) != 0 ||
					avro_value_get_current_branch(v, &branch) != 0)
				{
					*error = psprintf("column \"%s\": %s", ad->names[c], avro_strerror());
					return false;
				}
				return convert_value(ad, dec, c, &branch,
									 ti && d >= 0 && d < ti->nbranches ? &ti->branches[d] : NULL,
									 value, isnull, error);
			}
		case AVRO_NULL:
			/* a non-strict input function (a NOT NULL domain) must see it */
			*isnull = true;
			return via_input(dec, c, NULL, value, error);
		case AVRO_BOOLEAN:
			{
				int			b;

				avro_value_get_boolean(v, &b);
				if (ad->types[c] == BOOLOID)
				{
					*value = BoolGetDatum(b != 0);
					return true;
				}
				return via_input(dec, c, b ? "true" : "false", value, error);
			}
		case AVRO_INT32:
			{
				int32_t		i;

				avro_value_get_int(v, &i);
				return convert_long(ad, dec, c, i, ti ? ti->logical : LOGICAL_NONE, value, error);
			}
		case AVRO_INT64:
			{
				int64_t		i;

				avro_value_get_long(v, &i);
				return convert_long(ad, dec, c, i, ti ? ti->logical : LOGICAL_NONE, value, error);
			}
		case AVRO_FLOAT:
			{
				float		f;

				avro_value_get_float(v, &f);
				if (ad->types[c] == FLOAT4OID)
				{
					*value = Float4GetDatum(f);
					return true;
				}
				return convert_double(ad, dec, c, f, value, error);
			}
		case AVRO_DOUBLE:
			{
				double		d;

				avro_value_get_double(v, &d);
				return convert_double(ad, dec, c, d, value, error);
			}
		case AVRO_STRING:
			{
				const char *s;
				size_t		size;
				size_t		len;

				avro_value_get_string(v, &s, &size);
				len = size > 0 ? size - 1 : 0;	/* size counts the NUL */
				if (memchr(s, '\0', len) != NULL ||
					!pg_verify_mbstr(ad->encoding, s, (int) len, true))
				{
					*error = psprintf("column \"%s\": string is not valid %s (invalid byte sequence or NUL byte)",
									  ad->names[c], GetDatabaseEncodingName());
					return false;
				}
				if (ad->types[c] == TEXTOID)
				{
					*value = PointerGetDatum(cstring_to_text_with_len(s, (int) len));
					return true;
				}
				return via_input(dec, c, pnstrdup(s, len), value, error);
			}
		case AVRO_BYTES:
			{
				const void *buf;
				size_t		len;

				avro_value_get_bytes(v, &buf, &len);
				return convert_bytes(ad, dec, c, buf, len, ti, value, error);
			}
		case AVRO_FIXED:
			{
				const void *buf;
				size_t		len;

				avro_value_get_fixed(v, &buf, &len);
				return convert_bytes(ad, dec, c, buf, len, ti, value, error);
			}
		case AVRO_ENUM:
			{
				int			i;
				const char *sym;

				avro_value_get_enum(v, &i);
				sym = avro_schema_enum_get(avro_value_get_schema(v), i);
				if (sym == NULL)
				{
					*error = psprintf("column \"%s\": enum index %d out of range", ad->names[c], i);
					return false;
				}
				if (ad->types[c] == TEXTOID)
				{
					*value = CStringGetTextDatum(sym);
					return true;
				}
				return via_input(dec, c, pstrdup(sym), value, error);
			}
		default:
			{
				/* records, arrays, maps: as JSON, for json and jsonb columns */
				StringInfoData json;

				if (ad->types[c] != JSONOID && ad->types[c] != JSONBOID &&
					getBaseType(ad->types[c]) != JSONOID &&
					getBaseType(ad->types[c]) != JSONBOID)
				{
					*error = psprintf("column \"%s\": an Avro %s cannot be converted to type %s",
									  ad->names[c],
									  avro_schema_type_name(avro_value_get_schema(v)),
									  format_type_be(ad->types[c]));
					return false;
				}
				initStringInfo(&json);
				if (!avro_json(ad, &json, v, error))
				{
					*error = psprintf("column \"%s\": %s", ad->names[c], *error);
					return false;
				}
				return via_input(dec, c, json.data, value, error);
			}
	}
}

bool
avro_decode(AvroDecoder *ad, Decoder *dec, const char *payload, size_t len,
			Datum *values, bool *nulls, char **error)
{
	WriterPlan *p;
	const char *body = payload;
	size_t		bodylen = len;
	Walk		w;

	if (ad->confluent)
	{
		int32		id;

		if (len < 5)
		{
			*error = psprintf("message of %zu bytes is too short for the Confluent wire format (magic byte, 4-byte schema id, Avro datum)",
							  len);
			return false;
		}
		if (payload[0] != 0)
		{
			*error = psprintf("bad magic byte 0x%02x: not the Confluent wire format",
							  (unsigned char) payload[0]);
			return false;
		}
		id = (int32) (((uint32) (uint8) payload[1] << 24) | ((uint32) (uint8) payload[2] << 16) |
					  ((uint32) (uint8) payload[3] << 8) | (uint32) (uint8) payload[4]);
		p = plan_for_id(ad, id);
		body = payload + 5;
		bodylen = len - 5;
	}
	else
		p = ad->inline_plan;

	if (p->error)
	{
		*error = pstrdup(p->error);
		return false;
	}

	w.p = (const uint8 *) body;
	w.end = w.p + bodylen;
	w.budget = (int64) bodylen + 1024;
	w.error = NULL;
	if (!walk_value(&w, p->writer, 0))
	{
		*error = psprintf("undecodable Avro record%s: %s at byte %d",
						  p->id >= 0 ? psprintf(" (schema id %d)", p->id) : "",
						  w.error, (int) ((const char *) w.p - body));
		return false;
	}
	if (w.p != w.end)
	{
		*error = psprintf("undecodable Avro record%s: %d trailing bytes",
						  p->id >= 0 ? psprintf(" (schema id %d)", p->id) : "",
						  (int) (w.end - w.p));
		return false;
	}

	avro_value_reset(&p->dest);
	avro_reader_memory_set_source(ad->memreader, body, (int64_t) bodylen);
	if (avro_value_read(ad->memreader, p->direct ? &p->dest : &p->resolved) != 0)
	{
		*error = psprintf("undecodable Avro record%s: %s",
						  p->id >= 0 ? psprintf(" (schema id %d)", p->id) : "",
						  avro_strerror());
		return false;
	}

	for (int c = 0; c < ad->ncols; c++)
	{
		ColumnPlan *cp = &p->cols[c];

		if (cp->field < 0)
		{
			char	   *text = cp->has_default ? cp->default_text : NULL;

			nulls[c] = (text == NULL);
			if (!via_input(dec, c, text, &values[c], error))
				return false;
			continue;
		}
		{
			avro_value_t fv;

			if (avro_value_get_by_index(&p->dest, cp->field, &fv, NULL) != 0)
			{
				*error = psprintf("column \"%s\": %s", ad->names[c], avro_strerror());
				return false;
			}
			if (!convert_value(ad, dec, c, &fv, &cp->type, &values[c], &nulls[c], error))
				return false;
		}
	}
	return true;
}

/*
 * streamflink._avro_source_check(format, avro_schema, schema_registry,
 *								   row_type, owner)
 *
 * A source's Avro settings, as its decoder will take them: errors with a
 * hint, for create_source and for a row a tenant inserts itself.
 */
PG_FUNCTION_INFO_V1(streamflink_avro_source_check);

Datum
streamflink_avro_source_check(PG_FUNCTION_ARGS)
{
	char	   *format = PG_ARGISNULL(0) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *schema = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *registry = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Oid			owner = PG_ARGISNULL(4) ? GetUserId() : PG_GETARG_OID(4);
	bool		avro = strcmp(format, "avro") == 0;
	bool		confluent = strcmp(format, "avro-confluent") == 0;
	TupleDesc	desc;
	char	  **names;
	Oid		   *types;
	int32	   *typmods;
	char	   *reason;
	int			n = 0;

	if (!avro && !confluent)
	{
		if (schema != NULL || registry != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("avro_schema and schema_registry are settings of avro sources"),
					 errhint("Use format avro (with avro_schema) or avro-confluent (with schema_registry).")));
		PG_RETURN_VOID();
	}
	if (avro && registry != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an avro source takes no schema registry"),
				 errhint("Use format avro-confluent for messages in the Confluent wire format.")));
	if (confluent)
	{
		if (registry == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an avro-confluent source needs a schema registry"),
					 errhint("Give its URL as schema_registry => 'http://host:8081'.")));
		/* the URL's form first, then whether this role may use its host */
		reason = registry_url_refused(registry, BOOTSTRAP_SUPERUSERID);
		if (reason)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s", reason),
					 errhint("A schema registry URL is http:// or https:// with a host, e.g. 'http://registry:8081'.")));
		reason = registry_url_refused(registry, owner);
		if (reason)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s", reason),
					 errhint("A superuser lists the registries other roles may use in streamflink.schema_registry_hosts.")));
	}
	if (PG_ARGISNULL(3))
		PG_RETURN_VOID();

	desc = lookup_rowtype_tupdesc_copy(PG_GETARG_OID(3), -1);
	names = palloc(sizeof(char *) * desc->natts);
	types = palloc(sizeof(Oid) * desc->natts);
	typmods = palloc(sizeof(int32) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		names[n] = NameStr(att->attname);
		types[n] = att->atttypid;
		typmods[n] = att->atttypmod;
		n++;
	}
	/* parses the schemas and checks the columns against a reader schema */
	(void) avro_decoder_create(confluent, schema, registry, 0, owner, n, names,
							   types, typmods);
	PG_RETURN_VOID();
}
