--
-- source_metadata: columns from the Kafka message rather than its value
-- (key, the key's fields, headers, one header, partition, offset, broker
-- timestamp), declared with METADATA as in Flink SQL, used as pipeline
-- keys, in pattern conditions, in aggregates and as event time; every kind
-- of bad metadata a dead letter.  Messages with keys and headers are
-- produced with kcat (a librdkafka client, as any producer).
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- kcat -P: one message per line, "key|value" (no "|": no key), the same
-- headers on each.
CREATE TEMP TABLE kcat_lines (l text);
CREATE FUNCTION kcat(topic text, part int, lines text[], headers text DEFAULT '')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	TRUNCATE kcat_lines;
	INSERT INTO kcat_lines SELECT unnest(lines);
	EXECUTE format('COPY kcat_lines TO PROGRAM %L',
				   format('kcat -P -b %s -t %s -p %s -K ''|'' %s', regress_brokers(), topic, part, headers));
END
$$;

-- The column list: METADATA clauses are split off before the row type is
-- made, and kept as the source's metadata map.
SELECT * FROM streamflink._metadata_columns(
	'v int, "Key" text METADATA FROM ''key'', part int METADATA FROM ''partition'' VIRTUAL, '
	'"offset" bigint METADATA, n numeric(10, 2), hdr text METADATA FROM ''header:it''''s''');
SELECT * FROM streamflink._metadata_columns('v int, ts timestamptz');
SELECT * FROM streamflink._metadata_columns('v int, k text METADATA FROM');
SELECT * FROM streamflink._metadata_columns('v int, k text METADATA FROM key');
SELECT * FROM streamflink._metadata_columns('v int, k text METADATA FROM ''key'' NOT NULL');
SELECT * FROM streamflink._metadata_columns('v int, k text METADATA FROM ''value''');
SELECT * FROM streamflink._metadata_columns('v int, k text METADATA');

-- Definition errors.
SELECT streamflink.create_source('m_bad', brokers => regress_brokers(), topic => 'regress_meta',
       columns => 'v int, id int METADATA FROM ''key.id''');
SELECT streamflink.create_source('m_bad', brokers => regress_brokers(), topic => 'regress_meta',
       columns => 'v int, id int METADATA FROM ''key.id''', key_format => 'xml');
SELECT streamflink.create_source('m_bad', brokers => regress_brokers(), topic => 'regress_meta',
       format => 'text', columns => 'a text, b text, k text METADATA FROM ''key''');
SELECT count(*) FROM pg_type WHERE typname = 'source_m_bad';

-- The source: a JSON value {"v": ..., "ts": ...}; the key a JSON object
-- {"id": ...}, whole as text and bytes, and its field id; the headers, and
-- header "trace"; partition, offset, broker timestamp.
CREATE DOMAIN nonblank AS text NOT NULL CHECK (VALUE <> '');
SELECT streamflink.create_source('m_src', brokers => regress_brokers(), topic => 'regress_meta',
       format => 'json', key_format => 'json', event_time => 'ts',
       columns => 'v int, ts timestamptz,
                   k text METADATA FROM ''key'', raw_key bytea METADATA FROM ''key'',
                   id int METADATA FROM ''key.id'', hdrs jsonb METADATA FROM ''headers'',
                   trace text METADATA FROM ''header:trace'', prio int METADATA FROM ''header:prio'',
                   part int METADATA FROM ''partition'', off bigint METADATA FROM ''offset'',
                   kts timestamptz METADATA FROM ''timestamp''');
SELECT name, format, key_format, columns, event_time FROM streamflink.sources WHERE name = 'm_src';
SELECT metadata FROM streamflink.source WHERE name = 'm_src';

-- decode() with a message's metadata, and without (metadata columns NULL).
SELECT * FROM streamflink.decode('m_src', '{"v": 1, "ts": "2024-01-01 00:00:00+00"}', '{"id": 7}',
	'{"trace": "open", "prio": "3", "empty": null}', 1, 42, '2024-05-05 10:00:00.123+00');
SELECT * FROM streamflink.decode('m_src', '{"v": 1, "ts": "2024-01-01 00:00:00+00"}');
SELECT * FROM streamflink.decode('m_src', '{"v": 1}', NULL::text);
-- Bad metadata, each the error its dead letter carries.
SELECT d.error FROM (VALUES
	('{"id": "seven"}', '{}'::jsonb),
	('not json', '{}'),
	('[7]', '{}'),
	('{"id": 7}', '{"prio": "high"}'),
	('{"id": 7}', '{"prio": ""}')) t(key, headers),
	streamflink.decode('m_src', '{"v": 1, "ts": "2024-01-01 00:00:00+00"}', t.key, t.headers) d;
SELECT d.error FROM streamflink.decode('m_src', convert_to('{"v": 1, "ts": "2024-01-01 00:00:00+00"}', 'UTF8'),
	'\xff'::bytea) d;
-- A domain checks a key as any value: NOT NULL refuses a message without one.
SELECT streamflink.create_source('m_dom', brokers => regress_brokers(), topic => 'regress_meta',
       format => 'text', columns => 'payload text, k nonblank METADATA FROM ''key''');
