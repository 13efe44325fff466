/*-------------------------------------------------------------------------
 *
 * keyed_state.h
 *	  Keyed operator state: a bounded write-back cache over a StateStore.
 *
 * Operators (windows, CEP) read and update their per-key objects here.  An
 * object lives in the cache, in memory of the cache's context, from its
 * first get or put until it is evicted: a checkpoint (kstate_flush) writes
 * every changed object to RocksDB in one batch and keeps them all, clean,
 * so a hot key costs no RocksDB read after its first, and one write per
 * checkpoint in which it changed, instead of one per event.
 *
 * Memory is bounded by bytes, not entries: kstate_full measures the cache's
 * context (objects, keys, hash table, and whatever aggregates allocate in
 * it) against the bound given at creation, about every 32 calls; then
 * kstate_evict writes changed objects back and drops every object (one
 * reset of the context).  So a worker's memory stays bounded whatever the
 * number of keys.  Objects replaced or deleted are freed at once if the
 * operator gives a free function, so the cache holds what is live.  A
 * checkpoint's write-back visits the entries changed since the last one
 * only (the batch puts them in key order, state.h).
 *
 * The cache is the process's: the worker's process ends at any error and
 * recovers from the last checkpoint, so nothing cached outlives the epoch
 * that wrote it without being part of a checkpoint.  What is written back
 * between checkpoints (evictions) lands in the live database only, never in
 * a snapshot before the checkpoint that covers it.
 *
 * Objects are invalidated (freed) by kstate_evict, and one by one by the
 * put replacing or the delete removing them (with a free function), never
 * by kstate_flush.  Single-threaded.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_KEYED_STATE_H
#define STREAMFLINK_KEYED_STATE_H

#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "group_key.h"
#include "keyspace.h"
#include "state.h"

typedef struct KeyedState KeyedState;

typedef struct KeyedStateOps
{
	/* Build an object from its stored bytes, in CurrentMemoryContext. */
	void	   *(*deserialize) (void *arg, const char *data, size_t len);
	/* Append an object's bytes to buf. */
	void		(*serialize) (void *arg, void *obj, StringInfo buf);

	/*
	 * Optional: free what an object holds in the cache's context, when a put
	 * replaces it by another object or a delete removes it (the caller no
	 * longer uses it).  Without it (NULL), or for what it cannot free, the
	 * memory is garbage until the next eviction: an operator whose objects
	 * come and go (a window per key and minute) then makes the cache fill and
	 * drop every object much more often.
	 */
	void		(*free) (void *arg, void *obj);

	/*
	 * Optional: bring what an object points to and its user reads next
	 * into the CPU's caches (state_line_prefetch), reading nothing but the
	 * object: the last step of kstate_prefetch_cached, after the object
	 * itself.
	 */
	void		(*prefetch) (void *arg, const void *obj);
} KeyedStateOps;

/* A cache over store whose memory stays within about max_bytes. */
extern KeyedState *kstate_create(StateStore *store, const KeyedStateOps *ops,
								 void *arg, int64 max_bytes);

/*
 * streamflink.state_cache_memory, bounded by a worker's share of
 * streamflink.state_memory: the bytes a worker's operator may give its
 * caches (in all: an operator with two caches gives each half).
 */
extern int64 kstate_cache_budget(void);
extern void kstate_define_settings(void);

/*
 * streamflink.debug_discard_state (superuser, for tests): kstate_full is
 * always true, and timers_over_budget whenever timers are pending, so that
 * every path that writes state early runs between any two events, as
 * debug_discard_caches does for Postgres' caches.
 */
extern bool kstate_debug_discard(void);

/* Context for objects handed to kstate_put; reset by every eviction. */
extern MemoryContext kstate_memory(KeyedState *ks);

/* The object under key, from the cache or the store; NULL if none. */
extern void *kstate_get(KeyedState *ks, const char *key, size_t klen);

/*
 * As kstate_get, for a key that the caller knows the store holds only if
 * the cache does (the cache wrote it and has not evicted it since): a key
 * not cached is absent, without a read of the store.
 */
extern void *kstate_get_unstored(KeyedState *ks, const char *key, size_t klen);

/*
 * As kstate_get_unstored, for a read that no put follows: the cache is left
 * as it was (no entry made for an absent key).
 */
extern void *kstate_peek_unstored(KeyedState *ks, const char *key, size_t klen);

/* Set or replace the object under key (allocated in kstate_memory). */
extern void kstate_put(KeyedState *ks, const char *key, size_t klen, void *obj);

extern void kstate_delete(KeyedState *ks, const char *key, size_t klen);

/*
 * Delete the object under key from the cache only: the caller deletes it
 * from the store by range (kstate_delete_range) before the next checkpoint,
 * and never reads the key again (it could read the stored object until
 * then).  Saves the tombstone per key of kstate_delete.
 */
extern void kstate_forget(KeyedState *ks, const char *key, size_t klen);

