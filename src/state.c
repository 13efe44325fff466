/*-------------------------------------------------------------------------
 *
 * state.c
 *	  Keyed operator state kept in RocksDB: one database per pipeline.
 *
 * A pipeline's worker owns the primary instance of its database; backends
 * that want to look at live state open a secondary instance, which tails the
 * primary's MANIFEST (and WAL, where there is one).  Durability comes from
 * checkpoints (RocksDB's checkpoint API, which flushes every memtable into
 * the snapshot's SST files), which are what recovery restores, never the
 * live database: a worker's start replaces its database by the last
 * completed snapshot (checkpoint.c, restore_state) or removes it.  So the
 * worker's primary (state_open_worker) writes no WAL at all, as Flink's
 * RocksDB backend does: a WAL would only be written, never read for
 * recovery.  A secondary then sees what was flushed, i.e. at least every
 * checkpoint.  The other primaries (state_open: replays, rescaling, tests)
 * keep the WAL, unsynced, as their databases outlive a close.
 *
 * Memory and resource ownership:
 *
 * - A StateStore and its iterators live in TopMemoryContext.  The RocksDB
 *   handles they wrap are process-level resources that outlive transactions
 *   (the worker runs many), and state_close must be callable from a
 *   before_shmem_exit callback, long after any transaction context is gone.
 *   Iterators are tracked by their store, so that state_close can destroy
 *   any an ERROR left behind: RocksDB must not be closed with live
 *   iterators.
 *
 * - A database has a handle per column family (state_family).  The main
 *   family's, which state_open returns, owns the database; the others share
 *   its RocksDB objects and are freed with it.  Iterators of every family
 *   are tracked by the main handle.
 *
 * - A StateBatch is palloc'd in the caller's context, and so is the buffer
 *   in which it stages puts and deletes until they are sorted into its
 *   write batch, which is malloc'd by RocksDB; callers should keep one
 *   batch and reuse it (state_batch_write clears it, and gives back
 *   buffers beyond STATE_BATCH_KEEP_BYTES).
 *
 * Threads and signals: RocksDB's background threads inherit the signal mask
 * of the thread that creates them, and must never run a Postgres signal
 * handler (see DESIGN.md: SIGTERM on a RocksDB thread aborted the cluster).
 * RocksDB's thread pools start their threads when a database is opened
 * (Env::IncBackgroundThreadsIfNeeded -> StartBGThreads, sized by
 * max_background_jobs); the periodic-task timer thread is also started at
 * open.  Point reads and writes only hand work to existing threads.  So we
 * block all signals around open, checkpoint, catch-up, batch writes and
 * close (the cost of two extra system calls there is negligible), but not
 * around single puts, gets and iterator steps, which are the hot path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "common/file_perm.h"
#include "common/hashfn.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "state.h"
#include "state_tuning.h"
#include "thread_signals.h"

/*
 * Tuning of a secondary (live()); a primary's comes from state_tuning.c.
 */
#define STATE_BACKGROUND_JOBS		2
#define STATE_SECONDARY_CACHE_SIZE	(8 * 1024 * 1024)
#define STATE_BLOOM_BITS_PER_KEY	10.0

/*
 * The timers family's memtable.  Timers are small and most are deleted soon
 * after they are written (a put and its tombstone), so a smaller memtable
 * than the main family's is enough.
 */
#define STATE_TIMERS_WRITE_BUFFER_SIZE	(8 * 1024 * 1024)

/*
 * With more than one column family, RocksDB flushes every family that still
 * has data in the oldest WAL file once the WALs together exceed
 * max_total_wal_size.  That must not cut the main family's memtable short
 * (small flushes mean more compaction), so the cap is above what one full
 * main memtable plus the timers' writes of the same time take in the WAL.
 * It also caps the WAL files' preallocation blocks (1.1 * write_buffer_size,
 * about 35 MB here).
 */
#define STATE_MAX_TOTAL_WAL_SIZE(t)	(2 * (uint64) (t)->write_buffer_size)

/*
 * Every snapshot copies the MANIFEST (SST files are hard-linked), and the
 * MANIFEST grows by a version edit at every flush and compaction: about
 * one per checkpoint, for as long as the database stays open (RocksDB's
 * default cap is 1 GB).  Past this size RocksDB starts a new MANIFEST
 * holding only the live files, so what a checkpoint copies stays bounded
 * however long the pipeline runs.
 */
#define STATE_MAX_MANIFEST_FILE_SIZE	(1024 * 1024)

/*
 * Share of a memtable given to its whole-key bloom filter: at ~100 bytes per
 * entry, 2% is about 16 bits per key.
 */
#define STATE_MEMTABLE_BLOOM_RATIO	0.02

/* Every open starts a new info LOG; keep only a couple of old ones. */
#define STATE_KEEP_LOG_FILE_NUM		2
#define STATE_MAX_LOG_FILE_SIZE		(1024 * 1024)

/* Room for a RocksDB error string copied before it is freed. */
#define STATE_ERRMSG_LEN			1024

#define STATE_COPY_BUFSIZE			(64 * 1024)

/*
 * One handle per column family.  The main family's handle (the one
 * state_open returns, the "root") owns the database and everything below;
 * the other families' handles share its pointers and own only their column
 * family handle and their struct.
 */
struct StateStore
{
	rocksdb_t  *db;
	rocksdb_column_family_handle_t *cf; /* this handle's family */
	StateStore *root;			/* the main family's handle (self there) */
	StateStore *families[STATE_NUM_FAMILIES];	/* root only */
	rocksdb_options_t *options;
	rocksdb_options_t *family_options[STATE_NUM_FAMILIES];	/* root only */
	rocksdb_readoptions_t *ropts;
	rocksdb_writeoptions_t *wopts;
	rocksdb_cache_t *cache;
	bool		secondary;
	char	   *dir;			/* database directory, for messages */
	dlist_head	iters;			/* live StateIters (root only: all families') */
	int64		memtable_peak;	/* root only: see note_memtables */
	int			profile;		/* StateProfile it was opened with; -1 none */
	rocksdb_perfcontext_t *perf;	/* the opening thread's counts, or NULL */
};

/* Column family names, by StateFamily. */
static const char *const family_names[STATE_NUM_FAMILIES] = {
	"default",					/* RocksDB's own name for the first family */
	"timers",
};

struct StateIter
{
	dlist_node	node;			/* in store->iters */
	StateStore *store;
	rocksdb_iterator_t *iter;
	rocksdb_readoptions_t *ropts;
	char	   *lower;			/* owned copies: RocksDB keeps pointers */
	size_t		llen;
	char	   *upper;
	size_t		ulen;
	bool		started;
};

/*
 * A write batch.  Puts and deletes are staged in 'ops' (a header, the key,
 * the value, one after the other) and handed to RocksDB's write batch in
 * key order when the batch is written (see sort_staged).  A range deletion
 * goes to RocksDB's batch at once, after the staged operations before it,
 * so every operation keeps its place relative to it.
 */
struct StateBatch
{
	rocksdb_writebatch_t *wb;
	MemoryContext cxt;			/* where the batch and its buffers live */
	char	   *ops;			/* staged operations (BatchOp, key, value) */
	Size		used;
	Size		size;
	Size	   *offsets;		/* of each staged operation in ops */
	uint32		nops;
	uint32		maxops;
};

/* One staged operation; its key and value follow it in StateBatch.ops. */
typedef struct BatchOp
{
	rocksdb_column_family_handle_t *cf; /* NULL: the main family */
	uint32		seq;			/* order of staging: ties keep it */
	bool		is_delete;
	uint32		klen;
	uint32		vlen;
} BatchOp;

#define BATCH_OP_KEY(op)	((const char *) (op) + MAXALIGN(sizeof(BatchOp)))
#define BATCH_OP_SIZE(klen, vlen) MAXALIGN(MAXALIGN(sizeof(BatchOp)) + (klen) + (vlen))

/*
 * A batch whose buffers grew beyond this gives them back after its write:
 * a write-back of many keys can stage tens of MB, which should not stay
 * allocated until the next one.
 */
#define STATE_BATCH_KEEP_BYTES		(4 * 1024 * 1024)

/*
 * A batch for a snapshot of at least this many staged operations and
 * nothing else (no range deletion) is written as a table file and ingested
 * (ingest_staged), not through the memtable.  Below it, the file's fixed
 * costs (its own fsync, a MANIFEST record, one more file in level 0)
 * outweigh what it saves.
 */
#define STATE_INGEST_MIN_OPS		8192

/* Its name in the database's directory: not one RocksDB's names parse as. */
#define STATE_INGEST_FILE			"streamflink-ingest.tmp"

/*
 * Files in level 0 that start a compaction into level 1 (RocksDB's
 * default: 4).  A checkpoint's large write-back reaches level 0 as a file
 * of its own, and what the memtable holds then (evictions since the last
 * checkpoint) as another, flushed by the ingestion, so level 0 gets up to
 * twice the files for the same bytes as when every write went through the
 * memtable; with keys all over the key space, each of those compactions
 * rewrites the whole of level 1.
 */
#define STATE_L0_COMPACTION_TRIGGER	8

/* RocksDB's kDisableCompressionOption: a level's compression not set. */
#define STATE_NO_COMPRESSION_OPTION	0xff

static void store_release(StateStore *store);
static StateStore *open_primary(const char *dir, const StateTuning *t, bool wal);
static void check_writable(StateStore *store);
static void iter_release(StateIter *it);


/* ---------- helpers ---------- */

/*
 * Copy a RocksDB error string into 'buf' and free it.  RocksDB's strings are
 * malloc'd; copying first lets us free them before ereport longjmps away.
 */
static void
take_error(char *err, char *buf, size_t buflen)
{
	strlcpy(buf, err, buflen);
	rocksdb_free(err);
}