SELECT * FROM streamflink.decode('m_dom', 'x', 'k1');
SELECT * FROM streamflink.decode('m_dom', 'x', NULL::text);
SELECT * FROM streamflink.decode('m_dom', 'x', '');

-- A window pipeline keyed by the key's field and a header, counting by
-- partition and summing offsets; a pattern pipeline whose conditions read
-- a header and the partition.
SELECT streamflink.create_window_pipeline('m_win', source => 'm_src', key => 'id, trace',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(v) AS total, min(part) AS min_part, max(off) AS max_off, count(k) AS with_key',
       sink => 'm_win_out', checkpoint_interval => '200 milliseconds');
SELECT streamflink.create_pattern_pipeline('m_pat', source => 'm_src', key => 'id',
       pattern => 'a b', define => $$ a AS trace = 'open', b AS trace = 'close' AND part = 1 $$,
       measures => 'a.off AS open_offset, b.off AS close_offset, b.prio AS prio',
       sink => 'm_pat_out', checkpoint_interval => '200 milliseconds');
SELECT streamflink.start('m_win');
SELECT streamflink.start('m_pat');

-- Partition 0: ids 1 and 2 "open" at 00:00:10 and 00:00:20; partition 1:
-- id 1 "close" at 00:00:30, id 2 "close" at 00:00:40 with priority 5.
SELECT kcat('regress_meta', 0, ARRAY[
	'{"id": 1}|{"v": 1, "ts": "2024-01-01 00:00:10+00"}',
	'{"id": 2}|{"v": 2, "ts": "2024-01-01 00:00:20+00"}'], '-H trace=open');
SELECT kcat('regress_meta', 1, ARRAY[
	'{"id": 1}|{"v": 10, "ts": "2024-01-01 00:00:30+00"}'], '-H trace=close');
SELECT kcat('regress_meta', 1, ARRAY[
	'{"id": 2}|{"v": 20, "ts": "2024-01-01 00:00:40+00"}'], '-H trace=close -H prio=5');
-- Bad metadata: a key that is not JSON, a key whose id is no integer, a
-- header prio that is no integer (partition 0, offsets 2, 3, 4); a message
-- without a key (offset 5) has a NULL id, which is a key like any other.
SELECT kcat('regress_meta', 0, ARRAY[
	'id-3|{"v": 3, "ts": "2024-01-01 00:00:50+00"}',
	'{"id": "x"}|{"v": 3, "ts": "2024-01-01 00:00:50+00"}']);
SELECT kcat('regress_meta', 0, ARRAY[
	'{"id": 3}|{"v": 3, "ts": "2024-01-01 00:00:50+00"}'], '-H prio=high');
SELECT kcat('regress_meta', 0, ARRAY[
	'{"v": 4, "ts": "2024-01-01 00:00:55+00"}'], '-H trace=open');
-- Past the windows on both partitions: they fire.
SELECT kcat('regress_meta', p, ARRAY['{"id": 9}|{"v": 0, "ts": "2024-01-01 00:05:00+00"}'])
FROM generate_series(0, 1) p;
SELECT wait_until($$SELECT count(*) = 5 FROM m_win_out$$);
SELECT wait_until($$SELECT count(*) = 2 FROM m_pat_out$$);
SELECT id, trace, window_start, n, total, min_part, max_off, with_key FROM m_win_out ORDER BY id, trace;
SELECT id, match_start, match_end, open_offset, close_offset, prio FROM m_pat_out ORDER BY id;
SELECT pipeline, partition, "offset", convert_from(payload, 'UTF8') AS payload, error
FROM streamflink.dead_letters WHERE pipeline LIKE 'm\_%' ORDER BY pipeline, partition, "offset";

-- The broker's timestamp as event time: the watermark is the time the
-- last messages were produced (now, give or take).
SELECT streamflink.create_source('m_kts', brokers => regress_brokers(), topic => 'regress_meta',
       format => 'json', columns => 'v int, kts timestamptz METADATA FROM ''timestamp''',
       event_time => 'kts');
SELECT streamflink.create_window_pipeline('m_kts_win', source => 'm_kts', key => '',
       "window" => 'tumble', size => '1 hour', aggregates => 'count(*) AS n',
       sink => 'm_kts_out');
SELECT streamflink.start('m_kts_win');
SELECT wait_until($$SELECT events = 10 FROM streamflink.pipelines WHERE name = 'm_kts_win'$$);
SELECT watermark BETWEEN now() - interval '10 minutes' AND now() + interval '1 minute' AS broker_time
FROM streamflink.pipelines WHERE name = 'm_kts_win';

SELECT streamflink.stop(name) FROM streamflink.pipeline WHERE name LIKE 'm\_%' ORDER BY name;
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name LIKE 'm\_%'$$);
SELECT streamflink.drop_pipeline(name, true) FROM streamflink.pipeline WHERE name LIKE 'm\_%' ORDER BY name;
SELECT streamflink.drop_source(name) FROM streamflink.source WHERE name LIKE 'm\_%' ORDER BY name;
DROP DOMAIN nonblank;
