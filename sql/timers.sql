--
-- timers: the order in which due timers fire (src/timer_service.h): in
-- global time order, whatever their key groups, ties in the byte order of
-- the state key less its key group (then by key group), and whether a
-- timer was written to RocksDB (stored) or is still in memory (pending).
-- A tumbling window pipeline writes to Kafka, whose messages keep the
-- order in which the windows fired; its watermark stays 10 minutes behind,
-- so the windows of 5 minutes fire in one advance, and a savepoint between
-- two batches of events stores the first batch's timers.  96 keys spread
-- over the key groups: the tie order skips the key group a state key
-- starts with, so for these int keys (encoded big-endian with the sign
-- flipped) it is the keys' numeric order, and the same at every time.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_source('tm_src', brokers => regress_brokers(), topic => 'regress_timers',
       format => 'json', columns => 'k int, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '10 minutes',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('tm_order', source => 'tm_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       checkpoint_interval => '5 minutes',
       sink_topic => 'regress_timers_out', sink_brokers => regress_brokers(),
       sink_options => '{transaction.timeout.ms=600000}');

-- Batch 1: keys 0..63 in minutes 0, 1 and 2.  Batch 2: keys 0..63 in
-- minutes 3 and 4, keys 64..95 in minutes 1 and 3 (new timers at the
-- times of stored ones: minute 1; and of pending ones only: minute 3).
CREATE TABLE tm_events AS
SELECT row_number() OVER (ORDER BY b, m, k) AS i, b, k,
       timestamptz '2024-01-01 00:00:00+00' + m * interval '1 minute' + (k % 50) * interval '1 second' AS ts
FROM (SELECT 1 AS b, k, m FROM generate_series(0, 63) k, generate_series(0, 2) m
      UNION ALL SELECT 2, k, m FROM generate_series(0, 63) k, generate_series(3, 4) m
      UNION ALL SELECT 2, k, m FROM generate_series(64, 95) k, (VALUES (1), (3)) v(m)) e;
