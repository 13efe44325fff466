/* streamflink 0.1 -> 0.2: the runtime seams (checkpoint coordinator with
 * participants, sink interface, one key space and timer service).
 *
 * streamflink--0.1.sql is the released 0.1 and stays as it was: a fresh
 * CREATE EXTENSION runs it and then this script, and ALTER EXTENSION
 * streamflink UPDATE brings a 0.1 installation to the same catalog.  Every
 * catalog change of 0.2 goes here, never into the 0.1 script.
 */
\echo Use "ALTER EXTENSION streamflink UPDATE TO '0.2'" to load this file. \quit

/*
 * Checkpoint coordinator: a checkpoint row records the pipeline watermark
 * (read back at recovery; 0.1 kept it in RocksDB, under a key outside any
 * key group) and the format of its state snapshot.  Rows written by 0.1
 * get format 1 (their snapshots hold 0.1's key layout, which this release
 * refuses to read, naming the release); the default is then dropped, so
 * that every new row says which format it holds.
 */
ALTER TABLE streamflink.checkpoint ADD COLUMN watermark timestamptz;
ALTER TABLE streamflink.checkpoint ADD COLUMN state_format int NOT NULL DEFAULT 1;
ALTER TABLE streamflink.checkpoint ALTER COLUMN state_format DROP DEFAULT;
COMMENT ON COLUMN streamflink.checkpoint.watermark IS
	'pipeline watermark when the checkpoint was taken (NULL: none yet)';
COMMENT ON COLUMN streamflink.checkpoint.state_format IS
	'format of the state snapshot: 1 = streamflink 0.1, 2 = streamflink 0.2';

/* ---- Deterministic operator entry points for tests (src/run_operator.c) ----
 *
 * A pipeline's operator over given events with explicit watermarks, in the
 * calling backend, returning every row it emitted (sink rows with their
 * operation, late events, dead letters) and writing nothing.  watermarks[i]
 * (NULL: no move) is the watermark after events[i]; at the end it moves to
 * final_watermark ('infinity': the end of input, which fires everything;
 * NULL: no move).  For superusers and the pipeline's owners; the pipeline
 * may be running.
 */
CREATE FUNCTION streamflink.run_operator(pipeline text, events text[],
	watermarks timestamptz[] DEFAULT NULL,
	final_watermark timestamptz DEFAULT 'infinity')
RETURNS TABLE (ord int, event int, watermark timestamptz, output text, op text,
			   key jsonb, data jsonb, reason text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'streamflink_run_operator';
REVOKE ALL ON FUNCTION streamflink.run_operator(text, text[], timestamptz[], timestamptz)
	FROM PUBLIC;
/* It checks the pipeline's owner itself, and writes no table. */
GRANT EXECUTE ON FUNCTION streamflink.run_operator(text, text[], timestamptz[], timestamptz)
	TO streamflink_user;

/* ---- State tuning and native metrics (src/state_tuning.c, src/state_metrics.c) ----
 *
 * A pipeline's RocksDB profile and option string (NULL: the server's
 * defaults, streamflink.state_profile and streamflink.state_options, at the
 * worker's start).  Checked for the row's owner by a trigger, as every
 * other definition column is: tenants may insert pipeline rows themselves.
 */
ALTER TABLE streamflink.pipeline ADD COLUMN state_profile text
	CHECK (state_profile IN ('default', 'write_heavy', 'read_heavy', 'large_state'));
ALTER TABLE streamflink.pipeline ADD COLUMN state_options text;
COMMENT ON COLUMN streamflink.pipeline.state_profile IS
	'RocksDB profile: default, write_heavy, read_heavy or large_state (NULL: streamflink.state_profile)';
COMMENT ON COLUMN streamflink.pipeline.state_options IS
	'RocksDB options name=value;... applied after the profile and streamflink.state_options';
GRANT INSERT (state_profile, state_options) ON streamflink.pipeline TO streamflink_user;

/*
 * The RocksDB settings each task of a pipeline of 'owner' (NULL: the
 * caller) with 'parallelism' tasks would run with now, as name=value;...
 * text; an error with a hint when the profile or an option is invalid, or
 * beyond what the owner may use (memory over a task's share of
 * streamflink.state_memory, tasks of under 2MB each, max_open_files=-1,
 * many background jobs: superusers only).
 */
CREATE FUNCTION streamflink.state_settings(profile text DEFAULT NULL, options text DEFAULT NULL,
										   owner regrole DEFAULT NULL, parallelism int DEFAULT 1)
RETURNS text
AS 'MODULE_PATHNAME', 'streamflink_state_settings'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION streamflink.state_settings(text, text, regrole, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.state_settings(text, text, regrole, int) TO streamflink_user;

/*
 * BEFORE INSERT OR UPDATE OF state_profile, state_options, owner ON
 * pipeline.  A profile's name is taken in any case, as the server setting
 * takes it, and kept in lower case (the column's check).  A new owner must
 * be allowed the options too.
 */
CREATE FUNCTION streamflink._pipeline_state_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	NEW.state_profile := lower(NEW.state_profile);
	/* also without options of its own: its tasks' shares must do */
	PERFORM streamflink.state_settings(NEW.state_profile, NEW.state_options, NEW.owner,
									   coalesce(NEW.parallelism, 1));
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._pipeline_state_check() FROM PUBLIC;
CREATE TRIGGER check_state_options BEFORE INSERT OR UPDATE OF state_profile, state_options, owner
	ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_state_check();

/*
 * create_window_pipeline and create_pattern_pipeline take state_profile and
 * state_options (last, so calls written for 0.1 work unchanged).  Bodies
 * as in 0.1 but for the check of the tuning and the two columns.
 */
DROP FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval);
CREATE FUNCTION streamflink.create_window_pipeline(
	name text,
	source text,
	key text,
	"window" text,
	aggregates text,
	sink text,
	size interval DEFAULT NULL,
	slide interval DEFAULT NULL,
	gap interval DEFAULT NULL,
	allowed_lateness interval DEFAULT '0',
	checkpoint_interval interval DEFAULT '1 second',
	state_profile text DEFAULT NULL,
	state_options text DEFAULT NULL,
	sink_topic text DEFAULT NULL,
	sink_brokers text DEFAULT NULL,
	sink_format text DEFAULT 'json',
	sink_options text[] DEFAULT '{}',
	parallelism int DEFAULT 1,
	checkpoint_mode text DEFAULT 'aligned',
	aligned_checkpoint_timeout interval DEFAULT NULL,
	local_aggregation boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
/* No SET search_path: the sink name resolves in the caller's path. */
AS $$
DECLARE
	p_name		text := name;
	s			streamflink.source := streamflink._source(source);
	wkind		text;
	keys		text[] := '{}';
	key_list	text;
	key_defs	text;
	out_names	text[];
	sink_rel	regclass;
	sink_ident	text;
	idx_cols	text;
BEGIN
	PERFORM streamflink._check_new_name('pipeline', p_name, streamflink._name_taken('pipeline', p_name));

	wkind := CASE lower("window")
		WHEN 'tumble' THEN 'tumble' WHEN 'tumbling' THEN 'tumble'
		WHEN 'hop' THEN 'hop' WHEN 'hopping' THEN 'hop' WHEN 'sliding' THEN 'hop'
		WHEN 'session' THEN 'session'
	END;
	IF wkind IS NULL THEN
		RAISE EXCEPTION 'unknown window type: %', coalesce(quote_literal("window"), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use tumble (size), hop (size, slide) or session (gap).';
	END IF;
	PERFORM streamflink._check_duration('window size', size, false);
	PERFORM streamflink._check_duration('window slide', slide, false);
	PERFORM streamflink._check_duration('session gap', gap, false);
	PERFORM streamflink._check_duration('allowed_lateness', allowed_lateness, true);
	PERFORM streamflink._check_duration('checkpoint_interval', checkpoint_interval, false);
	IF allowed_lateness IS NULL THEN
		allowed_lateness := interval '0';
	END IF;
	IF checkpoint_interval IS NULL THEN
		checkpoint_interval := interval '1 second';
	END IF;
	IF wkind = 'tumble' AND (size IS NULL OR slide IS NOT NULL OR gap IS NOT NULL) THEN
		RAISE EXCEPTION 'a tumbling window takes a size only'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example: "window" => ''tumble'', size => ''1 minute''.';
	END IF;
	IF wkind = 'hop' THEN
		IF size IS NULL OR slide IS NULL OR gap IS NOT NULL THEN
			RAISE EXCEPTION 'a hopping window takes a size and a slide'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example: "window" => ''hop'', size => ''5 minutes'', slide => ''30 seconds''.';
		END IF;
		IF slide > size THEN
			RAISE EXCEPTION 'window slide % is larger than window size %', slide, size
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A slide larger than the size would skip events; use a smaller slide.';
		END IF;
		IF streamflink._interval_ms(size) / streamflink._interval_ms(slide) > 1000 THEN
			RAISE EXCEPTION 'window size % is more than 1000 slides of %', size, slide
				USING ERRCODE = 'program_limit_exceeded',
					  HINT = 'Each event is added to size/slide windows; use a larger slide.';
		END IF;
	END IF;
	IF wkind = 'session' AND (gap IS NULL OR size IS NOT NULL OR slide IS NOT NULL) THEN
		RAISE EXCEPTION 'a session window takes a gap only'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example: "window" => ''session'', gap => ''10 minutes''.';
	END IF;

	keys := streamflink._key_columns(s, key);

	/* Every output must be a plain aggregate call over the source's columns. */
	out_names := streamflink._check_aggregates(s.row_type, aggregates);
	IF EXISTS (SELECT 1 FROM unnest(out_names) o WHERE o = ANY (keys || ARRAY['window_start', 'window_end'])) THEN
		RAISE EXCEPTION 'aggregate output name collides with a key column or window_start/window_end'
			USING ERRCODE = 'duplicate_column',
				  HINT = 'Name each aggregate with AS.';
	END IF;

	/* parallel pipelines (see "Parallel pipelines" below) */
	PERFORM streamflink._check_parallelism(create_window_pipeline.parallelism, create_window_pipeline.checkpoint_mode,
										create_window_pipeline.aligned_checkpoint_timeout);

	/* two-stage aggregation (see "Local aggregation" below) */
	PERFORM streamflink._check_local_aggregation(s.row_type, aggregates, wkind,
												 create_window_pipeline.local_aggregation);

	/* RocksDB tuning, before anything is created (the trigger checks again) */
	PERFORM streamflink.state_settings(state_profile, state_options, current_user::regrole,
									   create_window_pipeline.parallelism);

	/*
	 * The sink table: its columns are typed as GROUP BY would type them
	 * (sum(int4) is bigint, avg(float8) is float8, ...), from the analysed
	 * aggregate list, never by splicing the user's text into DDL.  A unique
	 * index on (key, window_start) makes every window appear at most once;
	 * NULLS NOT DISTINCT as GROUP BY groups NULLs.
	 */
	/* A Kafka sink (src/kafka_sink.c): `sink` names its outbox table instead. */
	IF create_window_pipeline.sink_topic IS NOT NULL OR create_window_pipeline.sink_brokers IS NOT NULL THEN
		sink_rel := streamflink._create_kafka_outbox(p_name, sink, create_window_pipeline.sink_topic,
			create_window_pipeline.sink_brokers, create_window_pipeline.sink_format,
			create_window_pipeline.sink_options, checkpoint_interval);
	ELSE
	sink_rel := to_regclass(sink);
	IF sink IS NULL THEN
		RAISE EXCEPTION 'a pipeline needs a sink table name'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF sink_rel IS NOT NULL THEN
		RAISE EXCEPTION 'sink table "%" already exists', sink
			USING ERRCODE = 'duplicate_table',
				  HINT = 'The pipeline creates its sink table; choose a new name or drop the table.';
	END IF;
	SELECT string_agg(quote_ident(x), ', ') INTO key_list FROM unnest(keys) x;
	SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.attname) || ' ' ||
							  pg_catalog.format_type(c.atttype, c.atttypmod) ||
							  CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
								   THEN ' COLLATE ' || a.attcollation::pg_catalog.regcollation::text
								   ELSE '' END,
							  ', ' ORDER BY pg_catalog.array_position(keys, c.attname))
	INTO key_defs
	FROM streamflink._columns(s.row_type) c
	JOIN pg_catalog.pg_attribute a
	  ON a.attrelid = (SELECT ty.typrelid FROM pg_catalog.pg_type ty WHERE ty.oid = s.row_type)
	 AND a.attnum = c.attnum
	JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
	WHERE c.attname = ANY (keys);
	sink_ident := sink;
	EXECUTE pg_catalog.format(
		'CREATE TABLE %s (%s window_start timestamptz NOT NULL, window_end timestamptz NOT NULL, %s)',
		sink_ident, coalesce(key_defs || ',', ''),
		array_to_string(streamflink._aggregate_columns(s.row_type, aggregates), ', '));
	sink_rel := to_regclass(sink);
	idx_cols := coalesce(key_list || ', ', '') || 'window_start';
	EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', sink_rel, idx_cols);
	END IF;	/* Kafka sink */

	INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind,
									  window_size, window_slide, session_gap, aggregates, sink,
									  allowed_lateness, checkpoint_interval,
									  state_profile, state_options,
									  sink_topic, sink_brokers, sink_format, sink_options,
									  parallelism, checkpoint_mode, aligned_checkpoint_timeout,
									  local_aggregation)
	VALUES (p_name, s.id, 'window', keys, wkind, size, slide, gap, aggregates, sink_rel,
			allowed_lateness, checkpoint_interval,
			create_window_pipeline.state_profile, create_window_pipeline.state_options,
			create_window_pipeline.sink_topic, create_window_pipeline.sink_brokers,
			CASE WHEN create_window_pipeline.sink_topic IS NOT NULL THEN create_window_pipeline.sink_format END,
			coalesce(create_window_pipeline.sink_options, '{}'),
			create_window_pipeline.parallelism, create_window_pipeline.checkpoint_mode,
			create_window_pipeline.aligned_checkpoint_timeout,
			create_window_pipeline.local_aggregation);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text, text, text, text, text[], int, text, interval, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text, text, text, text, text[], int, text, interval, boolean) TO streamflink_user;

