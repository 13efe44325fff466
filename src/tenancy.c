/*-------------------------------------------------------------------------
 *
 * tenancy.c
 *	  Who may see and act on streamflink's objects.
 *
 * The model (README, "Tenancy"): sources and pipelines are rows owned by a
 * role; row-level security on the catalog tables lets a role see and change
 * only the rows of roles it is a member of, and column privileges let a
 * tenant change only a pipeline's desired state.  Everything that acts on a
 * worker follows from a change of a catalog row, through the triggers here:
 * whoever may change the row may start, stop or drop the pipeline, and
 * nobody else, because there is no other way to reach those actions.
 *
 * Two things need more than the caller's own rights, and switch to the
 * extension's owner for a fixed piece of work, with search_path pinned, then
 * check the caller's right themselves:
 * - a source's row type is created in the extension's schema, where tenants
 *	 may not create objects (a tenant could otherwise plant functions or
 *	 operators next to ours), and then given to the caller;
 * - live() shows a pipeline's open windows to roles that may SELECT its
 *	 sink, which row-level security on the catalog would hide from them.
 *
 * Memory: results are allocated in the caller's context; nothing is kept
 * across calls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "commands/typecmds.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "launcher.h"
#include "slot.h"
#include "resolve.h"
#include "run_as.h"
#include "task.h"
#include "tenancy.h"

PG_FUNCTION_INFO_V1(streamflink_pipeline_lifecycle);
PG_FUNCTION_INFO_V1(streamflink_worker_only);
PG_FUNCTION_INFO_V1(streamflink_create_row_type);
PG_FUNCTION_INFO_V1(streamflink_live_sink);
PG_FUNCTION_INFO_V1(streamflink_quota_pipelines);

List *
sf_visible_pipelines(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *ids = NIL;

	SPI_connect();
	if (SPI_execute("SELECT id FROM streamflink.pipeline", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.pipeline");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(caller);

		ids = lappend_int(ids, DatumGetInt32(d));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return ids;
}

int
sf_visible_slots(WorkerSlot **copies)
{
	List	   *visible = NIL;
	bool		all_visible = superuser();
	int			n;
	int			kept = 0;

	if (!all_visible)
		visible = sf_visible_pipelines();
	n = slot_copy_all(MyDatabaseId, copies);
	if (all_visible)
		return n;
	for (int i = 0; i < n; i++)
	{
		if (list_member_int(visible, (*copies)[i].pipeline_id))
			(*copies)[kept++] = (*copies)[i];
	}
	return kept;
}

PipelineDef *
sf_load_pipeline_for_reader(const char *name)
{
	Oid			caller = GetUserId();
	PipelineDef *def;
	RunAs		as;

	run_as_extension(&as);
	def = catalog_load_pipeline(0, name);
	run_as_restore(&as);

	if (def == NULL)
		return NULL;
	if (has_privs_of_role(caller, def->owner))
		return def;
	if (SearchSysCacheExists1(RELOID, ObjectIdGetDatum(def->sink_relid)) &&
		pg_class_aclcheck(def->sink_relid, caller, ACL_SELECT) == ACLCHECK_OK)
	{
		/*
		 * live() cannot apply the sink's policies to open windows: a reader
		 * the sink's row-level security would filter sees none of them.
		 */
		if (check_enable_rls(def->sink_relid, caller, true) == RLS_ENABLED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for pipeline \"%s\"", name),
					 errdetail("Row-level security on its sink table applies to you, and open windows cannot be filtered by its policies."),
					 errhint("Read the sink table itself, or ask its owner to exempt you from its policies.")));
		return def;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for pipeline \"%s\"", name),
			 errhint("Its results are shown to members of its owning role and to roles that may SELECT its sink table.")));
	return NULL;				/* keep compiler quiet */
}

/* streamflink._live_sink(pipeline): the sink of a pipeline the caller may read. */
Datum
streamflink_live_sink(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PipelineDef *def = sf_load_pipeline_for_reader(name);

	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name),
				 errhint("See streamflink.pipelines for the pipelines of this database.")));
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(def->sink_relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the sink table of pipeline \"%s\" no longer exists", name)));
	PG_RETURN_OID(def->sink_relid);
}

