--
-- source_start: where a pipeline starts reading (start_position), what it
-- records (streamflink.start_offset, shown in streamflink.offsets), and the
-- checkpoint rules after that.  Topic regress_start has 3 partitions.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- Ten messages per partition before any pipeline starts: offsets 0..9.
SELECT p, streamflink.produce(regress_brokers(), 'regress_start',
	(SELECT array_agg(format('{"p": %s, "i": %s}', p, i) ORDER BY i) FROM generate_series(0, 9) i), p)
FROM generate_series(0, 2) p;

-- Start positions a source or pipeline accepts, in canonical form
-- (timestamps in UTC, offsets as jsonb prints them), and the ones refused.
SELECT streamflink._start_position(s)
FROM unnest(ARRAY['earliest', 'LATEST', '  latest', '2024-01-01 01:00:00+01', '2024-01-01',
                  '{"0": 42, "1": 0}', '{"2": "latest", "0": "earliest"}']) s;
SELECT streamflink._start_position('sometime');
SELECT streamflink._start_position('infinity');
SELECT streamflink._start_position('[0, 42]');
SELECT streamflink._start_position('{"x": 1}');
SELECT streamflink._start_position('{"0": -1}');
SELECT streamflink._start_position('{"0": 1.5}');
SELECT streamflink._start_position('{}');
SELECT streamflink._start_position('{"0": ');
SELECT streamflink._start_position(NULL);
SELECT streamflink.create_source('s_bad', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int', start_position => 'yesterday-ish');

CREATE FUNCTION start_pipeline(name text, src text) RETURNS void LANGUAGE sql AS $$
	SELECT streamflink.create_window_pipeline(name, source => src, key => 'p',
	       "window" => 'tumble', size => '1 hour', aggregates => 'count(*) AS n, min(i) AS first_i',
	       sink => name || '_out', checkpoint_interval => '1 hour')
$$;

-- earliest (the default): every message.
SELECT streamflink.create_source('s_earliest', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int');
SELECT start_pipeline('p_earliest', 's_earliest');
SELECT streamflink.start('p_earliest');
SELECT wait_until($$SELECT events = 30 FROM streamflink.pipelines WHERE name = 'p_earliest'$$);
SELECT partition, next_offset, checkpoint_id, start_offset, started_from
FROM streamflink.offsets WHERE pipeline = 'p_earliest' ORDER BY partition;

-- Explicit offsets: partition 0 from offset 7, partition 2 from its end,
-- partition 1 (not given) from its beginning: 3 + 10 + 0 messages.
SELECT streamflink.create_source('s_offsets', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int', start_position => '{"0": 7, "2": "latest"}');
SELECT name, start_position FROM streamflink.sources WHERE name = 's_offsets';
SELECT start_pipeline('p_offsets', 's_offsets');
SELECT streamflink.start('p_offsets');
SELECT wait_until($$SELECT events = 13 FROM streamflink.pipelines WHERE name = 'p_offsets'$$);
SELECT partition, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'p_offsets' ORDER BY partition;

-- latest: nothing produced before the start; what comes after, all of it.
SELECT streamflink.create_source('s_latest', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int', start_position => 'latest');
SELECT start_pipeline('p_latest', 's_latest');
SELECT streamflink.start('p_latest');
-- The offsets it resolved are recorded before it reads: the end of each
-- partition, 10.
SELECT wait_until($$SELECT count(*) = 3 FROM streamflink.offsets WHERE pipeline = 'p_latest'$$);
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'p_latest'$$);
SELECT partition, next_offset, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'p_latest' ORDER BY partition;
-- Stopped before any event, so before its first checkpoint: nothing
-- checkpointed.  Two messages go to partition 1 while it is stopped; a
-- 'latest' resolved again at the next start would skip them, the
-- recorded offsets do not.
SELECT streamflink.stop('p_latest');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'p_latest'$$);
SELECT count(*) AS checkpoints FROM streamflink.checkpoints WHERE pipeline = 'p_latest';
CREATE TEMP TABLE latest_resolved AS
SELECT partition, start_offset, started FROM streamflink.offsets WHERE pipeline = 'p_latest';
SELECT streamflink.produce(regress_brokers(), 'regress_start',
	ARRAY['{"p": 1, "i": 10}', '{"p": 1, "i": 11}'], 1);
SELECT streamflink.start('p_latest');
SELECT wait_until($$SELECT events = 2 FROM streamflink.pipelines WHERE name = 'p_latest'$$);
SELECT count(*) AS resolved_again
FROM streamflink.offsets o JOIN latest_resolved r USING (partition)
WHERE o.pipeline = 'p_latest' AND (o.start_offset, o.started) IS DISTINCT FROM (r.start_offset, r.started);
-- One more on each partition, read as they come.
SELECT p, streamflink.produce(regress_brokers(), 'regress_start', ARRAY[format('{"p": %s, "i": 12}', p)], p)
FROM generate_series(0, 2) p;
SELECT wait_until($$SELECT events = 5 FROM streamflink.pipelines WHERE name = 'p_latest'$$);
SELECT streamflink.stop('p_latest');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'p_latest'$$);
-- The stop checkpointed: the positions go on from the checkpoint now.
SELECT partition, next_offset, checkpoint_id IS NOT NULL AS checkpointed, start_offset, started_from
FROM streamflink.offsets WHERE pipeline = 'p_latest' ORDER BY partition;

-- A timestamp: the first message at or after it in each partition
-- (rd_kafka_offsets_for_times).  Four messages per partition of
-- regress_time, a pause, the timestamp, a pause, three more: it starts
-- between them.  A timestamp after the last message starts at the end.
SELECT p, streamflink.produce(regress_brokers(), 'regress_time',
	ARRAY['{"p": 0, "i": 0}', '{"p": 0, "i": 1}', '{"p": 0, "i": 2}', '{"p": 0, "i": 3}'], p)
FROM generate_series(0, 1) p;
SELECT pg_sleep(1.1);
CREATE TEMP TABLE between_batches AS SELECT clock_timestamp() AS t;
SELECT pg_sleep(1.1);
SELECT p, streamflink.produce(regress_brokers(), 'regress_time',
	ARRAY['{"p": 0, "i": 4}', '{"p": 0, "i": 5}', '{"p": 0, "i": 6}'], p)
FROM generate_series(0, 1) p;
SELECT streamflink.create_source('s_time', brokers => regress_brokers(), topic => 'regress_time',
       columns => 'p int, i int', start_position => (SELECT t::text FROM between_batches));
SELECT start_position::timestamptz = t AS same_instant, start_position LIKE '%+00' AS in_utc
FROM streamflink.sources, between_batches WHERE name = 's_time';
SELECT start_pipeline('p_time', 's_time');
SELECT streamflink.start('p_time');
SELECT wait_until($$SELECT events = 6 FROM streamflink.pipelines WHERE name = 'p_time'$$);
SELECT partition, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'p_time' ORDER BY partition;
SELECT streamflink.create_source('s_future', brokers => regress_brokers(), topic => 'regress_time',
       columns => 'p int, i int', start_position => (now() + interval '1 day')::text);
SELECT start_pipeline('p_future', 's_future');
SELECT streamflink.start('p_future');
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.offsets WHERE pipeline = 'p_future'$$);
SELECT partition, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'p_future' ORDER BY partition;
SELECT streamflink.stop('p_time');
SELECT streamflink.stop('p_future');

