/*-------------------------------------------------------------------------
 *
 * side_output.c
 *	  Dead letters and late events (see side_output.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "run_as.h"
#include "side_output.h"

struct SideOutput
{
	int32		pipeline_id;
	Datum		topic;			/* text */
	SPIPlanPtr	dead_letter;
	SPIPlanPtr	late_event;
	Datum		args[8];
	char		argnulls[8];
	int64		dead_letters;	/* written since the last take */
	int64		late_events;
};

/*
 * SPI calls return in SPI's procedure context; callers keep their own
 * (per-message) context, so restore it.
 */
static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *argtypes)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	SPIPlanPtr	plan;

	run_as_extension(&as);
	plan = SPI_prepare(sql, nargs, argtypes);
	run_as_restore(&as);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan");
	MemoryContextSwitchTo(cxt);
	return plan;
}

static void
run(SideOutput *so, SPIPlanPtr plan)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	int			ret;

	run_as_extension(&as);
	ret = SPI_execute_plan(plan, so->args, so->argnulls, false, 0);
	run_as_restore(&as);
	MemoryContextSwitchTo(cxt);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "side output statement failed: %s", SPI_result_code_string(ret));
}

SideOutput *
side_output_create(PipelineDef *def)
{
	SideOutput *so = palloc0(sizeof(SideOutput));
	Oid			types[8];

	so->pipeline_id = def->id;
	so->topic = CStringGetTextDatum(def->source.topic);

	types[0] = INT4OID;
	types[1] = TEXTOID;
	types[2] = INT4OID;
	types[3] = INT8OID;
	types[4] = BYTEAOID;
	types[5] = TEXTOID;
	so->dead_letter = prepare("INSERT INTO streamflink.dead_letter "
							  "(pipeline_id, topic, partition, \"offset\", payload, error) "
							  "VALUES ($1, $2, $3, $4, $5, $6)", 6, types);
	types[5] = TIMESTAMPTZOID;
	types[6] = TIMESTAMPTZOID;
	types[7] = TEXTOID;
	so->late_event = prepare("INSERT INTO streamflink.late_event "
							 "(pipeline_id, topic, partition, \"offset\", payload, "
							 "event_time, watermark, reason) "
							 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, types);
	return so;
}

static Datum
payload_datum(const char *payload, size_t len, char *isnull)
{
	bytea	   *b;

	*isnull = payload ? ' ' : 'n';
	if (payload == NULL)
		return (Datum) 0;
	b = palloc(VARHDRSZ + len);
	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), payload, len);
	return PointerGetDatum(b);
}

static void
common_args(SideOutput *so, int32 partition, int64 offset, const char *payload, size_t len)
{
	memset(so->argnulls, ' ', sizeof(so->argnulls));
	so->args[0] = Int32GetDatum(so->pipeline_id);
	so->args[1] = so->topic;
	so->args[2] = Int32GetDatum(partition);
	so->args[3] = Int64GetDatum(offset);
	so->args[4] = payload_datum(payload, len, &so->argnulls[4]);
}

void
side_output_dead_letter(SideOutput *so, int32 partition, int64 offset,
						const char *payload, size_t len, const char *error)
{
	common_args(so, partition, offset, payload, len);
	so->args[5] = CStringGetTextDatum(error);
	run(so, so->dead_letter);
	so->dead_letters++;
}

void
side_output_dead_letter_row(SideOutput *so, const char *payload, size_t len,
							const char *error)
{
	common_args(so, 0, 0, payload, len);
	so->argnulls[2] = 'n';
	so->argnulls[3] = 'n';
	so->args[5] = CStringGetTextDatum(error);
	run(so, so->dead_letter);
	so->dead_letters++;
}

void
side_output_late_event(SideOutput *so, int32 partition, int64 offset,
					   TimestampTz event_time, TimestampTz watermark,
					   const char *payload, size_t len, const char *reason)
{
	common_args(so, partition, offset, payload, len);
	so->args[5] = TimestampTzGetDatum(event_time);
	so->args[6] = TimestampTzGetDatum(watermark);
	so->args[7] = CStringGetTextDatum(reason);
	run(so, so->late_event);
	so->late_events++;
}

int64
side_output_take_dead_letters(SideOutput *so)
{
	int64		n = so->dead_letters;

	so->dead_letters = 0;
	return n;
}

int64
side_output_take_late_events(SideOutput *so)
{
	int64		n = so->late_events;

	so->late_events = 0;
	return n;
}

void
side_output_destroy(SideOutput *so)
{
	if (so->dead_letter)
		SPI_freeplan(so->dead_letter);
	if (so->late_event)
		SPI_freeplan(so->late_event);
	so->dead_letter = so->late_event = NULL;
}
