/*-------------------------------------------------------------------------
 *
 * timer_service.c
 *	  Event-time timers of an operator, kept in its key groups.
 *
 * A timer lives in one of two places.  Registered, it is pending: in
 * memory, in the bucket of its time.  Windows share a handful of end times
 * (every window of a tumbling minute ends at the same time), so a bucket
 * holds many timers, and registering one is an append of its state key to
 * its bucket plus a check that the bucket does not hold it already (a
 * linear one while the bucket is small, a hash set over its keys beyond):
 * registering the same timer twice is one timer.  The buckets are in a
 * heap by time, and a hash table finds the bucket of a time.
 *
 * timers_flush (the operator's flush before a snapshot, or
 * timers_maybe_flush when the pending timers take more than their share of
 * memory) writes the pending timers to the timers' column family in one
 * batch (which puts them in key order, state.h).  A timer that fires
 * before the next flush, as most window and pattern timers do with
 * checkpoints every few seconds, costs RocksDB nothing.
 *
 * Firing (timers_advance) takes the due buckets off the heap, in time
 * order, and range-scans each key group with stored timers due, from the
 * floor to the watermark ([kg]'T'[floor] .. [kg]'T'[upto]); nothing is
 * looked up per window.  Each key group's scan is in time order, then tie
 * order (the state key less its key group, then the key group: key_cmp);
 * the scans, in a binary heap by their next timer (time, then an
 * abbreviation of the key, then the key), are merged on the fly with the
 * due buckets, each sorted in tie order when its turn comes, which gives
 * the firing order; a timer both stored and pending fires once.  So firing
 * holds one timer per key group and one bucket's sort order, never the
 * list of every due timer: the 10M windows of a minute at 10M keys fire
 * in the memory that the windows of a few keys would take.  The scans'
 * iterators are all opened before the first timer fires and stay open
 * until their key group's due timers are done: a RocksDB iterator reads
 * the database as it was when it was created (and pins the memtables and
 * files it reads), so the writes of the firing (state, the cache's
 * write-backs, timers registered or deleted) neither disturb it nor
 * change what fires, as if the due timers had been collected first.  What
 * an iterator pins is its family's, the timers', which the firing hardly
 * writes (timers_flush is not allowed then; timers_delete writes a
 * tombstone); an implicit timers' scan (below) pins the state family's
 * memtables, which an eviction while firing writes.
 *
 * Ties fire in the order of the key less its key group (and less the time
 * a kind's keys lead with: keyspace_leading_time) so that the windows
 * ending at one time reach the sink in group key order rather than in the
 * key groups' hash order: a sink inserting them into an index on the key
 * then walks its leaf pages in order.  Fired stored timers are not deleted
 * one by one: every fired time lies below the floor, so the next flush
 * deletes each key group's [kg]'T'[-inf] .. [kg]'T'[floor) with one range
 * tombstone.  Scans start at the floor and never meet them meanwhile.
 *
 * Implicit timers (timers_set_implicit): a fixed window's key leads with its
 * start, so a key group's windows lie in the order of their ends, and the
 * window is its own firing timer.  Its pending timer is then dropped by a
 * flush instead of written (the operator's write-back, done first, wrote
 * the window), and an advance range-scans each key group's windows due
 * ([kg]'W'[floor - size] .. [kg]'W'[upto - size]) next to its stored
 * timers, in the same merge.  Nothing is written or deleted per window for
 * its timer; the operator deletes the windows gone by range itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "common/int.h"
#include "lib/binaryheap.h"
#include "lib/pairingheap.h"
#include "nodes/pg_list.h"
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

/* A bucket looks for a timer it holds by a linear scan up to this size. */
#define BUCKET_LINEAR 8

/* A pending timer's state key in its bucket; deleted: DELETED in len. */
typedef struct TimerSlot
{
	uint32		off;			/* in the bucket's keys */
	uint32		len;
} TimerSlot;

#define SLOT_DELETED ((uint32) 1 << 31)

/* The hash set over a big bucket's timers: slot indexes. */
typedef struct SlotEntry
{
	uint32		idx;
	uint32		hash;
	char		status;
} SlotEntry;

struct slotset_hash;

/* The pending timers at one time. */
typedef struct TimerBucket
{
	pairingheap_node node;		/* in the heap by time */
	TimestampTz time;
	TimerSlot  *slots;
	uint32		n;				/* slots used (deleted ones too) */
	uint32		cap;
	uint32		nlive;			/* slots not deleted */
	char	   *keys;			/* the state keys, one after another */
	uint64		keys_len;
	uint64		keys_cap;
	struct slotset_hash *set;	/* NULL while n <= BUCKET_LINEAR */
} TimerBucket;

/* The map from a time to its bucket. */
typedef struct TimeEntry
{
	TimestampTz time;
	TimerBucket *bucket;
	char		status;
} TimeEntry;

