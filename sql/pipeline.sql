--
-- pipeline: window pipelines, their sink tables and catalog rows, and the
-- errors of a bad definition.
--
\set SHOW_CONTEXT never
SELECT streamflink.create_window_pipeline('surge', source => 'rides', key => 'geo',
       "window" => 'hop', size => '5 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => 'surge_out', allowed_lateness => '1 minute', checkpoint_interval => '1 second');
SELECT streamflink.create_window_pipeline('per_sensor', source => 'readings', key => 'sensor',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(reading) AS total, min(reading) AS lo, avg(reading) AS mean',
       sink => 'sensor_minutes');
SELECT streamflink.create_window_pipeline('visits', source => 'rides', key => 'geo, kind',
       "window" => 'session', gap => '10 minutes',
       aggregates => 'count(*) AS n, sum(wait_s) AS waited', sink => 'sessions');

-- Sink tables have SQL's own result types, and one row per (key, window).
\d surge_out
\d sensor_minutes
\d sessions

SELECT name, source, "window", size, slide, gap, key, aggregates, sink,
       allowed_lateness, checkpoint_interval, desired_state, status
FROM streamflink.pipelines ORDER BY name;

-- Errors.
SELECT streamflink.create_window_pipeline('surge', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'nosuch', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'city',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo, geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'rolling', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', slide => '1 second',
       aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'hop', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'hop', size => '1 minute', slide => '2 minutes',
       aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'hop', size => '1 day', slide => '1 second',
       aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'session', size => '1 minute', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 month', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '0', aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', allowed_lateness => '-1 minute',
       aggregates => 'count(*) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n',
       sink => 'surge_out');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS geo', sink => 'x1');
-- Aggregates: plain aggregate calls over the source's columns.
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(fare) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'wait_s + 1 AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'sum(kind) AS n', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n FROM x', sink => 'x1');
SELECT streamflink.create_window_pipeline('p1', source => 'rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) OVER () AS n', sink => 'x1');
-- Nothing of the failed attempts is left.
SELECT count(*) FROM streamflink.pipeline WHERE name = 'p1';
SELECT to_regclass('x1');

-- A source in use cannot be dropped; a pipeline can.
SELECT streamflink.drop_source('rides');
SELECT streamflink.drop_pipeline('visits', drop_sink => true);
SELECT to_regclass('sessions');
SELECT streamflink.drop_pipeline('visits');
-- Starting or stopping a pipeline that does not exist.
SELECT streamflink.start('nosuch');
SELECT streamflink.stop('nosuch');
SELECT streamflink.stop('surge');

-- Ownership: another role can neither start nor drop our pipelines.
CREATE ROLE regress_tenant;
SET ROLE regress_tenant;
SELECT streamflink.start('surge');
SELECT streamflink.drop_pipeline('surge');
RESET ROLE;
DROP ROLE regress_tenant;
