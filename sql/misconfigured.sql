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