/*
 * The head of a source of due timers in the merge: its time, state key and
 * the tie order's abbreviation of the key (key_abbrev).
 */
typedef struct TimerHead
{
	TimestampTz time;
	uint64		abbrev;
	const char *key;
	uint32		len;
} TimerHead;

/*
 * A key group's scan of its due stored timers in an advance: the iterator
 * stays open from the start of the advance to the end of the key group's
 * due timers, positioned on the head, whose state key (key group, then the
 * timer key past its time) is copied into 'buf'.
 */
typedef struct DueScan
{
	TimerHead	head;
	StateIter  *it;
	char	   *buf;			/* in the service's context */
	uint32		cap;
	int			kg;
	bool		implicit;		/* of the key group's implicit timers */
} DueScan;

/*
 * Scratch memory kept from one flush or advance to the next: allocating it
 * afresh each time cost page faults for every due timer.  A big one is
 * freed at a flush if the flush and the advances since the last one used
 * less than a quarter of it.
 */
typedef struct TimerBuf
{
	void	   *data;
	Size		cap;
	Size		used;			/* the most asked for since the last flush */
} TimerBuf;

#define TIMER_BUF_KEEP (1024 * 1024)

/*
 * A slot being sorted in tie order: the 8 bytes of its state key after the
 * key group, big-endian (key_abbrev).
 */
typedef struct SortSlot
{
	uint64		abbrev;
	uint32		idx;
} SortSlot;

static inline bool slot_equal(TimerBucket *b, uint32 x, uint32 y);
static inline uint32 key_hash(const char *key, uint32 len);

#define SH_PREFIX slotset
#define SH_ELEMENT_TYPE SlotEntry
#define SH_KEY_TYPE uint32
#define SH_KEY idx
#define SH_HASH_KEY(tb, key) \
	key_hash(((TimerBucket *) (tb)->private_data)->keys + \
			 ((TimerBucket *) (tb)->private_data)->slots[key].off, \
			 ((TimerBucket *) (tb)->private_data)->slots[key].len & ~SLOT_DELETED)
#define SH_EQUAL(tb, a, b) slot_equal((TimerBucket *) (tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

#define SH_PREFIX timemap
#define SH_ELEMENT_TYPE TimeEntry
#define SH_KEY_TYPE TimestampTz
#define SH_KEY time
#define SH_HASH_KEY(tb, key) murmurhash32((uint32) ((uint64) (key) ^ ((uint64) (key) >> 32)))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

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

	/*
	 * Implicit timers (timers_set_implicit): the keys of kind implicit_kind
	 * in the family 'state' fire at their leading time plus
	 * implicit_offset; implicit_kind 0: none.  inext is their 'next'.
	 */
	char		implicit_kind;
	int64		implicit_offset;
	StateStore *state;
	TimestampTz inext[STATE_KEY_GROUPS];

	MemoryContext pending_cxt;	/* the buckets, their map and heap */
	pairingheap *heap;			/* the buckets by time */
	timemap_hash *times;
	TimerBucket *last;			/* the bucket registered to last, or NULL */
	int64		pending_bytes;
	int64		max_pending_bytes;
	bool		advancing;		/* inside timers_advance */
	timer_prefetch_fn prefetch; /* or NULL */
	StateBatch *batch;

	MemoryContext cxt;			/* the service's */
	MemoryContext due_cxt;		/* the due buckets' list of an advance */
	TimerBuf	sortbuf;		/* SortSlot: one bucket being sorted */

	/*
	 * The scans of an advance (it NULL outside one, and once the key
	 * group's due timers are done), and the heap of those not done, least
	 * head first.
	 */
	DueScan		scans[STATE_KEY_GROUPS];
	DueScan		iscans[STATE_KEY_GROUPS];	/* of implicit timers */
	binaryheap *scan_heap;

	/*
	 * Timers taken off the merge and not fired yet, so that the operator
	 * can read their state in one batch before they fire (ts->prefetch):
	 * at most STATE_MULTI_GET_MAX, their keys copied (a scan's buffer is
	 * reused by its next step, a bucket freed once its timers are taken).
	 */
	int			nchunk;
	TimestampTz chunk_time[STATE_MULTI_GET_MAX];
	uint32		chunk_off[STATE_MULTI_GET_MAX];
	size_t		chunk_len[STATE_MULTI_GET_MAX];
	const char *chunk_key[STATE_MULTI_GET_MAX]; /* set when fired */
	StringInfoData chunk_keys;
	StringInfoData key;			/* scratch */
	StringInfoData upper;		/* scratch */
};

/* What a pending timer and a bucket take, with the allocators' overheads. */
#define SLOT_BYTES(len) ((len) + sizeof(TimerSlot) + 2 * sizeof(SlotEntry))
#define BUCKET_BYTES (sizeof(TimerBucket) + 2 * sizeof(TimeEntry) + 64)

