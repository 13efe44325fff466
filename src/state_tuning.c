/*-------------------------------------------------------------------------
 *
 * state_tuning.c
 *	  RocksDB tuning of a pipeline's state (see state_tuning.h).
 *
 * The profiles follow RocksDB's tuning guide and Flink's PredefinedOptions,
 * scaled to the memory one worker may use (its share S of
 * streamflink.state_memory):
 *
 *	 default	 block cache S/2; one memtable of S/2 (two while one flushes);
 *				 bloom filters of 10 bits per key (most lookups of a new
 *				 window miss: the filter answers them without a read); lz4;
 *				 leveled compaction; 2 background jobs.
 *	 write_heavy many keys written, few read back: memory goes to memtables
 *				 (three of S/4 in flight, so a flush never stalls writes),
 *				 cache S/4, 4 background jobs so compaction keeps up,
 *				 dynamic level sizes (less space and write amplification).
 *	 read_heavy	 few keys, updated over and over: cache 3S/4 with index and
 *				 filter blocks in it, memtables of S/8, 4 kB blocks (a point
 *				 read fetches less).
 *	 large_state state far beyond memory: index and filter blocks kept in
 *				 the block cache (else they grow with the state outside any
 *				 budget), partitioned so that a lookup loads only the parts
 *				 it needs (state.c), 16 kB blocks (a smaller index), dynamic
 *				 level sizes, 64 MB files and a 256 MB level base (fewer
 *				 files to keep open), zstd on the last level (most of the
 *				 data), 4 jobs.
 *
 * What bounds memory: a worker's block cache (LRU, not strict: blocks
 * pinned by a read in progress may exceed it briefly) and its memtables
 * (db_write_buffer_size = max(S - cache, write_buffer_size): RocksDB
 * flushes when the memtables reach it; the memtable being flushed comes on
 * top).  Index and filter blocks count in the cache only where
 * cache_index_and_filter_blocks is on (read_heavy, large_state); otherwise
 * they live in the table readers (estimate-table-readers-mem).  RocksDB's
 * C API of 7.8 has no WriteBufferManager charged to the cache, and every
 * worker is a process of its own, so "one budget per server" is a share per
 * worker: ten running pipelines take at most ten shares, and max_workers
 * shares are the budget.  A parallel pipeline's tasks split its share, at
 * least 2MB each.  Instances that are no worker's own (a backend's for
 * run_operator, _replay, live() or a savepoint's rescale, a snapshot a
 * restore reads) are small and outside it (state_tuning_auxiliary).
 *
 * Tenants (owners that are not superusers): block_cache_size plus the
 * memtables that may wait for their flush (tenant_memory) within S, at most
 * 1024 open files (never -1), at most 4 background jobs and 8 memtables.  A
 * superuser's pipeline may go beyond (documented as outside the budget).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include <rocksdb/c.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "slot.h"
#include "state_tuning.h"

/* streamflink.state_profile */
static int	server_profile = STATE_PROFILE_DEFAULT;

/* streamflink.state_options */
static char *server_options = NULL;

/* streamflink.state_memory, in MB */
static int	state_memory_mb = 1024;

static const struct config_enum_entry profile_options[] = {
	{"default", STATE_PROFILE_DEFAULT, false},
	{"write_heavy", STATE_PROFILE_WRITE_HEAVY, false},
	{"read_heavy", STATE_PROFILE_READ_HEAVY, false},
	{"large_state", STATE_PROFILE_LARGE_STATE, false},
	{NULL, 0, false}
};

#define MB					((int64) 1024 * 1024)
#define GB					(MB * 1024)

/* Bounds for tenants (see the file header). */
#define TENANT_MAX_OPEN_FILES		1024
#define TENANT_MAX_BACKGROUND_JOBS	4
#define TENANT_MAX_WRITE_BUFFERS	8

/* A parallel pipeline's task's least share: 1MB of cache, 1MB of memtable. */
#define STATE_MIN_TASK_SHARE		(2 * MB)

/*
 * The memory of an instance outside every worker's share: a backend's
 * (run_operator, _replay, a savepoint's rescale) or a snapshot a restore
 * reads.
 */
#define STATE_AUX_MEMORY			(16 * MB)

