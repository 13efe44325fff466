/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Event-time windows (tumbling, hopping, session) over keyed events.
 *
 * State layout in the pipeline's RocksDB database (keyspace.h; all integers
 * big-endian, times with the sign bit flipped so that byte order is time
 * order):
 *
 *	 window	  [key group:2]'W'[window start:8][group key] -> [fired:1][repr][agg states]
 *	 slice	  [key group:2]'L'[slice start:8][group key]  -> [0:1][repr][agg states]
 *	 session  [key group:2]'S'[group key]				  -> [n:4] n x [start:8][end:8][flags:1][repr][agg states]
 *	 timers of the state keys (timer_service.h), and the open window count
 *	 per key group (KS_COUNTER_OPEN_WINDOWS)
 *
 * The group key follows SQL equality (group_key.h).  When it cannot be
 * decoded into values (text under a nondeterministic collation), [repr]
 * is [len:4] and the key values of the window's (or session's) first
 * event, which its sink rows show; else it is absent.  A session's flags are
 * 1: fired, 2: has a row in the sink (under its start).  A timer is
 * registered for every window end (fire) and end + allowed lateness (clean
 * up); timers are always registered above the current watermark, so firing
 * scans only the time range the watermark just passed.
 *
 * A fixed window is its own firing timer (timer_service.h, implicit
 * timers): its key leads with its start, so the timer service finds the
 * windows due by a range scan of each key group, and no timer is written
 * for a window.  For the same reason the windows gone (fired, and past
 * their allowed lateness) are not deleted one by one: each key group with
 * windows gone since the last checkpoint loses the range of them by one
 * range tombstone at the next (window_flush), as fired timers do.
 *
 * Hopping windows are kept as slices, as Flink SQL keeps them, when a
 * window is a whole number of slides (at most WINDOW_SLICES_MAX) and every
 * aggregate has a combine function (window_slice): an event updates the
 * one slice [s, s + slide) its time falls in, not size / slide windows, so
 * it costs one state update, and a checkpoint writes back the slices
 * changed since the last one rather than every open window an event
 * touched.  A window fires by combining its slices (agg_combine_in): the
 * window ending at s + slide is slice s's own implicit timer (offset
 * slide), and after window E fires, the next one, E + slide, fires by
 * slice E's timer if there is slice E, or else, if a slice of E + slide
 * there is, by a timer at E + slide of [kg]'E'[group key] (keyspace.h):
 * one key per group key, so that every way of asking for that window's
 * firing is one timer, and it does nothing if slice E + slide - slide has
 * its own.  A slice goes with its last window's clean-up (E + allowed
 * lateness).  The watermark up to which windows fired is kept per key
 * group (KS_COUNTER_FIRED_TO) with the slices it describes, for live().
 * Which group keys made a slice of each start is kept in memory too (a
 * Bloom filter per start, SliceFilter), so that the slices a window or a
 * new slice looks for and that were never made cost no read.
 *
 * A window whose start, end, or end + allowed lateness falls outside the
 * range of timestamps cannot be written to a sink: an event with such a
 * window is a late event, with that reason.  Time arithmetic on event
 * times is overflow-checked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "keyspace.h"
#include "sql_pipeline.h"
#include "timer_service.h"
#include "window.h"

/* Unix epoch in Postgres timestamps (microseconds since 2000-01-01). */
#define UNIX_EPOCH_TS (-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)) * USECS_PER_DAY)

/*
 * Slices a hopping window may have: its firing looks up and combines each,
 * so a window of very many slides (a day sliding by a second) keeps its
 * windows whole.
 */
#define WINDOW_SLICES_MAX 16

/*
 * Which group keys have a slice of one start, made since the operator
 * started: a Bloom filter of their hashes (two bits each), so that looking
 * for a slice never made (most of a window's slices, with keys that have
 * an event now and then) costs neither a cache probe nor a RocksDB read.
 */
typedef struct SliceFilter
{
	TimestampTz start;
	int64		nkeys;
	uint64		mask;			/* bits - 1, bits a power of 2 */
	uint64	   *bits;
} SliceFilter;

/* Bits of a slice filter: 16 a key of the last start, within these. */
#define SLICE_FILTER_MIN_BITS (UINT64CONST(1) << 13)
#define SLICE_FILTER_MAX_BITS (UINT64CONST(1) << 24)
#define SLICE_FILTERS_MAX 64

/* The key values of a group key that cannot be decoded (see above). */
typedef struct KeyRepr
{
	uint32		len;
	char	   *data;
} KeyRepr;

typedef struct WinState
{
	bool		fired;
	KeyRepr		repr;
	AggStates  *aggs;
} WinState;

typedef struct Session
{
	TimestampTz start;
	TimestampTz end;
	bool		fired;
	bool		in_sink;		/* a row under 'start' is in the sink */
	KeyRepr		repr;
	AggStates  *aggs;
} Session;

#define SESSION_FIRED	1
#define SESSION_IN_SINK 2

typedef struct SessionSet
{
	int			n;
	int			cap;
	Session    *s;
} SessionSet;

struct WindowOperator
{
	PipelineDef *def;
	StateStore *store;
	KeyedState *ks;
	AggSpec    *aggs;
	Sink	   *sink;
	SinkOutput *out;			/* "result": keys, window_start, window_end,
								 * aggregates */
	Datum	   *row;
	bool	   *rownulls;
	KeyCodec	codec;
	MemoryContext scratch;		/* per event / per firing */
	TimerService *timers;
	KeyGroupCounter *open;		/* open windows */
	StringInfoData gk;			/* group key of the current event */
	StringInfoData repr;		/* its key values, if the codec is not exact */
	const char *late_reason;	/* why the last event was refused, if special */
	TimestampTz fire_wm;		/* the watermark timers fire up to */

	/*
	 * Fixed windows gone since the last flush, per key group (deleted by
	 * range at the next), and the start below which every window was gone at
	 * the last flush (PG_INT64_MIN: none known, after a start).
	 */
	bool		gone[STATE_KEY_GROUPS];
	bool		any_gone;
	TimestampTz gone_below;

	/*
	 * A fixed window starting at or after unstored_from is in the store
	 * only if the cache holds it: the store held none such when the operator
	 * started, and the cache has not evicted one since (its write-backs keep
	 * what they write).  So a new window there costs no read that finds it
	 * absent.  new_max: the latest start of a window made since the start.
	 */
	TimestampTz unstored_from;
	TimestampTz new_max;
	StringInfoData skey;		/* state key */
	Datum	   *keyvals;
	bool	   *keynulls;
	Datum	   *aggvals;
	bool	   *aggnulls;
	/* a pipeline written as a query: filter, keys, post-projection */
	SqlpWindow *sql;			/* NULL: key columns, plain aggregate row */
	int		   *key_attnos;		/* of the key slot (0..nkeys-1) */

	/*
	 * Hopping windows kept as slices (see the file header): slice is the
	 * slide and nslices size / slide, else 0; kind the fixed windows' key
	 * kind (KS_WINDOW or KS_SLICE).  parts: the slices of the window being
	 * fired (NULL where absent).  touched: key groups with an event or a
	 * firing since the last flush, whose fired_to the flush sets.
	 */
	int64		slice;
	int			nslices;
	char		kind;
	WinState   *parts[WINDOW_SLICES_MAX];
	KeyGroupCounter *fired_to;
	TimestampTz fired_wm;		/* what windows fired up to: the last
								 * advance's watermark, or an event's */
	TimestampTz fired_before;	/* fired_wm when the advance started */
	bool		touched[STATE_KEY_GROUPS];
	StringInfoData nkey;		/* another slice's key */
	/*
	 * Batches of keys to prefetch: the slices a chunk of timers will
	 * combine (prefetch_slices: 'reads' from the store, 'cached'), or the
	 * windows of the events told of ahead (window_prefetch: 'cached').
	 */
	KeyBatch   *reads;
	KeyBatch   *cached;
	StringInfoData ahead_gk;	/* the group key of an event told of ahead */

	/*
	 * Slice filters, oldest start first, for every start at or after
	 * filtered_from that a slice was made of since the start (the store
	 * held no slice there then); a start there without a filter has no
	 * slice.  Their bits take at most filter_budget bytes: beyond, the
	 * oldest goes and filtered_from passes it.
	 */
	SliceFilter filters[SLICE_FILTERS_MAX];
	int			nfilters;
	uint64		gk_hash;		/* slice_filter_hash of op->gk, set where
								 * slices are entered: add_to_slice,
								 * fire_sliced */
	TimestampTz filtered_from;
	int64		filter_bytes;
	int64		filter_budget;
	MemoryContext filter_cxt;
};

/* --- keys --------------------------------------------------------------- */

#define append_time kstate_append_time
#define read_time kstate_read_time
#define codec_init kstate_codec_init
#define encode_group_key kstate_encode_key
#define decode_group_key kstate_decode_key

