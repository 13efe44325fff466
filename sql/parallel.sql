--
-- parallel: pipelines of several tasks (parallelism), their parameters,
-- the streamflink.tasks view, and results equal to a single worker's on
-- the same events (a window and a pattern pipeline on a topic of four
-- partitions).
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_source('par_src', regress_brokers(), 'regress_parallel', 'json',
	columns => 'k text, v int, ts timestamptz', event_time => 'ts',
	max_out_of_orderness => '2 seconds');

-- Refused at creation: each parameter's bounds, and what is not there yet.
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 0);
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 129);
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => NULL);
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 17);	-- over streamflink.max_workers
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 2, checkpoint_mode => 'eventual');
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 2, checkpoint_mode => 'unaligned',
	aligned_checkpoint_timeout => '200 ms');
SELECT streamflink.create_window_pipeline('bad', 'par_src', 'k', 'tumble', 'count(*) AS n',
	'bad_out', size => '1 minute', parallelism => 2, aligned_checkpoint_timeout => '-1 s');
SELECT streamflink.create_pattern_pipeline('bad', 'par_src', 'k', 'a b',
	$$a AS v < 5, b AS v >= 5$$, 'bad_out', parallelism => -1);
SELECT to_regclass('bad_out') IS NULL AS no_sink_left;

