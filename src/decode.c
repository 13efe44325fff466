/*-------------------------------------------------------------------------
 *
 * decode.c
 *	  Decoding Kafka payloads (json, csv, text) into typed Postgres rows.
 *
 * A payload is first split into one C string per column (or NULL), then
 * every string goes through the column type's own input function, so any
 * Postgres type works, including user-defined ones.
 *
 * decode_message() must never raise an error for a bad payload: the caller
 * routes the message to the dead-letter table and moves on.  Postgres 15 has
 * no soft input errors, so conversion errors are caught:
 *
 *	- for a whitelist of built-in types whose input functions are pure (they
 *	  only ereport on bad input: no catalog access, no locks, no resources to
 *	  release), a plain PG_TRY/PG_CATCH is enough and cheap;
 *	- any other type (domains with CHECK constraints, enums, arrays, user
 *	  types...) may take locks, pin buffers or run SQL, so its conversion runs
 *	  in an internal subtransaction that is rolled back on error, as PL/pgSQL
 *	  does for EXCEPTION blocks.  That needs an open transaction.
 *
 * Query cancel and out-of-memory errors are not payload errors: they are
 * re-thrown rather than turned into dead letters.
 *
 * Everything decoded is allocated in the caller's CurrentMemoryContext,
 * which the caller resets per message; per-decoder scratch space lives in the
 * context the decoder was created in, so the hot path allocates little.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/guc.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "avro_decode.h"
#include "catalog.h"
#include "decode.h"
#include "run_as.h"

/* streamflink.json_fast_path */
static bool json_fast_path = true;

void
decode_define_settings(void)
{
	DefineCustomBoolVariable("streamflink.json_fast_path",
							 "Decodes JSON payloads with streamflink's one-pass scanner.",
							 "Off: Postgres' own JSON parser decodes every payload (slower; "
							 "the reference the scanner is tested against).",
							 &json_fast_path, true,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

typedef struct DecodeColumn
{
	char	   *name;
	int			namelen;
	bool		is_json;		/* json or jsonb: gets JSON text, not values */
	Oid			type;
	int32		typmod;
	Oid			typioparam;
	bool		pure;			/* input function needs no subtransaction */
	FmgrInfo	input;
} DecodeColumn;

struct Decoder
{
	DecodeFormat format;
	int			ncols;
	DecodeColumn *cols;
	int			encoding;		/* database encoding */

	/* json: open-addressing hash of column names -> column index, or -1 */
	int		   *hash;
	uint32		hashmask;

	/*
	 * Per-message scratch, reused by every call: the text of each column
	 * (NULL for SQL NULL).
	 */
	char	  **fields;

	/* column being converted, for error messages; -1 while parsing */
	int			curcol;

	/* json: where each column's value ends in the scan buffer (fast path) */
	int		   *field_end;

	/* avro, avro-confluent: see avro_decode.h */
	AvroDecoder *avro;

	/* json parse state (Postgres' parser: the reference, and the fallback) */
	JsonSemAction sem;
	JsonLexContext *lex;
	int			jfield;			/* column of the current top-level key, or -1 */
	char	   *nest_start;		/* start of a nested value being captured */
	char	   *value_start;	/* start of the current top-level value */

	/* metadata columns (see decoder_create_for_source), or NULL */
	struct DecodeMetaSpec *meta;
};

static bool decode_json(Decoder *dec, const char *payload, int len,
						char **error);
static bool decode_csv(Decoder *dec, const char *payload, int len,
					   char **error);
static bool convert_fields(Decoder *dec, Datum *values, bool *nulls,
						   char **error);
static Datum convert_in_subxact(Decoder *dec, DecodeColumn *col, char *str,
								bool *ok, char **error);

/*
 * Types whose input functions only ereport on bad input and touch nothing
 * else (no catalog lookups, locks, buffers or files): a caught error leaves
 * no state behind, so no subtransaction is needed.
 */
static bool
type_input_is_pure(Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case BOOLOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NAMEOID:
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case INTERVALOID:
		case UUIDOID:
		case JSONOID:
		case JSONBOID:
		case BYTEAOID:
		case INETOID:
		case CIDROID:
			return true;
		default:
			return false;
	}
}

/*
 * Errors that say nothing about the payload: let them propagate instead of
 * producing a dead letter.
 */
static bool
error_is_environmental(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_OUT_OF_MEMORY ||
		sqlerrcode == ERRCODE_ADMIN_SHUTDOWN;
}

/* FNV-1a; column names are short */
static inline uint32
name_hash(const char *s, int len)
{
	uint32		h = 2166136261u;

	for (int i = 0; i < len; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 16777619u;
	}
	return h;
}

/* Column index of a name of 'len' bytes (not NUL-terminated), or -1. */
static int
lookup_column(Decoder *dec, const char *name, int len)
{
	uint32		i = name_hash(name, len) & dec->hashmask;

	for (;;)
	{
		int			c = dec->hash[i];

		if (c < 0)
			return -1;
		if (dec->cols[c].namelen == len && memcmp(dec->cols[c].name, name, len) == 0)
			return c;
		i = (i + 1) & dec->hashmask;
	}
}

DecodeFormat
decode_format_from_name(const char *name)
{
	if (pg_strcasecmp(name, "json") == 0)
		return DECODE_JSON;
	if (pg_strcasecmp(name, "csv") == 0)
		return DECODE_CSV;
	if (pg_strcasecmp(name, "text") == 0)
		return DECODE_TEXT;
	if (pg_strcasecmp(name, "avro") == 0)
		return DECODE_AVRO;
	if (pg_strcasecmp(name, "avro-confluent") == 0)
		return DECODE_AVRO_CONFLUENT;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown payload format \"%s\"", name),
			 errhint("Valid formats are \"json\", \"csv\", \"text\", \"avro\" and \"avro-confluent\".")));
	return DECODE_JSON;			/* keep compiler quiet */
}

/* json semantic actions; see decode_json() */
static void json_object_start(void *state);
static void json_struct_end(void *state);
static void json_field_start(void *state, char *fname, bool isnull);
static void json_scalar(void *state, char *token, JsonTokenType tokentype);

Decoder *
decoder_create(DecodeFormat format, int ncols, char **names, Oid *types,
			   int32 *typmods)
{
	Decoder    *dec;
	int			i;

	if (ncols < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a decoder needs at least one column")));
	if (format == DECODE_TEXT && ncols != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("format \"text\" requires exactly one column, not %d",
						ncols),
				 errhint("Use format \"json\" or \"csv\" to decode several columns.")));

	dec = palloc0(sizeof(Decoder));
	dec->format = format;
	dec->ncols = ncols;
	dec->encoding = GetDatabaseEncoding();
	dec->cols = palloc0(sizeof(DecodeColumn) * ncols);
	dec->fields = palloc0(sizeof(char *) * ncols);
	dec->field_end = palloc0(sizeof(int) * ncols);

	for (i = 0; i < ncols; i++)
	{
		DecodeColumn *col = &dec->cols[i];
		Oid			infunc;

		col->name = pstrdup(names[i]);
		col->namelen = strlen(col->name);
		col->type = types[i];
		col->typmod = typmods ? typmods[i] : -1;
		getTypeInputInfo(col->type, &infunc, &col->typioparam);
		/* fn_extra caches (domain_in, array_in...) must outlive a message */
		fmgr_info_cxt(infunc, &col->input, CurrentMemoryContext);
		col->pure = type_input_is_pure(col->type);
		col->is_json = (col->type == JSONOID || col->type == JSONBOID);
	}

	if (format == DECODE_JSON)
	{
		uint32		size = 8;

		/* at most half full, so probes stay short */
		while (size < (uint32) ncols * 2)
			size <<= 1;
		dec->hash = palloc(sizeof(int) * size);
		memset(dec->hash, -1, sizeof(int) * size);
		dec->hashmask = size - 1;
		for (i = 0; i < ncols; i++)
		{
			uint32		h = name_hash(dec->cols[i].name, dec->cols[i].namelen) & dec->hashmask;

			while (dec->hash[h] >= 0)
			{
				/* duplicate column name: the first one gets the key */
				if (strcmp(dec->cols[dec->hash[h]].name, dec->cols[i].name) == 0)
					break;
				h = (h + 1) & dec->hashmask;
			}
			if (dec->hash[h] < 0)
				dec->hash[h] = i;
		}

		dec->sem.semstate = dec;
		dec->sem.object_start = json_object_start;
		dec->sem.object_end = json_struct_end;
		dec->sem.array_start = json_object_start;
		dec->sem.array_end = json_struct_end;
		dec->sem.object_field_start = json_field_start;
		dec->sem.scalar = json_scalar;
	}

	return dec;
}