/*
 * State key: [key group]'W'[window start][group key], [key group]'L'[slice
 * start][group key] for slices, or [key group]'S'[group key] for sessions.
 */
static void
append_state_key(WindowOperator *op, StringInfo key, TimestampTz start,
				 const char *gk, int gklen)
{
	keyspace_append_state_prefix(key, op->kind, gk, gklen);
	if (op->kind != KS_SESSION)
		append_time(key, start);
	appendBinaryStringInfo(key, gk, gklen);
}

/* The state key of window (slice) 'start' of the current group key. */
static void
make_key(WindowOperator *op, StringInfo key, TimestampTz start)
{
	resetStringInfo(key);
	append_state_key(op, key, start, op->gk.data, op->gk.len);
}

static void
make_state_key(WindowOperator *op, TimestampTz start)
{
	make_key(op, &op->skey, start);
}

static void
register_timer(WindowOperator *op, TimestampTz when)
{
	timers_register(op->timers, when, op->skey.data, op->skey.len);
}

/* Windows of the current state key's key group opened (+) or fired (-). */
static inline void
count_open(WindowOperator *op, int64 delta)
{
	kstate_counter_add(op->open, op->skey.data, delta);
}

/* --- state objects ---------------------------------------------------- */

static const char *
repr_read(WindowOperator *op, const char *p, KeyRepr *repr)
{
	repr->len = 0;
	repr->data = NULL;
	if (op->codec.exact)
		return p;
	memcpy(&repr->len, p, 4);
	repr->data = palloc(repr->len);
	memcpy(repr->data, p + 4, repr->len);
	return p + 4 + repr->len;
}

static void
repr_write(WindowOperator *op, KeyRepr *repr, StringInfo buf)
{
	if (op->codec.exact)
		return;
	appendBinaryStringInfo(buf, (char *) &repr->len, 4);
	appendBinaryStringInfo(buf, repr->data, repr->len);
}

/* The current event's key values as a new state's representative. */
static void
repr_set(WindowOperator *op, KeyRepr *repr)
{
	repr->len = 0;
	repr->data = NULL;
	if (op->codec.exact)
		return;
	repr->len = op->repr.len;
	repr->data = MemoryContextAlloc(kstate_memory(op->ks), op->repr.len);
	memcpy(repr->data, op->repr.data, op->repr.len);
}

/* A state's key values, in CurrentMemoryContext. */
static void
key_values(WindowOperator *op, KeyRepr *repr)
{
	if (op->codec.exact)
		decode_group_key(&op->codec, op->gk.data, op->keyvals, op->keynulls);
	else
		kstate_decode_values(&op->codec, repr->data, op->keyvals, op->keynulls);
}

static void *
winstate_deserialize(void *arg, const char *data, size_t len)
{
	WindowOperator *op = (WindowOperator *) arg;

	if (op->def->window_kind == WINDOW_SESSION)
	{
		SessionSet *set = palloc(sizeof(SessionSet));
		const char *p = data;
		uint32		n;

		memcpy(&n, p, 4);
		p += 4;
		set->n = n;
		set->cap = Max(n, 4);
		set->s = palloc(sizeof(Session) * set->cap);
		for (int i = 0; i < set->n; i++)
		{
			size_t		used;

			set->s[i].start = read_time(p);
			set->s[i].end = read_time(p + 8);
			set->s[i].fired = (p[16] & SESSION_FIRED) != 0;
			/* Before SESSION_IN_SINK existed, fired sessions had their row. */
			set->s[i].in_sink = (p[16] & (SESSION_FIRED | SESSION_IN_SINK)) != 0;
			p = repr_read(op, p + 17, &set->s[i].repr);
			set->s[i].aggs = agg_deserialize(op->aggs, p, data + len - p, &used);
			p += used;
		}
		return set;
	}
	else
	{
		WinState   *ws = palloc(sizeof(WinState));
		const char *p = repr_read(op, data + 1, &ws->repr);

		ws->fired = data[0] != 0;
		ws->aggs = agg_deserialize(op->aggs, p, data + len - p, NULL);
		return ws;
	}
}

static void
winstate_serialize(void *arg, void *obj, StringInfo buf)
{
	WindowOperator *op = (WindowOperator *) arg;

	if (op->def->window_kind == WINDOW_SESSION)
	{
		SessionSet *set = (SessionSet *) obj;
		uint32		n = set->n;

		appendBinaryStringInfo(buf, (char *) &n, 4);
		for (int i = 0; i < set->n; i++)
		{
			char		flags = (set->s[i].fired ? SESSION_FIRED : 0) |
				(set->s[i].in_sink ? SESSION_IN_SINK : 0);

			append_time(buf, set->s[i].start);
			append_time(buf, set->s[i].end);
			appendBinaryStringInfo(buf, &flags, 1);
			repr_write(op, &set->s[i].repr, buf);
			agg_serialize(op->aggs, set->s[i].aggs, buf);
		}
	}
	else
	{
		WinState   *ws = (WinState *) obj;
		char		fired = ws->fired;

		appendBinaryStringInfo(buf, &fired, 1);
		repr_write(op, &ws->repr, buf);
		agg_serialize(op->aggs, ws->aggs, buf);
	}
}

/*
 * A session's own memory: its key values' representative and its states.
 * Each session of a set owns these alone: a merge moves one merged
 * session's representative to the new session and leaves the others (and
 * their states, whose values the new states may have taken over: see
 * agg_combine) as garbage, never in a set again; fire_sessions frees a
 * session it drops.
 */
static void
session_free(WindowOperator *op, Session *s)
{
	if (s->repr.data)
		pfree(s->repr.data);
	agg_states_free(op->aggs, s->aggs);
}

/*
 * A window's state, when its firing deletes it (a session set: when its
 * last session is dropped): freed at once, so a cache of many short-lived
 * windows holds the open ones only.  A key's session set is changed in
 * place, so a put never replaces one.
 */
static void
winstate_free(void *arg, void *obj)
{
	WindowOperator *op = (WindowOperator *) arg;
	WinState   *ws = (WinState *) obj;

	if (op->def->window_kind == WINDOW_SESSION)
	{
		SessionSet *set = (SessionSet *) obj;

		for (int i = 0; i < set->n; i++)
			session_free(op, &set->s[i]);
		pfree(set->s);
		pfree(set);
		return;
	}
	if (ws->repr.data)
		pfree(ws->repr.data);
	agg_states_free(op->aggs, ws->aggs);
	pfree(ws);
}

/* A window's (slice's) aggregate states, which adding an event updates. */
static void
winstate_prefetch(void *arg, const void *obj)
{
	WindowOperator *op = (WindowOperator *) arg;

	if (op->def->window_kind != WINDOW_SESSION)
		state_line_prefetch(((const WinState *) obj)->aggs);
}

static const KeyedStateOps winstate_ops = {
	.deserialize = winstate_deserialize,
	.serialize = winstate_serialize,
	.free = winstate_free,
	.prefetch = winstate_prefetch
};

/* --- operator --------------------------------------------------------- */

/*
 * The sink output: one row per window, identified by its keys and start
 * (a late firing replaces it, a merged session retracts it).
 */
static void
open_output(WindowOperator *op, TupleDesc event_desc)
{
	PipelineDef *def = op->def;
	int			naggs = agg_count(op->aggs);
	int			ncols = def->nkeys + 2 + naggs;
	const char **names = palloc(sizeof(char *) * ncols);
	Oid		   *types = palloc(sizeof(Oid) * ncols);
	SinkRowDesc desc;

	if (op->sql)
	{
		/* The query's columns; a retraction's row is still keys, start. */
		desc.name = "result";
		desc.relid = def->sink_relid;
		sqlp_window_output(op->sql, &desc);
		op->out = sink_open_output(op->sink, &desc);
		ncols = Max(desc.ncols, op->codec.nkeys + 2 + naggs);
		op->row = palloc0(sizeof(Datum) * ncols);
		op->rownulls = palloc0(sizeof(bool) * ncols);
		return;
	}

	for (int i = 0; i < def->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(event_desc, def->key_attnos[i]);

		names[i] = NameStr(att->attname);
		types[i] = att->atttypid;
	}
	names[def->nkeys] = "window_start";
	types[def->nkeys] = TIMESTAMPTZOID;
	names[def->nkeys + 1] = "window_end";
	types[def->nkeys + 1] = TIMESTAMPTZOID;
	for (int i = 0; i < naggs; i++)
	{
		names[def->nkeys + 2 + i] = agg_name(op->aggs, i);
		types[def->nkeys + 2 + i] = agg_result_type(op->aggs, i);
	}
	desc.name = "result";
	desc.relid = def->sink_relid;
	desc.ncols = ncols;
	desc.colnames = names;
	desc.coltypes = types;
	desc.nkeys = def->nkeys + 1;
	op->out = sink_open_output(op->sink, &desc);
	op->row = palloc0(sizeof(Datum) * ncols);
	op->rownulls = palloc0(sizeof(bool) * ncols);
}

