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

/* streamflink.debug_discard_state: see kstate_debug_discard */
static bool debug_discard_state = false;

/*
 * How often (in calls of kstate_full) the cache's memory is measured: the
 * measure walks the cache's memory contexts, some aggregates make one per
 * state.  The bound may thus be passed by what this many events add.
 */
#define KSTATE_MEASURE_EVERY 32

/* Objects serialized between two resets of the scratch context. */
#define KSTATE_SCRATCH_RESET_EVERY 64

void
kstate_define_settings(void)
{
	DefineCustomIntVariable("streamflink.state_cache_memory",
							"Memory of a worker's cache of keyed state objects.",
							"Objects stay cached across checkpoints; above this, the cache "
							"writes changed ones back to RocksDB and drops the cached objects. "
							"At most a worker's share of streamflink.state_memory; taken at a worker's start.",
							&state_cache_memory_kb, 64 * 1024, 1024, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomBoolVariable("streamflink.debug_discard_state",
							 "Empties keyed state caches and writes pending timers between any two events (testing).",
							 "For tests of what writing state early must keep: every operator's cache writes back "
							 "and drops its objects, and its pending timers are written, whenever it may. Very slow.",
							 &debug_discard_state, false,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}

bool
kstate_debug_discard(void)
{
	return debug_discard_state;
}

int64
kstate_cache_budget(void)
{
	return Min((int64) state_cache_memory_kb * 1024, state_memory_share());
}

/*
 * A cached key: one chunk holding the entry and its key bytes (a 16-byte
 * key, as a window's of an int key, makes a 32-byte chunk).  Entries are
 * allocated one by one (the hash table holds pointers to them), so they stay
 * where they are while the table grows or moves its slots: the visit array
 * and 'last' point to them.  An entry is freed when a write-back drops it,
 * or by an eviction (with everything else).
 */
typedef struct CacheEntry
{
	void	   *obj;			/* NULL: none (deleted, or not in the store) */
	uint32		hash;			/* of the key bytes */
	uint32		klen:29,
				dirty:1,		/* differs from the store */
				stored:1,		/* the store may hold a value under key */
				listed:1;		/* on the visit array */
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* the key */
} CacheEntry;

#define KSTATE_MAX_KEY ((1 << 29) - 1)

/*
 * The hash table: Postgres' simplehash (open addressing), a slot holding
 * the entry's pointer and hash, so a probe compares keys only when hashes
 * match and growing never touches the entries.  A lookup's key is an entry
 * too (the cache's probe).
 */
typedef struct CacheSlot
{
	CacheEntry *entry;
	uint32		hash;
	char		status;
} CacheSlot;

#define SH_PREFIX kcache
#define SH_ELEMENT_TYPE CacheSlot
#define SH_KEY_TYPE CacheEntry *
#define SH_KEY entry
#define SH_HASH_KEY(tb, key) ((key)->hash)
#define SH_EQUAL(tb, a, b) \
	((a)->klen == (b)->klen && memcmp((a)->data, (b)->data, (a)->klen) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct KeyedState
{
	StateStore *store;
	const KeyedStateOps *ops;
	void	   *arg;
	int64		max_bytes;
	MemoryContext cxt;			/* entries, keys, hash table and objects */

	/*
	 * Where objects are serialized: what a serialize allocates besides the
	 * bytes it appends (an aggregate's serial function returns a bytea of
	 * its own, numeric's builds it in a 1kB buffer) is garbage, which in the
	 * caller's context would grow with the number of objects written back
	 * until its transaction ends.  Reset after every few objects.
	 */
	MemoryContext scratch;
	kcache_hash *cache;

	/*
	 * The entries a write-back must visit: the changed ones and those
	 * holding no object (dropped by it), so that a checkpoint costs what
	 * changed since the last one, not a walk over the whole cache.  (The
	 * batch puts them in key order: state_batch_write.)  In the cache's
	 * context (counted in its memory; made again after an eviction).
	 */
	CacheEntry **visit;
	int			nvisit;
	int			visit_cap;

	/* A lookup's key, as an entry (of probe_cap key bytes). */
	CacheEntry *probe;
	size_t		probe_cap;

	/*
	 * The entry of the last get, put or delete: an operator reads a key's
	 * object, changes it and puts it back, so the put finds it without a
	 * second hash lookup.
	 */
	CacheEntry *last;
	int			calls;			/* of kstate_full since the last measure */
	bool		full;			/* as last measured */
	int64		evictions;		/* since the cache's creation */
	StringInfoData buf;
	StateBatch *batch;
	bool		staged;			/* the batch holds operations besides the
								 * entries' (range deletions, counters) */
};

static void
cache_create(KeyedState *ks)
{
	ks->cache = kcache_create(ks->cxt, 1024, NULL);
	ks->visit_cap = 1024;
	ks->visit = MemoryContextAlloc(ks->cxt, sizeof(CacheEntry *) * ks->visit_cap);
	ks->nvisit = 0;
	ks->last = NULL;
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
	ks->scratch = AllocSetContextCreate(CurrentMemoryContext, "streamflink keyed state serialize",
										ALLOCSET_DEFAULT_SIZES);
	ks->probe_cap = 64;
	ks->probe = palloc(offsetof(CacheEntry, data) + ks->probe_cap);
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

static inline void
visit_later(KeyedState *ks, CacheEntry *e)
{
	if (!e->listed)
	{
		if (ks->nvisit == ks->visit_cap)
		{
			ks->visit_cap *= 2;
			ks->visit = repalloc_huge(ks->visit, sizeof(CacheEntry *) * ks->visit_cap);
		}
		e->listed = true;
		ks->visit[ks->nvisit++] = e;
	}
}

static CacheEntry *
cache_enter(KeyedState *ks, const char *key, size_t klen, bool *found)
{
	CacheEntry *probe = ks->probe;
	CacheEntry *e = ks->last;
	CacheSlot  *slot;

	if (e != NULL && e->klen == klen && memcmp(e->data, key, klen) == 0)
	{
		*found = true;
		return e;
	}
	if (klen > KSTATE_MAX_KEY)
		elog(ERROR, "state key of %zu bytes is too long", klen);
	if (klen > ks->probe_cap)
	{
		ks->probe_cap = Max(klen, ks->probe_cap * 2);
		probe = ks->probe = repalloc(probe, offsetof(CacheEntry, data) + ks->probe_cap);
	}
	memcpy(probe->data, key, klen);
	probe->klen = (uint32) klen;
	probe->hash = hash_bytes((const unsigned char *) key, (int) klen);
	slot = kcache_insert(ks->cache, probe, found);
	if (*found)
		e = slot->entry;
	else
	{
		e = MemoryContextAlloc(ks->cxt, offsetof(CacheEntry, data) + klen);
		memcpy(e->data, key, klen);
		e->klen = (uint32) klen;
		e->hash = probe->hash;
		e->obj = NULL;
		e->dirty = false;
		e->stored = true;		/* unknown: maybe */
		e->listed = false;
		slot->entry = e;		/* was the probe */
	}
	ks->last = e;
	return e;
}

/* Drop an entry that holds no object (and is off the visit list). */
static void
cache_drop(KeyedState *ks, CacheEntry *e)
{
	Assert(e->obj == NULL && !e->listed);
	if (ks->last == e)
		ks->last = NULL;
	kcache_delete(ks->cache, e);
	pfree(e);
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
		{
			e->stored = false;	/* a write-back of a delete is not needed */
			visit_later(ks, e); /* dropped by the next write-back */
		}
	}
	return e->obj;
}

void *
kstate_get_unstored(KeyedState *ks, const char *key, size_t klen)
{
	bool		found;
	CacheEntry *e = cache_enter(ks, key, klen, &found);

	if (!found)
	{
		/* as kstate_get of an absent key, without reading the store */
		e->stored = false;
		visit_later(ks, e);
	}
	return e->obj;
}

static CacheEntry *cache_find(KeyedState *ks, const char *key, size_t klen);

void *
kstate_peek_unstored(KeyedState *ks, const char *key, size_t klen)
{
	CacheEntry *e = cache_find(ks, key, klen);

	return e != NULL ? e->obj : NULL;
}

void
kstate_put(KeyedState *ks, const char *key, size_t klen, void *obj)
{
	bool		found;
	CacheEntry *e = cache_enter(ks, key, klen, &found);

	/* The object replaced (or deleted) is no one's any more. */
	if (e->obj != NULL && e->obj != obj && ks->ops->free != NULL)
		ks->ops->free(ks->arg, e->obj);
	e->obj = obj;
	e->dirty = true;
	visit_later(ks, e);
}

void
kstate_delete(KeyedState *ks, const char *key, size_t klen)
{
	kstate_put(ks, key, klen, NULL);
}

void
kstate_forget(KeyedState *ks, const char *key, size_t klen)
{
	kstate_put(ks, key, klen, NULL);
	/* kstate_put's entry: no tombstone to write back */
	ks->last->stored = false;
}

void
kstate_delete_range(KeyedState *ks, const char *lower, size_t llen,
					const char *upper, size_t ulen)
{
	state_batch_delete_range(ks->batch, ks->store, lower, llen, upper, ulen);
	ks->staged = true;
}

/* The cached entry of key, or NULL; does not change the cache. */
static CacheEntry *
cache_find(KeyedState *ks, const char *key, size_t klen)
{
	CacheEntry *probe = ks->probe;
	CacheSlot  *slot;

	if (klen > ks->probe_cap)
		return NULL;			/* longer than every key entered so far */
	memcpy(probe->data, key, klen);
	probe->klen = (uint32) klen;
	probe->hash = hash_bytes((const unsigned char *) key, (int) klen);
	slot = kcache_lookup(ks->cache, probe);
	return slot != NULL ? slot->entry : NULL;
}

/*
 * Bring the cache lines the lookups of n keys will touch into the CPU's
 * caches, all before the first is needed.  A lookup of a key that is
 * cached reads its slot, then its entry, then the caller reads its object:
 * three cache misses in a row when the cache is larger than the CPU's
 * (63 MB of entries for hopping windows over 100k keys, where nearly all
 * of a probe's time went to waiting for the slot and then the entry: perf
 * annotate).  Here each step is taken for every key before the next:
 * first the slots, then the entries their hashes point to (a slot whose
 * hash matches is the key's but for a collision), then the objects, so
 * the misses of the n keys overlap instead of following one another.
 * Reads and changes nothing the lookups would not.
 */
void
kstate_prefetch_cached(KeyedState *ks, int n, const char *const *keys,
					   const size_t *klens)
{
	kcache_hash *tb = ks->cache;
	uint32		hashes[STATE_MULTI_GET_MAX];
	CacheEntry *entries[STATE_MULTI_GET_MAX];

	Assert(n <= STATE_MULTI_GET_MAX);
	for (int i = 0; i < n; i++)
	{
		hashes[i] = hash_bytes((const unsigned char *) keys[i], (int) klens[i]);
		state_line_prefetch(&tb->data[kcache_initial_bucket(tb, hashes[i])]);
	}
	for (int i = 0; i < n; i++)
	{
		uint32		start = kcache_initial_bucket(tb, hashes[i]);
		uint32		b = start;

		entries[i] = NULL;
		for (;;)
		{
			CacheSlot  *slot = &tb->data[b];

			if (slot->status == kcache_SH_EMPTY)
				break;
			if (slot->hash == hashes[i])
			{
				entries[i] = slot->entry;
				state_line_prefetch(entries[i]);
				break;
			}
			b = kcache_next(tb, b, start);
		}
	}
	for (int i = 0; i < n; i++)
		if (entries[i] != NULL && entries[i]->obj != NULL)
			state_line_prefetch(entries[i]->obj);
	if (ks->ops->prefetch != NULL)
		for (int i = 0; i < n; i++)
			if (entries[i] != NULL && entries[i]->obj != NULL)
				ks->ops->prefetch(ks->arg, entries[i]->obj);
}

void
kbatch_init(KeyBatch *kb)
{
	initStringInfo(&kb->buf);
	kb->n = 0;
}

void
kstate_prefetch_batch(KeyedState *ks, KeyBatch *kb, bool read)
{
	/* the buffer no longer moves */
	for (int i = 0; i < kb->n; i++)
		kb->keys[i] = kb->buf.data + kb->off[i];
	if (kb->n > 0 && read)
		kstate_prefetch(ks, kb->n, kb->keys, kb->len);
	else if (kb->n > 0)
		kstate_prefetch_cached(ks, kb->n, kb->keys, kb->len);
	kb->n = 0;
	resetStringInfo(&kb->buf);
}

/* A batched read's value of miss i (state_found_fn), deserialized. */
typedef struct Prefetch
{
	KeyedState *ks;
	void	   *objs[STATE_MULTI_GET_MAX];
} Prefetch;

static void
prefetch_found(void *arg, int i, const char *val, size_t vlen)
{
	Prefetch   *pf = (Prefetch *) arg;
	MemoryContext old = MemoryContextSwitchTo(pf->ks->cxt);

	pf->objs[i] = pf->ks->ops->deserialize(pf->ks->arg, val, vlen);
	MemoryContextSwitchTo(old);
}

void
kstate_prefetch(KeyedState *ks, int n, const char *const *keys, const size_t *klens)
{
	const char *miss[STATE_MULTI_GET_MAX];
	size_t		misslen[STATE_MULTI_GET_MAX];
	Prefetch	pf;
	int			nmiss = 0;

	Assert(n <= STATE_MULTI_GET_MAX);
	kstate_prefetch_cached(ks, n, keys, klens);
	for (int i = 0; i < n; i++)
	{
		if (cache_find(ks, keys[i], klens[i]) != NULL)
			continue;
		miss[nmiss] = keys[i];
		misslen[nmiss] = klens[i];
		pf.objs[nmiss] = NULL;
		nmiss++;
	}
	if (nmiss == 0)
		return;

	/*
	 * Read first, enter after: if the read fails, the cache holds nothing
	 * half-made (an entry without its object would read as absent).
	 */
	pf.ks = ks;
	state_multi_get(ks->store, nmiss, miss, misslen, prefetch_found, &pf);
	for (int i = 0; i < nmiss; i++)
	{
		bool		found;
		CacheEntry *e = cache_enter(ks, miss[i], misslen[i], &found);

		if (found)
		{
			/* the same key twice in the batch: entered by its first */
			if (pf.objs[i] != NULL && ks->ops->free != NULL)
				ks->ops->free(ks->arg, pf.objs[i]);
			continue;
		}
		e->obj = pf.objs[i];
		if (e->obj == NULL)
		{
			/* as kstate_get of an absent key */
			e->stored = false;
			visit_later(ks, e);
		}
	}
}

bool
kstate_full(KeyedState *ks)
{
	if (unlikely(debug_discard_state))
		return true;
	if (++ks->calls >= KSTATE_MEASURE_EVERY)
	{
		ks->calls = 0;
		ks->full = MemoryContextMemAllocated(ks->cxt, true) > (Size) ks->max_bytes;
	}
	return ks->full;
}

/*
 * How far ahead of the entry it visits write_back brings in the entries:
 * the visit list is in the order the entries were changed, all over the
 * cache, and each would otherwise be a cache miss, then its object
 * another, then what the object points to (a window's aggregate states).
 */
#define VISIT_AHEAD 16

/*
 * Bring in entry i + VISIT_AHEAD of visit[0..n-1], the object of entry i +
 * VISIT_AHEAD / 2 (its entry brought in by then), and what the object of
 * i + VISIT_AHEAD / 4 points to.
 */
static inline void
visit_prefetch(KeyedState *ks, int n, int i)
{
	CacheEntry *e;

	if (i + VISIT_AHEAD < n)
		state_line_prefetch(ks->visit[i + VISIT_AHEAD]);
	if (i + VISIT_AHEAD / 2 < n && (e = ks->visit[i + VISIT_AHEAD / 2])->obj != NULL)
		state_line_prefetch(e->obj);
	if (ks->ops->prefetch != NULL && i + VISIT_AHEAD / 4 < n &&
		(e = ks->visit[i + VISIT_AHEAD / 4])->obj != NULL)
		ks->ops->prefetch(ks->arg, e->obj);
}

/*
 * Write every changed object back to the store in one batch (which puts
 * them in key order); they stay cached, clean.  Entries that hold no
 * object are dropped (a deleted window is not looked up again).
 */
static void
write_back(KeyedState *ks, bool snapshot)
{
	CacheEntry *e;
	int			n = 0;
	int			serialized = 0;

	/* What must be written stays; what has nothing to write and no object goes. */
	for (int i = 0; i < ks->nvisit; i++)
	{
		if (i + VISIT_AHEAD < ks->nvisit)
			state_line_prefetch(ks->visit[i + VISIT_AHEAD]);
		e = ks->visit[i];
		e->listed = false;
		if (e->dirty && (e->obj != NULL || e->stored))
		{
			ks->visit[n++] = e;
			continue;
		}
		/* never written, or deleted already: nothing to delete */
		e->dirty = false;
		if (e->obj == NULL)
		{
			e->stored = false;
			cache_drop(ks, e);
		}
	}
	ks->nvisit = 0;
	if (n == 0)
	{
		if (ks->staged)
		{
			state_batch_write(ks->store, ks->batch);
			ks->staged = false;
		}
		return;
	}

	for (int i = 0; i < n; i++)
	{
		visit_prefetch(ks, n, i);
		e = ks->visit[i];
		if (e->obj == NULL)
			state_batch_delete(ks->batch, e->data, e->klen);
		else
		{
			MemoryContext old = MemoryContextSwitchTo(ks->scratch);

			resetStringInfo(&ks->buf);
			ks->ops->serialize(ks->arg, e->obj, &ks->buf);
			MemoryContextSwitchTo(old);
			state_batch_put(ks->batch, e->data, e->klen, ks->buf.data, ks->buf.len);
			if (++serialized % KSTATE_SCRATCH_RESET_EVERY == 0)
				MemoryContextReset(ks->scratch);
		}
		e->dirty = false;
		e->stored = e->obj != NULL;
		if (e->obj == NULL)
			cache_drop(ks, e);	/* the batch holds a copy of the key */
	}
	MemoryContextReset(ks->scratch);
	if (snapshot)
		state_batch_write_for_snapshot(ks->store, ks->batch);
	else
		state_batch_write(ks->store, ks->batch);
	ks->staged = false;
}

void
kstate_flush(KeyedState *ks)
{
	write_back(ks, true);
	elog(DEBUG1, "keyed state cache: %u entries, %zu bytes, %lld evictions",
		 ks->cache->members, MemoryContextMemAllocated(ks->cxt, true),
		 (long long) ks->evictions);
}

/*
 * Write back, then drop every object: not all can be freed one by one (an
 * object is whatever its deserialize and the aggregates allocated in the
 * cache's context), so the context is reset, which returns the cache to
 * nothing at once and keeps the context's identity (aggregates allocate
 * their states in it).  Keeping the more recently used half instead, as an
 * earlier version did, meant serializing and rebuilding it at every
 * eviction: with many keys (each window touched a couple of times) that cost
 * more than reading back from RocksDB the few objects touched again.
 */
void
kstate_evict(KeyedState *ks)
{
	write_back(ks, false);
	elog(DEBUG1, "keyed state cache over %lld bytes: %u entries dropped",
		 (long long) ks->max_bytes, ks->cache->members);
	MemoryContextReset(ks->cxt);
	cache_create(ks);
	ks->full = false;
	ks->calls = 0;
	ks->evictions++;
}

void
kstate_append_time(StringInfo buf, int64 t)
{
	keyspace_append_int(buf, (uint64) t, 8, true);
}

int64
kstate_read_time(const char *p)
{
	return (int64) keyspace_read_int(p, 8, true);
}

/* --- per-key-group counters ---------------------------------------------- */

struct KeyGroupCounter
{
	StateStore *store;
	uint8		id;
	int64		total;
	int64		count[STATE_KEY_GROUPS];
	bool		known[STATE_KEY_GROUPS];	/* stored or set */
	bool		dirty[STATE_KEY_GROUPS];
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
	initStringInfo(&c->key);
	initStringInfo(&val);
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		counter_key(&c->key, kg, id);
		if (state_get(store, c->key.data, c->key.len, &val) && val.len == sizeof(int64))
		{
			memcpy(&c->count[kg], val.data, sizeof(int64));
			c->known[kg] = true;
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
	c->known[kg] = true;
	c->dirty[kg] = true;
	c->total += delta;
}

void
kstate_counter_set(KeyGroupCounter *c, const char *skey, int64 value)
{
	uint16		kg = keyspace_key_group(skey);

	Assert(kg < STATE_KEY_GROUPS);
	if (c->known[kg] && c->count[kg] == value)
		return;
	c->total += value - c->count[kg];
	c->count[kg] = value;
	c->known[kg] = true;
	c->dirty[kg] = true;
}

bool
kstate_counter_get(KeyGroupCounter *c, uint16 kg, int64 *value)
{
	Assert(kg < STATE_KEY_GROUPS);
	*value = c->count[kg];
	return c->known[kg];
}

int64
kstate_counter_total(KeyGroupCounter *c)
{
	return c->total;
}

/*
 * The changed counts go into ks's batch, written with its next write-back
 * (kstate_flush): a checkpoint's writes to the main family are then one
 * batch.  Counters written apart, a hundred keys or so at each checkpoint,
 * would be in the memtable when the write-back's batch is ingested as a
 * table file (state.c), and the ingestion would flush them into a file of
 * their own: a file more in level 0 at every checkpoint.
 */
void
kstate_counter_stage(KeyGroupCounter *c, KeyedState *ks)
{
	Assert(c->store == ks->store);
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		if (!c->dirty[kg])
			continue;
		counter_key(&c->key, kg, c->id);
		state_batch_put(ks->batch, c->key.data, c->key.len,
						(char *) &c->count[kg], sizeof(int64));
		c->dirty[kg] = false;
		ks->staged = true;
	}
}
