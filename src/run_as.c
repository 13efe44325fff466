/*-------------------------------------------------------------------------
 *
 * run_as.c
 *	  Running a pipeline's user code as the pipeline's owner.
 *
 * See run_as.h.  The state here is two role OIDs per process, set once by
 * the worker; nothing is allocated.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"

#include "run_as.h"

static Oid	owner_role = InvalidOid;
static Oid	extension_role = InvalidOid;
static int	extension_sec_context = 0;

void
run_as_worker_init(void)
{
	GetUserIdAndSecContext(&extension_role, &extension_sec_context);

	/*
	 * Nothing the worker parses itself (sink statements, catalog queries)
	 * can then resolve to an object a tenant created; user code sees the
	 * same path.
	 */
	SetConfigOption("search_path", RUN_AS_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
}

void
run_as_set_owner(Oid owner)
{
	owner_role = owner;
}

void
run_as_role(Oid role, RunAs *save)
{
	Assert(OidIsValid(role));
	Assert(IsTransactionState());
	GetUserIdAndSecContext(&save->save_userid, &save->save_sec_context);
	SetUserIdAndSecContext(role, save->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	save->save_nestlevel = NewGUCNestLevel();
}

void
run_as_owner(RunAs *save)
{
	if (!OidIsValid(owner_role))
		elog(ERROR, "streamflink: no pipeline owner to run as");
	run_as_role(owner_role, save);
}

/* The role that owns the extension (and so its catalog tables). */
static Oid
extension_owner(void)
{
	Oid			extoid = get_extension_oid("streamflink", false);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "extension streamflink has no catalog row");
	owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * In a worker: back to its own identity.  In a backend: the extension's
 * owner, as a SECURITY DEFINER function of the extension would run; the
 * caller checks what the current role may do first.  Either way with the
 * fixed search_path: user code of an enclosing owner block may have changed
 * it for the session, and the extension's statements may be re-planned.
 */
void
run_as_extension(RunAs *save)
{
	Assert(IsTransactionState());
	GetUserIdAndSecContext(&save->save_userid, &save->save_sec_context);
	if (OidIsValid(extension_role))
		SetUserIdAndSecContext(extension_role, extension_sec_context);
	else
		SetUserIdAndSecContext(extension_owner(),
							   save->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	save->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", RUN_AS_SEARCH_PATH, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
run_as_restore(RunAs *save)
{
	if (save->save_nestlevel > 0)
		AtEOXact_GUC(false, save->save_nestlevel);
	SetUserIdAndSecContext(save->save_userid, save->save_sec_context);
}
