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

-- The same for a pattern pipeline, whose conditions run when the watermark
-- passes an event buffered earlier (maybe before a checkpoint): a2 divides
-- by zero in a's condition; a1 b1 and a3 b2 still match (strict: a b).
SELECT streamflink.create_source('steps', brokers => regress_brokers(), topic => 'regress_poison_cep',
       columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts',
       idle_timeout => '1 second');
SELECT streamflink.create_pattern_pipeline('steps', 'steps', 'k', 'a b',
	$$ a AS id ~ '^a' AND 10 / x > 1, b AS id ~ '^b' $$, 'steps_out');
SELECT streamflink.produce(regress_brokers(), 'regress_poison_cep', ARRAY[
	'{"k": 1, "id": "a1", "x": 2, "ts": "2024-01-01 00:00:00+00"}',
	'{"k": 1, "id": "b1", "x": 0, "ts": "2024-01-01 00:01:00+00"}',
	'{"k": 1, "id": "a2", "x": 0, "ts": "2024-01-01 00:02:00+00"}',
	'{"k": 1, "id": "a3", "x": 5, "ts": "2024-01-01 00:03:00+00"}',
	'{"k": 1, "id": "b2", "x": 0, "ts": "2024-01-01 00:04:00+00"}',
	'{"k": 2, "id": "end", "x": 1, "ts": "2024-01-02 00:00:00+00"}'], 0);
SELECT streamflink.start('steps');
SELECT wait_until($$SELECT count(*) = 2 FROM steps_out$$);
SELECT k, match_start, match_end, events->'a'->0->>'id' AS a, events->'b'->0->>'id' AS b
FROM steps_out ORDER BY match_start;
SELECT partition, "offset", convert_from(payload, 'UTF8')::jsonb->>'id' AS id, error
FROM streamflink.dead_letters WHERE pipeline = 'steps';
SELECT streamflink.stop('steps');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'steps'$$);
SELECT streamflink.drop_pipeline('steps', drop_sink => true);
SELECT streamflink.drop_source('steps');