Decoder *
decoder_create_for_desc(DecodeFormat format, TupleDesc desc)
{
	char	  **names = palloc(sizeof(char *) * desc->natts);
	Oid		   *types = palloc(sizeof(Oid) * desc->natts);
	int32	   *typmods = palloc(sizeof(int32) * desc->natts);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		names[i] = NameStr(att->attname);
		types[i] = att->atttypid;
		typmods[i] = att->atttypmod;
	}
	return decoder_create(format, desc->natts, names, types, typmods);
}

/* What an Avro value decoder needs of its source: schema, registry, owner. */
static void
decoder_attach_source(Decoder *dec, const SourceDef *source)
{
	DecodeFormat format = dec->format;

	if (source != NULL && (format == DECODE_AVRO || format == DECODE_AVRO_CONFLUENT))
	{
		char	  **names = palloc(sizeof(char *) * dec->ncols);
		Oid		   *types = palloc(sizeof(Oid) * dec->ncols);
		int32	   *typmods = palloc(sizeof(int32) * dec->ncols);

		for (int i = 0; i < dec->ncols; i++)
		{
			names[i] = dec->cols[i].name;
			types[i] = dec->cols[i].type;
			typmods[i] = dec->cols[i].typmod;
		}
		dec->avro = avro_decoder_create(format == DECODE_AVRO_CONFLUENT,
										source->avro_schema, source->schema_registry,
										source->id, source->owner,
										dec->ncols, names, types, typmods);
	}
}

Decoder *
decoder_create_for_source(const SourceDef *source, TupleDesc desc)
{
	Decoder    *dec;

	if (source->metadata != NULL)
		return decoder_create_with_metadata(source->format, source->key_format,
											source->metadata, desc, source);
	dec = decoder_create_for_desc(decode_format_from_name(source->format), desc);
	decoder_attach_source(dec, source);
	return dec;
}

bool
decode_column_input(Decoder *dec, int col, char *str, Datum *value,
					char **error)
{
	DecodeColumn *c = &dec->cols[col];
	bool		ok = true;

	if (str == NULL && c->input.fn_strict)
	{
		*value = (Datum) 0;
		return true;
	}
	dec->curcol = col;
	if (c->pure)
		*value = InputFunctionCall(&c->input, str, c->typioparam, c->typmod);
	else
		*value = convert_in_subxact(dec, c, str, &ok, error);
	dec->curcol = -1;
	return ok;
}