#define OPTION_HINT "State options are name=value pairs separated by semicolons: " \
	"write_buffer_size, max_write_buffer_number, block_cache_size, block_size, " \
	"bloom_filter_bits, compaction_style (level, universal), max_background_jobs, " \
	"max_open_files, compression and bottommost_compression (none, snappy, lz4, lz4hc, zlib, zstd), " \
	"target_file_size_base, max_bytes_for_level_base, level_compaction_dynamic_level_bytes, " \
	"cache_index_and_filter_blocks; sizes take units (64MB)."

/* An error found while parsing, reported by the caller (or a GUC hook). */
typedef struct TuningError
{
	int			sqlstate;
	char	   *msg;
	char	   *hint;
} TuningError;

static bool
fail(TuningError *e, int sqlstate, char *msg, char *hint)
{
	e->sqlstate = sqlstate;
	e->msg = msg;
	e->hint = hint;
	return false;
}

static bool state_options_check_hook(char **newval, void **extra, GucSource source);

/*
 * streamflink.state_statistics.  Off by default: RocksDB's statistics cost
 * 12-16% of a worker's CPU with 100k keys (test/bench/cep_bench.sh, worker
 * CPU seconds with and without), which a pipeline should not pay for two
 * columns of streamflink.state_metrics (without them, the block cache's
 * hits and misses are the worker's own reads', state.c).
 */
bool		state_statistics = false;

void
state_define_settings(void)
{
	DefineCustomEnumVariable("streamflink.state_profile",
							 "RocksDB profile of pipelines that name none.",
							 "default, write_heavy, read_heavy or large_state; taken at a worker's start.",
							 &server_profile, STATE_PROFILE_DEFAULT, profile_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("streamflink.state_options",
							   "RocksDB options applied to every pipeline, before its own.",
							   "name=value pairs separated by semicolons; taken at a worker's start.",
							   &server_options, "",
							   PGC_SIGHUP, 0, state_options_check_hook, NULL, NULL);
	DefineCustomIntVariable("streamflink.state_memory",
							"Memory budget of all pipelines' state (block caches and memtables).",
							"Each worker gets this divided by streamflink.max_workers (at least 4MB), split among a parallel pipeline's tasks; taken at a worker's start.",
							&state_memory_mb, 1024, 16, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomBoolVariable("streamflink.state_statistics",
							 "Collect RocksDB statistics for streamflink.state_metrics.",
							 "The block cache hits and misses of every thread (not just the worker's reads); "
							 "they cost a worker about 12-16% CPU with many keys.  Taken at a worker's start.",
							 &state_statistics, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* The tasks of this process's pipeline (1 but in a parallel pipeline's). */
static int	share_tasks = 1;

void
state_memory_set_tasks(int ntasks)
{
	share_tasks = Max(ntasks, 1);
}

/*
 * A worker slot's share of the budget.  At least 4MB: below that a budget
 * is not followed (a DBA's streamflink.state_memory under 4MB for each
 * worker slot).
 */
static int64
slot_share(void)
{
	int			workers = slot_count();

	/* not preloaded (no slots): the default number of workers */
	if (workers <= 0)
		workers = 16;
	return Max((int64) state_memory_mb * MB / workers, 4 * MB);
}

/*
 * A parallel pipeline takes one worker slot and splits its share among its
 * tasks, each a process with a RocksDB of its own.  A task's share is at
 * least STATE_MIN_TASK_SHARE, a tenant's smallest block cache and memtable:
 * a tenant's pipeline whose tasks would get less is refused at its
 * creation (state_tuning_resolve); after that, only a DBA's lowering of the
 * budget or a rescale can make the tasks take more than the slot.
 */
static int64
task_share(int ntasks)
{
	return Max(slot_share() / Max(ntasks, 1), STATE_MIN_TASK_SHARE);
}

int64
state_memory_share(void)
{
	return task_share(share_tasks);
}

/* The built-in settings of a profile for a worker's share 'share'. */
static void
profile_defaults(StateProfile profile, int64 share, StateTuning *t)
{
	memset(t, 0, sizeof(*t));
	t->profile = profile;
	t->block_cache_size = share / 2;
	t->write_buffer_size = share / 2;
	t->max_write_buffer_number = 2;
	t->block_size = 4 * 1024;
	t->bloom_filter_bits = 10.0;
	t->compaction_style = rocksdb_level_compaction;
	t->max_background_jobs = 2;
	t->max_open_files = 512;
	t->compression = rocksdb_lz4_compression;
	t->bottommost_compression = rocksdb_lz4_compression;
	t->target_file_size_base = 64 * MB;	/* RocksDB's default */
	t->max_bytes_for_level_base = 256 * MB; /* RocksDB's default */
	t->dynamic_level_bytes = false;
	t->cache_index_and_filter_blocks = false;

	switch (profile)
	{
		case STATE_PROFILE_DEFAULT:
			break;
		case STATE_PROFILE_WRITE_HEAVY:
			t->block_cache_size = share / 4;
			t->write_buffer_size = share / 4;
			t->max_write_buffer_number = 4;
			t->max_background_jobs = 4;
			t->dynamic_level_bytes = true;
			break;
		case STATE_PROFILE_READ_HEAVY:
			t->block_cache_size = share * 3 / 4;
			t->write_buffer_size = share / 8;
			t->cache_index_and_filter_blocks = true;
			break;
		case STATE_PROFILE_LARGE_STATE:
			t->write_buffer_size = share / 4;
			t->max_write_buffer_number = 3;
			t->block_size = 16 * 1024;
			t->max_background_jobs = 4;
			t->max_open_files = 1024;
			t->dynamic_level_bytes = true;
			t->cache_index_and_filter_blocks = true;
			t->bottommost_compression = rocksdb_zstd_compression;
			break;
	}
}

/* ---------- parsing values ---------- */

static bool
parse_size(const char *name, const char *value, int64 min, int64 max,
		   int64 *out, TuningError *e)
{
	double		v;
	const char *unit_hint = NULL;

	if (!parse_real(value, &v, GUC_UNIT_BYTE, &unit_hint) || v != floor(v))
		return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
					psprintf("invalid size for state option %s: \"%s\"", name, value),
					pstrdup(unit_hint ? unit_hint : "Give a whole number of bytes, or a size with a unit: 64MB, 1GB."));
	if (v < (double) min || v > (double) max)
		return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
					psprintf("state option %s=%s is out of range", name, value),
					psprintf("%s must be between " INT64_FORMAT " kB and " INT64_FORMAT " kB.",
							 name, min / 1024, max / 1024));
	*out = (int64) v;
	return true;
}

/*
 * A decimal integer, with an optional sign: not parse_int, which also takes
 * 0x10, 010 as octal 8, and 2.5 rounded.
 */
static bool
parse_decimal(const char *name, const char *value, int *out, TuningError *e)
{
	const char *p = value;
	char	   *end;
	long		v;

	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char) *p))
		goto invalid;
	while (isdigit((unsigned char) *p))
		p++;
	if (*p != '\0')
		goto invalid;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
		goto invalid;
	*out = (int) v;
	return true;

