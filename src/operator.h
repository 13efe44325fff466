/*-------------------------------------------------------------------------
 *
 * operator.h
 *	  The keyed operator a pipeline's worker drives: windows or CEP.
 *
 * The worker decodes events, tracks the watermark and checkpoints; the
 * operator keeps its keyed state in the pipeline's StateStore (through
 * keyed_state.h, key group first in every key) and writes its results
 * through the pipeline's Sink, inside the worker's epoch transaction.  So
 * one mechanism for state, checkpoints and sinks serves every operator,
 * and the worker does not know which one it runs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_OPERATOR_H
#define STREAMFLINK_OPERATOR_H

#include <signal.h>

#include "executor/tuptable.h"

#include "catalog.h"
#include "poison.h"
#include "side_output.h"
#include "sink.h"
#include "state.h"

typedef struct OperatorMethods
{
	/*
	 * Take one event, of the source message at 'pos'.  Returns false,
	 * changing nothing, if the event is late (the caller then writes it to
	 * the side output's late events).  The caller marks the message as being
	 * processed (poison.h) during the call; an operator that defers the
	 * event keeps 'pos' with it and marks it again when it processes it.
	 * 'watermark' is the one of the last advance (or, before the first,
	 * the one the snapshot restored was taken at): what it passed has
	 * fired.
	 */
	bool		(*process) (void *op, TupleTableSlot *event,
							TimestampTz event_time, TimestampTz watermark,
							SfMessagePos pos);
	/* The watermark moved to 'watermark': fire what it passed. */
	void		(*advance) (void *op, TimestampTz watermark);
	/* Between events: bound memory (flush the state cache when full). */
	void		(*maybe_flush) (void *op);
	/* Write all state to the store (before a snapshot). */
	void		(*flush) (void *op);
	/* Open windows / keys with partial matches, for the status view. */
	int64		(*open_count) (void *op);

	/*
	 * Optional (NULL: the watermark rule says why): after process returned
	 * false, why the event is late, if for another reason than its time
	 * being behind the watermark (e.g. its window lies outside the range of
	 * timestamps).  NULL if none.
	 */
	const char *(*late_reason) (void *op);

	/*
	 * Optional (NULL: none): partial matches a CEP operator discarded over
	 * its bound since the pipeline began, for the status view.
	 */
	int64		(*dropped_count) (void *op);

	/*
	 * Optional (NULL: none): the events the next n calls of process will
	 * take, in that order, with their event times.  A hint, changing
	 * nothing those calls would not: the operator may read the state they
	 * will look up in one batch (kstate_prefetch), or bring its cache lines
	 * into the CPU's caches (kstate_prefetch_cached), so that the misses of
	 * n events overlap instead of following one another.  It must not run
	 * the user's code: a query's WHERE and key expressions run once an
	 * event, in process.
	 */
	void		(*prefetch) (void *op, int n, TupleTableSlot *const *events,
							 const TimestampTz *times);
} OperatorMethods;

/* An operator, as operator_create (operator_factory.h) builds it. */
typedef struct Operator
{
	const OperatorMethods *methods;
	void	   *impl;
} Operator;

/*
 * Set by a pipeline worker's SIGTERM handler, which does not raise a
 * Postgres interrupt (the worker's loop decides between a requested stop
 * and anything else).  An operator step that can run long checks it (see
 * cep.c).
 */
extern volatile sig_atomic_t sf_termination_requested;

static inline bool
operator_process(Operator *op, TupleTableSlot *event, TimestampTz t, TimestampTz wm,
				 SfMessagePos pos)
{
	return op->methods->process(op->impl, event, t, wm, pos);
}

static inline void
operator_advance(Operator *op, TimestampTz wm)
{
	op->methods->advance(op->impl, wm);
}

static inline void
operator_maybe_flush(Operator *op)
{
	op->methods->maybe_flush(op->impl);
}

static inline void
operator_flush(Operator *op)
{
	op->methods->flush(op->impl);
}

static inline int64
operator_open_count(Operator *op)
{
	return op->methods->open_count(op->impl);
}

/* A late event's own reason, or NULL (see OperatorMethods). */
static inline char *
operator_late_reason(Operator *op)
{
	const char *reason = NULL;

	if (op->methods->late_reason)
		reason = op->methods->late_reason(op->impl);
	return reason ? pstrdup(reason) : NULL;
}

static inline void
operator_prefetch(Operator *op, int n, TupleTableSlot *const *events,
				  const TimestampTz *times)
{
	if (op->methods->prefetch && n > 0)
		op->methods->prefetch(op->impl, n, events, times);
}

static inline int64
operator_dropped_count(Operator *op)
{
	return op->methods->dropped_count ? op->methods->dropped_count(op->impl) : 0;
}

#endif							/* STREAMFLINK_OPERATOR_H */
