/*-------------------------------------------------------------------------
 *
 * sink.h
 *	  Writing results, dead letters and late events into Postgres tables.
 *
 * Everything here is written inside the worker's open epoch transaction
 * (see checkpoint.h), which is prepared at the next checkpoint and
 * committed once the checkpoint is complete: rows become visible exactly
 * once, together with the Kafka offsets that produced them.
 *
 * Callers must be connected to SPI, with an active snapshot, in a worker
 * (run_as.h): statements on the sink and timed-out tables run as the
 * pipeline's owner, those on dead letters and late events as the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SINK_H
#define STREAMFLINK_SINK_H

#include "catalog.h"
#include "aggregate.h"

typedef struct Sink Sink;
typedef struct SinkInsert SinkInsert;

/*
 * Prepare the statements for dead letters and late events (kept across
 * transactions); operators add their own with sink_prepare_window or
 * sink_prepare_insert.
 */
extern Sink *sink_create(PipelineDef *def);

/* The window operator's statements: upsert and retract of window rows. */
extern void sink_prepare_window(Sink *sink, PipelineDef *def, AggSpec *aggs,
								TupleDesc event_desc);

/*
 * A plain INSERT of one row into table 'relid', naming 'ncols' columns of
 * the given types: the generic way for an operator to emit result rows.
 */
extern SinkInsert *sink_prepare_insert(Sink *sink, Oid relid, int ncols,
									   const char *const *names, const Oid *types);
extern void sink_insert(Sink *sink, SinkInsert *ins, Datum *values, bool *nulls);

/*
 * Insert the result of a window, or replace it if that window was emitted
 * before (a late firing): the sink holds each window once.
 */
extern void sink_emit_window(Sink *sink, Datum *keys, bool *keynulls,
							 TimestampTz start, TimestampTz end,
							 Datum *values, bool *nulls);

/* Remove a window superseded by a merged one (session windows). */
extern void sink_retract_window(Sink *sink, Datum *keys, bool *keynulls,
								TimestampTz start);

extern void sink_dead_letter(Sink *sink, int32 partition, int64 offset,
							 const char *payload, size_t len, const char *error);

/*
 * A result row the sink refused (see sink.c): a dead letter with no
 * message, so no partition nor offset; the payload is the row as JSON.
 */
extern void sink_dead_letter_row(Sink *sink, const char *payload, size_t len,
								 const char *error);

extern void sink_late_event(Sink *sink, int32 partition, int64 offset,
							TimestampTz event_time, TimestampTz watermark,
							const char *payload, size_t len, const char *reason);

/*
 * Write the rows still batched.  The worker calls it before each of its
 * transactions ends (connected to SPI), so every row emitted belongs to the
 * epoch that produced it.
 */
extern void sink_flush(Sink *sink);

/* Result rows sent to the dead-letter table since the last call. */
extern int64 sink_take_refused_count(Sink *sink);

/* Rows written since the last call (for checkpoint statistics). */
extern int64 sink_take_row_count(Sink *sink);

/*
 * Free the statements kept for the sink, dropping rows still batched (the
 * replay harness makes a sink per incarnation; a worker keeps its one).
 * The Sink's own memory belongs to the caller's context.
 */
extern void sink_destroy(Sink *sink);

#endif							/* STREAMFLINK_SINK_H */
