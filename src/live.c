/*-------------------------------------------------------------------------
 *
 * live.c
 *	  streamflink.live(): open windows of a running pipeline, or open
 *	  partial matches of a pattern pipeline, from any session.
 *
 * The worker owns its RocksDB database; a backend opens a secondary
 * instance of it (with a directory of its own), keeps it open for the
 * session, and catches up with the primary on each call.  What it sees is
 * the state as of the worker's last flush, which happens at every
 * checkpoint: at most checkpoint_interval old.
 *
 * A secondary's directory is live-<pid> in the pipeline's directory,
 * removed when the backend exits.  A backend that crashed (or a server
 * stopped in immediate mode) leaves its directory behind: the next backend
 * opening a secondary of that pipeline, and the pipeline's worker when it
 * starts (it does after every crash restart), remove the directories of
 * pids that are no backend of this server any more (live.h).  Opening or catching up
 * can fail while the worker replaces its database (a restore from a
 * snapshot): the secondary is then reopened, a few times.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/stat.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "catalog.h"
#include "cep.h"
#include "checkpoint.h"
#include "live.h"
#include "run_as.h"
#include "state.h"
#include "tenancy.h"
#include "window.h"

PG_FUNCTION_INFO_V1(streamflink_live);

/* One secondary per pipeline, for the session's lifetime. */
typedef struct LiveStore
{
	int32		pipeline_id;
	StateStore *store;
	char	   *secondary_dir;
} LiveStore;

static List *live_stores = NIL;
static bool exit_registered = false;

static void
live_close_all(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, live_stores)
	{
		LiveStore  *ls = (LiveStore *) lfirst(lc);

		state_close(ls->store);
		state_remove_dir(ls->secondary_dir);
	}
	live_stores = NIL;
}

/* Remove live-<pid> directories of pids that are no backend any more. */
void
live_remove_stale(const char *pipeline_dir)
{
	DIR		   *dir = AllocateDir(pipeline_dir);
	struct dirent *de;

	if (dir == NULL)
		return;
	while ((de = ReadDir(dir, pipeline_dir)) != NULL)
	{
		int			pid;
		char		rest;

		if (sscanf(de->d_name, "live-%d%c", &pid, &rest) != 1 || pid == MyProcPid)
			continue;
		if (BackendPidGetProc(pid) != NULL)
			continue;			/* a backend of ours: its secondary */
		state_remove_dir(psprintf("%s/%s", pipeline_dir, de->d_name));
	}
	FreeDir(dir);
}

