/*-------------------------------------------------------------------------
 *
 * timer_service.c
 *	  Event-time timers of an operator, kept in its key groups.
 *
 * A timer lives in one of two places.  Registered, it is pending: in a
 * heap in memory ordered by time (then key), with a hash set over it that
 * makes registering the same timer twice one timer.  timers_flush (the
 * operator's flush before a snapshot, or timers_maybe_flush when the
 * pending timers take more than their share of memory) writes the pending
 * timers to the timers' column family in one batch.  A timer that fires
 * before the next flush, as most window and pattern timers do with
 * checkpoints every few seconds, thus costs RocksDB nothing.
 *
 * Firing (timers_advance) pops the due pending timers off the heap and
 * range-scans each key group with stored timers due, from the floor to the
 * watermark ([kg]'T'[floor] .. [kg]'T'[upto]), in one pass; nothing is
 * looked up per window.  Fired stored timers are not deleted one by one:
 * every fired time lies below the floor, so the next flush deletes each
 * key group's [kg]'T'[-inf] .. [kg]'T'[floor) with one range tombstone.
 * Scans start at the floor and never meet them meanwhile.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "lib/pairingheap.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "keyed_state.h"
#include "keyspace.h"
#include "timer_service.h"

/* A timer key: [kg:2]'T'[time:8][state key less key group]. */
#define TIMER_HEADER (KEYSPACE_HEADER + 8)

/* No timer in this key group (as a lower bound: above every time). */
#define NO_TIMER PG_INT64_MAX

/*
 * Pending timers may take this fraction of the operator's cache budget
 * (kstate_cache_budget) before they are written to RocksDB early.
 */
#define TIMERS_BUDGET_DIVISOR 8

/* A due timer: its key, in the advance's key buffer. */
typedef struct DueTimer
{
	TimestampTz time;
	uint32		off;
	uint32		len;
} DueTimer;

/* A pending timer (in memory, not yet in the store). */
typedef struct PendingTimer
{
	pairingheap_node node;
	TimestampTz time;
	uint32		len;
	char		key[FLEXIBLE_ARRAY_MEMBER]; /* the timer key */
} PendingTimer;

/* The hash set's key and entry: the timer key, by pointer. */
typedef struct PendingKey
{
	const char *data;
	size_t		len;
} PendingKey;

typedef struct PendingEntry
{
	PendingKey	key;			/* points into timer->key */
	PendingTimer *timer;
} PendingEntry;

struct TimerService
{
	StateStore *store;			/* the timers' column family */
	TimestampTz floor;

	/*
	 * Per key group, no stored timer at or above the floor is earlier than
	 * this (PG_INT64_MIN: unknown, after a restart; NO_TIMER: none).
	 */
	TimestampTz next[STATE_KEY_GROUPS];

	/* Stored timers of the key group fired since the last flush. */
	bool		fired[STATE_KEY_GROUPS];

	MemoryContext pending_cxt;	/* pending timers and their hash set */
	pairingheap *heap;
	HTAB	   *pending;
	int64		pending_bytes;
	int64		max_pending_bytes;
	bool		advancing;		/* inside timers_advance */
	StateBatch *batch;

	MemoryContext due_cxt;		/* the due timers of one advance */
	StringInfoData key;			/* scratch */
	StringInfoData upper;		/* scratch */
	StringInfoData skey;		/* the state key handed to fire */
};

/* Time order, then key order (the key group, then the rest bytewise). */
static int
timer_order(TimestampTz xt, const char *kx, uint32 xlen,
			TimestampTz yt, const char *ky, uint32 ylen)
{
	int			c;

	if (xt != yt)
		return xt < yt ? -1 : 1;
	c = memcmp(kx, ky, 2);
	if (c != 0)
		return c;
	c = memcmp(kx + TIMER_HEADER, ky + TIMER_HEADER,
			   Min(xlen, ylen) - TIMER_HEADER);
	if (c != 0)
		return c;
	return xlen < ylen ? -1 : (xlen > ylen ? 1 : 0);
}

/* pairingheap is a max-heap: the earliest timer is the "greatest". */
static int
pending_cmp(const pairingheap_node *a, const pairingheap_node *b, void *arg)
{
	const PendingTimer *x = pairingheap_const_container(PendingTimer, node, a);
	const PendingTimer *y = pairingheap_const_container(PendingTimer, node, b);

	return -timer_order(x->time, x->key, x->len, y->time, y->key, y->len);
}

static uint32
pending_hash(const void *key, Size keysize)
{
	const PendingKey *k = (const PendingKey *) key;

	return hash_bytes((const unsigned char *) k->data, (int) k->len);
}