invalid:
	return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
				psprintf("invalid integer for state option %s: \"%s\"", name, value),
				pstrdup(OPTION_HINT));
}

/*
 * v between min and max; between max and tenant_max (below max only for a
 * tenant) it is a privilege error, saying why.
 */
static bool
integer_in_bounds(const char *name, int v, int min, int max,
				  int tenant_max, bool superuser, int *out, TuningError *e)
{
	if (v < min || v > max)
		return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
					psprintf("state option %s=%d is out of range", name, v),
					psprintf("%s must be between %d and %d.", name, min, max));
	if (!superuser && v > tenant_max)
		return fail(e, ERRCODE_INSUFFICIENT_PRIVILEGE,
					psprintf("state option %s=%d needs a superuser", name, v),
					psprintf("A pipeline whose owner is not a superuser may use %s up to %d.",
							 name, tenant_max));
	*out = v;
	return true;
}

/* A decimal integer within integer_in_bounds' bounds. */
static bool
parse_integer(const char *name, const char *value, int min, int max,
			  int tenant_max, bool superuser, int *out, TuningError *e)
{
	int			v;

	return parse_decimal(name, value, &v, e) &&
		integer_in_bounds(name, v, min, max, tenant_max, superuser, out, e);
}

static bool
parse_compression(const char *name, const char *value, int *out, TuningError *e)
{
	static const struct
	{
		const char *name;
		int			type;
	}			types[] = {
		{"none", rocksdb_no_compression},
		{"snappy", rocksdb_snappy_compression},
		{"lz4", rocksdb_lz4_compression},
		{"lz4hc", rocksdb_lz4hc_compression},
		{"zlib", rocksdb_zlib_compression},
		{"zstd", rocksdb_zstd_compression},
	};

	for (int i = 0; i < lengthof(types); i++)
		if (pg_strcasecmp(value, types[i].name) == 0)
		{
			*out = types[i].type;
			return true;
		}
	return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
				psprintf("unknown compression for state option %s: \"%s\"", name, value),
				pstrdup("Use none, snappy, lz4, lz4hc, zlib or zstd."));
}