/* Map a RocksDB status string (its "Code: message" form) to a SQLSTATE. */
static int
rocks_errcode(const char *msg)
{
	if (strncmp(msg, "Corruption", 10) == 0)
		return ERRCODE_DATA_CORRUPTED;
	if (strstr(msg, "/LOCK:") != NULL ||
		strncmp(msg, "Resource busy", 13) == 0 ||
		strncmp(msg, "Operation failed. Try again", 27) == 0)
		return ERRCODE_OBJECT_IN_USE;
	if (strncmp(msg, "IO error", 8) == 0)
		return ERRCODE_IO_ERROR;
	if (strncmp(msg, "Invalid argument", 16) == 0)
		return ERRCODE_INVALID_PARAMETER_VALUE;
	return ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
}

/* Does 'path' exist (as anything)?  Errors other than ENOENT are reported. */
static bool
path_exists(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return true;
	if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat \"%s\": %m", path)));
	return false;
}

/* mkdir -p, with Postgres' directory permissions. */
static void
make_dir_path(const char *path)
{
	char	   *copy = pstrdup(path);

	if (pg_mkdir_p(copy, pg_dir_create_mode) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", path)));
	pfree(copy);
}

/* Create the parent directory of 'path' if it is missing. */
static void
make_parent_dir(const char *path)
{
	char	   *parent = pstrdup(path);

	canonicalize_path(parent);
	get_parent_directory(parent);
	if (parent[0] != '\0')
		make_dir_path(parent);
	pfree(parent);
}

/*
 * Block-based table options on the store's cache: bloom filters of
 * 'bloom_bits' bits per key (0: none), the tuning's block size and index
 * and filter blocks in the cache where it asks (t NULL: a secondary's
 * defaults).  Set on 'opts', which copies them (and shares the cache).
 */
static void
set_table_options(rocksdb_options_t *opts, StateStore *store, const StateTuning *t,
				  double bloom_bits)
{
	rocksdb_block_based_table_options_t *bbto;

	bbto = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(bbto, store->cache);
	if (bloom_bits > 0)
	{
		/* the table options take ownership of the filter policy */
		rocksdb_block_based_options_set_filter_policy(bbto,
													  rocksdb_filterpolicy_create_bloom_full(bloom_bits));
	}
	if (t != NULL)
	{
		rocksdb_block_based_options_set_block_size(bbto, (size_t) t->block_size);
		if (t->cache_index_and_filter_blocks)
		{
			/*
			 * Index and filter blocks in the cache count in the budget
			 * instead of growing with the state; with high priority and L0's
			 * pinned, as Flink does with managed memory, so data blocks do
			 * not evict them.
			 *
			 * Partitioned: a file's index and filter are cut into blocks
			 * of 4kB under a small top-level index, and a lookup loads only
			 * the partitions it needs (RocksDB's "partitioned index/filters"
			 * for state beyond memory).  Whole ones are a block each, about
			 * 1.2MB of filter per million keys of a file: once a state's
			 * filters outgrow the cache (10M keys in a 32MB cache), every
			 * lookup that missed the cache read a whole filter again: the
			 * 10M-key level of test/bench/state_scaling.sh under
			 * large_state went at about 5k events/s, 30.6k partitioned
			 * (the default profile, filters outside the cache: 40k).
			 */
			rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbto, 1);
			rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(bbto, 1);
			rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(bbto, 1);
			rocksdb_block_based_options_set_index_type(bbto,
													   rocksdb_block_based_table_index_type_two_level_index_search);
			rocksdb_block_based_options_set_partition_filters(bbto, 1);
			rocksdb_block_based_options_set_metadata_block_size(bbto, 4096);
			rocksdb_block_based_options_set_pin_top_level_index_and_filter(bbto, 1);
		}
	}
	rocksdb_options_set_block_based_table_factory(opts, bbto);
	rocksdb_block_based_options_destroy(bbto);
}

/*
 * Options shared by primary and secondary instances: block-based tables with
 * bloom filters (window and pattern operators do a point lookup per event, and
 * most lookups of a new key miss), lz4 compression, bounded info LOGs.  A
 * primary takes the rest of its tuning (state_tuning.h) from 't'; a
 * secondary (t NULL) reads through a small cache of its own.
 */
static rocksdb_options_t *
make_options(StateStore *store, const StateTuning *t, size_t cache_size)
{
	rocksdb_options_t *opts = rocksdb_options_create();

	store->options = opts;

	rocksdb_options_set_keep_log_file_num(opts, STATE_KEEP_LOG_FILE_NUM);
	rocksdb_options_set_max_log_file_size(opts, STATE_MAX_LOG_FILE_SIZE);
	rocksdb_options_set_compression(opts, t ? t->compression : rocksdb_lz4_compression);
	rocksdb_options_set_max_background_jobs(opts, t ? t->max_background_jobs : STATE_BACKGROUND_JOBS);

	store->cache = rocksdb_cache_create_lru(cache_size);
	set_table_options(opts, store, t, t ? t->bloom_filter_bits : STATE_BLOOM_BITS_PER_KEY);

	return opts;
}

/* The primary's share of the tuning: memtables, compaction, files. */
static void
apply_primary_tuning(rocksdb_options_t *opts, const StateTuning *t)
{
	rocksdb_options_set_write_buffer_size(opts, (size_t) t->write_buffer_size);
	rocksdb_options_set_max_write_buffer_number(opts, t->max_write_buffer_number);
	/* all memtables together: RocksDB flushes when they reach it */
	rocksdb_options_set_db_write_buffer_size(opts, (size_t) t->db_write_buffer_size);
	rocksdb_options_set_compaction_style(opts, t->compaction_style);
	rocksdb_options_set_max_open_files(opts, t->max_open_files);
	rocksdb_options_set_bottommost_compression(opts, t->bottommost_compression);
	rocksdb_options_set_target_file_size_base(opts, (uint64_t) t->target_file_size_base);
	rocksdb_options_set_max_bytes_for_level_base(opts, (uint64_t) t->max_bytes_for_level_base);
	rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, t->dynamic_level_bytes ? 1 : 0);
	rocksdb_options_set_level0_file_num_compaction_trigger(opts, STATE_L0_COMPACTION_TRIGGER);

	/*
	 * A bloom filter over the whole keys of each memtable: most lookups of
	 * state are for a key that does not exist yet (a new window, a new
	 * key), and without it each one searches the memtables' skip lists
	 * before the SST files' filters answer.  Its bits come out of the
	 * memtable's own memory (STATE_MEMTABLE_BLOOM_RATIO of it).
	 */
	if (t->bloom_filter_bits > 0)
	{
		rocksdb_options_set_memtable_prefix_bloom_size_ratio(opts, STATE_MEMTABLE_BLOOM_RATIO);
		rocksdb_options_set_memtable_whole_key_filtering(opts, 1);
	}

	/*
	 * Statistics for streamflink.state_metrics (the block cache's hits and
	 * misses of every thread), only if streamflink.state_statistics asks for
	 * them: they cost CPU on every read and write.  RocksDB's default level,
	 * without the detailed timers; read at most once a second by
	 * state_collect_metrics.
	 */
	if (state_statistics)
		rocksdb_options_enable_statistics(opts);
}

static StateStore *
store_alloc(const char *dir, bool secondary)
{
	StateStore *store;

	store = MemoryContextAllocZero(TopMemoryContext, sizeof(StateStore));
	store->dir = MemoryContextStrdup(TopMemoryContext, dir);
	store->secondary = secondary;
	store->profile = -1;
	store->root = store;
	dlist_init(&store->iters);
	return store;
}

/*
 * Options per column family: the main family takes the database's options,
 * the timers a copy with a smaller memtable and no bloom filters (same
 * table format and shared block cache).  Timers are only ever read by
 * range scans (timer_service.c), which whole-key filters cannot answer:
 * their filters would be built at every insert into the memtable and at
 * every flush, and never read.
 */
static void
make_family_options(StateStore *store, const StateTuning *t)
{
	rocksdb_options_t *timers;

	store->family_options[STATE_FAMILY_MAIN] = store->options;
	timers = rocksdb_options_create_copy(store->options);
	store->family_options[STATE_FAMILY_TIMERS] = timers;
	set_table_options(timers, store, t, 0);
	rocksdb_options_set_memtable_prefix_bloom_size_ratio(timers, 0);
	/*
	 * Never larger than the main family's: with a small share (a parallel
	 * pipeline's task: 2MB at least) a fixed 8MB would be most of the
	 * memory.  Both families' memtables count in db_write_buffer_size.
	 */
	if (!store->secondary)
		rocksdb_options_set_write_buffer_size(timers, Min(STATE_TIMERS_WRITE_BUFFER_SIZE,
														  t->write_buffer_size));
}

/*
 * After a successful open: the handle of every family (the root's own is
 * the main family's).
 */
static void
make_family_handles(StateStore *store, rocksdb_column_family_handle_t **cfs)
{
	for (int f = 0; f < STATE_NUM_FAMILIES; f++)
	{
		StateStore *fs;

		if (f == STATE_FAMILY_MAIN)
			fs = store;
		else
		{
			fs = MemoryContextAllocZero(TopMemoryContext, sizeof(StateStore));
			fs->db = store->db;
			fs->root = store;
			fs->ropts = store->ropts;
			fs->wopts = store->wopts;
			fs->secondary = store->secondary;
			fs->dir = store->dir;
			dlist_init(&fs->iters);
		}
		fs->cf = cfs[f];
		store->families[f] = fs;
	}
}


/* ---------- key groups ---------- */

uint16
state_key_group(const char *key, size_t len)
{
	/*
	 * hash_bytes is Postgres' stable Jenkins hash: the same key always lands
	 * in the same group across restarts and versions, which persisted keys
	 * and checkpoints rely on.
	 */
	Assert(len <= (size_t) PG_INT32_MAX);
	return (uint16) (hash_bytes((const unsigned char *) key, (int) len) %
					 STATE_KEY_GROUPS);
}


