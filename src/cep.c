/*-------------------------------------------------------------------------
 *
 * cep.c
 *	  The NFA operator of pattern pipelines.
 *
 * State layout in the pipeline's RocksDB database (see keyspace.h):
 *
 *	 buffer	  [key group:2]'B'[group key] -> events not yet passed by the watermark
 *	 nfa	  [key group:2]'N'[group key] -> partial matches and their events
 *	 timers of the buffer keys (timer_service.h), and per key group the
 *	 number of partial matches and of those discarded by the bound
 *	 (KS_COUNTER_PARTIAL_MATCHES, KS_COUNTER_DROPPED_MATCHES)
 *
 * A timer is registered at each buffered event's time and at the time the
 * oldest partial match of a key times out; when the watermark passes it,
 * the key's buffered events up to the watermark are run through its NFA.
 *
 * The NFA.  A partial match is a position in the pattern -- element i,
 * 'count' events taken by it -- and the events taken so far.  For one
 * event, a partial match may (as the edges of Flink's compiled NFA):
 *	 take it into element i again (a loop), if count < max;
 *	 ignore it and wait in element i, if the contiguity into element i
 *	   (or between its iterations) is relaxed and the event does not satisfy
 *	   i's condition, or is non-deterministic relaxed; a match that ignored
 *	   an event is committed to element i ("committed": it may not proceed
 *	   past i any more, as Flink's ignore states have no proceed edge);
 *	 proceed, if count >= min (or 0 in an optional element: can_leave)
 *	   and not committed (and, for a greedy element, the event does not
 *	   satisfy i's condition), to element i+1: take the
 *	   event there or wait there (same rules), and further through optional
 *	   elements.
 * Negations are Flink's stop states (NFACompiler): a notNext is a state
 * that proceeds to a stop state on the negated event; a notFollowedBy gives
 * a stop state to the first state of the element after it (and of optional
 * ones further on), and to every inner state of a loop or times right
 * before it (addStopStateToLooping; own_stop() has the details).  When
 * the event reaches a stop state from a partial match's state, directly or
 * by proceeding, everything the event makes of that partial match is
 * discarded -- the take, the branch that ignores the event inside a loop,
 * the proceed -- as NFA.doProcess does; completed matches stay.
 * Greedy, as Flink's NFACompiler.updateWithGreedyCondition: every edge
 * (take, ignore, proceed) of the first state of the element after a greedy
 * one gets "and not the greedy variable's condition".  So besides not
 * proceeding out of a greedy element on an event it could take, a match
 * waiting for the first event of the next element dies on any event that
 * satisfies the greedy variable (unless that element is optional: Flink
 * waits in a separate ignore state then, which keeps its edges).  Greedy
 * has an effect only on a loop or a range ({n,m}, m > n), as in Flink.
 * A greedy loop that leaves because its until condition holds goes to
 * Flink's copy of the next state without that condition (the partial
 * match is "unguarded").
 * After a take, the partial match is complete if count >= min and every
 * later element is optional: it is emitted, and it continues if it can
 * take more.  Every event also tries to start a match at element 0 (the
 * start state, which never waits).
 *
 * Groups (pattern.c expands them into copies of their elements): a copy
 * that may be skipped starts with an element whose 'skips' say where
 * skipping it leads, and the last element of a looping copy proceeds back
 * to the copy's first element ('loops') as well as onwards.  Proceeding
 * walks these edges (leave, enter), entering each element once per walk.
 *
 * A pattern ending in a negation (Flink allows notNext last, and
 * notFollowedBy last with a window only): a match that proceeds out of the
 * last element, or fills it, goes to element nelems - 1 with count 0, the
 * state after it.  The negated event ends it there, as it ends a match in
 * the last element that can proceed (past its minimum, not committed), and
 * for notFollowedBy also one in any inner state of that element (the stop
 * states above).  After a notNext any other event
 * completes it, without that event; after a notFollowedBy it waits (Flink's
 * pending state) until its within window ends: it is then a match, as is
 * one still in the last element past its minimum (FLINK-31040), instead of
 * a timeout.  Time is advanced before each event (NFA.advanceTime), so an
 * event at the window's end comes too late to cancel it.
 *
 * Completed matches (Flink's NFA.processMatchesAccordingToSkipStrategy):
 * without a skip strategy each is emitted at once.  With one, a match is
 * emitted only once no open partial match of the key started before it
 * (an earlier-started match goes first and may prune it); until then it
 * waits in the key's NFA state, in the order of its first event.  Each
 * emitted match prunes open partial matches and waiting matches as the
 * strategy says.  A waiting match is released when the partial matches
 * that held it back die, complete or time out.
 *
 * Events are kept once per key ("shared buffer" light): partial and
 * waiting matches refer to them by their position in the key's processing
 * order, and events none refers to are dropped when the state is saved.
 *
 * Time.  A partial match's deadline is its first event's time plus
 * 'within' (overflow-checked: one past the timestamp range never comes).
 * Deadlines pass one at a time, in time order, each followed by the skip
 * strategy, and before the events at or after their time; so the results
 * do not depend on how far the watermark moves at once (see advance_time).
 *
 * Bounds.  After each event a key keeps at most max_partial_matches
 * partial matches holding at most max_partial_match_events events together
 * (completed matches waiting for the skip strategy count too), in creation
 * order; the rest are discarded and counted (nfa_event).  The NFA's loops
 * check for interrupts and for a requested termination
 * (cep_check_interrupts), so a worker busy with many partial matches still
 * stops.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "cep.h"
#include "keyed_state.h"
#include "keyspace.h"
#include "pattern.h"
#include "timer_service.h"

/* An event waiting for the watermark. */
typedef struct BufEvent
{
	TimestampTz time;
	int64		arrival;		/* tie-breaker: arrival order per key */
	SfMessagePos source;		/* its Kafka message, for poison messages */
	uint32		len;
	char	   *data;			/* HeapTupleHeader of the event row */
} BufEvent;

typedef struct EventBuffer
{
	int64		next_arrival;
	int			n;
	int			cap;
	BufEvent   *ev;
} EventBuffer;

/* An event some partial match refers to. */
typedef struct StoredEvent
{
	int64		pos;			/* processing order within the key */
	TimestampTz time;
	uint32		len;
	char	   *data;
	bool		used;			/* scratch, for saving */
} StoredEvent;

typedef struct MatchRef
{
	int16		var;
	int64		pos;
} MatchRef;

/*
 * The events of partial matches, shared: a partial match sees the first n
 * entries of its array.  What one event makes of a partial match (take it,
 * ignore it, ...) shares the array; a take appends in place when nobody
 * has appended past its n yet ('used'), else copies.  So a step costs O(1)
 * per partial match, not O(its events) (a{1000} copied 1000 references per
 * partial match and event).  An array is freed when the last partial match
 * sharing it goes (pm_release): replaced by its successors, discarded,
 * emitted, timed out or pruned.
 */
typedef struct RefArray
{
	int32		used;			/* entries some partial match has taken */
	int32		cap;
	int32		nowners;		/* partial matches sharing it */
	MatchRef	refs[FLEXIBLE_ARRAY_MEMBER];
} RefArray;

typedef struct PartialMatch
{
	int16		elem;
	int32		count;
	bool		committed;
	bool		unguarded;		/* waits in Flink's copy of the state after a
								 * greedy loop that its until ended (no
								 * greedy condition on its edges) */
	int64		start_pos;
	TimestampTz start_time;
	int			n;
	MatchRef   *refs;			/* ra->refs */
	RefArray   *ra;
	int			order;			/* scratch: creation order within a step */
} PartialMatch;

typedef struct NfaState
{
	int64		next_pos;
	int			nev;
	int			evcap;
	StoredEvent *ev;
	int			npm;
	PartialMatch **pms;
	int			nwait;			/* completed, waiting to be emitted */
	int			waitcap;
	PartialMatch **wait;		/* by first event, then completion */
} NfaState;

struct CepOperator
{
	PipelineDef *def;
	StateStore *store;
	Sink	   *sink;
	Poison	   *poison;		/* the worker's, or NULL (poison.h) */
	SideOutput *side;			/* dead letters of poison events */
	TupleDesc	desc;
	CompiledPattern *cp;
	KeyCodec	codec;
	KeyedState *ks_buf;
	KeyedState *ks_nfa;
	SinkOutput *out_match;		/* "result" */
	SinkOutput *out_timeout;	/* "timed_out", or NULL */
	MemoryContext scratch;		/* per key firing */
	ExprContext *econtext;
	TupleTableSlot *cur_slot;	/* the event being processed */
	HeapTupleData cur_tuple;
	TupleTableSlot *nav_slot;	/* matched events, for aggregates */
	HeapTupleData nav_tuple;
	StoredEvent *cur;
	int8	   *cond_cache;		/* per variable: -1 unknown, 0, 1 */
	uint32	   *seen;			/* per element: entered in walk seen_gen */
	uint32		seen_gen;
	int			eval_expr;		/* expression being evaluated, for errors */
	bool		in_cond;		/* evaluating a condition (cond) */
	TimerService *timers;
	KeyGroupCounter *open;		/* partial matches */
	KeyGroupCounter *dropped;	/* partial matches discarded by the bound */
	TimestampTz fire_wm;		/* the watermark timers fire up to */
	TimestampTz dropped_logged; /* when the last LOG about them was written */
	TimestampTz busy_since;		/* start of the current cep_advance */
	StringInfoData gk;
	StringInfoData bkey;
	StringInfoData nkey;
	KeyBatch   *ahead;			/* buffer keys of the events told of ahead
								 * (cep_prefetch) */
	StringInfoData ahead_gk;
	Datum	   *values;			/* sink row */
	bool	   *nulls;
	int			nkeys;
};

/*
 * Called in the NFA's loops, which can run long on a pattern with many
 * partial matches: a cancel or die interrupt, and a termination the worker
 * was asked for (its SIGTERM handler only sets sf_termination_requested, so
 * that a stop between batches ends with a checkpoint).  A step that has run
 * for a second when the signal comes is abandoned: the worker exits, and the
 * work since the last checkpoint is done again at the next start (its sink
 * rows are in the epoch's transaction, which is not committed).
 */
