--
-- savepoint: savepoints of a running pipeline, stop with savepoint, start
-- from one (the same pipeline, rewound, and a new pipeline from another's
-- savepoint), every compatibility error, and what another tenant cannot
-- reach.  The lifecycle runs as a non-superuser tenant; every sink is
-- compared with the answer SQL computes over the same events.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE ROLE regress_sp1;
CREATE ROLE regress_sp2;
GRANT streamflink_user TO regress_sp1, regress_sp2;
CREATE SCHEMA sp1 AUTHORIZATION regress_sp1;
CREATE SCHEMA sp2 AUTHORIZATION regress_sp2;

-- Event i: key i % 3, value i, every 10 seconds from midnight; one
-- partition, no out-of-orderness: the watermark is the last event's time.
CREATE TABLE sp_events AS
SELECT i, i % 3 AS k, i AS v, timestamptz '2024-01-01 00:00+00' + i * interval '10 seconds' AS ts
FROM generate_series(0, 179) i;
GRANT SELECT ON sp_events TO regress_sp1, regress_sp2;
CREATE FUNCTION sp_produce(lo int, hi int) RETURNS int
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	SELECT streamflink.produce(regress_brokers(), 'regress_savepoint',
		(SELECT array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i)
		 FROM sp_events WHERE i BETWEEN lo AND hi), 0)
$$;
-- The windows SQL says have fired once the watermark is at 'wm'.
CREATE FUNCTION sp_expected(wm timestamptz, after timestamptz DEFAULT '-infinity')
RETURNS TABLE (k int, window_start timestamptz, window_end timestamptz, n bigint, total numeric)
LANGUAGE sql STABLE AS $$
	SELECT k, date_bin('1 minute', ts, 'epoch'), date_bin('1 minute', ts, 'epoch') + interval '1 minute',
		   count(*), sum(v)
	FROM sp_events
	GROUP BY 1, 2
	HAVING date_bin('1 minute', ts, 'epoch') + interval '1 minute' <= wm
	   AND date_bin('1 minute', ts, 'epoch') + interval '1 minute' > after
$$;
GRANT EXECUTE ON FUNCTION sp_expected(timestamptz, timestamptz), sp_produce(int, int) TO regress_sp1;
-- Sink = SQL's answer: no window missing, none wrong, none extra.
CREATE FUNCTION sp_diff(sink regclass, wm timestamptz, after timestamptz DEFAULT '-infinity')
RETURNS TABLE (expected bigint, missing bigint, extra bigint)
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format($q$
		SELECT (SELECT count(*) FROM sp_expected($1, $2)),
			   (SELECT count(*) FROM (SELECT * FROM sp_expected($1, $2)
									  EXCEPT ALL SELECT k, window_start, window_end, n, total FROM %1$s) x),
			   (SELECT count(*) FROM (SELECT k, window_start, window_end, n, total FROM %1$s
									  EXCEPT ALL SELECT * FROM sp_expected($1, $2)) x)$q$, sink)
		USING wm, after;
END
$$;
GRANT EXECUTE ON FUNCTION sp_diff(regclass, timestamptz, timestamptz) TO regress_sp1;
GRANT EXECUTE ON FUNCTION wait_until(text, interval) TO regress_sp1, regress_sp2;

SET ROLE regress_sp1;
SET search_path = sp1, public;
SELECT streamflink.create_source('sp', brokers => regress_brokers(), topic => 'regress_savepoint',
       columns => 'k int, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('sp_a', source => 'sp', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_a_out',
       checkpoint_interval => '200 ms');

-- A savepoint needs a running pipeline and a good, new name.
SELECT streamflink.savepoint('sp_a', 's1');
SELECT streamflink.stop('sp_a', savepoint => 's1');
SELECT streamflink.savepoint('nope', 's1');
SELECT sp_produce(0, 59);
SELECT streamflink.start('sp_a');
SELECT wait_until($$SELECT events = 60 AND watermark = '2024-01-01 00:09:50+00' FROM streamflink.pipelines WHERE name = 'sp_a'$$);
SELECT streamflink.savepoint('sp_a', '../etc');
SELECT streamflink.savepoint('sp_a', 's/1');
SELECT streamflink.savepoint('sp_a', NULL);

-- s1: while running, with everything up to 00:09:50 in it.
SELECT streamflink.savepoint('sp_a', 's1');
SELECT streamflink.savepoint('sp_a', 's1');	-- taken
SELECT pipeline, name, checkpoint > 0 AS has_checkpoint, size_bytes > 0 AS has_size, offsets,
	   watermark, parallelism, key_groups, state_format, length(definition_fingerprint) AS fp_len,
	   definition