/* ---------- open / close ---------- */

StateStore *
state_open(const char *dir)
{
	StateTuning t;

	/* no worker's own: the server's settings, within a small budget */
	state_tuning_auxiliary(&t);
	return state_open_tuned(dir, &t);
}

StateStore *
state_open_tuned(const char *dir, const StateTuning *t)
{
	return open_primary(dir, t, true);
}

/*
 * Room for RocksDB's table files in this process: -1 if unlimited.
 * RocksDB opens them outside Postgres' fd.c, which counts on max_safe_fds
 * descriptors of its own, keeps up to max_open_files - 10 of them open, and
 * trims max_open_files to the soft RLIMIT_NOFILE only.  With a soft limit
 * of 1024 (systemd's default for services) the two together would run out:
 * every open of a table file would then fail (EMFILE), and the worker
 * restart with the same files.  So the process raises its soft limit towards
 * the hard one (any process may), up to STATE_NOFILE_WANTED, and leaves
 * RocksDB what Postgres' own files and STATE_FD_RESERVE (the Kafka
 * clients' sockets, RocksDB's other files) leave of it.
 */
#define STATE_NOFILE_WANTED		65536
#define STATE_FD_RESERVE		128

static int
table_file_room(int64 *limit)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < STATE_NOFILE_WANTED &&
		rl.rlim_cur < rl.rlim_max)
	{
		struct rlimit want = rl;

		want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? STATE_NOFILE_WANTED :
			Min(rl.rlim_max, STATE_NOFILE_WANTED);
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return -1;
	*limit = (int64) rl.rlim_cur;
	return (int) Max(*limit - max_safe_fds - STATE_FD_RESERVE, 0);
}

/*
 * t's max_open_files within the room the process has for table files (at
 * least RocksDB's own least, 20); logged if 'log' (a worker's database).
 */
static void
fit_open_files(StateTuning *t, bool log)
{
	int64		limit = 0;
	int			room = table_file_room(&limit);
	int			asked = t->max_open_files;

	if (room < 0 || (asked >= 0 && asked <= room))
		return;
	t->max_open_files = Max(room, 20);
	if (log)
		ereport(LOG,
				(errmsg("state option max_open_files reduced from %d to %d: the worker may open " INT64_FORMAT " files, Postgres' own up to %d of them",
						asked, t->max_open_files, limit, max_safe_fds),
				 errhint("Raise the server's limit of open files (ulimit -n, LimitNOFILE), or lower max_files_per_process.")));
}

StateStore *
state_open_worker(const char *dir, const StateTuning *t)
{
	StateStore *store = open_primary(dir, t, false);

	/*
	 * Without statistics, the block cache's hits and misses of the worker's
	 * own reads (every read of the operators' state is on this thread;
	 * compactions do not fill the cache) come from RocksDB's per-thread
	 * counters, an increment each: within the noise of the worker's CPU in
	 * the scaling benchmark (README, State tuning, Metrics).
	 */
	if (!state_statistics)
	{
		rocksdb_set_perf_level(rocksdb_enable_count);
		store->perf = rocksdb_perfcontext_create();
		rocksdb_perfcontext_reset(store->perf);
	}
	return store;
}

/*
 * Open a primary.  Without a WAL ('wal' false), writes reach the memtables
 * only, until a flush (a checkpoint's, a full memtable's, or the close's:
 * RocksDB flushes unpersisted memtables when a database without WAL is
 * closed).
 */
static StateStore *
open_primary(const char *dir, const StateTuning *t, bool wal)
{
	StateTuning tuned = *t;
	StateStore *store;
	rocksdb_options_t *opts;
	sigset_t	saved;
	char	   *err = NULL;
	rocksdb_column_family_handle_t *cfs[STATE_NUM_FAMILIES] = {0};

	/*
	 * Every primary, a worker's (the one without a WAL) or a restore's and a
	 * backend's, within the room for table files.
	 */
	fit_open_files(&tuned, !wal);
	t = &tuned;

	/* RocksDB creates the database directory, but not its parents. */
	make_parent_dir(dir);

	store = store_alloc(dir, false);
	store->profile = (int) t->profile;
	opts = make_options(store, t, (size_t) t->block_cache_size);
	rocksdb_options_set_create_if_missing(opts, 1);
	apply_primary_tuning(opts, t);
	rocksdb_options_set_max_total_wal_size(opts, STATE_MAX_TOTAL_WAL_SIZE(t));
	rocksdb_options_set_max_manifest_file_size(opts, STATE_MAX_MANIFEST_FILE_SIZE);
	/*
	 * Flush all families together, in one flush job: RocksDB's advice for
	 * families written without a WAL (each family's flush alone would
	 * persist it without the others), and for a checkpoint, which flushes
	 * every family, one job writes one MANIFEST record and syncs the
	 * directory once instead of once per family (7 syncs a checkpoint
	 * instead of 9, under strace).
	 */
	rocksdb_options_set_atomic_flush(opts, 1);
	/* a database created before a family was added gets it empty */
	rocksdb_options_set_create_missing_column_families(opts, 1);
	make_family_options(store, t);

	store->ropts = rocksdb_readoptions_create();
	store->wopts = rocksdb_writeoptions_create();
	/* no fsync per write: checkpoints, not the WAL, make state durable */
	rocksdb_writeoptions_set_sync(store->wopts, 0);
	/* and no WAL at all for a worker's (see the top of this file) */
	rocksdb_writeoptions_disable_WAL(store->wopts, wal ? 0 : 1);

	thread_signals_block(&saved);
	store->db = rocksdb_open_column_families(opts, dir, STATE_NUM_FAMILIES,
											 family_names,
											 (const rocksdb_options_t *const *) store->family_options,
											 cfs, &err);
	thread_signals_restore(&saved);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		store->db = NULL;
		store_release(store);
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not open state database \"%s\": %s", dir, msg),
				 rocks_errcode(msg) == ERRCODE_OBJECT_IN_USE ?
				 errhint("Another process has the database open; only one process may open it for writing.") : 0));
	}
	make_family_handles(store, cfs);

	return store;
}

StateStore *
state_open_secondary(const char *dir, const char *secondary_dir)
{
	StateStore *store;
	rocksdb_options_t *opts;
	sigset_t	saved;
	char	   *err = NULL;
	rocksdb_column_family_handle_t *cfs[STATE_NUM_FAMILIES] = {0};

	/* The secondary keeps its own info LOG and MANIFEST copy here. */
	make_dir_path(secondary_dir);

	store = store_alloc(dir, true);
	opts = make_options(store, NULL, STATE_SECONDARY_CACHE_SIZE);
	/* a secondary must keep every table file open (RocksDB requires it) */
	rocksdb_options_set_max_open_files(opts, -1);
	make_family_options(store, NULL);

	store->ropts = rocksdb_readoptions_create();

	thread_signals_block(&saved);
	store->db = rocksdb_open_as_secondary_column_families(opts, dir, secondary_dir,
														  STATE_NUM_FAMILIES,
														  family_names,
														  (const rocksdb_options_t *const *) store->family_options,
														  cfs, &err);
	thread_signals_restore(&saved);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		store->db = NULL;
		store_release(store);
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not open state database \"%s\" as a secondary: %s",
						dir, msg),
				 errdetail("The secondary's own files are kept in \"%s\".",
						   secondary_dir),
				 strstr(msg, "No such file") != NULL ?
				 errhint("The database is created when its pipeline first runs.") : 0));
	}
	make_family_handles(store, cfs);

	return store;
}

void
state_catch_up(StateStore *store)
{
	sigset_t	saved;
	char	   *err = NULL;

	/* a primary is always up to date with itself */
	if (store == NULL || store->db == NULL || !store->secondary)
		return;

	thread_signals_block(&saved);
	rocksdb_try_catch_up_with_primary(store->db, &err);
	thread_signals_restore(&saved);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not catch up with state database \"%s\": %s",
						store->dir, msg)));
	}
}

/*
 * Free everything the store holds, in dependency order (iterators before the
 * database, the database before its options and cache).  Every field may be
 * NULL, so this works on a store whose open failed half way.  It neither
 * allocates nor raises errors: it runs in before_shmem_exit callbacks.
 */
static void
store_release(StateStore *store)
{
	sigset_t	saved;
	dlist_mutable_iter miter;

	dlist_foreach_modify(miter, &store->iters)
	{
		StateIter  *it = dlist_container(StateIter, node, miter.cur);

		iter_release(it);
		pfree(it);
	}

	/* family handles go before the database they belong to */
	for (int f = 0; f < STATE_NUM_FAMILIES; f++)
	{
		StateStore *fs = store->families[f];

		if (fs == NULL)
			continue;
		if (fs->cf != NULL)
			rocksdb_column_family_handle_destroy(fs->cf);
		if (fs != store)
			pfree(fs);
		store->families[f] = NULL;
	}
	store->cf = NULL;

	if (store->perf != NULL)
	{
		rocksdb_perfcontext_destroy(store->perf);
		rocksdb_set_perf_level(rocksdb_disable);
		store->perf = NULL;
	}
	if (store->db != NULL)
	{
		/* closing waits for and may finish background work: mask too */
		thread_signals_block(&saved);
		rocksdb_close(store->db);
		thread_signals_restore(&saved);
		store->db = NULL;
	}
	if (store->ropts != NULL)
		rocksdb_readoptions_destroy(store->ropts);
	if (store->wopts != NULL)
		rocksdb_writeoptions_destroy(store->wopts);
	for (int f = 0; f < STATE_NUM_FAMILIES; f++)
	{
		if (store->family_options[f] != NULL &&
			store->family_options[f] != store->options)
			rocksdb_options_destroy(store->family_options[f]);
		store->family_options[f] = NULL;
	}
	if (store->options != NULL)
		rocksdb_options_destroy(store->options);
	if (store->cache != NULL)
		rocksdb_cache_destroy(store->cache);
	store->ropts = NULL;
	store->wopts = NULL;
	store->options = NULL;
	store->cache = NULL;

	if (store->dir != NULL)
		pfree(store->dir);
	pfree(store);
}