static inline void
cep_check_interrupts(CepOperator *op)
{
	CHECK_FOR_INTERRUPTS();
	if (unlikely(sf_termination_requested) &&
		GetCurrentTimestamp() - op->busy_since >= USECS_PER_SEC)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("streamflink pattern pipeline \"%s\" stops in the middle of a long NFA step",
						op->def->name),
				 errdetail("Its work since the last checkpoint is done again at its next start.")));
}

/*
 * Partial matches the bound discarded: counted (in the checkpointed state,
 * and in streamflink.pipelines) and logged at most once a minute.
 */
static void
count_dropped(CepOperator *op, int64 n)
{
	TimestampTz now = GetCurrentTimestamp();

	kstate_counter_add(op->dropped, op->bkey.data, n);
	if (op->dropped_logged == 0 || now - op->dropped_logged >= 60 * USECS_PER_SEC)
	{
		ereport(LOG,
				(errmsg("streamflink pattern pipeline \"%s\" discarded partial matches over its bound, %lld so far",
						op->def->name, (long long) kstate_counter_total(op->dropped)),
				 errdetail("A key may hold at most %d partial matches with %d events together (max_partial_matches, max_partial_match_events).",
						   op->def->max_partial_matches, op->def->max_partial_match_events),
				 errhint("Bound the pattern with within, make its loops stricter, or raise the bounds.")));
		op->dropped_logged = now;
	}
}

/* --- state objects -------------------------------------------------------- */

#define PUT(buf, v) appendBinaryStringInfo((buf), (char *) &(v), sizeof(v))
#define GET(p, v) (memcpy(&(v), (p), sizeof(v)), (p) += sizeof(v))

static char *
copy_bytes(const char *p, uint32 len)
{
	char	   *d = palloc(len);

	memcpy(d, p, len);
	return d;
}

static void *
buffer_deserialize(void *arg, const char *data, size_t len)
{
	EventBuffer *b = palloc(sizeof(EventBuffer));
	const char *p = data;
	int32		n;

	GET(p, b->next_arrival);
	GET(p, n);
	b->n = n;
	b->cap = Max(n, 4);
	b->ev = palloc(sizeof(BufEvent) * b->cap);
	for (int i = 0; i < n; i++)
	{
		GET(p, b->ev[i].time);
		GET(p, b->ev[i].arrival);
		GET(p, b->ev[i].source.partition);
		GET(p, b->ev[i].source.offset);
		GET(p, b->ev[i].len);
		b->ev[i].data = copy_bytes(p, b->ev[i].len);
		p += b->ev[i].len;
	}
	return b;
}

static void
buffer_serialize(void *arg, void *obj, StringInfo buf)
{
	EventBuffer *b = (EventBuffer *) obj;
	int32		n = b->n;

	PUT(buf, b->next_arrival);
	PUT(buf, n);
	for (int i = 0; i < n; i++)
	{
		PUT(buf, b->ev[i].time);
		PUT(buf, b->ev[i].arrival);
		PUT(buf, b->ev[i].source.partition);
		PUT(buf, b->ev[i].source.offset);
		PUT(buf, b->ev[i].len);
		appendBinaryStringInfo(buf, b->ev[i].data, b->ev[i].len);
	}
}

static const KeyedStateOps buffer_ops = {buffer_deserialize, buffer_serialize};

/*
 * The NFA state of a key is kept serialized in the cache (a StringInfo):
 * a firing decodes it into scratch memory, runs events through it and
 * encodes it again, so the cache's memory does not grow with every event.
 */
static void *
blob_deserialize(void *arg, const char *data, size_t len)
{
	StringInfo	s = makeStringInfo();

	appendBinaryStringInfo(s, data, len);
	return s;
}

static void
blob_serialize(void *arg, void *obj, StringInfo buf)
{
	StringInfo	s = (StringInfo) obj;

	appendBinaryStringInfo(buf, s->data, s->len);
}

static const KeyedStateOps blob_ops = {blob_deserialize, blob_serialize};

static NfaState *
nfa_new(void)
{
	NfaState   *nfa = palloc0(sizeof(NfaState));

	nfa->evcap = 16;
	nfa->ev = palloc(sizeof(StoredEvent) * nfa->evcap);
	nfa->pms = palloc(sizeof(PartialMatch *) * 16);
	nfa->waitcap = 4;
	nfa->wait = palloc(sizeof(PartialMatch *) * nfa->waitcap);
	return nfa;
}

static RefArray *
ref_array_new(int cap)
{
	RefArray   *ra = palloc(offsetof(RefArray, refs) + sizeof(MatchRef) * cap);

	ra->used = 0;
	ra->cap = cap;
	ra->nowners = 1;
	return ra;
}

static void
pm_release(PartialMatch *pm)
{
	if (--pm->ra->nowners == 0)
		pfree(pm->ra);
	pfree(pm);
}

static PartialMatch *
pm_decode(const char **pp)
{
	PartialMatch *pm = palloc(sizeof(PartialMatch));
	const char *p = *pp;
	char		committed;

	GET(p, pm->elem);
	GET(p, pm->count);
	GET(p, committed);
	pm->committed = (committed & 1) != 0;
	pm->unguarded = (committed & 2) != 0;
	GET(p, pm->start_pos);
	GET(p, pm->start_time);
	GET(p, pm->n);
	pm->ra = ref_array_new(pm->n + 4);
	pm->ra->used = pm->n;
	pm->refs = pm->ra->refs;
	for (int j = 0; j < pm->n; j++)
	{
		GET(p, pm->refs[j].var);
		GET(p, pm->refs[j].pos);
	}
	*pp = p;
	return pm;
}

static void
pm_encode(PartialMatch *pm, StringInfo buf)
{
	char		committed = (pm->committed ? 1 : 0) | (pm->unguarded ? 2 : 0);

	PUT(buf, pm->elem);
	PUT(buf, pm->count);
	PUT(buf, committed);
	PUT(buf, pm->start_pos);
	PUT(buf, pm->start_time);
	PUT(buf, pm->n);

	/* The events: one enlargement, then plain copies (the hot part). */
	enlargeStringInfo(buf, pm->n * (sizeof(int16) + sizeof(int64)));
	for (int j = 0; j < pm->n; j++)
	{
		char	   *d = buf->data + buf->len;

		memcpy(d, &pm->refs[j].var, sizeof(int16));
		memcpy(d + sizeof(int16), &pm->refs[j].pos, sizeof(int64));
		buf->len += sizeof(int16) + sizeof(int64);
	}
	buf->data[buf->len] = '\0';
}

static NfaState *
nfa_decode(StringInfo s)
{
	NfaState   *nfa = palloc0(sizeof(NfaState));
	const char *p = s->data;
	int32		n;

	GET(p, nfa->next_pos);
	GET(p, n);
	nfa->nev = n;
	nfa->evcap = Max(n * 2, 16);
	nfa->ev = palloc(sizeof(StoredEvent) * nfa->evcap);
	for (int i = 0; i < n; i++)
	{
		StoredEvent *e = &nfa->ev[i];

		GET(p, e->pos);
		GET(p, e->time);
		GET(p, e->len);
		e->data = copy_bytes(p, e->len);
		p += e->len;
	}
	GET(p, n);
	nfa->npm = n;
	nfa->pms = palloc(sizeof(PartialMatch *) * Max(n, 16));
	for (int i = 0; i < n; i++)
		nfa->pms[i] = pm_decode(&p);

	/* Waiting matches come last (a state saved without them has none). */
	n = 0;
	if (p < s->data + s->len)
		GET(p, n);
	nfa->nwait = n;
	nfa->waitcap = Max(n, 4);
	nfa->wait = palloc(sizeof(PartialMatch *) * nfa->waitcap);
	for (int i = 0; i < n; i++)
		nfa->wait[i] = pm_decode(&p);
	return nfa;
}

