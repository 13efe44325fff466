--
-- kafka_sink: pipelines writing their results to a Kafka topic, exactly
-- once, in Kafka transactions tied to checkpoints (src/kafka_sink.c).  A
-- window pipeline's messages must be SQL's answer; a pattern pipeline's the
-- rows the same pattern writes into a table.  Messages are read back from
-- the test broker (streamflink._read_topic); it shows aborted transactions
-- too, so only messages of the transactions the sink recorded as committed
-- (streamflink.kafka_sink_txn) are counted, by their headers.  Then the
-- refusals, also for a role that is not a superuser.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_source('ks_rides', brokers => regress_brokers(), topic => 'regress_ksink',
       format => 'json', columns => 'geo text, kind text, wait_s float8, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '0 seconds',
       options => '{fetch.wait.max.ms=10}');

-- A window pipeline to Kafka: `sink` left out names its outbox table.
SELECT streamflink.create_window_pipeline('ks_surge', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS rides, sum(wait_s) AS waited', sink => NULL,
       checkpoint_interval => '200 milliseconds',
       sink_topic => 'regress_ksink_out', sink_brokers => regress_brokers(),
       sink_options => '{linger.ms=1,compression.codec=zstd}');
-- The same with parallelism 2: a producer, transactions and outbox rows per task.
SELECT streamflink.create_window_pipeline('ks_psurge', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS rides, sum(wait_s) AS waited', sink => NULL,
       checkpoint_interval => '200 milliseconds', parallelism => 2,
       sink_topic => 'regress_ksink_pout', sink_brokers => regress_brokers());
-- A pattern pipeline to Kafka, and the same pattern into a table.
SELECT streamflink.create_pattern_pipeline('ks_match', 'ks_rides', 'geo', 'a b',
       $$a AS kind = 'solo', b AS kind = 'pool'$$, 'ks_match_box',
       measures => 'b.wait_s - a.wait_s AS more', checkpoint_interval => '200 milliseconds',
       sink_topic => 'regress_ksink_match', sink_brokers => regress_brokers());
SELECT streamflink.create_pattern_pipeline('ks_match_table', 'ks_rides', 'geo', 'a b',
       $$a AS kind = 'solo', b AS kind = 'pool'$$, 'ks_match_rows',
       measures => 'b.wait_s - a.wait_s AS more', checkpoint_interval => '200 milliseconds');

\d ks_surge_outbox
SELECT name, sink, sink_topic, sink_format, sink_options
FROM streamflink.pipeline WHERE name LIKE 'ks%' ORDER BY name;

-- 300 rides over 15 minutes, in order, on two partitions; then one an hour
-- later on each partition closes every window.
CREATE TABLE ks_events AS
SELECT i, i % 2 AS part, 'g' || (i % 4) AS geo,
       CASE WHEN i % 3 = 0 THEN 'pool' ELSE 'solo' END AS kind,
       (i % 7) * 0.5::float8 AS wait_s,
       timestamptz '2024-01-01 00:00:00+00' + i * 3 * interval '1 second' AS ts
FROM generate_series(0, 299) i;
SELECT part, streamflink.produce(regress_brokers(), 'regress_ksink', payloads, part)
FROM (SELECT part, array_agg(json_build_object('geo', geo, 'kind', kind, 'wait_s', wait_s, 'ts', ts)::text
                             ORDER BY i) AS payloads
      FROM ks_events GROUP BY part) b ORDER BY part;
SELECT streamflink.start('ks_surge'), streamflink.start('ks_match'), streamflink.start('ks_match_table'),
       streamflink.start('ks_psurge');
SELECT streamflink.produce(regress_brokers(), 'regress_ksink',
	ARRAY['{"geo": "g9", "kind": "solo", "wait_s": 0, "ts": "2024-01-01 01:00:00+00"}'], p)
FROM generate_series(0, 1) p;

CREATE VIEW ks_expected AS
SELECT geo, date_bin('1 minute', ts, 'epoch') AS window_start,
       date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
       count(*) AS rides, sum(wait_s) AS waited
