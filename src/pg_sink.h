/*-------------------------------------------------------------------------
 *
 * pg_sink.h
 *	  The Postgres table sink: result rows into the pipeline's tables.
 *
 * Rows are written inside the worker's open epoch transaction (see
 * checkpoint.h), which is prepared at the next checkpoint and committed
 * once the checkpoint is complete: rows become visible exactly once,
 * together with the Kafka offsets that produced them.  The sink's own
 * prepare only writes what is batched; the epoch transaction is the
 * checkpoint participant that prepares and commits.
 *
 * Each output writes the table SinkRowDesc.relid names: SINK_INSERT is an
 * INSERT (on an output with key columns, one that falls back to the upsert
 * if a row with its keys is there: see pg_sink.c), SINK_UPSERT an
 * INSERT ... ON CONFLICT (key columns) DO UPDATE,
 * SINK_RETRACT a DELETE by the key columns (IS NOT DISTINCT FROM, so NULL
 * keys match as the table's NULLS NOT DISTINCT unique index has them).
 * Statements run as the pipeline's owner (run_as.h).  A row the table
 * refuses for a reason of its own data goes to the side output as a dead
 * letter (side_output.h).
 *
 * Callers of open_output, write and flush must be connected to SPI, with
 * an active snapshot.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_PG_SINK_H
#define STREAMFLINK_PG_SINK_H

#include "side_output.h"
#include "sink.h"

/* 'side' receives the rows the tables refuse. */
extern Sink *pg_sink_create(SideOutput *side);

#endif							/* STREAMFLINK_PG_SINK_H */