static bool
parse_boolean(const char *name, const char *value, bool *out, TuningError *e)
{
	if (!parse_bool(value, out))
		return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
					psprintf("invalid boolean for state option %s: \"%s\"", name, value),
					pstrdup("Use on or off."));
	return true;
}

/*
 * Apply one name=value.  The tenant bound on memory concerns two options:
 * the caller checks it once every option is in.
 */
static bool
apply_option(StateTuning *t, const char *name, const char *value,
			 bool superuser, TuningError *e)
{
	if (strcmp(name, "write_buffer_size") == 0)
		return parse_size(name, value, 1 * MB, 64 * GB, &t->write_buffer_size, e);
	if (strcmp(name, "block_cache_size") == 0)
		return parse_size(name, value, 1 * MB, 1024 * GB, &t->block_cache_size, e);
	if (strcmp(name, "block_size") == 0)
		return parse_size(name, value, 1024, 1 * MB, &t->block_size, e);
	if (strcmp(name, "target_file_size_base") == 0)
		return parse_size(name, value, 1 * MB, 4 * GB, &t->target_file_size_base, e);
	if (strcmp(name, "max_bytes_for_level_base") == 0)
		return parse_size(name, value, 1 * MB, 64 * GB, &t->max_bytes_for_level_base, e);
	if (strcmp(name, "max_write_buffer_number") == 0)
		return parse_integer(name, value, 2, 32, TENANT_MAX_WRITE_BUFFERS, superuser,
							 &t->max_write_buffer_number, e);
	if (strcmp(name, "max_background_jobs") == 0)
		return parse_integer(name, value, 1, 64, TENANT_MAX_BACKGROUND_JOBS, superuser,
							 &t->max_background_jobs, e);
	if (strcmp(name, "max_open_files") == 0)
	{
		int			v;

		if (!parse_decimal(name, value, &v, e))
			return false;
		if (v == -1)
		{
			if (!superuser)
				return fail(e, ERRCODE_INSUFFICIENT_PRIVILEGE,
							pstrdup("state option max_open_files=-1 (no limit) needs a superuser"),
							psprintf("Use a limit between 16 and %d.",
									 TENANT_MAX_OPEN_FILES));
			t->max_open_files = -1;
			return true;
		}
		return integer_in_bounds(name, v, 16, 1000000, TENANT_MAX_OPEN_FILES, superuser,
								 &t->max_open_files, e);
	}
	if (strcmp(name, "bloom_filter_bits") == 0)
	{
		double		v;

		if (!parse_real(value, &v, 0, NULL) || v < 0 || v > 30)
			return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
						psprintf("invalid value for state option bloom_filter_bits: \"%s\"", value),
						pstrdup("Bits per key between 0 (no bloom filter) and 30; 10 gives about 1% false positives."));
		t->bloom_filter_bits = v;
		return true;
	}
	if (strcmp(name, "compaction_style") == 0)
	{
		if (pg_strcasecmp(value, "level") == 0)
			t->compaction_style = rocksdb_level_compaction;
		else if (pg_strcasecmp(value, "universal") == 0)
			t->compaction_style = rocksdb_universal_compaction;
		else
			return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
						psprintf("unknown compaction_style: \"%s\"", value),
						pg_strcasecmp(value, "fifo") == 0 ?
						pstrdup("FIFO compaction deletes the oldest files, which would lose state: use level or universal.") :
						pstrdup("Use level or universal."));
		return true;
	}
	if (strcmp(name, "compression") == 0)
		return parse_compression(name, value, &t->compression, e);
	if (strcmp(name, "bottommost_compression") == 0)
		return parse_compression(name, value, &t->bottommost_compression, e);
	if (strcmp(name, "level_compaction_dynamic_level_bytes") == 0)
		return parse_boolean(name, value, &t->dynamic_level_bytes, e);
	if (strcmp(name, "cache_index_and_filter_blocks") == 0)
		return parse_boolean(name, value, &t->cache_index_and_filter_blocks, e);

	return fail(e, ERRCODE_INVALID_PARAMETER_VALUE,
				psprintf("unknown state option \"%s\"", name),
				pstrdup(OPTION_HINT));
}