static LiveStore *
live_store(PipelineDef *def, const char *dbdir)
{
	ListCell   *lc;
	LiveStore  *ls;
	MemoryContext old;

	foreach(lc, live_stores)
	{
		ls = (LiveStore *) lfirst(lc);
		if (ls->pipeline_id == def->id)
			return ls;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	ls = palloc0(sizeof(LiveStore));
	ls->pipeline_id = def->id;
	ls->secondary_dir = psprintf("%s/live-%d", state_pipeline_dir(MyDatabaseId, def->id), MyProcPid);
	MemoryContextSwitchTo(old);

	if (!exit_registered)
	{
		before_shmem_exit(live_close_all, (Datum) 0);
		exit_registered = true;
	}
	live_remove_stale(state_pipeline_dir(MyDatabaseId, def->id));
	PG_TRY();
	{
		ls->store = state_open_secondary(dbdir, ls->secondary_dir);
	}
	PG_CATCH();
	{
		state_remove_dir(ls->secondary_dir);
		PG_RE_THROW();
	}
	PG_END_TRY();
	old = MemoryContextSwitchTo(TopMemoryContext);
	live_stores = lappend(live_stores, ls);
	MemoryContextSwitchTo(old);
	return ls;
}

static void
live_forget(LiveStore *ls)
{
	live_stores = list_delete_ptr(live_stores, ls);
	state_close(ls->store);
	state_remove_dir(ls->secondary_dir);
}

#define LIVE_OPEN_ATTEMPTS 5
#define LIVE_OPEN_RETRY_MS 100

/*
 * The pipeline's secondary, caught up with the worker's last flush.  An
 * error (the worker restoring its database from a snapshot: files go away
 * under the secondary) closes it, and it is opened afresh, a few times.
 */
static LiveStore *
live_open(PipelineDef *def, const char *dbdir)
{
	MemoryContext cxt = CurrentMemoryContext;

	for (int attempt = 1;; attempt++)
	{
		LiveStore  *volatile ls = NULL;
		ListCell   *lc;

		PG_TRY();
		{
			ls = live_store(def, dbdir);
			state_catch_up(ls->store);
		}
		PG_CATCH();
		{
			if (attempt >= LIVE_OPEN_ATTEMPTS)
				PG_RE_THROW();
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			ls = NULL;
		}
		PG_END_TRY();
		if (ls != NULL)
			return ls;

		/* Close and remove it: a new secondary next time. */
		foreach(lc, live_stores)
		{
			if (((LiveStore *) lfirst(lc))->pipeline_id == def->id)
			{
				live_forget((LiveStore *) lfirst(lc));
				break;
			}
		}
		pg_usleep(LIVE_OPEN_RETRY_MS * 1000L);
		CHECK_FOR_INTERRUPTS();
	}
}

typedef struct LiveOutput
{
	ReturnSetInfo *rsinfo;
	int			natts;
	int		   *source;			/* per output column: kind << 16 | index */
	Datum	   *values;
	bool	   *nulls;
} LiveOutput;

#define SRC_NONE 0
#define SRC_KEY 1
#define SRC_START 2
#define SRC_END 3
#define SRC_AGG 4

static void
live_row(void *arg, Datum *keys, bool *keynulls, TimestampTz start, TimestampTz end,
		 Datum *values, bool *nulls)
{
	LiveOutput *out = (LiveOutput *) arg;

	for (int i = 0; i < out->natts; i++)
	{
		int			kind = out->source[i] >> 16;
		int			idx = out->source[i] & 0xFFFF;

		out->nulls[i] = false;
		switch (kind)
		{
			case SRC_KEY:
				out->values[i] = keys[idx];
				out->nulls[i] = keynulls[idx];
				break;
			case SRC_START:
				out->values[i] = TimestampTzGetDatum(start);
				break;
			case SRC_END:
				out->values[i] = TimestampTzGetDatum(end);
				break;
			case SRC_AGG:
				out->values[i] = values[idx];
				out->nulls[i] = nulls[idx];
				break;
			default:
				out->nulls[i] = true;
		}
	}
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, out->values, out->nulls);
}

/*
 * The row type given must be the sink's: the same columns, names and types,
 * in order (the sink's own row type, or one declared alike).
 */
static void
check_row_type(PipelineDef *def, Oid given)
{
	Oid			sink_type;
	TupleDesc	gdesc;
	TupleDesc	sdesc;
	bool		same = true;
	int			gi = 0,
				si = 0;

	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(def->sink_relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the sink table of pipeline \"%s\" no longer exists", def->name),
				 errhint("Drop the pipeline with streamflink.drop_pipeline() and create it again.")));
	sink_type = get_rel_type_id(def->sink_relid);
	if (given == sink_type)
		return;
	if (!OidIsValid(given) || !type_is_rowtype(given) || given == RECORDOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("live() needs the row type of the sink of pipeline \"%s\", not %s",
						def->name, OidIsValid(given) ? format_type_be(given) : "unknown"),
				 errhint("Pass NULL::%s.", format_type_be(sink_type))));

	gdesc = lookup_rowtype_tupdesc(given, -1);
	sdesc = lookup_rowtype_tupdesc(sink_type, -1);
	for (;;)
	{
		Form_pg_attribute ga,
					sa;

		while (gi < gdesc->natts && TupleDescAttr(gdesc, gi)->attisdropped)
			gi++;
		while (si < sdesc->natts && TupleDescAttr(sdesc, si)->attisdropped)
			si++;
		if (gi >= gdesc->natts || si >= sdesc->natts)
		{
			same = gi >= gdesc->natts && si >= sdesc->natts;
			break;
		}
		ga = TupleDescAttr(gdesc, gi++);
		sa = TupleDescAttr(sdesc, si++);
		if (strcmp(NameStr(ga->attname), NameStr(sa->attname)) != 0 ||
			ga->atttypid != sa->atttypid)
		{
			same = false;
			break;
		}
	}
	ReleaseTupleDesc(gdesc);
	ReleaseTupleDesc(sdesc);
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("row type %s does not match the sink of pipeline \"%s\"",
						format_type_be(given), def->name),
				 errhint("Pass NULL::%s, or use streamflink.live('%s') for jsonb.",
						 format_type_be(sink_type), def->name)));
}

