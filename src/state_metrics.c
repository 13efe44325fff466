/*-------------------------------------------------------------------------
 *
 * state_metrics.c
 *	  SQL functions of the state module: RocksDB's numbers of running
 *	  pipelines (the streamflink.state_metrics view) and the check of a
 *	  pipeline's state tuning.
 *
 * The numbers come from the worker, which owns its database: it collects
 * them about once a second and publishes them in its slot (slot.h).  A
 * backend only copies slots: no RocksDB handle is opened here (a secondary
 * instance would show its own cache and memtables, not the worker's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "slot.h"
#include "state.h"
#include "state_tuning.h"
#include "tenancy.h"

PG_FUNCTION_INFO_V1(streamflink_state_metrics);
PG_FUNCTION_INFO_V1(streamflink_state_settings);

#define METRIC_COLUMNS 23

Datum
streamflink_state_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerSlot *copies;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (slot_count() == 0)
		PG_RETURN_VOID();

	/* as streamflink.pipelines: the pipelines row-level security shows */
	n = sf_visible_slots(&copies);
	for (int i = 0; i < n; i++)
	{
		WorkerSlot *s = &copies[i];
		StateMetrics *m = &s->state_metrics;
		Datum		values[METRIC_COLUMNS];
		bool		nulls[METRIC_COLUMNS];
		Datum		levels[STATE_METRIC_LEVELS];
		int64		lookups;
		int			c = 0;

		/* not collected yet (the worker is still starting) */
		if (m->collected_at == 0)
			continue;

		memset(nulls, 0, sizeof(nulls));
		for (int l = 0; l < STATE_METRIC_LEVELS; l++)
			levels[l] = Int64GetDatum(m->sst_bytes_per_level[l]);
		lookups = m->block_cache_hits + m->block_cache_misses;

/* a property RocksDB did not answer is -1: NULL */
#define PUT_INT64(v) \
		do { \
			if ((v) < 0) \
				nulls[c++] = true; \
			else \
				values[c++] = Int64GetDatum(v); \
		} while (0)

		values[c++] = Int32GetDatum(s->pipeline_id);
		values[c++] = Int32GetDatum(s->pid);
		values[c++] = TimestampTzGetDatum((TimestampTz) m->collected_at);
		values[c++] = CStringGetTextDatum(state_profile_name((StateProfile) m->profile));
		PUT_INT64(m->estimated_keys);
		PUT_INT64(m->live_sst_bytes);
		values[c++] = PointerGetDatum(construct_array(levels, STATE_METRIC_LEVELS, INT8OID,
													  8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		PUT_INT64(m->memtable_bytes);
		PUT_INT64(m->table_readers_bytes);
		PUT_INT64(m->block_cache_capacity);
		PUT_INT64(m->block_cache_usage);
		PUT_INT64(m->block_cache_pinned);
		PUT_INT64(m->block_cache_hits);
		PUT_INT64(m->block_cache_misses);
		if (lookups > 0)
			values[c++] = Float8GetDatum((double) m->block_cache_hits / lookups);
		else
			nulls[c++] = true;
		PUT_INT64(m->pending_compaction_bytes);
		PUT_INT64(m->running_compactions);
		PUT_INT64(m->compactions);
		PUT_INT64(m->flushes);
		PUT_INT64(m->stall_micros);
		PUT_INT64(m->running_flushes);
		/* the worst of a pipeline's tasks */
		values[c++] = CStringGetTextDatum(m->writes_stopped > 0 ? "stopped" :
										  m->writes_delayed > 0 ? "delayed" : "none");
		PUT_INT64(m->background_errors);
		Assert(c == METRIC_COLUMNS);
#undef PUT_INT64
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * streamflink.state_settings(profile, options, owner, parallelism): the
 * RocksDB settings each task of a pipeline of 'owner' with this profile,
 * these options and this parallelism would run with now, as text; an ERROR
 * with a hint if they are invalid or beyond the owner's bounds.  The
 * catalog's trigger calls it for every new pipeline.
 */
Datum
streamflink_state_settings(PG_FUNCTION_ARGS)
{
	char	   *profile = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *options = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			owner = PG_ARGISNULL(2) ? GetUserId() : PG_GETARG_OID(2);
	/* (a database created by an earlier 0.2 script has three arguments) */
	int			ntasks = (PG_NARGS() > 3 && !PG_ARGISNULL(3)) ? PG_GETARG_INT32(3) : 1;
	StateTuning t;

	if (ntasks < 1 || ntasks > STATE_KEY_GROUPS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parallelism must be between 1 and %d, not %d", STATE_KEY_GROUPS, ntasks)));
	state_tuning_resolve(profile, options, superuser_arg(owner), false, ntasks, NULL, &t);
	PG_RETURN_TEXT_P(cstring_to_text(state_tuning_describe(&t)));
}
