/*-------------------------------------------------------------------------
 *
 * ddl_guard.c
 *	  Refuse to drop what a running pipeline uses.
 *
 * An object access hook sees every object a DROP removes, also those a
 * CASCADE, DROP SCHEMA ... CASCADE, DROP OWNED or DROP EXTENSION reaches.
 * While a pipeline of this database runs (its desired state is running,
 * or a live worker still has its slot), dropping
 *	- its sink or timed-out table, or one of their columns,
 *	- its source's row type, or one of its attributes,
 *	- the extension (seen as the drop of the streamflink.pipeline table,
 *	  which happens only with the extension, while the table still exists)
 * fails with ERRCODE_OBJECT_IN_USE and a hint to stop the pipeline first.
 * When the extension does go, its pipelines' state directories go at commit.
 * Stopped pipelines do not hold anything: their start then says what is
 * missing.
 *
 * The catalog is read directly (a heap scan with the catalog snapshot), not
 * through SPI: no row-level security, no search_path, and nothing that a
 * half-dropped schema could break.  Nothing is allocated beyond the
 * current memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "ddl_guard.h"
#include "launcher.h"
#include "slot.h"

static object_access_hook_type prev_object_access_hook = NULL;

/* What a running pipeline of this database uses, by the first one found. */
typedef struct RunningUse
{
	int32		pipeline_id;
	char	   *pipeline_name;
	bool		stopping;		/* stopped, but its worker has not exited yet */
} RunningUse;

static bool
row_running(HeapTuple tup, TupleDesc desc, AttrNumber id_att, AttrNumber state_att,
			bool *stopping)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, state_att, desc, &isnull);

	*stopping = false;
	if (!isnull && strcmp(TextDatumGetCString(d), "running") == 0)
		return true;
	d = heap_getattr(tup, id_att, desc, &isnull);
	*stopping = !isnull && slot_pipeline_has_worker(MyDatabaseId, DatumGetInt32(d));
	return *stopping;
}

/* The source ids whose row type is typoid. */
static List *
sources_of_type(Oid nsp, Oid typoid)
{
	Oid			relid = get_relname_relid("source", nsp);
	List	   *ids = NIL;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	id_att,
				type_att;

	if (!OidIsValid(relid))
		return NIL;
	rel = table_open(relid, AccessShareLock);
	id_att = attnameAttNum(rel, "id", false);
	type_att = attnameAttNum(rel, "row_type", false);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, type_att, RelationGetDescr(rel), &isnull);

		if (!isnull && DatumGetObjectId(d) == typoid)
			ids = lappend_int(ids, DatumGetInt32(heap_getattr(tup, id_att,
															   RelationGetDescr(rel), &isnull)));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return ids;
}

/*
 * Find a running pipeline that uses the relation relid as sink or
 * timed-out table (relid valid), reads a source in source_ids, or any
 * running pipeline (neither).  Returns false if there is none.
 */