FROM ks_events GROUP BY 1, 2;


SELECT wait_until($$SELECT count(*) = (SELECT count(*) FROM ks_expected)
                    FROM regress_committed('ks_surge', 'regress_ksink_out')$$);
SELECT wait_until($$SELECT count(*) = (SELECT count(*) FROM ks_expected)
                    FROM regress_committed('ks_psurge', 'regress_ksink_pout')$$);
SELECT wait_until($$SELECT (SELECT count(*) FROM regress_committed('ks_match', 'regress_ksink_match'))
                           = (SELECT count(*) FROM ks_match_rows) AND count(*) > 0
                    FROM ks_match_rows$$);

-- The window pipeline: SQL's answer, each window once.
SELECT (SELECT count(*) FROM ks_expected) AS expected,
       (SELECT count(*) FROM regress_committed('ks_surge', 'regress_ksink_out')) AS messages,
       (SELECT count(DISTINCT (checkpoint, seq)) FROM regress_committed('ks_surge', 'regress_ksink_out')) AS distinct_messages;
SELECT count(*) AS missing_or_wrong FROM (
	SELECT to_jsonb(e) FROM ks_expected e
	EXCEPT SELECT value FROM regress_committed('ks_surge', 'regress_ksink_out')) d;
SELECT count(*) AS extra FROM (
	SELECT value FROM regress_committed('ks_surge', 'regress_ksink_out')
	EXCEPT SELECT to_jsonb(e) FROM ks_expected e) d;
-- Keys: the row's identity (key columns and window_start) as JSON.
SELECT key::jsonb = jsonb_build_object('geo', value -> 'geo', 'window_start', value -> 'window_start') AS key_ok,
       count(*)
FROM regress_committed('ks_surge', 'regress_ksink_out') GROUP BY 1;
SELECT DISTINCT ARRAY(SELECT jsonb_object_keys(headers) ORDER BY 1) AS headers,
       headers ->> 'worker' AS worker, headers ->> 'output' AS output
FROM regress_committed('ks_surge', 'regress_ksink_out');
-- Each committed transaction's marker is in <topic>.markers.
SELECT count(*) AS committed_without_marker
FROM streamflink.kafka_sink_txn t JOIN streamflink.kafka_sink_run r USING (pipeline_id, worker)
WHERE t.pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'ks_surge')
  AND NOT EXISTS (SELECT 1 FROM streamflink._read_topic(regress_brokers(), 'regress_ksink_out.markers') m
                  WHERE m.key = r.transactional_id AND (m.value::jsonb ->> 'checkpoint')::bigint = t.checkpoint_id
                    AND (m.value::jsonb ->> 'run')::bigint = t.run);
-- Committed, its outbox emptied.
SELECT count(*) FILTER (WHERE committed IS NULL) AS unconfirmed, sum(messages) > 0 AS counted
FROM streamflink.kafka_sink_txn t JOIN streamflink.pipeline p ON p.id = t.pipeline_id
WHERE p.name = 'ks_surge';
SELECT count(*) AS outbox_rows FROM ks_surge_outbox;

-- Parallelism 2: SQL's answer too, each window once, written by both tasks,
-- each with its own transactional.id, markers and (emptied) outbox rows.
SELECT (SELECT count(*) FROM ks_expected) AS expected,
       (SELECT count(*) FROM regress_committed('ks_psurge', 'regress_ksink_pout')) AS messages,
       (SELECT count(DISTINCT (headers ->> 'worker', checkpoint, seq))
        FROM regress_committed('ks_psurge', 'regress_ksink_pout')) AS distinct_messages,
       (SELECT count(DISTINCT key) FROM regress_committed('ks_psurge', 'regress_ksink_pout')) AS distinct_keys;
SELECT count(*) AS missing_or_wrong FROM (
	SELECT to_jsonb(e) FROM ks_expected e
	EXCEPT SELECT value FROM regress_committed('ks_psurge', 'regress_ksink_pout')) d;
