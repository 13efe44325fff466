--
-- run: a hop-window pipeline end to end against the test broker.  Known
-- events are produced, the pipeline runs in its background worker, and the
-- sink must equal the answer SQL computes over the same events; malformed
-- events go to the dead-letter table, too-late ones to the late-event table.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- The events, also kept in a table for the independent answer: 400 rides
-- over 20 minutes, up to 3 seconds out of order, on two partitions.
CREATE TABLE ride_events AS
SELECT i, i % 2 AS part, 'g' || (i % 5) AS geo, (i % 17) * 0.25::float8 AS wait_s,
       CASE WHEN i % 3 = 0 THEN 'pool' ELSE 'solo' END AS kind,
       timestamptz '2024-01-01 00:00:00+00' + (i * 3 - (i * 7) % 4) * interval '1 second' AS ts
FROM generate_series(0, 399) i;

CREATE FUNCTION ride_json(r ride_events) RETURNS text
LANGUAGE sql AS $$
	SELECT json_build_object('geo', r.geo, 'wait_s', r.wait_s, 'kind', r.kind, 'ts', r.ts)::text
$$;

SELECT part, streamflink.produce(regress_brokers(), 'regress_rides', payloads, part)
FROM (SELECT part, array_agg(ride_json(e) ORDER BY i) AS payloads
      FROM ride_events e GROUP BY part) b ORDER BY part;

-- Four that cannot be decoded.
SELECT streamflink.produce(regress_brokers(), 'regress_rides', ARRAY[
	'not json',
	'{"geo": "g1", "wait_s": "abc", "ts": "2024-01-01 00:01:00+00"}',
	'{"geo": "g1", "wait_s": 1}',
	'[1, 2]'], 0);

SELECT streamflink.start('surge');
SELECT streamflink.start('surge');	-- already running: a notice
SELECT streamflink.drop_pipeline('surge');	-- refused while running
SELECT wait_until($$SELECT events = 404 FROM streamflink.pipelines WHERE name = 'surge'$$);
SELECT status, error, events, dead_letters, late_events FROM streamflink.pipelines WHERE name = 'surge';

-- An event an hour later on each partition: the watermark (minimum over the
-- partitions, less 5 seconds of out-of-orderness) passes every window.
SELECT streamflink.produce(regress_brokers(), 'regress_rides',
	ARRAY['{"geo": "g0", "wait_s": 1, "kind": "solo", "ts": "2024-01-01 01:00:00+00"}'], p)
FROM generate_series(0, 1) p;
SELECT wait_until($$SELECT watermark = '2024-01-01 00:59:55+00' FROM streamflink.pipelines WHERE name = 'surge'$$);

-- Now one more than the allowed lateness (1 minute) behind, and one within:
-- the first is a late event; the second falls in windows ending at 00:59:00
-- and 00:59:30, already fired (the watermark is 00:59:55) but kept for the
-- allowed lateness: they fire again with it (the sink row is replaced), and
-- in windows ending after 00:59:55, still open.  A third, two seconds later,
-- fires the same windows again, likely in the same batch of sink rows.
SELECT streamflink.produce(regress_brokers(), 'regress_rides', ARRAY[
	'{"geo": "g3", "wait_s": 2, "kind": "solo", "ts": "2024-01-01 00:10:00+00"}',
	'{"geo": "g3", "wait_s": 2, "kind": "solo", "ts": "2024-01-01 00:58:50+00"}',
	'{"geo": "g3", "wait_s": 3, "kind": "pool", "ts": "2024-01-01 00:58:52+00"}'], 0);
INSERT INTO ride_events VALUES
	(1000, 0, 'g0', 1, 'solo', '2024-01-01 01:00:00+00'),
	(1001, 1, 'g0', 1, 'solo', '2024-01-01 01:00:00+00'),
	(1002, 0, 'g3', 2, 'solo', '2024-01-01 00:58:50+00'),
	(1003, 0, 'g3', 3, 'pool', '2024-01-01 00:58:52+00');
SELECT wait_until($$SELECT events = 409 AND last_checkpoint IS NOT NULL
                           AND (SELECT max(events) FROM streamflink.checkpoints WHERE pipeline = 'surge') > 0
                           AND (SELECT count(*) FROM streamflink.late_events) = 1
                           AND (SELECT count(*) FROM surge_out WHERE geo = 'g3' AND window_start = '2024-01-01 00:54:30+00') = 1
                    FROM streamflink.pipelines WHERE name = 'surge'$$);