static StoredEvent *
find_event(NfaState *nfa, int64 pos)
{
	int			lo = 0,
				hi = nfa->nev - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (nfa->ev[mid].pos == pos)
			return &nfa->ev[mid];
		if (nfa->ev[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	elog(ERROR, "streamflink: event %lld of a partial match is missing", (long long) pos);
	return NULL;
}

/* Mark the events a partial match refers to; idx: position -> index, or NULL. */
static void
mark_events(NfaState *nfa, PartialMatch *pm, int *idx, int64 base)
{
	for (int j = 0; j < pm->n; j++)
	{
		int64		off = pm->refs[j].pos - base;

		if (idx && off >= 0 && off < nfa->next_pos - base && idx[off] >= 0)
			nfa->ev[idx[off]].used = true;
		else
			find_event(nfa, pm->refs[j].pos)->used = true;	/* or its error */
	}
}

/* Encode, keeping only events that partial or waiting matches refer to. */
static void
nfa_encode(NfaState *nfa, StringInfo buf)
{
	int32		n = 0;
	int		   *idx = NULL;
	int64		base = nfa->nev > 0 ? nfa->ev[0].pos : 0;

	/*
	 * Positions are dense (one per event of the key, kept from the oldest
	 * one referred to): map them to indexes directly when they are, rather
	 * than search for each reference.
	 */
	if (nfa->nev > 0 && nfa->next_pos - base <= 4 * (int64) nfa->nev + 64)
	{
		int			span = nfa->next_pos - base;

		idx = palloc(sizeof(int) * span);
		for (int i = 0; i < span; i++)
			idx[i] = -1;
		for (int i = 0; i < nfa->nev; i++)
			idx[nfa->ev[i].pos - base] = i;
	}
	for (int i = 0; i < nfa->nev; i++)
		nfa->ev[i].used = false;
	for (int i = 0; i < nfa->npm; i++)
		mark_events(nfa, nfa->pms[i], idx, base);
	for (int i = 0; i < nfa->nwait; i++)
		mark_events(nfa, nfa->wait[i], idx, base);
	for (int i = 0; i < nfa->nev; i++)
		n += nfa->ev[i].used;
	if (idx)
		pfree(idx);

	PUT(buf, nfa->next_pos);
	PUT(buf, n);
	for (int i = 0; i < nfa->nev; i++)
	{
		StoredEvent *e = &nfa->ev[i];

		if (!e->used)
			continue;
		PUT(buf, e->pos);
		PUT(buf, e->time);
		PUT(buf, e->len);
		appendBinaryStringInfo(buf, e->data, e->len);
	}
	n = nfa->npm;
	PUT(buf, n);
	for (int i = 0; i < nfa->npm; i++)
		pm_encode(nfa->pms[i], buf);
	n = nfa->nwait;
	PUT(buf, n);
	for (int i = 0; i < nfa->nwait; i++)
		pm_encode(nfa->wait[i], buf);
}

/* --- keys ------------------------------------------------------------------ */

/* The partial-match NFA's key of the key whose event buffer is bkey. */
static void
append_nfa_key(StringInfo nkey, const char *bkey, size_t bklen)
{
	keyspace_append_prefix(nkey, keyspace_key_group(bkey), KS_CEP_NFA);
	appendBinaryStringInfo(nkey, bkey + KEYSPACE_HEADER, bklen - KEYSPACE_HEADER);
}

/* The key of group key gk's buffered events. */
static void
append_buffer_key(StringInfo key, const char *gk, int gklen)
{
	keyspace_append_state_prefix(key, KS_CEP_BUFFER, gk, gklen);
	appendBinaryStringInfo(key, gk, gklen);
}

static void
make_keys(CepOperator *op)
{
	resetStringInfo(&op->bkey);
	append_buffer_key(&op->bkey, op->gk.data, op->gk.len);
	resetStringInfo(&op->nkey);
	append_nfa_key(&op->nkey, op->bkey.data, op->bkey.len);
}

/* --- conditions ------------------------------------------------------------ */

static void
store_event(TupleTableSlot *slot, HeapTupleData *tup, StoredEvent *e)
{
	tup->t_len = e->len;
	tup->t_data = (HeapTupleHeader) e->data;
	ItemPointerSetInvalid(&tup->t_self);
	tup->t_tableOid = InvalidOid;
	ExecStoreHeapTuple(tup, slot, false);
}

/*
 * Fill the parameters of expression 'expr' (-1: all) from the events of a
 * partial match (NULL: none yet).
 */
static void
fill_params(CepOperator *op, PatternExprs *pe, int expr, NfaState *nfa, PartialMatch *pm)
{
	MemoryContext old;

	MemoryContextReset(pe->agg_cxt);
	old = MemoryContextSwitchTo(pe->agg_cxt);
	for (int r = 0; r < pe->nrefs; r++)
	{
		NavRef	   *ref = &pe->refs[r];
		ParamExternData *prm = &pe->params->params[r];
		int			nvar = 0;

		if (expr >= 0 && ref->expr != expr)
			continue;
		op->eval_expr = ref->expr;
		prm->isnull = true;
		prm->value = (Datum) 0;
		if (pm)
			for (int j = 0; j < pm->n; j++)
				nvar += (pm->refs[j].var == ref->var);

		if (ref->kind == NAV_AGG)
		{
			AggStates  *st = agg_states_new(ref->agg);
			Datum		v;
			bool		isnull;

			for (int j = 0; pm && j < pm->n; j++)
			{
				if (pm->refs[j].var != ref->var)
					continue;
				store_event(op->nav_slot, &op->nav_tuple, find_event(nfa, pm->refs[j].pos));
				agg_advance(ref->agg, st, op->nav_slot);
			}
			agg_final(ref->agg, st, &v, &isnull);
			prm->value = v;
			prm->isnull = isnull;
		}
		else
		{
			/* the wanted event: index among var's events */
			int			want = ref->kind == NAV_FIRST ? ref->offset : nvar - 1 - ref->offset;
			int			k = 0;

			if (want < 0 || want >= nvar)
				continue;
			for (int j = 0; j < pm->n; j++)
			{
				if (pm->refs[j].var != ref->var)
					continue;
				if (k++ == want)
				{
					StoredEvent *e = find_event(nfa, pm->refs[j].pos);
					HeapTupleData tup;
					bool		isnull;

					tup.t_len = e->len;
					tup.t_data = (HeapTupleHeader) e->data;
					prm->value = heap_getattr(&tup, ref->attno + 1, op->desc, &isnull);
					prm->isnull = isnull;
					break;
				}
			}
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * The key columns' values, for a sink row or a message: decoded from the
 * group key, or, when the key cannot be decoded (a sort key under a
 * nondeterministic collation, see group_key.h), taken from an event of the
 * key -- as GROUP BY shows one of a group's values.  'slot' holds such an
 * event (the match's last, the timed-out match's first, the event being
 * tested).
 */
static void
set_key_values(CepOperator *op, TupleTableSlot *slot)
{
	if (op->codec.exact)
	{
		kstate_decode_key(&op->codec, op->gk.data, op->values, op->nulls);
		return;
	}
	for (int i = 0; i < op->nkeys; i++)
		op->values[i] = slot_getattr(slot, op->def->key_attnos[i] + 1, &op->nulls[i]);
}

/*
 * An error in a condition or a measure: rethrow it with where it happened
 * in its message (pipeline, variable or measure, key, event time), as the
 * status view shows an error's message, not its context.
 */
static void expr_error(CepOperator *op, MemoryContext cxt, PatternExprs *pe,
					   bool measure, TimestampTz t) pg_attribute_noreturn();

static void
expr_error(CepOperator *op, MemoryContext cxt, PatternExprs *pe, bool measure,
		   TimestampTz t)
{
	ErrorData  *edata;
	StringInfoData where;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();

	initStringInfo(&where);
	appendStringInfo(&where, "pattern pipeline \"%s\", ", op->def->name);
	if (op->eval_expr >= 0 && op->eval_expr < pe->nexprs)
		appendStringInfo(&where, "%s \"%s\"", measure ? "measure" : "condition of variable",
						 pe->names[op->eval_expr]);
	else
		appendStringInfoString(&where, measure ? "measures" : "condition");
	appendStringInfoString(&where, measure ? ", match" : ", event");
	if (op->nkeys > 0)
	{
		/* as in Postgres' key details: (a, b)=(1, x) */
		set_key_values(op, op->econtext->ecxt_scantuple);
		appendStringInfoString(&where, " of key (");
		for (int i = 0; i < op->nkeys; i++)
			appendStringInfo(&where, "%s%s", i ? ", " : "",
							 NameStr(TupleDescAttr(op->desc, op->def->key_attnos[i])->attname));
		appendStringInfoString(&where, ")=(");
		for (int i = 0; i < op->nkeys; i++)
		{
			Oid			typ = TupleDescAttr(op->desc, op->def->key_attnos[i])->atttypid;
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(typ, &out, &varlena);
			appendStringInfo(&where, "%s%s", i ? ", " : "",
							 op->nulls[i] ? "null" : OidOutputFunctionCall(out, op->values[i]));
		}
		appendStringInfoChar(&where, ')');
	}
	appendStringInfo(&where, " %s %s", measure ? "ending at" : "at", timestamptz_to_str(t));
	edata->message = psprintf("%s: %s", where.data, edata->message);
	ReThrowError(edata);
}

static bool
cond_eval(CepOperator *op, int var, NfaState *nfa, PartialMatch *pm)
{
	PatternExprs *pe = op->cp->conds;
	int			ci = op->cp->cond_of_var[var];
	Datum		d;
	bool		isnull;

	if (pe->has_refs[ci])
		fill_params(op, pe, ci, nfa, pm);
	op->eval_expr = ci;
	op->econtext->ecxt_scantuple = op->cur_slot;
	op->econtext->ecxt_param_list_info = pe->params;
	d = ExecEvalExprSwitchContext(pe->exprs[ci], op->econtext, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Does the current event satisfy the condition of variable 'var'?  No
 * PG_TRY here (a setjmp per evaluation, the NFA's hot path): op->in_cond
 * tells nfa_event's handler, one per event, that an error came from a
 * condition, which it reports with where it happened (expr_error).
 */
static bool
cond(CepOperator *op, int var, NfaState *nfa, PartialMatch *pm)
{
	PatternExprs *pe = op->cp->conds;
	int			ci = op->cp->cond_of_var[var];
	bool		result;

	if (ci < 0)
		return true;
	/* Conditions without references depend on the event only. */
	if (!pe->has_refs[ci] && op->cond_cache[var] >= 0)
		return op->cond_cache[var] == 1;
	op->eval_expr = ci;
	op->in_cond = true;
	result = cond_eval(op, var, nfa, pm);
	op->in_cond = false;
	if (!pe->has_refs[ci])
		op->cond_cache[var] = result ? 1 : 0;
	return result;
}

/* --- emitting -------------------------------------------------------------- */

static char *
events_json(CepOperator *op, NfaState *nfa, PartialMatch *pm)
{
	Pattern    *pat = op->cp->pattern;
	StringInfoData buf;
	bool		first_var = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int v = 0; v < pat->nvars; v++)
	{
		bool		any = false;

		for (int j = 0; j < pm->n; j++)
		{
			StoredEvent *e;
			text	   *t;

			if (pm->refs[j].var != v)
				continue;
			if (!any)
			{
				if (!first_var)
					appendStringInfoString(&buf, ", ");
				escape_json(&buf, pat->vars[v]);
				appendStringInfoString(&buf, ": [");
				first_var = false;
			}
			else
				appendStringInfoString(&buf, ", ");
			any = true;
			e = find_event(nfa, pm->refs[j].pos);
			t = DatumGetTextPP(DirectFunctionCall1(row_to_json, PointerGetDatum(e->data)));
			appendBinaryStringInfo(&buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		}
		if (any)
			appendStringInfoChar(&buf, ']');
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void
emit_match(CepOperator *op, NfaState *nfa, PartialMatch *pm)
{
	int			k = op->nkeys;
	PatternExprs *me = op->cp->measures;
	StoredEvent *last = find_event(nfa, pm->refs[pm->n - 1].pos);

	if (!op->codec.exact)
		store_event(op->nav_slot, &op->nav_tuple, last);
	set_key_values(op, op->nav_slot);
	op->values[k] = TimestampTzGetDatum(pm->start_time);
	op->nulls[k] = false;
	op->values[k + 1] = TimestampTzGetDatum(last->time);
	op->nulls[k + 1] = false;
	op->values[k + 2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(events_json(op, nfa, pm)));
	op->nulls[k + 2] = false;
	if (me)
	{
		MemoryContext cxt = CurrentMemoryContext;

		op->eval_expr = -1;
		PG_TRY();
		{
			/* Unqualified columns in measures are those of the last event. */
			store_event(op->nav_slot, &op->nav_tuple, last);
			fill_params(op, me, -1, nfa, pm);
			store_event(op->nav_slot, &op->nav_tuple, last);
			op->econtext->ecxt_scantuple = op->nav_slot;
			op->econtext->ecxt_param_list_info = me->params;
			for (int i = 0; i < me->nexprs; i++)
			{
				Datum		v;

				op->eval_expr = i;
				v = ExecEvalExpr(me->exprs[i], op->econtext, &op->nulls[k + 3 + i]);
				op->values[k + 3 + i] = v;
			}
		}
		PG_CATCH();
		{
			expr_error(op, cxt, me, true, last->time);
		}
		PG_END_TRY();
	}
	sink_write(op->sink, op->out_match, SINK_INSERT, op->values, op->nulls);
}

static TimestampTz pm_deadline(CepOperator *op, PartialMatch *pm);

/* A partial match timed out: its deadline has passed, so it is a valid time. */
static void
emit_timeout(CepOperator *op, NfaState *nfa, PartialMatch *pm)
{
	int			k = op->nkeys;

	if (op->out_timeout == NULL)
		return;
	if (!op->codec.exact)
		store_event(op->nav_slot, &op->nav_tuple, find_event(nfa, pm->refs[0].pos));
	set_key_values(op, op->nav_slot);
	op->values[k] = TimestampTzGetDatum(pm->start_time);
	op->nulls[k] = false;
	op->values[k + 1] = TimestampTzGetDatum(pm_deadline(op, pm));
	op->nulls[k + 1] = false;
	op->values[k + 2] = DirectFunctionCall1(jsonb_in, CStringGetDatum(events_json(op, nfa, pm)));
	op->nulls[k + 2] = false;
	sink_write(op->sink, op->out_timeout, SINK_INSERT, op->values, op->nulls);
}

/* --- the NFA --------------------------------------------------------------- */

typedef struct StepOutput
{
	List	   *pms;			/* partial matches after the event */
	List	   *matches;		/* completed by the event */
} StepOutput;

static PartialMatch *
pm_copy(PartialMatch *pm, int extra)
{
	PartialMatch *n = palloc(sizeof(PartialMatch));

	*n = *pm;
	/* Room to append 'extra' entries that nobody else has taken? */
	if (extra > 0 && (pm->ra->used != pm->n || pm->n + extra > pm->ra->cap))
	{
		n->ra = ref_array_new(Max(2 * (pm->n + extra), 8));
		memcpy(n->ra->refs, pm->refs, sizeof(MatchRef) * pm->n);
		n->ra->used = pm->n;
		n->refs = n->ra->refs;
	}
	else
		n->ra->nowners++;
	return n;
}

/* Wait in element j (count events taken in it) after ignoring the event. */
static void
wait_in(StepOutput *out, PartialMatch *pm, int j, int count, bool unguarded)
{
	PartialMatch *n = pm_copy(pm, 0);

	n->elem = j;
	n->count = count;
	n->committed = true;
	n->unguarded = unguarded;
	out->pms = lappend(out->pms, n);
}

static void
take(CepOperator *op, NfaState *nfa, StepOutput *out, PartialMatch *pm, int j, bool again)
{
	Pattern    *pat = op->cp->pattern;
	PatternElement *el = &pat->elems[j];
	PartialMatch *n;
	bool		complete;

	if (pm)
	{
		n = pm_copy(pm, 1);
		n->count = again ? pm->count + 1 : 1;
	}
	else
	{
		n = palloc0(sizeof(PartialMatch));
		n->ra = ref_array_new(8);
		n->refs = n->ra->refs;
		n->count = 1;
		n->start_pos = op->cur->pos;
		n->start_time = op->cur->time;
	}
	n->elem = j;
	n->committed = false;
	n->unguarded = false;
	n->refs[n->n].var = el->var;
	n->refs[n->n].pos = op->cur->pos;
	n->n++;
	n->ra->used = n->n;

	/*
	 * Complete when the rest can be skipped (Flink's
	 * findFinalStateAfterProceed from the state the take leads to):
	 * optional elements, a notFollowedBy (a condition on the next state's
	 * edges, not a state), and a notNext whose state proceeds on this very
	 * event (it is not the negated one); a trailing negation needs what
	 * comes after.
	 */
	n->order = list_length(out->matches);
	complete = n->count >= el->min;
	for (int k = j + 1; k < pat->nelems && complete;)
	{
		PatternElement *nx = &pat->elems[k];

		if (nx->negated && k < pat->nelems - 1)
		{
			if (nx->contiguity == CONTIG_STRICT && cond(op, nx->var, nfa, pm))
				complete = false;
			k++;
		}
		else if (pattern_elem_optional(nx))
			k++;
		else if (nx->nskips > 0)
		{
			/* a copy of a group that may be skipped: past it (the furthest) */
			int			t = k;

			for (int x = 0; x < nx->nskips; x++)
				t = Max(t, nx->skips[x]);
			k = t;
		}
		else
			complete = false;
	}
	if (complete)
		out->matches = lappend(out->matches, n);

	/*
	 * The last element before a trailing negation, full: the match is in
	 * Flink's state after it (notNext's state, or notFollowedBy's pending
	 * state) at once, as the last of a times() takes into it.
	 */
	if (j == pat->nelems - 2 && pat->elems[j + 1].negated && n->count == el->max)
	{
		n->elem = j + 1;
		n->count = 0;
	}
	if (el->max < 0 || n->count < el->max || j < pat->nelems - 1 || el->nloops > 0)
		out->pms = lappend(out->pms, complete ? pm_copy(n, 0) : n);
}

/*
 * Completed without taking the event: the pattern ends with a negation
 * (notNext: the event after the last element is not the negated one).
 */
static void
complete_here(StepOutput *out, PartialMatch *pm)
{
	PartialMatch *n = pm_copy(pm, 0);

	n->committed = false;
	n->order = list_length(out->matches);
	out->matches = lappend(out->matches, n);
}

/*
 * Past the last element, waiting for the within window to end without the
 * negated event (Flink's pending state of a trailing notFollowedBy), or
 * for the next event (trailing notNext): element nelems - 1, count 0.
 */
static void
wait_after(StepOutput *out, PartialMatch *pm, int last, bool unguarded)
{
	PartialMatch *n = pm_copy(pm, 0);

	n->elem = last;
	n->count = 0;
	n->committed = false;
	n->unguarded = unguarded;
	out->pms = lappend(out->pms, n);
}

/*
 * May a partial match with count events in element el leave it (proceed)?
 * With its minimum, or with none when the element is optional: an optional
 * times (Flink's times(n).optional()) is no event or n, never 1..n-1.
 */
static inline bool
can_leave(PatternElement *el, int count)
{
	return count >= el->min || (count == 0 && el->optional);
}

/*
 * Does a partial match that outlived 'within' complete rather than time
 * out?  Only with a trailing notFollowedBy: in its pending state, and (as
 * Flink since FLINK-31040) in the last element once it has its minimum,
 * since that element could have proceeded to the pending state.
 */
static bool
completes_at_timeout(Pattern *pat, PartialMatch *pm)
{
	int			last = pat->nelems - 1;
	PatternElement *neg = &pat->elems[last];

	if (!neg->negated || neg->contiguity == CONTIG_STRICT)
		return false;
	if (pm->elem == last)
		return true;
	return pm->elem == last - 1 && can_leave(&pat->elems[last - 1], pm->count);
}

/*
 * Is the element greedy in effect?  Flink applies greedy() only to looping
 * quantifiers and to times(from, to) with from != to; a{0,m} is optional
 * times(1, m).
 */
static bool
is_greedy(PatternElement *el)
{
	return el->greedy && (el->max < 0 || el->max > Max(el->min, 1));
}

/*
 * The element whose greedy condition guards the first state of element j:
 * the one before it, notFollowedBy elements skipped (they are conditions on
 * j's edges in Flink, not states).  -1 if none.
 */
static int
greedy_guard(Pattern *pat, int j)
{
	int			g = j - 1;

	while (g >= 0 && pat->elems[g].negated && pat->elems[g].contiguity != CONTIG_STRICT)
		g--;
	return (g >= 0 && is_greedy(&pat->elems[g])) ? g : -1;
}

/* Has the partial match taken events of variable v? */
static bool
took_var(PartialMatch *pm, int v)
{
	for (int k = pm->n - 1; k >= 0; k--)
		if (pm->refs[k].var == v)
			return true;
	return false;
}

/*
 * Does the event satisfy a notFollowedBy variable whose stop state the
 * first state of element i has?  Those are the notFollowedBy elements
 * before i, back through optional elements (NFACompiler's
 * getCurrentNotCondition and addStopStates); but not past an optional
 * element the partial match took events in, as a take in an optional
 * element leads to copies of the later states without those stop states
 * (copyWithoutTransitiveNots: in a -> !c -> b? -> d, a c after a b is no
 * longer a c between a and d).
 */
static bool
prev_nots(CepOperator *op, NfaState *nfa, PartialMatch *pm, int i)
{
	Pattern    *pat = op->cp->pattern;

	for (int g = i - 1; g >= 0; g--)
	{
		PatternElement *pe = &pat->elems[g];

		if (pe->negated && pe->contiguity != CONTIG_STRICT)
		{
			if (cond(op, pe->var, nfa, pm))
				return true;
		}
		else if (pe->negated || !pattern_elem_optional(pe) || (pm && took_var(pm, pe->var)))
			break;
	}
	return false;
}

/*
 * Does the event reach a stop state by an edge of the partial match's own
 * state (not through its proceed edges, see step())?  The states of
 * element i in Flink's NFA (NFACompiler.createTimesState, createLooping,
 * createSingletonState), with count events taken:
 *	 count 0: the first state, or its ignore state when i is optional: the
 *	   stop states of the notFollowedBy elements before i (prev_nots), and
 *	   for the first element of a copy of a group that a negation follows,
 *	   that negation's (el->stop0, see pattern.c check_negation_in_groups);
 *	 count below the minimum (inner states of a times or loop, which ignore
 *	   into themselves), and past it but not full and not committed (the
 *	   optional inner states of a times, the looping state): the stop state
 *	   of a notFollowedBy right after i, or after the group i ends a copy
 *	   of (addStopStateToLooping; el->next_not);
 *	 past the minimum and committed: in a loop, its ignore state, which
 *	   has that stop state too; in a times, the ignore state of an optional
 *	   inner state, which has the stop states of the notFollowedBy elements
 *	   before i instead (createSingletonState calls addStopStates on it);
 *	 full: the next element's first state, reached by proceeding.
 */
static bool
own_stop(CepOperator *op, NfaState *nfa, PartialMatch *pm)
{
	Pattern    *pat = op->cp->pattern;
	int			i = pm->elem;
	PatternElement *el = &pat->elems[i];

	if (pm->count == 0)
	{
		/* the first state of a copy of a group that a negation follows */
		if (el->stop0 >= 0 && cond(op, el->stop0, nfa, pm))
			return true;
		return prev_nots(op, nfa, pm, i);
	}
	if (el->max >= 0 && pm->count >= el->max)
		return false;
	if (pm->count < el->min || !pm->committed || el->max < 0)
		return el->next_not >= 0 && cond(op, el->next_not, nfa, pm);
	return prev_nots(op, nfa, pm, i);
}

/* Does the event satisfy the until condition of a loop? */
static bool
until_holds(CepOperator *op, NfaState *nfa, PartialMatch *pm, PatternElement *el)
{
	return cond(op, el->until, nfa, pm);
}

/*
 * Does the event satisfy the until condition of the looping group the
 * element is a variable of?  Then the element neither takes nor ignores
 * it, nor proceeds from a state of its own (see pattern.c,
 * check_group_until); the group's own edges (skipping a copy, looping
 * back) are not affected.
 */
static inline bool
group_until_holds(CepOperator *op, NfaState *nfa, PartialMatch *pm, PatternElement *el)
{
	return el->guntil >= 0 && cond(op, el->guntil, nfa, pm);
}

/*
 * A walk through proceed edges: what a partial match (NULL: the start
 * state) reaches from the element it leaves, for the current event.
 */
typedef struct ProceedWalk
{
	CepOperator *op;
	NfaState   *nfa;
	PartialMatch *pm;
	StepOutput *out;
	bool	   *stop;
	bool		unguarded;		/* out of a greedy loop by its until */
} ProceedWalk;

static void enter(ProceedWalk *w, int j);

/* A new walk: no element entered yet (op->seen). */
static void
walk_begin(CepOperator *op)
{
	if (++op->seen_gen == 0)
	{
		memset(op->seen, 0, sizeof(uint32) * (op->cp->pattern->nelems + 1));
		op->seen_gen = 1;
	}
}

/*
 * Past elements from..last (left after taking events when taken, else
 * skipped): on to last + 1, and back to the first element of each looping
 * group copy ending at 'last' (not that of a skipped copy: skipping a copy
 * does not loop).
 */
static void
leave(ProceedWalk *w, int from, int last, bool taken)
{
	PatternElement *el = &w->op->cp->pattern->elems[last];

	enter(w, last + 1);
	for (int k = 0; k < el->nloops; k++)
		if (taken || el->loops[k] < from)
			enter(w, el->loops[k]);
}

/*
 * The first state of element j, reached by a proceed edge: a negated event
 * there is a stop state reached -- through notNext's state (which proceeds
 * no further then), or the stop state of the next element's first state
 * after a notFollowedBy (whose other edges still hold: a match it completes
 * is emitted, as in Flink).  Else the event is taken, or waited for
 * (relaxed contiguity), and an optional element or group copy is also
 * skipped.  In a pattern with groups an element can be reached on several
 * ways: it is entered once per walk (op->seen).
 */
static void
enter(ProceedWalk *w, int j)
{
	CepOperator *op = w->op;
	Pattern    *pat = op->cp->pattern;
	PartialMatch *pm = w->pm;
	int			last = pat->nelems - 1;
	PatternElement *nx;
	bool		c;
	bool		stopped;
	bool		gstopped;
	bool		t;

	if (j > last)
		return;
	if (pat->has_groups)
	{
		if (op->seen[j] == op->seen_gen)
			return;
		op->seen[j] = op->seen_gen;
	}
	nx = &pat->elems[j];
	/* the first state of a copy of a group that a negation follows */
	if (nx->stop0 >= 0 && pm && cond(op, nx->stop0, w->nfa, pm))
		*w->stop = true;
	if (nx->negated)
	{
		if (cond(op, nx->var, w->nfa, pm))
		{
			*w->stop = true;
			if (nx->contiguity == CONTIG_STRICT || j == last)
				return;
			enter(w, j + 1);
			return;
		}
		if (j == last && pm)
		{
			/* notNext last: complete now; notFollowedBy: pending */
			if (nx->contiguity == CONTIG_STRICT)
				complete_here(w->out, pm);
			else
				wait_after(w->out, pm, j, w->unguarded);
			return;
		}
		enter(w, j + 1);
		return;
	}
	/*
	 * until: the take condition is "and not until"; the first state's
	 * ignore edge keeps its own condition (NFACompiler.createTimesState).
	 */
	c = cond(op, nx->var, w->nfa, pm);
	stopped = nx->until >= 0 && until_holds(op, w->nfa, pm, nx);
	gstopped = group_until_holds(op, w->nfa, pm, nx);
	t = c && !stopped && !gstopped;
	if (t)
		take(op, w->nfa, w->out, pm, j, false);
	if (pm && !gstopped && ((nx->contiguity == CONTIG_RELAXED && !c) || nx->contiguity == CONTIG_ANY))
		wait_in(w->out, pm, j, 0, w->unguarded);
	if (is_greedy(nx) && t)
		return;
	if (pattern_elem_optional(nx) && !gstopped)
	{
		/*
		 * Skipping an optional greedy loop on an event its until holds for
		 * leads to Flink's unguarded copy of the next state
		 * (createSingletonState with originalStateMap).
		 */
		bool		saved = w->unguarded;

		w->unguarded = is_greedy(nx) && stopped;
		leave(w, j, j, false);
		w->unguarded = saved;
	}
	for (int k = 0; k < nx->nskips; k++)
		leave(w, j, nx->skips[k] - 1, false);
}

/*
 * The edges of one partial match's state for the current event (pm ==
 * NULL: the start state, which tries to begin a match).  Sets *stop when
 * the event reaches a stop state, directly or through proceed edges.
 */
static void
step_edges(CepOperator *op, NfaState *nfa, PartialMatch *pm, StepOutput *out, bool *stop)
{
	Pattern    *pat = op->cp->pattern;
	int			i = pm ? pm->elem : 0;
	int			cnt = pm ? pm->count : 0;
	bool		committed = pm ? pm->committed : false;
	PatternElement *el = &pat->elems[i];
	bool		loop_take = false;
	bool		gstopped = false;

	/* The start state: element 0's first state, which never waits. */
	if (pm == NULL)
	{
		ProceedWalk w = {op, nfa, NULL, out, stop, false};

		if (pat->has_groups)
			walk_begin(op);
		enter(&w, 0);
		return;
	}

	if (el->negated)
	{
		int			g;

		/*
		 * Past the last element of a pattern ending in a negation: the
		 * negated event is Flink's stop state; and, as the first state after
		 * a greedy element, any event of the greedy variable ends it too
		 * (updateWithGreedyCondition).
		 */
		if (cond(op, el->var, nfa, pm))
		{
			*stop = true;
			return;
		}
		g = greedy_guard(pat, i);
		if (g >= 0 && !pm->unguarded && cond(op, pat->elems[g].var, nfa, pm))
			return;
		if (el->contiguity == CONTIG_STRICT)
			complete_here(out, pm);	/* notNext: this event is not a b */
		else
			out->pms = lappend(out->pms, pm_copy(pm, 0));	/* ignore it */
		return;
	}

	if (committed && cnt == 0 && !pm->unguarded)
	{
		int			g;

		/*
		 * Waiting for the first event of an element after a greedy one: no
		 * edge of that state holds for an event of the greedy variable.
		 */
		g = greedy_guard(pat, i);
		if (g >= 0 && !pattern_elem_optional(el) && cond(op, pat->elems[g].var, nfa, pm))
			return;
	}

	/*
	 * A negated event that a stop edge of this state takes discards the
	 * whole partial match, whatever the other edges do (NFA.doProcess
	 * discards every state a computation state leads to when one of them
	 * is a stop state; only completed matches stay).
	 */
	if (pm && own_stop(op, nfa, pm))
		*stop = true;

	if (el->max < 0 || cnt < el->max)
	{
		Contiguity	c = (cnt == 0) ? el->contiguity : el->inner;

		/*
		 * until: on its event the loop neither takes nor ignores (Flink
		 * extends the take condition and the ignore condition between
		 * iterations with "and not until"; the first state's ignore edge
		 * keeps its own: it ignores what the variable's condition does not
		 * hold for), so a partial match in the loop proceeds or ends.
		 */
		bool		stopped = el->until >= 0 && until_holds(op, nfa, pm, el);

		bool		ignore;

		gstopped = group_until_holds(op, nfa, pm, el);
		loop_take = !stopped && !gstopped && cond(op, el->var, nfa, pm);
		if (loop_take)
			take(op, nfa, out, pm, i, true);
		if (c == CONTIG_ANY)
			ignore = !(stopped && cnt > 0);
		else if (c == CONTIG_RELAXED && cnt == 0)
			ignore = !(loop_take || (stopped && cond(op, el->var, nfa, pm)));
		else if (c == CONTIG_RELAXED)
			ignore = !loop_take && !stopped;
		else
			ignore = false;
		if (ignore && !gstopped)
			wait_in(out, pm, i, cnt, pm->unguarded);
	}

	if (committed || !can_leave(el, cnt))
		return;

	/*
	 * A group's until holds: no proceed edge of the element's own states
	 * (a full element is in the next state already).
	 */
	if (gstopped)
		return;

	/*
	 * Out of a greedy element only on an event it cannot take.  (Its
	 * condition, even when the element is full: in Flink the match is then
	 * in the next element's first state, whose edges all carry it.)
	 */
	if (is_greedy(el) &&
		((el->max < 0 || cnt < el->max) ? loop_take : cond(op, el->var, nfa, pm)))
		return;

	/*
	 * Proceed: to the next elements, through optional ones (enter), and
	 * back to the first element of a looping copy of a group.
	 */
	{
		/*
		 * Out of a greedy loop because its until holds: to Flink's copy of
		 * the next state without the greedy condition
		 * (NFACompiler.createLooping, originalStateMap).
		 */
		ProceedWalk w = {op, nfa, pm, out, stop,
		is_greedy(el) && el->until >= 0 && until_holds(op, nfa, pm, el)};

		if (pat->has_groups)
			walk_begin(op);
		leave(&w, i, i, true);
	}
}

/*
 * What the current event makes of a partial match (pm == NULL: the start
 * state).  When the event reaches a stop state, the partial matches the
 * step made are discarded, and the completed ones kept.
 */
static void
step(CepOperator *op, NfaState *nfa, PartialMatch *pm, StepOutput *out)
{
	int			before = list_length(out->pms);
	bool		stop = false;

	step_edges(op, nfa, pm, out, &stop);
	if (stop && list_length(out->pms) > before)
	{
		for (int k = before; k < list_length(out->pms); k++)
			pm_release(list_nth(out->pms, k));
		out->pms = list_truncate(out->pms, before);
	}
}

static int
cmp_start(const ListCell *a, const ListCell *b)
{
	PartialMatch *x = lfirst(a);
	PartialMatch *y = lfirst(b);

	if (x->start_pos != y->start_pos)
		return x->start_pos < y->start_pos ? -1 : 1;
	return x->order - y->order;
}

/* Position of the first/last event of variable v in a match, or -1. */
static int64
var_event(PartialMatch *m, int v, bool last)
{
	int64		pos = -1;

	for (int j = 0; j < m->n; j++)
		if (m->refs[j].var == v)
		{
			pos = m->refs[j].pos;
			if (!last)
				break;
		}
	return pos;
}

static bool
pruned(PartialMatch *pm, int64 limit, bool inclusive)
{
	return limit >= 0 && (inclusive ? pm->start_pos <= limit : pm->start_pos < limit);
}

/*
 * Add a completed match to the waiting ones: after those that started at
 * an earlier or the same event, so equal starts keep their completion
 * order.
 */
static void
queue_match(NfaState *nfa, PartialMatch *m)
{
	int			i;

	if (nfa->nwait == nfa->waitcap)
	{
		nfa->waitcap *= 2;
		nfa->wait = repalloc(nfa->wait, sizeof(PartialMatch *) * nfa->waitcap);
	}
	for (i = nfa->nwait; i > 0 && nfa->wait[i - 1]->start_pos > m->start_pos; i--)
		nfa->wait[i] = nfa->wait[i - 1];
	nfa->wait[i] = m;
	nfa->nwait++;
}

/*
 * skip_to_first/last(v) throw_exception_on_miss: a match in which v took no
 * event, or whose skip target is its own first event (skipping to it would
 * skip nothing), is an error, as Flink's SkipToElementStrategy with
 * throwExceptionOnMiss() fails the job.  A data exception: when an event
 * completed the match, that event's message goes to the dead-letter table
 * with this error after the restart (poison.h); the pattern's default
 * (Flink's too) skips nothing for such a match instead.
 */
static void
check_skip_target(CepOperator *op, NfaState *nfa, PartialMatch *m)
{
	Pattern    *pat = op->cp->pattern;
	int64		target = var_event(m, pat->skip_var, pat->skip == SKIP_TO_LAST);

	if (target < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("pattern pipeline \"%s\" could not skip to %s: no event of it in the match %s",
						op->def->name, pat->vars[pat->skip_var], events_json(op, nfa, m)),
				 errhint("skip_to_%s(%s) throw_exception_on_miss refuses such a match (Flink's throwExceptionOnMiss()); without throw_exception_on_miss it skips nothing.",
						 pat->skip == SKIP_TO_LAST ? "last" : "first", pat->vars[pat->skip_var])));
	if (target == m->start_pos)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("pattern pipeline \"%s\" could not skip to the first event of the match %s",
						op->def->name, events_json(op, nfa, m)),
				 errhint("With throw_exception_on_miss, skipping to %s's %s event must skip past the match's first event, as in Flink.",
						 pat->vars[pat->skip_var], pat->skip == SKIP_TO_LAST ? "last" : "first")));
}

/*
 * Emit the waiting matches that no open partial match started before, as
 * Flink's NFA.processMatchesAccordingToSkipStrategy: the earliest waiting
 * match goes when it started no later than every open partial match (one
 * that started earlier may still complete, and would go first and could
 * prune it); each emitted match prunes open partial matches and waiting
 * matches per the skip strategy (AfterMatchSkipStrategy.prune: by their
 * first event).
 */
static void
release_matches(CepOperator *op, NfaState *nfa)
{
	Pattern    *pat = op->cp->pattern;

	while (nfa->nwait > 0)
	{
		PartialMatch *m = nfa->wait[0];
		int64		limit = -1;
		bool		inclusive = true;
		int			kept;

		for (int i = 0; i < nfa->npm; i++)
			if (nfa->pms[i]->start_pos < m->start_pos)
				return;
		nfa->nwait--;
		memmove(nfa->wait, nfa->wait + 1, sizeof(PartialMatch *) * nfa->nwait);
		if (pat->skip_throw)
			check_skip_target(op, nfa, m);
		emit_match(op, nfa, m);

		switch (pat->skip)
		{
			case SKIP_NONE:
				break;
			case SKIP_TO_NEXT:
				limit = m->start_pos;
				break;
			case SKIP_PAST_LAST_EVENT:
				limit = m->refs[m->n - 1].pos;
				break;
			case SKIP_TO_FIRST:
			case SKIP_TO_LAST:
				/* no event of the variable in the match: nothing pruned */
				limit = var_event(m, pat->skip_var, pat->skip == SKIP_TO_LAST);
				inclusive = false;
				break;
		}
		pm_release(m);
		if (limit < 0)
			continue;
		kept = 0;
		for (int i = 0; i < nfa->npm; i++)
			if (!pruned(nfa->pms[i], limit, inclusive))
				nfa->pms[kept++] = nfa->pms[i];
			else
				pm_release(nfa->pms[i]);
		nfa->npm = kept;
		kept = 0;
		for (int i = 0; i < nfa->nwait; i++)
			if (!pruned(nfa->wait[i], limit, inclusive))
				nfa->wait[kept++] = nfa->wait[i];
			else
				pm_release(nfa->wait[i]);
		nfa->nwait = kept;
	}
}

static bool
same_events(PartialMatch *x, PartialMatch *y)
{
	if (x->n != y->n)
		return false;
	for (int j = 0; j < x->n; j++)
		if (x->refs[j].var != y->refs[j].var || x->refs[j].pos != y->refs[j].pos)
			return false;
	return true;
}

/* Emit completed matches (in the order of their first events) or queue them. */
static void
complete_matches(CepOperator *op, NfaState *nfa, List *matches)
{
	ListCell   *lc;

	list_sort(matches, cmp_start);
	if (op->cp->pattern->skip == SKIP_NONE)
	{
		/* Flink emits every match at once when nothing is skipped. */
		foreach(lc, matches)
		{
			emit_match(op, nfa, lfirst(lc));
			pm_release(lfirst(lc));
		}
	}
	else
	{
		foreach(lc, matches)
			queue_match(nfa, lfirst(lc));
		release_matches(op, nfa);
	}
}

/*
 * When a partial match times out: its first event's time plus 'within', or
 * DT_NOEND (never) without within or when that lies past the timestamp
 * range (a deadline no event time can reach, never written to a sink).
 */
static TimestampTz
pm_deadline(CepOperator *op, PartialMatch *pm)
{
	TimestampTz d;

	if (op->def->within < 0 ||
		pg_add_s64_overflow(pm->start_time, op->def->within, &d) ||
		!IS_VALID_TIMESTAMP(d))
		return DT_NOEND;
	return d;
}

/*
 * The partial matches whose deadline is t time out (as Flink's
 * NFA.advanceTime), except those of a trailing notFollowedBy that got past
 * the last element: those are matches now (Flink's pending states).  They
 * and the waiting matches the timed-out ones held back go through the skip
 * strategy.
 */
static void
time_out_at(CepOperator *op, NfaState *nfa, TimestampTz t)
{
	Pattern    *pat = op->cp->pattern;
	List	   *done = NIL;
	int			kept = 0;
	bool		any = false;

	for (int i = 0; i < nfa->npm; i++)
	{
		PartialMatch *pm = nfa->pms[i];
		ListCell   *lc;
		bool		dup = false;

		if (pm_deadline(op, pm) != t)
		{
			nfa->pms[kept++] = pm;
			continue;
		}
		any = true;
		if (!completes_at_timeout(pat, pm))
		{
			emit_timeout(op, nfa, pm);
			pm_release(pm);
			continue;
		}

		/*
		 * A match that waited in the last element after ignoring an event
		 * has a twin in the pending state, with the same events, made when
		 * it ignored the first: one match.
		 */
		foreach(lc, done)
			if (same_events(lfirst(lc), pm))
				dup = true;
		if (dup)
		{
			pm_release(pm);
			continue;
		}
		pm->committed = false;
		pm->order = list_length(done);
		done = lappend(done, pm);
	}
	nfa->npm = kept;
	if (done != NIL)
		complete_matches(op, nfa, done);
	else if (any && nfa->nwait > 0)
		release_matches(op, nfa);
}

/*
 * Time has come to t (an event's time, or the watermark): every deadline
 * up to t passes, one after the other in time order, each followed by the
 * skip strategy.  So a match completed (or released) at an earlier
 * deadline prunes partial matches before a later deadline could time them
 * out, and the result does not depend on how far time moves at once: one
 * step to t equals every intermediate step (issue 7).  Flink's advanceTime
 * times out all at once and prunes afterwards, which makes its timed-out
 * output depend on the watermark's steps.
 */
static void
advance_time(CepOperator *op, NfaState *nfa, TimestampTz t)
{
	if (op->def->within < 0)
		return;
	for (;;)
	{
		TimestampTz next = DT_NOEND;

		cep_check_interrupts(op);
		for (int i = 0; i < nfa->npm; i++)
		{
			TimestampTz d = pm_deadline(op, nfa->pms[i]);

			if (d <= t && d < next)
				next = d;
		}
		if (next == DT_NOEND)
			break;
		time_out_at(op, nfa, next);
	}
}

static void
nfa_event(CepOperator *op, NfaState *nfa, BufEvent *be)
{
	Pattern    *pat = op->cp->pattern;
	MemoryContext cxt = CurrentMemoryContext;
	StoredEvent *e;
	StepOutput	out = {NIL, NIL};
	ListCell   *lc;
	int			kept = 0;
	int64		held = 0;
	int64		dropped = 0;

	/* Keep the event (positions are increasing: the array stays sorted). */
	if (nfa->nev == nfa->evcap)
	{
		nfa->evcap *= 2;
		nfa->ev = repalloc(nfa->ev, sizeof(StoredEvent) * nfa->evcap);
	}
	e = &nfa->ev[nfa->nev++];
	e->pos = nfa->next_pos++;
	e->time = be->time;
	e->len = be->len;
	e->data = copy_bytes(be->data, be->len);
	op->cur = e;
	store_event(op->cur_slot, &op->cur_tuple, e);
	memset(op->cond_cache, -1, pat->nvars);

	/* First what the event's time ends (Flink's process: advanceTime first). */
	advance_time(op, nfa, e->time);

	/* An error in a condition: said where (cond). */
	op->in_cond = false;
	PG_TRY();
	{
		for (int i = 0; i < nfa->npm; i++)
		{
			cep_check_interrupts(op);
			step(op, nfa, nfa->pms[i], &out);
		}
		step(op, nfa, NULL, &out);
	}
	PG_CATCH();
	{
		if (op->in_cond)
		{
			op->in_cond = false;
			expr_error(op, cxt, op->cp->conds, false, e->time);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	/*
	 * step() copies what it keeps: the partial matches before the event are
	 * garbage now (their event arrays are shared, see RefArray).
	 */
	for (int i = 0; i < nfa->npm; i++)
		pm_release(nfa->pms[i]);
	pfree(nfa->pms);

	/*
	 * The bound on a key's partial matches (max_partial_matches, and
	 * max_partial_match_events for the events they hold together): they are
	 * kept in creation order -- what the older partial matches became
	 * first, in their order, then the match this event starts -- and those
	 * beyond the bound are discarded and counted.  Completed matches a skip
	 * strategy holds back count too (they are bounded so: no partial match,
	 * no new completion).  This depends on the events only, never on
	 * timing, so results stay deterministic.
	 */
	for (int i = 0; i < nfa->nwait; i++)
		held += nfa->wait[i]->n;
	nfa->pms = palloc(sizeof(PartialMatch *) * Max(list_length(out.pms), 1));
	foreach(lc, out.pms)
	{
		PartialMatch *n = lfirst(lc);

		if (kept + nfa->nwait >= op->def->max_partial_matches ||
			held + n->n > op->def->max_partial_match_events)
		{
			pm_release(n);
			dropped++;
			continue;
		}
		held += n->n;
		nfa->pms[kept++] = n;
	}
	nfa->npm = kept;
	list_free(out.pms);
	if (dropped > 0)
		count_dropped(op, dropped);

	/* Matches in the order of their first events (then of creation). */
	if (pat->skip == SKIP_NONE)
		complete_matches(op, nfa, out.matches);
	else
	{
		/* (released even when nothing completed: timeouts may free some) */
		list_sort(out.matches, cmp_start);
		foreach(lc, out.matches)
			queue_match(nfa, lfirst(lc));
		release_matches(op, nfa);
	}
	ResetExprContext(op->econtext);
}

static int
cmp_bufevent(const void *a, const void *b)
{
	const BufEvent *x = a;
	const BufEvent *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->arrival != y->arrival)
		return x->arrival < y->arrival ? -1 : 1;
	return 0;
}

/*
 * A deferred event whose processing failed in the previous run: to the
 * dead-letter table, with the event as JSON for its payload (its raw
 * message is no longer at hand), for 'reason' (poison_skip).
 */
static void
poison_dead_letter(CepOperator *op, BufEvent *be, const char *reason)
{
	HeapTupleHeader td = (HeapTupleHeader) be->data;
	char	   *json;

	HeapTupleHeaderSetTypeId(td, op->desc->tdtypeid);
	HeapTupleHeaderSetTypMod(td, op->desc->tdtypmod);
	json = TextDatumGetCString(DirectFunctionCall1(row_to_json, PointerGetDatum(td)));
	side_output_dead_letter(op->side, be->source.partition, be->source.offset,
							json, strlen(json), reason);
}

/* Run a key's buffered events up to the watermark through its NFA. */
static void
fire_key(CepOperator *op, TimestampTz wm)
{
	EventBuffer *buf = kstate_get(op->ks_buf, op->bkey.data, op->bkey.len);
	StringInfo	blob = kstate_get(op->ks_nfa, op->nkey.data, op->nkey.len);
	MemoryContext old;
	NfaState   *nfa;
	int			before;
	int			done = 0;

	if (buf == NULL && blob == NULL)
		return;
	old = MemoryContextSwitchTo(op->scratch);
	nfa = blob ? nfa_decode(blob) : nfa_new();
	before = nfa->npm;

	if (buf && buf->n > 0)
	{
		qsort(buf->ev, buf->n, sizeof(BufEvent), cmp_bufevent);
		while (done < buf->n && buf->ev[done].time <= wm)
		{
			BufEvent   *be = &buf->ev[done++];
			char	   *reason;

			cep_check_interrupts(op);
			/* An error now is this event's message's fault (poison.h). */
			if ((reason = poison_skip(op->poison, be->source)) != NULL)
			{
				poison_dead_letter(op, be, reason);
				continue;
			}
			poison_begin(op->poison, be->source);
			nfa_event(op, nfa, be);
			poison_end(op->poison);
		}
	}

	/*
	 * Partial matches the watermark has timed out (or completed: a trailing
	 * notFollowedBy), and the matches they held back.
	 */
	if (op->def->within >= 0)
	{
		advance_time(op, nfa, wm);
		ResetExprContext(op->econtext);
		if (nfa->npm > 0)
		{
			TimestampTz next = DT_NOEND;

			for (int i = 0; i < nfa->npm; i++)
				next = Min(next, pm_deadline(op, nfa->pms[i]));
			if (next != DT_NOEND)
				timers_register(op->timers, next, op->bkey.data, op->bkey.len);
		}
	}
	if (nfa->npm != before)
		kstate_counter_add(op->open, op->bkey.data, nfa->npm - before);

	MemoryContextSwitchTo(kstate_memory(op->ks_nfa));
	if (nfa->npm == 0 && nfa->nwait == 0)
	{
		if (blob)
			kstate_delete(op->ks_nfa, op->nkey.data, op->nkey.len);
	}
	else
	{
		StringInfo	nb = makeStringInfo();

		nfa_encode(nfa, nb);
		kstate_put(op->ks_nfa, op->nkey.data, op->nkey.len, nb);
	}
	if (blob)
	{
		pfree(blob->data);
		pfree(blob);
	}

	if (done > 0)
	{
		for (int i = 0; i < done; i++)
			pfree(buf->ev[i].data);
		memmove(buf->ev, buf->ev + done, sizeof(BufEvent) * (buf->n - done));
		buf->n -= done;
		if (buf->n == 0)
			kstate_delete(op->ks_buf, op->bkey.data, op->bkey.len);
		else
			kstate_put(op->ks_buf, op->bkey.data, op->bkey.len, buf);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(op->scratch);
}

/* --- operator -------------------------------------------------------------- */

static bool
cep_process(void *arg, TupleTableSlot *event, TimestampTz t, TimestampTz wm,
			SfMessagePos pos)
{
	CepOperator *op = (CepOperator *) arg;
	EventBuffer *buf;
	MemoryContext old;
	HeapTuple	tup;
	BufEvent   *be;

	/*
	 * As Flink's CepOperator: late if t <= its watermark, which is ours less
	 * 1 microsecond (see cep_advance); an event at the current maximum event
	 * time is not late.
	 */
	if (t < wm)
		return false;

	kstate_encode_key(&op->codec, event, &op->gk);
	make_keys(op);
	buf = kstate_get(op->ks_buf, op->bkey.data, op->bkey.len);
	old = MemoryContextSwitchTo(kstate_memory(op->ks_buf));
	if (buf == NULL)
	{
		buf = palloc0(sizeof(EventBuffer));
		buf->cap = 4;
		buf->ev = palloc(sizeof(BufEvent) * buf->cap);
	}
	if (buf->n == buf->cap)
	{
		buf->cap *= 2;
		buf->ev = repalloc(buf->ev, sizeof(BufEvent) * buf->cap);
	}
	MemoryContextSwitchTo(op->scratch);
	tup = heap_form_tuple(op->desc, event->tts_values, event->tts_isnull);
	MemoryContextSwitchTo(kstate_memory(op->ks_buf));
	be = &buf->ev[buf->n++];
	be->time = t;
	be->arrival = buf->next_arrival++;
	be->source = pos;
	be->len = tup->t_len;
	be->data = copy_bytes((char *) tup->t_data, tup->t_len);
	MemoryContextSwitchTo(old);
	MemoryContextReset(op->scratch);

	kstate_put(op->ks_buf, op->bkey.data, op->bkey.len, buf);
	timers_register(op->timers, t, op->bkey.data, op->bkey.len);
	return true;
}

static void
cep_flush(void *arg)
{
	CepOperator *op = (CepOperator *) arg;

	/* the counters go with the partial matches (kstate_counter_stage) */
	kstate_counter_stage(op->open, op->ks_nfa);
	kstate_counter_stage(op->dropped, op->ks_nfa);
	kstate_flush(op->ks_buf);
	kstate_flush(op->ks_nfa);
	timers_flush(op->timers);
}

static void
cep_maybe_flush(void *arg)
{
	CepOperator *op = (CepOperator *) arg;

	if (kstate_full(op->ks_buf))
		kstate_evict(op->ks_buf);
	if (kstate_full(op->ks_nfa))
		kstate_evict(op->ks_nfa);
	timers_maybe_flush(op->timers);
}

/*
 * The buffers and NFAs of the keys whose timers fire next
 * (timer_prefetch_fn): a timer's key is its buffer's, the NFA's key the
 * same with the NFA's kind (append_nfa_key).
 */
static void
prefetch_keys(void *arg, int n, const TimestampTz *times, const char *const *bkeys,
			  const size_t *bklens)
{
	CepOperator *op = (CepOperator *) arg;
	StringInfoData nkeys;
	const char *nk[STATE_MULTI_GET_MAX];
	size_t		nklens[STATE_MULTI_GET_MAX];
	int		   *offs = palloc(sizeof(int) * n);

	kstate_prefetch(op->ks_buf, n, bkeys, bklens);

	initStringInfo(&nkeys);
	for (int i = 0; i < n; i++)
	{
		offs[i] = nkeys.len;
		append_nfa_key(&nkeys, bkeys[i], bklens[i]);
		nklens[i] = nkeys.len - offs[i];
	}
	/* (the buffer may have moved while it grew) */
	for (int i = 0; i < n; i++)
		nk[i] = nkeys.data + offs[i];
	kstate_prefetch(op->ks_nfa, n, nk, nklens);
	pfree(nkeys.data);
	pfree(offs);
}

/* The timer of buffer key bkey passed (timer_fire_fn). */
static void
fire_timer(void *arg, TimestampTz time, const char *bkey, size_t bklen)
{
	CepOperator *op = (CepOperator *) arg;

	cep_check_interrupts(op);
	resetStringInfo(&op->gk);
	appendBinaryStringInfo(&op->gk, bkey + KEYSPACE_HEADER, bklen - KEYSPACE_HEADER);
	make_keys(op);
	fire_key(op, op->fire_wm);
	cep_maybe_flush(op);
}

static void
cep_advance(void *arg, TimestampTz wm)
{
	CepOperator *op = (CepOperator *) arg;

	if (wm == DT_NOBEGIN)
		return;

	/*
	 * Flink's watermark is the maximum event time less the out-of-orderness
	 * less 1 ms (BoundedOutOfOrdernessWatermarks), ours is without the 1
	 * (right for windows: one fires when our watermark reaches its end, as
	 * Flink's at end - 1).  CepOperator processes the buffered events up to
	 * its watermark, so more events at our watermark's time may still come:
	 * the NFA runs to our watermark less 1 microsecond, our time unit.
	 */
	wm -= 1;
	if (wm < timers_floor(op->timers))
		return;
	op->busy_since = GetCurrentTimestamp();
	op->fire_wm = wm;
	timers_advance(op->timers, wm, fire_timer, op);
}

static int64
cep_open_count(void *arg)
{
	return kstate_counter_total(((CepOperator *) arg)->open);
}

static int64
cep_dropped_count(void *arg)
{
	return kstate_counter_total(((CepOperator *) arg)->dropped);
}

/*
 * The events the next calls of cep_process will take (operator.h): the
 * cache lines of their keys' buffers brought in for all of them at once.
 */
static void
cep_prefetch(void *arg, int n, TupleTableSlot *const *events, const TimestampTz *times)
{
	CepOperator *op = (CepOperator *) arg;

	for (int i = 0; i < n && !kbatch_full(op->ahead); i++)
	{
		kstate_encode_key(&op->codec, events[i], &op->ahead_gk);
		append_buffer_key(kbatch_begin(op->ahead), op->ahead_gk.data, op->ahead_gk.len);
		kbatch_end(op->ahead);
	}
	kstate_prefetch_batch(op->ks_buf, op->ahead, false);
}

const OperatorMethods cep_operator_methods = {
	.process = cep_process,
	.advance = cep_advance,
	.maybe_flush = cep_maybe_flush,
	.flush = cep_flush,
	.open_count = cep_open_count,
	.dropped_count = cep_dropped_count,
	.prefetch = cep_prefetch
};

CepOperator *
cep_create(PipelineDef *def, StateStore *store, Sink *sink, SideOutput *side,
		   TupleDesc event_desc, Poison *poison)
{
	CepOperator *op = palloc0(sizeof(CepOperator));
	PatternExprs *me;
	int			nmeasures;
	int			ncols;
	const char **names;
	Oid		   *types;

	op->def = def;
	op->store = store;
	op->sink = sink;
	op->poison = poison;
	op->side = side;
	op->desc = event_desc;
	op->cp = pattern_load(def->pattern_tree, def->pattern, def->skip, def->within >= 0);
	me = op->cp->measures;
	nmeasures = me ? me->nexprs : 0;
	/* Keys as GROUP BY groups them; values of an event when not decodable. */
	kstate_codec_init(&op->codec, def);
	op->nkeys = def->nkeys;
	/* the operator's cache budget, half each */
	op->ks_buf = kstate_create(store, &buffer_ops, op, kstate_cache_budget() / 2);
	op->ks_nfa = kstate_create(store, &blob_ops, op, kstate_cache_budget() / 2);
	op->scratch = AllocSetContextCreate(CurrentMemoryContext, "streamflink cep scratch",
										ALLOCSET_DEFAULT_SIZES);
	op->econtext = CreateStandaloneExprContext();
	op->cur_slot = MakeSingleTupleTableSlot(event_desc, &TTSOpsHeapTuple);
	op->nav_slot = MakeSingleTupleTableSlot(event_desc, &TTSOpsHeapTuple);
	op->cond_cache = palloc(op->cp->pattern->nvars);
	op->seen = palloc0(sizeof(uint32) * (op->cp->pattern->nelems + 1));
	op->timers = timers_create(store);
	timers_set_prefetch(op->timers, prefetch_keys);
	op->open = kstate_counter_open(store, KS_COUNTER_PARTIAL_MATCHES);
	op->dropped = kstate_counter_open(store, KS_COUNTER_DROPPED_MATCHES);
	initStringInfo(&op->gk);
	initStringInfo(&op->bkey);
	initStringInfo(&op->nkey);
	op->ahead = palloc(sizeof(KeyBatch));
	kbatch_init(op->ahead);
	initStringInfo(&op->ahead_gk);

	/* Sink rows: keys, match_start, match_end, events, measures. */
	ncols = def->nkeys + 3 + nmeasures;
	op->values = palloc0(sizeof(Datum) * ncols);
	op->nulls = palloc0(sizeof(bool) * ncols);
	names = palloc(sizeof(char *) * ncols);
	types = palloc(sizeof(Oid) * ncols);
	for (int i = 0; i < def->nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(event_desc, def->key_attnos[i]);

		names[i] = NameStr(att->attname);
		types[i] = att->atttypid;
	}
	names[def->nkeys] = "match_start";
	types[def->nkeys] = TIMESTAMPTZOID;
	names[def->nkeys + 1] = "match_end";
	types[def->nkeys + 1] = TIMESTAMPTZOID;
	names[def->nkeys + 2] = "events";
	types[def->nkeys + 2] = JSONBOID;
	for (int i = 0; i < nmeasures; i++)
	{
		names[def->nkeys + 3 + i] = me->names[i];
		types[def->nkeys + 3 + i] = me->types[i];
	}
	{
		SinkRowDesc out;

		/* Matches and timeouts are appended: no key identifies a row. */
		out.name = "result";
		out.relid = def->sink_relid;
		out.ncols = ncols;
		out.colnames = names;
		out.coltypes = types;
		out.nkeys = 0;
		op->out_match = sink_open_output(sink, &out);
		if (OidIsValid(def->timed_out_relid))
		{
			names[def->nkeys + 1] = "timed_out_at";
			out.name = "timed_out";
			out.relid = def->timed_out_relid;
			out.ncols = def->nkeys + 3;
			op->out_timeout = sink_open_output(sink, &out);
		}
	}
	return op;
}

/* --- live() ---------------------------------------------------------------- */

void
cep_scan_open(PipelineDef *def, StateStore *store, cep_visit_fn fn, void *arg)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink live",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	CepOperator op;
	CompiledPattern cp;
	TupleDesc	desc;
	Datum	   *keys = palloc(sizeof(Datum) * Max(def->nkeys, 1));
	bool	   *keynulls = palloc(sizeof(bool) * Max(def->nkeys, 1));
	StringInfoData lower,
				upper,
				blob;

	/* What events_json needs: the variables' names. */
	memset(&op, 0, sizeof(op));
	memset(&cp, 0, sizeof(cp));
	cp.pattern = pattern_parse(def->pattern, def->skip, def->within >= 0);
	op.cp = &cp;
	op.def = def;
	kstate_codec_init(&op.codec, def);
	desc = lookup_rowtype_tupdesc_copy(def->source.row_type, -1);
	initStringInfo(&lower);
	initStringInfo(&upper);
	initStringInfo(&blob);

	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		StateIter  *it;
		const char *key,
				   *val;
		size_t		klen,
					vlen;

		keyspace_kind_range(kg, KS_CEP_NFA, &lower, &upper);
		it = state_iter_create(store, lower.data, lower.len, upper.data, upper.len);
		while (state_iter_next(it, &key, &klen, &val, &vlen))
		{
			NfaState   *nfa;

			resetStringInfo(&blob);
			appendBinaryStringInfo(&blob, val, vlen);
			nfa = nfa_decode(&blob);
			if (op.codec.exact)
				kstate_decode_key(&op.codec, key + KEYSPACE_HEADER, keys, keynulls);
			for (int i = 0; i < nfa->npm; i++)
			{
				PartialMatch *pm = nfa->pms[i];
				StoredEvent *last;
				Datum		events;
				bool		isnull = false;

				if (pm->n == 0)
					continue;
				last = find_event(nfa, pm->refs[pm->n - 1].pos);
				if (!op.codec.exact)
				{
					/* the key columns of an event of the key, as GROUP BY shows one */
					HeapTupleData tup;

					tup.t_len = last->len;
					tup.t_data = (HeapTupleHeader) last->data;
					for (int k = 0; k < def->nkeys; k++)
						keys[k] = heap_getattr(&tup, def->key_attnos[k] + 1, desc, &keynulls[k]);
				}
				events = DirectFunctionCall1(jsonb_in, CStringGetDatum(events_json(&op, nfa, pm)));
				fn(arg, keys, keynulls, pm->start_time, last->time, &events, &isnull);
			}
		}
		state_iter_destroy(it);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* --- SQL-callable check --------------------------------------------------- */

PG_FUNCTION_INFO_V1(streamflink_pattern_min_events);

/*
 * streamflink._pattern_min_events(pattern, skip, has_within): the fewest
 * events a match holds, the sum of the minimums of its (not negated, not
 * optional) elements outside the group copies that may be skipped; create_pattern_pipeline compares it with
 * max_partial_match_events.  NULL for a NULL pattern (its error comes from
 * _check_pattern).
 */
Datum
streamflink_pattern_min_events(PG_FUNCTION_ARGS)
{
	Pattern    *pat;
	int64		n = 0;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pat = pattern_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
						!PG_ARGISNULL(2) && PG_GETARG_BOOL(2));
	for (int i = 0; i < pat->nelems;)
	{
		PatternElement *el = &pat->elems[i];

		if (el->nskips > 0)
		{
			/* a group copy that may be skipped: past it */
			int			t = i + 1;

			for (int k = 0; k < el->nskips; k++)
				t = Max(t, el->skips[k]);
			i = t;
			continue;
		}
		if (!el->negated && !pattern_elem_optional(el))
			n += el->min;
		i++;
	}
	PG_RETURN_INT64(n);
}