SELECT count(*) AS extra FROM (
	SELECT value FROM regress_committed('ks_psurge', 'regress_ksink_pout')
	EXCEPT SELECT to_jsonb(e) FROM ks_expected e) d;
SELECT headers ->> 'worker' AS worker,
       count(DISTINCT headers ->> 'transactional_id') AS transactional_ids,
       bool_and(headers ->> 'transactional_id' LIKE '%-' || (headers ->> 'worker')) AS id_names_task
FROM regress_committed('ks_psurge', 'regress_ksink_pout') GROUP BY 1 ORDER BY 1;
SELECT t.worker, count(*) FILTER (WHERE t.committed IS NULL) AS unconfirmed,
       count(*) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM streamflink._read_topic(regress_brokers(), 'regress_ksink_pout.markers') m
           WHERE m.key = r.transactional_id AND (m.value::jsonb ->> 'checkpoint')::bigint = t.checkpoint_id
             AND (m.value::jsonb ->> 'run')::bigint = t.run
             AND (m.value::jsonb ->> 'worker')::int = t.worker)) AS without_marker
FROM streamflink.kafka_sink_txn t JOIN streamflink.kafka_sink_run r USING (pipeline_id, worker)
WHERE t.pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'ks_psurge')
GROUP BY 1 ORDER BY 1;
SELECT count(*) AS outbox_rows FROM ks_psurge_outbox;

-- The pattern pipeline: the rows the table sink has; key: the one key column, as text.
SELECT count(*) AS missing FROM (
	SELECT to_jsonb(r) FROM ks_match_rows r
	EXCEPT SELECT value FROM regress_committed('ks_match', 'regress_ksink_match')) d;
SELECT count(*) AS extra FROM (
	SELECT value FROM regress_committed('ks_match', 'regress_ksink_match')
	EXCEPT SELECT to_jsonb(r) FROM ks_match_rows r) d;
SELECT bool_and(key = value ->> 'geo') AS key_is_geo FROM regress_committed('ks_match', 'regress_ksink_match');

-- A restart settles nothing (every transaction was recorded) and goes on.
SELECT streamflink.stop('ks_surge');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ks_surge'$$);
SELECT streamflink.start('ks_surge');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'ks_surge'$$);
SELECT max(run) AS runs FROM streamflink.kafka_sink_run r JOIN streamflink.pipeline p ON p.id = r.pipeline_id
WHERE p.name = 'ks_surge';
SELECT streamflink.stop('ks_surge'), streamflink.stop('ks_match'), streamflink.stop('ks_match_table'),
       streamflink.stop('ks_psurge');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name LIKE 'ks%'$$);

-- Brokers that cannot be reached: a clear error in the status view, and
-- retries (the worker restarts), never a silent drop.
SELECT streamflink.create_window_pipeline('ks_down', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'regress_ksink_down', sink_brokers => '127.0.0.1:1');
SELECT streamflink.start('ks_down');
SELECT wait_until($$SELECT status = 'failed'
                           AND error LIKE 'Kafka sink of pipeline "ks_down": could not initialise the transactional producer%'
                    FROM streamflink.pipelines WHERE name = 'ks_down'$$);
SELECT streamflink.stop('ks_down');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ks_down'$$);
SELECT streamflink.drop_pipeline('ks_down', drop_sink => true);

-- Refusals.
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out');
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out/../x', sink_brokers => regress_brokers());
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out', sink_brokers => regress_brokers(), sink_format => 'avro');
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out', sink_brokers => regress_brokers(),
       sink_options => '{transactional.id=mine}');
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out', sink_brokers => regress_brokers(), sink_options => '{acks=1}');
-- The transaction must outlive a checkpoint interval (twice, to be safe).
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       checkpoint_interval => '10 seconds',
       sink_topic => 'out', sink_brokers => regress_brokers(),
       sink_options => '{transaction.timeout.ms=15000}');
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       checkpoint_interval => '1 minute',
       sink_topic => 'out', sink_brokers => regress_brokers());
