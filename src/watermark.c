/*-------------------------------------------------------------------------
 *
 * watermark.c
 *	  Per-partition event-time progress and the pipeline watermark.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "watermark.h"

/*
 * A partition's contribution: its max event time less the allowed
 * out-of-orderness.  Below the timestamp range it says nothing yet
 * (DT_NOBEGIN), instead of wrapping around.
 */
static TimestampTz
partition_watermark(const SourceDef *src, TimestampTz max_event_time)
{
	int64		wm;

	if (pg_sub_s64_overflow(max_event_time, src->max_out_of_orderness, &wm) ||
		wm < MIN_TIMESTAMP)
		return DT_NOBEGIN;
	return wm;
}

/*
 * Pipeline watermark: the minimum over partitions of max event time less
 * the allowed out-of-orderness.  A partition with no message for the
 * source's idle timeout does not hold it back; when every partition is
 * idle, the ones that had events decide (else the end of a stream whose
 * last partition went idle after the others would never be fired).  Never
 * moves backwards.
 */
TimestampTz
watermark_compute(const SourceDef *src, const WatermarkPartition *parts, int nparts,
				  TimestampTz now, TimestampTz current)
{
	TimestampTz wm = DT_NOEND;
	TimestampTz idle_wm = DT_NOEND;
	bool		any = false;
	bool		any_idle = false;

	for (int p = 0; p < nparts; p++)
	{
		const WatermarkPartition *ps = &parts[p];

		if (src->idle_timeout > 0 &&
			now - ps->last_message >= src->idle_timeout)
		{
			if (ps->pos.max_event_time != DT_NOBEGIN)
			{
				any_idle = true;
				idle_wm = Min(idle_wm, partition_watermark(src, ps->pos.max_event_time));
			}
			continue;
		}
		any = true;
		if (ps->pos.max_event_time == DT_NOBEGIN)
			return current;
		wm = Min(wm, partition_watermark(src, ps->pos.max_event_time));
	}
	if (!any)
	{
		if (!any_idle)
			return current;
		wm = idle_wm;
	}
	return Max(wm, current);
}

char *
watermark_late_reason(const PipelineDef *def, TimestampTz t, TimestampTz watermark)
{
	/* timestamptz_to_str() returns a static buffer: copy the first. */
	char	   *etime = pstrdup(timestamptz_to_str(t));

	if (def->allowed_lateness > 0)
	{
		Interval	lateness = {.time = def->allowed_lateness};

		return psprintf("event time %s is more than the allowed lateness (%s) behind the watermark %s",
						etime,
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(&lateness))),
						timestamptz_to_str(watermark));
	}
	return psprintf("event time %s is behind the watermark %s",
					etime, timestamptz_to_str(watermark));
}