static int
pending_match(const void *key1, const void *key2, Size keysize)
{
	const PendingKey *a = (const PendingKey *) key1;
	const PendingKey *b = (const PendingKey *) key2;

	if (a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

/* An empty heap and hash set, in a freshly reset pending_cxt. */
static void
pending_create(TimerService *ts)
{
	HASHCTL		ctl;
	MemoryContext oldcxt;

	ctl.keysize = sizeof(PendingKey);
	ctl.entrysize = sizeof(PendingEntry);
	ctl.hash = pending_hash;
	ctl.match = pending_match;
	ctl.hcxt = ts->pending_cxt;
	ts->pending = hash_create("streamflink pending timers", 1024, &ctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	oldcxt = MemoryContextSwitchTo(ts->pending_cxt);
	ts->heap = pairingheap_allocate(pending_cmp, NULL);
	MemoryContextSwitchTo(oldcxt);
	ts->pending_bytes = 0;
}

TimerService *
timers_create(StateStore *store)
{
	TimerService *ts = palloc0(sizeof(TimerService));

	/* timers have a column family of their own: see keyspace.h */
	ts->store = state_family(store, STATE_FAMILY_TIMERS);
	ts->floor = PG_INT64_MIN;
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
		ts->next[kg] = PG_INT64_MIN;
	ts->due_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink due timers",
										ALLOCSET_DEFAULT_SIZES);
	ts->pending_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink pending timers",
											ALLOCSET_DEFAULT_SIZES);
	ts->max_pending_bytes = Max(kstate_cache_budget() / TIMERS_BUDGET_DIVISOR, 256 * 1024);
	ts->batch = state_batch_create();
	pending_create(ts);
	initStringInfo(&ts->key);
	initStringInfo(&ts->upper);
	initStringInfo(&ts->skey);
	return ts;
}

TimestampTz
timers_floor(TimerService *ts)
{
	return ts->floor;
}

static void
timer_key(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	Assert(sklen >= 2);
	resetStringInfo(&ts->key);
	keyspace_append_prefix(&ts->key, keyspace_key_group(skey), KS_TIMER);
	kstate_append_time(&ts->key, when);
	appendBinaryStringInfo(&ts->key, skey + 2, sklen - 2);
}

void
timers_register(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	PendingKey	k;
	PendingEntry *e;
	PendingTimer *t;
	bool		found;

	/* below the floor it would never fire (see timer_service.h) */
	if (when < ts->floor)
		return;
	timer_key(ts, when, skey, sklen);
	k.data = ts->key.data;
	k.len = ts->key.len;
	e = hash_search(ts->pending, &k, HASH_ENTER, &found);
	if (found)
		return;
	t = MemoryContextAlloc(ts->pending_cxt, offsetof(PendingTimer, key) + ts->key.len);
	t->time = when;
	t->len = ts->key.len;
	memcpy(t->key, ts->key.data, ts->key.len);
	e->key.data = t->key;
	e->key.len = t->len;
	e->timer = t;
	pairingheap_add(ts->heap, &t->node);
	/* the timer, its hash entry and the allocators' overheads */
	ts->pending_bytes += offsetof(PendingTimer, key) + t->len + sizeof(PendingEntry) + 32;
}

void
timers_delete(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	PendingKey	k;
	PendingEntry *e;

	timer_key(ts, when, skey, sklen);
	k.data = ts->key.data;
	k.len = ts->key.len;
	e = hash_search(ts->pending, &k, HASH_FIND, NULL);
	if (e != NULL)
	{
		PendingTimer *t = e->timer;

		pairingheap_remove(ts->heap, &t->node);
		hash_search(ts->pending, &k, HASH_REMOVE, NULL);
		pfree(t);
	}

	/*
	 * It may have been flushed before (the key group's lower bound stays a
	 * lower bound).
	 */
	state_delete(ts->store, ts->key.data, ts->key.len);
}

/*
 * Write the pending timers to the store, and delete the stored timers that
 * fired since the last flush (one range per key group), in one batch.
 */
void
timers_flush(TimerService *ts)
{
	bool		any = false;

	Assert(!ts->advancing);
	while (!pairingheap_is_empty(ts->heap))
	{
		PendingTimer *t = pairingheap_container(PendingTimer, node,
												pairingheap_remove_first(ts->heap));
		uint16		kg = keyspace_key_group(t->key);

		state_batch_put_family(ts->batch, ts->store, t->key, t->len, "", 0);
		if (t->time < ts->next[kg])
			ts->next[kg] = t->time;
		any = true;
	}
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		if (!ts->fired[kg])
			continue;
		resetStringInfo(&ts->key);
		keyspace_append_prefix(&ts->key, kg, KS_TIMER);
		resetStringInfo(&ts->upper);
		keyspace_append_prefix(&ts->upper, kg, KS_TIMER);
		kstate_append_time(&ts->upper, ts->floor);
		state_batch_delete_range(ts->batch, ts->store, ts->key.data, ts->key.len,
								 ts->upper.data, ts->upper.len);
		ts->fired[kg] = false;
		any = true;
	}
	if (any)
		state_batch_write(ts->store, ts->batch);
	MemoryContextReset(ts->pending_cxt);
	pending_create(ts);
}

void
timers_maybe_flush(TimerService *ts)
{
	if (!ts->advancing && ts->pending_bytes > ts->max_pending_bytes)
		timers_flush(ts);
}