static inline uint32
key_hash(const char *key, uint32 len)
{
	return hash_bytes((const unsigned char *) key, (int) len);
}

static inline bool
slot_equal(TimerBucket *b, uint32 x, uint32 y)
{
	uint32		xlen = b->slots[x].len & ~SLOT_DELETED;

	return xlen == (b->slots[y].len & ~SLOT_DELETED) &&
		memcmp(b->keys + b->slots[x].off, b->keys + b->slots[y].off, xlen) == 0;
}

/*
 * Where the part of a state key that tie order compares first starts: past
 * its key group, kind and leading time (keyspace_leading_time), or past
 * its key group only if it has no leading time (or is too short for one).
 */
static inline uint32
tie_start(const char *key, uint32 len)
{
	int			lead;

	if (len < KEYSPACE_HEADER)
		return KEYSPACE_KEY_GROUP_BYTES;
	lead = keyspace_leading_time(key[KEYSPACE_KEY_GROUP_BYTES]);
	if (lead == 0 || len < KEYSPACE_HEADER + lead)
		return KEYSPACE_KEY_GROUP_BYTES;
	return KEYSPACE_HEADER + lead;
}

/*
 * Tie order, the order of timers of one time: the kind, then the state key
 * past its leading time (from tie_start) bytewise (a prefix first), then
 * that time, then the key group.  The kind byte leads, so the order is
 * total; for a window it then follows the group key's encoding (an int's
 * numeric order: group_key.c writes integers big-endian), so the sink gets
 * the windows of one end in key order, not scattered by the key groups'
 * hash.  (Within one key group and time, a scan's keys come in this order
 * too: the keys of a kind due at one time share their leading time.)
 */
static inline int
key_cmp(const char *x, uint32 xlen, const char *y, uint32 ylen)
{
	uint32		xs,
				ys;
	int			c;

	Assert(xlen >= KEYSPACE_KEY_GROUP_BYTES && ylen >= KEYSPACE_KEY_GROUP_BYTES);
	xs = tie_start(x, xlen);
	ys = tie_start(y, ylen);
	if (xs != KEYSPACE_KEY_GROUP_BYTES && xs == ys && x[KEYSPACE_KEY_GROUP_BYTES] == y[KEYSPACE_KEY_GROUP_BYTES])
	{
		/* one kind with a leading time: the rest, then the time */
		c = memcmp(x + xs, y + ys, Min(xlen, ylen) - xs);
		if (c != 0)
			return c;
		if (xlen != ylen)
			return xlen < ylen ? -1 : 1;
		c = memcmp(x + KEYSPACE_HEADER, y + KEYSPACE_HEADER, xs - KEYSPACE_HEADER);
		if (c != 0)
			return c;
	}
	else
	{
		c = memcmp(x + KEYSPACE_KEY_GROUP_BYTES, y + KEYSPACE_KEY_GROUP_BYTES,
				   Min(xlen, ylen) - KEYSPACE_KEY_GROUP_BYTES);
		if (c != 0)
			return c;
		if (xlen != ylen)
			return xlen < ylen ? -1 : 1;
	}
	/* equal but for the key group */
	return memcmp(x, y, KEYSPACE_KEY_GROUP_BYTES);
}

/*
 * The kind of a state key and the 7 bytes from its tie_start, big-endian
 * (zeros past its end): comparing two of them unsigned agrees with key_cmp
 * where they differ.
 */
static inline uint64
key_abbrev(const char *key, uint32 len)
{
	const unsigned char *k = (const unsigned char *) key;
	uint32		from = tie_start(key, len);
	uint64		a = len > KEYSPACE_KEY_GROUP_BYTES ? k[KEYSPACE_KEY_GROUP_BYTES] : 0;

	if (from == KEYSPACE_KEY_GROUP_BYTES)
		from = KEYSPACE_HEADER;
	for (uint32 j = from; j < from + 7; j++)
		a = (a << 8) | (j < len ? k[j] : 0);
	return a;
}

/*
 * Firing order: time order, then tie order (key_cmp, decided by the
 * abbreviations where they differ).  Equal is the same time and state key.
 */
static inline int
head_cmp(const TimerHead *x, const TimerHead *y)
{
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->abbrev != y->abbrev)
		return x->abbrev < y->abbrev ? -1 : 1;
	return key_cmp(x->key, x->len, y->key, y->len);
}

/* binaryheap is a max-heap: the scan with the least head is the "greatest". */
static int
scan_cmp(Datum a, Datum b, void *arg)
{
	return head_cmp(&((const DueScan *) DatumGetPointer(b))->head,
					&((const DueScan *) DatumGetPointer(a))->head);
}