-- The same window pipeline with one task and with two; a pattern pipeline
-- likewise.
SELECT streamflink.create_window_pipeline('par_w1', 'par_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'par_w1_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_window_pipeline('par_w2', 'par_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'par_w2_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds', parallelism => 2);
-- Unaligned, and aligned switching to unaligned at once (a zero timeout).
SELECT streamflink.create_window_pipeline('par_wu', 'par_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'par_wu_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds', parallelism => 2, checkpoint_mode => 'unaligned',
	state_options => 'block_cache_size=8MB');
SELECT streamflink.create_window_pipeline('par_wt', 'par_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total', 'par_wt_out', size => '1 minute',
	checkpoint_interval => '200 milliseconds', parallelism => 3, aligned_checkpoint_timeout => '0');
SELECT streamflink.create_pattern_pipeline('par_p1', 'par_src', 'k', 'a -> b+ -> c',
	$$a AS v < 3, b AS v BETWEEN 3 AND 6, c AS v > 6$$, 'par_p1_out',
	within => '10 minutes', skip => 'skip_past_last_event', checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_pattern_pipeline('par_p2', 'par_src', 'k', 'a -> b+ -> c',
	$$a AS v < 3, b AS v BETWEEN 3 AND 6, c AS v > 6$$, 'par_p2_out',
	within => '10 minutes', skip => 'skip_past_last_event', checkpoint_interval => '200 milliseconds',
	parallelism => 2);
SELECT name, parallelism, checkpoint_mode, aligned_checkpoint_timeout
FROM streamflink.pipeline WHERE name LIKE 'par\_%' ORDER BY name;

-- 2000 events over 40 keys and 20 minutes, on four partitions, a little
-- out of order; then one an hour later on each partition.
CREATE TABLE par_events AS
SELECT i, i % 4 AS part, 'k' || (i * 7 % 40) AS k, (i * 13 + i / 40) % 10 AS v,
       timestamptz '2024-01-01 00:00:00+00' + (i * 600 - (i * 7) % 1000) * interval '1 millisecond' AS ts
FROM generate_series(0, 1999) i;
SELECT sum(streamflink.produce(regress_brokers(), 'regress_parallel', payloads, part))
FROM (SELECT part, array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) AS payloads
      FROM par_events GROUP BY part) b;
SELECT sum(streamflink.produce(regress_brokers(), 'regress_parallel',
	ARRAY['{"k": "k0", "v": 0, "ts": "2024-01-01 01:00:00+00"}'], p))
FROM generate_series(0, 3) p;

SELECT streamflink.start(name) FROM (VALUES ('par_w1'), ('par_w2'), ('par_wu'), ('par_wt'), ('par_p1'), ('par_p2')) p(name);
SELECT wait_until($$SELECT count(*) = 6 AND bool_and(n = 2004)
	FROM (SELECT pipeline, sum(next_offset) AS n FROM streamflink.offsets
	      WHERE pipeline LIKE 'par\_%' GROUP BY pipeline) o$$);

-- The tasks: one per worker, each with its partitions and key groups.
SELECT wait_until($$SELECT count(*) = 11 AND bool_and(watermark = '2024-01-01 00:59:58+00')
	AND (SELECT bool_and(n = 2004) FROM (SELECT sum(events_in) AS n FROM streamflink.tasks
	                                     WHERE pipeline LIKE 'par\_%' GROUP BY pipeline) e)
	FROM streamflink.tasks WHERE pipeline LIKE 'par\_%'$$);
-- The offsets above are checkpointed before the windows the watermark
-- then fires are: wait for those to be committed too (every window of the
-- input, in each window pipeline's sink; both pattern pipelines equal).
SELECT wait_until($$SELECT (SELECT count(DISTINCT (k, date_bin('1 minute', ts, 'epoch'))) FROM par_events)
	= ALL (ARRAY[(SELECT count(*) FROM par_w1_out), (SELECT count(*) FROM par_w2_out),
	             (SELECT count(*) FROM par_wu_out), (SELECT count(*) FROM par_wt_out)])
	AND (SELECT count(*) FROM par_p1_out) = (SELECT count(*) FROM par_p2_out)$$);
SELECT pipeline, task, parallelism, partitions, key_group_first, key_group_last,
       pid <> 0 AS has_pid, watermark
FROM streamflink.tasks WHERE pipeline LIKE 'par\_%' ORDER BY pipeline, task;
SELECT pipeline, sum(events_in) AS events_in, sum(events_out) AS events_out
FROM streamflink.tasks WHERE pipeline LIKE 'par\_%' GROUP BY pipeline ORDER BY pipeline;

-- Same results with one task and with two, and SQL's answer.
CREATE VIEW par_expected AS
SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start,
       date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
       count(*) AS n, sum(v) AS total
FROM par_events GROUP BY 1, 2;
SELECT (SELECT count(*) FROM par_expected) AS expected,
       (SELECT count(*) FROM par_w1_out) AS one_task,
       (SELECT count(*) FROM par_w2_out) AS two_tasks,
       (SELECT count(*) FROM (SELECT * FROM par_expected EXCEPT SELECT * FROM par_w2_out) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM par_w2_out EXCEPT SELECT * FROM par_w1_out) x) AS differ,
       (SELECT count(*) FROM par_wu_out) AS unaligned,
       (SELECT count(*) FROM (SELECT * FROM par_wu_out EXCEPT SELECT * FROM par_w1_out) x) AS differ_unaligned,
       (SELECT count(*) FROM par_wt_out) AS switched,
       (SELECT count(*) FROM (SELECT * FROM par_wt_out EXCEPT SELECT * FROM par_w1_out) x) AS differ_switched;
SELECT (SELECT count(*) FROM par_p1_out) > 0 AS has_matches,
       (SELECT count(*) FROM par_p1_out) = (SELECT count(*) FROM par_p2_out) AS same_count,
       (SELECT count(*) FROM (SELECT * FROM par_p1_out EXCEPT ALL SELECT * FROM par_p2_out) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM par_p2_out EXCEPT ALL SELECT * FROM par_p1_out) x) AS extra;

-- Checkpoints of two tasks: one row each per task, the pipeline's figures.
SELECT pipeline, bool_and(parallelism = 2) AS two, bool_and(jsonb_array_length(tasks) = 2) AS per_task,
       bool_and(alignment IS NOT NULL) AS aligned
FROM streamflink.checkpoints WHERE pipeline IN ('par_w2', 'par_p2') GROUP BY pipeline ORDER BY pipeline;
-- Every task of an unaligned checkpoint (or one switched at once) took it
-- unaligned; an aligned one none.
SELECT pipeline, bool_and(unaligned_tasks = parallelism) AS all_unaligned,
       bool_and(persisted_bytes >= 0) AS persisted_known
FROM streamflink.checkpoints WHERE pipeline IN ('par_wu', 'par_wt') GROUP BY pipeline ORDER BY pipeline;
SELECT pipeline, bool_and(unaligned_tasks = 0 AND persisted_bytes = 0) AS aligned
FROM streamflink.checkpoints WHERE pipeline = 'par_w2' GROUP BY pipeline;
SELECT pipeline, bool_and(parallelism = 1 AND tasks IS NULL) AS single
FROM streamflink.checkpoints WHERE pipeline IN ('par_w1', 'par_p1') GROUP BY pipeline ORDER BY pipeline;

-- One memory budget whatever the parallelism: a pipeline takes one worker's
-- share of streamflink.state_memory (64MB here), which its tasks split (the
-- default profile's block cache is half of it: 32MB in all, a third of it
-- in each of par_wt's three tasks), and streamflink.state_metrics shows the
-- totals of its tasks' databases (an explicit block_cache_size is each
-- task's: 8MB twice).  Each task publishes about once a second.  Without
-- RocksDB's statistics, the block cache's lookups are counted anyway, and
-- so are flushes, compactions and the time writes were stalled.
SELECT wait_until($$SELECT count(*) = 6 AND bool_and(round(block_cache_capacity / 1048576.0) =
	CASE pipeline WHEN 'par_wu' THEN 16 ELSE 32 END)
	FROM streamflink.state_metrics WHERE pipeline LIKE 'par\_%'$$);
SELECT pipeline, round(block_cache_capacity / 1048576.0) AS cache_mb,
	   block_cache_hits >= 0 AND block_cache_misses >= 0 AS cache_lookups_counted,
	   flushes >= 0 AND compactions >= 0 AND stall_micros >= 0 AS jobs_counted
FROM streamflink.state_metrics WHERE pipeline LIKE 'par\_%' ORDER BY pipeline;

-- A tenant sees only its own pipelines' tasks.
CREATE ROLE regress_par_tenant;
GRANT streamflink_user TO regress_par_tenant;
SET ROLE regress_par_tenant;
SELECT count(*) FROM streamflink.tasks;
SELECT count(*) FROM streamflink.checkpoint_task;
RESET ROLE;

-- A tenant's quota of running pipelines counts every task.
CREATE SCHEMA regress_par_tenant AUTHORIZATION regress_par_tenant;
INSERT INTO streamflink.role_quota VALUES ('regress_par_tenant', NULL, 2, NULL);
SET SESSION AUTHORIZATION regress_par_tenant;
SELECT streamflink.create_source('par_tenant_src', brokers => regress_brokers(), topic => 'regress_parallel',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('par_tenant_p', 'par_tenant_src', 'k', 'tumble',
	'count(*) AS n', 'regress_par_tenant.par_tenant_out', size => '1 minute', parallelism => 3);
SELECT streamflink.start('par_tenant_p');
SELECT streamflink.drop_pipeline('par_tenant_p', drop_sink => true);
SELECT streamflink.drop_source('par_tenant_src');
RESET SESSION AUTHORIZATION;
DELETE FROM streamflink.role_quota;
DROP SCHEMA regress_par_tenant;

-- A stop ends every task after a last checkpoint; a restart goes on from it.
SELECT streamflink.stop('par_w2');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'par_w2'$$);
SELECT wait_until($$SELECT count(*) = 0 FROM streamflink.tasks WHERE pipeline = 'par_w2'$$);
SELECT streamflink.start('par_w2');
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.tasks WHERE pipeline = 'par_w2'$$);
SELECT sum(streamflink.produce(regress_brokers(), 'regress_parallel',
	ARRAY['{"k": "k1", "v": 1, "ts": "2024-01-01 02:00:00+00"}'], p))
FROM generate_series(0, 3) p;
SELECT wait_until($$SELECT count(*) = 1 FROM par_w2_out WHERE window_start >= '2024-01-01 01:00:00+00'$$);
SELECT count(*) AS duplicate_windows FROM (SELECT k, window_start FROM par_w2_out GROUP BY 1, 2 HAVING count(*) > 1) d;

SELECT streamflink.stop(name) FROM (VALUES ('par_w1'), ('par_w2'), ('par_wu'), ('par_wt'), ('par_p1'), ('par_p2')) p(name);
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name LIKE 'par\_%'$$);
SELECT wait_until($$SELECT count(*) = 0 FROM streamflink.tasks WHERE pipeline LIKE 'par\_%'$$);
SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM (VALUES ('par_w1'), ('par_w2'), ('par_wu'), ('par_wt'), ('par_p1'), ('par_p2')) p(name);
SELECT count(*) FROM streamflink.checkpoint_task;
DROP VIEW par_expected;
DROP TABLE par_events;
SELECT streamflink.drop_source('par_src');
DROP ROLE regress_par_tenant;
