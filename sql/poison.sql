--
-- poison: an event whose processing raises a data error (here a float8
-- sum overflowing) fails the worker once; the restarted worker sends that
-- message to the dead-letter table with the error and goes on, instead of
-- failing on it forever.  Nothing else is lost or doubled.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SELECT streamflink.create_source('sums', brokers => regress_brokers(), topic => 'regress_poison',
       columns => 'x float8, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('sums', source => 'sums', key => '',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(x) AS total', sink => 'sums_out');
SELECT streamflink.produce(regress_brokers(), 'regress_poison', ARRAY[
	'{"x": 1e308, "ts": "2024-01-01 00:00:00+00"}',
	'{"x": 1e308, "ts": "2024-01-01 00:00:10+00"}',
	'{"x": 1, "ts": "2024-01-01 00:00:20+00"}',
	'{"x": 5, "ts": "2024-01-01 00:01:00+00"}',
	'{"x": 0, "ts": "2024-01-01 01:00:00+00"}'], 0);
SELECT streamflink.start('sums');
SELECT wait_until($$SELECT count(*) = 2 FROM sums_out$$);
SELECT window_start, n, total FROM sums_out ORDER BY window_start;
SELECT partition, "offset", convert_from(payload, 'UTF8') AS payload, error
FROM streamflink.dead_letters WHERE pipeline = 'sums';
SELECT status, error FROM streamflink.pipelines WHERE name = 'sums';
SELECT streamflink.stop('sums');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'sums'$$);
SELECT streamflink.drop_pipeline('sums', drop_sink => true);
SELECT streamflink.drop_source('sums');