static inline int
sort_slot_cmp(const SortSlot *x, const SortSlot *y, TimerBucket *b)
{
	if (x->abbrev != y->abbrev)
		return x->abbrev < y->abbrev ? -1 : 1;
	return key_cmp(b->keys + b->slots[x->idx].off, b->slots[x->idx].len,
				   b->keys + b->slots[y->idx].off, b->slots[y->idx].len);
}

#define ST_SORT sort_slots
#define ST_ELEMENT_TYPE SortSlot
#define ST_COMPARE_ARG_TYPE TimerBucket
#define ST_COMPARE(a, b, arg) sort_slot_cmp(a, b, arg)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/* pairingheap is a max-heap: the earliest bucket is the "greatest". */
static int
bucket_cmp(const pairingheap_node *a, const pairingheap_node *b, void *arg)
{
	const TimerBucket *x = pairingheap_const_container(TimerBucket, node, a);
	const TimerBucket *y = pairingheap_const_container(TimerBucket, node, b);

	if (x->time == y->time)
		return 0;
	return x->time < y->time ? 1 : -1;
}

/* No pending timers, in a freshly reset pending_cxt. */
static void
pending_create(TimerService *ts)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(ts->pending_cxt);

	ts->heap = pairingheap_allocate(bucket_cmp, NULL);
	ts->times = timemap_create(ts->pending_cxt, 16, NULL);
	ts->last = NULL;
	ts->pending_bytes = 0;
	MemoryContextSwitchTo(oldcxt);
}

TimerService *
timers_create(StateStore *store)
{
	TimerService *ts = palloc0(sizeof(TimerService));

	/* timers have a column family of their own: see keyspace.h */
	ts->store = state_family(store, STATE_FAMILY_TIMERS);
	ts->floor = PG_INT64_MIN;
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		ts->next[kg] = PG_INT64_MIN;
		ts->inext[kg] = PG_INT64_MIN;
		ts->iscans[kg].implicit = true;
	}
	ts->cxt = CurrentMemoryContext;
	ts->due_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink due timers",
										ALLOCSET_DEFAULT_SIZES);
	ts->pending_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink pending timers",
											ALLOCSET_DEFAULT_SIZES);
	ts->max_pending_bytes = Max(kstate_cache_budget() / TIMERS_BUDGET_DIVISOR, 256 * 1024);
	ts->batch = state_batch_create();
	ts->scan_heap = binaryheap_allocate(2 * STATE_KEY_GROUPS, scan_cmp, NULL);
	pending_create(ts);
	initStringInfo(&ts->key);
	initStringInfo(&ts->upper);
	initStringInfo(&ts->chunk_keys);
	return ts;
}

void
timers_set_prefetch(TimerService *ts, timer_prefetch_fn prefetch)
{
	ts->prefetch = prefetch;
}

void
timers_set_implicit(TimerService *ts, StateStore *state, char kind, int64 offset)
{
	Assert(keyspace_leading_time(kind) == 8);
	ts->state = state;
	ts->implicit_kind = kind;
	ts->implicit_offset = offset;
}

/*
 * Is the timer at 'when' of state key skey implicit: its key of the
 * implicit kind, leading with when less the offset?
 */
static inline bool
is_implicit(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	TimestampTz due;

	return ts->implicit_kind != 0 &&
		sklen >= KEYSPACE_HEADER + 8 &&
		skey[KEYSPACE_KEY_GROUP_BYTES] == ts->implicit_kind &&
		!pg_add_s64_overflow(kstate_read_time(skey + KEYSPACE_HEADER),
							 ts->implicit_offset, &due) &&
		due == when;
}

TimestampTz
timers_floor(TimerService *ts)
{
	return ts->floor;
}

/* At least 'bytes' of buf, its contents kept. */
static void *
buf_get(TimerService *ts, TimerBuf *buf, Size bytes)
{
	bytes = Max(bytes, 64);
	if (bytes > buf->cap)
	{
		Size		cap = Max(bytes, buf->cap * 2);

		if (buf->data == NULL)
			buf->data = MemoryContextAllocHuge(ts->cxt, cap);
		else
			buf->data = repalloc_huge(buf->data, cap);
		buf->cap = cap;
	}
	buf->used = Max(buf->used, bytes);
	return buf->data;
}

/* At a flush: free a big buffer used little since the last one. */
static void
buf_trim(TimerBuf *buf)
{
	if (buf->cap > TIMER_BUF_KEEP && buf->used < buf->cap / 4)
	{
		pfree(buf->data);
		buf->data = NULL;
		buf->cap = 0;
	}
	buf->used = 0;
}

