/*-------------------------------------------------------------------------
 *
 * collect_sink.h
 *	  A sink that keeps the rows an operator writes in memory, in order.
 *
 * The second implementation of the sink interface (sink.h), for
 * streamflink.run_operator (run_operator.c): every write becomes a row
 * naming its output, its operation and its values as jsonb, so a test sees
 * everything the operator did, late firings and retractions included.
 * Nothing is written anywhere; the epoch and checkpoint methods do nothing.
 *
 * Memory: the sink and its rows live in a context of their own, a child of
 * the context current at collect_sink_create; destroying the sink (or
 * deleting the parent) frees them.  Values are converted to jsonb when
 * written, by the columns' output functions: the caller runs the operator
 * as the pipeline's owner (run_as.h), so those run as the owner too.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_COLLECT_SINK_H
#define STREAMFLINK_COLLECT_SINK_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef struct Sink Sink;

/* One write, as collected. */
typedef struct CollectedRow
{
	const char *output;			/* the output's name: "result", "timed_out" */
	const char *op;				/* "insert", "upsert" or "retract" */
	Jsonb	   *key;			/* the key columns; NULL for an output without */
	Jsonb	   *row;			/* the row; for a retraction its key columns */
} CollectedRow;

extern Sink *collect_sink_create(void);

/*
 * The rows written since the previous call, in the order of the writes (a
 * new List in the caller's context; the rows stay the sink's).
 */
extern List *collect_sink_take(Sink *sink);

#endif							/* STREAMFLINK_COLLECT_SINK_H */
