/*-------------------------------------------------------------------------
 *
 * aggregate.h
 *	  Running Postgres aggregates outside the executor, over event rows.
 *
 * A pipeline's aggregate list ("count(*) AS n, avg(x) AS mean") is parsed
 * and analysed by Postgres itself against the source's row type; each item
 * must be a plain aggregate call.  The aggregates then run through their
 * own transition, combine, final, serialize and deserialize functions
 * (pg_aggregate), so results have exactly SQL's types and NULL rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_AGGREGATE_H
#define STREAMFLINK_AGGREGATE_H

#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"

typedef struct AggSpec AggSpec;

/* Transition states of all aggregates of one window (one chunk). */
typedef struct AggStates AggStates;

/*
 * Parse, analyse and check an aggregate list against a row type, as the
 * current role and in its search_path: at pipeline creation only.
 * ereports a clear error for anything that is not a plain aggregate call or
 * whose state cannot be serialized.  The result (a SELECT over the row
 * type) is what the catalog keeps, as nodeToString() text.
 */
extern Query *agg_analyse(Oid row_type, const char *aggregates);

/*
 * The runtime of an analysed list: from agg_analyse's Query, or from its
 * stored text (agg_spec_load).  No name is resolved again.  'state_cxt'
 * holds transition states: states are allocated there, and it is reset by
 * the caller as a whole.
 */
extern AggSpec *agg_spec_build(Query *query, MemoryContext state_cxt);
extern AggSpec *agg_spec_load(const char *tree, MemoryContext state_cxt);

/* agg_spec_build(agg_analyse(...)): checks at creation. */
extern AggSpec *agg_spec_create(Oid row_type, const char *aggregates,
								MemoryContext state_cxt);

extern int	agg_count(AggSpec *spec);
extern const char *agg_name(AggSpec *spec, int i);
extern Oid	agg_result_type(AggSpec *spec, int i);

/* New states (initial values), in the state context. */
extern AggStates *agg_states_new(AggSpec *spec);

/*
 * Free states and the values they own (not what an aggregate's internal
 * state holds: that stays in the state context until its reset).
 */
extern void agg_states_free(AggSpec *spec, AggStates *st);

/*
 * Add one event to the states.  The event row is in 'slot' (a slot of the
 * source row type); argument expressions are evaluated on it.
 */
extern void agg_advance(AggSpec *spec, AggStates *states, TupleTableSlot *slot);

/* Merge 'from' into 'into' (session windows); needs combine functions. */
extern void agg_combine(AggSpec *spec, AggStates *into, AggStates *from);
extern bool agg_can_combine(AggSpec *spec);

/*
 * New states combining n states (the slices of a hopping window), with
 * everything they allocate (internal states too) in 'cxt', a short-lived
 * context the caller resets, instead of the state context: the combined
 * states are read once (agg_final) and dropped, the n states are unchanged.
 */
extern AggStates *agg_combine_in(AggSpec *spec, MemoryContext cxt, int n,
								 AggStates *const *from);
extern bool agg_has_combine(AggSpec *spec, int i);
extern Oid	agg_function(AggSpec *spec, int i);

/* Final values; by-reference results are allocated in CurrentMemoryContext. */
extern void agg_final(AggSpec *spec, AggStates *states, Datum *values, bool *isnull);

/* Binary form for RocksDB, and back (into the state context). */
extern void agg_serialize(AggSpec *spec, AggStates *states, StringInfo buf);
extern AggStates *agg_deserialize(AggSpec *spec, const char *data, size_t len,
								  size_t *consumed);

#endif							/* STREAMFLINK_AGGREGATE_H */