static bool
find_running(Oid pipeline_relid, Oid relid, List *source_ids, RunningUse *use)
{
	Relation	rel;
	TupleDesc	desc;
	SysScanDesc scan;
	HeapTuple	tup;
	AttrNumber	id_att,
				name_att,
				state_att,
				sink_att,
				timed_out_att,
				source_att;
	bool		found = false;

	rel = table_open(pipeline_relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	id_att = attnameAttNum(rel, "id", false);
	name_att = attnameAttNum(rel, "name", false);
	state_att = attnameAttNum(rel, "state", false);
	sink_att = attnameAttNum(rel, "sink", false);
	timed_out_att = attnameAttNum(rel, "timed_out", false);
	source_att = attnameAttNum(rel, "source_id", false);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (!found && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		bool		uses;

		if (OidIsValid(relid))
		{
			Datum		sink = heap_getattr(tup, sink_att, desc, &isnull);
			Datum		timed_out;

			uses = !isnull && DatumGetObjectId(sink) == relid;
			timed_out = heap_getattr(tup, timed_out_att, desc, &isnull);
			uses |= !isnull && DatumGetObjectId(timed_out) == relid;
		}
		else if (source_ids != NIL)
		{
			Datum		src = heap_getattr(tup, source_att, desc, &isnull);

			uses = !isnull && list_member_int(source_ids, DatumGetInt32(src));
		}
		else
			uses = true;

		if (uses && row_running(tup, desc, id_att, state_att, &use->stopping))
		{
			found = true;
			use->pipeline_id = DatumGetInt32(heap_getattr(tup, id_att, desc, &isnull));
			use->pipeline_name = TextDatumGetCString(heap_getattr(tup, name_att, desc, &isnull));
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The extension goes: so do its pipelines' state directories, when the drop
 * commits.  A re-created catalog numbers pipelines from 1 again, and a new
 * pipeline must not meet an old one's snapshots.
 */
static void
remove_all_state(Oid pipeline_relid)
{
	Relation	rel = table_open(pipeline_relid, AccessShareLock);
	AttrNumber	id_att = attnameAttNum(rel, "id", false);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, id_att, RelationGetDescr(rel), &isnull);

		if (!isnull)
			launcher_remove_state_at_commit(DatumGetInt32(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

static void
refuse(Oid classId, Oid objectId, int32 subId, RunningUse *use)
{
	ObjectAddress addr;

	addr.classId = classId;
	addr.objectId = objectId;
	addr.objectSubId = subId;
	if (use->stopping)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("cannot drop %s because the worker of pipeline \"%s\" is still stopping",
						getObjectDescription(&addr, false), use->pipeline_name),
				 errhint("Try again in a moment; streamflink.pipelines shows its status.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_IN_USE),
			 errmsg("cannot drop %s because pipeline \"%s\" is running",
					getObjectDescription(&addr, false), use->pipeline_name),
			 errhint("Stop the pipeline first with streamflink.stop('%s').",
					 use->pipeline_name)));
}

static void
guard_drop(Oid classId, Oid objectId, int32 subId)
{
	Oid			nsp = get_namespace_oid("streamflink", true);
	Oid			pipeline_relid;
	RunningUse	use;

	if (!OidIsValid(nsp) || !OidIsValid(get_extension_oid("streamflink", true)))
		return;
	pipeline_relid = get_relname_relid("pipeline", nsp);
	if (!OidIsValid(pipeline_relid))
		return;

	if (classId == RelationRelationId)
	{
		char		relkind;

		if (objectId == pipeline_relid)
		{
			/* Only the extension's drop reaches its catalog table. */
			if (subId == 0 && find_running(pipeline_relid, InvalidOid, NIL, &use))
			{
				if (use.stopping)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_IN_USE),
							 errmsg("cannot drop extension streamflink while the worker of pipeline \"%s\" is still stopping",
									use.pipeline_name),
							 errhint("Try again in a moment; streamflink.pipelines shows its status.")));
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("cannot drop extension streamflink while pipeline \"%s\" is running",
								use.pipeline_name),
						 errdetail("Its worker would go on writing into a catalog that no longer exists."),
						 errhint("Stop the pipelines first: SELECT streamflink.stop(name) FROM streamflink.pipelines WHERE desired_state = 'running';")));
			}
			if (subId == 0)
				remove_all_state(pipeline_relid);
			return;
		}
		relkind = get_rel_relkind(objectId);
		if (relkind == RELKIND_COMPOSITE_TYPE)
		{
			/* An attribute of a composite type, maybe a source's row type. */
			Oid			typoid = get_rel_type_id(objectId);
			List	   *ids = OidIsValid(typoid) ? sources_of_type(nsp, typoid) : NIL;

			if (ids != NIL && find_running(pipeline_relid, InvalidOid, ids, &use))
				refuse(classId, objectId, subId, &use);
			return;
		}
		if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
			return;
		if (find_running(pipeline_relid, objectId, NIL, &use))
			refuse(classId, objectId, subId, &use);
	}
	else if (classId == TypeRelationId)
	{
		List	   *ids = sources_of_type(nsp, objectId);

		if (ids != NIL && find_running(pipeline_relid, InvalidOid, ids, &use))
			refuse(classId, objectId, subId, &use);
	}
}

static void
sf_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access != OAT_DROP)
		return;
	if (classId != RelationRelationId && classId != TypeRelationId)
		return;

	/*
	 * Internal deletions (a session's temporary tables at its exit) are not
	 * a user's choice to refuse.
	 */
	if (arg && (((ObjectAccessDrop *) arg)->dropflags & PERFORM_DELETION_INTERNAL))
		return;
	if (!IsTransactionState())
		return;
	guard_drop(classId, objectId, subId);
}

void
ddl_guard_install(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = sf_object_access;
}