-- The answer SQL gives: each event in the size/slide windows that contain
-- it, aligned to the epoch; fired windows are those the watermark passed.
CREATE VIEW expected AS
SELECT geo, ws AS window_start, ws + interval '5 minutes' AS window_end,
       count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait
FROM ride_events,
     generate_series(date_bin('30 seconds', ts, 'epoch') - interval '4 minutes 30 seconds',
                     date_bin('30 seconds', ts, 'epoch'), '30 seconds') ws
GROUP BY geo, ws
HAVING ws + interval '5 minutes' <= '2024-01-01 00:59:55+00';

SELECT (SELECT count(*) FROM expected) AS expected_windows,
       (SELECT count(*) FROM surge_out) AS sink_windows,
       (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM surge_out) x) AS missing,
       (SELECT count(*) FROM (SELECT * FROM surge_out EXCEPT SELECT * FROM expected) x) AS wrong;

SELECT pipeline, partition, "offset", convert_from(payload, 'UTF8') AS payload, error
FROM streamflink.dead_letters ORDER BY partition, "offset";
SELECT pipeline, partition, event_time, watermark, reason FROM streamflink.late_events;

-- The same messages through streamflink.run_operator (no Kafka; the
-- pipeline may run meanwhile), the watermark moved where the worker's was,
-- 00:59:55, before the late ones: the sink's windows as its rows leave
-- them (the last upsert per key and window start), the same dead letters
-- and late event.  (Values are shown with the session's settings: those
-- the worker has from the server's configuration here.)
SET intervalstyle = postgres;
CREATE TEMP TABLE surge_run AS
SELECT r.* FROM (SELECT array_agg(payload ORDER BY n) AS events, array_agg(wm ORDER BY n) AS watermarks
				 FROM (SELECT i AS n, ride_json(e) AS payload,
							  CASE i WHEN 1001 THEN timestamptz '2024-01-01 00:59:55+00' END AS wm
					   FROM ride_events e
					   UNION ALL
					   VALUES (500, 'not json', NULL::timestamptz),
							  (501, '{"geo": "g1", "wait_s": "abc", "ts": "2024-01-01 00:01:00+00"}', NULL),
							  (502, '{"geo": "g1", "wait_s": 1}', NULL),
							  (503, '[1, 2]', NULL),
							  (1001.5, '{"geo": "g3", "wait_s": 2, "kind": "solo", "ts": "2024-01-01 00:10:00+00"}', NULL)
					  ) m(n, payload, wm)) i,
	 streamflink.run_operator('surge', i.events, i.watermarks, final_watermark => NULL) r;
CREATE TEMP VIEW surge_run_sink AS
SELECT (jsonb_populate_record(NULL::surge_out, data)).*
FROM (SELECT DISTINCT ON (key) op, data FROM surge_run WHERE output = 'result' ORDER BY key, ord DESC) d
WHERE op <> 'retract';
SELECT (SELECT count(*) FROM (SELECT * FROM surge_out EXCEPT ALL SELECT * FROM surge_run_sink) x) AS missing,
	   (SELECT count(*) FROM (SELECT * FROM surge_run_sink EXCEPT ALL SELECT * FROM surge_out) x) AS extra,
	   (SELECT array_agg(reason ORDER BY ord) FROM surge_run WHERE output = 'dead_letter') =
	   (SELECT array_agg(error ORDER BY "offset") FROM streamflink.dead_letters WHERE pipeline = 'surge') AS same_dead_letters,
	   (SELECT array_agg(reason) FROM surge_run WHERE output = 'late_event') =
	   (SELECT array_agg(reason) FROM streamflink.late_events WHERE pipeline = 'surge') AS same_late_event;
RESET intervalstyle;
DROP VIEW surge_run_sink;
DROP TABLE surge_run;

-- A secondary directory a crashed backend left behind (no such pid): the
-- next live() of the pipeline removes it.
SELECT format('%s/streamflink/%s/%s/live-2147483000', current_setting('data_directory'),
			  (SELECT oid FROM pg_database WHERE datname = current_database()),
			  (SELECT id FROM streamflink.pipeline WHERE name = 'surge')) AS stale_dir \gset
\set cmd 'mkdir -p ' :'stale_dir'
COPY (SELECT 1) TO PROGRAM :'cmd';
SELECT (pg_stat_file(:'stale_dir', true)).isdir IS NOT NULL AS stale_dir_exists;

-- Live aggregates: the windows still open, read from the worker's RocksDB.
SELECT geo, window_start, window_end, rides, avg_wait, max_wait
FROM streamflink.live('surge', NULL::surge_out) ORDER BY geo, window_start LIMIT 5;
SELECT count(*) FROM streamflink.live('surge');
SELECT (pg_stat_file(:'stale_dir', true)).isdir IS NOT NULL AS stale_dir_exists;
-- The status view counts them too.
SELECT wait_until($$SELECT open_count = 18 FROM streamflink.pipelines WHERE name = 'surge'$$);

-- Offsets of the last checkpoint: next message to read per partition, the
-- consumer's position as librdkafka reports it (past transaction markers on
-- a real broker; here, with none, the last message's offset + 1: the number
-- of messages in the partition).  Lag, the high watermark less the
-- position, is then 0.
SELECT pipeline, topic, partition, next_offset FROM streamflink.offsets ORDER BY partition;
SELECT wait_until($$SELECT lag = 0 FROM streamflink.pipelines WHERE name = 'surge'$$);

