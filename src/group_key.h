/*-------------------------------------------------------------------------
 *
 * group_key.h
 *	  Group keys: the key columns of an event as bytes, equal exactly when
 *	  the values are equal in SQL (as GROUP BY groups them).
 *
 * A column whose type's default btree operator class says equality is
 * image equality (its BTEQUALIMAGE_PROC, called with the column's
 * collation, as btree deduplication decides) is encoded as its image, as
 * before: ints, timestamps, text under a deterministic collation cost
 * nothing more.  Other types are encoded in a canonical form:
 *	 numeric	without trailing zeros (trim_scale);
 *	 float4/8	-0 as 0, every NaN as one;
 *	 interval	by its comparison span (as interval_cmp_value), written as
 *				months, days and time normalized from it;
 *	 arrays, composites, domains: element, field, base type by the rule.
 * These canonical forms are values of the type, so a key decodes back into
 * values equal to the input's (1.00 comes back as 1).  Text (text, varchar,
 * bpchar) under a nondeterministic ICU collation is encoded by its ICU sort
 * key, which cannot be decoded: the codec is then not "exact", and the
 * operator keeps a representative of the key (kstate_encode_values, the
 * first event's values) with its state, to write real values to sinks.
 * A type with no equality is refused as GROUP BY refuses it; a type whose
 * equality is not bytewise and that has no canonical form here (jsonb,
 * tsvector, ranges of such types...) is refused too, with a hint.
 *
 * Memory: a codec lives in the memory context it was initialised in; the
 * encoders append to the caller's StringInfo and allocate scratch in
 * CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_GROUP_KEY_H
#define STREAMFLINK_GROUP_KEY_H

#include "executor/tuptable.h"
#include "lib/stringinfo.h"

#include "catalog.h"

typedef struct KeyColumn KeyColumn;

typedef struct KeyCodec
{
	int			nkeys;
	int		   *attnos;
	KeyColumn **cols;
	bool		exact;			/* kstate_decode_key gives the values */
} KeyCodec;

/*
 * A codec whose keys follow SQL equality for every supported type (refusing
 * others with a clear error); if codec->exact is false, keep a
 * representative (kstate_encode_values) to get values back.
 */
extern void kstate_codec_init(KeyCodec *codec, PipelineDef *def);

/*
 * The same for key columns 'attnos' (0-based) of a descriptor whose slots
 * hold the key values (computed keys, sql_pipeline.h).  'attnos' is kept.
 */
extern void kstate_codec_init_desc(KeyCodec *codec, TupleDesc desc, int nkeys,
								   int *attnos);

/* The group key of an event's key columns (buf reset first). */
extern void kstate_encode_key(KeyCodec *codec, TupleTableSlot *slot, StringInfo buf);

/*
 * Decode a group key into datums (in CurrentMemoryContext); returns its end.
 * With vals NULL, only skips it.  Values need an exact codec.
 */
extern const char *kstate_decode_key(KeyCodec *codec, const char *p,
									 Datum *vals, bool *nulls);

/* The key columns' own values, as images (buf reset first), and back. */
extern void kstate_encode_values(KeyCodec *codec, TupleTableSlot *slot, StringInfo buf);
extern const char *kstate_decode_values(KeyCodec *codec, const char *p,
										Datum *vals, bool *nulls);

#endif							/* STREAMFLINK_GROUP_KEY_H */
