/*-------------------------------------------------------------------------
 *
 * keyspace.h
 *	  The key space of a pipeline's RocksDB database: every prefix, in one
 *	  place.
 *
 * Every key starts with its key group, then a one-byte kind naming what it
 * is, then the rest (all integers big-endian; times with the sign bit
 * flipped, so that byte order is time order: kstate_append_time):
 *
 *	 [key group:2][kind:1][rest]
 *
 * in one of the database's column families (state.h: StateFamily):
 *
 *	 family  kind  what			 rest								value					 owner
 *	 main	 'W'   window		 [window start:8][group key]		[fired:1][repr][aggs]	 window.c
 *	 main	 'L'   slice		 [slice start:8][group key]			[0:1][repr][aggs]		 window.c
 *	 main	 'S'   session		 [group key]						[n:4] n x session		 window.c
 *	 main	 'B'   CEP buffer	 [group key]						buffered events			 cep.c
 *	 main	 'N'   CEP NFA		 [group key]						partial matches			 cep.c
 *	 main	 'C'   counter		 [counter id:1]						int64 (native order)	 keyed_state.c
 *	 timers  'T'   timer		 [time:8][state key less key group] (empty)					 timer_service.c
 *
 * A timer's state key may name no state: [kg]'E'[group key] is the timer
 * of a key's next hopping window end that no slice's own timer fires
 * (window.c).
 *
 * A window's (and a slice's) key leads with its start, so that a key
 * group's windows lie in time order: they are their own firing timers
 * (timer_service.h, implicit timers: the windows due are a range scan of
 * their key group, with no timer written per window), and the windows gone
 * are deleted by one range per key group.
 *
 * Timers have a family of their own, as in Flink's RocksDB backend: they
 * are written and deleted about once per event or window, in near time
 * order, and among the operator state they would dilute the memtable and
 * blocks that every event's point lookups search (with the key-group layout
 * the CEP benchmark's profile showed more time in RocksDB's memtable skip
 * list and Get than with all timers at the end of one key space).
 *
 * The key group is state_key_group() of the group key (2 bytes, below
 * STATE_KEY_GROUPS).  A timer belongs to the key group of the state it
 * fires for; a counter counts per key group (the operator's total is the
 * sum).  So no key lies outside a key group: a state directory can be cut
 * by key-group range [lo, hi] with one RocksDB range scan per column family
 * over [lo:2] .. [hi + 1:2) (keyspace_key_group_range), which rescaling
 * will use.  Within a key group, each kind is one contiguous range
 * (keyspace_kind_range), so a scan of one kind never meets another's keys.
 *
 * Header only: these helpers build byte strings and own no memory but the
 * StringInfo they append to.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_KEYSPACE_H
#define STREAMFLINK_KEYSPACE_H

#include "lib/stringinfo.h"

#include "state.h"

/*
 * Layout of the state directory.  format 1: streamflink 0.1 (timers and
 * counters outside key groups); format 2: early builds of 0.2 (a window's
 * key [group key][window start], a timer written for each); format 3:
 * this layout, a group key's by-value images in native byte order; format
 * 4: those images big-endian (group_key.c), which also puts keys in other
 * key groups; format 5: this layout, hopping windows kept as slices (their
 * 'W' keys of format 4 would be read as nothing).
 */
#define STATE_FORMAT_VERSION 5

/* Kinds (the byte after the key group). */
#define KS_WINDOW	'W'
#define KS_SLICE	'L'
#define KS_WINDOW_END 'E'
#define KS_SESSION	'S'
#define KS_CEP_BUFFER 'B'
#define KS_CEP_NFA	'N'
#define KS_TIMER	'T'
#define KS_COUNTER	'C'

/* Bytes of the key group a key starts with, and with the kind after it. */
#define KEYSPACE_KEY_GROUP_BYTES 2
#define KEYSPACE_HEADER 3

/*
 * Bytes of a time that a kind's keys lead with after their header (a
 * window's start): 0 for kinds without one.  The timers' tie order
 * (timer_service.c) compares the rest of the key before these bytes, so
 * that the windows due at one time fire in the order of their group keys.
 */