/*
 * Close the database and free the store.  Iterators still open on it are
 * destroyed too (pointers to them become invalid).  NULL is accepted.
 */
void
state_close(StateStore *store)
{
	if (store == NULL)
		return;
	Assert(store->root == store);
	store_release(store->root);
}

StateStore *
state_family(StateStore *store, StateFamily family)
{
	Assert(family >= 0 && family < STATE_NUM_FAMILIES);
	if (unlikely(store == NULL || store->db == NULL))
		elog(ERROR, "state database is not open");
	return store->root->families[family];
}


/* ---------- metrics ---------- */

static int64
property_int(rocksdb_t *db, const char *name)
{
	uint64_t	v = 0;

	if (rocksdb_property_int(db, name, &v) != 0)
		return -1;
	return (int64) Min(v, (uint64_t) PG_INT64_MAX);
}

/*
 * A per-family property summed over every column family of the database
 * (state and timers): -1 if RocksDB does not know it.
 */
static int64
property_sum(StateStore *store, const char *name)
{
	uint64_t	sum = 0;

	for (int f = 0; f < STATE_NUM_FAMILIES; f++)
	{
		uint64_t	v = 0;

		if (store->families[f] == NULL)
			continue;
		if (rocksdb_property_int_cf(store->db, store->families[f]->cf, name, &v) != 0)
			return -1;
		sum += v;
	}
	return (int64) Min(sum, (uint64_t) PG_INT64_MAX);
}

/*
 * The value after "<name> " and "<field> : " in the text of RocksDB's
 * statistics ("rocksdb.block.cache.hit COUNT : 12" for a ticker,
 * "rocksdb.db.flush.micros P50 : ... COUNT : 3 SUM : ..." for a histogram),
 * 0 if absent.
 */
static int64
statistic(const char *stats, const char *name, const char *field)
{
	const char *p = stats;
	size_t		len = strlen(name);

	while ((p = strstr(p, name)) != NULL)
	{
		/* whole name at a line start, not a prefix of a longer one */
		if ((p == stats || p[-1] == '\n') && p[len] == ' ')
		{
			const char *eol = strchr(p, '\n');
			const char *f = strstr(p + len, field);

			if (f != NULL && (eol == NULL || f < eol))
			{
				f += strlen(field);
				while (*f == ' ' || *f == ':')
					f++;
				return strtoll(f, NULL, 10);
			}
			return 0;
		}
		p += len;
	}
	return 0;
}

/*
 * The words of one line of RocksDB's text (up to max), as offsets into it:
 * the number of words.
 */
static int
line_words(const char *line, const char **words, int max)
{
	int			n = 0;
	const char *p = line;

	while (*p != '\0' && *p != '\n')
	{
		while (*p == ' ')
			p++;
		if (*p == '\0' || *p == '\n')
			break;
		if (n < max)
			words[n] = p;
		n++;
		while (*p != ' ' && *p != '\0' && *p != '\n')
			p++;
	}
	return Min(n, max);
}

/* is the word at w (ended by a blank, a line's end or the text's) this one */
static bool
word_is(const char *w, const char *word)
{
	size_t		len = strlen(word);

	return strncmp(w, word, len) == 0 &&
		(w[len] == ' ' || w[len] == '\n' || w[len] == '\0');
}

#define STATE_STATS_WORDS 40

/*
 * Add a family's completed flushes and compactions to *flushes and
 * *compactions, from its compaction stats: RocksDB keeps those whatever the
 * statistics (streamflink.state_statistics), and gives them to the C API
 * only as the text of "rocksdb.cfstats-no-file-histogram".  Its table per
 * thread pool counts jobs in "Comp(cnt)": a flush in "High" (flushes run in
 * the high-priority pool, which opening a database gives at least one
 * thread), a compaction in "Low" or "Bottom", an ingested table file (a
 * large checkpoint's write-back) in "User", which is neither.  A pool
 * without jobs has no row.  The count is found by its place from the end of
 * the header, as a row's "Size" is two words ("1.20 KB").  False if the
 * text is not as expected.
 */
static bool
family_job_counts(const char *text, int64 *flushes, int64 *compactions)
{
	const char *words[STATE_STATS_WORDS];
	const char *line;
	int			n;
	int			from_end = -1;

	line = strstr(text, "\nPriority ");
	if (line == NULL)
		return false;
	line++;
	n = line_words(line, words, STATE_STATS_WORDS);
	for (int i = 0; i < n; i++)
		if (word_is(words[i], "Comp(cnt)"))
			from_end = n - 1 - i;
	if (from_end < 0 || n == STATE_STATS_WORDS)
		return false;

	/* the rule under the header, then a row per pool up to a blank line */
	line = strchr(line, '\n');
	line = line ? strchr(line + 1, '\n') : NULL;
	while (line != NULL && line[1] != '\n' && line[1] != '\0')
	{
		char	   *end;
		int64		count;

		line++;
		n = line_words(line, words, STATE_STATS_WORDS);
		if (n <= from_end || n == STATE_STATS_WORDS)
			return false;
		count = strtoll(words[n - 1 - from_end], &end, 10);
		if (end == words[n - 1 - from_end] || count < 0 ||
			(*end != ' ' && *end != '\n' && *end != '\0'))
			return false;
		if (word_is(words[0], "High"))
			*flushes += count;
		else if (word_is(words[0], "Low") || word_is(words[0], "Bottom"))
			*compactions += count;
		line = strchr(line, '\n');
	}
	return true;
}

/*
 * Completed flushes and compactions over every family, and the time writes
 * were delayed or stopped, from RocksDB's own stats, kept whatever the
 * statistics: about 30 µs for the three texts, once a second.  The stall's
 * text ("Cumulative stall: 00:00:1.250 H:M:S" in "rocksdb.dbstats", the
 * database's) has milliseconds.  Each stays -1 (NULL) if its text is not as
 * expected.
 */
static void
collect_job_counts(StateStore *store, StateMetrics *m)
{
	int64		flushes = 0;
	int64		compactions = 0;
	bool		ok = true;
	char	   *text;

	for (int f = 0; f < STATE_NUM_FAMILIES && ok; f++)
	{
		if (store->families[f] == NULL)
			continue;
		text = rocksdb_property_value_cf(store->db, store->families[f]->cf,
										 "rocksdb.cfstats-no-file-histogram");
		ok = text != NULL && family_job_counts(text, &flushes, &compactions);
		rocksdb_free(text);
	}
	if (ok)
	{
		m->flushes = flushes;
		m->compactions = compactions;
	}

	text = rocksdb_property_value(store->db, "rocksdb.dbstats");
	if (text != NULL)
	{
		const char *p = strstr(text, "\nCumulative stall: ");
		int			h,
					min;
		double		sec;

		if (p != NULL && sscanf(p, "\nCumulative stall: %d:%d:%lf", &h, &min, &sec) == 3 &&
			h >= 0 && min >= 0 && sec >= 0)
			m->stall_micros = (int64) (((double) h * 3600 + min * 60 + sec) * 1000000.0 + 0.5);
		rocksdb_free(text);
	}
}

/*
 * Remember the memtables' size at its highest since the last
 * state_collect_metrics.  Writes reach the memtables in batches (the
 * cache's write-backs and evictions, the timers' flushes) and every
 * checkpoint flushes them right after its write-back, so a reading at a
 * random moment -- and worse, one taken right after a checkpoint, where
 * the worker's once-a-second metrics used to fall with the default
 * checkpoint interval of a second -- shows empty memtables (2 kB per
 * family) most of the time.  Sampled after every batch and before every
 * checkpoint's flush: two property reads, each under RocksDB's mutex for
 * well under a microsecond.
 */
static void
note_memtables(StateStore *store)
{
	StateStore *root = store->root;
	int64		bytes;

	if (root->secondary)
		return;
	bytes = property_sum(root, "rocksdb.size-all-mem-tables");
	if (bytes > root->memtable_peak)
		root->memtable_peak = bytes;
}