bool
decode_message(Decoder *dec, const char *payload, size_t len,
			   Datum *values, bool *nulls, char **error)
{
	MemoryContext callercxt = CurrentMemoryContext;
	int			validlen;
	volatile bool ok = false;

	/* a source with metadata columns: the value is one part of the row */
	if (dec->meta != NULL)
		return decode_kafka_message(dec, payload, len, NULL, values, nulls, error);

	*error = NULL;

	if (payload == NULL)
	{
		/* a Kafka null value (tombstone) */
		if (dec->format == DECODE_TEXT)
		{
			nulls[0] = true;
			values[0] = (Datum) 0;
			return true;
		}
		*error = pstrdup("message has a null payload");
		return false;
	}

	if (len >= MaxAllocSize)
	{
		*error = psprintf("payload of %zu bytes is too large", len);
		return false;
	}

	/*
	 * Every input function assumes valid input in the database encoding, and
	 * a NUL byte would silently truncate a value: check once, up front.
	 */
	validlen = dec->avro ? (int) len :
		pg_encoding_verifymbstr(dec->encoding, payload, (int) len);
	if (validlen < (int) len)
	{
		*error = psprintf("payload is not valid %s: invalid byte sequence or NUL byte at offset %d",
						  GetDatabaseEncodingName(), validlen);
		return false;
	}

	/*
	 * One PG_TRY around the whole message rather than one per value: setting
	 * up the jump buffer is cheap but not free, and errors are rare.  Errors
	 * raised while parsing (e.g. stack depth for absurdly nested JSON) are
	 * caught here too.
	 */
	dec->curcol = -1;
	PG_TRY();
	{
		bool		parsed;

		switch (dec->format)
		{
			case DECODE_JSON:
				parsed = decode_json(dec, payload, (int) len, error);
				break;
			case DECODE_CSV:
				parsed = decode_csv(dec, payload, (int) len, error);
				break;
			case DECODE_AVRO:
			case DECODE_AVRO_CONFLUENT:
				/* binary: converts its values itself */
				if (dec->avro == NULL)	/* not made by decoder_create_for_source */
					elog(ERROR, "an Avro decoder needs its source's settings");
				ok = avro_decode(dec->avro, dec, payload, len, values, nulls, error);
				parsed = false;
				break;
			case DECODE_TEXT:
			default:
				dec->fields[0] = pnstrdup(payload, len);
				parsed = true;
				break;
		}
		if (parsed)
			ok = convert_fields(dec, values, nulls, error);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(callercxt);
		edata = CopyErrorData();
		if (error_is_environmental(edata->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();

		if (dec->curcol >= 0)
			*error = psprintf("column \"%s\": %s",
							  dec->cols[dec->curcol].name, edata->message);
		else
			*error = pstrdup(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();

	return ok;
}

/*
 * Run each column's text through its input function.
 */
static bool
convert_fields(Decoder *dec, Datum *values, bool *nulls, char **error)
{
	int			i;

	for (i = 0; i < dec->ncols; i++)
	{
		DecodeColumn *col = &dec->cols[i];
		char	   *str = dec->fields[i];

		/*
		 * A strict input function returns NULL for NULL without being
		 * called.  A non-strict one (domain_in) must still see it: a NOT NULL
		 * domain rejects it there.
		 */
		if (str == NULL && col->input.fn_strict)
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
			continue;
		}

		dec->curcol = i;
		if (col->pure)
		{
			values[i] = InputFunctionCall(&col->input, str, col->typioparam,
										  col->typmod);
			nulls[i] = (str == NULL);
		}
		else
		{
			bool		ok;

			values[i] = convert_in_subxact(dec, col, str, &ok, error);
			if (!ok)
				return false;
			nulls[i] = (str == NULL);
		}
	}
	dec->curcol = -1;
	return true;
}

/*
 * Convert one value with an arbitrary input function, inside an internal
 * subtransaction so that locks, buffer pins and any other resources taken by
 * the failing function are released on error.
 */
static Datum
convert_in_subxact(Decoder *dec, DecodeColumn *col, char *str, bool *ok,
				   char **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile Datum result = (Datum) 0;

	if (!IsTransactionState())
		elog(ERROR, "decoding a value of type %s requires a transaction",
			 format_type_be(col->type));

	BeginInternalSubTransaction(NULL);
	/* the value must be allocated in the caller's context, not the subxact's */
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		result = InputFunctionCall(&col->input, str, col->typioparam,
								   col->typmod);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		*ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		if (error_is_environmental(edata->sqlerrcode))
			ReThrowError(edata);

		*error = psprintf("column \"%s\": %s", col->name, edata->message);
		FreeErrorData(edata);
		*ok = false;
		result = (Datum) 0;
	}
	PG_END_TRY();

	return result;
}

/*
 * JSON.
 *
 * Postgres' own parser does the work; the semantic actions only look at the
 * top-level object's members (lex_level 1) and remember, per column, either
 * the scalar's text (strings de-escaped) or the raw text of a nested
 * object/array, so json, jsonb and array columns receive valid input.
 */
static void
json_object_start(void *state)
{
	Decoder    *dec = (Decoder *) state;

	if (dec->lex->lex_level == 1 && dec->jfield >= 0)
		dec->nest_start = dec->lex->token_start;
}

static void
json_struct_end(void *state)
{
	Decoder    *dec = (Decoder *) state;

	/*
	 * The closing bracket has been consumed, so it ends at
	 * prev_token_terminator; lex_level is already back to the value's level.
	 */
	if (dec->lex->lex_level == 1 && dec->jfield >= 0 && dec->nest_start)
	{
		dec->fields[dec->jfield] =
			pnstrdup(dec->nest_start,
					 dec->lex->prev_token_terminator - dec->nest_start);
		dec->nest_start = NULL;
	}
}

static void
json_field_start(void *state, char *fname, bool isnull)
{
	Decoder    *dec = (Decoder *) state;

	if (dec->lex->lex_level == 1)
	{
		dec->jfield = lookup_column(dec, fname, strlen(fname));
		/* the lexer is at the value's first token */
		dec->value_start = dec->lex->token_start;
	}
}

static void
json_scalar(void *state, char *token, JsonTokenType tokentype)
{
	Decoder    *dec = (Decoder *) state;

	if (dec->lex->lex_level == 1 && dec->jfield >= 0)
	{
		/* a later duplicate key overrides an earlier one, null included */
		if (tokentype == JSON_TOKEN_NULL)
			dec->fields[dec->jfield] = NULL;
		else if (tokentype == JSON_TOKEN_STRING && dec->cols[dec->jfield].is_json)
			dec->fields[dec->jfield] =
				pnstrdup(dec->value_start,
						 dec->lex->prev_token_terminator - dec->value_start);
		else
			dec->fields[dec->jfield] = token;
	}
}

/*
 * The fast path: one pass over a copy of the payload that validates the
 * JSON grammar and captures the top-level members that are columns, each
 * string de-escaped in place and NUL-terminated after the scan, so that a
 * message costs one copy and no allocation per field.  It handles all valid
 * JSON except what it leaves to Postgres' parser, which decode_json() then
 * runs instead: any error (for Postgres' exact error message), \u escapes
 * that do not become plain UTF-8 (database encodings other than UTF-8,
 * \u0000, surrogates that do not pair up), and nesting deeper than
 * JSON_FAST_MAX_DEPTH.  Returns false for "use the parser".
 */
#define JSON_FAST_MAX_DEPTH 64

typedef struct JsonScan
{
	char	   *p;				/* next byte */
	char	   *end;
	bool		utf8;			/* database encoding is UTF-8 */
} JsonScan;

static inline void
js_skip_ws(JsonScan *js)
{
	while (js->p < js->end &&
		   (*js->p == ' ' || *js->p == '\n' || *js->p == '\r' || *js->p == '\t'))
		js->p++;
}

static inline int
js_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
js_hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			h = js_hex(p[i]);

		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/*
 * A string, js->p at its opening quote.  With 'out' set, the de-escaped
 * text is written there (in place: it never outruns the reading position)
 * and *outlen set; otherwise the string is only validated.
 */
static bool
js_string(JsonScan *js, char *out, int *outlen)
{
	char	   *p = js->p + 1;
	char	   *w = out;

	for (;;)
	{
		unsigned char c;

		if (p >= js->end)
			return false;
		c = (unsigned char) *p;
		if (c == '"')
			break;
		if (c < 0x20)
			return false;
		if (c != '\\')
		{
			if (w)
				*w++ = (char) c;
			p++;
			continue;
		}
		if (p + 1 >= js->end)
			return false;
		switch (p[1])
		{
			case '"':
			case '\\':
			case '/':
				c = p[1];
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'n':
				c = '\n';
				break;
			case 'r':
				c = '\r';
				break;
			case 't':
				c = '\t';
				break;
			case 'u':
				{
					int			cp;

					if (p + 6 > js->end || (cp = js_hex4(p + 2)) < 0)
						return false;
					p += 6;
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						int			lo;

						if (p + 6 > js->end || p[0] != '\\' || p[1] != 'u' ||
							(lo = js_hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
							return false;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						p += 6;
					}
					else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0)
						return false;
					if (cp > 0x7F && !js->utf8)
						return false;
					if (w)
					{
						unicode_to_utf8((pg_wchar) cp, (unsigned char *) w);
						w += pg_utf_mblen((unsigned char *) w);
					}
					continue;
				}
			default:
				return false;
		}
		if (w)
			*w++ = (char) c;
		p += 2;
	}
	if (w)
		*outlen = w - out;
	js->p = p + 1;
	return true;
}

/* After a number or literal: the next byte must end the token. */
static inline bool
js_delimited(JsonScan *js)
{
	char		c;

	if (js->p >= js->end)
		return true;
	c = *js->p;
	return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' ||
		c == '\r' || c == '\t';
}

static bool
js_number(JsonScan *js)
{
	char	   *p = js->p;
	char	   *end = js->end;

	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return false;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	js->p = p;
	return js_delimited(js);
}

static bool
js_literal(JsonScan *js, const char *word, int len)
{
	if (js->end - js->p < len || memcmp(js->p, word, len) != 0)
		return false;
	js->p += len;
	return js_delimited(js);
}

/* Any value, only validated; js->p at its first byte. */
static bool
js_skip_value(JsonScan *js, int depth)
{
	if (js->p >= js->end)
		return false;
	switch (*js->p)
	{
		case '"':
			return js_string(js, NULL, NULL);
		case 't':
			return js_literal(js, "true", 4);
		case 'f':
			return js_literal(js, "false", 5);
		case 'n':
			return js_literal(js, "null", 4);
		case '{':
		case '[':
			{
				char		close = (*js->p == '{') ? '}' : ']';

				if (depth >= JSON_FAST_MAX_DEPTH)
					return false;
				js->p++;
				js_skip_ws(js);
				if (js->p < js->end && *js->p == close)
				{
					js->p++;
					return true;
				}
				for (;;)
				{
					if (close == '}')
					{
						if (js->p >= js->end || *js->p != '"' ||
							!js_string(js, NULL, NULL))
							return false;
						js_skip_ws(js);
						if (js->p >= js->end || *js->p != ':')
							return false;
						js->p++;
						js_skip_ws(js);
					}
					if (!js_skip_value(js, depth + 1))
						return false;
					js_skip_ws(js);
					if (js->p >= js->end)
						return false;
					if (*js->p == close)
					{
						js->p++;
						return true;
					}
					if (*js->p != ',')
						return false;
					js->p++;
					js_skip_ws(js);
				}
			}
		default:
			return js_number(js);
	}
}

static bool
decode_json_fast(Decoder *dec, const char *payload, int len, int start)
{
	char	   *buf = palloc(len + 1);
	JsonScan	js;

	memcpy(buf, payload, len);
	buf[len] = '\0';
	js.p = buf + start + 1;		/* past the '{' */
	js.end = buf + len;
	js.utf8 = (dec->encoding == PG_UTF8);
	memset(dec->fields, 0, sizeof(char *) * dec->ncols);

	js_skip_ws(&js);
	if (js.p < js.end && *js.p == '}')
		js.p++;
	else
	{
		for (;;)
		{
			char	   *key;
			int			keylen;
			int			col;
			char	   *value;

			/* The key, de-escaped in place only if it has escapes. */
			if (js.p >= js.end || *js.p != '"')
				return false;
			key = js.p + 1;
			keylen = 0;
			while (key + keylen < js.end && key[keylen] != '"' &&
				   key[keylen] != '\\' && (unsigned char) key[keylen] >= 0x20)
				keylen++;
			if (key + keylen < js.end && key[keylen] == '"')
				js.p = key + keylen + 1;
			else if (!js_string(&js, key, &keylen))
				return false;
			col = lookup_column(dec, key, keylen);

			js_skip_ws(&js);
			if (js.p >= js.end || *js.p != ':')
				return false;
			js.p++;
			js_skip_ws(&js);

			value = js.p;
			if (col >= 0 && js.p < js.end && *js.p == '"' && !dec->cols[col].is_json)
			{
				int			vlen;

				if (!js_string(&js, value + 1, &vlen))
					return false;
				dec->fields[col] = value + 1;
				dec->field_end[col] = (value + 1 + vlen) - buf;
			}
			else
			{
				if (!js_skip_value(&js, 1))
					return false;
				if (col >= 0)
				{
					/* JSON null is SQL NULL; anything else its JSON text */
					if (js.p - value == 4 && memcmp(value, "null", 4) == 0)
						dec->fields[col] = NULL;
					else
					{
						dec->fields[col] = value;
						dec->field_end[col] = js.p - buf;
					}
				}
			}

			js_skip_ws(&js);
			if (js.p >= js.end)
				return false;
			if (*js.p == '}')
			{
				js.p++;
				break;
			}
			if (*js.p != ',')
				return false;
			js.p++;
			js_skip_ws(&js);
		}
	}
	js_skip_ws(&js);
	if (js.p != js.end)
		return false;

	/*
	 * Terminate the captured values.  Each ends at a delimiter, or inside
	 * its own string, never inside another captured value.
	 */
	for (int i = 0; i < dec->ncols; i++)
		if (dec->fields[i] != NULL)
			buf[dec->field_end[i]] = '\0';
	return true;
}

static bool
decode_json(Decoder *dec, const char *payload, int len, char **error)
{
	JsonParseErrorType perr;
	int			i;

	/*
	 * The top level must be an object.  Checking the first significant byte
	 * spares parsing payloads that cannot qualify; the parser validates the
	 * rest.
	 */
	for (i = 0; i < len; i++)
	{
		char		c = payload[i];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
	}
	if (i >= len || payload[i] != '{')
	{
		*error = pstrdup("payload is not a JSON object");
		return false;
	}

	if (json_fast_path && decode_json_fast(dec, payload, len, i))
		return true;

	/* Postgres' parser: its error message, or what the fast path left. */
	memset(dec->fields, 0, sizeof(char *) * dec->ncols);
	dec->jfield = -1;
	dec->nest_start = NULL;

	/*
	 * The lexer is bounded by the given length and never writes to its
	 * input, so the (not NUL-terminated) payload is used in place.
	 */
	dec->lex = makeJsonLexContextCstringLen((char *) payload, len,
											dec->encoding, true);
	perr = pg_parse_json(dec->lex, &dec->sem);
	if (perr != JSON_SUCCESS)
	{
		*error = psprintf("invalid JSON: %s", json_errdetail(perr, dec->lex));
		return false;
	}
	return true;
}

/*
 * CSV, RFC 4180 style: fields separated by commas, optionally enclosed in
 * double quotes with "" standing for a quote; a quoted field may contain
 * commas and newlines.  An empty unquoted field is NULL, "" is the empty
 * string.  One trailing \n or \r\n is ignored.
 *
 * The payload is copied once and fields are unquoted in place (a field never
 * grows), each terminated by overwriting its delimiter.
 */
static bool
decode_csv(Decoder *dec, const char *payload, int len, char **error)
{
	char	   *buf;
	char	   *src;
	char	   *end;
	int			nfields = 0;

	if (len > 0 && payload[len - 1] == '\n')
	{
		len--;
		if (len > 0 && payload[len - 1] == '\r')
			len--;
	}

	buf = palloc(len + 1);
	memcpy(buf, payload, len);
	buf[len] = '\0';
	src = buf;
	end = buf + len;

	for (;;)
	{
		char	   *start = src;
		char	   *dst = src;
		bool		quoted = false;

		if (src < end && *src == '"')
		{
			quoted = true;
			src++;
			for (;;)
			{
				if (src >= end)
				{
					*error = psprintf("unterminated quoted field %d", nfields + 1);
					return false;
				}
				if (*src == '"')
				{
					if (src + 1 < end && src[1] == '"')
					{
						*dst++ = '"';
						src += 2;
						continue;
					}
					src++;		/* closing quote */
					break;
				}
				*dst++ = *src++;
			}
			if (src < end && *src != ',')
			{
				*error = psprintf("unexpected character after closing quote of field %d",
								  nfields + 1);
				return false;
			}
		}
		else
		{
			/* a quote inside an unquoted field is taken literally */
			while (src < end && *src != ',')
				src++;
			dst = src;
		}

		if (nfields < dec->ncols)
		{
			if (!quoted && dst == start)
				dec->fields[nfields] = NULL;
			else
				dec->fields[nfields] = start;
		}
		nfields++;

		if (src >= end)
		{
			*dst = '\0';
			break;
		}
		/* src is at a comma; dst <= src */
		*dst = '\0';
		src++;
	}

	if (nfields != dec->ncols)
	{
		*error = psprintf("expected %d fields, found %d", dec->ncols, nfields);
		return false;
	}
	return true;
}

/*
 * The argument checks _decode and _decode_message share: a format, a row
 * type passed as NULL::type in argument row_arg, and a composite result
 * (returned in *result_desc).  Returns the row type.
 */
static Oid
decode_check_args(FunctionCallInfo fcinfo, int row_arg, TupleDesc *result_desc)
{
	Oid			row_type = get_fn_expr_argtype(fcinfo->flinfo, row_arg);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("format must not be NULL")));
	if (get_call_result_type(fcinfo, NULL, result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!type_is_rowtype(row_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("type %s is not a row type", format_type_be(row_type)),
				 errhint("Pass NULL cast to the source's row type, e.g. NULL::streamflink.source_rides.")));
	return row_type;
}

/*
 * The owner argument of _decode and _decode_message: a role that exists and
 * whose privileges the caller has.  Only ever to fewer privileges: never run
 * code as a role one is not.
 */
static void
decode_check_owner(Oid owner)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role %u does not exist", owner)));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must have the privileges of role \"%s\" to decode as it",
						GetUserNameFromId(owner, false))));
}

