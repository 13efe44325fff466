/*-------------------------------------------------------------------------
 *
 * timer_service.c
 *	  Event-time timers of an operator, kept in its key groups.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "keyed_state.h"
#include "keyspace.h"
#include "timer_service.h"

/* A timer key: [kg:2]'T'[time:8][state key less key group]. */
#define TIMER_HEADER (KEYSPACE_HEADER + 8)

/* No timer in this key group (as a lower bound: above every time). */
#define NO_TIMER PG_INT64_MAX

/* A due timer: its key, in the advance's key buffer. */
typedef struct DueTimer
{
	TimestampTz time;
	uint32		off;
	uint32		len;
} DueTimer;

struct TimerService
{
	StateStore *store;
	TimestampTz floor;

	/*
	 * Per key group, no timer at or above the floor is earlier than this
	 * (PG_INT64_MIN: unknown, after a restart; NO_TIMER: none).
	 */
	TimestampTz next[STATE_KEY_GROUPS];
	MemoryContext due_cxt;		/* the due timers of one advance */
	StringInfoData key;			/* scratch */
	StringInfoData upper;		/* scratch */
	StringInfoData skey;		/* the state key handed to fire */
};

TimerService *
timers_create(StateStore *store)
{
	TimerService *ts = palloc0(sizeof(TimerService));

	/* timers have a column family of their own: see keyspace.h */
	ts->store = state_family(store, STATE_FAMILY_TIMERS);
	ts->floor = PG_INT64_MIN;
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
		ts->next[kg] = PG_INT64_MIN;
	ts->due_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink due timers",
										ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&ts->key);
	initStringInfo(&ts->upper);
	initStringInfo(&ts->skey);
	return ts;
}

TimestampTz
timers_floor(TimerService *ts)
{
	return ts->floor;
}

static void
timer_key(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	Assert(sklen >= 2);
	resetStringInfo(&ts->key);
	keyspace_append_prefix(&ts->key, keyspace_key_group(skey), KS_TIMER);
	kstate_append_time(&ts->key, when);
	appendBinaryStringInfo(&ts->key, skey + 2, sklen - 2);
}

void
timers_register(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	uint16		kg = keyspace_key_group(skey);

	timer_key(ts, when, skey, sklen);
	state_put(ts->store, ts->key.data, ts->key.len, "", 0);
	if (when < ts->next[kg])
		ts->next[kg] = when;
}

void
timers_delete(TimerService *ts, TimestampTz when, const char *skey, size_t sklen)
{
	/* (the key group's lower bound stays a lower bound) */
	timer_key(ts, when, skey, sklen);
	state_delete(ts->store, ts->key.data, ts->key.len);
}

/*
 * Time order, then state key order: the key group, then the rest of the
 * state key (bytewise, a prefix first), as RocksDB orders keys.
 */
static int
due_cmp(const void *a, const void *b, void *arg)
{
	const DueTimer *x = (const DueTimer *) a;
	const DueTimer *y = (const DueTimer *) b;
	const char *keys = (const char *) arg;
	const char *kx = keys + x->off;
	const char *ky = keys + y->off;
	int			c;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	c = memcmp(kx, ky, 2);
	if (c != 0)
		return c;
	c = memcmp(kx + TIMER_HEADER, ky + TIMER_HEADER,
			   Min(x->len, y->len) - TIMER_HEADER);
	if (c != 0)
		return c;
	return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

void
timers_advance(TimerService *ts, TimestampTz upto, timer_fire_fn fire, void *arg)
{
	MemoryContext old;
	StringInfoData keys;
	DueTimer   *due;
	int			ndue = 0;
	int			cap = 64;
	int			groups = 0;

	if (upto < ts->floor)
		return;
	/* (so that the floor, upto + 1, does not wrap) */
	upto = Min(upto, PG_INT64_MAX - 1);

	MemoryContextReset(ts->due_cxt);
	old = MemoryContextSwitchTo(ts->due_cxt);
	initStringInfo(&keys);
	due = palloc(sizeof(DueTimer) * cap);

	/*
	 * Collect the due timers of each key group that has one, and the time of
	 * its first timer after upto (one step further in the same scan).
	 */
	for (int kg = 0; kg < STATE_KEY_GROUPS; kg++)
	{
		StateIter  *it;
		const char *key,
				   *val;
		size_t		klen,
					vlen;
		TimestampTz next = NO_TIMER;
		bool		any = false;

		if (ts->next[kg] > upto)
			continue;
		resetStringInfo(&ts->key);
		keyspace_append_prefix(&ts->key, kg, KS_TIMER);
		kstate_append_time(&ts->key, ts->floor);
		resetStringInfo(&ts->upper);
		keyspace_append_prefix(&ts->upper, kg, KS_TIMER + 1);
		it = state_iter_create(ts->store, ts->key.data, ts->key.len,
							   ts->upper.data, ts->upper.len);
		while (state_iter_next(it, &key, &klen, &val, &vlen))
		{
			TimestampTz t = kstate_read_time(key + KEYSPACE_HEADER);

			if (t > upto)
			{
				next = t;
				break;
			}
			if (ndue == cap)
			{
				cap *= 2;
				due = repalloc_huge(due, sizeof(DueTimer) * cap);
			}
			due[ndue].time = t;
			due[ndue].off = keys.len;
			due[ndue].len = klen;
			ndue++;
			appendBinaryStringInfo(&keys, key, klen);
			any = true;
		}
		state_iter_destroy(it);
		ts->next[kg] = next;
		groups += any;
	}

	/* One key group's are in order already. */
	if (groups > 1)
		qsort_arg(due, ndue, sizeof(DueTimer), due_cmp, keys.data);
	MemoryContextSwitchTo(old);

	for (int i = 0; i < ndue; i++)
	{
		const char *key = keys.data + due[i].off;

		resetStringInfo(&ts->skey);
		appendBinaryStringInfo(&ts->skey, key, 2);
		appendBinaryStringInfo(&ts->skey, key + TIMER_HEADER, due[i].len - TIMER_HEADER);
		fire(arg, due[i].time, ts->skey.data, ts->skey.len);
		state_delete(ts->store, key, due[i].len);
	}
	MemoryContextReset(ts->due_cxt);
	ts->floor = upto + 1;
}