/* Write a window's row: keys from op->keyvals, then start, end, aggregates. */
static void
write_row(WindowOperator *op, SinkOp sop, TimestampTz start, TimestampTz end, int naggs)
{
	int			k = op->codec.nkeys;

	memcpy(op->row, op->keyvals, sizeof(Datum) * k);
	memcpy(op->rownulls, op->keynulls, sizeof(bool) * k);
	op->row[k] = TimestampTzGetDatum(start);
	op->rownulls[k] = false;
	op->row[k + 1] = TimestampTzGetDatum(end);
	op->rownulls[k + 1] = false;
	memcpy(op->row + k + 2, op->aggvals, sizeof(Datum) * naggs);
	memcpy(op->rownulls + k + 2, op->aggnulls, sizeof(bool) * naggs);
	sink_write(op->sink, op->out, sop, op->row, op->rownulls);
}

/*
 * One past the latest start of a fixed window in the store (PG_INT64_MIN
 * if none): the last key of each key group's windows.
 */
static TimestampTz
stored_windows_end(StateStore *store, char kind)
{
	TimestampTz end = PG_INT64_MIN;
	StringInfoData lower,
				upper;

	initStringInfo(&lower);
	initStringInfo(&upper);
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		StateIter  *it;
		const char *key,
				   *val;
		size_t		klen,
					vlen;

		keyspace_kind_range(kg, kind, &lower, &upper);
		it = state_iter_create(store, lower.data, lower.len, upper.data, upper.len);
		if (state_iter_last(it, &key, &klen, &val, &vlen) &&
			klen >= KEYSPACE_HEADER + 8)
		{
			TimestampTz start = read_time(key + KEYSPACE_HEADER);

			/* (a start is a valid timestamp: + 1 cannot overflow) */
			end = Max(end, start + 1);
		}
		state_iter_destroy(it);
	}
	pfree(lower.data);
	pfree(upper.data);
	return end;
}

static void prefetch_slices(WindowOperator *op, int n, const TimestampTz *times,
							const char *const *skeys, const size_t *sklens);

/* The state of the windows whose timers fire next (timer_prefetch_fn). */
static void
prefetch_windows(void *arg, int n, const TimestampTz *times,
				 const char *const *skeys, const size_t *sklens)
{
	WindowOperator *op = (WindowOperator *) arg;

	if (op->slice)
		prefetch_slices(op, n, times, skeys, sklens);
	else
		kstate_prefetch(op->ks, n, skeys, sklens);
}

int64
window_slice(PipelineDef *def, AggSpec *aggs)
{
	if (def->window_kind != WINDOW_HOP || def->slide >= def->size ||
		def->size % def->slide != 0 ||
		def->size / def->slide > WINDOW_SLICES_MAX || !agg_can_combine(aggs))
		return 0;
	return def->slide;
}

/*
 * How the operator keeps its windows (op->aggs loaded): whole, as slices,
 * or as sessions.
 */
static void
window_layout(WindowOperator *op)
{
	op->slice = window_slice(op->def, op->aggs);
	op->nslices = op->slice ? op->def->size / op->slice : 0;
	op->kind = op->def->window_kind == WINDOW_SESSION ? KS_SESSION :
		op->slice ? KS_SLICE : KS_WINDOW;
}

WindowOperator *
window_create(PipelineDef *def, StateStore *store, Sink *sink, TupleDesc event_desc)
{
	WindowOperator *op = palloc0(sizeof(WindowOperator));
	int			naggs;

	op->def = def;
	op->store = store;
	op->sink = sink;
	op->ks = kstate_create(store, &winstate_ops, op, kstate_cache_budget());
	if (def->query_tree != NULL)
	{
		op->sql = sqlp_window_create(def, kstate_memory(op->ks));
		op->aggs = sqlp_window_aggregates(op->sql);
	}
	else
		op->aggs = agg_spec_load(def->aggregates_tree, kstate_memory(op->ks));
	if (def->window_kind == WINDOW_SESSION && !agg_can_combine(op->aggs))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("session windows need aggregates with combine functions"),
				 errhint("Merging two sessions combines their aggregate states.")));
	if (op->sql)
	{
		TupleDesc	kd = sqlp_window_key_desc(op->sql);

		op->key_attnos = palloc(sizeof(int) * Max(kd->natts, 1));
		for (int i = 0; i < kd->natts; i++)
			op->key_attnos[i] = i;
		kstate_codec_init_desc(&op->codec, kd, kd->natts, op->key_attnos);
	}
	else
		codec_init(&op->codec, def);
	op->scratch = AllocSetContextCreate(CurrentMemoryContext, "streamflink window scratch",
										ALLOCSET_DEFAULT_SIZES);
	window_layout(op);
	op->timers = timers_create(store);
	timers_set_prefetch(op->timers, prefetch_windows);
	if (def->window_kind != WINDOW_SESSION)
		timers_set_implicit(op->timers, store, op->kind,
							op->slice ? op->slice : def->size);
	op->gone_below = PG_INT64_MIN;
	op->unstored_from = PG_INT64_MAX;
	op->new_max = PG_INT64_MIN;
	if (def->window_kind != WINDOW_SESSION)
		op->unstored_from = stored_windows_end(store, op->kind);
	op->open = kstate_counter_open(store, KS_COUNTER_OPEN_WINDOWS);
	if (op->slice)
		op->fired_to = kstate_counter_open(store, KS_COUNTER_FIRED_TO);
	op->fired_wm = PG_INT64_MIN;
	op->fired_before = PG_INT64_MIN;
	initStringInfo(&op->nkey);
	/* every slice at or after the stored ones' end is made from now on */
	op->filtered_from = op->slice ? op->unstored_from : PG_INT64_MAX;
	/* (debug_discard_state: one filter at a time, to drop them often) */
	op->filter_budget = kstate_debug_discard() ? SLICE_FILTER_MIN_BITS / 8 :
		kstate_cache_budget() / 8;
	op->filter_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink slice filters",
										   ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&op->gk);
	initStringInfo(&op->repr);
	initStringInfo(&op->skey);
	op->reads = palloc(sizeof(KeyBatch));
	kbatch_init(op->reads);
	op->cached = palloc(sizeof(KeyBatch));
	kbatch_init(op->cached);
	initStringInfo(&op->ahead_gk);
	op->keyvals = palloc(sizeof(Datum) * Max(op->codec.nkeys, 1));
	op->keynulls = palloc(sizeof(bool) * Max(op->codec.nkeys, 1));
	naggs = agg_count(op->aggs);
	op->aggvals = palloc(sizeof(Datum) * naggs);
	op->aggnulls = palloc(sizeof(bool) * naggs);
	open_output(op, event_desc);
	return op;
}

AggSpec *
window_aggregates(WindowOperator *op)
{
	return op->aggs;
}

int64
window_open_count(WindowOperator *op)
{
	return kstate_counter_total(op->open);
}

/*
 * Emit a window's current result to the sink; key from op->gk or repr.
 * 'first': no row of the window is in the sink (its first firing), so the
 * row is a SINK_INSERT, which a sink may write more cheaply; a sink still
 * replaces a row with its key that is there (sink.h).
 */
static void
emit(WindowOperator *op, KeyRepr *repr, TimestampTz start, TimestampTz end,
	 AggStates *aggs, bool first)
{
	MemoryContext old = MemoryContextSwitchTo(op->scratch);
	SinkOp		sop = first ? SINK_INSERT : SINK_UPSERT;

	key_values(op, repr);
	agg_final(op->aggs, aggs, op->aggvals, op->aggnulls);
	if (op->sql)
	{
		/*
		 * The query's row, or none if HAVING rejects it: then a row an
		 * earlier firing of the window wrote goes (only a window that fires
		 * again, within allowed lateness, can have one).
		 */
		if (sqlp_window_project(op->sql, op->keyvals, op->keynulls, start, end,
								op->aggvals, op->aggnulls, op->row, op->rownulls))
			sink_write(op->sink, op->out, sop, op->row, op->rownulls);
		else if (op->def->allowed_lateness > 0)
			write_row(op, SINK_RETRACT, start, start, 0);
	}
	else
		write_row(op, sop, start, end, agg_count(op->aggs));
	MemoryContextSwitchTo(old);
	MemoryContextReset(op->scratch);
}

static void
retract(WindowOperator *op, KeyRepr *repr, TimestampTz start)
{
	MemoryContext old = MemoryContextSwitchTo(op->scratch);

	key_values(op, repr);
	write_row(op, SINK_RETRACT, start, start, 0);
	MemoryContextSwitchTo(old);
	MemoryContextReset(op->scratch);
}

