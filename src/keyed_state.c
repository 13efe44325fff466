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

int			sf_state_cache_entries = 200000;

void
kstate_define_settings(void)
{
	DefineCustomIntVariable("streamflink.state_cache_entries",
							"Window states a worker keeps in memory between checkpoints.",
							"Above this, states are written back to RocksDB early; "
							"it bounds a worker's memory whatever the number of keys.",
							&sf_state_cache_entries, 200000, 100, INT_MAX / 2,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
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
	void	   *obj;			/* NULL: deleted */
	bool		dirty;
} CacheEntry;

struct KeyedState
{
	StateStore *store;
	const KeyedStateOps *ops;
	void	   *arg;
	int			max_entries;
	MemoryContext cxt;			/* entries, keys and objects */
	HTAB	   *cache;
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
kstate_create(StateStore *store, const KeyedStateOps *ops, void *arg, int max_entries)
{
	KeyedState *ks = palloc0(sizeof(KeyedState));

	ks->store = store;
	ks->ops = ops;
	ks->arg = arg;
	ks->max_entries = max_entries;
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
	}
	return e;
}

void *
kstate_get(KeyedState *ks, const char *key, size_t klen)
{
	bool		found;
	CacheEntry *e = cache_enter(ks, key, klen, &found);

	if (!found && state_get(ks->store, key, klen, &ks->buf))
	{
		MemoryContext old = MemoryContextSwitchTo(ks->cxt);

		e->obj = ks->ops->deserialize(ks->arg, ks->buf.data, ks->buf.len);
		MemoryContextSwitchTo(old);
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
	return hash_get_num_entries(ks->cache) >= ks->max_entries;
}

void
kstate_flush(KeyedState *ks)
{
	HASH_SEQ_STATUS seq;
	CacheEntry *e;
	bool		any = false;

	hash_seq_init(&seq, ks->cache);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (!e->dirty)
			continue;
		any = true;
		if (e->obj == NULL)
			state_batch_delete(ks->batch, e->key.data, e->key.len);
		else
		{
			resetStringInfo(&ks->buf);
			ks->ops->serialize(ks->arg, e->obj, &ks->buf);
			state_batch_put(ks->batch, e->key.data, e->key.len, ks->buf.data, ks->buf.len);
		}
	}
	if (any)
		state_batch_write(ks->store, ks->batch);

	/* Everything is in the store now: start afresh. */
	MemoryContextReset(ks->cxt);
	cache_create(ks);
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
