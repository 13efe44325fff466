/*-------------------------------------------------------------------------
 *
 * timer_service.h
 *	  Event-time timers of an operator, kept in its key groups.
 *
 * A timer is a time and a state key: when the watermark passes the time,
 * the operator's fire function gets the state key.  Timers are stored in
 * the same database as the state they refer to, in its key group
 * ([kg]'T'[time:8][state key less its key group], keyspace.h), so they move
 * with their key group when state is cut by key-group range.  Registering
 * the same timer twice is one timer.
 *
 * A registered timer is kept in memory (pending) until timers_flush, which
 * the operator calls with its state flush before every snapshot, writes
 * it: a timer that fires before the next checkpoint never reaches RocksDB.
 * Pending timers are kept per time (a bucket), flushed in key order.
 * Firing is a range scan per key group with stored timers due (and the
 * pending timers' due buckets), and fired stored timers are deleted by one
 * range per key group at the next flush, not one by one.
 *
 * Due timers fire in global time order, whatever their key groups; ties
 * (timers of one time) in the byte order of the state key less its key
 * group (so from its kind byte: for windows, the group key's encoding,
 * an int key's numeric order), then by key group.  The service keeps a
 * floor, the watermark it last fired up to plus one: no timer below it
 * remains, so a timer must be registered at or above the floor (a timer
 * below it never fires, and is dropped).  To keep a watermark advance cheap when nothing is due, it
 * keeps per key group a lower bound of the times of its stored timers
 * (unknown after a restart, then exact after the first advance), and scans
 * only the key groups with a timer due.
 *
 * Memory: the service and its pending timers live in the memory context
 * it was created in (pending timers in a child context reset by every
 * flush).  Pending timers are bounded by an eighth of
 * kstate_cache_budget(): timers_maybe_flush writes them early beyond it.
 * Firing takes the same memory whatever the number of due timers: it
 * merges the due timers as it fires them, from one RocksDB iterator per
 * key group with a stored timer due (at most STATE_KEY_GROUPS, and as many
 * again with implicit timers, each on one
 * timer, whose key it copies; measured: 20 kB each over five sorted runs,
 * 2.5 MB for 128, and a data block per run pinned in the block cache) and
 * from the due pending timers (already within their bound),
 * sorting one time's bucket at a time (16 bytes per timer of the largest,
 * a buffer kept for the next advance and freed at a flush if less than a
 * quarter of it was used since the last).  Timers fire in chunks of up to
 * STATE_MULTI_GET_MAX taken off the merge (their keys copied), so that
 * the operator can read their state in one batch first (timers_set_prefetch).
 * Single-threaded, like the operator that owns it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_TIMER_SERVICE_H
#define STREAMFLINK_TIMER_SERVICE_H

#include "datatype/timestamp.h"

#include "state.h"

typedef struct TimerService TimerService;

/*
 * Fire the timer at 'time' of state key skey (which starts with its key
 * group).  skey is valid during the call only.  May register timers.
 */
typedef void (*timer_fire_fn) (void *arg, TimestampTz time,
							   const char *skey, size_t sklen);

extern TimerService *timers_create(StateStore *store);

/*
 * Optional: the times and state keys of the next n timers about to fire (n
 * at most STATE_MULTI_GET_MAX), so that the operator can read their state
 * in one batch (kstate_prefetch) before the fire function asks for it key
 * by key.  Called with timers_advance's arg; keys valid during the call
 * only.
 */
typedef void (*timer_prefetch_fn) (void *arg, int n, const TimestampTz *times,
								   const char *const *skeys, const size_t *sklens);

extern void timers_set_prefetch(TimerService *ts, timer_prefetch_fn prefetch);

/*
 * Implicit timers: a key of 'kind' (one with a leading time of 8 bytes,
 * keyspace_leading_time) in the family 'state' is itself a timer at its
 * leading time plus 'offset' (a fixed window's key, its start: it fires at
 * its end), as long as the key is there.  The operator still registers
 * that timer for a key it has not yet written; a flush drops it instead of
 * writing it, so the operator must have written its state (the key) before
 * every timers_flush, and deletes the key itself once it should no longer
 * fire.  An advance fires the keys due of each key group, found by a range
 * scan, with the other timers, in the same order.
 */
extern void timers_set_implicit(TimerService *ts, StateStore *state, char kind,
								int64 offset);

/* A timer at 'when' for state key skey, which starts with its key group. */
extern void timers_register(TimerService *ts, TimestampTz when,
							const char *skey, size_t sklen);

extern void timers_delete(TimerService *ts, TimestampTz when,
						  const char *skey, size_t sklen);

/*
 * Write pending timers to the store and delete the fired ones from it: the
 * operator's flush before a snapshot.  Not while firing.
 */
extern void timers_flush(TimerService *ts);

/* timers_flush if the pending timers are over their memory bound. */
extern void timers_maybe_flush(TimerService *ts);

/*
 * Are the pending timers over their memory bound (and may they be flushed
 * now)?  For an operator with implicit timers, which writes its state
 * first.
 */
extern bool timers_over_budget(TimerService *ts);

/* No timer below this remains. */
extern TimestampTz timers_floor(TimerService *ts);

/*
 * Fire every timer with floor <= time <= upto (in time order, then tie
 * order: the state key less its key group, then the key group), deleting
 * each after it fired, and raise the floor to upto + 1 (before the first
 * fires).  Firing may register and delete timers: the timers due are those
 * there when the call starts, so a due timer deleted by an earlier fire
 * still fires, and one registered at or below upto never does.  Nothing
 * happens if upto is below the floor.
 */
extern void timers_advance(TimerService *ts, TimestampTz upto,
						   timer_fire_fn fire, void *arg);

#endif							/* STREAMFLINK_TIMER_SERVICE_H */
