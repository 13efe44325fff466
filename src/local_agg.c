/*-------------------------------------------------------------------------
 *
 * local_agg.c
 *	  Two-stage aggregation on the source side of the exchange (see
 *	  local_agg.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "aggregate.h"
#include "local_agg.h"
#include "window.h"

/* Unix epoch in Postgres timestamps: windows align to it (window.c). */
#define UNIX_EPOCH_TS (-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)) * USECS_PER_DAY)

static int	local_batch = 10000;

/* A partial's key: [group key][window start:8], in the partials' context. */
typedef struct PartialKey
{
	const char *data;
	uint32		len;
} PartialKey;

typedef struct Partial
{
	PartialKey	key;			/* first: the hash key */
	int			dest;
	TimestampTz start;
	int64		events;
	int32		partition;		/* of its first event */
	int64		offset;
	MinimalTuple tuple;			/* its first event: the key, for the owner */
	AggStates  *states;
} Partial;

struct LocalAgg
{
	PipelineDef *def;
	MemoryContext cxt;			/* the partials; reset at each flush */
	AggSpec    *aggs;			/* its states in cxt */
	HTAB	   *partials;
	int64		held;			/* events absorbed since the last flush */
	TimestampTz min_end;		/* of the windows held */
	int64		absorbed;
	int64		slice;			/* window_slice: partials are slices' */
	StringInfoData kbuf;
	StringInfoData sbuf;
};