/* The bucket of time 'when', or NULL (create: a new one if none). */
static TimerBucket *
bucket_for(TimerService *ts, TimestampTz when, bool create)
{
	TimeEntry  *e;
	TimerBucket *b;
	bool		found;

	if (ts->last != NULL && ts->last->time == when)
		return ts->last;
	if (!create)
	{
		e = timemap_lookup(ts->times, when);
		return e ? e->bucket : NULL;
	}
	e = timemap_insert(ts->times, when, &found);
	if (!found)
	{
		b = MemoryContextAllocZero(ts->pending_cxt, sizeof(TimerBucket));
		b->time = when;
		b->cap = 4;
		b->slots = MemoryContextAlloc(ts->pending_cxt, sizeof(TimerSlot) * b->cap);
		b->keys_cap = 128;
		b->keys = MemoryContextAlloc(ts->pending_cxt, b->keys_cap);
		pairingheap_add(ts->heap, &b->node);
		e->bucket = b;
		ts->pending_bytes += BUCKET_BYTES;
	}
	ts->last = e->bucket;
	return e->bucket;
}

/* Append state key skey as slot b->n (not yet counted in b->n). */
static void
bucket_append(TimerBucket *b, const char *skey, uint32 sklen)
{
	if (b->n == b->cap)
	{
		b->cap *= 2;
		b->slots = repalloc_huge(b->slots, sizeof(TimerSlot) * b->cap);
	}
	if (b->keys_len + sklen > b->keys_cap)
	{
		b->keys_cap = Max(b->keys_cap * 2, b->keys_len + sklen);
		b->keys = repalloc_huge(b->keys, b->keys_cap);
	}
	memcpy(b->keys + b->keys_len, skey, sklen);
	b->slots[b->n].off = b->keys_len;
	b->slots[b->n].len = sklen;
}

/*
 * The slot of skey in bucket b, or -1.  'appended': skey is appended as
 * slot b->n already (bucket_append); a new slot is then added to the set.
 */
static int64
bucket_find(TimerService *ts, TimerBucket *b, const char *skey, uint32 sklen,
			bool appended)
{
	if (b->set == NULL && b->n >= BUCKET_LINEAR)
	{
		/* big enough for a hash set over its keys */
		b->set = slotset_create(ts->pending_cxt, b->n * 2, b);
		for (uint32 i = 0; i < b->n; i++)
		{
			TimerSlot  *s = &b->slots[i];
			bool		found;

			slotset_insert_hash(b->set, i,
								key_hash(b->keys + s->off, s->len & ~SLOT_DELETED),
								&found);
		}
	}
	if (b->set == NULL)
	{
		for (uint32 i = 0; i < b->n; i++)
		{
			TimerSlot  *s = &b->slots[i];

			if ((s->len & ~SLOT_DELETED) == sklen &&
				memcmp(b->keys + s->off, skey, sklen) == 0)
				return i;
		}
		return -1;
	}
	else
	{
		uint32		hash = key_hash(skey, sklen);
		SlotEntry  *e;

		if (appended)
		{
			bool		found;

			e = slotset_insert_hash(b->set, b->n, hash, &found);
			return found ? (int64) e->idx : -1;
		}

		/*
		 * Without the key appended, look it up as slot b->n all the same
		 * (room for it is there: bucket_append).
		 */
		bucket_append(b, skey, sklen);
		e = slotset_lookup_hash(b->set, b->n, hash);
		return e ? (int64) e->idx : -1;
	}
}

void
timers_register(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	TimerBucket *b;
	int64		i;

	Assert(sklen >= KEYSPACE_KEY_GROUP_BYTES);
	/* below the floor it would never fire (see timer_service.h) */
	if (when < ts->floor)
		return;
	b = bucket_for(ts, when, true);
	bucket_append(b, skey, sklen);
	i = bucket_find(ts, b, skey, sklen, true);
	if (i >= 0)
	{
		/* one timer already (revived if deleted) */
		if (b->slots[i].len & SLOT_DELETED)
		{
			b->slots[i].len &= ~SLOT_DELETED;
			b->nlive++;
		}
		return;
	}
	b->keys_len += sklen;
	b->n++;
	b->nlive++;
	ts->pending_bytes += SLOT_BYTES(sklen);
}

/* The timer key of a timer in ts->key. */
static void
timer_key(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	Assert(sklen >= KEYSPACE_KEY_GROUP_BYTES);
	resetStringInfo(&ts->key);
	keyspace_append_prefix(&ts->key, keyspace_key_group(skey), KS_TIMER);
	kstate_append_time(&ts->key, when);
	appendBinaryStringInfo(&ts->key, skey + KEYSPACE_KEY_GROUP_BYTES, sklen - KEYSPACE_KEY_GROUP_BYTES);
}

