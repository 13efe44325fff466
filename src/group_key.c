/*-------------------------------------------------------------------------
 *
 * group_key.c
 *	  Group keys that follow SQL equality (see group_key.h).
 *
 * Encoding of one key column: a null flag (0 null, 1 a value), then
 *	 - exact columns: the image of the value, or of its canonical form
 *	   (byval: typlen bytes, big-endian, see below; else [len:4][bytes], the
 *	   varlena's data without its header), so a key decodes back into
 *	   values;
 *	 - other columns (an ICU sort key somewhere inside): [len:4] and a
 *	   structural encoding: the sort key; an array's dimensions and lower
 *	   bounds then each element (flag and encoding); a composite's fields.
 *
 * A by-value image is written big-endian, with the sign bit flipped for
 * the signed integers (int2, int4, int8 and the date and time types, which
 * are integers inside), so that the bytes of such keys sort as their
 * values do.  Equality does not need it, but order does: the timers fire
 * the windows of one end in the order of their keys' bytes
 * (timer_service.c), and the sink's unique index then takes the rows of a
 * firing in its own order, each insert on the leaf page of the one before,
 * where in the native order (little-endian) consecutive rows landed all
 * over the index.  (State format 4; format 3 held the native image.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/tupdesc.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "group_key.h"
#include "keyspace.h"

typedef enum KeyKind
{
	KEY_IMAGE,					/* equality is image equality */
	KEY_NUMERIC,
	KEY_FLOAT4,
	KEY_FLOAT8,
	KEY_INTERVAL,
	KEY_BPCHAR,					/* char(n) under a deterministic collation */
	KEY_SORTKEY,				/* text under a nondeterministic collation */
	KEY_ARRAY,
	KEY_RECORD
} KeyKind;

struct KeyColumn
{
	KeyKind		kind;
	Oid			typid;			/* the base type, for domains */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	bool		exact;			/* encoded as a value's image */
	bool		signed_int;		/* byval: flip the image's sign bit */
	/* KEY_SORTKEY */
	pg_locale_t locale;
	bool		bpchar;			/* trailing spaces do not count */
	/* KEY_ARRAY */
	KeyColumn  *elem;
	/* KEY_RECORD */
	TupleDesc	desc;
	KeyColumn **fields;			/* NULL for dropped columns */
};

/* Does the type's default btree opclass say equality is image equality? */
static bool
type_is_image_equal(Oid typid, Oid collation)
{
	Oid			opclass = GetDefaultOpClass(typid, BTREE_AM_OID);
	Oid			opcintype;
	Oid			proc;

	if (!OidIsValid(opclass))
		return false;
	opcintype = get_opclass_input_type(opclass);
	proc = get_opfamily_proc(get_opclass_family(opclass), opcintype, opcintype,
							 BTEQUALIMAGE_PROC);
	if (!OidIsValid(proc))
		return false;
	return DatumGetBool(OidFunctionCall1Coll(proc, collation,
											 ObjectIdGetDatum(opcintype)));
}

static void
refuse(Oid typid, const char *colname)
{
	TypeCacheEntry *tce = lookup_type_cache(typid, TYPECACHE_EQ_OPR);

	if (!OidIsValid(tce->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify an equality operator for type %s",
						format_type_be(typid)),
				 errdetail("Key column \"%s\" must be groupable, as in GROUP BY.", colname),
				 errhint("Declare the source column with a type that has equality, for example text instead of json.")));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("key column \"%s\" of type %s is not supported", colname,
					format_type_be(typid)),
			 errdetail("Values of this type can be equal without being identical, and streamflink has no canonical form for it."),
			 errhint("Declare the source column with another type (for example text), or key on an expression of it computed by the producer.")));
}