-- A pipeline's own start position overrides its source's, before its
-- first checkpoint; while it runs, or after it, it is refused.
SELECT start_pipeline('p_override', 's_earliest');
SELECT streamflink.set_start_position('p_override', '{"1": 11}');
SELECT streamflink.set_start_position('p_override', 'never');
SELECT start_position FROM streamflink.pipeline WHERE name = 'p_override';
SELECT streamflink.start('p_override');
SELECT wait_until($$SELECT events = 11 + 2 + 11 FROM streamflink.pipelines WHERE name = 'p_override'$$);
SELECT streamflink.set_start_position('p_override', 'latest');
SELECT streamflink.stop('p_override');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'p_override'$$);
SELECT streamflink.set_start_position('p_override', 'latest');
SELECT partition, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'p_override' ORDER BY partition;

-- An offset the partition does not hold: the pipeline says so.
SELECT streamflink.create_source('s_beyond', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int', start_position => '{"0": 1000}');
SELECT start_pipeline('p_beyond', 's_beyond');
SELECT streamflink.start('p_beyond');
SELECT wait_until($$SELECT error IS NOT NULL FROM streamflink.pipelines WHERE name = 'p_beyond'$$);
SELECT regexp_replace(error, '\(\d+ to \d+\)', '(low to high)') AS error
FROM streamflink.pipelines WHERE name = 'p_beyond';
SELECT streamflink.stop('p_beyond');

-- A tenant: its own sources' start positions and metadata columns, its
-- own pipeline's override; start_offset is the worker's to write.
CREATE ROLE src_tenant;
GRANT streamflink_user TO src_tenant;
GRANT CREATE ON SCHEMA public TO src_tenant;
SET ROLE src_tenant;
SELECT streamflink.create_source('s_tenant', brokers => regress_brokers(), topic => 'regress_start',
       columns => 'p int, i int, part int METADATA FROM ''partition''', start_position => 'latest');
SELECT start_pipeline('p_tenant', 's_tenant');
SELECT streamflink.set_start_position('p_tenant', '{"0": 1}');
SELECT name, start_position FROM streamflink.pipeline WHERE name = 'p_tenant';
INSERT INTO streamflink.start_offset (pipeline_id, topic, partition, start_offset, spec, how)
SELECT id, 'regress_start', 0, 0, 'earliest', 'by hand' FROM streamflink.pipeline WHERE name = 'p_tenant';
SELECT streamflink.set_start_position('p_earliest', 'latest');
SELECT streamflink.drop_pipeline('p_tenant', true);
SELECT streamflink.drop_source('s_tenant');
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM src_tenant;
DROP ROLE src_tenant;

SELECT streamflink.stop('p_earliest');
SELECT streamflink.stop('p_offsets');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name ~ '^[ps]_'$$);
SELECT streamflink.drop_pipeline(name, true) FROM streamflink.pipeline WHERE name ~ '^[ps]_' ORDER BY name;
SELECT streamflink.drop_source(name) FROM streamflink.source WHERE name ~ '^[ps]_' ORDER BY name;
