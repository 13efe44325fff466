--
-- run_csv: a csv source read by two pipelines at once (tumbling and session
-- windows, keyed by sensor), with SQL NULL semantics in the aggregates and a
-- timestamp-without-time-zone event time (taken as UTC).  Each sink must
-- equal what SQL computes over the same readings.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_window_pipeline('sensor_sessions', source => 'readings', key => 'sensor',
       "window" => 'session', gap => '3 minutes',
       aggregates => 'count(*) AS n, count(reading) AS n_readings, sum(reading) AS total, max(reading) AS hi',
       sink => 'sensor_sessions_out');

-- Three sensors; gaps of 10 to 100 seconds (so sessions split wherever a gap
-- is a minute or more); every seventh reading is NULL (an empty field).
CREATE TABLE readings_in AS
SELECT i, 1 + i % 3 AS sensor,
       CASE WHEN i % 7 = 3 THEN NULL ELSE round(((i * 37) % 1000) / 10.0 - 20, 2) END AS reading,
       timestamp '2024-03-01 12:00:00' + (sum(10 + (i * 13) % 91) OVER (ORDER BY i)) * interval '1 second' AS at
FROM generate_series(1, 90) i;
SELECT count(*) AS readings, count(DISTINCT sensor) AS sensors, min(at), max(at) FROM readings_in;

SELECT streamflink.produce(regress_brokers(), 'regress_csv',
       array_agg(format('%s,%s,%s', sensor, reading, to_char(at, 'YYYY-MM-DD HH24:MI:SS')) ORDER BY i), 0)
FROM readings_in;
-- Malformed lines: too many fields, a value numeric(6,2) refuses, no time.
SELECT streamflink.produce(regress_brokers(), 'regress_csv',
       ARRAY['1,2.5,2024-03-01 12:30:00,extra', '2,12345678.9,2024-03-01 12:30:00', '3,1,'], 0);
-- A reading a day later closes every window and session.
SELECT streamflink.produce(regress_brokers(), 'regress_csv', ARRAY['1,0,2024-03-02 12:00:00'], 0);

SELECT streamflink.start('per_sensor');
SELECT streamflink.start('sensor_sessions');
SELECT wait_until($$SELECT bool_and(status = 'running' AND watermark = '2024-03-02 12:00:00+00'
                                    AND last_checkpoint IS NOT NULL)
                    FROM streamflink.pipelines WHERE name IN ('per_sensor', 'sensor_sessions')$$);
-- The last checkpoint holds every offset: all results are committed.
SELECT wait_until($$SELECT count(*) = 2 AND bool_and(next_offset = 94) FROM streamflink.offsets
                    WHERE pipeline IN ('per_sensor', 'sensor_sessions')$$);

-- Tumbling minutes: SQL's GROUP BY over date_bin.
CREATE VIEW expected_minutes AS
SELECT sensor, date_bin('1 minute', at, 'epoch') AT TIME ZONE 'UTC' AS window_start,
       (date_bin('1 minute', at, 'epoch') + interval '1 minute') AT TIME ZONE 'UTC' AS window_end,
       count(*) AS n, sum(reading) AS total, min(reading) AS lo, avg(reading) AS mean
FROM readings_in GROUP BY 1, 2, 3;
SELECT (SELECT count(*) FROM expected_minutes) AS expected,
       (SELECT count(*) FROM sensor_minutes) AS in_sink,
       (SELECT count(*) FROM (SELECT * FROM expected_minutes EXCEPT SELECT * FROM sensor_minutes) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM sensor_minutes EXCEPT SELECT * FROM expected_minutes) x) AS wrong;
-- A window of NULL readings only: count(*) counts them, sum() is NULL.
SELECT n, total, lo, mean FROM sensor_minutes WHERE total IS NULL ORDER BY sensor, window_start;

-- Sessions: a new session wherever a sensor is silent more than 3 minutes
-- (gaps and islands); a session ends 3 minutes after its last reading.  As
-- in Flink, an event exactly one gap after the last still joins: windows
-- [t, t + gap) that touch are merged.
CREATE VIEW expected_sessions AS
WITH marked AS (
	SELECT *, CASE WHEN at - lag(at) OVER w <= interval '3 minutes' THEN 0 ELSE 1 END AS new_session
	FROM readings_in WINDOW w AS (PARTITION BY sensor ORDER BY at)
), numbered AS (
	SELECT *, sum(new_session) OVER (PARTITION BY sensor ORDER BY at) AS session
	FROM marked
)
SELECT sensor, min(at) AT TIME ZONE 'UTC' AS window_start,
       (max(at) + interval '3 minutes') AT TIME ZONE 'UTC' AS window_end,
       count(*) AS n, count(reading) AS n_readings, sum(reading) AS total, max(reading) AS hi
FROM numbered GROUP BY sensor, session;
SELECT (SELECT count(*) FROM expected_sessions) AS expected,
       (SELECT count(*) FROM sensor_sessions_out) AS in_sink,
       (SELECT count(*) FROM (SELECT * FROM expected_sessions EXCEPT SELECT * FROM sensor_sessions_out) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM sensor_sessions_out EXCEPT SELECT * FROM expected_sessions) x) AS wrong;
SELECT * FROM sensor_sessions_out WHERE n > 1 ORDER BY sensor, window_start LIMIT 4;

-- Both pipelines read the same topic and saw the same three bad lines.
SELECT pipeline, "offset", convert_from(payload, 'UTF8') AS payload, error
FROM streamflink.dead_letters ORDER BY pipeline, "offset";

SELECT streamflink.stop('per_sensor');
SELECT streamflink.stop('sensor_sessions');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
