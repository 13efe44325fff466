/*-------------------------------------------------------------------------
 *
 * keyed_state.h
 *	  Keyed operator state: a bounded write-back cache over a StateStore.
 *
 * Operators (windows, CEP) read and update their per-key objects here.  An
 * object lives in the cache, in memory of the cache's context, until the
 * next flush, which writes every changed object to RocksDB in one batch and
 * empties the cache.  A flush happens before every checkpoint and whenever
 * the cache holds more than its limit of entries, so a worker's memory is
 * bounded whatever the number of keys, while a hot key costs one RocksDB
 * read and one write per checkpoint instead of one per event.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_KEYED_STATE_H
#define STREAMFLINK_KEYED_STATE_H

#include "lib/stringinfo.h"
#include "state.h"

typedef struct KeyedState KeyedState;

typedef struct KeyedStateOps
{
	/* Build an object from its stored bytes, in CurrentMemoryContext. */
	void	   *(*deserialize) (void *arg, const char *data, size_t len);
	/* Append an object's bytes to buf. */
	void		(*serialize) (void *arg, void *obj, StringInfo buf);
} KeyedStateOps;

extern KeyedState *kstate_create(StateStore *store, const KeyedStateOps *ops,
								 void *arg, int max_entries);

/* Context for objects handed to kstate_put; reset by every flush. */
extern MemoryContext kstate_memory(KeyedState *ks);

/* The object under key, from the cache or the store; NULL if none. */
extern void *kstate_get(KeyedState *ks, const char *key, size_t klen);

/* Set or replace the object under key (allocated in kstate_memory). */
extern void kstate_put(KeyedState *ks, const char *key, size_t klen, void *obj);

extern void kstate_delete(KeyedState *ks, const char *key, size_t klen);

/* True when the cache is over its limit: flush between two events. */
extern bool kstate_full(KeyedState *ks);

/* Write changed objects to the store; invalidates every object pointer. */
extern void kstate_flush(KeyedState *ks);

#endif							/* STREAMFLINK_KEYED_STATE_H */
