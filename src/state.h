/*-------------------------------------------------------------------------
 *
 * state.h
 *	  Keyed operator state kept in RocksDB: one database per pipeline.
 *
 * Every operator (window, CEP) stores its keyed state through this module.
 * Keys are opaque byte strings here; their layout is in keyspace.h: every
 * key starts with its key group (state_key_group()), so state can later be
 * split or merged by key-group range when a pipeline is rescaled.
 *
 * Consistent snapshots use RocksDB's checkpoint API (hard links to the
 * immutable SST files, so successive checkpoints share most files).
 *
 * RocksDB starts threads of its own that inherit the caller's signal mask;
 * they must never run a Postgres signal handler, so every call that may
 * start threads runs with all signals blocked.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_STATE_H
#define STREAMFLINK_STATE_H

#include "lib/stringinfo.h"

/* Flink's default max parallelism: the number of key groups. */
#define STATE_KEY_GROUPS 128

typedef struct StateStore StateStore;
typedef struct StateTuning StateTuning;	/* state_tuning.h */

/*
 * Bring the cache line at p into the CPU's caches, where the compiler can:
 * for loops over state in memory whose cache misses should overlap (the
 * staged operations of a batch, a cache's entries and objects).
 */
#if defined(__GNUC__) || defined(__clang__)
#define state_line_prefetch(p) __builtin_prefetch(p)
#else
#define state_line_prefetch(p) ((void) 0)
#endif

/* Levels of the LSM tree shown per level (RocksDB's default num_levels). */
#define STATE_METRIC_LEVELS 7

/*
 * RocksDB's own numbers for a primary, for streamflink.state_metrics: the
 * worker collects them (state_collect_metrics) and publishes them in its
 * slot.  Counters are totals since the database was opened.
 */
typedef struct StateMetrics
{
	int64		collected_at;	/* TimestampTz; 0: never collected */
	int32		profile;		/* StateProfile the database was opened with */
	int64		estimated_keys; /* rocksdb.estimate-num-keys */
	int64		live_sst_bytes; /* rocksdb.live-sst-files-size */
	int64		sst_bytes_per_level[STATE_METRIC_LEVELS];
	int64		memtable_bytes; /* rocksdb.size-all-mem-tables, the most since
								 * the previous collection */
	int64		table_readers_bytes;	/* index and filter blocks outside the cache */
	int64		block_cache_capacity;
	int64		block_cache_usage;
	int64		block_cache_pinned;
	int64		block_cache_hits;
	int64		block_cache_misses;
	int64		pending_compaction_bytes;
	int64		running_compactions;
	int64		compactions;	/* completed (RocksDB's compaction stats) */
	int64		flushes;		/* completed (the same) */
	int64		stall_micros;	/* writes delayed or stopped (in ms steps) */
	/* without statistics: RocksDB's state now (summed over a pipeline's tasks) */
	int64		running_flushes;
	int64		writes_stopped; /* databases whose writes are stopped */
	int64		writes_delayed; /* databases whose writes are slowed down */
	int64		background_errors;	/* flushes and compactions that failed */
} StateMetrics;
typedef struct StateIter StateIter;
typedef struct StateBatch StateBatch;

/*
 * Column families of a database.  Every family has keys of its own (laid
 * out as in keyspace.h: each starts with its key group); RocksDB gives each
 * its own memtable and SST files, so the timers' short-lived keys, written
 * and deleted in time order, do not dilute the memtable and blocks that the
 * per-event point lookups of operator state search.  Opening a database
 * opens every family; checkpoints hold every family.
 */
typedef enum StateFamily
{
	STATE_FAMILY_MAIN = 0,		/* operator state, counters ("default") */
	STATE_FAMILY_TIMERS,		/* timer_service.c's timers */
	STATE_NUM_FAMILIES
} StateFamily;

/* Key group of a serialized key: hash(key) mod STATE_KEY_GROUPS. */
extern uint16 state_key_group(const char *key, size_t len);

/*
 * Open (creating if missing) the primary database in directory 'dir', with
 * the settings of an instance that is no worker's own: a backend's, or a
 * snapshot read by a restore (state_tuning_auxiliary).  ereports ERROR with
 * the RocksDB message on failure.
 */
extern StateStore *state_open(const char *dir);

/* The same with a pipeline's tuning (state_tuning_resolve). */
extern StateStore *state_open_tuned(const char *dir, const StateTuning *tuning);

/*
 * A pipeline worker's primary: the same, writing no WAL.  Only for a
 * database that recovery never reopens as it was (a worker restores the
 * last checkpoint's snapshot at its start): unflushed writes are lost if
 * the process dies, and state_checkpoint flushes them into the snapshot.
 */
extern StateStore *state_open_worker(const char *dir, const StateTuning *tuning);

/*
 * Read RocksDB's properties and statistics of a primary into *m.  A few
 * property reads, the list of live files and the statistics rendered as
 * text (tens of microseconds): call it about once a second, not per event.
 */
extern void state_collect_metrics(StateStore *store, StateMetrics *m);

/*
 * Add the numbers of another database (a parallel pipeline's task) to
 * 'sum'.  A counter one of them does not have (-1: statistics off) is -1;
 * one never collected (collected_at 0) adds nothing.
 */
extern void state_metrics_add(StateMetrics *sum, const StateMetrics *m);

/*
 * Open a read-only secondary instance of the database in 'dir', using
 * 'secondary_dir' (created if missing) for its own files.  Used by
 * backends to read live state while the worker owns the primary.
 */
extern StateStore *state_open_secondary(const char *dir, const char *secondary_dir);

