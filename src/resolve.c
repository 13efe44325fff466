/*-------------------------------------------------------------------------
 *
 * resolve.c
 *	  Resolving a pipeline's user fragments once, at creation.
 *
 * A pipeline's aggregate list (window pipelines) and its define and
 * measures (pattern pipelines) are SQL text.  Re-parsed by the worker, they
 * would mean whatever the worker's search_path finds at each start: a role
 * able to create an operator in a schema on that path could take over
 * another's pipeline.  So, as Postgres does for views (pg_rewrite), they are
 * parsed and analysed once, when the catalog row is written, as the
 * pipeline's owner and in the creating session's search_path, and the
 * analysed trees are stored (nodeToString) in streamflink.pipeline:
 * aggregates_tree and pattern_tree.  Workers and live() build their runtime
 * from these trees only; the text columns are for display.
 *
 * The trees are written by a BEFORE INSERT OR UPDATE trigger on
 * streamflink.pipeline, which always computes them from the text (a row
 * cannot bring a tree of its own), and the objects they use are recorded
 * in pg_depend: a pipeline is a row, not a catalog object, so its sink
 * table is the dependent object.  DROP FUNCTION of a function a pipeline
 * uses is then refused ("table s depends on function f") unless CASCADE,
 * which drops the sink; the same for operators, types, collations and the
 * source's row type and its columns.  Deleting the row removes those
 * dependencies again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/nodes.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "aggregate.h"
#include "pattern.h"
#include "resolve.h"
#include "run_as.h"
#include "sql_pipeline.h"

PG_FUNCTION_INFO_V1(streamflink_pipeline_resolve);

/* A column of the trigger's row, by name (NULL if null). */
static Datum
column(TriggerData *td, HeapTuple tup, const char *name, bool *isnull)
{
	int			attno = SPI_fnumber(td->tg_relation->rd_att, name);

	if (attno <= 0)
		elog(ERROR, "streamflink.pipeline has no column \"%s\"", name);
	return heap_getattr(tup, attno, td->tg_relation->rd_att, isnull);
}

