/*-------------------------------------------------------------------------
 *
 * start_position.h
 *	  Where a pipeline starts reading each partition, before and beside its
 *	  checkpoints.
 *
 * A partition with a checkpointed position goes on from it.  Any other
 * partition starts at an offset resolved once from the start position
 * (the pipeline's, else its source's: earliest, latest, a timestamp or
 * offsets per partition; kafka_source.h resolves it with the broker) and
 * recorded in streamflink.start_offset before the worker reads it, so that
 * a restart before the first checkpoint starts at the same offsets (a
 * 'latest' resolved again would skip what was produced in between).  After
 * a checkpoint, a partition it does not cover was added to the topic: it
 * starts at its beginning, and so does one found while running.
 *
 * Memory: results in the caller's context.  Threads: the worker's only
 * (librdkafka calls are synchronous requests with a timeout).  The catalog
 * rows are written as the worker (streamflink._worker_only()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_START_POSITION_H
#define STREAMFLINK_START_POSITION_H

#include "catalog.h"
#include "checkpoint.h"
#include "kafka_source.h"

/*
 * Every partition of partitions[0..nparts-1] whose pos[i].next_offset < 0
 * gets its start offset: recorded, else resolved and recorded.
 * 'checkpoint_id' is the last completed checkpoint (0: none).  Runs and
 * commits its own transaction: call it outside one, before consuming.
 */
extern void start_positions_apply(PipelineDef *def, KafkaSource *src, int64 checkpoint_id,
								  int nparts, const int32 *partitions,
								  PartitionPosition *pos);

/*
 * Partitions found while the pipeline runs: each starts at its beginning
 * (its first offset, resolved now, in offsets[]); recorded in the current
 * transaction (the epoch's: the record commits with the checkpoint that
 * covers the partition) and logged.
 */
extern void start_positions_added(PipelineDef *def, KafkaSource *src, int n,
								  const int32 *partitions, int64 *offsets);

#endif							/* STREAMFLINK_START_POSITION_H */
