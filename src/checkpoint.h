/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *	  Epoch transactions, two-phase commit and recovery of a pipeline.
 *
 * A worker always has one open "epoch" transaction into which sinks write.
 * Checkpoint n ends the epoch:
 *	 1. operator state is flushed and snapshotted (RocksDB checkpoint chk-n);
 *	 2. the Kafka positions of n are inserted into the epoch transaction;
 *	 3. the epoch is PREPAREd as 'streamflink:<db>:<pipeline>:<n>:<worker>';
 *	 4. a row for n is committed in streamflink.checkpoint: the decision;
 *	 5. COMMIT PREPARED; a new epoch begins.
 * On start, every prepared transaction of the pipeline is committed if its
 * checkpoint row exists and rolled back otherwise; then state is restored
 * from the last completed snapshot and Kafka is sought to its positions.
 * A crash at any point thus loses nothing and doubles nothing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_CHECKPOINT_H
#define STREAMFLINK_CHECKPOINT_H

#include "catalog.h"

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
} EpochStats;

/*
 * Commit or roll back the pipeline's in-doubt prepared transactions.  Call
 * outside any transaction.  Returns how many were resolved.
 */
extern int	checkpoint_resolve_in_doubt(Oid dboid, int32 pipeline_id);

/*
 * The last completed checkpoint (0 if none) and its positions for
 * partitions 0..nparts-1.  Call inside a transaction.
 */
extern int64 checkpoint_last(int32 pipeline_id, int nparts, PartitionPosition *pos);

/* Directory of the live state database and of snapshot n. */
extern char *checkpoint_db_dir(const char *pipeline_dir);
extern char *checkpoint_snapshot_dir(const char *pipeline_dir, int64 id);

/* Replace the live database by snapshot 'id' (or an empty one if 0). */
extern void checkpoint_restore_state(const char *pipeline_dir, int64 id);

/* Begin the next epoch transaction. */
extern void checkpoint_begin_epoch(void);

/*
 * Complete checkpoint 'id': steps 2 to 5 above (state was snapshotted by
 * the caller into checkpoint_snapshot_dir).  The epoch transaction must be
 * open and SPI not connected.  Begins the next epoch.
 */
extern void checkpoint_complete(Oid dboid, PipelineDef *def, int64 id,
								int nparts, PartitionPosition *pos,
								EpochStats *stats);

/* streamflink.checkpoint_history: completed checkpoints kept in the catalog. */
extern int	checkpoint_history;
extern void checkpoint_define_settings(void);

/* Remove snapshots older than 'keep_from'. */
extern void checkpoint_prune(const char *pipeline_dir, int64 keep_from);

#endif							/* STREAMFLINK_CHECKPOINT_H */
