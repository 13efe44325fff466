--
-- misconfigured: a server without shared_preload_libraries = 'streamflink'.
-- Definitions work; starting a pipeline says what to fix.
--
\set SHOW_CONTEXT never
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('s', brokers => current_setting('regress.brokers'),
       topic => 'regress_rides', columns => 'a int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('p', source => 's', key => 'a',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'p_out');
SELECT streamflink.start('p');
SELECT name, desired_state, status FROM streamflink.pipelines;

-- Dropping the extension keeps the sink tables (they are the user's) and
-- the schema with the sources' row types; creating it again works, and so
-- does creating a source of the same name.
DROP EXTENSION streamflink CASCADE;
SELECT to_regclass('p_out') IS NOT NULL AS sink_kept;
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('s', brokers => current_setting('regress.brokers'),
       topic => 'regress_rides', columns => 'a int, b text, ts timestamptz', event_time => 'ts');
SELECT name, columns FROM streamflink.sources;
