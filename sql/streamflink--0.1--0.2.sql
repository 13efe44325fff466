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
 * The RocksDB settings a pipeline of 'owner' (NULL: the caller) would run
 * with now, as name=value;... text; an error with a hint when the profile
 * or an option is invalid, or beyond what the owner may use (memory over a
 * worker's share of streamflink.state_memory, max_open_files=-1, many
 * background jobs: superusers only).
 */
CREATE FUNCTION streamflink.state_settings(profile text DEFAULT NULL, options text DEFAULT NULL,
										   owner regrole DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'streamflink_state_settings'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION streamflink.state_settings(text, text, regrole) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.state_settings(text, text, regrole) TO streamflink_user;

/* BEFORE INSERT OR UPDATE OF state_profile, state_options ON pipeline. */
CREATE FUNCTION streamflink._pipeline_state_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.state_profile IS NOT NULL OR NEW.state_options IS NOT NULL THEN
		PERFORM streamflink.state_settings(NEW.state_profile, NEW.state_options, NEW.owner);
	END IF;
	RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION streamflink._pipeline_state_check() FROM PUBLIC;
CREATE TRIGGER check_state_options BEFORE INSERT OR UPDATE OF state_profile, state_options
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
	state_options text DEFAULT NULL)
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

	/* RocksDB tuning, before anything is created (the trigger checks again) */
	PERFORM streamflink.state_settings(state_profile, state_options, current_user::regrole);

	/*
	 * The sink table: its columns are typed as GROUP BY would type them
	 * (sum(int4) is bigint, avg(float8) is float8, ...), from the analysed
	 * aggregate list, never by splicing the user's text into DDL.  A unique
	 * index on (key, window_start) makes every window appear at most once;
	 * NULLS NOT DISTINCT as GROUP BY groups NULLs.
	 */
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

	INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind,
									  window_size, window_slide, session_gap, aggregates, sink,
									  allowed_lateness, checkpoint_interval,
									  state_profile, state_options)
	VALUES (p_name, s.id, 'window', keys, wkind, size, slide, gap, aggregates, sink_rel,
			allowed_lateness, checkpoint_interval,
			create_window_pipeline.state_profile, create_window_pipeline.state_options);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text) TO streamflink_user;

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
	state_options text DEFAULT NULL)
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
									  state_profile, state_options)
	VALUES (p_name, s.id, 'pattern', keys, pattern, define, measures, skip, within,
			timed_out_rel, sink_rel, interval '0', checkpoint_interval,
			max_partial_matches, max_partial_match_events,
			create_pattern_pipeline.state_profile, create_pattern_pipeline.state_options);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text) TO streamflink_user;

/*
 * RocksDB's numbers of each running pipeline, as its worker last published
 * them (about once a second).  Counters are since the worker opened the
 * database.  A role sees the pipelines it may see in streamflink.pipelines.
 */
CREATE FUNCTION streamflink._state_metrics(
	OUT pipeline_id int, OUT pid int, OUT collected_at timestamptz,
	OUT estimated_keys bigint, OUT live_sst_bytes bigint, OUT sst_bytes_per_level bigint[],
	OUT memtable_bytes bigint, OUT table_readers_bytes bigint,
	OUT block_cache_capacity bigint, OUT block_cache_usage bigint, OUT block_cache_pinned bigint,
	OUT block_cache_hits bigint, OUT block_cache_misses bigint, OUT block_cache_hit_ratio float8,
	OUT pending_compaction_bytes bigint, OUT running_compactions bigint,
	OUT compactions bigint, OUT flushes bigint, OUT stall_micros bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamflink_state_metrics'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION streamflink._state_metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink._state_metrics() TO streamflink_user;

CREATE VIEW streamflink.state_metrics WITH (security_invoker = true) AS
SELECT p.name AS pipeline,
	   coalesce(p.state_profile, current_setting('streamflink.state_profile', true)) AS profile,
	   m.pid, m.collected_at, m.estimated_keys, m.live_sst_bytes, m.sst_bytes_per_level,
	   m.memtable_bytes, m.table_readers_bytes,
	   m.block_cache_capacity, m.block_cache_usage, m.block_cache_pinned,
	   m.block_cache_hits, m.block_cache_misses, m.block_cache_hit_ratio,
	   m.pending_compaction_bytes, m.running_compactions, m.compactions, m.flushes,
	   m.stall_micros
FROM streamflink._state_metrics() m
JOIN streamflink.pipeline p ON p.id = m.pipeline_id;
GRANT SELECT ON streamflink.state_metrics TO streamflink_user;

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

DROP FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text);
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
	parallelism int DEFAULT 1,
	checkpoint_mode text DEFAULT 'aligned',
	aligned_checkpoint_timeout interval DEFAULT NULL)
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

	/* parallel pipelines (see "Parallel pipelines" above) */
	PERFORM streamflink._check_parallelism(create_window_pipeline.parallelism, create_window_pipeline.checkpoint_mode,
										create_window_pipeline.aligned_checkpoint_timeout);

	/* RocksDB tuning, before anything is created (the trigger checks again) */
	PERFORM streamflink.state_settings(state_profile, state_options, current_user::regrole);

	/*
	 * The sink table: its columns are typed as GROUP BY would type them
	 * (sum(int4) is bigint, avg(float8) is float8, ...), from the analysed
	 * aggregate list, never by splicing the user's text into DDL.  A unique
	 * index on (key, window_start) makes every window appear at most once;
	 * NULLS NOT DISTINCT as GROUP BY groups NULLs.
	 */
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

	INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind,
									  window_size, window_slide, session_gap, aggregates, sink,
									  allowed_lateness, checkpoint_interval,
									  state_profile, state_options,
									  parallelism, checkpoint_mode, aligned_checkpoint_timeout)
	VALUES (p_name, s.id, 'window', keys, wkind, size, slide, gap, aggregates, sink_rel,
			allowed_lateness, checkpoint_interval,
			create_window_pipeline.state_profile, create_window_pipeline.state_options,
			create_window_pipeline.parallelism, create_window_pipeline.checkpoint_mode,
			create_window_pipeline.aligned_checkpoint_timeout);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text, int, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_window_pipeline(text, text, text, text, text, text, interval, interval, interval, interval, interval, text, text, int, text, interval) TO streamflink_user;

DROP FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text);
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

	/* parallel pipelines (see "Parallel pipelines" above) */
	PERFORM streamflink._check_parallelism(create_pattern_pipeline.parallelism, create_pattern_pipeline.checkpoint_mode,
										create_pattern_pipeline.aligned_checkpoint_timeout);

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
									  parallelism, checkpoint_mode, aligned_checkpoint_timeout)
	VALUES (p_name, s.id, 'pattern', keys, pattern, define, measures, skip, within,
			timed_out_rel, sink_rel, interval '0', checkpoint_interval,
			max_partial_matches, max_partial_match_events,
			create_pattern_pipeline.state_profile, create_pattern_pipeline.state_options,
			create_pattern_pipeline.parallelism, create_pattern_pipeline.checkpoint_mode,
			create_pattern_pipeline.aligned_checkpoint_timeout);
END
$$;
REVOKE ALL ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text, int, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamflink.create_pattern_pipeline(text, text, text, text, text, text, interval, text, text, text, interval, int, int, text, text, int, text, interval) TO streamflink_user;

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