static inline int
keyspace_leading_time(char kind)
{
	return kind == KS_WINDOW || kind == KS_SLICE ? 8 : 0;
}

/*
 * An integer in a key: its low 'len' bytes (1, 2, 4 or 8) big-endian, the
 * top bit flipped if 'flip_sign', so that keys sort bytewise as the
 * integers do (two's complement with its sign bit flipped sorts as the
 * signed value).  Every integer of the key space is written so: times
 * (kstate_append_time) and a group key's integer columns (group_key.c).
 */
static inline void
keyspace_append_int(StringInfo buf, uint64 u, int len, bool flip_sign)
{
	char		b[8];

	Assert(len >= 1 && len <= 8);
	if (flip_sign)
		u ^= UINT64CONST(1) << (len * 8 - 1);
	for (int i = 0; i < len; i++)
		b[i] = (char) (u >> (8 * (len - 1 - i)));
	appendBinaryStringInfo(buf, b, len);
}

/* The integer keyspace_append_int wrote at p (its low 'len' bytes). */
static inline uint64
keyspace_read_int(const char *p, int len, bool flip_sign)
{
	uint64		u = 0;

	Assert(len >= 1 && len <= 8);
	for (int i = 0; i < len; i++)
		u = (u << 8) | (unsigned char) p[i];
	if (flip_sign)
		u ^= UINT64CONST(1) << (len * 8 - 1);
	return u;
}

/* Counter ids ([kg]'C'[id]). */
#define KS_COUNTER_OPEN_WINDOWS 1	/* window.c: open windows (not fired) */
#define KS_COUNTER_PARTIAL_MATCHES 2	/* cep.c: partial matches */
#define KS_COUNTER_DROPPED_MATCHES 3	/* cep.c: partial matches over the bound */
#define KS_COUNTER_FIRED_TO 4	/* window.c: the watermark slices' windows
								 * fired up to */

/* The key group a key starts with. */
static inline uint16
keyspace_key_group(const char *key)
{
	return (uint16) (((unsigned char) key[0] << 8) | (unsigned char) key[1]);
}

/* Append [kg:2][kind]. */
static inline void
keyspace_append_prefix(StringInfo buf, uint16 kg, char kind)
{
	char		b[3] = {(char) (kg >> 8), (char) (kg & 0xFF), kind};

	appendBinaryStringInfo(buf, b, 3);
}

/* Append [kg of group key:2][kind]: the start of a group key's state key. */
static inline void
keyspace_append_state_prefix(StringInfo buf, char kind, const char *gk, size_t gklen)
{
	keyspace_append_prefix(buf, state_key_group(gk, gklen), kind);
}

/*
 * The keys of one kind in one key group: lower <= key < upper (each reset
 * first).
 */
static inline void
keyspace_kind_range(uint16 kg, char kind, StringInfo lower, StringInfo upper)
{
	resetStringInfo(lower);
	resetStringInfo(upper);
	keyspace_append_prefix(lower, kg, kind);
	keyspace_append_prefix(upper, kg, (char) (kind + 1));
}

/*
 * The keys of key groups lo..hi (inclusive), every kind: lower <= key <
 * upper (each reset first), for one RocksDB range scan.  Used to cut a
 * state directory by key-group range (rescaling).
 */
static inline void
keyspace_key_group_range(uint16 lo, uint16 hi, StringInfo lower, StringInfo upper)
{
	uint16		end = hi + 1;
	char		l[2] = {(char) (lo >> 8), (char) (lo & 0xFF)};
	char		u[2] = {(char) (end >> 8), (char) (end & 0xFF)};

	Assert(lo <= hi && hi < STATE_KEY_GROUPS);
	resetStringInfo(lower);
	resetStringInfo(upper);
	appendBinaryStringInfo(lower, l, 2);
	appendBinaryStringInfo(upper, u, 2);
}

#endif							/* STREAMFLINK_KEYSPACE_H */