/* Parse "name=value;..." onto *t.  'what' names the string in messages. */
static bool
apply_options(StateTuning *t, const char *options, bool superuser,
			  const char *what, TuningError *e)
{
	char	   *copy;
	char	   *item;
	char	   *next;
	List	   *seen = NIL;
	ListCell   *lc;

	if (options == NULL)
		return true;
	copy = pstrdup(options);
	for (item = copy; item != NULL; item = next)
	{
		char	   *eq;
		char	   *name;
		char	   *value;

		next = strchr(item, ';');
		if (next)
			*next++ = '\0';
		name = item;
		while (isspace((unsigned char) *name))
			name++;
		if (*name == '\0')
			continue;			/* empty item, e.g. after a trailing ';' */
		eq = strchr(name, '=');
		if (eq == NULL || eq == name)
			return fail(e, ERRCODE_SYNTAX_ERROR,
						psprintf("invalid %s: \"%s\" is not name=value", what, name),
						pstrdup(OPTION_HINT));
		*eq = '\0';
		value = eq + 1;
		/* trim both (the name has a first character that is no blank) */
		for (char *p = eq - 1; p > name && isspace((unsigned char) *p); p--)
			*p = '\0';
		while (isspace((unsigned char) *value))
			value++;
		for (size_t len = strlen(value); len > 0 && isspace((unsigned char) value[len - 1]); len--)
			value[len - 1] = '\0';
		for (char *p = name; *p; p++)
			*p = pg_tolower((unsigned char) *p);
		if (*value == '\0')
			return fail(e, ERRCODE_SYNTAX_ERROR,
						psprintf("invalid %s: state option %s has no value", what, name),
						pstrdup(OPTION_HINT));
		foreach(lc, seen)
		{
			if (strcmp((char *) lfirst(lc), name) == 0)
				return fail(e, ERRCODE_SYNTAX_ERROR,
							psprintf("state option %s is given twice in %s", name, what),
							pstrdup("Give each option once."));
		}
		seen = lappend(seen, name);
		if (!apply_option(t, name, value, superuser, e))
			return false;
	}
	return true;
}

static bool
state_options_check_hook(char **newval, void **extra, GucSource source)
{
	StateTuning t;
	TuningError e;

	/* The server's own setting: a superuser's (every streamflink.* is). */
	profile_defaults(STATE_PROFILE_DEFAULT, 64 * MB, &t);
	if (!apply_options(&t, *newval, true, "streamflink.state_options", &e))
	{
		GUC_check_errmsg("%s", e.msg);
		GUC_check_errhint("%s", e.hint);
		return false;
	}
	return true;
}

static StateProfile
profile_from_name(const char *name)
{
	for (int i = 0; profile_options[i].name != NULL; i++)
		if (pg_strcasecmp(name, profile_options[i].name) == 0)
			return (StateProfile) profile_options[i].val;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown state profile \"%s\"", name),
			 errhint("Use default, write_heavy, read_heavy or large_state (see the README's State tuning).")));
	return STATE_PROFILE_DEFAULT;	/* keep compiler quiet */
}

/*
 * What a tenant's block cache and memtables may hold at once: the cache and
 * every memtable but one, the one being flushed coming on top (as in every
 * profile: the default's cache of S/2 and a memtable of S/2 are S).
 * RocksDB flushes once the memtables reach db_write_buffer_size, but
 * memtables waiting for their flush stay, up to max_write_buffer_number.
 */
static int64
tenant_memory(const StateTuning *t)
{
	return t->block_cache_size +
		t->write_buffer_size * (Max(t->max_write_buffer_number, 2) - 1);
}