static char *
column_text(TriggerData *td, HeapTuple tup, const char *name)
{
	bool		isnull;
	Datum		d = column(td, tup, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static Oid
column_oid(TriggerData *td, HeapTuple tup, const char *name)
{
	bool		isnull;
	Datum		d = column(td, tup, name, &isnull);

	return isnull ? InvalidOid : DatumGetObjectId(d);
}

/* Do two rows differ in a column (binary image)? */
static bool
column_changed(TriggerData *td, HeapTuple a, HeapTuple b, const char *name)
{
	int			attno = SPI_fnumber(td->tg_relation->rd_att, name);
	Form_pg_attribute att = TupleDescAttr(td->tg_relation->rd_att, attno - 1);
	bool		anull,
				bnull;
	Datum		ad = heap_getattr(a, attno, td->tg_relation->rd_att, &anull);
	Datum		bd = heap_getattr(b, attno, td->tg_relation->rd_att, &bnull);

	if (anull || bnull)
		return anull != bnull;
	return !datumIsEqual(ad, bd, att->attbyval, att->attlen);
}

/*
 * Remove the dependencies this module recorded for a sink: the normal
 * dependencies of the table itself (not of its columns).  A table has no
 * others of that kind except on its schema and access method, the type of
 * a typed table and its inheritance parents, which stay.
 */
static void
forget_dependencies(Oid relid)
{
	HeapTuple	reltup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			reloftype;
	List	   *parents = NIL;
	Relation	rel;
	ScanKeyData key[3];
	SysScanDesc scan;
	HeapTuple	tup;

	if (!HeapTupleIsValid(reltup))
		return;					/* dropped: its dependencies went with it */
	reloftype = ((Form_pg_class) GETSTRUCT(reltup))->reloftype;
	ReleaseSysCache(reltup);

	rel = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_inherits_inhrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InheritsRelidSeqnoIndexId, true, NULL, 1, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
		parents = lappend_oid(parents, ((Form_pg_inherits) GETSTRUCT(tup))->inhparent);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	rel = table_open(DependRelationId, RowExclusiveLock);
	ScanKeyInit(&key[0], Anum_pg_depend_classid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_objid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&key[2], Anum_pg_depend_objsubid, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum(0));
	scan = systable_beginscan(rel, DependDependerIndexId, true, NULL, 3, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->deptype != DEPENDENCY_NORMAL ||
			dep->refclassid == NamespaceRelationId ||
			dep->refclassid == AccessMethodRelationId ||
			(dep->refclassid == TypeRelationId && dep->refobjid == reloftype) ||
			(dep->refclassid == RelationRelationId && dep->refobjsubid == 0 &&
			 list_member_oid(parents, dep->refobjid)))
			continue;
		CatalogTupleDelete(rel, &tup->t_self);
	}
	systable_endscan(scan);
	table_close(rel, RowExclusiveLock);
}

/*
 * Record what a pipeline uses: everything its analysed queries refer to
 * (functions, operators, types, collations, the row type's columns), and
 * the source row type and its key columns, which every pipeline uses.
 */
static void
record_dependencies(Oid sink, Oid row_type, List *queries, Datum key_columns)
{
	ObjectAddress depender;
	ObjectAddress referenced;
	Oid			typrelid = get_typ_typrelid(row_type);
	Datum	   *keys;
	int			nkeys;

	ObjectAddressSet(depender, RelationRelationId, sink);
	if (queries != NIL)
		recordDependencyOnExpr(&depender, (Node *) queries, NIL, DEPENDENCY_NORMAL);
	ObjectAddressSet(referenced, TypeRelationId, row_type);
	recordDependencyOn(&depender, &referenced, DEPENDENCY_NORMAL);

	deconstruct_array(DatumGetArrayTypeP(key_columns), TEXTOID, -1, false, TYPALIGN_INT,
					  &keys, NULL, &nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		AttrNumber	attnum = get_attnum(typrelid, TextDatumGetCString(keys[i]));

		if (attnum == InvalidAttrNumber)
			continue;			/* the create function reports it */
		ObjectAddressSubSet(referenced, RelationRelationId, typrelid, attnum);
		recordDependencyOn(&depender, &referenced, DEPENDENCY_NORMAL);
	}
}

/*
 * BEFORE INSERT OR UPDATE OR DELETE ON streamflink.pipeline: the analysed
 * trees and the dependencies (see above).
 */
Datum
streamflink_pipeline_resolve(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	newtup;
	HeapTuple	oldtup = NULL;
	TupleDesc	desc;
	static const char *const inputs[] = {"kind", "source_id", "aggregates", "pattern",
	"define", "measures", "skip", "within", "sink", "owner", "key_columns"};
	int			cols[2];
	Datum		values[2];
	bool		nulls[2] = {true, true};
	Oid			owner;
	Oid			sink;
	Oid			row_type;
	char	   *kind;
	List	   *queries = NIL;
	bool		isnull;
	Datum		key_columns;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event))
		elog(ERROR, "streamflink_pipeline_resolve: not called as a BEFORE ROW trigger");
	desc = td->tg_relation->rd_att;

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		forget_dependencies(column_oid(td, td->tg_trigtuple, "sink"));
		return PointerGetDatum(td->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		oldtup = td->tg_trigtuple;
		newtup = td->tg_newtuple;
	}
	else
		newtup = td->tg_trigtuple;

	cols[0] = SPI_fnumber(desc, "aggregates_tree");
	cols[1] = SPI_fnumber(desc, "pattern_tree");

	/* An update that leaves the definition alone keeps the old trees. */
	if (oldtup != NULL)
	{
		bool		changed = false;

		for (int i = 0; i < lengthof(inputs); i++)
			changed |= column_changed(td, oldtup, newtup, inputs[i]);
		if (SPI_fnumber(desc, "query") > 0)
			changed |= column_changed(td, oldtup, newtup, "query");
		if (!changed)
		{
			for (int i = 0; i < 2; i++)
				values[i] = heap_getattr(oldtup, cols[i], desc, &nulls[i]);
			return PointerGetDatum(heap_modify_tuple_by_cols(newtup, desc, 2, cols,
															 values, nulls));
		}
		forget_dependencies(column_oid(td, oldtup, "sink"));
	}

	owner = column_oid(td, newtup, "owner");
	sink = column_oid(td, newtup, "sink");
	kind = column_text(td, newtup, "kind");
	key_columns = column(td, newtup, "key_columns", &isnull);
	if (!OidIsValid(owner) || !OidIsValid(sink) || kind == NULL || isnull)
		return PointerGetDatum(newtup); /* the NOT NULL constraints say so */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role %u does not exist", owner),
				 errdetail("It is the owner of the pipeline.")));

	/*
	 * The pipeline's code will run as its owner: only the owner (or a role
	 * with its privileges) may define it, whatever the catalog's grants.
	 */
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must have the privileges of role \"%s\" to define a pipeline it owns",
						GetUserNameFromId(owner, false)),
				 errhint("A pipeline runs its aggregates, conditions and sink triggers as its owner.")));

	/* The source's row type. */
	{
		Oid			argtypes[1] = {INT4OID};
		Datum		args[1];
		int			ret;

		args[0] = column(td, newtup, "source_id", &isnull);
		if (isnull)
			return PointerGetDatum(newtup);
		SPI_connect();
		ret = SPI_execute_with_args("SELECT row_type::pg_catalog.oid FROM streamflink.source"
									" WHERE id OPERATOR(pg_catalog.=) $1",
									1, argtypes, args, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.source: %s", SPI_result_code_string(ret));
		if (SPI_processed != 1)
		{
			SPI_finish();
			return PointerGetDatum(newtup); /* the foreign key says so */
		}
		row_type = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
	}

	/*
	 * Analysed as the owner: names resolve in the schemas the owner may use,
	 * and planning-time evaluation of immutable functions runs as the owner.
	 */
	{
		RunAs		as;
		char	   *aggregates = column_text(td, newtup, "aggregates");
		char	   *query = NULL;

		/* query_tree is only ever computed from query, never brought by a row. */
		if (SPI_fnumber(desc, "query_tree") > 0)
		{
			int			qcol = SPI_fnumber(desc, "query_tree");
			bool		qnull = true;

			query = column_text(td, newtup, "query");
			newtup = heap_modify_tuple_by_cols(newtup, desc, 1, &qcol, values, &qnull);
		}

		run_as_role(owner, &as);
		if (query != NULL)
		{
			/* A query sets the row's shape, trees included (sql_pipeline.h). */
			char	   *aggregates_tree;

			newtup = sqlp_resolve(desc, newtup, DatumGetInt32(column(td, newtup, "source_id", &isnull)),
								  query, &aggregates_tree, &queries);
			nulls[0] = aggregates_tree == NULL;
			if (aggregates_tree)
				values[0] = CStringGetTextDatum(aggregates_tree);
			key_columns = column(td, newtup, "key_columns", &isnull);
		}
		else if (strcmp(kind, "window") == 0 && aggregates != NULL)
		{
			Query	   *q = agg_analyse(row_type, aggregates);

			values[0] = CStringGetTextDatum(nodeToString(q));
			nulls[0] = false;
			queries = list_make1(q);
		}
		else if (strcmp(kind, "pattern") == 0)
		{
			char	   *pattern = column_text(td, newtup, "pattern");
			char	   *skip = column_text(td, newtup, "skip");

			if (pattern != NULL && skip != NULL)
			{
				Node	   *tree;

				column(td, newtup, "within", &isnull);
				tree = pattern_analyse(row_type, pattern, column_text(td, newtup, "define"),
									   column_text(td, newtup, "measures"), skip, !isnull);
				values[1] = CStringGetTextDatum(nodeToString(tree));
				nulls[1] = false;
				queries = pattern_tree_queries(tree);
			}
		}
		run_as_restore(&as);
	}

	record_dependencies(sink, row_type, queries, key_columns);
	return PointerGetDatum(heap_modify_tuple_by_cols(newtup, desc, 2, cols, values, nulls));
}

