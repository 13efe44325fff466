/*-------------------------------------------------------------------------
 *
 * catalog.h
 *	  Reading source and pipeline definitions from the catalog tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_CATALOG_H
#define STREAMFLINK_CATALOG_H

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

typedef enum WindowKind
{
	WINDOW_TUMBLE,
	WINDOW_HOP,
	WINDOW_SESSION
} WindowKind;

typedef enum PipelineKind
{
	PIPELINE_WINDOW,
	PIPELINE_PATTERN,
	PIPELINE_STATELESS			/* filter and projection (sql_pipeline.h) */
} PipelineKind;

typedef struct SourceDef
{
	int32		id;
	char	   *name;
	char	   *brokers;
	char	   *topic;
	char	   *format;
	Oid			row_type;		/* composite type of decoded rows */
	char	   *event_time_name;	/* NULL: Kafka timestamp */
	int			event_time_attno;	/* 0-based column, -1: Kafka timestamp */
	Oid			event_time_type;	/* TIMESTAMPTZOID or TIMESTAMPOID */
	int64		max_out_of_orderness;	/* microseconds */
	int64		idle_timeout;	/* microseconds, -1 for none */
	List	   *options;		/* librdkafka "name=value" strings */
	Oid			owner;			/* the source's owner, who set the options */
	/* start position (the pipeline's, else the source's) and metadata columns */
	char	   *start_position; /* canonical, see kafka_source.h */
	char	   *key_format;		/* format of the key's fields */
	char	   *metadata;		/* jsonb text {"column": "key", ...}, or NULL */
	/* avro: writer schema; avro-confluent: reader schema (NULL: derived) */
	char	   *avro_schema;
	char	   *schema_registry;	/* avro-confluent: registry URL */
} SourceDef;

typedef struct PipelineDef
{
	int32		id;
	char	   *name;
	bool		running;		/* desired state */
	PipelineKind kind;
	SourceDef	source;
	int			nkeys;
	int		   *key_attnos;		/* 0-based columns of the source row */
	WindowKind	window_kind;
	int64		size;			/* microseconds: tumble, hop */
	int64		slide;			/* hop; equals size for tumble */
	int64		gap;			/* session */
	int64		allowed_lateness;
	int64		checkpoint_interval;
	Oid			owner;			/* the role user code runs as (run_as.h) */
	char	   *aggregates;		/* as written, for display */
	char	   *aggregates_tree;	/* analysed at creation (agg_spec_load) */
	Oid			sink_relid;
	/* pattern pipelines (see pattern.h) */
	char	   *pattern;
	char	   *define;
	char	   *measures;		/* NULL: none */
	char	   *skip;			/* after-match skip strategy */
	char	   *pattern_tree;	/* define and measures, analysed (pattern_load) */
	int64		within;			/* microseconds, -1 for none */
	Oid			timed_out_relid;	/* InvalidOid: timed-out matches dropped */
	int			max_partial_matches;	/* per key, see cep.c */
	int			max_partial_match_events;	/* events they hold, per key */
	/* RocksDB tuning (state_tuning.h); NULL: the server's defaults */
	char	   *state_profile;
	char	   *state_options;
	/* pipelines written as a query (sql_pipeline.h); NULL: none */
	char	   *query_tree;
	/* Kafka sink (kafka_sink.h); sink_topic NULL: the Postgres table sink */
	char	   *sink_topic;
	char	   *sink_brokers;
	char	   *sink_format;
	List	   *sink_options;	/* librdkafka "name=value" strings */
	/* parallel pipelines (parallel.h): tasks, each a background worker */
	int			parallelism;
	bool		unaligned_checkpoints;	/* checkpoint_mode 'unaligned' */
	int64		aligned_checkpoint_timeout; /* microseconds, -1 for none */
	/* two-stage aggregation (local_agg.h): -1 automatic (NULL), 0 off, 1 on */
	int			local_aggregation;
} PipelineDef;

/*
 * Load a pipeline (by id, or by name when name != NULL) and its source.
 * Must run inside a transaction; connects to SPI itself.  Returns NULL if
 * there is no such pipeline.
 */
extern PipelineDef *catalog_load_pipeline(int32 id, const char *name);

/*
 * What a loaded pipeline refers to by OID still exists: its owner, the
 * source's row type and event time column, the sink and timed-out tables.
 * ereports a clear error if not (a worker shows it as its status).
 */
extern void catalog_check_pipeline(PipelineDef *def);

#endif							/* STREAMFLINK_CATALOG_H */
