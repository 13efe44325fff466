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

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "decode.h"

typedef struct DecodeColumn
{
	char	   *name;
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

	/* json parse state */
	JsonSemAction sem;
	JsonLexContext *lex;
	int			jfield;			/* column of the current top-level key, or -1 */
	char	   *nest_start;		/* start of a nested value being captured */
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
name_hash(const char *s)
{
	uint32		h = 2166136261u;

	while (*s)
	{
		h ^= (unsigned char) *s++;
		h *= 16777619u;
	}
	return h;
}

static int
lookup_column(Decoder *dec, const char *name)
{
	uint32		i = name_hash(name) & dec->hashmask;

	for (;;)
	{
		int			c = dec->hash[i];

		if (c < 0)
			return -1;
		if (strcmp(dec->cols[c].name, name) == 0)
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
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown payload format \"%s\"", name),
			 errhint("Valid formats are \"json\", \"csv\" and \"text\".")));
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

	for (i = 0; i < ncols; i++)
	{
		DecodeColumn *col = &dec->cols[i];
		Oid			infunc;

		col->name = pstrdup(names[i]);
		col->type = types[i];
		col->typmod = typmods ? typmods[i] : -1;
		getTypeInputInfo(col->type, &infunc, &col->typioparam);
		/* fn_extra caches (domain_in, array_in...) must outlive a message */
		fmgr_info_cxt(infunc, &col->input, CurrentMemoryContext);
		col->pure = type_input_is_pure(col->type);
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
			uint32		h = name_hash(dec->cols[i].name) & dec->hashmask;

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

bool
decode_message(Decoder *dec, const char *payload, size_t len,
			   Datum *values, bool *nulls, char **error)
{
	MemoryContext callercxt = CurrentMemoryContext;
	int			validlen;
	volatile bool ok = false;

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
	validlen = pg_encoding_verifymbstr(dec->encoding, payload, (int) len);
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
		dec->jfield = lookup_column(dec, fname);
}

static void
json_scalar(void *state, char *token, JsonTokenType tokentype)
{
	Decoder    *dec = (Decoder *) state;

	if (dec->lex->lex_level == 1 && dec->jfield >= 0)
	{
		/* a later duplicate key overrides an earlier one, null included */
		dec->fields[dec->jfield] =
			(tokentype == JSON_TOKEN_NULL) ? NULL : token;
	}
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
