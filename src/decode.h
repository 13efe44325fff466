/*-------------------------------------------------------------------------
 *
 * decode.h
 *	  Decoding Kafka payloads (json, csv, text) into typed Postgres rows.
 *
 * Values are converted with each column type's own input function, so every
 * Postgres type works.  A payload that cannot be decoded is reported by
 * returning false with an error text (destined for the dead-letter table);
 * it never raises an error.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_DECODE_H
#define STREAMFLINK_DECODE_H

#include "access/tupdesc.h"

typedef enum DecodeFormat
{
	DECODE_JSON,
	DECODE_CSV,
	DECODE_TEXT,
	DECODE_AVRO,				/* avro_decode.h */
	DECODE_AVRO_CONFLUENT
} DecodeFormat;

typedef struct Decoder Decoder;

/* Parse a format name; ereports ERROR with a hint if unknown. */
extern DecodeFormat decode_format_from_name(const char *name);

/*
 * Create a decoder for 'ncols' columns.  For json, columns are matched by
 * name against the top-level object's keys (a missing key or a JSON null
 * gives SQL NULL); for csv, by position (an empty unquoted field gives
 * NULL); for text, the whole payload is the single column.
 * Allocated in CurrentMemoryContext.
 */
extern Decoder *decoder_create(DecodeFormat format, int ncols,
							   char **names, Oid *types, int32 *typmods);

/* The same, for the columns of a row type's tuple descriptor. */
extern Decoder *decoder_create_for_desc(DecodeFormat format, TupleDesc desc);

/*
 * A source's decoder: its format, over the columns of 'desc', with what the
 * format needs of the source (Avro: schema, registry, persisted schemas).
 */
struct SourceDef;
extern Decoder *decoder_create_for_source(const struct SourceDef *source,
										  TupleDesc desc);

/*
 * Column 'col' from text through its type's input function, as the text
 * formats convert (a subtransaction for types whose input is not pure);
 * NULL str: SQL NULL (a non-strict input function still sees it).  For
 * binary formats that convert most values directly (avro_decode.c).
 */
extern bool decode_column_input(Decoder *dec, int col, char *str,
								Datum *value, char **error);

/*
 * Decode one payload into values/nulls (arrays of ncols).  Pass-by-reference
 * values are allocated in CurrentMemoryContext.  Returns false and sets
 * *error (palloc'd) if the payload is malformed or a value does not convert.
 */
extern bool decode_message(Decoder *dec, const char *payload, size_t len,
						   Datum *values, bool *nulls, char **error);

/* streamflink.json_fast_path */
extern void decode_define_settings(void);

/*
 * Metadata columns: source columns filled from the Kafka message rather
 * than its value (the key, a key's fields, headers, partition, offset,
 * broker timestamp).  What a message carries besides its value:
 */
typedef struct DecodeMeta
{
	const char *key;			/* NULL: no key */
	size_t		key_len;
	int32		partition;		/* < 0: unknown (NULL) */
	int64		offset;			/* < 0: unknown (NULL) */
	int64		timestamp_ms;	/* Unix ms; < 0: none (NULL) */
	int			nheaders;		/* set only if decoder_wants_headers() */
	const char **header_names;
	const char **header_values; /* NULL: a header with a null value */
	size_t	   *header_lens;
} DecodeMeta;

/*
 * A decoder for a source: its value format over the columns the metadata
 * map (jsonb text {"column": "key" | "key.<field>" | "partition" | "offset"
 * | "timestamp" | "headers" | "header:<name>"}, or NULL) leaves, the
 * key's fields (key.<field> columns) decoded with key_format, and the
 * metadata columns through their types' input functions.  ereports ERROR
 * (with a hint) for a map that does not fit the row type.  'source' (may be
 * NULL) gives the value format what it needs of its source (Avro), as
 * decoder_create_for_source does; a source with metadata columns is built
 * here by decoder_create_for_source.
 */
extern Decoder *decoder_create_with_metadata(const char *format, const char *key_format,
											 const char *metadata, TupleDesc desc,
											 const struct SourceDef *source);

/* Whether the decoder has a column from headers (fill meta->header_*). */
extern bool decoder_wants_headers(Decoder *dec);

/*
 * decode_message() for a whole message; meta may be NULL (metadata
 * columns then NULL).  A metadata value its column's type refuses, or a
 * key that does not decode, is an error as a bad payload is.  A decoder
 * without metadata columns decodes the payload alone.
 */
extern bool decode_kafka_message(Decoder *dec, const char *payload, size_t len,
								 const DecodeMeta *meta, Datum *values, bool *nulls,
								 char **error);

#endif							/* STREAMFLINK_DECODE_H */
