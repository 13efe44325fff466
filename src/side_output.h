/*-------------------------------------------------------------------------
 *
 * side_output.h
 *	  What a pipeline sets aside instead of processing: dead letters and
 *	  late events.
 *
 * Not result rows (those go to the pipeline's Sink, sink.h): a side output
 * is written into the extension's own tables, streamflink.dead_letter and
 * streamflink.late_event, inside the worker's open epoch transaction (see
 * checkpoint.h), so a message set aside becomes visible exactly once,
 * together with the offsets that passed it.  Its rows are counted apart
 * from the sink's (the status view's dead_letters and late_events, not
 * rows_emitted).
 *
 * Callers must be connected to SPI, with an active snapshot.  Statements
 * run as the worker (run_as_extension), never as the pipeline's owner: the
 * tables are the extension's.  The statements are prepared once and kept
 * (SPI_keepplan); the SideOutput itself lives in the caller's context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SIDE_OUTPUT_H
#define STREAMFLINK_SIDE_OUTPUT_H

#include "catalog.h"

typedef struct SideOutput SideOutput;

/* Prepare the statements.  Connected to SPI, inside a transaction. */
extern SideOutput *side_output_create(PipelineDef *def);

/* A message that could not be processed (undecodable, poison...). */
extern void side_output_dead_letter(SideOutput *so, int32 partition, int64 offset,
									const char *payload, size_t len,
									const char *error);

/*
 * A result row a sink refused: a dead letter with no message, so no
 * partition nor offset; the payload is the row as JSON.
 */
extern void side_output_dead_letter_row(SideOutput *so, const char *payload,
										size_t len, const char *error);

/* An event behind the watermark (or outside any window). */
extern void side_output_late_event(SideOutput *so, int32 partition, int64 offset,
								   TimestampTz event_time, TimestampTz watermark,
								   const char *payload, size_t len,
								   const char *reason);

/* Dead letters / late events written since the last call. */
extern int64 side_output_take_dead_letters(SideOutput *so);
extern int64 side_output_take_late_events(SideOutput *so);

/* Free the kept statements. */
extern void side_output_destroy(SideOutput *so);

#endif							/* STREAMFLINK_SIDE_OUTPUT_H */
