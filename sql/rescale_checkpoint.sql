--
-- rescale_checkpoint: rescaling a stopped pipeline from its last
-- checkpoint, without a savepoint (start(pipeline, parallelism => n)),
-- 1 -> 3 -> 2 -> 1 on a topic of four partitions, run by a tenant (a
-- non-superuser role): after each step the sink equals SQL's answer over
-- the same events and the sink of an unscaled pipeline reading the same
-- topic; the task directories no task uses are gone after a scale-down.
-- And the refusals: while running, out of bounds, a Kafka sink, a
-- checkpoint with channel state, another tenant's pipeline.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

CREATE ROLE regress_rc LOGIN;
CREATE ROLE regress_rc_other LOGIN;
GRANT streamflink_user TO regress_rc, regress_rc_other;
CREATE SCHEMA regress_rc AUTHORIZATION regress_rc;

-- Event i: partition i % 4, key i * 7 % 20, every half second.
CREATE TABLE rc_events AS
SELECT i, i % 4 AS part, 'k' || (i * 7 % 20) AS k, i % 10 AS v,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '500 milliseconds' AS ts
FROM generate_series(0, 1199) i;
CREATE FUNCTION rc_produce(lo int, hi int) RETURNS int
LANGUAGE sql AS $$
	SELECT sum(streamflink.produce(regress_brokers(), 'regress_rescale_c', payloads, part))::int
	FROM (SELECT part, array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) AS payloads
	      FROM rc_events WHERE i BETWEEN lo AND hi GROUP BY part) b
$$;
CREATE FUNCTION rc_watermark(hi int) RETURNS timestamptz
LANGUAGE sql AS $$
	SELECT min(m) - interval '2 seconds'
	FROM (SELECT max(ts) AS m FROM rc_events WHERE i <= hi GROUP BY part) x
$$;
-- Sink = SQL's answer for the windows fired at that watermark.
CREATE FUNCTION rc_diff(hi int, sink text DEFAULT 'regress_rc.rc_out')
RETURNS TABLE (expected bigint, missing bigint, extra bigint)
LANGUAGE plpgsql AS $f$
BEGIN
	RETURN QUERY EXECUTE format($q$
	WITH e AS (
		SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start,
			   date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
			   count(*) AS n, sum(v) AS total
		FROM rc_events WHERE i <= %s
		GROUP BY 1, 2
		HAVING date_bin('1 minute', ts, 'epoch') + interval '1 minute' <= rc_watermark(%s))
	SELECT (SELECT count(*) FROM e),
		   (SELECT count(*) FROM (SELECT * FROM e EXCEPT ALL
								  SELECT k, window_start, window_end, n, total FROM %s) x),
		   (SELECT count(*) FROM (SELECT k, window_start, window_end, n, total FROM %s
								  EXCEPT ALL SELECT * FROM e) x)$q$, hi, hi, sink, sink);
END
$f$;
-- The task directories in the pipeline's state directory.
CREATE FUNCTION rc_task_dirs(pipeline text) RETURNS text
LANGUAGE sql AS $$
	SELECT coalesce(string_agg(d, ' ' ORDER BY d), '(none)')
	FROM pg_ls_dir(format('streamflink/%s/%s',
						  (SELECT oid FROM pg_database WHERE datname = current_database()),
						  (SELECT p.id FROM streamflink.pipeline p WHERE p.name = rc_task_dirs.pipeline))) d
	WHERE d LIKE 'task-%'