/* The (row, error) result of _decode and _decode_message. */
static Datum
decode_result(TupleDesc result_desc, TupleDesc row_desc, bool ok,
			  Datum *values, bool *nulls, const char *error)
{
	Datum		result[2] = {0, 0};
	bool		result_nulls[2] = {true, true};

	if (ok)
	{
		result[0] = HeapTupleGetDatum(heap_form_tuple(row_desc, values, nulls));
		result_nulls[0] = false;
	}
	else
	{
		result[1] = CStringGetTextDatum(error);
		result_nulls[1] = false;
	}
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
											 result, result_nulls));
}

/*
 * streamflink._decode(format, NULL::row_type, payload bytea, owner regrole,
 *					   OUT row row_type, OUT error text)
 *
 * Decode one payload as a source would, without Kafka: the row, or the
 * error a dead letter would carry.  For trying a source's format on sample
 * messages, and for testing the decoders.  With an owner, the types' input
 * functions and domain checks run as that role, as in the worker: a user
 * trying another's source does not run its code as himself.
 */
PG_FUNCTION_INFO_V1(streamflink_decode);

/* A call site's decoder (fn_extra), for the settings it was made with. */
typedef struct DecodeCallCache
{
	MemoryContext cxt;
	Oid			row_type;
	char	   *key;			/* the arguments other than row and payload */
	TupleDesc	row_desc;
	Decoder    *dec;
} DecodeCallCache;

