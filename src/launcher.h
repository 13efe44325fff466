/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  Starting and stopping pipeline workers: after a server start, the
 *	  pipelines that were running; at commit, those a transaction started
 *	  or stopped.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_LAUNCHER_H
#define STREAMFLINK_LAUNCHER_H

/* Register the static launcher worker (from _PG_init, when preloaded). */
extern void launcher_register(void);

/*
 * Register a pipeline's worker (starts and the launcher).  The worker first
 * waits for transaction 'starter' to end, if valid.
 */
extern bool launcher_register_worker(Oid dboid, int32 pipeline_id, TransactionId starter);

/*
 * Worker lifecycle, for the catalog's triggers (tenancy.c) and the drop
 * guard: the actions take effect when the transaction commits.
 */
extern void launcher_start_at_commit(int32 pipeline_id);
extern void launcher_stop_at_commit(int32 pipeline_id);
extern void launcher_remove_state_at_commit(int32 pipeline_id);
extern void launcher_wait_stopped(int32 pipeline_id, int timeout_ms);

#endif							/* STREAMFLINK_LAUNCHER_H */
