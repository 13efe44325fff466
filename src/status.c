/*-------------------------------------------------------------------------
 *
 * status.c
 *	  SQL functions over the worker slots, for the streamflink.pipelines
 *	  view.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "slot.h"
#include "tenancy.h"

PG_FUNCTION_INFO_V1(streamflink_worker_status);
PG_FUNCTION_INFO_V1(streamflink_free_worker_slots);

Datum
streamflink_free_worker_slots(PG_FUNCTION_ARGS)
{
	/* Not preloaded: no slots at all. */
	if (slot_count() == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(slot_free_count());
}

Datum
streamflink_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerSlot *copies;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (slot_count() == 0)
		PG_RETURN_VOID();

	/*
	 * A worker's status and error may tell about its data: a role sees the
	 * workers of the pipelines it may see, as row-level security on the
	 * catalog decides (read as the caller).
	 */
	n = sf_visible_slots(&copies);
	for (int i = 0; i < n; i++)
	{
		WorkerSlot *s = &copies[i];
		Datum		values[16];
		bool		nulls[16];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(s->pipeline_id);
		values[1] = Int32GetDatum(s->pid);
		values[2] = CStringGetTextDatum(slot_status_name(s->status));
		if (s->error[0])
			values[3] = CStringGetTextDatum(s->error);
		else
			nulls[3] = true;
		values[4] = TimestampTzGetDatum(s->started);
		values[5] = Int64GetDatum(s->events);
		values[6] = Float8GetDatum(s->events_per_second);
		values[7] = Int64GetDatum(s->rows_emitted);
		values[8] = Int64GetDatum(s->dead_letters);
		values[9] = Int64GetDatum(s->late_events);
		if (TIMESTAMP_NOT_FINITE(s->watermark))
			nulls[10] = true;
		else
			values[10] = TimestampTzGetDatum(s->watermark);
		values[11] = Int64GetDatum(s->lag);
		nulls[11] = s->lag < 0;
		values[12] = Int64GetDatum(s->last_checkpoint);
		nulls[12] = s->last_checkpoint == 0;
		values[13] = TimestampTzGetDatum(s->last_checkpoint_at);
		nulls[13] = s->last_checkpoint_at == 0;
		values[14] = Int64GetDatum(s->state_keys);
		values[15] = Int64GetDatum(s->partial_matches_dropped);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