DROP FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int);
CREATE FUNCTION streamflink.create_pattern_pipeline(
	name text,
	source text,
	key text,
	pattern text,
	define text,
	sink text,
	within interval DEFAULT NULL,
	skip text DEFAULT 'no_skip',
	measures text DEFAULT NULL,
	timed_out text DEFAULT NULL,
	checkpoint_interval interval DEFAULT '1 second',
	max_partial_matches int DEFAULT 10000,
	max_partial_match_events int DEFAULT 100000,
	state_profile text DEFAULT NULL,
	state_options text DEFAULT NULL,
	sink_topic text DEFAULT NULL,
	sink_brokers text DEFAULT NULL,
	sink_format text DEFAULT 'json',
	sink_options text[] DEFAULT '{}',
	parallelism int DEFAULT 1,
	checkpoint_mode text DEFAULT 'aligned',
	aligned_checkpoint_timeout interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
/* No SET search_path: the sink names resolve in the caller's path. */
AS $$
DECLARE
	p_name		text := name;
	s			streamflink.source := streamflink._source(source);
	keys		text[];
	key_defs	text;
	measure_defs text[];
	sink_rel	regclass;
	timed_out_rel regclass;
	m			text;
BEGIN
	PERFORM streamflink._check_new_name('pipeline', p_name, streamflink._name_taken('pipeline', p_name));
	PERFORM streamflink._check_duration('within', within, false);
	PERFORM streamflink._check_duration('checkpoint_interval', checkpoint_interval, false);
	IF checkpoint_interval IS NULL THEN
		checkpoint_interval := interval '1 second';
	END IF;
	IF skip IS NULL THEN
		skip := 'no_skip';
	END IF;
	IF timed_out IS NOT NULL AND within IS NULL THEN
		RAISE EXCEPTION 'a timed_out table needs within'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Partial matches time out only when the pattern has a time bound: within => ''5 minutes''.';
	END IF;
	keys := streamflink._key_columns(s, key);

	/* The pattern, its conditions and measures, compiled by Postgres itself. */
	measure_defs := streamflink._check_pattern(s.row_type, pattern, define, measures, skip,
											   within IS NOT NULL);
	max_partial_matches := coalesce(max_partial_matches, 10000);
	max_partial_match_events := coalesce(max_partial_match_events, 100000);
	IF max_partial_matches < 1 OR max_partial_match_events < 1 THEN
		RAISE EXCEPTION 'invalid bound of partial matches: % partial matches, % events',
			max_partial_matches, max_partial_match_events
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Both bounds must be at least 1.';
	END IF;
	IF streamflink._pattern_min_events(pattern, skip, within IS NOT NULL) > max_partial_match_events THEN
		RAISE EXCEPTION 'pattern needs at least % events per match, more than max_partial_match_events (%)',
			streamflink._pattern_min_events(pattern, skip, within IS NOT NULL), max_partial_match_events
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'A partial match holding more events than the bound is discarded, so this pattern could never match: raise max_partial_match_events or lower the quantifiers.';
	END IF;
	FOREACH m IN ARRAY measure_defs LOOP
		IF split_part(m, ' ', 1) IN (SELECT quote_ident(k) FROM unnest(keys || ARRAY['match_start', 'match_end', 'events']) k) THEN
			RAISE EXCEPTION 'measure name % collides with a key column or match_start/match_end/events', split_part(m, ' ', 1)
				USING ERRCODE = 'duplicate_column',
					  HINT = 'Name each measure with AS.';
		END IF;
	END LOOP;

	/* parallel pipelines (see "Parallel pipelines" below) */
	PERFORM streamflink._check_parallelism(create_pattern_pipeline.parallelism, create_pattern_pipeline.checkpoint_mode,
										create_pattern_pipeline.aligned_checkpoint_timeout);

	/* RocksDB tuning, before anything is created (the trigger checks again) */
	PERFORM streamflink.state_settings(state_profile, state_options, current_user::regrole,
									   create_pattern_pipeline.parallelism);
	/* A Kafka sink (src/kafka_sink.c): `sink` names its outbox table instead. */
	IF create_pattern_pipeline.sink_topic IS NOT NULL OR create_pattern_pipeline.sink_brokers IS NOT NULL THEN
		sink_rel := streamflink._create_kafka_outbox(p_name, sink, create_pattern_pipeline.sink_topic,
			create_pattern_pipeline.sink_brokers, create_pattern_pipeline.sink_format,
			create_pattern_pipeline.sink_options, checkpoint_interval);
	ELSE
	IF sink IS NULL THEN
		RAISE EXCEPTION 'a pipeline needs a sink table name'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF to_regclass(sink) IS NOT NULL THEN
		RAISE EXCEPTION 'sink table "%" already exists', sink
			USING ERRCODE = 'duplicate_table',
				  HINT = 'The pipeline creates its sink table; choose a new name or drop the table.';
	END IF;
	IF timed_out IS NOT NULL AND to_regclass(timed_out) IS NOT NULL THEN
		RAISE EXCEPTION 'table "%" already exists', timed_out
			USING ERRCODE = 'duplicate_table',
				  HINT = 'The pipeline creates its timed-out table; choose a new name or drop the table.';
	END IF;
	SELECT string_agg(quote_ident(c.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', '
					  ORDER BY array_position(keys, c.attname))
	INTO key_defs
	FROM streamflink._columns(s.row_type) c
	JOIN pg_attribute a ON a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = s.row_type)
					   AND a.attnum = c.attnum
	WHERE c.attname = ANY (keys);
	EXECUTE pg_catalog.format('CREATE TABLE %s (%s match_start timestamptz NOT NULL, '
							  'match_end timestamptz NOT NULL, events jsonb NOT NULL%s)',
							  sink, coalesce(key_defs || ',', ''),
							  CASE WHEN cardinality(measure_defs) > 0
								   THEN ', ' || array_to_string(measure_defs, ', ') ELSE '' END);
	sink_rel := to_regclass(sink);
	END IF;	/* Kafka sink */
	IF timed_out IS NOT NULL THEN
		EXECUTE pg_catalog.format('CREATE TABLE %s (%s match_start timestamptz NOT NULL, '
								  'timed_out_at timestamptz NOT NULL, events jsonb NOT NULL)',
								  timed_out, coalesce(key_defs || ',', ''));
		timed_out_rel := to_regclass(timed_out);
	END IF;

	INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, pattern, define,
									  measures, skip, within, timed_out, sink,
									  allowed_lateness, checkpoint_interval,
									  max_partial_matches, max_partial_match_events,
									  state_profile, state_options,
									  sink_topic, sink_brokers, sink_format, sink_options,
									  parallelism, checkpoint_mode, aligned_checkpoint_timeout)
	VALUES (p_name, s.id, 'pattern', keys, pattern, define, measures, skip, within,
			timed_out_rel, sink_rel, interval '0', checkpoint_interval,
			max_partial_matches, max_partial_match_events,
			create_pattern_pipeline.state_profile, create_pattern_pipeline.state_options,
			create_pattern_pipeline.sink_topic, create_pattern_pipeline.sink_brokers,
			CASE WHEN create_pattern_pipeline.sink_topic IS NOT NULL THEN create_pattern_pipeline.sink_format END,
			coalesce(create_pattern_pipeline.sink_options, '{}'),
			create_pattern_pipeline.parallelism, create_pattern_pipeline.checkpoint_mode,
			create_pattern_pipeline.aligned_checkpoint_timeout);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text, text, text, text, text[], int, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text, text, text, text, text[], int, text, interval) TO streamflink_user;

/*
 * RocksDB's numbers of each running pipeline, as its worker last published
 * them (about once a second).  Counters are since the worker opened the
 * database.  A role sees the pipelines it may see in streamflink.pipelines.
 */
CREATE FUNCTION streamflink._state_metrics(
	OUT pipeline_id int, OUT pid int, OUT collected_at timestamptz, OUT profile text,
	OUT estimated_keys bigint, OUT live_sst_bytes bigint, OUT sst_bytes_per_level bigint[],
	OUT memtable_bytes bigint, OUT table_readers_bytes bigint,
	OUT block_cache_capacity bigint, OUT block_cache_usage bigint, OUT block_cache_pinned bigint,
	OUT block_cache_hits bigint, OUT block_cache_misses bigint, OUT block_cache_hit_ratio float8,
	OUT pending_compaction_bytes bigint, OUT running_compactions bigint,
	OUT compactions bigint, OUT flushes bigint, OUT stall_micros bigint,
	OUT running_flushes bigint, OUT write_stall text, OUT background_errors bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamflink_state_metrics'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._state_metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._state_metrics() TO streamflink_user;

CREATE VIEW streamflink.state_metrics WITH (security_invoker = true) AS
SELECT p.name AS pipeline, m.profile,	/* the worker's, as it started */
	   m.pid, m.collected_at, m.estimated_keys, m.live_sst_bytes, m.sst_bytes_per_level,
	   m.memtable_bytes, m.table_readers_bytes,
	   m.block_cache_capacity, m.block_cache_usage, m.block_cache_pinned,
	   m.block_cache_hits, m.block_cache_misses, m.block_cache_hit_ratio,
	   m.pending_compaction_bytes, m.running_compactions, m.compactions, m.flushes,
	   m.stall_micros, m.running_flushes, m.write_stall, m.background_errors
FROM streamflink._state_metrics() m
JOIN streamflink.pipeline p ON p.id = m.pipeline_id;
GRANT SELECT ON streamflink.state_metrics TO streamflink_user;

/* ====================================================================
 * Savepoints (src/savepoint.c; README "Savepoints").
 *
 * A savepoint is a checkpoint taken on request, written by the worker in
 * the checkpoint's own epoch transaction (so it exists exactly when the
 * checkpoint completed), kept until dropped, with its positions and what
 * its state means (_state_meaning), which start(from_savepoint) compares
 * with the pipeline it restores into.  Files: the pipeline's state
 * directory, savepoints/<name>/<first>-<last key group>.
 * ==================================================================== */

CREATE TABLE streamflink.savepoint (
	id			serial PRIMARY KEY,
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	name		text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,47}$'),
	checkpoint_id bigint NOT NULL,	/* the checkpoint it was taken as */
	created		timestamptz NOT NULL DEFAULT now(),
	size_bytes	bigint NOT NULL,	/* of the state snapshot */
	watermark	timestamptz,
	state_format int NOT NULL,
	parallelism int NOT NULL,		/* workers whose snapshots it holds */
	key_groups	int NOT NULL,		/* key groups of the state (max parallelism) */
	meaning		jsonb NOT NULL,		/* streamflink._state_meaning() when taken */
	fingerprint text NOT NULL,		/* md5 of meaning */
	UNIQUE (pipeline_id, name)
);

CREATE TABLE streamflink.savepoint_offset (
	pipeline_id int NOT NULL,
	/*
	 * No foreign key: each task of a parallel pipeline writes its
	 * partitions' rows in its own prepared transaction, while task 0 writes
	 * the savepoint's row with the decision (remove_offsets deletes them).
	 */
	savepoint_id int NOT NULL,
	topic		text NOT NULL,
	partition	int NOT NULL,
	next_offset bigint NOT NULL,
	max_event_time timestamptz,
	PRIMARY KEY (savepoint_id, partition)
);