static Datum
trigger_attr(TriggerData *td, HeapTuple tup, const char *colname, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	int			attno = SPI_fnumber(desc, colname);

	if (attno <= 0)
		elog(ERROR, "table \"%s\" has no column \"%s\"",
			 RelationGetRelationName(td->tg_relation), colname);
	return heap_getattr(tup, attno, desc, isnull);
}

static bool
tuple_running(TriggerData *td, HeapTuple tup)
{
	bool		isnull;
	Datum		d = trigger_attr(td, tup, "state", &isnull);

	return !isnull && strcmp(TextDatumGetCString(d), "running") == 0;
}

/*
 * AFTER UPDATE OF state OR DELETE ON streamflink.pipeline, FOR EACH ROW.
 *
 * The only way to start or stop a worker or remove a pipeline's state:
 * row-level security and the column privileges already decided that the
 * role may change this row.  The actions take effect at commit.
 */
Datum
streamflink_pipeline_lifecycle(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	old;
	bool		isnull;
	int32		id;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "streamflink._pipeline_lifecycle() must be an AFTER ... FOR EACH ROW trigger");

	old = td->tg_trigtuple;
	id = DatumGetInt32(trigger_attr(td, old, "id", &isnull));

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		bool		was = tuple_running(td, old);
		bool		is = tuple_running(td, td->tg_newtuple);

		if (!was && is)
			launcher_start_at_commit(id);
		else if (was && !is)
			launcher_stop_at_commit(id);
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		if (tuple_running(td, old))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("pipeline \"%s\" is running",
							TextDatumGetCString(trigger_attr(td, old, "name", &isnull))),
					 errhint("Stop it first with streamflink.stop().")));
		/* A worker finishing its stop must not write after the drop. */
		launcher_wait_stopped(id, 30000);
		launcher_remove_state_at_commit(id);
	}
	return PointerGetDatum(NULL);
}

/*
 * BEFORE INSERT ON checkpoint, checkpoint_offset, dead_letter, late_event
 * and BEFORE DELETE ON checkpoint, checkpoint_offset, FOR EACH ROW.
 *
 * These rows are the pipeline's own record (a checkpoint row is the
 * decision to commit its prepared transaction): only its worker writes
 * them, or prunes old checkpoints, whichever role it runs as; superusers
 * may repair by hand, and dropping a pipeline deletes them as the
 * catalog's owner (the foreign keys' cascade).
 */
Datum
streamflink_worker_only(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		isnull;
	Datum		d;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "streamflink._worker_only() must be a BEFORE ... FOR EACH ROW trigger");

	if (superuser())
		return PointerGetDatum(td->tg_trigtuple);
	d = trigger_attr(td, td->tg_trigtuple, "pipeline_id", &isnull);
	if (!isnull && (slot_am_worker_of(DatumGetInt32(d)) ||
					task_am_task_of(DatumGetInt32(d))))
		return PointerGetDatum(td->tg_trigtuple);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for table %s", RelationGetRelationName(td->tg_relation)),
			 errdetail("Only the worker of a pipeline writes its checkpoints, offsets, dead letters and late events."),
			 errhint("Dead letters and late events of your pipelines may be deleted.")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/* Drop streamflink.<name>, a row type no source uses (a dropped extension's). */
static void
drop_unused_row_type(Oid nsp, const char *type_name)
{
	Oid			typoid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										 CStringGetDatum(type_name), ObjectIdGetDatum(nsp));
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	ObjectAddress addr;
	bool		used;

	/* Only a standalone composite type, never a table's row type. */
	if (!OidIsValid(typoid) ||
		get_rel_relkind(get_typ_typrelid(typoid)) != RELKIND_COMPOSITE_TYPE)
		return;
	args[0] = ObjectIdGetDatum(typoid);
	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM streamflink.source WHERE row_type = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.source");
	used = SPI_processed > 0;
	SPI_finish();
	if (used)
		return;					/* the INSERT of the source will say why */
	/* Sinks of the dropped extension's pipelines still depend on it. */
	resolve_forget_stale_dependencies(typoid);
	CommandCounterIncrement();
	ObjectAddressSet(addr, TypeRelationId, typoid);
	performDeletion(&addr, DROP_RESTRICT, 0);
	CommandCounterIncrement();
}