Datum
streamflink_decode(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Oid			row_type = decode_check_args(fcinfo, 1, &result_desc);
	TupleDesc	row_desc;
	Decoder    *dec;
	Datum	   *values;
	bool	   *nulls;
	char	   *error = NULL;
	const char *data = NULL;
	size_t		len = 0;
	bool		ok;

	/*
	 * One decoder per call site and settings, kept for the query: a query
	 * decoding many payloads parses a schema, or asks a registry for an id,
	 * once.
	 */
	{
		DecodeCallCache *cache = (DecodeCallCache *) fcinfo->flinfo->fn_extra;
		StringInfoData key;

		initStringInfo(&key);
		for (int i = 0; i < PG_NARGS(); i++)
		{
			if (i == 1 || i == 2)
				continue;		/* the row type (below), the payload */
			if (PG_ARGISNULL(i))
				appendStringInfoString(&key, "n|");
			else if (i == 3)
				appendStringInfo(&key, "o%u|", PG_GETARG_OID(i));
			else if (i == 6)
				appendStringInfo(&key, "i%d|", PG_GETARG_INT32(i));
			else
			{
				char	   *v = text_to_cstring(PG_GETARG_TEXT_PP(i));

				appendStringInfo(&key, "t%zu:%s|", strlen(v), v);
			}
		}
		if (cache == NULL || cache->row_type != row_type || strcmp(cache->key, key.data) != 0)
		{
			MemoryContext old;

			if (cache != NULL)
				MemoryContextDelete(cache->cxt);
			cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(DecodeCallCache));
			fcinfo->flinfo->fn_extra = cache;
			cache->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "streamflink decode",
											   ALLOCSET_SMALL_SIZES);
			old = MemoryContextSwitchTo(cache->cxt);
			cache->row_type = row_type;
			cache->key = pstrdup(key.data);
			cache->row_desc = lookup_rowtype_tupdesc_copy(row_type, -1);
			if (PG_NARGS() > 6)
			{
				/* a source's own settings: avro_schema, schema_registry, id */
				SourceDef	source;

				memset(&source, 0, sizeof(source));
				source.format = text_to_cstring(PG_GETARG_TEXT_PP(0));
				source.avro_schema = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
				source.schema_registry = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
				source.id = PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6);
				source.owner = PG_ARGISNULL(3) ? GetUserId() : PG_GETARG_OID(3);
				cache->dec = decoder_create_for_source(&source, cache->row_desc);
			}
			else
			{
				/* no source settings: an Avro format refuses this */
				SourceDef	source;

				memset(&source, 0, sizeof(source));
				source.format = text_to_cstring(PG_GETARG_TEXT_PP(0));
				source.owner = GetUserId();
				cache->dec = decoder_create_for_source(&source, cache->row_desc);
			}
			MemoryContextSwitchTo(old);
		}
		row_desc = cache->row_desc;
		dec = cache->dec;
	}
	values = palloc(sizeof(Datum) * row_desc->natts);
	nulls = palloc(sizeof(bool) * row_desc->natts);
	if (!PG_ARGISNULL(2))
	{
		bytea	   *payload = PG_GETARG_BYTEA_PP(2);

		data = VARDATA_ANY(payload);
		len = VARSIZE_ANY_EXHDR(payload);
	}

	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
	{
		RunAs		as;

		decode_check_owner(PG_GETARG_OID(3));
		run_as_role(PG_GETARG_OID(3), &as);
		ok = decode_message(dec, data, len, values, nulls, &error);
		run_as_restore(&as);
	}
	else
		ok = decode_message(dec, data, len, values, nulls, &error);

	PG_RETURN_DATUM(decode_result(result_desc, row_desc, ok, values, nulls, error));
}

/*
 * Metadata columns.
 *
 * A source's row may hold columns filled from the Kafka message rather than
 * its value: declared "k text METADATA FROM 'key'" (as in Flink SQL), they
 * are kept in the source's metadata map.  The decoder of such a source is a
 * composition: the value's decoder over the other columns, a decoder of
 * key_format over the key's fields, and a one-column text decoder per
 * metadata column, so that every value goes through its type's input
 * function with the same error handling (a subtransaction where the type
 * needs one) and a refused value is a dead letter naming the column.
 */

typedef enum MetaKind
{
	META_KEY,					/* the whole key */
	META_KEY_FIELD,				/* a field of the key, decoded with key_format */
	META_PARTITION,
	META_OFFSET,
	META_TIMESTAMP,
	META_HEADERS,				/* all headers, as a JSON object */
	META_HEADER					/* one header's value */
} MetaKind;

typedef struct MetaColumn
{
	int			attno;			/* 0-based column of the row */
	MetaKind	kind;
	char	   *header;			/* META_HEADER: its name */
	bool		is_bytea;		/* raw bytes, not text through bytea_in */
	Decoder    *conv;			/* text decoder of the column's type */
} MetaColumn;

typedef struct DecodeMetaSpec
{
	Decoder    *value;			/* NULL: no value column */
	int			nvalue;
	int		   *value_attnos;
	Decoder    *key;			/* NULL: no key.<field> column */
	int			nkey;
	int		   *key_attnos;
	int			nmeta;
	MetaColumn *cols;
	bool		wants_headers;
	Datum	   *scratch_values;
	bool	   *scratch_nulls;
} DecodeMetaSpec;

/* Parse a metadata key; false if unknown.  *field: key.<field>, header:<name>. */
static bool
meta_parse_key(const char *key, MetaKind *kind, const char **field)
{
	*field = NULL;
	if (strcmp(key, "key") == 0)
		*kind = META_KEY;
	else if (strncmp(key, "key.", 4) == 0 && key[4] != '\0')
	{
		*kind = META_KEY_FIELD;
		*field = key + 4;
	}
	else if (strcmp(key, "partition") == 0)
		*kind = META_PARTITION;
	else if (strcmp(key, "offset") == 0)
		*kind = META_OFFSET;
	else if (strcmp(key, "timestamp") == 0)
		*kind = META_TIMESTAMP;
	else if (strcmp(key, "headers") == 0)
		*kind = META_HEADERS;
	else if (strncmp(key, "header:", 7) == 0 && key[7] != '\0')
	{
		*kind = META_HEADER;
		*field = key + 7;
	}
	else
		return false;
	return true;
}

#define METADATA_KEYS_HINT "Metadata keys are key, key.<field>, partition, offset, timestamp, headers and header:<name>."

/* The metadata map as (column, key) pairs; ereports if it is not an object of strings. */
static int
meta_map_pairs(const char *metadata, char ***columns, char ***keys)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(metadata)));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			alloc;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata of a source must be a JSON object of column: key")));
	alloc = Max(JB_ROOT_COUNT(jb), 1);
	*columns = palloc(sizeof(char *) * alloc);
	*keys = palloc(sizeof(char *) * alloc);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			(*columns)[n] = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("metadata key of column \"%s\" must be a string", (*columns)[n]),
						 errhint(METADATA_KEYS_HINT)));
			(*keys)[n++] = pnstrdup(v.val.string.val, v.val.string.len);
		}
	}
	return n;
}

