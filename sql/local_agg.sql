--
-- local_agg: two-stage (local-global) aggregation of parallel window
-- pipelines, and the streamflink.hot_keys view.  The same tumbling and
-- hopping pipelines with and without local aggregation (parallelism 1, 2
-- and 3) give the same sink rows as SQL's answer, including events within
-- the allowed lateness, and the same too-late events on the side output.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- A user-defined aggregate with a combine function, and one without.
CREATE FUNCTION la_sq_acc(int8, int) RETURNS int8
	LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1 + $2::int8 * $2';
CREATE AGGREGATE la_sumsq(int) (sfunc = la_sq_acc, stype = int8, initcond = '0',
	combinefunc = int8pl);
CREATE AGGREGATE la_sumsq_nc(int) (sfunc = la_sq_acc, stype = int8, initcond = '0');

SELECT streamflink.create_source('la_src', regress_brokers(), 'regress_local', 'json',
	columns => 'k text, v int, ts timestamptz', event_time => 'ts',
	max_out_of_orderness => '2 seconds');

-- The option: NULL (automatic), true, false; stored as given.
SELECT streamflink.create_window_pipeline('la_t1', 'la_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_t1_out', size => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_window_pipeline('la_t2', 'la_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_t2_out', size => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds', parallelism => 2, local_aggregation => true);
SELECT streamflink.create_window_pipeline('la_t3', 'la_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_t3_out', size => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds', parallelism => 3);
SELECT streamflink.create_window_pipeline('la_toff', 'la_src', 'k', 'tumble',
	'count(*) AS n, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_toff_out', size => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds', parallelism => 2, local_aggregation => false);
SELECT streamflink.create_window_pipeline('la_h1', 'la_src', 'k', 'hop',
	'count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_h1_out', size => '2 minutes', slide => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_window_pipeline('la_h3', 'la_src', 'k', 'hop',
	'count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq',
	'la_h3_out', size => '2 minutes', slide => '1 minute', allowed_lateness => '10 minutes',
	checkpoint_interval => '200 milliseconds', parallelism => 3, local_aggregation => true);
SELECT name, parallelism, local_aggregation FROM streamflink.pipeline
WHERE name LIKE 'la\_%' ORDER BY name;

-- 3000 events over 20 minutes, on four partitions, a little out of order;
-- key k0 carries half of them.  Then an event at 00:30 on each partition:
-- the watermark passes 00:29:58, every window up to then fires.
CREATE TABLE la_events AS
SELECT i, (i / 2) % 4 AS part, CASE WHEN i % 2 = 0 THEN 'k0' ELSE 'k' || (i * 7 % 29 + 1) END AS k,
       (i * 13 + i / 40) % 10 AS v,
       timestamptz '2024-01-01 00:00:00+00' + (i * 400 - (i * 7) % 1000) * interval '1 millisecond' AS ts,
       false AS too_late
FROM generate_series(0, 2999) i;
INSERT INTO la_events
SELECT 3000 + p, p, 'k0', 0, timestamptz '2024-01-01 00:30:00+00', false FROM generate_series(0, 3) p;
SELECT sum(streamflink.produce(regress_brokers(), 'regress_local', payloads, part))
FROM (SELECT part, array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) AS payloads
      FROM la_events GROUP BY part) b;

SELECT streamflink.start(name) FROM (VALUES ('la_t1'), ('la_t2'), ('la_t3'), ('la_toff'), ('la_h1'), ('la_h3')) p(name);
-- every task of each (a task not yet started has no watermark)
SELECT wait_until($$SELECT count(*) = 12 AND bool_and(coalesce(watermark = '2024-01-01 00:29:58+00', false))
	FROM streamflink.tasks WHERE pipeline LIKE 'la\_%'$$);

-- Then, on each partition, an event too late for its window (its end plus
-- the allowed lateness is before the watermark) and one within the
-- allowed lateness (its window fires again); then the end.
INSERT INTO la_events
SELECT 4000 + p * 3 + j, p, CASE WHEN j = 0 THEN 'k0' ELSE 'k' || (p + 1) END, p + j,
       CASE j WHEN 0 THEN timestamptz '2024-01-01 00:15:30+00'
              WHEN 1 THEN timestamptz '2024-01-01 00:25:30+00'
              ELSE timestamptz '2024-01-01 01:00:00+00' END,
       j = 0
FROM generate_series(0, 3) p, generate_series(0, 2) j;
SELECT sum(streamflink.produce(regress_brokers(), 'regress_local', payloads, part))
FROM (SELECT part, array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) AS payloads
      FROM la_events WHERE i >= 4000 GROUP BY part) b;
SELECT wait_until($$SELECT count(*) = 12 AND bool_and(coalesce(watermark = '2024-01-01 00:59:58+00', false))
	FROM streamflink.tasks WHERE pipeline LIKE 'la\_%'$$);
SELECT wait_until($$SELECT count(*) = 24 FROM streamflink.late_events WHERE pipeline LIKE 'la\_%'$$);

-- SQL's answer (without the too-late events), and every pipeline's sink.
CREATE VIEW la_tumble_expected AS
SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start,
       date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
       count(*) AS n, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq
FROM la_events WHERE NOT too_late AND ts < '2024-01-01 00:59:00+00' GROUP BY 1, 2;
CREATE VIEW la_hop_expected AS
SELECT k, s AS window_start, s + interval '2 minutes' AS window_end,
       count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi, la_sumsq(v) AS sq
FROM la_events, LATERAL (VALUES (date_bin('1 minute', ts, 'epoch')),
                                (date_bin('1 minute', ts, 'epoch') - interval '1 minute')) w(s)
WHERE NOT too_late AND ts < '2024-01-01 00:59:00+00' GROUP BY 1, 2;
SELECT p.name,
       (SELECT count(*) FROM la_tumble_expected) AS expected,
       count(*) AS got
FROM (VALUES ('la_t1'), ('la_t2'), ('la_t3'), ('la_toff')) p(name),
     LATERAL (SELECT * FROM la_t1_out WHERE p.name = 'la_t1' UNION ALL
              SELECT * FROM la_t2_out WHERE p.name = 'la_t2' UNION ALL
              SELECT * FROM la_t3_out WHERE p.name = 'la_t3' UNION ALL
              SELECT * FROM la_toff_out WHERE p.name = 'la_toff') o
GROUP BY p.name ORDER BY p.name;
SELECT (SELECT count(*) FROM (SELECT * FROM la_tumble_expected EXCEPT SELECT * FROM la_t1_out) x) AS t1_missing,
       (SELECT count(*) FROM (SELECT * FROM la_t1_out EXCEPT SELECT * FROM la_tumble_expected) x) AS t1_extra,
       (SELECT count(*) FROM (SELECT * FROM la_tumble_expected EXCEPT SELECT * FROM la_t2_out) x) AS t2_missing,
       (SELECT count(*) FROM (SELECT * FROM la_t2_out EXCEPT SELECT * FROM la_tumble_expected) x) AS t2_extra,
       (SELECT count(*) FROM (SELECT * FROM la_tumble_expected EXCEPT SELECT * FROM la_t3_out) x) AS t3_missing,
       (SELECT count(*) FROM (SELECT * FROM la_t3_out EXCEPT SELECT * FROM la_tumble_expected) x) AS t3_extra,
       (SELECT count(*) FROM (SELECT * FROM la_tumble_expected EXCEPT SELECT * FROM la_toff_out) x) AS off_missing,
       (SELECT count(*) FROM (SELECT * FROM la_toff_out EXCEPT SELECT * FROM la_tumble_expected) x) AS off_extra;
SELECT (SELECT count(*) FROM la_hop_expected) AS hop_expected,
       (SELECT count(*) FROM la_h1_out) AS h1, (SELECT count(*) FROM la_h3_out) AS h3,
       (SELECT count(*) FROM (SELECT * FROM la_hop_expected EXCEPT SELECT * FROM la_h1_out) x) AS h1_missing,
       (SELECT count(*) FROM (SELECT * FROM la_h1_out EXCEPT SELECT * FROM la_hop_expected) x) AS h1_extra,
       (SELECT count(*) FROM (SELECT * FROM la_hop_expected EXCEPT SELECT * FROM la_h3_out) x) AS h3_missing,
       (SELECT count(*) FROM (SELECT * FROM la_h3_out EXCEPT SELECT * FROM la_hop_expected) x) AS h3_extra;
-- The window within the allowed lateness has its late event.
SELECT window_start, n FROM la_t2_out WHERE k = 'k1' AND window_start = '2024-01-01 00:25:00+00';

-- The too-late events: the same on every pipeline's side output.
SELECT pipeline, count(*) AS late, array_agg(partition || ':' || "offset" ORDER BY partition) AS positions,
       min(event_time) AS event_time, min(reason) = max(reason) AS one_reason
FROM streamflink.late_events WHERE pipeline LIKE 'la\_%' GROUP BY pipeline ORDER BY pipeline;
SELECT pipeline, sum(events_in) AS events_in, sum(events_out) AS events_out
FROM streamflink.tasks WHERE pipeline LIKE 'la\_%' GROUP BY pipeline ORDER BY pipeline;

-- Hot keys: k0 carries half of every task's events.
SELECT pipeline, task, rank, key, share > 0.4 AS about_half
FROM streamflink.hot_keys WHERE pipeline IN ('la_t2', 'la_t3') AND rank = 1 ORDER BY pipeline, task;
SELECT count(*) AS single_task_rows FROM streamflink.hot_keys WHERE pipeline = 'la_t1';

-- A tenant: true on an aggregate without a combine function, or on session
-- windows, is refused; automatic is not.  The tenant sees only its own
-- pipelines' hot keys.
CREATE ROLE regress_la_tenant;
GRANT streamflink_user TO regress_la_tenant;
CREATE SCHEMA regress_la_tenant AUTHORIZATION regress_la_tenant;
SET SESSION AUTHORIZATION regress_la_tenant;
SELECT streamflink.create_source('la_tenant_src', brokers => regress_brokers(), topic => 'regress_local',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('la_tenant_bad', 'la_tenant_src', 'k', 'tumble',
	'count(*) AS n, la_sumsq_nc(v) AS sq', 'regress_la_tenant.la_bad_out', size => '1 minute',
	parallelism => 2, local_aggregation => true);
SELECT streamflink.create_window_pipeline('la_tenant_bad', 'la_tenant_src', 'k', 'session',
	'count(*) AS n', 'regress_la_tenant.la_bad_out', gap => '1 minute',
	parallelism => 2, local_aggregation => true);
SELECT to_regclass('regress_la_tenant.la_bad_out') IS NULL AS no_sink_left;
SELECT streamflink.create_window_pipeline('la_tenant_p', 'la_tenant_src', 'k', 'tumble',
	'count(*) AS n, la_sumsq_nc(v) AS sq', 'regress_la_tenant.la_tenant_out', size => '1 minute',
	parallelism => 2);
SELECT streamflink.start('la_tenant_p');
SELECT wait_until($$SELECT count(*) > 0 FROM streamflink.hot_keys WHERE pipeline = 'la_tenant_p'$$);
-- both tasks past the windows compared below (hot keys show after a few events)
SELECT wait_until($$SELECT count(*) = 2 AND bool_and(coalesce(watermark >= '2024-01-01 00:15:00+00', false))
	FROM streamflink.tasks WHERE pipeline = 'la_tenant_p'$$);
SELECT DISTINCT pipeline FROM streamflink.hot_keys;
SELECT DISTINCT pipeline FROM streamflink.tasks;
SELECT streamflink.stop('la_tenant_p');
SELECT wait_until($$SELECT count(*) = 0 FROM streamflink.tasks WHERE pipeline = 'la_tenant_p'$$);
RESET SESSION AUTHORIZATION;
-- automatic without a combine function: the same answer (windows before
-- the late events), without local aggregation
SELECT (SELECT count(*) FROM la_tumble_expected WHERE window_start < '2024-01-01 00:15:00+00') AS expected,
       (SELECT count(*) FROM (SELECT k, window_start, n FROM regress_la_tenant.la_tenant_out
                              WHERE window_start < '2024-01-01 00:15:00+00'
                              EXCEPT SELECT k, window_start, n FROM la_tumble_expected) x) AS extra,
       (SELECT count(*) FROM (SELECT k, window_start, n FROM la_tumble_expected
                              WHERE window_start < '2024-01-01 00:15:00+00'
                              EXCEPT SELECT k, window_start, n FROM regress_la_tenant.la_tenant_out) x) AS missing;
SET SESSION AUTHORIZATION regress_la_tenant;
SELECT streamflink.drop_pipeline('la_tenant_p', drop_sink => true);
SELECT streamflink.drop_source('la_tenant_src');
RESET SESSION AUTHORIZATION;
DROP SCHEMA regress_la_tenant;
DROP ROLE regress_la_tenant;

SELECT streamflink.stop(name) FROM (VALUES ('la_t1'), ('la_t2'), ('la_t3'), ('la_toff'), ('la_h1'), ('la_h3')) p(name);
SELECT wait_until($$SELECT count(*) = 0 FROM streamflink.tasks WHERE pipeline LIKE 'la\_%'$$);
SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM (VALUES ('la_t1'), ('la_t2'), ('la_t3'), ('la_toff'), ('la_h1'), ('la_h3')) p(name);
DROP VIEW la_tumble_expected;
DROP VIEW la_hop_expected;
DROP TABLE la_events;
SELECT streamflink.drop_source('la_src');
DROP AGGREGATE la_sumsq(int);
DROP AGGREGATE la_sumsq_nc(int);
DROP FUNCTION la_sq_acc(int8, int);