/*
 * A column of the result gets a key, a window bound or an aggregate's
 * value: its type must be that value's (the sink may have been altered
 * since the pipeline was created).
 */
static void
check_output_type(PipelineDef *def, Form_pg_attribute att, int source,
				  TupleDesc rowdesc, AggSpec *aggs)
{
	int			kind = source >> 16;
	int			idx = source & 0xFFFF;
	Oid			expected;

	if (att->attisdropped)
		return;
	switch (kind)
	{
		case SRC_KEY:
			expected = TupleDescAttr(rowdesc, def->key_attnos[idx])->atttypid;
			break;
		case SRC_START:
		case SRC_END:
			expected = TIMESTAMPTZOID;
			break;
		case SRC_AGG:
			/* a pattern pipeline's only value: its events */
			expected = aggs ? agg_result_type(aggs, idx) : JSONBOID;
			break;
		default:
			return;				/* NULL */
	}
	if (att->atttypid != expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of the sink of pipeline \"%s\" has type %s, but the pipeline computes %s",
						NameStr(att->attname), def->name, format_type_be(att->atttypid),
						format_type_be(expected)),
				 errhint("The sink table was altered after the pipeline was created.")));
}

Datum
streamflink_live(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	PipelineDef *def;
	TupleDesc	desc;
	TupleDesc	rowdesc;
	LiveOutput	out;
	char	   *dbdir;
	struct stat st;
	LiveStore  *ls;
	AggSpec    *aggs;
	RunAs		as;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pipeline name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	/* Members of the owner, and roles that may SELECT the sink. */
	def = sf_load_pipeline_for_reader(name);
	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name),
				 errhint("See streamflink.pipelines for the pipelines of this database.")));
	if (def->query_tree != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pipeline \"%s\" is written as a query: live() does not show its open windows yet", name),
				 errhint("Closed windows are in its sink table.")));

	catalog_check_pipeline(def);
	check_row_type(def, get_fn_expr_argtype(fcinfo->flinfo, 1));

	InitMaterializedSRF(fcinfo, 0);
	desc = rsinfo->setDesc;

	/*
	 * The aggregates are the owner's code (final, deserial functions): they
	 * run as the owner, whoever calls live() (run_as.h).
	 */
	run_as_role(def->owner, &as);

	/* Map output columns to key columns, window bounds and aggregates. */
	rowdesc = lookup_rowtype_tupdesc(def->source.row_type, -1);
	/* A pattern pipeline's open partial matches: key, times, events (cep.h). */
	aggs = def->kind == PIPELINE_WINDOW ?
		agg_spec_load(def->aggregates_tree, CurrentMemoryContext) : NULL;
	out.rsinfo = rsinfo;
	out.natts = desc->natts;
	out.source = palloc0(sizeof(int) * desc->natts);
	out.values = palloc(sizeof(Datum) * desc->natts);
	out.nulls = palloc(sizeof(bool) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		const char *col = NameStr(TupleDescAttr(desc, i)->attname);

		if (strcmp(col, aggs ? "window_start" : "match_start") == 0)
			out.source[i] = SRC_START << 16;
		else if (strcmp(col, aggs ? "window_end" : "match_end") == 0)
			out.source[i] = SRC_END << 16;
		else if (aggs == NULL && strcmp(col, "events") == 0)
			out.source[i] = SRC_AGG << 16;
		for (int k = 0; k < def->nkeys; k++)
			if (strcmp(col, NameStr(TupleDescAttr(rowdesc, def->key_attnos[k])->attname)) == 0)
				out.source[i] = (SRC_KEY << 16) | k;
		for (int a = 0; aggs && a < agg_count(aggs); a++)
			if (strcmp(col, agg_name(aggs, a)) == 0)
				out.source[i] = (SRC_AGG << 16) | a;
		check_output_type(def, TupleDescAttr(desc, i), out.source[i], rowdesc, aggs);
	}
	ReleaseTupleDesc(rowdesc);

	dbdir = checkpoint_db_dir(state_pipeline_dir(MyDatabaseId, def->id));
	if (stat(dbdir, &st) != 0)
	{
		run_as_restore(&as);
		PG_RETURN_VOID();		/* never started: nothing open */
	}

	ls = live_open(def, dbdir);

	if (def->kind == PIPELINE_WINDOW)
		window_scan_open(def, ls->store, live_row, &out);
	else
		cep_scan_open(def, ls->store, live_row, &out);
	run_as_restore(&as);
	PG_RETURN_VOID();
}