/* Set by start(from_savepoint), cleared by the worker once restored. */
ALTER TABLE streamflink.pipeline ADD COLUMN restore_savepoint int;

CREATE FUNCTION streamflink._state_format()
RETURNS int
AS 'MODULE_PATHNAME', 'streamflink_state_format'
LANGUAGE C IMMUTABLE;

CREATE FUNCTION streamflink._take_savepoint(pipeline_id int, name text, pause bool)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_take_savepoint'
LANGUAGE C VOLATILE;

CREATE FUNCTION streamflink._savepoint_removed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'streamflink_savepoint_removed'
LANGUAGE C;

/*
 * What a pipeline's state means: the fields a savepoint must agree on to
 * be restored.  Durations in seconds and types spelled with a fixed
 * search_path, so that the worker and any session compute the same.  Not
 * here, so free to change: allowed lateness, checkpoint interval, state
 * options, the source's brokers, options, out-of-orderness and idle
 * timeout, measures and the bounds of partial matches, the sink table.
 */
CREATE FUNCTION streamflink._state_meaning(pipeline_id int)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'kind', p.kind,
		'topic', s.topic,
		'key columns', (SELECT jsonb_agg(k.name || ' ' || coalesce(format_type(c.atttype, c.atttypmod), '?')
										 ORDER BY k.ord)
						  FROM unnest(p.key_columns) WITH ORDINALITY k(name, ord)
						  LEFT JOIN streamflink._columns(s.row_type) c ON c.attname = k.name),
		'window', p.window_kind,
		'window size', extract(epoch FROM p.window_size)::float8,
		'window slide', extract(epoch FROM p.window_slide)::float8,
		'session gap', extract(epoch FROM p.session_gap)::float8,
		'aggregates', p.aggregates,
		'pattern', p.pattern,
		'define', p.define,
		'skip', p.skip,
		'within', extract(epoch FROM p.within)::float8,
		/* a pattern's state buffers whole events */
		'event columns', CASE WHEN p.kind = 'pattern' THEN
			(SELECT jsonb_agg(c.attname || ' ' || format_type(c.atttype, c.atttypmod) ORDER BY c.attnum)
			   FROM streamflink._columns(s.row_type) c) END))
	FROM streamflink.pipeline p JOIN streamflink.source s ON s.id = p.source_id
	WHERE p.id = pipeline_id
$$;

