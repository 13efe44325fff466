/*-------------------------------------------------------------------------
 *
 * run_as.h
 *	  Running a pipeline's user code as the pipeline's owner.
 *
 * A worker connects as the bootstrap superuser: it must write the
 * extension's own tables (checkpoints, offsets, dead letters, late events)
 * and drive two-phase commit, and Postgres 15 cannot connect a background
 * worker as a NOLOGIN role.  Everything a tenant wrote -- type input
 * functions and domain checks met while decoding, aggregate and condition
 * expressions, triggers, defaults and constraints of its sink tables --
 * runs as the owner instead, the way REFRESH MATERIALIZED VIEW and
 * autovacuum's index functions do: SetUserIdAndSecContext with
 * SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION, and a GUC
 * nest level, so a setting changed by user code (search_path!) is undone
 * when the block ends.
 *
 * Blocks nest: run_as_owner / run_as_extension save the current identity in
 * the caller's RunAs, run_as_restore puts it back.  They must be used inside
 * a transaction: an ERROR in a block is cleaned up by the transaction's
 * abort, which restores the identity the transaction started with (the
 * worker's) and every GUC.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_RUN_AS_H
#define STREAMFLINK_RUN_AS_H

/* The worker's search_path, fixed at its start. */
#define RUN_AS_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct RunAs
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel; /* 0: no GUC level to pop */
} RunAs;

/*
 * In a worker, right after connecting, before any query: the identity the
 * worker has now is what run_as_extension returns to, and its search_path
 * is fixed to RUN_AS_SEARCH_PATH.
 */
extern void run_as_worker_init(void);

/* In a worker, once its pipeline is known: the role user code runs as. */
extern void run_as_set_owner(Oid owner);

/* Run as the pipeline's owner (as given to run_as_init). */
extern void run_as_owner(RunAs *save);

/* Run as 'role' (a backend running a pipeline's code, e.g. live()). */
extern void run_as_role(Oid role, RunAs *save);

/*
 * The extension's own tables: in a worker, back to its own identity (from
 * inside an owner block); in a backend, the extension's owner, as the
 * extension's SECURITY DEFINER functions would (the caller checks first
 * what the current role may do).
 */
extern void run_as_extension(RunAs *save);

/* End a block: the identity (and settings) from before it. */
extern void run_as_restore(RunAs *save);

#endif							/* STREAMFLINK_RUN_AS_H */