static Decoder *
meta_text_decoder(Form_pg_attribute att)
{
	char	   *name = NameStr(att->attname);
	Oid			type = att->atttypid;
	int32		typmod = att->atttypmod;

	return decoder_create(DECODE_TEXT, 1, &name, &type, &typmod);
}

/* An Avro key would need a schema of its own: none is declared. */
static void
check_key_format(DecodeFormat kf, const char *key_format)
{
	if (kf == DECODE_AVRO || kf == DECODE_AVRO_CONFLUENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("key_format %s is not supported", key_format),
				 errhint("Keys are decoded as text, json or csv; METADATA FROM 'key' into a bytea column takes an Avro key's bytes.")));
}

Decoder *
decoder_create_with_metadata(const char *format, const char *key_format,
							 const char *metadata, TupleDesc desc,
							 const SourceDef *source)
{
	DecodeMetaSpec *spec;
	char	  **mcols;
	char	  **mkeys;
	int			n;
	int		   *kind_of;		/* per attno: -1 value, else index in spec->cols */
	char	  **names;
	Oid		   *types;
	int32	   *typmods;
	char	  **key_names;
	Oid		   *key_types;
	int32	   *key_typmods;
	Decoder    *dec;

	n = metadata == NULL ? 0 : meta_map_pairs(metadata, &mcols, &mkeys);
	if (n == 0)
	{
		dec = decoder_create_for_desc(decode_format_from_name(format), desc);
		decoder_attach_source(dec, source);
		return dec;
	}

	spec = palloc0(sizeof(DecodeMetaSpec));
	spec->cols = palloc0(sizeof(MetaColumn) * n);
	kind_of = palloc(sizeof(int) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
		kind_of[i] = -1;

	for (int i = 0; i < n; i++)
	{
		MetaColumn *mc = &spec->cols[spec->nmeta];
		const char *field;
		int			attno = -1;

		for (int a = 0; a < desc->natts; a++)
			if (!TupleDescAttr(desc, a)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, a)->attname), mcols[i]) == 0)
				attno = a;
		if (attno < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("metadata column \"%s\" is not a column of the source", mcols[i])));
		if (!meta_parse_key(mkeys[i], &mc->kind, &field))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown metadata key \"%s\" of column \"%s\"", mkeys[i], mcols[i]),
					 errhint(METADATA_KEYS_HINT)));
		mc->attno = attno;
		mc->header = field ? pstrdup(field) : NULL;
		mc->is_bytea = TupleDescAttr(desc, attno)->atttypid == BYTEAOID;
		if (mc->kind == META_HEADERS || mc->kind == META_HEADER)
			spec->wants_headers = true;
		kind_of[attno] = spec->nmeta++;
	}

	/* The value's columns and the key's fields, in the row's order. */
	names = palloc(sizeof(char *) * desc->natts);
	types = palloc(sizeof(Oid) * desc->natts);
	typmods = palloc(sizeof(int32) * desc->natts);
	key_names = palloc(sizeof(char *) * desc->natts);
	key_types = palloc(sizeof(Oid) * desc->natts);
	key_typmods = palloc(sizeof(int32) * desc->natts);
	spec->value_attnos = palloc(sizeof(int) * desc->natts);
	spec->key_attnos = palloc(sizeof(int) * desc->natts);
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (kind_of[a] < 0)
		{
			names[spec->nvalue] = NameStr(att->attname);
			types[spec->nvalue] = att->atttypid;
			typmods[spec->nvalue] = att->atttypmod;
			spec->value_attnos[spec->nvalue++] = a;
		}
		else
		{
			MetaColumn *mc = &spec->cols[kind_of[a]];

			if (mc->kind == META_KEY_FIELD)
			{
				key_names[spec->nkey] = mc->header;
				key_types[spec->nkey] = att->atttypid;
				key_typmods[spec->nkey] = att->atttypmod;
				spec->key_attnos[spec->nkey++] = a;
			}
			else
				mc->conv = meta_text_decoder(att);
		}
	}

	if (spec->nvalue > 0)
	{
		DecodeFormat vf = decode_format_from_name(format);

		if (vf == DECODE_TEXT && spec->nvalue != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a text source has exactly one value column, not %d", spec->nvalue),
					 errhint("The whole payload is that column's value; the others must be METADATA columns.")));
		spec->value = decoder_create(vf, spec->nvalue, names, types, typmods);
		decoder_attach_source(spec->value, source);
	}
	if (spec->nkey > 0)
	{
		DecodeFormat kf = decode_format_from_name(key_format ? key_format : "text");

		check_key_format(kf, key_format);
		if (kf == DECODE_TEXT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata columns of the key's fields need a key format"),
					 errhint("Give key_format => 'json' (fields by name) or 'csv' (by position); METADATA FROM 'key' takes the whole key.")));
		spec->key = decoder_create(kf, spec->nkey, key_names, key_types, key_typmods);
	}
	else if (key_format != NULL)
	{
		DecodeFormat kf = decode_format_from_name(key_format);	/* a known format */

		check_key_format(kf, key_format);
	}

	spec->scratch_values = palloc(sizeof(Datum) * desc->natts);
	spec->scratch_nulls = palloc(sizeof(bool) * desc->natts);

	/* The outer decoder holds the spec only; its format is the value's. */
	dec = palloc0(sizeof(Decoder));
	dec->format = decode_format_from_name(format);
	dec->ncols = desc->natts;
	dec->encoding = GetDatabaseEncoding();
	dec->meta = spec;
	return dec;
}

bool
decoder_wants_headers(Decoder *dec)
{
	return dec->meta != NULL && dec->meta->wants_headers;
}

