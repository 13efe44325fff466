/* streamflink--0.1.sql */

\echo Use "CREATE EXTENSION streamflink" to load this file. \quit

/*
 * Catalog.  Rows here are the truth about sources, pipelines and completed
 * checkpoints; shared memory only mirrors what running workers are doing.
 * Tables are singular (like pg_class); the views users read are plural.
 */

CREATE TABLE streamflink.source (
	id			serial PRIMARY KEY,
	name		text NOT NULL UNIQUE
				CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,47}$'),
	brokers		text NOT NULL,
	topic		text NOT NULL,
	format		text NOT NULL CHECK (format IN ('json', 'csv', 'text')),
	row_type	regtype NOT NULL,	/* composite type of the decoded columns */
	event_time	text,			/* column holding event time; NULL: Kafka timestamp */
	max_out_of_orderness interval NOT NULL,
	idle_timeout interval,		/* a partition idle this long stops holding back the watermark */
	options		text[] NOT NULL DEFAULT '{}',	/* librdkafka name=value settings */
	owner		regrole NOT NULL DEFAULT current_user::regrole,
	created		timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE streamflink.pipeline (
	id			serial PRIMARY KEY,
	name		text NOT NULL UNIQUE
				CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,47}$'),
	source_id	int NOT NULL REFERENCES streamflink.source (id),
	kind		text NOT NULL CHECK (kind IN ('window', 'pattern')),
	key_columns text[] NOT NULL,
	/* window pipelines */
	window_kind text CHECK (window_kind IN ('tumble', 'hop', 'session')),
	window_size interval,		/* tumble, hop */
	window_slide interval,		/* hop */
	session_gap interval,		/* session */
	aggregates	text,
	/* pattern pipelines (CEP) */
	pattern		text,			/* row pattern, see create_pattern_pipeline */
	define		text,			/* var AS condition, ... */
	measures	text,			/* expr AS name, ... */
	skip		text,			/* after-match skip strategy */
	within		interval,		/* a match must fit in this time */
	timed_out	regclass,		/* where timed-out partial matches go */
	/* bounds of the partial matches of one key, see create_pattern_pipeline */
	max_partial_matches int NOT NULL DEFAULT 10000 CHECK (max_partial_matches > 0),
	max_partial_match_events int NOT NULL DEFAULT 100000 CHECK (max_partial_match_events > 0),
	CHECK (CASE kind WHEN 'window' THEN window_kind IS NOT NULL AND aggregates IS NOT NULL
					 ELSE pattern IS NOT NULL AND skip IS NOT NULL END),
	sink		regclass NOT NULL,
	allowed_lateness interval NOT NULL,
	checkpoint_interval interval NOT NULL,
	state		text NOT NULL DEFAULT 'stopped' CHECK (state IN ('stopped', 'running')),
	owner		regrole NOT NULL DEFAULT current_user::regrole,
	created		timestamptz NOT NULL DEFAULT now(),
	/*
	 * aggregates (window) or define and measures (pattern) parsed and
	 * analysed once, as the owner in the creating session's search_path:
	 * what the worker runs (nodeToString text, as pg_rewrite keeps views).
	 * Written only by the trigger below, from the text columns.
	 */
	aggregates_tree text,
	pattern_tree text
);

/*
 * One row per completed checkpoint: inserted, and committed, only after the
 * checkpoint's prepared transaction exists.  Its presence is the decision to
 * COMMIT PREPARED that transaction, also during recovery.
 */
CREATE TABLE streamflink.checkpoint (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	id			bigint NOT NULL,
	started		timestamptz NOT NULL,
	completed	timestamptz NOT NULL,
	duration	interval NOT NULL,
	state_bytes bigint NOT NULL,		/* size of the RocksDB snapshot */
	new_state_bytes bigint NOT NULL,	/* bytes not shared with the previous snapshot */
	events		bigint NOT NULL,		/* events consumed in this checkpoint's epoch */
	rows_emitted bigint NOT NULL,		/* sink rows written in this epoch */
	PRIMARY KEY (pipeline_id, id)
);

/*
 * Kafka positions of a checkpoint: written inside the checkpoint's prepared
 * transaction, so they become visible exactly when its sink rows do.
 */
CREATE TABLE streamflink.checkpoint_offset (
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	checkpoint_id bigint NOT NULL,
	topic		text NOT NULL,
	partition	int NOT NULL,
	next_offset bigint NOT NULL,	/* offset of the next message to read */
	max_event_time timestamptz,		/* for the partition's watermark */
	PRIMARY KEY (pipeline_id, checkpoint_id, partition)
);

/*
 * Messages that could not be processed, and result rows the sink refused
 * (a key too long for its index, a user's constraint): those come from no
 * one message, so their partition and offset are NULL, their payload is
 * the row as JSON.  The UNIQUE constraint still holds for messages.
 */
CREATE TABLE streamflink.dead_letter (
	id			bigserial PRIMARY KEY,
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	topic		text NOT NULL,
	partition	int,
	"offset"	bigint,
	CHECK ((partition IS NULL) = ("offset" IS NULL)),
	payload		bytea,
	error		text NOT NULL,
	received	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (pipeline_id, partition, "offset")
);

CREATE TABLE streamflink.late_event (
	id			bigserial PRIMARY KEY,
	pipeline_id int NOT NULL REFERENCES streamflink.pipeline (id) ON DELETE CASCADE,
	topic		text NOT NULL,
	partition	int NOT NULL,
	"offset"	bigint NOT NULL,
	event_time	timestamptz NOT NULL,
	watermark	timestamptz NOT NULL,
	payload		bytea,
	reason		text NOT NULL,
	received	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (pipeline_id, partition, "offset")
);

/*
 * Analyses a pipeline's fragments into the *_tree columns and records in
 * pg_depend what they use (its sink table is the dependent object), on
 * every insert and on updates of the definition; a delete removes those
 * dependencies.  See src/resolve.c.
 */
CREATE FUNCTION streamflink._pipeline_resolve()
RETURNS trigger
AS 'MODULE_PATHNAME', 'streamflink_pipeline_resolve'
LANGUAGE C;

