--
-- rescale: savepoints of a parallel pipeline (one snapshot per task's
-- key-group range, every partition's position, one row) and rescaling a
-- window pipeline 1 -> 3 -> 2 -> 1 through savepoints on a topic of four
-- partitions: after each step the sink equals SQL's answer over the same
-- events, windows open across every rescale included.  And the refusals:
-- a parallelism change while running or out of bounds.  (Without a
-- savepoint, a new parallelism rescales the last checkpoint: see
-- rescale_checkpoint.)
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- Event i: partition i % 4, key i * 7 % 20, every half second.
CREATE TABLE rs_events AS
SELECT i, i % 4 AS part, 'k' || (i * 7 % 20) AS k, i % 10 AS v,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '500 milliseconds' AS ts
FROM generate_series(0, 1199) i;
CREATE FUNCTION rs_produce(lo int, hi int) RETURNS int
LANGUAGE sql AS $$
	SELECT sum(streamflink.produce(regress_brokers(), 'regress_rescale', payloads, part))::int
	FROM (SELECT part, array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) AS payloads
	      FROM rs_events WHERE i BETWEEN lo AND hi GROUP BY part) b
$$;
-- The watermark once events 0..hi are read: the slowest partition's
-- latest event less the out-of-orderness.
CREATE FUNCTION rs_watermark(hi int) RETURNS timestamptz
LANGUAGE sql AS $$
	SELECT min(m) - interval '2 seconds'
	FROM (SELECT max(ts) AS m FROM rs_events WHERE i <= hi GROUP BY part) x
$$;
-- Sink = SQL's answer for the windows fired at that watermark.
CREATE FUNCTION rs_diff(hi int) RETURNS TABLE (expected bigint, missing bigint, extra bigint)
LANGUAGE plpgsql AS $f$
BEGIN
	RETURN QUERY
	WITH e AS (
		SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start,
			   date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
			   count(*) AS n, sum(v) AS total
		FROM rs_events WHERE i <= hi
		GROUP BY 1, 2
		HAVING date_bin('1 minute', ts, 'epoch') + interval '1 minute' <= rs_watermark(hi))
	SELECT (SELECT count(*) FROM e),
		   (SELECT count(*) FROM (SELECT * FROM e EXCEPT ALL
								  SELECT k, window_start, window_end, n, total FROM rs_out) x),
		   (SELECT count(*) FROM (SELECT k, window_start, window_end, n, total FROM rs_out
								  EXCEPT ALL SELECT * FROM e) x);
END
$f$;
-- The range directories of a savepoint's files.
CREATE FUNCTION rs_ranges(savepoint text) RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(d, ' ' ORDER BY split_part(d, '-', 1)::int)
	FROM pg_ls_dir(format('streamflink/%s/%s/savepoints/%s',
						  (SELECT oid FROM pg_database WHERE datname = current_database()),
						  (SELECT id FROM streamflink.pipeline WHERE name = 'rs'), savepoint)) d
$$;

SELECT streamflink.create_source('rs_src', regress_brokers(), 'regress_rescale', 'json',
	columns => 'k text, v int, ts timestamptz', event_time => 'ts',
	max_out_of_orderness => '2 seconds');
SELECT streamflink.create_window_pipeline('rs', 'rs_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'rs_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds');

-- Refused: a change of parallelism while running, and out of bounds.
SELECT rs_produce(0, 299);
SELECT streamflink.start('rs');
SELECT wait_until($$SELECT (SELECT missing FROM rs_diff(299)) = 0 AND
	(SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = 'rs') = 300$$);
SELECT * FROM rs_diff(299);
SELECT streamflink.start('rs', parallelism => 3);
SELECT streamflink.stop('rs');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT streamflink.start('rs', parallelism => 0);
-- A superuser's UPDATE of a stopped pipeline's parallelism would rescale its
-- last checkpoint at the next start, like start(parallelism => n): set back.
UPDATE streamflink.pipeline SET parallelism = 2 WHERE name = 'rs';
UPDATE streamflink.pipeline SET parallelism = 1 WHERE name = 'rs';
SELECT streamflink.start('rs');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'rs'$$);