void
timers_delete(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	TimerBucket *b = bucket_for(ts, when, false);

	if (b != NULL)
	{
		int64		i = bucket_find(ts, b, skey, sklen, false);

		if (i >= 0 && !(b->slots[i].len & SLOT_DELETED))
		{
			/* (its memory goes with the bucket) */
			b->slots[i].len |= SLOT_DELETED;
			b->nlive--;
		}
	}

	/*
	 * It may have been flushed before (the key group's lower bound stays a
	 * lower bound).
	 */
	timer_key(ts, when, skey, sklen);
	state_delete(ts->store, ts->key.data, ts->key.len);
}

/*
 * The live timers of bucket b sorted in tie order (key_cmp), in
 * ts->sortbuf: the order in which timers of one time fire.  Returns their
 * number.
 */
static uint32
bucket_sort(TimerService *ts, TimerBucket *b)
{
	SortSlot   *ss = buf_get(ts, &ts->sortbuf, sizeof(SortSlot) * b->nlive);
	uint32		m = 0;

	for (uint32 i = 0; i < b->n; i++)
	{
		const TimerSlot *s = &b->slots[i];

		if (s->len & SLOT_DELETED)
			continue;
		ss[m].abbrev = key_abbrev(b->keys + s->off, s->len);
		ss[m].idx = i;
		m++;
	}
	Assert(m == b->nlive);
	sort_slots(ss, m, b);
	return m;
}

/*
 * Write the pending timers to the store, and delete the stored timers that
 * fired since the last flush (one range per key group), in one batch.  The
 * batch puts the timers in key order ([kg]'T'[time][rest of the state key],
 * state_batch_write), so they go in as they lie in their buckets.
 */