-- Produces batch 'batch' of 'events' (a table of i, b, k, ts; both cases
-- use it) to partition 0 of 'topic', in the order of i.
CREATE FUNCTION tm_produce(topic text, events regclass, batch int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
	msgs text[];
BEGIN
	EXECUTE format('SELECT array_agg(json_build_object(''k'', k, ''ts'', ts)::text ORDER BY i)
					FROM %s WHERE b = $1', events)
		INTO msgs USING batch;
	RETURN streamflink.produce(regress_brokers(), topic, msgs, 0);
END
$$;

SELECT streamflink.start('tm_order');
SELECT tm_produce('regress_timers', 'tm_events', 1);
SELECT wait_until($$SELECT events = 192 FROM streamflink.pipelines WHERE name = 'tm_order'$$);
SELECT streamflink.savepoint('tm_order', 'tm_stored');
SELECT tm_produce('regress_timers', 'tm_events', 2);
SELECT wait_until($$SELECT events = 384 FROM streamflink.pipelines WHERE name = 'tm_order'$$);
-- nothing fired yet
SELECT watermark FROM streamflink.pipelines WHERE name = 'tm_order';
-- an event an hour later: every window fires
SELECT streamflink.produce(regress_brokers(), 'regress_timers',
	ARRAY['{"k": 1000, "ts": "2024-01-01 01:00:00+00"}'], 0);
SELECT wait_until($$SELECT watermark = '2024-01-01 00:50:00+00' FROM streamflink.pipelines WHERE name = 'tm_order'$$);
-- a savepoint commits the sink's transaction
SELECT streamflink.savepoint('tm_order', 'tm_fired');

-- The messages in the order they were sent.
CREATE TABLE tm_fired AS
SELECT row_number() OVER (ORDER BY checkpoint, seq) AS pos,
       (value ->> 'k')::int AS k, (value ->> 'window_end')::timestamptz AS window_end,
       (value ->> 'n')::int AS n
FROM regress_committed('tm_order', 'regress_timers_out');

-- Every window once, with its event.
SELECT count(*) AS windows, count(DISTINCT (k, window_end)) AS distinct_windows, sum(n) AS events
FROM tm_fired;
SELECT window_end, count(*) FROM tm_fired GROUP BY 1 ORDER BY 1;
-- Time order, across key groups.
SELECT count(*) AS out_of_time_order
FROM (SELECT window_end < lag(window_end) OVER (ORDER BY pos) AS back FROM tm_fired) x
WHERE back;
-- Ties: keys 0..63 in the same order at every time, keys 0..95 in the same
-- order at minute 1 (stored and pending timers) as at minute 3 (pending).
SELECT count(DISTINCT ks) AS orders_of_keys_0_63
FROM (SELECT array_agg(k ORDER BY pos) FILTER (WHERE k < 64) AS ks FROM tm_fired GROUP BY window_end) x;
SELECT count(DISTINCT ks) AS orders_of_keys_0_95
FROM (SELECT array_agg(k ORDER BY pos) AS ks FROM tm_fired
      WHERE window_end IN ('2024-01-01 00:02:00+00', '2024-01-01 00:04:00+00') GROUP BY window_end) x;
-- and the keys' numeric order at every time, though in many key groups
SELECT count(*) AS keys_out_of_value_order
FROM (SELECT k, k < lag(k) OVER (PARTITION BY window_end ORDER BY pos) AS back FROM tm_fired) x
WHERE back;

SELECT streamflink.stop('tm_order');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'tm_order'$$);
SELECT streamflink.drop_pipeline('tm_order', drop_sink => true);
SELECT streamflink.drop_source('tm_src');
DROP TABLE tm_events;
DROP TABLE tm_fired;

--
-- Timers that firing registers, merged with stored ones of the same time.
-- With an allowed lateness of 2 minutes a window's firing registers its
-- clean-up 2 minutes after its end, at the end of a later window: the
-- watermark advances in steps, so the advance to 00:03:30 fires, at
-- 00:03:00, the stored timers of windows ending then (keys 0..63, written
-- by a savepoint), the pending ones (keys 64..95) and the pending clean-ups
-- that the firing at 00:01:00 registered (keys 0..95), all in one merge.
-- Late events within the lateness fire their window again.
--
SELECT streamflink.create_source('tm_late_src', brokers => regress_brokers(), topic => 'regress_timers_late',
       format => 'json', columns => 'k int, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '10 minutes',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('tm_late', source => 'tm_late_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       allowed_lateness => '2 minutes', checkpoint_interval => '5 minutes',
       sink_topic => 'regress_timers_late_out', sink_brokers => regress_brokers(),
       sink_options => '{transaction.timeout.ms=600000}');

-- Batch 1: keys 0..63 in minutes 0, 1 and 2.  Batch 2: keys 64..95 in
-- minutes 0 and 2, then the watermark to 00:01:30.  Batch 3: keys 0..9
-- late in minute 0, then the watermark to 00:03:30.  Batch 4: key 0 in
-- minute 0 past its lateness, then the watermark to 00:10:00.
CREATE TABLE tm_late_events AS
SELECT row_number() OVER (ORDER BY b, ts, k) AS i, b, k, ts
FROM (SELECT 1 AS b, k, timestamptz '2024-01-01 00:00:00+00' + m * interval '1 minute' + (k % 50) * interval '1 second' AS ts
      FROM generate_series(0, 63) k, generate_series(0, 2) m
      UNION ALL SELECT 2, k, timestamptz '2024-01-01 00:00:00+00' + m * interval '1 minute' + (k % 50) * interval '1 second'
      FROM generate_series(64, 95) k, (VALUES (0), (2)) v(m)
      UNION ALL SELECT 2, 1000, '2024-01-01 00:11:30+00'
      UNION ALL SELECT 3, k, timestamptz '2024-01-01 00:00:55+00' FROM generate_series(0, 9) k
      UNION ALL SELECT 3, 1000, '2024-01-01 00:13:30+00'
      UNION ALL SELECT 4, 0, '2024-01-01 00:00:56+00'
      UNION ALL SELECT 4, 1000, '2024-01-01 00:20:00+00') e;

SELECT streamflink.start('tm_late');
SELECT tm_produce('regress_timers_late', 'tm_late_events', 1);
SELECT wait_until($$SELECT events = 192 FROM streamflink.pipelines WHERE name = 'tm_late'$$);
SELECT streamflink.savepoint('tm_late', 'tm_late_stored');
SELECT tm_produce('regress_timers_late', 'tm_late_events', 2);
SELECT wait_until($$SELECT watermark = '2024-01-01 00:01:30+00' FROM streamflink.pipelines WHERE name = 'tm_late'$$);
SELECT tm_produce('regress_timers_late', 'tm_late_events', 3);
SELECT wait_until($$SELECT watermark = '2024-01-01 00:03:30+00' FROM streamflink.pipelines WHERE name = 'tm_late'$$);
SELECT tm_produce('regress_timers_late', 'tm_late_events', 4);
SELECT wait_until($$SELECT watermark = '2024-01-01 00:10:00+00' FROM streamflink.pipelines WHERE name = 'tm_late'$$);
SELECT streamflink.savepoint('tm_late', 'tm_late_fired');
-- the event past its lateness is late; the windows still open: key 1000's
SELECT events, late_events, open_count FROM streamflink.pipelines WHERE name = 'tm_late';

CREATE TABLE tm_late_fired AS
SELECT row_number() OVER (ORDER BY checkpoint, seq) AS pos,
       (value ->> 'k')::int AS k, (value ->> 'window_end')::timestamptz AS window_end,
       (value ->> 'n')::int AS n
FROM regress_committed('tm_late', 'regress_timers_late_out');

-- Every window fired once on time, keys 0..9's first one again late.
SELECT window_end, count(*) AS fired, count(DISTINCT k) AS keys, sum(n) AS events
FROM tm_late_fired GROUP BY 1 ORDER BY 1;
SELECT k, window_end, array_agg(n ORDER BY pos) AS n
FROM tm_late_fired WHERE k IN (0, 9, 10) AND window_end = '2024-01-01 00:01:00+00'
GROUP BY 1, 2 ORDER BY 1;
-- Time order, and the keys' numeric order at every time (the late firings
-- apart: they come in event order after the first firing of their time).
CREATE TABLE tm_late_runs AS
SELECT pos, k, window_end,
       row_number() OVER (PARTITION BY k, window_end ORDER BY pos) AS firing
FROM tm_late_fired;
SELECT count(*) AS out_of_time_order
FROM (SELECT window_end < lag(window_end) OVER (ORDER BY pos) AS back FROM tm_late_runs) x
WHERE back;
SELECT firing, count(*) FILTER (WHERE back) AS keys_out_of_value_order
FROM (SELECT firing, k < lag(k) OVER (PARTITION BY window_end, firing ORDER BY pos) AS back
      FROM tm_late_runs) x
GROUP BY 1 ORDER BY 1;
SELECT count(*) AS late_before_first
FROM tm_late_runs l JOIN tm_late_runs f USING (window_end)
WHERE l.firing = 2 AND f.firing = 1 AND l.pos < f.pos;

SELECT streamflink.stop('tm_late');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'tm_late'$$);
SELECT streamflink.drop_pipeline('tm_late', drop_sink => true);
SELECT streamflink.drop_source('tm_late_src');
DROP FUNCTION tm_produce(text, regclass, int);
DROP TABLE tm_late_events;
DROP TABLE tm_late_fired;
DROP TABLE tm_late_runs;
