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

#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "group_key.h"
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

/*
 * streamflink.state_cache_entries: the max_entries operators give
 * kstate_create.
 */
extern int	sf_state_cache_entries;
extern void kstate_define_settings(void);

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

/* Group keys (KeyCodec, kstate_encode_key...): see group_key.h. */

/* The two key-group bytes of a group key, appended to buf. */
extern void kstate_append_key_group(StringInfo buf, const char *gk, size_t len);

/* Times in keys: big-endian with the sign bit flipped (byte order = time order). */
extern void kstate_append_time(StringInfo buf, int64 t);
extern int64 kstate_read_time(const char *p);

/*
 * Event-time timers, stored in the same database as the state they refer
 * to:	[FF FF][time:8][state key] -> (empty).  An operator registers a timer
 * for a state key and a time above the watermark; when the watermark passes
 * it, kstate_timers_due returns it.  Registering the same timer twice is
 * one timer.
 */
#define KSTATE_TIMER_PREFIX "\xFF\xFF"
#define KSTATE_TIMER_HEADER 10	/* prefix and time: the state key follows */

extern void kstate_timer_register(StateStore *store, StringInfo scratch,
								  TimestampTz when, const char *skey, size_t sklen);

/*
 * Timers with from <= time <= upto, in time order, as StringInfos holding
 * the whole timer key (palloc'd in CurrentMemoryContext).  Collected first,
 * so firing may register and delete timers; the caller deletes each fired
 * timer with state_delete.
 */
extern List *kstate_timers_due(StateStore *store, TimestampTz from, TimestampTz upto);

#endif							/* STREAMFLINK_KEYED_STATE_H */
