/*-------------------------------------------------------------------------
 *
 * watermark.h
 *	  Per-partition event-time progress and the pipeline watermark.
 *
 * The worker and the replay harness (replay.c) track the watermark with
 * these same functions, so a replay sees exactly the watermarks, and hence
 * the late events, a worker would see for the same arrival order.  Pure
 * functions over caller-owned arrays: no memory or state of their own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_WATERMARK_H
#define STREAMFLINK_WATERMARK_H

#include "catalog.h"
#include "checkpoint.h"

typedef struct WatermarkPartition
{
	PartitionPosition pos;
	TimestampTz last_message;	/* processing time, for idleness */
} WatermarkPartition;

/* An event with time t arrived on the partition. */
static inline void
watermark_observe(WatermarkPartition *wp, TimestampTz t)
{
	if (t > wp->pos.max_event_time || wp->pos.max_event_time == DT_NOBEGIN)
		wp->pos.max_event_time = t;
}

/*
 * The pipeline watermark at processing time 'now', given the partitions'
 * progress and the current watermark (it never moves backwards).
 */
extern TimestampTz watermark_compute(const SourceDef *src,
									 const WatermarkPartition *parts, int nparts,
									 TimestampTz now, TimestampTz current);

/* Why an event the operator refused as late is late (palloc'd). */
extern char *watermark_late_reason(const PipelineDef *def, TimestampTz t,
								   TimestampTz watermark);

#endif							/* STREAMFLINK_WATERMARK_H */