void
timers_flush(TimerService *ts)
{
	bool		any = false;

	Assert(!ts->advancing);
	while (!pairingheap_is_empty(ts->heap))
	{
		TimerBucket *b = pairingheap_container(TimerBucket, node,
											   pairingheap_remove_first(ts->heap));

		for (uint32 i = 0; i < b->n; i++)
		{
			const TimerSlot *s = &b->slots[i];
			const char *skey = b->keys + s->off;
			uint16		kg;

			if (s->len & SLOT_DELETED)
				continue;
			kg = keyspace_key_group(skey);
			if (is_implicit(ts, b->time, skey, s->len))
			{
				/* the operator's write-back stored its key: its timer */
				if (b->time < ts->inext[kg])
					ts->inext[kg] = b->time;
				continue;
			}
			timer_key(ts, b->time, skey, s->len);
			state_batch_put_family(ts->batch, ts->store, ts->key.data, ts->key.len, "", 0);
			if (b->time < ts->next[kg])
				ts->next[kg] = b->time;
			any = true;
		}
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
	buf_trim(&ts->sortbuf);
}

bool
timers_over_budget(TimerService *ts)
{
	return !ts->advancing &&
		(ts->pending_bytes > ts->max_pending_bytes ||
		 (unlikely(kstate_debug_discard()) && ts->pending_bytes > 0));
}

void
timers_maybe_flush(TimerService *ts)
{
	if (timers_over_budget(ts))
		timers_flush(ts);
}

/* Give back a fired bucket's memory. */
static void
bucket_free(TimerService *ts, TimerBucket *b)
{
	ts->pending_bytes -= BUCKET_BYTES;
	for (uint32 i = 0; i < b->n; i++)
		ts->pending_bytes -= SLOT_BYTES(b->slots[i].len & ~SLOT_DELETED);
	if (b->set)
		slotset_destroy(b->set);
	pfree(b->slots);
	pfree(b->keys);
	pfree(b);
}

/*
 * Move scan s to the key group's next due stored timer (the first one if
 * it has not started), copying its state key into s->buf: the key group,
 * then the timer key past its time, as the timer was registered (an
 * implicit timer's: its key).  Returns false, with the iterator destroyed
 * and ts->next[kg] (ts->inext[kg]) set to the time of the key group's
 * first stored timer after upto (NO_TIMER: none), once there is none due.
 */
/*
 * Make scan s's head the timer at time t whose state key is a then b,
 * copied into s->buf.
 */
static void
scan_set_head(TimerService *ts, DueScan *s, TimestampTz t,
			  const char *a, size_t alen, const char *b, size_t blen)
{
	uint32		len = alen + blen;

	if (len > s->cap)
	{
		s->cap = Max(len, 64);
		if (s->buf)
			pfree(s->buf);
		s->buf = MemoryContextAlloc(ts->cxt, s->cap);
	}
	memcpy(s->buf, a, alen);
	if (blen > 0)
		memcpy(s->buf + alen, b, blen);
	s->head.time = t;
	s->head.key = s->buf;
	s->head.len = len;
	s->head.abbrev = key_abbrev(s->buf, len);
}

static bool
scan_next(TimerService *ts, DueScan *s, TimestampTz upto)
{
	const char *key,
			   *val;
	size_t		klen,
				vlen;
	TimestampTz t = NO_TIMER;

	if (s->implicit)
	{
		/* a key of the implicit kind, in time order: the timer's state key */
		while (state_iter_next(s->it, &key, &klen, &val, &vlen))
		{
			TimestampTz due;

			if (klen < KEYSPACE_HEADER + 8 ||
				pg_add_s64_overflow(kstate_read_time(key + KEYSPACE_HEADER),
									ts->implicit_offset, &due))
				continue;		/* (none such is written) */
			if (due > upto)
			{
				t = due;
				break;
			}
			scan_set_head(ts, s, due, key, klen, NULL, 0);
			return true;
		}
	}
	else if (state_iter_next(s->it, &key, &klen, &val, &vlen))
	{
		t = kstate_read_time(key + KEYSPACE_HEADER);
		if (t <= upto)
		{
			/* the key group, then the timer key past its time */
			scan_set_head(ts, s, t, key, KEYSPACE_KEY_GROUP_BYTES,
						  key + TIMER_HEADER, klen - TIMER_HEADER);
			return true;
		}
	}
	if (s->implicit)
		ts->inext[s->kg] = t;
	else
		ts->next[s->kg] = t;
	state_iter_destroy(s->it);
	s->it = NULL;
	return false;
}

/*
 * Fire the due timers: a merge of the key groups' scans (in a heap by
 * their heads) and of the due buckets (one sorted at a time), in firing
 * order.  The scans are all opened, and the due buckets taken off the
 * heap and time map, before the first timer fires: an iterator reads the
 * database as it was when it was created, so what the firing writes
 * (state, timers registered past upto, timers deleted) changes neither
 * list, and every timer due at the start fires, as if collected first.
 */
/*
 * Fire the timers taken off the merge, after telling the operator their
 * state keys (ts->prefetch): its reads of their state are one batch.
 */
static void
chunk_fire(TimerService *ts, timer_fire_fn fire, void *arg)
{
	int			n = ts->nchunk;

	if (n == 0)
		return;
	/* (the keys' buffer is complete: it no longer moves) */
	for (int i = 0; i < n; i++)
		ts->chunk_key[i] = ts->chunk_keys.data + ts->chunk_off[i];
	if (ts->prefetch != NULL)
		ts->prefetch(arg, n, ts->chunk_time, ts->chunk_key, ts->chunk_len);
	for (int i = 0; i < n; i++)
		fire(arg, ts->chunk_time[i], ts->chunk_key[i], ts->chunk_len[i]);
	ts->nchunk = 0;
	resetStringInfo(&ts->chunk_keys);
}

/*
 * The next timer in firing order: fired with the chunk it joins.  Firing
 * later than it is taken off changes nothing: the scans read the store as
 * it was when they were opened, the due buckets are off the pending ones,
 * and what the firing registers is at or above the floor, past upto.
 */
static void
chunk_add(TimerService *ts, TimestampTz time, const char *key, uint32 len,
		  timer_fire_fn fire, void *arg)
{
	if (ts->nchunk == STATE_MULTI_GET_MAX)
		chunk_fire(ts, fire, arg);
	ts->chunk_time[ts->nchunk] = time;
	ts->chunk_off[ts->nchunk] = ts->chunk_keys.len;
	ts->chunk_len[ts->nchunk] = len;
	appendBinaryStringInfo(&ts->chunk_keys, key, len);
	ts->nchunk++;
}

void
timers_advance(TimerService *ts, TimestampTz upto, timer_fire_fn fire, void *arg)
{
	MemoryContext old;
	List	   *buckets = NIL;
	ListCell   *bucket_lc;
	TimerBucket *b = NULL;		/* the due bucket being fired */
	SortSlot   *ss = NULL;		/* its live timers in tie order */
	uint32		nss = 0;
	uint32		iss = 0;
	TimerHead	ph;				/* the pending timers' head */

	if (upto < ts->floor)
		return;
	/* (so that the floor, upto + 1, does not wrap) */
	upto = Min(upto, PG_INT64_MAX - 1);

	ts->advancing = true;
	binaryheap_reset(ts->scan_heap);
	PG_TRY();
	{
		/*
		 * A scan of each key group with a stored timer due, from the floor
		 * on; its first step also finds a key group's first timer after
		 * upto.
		 */
		for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
		{
			DueScan    *s = &ts->scans[kg];

			if (ts->next[kg] > upto)
				continue;
			resetStringInfo(&ts->key);
			keyspace_append_prefix(&ts->key, kg, KS_TIMER);
			kstate_append_time(&ts->key, ts->floor);
			resetStringInfo(&ts->upper);
			keyspace_append_prefix(&ts->upper, kg, KS_TIMER + 1);
			s->kg = kg;
			s->it = state_iter_create(ts->store, ts->key.data, ts->key.len,
									  ts->upper.data, ts->upper.len);
			if (scan_next(ts, s, upto))
			{
				ts->fired[kg] = true;
				binaryheap_add_unordered(ts->scan_heap, PointerGetDatum(s));
			}
		}

		/*
		 * And of each key group with an implicit timer due: its keys of the
		 * kind from the floor less the offset (all of them if that is below
		 * the range of times).
		 */
		for (int kg = 0; ts->implicit_kind != 0 && kg < STATE_KEY_GROUPS; kg++)
		{
			DueScan    *s = &ts->iscans[kg];
			TimestampTz from;

			if (ts->inext[kg] > upto)
				continue;
			resetStringInfo(&ts->key);
			keyspace_append_prefix(&ts->key, kg, ts->implicit_kind);
			if (!pg_sub_s64_overflow(ts->floor, ts->implicit_offset, &from))
				kstate_append_time(&ts->key, from);
			resetStringInfo(&ts->upper);
			keyspace_append_prefix(&ts->upper, kg, ts->implicit_kind + 1);
			s->kg = kg;
			s->it = state_iter_create(ts->state, ts->key.data, ts->key.len,
									  ts->upper.data, ts->upper.len);
			if (scan_next(ts, s, upto))
				binaryheap_add_unordered(ts->scan_heap, PointerGetDatum(s));
		}
		binaryheap_build(ts->scan_heap);

		/* The due buckets, in time order, off the heap and the time map. */
		MemoryContextReset(ts->due_cxt);
		old = MemoryContextSwitchTo(ts->due_cxt);
		while (!pairingheap_is_empty(ts->heap))
		{
			TimerBucket *first = pairingheap_container(TimerBucket, node,
													   pairingheap_first(ts->heap));

			if (first->time > upto)
				break;
			pairingheap_remove_first(ts->heap);
			timemap_delete(ts->times, first->time);
			if (ts->last == first)
				ts->last = NULL;
			buckets = lappend(buckets, first);
		}
		MemoryContextSwitchTo(old);
		bucket_lc = list_head(buckets);

		/*
		 * Timers the firing registers at or below upto would never fire
		 * (the floor passes them): raising the floor first drops them at
		 * once.
		 */
		ts->floor = upto + 1;

		for (;;)
		{
			DueScan    *s = NULL;
			int			c;

			/* the pending timers' head: the next live one of the buckets */
			while (iss == nss && bucket_lc != NULL)
			{
				if (b != NULL)
					bucket_free(ts, b);
				b = (TimerBucket *) lfirst(bucket_lc);
				bucket_lc = lnext(buckets, bucket_lc);
				nss = bucket_sort(ts, b);
				ss = ts->sortbuf.data;
				iss = 0;
			}
			if (iss < nss)
			{
				const TimerSlot *slot = &b->slots[ss[iss].idx];

				ph.time = b->time;
				ph.abbrev = ss[iss].abbrev;
				ph.key = b->keys + slot->off;
				ph.len = slot->len;
			}

			if (!binaryheap_empty(ts->scan_heap))
				s = (DueScan *) DatumGetPointer(binaryheap_first(ts->scan_heap));
			if (s == NULL && iss == nss)
				break;
			if (s == NULL)
				c = 1;
			else if (iss == nss)
				c = -1;
			else
				c = head_cmp(&s->head, &ph);

			if (c <= 0)
			{
				/*
				 * A stored timer; one both stored and pending (registered
				 * again after a flush) fires once.
				 */
				chunk_add(ts, s->head.time, s->head.key, s->head.len, fire, arg);
				if (c == 0)
					iss++;
				if (scan_next(ts, s, upto))
					binaryheap_replace_first(ts->scan_heap, PointerGetDatum(s));
				else
					(void) binaryheap_remove_first(ts->scan_heap);
			}
			else
			{
				chunk_add(ts, ph.time, ph.key, ph.len, fire, arg);
				iss++;
			}
		}
		chunk_fire(ts, fire, arg);
		if (b != NULL)
			bucket_free(ts, b);
	}
	PG_FINALLY();
	{
		ts->nchunk = 0;
		resetStringInfo(&ts->chunk_keys);
		/*
		 * After an error, the key groups not done keep their lower bound
		 * (below upto), still a lower bound; the due buckets not freed go
		 * with the pending timers' context at the next flush.
		 */
		ts->advancing = false;
		for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
		{
			if (ts->scans[kg].it != NULL)
			{
				state_iter_destroy(ts->scans[kg].it);
				ts->scans[kg].it = NULL;
			}
			if (ts->iscans[kg].it != NULL)
			{
				state_iter_destroy(ts->iscans[kg].it);
				ts->iscans[kg].it = NULL;
			}
		}
		binaryheap_reset(ts->scan_heap);
	}
	PG_END_TRY();
	MemoryContextReset(ts->due_cxt);
}
