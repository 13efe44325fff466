--
-- source_partitions: partitions added to the topic while a pipeline runs
-- are found (streamflink.partition_discovery_interval) and read from their
-- beginning; one added while it is stopped is read from its beginning at
-- the next start.  Topic regress_grow has 2 partitions and room for 4: the
-- test broker adds them on request ("create_partitions", as
-- kafka-topics.sh --alter --partitions does on a real cluster).
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
ALTER SYSTEM SET streamflink.partition_discovery_interval = '300ms';
SELECT pg_reload_conf();

-- Produce to a partition, retrying while the producer does not know it yet.
CREATE FUNCTION produce_when_known(part int, payloads text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	LOOP
		BEGIN
			PERFORM streamflink.produce(regress_brokers(), 'regress_grow', payloads, part);
			RETURN;
		EXCEPTION WHEN others THEN
			IF clock_timestamp() > deadline THEN
				RAISE;
			END IF;
			PERFORM pg_sleep(0.2);
		END;
	END LOOP;
END
$$;

SELECT streamflink.create_source('g_src', brokers => regress_brokers(), topic => 'regress_grow',
       columns => 'p int, i int');
SELECT streamflink.create_window_pipeline('g_win', source => 'g_src', key => 'p',
       "window" => 'tumble', size => '1 hour', aggregates => 'count(*) AS n',
       sink => 'g_out', checkpoint_interval => '200 milliseconds');
SELECT p, streamflink.produce(regress_brokers(), 'regress_grow', ARRAY['{"p": 0}', '{"p": 1}'], p)
FROM generate_series(0, 1) p;
SELECT streamflink.start('g_win');
SELECT wait_until($$SELECT events = 4 FROM streamflink.pipelines WHERE name = 'g_win'$$);

-- A third partition while it runs: its three messages are read, and it is
-- in the offsets view from the checkpoint that covers it.
SELECT streamflink.produce(regress_brokers(), '_mock_admin', ARRAY['create_partitions regress_grow 3'], 0);
SELECT produce_when_known(2, ARRAY['{"p": 2}', '{"p": 2}', '{"p": 2}']);
SELECT wait_until($$SELECT events = 7 FROM streamflink.pipelines WHERE name = 'g_win'$$);
SELECT wait_until($$SELECT count(*) = 3 AND bool_and(next_offset IS NOT NULL) FROM streamflink.offsets WHERE pipeline = 'g_win'$$);
SELECT partition, next_offset, start_offset, started_from FROM streamflink.offsets
WHERE pipeline = 'g_win' ORDER BY partition;

-- A fourth while it is stopped: read from its beginning at the start.
SELECT streamflink.stop('g_win');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'g_win'$$);
SELECT streamflink.produce(regress_brokers(), '_mock_admin', ARRAY['create_partitions regress_grow 4'], 0);
SELECT produce_when_known(3, ARRAY['{"p": 3}']);
SELECT streamflink.start('g_win');
SELECT wait_until($$SELECT events = 1 FROM streamflink.pipelines WHERE name = 'g_win'$$);
SELECT wait_until($$SELECT count(*) = 4 AND bool_and(next_offset IS NOT NULL) FROM streamflink.offsets WHERE pipeline = 'g_win'$$);
SELECT partition, next_offset, start_offset, regexp_replace(started_from, 'checkpoint \d+', 'checkpoint N') AS started_from
FROM streamflink.offsets WHERE pipeline = 'g_win' ORDER BY partition;

SELECT streamflink.stop('g_win');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'g_win'$$);
SELECT streamflink.drop_pipeline('g_win', true);
SELECT streamflink.drop_source('g_src');
ALTER SYSTEM RESET streamflink.partition_discovery_interval;
SELECT pg_reload_conf();