/* Refuse a savepoint whose state does not fit the pipeline, naming what differs. */
CREATE FUNCTION streamflink._check_savepoint_fits(pipeline_id int, savepoint_id int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sp streamflink.savepoint;
	from_name text;
	to_name text;
	cur jsonb := streamflink._state_meaning(pipeline_id);
	fields text[];
	detail text;
BEGIN
	SELECT * INTO sp FROM streamflink.savepoint s WHERE s.id = savepoint_id;
	IF NOT FOUND OR cur IS NULL THEN
		RAISE EXCEPTION 'savepoint % does not exist', savepoint_id
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT name INTO from_name FROM streamflink.pipeline WHERE id = sp.pipeline_id;
	SELECT name INTO to_name FROM streamflink.pipeline WHERE id = pipeline_id;
	IF sp.state_format <> streamflink._state_format() THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" holds state format %, this release reads format %',
			sp.name, from_name, sp.state_format, streamflink._state_format()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Restore it with the release that took it.';
	END IF;
	SELECT array_agg(k ORDER BY k), string_agg(pg_catalog.format('%s: savepoint %s, pipeline %s', k,
						coalesce(sp.meaning -> k, '"none"'), coalesce(cur -> k, '"none"')), '; ' ORDER BY k)
	  INTO fields, detail
	  FROM (SELECT jsonb_object_keys(sp.meaning) UNION SELECT jsonb_object_keys(cur)) AS keys(k)
	 WHERE (sp.meaning -> k) IS DISTINCT FROM (cur -> k);
	IF fields IS NOT NULL THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" does not fit pipeline "%" (different %)',
			sp.name, from_name, to_name, array_to_string(fields, ', ')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = detail || '.',
				  HINT = 'A savepoint restores into a pipeline with the same kind, topic, key columns and types, window, aggregates, pattern, define, skip and within; allowed lateness, checkpoint interval, state options, measures and the source''s other settings may differ.';
	END IF;
END
$$;

/* A savepoint named by start(from_savepoint): 'name' (the pipeline's) or 'pipeline.name'. */
CREATE FUNCTION streamflink._savepoint_for_start(p streamflink.pipeline, ref text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	from_pipeline text := CASE WHEN strpos(ref, '.') > 0 THEN split_part(ref, '.', 1) ELSE p.name END;
	sp_name text := CASE WHEN strpos(ref, '.') > 0 THEN substr(ref, strpos(ref, '.') + 1) ELSE ref END;
	o streamflink.pipeline;
	sp_id int;
BEGIN
	SELECT * INTO o FROM streamflink.pipeline WHERE name = from_pipeline;
	IF FOUND THEN
		SELECT s.id INTO sp_id FROM streamflink.savepoint s
		 WHERE s.pipeline_id = o.id AND s.name = sp_name;
	END IF;
	IF sp_id IS NULL THEN
		RAISE EXCEPTION 'savepoint "%" does not exist', ref
			USING ERRCODE = 'undefined_object',
				  HINT = 'See streamflink.savepoints; name another pipeline''s savepoint as ''pipeline.savepoint''.';
	END IF;
	PERFORM streamflink._check_owner('pipeline', o.name, o.owner);
	IF NOT pg_has_role(p.owner, o.owner, 'USAGE') THEN
		RAISE EXCEPTION 'pipeline "%" may not start from savepoint "%" of pipeline "%"', p.name, sp_name, o.name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = pg_catalog.format('Its state belongs to role %s; the pipeline runs as %s.', o.owner, p.owner);
	END IF;
	PERFORM streamflink._check_savepoint_fits(p.id, sp_id);
	RETURN sp_id;
END
$$;

CREATE FUNCTION streamflink._check_savepoint_name(p streamflink.pipeline, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM streamflink._check_new_name('savepoint', name,
		EXISTS (SELECT 1 FROM streamflink.savepoint s WHERE s.pipeline_id = p.id AND s.name = $2));
	IF p.state <> 'running' THEN
		RAISE EXCEPTION 'pipeline "%" is not running', p.name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'A savepoint is taken by the running pipeline: start it first.';
	END IF;
END
$$;

/* A savepoint of a running pipeline; returns once it is complete. */
CREATE FUNCTION streamflink.savepoint(pipeline text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	/* One request per pipeline at a time; the worker's row lock is compatible. */
	SELECT * INTO p FROM streamflink.pipeline WHERE id = p.id FOR NO KEY UPDATE;
	PERFORM streamflink._check_savepoint_name(p, name);
	PERFORM streamflink._take_savepoint(p.id, name, false);
END
$$;

CREATE FUNCTION streamflink.drop_savepoint(pipeline text, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
	sp_id int;
	waiting text;
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	SELECT s.id INTO sp_id FROM streamflink.savepoint s WHERE s.pipeline_id = p.id AND s.name = $2;
	IF sp_id IS NULL THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" does not exist', name, p.name
			USING ERRCODE = 'undefined_object',
				  HINT = 'See streamflink.savepoints.';
	END IF;
	SELECT o.name INTO waiting FROM streamflink.pipeline o WHERE o.restore_savepoint = sp_id LIMIT 1;
	IF waiting IS NOT NULL THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" is being restored by pipeline "%"', name, p.name, waiting
			USING ERRCODE = 'object_in_use',
				  HINT = 'Drop it once that pipeline runs (or stop it and start it without from_savepoint).';
	END IF;
	/* Its files go at commit: the trigger below. */
	DELETE FROM streamflink.savepoint WHERE id = sp_id;
END
$$;

/* start(pipeline, from_savepoint): the savepoint block, before the start. */
CREATE FUNCTION streamflink._start_from_savepoint(p streamflink.pipeline, from_savepoint text,
												  parallelism int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sp_id int;
BEGIN
	IF parallelism IS NOT NULL AND parallelism <> p.parallelism THEN
		PERFORM streamflink._check_rescale(p, from_savepoint, parallelism);
	END IF;
	IF from_savepoint IS NOT NULL THEN
		IF p.state = 'running' THEN
			RAISE EXCEPTION 'pipeline "%" is running', p.name
				USING ERRCODE = 'object_in_use',
					  HINT = 'Stop it first; streamflink.stop(pipeline, savepoint => name) takes a savepoint as it stops.';
		END IF;
		sp_id := streamflink._savepoint_for_start(p, from_savepoint);
	END IF;
	/* A plain start resumes from the last checkpoint, whatever an earlier start asked. */
	IF p.state = 'stopped' AND (p.restore_savepoint IS DISTINCT FROM sp_id OR
								coalesce(parallelism, p.parallelism) <> p.parallelism) THEN
		/* one UPDATE: the layout trigger sees the savepoint with the new parallelism */
		UPDATE streamflink.pipeline SET restore_savepoint = sp_id,
			   parallelism = coalesce(_start_from_savepoint.parallelism, p.parallelism)
		 WHERE id = p.id;
	END IF;
END
$$;

DROP FUNCTION streamflink.start(text);
CREATE FUNCTION streamflink.start(pipeline text, from_savepoint text DEFAULT NULL,
								  parallelism int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	PERFORM streamflink._start_from_savepoint(p, from_savepoint, start.parallelism);
	IF p.state = 'running' THEN
		RAISE NOTICE 'pipeline "%" is already running', p.name;
		RETURN;
	END IF;
	/* Checks, quotas and the worker's start at commit: the catalog's triggers. */
	UPDATE streamflink.pipeline SET state = 'running' WHERE id = p.id;
END
$$;

/* stop(pipeline, savepoint): the savepoint is the last checkpoint, nothing after it. */
CREATE FUNCTION streamflink._stop_with_savepoint(p streamflink.pipeline, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	SELECT * INTO p FROM streamflink.pipeline WHERE id = p.id FOR NO KEY UPDATE;
	PERFORM streamflink._check_savepoint_name(p, name);
	/*
	 * The stop first (it gives the transaction its id): the worker takes
	 * the savepoint, then waits for this transaction, and its commit
	 * sends the stop; a rollback lets it go on.
	 */
	UPDATE streamflink.pipeline SET state = 'stopped' WHERE id = p.id;
	PERFORM streamflink._take_savepoint(p.id, name, true);
END
$$;

DROP FUNCTION streamflink.stop(text);
CREATE FUNCTION streamflink.stop(pipeline text, savepoint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	IF savepoint IS NOT NULL THEN
		PERFORM streamflink._stop_with_savepoint(p, savepoint);
		RETURN;
	END IF;
	IF p.state = 'stopped' THEN
		RAISE NOTICE 'pipeline "%" is not running', p.name;
		RETURN;
	END IF;
	/* The worker is asked to stop at commit by the catalog's trigger. */
	UPDATE streamflink.pipeline SET state = 'stopped' WHERE id = p.id;
END
$$;

CREATE VIEW streamflink.savepoints WITH (security_invoker = true) AS
SELECT p.name AS pipeline, sp.name, sp.checkpoint_id AS checkpoint, sp.created, sp.size_bytes,
	   (SELECT jsonb_object_agg(o.partition::text, o.next_offset)
		  FROM streamflink.savepoint_offset o WHERE o.savepoint_id = sp.id) AS offsets,
	   sp.watermark, sp.parallelism, sp.key_groups, sp.state_format,
	   sp.fingerprint AS definition_fingerprint, sp.meaning AS definition
FROM streamflink.savepoint sp
JOIN streamflink.pipeline p ON p.id = sp.pipeline_id;

CREATE TRIGGER worker_only BEFORE INSERT ON streamflink.savepoint
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER worker_only BEFORE INSERT ON streamflink.savepoint_offset
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER remove_files AFTER DELETE ON streamflink.savepoint
	FOR EACH ROW EXECUTE FUNCTION streamflink._savepoint_removed();

ALTER TABLE streamflink.savepoint ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.savepoint_offset ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON streamflink.savepoint
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY owner_rows ON streamflink.savepoint_offset
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));

REVOKE ALL ON FUNCTION streamflink._state_format(), streamflink._take_savepoint(int, text, bool),
	streamflink._savepoint_removed(), streamflink._state_meaning(int),
	streamflink._check_savepoint_fits(int, int),
	streamflink._savepoint_for_start(streamflink.pipeline, text),
	streamflink._check_savepoint_name(streamflink.pipeline, text),
	streamflink.savepoint(text, text), streamflink.drop_savepoint(text, text),
	streamflink._start_from_savepoint(streamflink.pipeline, text, int),
	streamflink.start(text, text, int), streamflink._stop_with_savepoint(streamflink.pipeline, text),
	streamflink.stop(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._state_format(), streamflink._take_savepoint(int, text, bool),
	streamflink._state_meaning(int), streamflink._check_savepoint_fits(int, int),
	streamflink._savepoint_for_start(streamflink.pipeline, text),
	streamflink._check_savepoint_name(streamflink.pipeline, text),
	streamflink.savepoint(text, text), streamflink.drop_savepoint(text, text),
	streamflink._start_from_savepoint(streamflink.pipeline, text, int),
	streamflink.start(text, text, int), streamflink._stop_with_savepoint(streamflink.pipeline, text),
	streamflink.stop(text, text) TO streamflink_user;
GRANT SELECT ON streamflink.savepoint, streamflink.savepoint_offset, streamflink.savepoints
	TO streamflink_user;
GRANT USAGE ON SEQUENCE streamflink.savepoint_id_seq TO streamflink_user;
GRANT DELETE ON streamflink.savepoint TO streamflink_user;
GRANT UPDATE (restore_savepoint) ON streamflink.pipeline TO streamflink_user;

/*
 * Rescaling a savepoint: its state rewritten as the key-group range
 * snapshots 'parallelism' workers would own (src/state_rescale.c); a start
 * from it merges the ranges again.  Superusers only: it opens RocksDB in
 * the backend.
 */
CREATE FUNCTION streamflink._rescale_savepoint(pipeline_id int, name text, parallelism int)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_rescale_savepoint'
LANGUAGE C VOLATILE;

CREATE FUNCTION streamflink.rescale_savepoint(pipeline text, name text, parallelism int)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
	sp streamflink.savepoint;
	keys bigint;
BEGIN
	SELECT * INTO sp FROM streamflink.savepoint s WHERE s.pipeline_id = p.id AND s.name = $2
		FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" does not exist', name, p.name
			USING ERRCODE = 'undefined_object',
				  HINT = 'See streamflink.savepoints.';
	END IF;
	IF EXISTS (SELECT 1 FROM streamflink.pipeline o WHERE o.restore_savepoint = sp.id) THEN
		RAISE EXCEPTION 'savepoint "%" of pipeline "%" is being restored', name, p.name
			USING ERRCODE = 'object_in_use',
				  HINT = 'Rescale it once the pipeline starting from it runs.';
	END IF;
	keys := streamflink._rescale_savepoint(p.id, sp.name, parallelism);
	UPDATE streamflink.savepoint SET parallelism = $3 WHERE id = sp.id;
	RETURN keys;
END
$$;
REVOKE ALL ON FUNCTION streamflink._rescale_savepoint(int, text, int),
	streamflink.rescale_savepoint(text, text, int) FROM PUBLIC;

/* ---- Pipelines written as SQL queries (src/sql_pipeline.c, src/filter_project.c) ----
 *
 * create_pipeline(name, query, sink): one SELECT over a source, parsed and
 * analysed by Postgres itself as the owner.  query is what the user wrote;
 * query_tree is the analysed Query (nodeToString), written by the
 * pipeline_resolve trigger only, which also sets the row's shape (kind,
 * window, aggregates) from the query, so a row cannot disagree with its
 * query.  kind 'stateless': a filter and projection into the sink, no key,
 * no window, no state.
 */
ALTER TABLE streamflink.pipeline ADD COLUMN query text;
ALTER TABLE streamflink.pipeline ADD COLUMN query_tree text;
COMMENT ON COLUMN streamflink.pipeline.query IS
	'the SELECT a pipeline was created from (create_pipeline), as written; NULL for other pipelines';
COMMENT ON COLUMN streamflink.pipeline.query_tree IS
	'query parsed and analysed at creation, as the owner (nodeToString); what the worker runs';
ALTER TABLE streamflink.pipeline DROP CONSTRAINT pipeline_kind_check;
ALTER TABLE streamflink.pipeline ADD CONSTRAINT pipeline_kind_check
	CHECK (kind IN ('window', 'pattern', 'stateless'));
ALTER TABLE streamflink.pipeline DROP CONSTRAINT pipeline_check;
ALTER TABLE streamflink.pipeline ADD CONSTRAINT pipeline_check
	CHECK (CASE kind WHEN 'window' THEN window_kind IS NOT NULL AND aggregates IS NOT NULL
					 WHEN 'stateless' THEN query IS NOT NULL AND window_kind IS NULL
					 ELSE pattern IS NOT NULL AND skip IS NOT NULL END);
GRANT INSERT (query) ON streamflink.pipeline TO streamflink_user;

/*
 * What a query would run as, for create_pipeline: its source, kind, window,
 * the sink's column definitions (typed as the analysed query types them)
 * and the columns identifying a sink row (window pipelines).  Analysed as
 * the caller, in its search_path; refuses what cannot run as a stream.
 */
CREATE FUNCTION streamflink._sql_shape(query text,
	OUT source text, OUT kind text, OUT window_kind text, OUT size interval,
	OUT slide interval, OUT gap interval, OUT aggregates text,
	OUT columns text[], OUT identity text[])
RETURNS record
AS 'MODULE_PATHNAME', 'streamflink_sql_shape'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._sql_shape(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._sql_shape(text) TO streamflink_user;

/*
 * The parts of a query with MATCH_RECOGNIZE (src/match_recognize.c) for
 * create_pattern_pipeline; NULL when it has no MATCH_RECOGNIZE.
 */
CREATE FUNCTION streamflink._match_recognize(query text,
	OUT source text, OUT key text, OUT order_by text, OUT pattern text, OUT define text,
	OUT measures text, OUT skip text, OUT within text)
RETURNS record
AS 'MODULE_PATHNAME', 'streamflink_match_recognize'
LANGUAGE C IMMUTABLE;
REVOKE ALL ON FUNCTION streamflink._match_recognize(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._match_recognize(text) TO streamflink_user;

/* The operator plan of a query, one line a row, as EXPLAIN shows a plan. */
CREATE FUNCTION streamflink.explain(query text)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'streamflink_sql_explain'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink.explain(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.explain(text) TO streamflink_user;

CREATE FUNCTION streamflink.create_pipeline(
	name text,
	query text,
	sink text,
	allowed_lateness interval DEFAULT '0',
	checkpoint_interval interval DEFAULT '1 second',
	state_profile text DEFAULT NULL,
	state_options text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
/* No SET search_path: the query and the sink name resolve in the caller's path. */
AS $$
DECLARE
	p_name		text := name;
	shape		record;
	mr			record;
	s			streamflink.source;
	sink_rel	regclass;
BEGIN
	PERFORM streamflink._check_new_name('pipeline', p_name, streamflink._name_taken('pipeline', p_name));
	IF query IS NULL THEN
		RAISE EXCEPTION 'a pipeline needs a query'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM streamflink._check_duration('allowed_lateness', allowed_lateness, true);
	PERFORM streamflink._check_duration('checkpoint_interval', checkpoint_interval, false);
	allowed_lateness := coalesce(allowed_lateness, interval '0');
	checkpoint_interval := coalesce(checkpoint_interval, interval '1 second');

	/* MATCH_RECOGNIZE: a pattern pipeline, checked by create_pattern_pipeline. */
	SELECT * INTO mr FROM streamflink._match_recognize(query);
	IF mr.source IS NOT NULL THEN
		s := streamflink._source(mr.source);
		IF allowed_lateness <> interval '0' THEN
			RAISE EXCEPTION 'allowed_lateness applies to windows only'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A pattern pipeline buffers events until the watermark passes them; bound matches with WITHIN.';
		END IF;
		IF s.event_time IS DISTINCT FROM mr.order_by THEN
			RAISE EXCEPTION 'MATCH_RECOGNIZE of source "%" must be ordered by its event time column %',
					mr.source, coalesce(quote_ident(s.event_time), '(none: the Kafka timestamp)')
				USING ERRCODE = 'feature_not_supported',
					  HINT = 'Events are matched in event time order, as the watermark releases them.';
		END IF;
		PERFORM streamflink.create_pattern_pipeline(p_name, mr.source, mr.key, mr.pattern, mr.define,
			sink, within => mr.within::interval, skip => mr.skip, measures => mr.measures,
			checkpoint_interval => checkpoint_interval,
			state_profile => create_pipeline.state_profile,
			state_options => create_pipeline.state_options);
		RETURN;
	END IF;

	shape := streamflink._sql_shape(query);
	s := streamflink._source(shape.source);
	IF shape.kind = 'stateless' AND allowed_lateness <> interval '0' THEN
		RAISE EXCEPTION 'allowed_lateness applies to windows only'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A pipeline without a window writes every event at once: no event is late.';
	END IF;

	/* RocksDB tuning, before anything is created (the trigger checks again) */
	PERFORM streamflink.state_settings(state_profile, state_options, current_user::regrole);
	IF sink IS NULL THEN
		RAISE EXCEPTION 'a pipeline needs a sink table name'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF to_regclass(sink) IS NOT NULL THEN
		RAISE EXCEPTION 'sink table "%" already exists', sink
			USING ERRCODE = 'duplicate_table',
				  HINT = 'The pipeline creates its sink table; choose a new name or drop the table.';
	END IF;
	/* Column names and types come from the analysed query, never from its text. */
	EXECUTE pg_catalog.format('CREATE TABLE %s (%s)', sink,
							  pg_catalog.array_to_string(shape.columns, ', '));
	sink_rel := to_regclass(sink);
	IF cardinality(shape.identity) > 0 THEN
		EXECUTE pg_catalog.format('CREATE UNIQUE INDEX ON %s (%s) NULLS NOT DISTINCT', sink_rel,
			(SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c), ', ') FROM unnest(shape.identity) c));
	END IF;

	/* The trigger analyses the query again, as the owner, and sets the shape columns. */
	INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind,
									  window_size, window_slide, session_gap, aggregates,
									  query, sink, allowed_lateness, checkpoint_interval,
									  state_profile, state_options)
	VALUES (p_name, s.id, shape.kind, '{}', shape.window_kind, shape.size, shape.slide,
			shape.gap, shape.aggregates, query, sink_rel, allowed_lateness, checkpoint_interval,
			create_pipeline.state_profile, create_pipeline.state_options);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_pipeline(text, text, text, interval, interval, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_pipeline(text, text, text, interval, interval, text, text) TO streamflink_user;

/* ---- Sources: start positions, metadata columns, partitions added while running ----
 * (src/start_position.c, src/kafka_source.c, the metadata section of src/decode.c)
 *
 * start_position: where a pipeline reads a partition the first time
 * ('earliest', 'latest', a timestamp, or offsets per partition as JSON),
 * kept canonical (timestamps in UTC); after a checkpoint, the checkpoint
 * rules.  A pipeline may override its source's (NULL: the source's).
 * metadata: source columns filled from the Kafka message rather than its
 * value, {"column": "key" | "key.<field>" | "partition" | "offset" |
 * "timestamp" | "headers" | "header:<name>"}; key_format decodes the key's
 * fields (key.<field> columns) as format decodes the value.
 */
ALTER TABLE streamflink.source ADD COLUMN start_position text NOT NULL DEFAULT 'earliest';
ALTER TABLE streamflink.source ADD COLUMN key_format text NOT NULL DEFAULT 'text';
ALTER TABLE streamflink.source ADD COLUMN metadata jsonb;
ALTER TABLE streamflink.pipeline ADD COLUMN start_position text;
COMMENT ON COLUMN streamflink.source.start_position IS
	'first start: earliest, latest, a timestamp (UTC) or {"partition": offset, ...}';
COMMENT ON COLUMN streamflink.source.metadata IS
	'columns filled from the message''s key, headers, partition, offset or timestamp: {"column": "key", ...}';
COMMENT ON COLUMN streamflink.pipeline.start_position IS
	'overrides the source''s start_position (NULL: the source''s)';
GRANT INSERT (start_position, key_format, metadata) ON streamflink.source TO streamflink_user;
GRANT INSERT (start_position) ON streamflink.pipeline TO streamflink_user;

/*
 * The offsets a pipeline started each partition at, resolved by its worker
 * the first time it reads the partition and committed before it reads:
 * a restart before the first checkpoint starts at the same offsets (a
 * 'latest' is not resolved again to a later end), and a partition added to
 * the topic while the pipeline runs is recorded when it is found.
 * spec: the start position they were resolved from (a changed one, before
 * any checkpoint, is resolved again); how: what each offset came from.
 */
CREATE TABLE streamflink.start_offset (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	topic		text NOT NULL,
	partition	int NOT NULL,
	start_offset bigint NOT NULL,
	spec		text NOT NULL,
	how			text NOT NULL,
	resolved	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (pipeline_id, partition)
);
SELECT pg_catalog.pg_extension_config_dump('streamflink.start_offset', '');
CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.start_offset
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
ALTER TABLE streamflink.start_offset ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON streamflink.start_offset
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
GRANT SELECT ON streamflink.start_offset TO streamflink_user;

/* A start position in canonical form, or an error with a hint. */
CREATE FUNCTION streamflink._start_position(spec text)
RETURNS text
AS 'MODULE_PATHNAME', 'streamflink_start_position'
LANGUAGE C STABLE;

/*
 * A column list with METADATA clauses ("k text METADATA FROM 'key'", as in
 * Flink SQL) split into the plain column list and the metadata map.
 */
CREATE FUNCTION streamflink._metadata_columns(columns text, OUT columns text, OUT metadata jsonb)
AS 'MODULE_PATHNAME', 'streamflink_metadata_columns'
LANGUAGE C IMMUTABLE STRICT;

/*
 * Checks a source's metadata map against its row type and value format
 * (every named column exists, every key is known, key.<field> columns need
 * a key_format other than text, a text source keeps one value column) and
 * key_format; errors with a hint.
 */
CREATE FUNCTION streamflink._check_metadata(row_type regtype, format text, key_format text,
											metadata jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'streamflink_check_metadata'
LANGUAGE C STABLE;

/* BEFORE INSERT ON source (after check_source): the columns above, canonical. */
CREATE FUNCTION streamflink._source_position_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	NEW.start_position := streamflink._start_position(NEW.start_position);
	NEW.key_format := lower(NEW.key_format);
	PERFORM streamflink._check_metadata(NEW.row_type, NEW.format, NEW.key_format, NEW.metadata);
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._source_position_check() FROM PUBLIC;
CREATE TRIGGER check_source_position BEFORE INSERT ON streamflink.source
	FOR EACH ROW EXECUTE FUNCTION streamflink._source_position_check();

/*
 * BEFORE INSERT OR UPDATE OF start_position ON pipeline: canonical, and
 * changed only before the pipeline's first checkpoint while it is stopped
 * (after it, the checkpoint says where each partition goes on).
 */
CREATE FUNCTION streamflink._pipeline_position_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.start_position IS NOT NULL THEN
		NEW.start_position := streamflink._start_position(NEW.start_position);
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.start_position IS DISTINCT FROM OLD.start_position THEN
		IF OLD.state = 'running' THEN
			RAISE EXCEPTION 'pipeline "%" is running', OLD.name
				USING ERRCODE = 'object_in_use',
					  HINT = 'Stop it first; the start position applies to its next start.';
		END IF;
		IF EXISTS (SELECT 1 FROM streamflink.checkpoint c WHERE c.pipeline_id = OLD.id) THEN
			RAISE EXCEPTION 'pipeline "%" has checkpoints: it goes on from its last one', OLD.name
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'A start position applies before the first checkpoint only; create a new pipeline to start elsewhere.';
		END IF;
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._pipeline_position_check() FROM PUBLIC;
CREATE TRIGGER check_start_position BEFORE INSERT OR UPDATE OF start_position ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_position_check();
GRANT UPDATE (start_position) ON streamflink.pipeline TO streamflink_user;

/*
 * A pipeline's own start position (NULL: its source's), e.g. to replay a
 * topic from a point in time with a new pipeline over an existing source.
 */
CREATE FUNCTION streamflink.set_start_position(pipeline text, start_position text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	UPDATE streamflink.pipeline SET start_position = set_start_position.start_position
	WHERE id = p.id;
END
$$;
REVOKE ALL ON FUNCTION streamflink.set_start_position(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.set_start_position(text, text) TO streamflink_user;

/*
 * create_source takes start_position and key_format (last, so calls
 * written for 0.1 work unchanged), and columns may carry METADATA clauses:
 * see its definition in the Avro section below, which also takes the Avro
 * parameters.
 */

/*
 * What a source makes of a message: the decoded row as jsonb, or the error
 * its dead letter would carry.  The value alone (metadata columns NULL), or
 * with the key, headers (a jsonb object of name: text value), partition,
 * offset and timestamp a message would carry.
 */
CREATE FUNCTION streamflink._decode_message(format text, key_format text, metadata jsonb,
											row_type anyelement, payload bytea, key bytea,
											headers jsonb, "partition" int, "offset" bigint,
											"timestamp" timestamptz, owner regrole DEFAULT NULL,
											OUT "row" anyelement, OUT error text)
AS 'MODULE_PATHNAME', 'streamflink_decode_message'
LANGUAGE C CALLED ON NULL INPUT;

CREATE FUNCTION streamflink.decode(source text, payload bytea, key bytea,
								   headers jsonb DEFAULT NULL, "partition" int DEFAULT 0,
								   "offset" bigint DEFAULT 0, "timestamp" timestamptz DEFAULT NULL,
								   OUT decoded jsonb, OUT error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s streamflink.source := streamflink._source(source);
BEGIN
	EXECUTE pg_catalog.format('SELECT to_jsonb(d."row"), d.error FROM streamflink._decode_message($1, $2, $3, NULL::%s, $4, $5, $6, $7, $8, $9, $10) d',
							  s.row_type)
		INTO decoded, error
		USING s.format, s.key_format, s.metadata, payload, key, headers, "partition", "offset",
			  "timestamp", s.owner;
EXCEPTION WHEN others THEN
	decoded := NULL;
	error := 'decoded, but the row cannot be shown as jsonb: ' || SQLERRM;
END
$$;

CREATE FUNCTION streamflink.decode(source text, payload text, key text,
								   headers jsonb DEFAULT NULL, "partition" int DEFAULT 0,
								   "offset" bigint DEFAULT 0, "timestamp" timestamptz DEFAULT NULL,
								   OUT decoded jsonb, OUT error text)
LANGUAGE sql
AS $$ SELECT * FROM streamflink.decode(source, convert_to(payload, getdatabaseencoding()),
									   convert_to(key, getdatabaseencoding()), headers,
									   "partition", "offset", "timestamp") $$;

/* decode(source, payload), the value alone: see the Avro section below. */
REVOKE ALL ON FUNCTION streamflink.decode(text, bytea, bytea, jsonb, int, bigint, timestamptz),
	streamflink.decode(text, text, text, jsonb, int, bigint, timestamptz),
	streamflink._decode_message(text, text, jsonb, anyelement, bytea, bytea, jsonb, int, bigint, timestamptz, regrole),
	streamflink._start_position(text), streamflink._metadata_columns(text),
	streamflink._check_metadata(regtype, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.decode(text, bytea, bytea, jsonb, int, bigint, timestamptz),
	streamflink.decode(text, text, text, jsonb, int, bigint, timestamptz),
	streamflink._decode_message(text, text, jsonb, anyelement, bytea, bytea, jsonb, int, bigint, timestamptz, regrole),
	streamflink._start_position(text), streamflink._metadata_columns(text),
	streamflink._check_metadata(regtype, text, text, jsonb) TO streamflink_user;

/*
 * The sources view shows metadata columns with their METADATA clause, and
 * the start position and key format; the offsets view, per partition, the
 * last checkpoint's position and where the pipeline started it (also
 * before the first checkpoint, and for partitions found while running).
 */
CREATE OR REPLACE VIEW streamflink.sources WITH (security_invoker = true) AS
SELECT s.name, s.brokers, s.topic, s.format,
	   (SELECT string_agg(quote_ident(c.attname) || ' ' || format_type(c.atttype, c.atttypmod) ||
						  coalesce(' METADATA FROM ' || quote_literal(s.metadata ->> c.attname), ''), ', ')
		  FROM streamflink._columns(s.row_type) c) AS columns,
	   s.event_time, s.max_out_of_orderness, s.idle_timeout, s.options, s.owner, s.created,
	   s.start_position, s.key_format
FROM streamflink.source s;

CREATE OR REPLACE VIEW streamflink.offsets WITH (security_invoker = true) AS
SELECT p.name AS pipeline, x.topic, x.partition, o.next_offset, o.max_event_time,
	   o.checkpoint_id, so.start_offset, so.how AS started_from, so.resolved AS started
FROM streamflink.pipeline p
LEFT JOIN LATERAL (SELECT max(id) AS id FROM streamflink.checkpoint c WHERE c.pipeline_id = p.id) last ON true
JOIN LATERAL (SELECT co.topic, co.partition FROM streamflink.checkpoint_offset co
			  WHERE co.pipeline_id = p.id AND co.checkpoint_id = last.id
			  UNION
			  SELECT s.topic, s.partition FROM streamflink.start_offset s
			  WHERE s.pipeline_id = p.id) x ON true
LEFT JOIN streamflink.checkpoint_offset o
	   ON o.pipeline_id = p.id AND o.checkpoint_id = last.id AND o.partition = x.partition
LEFT JOIN streamflink.start_offset so ON so.pipeline_id = p.id AND so.partition = x.partition;

/* ---- Avro sources (src/avro_decode.c, src/schema_registry.c) ----
 *
 * format 'avro': every message is one Avro binary datum of the writer
 * schema given as avro_schema.  format 'avro-confluent': the Confluent wire
 * format (magic byte 0, 4-byte big-endian schema id, datum), schema ids
 * resolved through the registry at schema_registry; avro_schema, if given,
 * is the reader schema.  Columns map to fields by name.
 */
ALTER TABLE streamflink.source DROP CONSTRAINT source_format_check;
ALTER TABLE streamflink.source ADD CONSTRAINT source_format_check
	CHECK (format IN ('json', 'csv', 'text', 'avro', 'avro-confluent'));
ALTER TABLE streamflink.source ADD COLUMN avro_schema text;
ALTER TABLE streamflink.source ADD COLUMN schema_registry text;
COMMENT ON COLUMN streamflink.source.avro_schema IS
	'avro: the writer schema; avro-confluent: the reader schema (NULL: derived from the columns)';
COMMENT ON COLUMN streamflink.source.schema_registry IS
	'avro-confluent: base URL of the Confluent Schema Registry (http or https)';
GRANT INSERT (avro_schema, schema_registry) ON streamflink.source TO streamflink_user;

/*
 * The writer schemas a source's workers resolved through the registry,
 * committed when first resolved (in a transaction of their own, through a
 * short-lived background worker, before the messages that need them go
 * further) and read before the registry is asked: a replay after a crash
 * does not need the registry.
 */
CREATE TABLE streamflink.avro_schema (
	source_id	int NOT NULL REFERENCES streamflink.source (id) ON DELETE CASCADE,
	schema_id	int NOT NULL,
	schema		text NOT NULL,
	resolved	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (source_id, schema_id)
);
SELECT pg_catalog.pg_extension_config_dump('streamflink.avro_schema', '');
ALTER TABLE streamflink.avro_schema ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON streamflink.avro_schema
	USING (EXISTS (SELECT 1 FROM streamflink.source s
				   WHERE s.id = source_id AND streamflink._member_of(s.owner)));
/* Written by workers only (as themselves); tenants read their sources'. */
GRANT SELECT ON streamflink.avro_schema TO streamflink_user;

/*
 * A source's Avro settings, judged for 'owner': the format's settings are
 * given (and only its), schemas parse and are records, a reader schema has
 * every column as a field, the registry URL is http(s) and, for a role that
 * is not a superuser, its host is in streamflink.schema_registry_hosts.
 */
CREATE FUNCTION streamflink._avro_source_check(format text, avro_schema text,
											   schema_registry text, row_type regtype,
											   owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'streamflink_avro_source_check'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION streamflink._avro_source_check(text, text, text, regtype, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._avro_source_check(text, text, text, regtype, regrole)
	TO streamflink_user;

/* BEFORE INSERT ON source, as _source_check: for the role inserting the row. */
CREATE FUNCTION streamflink._source_avro_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM streamflink._avro_source_check(NEW.format, NEW.avro_schema, NEW.schema_registry,
										   NEW.row_type, current_user::regrole);
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._source_avro_check() FROM PUBLIC;
CREATE TRIGGER check_source_avro BEFORE INSERT ON streamflink.source
	FOR EACH ROW EXECUTE FUNCTION streamflink._source_avro_check();

/*
 * create_source takes start_position and key_format (the sources section
 * above: blocks marked "start position / metadata"), then avro_schema and
 * schema_registry, all appended so that calls written for 0.1 work
 * unchanged.
 */
DROP FUNCTION streamflink.create_source(text, text, text, text, text, text, interval, interval, text[]);
CREATE FUNCTION streamflink.create_source(
	name text,
	brokers text,
	topic text,
	format text DEFAULT 'json',
	columns text DEFAULT NULL,
	event_time text DEFAULT NULL,
	max_out_of_orderness interval DEFAULT '0',
	idle_timeout interval DEFAULT NULL,
	options text[] DEFAULT '{}',
	start_position text DEFAULT 'earliest',
	key_format text DEFAULT 'text',
	avro_schema text DEFAULT NULL,
	schema_registry text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
/* No SET search_path: column types resolve in the caller's path. */
AS $$
DECLARE
	src_name	text := name;
	fmt			text := lower(format);
	cols		text := columns;
	type_name	text;
	et_type		regtype;
	ncols		int;
	meta		jsonb;			/* start position / metadata */
BEGIN
	PERFORM streamflink._check_new_name('source', src_name, streamflink._name_taken('source', src_name));
	IF coalesce(brokers, '') = '' OR coalesce(topic, '') = '' THEN
		RAISE EXCEPTION 'a source needs brokers and a topic'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example: brokers => ''127.0.0.1:9092'', topic => ''events''.';
	END IF;
	IF fmt IS NULL OR fmt NOT IN ('json', 'csv', 'text', 'avro', 'avro-confluent') THEN
		RAISE EXCEPTION 'unknown source format: %', coalesce(quote_literal(format), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Supported formats are json, csv, text, avro and avro-confluent.';
	END IF;
	IF cols IS NULL THEN
		IF fmt <> 'text' THEN
			RAISE EXCEPTION 'a % source needs columns', fmt
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example: columns => ''device text, value float8, ts timestamptz''.';
		END IF;
		cols := 'payload text';
	END IF;
	/* The column list is spliced into CREATE TYPE: allow one statement only. */
	IF position(';' IN cols) > 0 THEN
		RAISE EXCEPTION 'invalid column list: %', cols
			USING ERRCODE = 'syntax_error',
				  HINT = 'Write columns as in CREATE TABLE: name type, name type, ...';
	END IF;
	/* start position / metadata: checked before anything is created */
	start_position := streamflink._start_position(coalesce(start_position, 'earliest'));
	key_format := lower(coalesce(key_format, 'text'));
	SELECT m.columns, m.metadata INTO cols, meta FROM streamflink._metadata_columns(cols) m;
	/*
	 * The Kafka options (their form and the allow-list, judged for the
	 * current user) and the durations are checked by the catalog's trigger
	 * (_source_check) when the row is inserted, as for a row inserted by
	 * hand.
	 */
	IF max_out_of_orderness IS NULL THEN
		max_out_of_orderness := interval '0';
	END IF;

	/*
	 * The decoded row is a composite type: Postgres' own parser checks the
	 * column list, and every type works.
	 */
	type_name := 'source_' || src_name;
	/*
	 * Created in our schema for the caller, who owns it (see tenancy.c); a
	 * type of that name that no source uses, left behind by a dropped
	 * extension (the types of sources are not members of it), is replaced.
	 */
	BEGIN
		PERFORM streamflink._create_row_type(src_name, cols);
	EXCEPTION WHEN syntax_error THEN
		RAISE EXCEPTION 'invalid column list: %', cols
			USING ERRCODE = 'syntax_error',
				  HINT = 'Write columns as in CREATE TABLE: name type, name type, ...';
	END;

	/* start position / metadata: only the value's columns count here */
	SELECT count(*) INTO ncols FROM streamflink._columns(('streamflink.' || quote_ident(type_name))::regtype) c
	WHERE meta IS NULL OR NOT meta ? c.attname;
	IF fmt = 'text' AND ncols <> 1 THEN
		RAISE EXCEPTION 'a text source has exactly one column'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The whole payload is that column''s value.';
	END IF;

	IF event_time IS NOT NULL THEN
		SELECT c.atttype INTO et_type
		FROM streamflink._columns(('streamflink.' || quote_ident(type_name))::regtype) c
		WHERE c.attname = event_time;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'event time column "%" is not a column of source "%"', event_time, src_name
				USING ERRCODE = 'undefined_column',
					  HINT = 'Name one of the declared columns, or omit event_time to use the Kafka message timestamp.';
		END IF;
		IF et_type NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
			RAISE EXCEPTION 'event time column "%" has type %', event_time, et_type
				USING ERRCODE = 'datatype_mismatch',
					  HINT = 'The event time column must be of type timestamptz or timestamp.';
		END IF;
	END IF;

	/* avro_schema and schema_registry: checked by _source_avro_check (trigger) */
	INSERT INTO streamflink.source (name, brokers, topic, format, row_type, event_time,
									max_out_of_orderness, idle_timeout, options,
									start_position, key_format, metadata,
									avro_schema, schema_registry)
	VALUES (src_name, brokers, topic, fmt,
			('streamflink.' || quote_ident(type_name))::regtype,
			event_time, max_out_of_orderness, idle_timeout, coalesce(options, '{}'),
			create_source.start_position, create_source.key_format, meta,
			create_source.avro_schema, create_source.schema_registry);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_source(text, text, text, text, text, text, interval,
												interval, text[], text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_source(text, text, text, text, text, text, interval,
												  interval, text[], text, text, text, text)
	TO streamflink_user;

/* _decode with a source's own settings (Avro: schemas, registry, id). */
CREATE FUNCTION streamflink._decode(format text, row_type anyelement, payload bytea,
									owner regrole, avro_schema text, schema_registry text,
									source_id int, OUT "row" anyelement, OUT error text)
AS 'MODULE_PATHNAME', 'streamflink_decode'
LANGUAGE C CALLED ON NULL INPUT;
REVOKE ALL ON FUNCTION streamflink._decode(text, anyelement, bytea, regrole, text, text, int)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._decode(text, anyelement, bytea, regrole, text, text, int)
	TO streamflink_user;

/*
 * The value alone (a source with metadata columns gets them NULL), with
 * the source's Avro settings.
 */
CREATE OR REPLACE FUNCTION streamflink.decode(source text, payload bytea,
											  OUT decoded jsonb, OUT error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s streamflink.source := streamflink._source(source);
BEGIN
	IF s.metadata IS NOT NULL THEN
		SELECT d.decoded, d.error INTO decoded, error
		FROM streamflink.decode(source, payload, NULL::bytea, NULL, NULL, NULL, NULL) d;
		RETURN;
	END IF;
	/*
	 * Decoding reports a bad payload in "error", never by raising; but a
	 * decoded row can fail to become jsonb: a json column may hold a number
	 * beyond numeric's range, which json accepts and jsonb does not.
	 */
	EXECUTE pg_catalog.format('SELECT to_jsonb(d."row"), d.error FROM streamflink._decode($1, NULL::%s, $2, $3, $4, $5, $6) d',
							  s.row_type)
		INTO decoded, error USING s.format, payload, s.owner, s.avro_schema, s.schema_registry, s.id;
EXCEPTION WHEN others THEN
	decoded := NULL;
	error := 'decoded, but the row cannot be shown as jsonb: ' || SQLERRM;
END
$$;

/* Binary payloads (Avro) for tests, demos and backfills: as produce(text[]). */
CREATE FUNCTION streamflink.produce(brokers text, topic text, payloads bytea[],
									partition int DEFAULT -1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_produce'
LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION streamflink.produce(text, text, bytea[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.produce(text, text, bytea[], int) TO streamflink_user;

CREATE OR REPLACE VIEW streamflink.sources WITH (security_invoker = true) AS
SELECT s.name, s.brokers, s.topic, s.format,
	   (SELECT string_agg(quote_ident(c.attname) || ' ' || format_type(c.atttype, c.atttypmod) ||
						  coalesce(' METADATA FROM ' || quote_literal(s.metadata ->> c.attname), ''), ', ')
		  FROM streamflink._columns(s.row_type) c) AS columns,
	   s.event_time, s.max_out_of_orderness, s.idle_timeout, s.options, s.owner, s.created,
	   s.start_position, s.key_format, s.avro_schema, s.schema_registry
FROM streamflink.source s;

/* ---- Kafka sink (src/kafka_sink.c) ----
 *
 * A pipeline with a sink_topic writes its results to Kafka, exactly once,
 * in Kafka transactions tied to its checkpoints (see README.md, "Kafka
 * sink").  Its `sink` table is then its outbox: the messages of checkpoints
 * whose Kafka commit is not yet recorded (normally empty between
 * checkpoints).  NULL in sink_topic: the Postgres table sink, as before.
 */
ALTER TABLE streamflink.pipeline ADD COLUMN sink_topic text;
ALTER TABLE streamflink.pipeline ADD COLUMN sink_brokers text;
ALTER TABLE streamflink.pipeline ADD COLUMN sink_format text CHECK (sink_format IN ('json'));
ALTER TABLE streamflink.pipeline ADD COLUMN sink_options text[] NOT NULL DEFAULT '{}';
ALTER TABLE streamflink.pipeline ADD CONSTRAINT pipeline_kafka_sink_check
	CHECK ((sink_topic IS NULL) = (sink_brokers IS NULL) AND (sink_topic IS NULL) = (sink_format IS NULL));
COMMENT ON COLUMN streamflink.pipeline.sink_topic IS
	'Kafka topic the results go to (NULL: the sink table); markers go to <sink_topic>.markers';
COMMENT ON COLUMN streamflink.pipeline.sink_brokers IS 'brokers of the Kafka sink';
COMMENT ON COLUMN streamflink.pipeline.sink_format IS 'format of the Kafka sink''s message values: json';
COMMENT ON COLUMN streamflink.pipeline.sink_options IS 'librdkafka producer settings of the Kafka sink, name=value';
GRANT INSERT (sink_topic, sink_brokers, sink_format, sink_options) ON streamflink.pipeline TO streamflink_user;

/*
 * One row per checkpoint whose epoch wrote messages: written in the
 * checkpoint's prepared transaction (so it exists exactly when the
 * checkpoint completed), 'committed' set once the Kafka transaction of
 * 'run' is known to have committed (after commit_transaction, or by
 * recovery from its marker).  A consumer auditing exactly-once counts the
 * messages whose checkpoint and run headers match a committed row.
 */
CREATE TABLE streamflink.kafka_sink_txn (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	worker		int NOT NULL,
	checkpoint_id bigint NOT NULL,
	run			bigint NOT NULL,		/* the producer run whose transaction carries it */
	messages	bigint NOT NULL,
	marker_offset bigint NOT NULL,		/* marker partition's end before its marker */
	committed	timestamptz,			/* NULL: not yet known to be committed */
	resent		bool NOT NULL DEFAULT false,	/* sent again by recovery */
	PRIMARY KEY (pipeline_id, worker, checkpoint_id)
);

/*
 * 'worker' here and in the headers is the task of a parallel pipeline (0
 * for a single worker): each task has its own producer, transactions,
 * records and outbox rows, and settles them itself at its start.
 *
 * Each worker's producer: its transactional.id (also a header of every
 * message) and its incarnation, one per start.
 */
CREATE TABLE streamflink.kafka_sink_run (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	worker		int NOT NULL,
	run			bigint NOT NULL,
	transactional_id text NOT NULL,
	PRIMARY KEY (pipeline_id, worker)
);

CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.kafka_sink_txn
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.kafka_sink_run
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
ALTER TABLE streamflink.kafka_sink_txn ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.kafka_sink_run ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON streamflink.kafka_sink_txn
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY owner_rows ON streamflink.kafka_sink_run
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
/* Tenants only read them (no INSERT, UPDATE or DELETE is granted). */
GRANT SELECT ON streamflink.kafka_sink_txn, streamflink.kafka_sink_run TO streamflink_user;

/*
 * Brokers, topic, format, producer options (the allow-list of sources plus
 * producer settings safe for tenants) and transaction.timeout.ms against
 * the checkpoint interval, for a pipeline of 'owner'.
 */
CREATE FUNCTION streamflink._check_kafka_sink(brokers text, topic text, format text,
	options text[], checkpoint_interval interval, owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'streamflink_check_kafka_sink'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION streamflink._check_kafka_sink(text, text, text, text[], interval, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._check_kafka_sink(text, text, text, text[], interval, regrole) TO streamflink_user;

/*
 * create_*_pipeline with a sink_topic: check the Kafka settings and create
 * the outbox table (`sink`, default <pipeline>_outbox, in the caller's
 * search path, owned by the caller).
 */
CREATE FUNCTION streamflink._create_kafka_outbox(pipeline text, sink text, topic text,
	brokers text, format text, options text[], checkpoint_interval interval)
RETURNS regclass
LANGUAGE plpgsql
/* No SET search_path: the outbox name resolves in the caller's path. */
AS $$
DECLARE
	outbox text := coalesce(sink, pg_catalog.quote_ident(pipeline || '_outbox'));
BEGIN
	IF topic IS NULL OR brokers IS NULL THEN
		RAISE EXCEPTION 'a Kafka sink needs sink_topic and sink_brokers'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example: sink_topic => ''surge_out'', sink_brokers => ''localhost:9092''.';
	END IF;
	PERFORM streamflink._check_kafka_sink(brokers, topic, coalesce(format, 'json'),
		coalesce(options, '{}'), coalesce(checkpoint_interval, interval '1 second'),
		current_user::regrole);
	IF pg_catalog.to_regclass(outbox) IS NOT NULL THEN
		RAISE EXCEPTION 'outbox table "%" already exists', outbox
			USING ERRCODE = 'duplicate_table',
				  HINT = 'A pipeline with a Kafka sink creates its outbox table (sink names it, default <pipeline>_outbox); choose a new name or drop the table.';
	END IF;
	/*
	 * A row per batch of up to 1000 messages of one task ('worker', as in
	 * the headers), in arrays: sequences first_seq..
	 */
	EXECUTE pg_catalog.format('CREATE TABLE %s (worker int NOT NULL, checkpoint_id bigint NOT NULL, '
							  'run bigint NOT NULL, first_seq bigint NOT NULL, output text[] NOT NULL, '
							  'key text[] NOT NULL, value text[] NOT NULL, '
							  'PRIMARY KEY (worker, checkpoint_id, first_seq))', outbox);
	RETURN pg_catalog.to_regclass(outbox);
END
$$;
REVOKE ALL ON FUNCTION streamflink._create_kafka_outbox(text, text, text, text, text, text[], interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._create_kafka_outbox(text, text, text, text, text, text[], interval) TO streamflink_user;

/* BEFORE INSERT ON pipeline: a tenant may insert rows itself. */
CREATE FUNCTION streamflink._pipeline_kafka_sink_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.sink_topic IS NOT NULL THEN
		PERFORM streamflink._check_kafka_sink(NEW.sink_brokers, NEW.sink_topic, NEW.sink_format,
			NEW.sink_options, NEW.checkpoint_interval, NEW.owner);
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._pipeline_kafka_sink_check() FROM PUBLIC;
CREATE TRIGGER check_kafka_sink BEFORE INSERT ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_kafka_sink_check();

/*
 * Every message of a topic, from its start to its end when called, with
 * key, value and headers: for tests and audits of the Kafka sink.  Reads
 * committed messages where the broker honours isolation.level.
 * Superusers only: it connects from the server to any broker.
 */
CREATE FUNCTION streamflink._read_topic(brokers text, topic text, timeout_ms int DEFAULT 30000)
RETURNS TABLE (partition int, "offset" bigint, key text, value text, headers jsonb)
AS 'MODULE_PATHNAME', 'streamflink_read_topic'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._read_topic(text, text, int) FROM PUBLIC;

/* ====================================================================
 * Parallel pipelines (see the README's "Parallel pipelines", src/exchange.h,
 * src/parallel.c and src/task.c).
 *
 * A pipeline runs on 'parallelism' workers (tasks).  Each reads its share
 * of the topic's partitions and sends every event to the task that owns
 * its key group, over shared-memory queues; checkpoint barriers flow
 * through the same queues.  Parallelism 1 is the single worker of 0.1.
 * ==================================================================== */
ALTER TABLE streamflink.pipeline ADD COLUMN parallelism int NOT NULL DEFAULT 1
	CHECK (parallelism BETWEEN 1 AND 128);
ALTER TABLE streamflink.pipeline ADD COLUMN checkpoint_mode text NOT NULL DEFAULT 'aligned'
	CHECK (checkpoint_mode IN ('aligned', 'unaligned'));
ALTER TABLE streamflink.pipeline ADD COLUMN aligned_checkpoint_timeout interval;

/*
 * Per task of a checkpoint: written by each task inside its own prepared
 * epoch transaction, so a row is visible exactly when that task's part of
 * the checkpoint is committed.
 */
CREATE TABLE streamflink.checkpoint_task (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	checkpoint_id bigint NOT NULL,
	task		int NOT NULL,
	partitions	int[] NOT NULL,		/* the Kafka partitions its source side reads */
	key_group_first int NOT NULL,	/* the key groups its operator side owns */
	key_group_last int NOT NULL,
	watermark	timestamptz,		/* its operator's watermark */
	events		bigint NOT NULL,	/* events its operator side took in the epoch */
	rows_emitted bigint NOT NULL,
	state_bytes bigint NOT NULL,
	start_delay interval NOT NULL,	/* trigger to the first barrier received */
	alignment	interval NOT NULL,	/* first to last barrier received */
	duration	interval NOT NULL,	/* trigger to prepared */
	unaligned	bool NOT NULL,		/* taken unaligned (or switched to it) */
	persisted_bytes bigint NOT NULL,	/* in-flight records kept as channel state */
	PRIMARY KEY (pipeline_id, checkpoint_id, task)
);
ALTER TABLE streamflink.checkpoint_task ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON streamflink.checkpoint_task
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.checkpoint_task
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
GRANT SELECT ON streamflink.checkpoint_task TO streamflink_user;

/* Pipeline-level figures of a parallel checkpoint, set with its decision. */
ALTER TABLE streamflink.checkpoint ADD COLUMN parallelism int NOT NULL DEFAULT 1;
ALTER TABLE streamflink.checkpoint ADD COLUMN alignment interval;
ALTER TABLE streamflink.checkpoint ADD COLUMN start_delay interval;
ALTER TABLE streamflink.checkpoint ADD COLUMN slowest_task int;
ALTER TABLE streamflink.checkpoint ADD COLUMN unaligned_tasks int;
ALTER TABLE streamflink.checkpoint ADD COLUMN persisted_bytes bigint;

CREATE FUNCTION streamflink._check_parallelism(parallelism int, checkpoint_mode text,
											   aligned_checkpoint_timeout interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	max_workers int := current_setting('streamflink.max_workers', true)::int;
BEGIN
	IF parallelism IS NULL OR parallelism < 1 OR parallelism > 128 THEN
		RAISE EXCEPTION 'parallelism must be between 1 and 128, not %', coalesce(parallelism::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Each task owns a range of the 128 key groups; use at most as many tasks as cores.';
	END IF;
	IF max_workers IS NOT NULL AND parallelism > max_workers THEN
		RAISE EXCEPTION 'parallelism % is more than streamflink.max_workers (%)', parallelism, max_workers
			USING ERRCODE = 'configuration_limit_exceeded',
				  HINT = 'Each task is a background worker; raise streamflink.max_workers and restart the server, or use a lower parallelism.';
	END IF;
	IF checkpoint_mode IS NULL OR checkpoint_mode NOT IN ('aligned', 'unaligned') THEN
		RAISE EXCEPTION 'unknown checkpoint_mode: %', coalesce(quote_literal(checkpoint_mode), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use ''aligned'' (the default) or ''unaligned''.';
	END IF;
	IF aligned_checkpoint_timeout IS NOT NULL AND checkpoint_mode <> 'aligned' THEN
		RAISE EXCEPTION 'aligned_checkpoint_timeout applies to aligned checkpoints only'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It switches an aligned checkpoint to unaligned when alignment takes longer; an unaligned checkpoint does not align.';
	END IF;
	IF aligned_checkpoint_timeout < interval '0' THEN
		RAISE EXCEPTION 'aligned_checkpoint_timeout must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Zero switches every checkpoint to unaligned at its first barrier.';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION streamflink._check_parallelism(int, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._check_parallelism(int, text, interval) TO streamflink_user;

/* Tenants create pipelines with them (streamflink_user's INSERT columns). */
GRANT INSERT (parallelism, checkpoint_mode, aligned_checkpoint_timeout)
	ON streamflink.pipeline TO streamflink_user;

/* create_window_pipeline and create_pattern_pipeline take parallelism,
 * checkpoint_mode and aligned_checkpoint_timeout: see their definitions above. */

/* What every running task reports (src/task.c). */
CREATE FUNCTION streamflink._tasks(
	OUT pipeline_id int, OUT task int, OUT pid int, OUT parallelism int,
	OUT partitions int[], OUT key_group_first int, OUT key_group_last int,
	OUT events_in bigint, OUT events_out bigint, OUT events_per_second float8,
	OUT busy_ms_per_second float8, OUT idle_ms_per_second float8,
	OUT backpressured_ms_per_second float8,
	OUT input_queue_fill float8, OUT output_queue_fill float8,
	OUT watermark timestamptz, OUT last_checkpoint bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamflink_tasks'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._tasks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._tasks() TO streamflink_user;

/*
 * One row per running task (worker) of a pipeline, as Flink's web UI shows
 * subtasks: the busiest (busy_ms_per_second near 1000) is the bottleneck,
 * the tasks feeding it are backpressured.  A role sees the tasks of the
 * pipelines it may see.
 */
CREATE VIEW streamflink.tasks WITH (security_invoker = true) AS
SELECT p.name AS pipeline, t.task, t.pid, t.parallelism, t.partitions,
	   t.key_group_first, t.key_group_last,
	   t.events_in, t.events_out, t.events_per_second,
	   t.busy_ms_per_second, t.idle_ms_per_second, t.backpressured_ms_per_second,
	   t.input_queue_fill, t.output_queue_fill, t.watermark, t.last_checkpoint
FROM streamflink._tasks() t
JOIN streamflink.pipeline p ON p.id = t.pipeline_id;
GRANT SELECT ON streamflink.tasks TO streamflink_user;

/* The checkpoints, with the figures of parallel ones at the end. */
CREATE OR REPLACE VIEW streamflink.checkpoints WITH (security_invoker = true) AS
SELECT p.name AS pipeline, c.id, c.started, c.completed, c.duration,
	   c.state_bytes, c.new_state_bytes, c.events, c.rows_emitted,
	   c.parallelism, c.start_delay, c.alignment, c.slowest_task,
	   c.unaligned_tasks, c.persisted_bytes,
	   (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
				'task', t.task, 'duration', t.duration, 'start_delay', t.start_delay,
				'alignment', t.alignment, 'events', t.events,
				'state_bytes', t.state_bytes, 'unaligned', t.unaligned,
				'persisted_bytes', t.persisted_bytes) ORDER BY t.task)
		  FROM streamflink.checkpoint_task t
		 WHERE t.pipeline_id = c.pipeline_id AND t.checkpoint_id = c.id) AS tasks
FROM streamflink.checkpoint c
JOIN streamflink.pipeline p ON p.id = c.pipeline_id;

/*
 * Quotas: max_running counts workers, every task of a parallel pipeline
 * (streamflink._quota_pipelines sums the running pipelines' parallelism).
 * As in 0.1 but for the max_running check.
 */
CREATE OR REPLACE FUNCTION streamflink._check_quota(owner regrole, action text, pipeline_id int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q streamflink.role_quota;
	n bigint;
	tasks int;
BEGIN
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = owner) THEN
		RETURN;
	END IF;
	SELECT * INTO q FROM streamflink.role_quota r WHERE r.role = owner;
	IF NOT FOUND THEN
		SELECT * INTO q FROM streamflink.role_quota r WHERE r.role IS NULL;
		IF NOT FOUND THEN
			RETURN;
		END IF;
	END IF;
	/* Two sessions of one role must not both pass the same last slot. */
	PERFORM pg_advisory_xact_lock(hashtext('streamflink.role_quota'),
								  (owner::oid::bigint - 2147483648)::int);
	IF action = 'create' AND q.max_pipelines IS NOT NULL THEN
		n := streamflink._quota_pipelines(owner, false, NULL);
		IF n >= q.max_pipelines THEN
			RAISE EXCEPTION 'role % has reached its quota of pipelines (%)', owner, q.max_pipelines
				USING ERRCODE = 'configuration_limit_exceeded',
					  HINT = 'Drop a pipeline, or ask the database administrator to raise max_pipelines in streamflink.role_quota; see streamflink.quotas.';
		END IF;
	ELSIF action = 'start' THEN
		IF q.max_running IS NOT NULL THEN
			/* every task of a parallel pipeline is a worker, and counts */
			n := streamflink._quota_pipelines(owner, true, pipeline_id);
			tasks := coalesce((SELECT p.parallelism FROM streamflink.pipeline p
							   WHERE p.id = _check_quota.pipeline_id), 1);
			IF tasks > 1 AND n + tasks > q.max_running THEN
				RAISE EXCEPTION 'role % has reached its quota of running pipelines (%)', owner, q.max_running
					USING ERRCODE = 'configuration_limit_exceeded',
						  DETAIL = pg_catalog.format('Each task of a parallel pipeline counts: %s running, %s to start.', n, tasks),
						  HINT = 'Stop a pipeline, or ask the database administrator to raise max_running in streamflink.role_quota; see streamflink.quotas.';
			ELSIF n >= q.max_running THEN
				RAISE EXCEPTION 'role % has reached its quota of running pipelines (%)', owner, q.max_running
					USING ERRCODE = 'configuration_limit_exceeded',
						  HINT = 'Stop a pipeline, or ask the database administrator to raise max_running in streamflink.role_quota; see streamflink.quotas.';
			END IF;
		END IF;
		IF q.max_state_bytes IS NOT NULL THEN
			SELECT coalesce(sum(c.state_bytes), 0) INTO n
			FROM streamflink.pipeline p
			CROSS JOIN LATERAL (SELECT ck.state_bytes FROM streamflink.checkpoint ck
								WHERE ck.pipeline_id = p.id ORDER BY ck.id DESC LIMIT 1) c
			WHERE p.owner = _check_quota.owner;
			IF n > q.max_state_bytes THEN
				RAISE EXCEPTION 'role % holds % of pipeline state, over its quota of %',
						owner, pg_size_pretty(n), pg_size_pretty(q.max_state_bytes)
					USING ERRCODE = 'configuration_limit_exceeded',
						  HINT = 'Drop pipelines, or ask the database administrator to raise max_state_bytes in streamflink.role_quota; see streamflink.quotas.';
			END IF;
		END IF;
	END IF;
END
$$;

/* ====================================================================
 * Rescaling pipelines (src/savepoint.c; README "Savepoints", rescaling).
 * After the parallel pipelines' section: it needs pipeline.parallelism.
 *
 * start(pipeline, from_savepoint => name,
 * parallelism => M).  Each new task builds its state from the savepoint's
 * key-group range snapshots that overlap its own range (the worker,
 * savepoint_prepare_restore); partitions and their positions go to the
 * task that reads them now.  The state layout of a pipeline is the
 * parallelism of its last completed checkpoint: a stopped pipeline whose
 * parallelism differs from it, without a savepoint restore pending, is
 * rescaled from that checkpoint at its next start (src/rescale.c).
 * ==================================================================== */
/*
 * Rescaling from the last checkpoint (start(pipeline, parallelism => n)
 * without a savepoint, src/rescale.c): refused where the last checkpoint's
 * state cannot be redistributed.  Called by start() and by the layout
 * trigger below (so a superuser's UPDATE is checked the same).
 */
CREATE FUNCTION streamflink._check_rescale_from_checkpoint(p streamflink.pipeline, parallelism int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	last streamflink.checkpoint;
BEGIN
	SELECT * INTO last FROM streamflink.checkpoint c WHERE c.pipeline_id = p.id
	 ORDER BY c.id DESC LIMIT 1;
	IF NOT FOUND OR last.parallelism = parallelism THEN
		RETURN;					/* no state yet, or its layout already */
	END IF;
	IF p.sink_topic IS NOT NULL THEN
		RAISE EXCEPTION 'pipeline "%" writes to a Kafka sink: it cannot be rescaled from its last checkpoint', p.name
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = pg_catalog.format('Each of its %s task(s) re-sends its own decided Kafka transactions after a crash; a task that goes would leave them unsent.', last.parallelism),
				  HINT = pg_catalog.format('Keep parallelism %s, or rescale through a savepoint to parallelism 1.', last.parallelism);
	END IF;
	IF coalesce(last.persisted_bytes, 0) > 0 THEN
		RAISE EXCEPTION 'checkpoint % of pipeline "%" holds channel state: it cannot be rescaled', last.id, p.name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = pg_catalog.format('An unaligned checkpoint keeps the records in flight between its %s task(s), routed by their key-group ranges.', last.parallelism),
				  HINT = 'Start it with its current parallelism and stop it with a savepoint (always aligned), then start(pipeline, from_savepoint => name, parallelism => n).';
	END IF;
END
$$;

CREATE FUNCTION streamflink._check_rescale(p streamflink.pipeline, from_savepoint text, parallelism int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM streamflink._check_parallelism(parallelism, p.checkpoint_mode, p.aligned_checkpoint_timeout);
	IF p.state = 'running' THEN
		RAISE EXCEPTION 'pipeline "%" is running: its parallelism cannot change', p.name
			USING ERRCODE = 'object_in_use',
				  HINT = 'Stop it (stop(pipeline), or stop(pipeline, savepoint => name)), then start(pipeline, parallelism => n).';
	END IF;
	IF from_savepoint IS NULL THEN
		PERFORM streamflink._check_rescale_from_checkpoint(p, parallelism);
	ELSIF p.sink_topic IS NOT NULL AND parallelism > 1 THEN
		RAISE EXCEPTION 'pipeline "%" writes to a Kafka sink: it cannot be rescaled yet', p.name
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Rescale pipelines with a table sink.';
	END IF;
	/*
	 * In-doubt transactions of an interrupted checkpoint are no obstacle:
	 * the restoring task 0 resolves every old task's before the new tasks
	 * start (src/rescale.c, rescale_quiesce).  Except for a Kafka sink,
	 * whose tasks each send their own decided transactions' records again
	 * at recovery: a task that goes would leave them unsent.
	 */
	IF p.sink_topic IS NOT NULL AND
	   EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts x
				 JOIN pg_catalog.pg_database d ON d.datname = x.database
				WHERE d.datname = pg_catalog.current_database()
				  AND x.gid LIKE pg_catalog.format('streamflink:%s:%s:%%', d.oid, p.id)) THEN
		RAISE EXCEPTION 'pipeline "%" has prepared transactions of an interrupted checkpoint', p.name
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Start it once with its current parallelism (its tasks resolve them and send their records to Kafka), stop it with a savepoint, then rescale.';
	END IF;
END
$$;

/* The state layout guard: also for superusers' own UPDATEs of the catalog. */
CREATE FUNCTION streamflink._pipeline_parallelism_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.parallelism IS NOT DISTINCT FROM OLD.parallelism AND
	   NEW.restore_savepoint IS NOT DISTINCT FROM OLD.restore_savepoint THEN
		RETURN NEW;
	END IF;
	IF NEW.parallelism IS DISTINCT FROM OLD.parallelism AND OLD.state = 'running' THEN
		RAISE EXCEPTION 'pipeline "%" is running: its parallelism cannot change', NEW.name
			USING ERRCODE = 'object_in_use',
				  HINT = 'Stop it, then start(pipeline, parallelism => n).';
	END IF;
	/* the bounds start() checks, for a direct UPDATE too */
	IF NEW.parallelism IS DISTINCT FROM OLD.parallelism THEN
		PERFORM streamflink._check_parallelism(NEW.parallelism, NEW.checkpoint_mode,
											   NEW.aligned_checkpoint_timeout);
		/*
		 * A tenant's tasks get at least 2MB of state memory each.  Its own
		 * sizes are not checked again: it cannot change them, and a worker
		 * scales them down to its tasks' shares at its start.
		 */
		PERFORM streamflink.state_settings(NEW.state_profile, NULL, NEW.owner, NEW.parallelism);
	END IF;
	/*
	 * Without a savepoint to restore, a parallelism other than the last
	 * checkpoint's rescales that checkpoint at the next start.
	 */
	IF NEW.restore_savepoint IS NULL THEN
		PERFORM streamflink._check_rescale_from_checkpoint(NEW, NEW.parallelism);
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER check_parallelism BEFORE UPDATE OF parallelism, restore_savepoint ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_parallelism_check();

/* savepoint_offset has no foreign key (see above): its rows go with the savepoint's. */
CREATE FUNCTION streamflink._savepoint_remove_offsets()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM streamflink.savepoint_offset o WHERE o.savepoint_id = OLD.id;
	RETURN NULL;
END
$$;
CREATE TRIGGER remove_offsets AFTER DELETE ON streamflink.savepoint
	FOR EACH ROW EXECUTE FUNCTION streamflink._savepoint_remove_offsets();

REVOKE ALL ON FUNCTION streamflink._check_rescale(streamflink.pipeline, text, int),
	streamflink._check_rescale_from_checkpoint(streamflink.pipeline, int),
	streamflink._pipeline_parallelism_check(), streamflink._savepoint_remove_offsets() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._check_rescale(streamflink.pipeline, text, int),
	streamflink._check_rescale_from_checkpoint(streamflink.pipeline, int) TO streamflink_user;
GRANT UPDATE (parallelism) ON streamflink.pipeline TO streamflink_user;

/* ====================================================================
 * Checkpoint timing: sync and async parts (see the README's
 * "Checkpoints: sync and async parts, retention", src/checkpoint.h).
 *
 * As Flink reports a checkpoint: the synchronous part is the state's flush
 * (the operator's cache written back, the RocksDB memtables flushed) and
 * its snapshot (hard-linked SST files); the asynchronous part runs from
 * there to the decision (sink rows, positions, PREPARE TRANSACTION, a
 * parallel pipeline's wait for its other tasks).  NULL for rows written
 * before 0.2.  Snapshots kept on disk: streamflink.checkpoints_retained.
 * ==================================================================== */
ALTER TABLE streamflink.checkpoint ADD COLUMN sync_duration interval;
ALTER TABLE streamflink.checkpoint ADD COLUMN async_duration interval;
COMMENT ON COLUMN streamflink.checkpoint.sync_duration IS
	'state flush and snapshot (the slowest task''s in a parallel pipeline)';
COMMENT ON COLUMN streamflink.checkpoint.async_duration IS
	'from the end of the (last task''s) state snapshot to the decision';
ALTER TABLE streamflink.checkpoint_task ADD COLUMN sync_duration interval;
ALTER TABLE streamflink.checkpoint_task ADD COLUMN async_duration interval;
COMMENT ON COLUMN streamflink.checkpoint_task.sync_duration IS
	'its state flush and snapshot';
COMMENT ON COLUMN streamflink.checkpoint_task.async_duration IS
	'from the end of its snapshot to its figures recorded, just before its PREPARE';

/* The checkpoints, with the sync and async parts at the end. */
CREATE OR REPLACE VIEW streamflink.checkpoints WITH (security_invoker = true) AS
SELECT p.name AS pipeline, c.id, c.started, c.completed, c.duration,
	   c.state_bytes, c.new_state_bytes, c.events, c.rows_emitted,
	   c.parallelism, c.start_delay, c.alignment, c.slowest_task,
	   c.unaligned_tasks, c.persisted_bytes,
	   (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
				'task', t.task, 'duration', t.duration, 'start_delay', t.start_delay,
				'alignment', t.alignment, 'events', t.events,
				'state_bytes', t.state_bytes, 'unaligned', t.unaligned,
				'persisted_bytes', t.persisted_bytes,
				'sync_duration', t.sync_duration, 'async_duration', t.async_duration)
				ORDER BY t.task)
		  FROM streamflink.checkpoint_task t
		 WHERE t.pipeline_id = c.pipeline_id AND t.checkpoint_id = c.id) AS tasks,
	   c.sync_duration, c.async_duration
FROM streamflink.checkpoint c
JOIN streamflink.pipeline p ON p.id = c.pipeline_id;

/* ---------------------------------------------------------------------------
 * Local aggregation (two-stage, local-global) and hot keys (src/local_agg.c,
 * src/hot_keys.c)
 *
 * local_aggregation: NULL (automatic: on for tumbling and hopping windows of
 * parallelism > 1 whose aggregates all have combine functions), true
 * (refused where it cannot work), false (off).  No effect at parallelism 1.
 */
ALTER TABLE streamflink.pipeline ADD COLUMN local_aggregation boolean;
GRANT INSERT (local_aggregation) ON streamflink.pipeline TO streamflink_user;

CREATE FUNCTION streamflink._check_local_aggregation(row_type regtype, aggregates text,
													 window_kind text, local_aggregation boolean)
RETURNS void
AS 'MODULE_PATHNAME', 'streamflink_check_local_aggregation'
LANGUAGE C;
REVOKE ALL ON FUNCTION streamflink._check_local_aggregation(regtype, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._check_local_aggregation(regtype, text, text, boolean) TO streamflink_user;

/* The top keys of each running task (src/hot_keys.c). */
CREATE FUNCTION streamflink._hot_keys(
	OUT pipeline_id int, OUT task int, OUT rank int, OUT key text,
	OUT owner_task int, OUT events bigint, OUT share float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamflink_hot_keys'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._hot_keys() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._hot_keys() TO streamflink_user;

/*
 * The keys each task of a running parallel pipeline reads most, from a
 * space-saving sketch whose counts halve every 10 seconds: events and
 * share (of the task's events, decayed alike) are of recent traffic.
 * owner_task is the task whose operator owns the key.  A role sees the
 * tasks of the pipelines it may see, as in streamflink.tasks.
 */
CREATE VIEW streamflink.hot_keys WITH (security_invoker = true) AS
SELECT p.name AS pipeline, h.task, h.rank, h.key, h.owner_task, h.events, h.share
FROM streamflink._hot_keys() h
JOIN streamflink.pipeline p ON p.id = h.pipeline_id;
GRANT SELECT ON streamflink.hot_keys TO streamflink_user;
