/*-------------------------------------------------------------------------
 *
 * keyed_state.c
 *	  Keyed operator state: a bounded write-back cache over a StateStore.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "common/hashfn.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "keyed_state.h"
#include "state_tuning.h"

/*
 * streamflink.state_cache_memory, in kB: what the cached objects of one
 * worker may take, at most a worker's share of streamflink.state_memory.
 */
static int	state_cache_memory_kb = 64 * 1024;

/*
 * How often (in calls of kstate_full) the cache's memory is measured: the
 * measure walks the cache's memory contexts, some aggregates make one per
 * state.  The bound may thus be passed by what this many events add.
 */
#define KSTATE_MEASURE_EVERY 32

void
kstate_define_settings(void)
{
	DefineCustomIntVariable("streamflink.state_cache_memory",
							"Memory of a worker's cache of keyed state objects.",
							"Objects stay cached across checkpoints; above this, the cache "
							"writes changed ones back to RocksDB and drops the least recently used half. "
							"At most a worker's share of streamflink.state_memory; taken at a worker's start.",
							&state_cache_memory_kb, 64 * 1024, 1024, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
}

int64
kstate_cache_budget(void)
{
	return Min((int64) state_cache_memory_kb * 1024, state_memory_share());
}

/* Hash keys are variable-length byte strings, held by pointer. */
typedef struct CacheKey
{
	const char *data;
	size_t		len;
} CacheKey;

typedef struct CacheEntry
{
	CacheKey	key;			/* data copied into the cache context */
	void	   *obj;			/* NULL: none (deleted, or not in the store) */
	uint64		used;			/* access tick of the last get or put */
	bool		dirty;			/* differs from the store */
	bool		stored;			/* the store may hold a value under key */
} CacheEntry;

struct KeyedState
{
	StateStore *store;
	const KeyedStateOps *ops;
	void	   *arg;
	int64		max_bytes;
	MemoryContext cxt;			/* entries, keys and objects */
	HTAB	   *cache;
	uint64		tick;			/* accesses so far */
	int			calls;			/* of kstate_full since the last measure */
	bool		full;			/* as last measured */
	StringInfoData buf;
	StateBatch *batch;
};

static uint32
cache_key_hash(const void *key, Size keysize)
{
	const CacheKey *k = (const CacheKey *) key;

	return hash_bytes((const unsigned char *) k->data, (int) k->len);
}

static int
cache_key_match(const void *key1, const void *key2, Size keysize)
{
	const CacheKey *a = (const CacheKey *) key1;
	const CacheKey *b = (const CacheKey *) key2;

	if (a->len != b->len)
		return 1;
	return memcmp(a->data, b->data, a->len);
}

static void
cache_create(KeyedState *ks)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(CacheKey);
	ctl.entrysize = sizeof(CacheEntry);
	ctl.hash = cache_key_hash;
	ctl.match = cache_key_match;
	ctl.hcxt = ks->cxt;
	ks->cache = hash_create("streamflink keyed state", 1024, &ctl,
							HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

KeyedState *
kstate_create(StateStore *store, const KeyedStateOps *ops, void *arg, int64 max_bytes)
{
	KeyedState *ks = palloc0(sizeof(KeyedState));

	ks->store = store;
	ks->ops = ops;
	ks->arg = arg;
	ks->max_bytes = Max(max_bytes, 64 * 1024);
	ks->cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink keyed state",
									ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&ks->buf);
	ks->batch = state_batch_create();
	cache_create(ks);
	return ks;
}

MemoryContext
kstate_memory(KeyedState *ks)
{
	return ks->cxt;
}

static CacheEntry *
cache_enter(KeyedState *ks, const char *key, size_t klen, bool *found)
{
	CacheKey	k = {key, klen};
	CacheEntry *e = hash_search(ks->cache, &k, HASH_ENTER, found);

	if (!*found)
	{
		char	   *copy = MemoryContextAlloc(ks->cxt, klen);

		memcpy(copy, key, klen);
		e->key.data = copy;
		e->key.len = klen;
		e->obj = NULL;
		e->dirty = false;
		e->stored = true;		/* unknown: maybe */
	}
	e->used = ++ks->tick;
	return e;
}

void *
kstate_get(KeyedState *ks, const char *key, size_t klen)
{
	bool		found;
	CacheEntry *e = cache_enter(ks, key, klen, &found);

	if (!found)
	{
		if (state_get(ks->store, key, klen, &ks->buf))
		{
			MemoryContext old = MemoryContextSwitchTo(ks->cxt);

			e->obj = ks->ops->deserialize(ks->arg, ks->buf.data, ks->buf.len);
			MemoryContextSwitchTo(old);
		}
		else
			e->stored = false;	/* a write-back of a delete is not needed */
	}
	return e->obj;
}

void
kstate_put(KeyedState *ks, const char *key, size_t klen, void *obj)
{
	bool		found;
	CacheEntry *e = cache_enter(ks, key, klen, &found);

	e->obj = obj;
	e->dirty = true;
}

void
kstate_delete(KeyedState *ks, const char *key, size_t klen)
{
	kstate_put(ks, key, klen, NULL);
}

bool
kstate_full(KeyedState *ks)
{
	if (++ks->calls >= KSTATE_MEASURE_EVERY)
	{
		ks->calls = 0;
		ks->full = MemoryContextMemAllocated(ks->cxt, true) > (Size) ks->max_bytes;
	}
	return ks->full;
}

/*
 * Write every changed object back to the store in one batch; they stay
 * cached, clean.  Entries that hold no object are dropped (a deleted
 * window is not looked up again).
 */
static void
write_back(KeyedState *ks)
{
	HASH_SEQ_STATUS seq;
	CacheEntry *e;
	bool		any = false;

	hash_seq_init(&seq, ks->cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->dirty)
		{
			if (e->obj == NULL)
			{
				/* never written, or deleted already: nothing to delete */
				if (e->stored)
				{
					state_batch_delete(ks->batch, e->key.data, e->key.len);
					any = true;
				}
			}
			else
			{
				resetStringInfo(&ks->buf);
				ks->ops->serialize(ks->arg, e->obj, &ks->buf);
				state_batch_put(ks->batch, e->key.data, e->key.len, ks->buf.data, ks->buf.len);
				any = true;
			}
			e->dirty = false;
			e->stored = e->obj != NULL;
		}
		if (e->obj == NULL)
		{
			char	   *data = (char *) e->key.data;

			/* (removing the entry being visited is allowed) */
			hash_search(ks->cache, &e->key, HASH_REMOVE, NULL);
			pfree(data);
		}
	}
	if (any)
		state_batch_write(ks->store, ks->batch);
}