void
state_collect_metrics(StateStore *store, StateMetrics *m)
{
	const rocksdb_livefiles_t *files;
	char	   *stats;

	memset(m, 0, sizeof(*m));
	if (store == NULL || store->db == NULL || store->secondary)
		return;

	m->profile = store->profile;
	m->estimated_keys = property_sum(store, "rocksdb.estimate-num-keys");
	m->live_sst_bytes = property_sum(store, "rocksdb.live-sst-files-size");
	/* the most they held since the last collection (note_memtables) */
	m->memtable_bytes = property_sum(store, "rocksdb.size-all-mem-tables");
	m->memtable_bytes = Max(m->memtable_bytes, store->memtable_peak);
	store->memtable_peak = 0;
	m->table_readers_bytes = property_sum(store, "rocksdb.estimate-table-readers-mem");
	m->pending_compaction_bytes = property_sum(store, "rocksdb.estimate-pending-compaction-bytes");
	m->running_compactions = property_int(store->db, "rocksdb.num-running-compactions");
	m->running_flushes = property_int(store->db, "rocksdb.num-running-flushes");
	m->writes_stopped = property_int(store->db, "rocksdb.is-write-stopped") > 0 ? 1 : 0;
	/* the rate writes are held to while RocksDB slows them down, else 0 */
	m->writes_delayed = property_int(store->db, "rocksdb.actual-delayed-write-rate") > 0 ? 1 : 0;
	m->background_errors = property_int(store->db, "rocksdb.background-errors");
	m->block_cache_capacity = (int64) rocksdb_cache_get_capacity(store->cache);
	m->block_cache_usage = (int64) rocksdb_cache_get_usage(store->cache);
	m->block_cache_pinned = (int64) rocksdb_cache_get_pinned_usage(store->cache);

	/* per level: the live files' metadata (a few dozen entries) */
	files = rocksdb_livefiles(store->db);
	if (files != NULL)
	{
		int			n = rocksdb_livefiles_count(files);

		for (int i = 0; i < n; i++)
		{
			int			level = rocksdb_livefiles_level(files, i);

			if (level >= STATE_METRIC_LEVELS)
				level = STATE_METRIC_LEVELS - 1;
			if (level >= 0)
				m->sst_bytes_per_level[level] += (int64) rocksdb_livefiles_size(files, i);
		}
		rocksdb_livefiles_destroy(files);
	}

	m->compactions = m->flushes = m->stall_micros = -1;
	collect_job_counts(store, m);

	/*
	 * The block cache's hits and misses: every thread's with statistics on
	 * (the C API gives them only as text), else the worker's own.
	 */
	m->block_cache_hits = m->block_cache_misses = -1;
	stats = rocksdb_options_statistics_get_string(store->options);
	if (stats != NULL)
	{
		m->block_cache_hits = statistic(stats, "rocksdb.block.cache.hit", "COUNT");
		m->block_cache_misses = statistic(stats, "rocksdb.block.cache.miss", "COUNT");
		rocksdb_free(stats);
	}
	else if (store->perf != NULL)
	{
		/* a block read is a block not found in the cache */
		m->block_cache_hits = (int64) rocksdb_perfcontext_metric(store->perf,
																  rocksdb_block_cache_hit_count);
		m->block_cache_misses = (int64) rocksdb_perfcontext_metric(store->perf,
																	rocksdb_block_read_count);
	}
	m->collected_at = GetCurrentTimestamp();
}

void
state_metrics_add(StateMetrics *sum, const StateMetrics *m)
{
	int64	   *counters[] = {
		&sum->block_cache_hits, &sum->block_cache_misses,
		&sum->compactions, &sum->flushes, &sum->stall_micros
	};
	const int64 *theirs[] = {
		&m->block_cache_hits, &m->block_cache_misses,
		&m->compactions, &m->flushes, &m->stall_micros
	};

	if (m->collected_at == 0)
		return;
	/* the older reading: the sum is as fresh as its oldest part */
	if (sum->collected_at == 0 || m->collected_at < sum->collected_at)
		sum->collected_at = m->collected_at;
	sum->estimated_keys += m->estimated_keys;
	sum->live_sst_bytes += m->live_sst_bytes;
	for (int i = 0; i < STATE_METRIC_LEVELS; i++)
		sum->sst_bytes_per_level[i] += m->sst_bytes_per_level[i];
	sum->memtable_bytes += m->memtable_bytes;
	sum->table_readers_bytes += m->table_readers_bytes;
	sum->block_cache_capacity += m->block_cache_capacity;
	sum->block_cache_usage += m->block_cache_usage;
	sum->block_cache_pinned += m->block_cache_pinned;
	sum->pending_compaction_bytes += m->pending_compaction_bytes;
	sum->running_compactions += m->running_compactions;
	sum->running_flushes += m->running_flushes;
	sum->writes_stopped += m->writes_stopped;
	sum->writes_delayed += m->writes_delayed;
	sum->background_errors += m->background_errors;
	for (int i = 0; i < lengthof(counters); i++)
		*counters[i] = (*counters[i] < 0 || *theirs[i] < 0) ? -1 : *counters[i] + *theirs[i];
}


/* ---------- point operations ---------- */

/*
 * Writes need an open primary.  Checked always, not just asserted: a
 * secondary has no write options, and RocksDB would crash on them.
 */
static void
check_writable(StateStore *store)
{
	if (unlikely(store == NULL || store->db == NULL))
		elog(ERROR, "state database is not open");
	if (unlikely(store->secondary))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("state database \"%s\" is open read-only (as a secondary)",
						store->dir)));
}

/*
 * Raise the error of a read: RocksDB's error string 'err' (or NULL), else a
 * value of 'vlen' bytes too large to copy into palloc'd memory.  'err' is
 * malloc'd: it is copied and freed before ereport longjmps away.  The caller
 * releases RocksDB's values before calling, or in a PG_FINALLY around it.
 */
static void
check_read(StateStore *store, char *err, size_t vlen)
{
	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not read from state database \"%s\": %s",
						store->dir, msg)));
	}
	if (vlen >= (size_t) MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("state value of %zu bytes is too large", vlen)));
}

bool
state_get(StateStore *store, const char *key, size_t klen, StringInfo out)
{
	rocksdb_pinnableslice_t *ps;
	const char *val;
	size_t		vlen;
	char	   *err = NULL;

	if (unlikely(store == NULL || store->db == NULL))
		elog(ERROR, "state database is not open");

	/* pinned: no malloc + copy inside RocksDB, the value is read in place */
	ps = rocksdb_get_pinned_cf(store->db, store->ropts, store->cf, key, klen, &err);
	check_read(store, err, 0);

	resetStringInfo(out);
	if (ps == NULL)
		return false;

	val = rocksdb_pinnableslice_value(ps, &vlen);
	if (vlen < (size_t) MaxAllocSize)
		appendBinaryStringInfo(out, val, (int) vlen);
	rocksdb_pinnableslice_destroy(ps);
	check_read(store, NULL, vlen);
	return true;
}

void
state_multi_get(StateStore *store, int n, const char *const *keys,
				const size_t *klens, state_found_fn found, void *arg)
{
	rocksdb_pinnableslice_t *vals[STATE_MULTI_GET_MAX];
	char	   *errs[STATE_MULTI_GET_MAX];
	char	   *err = NULL;

	if (unlikely(store == NULL || store->db == NULL))
		elog(ERROR, "state database is not open");
	Assert(n >= 0 && n <= STATE_MULTI_GET_MAX);
	if (n == 0)
		return;

	rocksdb_batched_multi_get_cf(store->db, store->ropts, store->cf, n,
								 keys, klens, vals, errs, false);

	/*
	 * RocksDB's values and error strings are malloc'd: the errors but the
	 * first (reported, and freed, by check_read) are freed now, the values
	 * released whatever happens next (an error, or an ERROR in found).
	 */
	for (int i = 0; i < n; i++)
	{
		if (errs[i] == NULL)
			continue;
		if (err == NULL)
			err = errs[i];
		else
			rocksdb_free(errs[i]);
	}
	PG_TRY();
	{
		check_read(store, err, 0);
		for (int i = 0; i < n; i++)
		{
			const char *val;
			size_t		vlen;

			if (vals[i] == NULL)
				continue;
			val = rocksdb_pinnableslice_value(vals[i], &vlen);
			check_read(store, NULL, vlen);
			found(arg, i, val, vlen);
		}
	}
	PG_FINALLY();
	{
		for (int i = 0; i < n; i++)
			if (vals[i] != NULL)
				rocksdb_pinnableslice_destroy(vals[i]);
	}
	PG_END_TRY();
}

void
state_put(StateStore *store, const char *key, size_t klen,
		  const char *val, size_t vlen)
{
	char	   *err = NULL;

	check_writable(store);
	rocksdb_put_cf(store->db, store->wopts, store->cf, key, klen, val, vlen, &err);
	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not write to state database \"%s\": %s",
						store->dir, msg)));
	}
}

void
state_delete(StateStore *store, const char *key, size_t klen)
{
	char	   *err = NULL;

	check_writable(store);
	rocksdb_delete_cf(store->db, store->wopts, store->cf, key, klen, &err);
	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not delete from state database \"%s\": %s",
						store->dir, msg)));
	}
}


/* ---------- write batches ---------- */

StateBatch *
state_batch_create(void)
{
	StateBatch *batch = palloc0(sizeof(StateBatch));

	batch->wb = rocksdb_writebatch_create();
	batch->cxt = CurrentMemoryContext;
	return batch;
}

/* Stage a put or delete (value NULL) in the family 'cf' (NULL: main). */
static void
stage_op(StateBatch *batch, rocksdb_column_family_handle_t *cf, bool is_delete,
		 const char *key, size_t klen, const char *val, size_t vlen)
{
	Size		need;
	BatchOp    *op;

	if (klen > PG_UINT32_MAX || vlen > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("state key or value of %zu bytes is too large",
						Max(klen, vlen))));
	need = BATCH_OP_SIZE(klen, vlen);
	if (batch->used + need > batch->size)
	{
		Size		size = Max(batch->size * 2, Max(need, 64 * 1024));

		while (size < batch->used + need)
			size *= 2;
		batch->ops = batch->ops == NULL ?
			MemoryContextAllocHuge(batch->cxt, size) :
			repalloc_huge(batch->ops, size);
		batch->size = size;
	}
	if (batch->nops == batch->maxops)
	{
		uint32		maxops = Max(batch->maxops * 2, 1024);

		batch->offsets = batch->offsets == NULL ?
			MemoryContextAllocHuge(batch->cxt, maxops * sizeof(Size)) :
			repalloc_huge(batch->offsets, maxops * sizeof(Size));
		batch->maxops = maxops;
	}

	op = (BatchOp *) (batch->ops + batch->used);
	op->cf = cf;
	op->seq = batch->nops;
	op->is_delete = is_delete;
	op->klen = (uint32) klen;
	op->vlen = (uint32) vlen;
	memcpy((char *) BATCH_OP_KEY(op), key, klen);
	if (vlen > 0)
		memcpy((char *) BATCH_OP_KEY(op) + klen, val, vlen);
	batch->offsets[batch->nops++] = batch->used;
	batch->used += need;
}

