/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *	  The checkpoint coordinator: epochs, two-phase commit over a list of
 *	  participants, and recovery of a pipeline.
 *
 * In the spirit of Flink's CheckpointCoordinator / PendingCheckpoint and
 * TwoPhaseCommitSinkFunction.  A worker always has one open epoch, into
 * which its participants write; checkpoint n ends the epoch:
 *	 1. prepare: every participant, in the order of registration, makes its
 *		part of n durable but undecided: the operator state is flushed and
 *		snapshotted (RocksDB checkpoint chk-n), the sink writes what it
 *		batched, and the Postgres epoch transaction (registered last: the
 *		others write into it) records the Kafka positions of n and is
 *		PREPAREd as 'streamflink:<db>:<pipeline>:<n>:<worker>';
 *	 2. the decision: the coordinator commits a row for n in
 *		streamflink.checkpoint (with the pipeline watermark and the state
 *		format of the snapshot), and prunes older history;
 *	 3. commit: every participant, in reverse order: COMMIT PREPARED of the
 *		epoch transaction first (its rows and positions become visible
 *		right after the decision), then old snapshots are pruned...; then a
 *		new epoch begins (begin_epoch of each, in order).
 * If a prepare fails, the participants prepared so far (and the failing
 * one) are aborted, in reverse order, and the error goes on: the worker
 * restarts and recovers.  On start, recover runs for every participant in
 * reverse order of registration, given the last completed checkpoint: the
 * Postgres epoch transaction first (its in-doubt prepared transactions hold
 * locks: each is committed if its checkpoint row exists and rolled back
 * otherwise), then the sink, then the operator state (restored from the
 * last completed snapshot, refused if another release wrote it).  A crash
 * at any point thus loses nothing and doubles nothing.
 *
 * Adding a participant (a Kafka transaction, another worker) is filling a
 * CheckpointParticipant and registering it before checkpoint_recover.
 *
 * The worker decides only when: checkpoint_take at its interval and at a
 * stop.  Memory: the coordinator and its participants live in the context
 * current at creation (the worker's TopMemoryContext).  Everything runs in
 * the worker's process; every callback is called between transaction
 * commands (prepare while the epoch's transaction block is open, commit
 * and begin_epoch after it was prepared), SPI not connected.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_CHECKPOINT_H
#define STREAMFLINK_CHECKPOINT_H

#include "catalog.h"
#include "operator.h"
#include "sink.h"
#include "keyspace.h"
#include "state.h"

/*
 * The format of the operator state a snapshot holds (STATE_FORMAT_VERSION,
 * keyspace.h: the key layout is what it versions) is recorded in its
 * checkpoint row (streamflink.checkpoint.state_format); a snapshot of
 * another format is refused at recovery.
 */

/* The catalog (extension version) this library needs. */
#define STREAMFLINK_CATALOG_VERSION "0.2"

typedef struct PartitionPosition
{
	int64		next_offset;	/* -1: none recorded, read from the beginning */
	TimestampTz max_event_time; /* DT_NOBEGIN: none yet */
} PartitionPosition;

typedef struct EpochStats
{
	TimestampTz started;
	int64		events;
	int64		rows_emitted;
	uint64		state_bytes;
	uint64		new_state_bytes;
	/*
	 * The synchronous part, as Flink splits a checkpoint's time: the
	 * operator's cache written back and the RocksDB flush and snapshot,
	 * set by the state participant (0 / DT_NOBEGIN: no state participant).
	 * The asynchronous part runs from sync_end to the decision (sink rows,
	 * positions, PREPARE TRANSACTION, a parallel pipeline's wait for its
	 * other tasks).
	 */
	int64		sync_us;
	TimestampTz sync_end;
} EpochStats;

/* A checkpoint being taken (Flink's PendingCheckpoint). */
typedef struct Checkpoint
{
	int64		id;				/* set by the coordinator */
	TimestampTz watermark;		/* the pipeline's; DT_NOBEGIN: none yet */
	int			nparts;
	PartitionPosition *positions;	/* next message of each partition */
	EpochStats	stats;			/* events by the worker, the rest by the
								 * participants */
} Checkpoint;

/* The last completed checkpoint, as recovery finds it. */
typedef struct CompletedCheckpoint
{
	int64		id;				/* 0: none */
	TimestampTz watermark;		/* DT_NOBEGIN: none */
	int			state_format;	/* of its snapshot */
} CompletedCheckpoint;

typedef struct CheckpointParticipant
{
	const char *name;			/* for messages */
	void	   *arg;
	/* Optional: open epoch 'epoch' (the checkpoint that will end it). */
	void		(*begin_epoch) (void *arg, int64 epoch);
	/* Phase 1: make the epoch's part of chk durable, not yet decided. */
	void		(*prepare) (void *arg, Checkpoint *chk);
	/* Phase 2, after the decision: make it effective.  Errors restart. */
	void		(*commit) (void *arg, Checkpoint *chk);
	/*
	 * Optional: a prepare failed (this one's or a later one's).  Runs in
	 * error cleanup: release only local resources, never raise an error;
	 * what was prepared is settled by recover at the next start.
	 */
	void		(*abort) (void *arg, Checkpoint *chk);
	/* Optional: at start, before the first epoch. */
	void		(*recover) (void *arg, const CompletedCheckpoint *last);
} CheckpointParticipant;

typedef struct CheckpointCoordinator CheckpointCoordinator;

/*
 * The tasks of a parallel pipeline each run a coordinator over their own
 * participants (their state, their part of the sink, their epoch
 * transaction 'streamflink:<db>:<pipeline>:<n>:<task>'); the decision is
 * the pipeline's (see parallel_task.c):
 *	 prepared: after this task prepared chk; returns true if this task
 *			   writes the decision (once every task prepared), false once
 *			   another task decided; ERROR if the checkpoint cannot
 *			   complete (a task gone, a timeout), which leaves the prepared
 *			   transaction to recovery (rolled back: no decision row);
 *	 record:   inside the decision's transaction, SPI connected: the
 *			   pipeline's figures;
 *	 decided:  after the decision committed: tell the other tasks.
 */
typedef struct CheckpointGroup
{
	void	   *arg;
	bool		(*prepared) (void *arg, Checkpoint *chk);
	void		(*record) (void *arg, Checkpoint *chk);
	void		(*decided) (void *arg, Checkpoint *chk);
} CheckpointGroup;

extern CheckpointCoordinator *checkpoint_coordinator_create(Oid dboid, PipelineDef *def);
extern void checkpoint_register(CheckpointCoordinator *c, const CheckpointParticipant *p);
extern void checkpoint_set_group(CheckpointCoordinator *c, const CheckpointGroup *g);

/*
 * At start, outside any transaction: read the last completed checkpoint and
 * let every participant recover from it.  Returns its id (0 if none).
 */
extern int64 checkpoint_recover(CheckpointCoordinator *c);

/* The last completed checkpoint (after checkpoint_recover). */
extern const CompletedCheckpoint *checkpoint_last_completed(CheckpointCoordinator *c);

/*
 * The positions of the last completed checkpoint for partitions
 * 0..nparts-1 (-1 / DT_NOBEGIN where none).  Inside a transaction.
 */
extern void checkpoint_positions(CheckpointCoordinator *c, int nparts,
								 PartitionPosition *pos);

/* Open the next epoch (after recovery, and by checkpoint_take). */
extern void checkpoint_begin_epoch(CheckpointCoordinator *c);

/*
 * Take the next checkpoint over every participant; the caller fills
 * watermark, nparts, positions and stats.events.  Outside any transaction
 * command, in the epoch; begins the next epoch.  Returns its id.
 */
extern int64 checkpoint_take(CheckpointCoordinator *c, Checkpoint *chk);

/* --- participants provided here ------------------------------------------ */

/*
 * The operator state: prepare flushes the operator (as the pipeline's
 * owner) and snapshots the store into chk-n (its time is the checkpoint's
 * sync part, EpochStats); commit prunes snapshots beyond
 * streamflink.checkpoints_retained; recover checks the snapshot's format and
 * restores the live database from it.  'store' and 'op' may be set after
 * registration (they exist only once the state is restored).
 */
typedef struct StateParticipant
{
	const char *dir;			/* the pipeline's state directory */
	StateStore *store;
	Operator   *op;
} StateParticipant;
extern CheckpointParticipant checkpoint_state_participant(StateParticipant *sp);

/* A sink (sink.h): its methods, and its row count for the statistics. */
extern CheckpointParticipant checkpoint_sink_participant(Sink *sink);

/*
 * The Postgres epoch transaction: a transaction block open for the whole
 * epoch; prepare records the positions and PREPAREs it, commit is COMMIT
 * PREPARED, recover resolves in-doubt prepared transactions.  Register it
 * last: everything that writes into it prepares before it.
 */
extern CheckpointParticipant checkpoint_epoch_participant(Oid dboid, PipelineDef *def);

/*
 * The same for task 'task' of a parallel pipeline: its gid ends in the
 * task, and its recovery resolves only that task's in-doubt transactions.
 */
extern CheckpointParticipant checkpoint_task_epoch_participant(Oid dboid, PipelineDef *def,
															   int task);

/*
 * Resolve the in-doubt prepared transactions of every task of a pipeline
 * (committed if their checkpoint's decision row exists, else rolled back),
 * as each task's recovery does for its own.  Only while no task of the
 * pipeline runs: before a rescale, whose new tasks would not resolve those
 * of tasks that go.  Outside any transaction; returns how many.
 */
extern int	checkpoint_resolve_all_in_doubt(Oid dboid, int32 pipeline_id);

/* --- state directories, settings, catalog -------------------------------- */

/* Directory of the live state database and of snapshot n. */
extern char *checkpoint_db_dir(const char *pipeline_dir);
extern char *checkpoint_snapshot_dir(const char *pipeline_dir, int64 id);

/*
 * Keep the 'retained' newest snapshots up to checkpoint 'last' (the last
 * completed one, always kept) and remove older ones.  Snapshots above
 * 'last' (a checkpoint being taken) are left alone; savepoints live
 * elsewhere (savepoint.h) and are never touched.
 */
extern void checkpoint_prune(const char *pipeline_dir, int64 last, int retained);

/*
 * Refuse to run against a catalog other than STREAMFLINK_CATALOG_VERSION
 * (the extension not updated after the library).  Inside a transaction.
 */
extern void checkpoint_check_catalog_version(void);

/*
 * Crash tests: SIGKILL the worker here if DataDir/streamflink/failpoint
 * names 'name' (the file is removed first).  The coordinator has
 * "after_prepare" and "after_decision" (written "<point> rows": only at a
 * checkpoint whose sink wrote rows); participants may add their own.
 */
extern void checkpoint_failpoint(const char *name);

/* streamflink.checkpoint_history: completed checkpoints kept in the catalog. */
extern int	checkpoint_history;

/*
 * streamflink.checkpoints_retained: completed state snapshots kept on disk
 * per pipeline (per task) (Flink's state.checkpoints.num-retained).
 */
extern int	checkpoints_retained;
extern void checkpoint_define_settings(void);

#endif							/* STREAMFLINK_CHECKPOINT_H */