/*
 * floor((t - epoch) / step) * step + epoch, also for negative t; false if
 * that is below the range of int64.
 */
static bool
align_down(TimestampTz t, int64 step, TimestampTz *result)
{
	/* In 128 bits: t - epoch overflows near the last valid timestamp. */
	int64		rem = (int64) (((int128) t - UNIX_EPOCH_TS) % step);

	if (rem < 0)
		rem += step;
	return !pg_sub_s64_overflow(t, rem, result);
}

/* t + d, if that is a valid timestamp. */
static inline bool
time_add(TimestampTz t, int64 d, TimestampTz *result)
{
	return !pg_add_s64_overflow(t, d, result) && IS_VALID_TIMESTAMP(*result);
}

/*
 * Does window [start, start + size) exist, with its clean-up time inside the
 * range of timestamps?  Else say why in op->late_reason.
 */
static bool
window_in_range(WindowOperator *op, TimestampTz t, TimestampTz start, int64 size)
{
	TimestampTz end;
	TimestampTz cleanup;

	if (!IS_VALID_TIMESTAMP(start))
		op->late_reason = psprintf("a window of event time %s would start before the first valid timestamp",
								   timestamptz_to_str(t));
	else if (!time_add(start, size, &end) ||
			 !time_add(end, op->def->allowed_lateness, &cleanup))
		op->late_reason = psprintf("a window of event time %s would end, with its allowed lateness, after the last valid timestamp",
								   timestamptz_to_str(t));
	else
		return true;
	return false;
}

/*
 * A new window's (or slice's) state, in the cache's memory, for the current
 * event's key; 'start' is the latest start made so far if above it (see
 * unstored_from).
 */
static WinState *
winstate_new(WindowOperator *op, TimestampTz start)
{
	MemoryContext old = MemoryContextSwitchTo(kstate_memory(op->ks));
	WinState   *ws = palloc(sizeof(WinState));

	op->new_max = Max(op->new_max, start);
	ws->fired = false;
	repr_set(op, &ws->repr);
	ws->aggs = agg_states_new(op->aggs);
	MemoryContextSwitchTo(old);
	return ws;
}

/*
 * Add an event to fixed window [start, start + size), or merge a partial
 * of its events ('partial', local_agg.h); false if the window is gone.
 */
static bool
add_to_window(WindowOperator *op, TupleTableSlot *event, TimestampTz start,
			  TimestampTz wm, AggStates *partial)
{
	PipelineDef *def = op->def;
	TimestampTz end = start + def->size;
	WinState   *ws;

	if (end + def->allowed_lateness <= wm)
		return false;

	make_state_key(op, start);
	if (start >= op->unstored_from)
		ws = kstate_get_unstored(op->ks, op->skey.data, op->skey.len);
	else
		ws = kstate_get(op->ks, op->skey.data, op->skey.len);
	if (ws == NULL)
	{
		ws = winstate_new(op, start);
		count_open(op, 1);
		if (end > wm)
			register_timer(op, end);
	}
	if (partial)
		agg_combine(op->aggs, ws->aggs, partial);
	else
		agg_advance(op->aggs, ws->aggs, event);
	kstate_put(op->ks, op->skey.data, op->skey.len, ws);

	if (end <= wm)
	{
		/* Late but allowed: fire (again) with the new event. */
		emit(op, &ws->repr, start, end, ws->aggs, !ws->fired);
		if (!ws->fired)
		{
			ws->fired = true;
			count_open(op, -1);
			register_timer(op, end + def->allowed_lateness);
		}
	}
	return true;
}

static bool add_to_slice(WindowOperator *op, TupleTableSlot *event, TimestampTz start,
						 TimestampTz wm, AggStates *partial);

/* Add an event to each of its tumbling or hopping windows (or its slice). */
static bool
process_fixed(WindowOperator *op, TupleTableSlot *event, TimestampTz t, TimestampTz wm)
{
	PipelineDef *def = op->def;
	bool		accepted = false;
	TimestampTz first;
	TimestampTz lowest;			/* windows start after this */
	TimestampTz start;

	if (!align_down(t, def->slide, &first))
		first = PG_INT64_MIN;	/* not a valid timestamp either */
	if (pg_sub_s64_overflow(t, def->size, &lowest))
		lowest = PG_INT64_MIN;

	/*
	 * Every window of the event inside the range of timestamps, or none: an
	 * event counts in all of its windows or is late.
	 */
	start = first;
	do
	{
		if (!window_in_range(op, t, start, def->size))
			return false;
	} while (!pg_sub_s64_overflow(start, def->slide, &start) && start > lowest);

	if (op->slice)
		return add_to_slice(op, event, first, wm, NULL);

	start = first;
	do
	{
		accepted |= add_to_window(op, event, start, wm, NULL);
	} while (!pg_sub_s64_overflow(start, def->slide, &start) && start > lowest);
	return accepted;
}

/* --- hopping windows as slices ---------------------------------------- */

/* The filter of slices starting at 'start', or NULL. */
static SliceFilter *
slice_filter(WindowOperator *op, TimestampTz start)
{
	/* (few: those of the open windows, newest last) */
	for (int i = op->nfilters - 1; i >= 0; i--)
	{
		if (op->filters[i].start == start)
			return &op->filters[i];
		if (op->filters[i].start < start)
			break;
	}
	return NULL;
}

/* A group key's hash in the slice filters (op->gk_hash for the current). */
static inline uint64
slice_filter_hash(const char *gk, size_t gklen)
{
	return hash_bytes_extended((const unsigned char *) gk, (int) gklen, 0x5eed);
}

/*
 * Bit i (0 or 1) of a key of hash h in filter f: its word, and the bit in
 * the word.  The second bit's position is the hash's halves swapped.
 */
static inline uint64 *
slice_filter_bit(SliceFilter *f, uint64 h, int i, uint64 *bit)
{
	uint64		pos = (i == 0 ? h : (h >> 32) | (h << 32)) & f->mask;

	*bit = UINT64CONST(1) << (pos % 64);
	return &f->bits[pos / 64];
}

/*
 * May the group key of hash h have a slice starting at 'start' (made in
 * this process, or stored before it)?  False only if it has none.
 */
static bool
slice_maybe_made(WindowOperator *op, uint64 h, TimestampTz start)
{
	SliceFilter *f;

	if (start < op->filtered_from)
		return true;			/* not known */
	f = slice_filter(op, start);
	if (f == NULL)
		return false;
	for (int i = 0; i < 2; i++)
	{
		uint64		bit;

		if ((*slice_filter_bit(f, h, i, &bit) & bit) == 0)
			return false;
	}
	return true;
}

/* Drop the oldest filter: its start and those before are not known any more. */
static void
slice_filter_drop_oldest(WindowOperator *op)
{
	SliceFilter *f = &op->filters[0];

	op->filtered_from = Max(op->filtered_from, f->start + 1);
	op->filter_bytes -= (f->mask + 1) / 8;
	pfree(f->bits);
	op->nfilters--;
	memmove(&op->filters[0], &op->filters[1], sizeof(SliceFilter) * op->nfilters);
}

/* The current group key made a slice starting at 'start'. */
static void
slice_filter_add(WindowOperator *op, TimestampTz start)
{
	SliceFilter *f;

	if (start < op->filtered_from)
		return;
	f = slice_filter(op, start);
	if (f == NULL)
	{
		uint64		bits = SLICE_FILTER_MIN_BITS;
		int			at;

		/* sized by the newest start's keys, as the next start's likely are */
		if (op->nfilters > 0)
			while (bits < SLICE_FILTER_MAX_BITS &&
				   bits < (uint64) op->filters[op->nfilters - 1].nkeys * 16)
				bits <<= 1;
		while (op->nfilters > 0 &&
			   (op->nfilters == SLICE_FILTERS_MAX ||
				op->filter_bytes + (int64) bits / 8 > op->filter_budget))
		{
			/* the oldest first; a start older than every filter is lost */
			if (start < op->filters[0].start)
			{
				op->filtered_from = Max(op->filtered_from, start + 1);
				return;
			}
			slice_filter_drop_oldest(op);
		}
		if (start < op->filtered_from)
			return;
		for (at = op->nfilters; at > 0 && op->filters[at - 1].start > start; at--)
			;
		memmove(&op->filters[at + 1], &op->filters[at],
				sizeof(SliceFilter) * (op->nfilters - at));
		op->nfilters++;
		f = &op->filters[at];
		f->start = start;
		f->nkeys = 0;
		f->mask = bits - 1;
		f->bits = MemoryContextAllocZero(op->filter_cxt, bits / 8);
		op->filter_bytes += bits / 8;
	}
	for (int i = 0; i < 2; i++)
	{
		uint64		bit;

		*slice_filter_bit(f, op->gk_hash, i, &bit) |= bit;
	}
	f->nkeys++;
}

