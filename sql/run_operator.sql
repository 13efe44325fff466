--
-- run_operator: streamflink.run_operator, a pipeline's operator over given
-- events with explicit watermarks, returning every row it emitted, writing
-- nothing.  The window cases of run.sql and pipeline.sql without Kafka:
-- hopping windows against SQL's answer with allowed lateness, late events
-- and dead letters; tumbling windows step by step; sessions merged by a
-- late event (a retraction); the errors; who may call it.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
-- Reasons show intervals as the worker does (run.out).
SET intervalstyle = postgres;

-- Never started here: the broker is not used.
SELECT streamflink.create_source('ro_rides', brokers => '127.0.0.1:1', topic => 'ro_rides',
       format => 'json', columns => 'geo text, wait_s float8, kind text, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds');

-- A sink table as the emitted rows leave it: per output and key, the last
-- upsert that no retraction follows; inserted rows all stay.
CREATE FUNCTION ro_final(pipeline text, events text[], watermarks timestamptz[] DEFAULT NULL,
						 final_watermark timestamptz DEFAULT 'infinity',
						 OUT output text, OUT data jsonb) RETURNS SETOF record
LANGUAGE sql AS $$
	SELECT output, data FROM (
		SELECT DISTINCT ON (output, coalesce(key, to_jsonb(ord))) output, op, data
		FROM streamflink.run_operator(pipeline, events, watermarks, final_watermark)
		WHERE output IN ('result', 'timed_out')
		ORDER BY output, coalesce(key, to_jsonb(ord)), ord DESC) d
	WHERE op <> 'retract'
$$;

--
-- run.sql's pipeline and events: 400 rides over 20 minutes, up to 3 seconds
-- out of order; 4 payloads that cannot be decoded; an hour later the
-- watermark moves to 00:59:55 (there, the minimum over two partitions less
-- the out-of-orderness); then one event more than the allowed lateness
-- behind it, and two within it, which fire their windows again.
--
SELECT streamflink.create_window_pipeline('ro_surge', source => 'ro_rides', key => 'geo',
       "window" => 'hop', size => '5 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => 'ro_surge_out', allowed_lateness => '1 minute');

CREATE TABLE ro_ride_events AS
SELECT i, 'g' || (i % 5) AS geo, (i % 17) * 0.25::float8 AS wait_s,
       CASE WHEN i % 3 = 0 THEN 'pool' ELSE 'solo' END AS kind,
       timestamptz '2024-01-01 00:00:00+00' + (i * 3 - (i * 7) % 4) * interval '1 second' AS ts
FROM generate_series(0, 399) i;
INSERT INTO ro_ride_events VALUES
	(1000, 'g0', 1, 'solo', '2024-01-01 01:00:00+00'),
	(1001, 'g0', 1, 'solo', '2024-01-01 01:00:00+00'),
	(1002, 'g3', 2, 'solo', '2024-01-01 00:58:50+00'),
	(1003, 'g3', 3, 'pool', '2024-01-01 00:58:52+00');

-- events[i], and the watermark after it (NULL: unchanged).
CREATE TABLE ro_surge_input AS
SELECT array_agg(payload ORDER BY n) AS events, array_agg(wm ORDER BY n) AS watermarks
FROM (SELECT i AS n, json_build_object('geo', geo, 'wait_s', wait_s, 'kind', kind, 'ts', ts)::text AS payload,
			 CASE i WHEN 1001 THEN timestamptz '2024-01-01 00:59:55+00' END AS wm
	  FROM ro_ride_events
	  UNION ALL
	  VALUES (500, 'not json', NULL::timestamptz),
			 (501, '{"geo": "g1", "wait_s": "abc", "ts": "2024-01-01 00:01:00+00"}', NULL),
			 (502, '{"geo": "g1", "wait_s": 1}', NULL),
			 (503, '[1, 2]', NULL),
			 (1001.5, '{"geo": "g3", "wait_s": 2, "kind": "solo", "ts": "2024-01-01 00:10:00+00"}', NULL)) e(n, payload, wm);

CREATE TABLE ro_surge_rows AS
SELECT r.* FROM ro_surge_input, streamflink.run_operator('ro_surge', events, watermarks, NULL) r;

SELECT output, op, count(*) FROM ro_surge_rows GROUP BY 1, 2 ORDER BY 1, 2;
SELECT event, watermark, reason FROM ro_surge_rows WHERE output = 'dead_letter' ORDER BY ord;
SELECT event, watermark, data->>'ts' AS event_time, reason FROM ro_surge_rows WHERE output = 'late_event';

-- run.sql's answer: each event in the windows that contain it, aligned to
-- the epoch; fired windows are those the watermark passed.
CREATE VIEW ro_expected AS
SELECT geo, ws AS window_start, ws + interval '5 minutes' AS window_end,
       count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait
FROM ro_ride_events,
     generate_series(date_bin('30 seconds', ts, 'epoch') - interval '4 minutes 30 seconds',
                     date_bin('30 seconds', ts, 'epoch'), '30 seconds') ws
GROUP BY geo, ws
HAVING ws + interval '5 minutes' <= '2024-01-01 00:59:55+00';

CREATE VIEW ro_surge_final AS
SELECT (jsonb_populate_record(NULL::ro_surge_out, data)).*
FROM ro_surge_input, ro_final('ro_surge', events, watermarks, NULL);
SELECT (SELECT count(*) FROM ro_expected) AS expected_windows,
       (SELECT count(*) FROM ro_surge_final) AS emitted_windows,
       (SELECT count(*) FROM (SELECT * FROM ro_expected EXCEPT SELECT * FROM ro_surge_final) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM ro_surge_final EXCEPT SELECT * FROM ro_expected) x) AS wrong;