-- A stop ends with a checkpoint; a restart resumes there: nothing doubled.
SELECT streamflink.stop('surge');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'surge'$$);
SELECT streamflink.start('surge');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'surge'$$);
SELECT streamflink.produce(regress_brokers(), 'regress_rides',
	ARRAY['{"geo": "g0", "wait_s": 1, "kind": "solo", "ts": "2024-01-01 01:10:00+00"}'], p)
FROM generate_series(0, 1) p;
SELECT wait_until($$SELECT watermark = '2024-01-01 01:09:55+00' FROM streamflink.pipelines WHERE name = 'surge'$$);
-- g0's two 01:00 events fire 9 windows starting 00:56:00 to 01:00:00, g3's
-- 00:58:50 event 6 starting 00:56:00 to 00:58:30.
SELECT wait_until($$SELECT count(*) = 15 FROM surge_out WHERE window_start >= '2024-01-01 00:56:00+00'$$);
SELECT count(*) AS duplicate_windows FROM (SELECT geo, window_start FROM surge_out GROUP BY 1, 2 HAVING count(*) > 1) d;
SELECT count(*) FROM streamflink.dead_letters;
SELECT streamflink.stop('surge');

-- An unreachable broker is reported in the status view, not a crash loop.
SELECT streamflink.create_source('nowhere', brokers => '127.0.0.1:1', topic => 'x',
       columns => 'a int');
SELECT streamflink.create_window_pipeline('lost', source => 'nowhere', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'lost_out');
SELECT streamflink.start('lost');
SELECT wait_until($$SELECT status = 'waiting for broker' FROM streamflink.pipelines WHERE name = 'lost'$$);
SELECT status, error <> '' AS has_error FROM streamflink.pipelines WHERE name = 'lost';
SELECT streamflink.stop('lost');

-- So is a topic the broker does not have.
SELECT streamflink.create_source('missing', brokers => regress_brokers(), topic => 'regress_missing',
       columns => 'a int');
SELECT streamflink.create_window_pipeline('orphan', source => 'missing', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'orphan_out');
SELECT streamflink.start('orphan');
SELECT wait_until($$SELECT status = 'waiting for broker' FROM streamflink.pipelines WHERE name = 'orphan'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'orphan';
SELECT streamflink.stop('orphan');

-- A bad librdkafka setting: the worker reports it and retries slowly.
SELECT streamflink.create_source('badopt', brokers => regress_brokers(), topic => 'regress_rides',
       columns => 'a int', options => '{no.such.setting=1}');
SELECT streamflink.create_window_pipeline('badopt', source => 'badopt', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'badopt_out');
SELECT streamflink.start('badopt');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'badopt'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'badopt';
SELECT streamflink.stop('badopt');

SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM streamflink.pipelines
WHERE name IN ('surge', 'lost', 'orphan', 'badopt') ORDER BY name;
SELECT count(*) FROM streamflink.checkpoint;
