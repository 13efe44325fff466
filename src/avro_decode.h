/*-------------------------------------------------------------------------
 *
 * avro_decode.h
 *	  Decoding Avro payloads (inline writer schema, or the Confluent wire
 *	  format with a schema registry) into typed Postgres rows.
 *
 * A source of format 'avro' names its writer schema; every message is one
 * Avro binary datum of it.  A source of format 'avro-confluent' reads the
 * Confluent wire format: a zero magic byte, a 4-byte big-endian schema id,
 * then the datum.  Each id is resolved once per decoder: from
 * streamflink.avro_schema (schemas a worker already resolved for the
 * source), else from the registry (schema_registry.h); a worker stores what
 * the registry answered in streamflink.avro_schema and commits it at once,
 * through a short-lived background worker (its own transaction is the
 * epoch's, which commits only with the next checkpoint), before the message
 * goes further: a replay after a crash never needs the registry.
 *
 * Columns map to the record's fields by name.  The reader schema is the
 * source's avro_schema for 'avro-confluent' when one is given (Avro's
 * schema resolution: promotions, unions, a field missing from the writer
 * takes the reader's default), else it is derived from the columns: a
 * column the writer lacks is NULL, a field no column names is skipped.
 * Values convert directly where the types agree (int, long, float,
 * double, boolean, string, bytes; the logical types date, time-millis/
 * micros, timestamp-millis/micros, local-timestamp-millis/micros and
 * decimal) and otherwise through the column type's input function; records,
 * arrays and maps go to json/jsonb columns as JSON.
 *
 * Every payload is first walked against its writer schema with bounds
 * checks (lengths, counts, union and enum indexes, varint sizes, nesting
 * depth, element budget) before avro-c reads it, so a truncated or hostile
 * payload is a dead letter, never an out-of-bounds read or a huge
 * allocation.
 *
 * Memory: the decoder and its plans (at most AVRO_MAX_PLANS writer schemas,
 * least recently used dropped first) live in the context it was created in;
 * avro-c's objects (malloc'd by avro-c) are released by a reset callback of
 * that context.  Decoded values are palloc'd in CurrentMemoryContext.
 * Threads: none; registry requests run on the caller's thread.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_AVRO_DECODE_H
#define STREAMFLINK_AVRO_DECODE_H

#include "decode.h"

typedef struct AvroDecoder AvroDecoder;

/*
 * A decoder for a source's columns.  'confluent': the wire format with
 * schema ids resolved through 'registry'; else 'schema' is the writer
 * schema.  With 'confluent', 'schema' (may be NULL) is the reader schema.
 * 'source_id' keys the persisted schemas (0: none, nothing persisted);
 * 'owner' is whose registry URL it is (schema_registry_hosts applies).
 * ereports if a schema does not parse.
 */
extern AvroDecoder *avro_decoder_create(bool confluent, const char *schema,
										const char *registry, int32 source_id,
										Oid owner, int ncols, char **names,
										Oid *types, int32 *typmods);

/*
 * Decode one payload (see decode_message); column values that need an
 * input function go through decode_column_input(dec, ...).
 */
extern bool avro_decode(AvroDecoder *ad, Decoder *dec, const char *payload,
						size_t len, Datum *values, bool *nulls, char **error);

#endif							/* STREAMFLINK_AVRO_DECODE_H */