void
kstate_flush(KeyedState *ks)
{
	write_back(ks);
}

static int
tick_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * Write back, then keep the more recently used half of the objects.  They
 * cannot be freed one by one (an object is whatever its deserialize
 * allocated, aggregate states included), so the kept ones are serialized,
 * the cache's context is reset, and they are built again from their bytes:
 * the context keeps its identity (aggregates allocate their states in it),
 * and memory returns to the bound.
 */
void
kstate_evict(KeyedState *ks)
{
	MemoryContext tmp;
	MemoryContext old;
	HASH_SEQ_STATUS seq;
	CacheEntry *e;
	long		n;
	uint64	   *ticks;
	uint64		threshold = PG_UINT64_MAX;
	StringInfoData kept;
	int			nkept = 0;
	const char *p;

	write_back(ks);

	tmp = AllocSetContextCreate(CurrentMemoryContext, "streamflink keyed state eviction",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);

	/* the median access tick: entries used at or after it stay */
	n = hash_get_num_entries(ks->cache);
	if (n > 1)
	{
		long		i = 0;

		ticks = palloc(sizeof(uint64) * n);
		hash_seq_init(&seq, ks->cache);
		while ((e = hash_seq_search(&seq)) != NULL)
			ticks[i++] = e->used;
		qsort(ticks, n, sizeof(uint64), tick_cmp);
		threshold = ticks[n / 2];
	}

	/* [used:8][klen:4][key][vlen:4][value] of each kept object */
	initStringInfo(&kept);
	hash_seq_init(&seq, ks->cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		uint32		klen = (uint32) e->key.len;
		uint32		vlen;
		int			at;

		if (e->used < threshold || e->obj == NULL)
			continue;
		appendBinaryStringInfo(&kept, (char *) &e->used, sizeof(uint64));
		appendBinaryStringInfo(&kept, (char *) &klen, sizeof(uint32));
		appendBinaryStringInfo(&kept, e->key.data, klen);
		at = kept.len;
		appendBinaryStringInfo(&kept, (char *) &klen, sizeof(uint32));	/* room */
		MemoryContextSwitchTo(ks->cxt); /* serialize as kstate_flush does */
		ks->ops->serialize(ks->arg, e->obj, &kept);
		MemoryContextSwitchTo(tmp);
		vlen = (uint32) (kept.len - at - sizeof(uint32));
		memcpy(kept.data + at, &vlen, sizeof(uint32));
		nkept++;
	}

	MemoryContextReset(ks->cxt);
	cache_create(ks);

	/* the kept ones, clean and in the store, as they were */
	p = kept.data;
	for (int i = 0; i < nkept; i++)
	{
		uint64		used;
		uint32		klen;
		uint32		vlen;
		bool		found;

		memcpy(&used, p, sizeof(uint64));
		memcpy(&klen, p + sizeof(uint64), sizeof(uint32));
		p += sizeof(uint64) + sizeof(uint32);
		e = cache_enter(ks, p, klen, &found);
		p += klen;
		memcpy(&vlen, p, sizeof(uint32));
		p += sizeof(uint32);
		MemoryContextSwitchTo(ks->cxt);
		e->obj = ks->ops->deserialize(ks->arg, p, vlen);
		MemoryContextSwitchTo(tmp);
		e->used = used;
		e->stored = true;
		p += vlen;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);

	/* half of a cache still over the bound (huge objects): keep none */
	if (nkept > 0 && MemoryContextMemAllocated(ks->cxt, true) > (Size) ks->max_bytes)
	{
		MemoryContextReset(ks->cxt);
		cache_create(ks);
	}
	ks->full = false;
	ks->calls = 0;
}