-- The window of g3 at 00:54:30: made by the first event within the
-- lateness, and fired at once (its end, 00:59:30, is behind the
-- watermark); fired again (upserted) by the second.
SELECT event, watermark, op, key, data->'rides' AS rides, data->'max_wait' AS max_wait
FROM ro_surge_rows WHERE key = '{"geo": "g3", "window_start": "2024-01-01T00:54:30+00:00"}'
ORDER BY ord;

-- Nothing was written anywhere.
SELECT count(*) AS sink_rows FROM ro_surge_out;
SELECT count(*) AS dead_letters FROM streamflink.dead_letters WHERE pipeline = 'ro_surge';
SELECT count(*) AS late_events FROM streamflink.late_events WHERE pipeline = 'ro_surge';

-- The watermark's steps do not change what fires when no event is late:
-- the source's own rule (largest event time less 5 seconds) after every
-- event, and one step at the end, give the same rows.
CREATE TABLE ro_surge_steps AS
SELECT array_agg(payload ORDER BY i) AS events, array_agg(wm ORDER BY i) AS watermarks
FROM (SELECT i, json_build_object('geo', geo, 'wait_s', wait_s, 'kind', kind, 'ts', ts)::text AS payload,
			 max(ts) OVER (ORDER BY i) - interval '5 seconds' AS wm
	  FROM ro_ride_events WHERE i < 1000) e;
SELECT (SELECT count(*) FROM ro_surge_steps, ro_final('ro_surge', events, watermarks)) AS windows,
	   (SELECT count(*) FROM (SELECT * FROM ro_surge_steps, ro_final('ro_surge', events, watermarks)
							  EXCEPT SELECT * FROM ro_surge_steps, ro_final('ro_surge', events)) x) AS differ;