/* The filters of starts whose slices are all gone ('below': see delete_gone). */
static void
slice_filters_gone(WindowOperator *op, TimestampTz below)
{
	while (op->nfilters > 0 && op->filters[0].start < below)
		slice_filter_drop_oldest(op);
}

/*
 * The current group key's slice starting at 'start' (its key left in
 * 'key'), or NULL.  A slice at or after unstored_from is read from the
 * cache only (see add_to_window), and only a slice about to be put
 * ('put') enters the cache when absent there: most of the neighbours a
 * slice's windows look for are.
 */
static WinState *
slice_lookup(WindowOperator *op, StringInfo key, TimestampTz start, bool put)
{
	make_key(op, key, start);
	if (!slice_maybe_made(op, op->gk_hash, start))
		return put ? kstate_get_unstored(op->ks, key->data, key->len) : NULL;
	if (start < op->unstored_from)
		return kstate_get(op->ks, key->data, key->len);
	if (put)
		return kstate_get_unstored(op->ks, key->data, key->len);
	return kstate_peek_unstored(op->ks, key->data, key->len);
}

/* Bit j - 1: window start + j * slide (j = 1..nslices) of slice 'start'. */
#define WINDOW_BIT(j) (((uint32) 1) << ((j) - 1))

/*
 * The windows of slice 'start' (bit j - 1 for the window ending at start +
 * j * slide) that another slice of the current group key is in: the
 * nearest slice before it is in the first ones, the nearest after it in
 * the last ones.
 */
static uint32
shared_windows(WindowOperator *op, TimestampTz start)
{
	int			n = op->nslices;
	uint32		shared = 0;

	for (int k = 1; k < n; k++)
	{
		if (slice_lookup(op, &op->nkey, start - k * op->slice, false) != NULL)
		{
			/* it ends windows start + slide .. its start + size */
			for (int j = 1; j <= n - k; j++)
				shared |= WINDOW_BIT(j);
			break;
		}
	}
	for (int k = 1; k < n; k++)
	{
		if (slice_lookup(op, &op->nkey, start + k * op->slice, false) != NULL)
		{
			/* it is in windows from its start + slide on */
			for (int j = k + 1; j <= n; j++)
				shared |= WINDOW_BIT(j);
			break;
		}
	}
	return shared;
}

/*
 * Read the current group key's slices of the window ending at 'end' into
 * op->parts (oldest first, NULL where absent); how many there are.
 */
static int
window_slices(WindowOperator *op, TimestampTz end)
{
	int			found = 0;

	for (int i = 0; i < op->nslices; i++)
	{
		op->parts[i] = slice_lookup(op, &op->nkey,
									end - op->def->size + i * op->slice, false);
		if (op->parts[i] != NULL)
			found++;
	}
	return found;
}

/*
 * Emit the window ending at 'end' from its slices in op->parts: their
 * states combined in the scratch context, which emit resets.  The key
 * values shown are the oldest slice's (with a codec that is not exact).
 */
static void
emit_slices(WindowOperator *op, TimestampTz end, bool first)
{
	AggStates  *from[WINDOW_SLICES_MAX];
	KeyRepr    *repr = NULL;
	int			n = 0;

	for (int i = 0; i < op->nslices; i++)
	{
		if (op->parts[i] == NULL)
			continue;
		from[n++] = op->parts[i]->aggs;
		if (repr == NULL)
			repr = &op->parts[i]->repr;
	}
	Assert(n > 0);
	emit(op, repr, end - op->def->size, end,
		 agg_combine_in(op->aggs, op->scratch, n, from), first);
}

/*
 * A slice is gone (the watermark passed its last window's end plus the
 * allowed lateness): as window_gone.
 */
static void
slice_gone(WindowOperator *op, StringInfo key)
{
	kstate_forget(op->ks, key->data, key->len);
	op->gone[keyspace_key_group(key->data)] = true;
	op->any_gone = true;
}

/* A timer at 'end' of [kg]'E'[group key]: the next window end to fire. */
static void
register_window_end(WindowOperator *op, TimestampTz end)
{
	resetStringInfo(&op->nkey);
	keyspace_append_state_prefix(&op->nkey, KS_WINDOW_END, op->gk.data, op->gk.len);
	appendBinaryStringInfo(&op->nkey, op->gk.data, op->gk.len);
	timers_register(op->timers, end, op->nkey.data, op->nkey.len);
}

/*
 * Add an event to its slice [start, start + slide), or merge a partial of
 * its events; false if every window of the slice is gone.  A slice made
 * opens the windows no other slice of its key is in; those the watermark
 * passed already fire now, as the windows of a late event do.
 */
static bool
add_to_slice(WindowOperator *op, TupleTableSlot *event, TimestampTz start,
			 TimestampTz wm, AggStates *partial)
{
	PipelineDef *def = op->def;
	int			n = op->nslices;
	TimestampTz last_end = start + def->size;
	uint32		shared = ~((uint32) 0);	/* a slice there: all fired */
	WinState   *ws;

	if (last_end + def->allowed_lateness <= wm)
		return false;

	/*
	 * Before the first advance after a restart, 'wm' is the watermark the
	 * snapshot was taken at: its windows fired (operator.h).
	 */
	if (wm != DT_NOBEGIN)
		op->fired_wm = Max(op->fired_wm, Min(wm, END_TIMESTAMP - 1));
	op->gk_hash = slice_filter_hash(op->gk.data, op->gk.len);
	ws = slice_lookup(op, &op->skey, start, true);
	op->touched[keyspace_key_group(op->skey.data)] = true;
	if (ws == NULL)
	{
		TimestampTz first_open = 0;
		bool		any_open = false;

		ws = winstate_new(op, start);
		shared = shared_windows(op, start);
		slice_filter_add(op, start);
		for (int j = n; j >= 1; j--)
		{
			TimestampTz end = start + j * op->slice;

			if (end > wm)
			{
				first_open = end;
				any_open = true;
				if (!(shared & WINDOW_BIT(j)))
					count_open(op, 1);
			}
		}
		if (start + op->slice > wm)
			register_timer(op, start + op->slice);	/* its own */
		else
		{
			/* made late: its first open window, or its clean-up */
			if (any_open)
				register_window_end(op, first_open);
			else
				register_timer(op, last_end + def->allowed_lateness);
		}
	}
	if (partial)
		agg_combine(op->aggs, ws->aggs, partial);
	else
		agg_advance(op->aggs, ws->aggs, event);
	kstate_put(op->ks, op->skey.data, op->skey.len, ws);

	/*
	 * Late but allowed: the windows the watermark passed fire (again) with
	 * the new event; a window is in the sink if another slice of it is (a
	 * slice stays until its last window's clean-up).
	 */
	for (int j = 1; j <= n && start + j * op->slice <= wm; j++)
	{
		TimestampTz end = start + j * op->slice;

		if (end + def->allowed_lateness <= wm)
			continue;			/* gone */
		window_slices(op, end);
		emit_slices(op, end, !(shared & WINDOW_BIT(j)));
	}
	return true;
}

/*
 * Fire the current group key's window ending at 'end' (its count in the
 * key group of op->skey), and the windows after it the watermark passed
 * as well, as long as each is neither the next slice's own timer nor
 * without slices (see the file header).
 */
static void
fire_slices(WindowOperator *op, TimestampTz end, TimestampTz wm)
{
	PipelineDef *def = op->def;

	for (;;)
	{
		bool		more = false;

		if (window_slices(op, end) == 0)
			return;
		emit_slices(op, end, true);
		count_open(op, -1);

		/* the oldest slice's last window */
		if (op->parts[0] != NULL)
		{
			make_key(op, &op->nkey, end - def->size);
			if (end + def->allowed_lateness <= wm)
				slice_gone(op, &op->nkey);
			else
				timers_register(op->timers, end + def->allowed_lateness,
								op->nkey.data, op->nkey.len);
		}
		for (int i = 1; i < op->nslices; i++)
			more |= op->parts[i] != NULL;
		if (!more || slice_lookup(op, &op->nkey, end, false) != NULL)
			return;				/* no next window, or slice end's timer */
		end += op->slice;
		if (end > wm)
		{
			register_window_end(op, end);
			return;
		}
	}
}

/*
 * A timer of a slice, or of a window end, passed: fire its window, or drop
 * the slice after its last window's allowed lateness.
 */