FROM streamflink.savepoints;
SELECT * FROM sp_diff('sp_a_out', '2024-01-01 00:09:50+00');

-- A stop with savepoint that rolls back: the savepoint stays (the worker
-- took it), the pipeline goes on.
BEGIN;
SELECT streamflink.stop('sp_a', savepoint => 's1b');
ROLLBACK;
SELECT name FROM streamflink.savepoints ORDER BY name;

-- s2: a stop with savepoint; the savepoint is the last checkpoint.
SELECT sp_produce(60, 119);
-- and a late event and a bad one, which a rewind reads again
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_savepoint',
	ARRAY['{"k": 1, "v": 1000, "ts": "2024-01-01 00:00:00+00"}', 'not json'], 0);
SET ROLE regress_sp1;
SELECT wait_until($$SELECT events = 122 AND watermark = '2024-01-01 00:19:50+00' FROM streamflink.pipelines WHERE name = 'sp_a'$$);
SELECT streamflink.stop('sp_a', savepoint => 's2');
SELECT desired_state FROM streamflink.pipelines WHERE name = 'sp_a';
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'sp_a'$$);
SELECT (SELECT checkpoint FROM streamflink.savepoints WHERE name = 's2') =
	   (SELECT max(id) FROM streamflink.checkpoints WHERE pipeline = 'sp_a') AS s2_is_last_checkpoint,
	   (SELECT checkpoint FROM streamflink.savepoints WHERE name = 's1') <
	   (SELECT checkpoint FROM streamflink.savepoints WHERE name = 's2') AS s1_before_s2;
SELECT name, offsets, watermark FROM streamflink.savepoints ORDER BY name;
SELECT * FROM sp_diff('sp_a_out', '2024-01-01 00:19:50+00');
SELECT streamflink.savepoint('sp_a', 's3');	-- stopped

-- Start from s1 (rewound): the events after it are read again and the
-- windows they fire are upserted as the same rows; then new events.
SELECT streamflink.start('sp_a', from_savepoint => 's9');
SELECT streamflink.start('sp_a', from_savepoint => 's1');
SELECT streamflink.start('sp_a', from_savepoint => 's1');	-- running
SELECT wait_until($$SELECT watermark = '2024-01-01 00:19:50+00' AND events = 62 FROM streamflink.pipelines WHERE name = 'sp_a'$$);
SELECT * FROM sp_diff('sp_a_out', '2024-01-01 00:19:50+00');
SELECT sp_produce(120, 179);
SELECT wait_until($$SELECT watermark = '2024-01-01 00:29:50+00' AND last_checkpoint_at > now() FROM streamflink.pipelines WHERE name = 'sp_a'$$);
SELECT wait_until($$SELECT (SELECT missing FROM sp_diff('sp_a_out', '2024-01-01 00:29:50+00')) = 0$$);
SELECT * FROM sp_diff('sp_a_out', '2024-01-01 00:29:50+00');
SELECT restore_savepoint FROM streamflink.pipeline WHERE name = 'sp_a';
SELECT (SELECT count(*) FROM streamflink.late_events WHERE pipeline = 'sp_a') AS late_events,
	   (SELECT count(*) FROM streamflink.dead_letters WHERE pipeline = 'sp_a') AS dead_letters;
SELECT streamflink.stop('sp_a');