static KeyColumn *
classify(Oid typid, Oid collation, const char *colname)
{
	KeyColumn  *kc = palloc0(sizeof(KeyColumn));
	Oid			base = getBaseType(typid);
	Oid			elem;
	char		typtype;

	kc->typid = base;
	kc->exact = true;
	get_typlenbyvalalign(base, &kc->typlen, &kc->typbyval, &kc->typalign);
	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			kc->signed_int = kc->typbyval;
			break;
		default:
			break;
	}
	if (type_is_image_equal(base, collation))
		return kc;				/* KEY_IMAGE */

	typtype = get_typtype(base);
	elem = get_element_type(base);
	if (OidIsValid(elem) && kc->typlen == -1)
	{
		kc->elem = classify(elem, collation, colname);
		if (kc->elem->kind != KEY_IMAGE)
		{
			kc->kind = KEY_ARRAY;
			kc->exact = kc->elem->exact;
		}
		return kc;
	}
	if (typtype == TYPTYPE_COMPOSITE)
	{
		kc->kind = KEY_RECORD;
		kc->desc = lookup_rowtype_tupdesc_copy(base, -1);
		kc->fields = palloc0(sizeof(KeyColumn *) * Max(kc->desc->natts, 1));
		for (int i = 0; i < kc->desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(kc->desc, i);

			if (att->attisdropped)
				continue;
			kc->fields[i] = classify(att->atttypid, att->attcollation,
									 psprintf("%s.%s", colname, NameStr(att->attname)));
			kc->exact &= kc->fields[i]->exact;
		}
		return kc;
	}
	if (typtype == TYPTYPE_RANGE || typtype == TYPTYPE_MULTIRANGE)
	{
		Oid			range = typtype == TYPTYPE_RANGE ? base : get_multirange_range(base);

		/* Bounds are stored as the subtype's images, in canonical order. */
		if (type_is_image_equal(get_range_subtype(range), get_range_collation(range)))
			return kc;
		refuse(base, colname);
	}
	switch (base)
	{
		case NUMERICOID:
			kc->kind = KEY_NUMERIC;
			return kc;
		case FLOAT4OID:
			kc->kind = KEY_FLOAT4;
			return kc;
		case FLOAT8OID:
			kc->kind = KEY_FLOAT8;
			return kc;
		case INTERVALOID:
			kc->kind = KEY_INTERVAL;
			return kc;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			if (!OidIsValid(collation) || get_collation_isdeterministic(collation))
			{
				/*
				 * Trailing spaces of char(n) do not count (bpchareq), so its
				 * equality is not the image's (its equalimage says so): the
				 * value without them is its canonical form.
				 */
				if (base != BPCHAROID)
					break;
				kc->kind = KEY_BPCHAR;
				return kc;
			}
			kc->kind = KEY_SORTKEY;
			kc->exact = false;
			kc->bpchar = (base == BPCHAROID);
			kc->locale = pg_newlocale_from_collation(collation);
			if (kc->locale == NULL || kc->locale->provider != COLLPROVIDER_ICU)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("key column \"%s\" has a nondeterministic collation not provided by ICU",
								colname)));
			return kc;
		default:
			break;
	}
	refuse(base, colname);
	return NULL;				/* not reached */
}

/* --- canonical forms ---------------------------------------------------- */

static Datum canonical(KeyColumn *kc, Datum v);

static Datum
canonical_interval(Interval *iv)
{
	Interval   *r = palloc(sizeof(Interval));
	int64		days;
	int128		span;
	int64		d;
	int64		frac;
	int64		m;

	/* The span interval_cmp_value compares: months of 30 days. */
	days = iv->time / USECS_PER_DAY + (int64) iv->month * 30 + iv->day;
	span = (int128) days * USECS_PER_DAY + iv->time % USECS_PER_DAY;

	/* One interval per span: whole months, then days, then the rest. */
	d = (int64) (span / USECS_PER_DAY);
	frac = (int64) (span % USECS_PER_DAY);
	m = d / 30;
	m = Max(Min(m, PG_INT32_MAX), PG_INT32_MIN);
	d -= m * 30;
	r->month = (int32) m;
	r->day = (int32) Max(Min(d, PG_INT32_MAX), PG_INT32_MIN);
	d -= r->day;
	r->time = d * USECS_PER_DAY + frac;
	return IntervalPGetDatum(r);
}