/*
 * Every memtable together (db_write_buffer_size, where RocksDB flushes):
 * what the cache leaves of 'bytes', at least one memtable.
 */
static void
limit_memtables(StateTuning *t, int64 bytes)
{
	t->db_write_buffer_size = Max(bytes - t->block_cache_size, t->write_buffer_size);
}

/*
 * Reduce t's memory to 'bytes' (at least STATE_MIN_TASK_SHARE): the cache
 * and the memtables scaled down alike, each at least 1MB (a tenant's
 * least), then fewer memtables waiting for their flush if that is not
 * enough; and the memtables limited to what the cache leaves of it.
 */
static void
fit_memory(StateTuning *t, int64 bytes)
{
	int64		memory = tenant_memory(t);

	if (memory > bytes)
	{
		double		f = (double) bytes / memory;

		t->block_cache_size = Max((int64) (t->block_cache_size * f), 1 * MB);
		t->write_buffer_size = Max((int64) (t->write_buffer_size * f), 1 * MB);
		while (tenant_memory(t) > bytes && t->max_write_buffer_number > 2)
			t->max_write_buffer_number--;
	}
	limit_memtables(t, bytes);
}

/*
 * A tenant's integer bounds at a worker's start: the pipeline's own
 * options were checked when it was created, but its owner may have lost
 * superuser since.  What its options set beyond a tenant's bound is
 * reduced to the bound and logged, as memory is: an error would restart
 * the worker every few seconds with the same definition.  Values that come
 * from the profile or the server's options ('base') are the DBA's, kept.
 */
static void
clamp_tenant_integers(StateTuning *t, const StateTuning *base, const char *pipeline)
{
	StringInfoData reduced;

	initStringInfo(&reduced);
	if (t->max_open_files != base->max_open_files &&
		(t->max_open_files < 0 || t->max_open_files > TENANT_MAX_OPEN_FILES))
	{
		t->max_open_files = TENANT_MAX_OPEN_FILES;
		appendStringInfo(&reduced, " max_open_files=%d", t->max_open_files);
	}
	if (t->max_background_jobs != base->max_background_jobs &&
		t->max_background_jobs > TENANT_MAX_BACKGROUND_JOBS)
	{
		t->max_background_jobs = TENANT_MAX_BACKGROUND_JOBS;
		appendStringInfo(&reduced, " max_background_jobs=%d", t->max_background_jobs);
	}
	if (t->max_write_buffer_number != base->max_write_buffer_number &&
		t->max_write_buffer_number > TENANT_MAX_WRITE_BUFFERS)
	{
		t->max_write_buffer_number = TENANT_MAX_WRITE_BUFFERS;
		appendStringInfo(&reduced, " max_write_buffer_number=%d", t->max_write_buffer_number);
	}
	if (reduced.len > 0)
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": state options reduced to what a pipeline whose owner is not a superuser may use:%s",
						pipeline ? pipeline : "?", reduced.data)));
	pfree(reduced.data);
}