static int
due_cmp(const void *a, const void *b, void *arg)
{
	const DueTimer *x = (const DueTimer *) a;
	const DueTimer *y = (const DueTimer *) b;
	const char *keys = (const char *) arg;

	return timer_order(x->time, keys + x->off, x->len, y->time, keys + y->off, y->len);
}

/* Append a due timer to the advance's list. */
static DueTimer *
add_due(DueTimer *due, int *ndue, int *cap, StringInfo keys,
		TimestampTz t, const char *key, size_t klen)
{
	if (*ndue == *cap)
	{
		*cap *= 2;
		due = repalloc_huge(due, sizeof(DueTimer) * *cap);
	}
	due[*ndue].time = t;
	due[*ndue].off = keys->len;
	due[*ndue].len = klen;
	(*ndue)++;
	appendBinaryStringInfo(keys, key, klen);
	return due;
}

void
timers_advance(TimerService *ts, TimestampTz upto, timer_fire_fn fire, void *arg)
{
	MemoryContext old;
	StringInfoData keys;
	DueTimer   *due;
	int			ndue = 0;
	int			cap = 64;
	int			groups = 0;
	int			npending = 0;

	if (upto < ts->floor)
		return;
	/* (so that the floor, upto + 1, does not wrap) */
	upto = Min(upto, PG_INT64_MAX - 1);

	MemoryContextReset(ts->due_cxt);
	old = MemoryContextSwitchTo(ts->due_cxt);
	initStringInfo(&keys);
	due = palloc(sizeof(DueTimer) * cap);

	/*
	 * The due stored timers of each key group that has one, and the time of
	 * its first stored timer after upto (one step further in the same scan).
	 */
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		StateIter  *it;
		const char *key,
				   *val;
		size_t		klen,
					vlen;
		TimestampTz next = NO_TIMER;
		bool		any = false;

		if (ts->next[kg] > upto)
			continue;
		resetStringInfo(&ts->key);
		keyspace_append_prefix(&ts->key, kg, KS_TIMER);
		kstate_append_time(&ts->key, ts->floor);
		resetStringInfo(&ts->upper);
		keyspace_append_prefix(&ts->upper, kg, KS_TIMER + 1);
		it = state_iter_create(ts->store, ts->key.data, ts->key.len,
							   ts->upper.data, ts->upper.len);
		while (state_iter_next(it, &key, &klen, &val, &vlen))
		{
			TimestampTz t = kstate_read_time(key + KEYSPACE_HEADER);

			if (t > upto)
			{
				next = t;
				break;
			}
			due = add_due(due, &ndue, &cap, &keys, t, key, klen);
			any = true;
		}
		state_iter_destroy(it);
		ts->next[kg] = next;
		if (any)
		{
			ts->fired[kg] = true;
			groups++;
		}
	}

	/* The due pending timers, in order already. */
	while (!pairingheap_is_empty(ts->heap))
	{
		PendingTimer *t = pairingheap_container(PendingTimer, node,
												pairingheap_first(ts->heap));
		PendingKey	k;

		if (t->time > upto)
			break;
		pairingheap_remove_first(ts->heap);
		due = add_due(due, &ndue, &cap, &keys, t->time, t->key, t->len);
		k.data = t->key;
		k.len = t->len;
		hash_search(ts->pending, &k, HASH_REMOVE, NULL);
		ts->pending_bytes -= offsetof(PendingTimer, key) + t->len + sizeof(PendingEntry) + 32;
		pfree(t);
		npending++;
	}

	/*
	 * One source in one key group, or pending timers only, is in order
	 * already; else sort, and keep one of a timer both stored and pending
	 * (registered again after a flush).
	 */
	if (groups > 1 || (groups > 0 && npending > 0))
	{
		int			n = 0;

		qsort_arg(due, ndue, sizeof(DueTimer), due_cmp, keys.data);
		for (int i = 0; i < ndue; i++)
		{
			if (n > 0 && due[n - 1].len == due[i].len &&
				memcmp(keys.data + due[n - 1].off, keys.data + due[i].off, due[i].len) == 0)
				continue;
			due[n++] = due[i];
		}
		ndue = n;
	}
	MemoryContextSwitchTo(old);

	/*
	 * Timers the firing registers at or below upto would never fire (the
	 * floor passes them): raising the floor first drops them at once.
	 */
	ts->floor = upto + 1;
	ts->advancing = true;
	PG_TRY();
	{
		for (int i = 0; i < ndue; i++)
		{
			const char *key = keys.data + due[i].off;

			resetStringInfo(&ts->skey);
			appendBinaryStringInfo(&ts->skey, key, 2);
			appendBinaryStringInfo(&ts->skey, key + TIMER_HEADER, due[i].len - TIMER_HEADER);
			fire(arg, due[i].time, ts->skey.data, ts->skey.len);
		}
	}
	PG_FINALLY();
	{
		ts->advancing = false;
	}
	PG_END_TRY();
	MemoryContextReset(ts->due_cxt);
}
