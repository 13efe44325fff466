/*-------------------------------------------------------------------------
 *
 * state_rescale.h
 *	  Building a state database from snapshots by key-group range: the
 *	  basis of rescaling (Flink's RocksDB restore clipping key-group ranges).
 *
 * Every key starts with its key group (keyspace.h), so the keys of key
 * groups lo..hi are one range per column family.  A worker that owns
 * lo..hi after a rescale builds its database from the snapshots of the old
 * workers whose ranges overlap its own, keeping only its range.
 *
 * Runs in any process (a worker, or a backend rescaling a savepoint): it
 * opens the snapshots' copies and the target itself, as primaries, with
 * state.h (signals blocked around RocksDB's threads there).  Memory: the
 * caller's context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_STATE_RESCALE_H
#define STREAMFLINK_STATE_RESCALE_H

#include "state.h"

/* A range of key groups, both ends included. */
typedef struct KeyGroupRange
{
	uint16		lo;
	uint16		hi;
} KeyGroupRange;

/*
 * Flink's KeyGroupRangeAssignment: the key groups of worker 'index' of
 * 'parallelism' (1 <= parallelism <= STATE_KEY_GROUPS).
 */
extern KeyGroupRange state_key_group_range_for(int index, int parallelism);

/*
 * Replace database directory 'dir' by one holding the keys of key groups
 * range.lo..range.hi found in the snapshots chk_dirs[0..n-1] (each a
 * snapshot directory, left unchanged; their ranges should not overlap
 * within 'range', a later one's key wins).  Every column family.  The new
 * database is written with 'tuning' (NULL: state_open's, small), the
 * snapshots read with state_open's.  Returns the number of keys copied.
 */
extern int64 state_restore_key_groups(const char *dir, char **chk_dirs, int n,
									  KeyGroupRange range, const StateTuning *tuning);

#endif							/* STREAMFLINK_STATE_RESCALE_H */