/* Unix milliseconds as timestamptz text in UTC, which both timestamp types read. */
static char *
meta_timestamp_text(int64 ms)
{
	TimestampTz ts = ms * 1000 - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return NULL;
	return psprintf("%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * The text (or bytes) of one metadata column; false and *error if the
 * message's metadata cannot be text in the database encoding.
 */
static bool
meta_column_text(Decoder *dec, MetaColumn *mc, const DecodeMeta *meta,
				 const char **text, size_t *len, char **error)
{
	const char *colname = mc->conv ? mc->conv->cols[0].name : "";

	*text = NULL;
	*len = 0;
	if (meta == NULL)
		return true;
	switch (mc->kind)
	{
		case META_KEY:
			*text = meta->key;
			*len = meta->key_len;
			return true;
		case META_PARTITION:
			if (meta->partition >= 0)
				*text = psprintf("%d", meta->partition);
			break;
		case META_OFFSET:
			if (meta->offset >= 0)
				*text = psprintf(INT64_FORMAT, meta->offset);
			break;
		case META_TIMESTAMP:
			if (meta->timestamp_ms >= 0)
				*text = meta_timestamp_text(meta->timestamp_ms);
			break;
		case META_HEADER:
			/* the last one of that name, as Kafka's lastHeader() */
			for (int i = meta->nheaders - 1; i >= 0; i--)
				if (strcmp(meta->header_names[i], mc->header) == 0)
				{
					*text = meta->header_values[i];
					*len = meta->header_lens[i];
					return true;
				}
			return true;
		case META_HEADERS:
			{
				StringInfoData buf;

				if (meta->nheaders == 0)
					return true;
				initStringInfo(&buf);
				appendStringInfoChar(&buf, '{');
				for (int i = 0; i < meta->nheaders; i++)
				{
					const char *v = meta->header_values[i];
					size_t		vlen = meta->header_lens[i];

					if (v != NULL &&
						pg_encoding_verifymbstr(dec->encoding, v, (int) vlen) < (int) vlen)
					{
						*error = psprintf("column \"%s\": header \"%s\" is not valid %s (invalid byte sequence or NUL byte)",
										  colname, meta->header_names[i], GetDatabaseEncodingName());
						return false;
					}
					if (pg_encoding_verifymbstr(dec->encoding, meta->header_names[i],
												strlen(meta->header_names[i])) < (int) strlen(meta->header_names[i]))
					{
						*error = psprintf("column \"%s\": a header name is not valid %s",
										  colname, GetDatabaseEncodingName());
						return false;
					}
					if (i > 0)
						appendStringInfoString(&buf, ", ");
					escape_json(&buf, meta->header_names[i]);
					appendStringInfoString(&buf, ": ");
					if (v == NULL)
						appendStringInfoString(&buf, "null");
					else
						escape_json(&buf, pnstrdup(v, vlen));
				}
				appendStringInfoChar(&buf, '}');
				*text = buf.data;
				*len = buf.len;
				return true;
			}
		case META_KEY_FIELD:
			break;
	}
	if (*text)
		*len = strlen(*text);
	return true;
}

bool
decode_kafka_message(Decoder *dec, const char *payload, size_t len,
					 const DecodeMeta *meta, Datum *values, bool *nulls,
					 char **error)
{
	DecodeMetaSpec *spec = dec->meta;

	if (spec == NULL)
		return decode_message(dec, payload, len, values, nulls, error);

	*error = NULL;
	for (int a = 0; a < dec->ncols; a++)
	{
		values[a] = (Datum) 0;
		nulls[a] = true;
	}

	/* The value: its error text is the one a source without metadata gives. */
	if (spec->value != NULL)
	{
		if (!decode_message(spec->value, payload, len, spec->scratch_values,
							spec->scratch_nulls, error))
			return false;
		for (int i = 0; i < spec->nvalue; i++)
		{
			values[spec->value_attnos[i]] = spec->scratch_values[i];
			nulls[spec->value_attnos[i]] = spec->scratch_nulls[i];
		}
	}

	/* The key's fields; no key at all leaves them NULL. */
	if (spec->key != NULL && meta != NULL && meta->key != NULL)
	{
		if (!decode_message(spec->key, meta->key, meta->key_len, spec->scratch_values,
							spec->scratch_nulls, error))
		{
			/* the key decoder speaks of its input as the payload */
			*error = strncmp(*error, "payload ", 8) == 0 ?
				psprintf("key %s", *error + 8) : psprintf("key: %s", *error);
			return false;
		}
		for (int i = 0; i < spec->nkey; i++)
		{
			values[spec->key_attnos[i]] = spec->scratch_values[i];
			nulls[spec->key_attnos[i]] = spec->scratch_nulls[i];
		}
	}

	for (int i = 0; i < spec->nmeta; i++)
	{
		MetaColumn *mc = &spec->cols[i];
		const char *text;
		size_t		tlen;

		if (mc->kind == META_KEY_FIELD)
			continue;
		if (!meta_column_text(dec, mc, meta, &text, &tlen, error))
			return false;
		if (text == NULL)
		{
			/* a non-strict input function (a domain's) must see NULL too */
			mc->conv->fields[0] = NULL;
			if (!mc->conv->cols[0].input.fn_strict &&
				!convert_fields(mc->conv, &values[mc->attno], &nulls[mc->attno], error))
				return false;
			continue;
		}
		/* a key or header is bytes: say which, if they are not text */
		if ((mc->kind == META_KEY || mc->kind == META_HEADER) && !mc->is_bytea &&
			pg_encoding_verifymbstr(dec->encoding, text, (int) Min(tlen, PG_INT32_MAX)) < (int) tlen)
		{
			*error = psprintf("column \"%s\": the %s is not valid %s (invalid byte sequence or NUL byte)",
							  mc->conv->cols[0].name,
							  mc->kind == META_KEY ? "key" : psprintf("header \"%s\"", mc->header),
							  GetDatabaseEncodingName());
			return false;
		}
		if (mc->is_bytea)
		{
			bytea	   *b;

			if (tlen >= MaxAllocSize - VARHDRSZ)
			{
				*error = psprintf("column \"%s\": value of %zu bytes is too large",
								  mc->conv->cols[0].name, tlen);
				return false;
			}
			b = palloc(tlen + VARHDRSZ);
			SET_VARSIZE(b, tlen + VARHDRSZ);
			memcpy(VARDATA(b), text, tlen);
			values[mc->attno] = PointerGetDatum(b);
			nulls[mc->attno] = false;
			continue;
		}
		if (!decode_message(mc->conv, text, tlen, &values[mc->attno], &nulls[mc->attno], error))
		{
			/* name the column, and where its text came from */
			if (strncmp(*error, "column ", 7) != 0)
				*error = psprintf("column \"%s\": %s", mc->conv->cols[0].name, *error);
			return false;
		}
	}
	return true;
}

/*
 * streamflink._metadata_columns(columns text, OUT columns text, OUT metadata jsonb)
 *
 * Splits METADATA clauses off a column list: "part int METADATA FROM
 * 'partition'" becomes "part int" and {"part": "partition"}; a bare
 * METADATA names the key by the column's name.  Columns are separated by
 * top-level commas (not inside parentheses or quotes); a clause is the
 * word METADATA after the column's name and type, then optionally FROM
 * and a string literal, then optionally VIRTUAL (Flink's word; every
 * metadata column here is read-only anyway).
 */
PG_FUNCTION_INFO_V1(streamflink_metadata_columns);

typedef struct ColWord
{
	int			start;
	int			end;			/* exclusive */
} ColWord;

static void
metadata_syntax_error(const char *item, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("invalid METADATA column \"%s\"", item),
			 errdetail("%s", detail),
			 errhint("Write name type METADATA [FROM 'key'], for example: part int METADATA FROM 'partition'. " METADATA_KEYS_HINT)));
}

/* An SQL string literal's value ('it''s'), or NULL if w is not one. */
static char *
sql_literal_value(const char *s, ColWord w)
{
	StringInfoData buf;

	if (w.end - w.start < 2 || s[w.start] != '\'' || s[w.end - 1] != '\'')
		return NULL;
	initStringInfo(&buf);
	for (int i = w.start + 1; i < w.end - 1; i++)
	{
		if (s[i] == '\'' && i + 1 < w.end - 1 && s[i + 1] == '\'')
			i++;
		appendStringInfoChar(&buf, s[i]);
	}
	return buf.data;
}

/* A column name as Postgres reads it: "Quoted" verbatim, else folded to lower case. */
static char *
column_name_value(const char *s, ColWord w)
{
	if (s[w.start] == '"')
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (int i = w.start + 1; i < w.end - 1; i++)
		{
			if (s[i] == '"' && i + 1 < w.end - 1 && s[i + 1] == '"')
				i++;
			appendStringInfoChar(&buf, s[i]);
		}
		return buf.data;
	}
	return downcase_identifier(s + w.start, w.end - w.start, false, false);
}