static void
fire_sliced(WindowOperator *op, TimestampTz time, TimestampTz wm)
{
	uint16		kg = keyspace_key_group(op->skey.data);
	TimestampTz start;
	int64		fired_to;

	op->touched[kg] = true;
	op->gk_hash = slice_filter_hash(op->gk.data, op->gk.len);
	if (op->skey.data[KEYSPACE_KEY_GROUP_BYTES] == KS_WINDOW_END)
	{
		/* unless the window's newest slice fires it, as its own timer */
		if (slice_lookup(op, &op->nkey, time - op->slice, false) == NULL)
			fire_slices(op, time, wm);
		return;
	}
	start = read_time(op->skey.data + KEYSPACE_HEADER);
	if (time == start + op->slice)
	{
		/*
		 * After a restart, the first advance meets the slices' own timers
		 * from the start of time (timer_service.h).  The windows its key
		 * group fired up to at the snapshot fired then, with all that
		 * followed (timers, clean-ups) in the snapshot; those up to the
		 * restored watermark of a slice made since fired as it was made.
		 */
		if (time <= op->fired_before ||
			(kstate_counter_get(op->fired_to, kg, &fired_to) && time <= fired_to))
			return;
		fire_slices(op, time, wm);
	}
	else if (start + op->def->size + op->def->allowed_lateness <= wm &&
			 kstate_get(op->ks, op->skey.data, op->skey.len) != NULL)
		slice_gone(op, &op->skey);
}

/* Add slice 'start' of group key gk, in key group kg, to batch kb. */
static void
slice_key_add(KeyBatch *kb, uint16 kg, TimestampTz start, const char *gk, size_t gklen)
{
	StringInfo	key = kbatch_begin(kb);

	keyspace_append_prefix(key, kg, KS_SLICE);
	append_time(key, start);
	appendBinaryStringInfo(key, gk, gklen);
	kbatch_end(kb);
}

/*
 * The slices the next timers' windows combine (timer_prefetch_fn): for a
 * window's firing timer (a slice's own, or a window end's), its slices and
 * the one after them, which says whether to fire the next window.  Those
 * stored before the worker started are read in batches; those made since
 * are cached or absent, and their cache lines are brought in.
 */
static void
prefetch_slices(WindowOperator *op, int n, const TimestampTz *times,
				const char *const *skeys, const size_t *sklens)
{
	KeyBatch   *read = op->reads;
	KeyBatch   *cached = op->cached;

	for (int i = 0; i < n; i++)
	{
		const char *gk;
		size_t		gklen;
		uint64		h;
		uint16		kg = keyspace_key_group(skeys[i]);

		if (skeys[i][KEYSPACE_KEY_GROUP_BYTES] == KS_WINDOW_END)
		{
			gk = skeys[i] + KEYSPACE_HEADER;
			gklen = sklens[i] - KEYSPACE_HEADER;
		}
		else
		{
			if (times[i] != read_time(skeys[i] + KEYSPACE_HEADER) + op->slice)
				continue;		/* a clean-up */
			gk = skeys[i] + KEYSPACE_HEADER + 8;
			gklen = sklens[i] - KEYSPACE_HEADER - 8;
		}
		if (read->n + op->nslices + 1 > STATE_MULTI_GET_MAX)
			kstate_prefetch_batch(op->ks, read, true);
		if (cached->n + op->nslices + 1 > STATE_MULTI_GET_MAX)
			kstate_prefetch_batch(op->ks, cached, false);
		h = slice_filter_hash(gk, gklen);
		for (int k = 0; k <= op->nslices; k++)
		{
			TimestampTz start = times[i] - op->def->size + k * op->slice;

			if (!slice_maybe_made(op, h, start))
				continue;		/* absent */
			slice_key_add(start < op->unstored_from ? read : cached,
						  kg, start, gk, gklen);
		}
	}
	kstate_prefetch_batch(op->ks, read, true);
	kstate_prefetch_batch(op->ks, cached, false);
}

/*
 * Add an event to its key's sessions: its window [t, t + gap) merges with
 * every session it touches.  The merged session has at most one row in the
 * sink, under its start: a merged session's row under another start is
 * retracted, whether that session had fired or not (a session fired, then
 * extended past the watermark by an allowed late event, is no longer fired
 * but still has its row).
 */
static bool
process_session(WindowOperator *op, TupleTableSlot *event, TimestampTz t, TimestampTz wm)
{
	PipelineDef *def = op->def;
	MemoryContext old;
	SessionSet *set;
	TimestampTz start = t;
	TimestampTz end;
	Session		merged;
	int			kept = 0;

	if (!window_in_range(op, t, t, def->gap))
		return false;
	end = t + def->gap;

	make_state_key(op, 0);
	set = kstate_get(op->ks, op->skey.data, op->skey.len);

	/* The span of the new window merged with every session it touches. */
	for (int i = 0; set && i < set->n; i++)
	{
		Session    *s = &set->s[i];

		if (s->start <= end && s->end >= start)
		{
			start = Min(start, s->start);
			end = Max(end, s->end);
		}
	}
	if (end + def->allowed_lateness <= wm)
		return false;

	old = MemoryContextSwitchTo(kstate_memory(op->ks));
	if (set == NULL)
	{
		set = palloc(sizeof(SessionSet));
		set->n = 0;
		set->cap = 4;
		set->s = palloc(sizeof(Session) * set->cap);
	}
	merged.start = start;
	merged.end = end;
	merged.fired = false;
	merged.in_sink = false;
	merged.repr.len = 0;
	merged.repr.data = NULL;
	merged.aggs = agg_states_new(op->aggs);
	for (int i = 0; i < set->n; i++)
	{
		Session    *s = &set->s[i];

		if (s->start <= end && s->end >= start)
		{
			agg_combine(op->aggs, merged.aggs, s->aggs);
			if (merged.repr.data == NULL)
				merged.repr = s->repr;	/* one of the merged sessions' */
			if (!s->fired)
				count_open(op, -1);
			if (s->in_sink)
			{
				if (s->start == start)
					merged.in_sink = true;	/* replaced when it fires */
				else
					retract(op, &s->repr, s->start);
			}
		}
		else
			set->s[kept++] = *s;
	}
	set->n = kept;
	if (merged.repr.data == NULL)
		repr_set(op, &merged.repr);
	agg_advance(op->aggs, merged.aggs, event);
	if (set->n == set->cap)
	{
		set->cap *= 2;
		set->s = repalloc(set->s, sizeof(Session) * set->cap);
	}
	MemoryContextSwitchTo(old);

	count_open(op, 1);
	if (end <= wm)
	{
		emit(op, &merged.repr, start, end, merged.aggs, !merged.in_sink);
		merged.fired = true;
		merged.in_sink = true;
		count_open(op, -1);
		register_timer(op, end + def->allowed_lateness);
	}
	else
		register_timer(op, end);	/* firing registers the clean-up */
	set->s[set->n++] = merged;
	kstate_put(op->ks, op->skey.data, op->skey.len, set);
	return true;
}

bool
window_process(WindowOperator *op, TupleTableSlot *event, TimestampTz t, TimestampTz wm)
{
	TupleTableSlot *keys = event;

	op->late_reason = NULL;
	/* A query's WHERE comes first; its keys are expressions of the event. */
	if (op->sql && !sqlp_window_accept(op->sql, event, &keys))
		return true;			/* filtered out, not late */
	encode_group_key(&op->codec, keys, &op->gk);
	if (!op->codec.exact)
		kstate_encode_values(&op->codec, keys, &op->repr);
	if (op->def->window_kind == WINDOW_SESSION)
		return process_session(op, event, t, wm);
	return process_fixed(op, event, t, wm);
}

static bool windows_gone_below(WindowOperator *op, TimestampTz *below);

/*
 * Slice 'start' of group key gk (filter hash h) into the batch its lookup
 * will need (see slice_lookup): read from the store if it may be there,
 * else its cache lines only.  'made': add it only if it may exist.
 */
static void
slice_ahead(WindowOperator *op, TimestampTz start, const char *gk, size_t gklen,
			uint64 h, bool made)
{
	bool		maybe = slice_maybe_made(op, h, start);

	if (made && !maybe)
		return;
	slice_key_add(maybe && start < op->unstored_from ? op->reads : op->cached,
				  state_key_group(gk, gklen), start, gk, gklen);
}

/*
 * The events the next calls of window_process will take (operator.h):
 * their state's lookups prepared for all of them at once.  An event's
 * lookups: of its key's sessions; of each of its windows, if hopping
 * windows are kept whole; of its slice, and of the slice before it,
 * which a new slice looks for (shared_windows).  A slice the store may
 * hold is read with the others' (kstate_prefetch), the rest only have
 * their cache lines brought in.  Not for a query's pipeline: its WHERE and
 * keys are the user's expressions, evaluated once an event, by
 * window_process.
 */
