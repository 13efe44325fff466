--
-- no2pc: a server with streamflink preloaded but max_prepared_transactions
-- = 0: exactly-once sinks need PREPARE TRANSACTION, so start refuses.
--
\set SHOW_CONTEXT never
CREATE EXTENSION streamflink;
SHOW max_prepared_transactions;
SELECT streamflink.create_source('s', brokers => current_setting('regress.brokers'),
       topic => 'regress_rides', columns => 'a int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('p', source => 's', key => 'a',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'p_out');
SELECT streamflink.start('p');
SELECT name, desired_state, status FROM streamflink.pipelines;