--
-- Tumbling windows (pipeline.sql's per_sensor), step by step: a window
-- fires when the watermark reaches its end, once.
--
SELECT streamflink.create_source('ro_readings', brokers => '127.0.0.1:1', topic => 'ro_readings',
       format => 'csv', columns => 'sensor text, reading numeric, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('ro_per_sensor', source => 'ro_readings', key => 'sensor',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(reading) AS total, min(reading) AS lo, avg(reading) AS mean',
       sink => 'ro_sensor_minutes');
SELECT ord, event, watermark, output, op, data, reason
FROM streamflink.run_operator('ro_per_sensor', ARRAY[
		's1,1.5,2024-01-01 00:00:10+00',
		's2,2,2024-01-01 00:00:20+00',
		's1,2.5,2024-01-01 00:00:59.999999+00',
		's1,4,2024-01-01 00:01:00+00',
		's1,x,2024-01-01 00:01:01+00',
		's2,7,2024-01-01 00:00:30+00',
		's2,8,2024-01-01 00:02:30+00'],
	ARRAY[NULL, '2024-01-01 00:00:20+00', NULL, '2024-01-01 00:01:00+00', NULL, NULL,
		  '2024-01-01 00:02:00+00']::timestamptz[]);
-- Without the final watermark, the last window stays open.
SELECT count(*) FROM streamflink.run_operator('ro_per_sensor', ARRAY['s1,1,2024-01-01 00:00:10+00'],
	final_watermark => NULL);
SELECT watermark, data->>'window_end' AS window_end
FROM streamflink.run_operator('ro_per_sensor', ARRAY['s1,1,2024-01-01 00:00:10+00'],
	final_watermark => '2024-01-01 00:01:00+00');

--
-- Sessions (pipeline.sql's visits): two sessions of a key fire; a late
-- event within the allowed lateness bridges them: the merged session keeps
-- the first one's start (upserted), the second one's row is retracted.
--
SELECT streamflink.create_window_pipeline('ro_visits', source => 'ro_rides', key => 'geo, kind',
       "window" => 'session', gap => '10 minutes', allowed_lateness => '1 hour',
       aggregates => 'count(*) AS n, sum(wait_s) AS waited', sink => 'ro_sessions');
CREATE FUNCTION ro_ride(geo text, kind text, ts text, wait_s float8 DEFAULT 1) RETURNS text
LANGUAGE sql AS $$
	SELECT json_build_object('geo', geo, 'wait_s', wait_s, 'kind', kind, 'ts', ts)::text
$$;
SELECT ord, event, watermark, output, op, key, data
FROM streamflink.run_operator('ro_visits', ARRAY[
		ro_ride('g1', 'solo', '2024-01-01 00:00:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:05:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:20:00+00'),
		ro_ride('g1', 'pool', '2024-01-01 00:21:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:12:00+00', 5)],
	ARRAY[NULL, NULL, NULL, '2024-01-01 00:40:00+00', NULL]::timestamptz[]);
-- As the sink is left: one row per session.
SELECT data->>'kind' AS kind, data->>'window_start' AS window_start,
	   data->>'window_end' AS window_end, data->'n' AS n, data->'waited' AS waited
FROM ro_final('ro_visits', ARRAY[
		ro_ride('g1', 'solo', '2024-01-01 00:00:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:05:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:20:00+00'),
		ro_ride('g1', 'pool', '2024-01-01 00:21:00+00'),
		ro_ride('g1', 'solo', '2024-01-01 00:12:00+00', 5)],
	ARRAY[NULL, NULL, NULL, '2024-01-01 00:40:00+00', NULL]::timestamptz[])
ORDER BY 1, 2;

--
-- Errors.
--
SELECT * FROM streamflink.run_operator('nosuch', ARRAY['x']);
SELECT * FROM streamflink.run_operator(NULL, ARRAY['x']);
SELECT * FROM streamflink.run_operator('ro_per_sensor', ARRAY['s1,1,2024-01-01 00:00:10+00'],
	ARRAY['2024-01-01', '2024-01-02']::timestamptz[]);
SELECT * FROM streamflink.run_operator('ro_per_sensor',
	ARRAY['s1,1,2024-01-01 00:00:10+00', 's1,1,2024-01-01 00:00:20+00'],
	ARRAY['2024-01-02', '2024-01-01']::timestamptz[]);
SELECT * FROM streamflink.run_operator('ro_per_sensor', ARRAY['s1,1,2024-01-01 00:00:10+00'],
	ARRAY['2024-01-02']::timestamptz[], '2024-01-01');
SELECT streamflink.create_source('ro_kafka_time', brokers => '127.0.0.1:1', topic => 'ro',
       format => 'text', columns => 'line text');
SELECT streamflink.create_window_pipeline('ro_kafka_time', source => 'ro_kafka_time', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'ro_kafka_time_out');
SELECT * FROM streamflink.run_operator('ro_kafka_time', ARRAY['x']);

--
-- A running pipeline: its worker and run_operator share nothing (here the
-- worker waits for its unreachable broker).
--
SELECT streamflink.start('ro_per_sensor');
SELECT count(*) FROM streamflink.run_operator('ro_per_sensor', ARRAY['s1,1,2024-01-01 00:00:10+00']);
SELECT streamflink.stop('ro_per_sensor');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ro_per_sensor'$$);

--
-- Who may call it: the pipeline's owners and superusers.  A tenant runs
-- its own pipeline; another tenant may not; a superuser may, and the
-- pipeline's code still runs as its owner (who() names the role).
--
CREATE ROLE regress_ro_a;
CREATE ROLE regress_ro_b;
GRANT streamflink_user TO regress_ro_a, regress_ro_b;
CREATE SCHEMA ro_a AUTHORIZATION regress_ro_a;
SET ROLE regress_ro_a;
CREATE FUNCTION ro_a.who(x numeric) RETURNS text LANGUAGE sql AS $$ SELECT current_user::text || ':' || x $$;
SELECT streamflink.create_source('ro_a_src', brokers => '127.0.0.1:1', topic => 'ro_a',
       format => 'csv', columns => 'x numeric, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('ro_a_pipe', source => 'ro_a_src', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'max(ro_a.who(x)) AS who, count(*) AS n',
       sink => 'ro_a.ro_a_out');
SELECT output, op, data->'who' AS who, data->'n' AS n
FROM streamflink.run_operator('ro_a_pipe', ARRAY['1,2024-01-01 00:00:10+00', '2,2024-01-01 00:00:20+00']);
SELECT count(*) FROM ro_a.ro_a_out;
SET ROLE regress_ro_b;
SELECT * FROM streamflink.run_operator('ro_a_pipe', ARRAY['1,2024-01-01 00:00:10+00']);
SELECT * FROM streamflink.run_operator('ro_surge', ARRAY['1,2024-01-01 00:00:10+00']);
RESET ROLE;
SELECT has_function_privilege('public', 'streamflink.run_operator(text, text[], timestamptz[], timestamptz)', 'EXECUTE');
SELECT output, op, data->'who' AS who
FROM streamflink.run_operator('ro_a_pipe', ARRAY['1,2024-01-01 00:00:10+00']);
SELECT streamflink.drop_pipeline('ro_a_pipe', drop_sink => true);
SELECT streamflink.drop_source('ro_a_src');
DROP SCHEMA ro_a CASCADE;
DROP ROLE regress_ro_a;
DROP ROLE regress_ro_b;

DROP VIEW ro_surge_final, ro_expected;
DROP TABLE ro_surge_rows, ro_surge_input, ro_surge_steps, ro_ride_events;
DROP FUNCTION ro_ride(text, text, text, float8);
SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM streamflink.pipelines
WHERE name LIKE 'ro\_%' ORDER BY name;
SELECT streamflink.drop_source(name) FROM streamflink.sources WHERE name LIKE 'ro\_%' ORDER BY name;
