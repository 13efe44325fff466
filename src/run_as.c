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

#include "access/xact.h"
#include "miscadmin.h"
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

/*
 * User code of the enclosing owner block may have changed search_path for
 * the session; the extension's statements may be re-planned here, so they
 * get the worker's fixed path back for the block.
 */
void
run_as_extension(RunAs *save)
{
	Assert(IsTransactionState());
	GetUserIdAndSecContext(&save->save_userid, &save->save_sec_context);
	if (OidIsValid(extension_role))
		SetUserIdAndSecContext(extension_role, extension_sec_context);
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