/* Bring a secondary up to date with the primary's latest writes. */
extern void state_catch_up(StateStore *store);

extern void state_close(StateStore *store);

/*
 * The handle of one family of an open database, for every operation below
 * (the handle state_open returns is STATE_FAMILY_MAIN's).  It belongs to
 * the database: it needs no close and is invalid after state_close.  Write
 * batches write to the main family, unless given another
 * (state_batch_put_family).
 */
extern StateStore *state_family(StateStore *store, StateFamily family);

/* Point operations.  state_get appends the value to 'out' (reset first). */
extern bool state_get(StateStore *store, const char *key, size_t klen,
					  StringInfo out);
extern void state_put(StateStore *store, const char *key, size_t klen,
					  const char *val, size_t vlen);
extern void state_delete(StateStore *store, const char *key, size_t klen);

/*
 * Read n keys at once (RocksDB's batched MultiGet: one pass through the
 * memtables and each file's filter and index for the whole batch, the
 * data blocks read once for the keys they hold), calling found(arg, i,
 * value, vlen) for each key i present, in key-list order; value is valid
 * during the call only.  At most STATE_MULTI_GET_MAX keys a call.  Keys in
 * any order.
 */
#define STATE_MULTI_GET_MAX 1024
typedef void (*state_found_fn) (void *arg, int i, const char *val, size_t vlen);
extern void state_multi_get(StateStore *store, int n, const char *const *keys,
							const size_t *klens, state_found_fn found, void *arg);

/*
 * Atomic write batches.  Puts and deletes reach RocksDB in key order (a
 * batch sorts them when written: the memtable inserts keys in order much
 * faster), with the same effect as in the order given: operations on one
 * key keep their order, and a range deletion applies after everything
 * added before it and before everything added after it.
 */
extern StateBatch *state_batch_create(void);
extern void state_batch_put(StateBatch *batch, const char *key, size_t klen,
							const char *val, size_t vlen);
extern void state_batch_delete(StateBatch *batch, const char *key, size_t klen);

/*
 * The same in a given family (state_family); the batch is written with
 * state_batch_write on any handle of the database.  delete_range deletes
 * every key k with lower <= k < upper.
 */
extern void state_batch_put_family(StateBatch *batch, StateStore *family,
								   const char *key, size_t klen,
								   const char *val, size_t vlen);
extern void state_batch_delete_range(StateBatch *batch, StateStore *family,
									 const char *lower, size_t llen,
									 const char *upper, size_t ulen);
extern void state_batch_write(StateStore *store, StateBatch *batch);	/* and clears it */

/*
 * The same, for a batch a checkpoint waits on (a cache's write-back at a
 * snapshot): a large one holding puts and deletes only is written as a
 * table file and ingested, which costs the checkpoint less than the
 * memtable's inserts and flush.  Other large batches, written between
 * checkpoints, go through the memtable, whose flush merges them with
 * what else was written into one file.
 */
extern void state_batch_write_for_snapshot(StateStore *store, StateBatch *batch);
extern void state_batch_destroy(StateBatch *batch);

/*
 * Iterate keys k with lower <= k < upper (byte order); upper may be NULL for
 * no bound.  Pointers returned by state_iter_next stay valid until the next
 * call.  Returns false when exhausted.
 */
extern StateIter *state_iter_create(StateStore *store,
									const char *lower, size_t llen,
									const char *upper, size_t ulen);
extern bool state_iter_next(StateIter *it,
							const char **key, size_t *klen,
							const char **val, size_t *vlen);
extern void state_iter_destroy(StateIter *it);

/*
 * The last key and value of an iterator's range, instead of iterating
 * (valid until the iterator is destroyed); false if the range is empty.
 */
extern bool state_iter_last(StateIter *it,
							const char **key, size_t *klen,
							const char **val, size_t *vlen);

/*
 * Destroy every iterator still open on 'store', e.g. ones an ERROR left
 * behind (iterators are owned by their store, not by a memory context).
 * state_close does this too.
 */
extern void state_iter_destroy_all(StateStore *store);

/*
 * Write a consistent snapshot of the database to 'chk_dir' (which must not
 * exist yet; same filesystem as the database, so SST files are hard links).
 * Returns the size in bytes of the snapshot's files, RocksDB's OPTIONS files
 * (settings, not state) left out.
 */
extern uint64 state_checkpoint(StateStore *store, const char *chk_dir);

/*
 * Incremental size of snapshot 'chk_dir': bytes of its files not shared
 * (by hard link) with any other snapshot or the live database.  Meaningful
 * right after state_checkpoint; grows later as shared files are compacted
 * away or older snapshots are removed.
 */
extern uint64 state_checkpoint_new_bytes(const char *chk_dir);

/*
 * Bytes of snapshot 'chk_dir' that snapshot 'prev_chk_dir' does not share
 * (compared by inode): what checkpoint n added on top of n-1.  Unlike
 * state_checkpoint_new_bytes, files also linked from the live database still
 * count.  With prev_chk_dir NULL or missing: the whole snapshot.
 */
extern uint64 state_checkpoint_incremental_bytes(const char *chk_dir,
												 const char *prev_chk_dir);

/*
 * Replace the database directory 'dir' by a copy of snapshot 'chk_dir'
 * (SST files hard-linked, other files copied).  The database must not be open.
 */
extern void state_restore(const char *dir, const char *chk_dir);

/* Remove a directory tree (a database or snapshot); missing is fine. */
extern void state_remove_dir(const char *dir);

/* Directory of a pipeline's state (RocksDB database and its snapshots). */
extern char *state_pipeline_dir(Oid dboid, int32 pipeline_id);

#endif							/* STREAMFLINK_STATE_H */