$$;
CREATE FUNCTION rc_offsets(pipeline text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT sum(next_offset)::bigint FROM streamflink.offsets WHERE offsets.pipeline = rc_offsets.pipeline
$$;
-- An error's SQLSTATE, message (checkpoint ids vary with timing), detail and hint.
CREATE FUNCTION rc_error(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hint text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN format(E'%s: %s\nDETAIL: %s\nHINT: %s', st,
				  regexp_replace(msg, 'checkpoint \d+', 'checkpoint N'), det, hint);
END
$$;
GRANT SELECT ON rc_events TO regress_rc;

-- The tenant's source, the pipeline it rescales, and the same pipeline
-- never rescaled.
SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.create_source('rc_src', regress_brokers(), 'regress_rescale_c', 'json',
	columns => 'k text, v int, ts timestamptz', event_time => 'ts',
	max_out_of_orderness => '2 seconds');
SELECT streamflink.create_window_pipeline('rc', 'rc_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'regress_rc.rc_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_window_pipeline('rc_ref', 'rc_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'regress_rc.rc_ref_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds');
-- No checkpoint yet: a new parallelism has no state to move (rolled back).
BEGIN;
SELECT streamflink.start('rc', parallelism => 2);
SELECT parallelism FROM streamflink.pipeline WHERE name = 'rc';
ROLLBACK;
RESET SESSION AUTHORIZATION;
SELECT rc_produce(0, 299);

SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.start('rc');
SELECT streamflink.start('rc_ref');
SELECT wait_until($$SELECT (SELECT missing FROM rc_diff(299)) = 0 AND rc_offsets('rc') = 300$$);
SELECT * FROM rc_diff(299);
-- Refused while running.
SELECT streamflink.start('rc', parallelism => 3);
SELECT streamflink.stop('rc');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc'$$);
-- Out of bounds, also by a direct UPDATE.
SELECT streamflink.start('rc', parallelism => 0);
SELECT streamflink.start('rc', parallelism => 129);
UPDATE streamflink.pipeline SET parallelism = 17 WHERE name = 'rc';
RESET SESSION AUTHORIZATION;

-- Another tenant cannot rescale it.
SET SESSION AUTHORIZATION regress_rc_other;
SELECT streamflink.start('rc', parallelism => 3);
UPDATE streamflink.pipeline SET parallelism = 3 WHERE name = 'rc';
RESET SESSION AUTHORIZATION;

-- 1 -> 3 from the last checkpoint.
SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.start('rc', parallelism => 3);
SELECT parallelism, restore_savepoint FROM streamflink.pipeline WHERE name = 'rc';
RESET SESSION AUTHORIZATION;
SELECT rc_produce(300, 599);
SET SESSION AUTHORIZATION regress_rc;
SELECT wait_until($$SELECT (SELECT missing FROM rc_diff(599)) = 0 AND rc_offsets('rc') = 600$$);
SELECT * FROM rc_diff(599);
SELECT count(*) AS tasks, string_agg(key_group_first || '-' || key_group_last, ' ' ORDER BY task) AS key_groups
FROM streamflink.tasks WHERE pipeline = 'rc';
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'rc'$$);
SELECT streamflink.stop('rc');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc'$$);
RESET SESSION AUTHORIZATION;
SELECT rc_task_dirs('rc');

-- 3 -> 2: task-2's directory goes once the rescaled checkpoint is complete.
SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.start('rc', parallelism => 2);
RESET SESSION AUTHORIZATION;
SELECT rc_produce(600, 899);
SET SESSION AUTHORIZATION regress_rc;
SELECT wait_until($$SELECT (SELECT missing FROM rc_diff(899)) = 0 AND rc_offsets('rc') = 900$$);
SELECT * FROM rc_diff(899);
SELECT count(*) AS tasks FROM streamflink.tasks WHERE pipeline = 'rc';
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'rc'$$);
SELECT streamflink.stop('rc');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc'$$);
RESET SESSION AUTHORIZATION;
SELECT rc_task_dirs('rc');

-- 2 -> 1.
SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.start('rc', parallelism => 1);
RESET SESSION AUTHORIZATION;
SELECT rc_produce(900, 1199);
SET SESSION AUTHORIZATION regress_rc;
SELECT wait_until($$SELECT (SELECT missing FROM rc_diff(1199)) = 0 AND rc_offsets('rc') = 1200$$);
SELECT * FROM rc_diff(1199);
SELECT wait_until($$SELECT (SELECT missing FROM rc_diff(1199, 'regress_rc.rc_ref_out')) = 0 AND
	rc_offsets('rc_ref') = 1200$$);
-- The unscaled pipeline's sink, row for row.
SELECT (SELECT count(*) FROM regress_rc.rc_out) AS rows,
	   (SELECT count(*) FROM (SELECT * FROM regress_rc.rc_out EXCEPT ALL
							  SELECT * FROM regress_rc.rc_ref_out) x) AS not_in_unscaled,
	   (SELECT count(*) FROM (SELECT * FROM regress_rc.rc_ref_out EXCEPT ALL
							  SELECT * FROM regress_rc.rc_out) x) AS not_in_rescaled;
-- The checkpoints' layouts: 1, 3, 2, 1.
SELECT string_agg(parallelism::text, ' -> ' ORDER BY id) AS layouts
FROM (SELECT id, parallelism, lag(parallelism) OVER (ORDER BY id) AS prev
	  FROM streamflink.checkpoints WHERE pipeline = 'rc') x
WHERE prev IS DISTINCT FROM parallelism;
SELECT streamflink.stop('rc');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc'$$);
RESET SESSION AUTHORIZATION;
SELECT rc_task_dirs('rc');

-- Refused: a checkpoint with channel state (an unaligned checkpoint's
-- records in flight; made up here, in a transaction rolled back).
BEGIN;
UPDATE streamflink.checkpoint SET persisted_bytes = 100
WHERE pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'rc')
  AND id = (SELECT max(c.id) FROM streamflink.checkpoint c JOIN streamflink.pipeline p ON p.id = c.pipeline_id
			WHERE p.name = 'rc');
SET SESSION AUTHORIZATION regress_rc;
SELECT rc_error($$SELECT streamflink.start('rc', parallelism => 2)$$);
ROLLBACK;

-- Refused: a Kafka sink (each task re-sends its own decided transactions).
SET SESSION AUTHORIZATION regress_rc;
SELECT streamflink.create_window_pipeline('rc_ks', 'rc_src', 'k', 'tumble',
	'count(*) AS n', NULL, size => '1 minute', checkpoint_interval => '200 milliseconds',
	sink_topic => 'regress_rescale_ks', sink_brokers => regress_brokers());
SELECT streamflink.start('rc_ks');
SELECT wait_until($$SELECT last_checkpoint IS NOT NULL FROM streamflink.pipelines WHERE name = 'rc_ks'$$);
SELECT streamflink.stop('rc_ks');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc_ks'$$);
SELECT streamflink.start('rc_ks', parallelism => 2);
SELECT parallelism FROM streamflink.pipeline WHERE name = 'rc_ks';

SELECT streamflink.stop('rc_ref');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rc_ref'$$);
SELECT streamflink.drop_pipeline('rc_ks', drop_sink => true);
SELECT streamflink.drop_pipeline('rc_ref', drop_sink => true);
SELECT streamflink.drop_pipeline('rc', drop_sink => true);
SELECT streamflink.drop_source('rc_src');
RESET SESSION AUTHORIZATION;
DROP SCHEMA regress_rc;
DROP TABLE rc_events;
DROP ROLE regress_rc, regress_rc_other;