CREATE TRIGGER pipeline_resolve
	BEFORE INSERT OR UPDATE OR DELETE ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_resolve();

SELECT pg_catalog.pg_extension_config_dump('streamflink.source', '');
SELECT pg_catalog.pg_extension_config_dump('streamflink.pipeline', '');
SELECT pg_catalog.pg_extension_config_dump('streamflink.checkpoint', '');
SELECT pg_catalog.pg_extension_config_dump('streamflink.checkpoint_offset', '');
SELECT pg_catalog.pg_extension_config_dump('streamflink.dead_letter', '');
SELECT pg_catalog.pg_extension_config_dump('streamflink.late_event', '');

/*
 * Internal C functions.
 */

/* Checks an aggregate list against a row type; returns the output names. */
CREATE FUNCTION streamflink._check_aggregates(row_type regtype, aggregates text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'streamflink_check_aggregates'
LANGUAGE C STRICT;

/*
 * The sink columns of an aggregate list ("name type [COLLATE c]"), as
 * GROUP BY would type them.
 */
CREATE FUNCTION streamflink._aggregate_columns(row_type regtype, aggregates text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'streamflink_aggregate_columns'
LANGUAGE C STRICT;

/*
 * Checks a pattern, its conditions, measures and skip strategy against a
 * row type; returns the measures as column definitions ("name type").
 */
CREATE FUNCTION streamflink._check_pattern(row_type regtype, pattern text, define text,
										   measures text, skip text, has_within boolean)
RETURNS text[]
AS 'MODULE_PATHNAME', 'streamflink_check_pattern'
LANGUAGE C;

/* The fewest events a match of a pattern holds (its quantifiers' minimums). */
CREATE FUNCTION streamflink._pattern_min_events(pattern text, skip text, has_within boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_pattern_min_events'
LANGUAGE C;

/*
 * Refuses the librdkafka options a source owned by this role may not set:
 * our own settings for everyone, and for roles that are not superusers
 * anything outside an allow-list (see src/kafka_source.c).
 */
CREATE FUNCTION streamflink._check_kafka_options(options text[], owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'streamflink_check_kafka_options'
LANGUAGE C STRICT;

/* Free worker slots (streamflink.max_workers less running workers). */
CREATE FUNCTION streamflink._free_worker_slots()
RETURNS int
AS 'MODULE_PATHNAME', 'streamflink_free_worker_slots'
LANGUAGE C;

/* What the running workers of this database report. */
CREATE FUNCTION streamflink._worker_status(
	OUT pipeline_id int, OUT pid int, OUT status text, OUT error text,
	OUT started timestamptz, OUT events bigint, OUT events_per_second float8,
	OUT rows_emitted bigint, OUT dead_letters bigint, OUT late_events bigint,
	OUT watermark timestamptz, OUT lag bigint, OUT last_checkpoint bigint,
	OUT last_checkpoint_at timestamptz, OUT state_keys bigint,
	OUT partial_matches_dropped bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'streamflink_worker_status'
LANGUAGE C STRICT;

/* Open windows of a running pipeline, as rows of its sink's type. */
CREATE FUNCTION streamflink.live(pipeline text, sink_row anyelement)
RETURNS SETOF anyelement
AS 'MODULE_PATHNAME', 'streamflink_live'
LANGUAGE C CALLED ON NULL INPUT;

/*
 * Decode one payload as a source of this row type would; as the worker
 * does, the types' input functions and domain checks run as 'owner' (the
 * source's) when given.
 */
CREATE FUNCTION streamflink._decode(format text, row_type anyelement, payload bytea,
									owner regrole DEFAULT NULL,
									OUT "row" anyelement, OUT error text)
AS 'MODULE_PATHNAME', 'streamflink_decode'
LANGUAGE C CALLED ON NULL INPUT;

/* Produce messages to a Kafka topic (tests, demos, backfills). */
CREATE FUNCTION streamflink.produce(brokers text, topic text, payloads text[],
									partition int DEFAULT -1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_produce'
LANGUAGE C STRICT;

/*
 * A deterministic, Kafka-free run of a pipeline's operator over given
 * messages, for tests (see src/replay.c): writes its sink, dead-letter and
 * late-event rows in the caller's transaction, with seed-driven watermark
 * steps, checkpoints and restores; one row per message says how it was
 * taken.  The pipeline must not be running.
 */
CREATE FUNCTION streamflink._replay(pipeline text, payloads text[],
	partitions int[] DEFAULT NULL, seed int DEFAULT 0,
	p_advance float8 DEFAULT 0.25, p_checkpoint float8 DEFAULT 0.05,
	p_restore float8 DEFAULT 0.02, max_restores int DEFAULT 3)
RETURNS TABLE (ord int, partition int, "offset" bigint, event_time timestamptz,
			   watermark timestamptz, status text, reason text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'streamflink_replay';
REVOKE ALL ON FUNCTION streamflink._replay(text, text[], int[], int, float8, float8, float8, int) FROM PUBLIC;

/*
 * Helpers for the SQL functions below.
 */

CREATE FUNCTION streamflink._interval_ms(i interval)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT (extract(epoch FROM i) * 1000)::bigint $$;

/* Windows need fixed durations: a month has no fixed length. */
CREATE FUNCTION streamflink._check_duration(what text, i interval, allow_zero bool)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF i IS NULL THEN
		RETURN;
	END IF;
	IF extract(month FROM i) <> 0 OR extract(year FROM i) <> 0 THEN
		RAISE EXCEPTION 'invalid %: %', what, i
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use a fixed duration in days, hours, minutes, seconds or milliseconds.';
	END IF;
	IF i < interval '0' OR (NOT allow_zero AND i = interval '0') THEN
		RAISE EXCEPTION 'invalid %: %', what, i
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = CASE WHEN allow_zero THEN 'It must not be negative.'
							  ELSE 'It must be positive.' END;
	END IF;
	/* In microseconds it must fit in 64 bits (about 292,000 years). */
	IF extract(epoch FROM i) >= 9223372036854 THEN
		RAISE EXCEPTION 'invalid %: %', what, i
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'It must be shorter than 292,000 years.';
	END IF;
	IF i <> interval '0' AND streamflink._interval_ms(i) = 0 THEN
		RAISE EXCEPTION 'invalid %: %', what, i
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The smallest unit is one millisecond.';
	END IF;
END
$$;

CREATE FUNCTION streamflink._source(source_name text)
RETURNS streamflink.source
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	s streamflink.source;
BEGIN
	SELECT * INTO s FROM streamflink.source WHERE name = source_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'source "%" does not exist', source_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with streamflink.create_source(); see streamflink.sources.';
	END IF;
	RETURN s;
END
$$;

CREATE FUNCTION streamflink._pipeline(pipeline_name text)
RETURNS streamflink.pipeline
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	p streamflink.pipeline;
BEGIN
	SELECT * INTO p FROM streamflink.pipeline WHERE name = pipeline_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', pipeline_name
			USING ERRCODE = 'undefined_object',
				  HINT = 'See streamflink.pipelines for the pipelines of this database.';
	END IF;
	RETURN p;
END
$$;

/* Only the owner (or a member of the owning role) manages an object. */
CREATE FUNCTION streamflink._check_owner(what text, obj_name text, owner regrole)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF NOT pg_has_role(current_user, owner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of % "%"', what, obj_name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('It is owned by role %s.', owner);
	END IF;
END
$$;

/* A new source's or pipeline's name: well formed and not taken. */
CREATE FUNCTION streamflink._check_new_name(what text, obj_name text, taken bool)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF obj_name IS NULL OR obj_name !~ '^[A-Za-z_][A-Za-z0-9_]{0,47}$' THEN
		RAISE EXCEPTION 'invalid % name: %', what, coalesce(quote_literal(obj_name), 'NULL')
			USING ERRCODE = 'invalid_name',
				  HINT = 'Use a letter or underscore followed by up to 47 letters, digits or underscores.';
	END IF;
	IF taken THEN
		RAISE EXCEPTION '% "%" already exists', what, obj_name
			USING ERRCODE = 'duplicate_object',
				  HINT = format('Choose another name, or drop it first with streamflink.drop_%s().', what);
	END IF;
END
$$;

/* Columns of a composite type, in order. */
CREATE FUNCTION streamflink._columns(t regtype)
RETURNS TABLE (attname text, atttype regtype, attnum int, atttypmod int)
LANGUAGE sql STABLE
AS $$
	SELECT a.attname::text, a.atttypid::regtype, a.attnum::int, a.atttypmod
	FROM pg_type ty
	JOIN pg_attribute a ON a.attrelid = ty.typrelid
	WHERE ty.oid = t AND a.attnum > 0 AND NOT a.attisdropped
	ORDER BY a.attnum
$$;

/*
 * Sources.
 */

CREATE FUNCTION streamflink.create_source(
	name text,
	brokers text,
	topic text,
	format text DEFAULT 'json',
	columns text DEFAULT NULL,
	event_time text DEFAULT NULL,
	max_out_of_orderness interval DEFAULT '0',
	idle_timeout interval DEFAULT NULL,
	options text[] DEFAULT '{}')
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
BEGIN
	PERFORM streamflink._check_new_name('source', src_name, streamflink._name_taken('source', src_name));
	IF coalesce(brokers, '') = '' OR coalesce(topic, '') = '' THEN
		RAISE EXCEPTION 'a source needs brokers and a topic'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example: brokers => ''127.0.0.1:9092'', topic => ''events''.';
	END IF;
	IF fmt IS NULL OR fmt NOT IN ('json', 'csv', 'text') THEN
		RAISE EXCEPTION 'unknown source format: %', coalesce(quote_literal(format), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Supported formats are json, csv and text.';
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

	SELECT count(*) INTO ncols FROM streamflink._columns(('streamflink.' || quote_ident(type_name))::regtype);
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

	INSERT INTO streamflink.source (name, brokers, topic, format, row_type, event_time,
									max_out_of_orderness, idle_timeout, options)
	VALUES (src_name, brokers, topic, fmt,
			('streamflink.' || quote_ident(type_name))::regtype,
			event_time, max_out_of_orderness, idle_timeout, coalesce(options, '{}'));
END
$$;

CREATE FUNCTION streamflink.drop_source(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s streamflink.source := streamflink._source(name);
	users text;
BEGIN
	PERFORM streamflink._check_owner('source', s.name, s.owner);
	SELECT string_agg(p.name, ', ' ORDER BY p.name) INTO users
	FROM streamflink.pipeline p WHERE p.source_id = s.id;
	IF users IS NOT NULL THEN
		RAISE EXCEPTION 'source "%" is used by pipeline %', s.name, users
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop those pipelines first.';
	END IF;
	DELETE FROM streamflink.source WHERE id = s.id;
	EXECUTE pg_catalog.format('DROP TYPE %s', s.row_type);
END
$$;

/*
 * Whether columns of a row type can be keys: equality as GROUP BY's, which
 * streamflink can follow in bytes (see src/group_key.h); errors if not.
 */
CREATE FUNCTION streamflink._check_key_columns(row_type regtype, keys text[])
RETURNS void
LANGUAGE C STABLE STRICT
AS 'MODULE_PATHNAME', 'streamflink_check_key_columns';

/* Key columns: a comma-separated list of source columns (may be empty). */
CREATE FUNCTION streamflink._key_columns(s streamflink.source, key text)
RETURNS text[]
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	keys text[] := '{}';
	k text;
BEGIN
	FOREACH k IN ARRAY regexp_split_to_array(coalesce(key, ''), '\s*,\s*') LOOP
		k := btrim(k);
		CONTINUE WHEN k = '';
		IF NOT EXISTS (SELECT 1 FROM streamflink._columns(s.row_type) c WHERE c.attname = k) THEN
			RAISE EXCEPTION 'key column "%" is not a column of source "%"', k, s.name
				USING ERRCODE = 'undefined_column',
					  HINT = format('Columns of this source: %s.',
									(SELECT string_agg(c.attname, ', ') FROM streamflink._columns(s.row_type) c));
		END IF;
		IF k = ANY (keys) THEN
			RAISE EXCEPTION 'key column "%" is listed twice', k
				USING ERRCODE = 'duplicate_column';
		END IF;
		keys := keys || k;
	END LOOP;
	/* Grouped as GROUP BY would: refuse types it could not group by. */
	PERFORM streamflink._check_key_columns(s.row_type, keys);
	RETURN keys;
END
$$;

/*
 * Window pipelines.
 */

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
	checkpoint_interval interval DEFAULT '1 second')
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
									  allowed_lateness, checkpoint_interval)
	VALUES (p_name, s.id, 'window', keys, wkind, size, slide, gap, aggregates, sink_rel,
			allowed_lateness, checkpoint_interval);
END
$$;

/*
 * Pattern pipelines (complex event processing, Flink CEP semantics).
 *
 * pattern: variables in sequence, SQL row-pattern style:
 *	 a b		  b is the very next event (strict contiguity, Flink next)
 *	 a -> b		  b follows, events not matching b may come between (followedBy)
 *	 a ->> b	  any later b (non-deterministic relaxed, followedByAny)
 *	 a !b c		  the event after a is not a b (notNext)
 *	 a -> !b -> c no b between a and c (notFollowedBy)
 *	 a !b		  at the end: the event after a is not a b; a's events match
 *	 a -> !b	  at the end (needs within): no b until a's within window
 *				  ends; the match is emitted then
 *	 quantifiers  a{n} a{n,m} a{n,} a+ a* a?  (iterations consecutive);
 *				  a{->n,} relaxed iterations, a{->>n,} any combination;
 *				  a trailing + is greedy: a{5,}+
 * define: var AS condition, ...; conditions are SQL boolean expressions
 *	 over the event's columns; they may refer to events already matched:
 *	 LAST(v.col [, n]), FIRST(v.col [, n]), v.col (= LAST for another
 *	 variable), and aggregates over a variable's events: SUM(v.amount),
 *	 COUNT(v.*), AVG(v.x), ...  Undefined variables match every event.
 * measures: expr AS name, ... over the whole match (same references;
 *	 plain columns are those of the last event); extra sink columns.
 * within: a match spans less than this (event time); partial matches
 *	 older than that are dropped, or written to the timed_out table.
 * skip: no_skip (default), skip_to_next, skip_past_last_event,
 *	 skip_to_first(var), skip_to_last(var).
 * max_partial_matches (default 10000), max_partial_match_events (default
 *	 100000): bounds of the partial matches one key holds at once, and of
 *	 the events they hold together (a pattern such as a{->>1,} b without
 *	 within would otherwise grow without end).  After each event the
 *	 partial matches are kept in creation order -- what the older ones
 *	 became first, the match the event starts last; completed matches a
 *	 skip strategy holds back count too -- and those beyond a bound are
 *	 discarded: counted in streamflink.pipelines
 *	 (partial_matches_dropped) and logged.  The same events always discard
 *	 the same partial matches.  A pattern whose matches need more events
 *	 than max_partial_match_events is refused.
 * Timeouts: the deadlines of partial matches (first event + within) pass
 *	 in time order, each followed by the skip strategy, interleaved with
 *	 the events at their times; so the results never depend on how far the
 *	 watermark moves at once.  A deadline past the timestamp range never
 *	 comes.
 * The sink table gets: the key columns, match_start, match_end, events
 * (jsonb: {"var": [event rows], ...}) and the measures.
 */
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
	max_partial_match_events int DEFAULT 100000)
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
									  max_partial_matches, max_partial_match_events)
	VALUES (p_name, s.id, 'pattern', keys, pattern, define, measures, skip, within,
			timed_out_rel, sink_rel, interval '0', checkpoint_interval,
			max_partial_matches, max_partial_match_events);
END
$$;

CREATE FUNCTION streamflink.start(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	IF p.state = 'running' THEN
		RAISE NOTICE 'pipeline "%" is already running', p.name;
		RETURN;
	END IF;
	/* Checks, quotas and the worker's start at commit: the catalog's triggers. */
	UPDATE streamflink.pipeline SET state = 'running' WHERE id = p.id;
END
$$;

CREATE FUNCTION streamflink.stop(pipeline text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	IF p.state = 'stopped' THEN
		RAISE NOTICE 'pipeline "%" is not running', p.name;
		RETURN;
	END IF;
	/* The worker is asked to stop at commit by the catalog's trigger. */
	UPDATE streamflink.pipeline SET state = 'stopped' WHERE id = p.id;
END
$$;

CREATE FUNCTION streamflink.drop_pipeline(pipeline text, drop_sink bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p streamflink.pipeline := streamflink._pipeline(pipeline);
BEGIN
	PERFORM streamflink._check_owner('pipeline', p.name, p.owner);
	IF p.state = 'running' THEN
		RAISE EXCEPTION 'pipeline "%" is running', p.name
			USING ERRCODE = 'object_in_use',
				  HINT = 'Stop it first with streamflink.stop().';
	END IF;
	/* The state directory goes at commit: the catalog's trigger. */
	DELETE FROM streamflink.pipeline WHERE id = p.id;
	/* A sink dropped by hand while the pipeline was stopped is gone already. */
	IF drop_sink THEN
		IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.sink) THEN
			EXECUTE pg_catalog.format('DROP TABLE %s', p.sink);
		END IF;
		IF p.timed_out IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.timed_out) THEN
			EXECUTE pg_catalog.format('DROP TABLE %s', p.timed_out);
		END IF;
	END IF;
END
$$;

/*
 * Open windows as jsonb, for any pipeline the caller may read: its owner's
 * members and roles that may SELECT its sink (checked by _live_sink).
 */
CREATE FUNCTION streamflink.live(pipeline text)
RETURNS SETOF jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sink regclass := streamflink._live_sink(pipeline);
BEGIN
	RETURN QUERY EXECUTE pg_catalog.format(
		'SELECT to_jsonb(l) FROM streamflink.live(%L, NULL::%s) AS l', pipeline, sink);
END
$$;

/*
 * What a source makes of a payload: the decoded row as jsonb, or the error
 * its dead letter would carry.  Try a format on sample messages with it.
 */
CREATE FUNCTION streamflink.decode(source text, payload bytea,
								   OUT decoded jsonb, OUT error text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s streamflink.source := streamflink._source(source);
BEGIN
	/*
	 * Decoding reports a bad payload in "error", never by raising; but a
	 * decoded row can fail to become jsonb: a json column may hold a number
	 * beyond numeric's range, which json accepts and jsonb does not.
	 */
	EXECUTE pg_catalog.format('SELECT to_jsonb(d."row"), d.error FROM streamflink._decode($1, NULL::%s, $2, $3) d',
							  s.row_type)
		INTO decoded, error USING s.format, payload, s.owner;
EXCEPTION WHEN others THEN
	decoded := NULL;
	error := 'decoded, but the row cannot be shown as jsonb: ' || SQLERRM;
END
$$;

CREATE FUNCTION streamflink.decode(source text, payload text,
								   OUT decoded jsonb, OUT error text)
LANGUAGE sql
AS $$ SELECT * FROM streamflink.decode(source, convert_to(payload, getdatabaseencoding())) $$;

/*
 * Views.
 */

CREATE VIEW streamflink.sources WITH (security_invoker = true) AS
SELECT s.name, s.brokers, s.topic, s.format,
	   (SELECT string_agg(quote_ident(c.attname) || ' ' || format_type(c.atttype, c.atttypmod), ', ')
		  FROM streamflink._columns(s.row_type) c) AS columns,
	   s.event_time, s.max_out_of_orderness, s.idle_timeout, s.options, s.owner, s.created
FROM streamflink.source s;

CREATE VIEW streamflink.pipelines WITH (security_invoker = true) AS
SELECT p.name, s.name AS source, p.window_kind AS "window",
	   p.window_size AS size, p.window_slide AS slide, p.session_gap AS gap,
	   p.key_columns AS key, p.aggregates, p.sink,
	   p.allowed_lateness, p.checkpoint_interval,
	   p.state AS desired_state,
	   CASE WHEN w.pid IS NULL THEN
				CASE WHEN p.state = 'stopped' THEN 'stopped'
					 WHEN streamflink._free_worker_slots() = 0 THEN 'waiting for a worker slot'
					 ELSE 'starting' END
			ELSE w.status END AS status,
	   CASE WHEN w.pid IS NULL AND p.state = 'running' AND streamflink._free_worker_slots() = 0
			THEN pg_catalog.format('all %s streamflink worker slots are in use: stop a pipeline, or raise streamflink.max_workers and restart the server',
								   current_setting('streamflink.max_workers'))
			ELSE w.error END AS error,
	   w.pid, w.started,
	   w.events, w.events_per_second, w.rows_emitted,
	   w.dead_letters, w.late_events, w.watermark, w.lag,
	   c.id AS last_checkpoint, c.completed AS last_checkpoint_at,
	   c.duration AS last_checkpoint_duration, c.state_bytes AS last_checkpoint_bytes,
	   p.owner,
	   p.kind, p.pattern, p.define, p.measures, p.within, p.skip, p.timed_out,
	   w.state_keys AS open_count,	/* open windows, or keys with partial matches */
	   p.max_partial_matches, p.max_partial_match_events,
	   w.partial_matches_dropped	/* discarded over those bounds, since created */
FROM streamflink.pipeline p
JOIN streamflink.source s ON s.id = p.source_id
LEFT JOIN streamflink._worker_status() w ON w.pipeline_id = p.id
LEFT JOIN LATERAL (SELECT * FROM streamflink.checkpoint ck
				   WHERE ck.pipeline_id = p.id ORDER BY ck.id DESC LIMIT 1) c ON true;

CREATE VIEW streamflink.checkpoints WITH (security_invoker = true) AS
SELECT p.name AS pipeline, c.id, c.started, c.completed, c.duration,
	   c.state_bytes, c.new_state_bytes, c.events, c.rows_emitted
FROM streamflink.checkpoint c
JOIN streamflink.pipeline p ON p.id = c.pipeline_id;

CREATE VIEW streamflink.offsets WITH (security_invoker = true) AS
SELECT p.name AS pipeline, o.topic, o.partition, o.next_offset, o.max_event_time,
	   o.checkpoint_id
FROM streamflink.pipeline p
JOIN LATERAL (SELECT max(id) AS id FROM streamflink.checkpoint c WHERE c.pipeline_id = p.id) last ON true
JOIN streamflink.checkpoint_offset o ON o.pipeline_id = p.id AND o.checkpoint_id = last.id;

/* kind: 'message' (partition, offset, raw payload) or 'result row' (JSON). */
CREATE VIEW streamflink.dead_letters WITH (security_invoker = true) AS
SELECT p.name AS pipeline, d.topic, d.partition, d."offset", d.payload, d.error, d.received,
	   CASE WHEN d.partition IS NULL THEN 'result row' ELSE 'message' END AS kind
FROM streamflink.dead_letter d JOIN streamflink.pipeline p ON p.id = d.pipeline_id;

CREATE VIEW streamflink.late_events WITH (security_invoker = true) AS
SELECT p.name AS pipeline, l.topic, l.partition, l."offset", l.event_time, l.watermark,
	   l.payload, l.reason, l.received
FROM streamflink.late_event l JOIN streamflink.pipeline p ON p.id = l.pipeline_id;

/* ====================================================================
 * Tenancy (see the README's "Tenancy" and src/tenancy.c).
 *
 * A role that a DBA grants streamflink_user may define, run and watch
 * sources and pipelines of its own.  Row-level security on every catalog
 * table shows and lets change only the rows of roles the current role is
 * a member of (superusers and the extension owner see everything); column
 * privileges leave a tenant only a pipeline's desired state to change;
 * triggers check what a row refers to as the current role, and are the
 * only path to a pipeline's worker.  Kept in one block, at the end of the
 * script, so that the grants cover every function defined above.
 * ==================================================================== */

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'streamflink_user') THEN
		CREATE ROLE streamflink_user NOLOGIN;
	END IF;
END
$$;

/* ---- Tenancy: quotas ---- */

/*
 * Limits per owning role, written by superusers only.  The row whose role
 * is NULL is the default for roles without a row of their own; a NULL
 * limit is no limit; superusers are never limited.  Pipelines count at
 * creation, running pipelines and state bytes (the last checkpoint's
 * snapshot of each pipeline) at start.
 */
CREATE TABLE streamflink.role_quota (
	role		regrole UNIQUE NULLS NOT DISTINCT,	/* NULL: the default */
	max_pipelines int CHECK (max_pipelines >= 0),
	max_running int CHECK (max_running >= 0),
	max_state_bytes bigint CHECK (max_state_bytes >= 0)
);
SELECT pg_catalog.pg_extension_config_dump('streamflink.role_quota', '');

/*
 * Pipelines of a role (running ones, other than except_id), counted under
 * the latest snapshot: under REPEATABLE READ, the transaction's own would
 * miss what another session committed while this one waited for the
 * quota's lock (src/tenancy.c).
 */
CREATE FUNCTION streamflink._quota_pipelines(owner regrole, running bool, except_id int)
RETURNS bigint
AS 'MODULE_PATHNAME', 'streamflink_quota_pipelines'
LANGUAGE C;

CREATE FUNCTION streamflink._check_quota(owner regrole, action text, pipeline_id int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q streamflink.role_quota;
	n bigint;
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
			n := streamflink._quota_pipelines(owner, true, pipeline_id);
			IF n >= q.max_running THEN
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

/* Limits and what each role visible to the caller uses. */
CREATE VIEW streamflink.quotas WITH (security_invoker = true) AS
WITH roles AS (
	SELECT q.role FROM streamflink.role_quota q WHERE q.role IS NOT NULL
	UNION
	SELECT p.owner FROM streamflink.pipeline p
)
SELECT r.role,
	   NOT coalesce(a.rolsuper, false) AND l.role IS NOT DISTINCT FROM r.role AS own_row,
	   CASE WHEN NOT a.rolsuper THEN l.max_pipelines END AS max_pipelines,
	   (SELECT count(*) FROM streamflink.pipeline p WHERE p.owner = r.role) AS pipelines,
	   CASE WHEN NOT a.rolsuper THEN l.max_running END AS max_running,
	   (SELECT count(*) FROM streamflink.pipeline p
		 WHERE p.owner = r.role AND p.state = 'running') AS running,
	   CASE WHEN NOT a.rolsuper THEN l.max_state_bytes END AS max_state_bytes,
	   (SELECT coalesce(sum(c.state_bytes), 0)
		  FROM streamflink.pipeline p
		  CROSS JOIN LATERAL (SELECT ck.state_bytes FROM streamflink.checkpoint ck
							  WHERE ck.pipeline_id = p.id ORDER BY ck.id DESC LIMIT 1) c
		 WHERE p.owner = r.role)::bigint AS state_bytes
FROM roles r
LEFT JOIN pg_roles a ON a.oid = r.role
LEFT JOIN LATERAL (SELECT * FROM streamflink.role_quota q
				   WHERE q.role = r.role OR q.role IS NULL
				   ORDER BY q.role NULLS LAST LIMIT 1) l ON true;

/* ---- Tenancy: internal functions ---- */

/* Is the current role a member of the owning role?  (A dropped role: no.) */
CREATE FUNCTION streamflink._member_of(owner regrole)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = owner)
				THEN pg_has_role(current_user, owner, 'USAGE') ELSE false END
$$;

/* Names are unique across roles: checked whatever row-level security hides. */
CREATE FUNCTION streamflink._name_taken(what text, obj_name text)
RETURNS bool
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE what
		WHEN 'source' THEN EXISTS (SELECT 1 FROM streamflink.source s WHERE s.name = obj_name)
		ELSE EXISTS (SELECT 1 FROM streamflink.pipeline p WHERE p.name = obj_name) END
$$;

/* Creates streamflink.source_<name> AS (columns), owned by the caller. */
CREATE FUNCTION streamflink._create_row_type(source_name text, columns text)
RETURNS regtype
AS 'MODULE_PATHNAME', 'streamflink_create_row_type'
LANGUAGE C STRICT;

/* The sink of a pipeline whose results the caller may read (live()). */
CREATE FUNCTION streamflink._live_sink(pipeline text)
RETURNS regclass
AS 'MODULE_PATHNAME', 'streamflink_live_sink'
LANGUAGE C STRICT;

/* A pipeline's sink or timed-out table: a table of the pipeline's owner. */
CREATE FUNCTION streamflink._check_output_table(what text, pipeline_name text, owner regrole, rel regclass)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c record;
BEGIN
	SELECT cl.relkind, cl.relowner, cl.relpersistence, cl.relnamespace INTO c
	FROM pg_class cl WHERE cl.oid = rel;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'the % of pipeline "%" no longer exists', what, pipeline_name
			USING ERRCODE = 'undefined_table',
				  HINT = 'Drop the pipeline with streamflink.drop_pipeline() and create it again.';
	END IF;
	IF c.relkind NOT IN ('r', 'p') OR c.relnamespace = 'streamflink'::regnamespace THEN
		RAISE EXCEPTION 'the % of pipeline "%" must be a table of its own: %', what, pipeline_name, rel
			USING ERRCODE = 'wrong_object_type';
	END IF;
	IF c.relpersistence = 't' THEN
		RAISE EXCEPTION 'the % of pipeline "%" cannot be a temporary table', what, pipeline_name
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'The pipeline''s worker cannot see another session''s temporary tables.';
	END IF;
	IF NOT pg_has_role(owner, c.relowner, 'USAGE') THEN
		RAISE EXCEPTION 'the % of pipeline "%" must be owned by the pipeline''s owner %', what, pipeline_name, owner
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('Table %s is owned by role %s.', rel, c.relowner::regrole);
	END IF;
END
$$;

/*
 * BEFORE INSERT OR UPDATE OF state ON pipeline: what a new row refers to
 * must be its owner's, and its durations valid (a tenant may INSERT rows
 * itself: these are the checks create_*_pipeline relies on too); a start
 * needs its tables and the owner's quota.
 */
CREATE FUNCTION streamflink._pipeline_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	src streamflink.source;
BEGIN
	IF TG_OP = 'INSERT' THEN
		/*
		 * streamflink_user is what a DBA grants to let a role use streamflink:
		 * every tenant is a member, so what it owned would be every tenant's to
		 * see and manage, and outside each one's own quota.
		 */
		IF NEW.owner = 'streamflink_user'::regrole THEN
			RAISE EXCEPTION 'role streamflink_user cannot own a %', TG_TABLE_NAME
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'Every streamflink user is a member of it: create it as your own role (RESET ROLE).';
		END IF;
		/* Row-level security hides other roles' sources from the caller. */
		SELECT * INTO src FROM streamflink.source s WHERE s.id = NEW.source_id;
		IF NOT FOUND OR NOT pg_has_role(NEW.owner, src.owner, 'USAGE') THEN
			RAISE EXCEPTION 'permission denied for the source of pipeline "%"', NEW.name
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'A pipeline reads a source of its owner (or of a role its owner is a member of).';
		END IF;
		/*
		 * The source's types run their code (domain checks, input
		 * functions) as the pipeline's owner, while decoding and when key
		 * values go into the sink: an owner with privileges the source's
		 * owner lacks (a superuser reading a tenant's source) would lend
		 * them to that code.
		 */
		IF NOT pg_has_role(src.owner, NEW.owner, 'USAGE') THEN
			RAISE EXCEPTION 'pipeline "%" would run the code of source "%" with privileges its owner % lacks',
					NEW.name, src.name, src.owner
				USING ERRCODE = 'insufficient_privilege',
					  HINT = format('The source''s types (domain checks, input functions) run as the pipeline''s owner: create the pipeline as role %s (SET ROLE), or read the source''s data with decode().', src.owner);
		END IF;
		PERFORM streamflink._check_output_table('sink', NEW.name, NEW.owner, NEW.sink);
		IF NEW.timed_out IS NOT NULL THEN
			PERFORM streamflink._check_output_table('timed-out table', NEW.name, NEW.owner, NEW.timed_out);
		END IF;
		IF EXISTS (SELECT 1 FROM unnest(NEW.key_columns) k
				   WHERE k NOT IN (SELECT c.attname FROM streamflink._columns(src.row_type) c)) THEN
			RAISE EXCEPTION 'a key column of pipeline "%" is not a column of its source', NEW.name
				USING ERRCODE = 'undefined_column';
		END IF;
		PERFORM streamflink._check_duration('window size', NEW.window_size, false);
		PERFORM streamflink._check_duration('window slide', NEW.window_slide, false);
		PERFORM streamflink._check_duration('session gap', NEW.session_gap, false);
		PERFORM streamflink._check_duration('within', NEW.within, false);
		PERFORM streamflink._check_duration('allowed_lateness', NEW.allowed_lateness, true);
		PERFORM streamflink._check_duration('checkpoint_interval', NEW.checkpoint_interval, false);
		/* The shapes create_window_pipeline allows (a tiny slide is a denial of service). */
		IF NEW.kind = 'window' AND NOT (CASE NEW.window_kind
				WHEN 'tumble' THEN NEW.window_size IS NOT NULL AND NEW.window_slide IS NULL AND NEW.session_gap IS NULL
				WHEN 'hop' THEN NEW.window_size IS NOT NULL AND NEW.window_slide IS NOT NULL AND NEW.session_gap IS NULL
								AND NEW.window_slide <= NEW.window_size
								AND streamflink._interval_ms(NEW.window_size) / streamflink._interval_ms(NEW.window_slide) <= 1000
				ELSE NEW.session_gap IS NOT NULL AND NEW.window_size IS NULL AND NEW.window_slide IS NULL END) THEN
			RAISE EXCEPTION 'invalid window of pipeline "%": % size % slide % gap %', NEW.name,
					NEW.window_kind, NEW.window_size, NEW.window_slide, NEW.session_gap
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Create pipelines with streamflink.create_window_pipeline().';
		END IF;
		/*
		 * The bounds of partial matches are what keeps a pattern such as
		 * a{->>1,} b from taking the server's memory (2^n partial matches):
		 * only a superuser may raise them above the defaults.
		 */
		IF NEW.kind = 'pattern'
		   AND (NEW.max_partial_matches > 10000 OR NEW.max_partial_match_events > 100000)
		   AND NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = NEW.owner), false) THEN
			RAISE EXCEPTION 'bounds of partial matches above the defaults need a superuser: % partial matches, % events',
					NEW.max_partial_matches, NEW.max_partial_match_events
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'Use at most 10000 partial matches and 100000 events per key, or ask the database administrator to create the pipeline.';
		END IF;
		PERFORM streamflink._check_quota(NEW.owner, 'create');
	ELSIF NEW.state = 'running' AND OLD.state <> 'running' THEN
		PERFORM streamflink._check_output_table('sink', NEW.name, NEW.owner, NEW.sink);
		IF NEW.timed_out IS NOT NULL THEN
			PERFORM streamflink._check_output_table('timed-out table', NEW.name, NEW.owner, NEW.timed_out);
		END IF;
		IF NOT EXISTS (SELECT 1 FROM streamflink.source s JOIN pg_type t ON t.oid = s.row_type
					   WHERE s.id = NEW.source_id) THEN
			RAISE EXCEPTION 'the row type of the source of pipeline "%" no longer exists', NEW.name
				USING ERRCODE = 'undefined_object',
					  HINT = 'Drop the pipeline and its source, and create them again.';
		END IF;
		PERFORM streamflink._check_quota(NEW.owner, 'start', NEW.id);
	END IF;
	RETURN NEW;
END
$$;

/*
 * BEFORE INSERT ON source: its row type is a composite type of its owner,
 * and the rest as create_source() checks it (a tenant may INSERT rows
 * itself).
 */
CREATE FUNCTION streamflink._source_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	opt text;
BEGIN
	/*
	 * streamflink_user is what a DBA grants to let a role use streamflink:
	 * every tenant is a member, so what it owned would be every tenant's to
	 * see and manage, and outside each one's own quota.
	 */
	IF NEW.owner = 'streamflink_user'::regrole THEN
		RAISE EXCEPTION 'role streamflink_user cannot own a %', TG_TABLE_NAME
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Every streamflink user is a member of it: create it as your own role (RESET ROLE).';
	END IF;
	FOREACH opt IN ARRAY NEW.options LOOP
		IF opt !~ '^[a-z0-9._]+=' THEN
			RAISE EXCEPTION 'invalid Kafka option: %', opt
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Options are librdkafka settings written as name=value.';
		END IF;
	END LOOP;
	/* Judged for the role inserting the row: the allow-list of src/kafka_source.c. */
	PERFORM streamflink._check_kafka_options(NEW.options, current_user::regrole);
	PERFORM streamflink._check_duration('max_out_of_orderness', NEW.max_out_of_orderness, true);
	PERFORM streamflink._check_duration('idle_timeout', NEW.idle_timeout, false);
	IF NEW.event_time IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM streamflink._columns(NEW.row_type) c
			WHERE c.attname = NEW.event_time
			  AND c.atttype IN ('timestamptz'::regtype, 'timestamp'::regtype)) THEN
		RAISE EXCEPTION 'event time column "%" is not a timestamptz or timestamp column of source "%"',
				NEW.event_time, NEW.name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid
				   WHERE t.oid = NEW.row_type AND c.relkind = 'c'
					 AND pg_has_role(NEW.owner, t.typowner, 'USAGE')) THEN
		RAISE EXCEPTION 'the row type of source "%" must be a composite type of its owner: %', NEW.name, NEW.row_type
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Create sources with streamflink.create_source().';
	END IF;
	RETURN NEW;
END
$$;

/* Starts, stops and state removal at commit (src/tenancy.c). */
CREATE FUNCTION streamflink._pipeline_lifecycle()
RETURNS trigger
AS 'MODULE_PATHNAME', 'streamflink_pipeline_lifecycle'
LANGUAGE C;

/* Checkpoints and offsets: written and pruned by the worker; dead letters, late events: written by it. */
CREATE FUNCTION streamflink._worker_only()
RETURNS trigger
AS 'MODULE_PATHNAME', 'streamflink_worker_only'
LANGUAGE C;

/* ---- Tenancy: triggers ---- */

CREATE TRIGGER check_source BEFORE INSERT ON streamflink.source
	FOR EACH ROW EXECUTE FUNCTION streamflink._source_check();
CREATE TRIGGER check_pipeline BEFORE INSERT OR UPDATE OF state ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_check();
CREATE TRIGGER lifecycle AFTER UPDATE OF state OR DELETE ON streamflink.pipeline
	FOR EACH ROW EXECUTE FUNCTION streamflink._pipeline_lifecycle();
/* Checkpoint history is also pruned by the worker (DELETE). */
CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.checkpoint
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER worker_only BEFORE INSERT OR DELETE ON streamflink.checkpoint_offset
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER worker_only BEFORE INSERT ON streamflink.dead_letter
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();
CREATE TRIGGER worker_only BEFORE INSERT ON streamflink.late_event
	FOR EACH ROW EXECUTE FUNCTION streamflink._worker_only();

/* ---- Tenancy: row-level security ---- */

ALTER TABLE streamflink.source ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.pipeline ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.checkpoint ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.checkpoint_offset ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.dead_letter ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.late_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamflink.role_quota ENABLE ROW LEVEL SECURITY;

CREATE POLICY owner_rows ON streamflink.source
	USING (streamflink._member_of(owner));
CREATE POLICY owner_rows ON streamflink.pipeline
	USING (streamflink._member_of(owner));
CREATE POLICY owner_rows ON streamflink.checkpoint
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY owner_rows ON streamflink.checkpoint_offset
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY owner_rows ON streamflink.dead_letter
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY owner_rows ON streamflink.late_event
	USING (EXISTS (SELECT 1 FROM streamflink.pipeline p
				   WHERE p.id = pipeline_id AND streamflink._member_of(p.owner)));
CREATE POLICY own_and_default ON streamflink.role_quota FOR SELECT
	USING (role IS NULL OR streamflink._member_of(role));

/* ---- Tenancy: privileges ---- */

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA streamflink FROM PUBLIC;
GRANT USAGE ON SCHEMA streamflink TO streamflink_user;
/* The lifecycle is reachable through the catalog's triggers only. */
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA streamflink TO streamflink_user;
REVOKE EXECUTE ON FUNCTION streamflink._pipeline_lifecycle(), streamflink._worker_only(),
	streamflink._pipeline_check(), streamflink._source_check() FROM streamflink_user;
/* The replay harness writes the extension's tables from a backend: tests only. */
REVOKE EXECUTE ON FUNCTION streamflink._replay(text, text[], int[], int, float8, float8, float8, int)
	FROM streamflink_user;
GRANT SELECT ON ALL TABLES IN SCHEMA streamflink TO streamflink_user;	/* and views */
GRANT USAGE ON ALL SEQUENCES IN SCHEMA streamflink TO streamflink_user;
GRANT INSERT (name, brokers, topic, format, row_type, event_time, max_out_of_orderness,
			  idle_timeout, options), DELETE
	ON streamflink.source TO streamflink_user;
GRANT INSERT (name, source_id, kind, key_columns, window_kind, window_size, window_slide,
			  session_gap, aggregates, pattern, define, measures, skip, within, timed_out,
			  sink, allowed_lateness, checkpoint_interval, max_partial_matches,
			  max_partial_match_events),
	  UPDATE (state), DELETE
	ON streamflink.pipeline TO streamflink_user;
/*
 * Checkpoints, offsets, dead letters and late events are written by the
 * worker as itself, never as the owner whose code it runs (run_as.h): a
 * tenant, and its code in the worker, only reads them, and may clear its
 * own dead letters and late events.
 */
GRANT DELETE ON streamflink.dead_letter, streamflink.late_event TO streamflink_user;