/*
 * A staged operation being sorted, with the first SORT_PREFIX_WORDS * 8
 * bytes of its key as big-endian integers (zero-padded): most comparisons
 * compare integers and read no key.  Sorting 100k keys of a cache's
 * write-back by memcmp through pointers took three times as long as with
 * 8 bytes.  24 bytes, because 8 left whole key groups tied: a timer's key
 * ([kg]'T'[time][state key]) has its key group, kind and the high bytes of
 * its time there, the same for every timer of one time, and a window's key
 * ([kg]'W'[start][group key]) its key group, kind and the high bytes of
 * its start, the same for every window of one start; 24 cover a window's
 * key with an int group key and a timer's up to its state key's start.
 * (The figures are from state format 2, whose window keys led with the
 * group key, which 8 bytes tied on a small int's high bytes.)  Measured on
 * 170k staged timers or windows of a 1M-key checkpoint alone: 107-115 ns
 * an operation to take the prefix and sort, against 155-223 with 8 bytes;
 * in a pipeline's checkpoints, where the staging buffers' page faults
 * weigh more, the gain is smaller (the README's Performance).
 */
#define SORT_PREFIX_WORDS 3

/*
 * How many operations ahead of the one handed to RocksDB the next is asked
 * for (sort_staged, ingest_family).
 */
#define SORT_PREFETCH_AHEAD 8

typedef struct SortOp
{
	uint64		prefix[SORT_PREFIX_WORDS];
	BatchOp    *op;
} SortOp;

static inline void
key_prefix(const BatchOp *op, uint64 *prefix)
{
	const char *key = BATCH_OP_KEY(op);

	for (int w = 0; w < SORT_PREFIX_WORDS; w++)
	{
		uint64		v = 0;
		uint32		off = w * 8;

		if (op->klen > off)
			memcpy(&v, key + off, Min(op->klen - off, 8));
		prefix[w] = pg_ntoh64(v);
	}
}

/*
 * RocksDB's bytewise order by family, then key; staging order for ties.
 * Equal prefixes mean equal bytes up to the shorter key's length or the
 * prefix's end (the zero padding of a shorter key compares equal only with
 * zero bytes, which is then decided by the length below), so the keys are
 * compared past the prefix only.
 */
static inline int
sort_op_cmp(const SortOp *x, const SortOp *y)
{
	const BatchOp *a = x->op;
	const BatchOp *b = y->op;
	uint32		common;

	if (a->cf != b->cf)
		return a->cf < b->cf ? -1 : 1;
	for (int w = 0; w < SORT_PREFIX_WORDS; w++)
	{
		if (x->prefix[w] != y->prefix[w])
			return x->prefix[w] < y->prefix[w] ? -1 : 1;
	}
	common = Min(a->klen, b->klen);
	if (common > SORT_PREFIX_WORDS * 8)
	{
		int			c = memcmp(BATCH_OP_KEY(a) + SORT_PREFIX_WORDS * 8,
							   BATCH_OP_KEY(b) + SORT_PREFIX_WORDS * 8,
							   common - SORT_PREFIX_WORDS * 8);

		if (c != 0)
			return c;
	}
	if (a->klen != b->klen)
		return a->klen < b->klen ? -1 : 1;
	return a->seq < b->seq ? -1 : (a->seq > b->seq ? 1 : 0);
}

#define ST_SORT sort_batch_ops
#define ST_ELEMENT_TYPE SortOp
#define ST_COMPARE(a, b) sort_op_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * The staged operations in key order (family, then key, then staging
 * order), allocated in the batch's context.
 */
static SortOp *
sort_ops(StateBatch *batch)
{
	SortOp	   *ops;

	ops = MemoryContextAllocHuge(batch->cxt, batch->nops * sizeof(SortOp));
	for (uint32 i = 0; i < batch->nops; i++)
	{
		ops[i].op = (BatchOp *) (batch->ops + batch->offsets[i]);
		key_prefix(ops[i].op, ops[i].prefix);
	}
	if (batch->nops > 1)
		sort_batch_ops(ops, batch->nops);
	return ops;
}

/*
 * Hand the staged operations to RocksDB's batch, in key order.  The
 * memtable is a skip list that remembers where its last insert went
 * (RocksDB's sequential "splice"): keys inserted in order each start from
 * their predecessor's place, while keys in hash order (a write-back of the
 * cache, pending timers in time order across key groups) each search it
 * from the top, missing the CPU cache at every level.  For 100k keys the
 * sort costs a fraction of what it saves (test/bench/state_scaling.sh, see
 * the README's Performance).  Reordering does not change what the batch
 * does: operations on one key keep their order, operations on different
 * keys commute, and a range deletion is a barrier (staged operations are
 * appended before it is).
 */
static void
sort_staged(StateBatch *batch)
{
	SortOp	   *ops;

	if (batch->nops == 0)
		return;
	ops = sort_ops(batch);
	for (uint32 i = 0; i < batch->nops; i++)
	{
		BatchOp    *op = ops[i].op;
		const char *key = BATCH_OP_KEY(op);

		/*
		 * In key order the operations are read all over the staging buffer
		 * (a cache's write-back stages them in hash order): a miss each,
		 * which, asked for a few operations ahead, overlap.
		 */
		if (i + SORT_PREFETCH_AHEAD < batch->nops)
			state_line_prefetch(ops[i + SORT_PREFETCH_AHEAD].op);

		if (op->is_delete)
		{
			if (op->cf)
				rocksdb_writebatch_delete_cf(batch->wb, op->cf, key, op->klen);
			else
				rocksdb_writebatch_delete(batch->wb, key, op->klen);
		}
		else if (op->cf)
			rocksdb_writebatch_put_cf(batch->wb, op->cf, key, op->klen,
									  key + op->klen, op->vlen);
		else
			rocksdb_writebatch_put(batch->wb, key, op->klen,
								   key + op->klen, op->vlen);
	}
	pfree(ops);
	batch->used = 0;
	batch->nops = 0;
}

static inline bool
same_key(const BatchOp *a, const BatchOp *b)
{
	return a->cf == b->cf && a->klen == b->klen &&
		memcmp(BATCH_OP_KEY(a), BATCH_OP_KEY(b), a->klen) == 0;
}

/* Where a batch's table file is written before it is ingested. */
static char *
ingest_path(StateStore *store)
{
	return psprintf("%s/" STATE_INGEST_FILE, store->dir);
}

/*
 * Write ops[from..to-1] (one family's, in key order) to a table file as a
 * flush of that family would (its table options and filters, its first
 * levels' compression), and ingest it.
 */
static void
ingest_family(StateStore *store, SortOp *ops, uint32 from, uint32 to)
{
	rocksdb_column_family_handle_t *cf = ops[from].op->cf;
	rocksdb_options_t *fopts = store->options;
	rocksdb_options_t *opts;
	rocksdb_envoptions_t *env;
	rocksdb_sstfilewriter_t *writer;
	rocksdb_ingestexternalfileoptions_t *iopts;
	char	   *path = ingest_path(store);
	const char *paths[1];
	char	   *err = NULL;
	sigset_t	saved;

	if (cf == NULL)
		cf = store->cf;
	for (int f = 0; f < STATE_NUM_FAMILIES; f++)
	{
		if (store->families[f] != NULL && store->families[f]->cf == cf)
			fopts = store->family_options[f];
	}

	/*
	 * The writer compresses as the bottommost level would, unless told
	 * otherwise; the file lands in level 0 (its keys overlap the rest), as
	 * a flush's does, so it is compressed as a flush's.
	 */
	opts = rocksdb_options_create_copy(fopts);
	rocksdb_options_set_bottommost_compression(opts, STATE_NO_COMPRESSION_OPTION);
	env = rocksdb_envoptions_create();
	writer = rocksdb_sstfilewriter_create(env, opts);

	thread_signals_block(&saved);
	rocksdb_sstfilewriter_open(writer, path, &err);
	for (uint32 i = from; err == NULL && i < to; i++)
	{
		BatchOp    *op = ops[i].op;
		const char *key = BATCH_OP_KEY(op);

		if (i + SORT_PREFETCH_AHEAD < to)
			state_line_prefetch(ops[i + SORT_PREFETCH_AHEAD].op);

		/* a file has each key once: the last operation on it counts */
		if (i + 1 < to && same_key(op, ops[i + 1].op))
			continue;
		if (op->is_delete)
			rocksdb_sstfilewriter_delete(writer, key, op->klen, &err);
		else
			rocksdb_sstfilewriter_put(writer, key, op->klen,
									  key + op->klen, op->vlen, &err);
	}
	if (err == NULL)
		rocksdb_sstfilewriter_finish(writer, &err);
	rocksdb_sstfilewriter_destroy(writer);
	rocksdb_envoptions_destroy(env);
	rocksdb_options_destroy(opts);

	if (err == NULL)
	{
		/*
		 * Moved: the file is linked into the database and its name here
		 * removed.  A memtable whose keys overlap the file's is flushed
		 * first, and the file's operations come after everything written
		 * before (it takes the next sequence number).
		 */
		iopts = rocksdb_ingestexternalfileoptions_create();
		rocksdb_ingestexternalfileoptions_set_move_files(iopts, 1);
		paths[0] = path;
		rocksdb_ingest_external_file_cf(store->db, cf, paths, 1, iopts, &err);
		rocksdb_ingestexternalfileoptions_destroy(iopts);
	}
	thread_signals_restore(&saved);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		(void) unlink(path);
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not ingest a batch of %u operations into state database \"%s\": %s",
						to - from, store->dir, msg)));
	}
	pfree(path);
}