-- Compatibility: a new pipeline from another's savepoint ('pipeline.name').
SELECT streamflink.create_window_pipeline('sp_size', source => 'sp', key => 'k', "window" => 'tumble',
       size => '2 minutes', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_size_out');
SELECT streamflink.start('sp_size', from_savepoint => 'sp_a.s2');
SELECT streamflink.create_window_pipeline('sp_key', source => 'sp', key => 'v', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_key_out');
SELECT streamflink.start('sp_key', from_savepoint => 'sp_a.s2');
SELECT streamflink.create_window_pipeline('sp_agg', source => 'sp', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'sp_agg_out');
SELECT streamflink.start('sp_agg', from_savepoint => 'sp_a.s2');
SELECT streamflink.create_window_pipeline('sp_hop', source => 'sp', key => 'k', "window" => 'hop',
       size => '1 minute', slide => '30 seconds', aggregates => 'count(*) AS n, sum(v) AS total',
       sink => 'sp_hop_out');
SELECT streamflink.start('sp_hop', from_savepoint => 'sp_a.s2');
SELECT streamflink.create_window_pipeline('sp_ses', source => 'sp', key => 'k', "window" => 'session',
       gap => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_ses_out');
SELECT streamflink.start('sp_ses', from_savepoint => 'sp_a.s2');
SELECT streamflink.create_pattern_pipeline('sp_pat', source => 'sp', key => 'k', pattern => 'a b',
       define => 'a AS v > 0', sink => 'sp_pat_out');
SELECT streamflink.start('sp_pat', from_savepoint => 'sp_a.s2');
-- Another topic, and a key of another type (same name).
SELECT streamflink.create_source('sp_other', brokers => regress_brokers(), topic => 'regress_savepoint_p',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('sp_topic', source => 'sp_other', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_topic_out');
SELECT streamflink.start('sp_topic', from_savepoint => 'sp_a.s2');
SELECT pg_catalog.count(*) AS pipelines_started FROM streamflink.pipelines WHERE desired_state = 'running';

-- Rescaling a savepoint (superusers): 1 -> 3 -> 2 key-group range
-- snapshots, every key kept once; the start below merges them again (2 -> 1).
RESET ROLE;
SELECT streamflink.rescale_savepoint('sp_a', 's2', 3) AS keys_1_to_3;
SELECT pg_ls_dir(format('streamflink/%s/%s/savepoints/s2',
					(SELECT oid FROM pg_database WHERE datname = current_database()),
					(SELECT id FROM streamflink.pipeline WHERE name = 'sp_a'))) AS ranges ORDER BY 1;
SELECT streamflink.rescale_savepoint('sp_a', 's2', 2) AS keys_3_to_2;
SELECT pg_ls_dir(format('streamflink/%s/%s/savepoints/s2',
					(SELECT oid FROM pg_database WHERE datname = current_database()),
					(SELECT id FROM streamflink.pipeline WHERE name = 'sp_a'))) AS ranges ORDER BY 1;
SELECT streamflink.rescale_savepoint('sp_a', 's2', 0);
SELECT parallelism FROM streamflink.savepoints WHERE name = 's2';
SET ROLE regress_sp1;
SELECT streamflink.rescale_savepoint('sp_a', 's2', 1);	-- superusers only

-- Changes that keep the state's meaning are accepted: allowed lateness,
-- checkpoint interval, state options.  The new pipeline's sink gets what
-- fires after the savepoint, as the old one would have.
SELECT streamflink.create_window_pipeline('sp_ok', source => 'sp', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_ok_out',
       allowed_lateness => '1 minute', checkpoint_interval => '300 ms',
       state_options => 'block_cache_size=8MB');
BEGIN;
SELECT streamflink.start('sp_ok', from_savepoint => 'sp_a.s2');
SELECT streamflink.drop_savepoint('sp_a', 's2');	-- being restored
ROLLBACK;
SELECT streamflink.start('sp_ok', from_savepoint => 'sp_a.s2');
SELECT wait_until($$SELECT watermark = '2024-01-01 00:29:50+00' FROM streamflink.pipelines WHERE name = 'sp_ok'$$);
SELECT wait_until($$SELECT (SELECT missing FROM sp_diff('sp_ok_out', '2024-01-01 00:29:50+00', '2024-01-01 00:19:50+00')) = 0$$);
SELECT * FROM sp_diff('sp_ok_out', '2024-01-01 00:29:50+00', '2024-01-01 00:19:50+00');
SELECT streamflink.stop('sp_ok');

-- A pattern pipeline's savepoint: define and within are its meaning,
-- measures are not (they are computed when a match completes).
SELECT streamflink.create_pattern_pipeline('sp_p', source => 'sp', key => 'k', pattern => 'a b',
       define => 'a AS v % 2 = 0, b AS v % 2 = 1', sink => 'sp_p_out', within => '10 minutes');
SELECT streamflink.start('sp_p');
SELECT wait_until($$SELECT events = 182 AND status = 'running' FROM streamflink.pipelines WHERE name = 'sp_p'$$);
SELECT streamflink.stop('sp_p', savepoint => 'p1');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'sp_p'$$);
SELECT streamflink.create_pattern_pipeline('sp_pd', source => 'sp', key => 'k', pattern => 'a b',
       define => 'a AS v % 2 = 1, b AS v % 2 = 0', sink => 'sp_pd_out', within => '10 minutes');
SELECT streamflink.start('sp_pd', from_savepoint => 'sp_p.p1');
SELECT streamflink.create_pattern_pipeline('sp_pw', source => 'sp', key => 'k', pattern => 'a b',
       define => 'a AS v % 2 = 0, b AS v % 2 = 1', sink => 'sp_pw_out', within => '5 minutes',
       skip => 'skip_past_last_event');
SELECT streamflink.start('sp_pw', from_savepoint => 'sp_p.p1');
SELECT streamflink.create_pattern_pipeline('sp_pm', source => 'sp', key => 'k', pattern => 'a b',
       define => 'a AS v % 2 = 0, b AS v % 2 = 1', sink => 'sp_pm_out', within => '10 minutes',
       measures => 'a.v AS first_v', max_partial_matches => 100);
SELECT streamflink.start('sp_pm', from_savepoint => 'sp_p.p1');
SELECT wait_until($$SELECT status = 'running' AND last_checkpoint IS NOT NULL FROM streamflink.pipelines WHERE name = 'sp_pm'$$);
SELECT count(*) AS matches_after_savepoint FROM sp_pm_out;
SELECT streamflink.stop('sp_pm');

-- Dropping a savepoint; unknown ones.
SELECT streamflink.drop_savepoint('sp_a', 's1');
SELECT streamflink.drop_savepoint('sp_a', 's1');
SELECT name FROM streamflink.savepoints ORDER BY name;
RESET ROLE;

-- The files: one snapshot per key-group range under the state directory.
SELECT id AS sp_a_id FROM streamflink.pipeline WHERE name = 'sp_a' \gset
SELECT oid AS db FROM pg_database WHERE datname = current_database() \gset
SELECT pg_ls_dir(format('streamflink/%s/%s/savepoints', :db, :sp_a_id)) AS savepoint_dirs ORDER BY 1;
SELECT pg_ls_dir(format('streamflink/%s/%s/savepoints/s2', :db, :sp_a_id)) AS ranges ORDER BY 1;

-- A savepoint of another state format is refused at start.
UPDATE streamflink.savepoint SET state_format = 1 WHERE name = 's2';
SET ROLE regress_sp1;
SELECT streamflink.start('sp_ok', from_savepoint => 'sp_a.s2');
RESET ROLE;
UPDATE streamflink.savepoint SET state_format = streamflink._state_format() WHERE name = 's2';
SELECT id AS s2_id FROM streamflink.savepoint WHERE name = 's2' \gset

-- Another tenant reaches none of it.
SET ROLE regress_sp2;
SET search_path = sp2, public;
SELECT count(*) AS visible_savepoints FROM streamflink.savepoints;
SELECT count(*) AS visible_offsets FROM streamflink.savepoint_offset;
SELECT streamflink.savepoint('sp_a', 'x');
SELECT streamflink.drop_savepoint('sp_a', 's2');
SELECT streamflink._take_savepoint(:sp_a_id, 'x', false);
DELETE FROM streamflink.savepoint;
INSERT INTO streamflink.savepoint (pipeline_id, name, checkpoint_id, size_bytes, state_format,
	parallelism, key_groups, meaning, fingerprint)
VALUES (:sp_a_id, 'fake', 1, 0, 2, 1, 128, '{}', '');
SELECT streamflink.create_source('sp2', brokers => regress_brokers(), topic => 'regress_savepoint',
       columns => 'k int, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('sp_x', source => 'sp2', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sp_x_out');
SELECT streamflink.start('sp_x', from_savepoint => 'sp_a.s2');
-- Setting the column by hand: the worker checks the savepoint's owner.
UPDATE streamflink.pipeline SET restore_savepoint = :s2_id WHERE name = 'sp_x';
UPDATE streamflink.pipeline SET state = 'running' WHERE name = 'sp_x';
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'sp_x'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'sp_x';
SELECT count(*) AS sp_x_rows FROM sp_x_out;
SELECT streamflink.stop('sp_x');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'sp_x'$$);
SELECT streamflink.drop_pipeline('sp_x', drop_sink => true);
SELECT streamflink.drop_source('sp2');
RESET ROLE;

-- drop_pipeline drops its savepoints, files too.
SET ROLE regress_sp1;
SET search_path = sp1, public;
SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM streamflink.pipelines ORDER BY name;
SELECT count(*) AS savepoints_left FROM streamflink.savepoints;
RESET ROLE;
SELECT count(*) AS savepoint_rows FROM streamflink.savepoint;
SELECT count(*) AS offset_rows FROM streamflink.savepoint_offset;
SELECT pg_stat_file(format('streamflink/%s/%s', :db, :sp_a_id), true) IS NULL AS state_dir_gone;
SET ROLE regress_sp1;
SELECT streamflink.drop_source('sp');
SELECT streamflink.drop_source('sp_other');
RESET ROLE;
DROP FUNCTION sp_diff(regclass, timestamptz, timestamptz);
DROP FUNCTION sp_expected(timestamptz, timestamptz);
DROP FUNCTION sp_produce(int, int);
DROP TABLE sp_events;
DROP SCHEMA sp1 CASCADE;
DROP SCHEMA sp2 CASCADE;
DROP OWNED BY regress_sp1, regress_sp2;
DROP ROLE regress_sp1;
DROP ROLE regress_sp2;