void
kstate_append_time(StringInfo buf, int64 t)
{
	uint64		u = ((uint64) t) ^ (UINT64CONST(1) << 63);
	unsigned char b[8];

	for (int i = 7; i >= 0; i--)
	{
		b[i] = u & 0xFF;
		u >>= 8;
	}
	appendBinaryStringInfo(buf, (char *) b, 8);
}

int64
kstate_read_time(const char *p)
{
	uint64		u = 0;

	for (int i = 0; i < 8; i++)
		u = (u << 8) | (unsigned char) p[i];
	return (int64) (u ^ (UINT64CONST(1) << 63));
}

/* --- per-key-group counters ---------------------------------------------- */

struct KeyGroupCounter
{
	StateStore *store;
	uint8		id;
	int64		total;
	int64		count[STATE_KEY_GROUPS];
	bool		dirty[STATE_KEY_GROUPS];
	StateBatch *batch;
	StringInfoData key;
};

static void
counter_key(StringInfo buf, uint16 kg, uint8 id)
{
	resetStringInfo(buf);
	keyspace_append_prefix(buf, kg, KS_COUNTER);
	appendStringInfoChar(buf, (char) id);
}

KeyGroupCounter *
kstate_counter_open(StateStore *store, uint8 id)
{
	KeyGroupCounter *c = palloc0(sizeof(KeyGroupCounter));
	StringInfoData val;

	c->store = store;
	c->id = id;
	c->batch = state_batch_create();
	initStringInfo(&c->key);
	initStringInfo(&val);
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		counter_key(&c->key, kg, id);
		if (state_get(store, c->key.data, c->key.len, &val) && val.len == sizeof(int64))
		{
			memcpy(&c->count[kg], val.data, sizeof(int64));
			c->total += c->count[kg];
		}
	}
	pfree(val.data);
	return c;
}

void
kstate_counter_add(KeyGroupCounter *c, const char *skey, int64 delta)
{
	uint16		kg = keyspace_key_group(skey);

	Assert(kg < STATE_KEY_GROUPS);
	c->count[kg] += delta;
	c->dirty[kg] = true;
	c->total += delta;
}

int64
kstate_counter_total(KeyGroupCounter *c)
{
	return c->total;
}

void
kstate_counter_flush(KeyGroupCounter *c)
{
	bool		any = false;

	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		if (!c->dirty[kg])
			continue;
		counter_key(&c->key, kg, c->id);
		state_batch_put(c->batch, c->key.data, c->key.len,
						(char *) &c->count[kg], sizeof(int64));
		c->dirty[kg] = false;
		any = true;
	}
	if (any)
		state_batch_write(c->store, c->batch);
}
