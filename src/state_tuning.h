/*-------------------------------------------------------------------------
 *
 * state_tuning.h
 *	  RocksDB tuning of a pipeline's state: predefined profiles, option
 *	  strings, the server-wide defaults and the memory budget.
 *
 * A pipeline's RocksDB settings are resolved in this order: the built-in
 * values of its profile (the pipeline's state_profile, else the setting
 * streamflink.state_profile), then the server-wide option string
 * (streamflink.state_options), then the pipeline's own state_options.  Sizes
 * of the profiles are fractions of the worker's share of the memory budget:
 * streamflink.state_memory divided by streamflink.max_workers.
 *
 * Option strings are parsed here, never by RocksDB (whose own parser knows
 * settings that name files, such as wal_dir and db_paths): an allow-list of
 * settings, each with its range.  A pipeline whose owner is not a superuser
 * is held to tighter bounds (its memory within the worker's share, a
 * bounded number of open files and background jobs), see state_tuning.c.
 *
 * Everything here is plain computation on palloc'd memory: no RocksDB
 * handle is created (state.c turns a StateTuning into options).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_STATE_TUNING_H
#define STREAMFLINK_STATE_TUNING_H

#include "state.h"

typedef enum StateProfile
{
	STATE_PROFILE_DEFAULT,
	STATE_PROFILE_WRITE_HEAVY,
	STATE_PROFILE_READ_HEAVY,
	STATE_PROFILE_LARGE_STATE
} StateProfile;

/* typedef'd in state.h */
struct StateTuning
{
	StateProfile profile;
	int64		block_cache_size;	/* bytes */
	int64		write_buffer_size;	/* bytes, one memtable */
	int			max_write_buffer_number;
	int64		db_write_buffer_size;	/* bytes, all memtables (derived) */
	int64		block_size;		/* bytes, uncompressed data block */
	double		bloom_filter_bits;	/* bits per key, 0: no filter */
	int			compaction_style;	/* rocksdb_level/universal_compaction */
	int			max_background_jobs;
	int			max_open_files; /* -1: all files kept open */
	int			compression;	/* rocksdb_*_compression */
	int			bottommost_compression;
	int64		target_file_size_base;	/* bytes */
	int64		max_bytes_for_level_base;	/* bytes */
	bool		dynamic_level_bytes;
	bool		cache_index_and_filter_blocks;
};

/* streamflink.state_profile, state_options, state_memory. */
extern void state_define_settings(void);

/* streamflink.state_statistics: RocksDB statistics on (state.c) */
extern bool state_statistics;

/*
 * The worker's share of streamflink.state_memory, in bytes: the budget
 * divided by streamflink.max_workers, then by the tasks of a parallel
 * pipeline (state_memory_set_tasks, called by a worker before it opens its
 * state: a pipeline takes one slot whatever its parallelism).
 */
extern int64 state_memory_share(void);
extern void state_memory_set_tasks(int ntasks);

/*
 * Resolve a pipeline's settings (profile NULL: the server's; options NULL:
 * none) for an owner that is or is not a superuser.  An invalid profile or
 * option, or one beyond the owner's bounds, is an ERROR with a hint, except
 * that with 'clamp' (a worker's start) what a tenant's pipeline goes beyond
 * its bounds by is reduced to them and logged: the budget may have been
 * lowered, or the owner lost superuser, since the pipeline was created.
 * 'ntasks': the pipeline's parallelism, whose tasks split a share; a
 * tenant's pipeline whose tasks would get under 2MB each is refused.
 */
extern void state_tuning_resolve(const char *profile, const char *options,
								 bool superuser, bool clamp, int ntasks,
								 const char *pipeline, StateTuning *out);

/*
 * The settings of an instance that is no worker's own (a backend's, or a
 * snapshot a restore reads): the server's, within 16MB of memory and 2
 * background jobs, outside every worker's share.
 */
extern void state_tuning_auxiliary(StateTuning *out);

/* A profile's name ('default', ...). */
extern const char *state_profile_name(StateProfile profile);

/* The settings as "name=value;..." text, for messages and the view. */
extern char *state_tuning_describe(const StateTuning *t);

#endif							/* STREAMFLINK_STATE_TUNING_H */