-- 1 -> 3: stop with savepoint, start from it with three tasks.
SELECT streamflink.stop('rs', savepoint => 'r1');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT name, parallelism, key_groups, offsets FROM streamflink.savepoints WHERE pipeline = 'rs';
SELECT rs_ranges('r1');
SELECT streamflink.start('rs', from_savepoint => 'r1', parallelism => 3);
SELECT parallelism, restore_savepoint IS NOT NULL AS restoring FROM streamflink.pipeline WHERE name = 'rs';
SELECT rs_produce(300, 599);
SELECT wait_until($$SELECT (SELECT missing FROM rs_diff(599)) = 0 AND
	(SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = 'rs') = 600$$);
SELECT * FROM rs_diff(599);
SELECT count(*) AS tasks, string_agg(key_group_first || '-' || key_group_last, ' ' ORDER BY task) AS key_groups
FROM streamflink.tasks WHERE pipeline = 'rs';
SELECT streamflink.start('rs', parallelism => 2);	-- running

-- A savepoint of the running parallel pipeline, then a stop with one.
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT streamflink.savepoint('rs', 'r2_running');
SELECT streamflink.stop('rs', savepoint => 'r2');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT name, parallelism, key_groups, offsets, size_bytes > 0 AS has_size
FROM streamflink.savepoints WHERE pipeline = 'rs' ORDER BY checkpoint;
SELECT rs_ranges('r2_running') AS r2_running, rs_ranges('r2') AS r2;
SELECT (SELECT checkpoint FROM streamflink.savepoints WHERE name = 'r2') =
	   (SELECT max(id) FROM streamflink.checkpoints WHERE pipeline = 'rs') AS r2_is_last_checkpoint;

-- 3 -> 2.
SELECT streamflink.start('rs', from_savepoint => 'r2', parallelism => 2);
SELECT rs_produce(600, 899);
SELECT wait_until($$SELECT (SELECT missing FROM rs_diff(899)) = 0 AND
	(SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = 'rs') = 900$$);
SELECT * FROM rs_diff(899);
SELECT count(*) AS tasks FROM streamflink.tasks WHERE pipeline = 'rs';
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT streamflink.stop('rs', savepoint => 'r3');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT rs_ranges('r3');

-- 2 -> 1.
SELECT streamflink.start('rs', from_savepoint => 'r3', parallelism => 1);
SELECT rs_produce(900, 1199);
SELECT wait_until($$SELECT (SELECT missing FROM rs_diff(1199)) = 0 AND
	(SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = 'rs') = 1200$$);
SELECT * FROM rs_diff(1199);

-- A rewind to r2 (three ranges) at parallelism 1: the sink is upserted
-- with the same rows.
SELECT streamflink.stop('rs');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);
SELECT streamflink.start('rs', from_savepoint => 'r2');
SELECT wait_until($$SELECT (SELECT missing FROM rs_diff(1199)) = 0 AND
	(SELECT sum(next_offset) FROM streamflink.offsets WHERE pipeline = 'rs') = 1200 AND
	(SELECT restore_savepoint IS NULL FROM streamflink.pipeline WHERE name = 'rs')$$);
SELECT * FROM rs_diff(1199);
SELECT streamflink.stop('rs');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'rs'$$);

-- Dropping a savepoint takes its positions along.
SELECT streamflink.drop_savepoint('rs', 'r2_running');
SELECT count(*) AS orphan_offsets FROM streamflink.savepoint_offset o
WHERE NOT EXISTS (SELECT 1 FROM streamflink.savepoint s WHERE s.id = o.savepoint_id);
SELECT streamflink.drop_pipeline('rs');
SELECT count(*) AS offsets_left FROM streamflink.savepoint_offset;
