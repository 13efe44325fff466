/*-------------------------------------------------------------------------
 *
 * local_agg.h
 *	  Two-stage (local-global) aggregation of a parallel window pipeline:
 *	  the source side of the exchange folds events into partial aggregate
 *	  states per (key, window) and sends the partials, serialized, to the
 *	  key's owner, which merges them with the aggregates' combine
 *	  functions (Flink's mini-batch local-global aggregation).
 *
 * When: pipeline column local_aggregation (NULL: automatic), for tumbling
 * and hopping windows of a pipeline of parallelism > 1 whose aggregates
 * all have combine functions (and serialize / deserialize functions for
 * internal states; agg_analyse checks those).  Session windows and
 * pipelines written as a query are never pre-aggregated (session windows
 * merge by the events' times, which a partial no longer has).
 *
 * Exactly-once and lateness: a partial is flushed (sent) before the
 * source side forwards a barrier (so it belongs to the checkpoint whose
 * positions cover its events), before it forwards a watermark that
 * reaches the end of a window it holds, before it says it is idle, when
 * it absorbed streamflink.local_aggregation_batch events or its memory
 * passes work_mem, and when its source has no more input for now (so a
 * partial waits only while more events keep coming).  The worker absorbs
 * an event only if the owner cannot have fired any of its windows before
 * the partial arrives (see local_agg_absorb): such an event would be
 * merged exactly as the raw event would be processed, without re-firing
 * or lateness; any other event is sent raw, and the owner decides on it
 * as without local aggregation (late events keep their side output
 * rows).
 *
 * Memory: a LocalAgg lives in the context current at local_agg_create
 * (the worker's TopMemoryContext); its partials (hash table, keys, key
 * tuples, transition states) live in a child context that is reset as a
 * whole at every flush.  One process, no threads; the source side owns it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_LOCAL_AGG_H
#define STREAMFLINK_LOCAL_AGG_H

#include "executor/tuptable.h"

#include "catalog.h"
#include "exchange.h"

typedef struct LocalAgg LocalAgg;

/* streamflink.local_aggregation_batch */
extern void local_agg_define_settings(void);

/*
 * Does the pipeline pre-aggregate (its option, or automatic)?  Only
 * parallel window pipelines of tumbling or hopping windows do.
 */
extern bool local_agg_enabled(PipelineDef *def);

extern LocalAgg *local_agg_create(PipelineDef *def);

/*
 * Fold an event (its key 'gk', of destination task 'dest') into the
 * partials of its windows, if the end of every one of them is after
 * 'bound' (the highest watermark the owner can have before the partial
 * arrives; DT_NOEND: never).  False: nothing absorbed, send it raw.
 */
extern bool local_agg_absorb(LocalAgg *la, TupleTableSlot *event, TimestampTz t,
							 const char *gk, int gklen, int dest,
							 int32 partition, int64 offset, TimestampTz bound);

/* Must the partials go out before a watermark 'wm' (or idleness) does? */
extern bool local_agg_reached(LocalAgg *la, TimestampTz wm);

/* Does it hold partials? */
extern bool local_agg_holds(LocalAgg *la);

/* Batch or memory bound reached: flush now. */
extern bool local_agg_full(LocalAgg *la);

/*
 * Send every partial (EXCHANGE_PARTIAL records) and forget them.  Runs the
 * serialize functions: as the pipeline's owner, in a transaction.
 */
extern void local_agg_flush(LocalAgg *la, Exchange *ex);

/* Events absorbed and partials sent since the start (for the report). */
extern int64 local_agg_absorbed(LocalAgg *la);

#endif							/* STREAMFLINK_LOCAL_AGG_H */
