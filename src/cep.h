/*-------------------------------------------------------------------------
 *
 * cep.h
 *	  Complex event processing: the keyed NFA operator of pattern pipelines.
 *
 * Semantics follow Flink CEP's CepOperator and NFA:
 *	- events are buffered per key until the watermark passes them, then
 *	  processed in event-time order (ties in arrival order); an event at or
 *	  behind the watermark is late;
 *	- every event may start a match; partial matches advance by the
 *	  contiguity, quantifier and greediness rules of pattern.h;
 *	- a partial match whose first event is 'within' or more older than the
 *	  event being processed, or than the watermark, times out (and goes to
 *	  the timed-out table, if the pipeline has one); deadlines pass in time
 *	  order, each followed by the skip strategy, so results do not depend
 *	  on the watermark's steps (unlike Flink's advanceTime);
 *	- a key holds a bounded number of partial matches (max_partial_matches,
 *	  max_partial_match_events): the newest beyond the bound are discarded
 *	  and counted;
 *	- the matches completed by one event are emitted in the order of their
 *	  first events, pruned by the after-match skip strategy.
 * Each match is one row of the sink table; buffers, partial matches and
 * timers live in the pipeline's RocksDB state (keyed_state.h), so they are
 * part of every checkpoint.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_CEP_H
#define STREAMFLINK_CEP_H

#include "catalog.h"
#include "operator.h"
#include "side_output.h"
#include "sink.h"
#include "state.h"

typedef struct CepOperator CepOperator;

extern CepOperator *cep_create(PipelineDef *def, StateStore *store, Sink *sink,
							   SideOutput *side, TupleDesc event_desc,
							   Poison *poison);

extern const OperatorMethods cep_operator_methods;

/*
 * streamflink.live() for a pattern pipeline: fn for each open partial
 * match in 'store' (a secondary of the worker's, live.c), with its key, the
 * times of its first and last event, and (values[0]) its events so far as
 * jsonb by variable, as a match's "events".  Called as the pipeline's
 * owner (the events' output functions are its types').  Allocates in a
 * context of its own, deleted before it returns.
 */
typedef void (*cep_visit_fn) (void *arg, Datum *keys, bool *keynulls,
							  TimestampTz start, TimestampTz end,
							  Datum *values, bool *nulls);

extern void cep_scan_open(PipelineDef *def, StateStore *store, cep_visit_fn fn, void *arg);

#endif							/* STREAMFLINK_CEP_H */