void
state_tuning_resolve(const char *profile, const char *options,
					 bool superuser, bool clamp, int ntasks,
					 const char *pipeline, StateTuning *out)
{
	int64		share = task_share(ntasks);
	StateTuning base;
	TuningError e;

	/*
	 * A tenant's pipeline whose tasks would each get less than the least a
	 * task's RocksDB runs with would take more than its slot's share.
	 */
	if (!superuser && !clamp && slot_share() / Max(ntasks, 1) < STATE_MIN_TASK_SHARE)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("parallelism %d leaves each task " INT64_FORMAT " kB of a worker's share of state memory, under %d kB",
						ntasks, slot_share() / Max(ntasks, 1) / 1024, (int) (STATE_MIN_TASK_SHARE / 1024)),
				 errdetail("A worker's share is streamflink.state_memory divided by streamflink.max_workers (" INT64_FORMAT " kB); a parallel pipeline's tasks split it.",
						   slot_share() / 1024),
				 errhint("Use a lower parallelism, or ask the database administrator to raise streamflink.state_memory.")));

	profile_defaults(profile ? profile_from_name(profile) : (StateProfile) server_profile,
					 share, out);

	/*
	 * The server's options were checked when set (as a superuser's).  A
	 * tenant's own options are checked against its bounds, except at a
	 * worker's start, where what is beyond them is reduced below.
	 */
	if (!apply_options(out, server_options, true, "streamflink.state_options", &e))
		goto fail;
	base = *out;
	if (!apply_options(out, options, superuser || clamp, "state_options", &e))
		goto fail;
	if (!superuser && clamp)
		clamp_tenant_integers(out, &base, pipeline);

	/* A tenant's pipeline stays within its worker's share of the budget. */
	if (!superuser && tenant_memory(out) > share)
	{
		int64		memory = tenant_memory(out);

		if (!clamp)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("state memory of " INT64_FORMAT " kB (block cache " INT64_FORMAT " kB, write buffers " INT64_FORMAT " kB) is over a worker's share of " INT64_FORMAT " kB",
							memory / 1024, out->block_cache_size / 1024,
							(memory - out->block_cache_size) / 1024, share / 1024),
					 errdetail("The write buffers counted are max_write_buffer_number - 1 of write_buffer_size: those that may wait for a flush.  A worker's share is streamflink.state_memory divided by streamflink.max_workers, and among a parallel pipeline's tasks."),
					 tenant_memory(&base) > share ?
					 errhint("The server's own state settings (streamflink.state_profile, streamflink.state_options) are over it: ask the database administrator to lower them or to raise streamflink.state_memory.") :
					 errhint("Lower block_cache_size, write_buffer_size or max_write_buffer_number, or ask the database administrator to raise streamflink.state_memory.")));
		/* the budget was lowered since: scale down, keep the ratio */
		fit_memory(out, share);
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": state memory reduced to a worker's share of " INT64_FORMAT " kB",
						pipeline ? pipeline : "?", share / 1024),
				 errdetail("%s", state_tuning_describe(out))));
		return;
	}

	/*
	 * Within the share, as given: not fit_memory, which would scale down a
	 * superuser's sizes beyond it.
	 */
	limit_memtables(out, share);
	return;

fail:
	ereport(ERROR,
			(errcode(e.sqlstate),
			 errmsg("%s", e.msg),
			 errhint("%s", e.hint)));
}

void
state_tuning_auxiliary(StateTuning *out)
{
	/* the server's profile and options, as set by its superusers */
	state_tuning_resolve(NULL, NULL, true, true, 1, NULL, out);
	fit_memory(out, STATE_AUX_MEMORY);
	out->max_background_jobs = Min(out->max_background_jobs, 2);
}

const char *
state_profile_name(StateProfile profile)
{
	for (int i = 0; profile_options[i].name != NULL; i++)
		if (profile_options[i].val == (int) profile)
			return profile_options[i].name;
	return "unknown";
}

char *
state_tuning_describe(const StateTuning *t)
{
	static const char *const comp[] = {"none", "snappy", "zlib", "bz2", "lz4", "lz4hc", "xpress", "zstd"};
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "profile=%s;block_cache_size=" INT64_FORMAT "kB;write_buffer_size=" INT64_FORMAT "kB;"
					 "max_write_buffer_number=%d;db_write_buffer_size=" INT64_FORMAT "kB;block_size=" INT64_FORMAT "kB;"
					 "bloom_filter_bits=%g;compaction_style=%s;max_background_jobs=%d;max_open_files=%d;"
					 "compression=%s;bottommost_compression=%s;target_file_size_base=" INT64_FORMAT "kB;"
					 "max_bytes_for_level_base=" INT64_FORMAT "kB;level_compaction_dynamic_level_bytes=%s;"
					 "cache_index_and_filter_blocks=%s",
					 profile_options[t->profile].name,
					 t->block_cache_size / 1024, t->write_buffer_size / 1024,
					 t->max_write_buffer_number, t->db_write_buffer_size / 1024, t->block_size / 1024,
					 t->bloom_filter_bits,
					 t->compaction_style == rocksdb_universal_compaction ? "universal" : "level",
					 t->max_background_jobs, t->max_open_files,
					 comp[t->compression], comp[t->bottommost_compression],
					 t->target_file_size_base / 1024, t->max_bytes_for_level_base / 1024,
					 t->dynamic_level_bytes ? "on" : "off",
					 t->cache_index_and_filter_blocks ? "on" : "off");
	return s.data;
}