/*
 * streamflink._create_row_type(source_name, columns) RETURNS regtype
 *
 * Creates streamflink.source_<source_name> AS (columns) for the caller, who
 * owns it.  The column list is parsed as exactly one composite type's, and
 * its types are looked up with the caller's search_path and must be usable
 * by the caller; only the creation itself, in our schema, runs as the
 * extension's owner.
 */
Datum
streamflink_create_row_type(PG_FUNCTION_ARGS)
{
	char	   *source_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *columns = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			caller = GetUserId();
	char	   *type_name = psprintf("source_%s", source_name);
	Oid			nsp = get_namespace_oid("streamflink", false);
	char	   *sql;
	List	   *raw;
	RawStmt    *stmt;
	CompositeTypeStmt *ct;
	ListCell   *lc;
	ObjectAddress addr;
	RunAs		as;

	if (strlen(type_name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("source name \"%s\" is too long", source_name)));

	/* The same text CREATE TYPE would see; it must be that one statement. */
	sql = psprintf("CREATE TYPE streamflink.%s AS (%s)", quote_identifier(type_name), columns);
	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	stmt = list_length(raw) == 1 ? linitial_node(RawStmt, raw) : NULL;
	if (stmt == NULL || !IsA(stmt->stmt, CompositeTypeStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid column list: %s", columns)));
	ct = (CompositeTypeStmt *) stmt->stmt;

	/*
	 * Resolve each column's type as the caller would, and pin it by OID, so
	 * that the creation resolves nothing under another identity.
	 */
	foreach(lc, ct->coldeflist)
	{
		ColumnDef  *col = lfirst_node(ColumnDef, lc);
		Oid			typid;
		int32		typmod;
		AclResult	aclresult;

		typenameTypeIdAndMod(NULL, col->typeName, &typid, &typmod);
		aclresult = pg_type_aclcheck(typid, caller, ACL_USAGE);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error_type(aclresult, typid);
		col->typeName = makeTypeNameFromOid(typid, typmod);
		if (col->collClause)
		{
			Oid			collid = LookupCollation(NULL, col->collClause->collname, -1);

			col->collClause = NULL;
			col->collOid = collid;
		}
	}

	run_as_extension(&as);
	drop_unused_row_type(nsp, type_name);
	addr = DefineCompositeType(ct->typevar, ct->coldeflist);
	CommandCounterIncrement();
	AlterTypeOwner_oid(addr.objectId, caller, true);
	CommandCounterIncrement();
	run_as_restore(&as);

	PG_RETURN_OID(addr.objectId);
}

/*
 * streamflink._quota_pipelines(owner, running, except_id) RETURNS bigint
 *
 * How many pipelines 'owner' has (running ones only if 'running', other
 * than pipeline except_id), counted under the latest snapshot, as the
 * caller (row-level security applies).  _check_quota holds an advisory
 * lock per role while it counts; but in a REPEATABLE READ or SERIALIZABLE
 * transaction its own snapshot predates the commit of a session that held
 * the lock before it, so two sessions would both pass the same last slot.
 * The latest snapshot sees what that session committed, as the foreign
 * key checks of ri_triggers.c do.
 */
Datum
streamflink_quota_pipelines(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {OIDOID, BOOLOID, INT4OID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	SPIPlanPtr	plan;
	bool		isnull;
	int64		n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_ARGISNULL(2) ? Int32GetDatum(0) : PG_GETARG_DATUM(2);
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';

	SPI_connect();
	/*
	 * Running: every task of a parallel pipeline is a worker (to_jsonb: a
	 * 0.1 catalog has no parallelism).
	 */
	plan = SPI_prepare("SELECT coalesce(sum(CASE WHEN $2"
					   "  THEN coalesce((pg_catalog.to_jsonb(p) ->> 'parallelism')::int, 1)"
					   "  ELSE 1 END), 0)::bigint FROM streamflink.pipeline p"
					   " WHERE p.owner = $1::pg_catalog.regrole"
					   " AND (NOT $2 OR (p.state = 'running' AND p.id IS DISTINCT FROM $3))",
					   3, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the quota count: %s", SPI_result_code_string(SPI_result));
	if (SPI_execute_snapshot(plan, args, nulls, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the pipelines of role %u", DatumGetObjectId(args[0]));
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(n);
}