/*
 * Write a large batch that holds staged operations only as table files, one
 * per family, ingested into the database: what the batch would otherwise
 * cost twice, inserted into a memtable's skip list (about 400 ns an
 * operation at a million keys) and then written out by the memtable's
 * flush, it costs once, and the checkpoint that waits on it waits for no
 * flush of it.  A checkpoint's write-back of a cache with many keys is
 * such a batch (state_batch_write_for_snapshot).  The families' files are
 * ingested one after the other, not atomically: a worker whose write
 * failed starts again from its last checkpoint's snapshot.
 */
static void
ingest_staged(StateStore *store, StateBatch *batch)
{
	SortOp	   *ops = sort_ops(batch);
	uint32		from = 0;

	for (uint32 i = 1; i <= batch->nops; i++)
	{
		if (i == batch->nops || ops[i].op->cf != ops[from].op->cf)
		{
			ingest_family(store->root, ops, from, i);
			from = i;
		}
	}
	pfree(ops);
	batch->used = 0;
	batch->nops = 0;
}

/* After a write: empty, and large buffers given back. */
static void
batch_reset(StateBatch *batch)
{
	batch->used = 0;
	batch->nops = 0;
	if (batch->size > STATE_BATCH_KEEP_BYTES)
	{
		pfree(batch->ops);
		pfree(batch->offsets);
		batch->ops = NULL;
		batch->offsets = NULL;
		batch->size = 0;
		batch->maxops = 0;

		/* RocksDB's batch keeps its buffer's capacity when cleared */
		rocksdb_writebatch_destroy(batch->wb);
		batch->wb = rocksdb_writebatch_create();
	}
	else
		rocksdb_writebatch_clear(batch->wb);
}

void
state_batch_put(StateBatch *batch, const char *key, size_t klen,
				const char *val, size_t vlen)
{
	stage_op(batch, NULL, false, key, klen, val, vlen);
}

void
state_batch_delete(StateBatch *batch, const char *key, size_t klen)
{
	stage_op(batch, NULL, true, key, klen, NULL, 0);
}

void
state_batch_put_family(StateBatch *batch, StateStore *family,
					   const char *key, size_t klen,
					   const char *val, size_t vlen)
{
	/* the main family's handle stages as state_batch_put does: one order */
	stage_op(batch, family->root == family ? NULL : family->cf, false,
			 key, klen, val, vlen);
}

/*
 * One range tombstone: far cheaper than a tombstone per key where a range
 * of keys goes at once (fired timers), and reads of the range skip it.
 */
void
state_batch_delete_range(StateBatch *batch, StateStore *family,
						 const char *lower, size_t llen,
						 const char *upper, size_t ulen)
{
	/* what was staged before it applies before it */
	sort_staged(batch);
	rocksdb_writebatch_delete_range_cf(batch->wb, family->cf, lower, llen, upper, ulen);
}

/*
 * Apply the batch atomically (as table files, one family after the other:
 * see ingest_staged), then clear it for reuse (also on failure); 'ingest':
 * a large batch may go as table files.
 */
static void
batch_write(StateStore *store, StateBatch *batch, bool ingest)
{
	sigset_t	saved;
	char	   *err = NULL;

	check_writable(store);
	if (ingest && batch->nops >= STATE_INGEST_MIN_OPS &&
		rocksdb_writebatch_count(batch->wb) == 0)
	{
		/* what the flush an ingestion may force empties counts */
		note_memtables(store);
		PG_TRY();
		{
			ingest_staged(store, batch);
		}
		PG_FINALLY();
		{
			batch_reset(batch);
		}
		PG_END_TRY();
		return;
	}
	sort_staged(batch);

	/*
	 * A large batch can fill the memtable and schedule a flush; the pool's
	 * threads already exist, but masking costs nothing at batch granularity.
	 */
	thread_signals_block(&saved);
	rocksdb_write(store->db, store->wopts, batch->wb, &err);
	thread_signals_restore(&saved);

	batch_reset(batch);
	note_memtables(store);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not write batch to state database \"%s\": %s",
						store->dir, msg)));
	}
}

void
state_batch_write(StateStore *store, StateBatch *batch)
{
	batch_write(store, batch, false);
}

void
state_batch_write_for_snapshot(StateStore *store, StateBatch *batch)
{
	batch_write(store, batch, true);
}

void
state_batch_destroy(StateBatch *batch)
{
	if (batch == NULL)
		return;
	if (batch->wb != NULL)
		rocksdb_writebatch_destroy(batch->wb);
	if (batch->ops != NULL)
		pfree(batch->ops);
	if (batch->offsets != NULL)
		pfree(batch->offsets);
	pfree(batch);
}


/* ---------- iterators ---------- */

StateIter *
state_iter_create(StateStore *store,
				  const char *lower, size_t llen,
				  const char *upper, size_t ulen)
{
	StateIter  *it;

	if (unlikely(store == NULL || store->db == NULL))
		elog(ERROR, "state database is not open");

	/*
	 * owned by the database's root handle (see file header), so state_close
	 * can clean up
	 */
	it = MemoryContextAllocZero(TopMemoryContext, sizeof(StateIter));
	it->store = store->root;
	if (lower != NULL && llen > 0)
	{
		it->lower = MemoryContextAlloc(TopMemoryContext, llen);
		memcpy(it->lower, lower, llen);
		it->llen = llen;
	}
	if (upper != NULL)
	{
		/* RocksDB keeps a pointer to the bound: it must outlive the iterator */
		it->upper = MemoryContextAlloc(TopMemoryContext, Max(ulen, 1));
		memcpy(it->upper, upper, ulen);
		it->ulen = ulen;
	}

	it->ropts = rocksdb_readoptions_create();
	if (it->upper != NULL)
		rocksdb_readoptions_set_iterate_upper_bound(it->ropts,
													it->upper, it->ulen);
	it->iter = rocksdb_create_iterator_cf(store->db, it->ropts, store->cf);
	dlist_push_tail(&store->root->iters, &it->node);

	return it;
}

/* An iterator that is not valid: raise its error, if it is not just at the end. */
static void
iter_check(StateIter *it)
{
	char	   *err = NULL;

	rocksdb_iter_get_error(it->iter, &err);
	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not iterate over state database \"%s\": %s",
						it->store ? it->store->dir : "?", msg)));
	}
}

/*
 * Return the next key/value.  The first call positions the iterator on the
 * first key >= lower; later calls advance.  Positioning lazily, on the call
 * that returns the entry, keeps the returned pointers valid until the next
 * call, as RocksDB's key/value pointers die when the iterator moves.
 */
bool
state_iter_next(StateIter *it,
				const char **key, size_t *klen,
				const char **val, size_t *vlen)
{
	if (it->iter == NULL)
		return false;

	if (!it->started)
	{
		it->started = true;
		if (it->lower != NULL)
			rocksdb_iter_seek(it->iter, it->lower, it->llen);
		else
			rocksdb_iter_seek_to_first(it->iter);
	}
	else if (rocksdb_iter_valid(it->iter))
		rocksdb_iter_next(it->iter);

	if (rocksdb_iter_valid(it->iter))
	{
		*key = rocksdb_iter_key(it->iter, klen);
		*val = rocksdb_iter_value(it->iter, vlen);
		return true;
	}

	/* Invalid means either the end or an error: tell them apart. */
	iter_check(it);
	return false;
}

/*
 * The last key of the iterator's range (lower <= key < upper), or false if
 * the range is empty; the iterator is spent after it.
 */
bool
state_iter_last(StateIter *it,
				const char **key, size_t *klen,
				const char **val, size_t *vlen)
{
	if (it->iter == NULL)
		return false;
	it->started = true;
	/* (RocksDB's SeekToLast stops below the iterate_upper_bound) */
	rocksdb_iter_seek_to_last(it->iter);
	if (rocksdb_iter_valid(it->iter))
	{
		int			c;

		*key = rocksdb_iter_key(it->iter, klen);
		*val = rocksdb_iter_value(it->iter, vlen);
		if (it->lower == NULL)
			return true;
		c = memcmp(*key, it->lower, Min(*klen, it->llen));
		/* below the range: a lesser key, or a prefix of lower */
		return c > 0 || (c == 0 && *klen >= it->llen);
	}
	iter_check(it);
	return false;
}

/* Free the RocksDB side of an iterator and unlink it from its store. */
static void
iter_release(StateIter *it)
{
	if (it->iter != NULL)
		rocksdb_iter_destroy(it->iter);
	if (it->ropts != NULL)
		rocksdb_readoptions_destroy(it->ropts);
	it->iter = NULL;
	it->ropts = NULL;
	if (it->lower != NULL)
		pfree(it->lower);
	if (it->upper != NULL)
		pfree(it->upper);
	it->lower = it->upper = NULL;
	if (it->store != NULL)
		dlist_delete(&it->node);
	it->store = NULL;
}

void
state_iter_destroy(StateIter *it)
{
	if (it == NULL)
		return;
	iter_release(it);
	pfree(it);
}

void
state_iter_destroy_all(StateStore *store)
{
	dlist_mutable_iter miter;

	if (store == NULL)
		return;
	dlist_foreach_modify(miter, &store->root->iters)
	{
		StateIter  *it = dlist_container(StateIter, node, miter.cur);

		iter_release(it);
		pfree(it);
	}
}


/* ---------- checkpoints ---------- */

/*
 * Does a snapshot's file count in its size?  Not RocksDB's OPTIONS files: a
 * record of the settings this module chose, the same in every snapshot of a
 * version and some 4 kB longer with every column family, which RocksDB does
 * not need to open the snapshot.  The pipeline's state is the rest (tables,
 * MANIFEST, WAL).
 */
static bool
counts_as_state(const char *name)
{
	return strncmp(name, "OPTIONS", 7) != 0;
}

/*
 * Sum the sizes of the regular files directly in 'dir' (a RocksDB database
 * or snapshot is a flat directory) that count as state.  With only_unshared,
 * count only files with a single link, i.e. not shared with another snapshot
 * or the live database.
 */
