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

#endif							/* STREAMFLINK_DECODE_H */