/* Tables with a normal dependency on (refclass, refobj), any sub-object. */
static List *
dependent_tables(Oid refclassid, Oid refobjid, List *tables)
{
	Relation	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(refclassid));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(refobjid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->classid == RelationRelationId && dep->objsubid == 0 &&
			dep->deptype == DEPENDENCY_NORMAL)
			tables = list_append_unique_oid(tables, dep->objid);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return tables;
}

/*
 * DROP EXTENSION drops streamflink.pipeline without running its DELETE
 * trigger, so the sink tables it leaves behind (they are the user's) keep
 * the dependencies their pipelines recorded, on the source row type among
 * others.  Before a row type no source uses is replaced (tenancy.c), forget
 * what such tables recorded: those whose pipeline no longer exists.
 */
void
resolve_forget_stale_dependencies(Oid row_type)
{
	Oid			typrelid = get_typ_typrelid(row_type);
	List	   *tables = NIL;
	ListCell   *lc;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];

	tables = dependent_tables(TypeRelationId, row_type, tables);
	if (OidIsValid(typrelid))
		tables = dependent_tables(RelationRelationId, typrelid, tables);

	SPI_connect();
	args[0] = ObjectIdGetDatum(row_type);
	if (SPI_execute_with_args("SELECT 1 FROM streamflink.source"
							  " WHERE row_type::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.source");
	if (SPI_processed > 0)
		tables = NIL;			/* in use: not left behind */
	foreach(lc, tables)
	{
		args[0] = ObjectIdGetDatum(lfirst_oid(lc));
		if (SPI_execute_with_args("SELECT 1 FROM streamflink.pipeline"
								  " WHERE sink::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
								  "    OR timed_out::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
								  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.pipeline");
		if (SPI_processed == 0)
			forget_dependencies(lfirst_oid(lc));
	}
	SPI_finish();
}