static Datum
canonical_array(KeyColumn *kc, Datum v)
{
	ArrayType  *a = DatumGetArrayTypeP(v);
	KeyColumn  *ek = kc->elem;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(a, ek->typid, ek->typlen, ek->typbyval, ek->typalign,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			elems[i] = canonical(ek, elems[i]);
	if (ARR_NDIM(a) == 0)
		return PointerGetDatum(construct_empty_array(ek->typid));
	return PointerGetDatum(construct_md_array(elems, nulls, ARR_NDIM(a), ARR_DIMS(a),
											  ARR_LBOUND(a), ek->typid, ek->typlen,
											  ek->typbyval, ek->typalign));
}

static Datum
canonical_record(KeyColumn *kc, Datum v)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(v);
	HeapTupleData tup;
	int			natts = kc->desc->natts;
	Datum	   *vals = palloc(sizeof(Datum) * Max(natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(natts, 1));

	tup.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = td;
	heap_deform_tuple(&tup, kc->desc, vals, nulls);
	for (int i = 0; i < natts; i++)
		if (kc->fields[i] && !nulls[i])
			vals[i] = canonical(kc->fields[i], vals[i]);
	return heap_copy_tuple_as_datum(heap_form_tuple(kc->desc, vals, nulls), kc->desc);
}

/* A value of the same type, equal to v, the same for all values equal to v. */
static Datum
canonical(KeyColumn *kc, Datum v)
{
	switch (kc->kind)
	{
		case KEY_IMAGE:
			if (kc->typlen == -1)
				return PointerGetDatum(PG_DETOAST_DATUM(v));
			return v;
		case KEY_NUMERIC:
			return DirectFunctionCall1(numeric_trim_scale, v);
		case KEY_FLOAT4:
			{
				float4		f = DatumGetFloat4(v);

				if (isnan(f))
					return Float4GetDatum(get_float4_nan());
				return Float4GetDatum(f == 0 ? 0.0f : f);
			}
		case KEY_FLOAT8:
			{
				float8		f = DatumGetFloat8(v);

				if (isnan(f))
					return Float8GetDatum(get_float8_nan());
				return Float8GetDatum(f == 0 ? 0.0 : f);
			}
		case KEY_INTERVAL:
			return canonical_interval(DatumGetIntervalP(v));
		case KEY_BPCHAR:
			{
				BpChar	   *b = DatumGetBpCharPP(v);
				int			len = bpchartruelen(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));

				return PointerGetDatum(cstring_to_text_with_len(VARDATA_ANY(b), len));
			}
		case KEY_ARRAY:
			return canonical_array(kc, v);
		case KEY_RECORD:
			return canonical_record(kc, v);
		case KEY_SORTKEY:
			break;
	}
	elog(ERROR, "key column has no canonical value");
	return (Datum) 0;
}

/* --- encoding ----------------------------------------------------------- */

/*
 * A by-value image (typlen 1, 2, 4 or 8 bytes) big-endian, signed integers
 * with their sign bit flipped (see the file header).
 */
static void
encode_byval(KeyColumn *kc, Datum v, StringInfo buf)
{
	uint64		u;

	switch (kc->typlen)
	{
		case 1:
			u = (uint8) DatumGetChar(v);
			break;
		case 2:
			u = (uint16) DatumGetInt16(v);
			break;
		case 4:
			u = (uint32) DatumGetInt32(v);
			break;
		case 8:
			u = (uint64) DatumGetInt64(v);
			break;
		default:
			elog(ERROR, "unsupported by-value length %d", kc->typlen);
	}
	keyspace_append_int(buf, u, kc->typlen, kc->signed_int);
}

static Datum
decode_byval(KeyColumn *kc, const char *p)
{
	int			len = kc->typlen;
	uint64		u = keyspace_read_int(p, len, kc->signed_int);

	switch (len)
	{
		case 1:
			return CharGetDatum((char) u);
		case 2:
			return Int16GetDatum((int16) u);
		case 4:
			return Int32GetDatum((int32) u);
		case 8:
			return Int64GetDatum((int64) u);
	}
	elog(ERROR, "unsupported by-value length %d", len);
	return (Datum) 0;
}