/*
 * Delete the stored keys lower <= key < upper with the next write-back (one
 * range tombstone), before the objects it writes: the range must hold no
 * key the cache holds an object under.
 */
extern void kstate_delete_range(KeyedState *ks, const char *lower, size_t llen,
								const char *upper, size_t ulen);

/*
 * Bring the objects of n keys (at most STATE_MULTI_GET_MAX) that are not
 * cached into the cache with one batched read of the store, as the gets
 * that follow would one by one (an absent key is cached as absent).  For an
 * operator that knows the keys it is about to read, such as the due timers'
 * windows: RocksDB's MultiGet reads a batch of keys for about half the cost
 * of reading them one by one.  The cached ones are prefetched as by
 * kstate_prefetch_cached.
 */
extern void kstate_prefetch(KeyedState *ks, int n, const char *const *keys,
							const size_t *klens);

/*
 * Bring the cached entries and objects of n keys (at most
 * STATE_MULTI_GET_MAX), and what the objects' own prefetch names, into the
 * CPU's caches ahead of their lookups, whose cache misses then overlap
 * instead of following one another.  Reads
 * nothing from the store and changes nothing: for keys that are cached or
 * absent, such as slices made since the worker started.
 */
extern void kstate_prefetch_cached(KeyedState *ks, int n, const char *const *keys,
								   const size_t *klens);

/*
 * The keys of a batch of lookups, built one after the other in one buffer,
 * to be prefetched together (kstate_prefetch_batch): append a key's bytes
 * to the StringInfo kbatch_begin returns, then call kbatch_end.  At most
 * STATE_MULTI_GET_MAX keys (kbatch_full).  The buffer is in the memory
 * context current at kbatch_init; about 20 kB of arrays come with it, so a
 * caller keeps its batch.
 */
typedef struct KeyBatch
{
	StringInfoData buf;
	int			n;
	int			off[STATE_MULTI_GET_MAX];
	size_t		len[STATE_MULTI_GET_MAX];
	const char *keys[STATE_MULTI_GET_MAX];
} KeyBatch;

extern void kbatch_init(KeyBatch *kb);

static inline StringInfo
kbatch_begin(KeyBatch *kb)
{
	Assert(kb->n < STATE_MULTI_GET_MAX);
	kb->off[kb->n] = kb->buf.len;
	return &kb->buf;
}

static inline void
kbatch_end(KeyBatch *kb)
{
	kb->len[kb->n] = kb->buf.len - kb->off[kb->n];
	kb->n++;
}

static inline bool
kbatch_full(const KeyBatch *kb)
{
	return kb->n == STATE_MULTI_GET_MAX;
}

/*
 * Prefetch the batch's keys, then empty it: 'read', as kstate_prefetch
 * (the keys not cached read from the store), else as
 * kstate_prefetch_cached.
 */
extern void kstate_prefetch_batch(KeyedState *ks, KeyBatch *kb, bool read);

/* True when the cache is over its bound: evict between two events. */
extern bool kstate_full(KeyedState *ks);

/* Write changed objects back; invalidates every object pointer. */
extern void kstate_evict(KeyedState *ks);

/* Write changed objects to the store (before a snapshot); they stay cached. */
extern void kstate_flush(KeyedState *ks);

/* Group keys (KeyCodec, kstate_encode_key...): see group_key.h. */

/* Keys and their key groups: see keyspace.h. */

/* Times in keys: big-endian with the sign bit flipped (byte order = time order). */
extern void kstate_append_time(StringInfo buf, int64 t);
extern int64 kstate_read_time(const char *p);

/*
 * Per-key-group counters ([kg]'C'[id] -> int64, keyspace.h), for counts an
 * operator shows in the status view (open windows, partial matches): each
 * key group's count is kept in its key group, so it moves with it when
 * state is cut by key-group range.  The counts and their total are kept in
 * memory (of the context the counter was opened in); kstate_counter_stage
 * puts the changed ones in a KeyedState's batch, which the operator's flush
 * then writes before a snapshot.
 */
typedef struct KeyGroupCounter KeyGroupCounter;

/* Counter 'id' (KS_COUNTER_...) as last written to the store. */
extern KeyGroupCounter *kstate_counter_open(StateStore *store, uint8 id);

/* Add delta to the count of the key group state key skey starts with. */
extern void kstate_counter_add(KeyGroupCounter *c, const char *skey, int64 delta);

/* The sum over every key group. */
extern int64 kstate_counter_total(KeyGroupCounter *c);

/*
 * A per-key-group value rather than a count (the total is then
 * meaningless): set the value of skey's key group; get one key group's,
 * false if it was never set.
 */
extern void kstate_counter_set(KeyGroupCounter *c, const char *skey, int64 value);
extern bool kstate_counter_get(KeyGroupCounter *c, uint16 kg, int64 *value);

/* Stage the changed counts in ks's batch (the same store), for kstate_flush. */
extern void kstate_counter_stage(KeyGroupCounter *c, KeyedState *ks);

#endif							/* STREAMFLINK_KEYED_STATE_H */