static uint64
dir_size(const char *dir, bool only_unshared)
{
	DIR		   *d;
	struct dirent *de;
	uint64		total = 0;
	char		path[MAXPGPATH];

	d = AllocateDir(dir);
	while ((de = ReadDir(d, dir)) != NULL)
	{
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			!counts_as_state(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) != 0)
		{
			/* RocksDB may delete files of a live database concurrently */
			if (errno == ENOENT)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat file \"%s\": %m", path)));
		}
		if (!S_ISREG(st.st_mode))
			continue;
		if (only_unshared && st.st_nlink != 1)
			continue;
		total += (uint64) st.st_size;
	}
	FreeDir(d);
	return total;
}

/*
 * Write a snapshot to 'chk_dir'.  RocksDB refuses an existing target; one can
 * only exist if an earlier attempt at the same checkpoint crashed or failed
 * after RocksDB created it (callers never reuse a completed checkpoint's
 * directory), so it is removed, as is RocksDB's "<chk_dir>.tmp" staging
 * directory.  The memtable is flushed first (log_size_for_flush = 0), so the
 * snapshot is mostly SST files hard-linked from the database and shares them
 * with the previous snapshot.
 */
uint64
state_checkpoint(StateStore *store, const char *chk_dir)
{
	rocksdb_checkpoint_t *chk;
	sigset_t	saved;
	char	   *err = NULL;
	char	   *target;
	char		staging[MAXPGPATH];
	uint64		size;

	check_writable(store);

	/* RocksDB derives "<dir>.tmp" textually: no trailing slash */
	target = pstrdup(chk_dir);
	canonicalize_path(target);

	state_remove_dir(target);
	snprintf(staging, sizeof(staging), "%s.tmp", target);
	state_remove_dir(staging);
	make_parent_dir(target);

	/* what the flush below empties counts in memtable_bytes */
	note_memtables(store);

	/*
	 * The checkpoint flushes the memtables first (log_size_for_flush 0:
	 * always), on the pool threads: every family in one flush job
	 * (atomic_flush, see open_primary).
	 */
	thread_signals_block(&saved);
	chk = rocksdb_checkpoint_object_create(store->db, &err);
	if (err == NULL)
	{
		rocksdb_checkpoint_create(chk, target, 0, &err);
		rocksdb_checkpoint_object_destroy(chk);
	}
	thread_signals_restore(&saved);

	if (err != NULL)
	{
		char		msg[STATE_ERRMSG_LEN];

		take_error(err, msg, sizeof(msg));
		ereport(ERROR,
				(errcode(rocks_errcode(msg)),
				 errmsg("could not create checkpoint \"%s\" of state database \"%s\": %s",
						target, store->dir, msg)));
	}

	size = dir_size(target, false);
	pfree(target);
	return size;
}

/*
 * Bytes of 'chk_dir' not shared with any other snapshot or the live database
 * (files with one link).  Measured right after state_checkpoint, this is the
 * checkpoint's incremental size.  Later it grows as the files it shares are
 * compacted away in the database and older snapshots are deleted.
 */
uint64
state_checkpoint_new_bytes(const char *chk_dir)
{
	return dir_size(chk_dir, true);
}


/*
 * Bytes of 'chk_dir' not present in snapshot 'prev_chk_dir' (files compared
 * by inode, so a hard-linked SST counts as present), i.e. what checkpoint
 * 'chk_dir' added on top of 'prev_chk_dir'.  With prev_chk_dir NULL or
 * missing, the whole size.
 */
uint64
state_checkpoint_incremental_bytes(const char *chk_dir, const char *prev_chk_dir)
{
	DIR		   *d;
	struct dirent *de;
	uint64		total = 0;
	char		path[MAXPGPATH];
	struct stat *prev = NULL;
	int			nprev = 0;
	int			maxprev = 0;

	/* collect the previous snapshot's inodes (a few dozen files at most) */
	if (prev_chk_dir != NULL && path_exists(prev_chk_dir))
	{
		maxprev = 64;
		prev = palloc(maxprev * sizeof(struct stat));
		d = AllocateDir(prev_chk_dir);
		while ((de = ReadDir(d, prev_chk_dir)) != NULL)
		{
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", prev_chk_dir, de->d_name);
			if (nprev == maxprev)
			{
				maxprev *= 2;
				prev = repalloc(prev, maxprev * sizeof(struct stat));
			}
			if (lstat(path, &prev[nprev]) != 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not stat file \"%s\": %m", path)));
			if (S_ISREG(prev[nprev].st_mode))
				nprev++;
		}
		FreeDir(d);
	}

	d = AllocateDir(chk_dir);
	while ((de = ReadDir(d, chk_dir)) != NULL)
	{
		struct stat st;
		bool		shared = false;
		int			i;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			!counts_as_state(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", chk_dir, de->d_name);
		if (lstat(path, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat file \"%s\": %m", path)));
		if (!S_ISREG(st.st_mode))
			continue;
		for (i = 0; i < nprev && !shared; i++)
			shared = (prev[i].st_ino == st.st_ino && prev[i].st_dev == st.st_dev);
		if (!shared)
			total += (uint64) st.st_size;
	}
	FreeDir(d);

	if (prev != NULL)
		pfree(prev);
	return total;
}


/* ---------- restore and removal ---------- */

/* Copy one file, fsync'ing the copy.  'to' must not exist. */
static void
copy_file_durably(const char *from, const char *to)
{
	int			src;
	int			dst;
	char	   *buf;

	src = OpenTransientFile(from, O_RDONLY | PG_BINARY);
	if (src < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", from)));
	dst = OpenTransientFile(to, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY);
	if (dst < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", to)));

	buf = palloc(STATE_COPY_BUFSIZE);
	for (;;)
	{
		ssize_t		nread = read(src, buf, STATE_COPY_BUFSIZE);
		ssize_t		off = 0;

		if (nread < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", from)));
		}
		if (nread == 0)
			break;
		while (off < nread)
		{
			ssize_t		nwritten;

			errno = 0;
			nwritten = write(dst, buf + off, nread - off);
			if (nwritten <= 0)
			{
				if (errno == EINTR)
					continue;
				/* a short write without errno means out of space */
				if (errno == 0)
					errno = ENOSPC;
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not write file \"%s\": %m", to)));
			}
			off += nwritten;
		}
	}
	pfree(buf);

	if (pg_fsync(dst) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", to)));
	if (CloseTransientFile(dst) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", to)));
	CloseTransientFile(src);
}

/* Is this one of RocksDB's immutable data files, safe to share by link? */
static bool
is_immutable_file(const char *name)
{
	size_t		len = strlen(name);

	return (len > 4 && strcmp(name + len - 4, ".sst") == 0) ||
		(len > 5 && strcmp(name + len - 5, ".blob") == 0);
}

/*
 * Replace 'dir' by a copy of snapshot 'chk_dir'.  SST (and blob) files are
 * never modified in place, so they are hard-linked: the restored database may
 * later delete its link after a compaction, and the snapshot keeps its own.
 * MANIFEST, CURRENT, OPTIONS and WAL files are appended to or rewritten by
 * the live database, so they are copied.  The copy is assembled in
 * "<dir>.restoring" and renamed into place, so 'dir' never holds a partial
 * copy; a crash in between leaves 'dir' missing or old, and recovery simply
 * restores again.
 */
void
state_restore(const char *dir, const char *chk_dir)
{
	char	   *target;
	char		staging[MAXPGPATH];
	char		from[MAXPGPATH];
	char		to[MAXPGPATH];
	char	   *parent;
	DIR		   *d;
	struct dirent *de;

	target = pstrdup(dir);
	canonicalize_path(target);

	if (!path_exists(chk_dir))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("state checkpoint directory \"%s\" does not exist",
						chk_dir)));

	snprintf(staging, sizeof(staging), "%s.restoring", target);
	state_remove_dir(staging);
	make_dir_path(staging);

	d = AllocateDir(chk_dir);
	while ((de = ReadDir(d, chk_dir)) != NULL)
	{
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(from, sizeof(from), "%s/%s", chk_dir, de->d_name);
		snprintf(to, sizeof(to), "%s/%s", staging, de->d_name);
		if (lstat(from, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat file \"%s\": %m", from)));
		if (!S_ISREG(st.st_mode))
			continue;
		/* a LOCK file belongs to whoever had a database open, never copy */
		if (strcmp(de->d_name, "LOCK") == 0)
			continue;

		/* link where possible (other filesystem, no links: copy) */
		if (is_immutable_file(de->d_name) && link(from, to) == 0)
			continue;
		copy_file_durably(from, to);
	}
	FreeDir(d);
	fsync_fname_ext(staging, true, false, ERROR);

	state_remove_dir(target);
	if (rename(staging, target) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rename directory \"%s\" to \"%s\": %m",
						staging, target)));

	/* make the rename durable */
	parent = pstrdup(target);
	get_parent_directory(parent);
	if (parent[0] != '\0')
		fsync_fname_ext(parent, true, false, ERROR);
	pfree(parent);
	pfree(target);
}

void
state_remove_dir(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) != 0)
	{
		if (errno == ENOENT)
			return;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat \"%s\": %m", dir)));
	}

	/* not a directory (a stray file or symlink): just unlink it */
	if (!S_ISDIR(st.st_mode))
	{
		if (unlink(dir) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", dir)));
		return;
	}

	/* rmtree reports each failure as a WARNING and returns false */
	if (!rmtree(dir, true))
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("could not remove directory \"%s\"", dir),
				 errdetail("See the preceding warnings for the files that could not be removed.")));
}

char *
state_pipeline_dir(Oid dboid, int32 pipeline_id)
{
	return psprintf("%s/streamflink/%u/%d", DataDir, dboid, pipeline_id);
}