static void
encode_image(KeyColumn *kc, Datum v, StringInfo buf)
{
	if (kc->typbyval)
		encode_byval(kc, v, buf);
	else if (kc->typlen == -1)
	{
		struct varlena *vl = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(v));
		uint32		len = VARSIZE_ANY_EXHDR(vl);

		appendBinaryStringInfo(buf, (char *) &len, 4);
		appendBinaryStringInfo(buf, VARDATA_ANY(vl), len);
	}
	else
	{
		uint32		len = datumGetSize(v, false, kc->typlen);

		appendBinaryStringInfo(buf, (char *) &len, 4);
		appendBinaryStringInfo(buf, DatumGetPointer(v), len);
	}
}

static const char *
decode_image(KeyColumn *kc, const char *p, Datum *val)
{
	uint32		len;

	if (kc->typbyval)
	{
		if (val)
			*val = decode_byval(kc, p);
		return p + kc->typlen;
	}
	memcpy(&len, p, 4);
	p += 4;
	if (val && kc->typlen == -1)
	{
		struct varlena *vl = palloc(VARHDRSZ + len);

		SET_VARSIZE(vl, VARHDRSZ + len);
		memcpy(VARDATA(vl), p, len);
		*val = PointerGetDatum(vl);
	}
	else if (val)
	{
		char	   *copy = palloc(len);

		memcpy(copy, p, len);
		*val = PointerGetDatum(copy);
	}
	return p + len;
}

static void encode_value(KeyColumn *kc, Datum v, StringInfo buf);

static void
append_sort_key(KeyColumn *kc, Datum v, StringInfo buf)
{
	text	   *t = DatumGetTextPP(v);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	UChar	   *uchar;
	int32_t		ulen;
	int32_t		need;

	if (kc->bpchar)
		len = bpchartruelen((char *) s, len);
	ulen = icu_to_uchar(&uchar, s, len);
	need = ucol_getSortKey(kc->locale->info.icu.ucol, uchar, ulen,
						   (uint8_t *) buf->data + buf->len, buf->maxlen - buf->len - 1);
	if (need > buf->maxlen - buf->len - 1)
	{
		enlargeStringInfo(buf, need);
		need = ucol_getSortKey(kc->locale->info.icu.ucol, uchar, ulen,
							   (uint8_t *) buf->data + buf->len, buf->maxlen - buf->len - 1);
	}
	buf->len += need;
	buf->data[buf->len] = '\0';
	pfree(uchar);
}

/* [len:4] then the structure (see the file header). */
static void
encode_structure(KeyColumn *kc, Datum v, StringInfo buf)
{
	int			at = buf->len;
	uint32		len;

	appendBinaryStringInfo(buf, "\0\0\0\0", 4);
	if (kc->kind == KEY_SORTKEY)
		append_sort_key(kc, v, buf);
	else if (kc->kind == KEY_ARRAY)
	{
		ArrayType  *a = DatumGetArrayTypeP(v);
		KeyColumn  *ek = kc->elem;
		int32		ndim = ARR_NDIM(a);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		appendBinaryStringInfo(buf, (char *) &ndim, 4);
		appendBinaryStringInfo(buf, (char *) ARR_DIMS(a), sizeof(int) * ndim);
		appendBinaryStringInfo(buf, (char *) ARR_LBOUND(a), sizeof(int) * ndim);
		deconstruct_array(a, ek->typid, ek->typlen, ek->typbyval, ek->typalign,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			appendStringInfoChar(buf, nulls[i] ? 0 : 1);
			if (!nulls[i])
				encode_value(ek, elems[i], buf);
		}
	}
	else
	{
		HeapTupleHeader td = DatumGetHeapTupleHeader(v);
		HeapTupleData tup;
		int			natts = kc->desc->natts;
		Datum	   *vals = palloc(sizeof(Datum) * Max(natts, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(natts, 1));

		Assert(kc->kind == KEY_RECORD);
		tup.t_len = HeapTupleHeaderGetDatumLength(td);
		ItemPointerSetInvalid(&tup.t_self);
		tup.t_tableOid = InvalidOid;
		tup.t_data = td;
		heap_deform_tuple(&tup, kc->desc, vals, nulls);
		for (int i = 0; i < natts; i++)
		{
			if (kc->fields[i] == NULL)
				continue;
			appendStringInfoChar(buf, nulls[i] ? 0 : 1);
			if (!nulls[i])
				encode_value(kc->fields[i], vals[i], buf);
		}
	}
	len = buf->len - at - 4;
	memcpy(buf->data + at, &len, 4);
}

static void
encode_value(KeyColumn *kc, Datum v, StringInfo buf)
{
	if (kc->kind == KEY_IMAGE)
		encode_image(kc, v, buf);
	else if (kc->exact)
		encode_image(kc, canonical(kc, v), buf);
	else
		encode_structure(kc, v, buf);
}

/* --- codecs ------------------------------------------------------------- */

void
kstate_codec_init(KeyCodec *codec, PipelineDef *def)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(def->source.row_type, -1);

	kstate_codec_init_desc(codec, desc, def->nkeys, def->key_attnos);
	ReleaseTupleDesc(desc);
}