SELECT streamflink.create_window_pipeline('ks_bad', source => 'ks_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'ks_surge_outbox',
       sink_topic => 'out', sink_brokers => regress_brokers());
SELECT count(*) AS created FROM streamflink.pipeline WHERE name = 'ks_bad';

-- A tenant: producer settings that run nothing on the server are allowed,
-- the rest of the source allow-list applies.
CREATE ROLE regress_ks_tenant LOGIN;
GRANT streamflink_user TO regress_ks_tenant;
GRANT CREATE ON SCHEMA public TO regress_ks_tenant;
SET SESSION AUTHORIZATION regress_ks_tenant;
SELECT streamflink.create_source('ks_tenant_rides', brokers => regress_brokers(), topic => 'regress_ksink',
       format => 'json', columns => 'geo text, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('ks_tenant', source => 'ks_tenant_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'ks_tenant_box',
       sink_topic => 'regress_ksink_tenant', sink_brokers => regress_brokers(),
       sink_options => '{linger.ms=20,transaction.timeout.ms=30000,security.protocol=plaintext}');
SELECT streamflink.create_window_pipeline('ks_tenant2', source => 'ks_tenant_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out', sink_brokers => regress_brokers(),
       sink_options => '{ssl.ca.location=/etc/ssl/certs/ca.pem}');
SELECT streamflink.create_window_pipeline('ks_tenant2', source => 'ks_tenant_rides', key => 'geo',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => NULL,
       sink_topic => 'out', sink_brokers => regress_brokers(),
       sink_options => '{queue.buffering.max.kbytes=2097151}');
-- A row inserted by hand is checked by the catalog's trigger.
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
                                  aggregates, sink, allowed_lateness, checkpoint_interval,
                                  sink_topic, sink_brokers, sink_format, sink_options)
SELECT 'ks_tenant3', id, 'window', '{geo}', 'tumble', '1 minute', 'count(*) AS n', 'ks_tenant_box',
       '0', '1 second', 'out', regress_brokers(), 'json', '{plugin.library.paths=/tmp/x}'
FROM streamflink.source WHERE name = 'ks_tenant_rides';
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
                                  aggregates, sink, allowed_lateness, checkpoint_interval,
                                  sink_topic, sink_brokers, sink_format)
SELECT 'ks_tenant3', id, 'window', '{geo}', 'tumble', '1 minute', 'count(*) AS n', 'ks_tenant_box',
       '0', '1 second', 'out', NULL, 'json'
FROM streamflink.source WHERE name = 'ks_tenant_rides';
-- The sink's records are the worker's; reading topics from the server is for superusers.
SELECT count(*) FROM streamflink.kafka_sink_txn;
INSERT INTO streamflink.kafka_sink_txn VALUES (1, 0, 1, 1, 1, 0, now(), false);
DELETE FROM streamflink.kafka_sink_run;
UPDATE streamflink.kafka_sink_txn SET committed = now();
SELECT count(*) FROM streamflink._read_topic(regress_brokers(), 'regress_ksink_out');
SELECT streamflink.drop_pipeline('ks_tenant', drop_sink => true);
SELECT streamflink.drop_source('ks_tenant_rides');
RESET SESSION AUTHORIZATION;
REVOKE CREATE ON SCHEMA public FROM regress_ks_tenant;
DROP ROLE regress_ks_tenant;

SELECT streamflink.drop_pipeline('ks_surge', drop_sink => true);
SELECT streamflink.drop_pipeline('ks_match', drop_sink => true);
SELECT streamflink.drop_pipeline('ks_match_table', drop_sink => true);
SELECT streamflink.drop_pipeline('ks_psurge', drop_sink => true);
SELECT count(*) AS txn_rows_left FROM streamflink.kafka_sink_txn;
SELECT streamflink.drop_source('ks_rides');
DROP VIEW ks_expected;
DROP TABLE ks_events;