static void
window_prefetch(WindowOperator *op, int n, TupleTableSlot *const *events,
				const TimestampTz *times)
{
	PipelineDef *def = op->def;
	KeyBatch   *kb = op->cached;
	TimestampTz gone;

	if (op->sql != NULL)
		return;

	/*
	 * Slices whose windows are all gone are not read: an event there is
	 * late, and such a slice may still be in the store, until the next
	 * flush deletes it (slice_gone).
	 */
	if (!windows_gone_below(op, &gone))
		gone = PG_INT64_MIN;
	for (int i = 0; i < n && op->reads->n + 2 <= STATE_MULTI_GET_MAX &&
		 kb->n + 2 <= STATE_MULTI_GET_MAX; i++)
	{
		const char *gk;
		size_t		gklen;
		TimestampTz start = 0;
		TimestampTz lowest = 0;

		/* outside the range of timestamps: process refuses it */
		if (def->window_kind != WINDOW_SESSION &&
			(!align_down(times[i], def->slide, &start) ||
			 pg_sub_s64_overflow(times[i], def->size, &lowest)))
			continue;
		encode_group_key(&op->codec, events[i], &op->ahead_gk);
		gk = op->ahead_gk.data;
		gklen = op->ahead_gk.len;
		if (op->slice != 0)
		{
			uint64		h = slice_filter_hash(gk, gklen);
			TimestampTz before;

			if (start < gone)
				continue;		/* late: process looks nothing up */
			slice_ahead(op, start, gk, gklen, h, false);
			if (!pg_sub_s64_overflow(start, op->slice, &before) && before >= gone)
				slice_ahead(op, before, gk, gklen, h, true);
			continue;
		}
		do
		{
			append_state_key(op, kbatch_begin(kb), start, gk, gklen);
			kbatch_end(kb);
		} while (def->window_kind != WINDOW_SESSION && !kbatch_full(kb) &&
				 !pg_sub_s64_overflow(start, def->slide, &start) && start > lowest);
	}
	kstate_prefetch_batch(op->ks, op->reads, true);
	kstate_prefetch_batch(op->ks, kb, false);
}

bool
window_merge_partial(WindowOperator *op, TupleTableSlot *event, TimestampTz start,
					 const char *states, size_t len, TimestampTz wm)
{
	AggStates  *partial;
	size_t		consumed;

	Assert(op->sql == NULL && op->def->window_kind != WINDOW_SESSION);
	op->late_reason = NULL;
	encode_group_key(&op->codec, event, &op->gk);
	if (!op->codec.exact)
		kstate_encode_values(&op->codec, event, &op->repr);
	/* in the state context, as the window's own states */
	partial = agg_deserialize(op->aggs, states, len, &consumed);
	if (op->slice)
		return add_to_slice(op, event, start, wm, partial);
	return add_to_window(op, event, start, wm, partial);
}

/*
 * A fixed window is gone (the watermark passed its end and allowed
 * lateness): out of the cache now, out of the store by range at the next
 * flush.
 */
static void
window_gone(WindowOperator *op)
{
	kstate_forget(op->ks, op->skey.data, op->skey.len);
	op->gone[keyspace_key_group(op->skey.data)] = true;
	op->any_gone = true;
}

/*
 * The start below which every window (or slice) is gone at fire_wm: start +
 * size + lateness <= fire_wm, so start < fire_wm - size - lateness + 1.
 * False if that is out of range.
 */
static bool
windows_gone_below(WindowOperator *op, TimestampTz *below)
{
	return !pg_sub_s64_overflow(op->fire_wm, op->def->size, below) &&
		!pg_sub_s64_overflow(*below, op->def->allowed_lateness, below) &&
		!pg_add_s64_overflow(*below, 1, below);
}

/*
 * Delete the windows gone since the last flush from the store: in each key
 * group with one, the range of windows starting from the last flush's
 * bound up to the first start a window still open (or within its allowed
 * lateness) can have.  A window is gone once the watermark passed its end
 * plus the allowed lateness, when its last timer fires, so every window
 * below the bound is gone, and none is added there again (an event for it
 * is late).
 */
static void
delete_gone(WindowOperator *op)
{
	TimestampTz below;
	StringInfoData lower,
				upper;

	if (!op->any_gone)
		return;
	op->any_gone = false;
	if (!windows_gone_below(op, &below))
		elog(ERROR, "window bound out of range");
	if (below <= op->gone_below)
	{
		/* (cannot be: a window gone since then starts at or above it) */
		memset(op->gone, 0, sizeof(op->gone));
		return;
	}
	initStringInfo(&lower);
	initStringInfo(&upper);
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		if (!op->gone[kg])
			continue;
		resetStringInfo(&lower);
		keyspace_append_prefix(&lower, kg, op->kind);
		if (op->gone_below != PG_INT64_MIN)
			append_time(&lower, op->gone_below);
		resetStringInfo(&upper);
		keyspace_append_prefix(&upper, kg, op->kind);
		append_time(&upper, below);
		kstate_delete_range(op->ks, lower.data, lower.len, upper.data, upper.len);
		op->gone[kg] = false;
	}
	op->gone_below = below;
	pfree(lower.data);
	pfree(upper.data);
}

/* A timer of a fixed window passed: fire it, or drop it after lateness. */
static void
fire_fixed(WindowOperator *op, TimestampTz wm)
{
	PipelineDef *def = op->def;
	TimestampTz start = read_time(op->skey.data + KEYSPACE_HEADER);
	TimestampTz end = start + def->size;
	WinState   *ws = kstate_get(op->ks, op->skey.data, op->skey.len);

	if (ws == NULL)
		return;
	if (!ws->fired)
	{
		emit(op, &ws->repr, start, end, ws->aggs, true);
		ws->fired = true;
		count_open(op, -1);
		kstate_put(op->ks, op->skey.data, op->skey.len, ws);
	}
	if (end + def->allowed_lateness <= wm)
		window_gone(op);
	else
		register_timer(op, end + def->allowed_lateness);
}

static void
fire_sessions(WindowOperator *op, TimestampTz wm)
{
	PipelineDef *def = op->def;
	SessionSet *set = kstate_get(op->ks, op->skey.data, op->skey.len);
	int			kept = 0;

	if (set == NULL)
		return;
	for (int i = 0; i < set->n; i++)
	{
		Session    *s = &set->s[i];

		if (s->end <= wm && !s->fired)
		{
			emit(op, &s->repr, s->start, s->end, s->aggs, !s->in_sink);
			s->fired = true;
			s->in_sink = true;
			count_open(op, -1);
			if (s->end + def->allowed_lateness > wm)
				register_timer(op, s->end + def->allowed_lateness);
		}
		if (s->end + def->allowed_lateness > wm)
			set->s[kept++] = *s;
		else
			session_free(op, s);
	}
	set->n = kept;
	if (kept == 0)
		kstate_delete(op->ks, op->skey.data, op->skey.len);
	else
		kstate_put(op->ks, op->skey.data, op->skey.len, set);
}

/* A timer of state key skey passed (timer_fire_fn). */
static void
fire_timer(void *arg, TimestampTz time, const char *skey, size_t sklen)
{
	WindowOperator *op = (WindowOperator *) arg;

	resetStringInfo(&op->skey);
	appendBinaryStringInfo(&op->skey, skey, sklen);
	/* The group key is the state key less key group, kind (and start). */
	resetStringInfo(&op->gk);
	if (keyspace_leading_time(skey[KEYSPACE_KEY_GROUP_BYTES]) == 0)
		appendBinaryStringInfo(&op->gk, skey + KEYSPACE_HEADER,
							   sklen - KEYSPACE_HEADER);
	else
		appendBinaryStringInfo(&op->gk, skey + KEYSPACE_HEADER + 8,
							   sklen - KEYSPACE_HEADER - 8);
	if (op->def->window_kind == WINDOW_SESSION)
		fire_sessions(op, op->fire_wm);
	else if (op->slice)
		fire_sliced(op, time, op->fire_wm);
	else
		fire_fixed(op, op->fire_wm);

	/*
	 * The cache within its bound while firing too, as cep.c's fire_timer:
	 * the windows of one end fire in one advance, and each fired window
	 * stays in the cache (a deletion to write back) until it is evicted.
	 */
	window_maybe_flush(op);
}

void
window_advance(WindowOperator *op, TimestampTz wm)
{
	if (wm == DT_NOBEGIN)
		return;
	/* No window ends later. */
	op->fire_wm = Min(wm, END_TIMESTAMP - 1);
	op->fired_before = op->fired_wm;
	op->fired_wm = Max(op->fired_wm, op->fire_wm);
	timers_advance(op->timers, op->fire_wm, fire_timer, op);
	if (op->nfilters > 0)
	{
		TimestampTz below;

		if (windows_gone_below(op, &below))
			slice_filters_gone(op, below);
	}
	if (op->sql)
		sqlp_window_fired(op->sql, op->sink, op->out);
}

void
window_maybe_flush(WindowOperator *op)
{
	if (kstate_full(op->ks))
	{
		kstate_evict(op->ks);
		/* the windows made so far may be in the store now, and not cached */
		if (op->new_max != PG_INT64_MIN)
			op->unstored_from = Max(op->unstored_from, op->new_max + 1);
	}
	if (timers_over_budget(op->timers))
	{
		/*
		 * The windows first: a fixed window's pending timer is dropped by
		 * the timers' flush, its key being its timer (implicit timers).
		 */
		kstate_flush(op->ks);
		timers_flush(op->timers);
	}
}