void
kstate_codec_init_desc(KeyCodec *codec, TupleDesc desc, int nkeys, int *attnos)
{
	codec->nkeys = nkeys;
	codec->attnos = attnos;
	codec->cols = palloc(sizeof(KeyColumn *) * Max(nkeys, 1));
	codec->exact = true;
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attnos[i]);

		codec->cols[i] = classify(att->atttypid, att->attcollation,
								  NameStr(att->attname));
		codec->exact &= codec->cols[i]->exact;
	}
}

/*
 * The key columns of an event, each as a null flag and, if not null, its
 * group key form (as_key) or its image.
 */
static void
encode_columns(KeyCodec *codec, TupleTableSlot *slot, StringInfo buf, bool as_key)
{
	resetStringInfo(buf);
	for (int i = 0; i < codec->nkeys; i++)
	{
		int			attno = codec->attnos[i];
		bool		isnull = slot->tts_isnull[attno];

		appendStringInfoChar(buf, isnull ? 0 : 1);
		if (isnull)
			continue;
		if (as_key)
			encode_value(codec->cols[i], slot->tts_values[attno], buf);
		else
			encode_image(codec->cols[i], slot->tts_values[attno], buf);
	}
}

void
kstate_encode_key(KeyCodec *codec, TupleTableSlot *slot, StringInfo buf)
{
	encode_columns(codec, slot, buf, true);
}

const char *
kstate_decode_key(KeyCodec *codec, const char *p, Datum *vals, bool *nulls)
{
	for (int i = 0; i < codec->nkeys; i++)
	{
		KeyColumn  *kc = codec->cols[i];
		bool		isnull = (*p++ == 0);

		if (vals)
		{
			nulls[i] = isnull;
			vals[i] = (Datum) 0;
		}
		if (isnull)
			continue;
		if (kc->exact)
			p = decode_image(kc, p, vals ? &vals[i] : NULL);
		else
		{
			uint32		len;

			if (vals)
				elog(ERROR, "group key of a nondeterministic collation cannot be decoded");
			memcpy(&len, p, 4);
			p += 4 + len;
		}
	}
	return p;
}

void
kstate_encode_values(KeyCodec *codec, TupleTableSlot *slot, StringInfo buf)
{
	encode_columns(codec, slot, buf, false);
}

const char *
kstate_decode_values(KeyCodec *codec, const char *p, Datum *vals, bool *nulls)
{
	for (int i = 0; i < codec->nkeys; i++)
	{
		nulls[i] = (*p++ == 0);
		vals[i] = (Datum) 0;
		if (!nulls[i])
			p = decode_image(codec->cols[i], p, &vals[i]);
	}
	return p;
}

PG_FUNCTION_INFO_V1(streamflink_check_key_columns);

/* streamflink._check_key_columns(row_type regtype, keys text[]) */
Datum
streamflink_check_key_columns(PG_FUNCTION_ARGS)
{
	Oid			row_type = PG_GETARG_OID(0);
	ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *names;
	bool	   *nulls;
	int			n;
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(row_type, -1);

	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			continue;
		name = TextDatumGetCString(names[i]);
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
				(void) classify(att->atttypid, att->attcollation, name);
		}
	}
	PG_RETURN_VOID();
}