void
local_agg_define_settings(void)
{
	DefineCustomIntVariable("streamflink.local_aggregation_batch",
							"Events the source side of a parallel pipeline pre-aggregates before sending the partial states.",
							"Partials are also sent at every barrier, before a watermark that fires their windows, and when their memory passes work_mem.",
							&local_batch, 10000, 1, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

bool
local_agg_enabled(PipelineDef *def)
{
	if (def->parallelism <= 1 || def->kind != PIPELINE_WINDOW ||
		def->query_tree != NULL || def->window_kind == WINDOW_SESSION ||
		def->local_aggregation == 0)
		return false;
	/* automatic, or true (checked at creation): if every aggregate combines */
	{
		MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "streamflink local aggregation check",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		bool		ok = agg_can_combine(agg_spec_load(def->aggregates_tree, cxt));

		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return ok;
	}
}

static uint32
partial_hash(const void *key, Size keysize)
{
	const PartialKey *k = key;

	return DatumGetUInt32(hash_any((const unsigned char *) k->data, k->len));
}

static int
partial_match(const void *key1, const void *key2, Size keysize)
{
	const PartialKey *a = key1;
	const PartialKey *b = key2;

	if (a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/* The key of a new entry is copied into the partials' context. */
static void *
partial_keycopy(void *dest, const void *src, Size keysize)
{
	PartialKey *d = dest;
	const PartialKey *s = src;
	char	   *copy;

	copy = palloc(s->len);		/* CurrentMemoryContext: the partials' */
	memcpy(copy, s->data, s->len);
	d->data = copy;
	d->len = s->len;
	return dest;
}

static void
partials_create(LocalAgg *la)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(PartialKey);
	ctl.entrysize = sizeof(Partial);
	ctl.hash = partial_hash;
	ctl.match = partial_match;
	ctl.keycopy = partial_keycopy;
	ctl.hcxt = la->cxt;
	la->partials = hash_create("streamflink local aggregation", 1024, &ctl,
							   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
							   HASH_KEYCOPY | HASH_CONTEXT);
	la->held = 0;
	la->min_end = DT_NOEND;
}

LocalAgg *
local_agg_create(PipelineDef *def)
{
	LocalAgg   *la = palloc0(sizeof(LocalAgg));

	la->def = def;
	la->cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink local aggregation",
									ALLOCSET_DEFAULT_SIZES);
	la->aggs = agg_spec_load(def->aggregates_tree, la->cxt);
	la->slice = window_slice(def, la->aggs);
	initStringInfo(&la->kbuf);
	initStringInfo(&la->sbuf);
	partials_create(la);
	return la;
}

/* Window starts as window.c assigns them: aligned to the epoch by 'slide'. */
static bool
first_window(PipelineDef *def, TimestampTz t, TimestampTz *first, TimestampTz *lowest)
{
	int64		rem = (int64) (((int128) t - UNIX_EPOCH_TS) % def->slide);

	if (rem < 0)
		rem += def->slide;
	return !pg_sub_s64_overflow(t, rem, first) &&
		!pg_sub_s64_overflow(t, def->size, lowest);
}

bool
local_agg_absorb(LocalAgg *la, TupleTableSlot *event, TimestampTz t,
				 const char *gk, int gklen, int dest,
				 int32 partition, int64 offset, TimestampTz bound)
{
	PipelineDef *def = la->def;
	TimestampTz first;
	TimestampTz lowest;
	TimestampTz start;
	TimestampTz min_end = DT_NOEND;
	MemoryContext old;

	if (bound == DT_NOEND || !first_window(def, t, &first, &lowest))
		return false;

	/*
	 * Every window must be a valid one (else the owner says why the event is
	 * late) and end after 'bound' (else the owner may have fired it: it
	 * decides on the event itself).
	 */
	start = first;
	do
	{
		TimestampTz end;
		TimestampTz cleanup;

		if (!IS_VALID_TIMESTAMP(start) ||
			pg_add_s64_overflow(start, def->size, &end) || !IS_VALID_TIMESTAMP(end) ||
			pg_add_s64_overflow(end, def->allowed_lateness, &cleanup) ||
			!IS_VALID_TIMESTAMP(cleanup) || end <= bound)
			return false;
		min_end = Min(min_end, end);
	} while (!pg_sub_s64_overflow(start, def->slide, &start) && start > lowest);

	old = MemoryContextSwitchTo(la->cxt);
	start = first;
	do
	{
		PartialKey	key;
		Partial    *p;
		bool		found;

		resetStringInfo(&la->kbuf);
		appendBinaryStringInfo(&la->kbuf, gk, gklen);
		appendBinaryStringInfo(&la->kbuf, (char *) &start, sizeof(start));
		key.data = la->kbuf.data;
		key.len = la->kbuf.len;
		p = hash_search(la->partials, &key, HASH_ENTER, &found);
		if (!found)
		{
			p->dest = dest;
			p->start = start;
			p->events = 0;
			p->partition = partition;
			p->offset = offset;
			p->tuple = ExecCopySlotMinimalTuple(event);
			p->states = agg_states_new(la->aggs);
		}
		agg_advance(la->aggs, p->states, event);
		/* an event of several (hopping) windows counts once, in its first */
		if (start == first)
			p->events++;
		/* the owner keeps slices: an event is in one, starting at 'first' */
	} while (!la->slice &&
			 !pg_sub_s64_overflow(start, def->slide, &start) && start > lowest);
	MemoryContextSwitchTo(old);

	la->min_end = Min(la->min_end, min_end);
	la->held++;
	la->absorbed++;
	return true;
}

bool
local_agg_reached(LocalAgg *la, TimestampTz wm)
{
	return la->held > 0 && wm >= la->min_end;
}

bool
local_agg_holds(LocalAgg *la)
{
	return la->held > 0;
}

bool
local_agg_full(LocalAgg *la)
{
	return la->held >= local_batch ||
		MemoryContextMemAllocated(la->cxt, true) > (Size) work_mem * 1024;
}

void
local_agg_flush(LocalAgg *la, Exchange *ex)
{
	HASH_SEQ_STATUS seq;
	Partial    *p;

	if (la->held == 0)
		return;
	hash_seq_init(&seq, la->partials);
	while ((p = hash_seq_search(&seq)) != NULL)
	{
		resetStringInfo(&la->sbuf);
		agg_serialize(la->aggs, p->states, &la->sbuf);
		exchange_put_partial(ex, p->dest, p->partition, p->offset, p->start, p->events,
							 p->tuple, p->tuple->t_len, la->sbuf.data, la->sbuf.len);
	}
	/* the table, keys, tuples and states: all in the partials' context */
	MemoryContextReset(la->cxt);
	partials_create(la);
}

int64
local_agg_absorbed(LocalAgg *la)
{
	return la->absorbed;
}

/*
 * streamflink._check_local_aggregation: at pipeline creation, refuse
 * local_aggregation => true where it cannot work, naming the reason.
 */
PG_FUNCTION_INFO_V1(streamflink_check_local_aggregation);

Datum
streamflink_check_local_aggregation(PG_FUNCTION_ARGS)
{
	Oid			row_type;
	char	   *aggregates;
	char	   *window_kind;
	MemoryContext cxt;
	AggSpec    *spec;

	if (PG_ARGISNULL(3) || !PG_GETARG_BOOL(3) || PG_ARGISNULL(0) || PG_ARGISNULL(1) ||
		PG_ARGISNULL(2))
		PG_RETURN_VOID();		/* automatic or off; the other checks say */
	row_type = PG_GETARG_OID(0);
	aggregates = text_to_cstring(PG_GETARG_TEXT_PP(1));
	window_kind = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(window_kind, "session") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("local_aggregation is not supported for session windows"),
				 errhint("Sessions merge by their events' times; leave local_aggregation unset (automatic: off for sessions).")));
	cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink local aggregation check",
								ALLOCSET_SMALL_SIZES);
	spec = agg_spec_create(row_type, aggregates, cxt);
	for (int i = 0; i < agg_count(spec); i++)
		if (!agg_has_combine(spec, i))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("aggregate %s (output \"%s\") has no combine function: local_aggregation needs one",
							format_procedure(agg_function(spec, i)), agg_name(spec, i)),
					 errhint("Leave local_aggregation unset (automatic: off when an aggregate cannot combine), or give the aggregate a COMBINEFUNC.")));
	MemoryContextDelete(cxt);
	PG_RETURN_VOID();
}