Datum
streamflink_metadata_columns(PG_FUNCTION_ARGS)
{
	char	   *cols = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			len = strlen(cols);
	StringInfoData out;
	StringInfoData meta;
	int			nmeta = 0;
	int			item_start = 0;
	TupleDesc	result_desc;
	Datum		result[2];
	bool		result_nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	initStringInfo(&out);
	initStringInfo(&meta);
	appendStringInfoChar(&meta, '{');

	while (item_start <= len)
	{
		ColWord		words[64];
		int			nwords = 0;
		int			depth = 0;
		int			i = item_start;
		int			mword = -1;
		char	   *item;

		/* Words of one column, up to a top-level comma or the end. */
		while (i < len && !(depth == 0 && cols[i] == ','))
		{
			char		c = cols[i];

			if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			{
				i++;
				continue;
			}
			if (nwords < lengthof(words))
				words[nwords].start = i;
			while (i < len)
			{
				c = cols[i];
				if (c == '"' || c == '\'')
				{
					char		q = c;

					i++;
					while (i < len && !(cols[i] == q && !(i + 1 < len && cols[i + 1] == q)))
						i += (cols[i] == q) ? 2 : 1;
					if (i < len)
						i++;
					continue;
				}
				if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
				else if (depth == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ','))
					break;
				i++;
			}
			if (nwords < lengthof(words))
				words[nwords].end = i;
			nwords++;
		}
		item = pnstrdup(cols + item_start, i - item_start);

		/* METADATA after the name and at least one word of type */
		for (int w = 2; w < nwords && w < lengthof(words); w++)
			if (words[w].end - words[w].start == 8 &&
				pg_strncasecmp(cols + words[w].start, "metadata", 8) == 0)
			{
				mword = w;
				break;
			}

		if (mword < 0)
			appendBinaryStringInfo(&out, cols + item_start, i - item_start);
		else
		{
			char	   *name = column_name_value(cols, words[0]);
			char	   *key = NULL;
			int			w = mword + 1;
			MetaKind	kind;
			const char *field;

			if (nwords > lengthof(words))
				metadata_syntax_error(item, "Too many words.");
			if (w < nwords && words[w].end - words[w].start == 4 &&
				pg_strncasecmp(cols + words[w].start, "from", 4) == 0)
			{
				if (w + 1 >= nwords || (key = sql_literal_value(cols, words[w + 1])) == NULL)
					metadata_syntax_error(item, "FROM takes a string literal.");
				w += 2;
			}
			if (w < nwords && words[w].end - words[w].start == 7 &&
				pg_strncasecmp(cols + words[w].start, "virtual", 7) == 0)
				w++;
			if (w < nwords)
				metadata_syntax_error(item, "Nothing may follow METADATA [FROM 'key'] [VIRTUAL].");
			if (key == NULL)
				key = name;
			if (!meta_parse_key(key, &kind, &field))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown metadata key \"%s\" of column \"%s\"", key, name),
						 errhint(METADATA_KEYS_HINT)));
			/* the column without its clause */
			appendStringInfoString(&out, " ");
			appendBinaryStringInfo(&out, cols + words[0].start, words[mword - 1].end - words[0].start);
			if (nmeta++ > 0)
				appendStringInfoString(&meta, ", ");
			escape_json(&meta, name);
			appendStringInfoString(&meta, ": ");
			escape_json(&meta, key);
		}
		if (i >= len)
			break;
		appendStringInfoChar(&out, ',');
		item_start = i + 1;
	}
	appendStringInfoChar(&meta, '}');

	result[0] = CStringGetTextDatum(out.data);
	if (nmeta > 0)
		result[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(meta.data));
	else
	{
		result[1] = (Datum) 0;
		result_nulls[1] = true;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
													  result, result_nulls)));
}

/*
 * streamflink._check_metadata(row_type regtype, format text, key_format text,
 *							   metadata jsonb): builds the source's decoder,
 * which checks everything (columns, keys, formats), and throws it away.
 */
PG_FUNCTION_INFO_V1(streamflink_check_metadata);

Datum
streamflink_check_metadata(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	char	   *metadata = NULL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_VOID();
	if (!PG_ARGISNULL(3))
		metadata = DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(3)));
	desc = lookup_rowtype_tupdesc_copy(PG_GETARG_OID(0), -1);
	(void) decoder_create_with_metadata(text_to_cstring(PG_GETARG_TEXT_PP(1)),
										PG_ARGISNULL(2) ? "text" : text_to_cstring(PG_GETARG_TEXT_PP(2)),
										metadata, desc, NULL);
	PG_RETURN_VOID();
}

/*
 * streamflink._decode_message(format, key_format, metadata, NULL::row_type,
 *		payload, key, headers jsonb, partition, offset, timestamp, owner,
 *		OUT row, OUT error): as _decode, for a whole message.
 */
PG_FUNCTION_INFO_V1(streamflink_decode_message);

Datum
streamflink_decode_message(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Oid			row_type = decode_check_args(fcinfo, 3, &result_desc);
	TupleDesc	row_desc;
	Decoder    *dec;
	DecodeMeta	meta;
	Datum	   *values;
	bool	   *nulls;
	char	   *error = NULL;
	const char *data = NULL;
	size_t		len = 0;
	bool		ok;

	row_desc = lookup_rowtype_tupdesc_copy(row_type, -1);
	dec = decoder_create_with_metadata(text_to_cstring(PG_GETARG_TEXT_PP(0)),
									   PG_ARGISNULL(1) ? "text" : text_to_cstring(PG_GETARG_TEXT_PP(1)),
									   PG_ARGISNULL(2) ? NULL :
									   DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(2))),
									   row_desc, NULL);
	values = palloc(sizeof(Datum) * row_desc->natts);
	nulls = palloc(sizeof(bool) * row_desc->natts);
	if (!PG_ARGISNULL(4))
	{
		bytea	   *payload = PG_GETARG_BYTEA_PP(4);

		data = VARDATA_ANY(payload);
		len = VARSIZE_ANY_EXHDR(payload);
	}

	memset(&meta, 0, sizeof(meta));
	if (!PG_ARGISNULL(5))
	{
		bytea	   *key = PG_GETARG_BYTEA_PP(5);

		meta.key = VARDATA_ANY(key);
		meta.key_len = VARSIZE_ANY_EXHDR(key);
	}
	/* headers: a JSON object of name: string (or null) */
	if (!PG_ARGISNULL(6))
	{
		Jsonb	   *jb = PG_GETARG_JSONB_P(6);
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			n = 0;
		int			alloc;

		if (!JB_ROOT_IS_OBJECT(jb))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("headers must be a JSON object of name: value")));
		alloc = Max(JB_ROOT_COUNT(jb), 1);
		meta.header_names = palloc(sizeof(char *) * alloc);
		meta.header_values = palloc(sizeof(char *) * alloc);
		meta.header_lens = palloc(sizeof(size_t) * alloc);
		it = JsonbIteratorInit(&jb->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				meta.header_names[n] = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE)
			{
				if (v.type == jbvNull)
				{
					meta.header_values[n] = NULL;
					meta.header_lens[n] = 0;
				}
				else if (v.type == jbvString)
				{
					meta.header_values[n] = pnstrdup(v.val.string.val, v.val.string.len);
					meta.header_lens[n] = v.val.string.len;
				}
				else
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("header \"%s\" must be a JSON string or null", meta.header_names[n])));
				n++;
			}
		}
		meta.nheaders = n;
	}
	meta.partition = PG_ARGISNULL(7) ? -1 : PG_GETARG_INT32(7);
	meta.offset = PG_ARGISNULL(8) ? -1 : PG_GETARG_INT64(8);
	meta.timestamp_ms = -1;
	if (!PG_ARGISNULL(9))
	{
		TimestampTz ts = PG_GETARG_TIMESTAMPTZ(9);

		if (!TIMESTAMP_NOT_FINITE(ts))
		{
			int64		us = ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

			meta.timestamp_ms = us >= 0 ? us / 1000 : -1;
		}
	}

	if (PG_NARGS() > 10 && !PG_ARGISNULL(10))
	{
		RunAs		as;

		decode_check_owner(PG_GETARG_OID(10));
		run_as_role(PG_GETARG_OID(10), &as);
		ok = decode_kafka_message(dec, data, len, &meta, values, nulls, &error);
		run_as_restore(&as);
	}
	else
		ok = decode_kafka_message(dec, data, len, &meta, values, nulls, &error);

	PG_RETURN_DATUM(decode_result(result_desc, row_desc, ok, values, nulls, error));
}
