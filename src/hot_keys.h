/*-------------------------------------------------------------------------
 *
 * hot_keys.h
 *	  The keys a parallel pipeline's tasks route most: a space-saving
 *	  heavy-hitters sketch (Metwally et al.) per task, over the events its
 *	  source side reads, for the streamflink.hot_keys view.
 *
 * Each task counts the group key (group_key.h) of every event it routes
 * in HOT_KEYS_TRACKED counters: a key already counted adds one; a new key
 * takes over the smallest counter and adds one to it (so a count may
 * overestimate a key by at most the smallest count, as space-saving does;
 * a key with more than 1/HOT_KEYS_TRACKED of the events is always listed).
 * Counts decay: every HOT_KEYS_HALF_LIFE_S seconds all counts and the
 * task's total are halved, so the view shows recent traffic (a key's share
 * is of the task's decayed total).  Counted before two-stage aggregation
 * (local_agg.h): the events as read.
 *
 * Memory and ownership: a HotKeys lives in the worker's memory context
 * current at hot_keys_create (TopMemoryContext); only its process writes
 * it.  The top keys, rendered as text (output functions of the key
 * columns, in a transaction), are published with the task's figures
 * (TaskMetrics.hot, task.h) and read by backends from there.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_HOT_KEYS_H
#define STREAMFLINK_HOT_KEYS_H

#include "access/tupdesc.h"
#include "utils/timestamp.h"

#define HOT_KEYS_TRACKED 16
#define HOT_KEYS_LISTED 5
#define HOT_KEYS_TEXT 64
#define HOT_KEYS_HALF_LIFE_S 10

/* What a task publishes: its top keys, by (decayed) events. */
typedef struct HotKeysReport
{
	int			n;
	int64		total;			/* the task's events, decayed as the counts */
	struct
	{
		char		key[HOT_KEYS_TEXT]; /* truncated */
		int			owner;		/* the task owning the key */
		int64		events;
	}			keys[HOT_KEYS_LISTED];
} HotKeysReport;

typedef struct HotKeys HotKeys;
struct KeyCodec;

extern HotKeys *hot_keys_create(struct KeyCodec *codec, TupleDesc event_desc);

/* One event of group key 'gk', for task 'owner'. */
extern void hot_keys_count(HotKeys *hk, const char *gk, int len, int owner);

/*
 * Decay if due, and render the top keys as text into the report (after
 * each batch of routed events, inside a transaction: output functions).
 */
extern void hot_keys_render(HotKeys *hk, TimestampTz now);

extern const HotKeysReport *hot_keys_report(HotKeys *hk);

#endif							/* STREAMFLINK_HOT_KEYS_H */