void
window_flush(WindowOperator *op)
{
	delete_gone(op);
	kstate_counter_stage(op->open, op->ks);
	if (op->slice && op->fired_wm != PG_INT64_MIN)
	{
		/*
		 * The watermark windows fired up to, for the key groups whose slices
		 * changed since the last flush: another key group's windows none of
		 * which fired since then read the same by its older mark.
		 */
		for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
		{
			char		kgkey[KEYSPACE_KEY_GROUP_BYTES] = {(char) (kg >> 8), (char) (kg & 0xFF)};

			if (!op->touched[kg])
				continue;
			kstate_counter_set(op->fired_to, kgkey, op->fired_wm);
			op->touched[kg] = false;
		}
		kstate_counter_stage(op->fired_to, op->ks);
	}
	/* the counters go with the windows (kstate_counter_stage) */
	kstate_flush(op->ks);
	timers_flush(op->timers);
}

/* Windows fold an event in at once: its message is the worker's concern. */
static bool
window_process_op(void *op, TupleTableSlot *event, TimestampTz t, TimestampTz wm,
				  SfMessagePos pos)
{
	return window_process((WindowOperator *) op, event, t, wm);
}

static void
window_advance_op(void *op, TimestampTz wm)
{
	window_advance((WindowOperator *) op, wm);
}

static void
window_maybe_flush_op(void *op)
{
	window_maybe_flush((WindowOperator *) op);
}

static void
window_flush_op(void *op)
{
	window_flush((WindowOperator *) op);
}

static int64
window_open_count_op(void *op)
{
	return window_open_count((WindowOperator *) op);
}

static const char *
window_late_reason_op(void *op)
{
	return ((WindowOperator *) op)->late_reason;
}

static void
window_prefetch_op(void *op, int n, TupleTableSlot *const *events,
				   const TimestampTz *times)
{
	window_prefetch((WindowOperator *) op, n, events, times);
}

const OperatorMethods window_operator_methods = {
	.process = window_process_op,
	.advance = window_advance_op,
	.maybe_flush = window_maybe_flush_op,
	.flush = window_flush_op,
	.open_count = window_open_count_op,
	.late_reason = window_late_reason_op,
	.prefetch = window_prefetch_op
};

/* --- live reads -------------------------------------------------------- */

/* A slice read by window_scan_open: its group key and start. */
typedef struct ScanSlice
{
	char	   *gk;
	uint32		gklen;
	TimestampTz start;
	WinState   *ws;
} ScanSlice;

static int
scan_slice_cmp(const void *a, const void *b)
{
	const ScanSlice *x = (const ScanSlice *) a;
	const ScanSlice *y = (const ScanSlice *) b;
	int			c = memcmp(x->gk, y->gk, Min(x->gklen, y->gklen));

	if (c != 0)
		return c;
	if (x->gklen != y->gklen)
		return x->gklen < y->gklen ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

/*
 * The open windows of one key group's slices (n of them, in group key and
 * start order): each window ending after the watermark its key group's
 * windows fired up to ('fired_to'), with the slices it has.
 */
static void
scan_open_slices(WindowOperator *op, ScanSlice *sl, int n, TimestampTz fired_to,
				 window_visit_fn fn, void *arg, Datum *keys, bool *keynulls,
				 Datum *values, bool *nulls)
{
	PipelineDef *def = op->def;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink live window",
											  ALLOCSET_DEFAULT_SIZES);

	qsort(sl, n, sizeof(ScanSlice), scan_slice_cmp);
	for (int lo = 0, hi; lo < n; lo = hi)
	{
		/* sl[lo..hi): one group key's slices */
		for (hi = lo + 1; hi < n && sl[hi].gklen == sl[lo].gklen &&
			 memcmp(sl[hi].gk, sl[lo].gk, sl[lo].gklen) == 0; hi++)
			;
		decode_group_key(&op->codec, sl[lo].gk, op->codec.exact ? keys : NULL, keynulls);
		for (TimestampTz end = sl[lo].start + op->slice;
			 end <= sl[hi - 1].start + def->size; end += op->slice)
		{
			AggStates  *from[WINDOW_SLICES_MAX];
			int			k = 0;
			MemoryContext old;

			if (end <= fired_to)
				continue;
			for (int i = lo; i < hi; i++)
				if (sl[i].start >= end - def->size && sl[i].start < end)
				{
					if (k == 0 && !op->codec.exact)
						kstate_decode_values(&op->codec, sl[i].ws->repr.data, keys, keynulls);
					from[k++] = sl[i].ws->aggs;
				}
			if (k == 0)
				continue;
			old = MemoryContextSwitchTo(cxt);
			agg_final(op->aggs, agg_combine_in(op->aggs, cxt, k, from), values, nulls);
			fn(arg, keys, keynulls, end - def->size, end, values, nulls);
			MemoryContextSwitchTo(old);
			MemoryContextReset(cxt);
		}
	}
	MemoryContextDelete(cxt);
}

void
window_scan_open(PipelineDef *def, StateStore *store, window_visit_fn fn, void *arg)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink live",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	WindowOperator op;
	StateIter  *it;
	const char *key,
			   *val;
	size_t		klen,
				vlen;
	int			naggs;
	Datum	   *keys = palloc(sizeof(Datum) * Max(def->nkeys, 1));
	bool	   *keynulls = palloc(sizeof(bool) * Max(def->nkeys, 1));
	Datum	   *values;
	bool	   *nulls;
	StringInfoData lower,
				upper;
	ScanSlice  *slices = NULL;
	int			nslices = 0;
	int			maxslices = 0;

	memset(&op, 0, sizeof(op));
	op.def = def;
	op.aggs = agg_spec_load(def->aggregates_tree, cxt);
	codec_init(&op.codec, def);
	naggs = agg_count(op.aggs);
	values = palloc(sizeof(Datum) * naggs);
	nulls = palloc(sizeof(bool) * naggs);
	window_layout(&op);
	if (op.slice)
		op.fired_to = kstate_counter_open(store, KS_COUNTER_FIRED_TO);

	initStringInfo(&lower);
	initStringInfo(&upper);

	/* The window (or session, or slice) keys of each key group. */
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		keyspace_kind_range(kg, op.kind, &lower, &upper);
		it = state_iter_create(store, lower.data, lower.len, upper.data, upper.len);
		while (state_iter_next(it, &key, &klen, &val, &vlen))
		{
			if (op.slice)
			{
				ScanSlice  *ss;

				if (nslices == maxslices)
				{
					maxslices = Max(64, maxslices * 2);
					slices = slices ? repalloc(slices, sizeof(ScanSlice) * maxslices) :
						palloc(sizeof(ScanSlice) * maxslices);
				}
				ss = &slices[nslices++];
				ss->gklen = klen - KEYSPACE_HEADER - 8;
				ss->gk = palloc(ss->gklen);
				memcpy(ss->gk, key + KEYSPACE_HEADER + 8, ss->gklen);
				ss->start = read_time(key + KEYSPACE_HEADER);
				ss->ws = winstate_deserialize(&op, val, vlen);
				continue;
			}
			/* the group key: after the window's start, if it has one */
			decode_group_key(&op.codec,
							 key + KEYSPACE_HEADER + (def->window_kind == WINDOW_SESSION ? 0 : 8),
							 op.codec.exact ? keys : NULL, keynulls);
			if (def->window_kind == WINDOW_SESSION)
			{
				SessionSet *set = winstate_deserialize(&op, val, vlen);

				for (int i = 0; i < set->n; i++)
				{
					if (set->s[i].fired)
						continue;
					if (!op.codec.exact)
						kstate_decode_values(&op.codec, set->s[i].repr.data, keys, keynulls);
					agg_final(op.aggs, set->s[i].aggs, values, nulls);
					fn(arg, keys, keynulls, set->s[i].start, set->s[i].end, values, nulls);
				}
			}
			else
			{
				WinState   *ws = winstate_deserialize(&op, val, vlen);
				TimestampTz start = read_time(key + KEYSPACE_HEADER);

				if (ws->fired)
					continue;
				if (!op.codec.exact)
					kstate_decode_values(&op.codec, ws->repr.data, keys, keynulls);
				agg_final(op.aggs, ws->aggs, values, nulls);
				fn(arg, keys, keynulls, start, start + def->size, values, nulls);
			}
		}
		state_iter_destroy(it);
		if (nslices > 0)
		{
			int64		fired_to;

			if (!kstate_counter_get(op.fired_to, kg, &fired_to))
				fired_to = PG_INT64_MIN;
			scan_open_slices(&op, slices, nslices, fired_to, fn, arg,
							 keys, keynulls, values, nulls);
			nslices = 0;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}
