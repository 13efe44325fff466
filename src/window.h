/*-------------------------------------------------------------------------
 *
 * window.h
 *	  Event-time windows (tumbling, hopping, session) with watermarks and
 *	  allowed lateness, aggregating keyed events.
 *
 * Semantics follow Flink's WindowOperator with an event-time trigger:
 *  - the watermark W says no more events older than W are expected;
 *  - a window [start, end) fires when W >= end;
 *  - its state is kept until W >= end + allowed_lateness, and an event for
 *    a fired window within that time updates the window and fires it again
 *    (the sink row is replaced);
 *  - an event all of whose windows are past end + allowed_lateness is late.
 *  - windows are aligned to the Unix epoch, as date_bin(size, t,
 *    '1970-01-01') would align them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_WINDOW_H
#define STREAMFLINK_WINDOW_H

#include "catalog.h"
#include "aggregate.h"
#include "keyed_state.h"
#include "operator.h"
#include "sink.h"

typedef struct WindowOperator WindowOperator;

extern WindowOperator *window_create(PipelineDef *def, StateStore *store,
									 Sink *sink, TupleDesc event_desc);

/* The aggregates. */
extern AggSpec *window_aggregates(WindowOperator *op);

/*
 * The slice a pipeline's windows are kept in (window.c): the slide of a
 * hopping window that is a whole number of slides (at most 16) with
 * aggregates that all combine, else 0 (each window is kept whole).  An
 * event then belongs to one slice, and a partial (window_merge_partial) is
 * one slice's.
 */
extern int64 window_slice(PipelineDef *def, AggSpec *aggs);

/*
 * Add one event.  Returns false, changing nothing, if the event is late for
 * all of its windows.
 */
extern bool window_process(WindowOperator *op, TupleTableSlot *event,
						   TimestampTz event_time, TimestampTz watermark);

/*
 * Merge a partial aggregate (serialized states of the window, or slice,
 * starting at 'start', for the key of 'event': two-stage aggregation,
 * local_agg.h)
 * with the aggregates' combine functions.  False if the window is past its
 * allowed lateness.  Tumbling and hopping windows of plain pipelines only.
 */
extern bool window_merge_partial(WindowOperator *op, TupleTableSlot *event,
								 TimestampTz start, const char *states, size_t len,
								 TimestampTz wm);

/* Fire and clean up windows up to the watermark. */
extern void window_advance(WindowOperator *op, TimestampTz watermark);

/* Bound memory between events: flush the state cache when it is full. */
extern void window_maybe_flush(WindowOperator *op);

/* Write all state to the store (before a snapshot). */
extern void window_flush(WindowOperator *op);

/* Open windows, for the status view. */
extern int64 window_open_count(WindowOperator *op);

/* The functions above as an operator (see operator.h). */
extern const OperatorMethods window_operator_methods;

/*
 * Reading open windows from a store (the worker's, or a secondary opened by
 * a backend): calls 'fn' for each not yet fired window with its key
 * values, bounds and final aggregate values.
 */
typedef void (*window_visit_fn) (void *arg, Datum *keys, bool *keynulls,
								 TimestampTz start, TimestampTz end,
								 Datum *values, bool *nulls);
extern void window_scan_open(PipelineDef *def, StateStore *store,
							 window_visit_fn fn, void *arg);

#endif							/* STREAMFLINK_WINDOW_H */
