--
-- limits: a server whose postgresql.conf sets streamflink.max_workers = 2
-- and streamflink.checkpoint_history = 3 (see test/run_tests.sh).  The
-- settings are honoured (not dropped as unknown placeholders); a third
-- pipeline is refused while two run, and one that is waiting for a slot
-- says so; checkpoint history stays bounded.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE EXTENSION streamflink;
SHOW streamflink.max_workers;
SHOW streamflink.checkpoint_history;

CREATE FUNCTION wait_until(cond text, timeout interval DEFAULT '60 seconds')
RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	ok bool;
BEGIN
	LOOP
		EXECUTE cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'timed out waiting for: %', cond;
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;

SELECT streamflink.create_source('s', brokers => current_setting('regress.brokers'),
       topic => 'regress_limits', columns => 'a int, ts timestamptz', event_time => 'ts',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('p' || i, source => 's', key => 'a',
       "window" => 'tumble', size => '1 second', aggregates => 'count(*) AS n',
       sink => 'p' || i || '_out', checkpoint_interval => '100 milliseconds')
FROM generate_series(1, 3) i;

-- Two pipelines take both slots; a third start is refused.
SELECT streamflink.start('p1');
SELECT streamflink.start('p2');
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.pipelines WHERE status = 'running'$$);
SELECT streamflink.start('p3');
SELECT name, desired_state, status FROM streamflink.pipelines ORDER BY name;

-- Checkpoint history: events keep coming, checkpoints every 100 ms; at
-- most 3 are kept per pipeline, with their offsets.
DO $$
BEGIN
	FOR i IN 1..20 LOOP
		PERFORM streamflink.produce(current_setting('regress.brokers'), 'regress_limits',
			ARRAY[json_build_object('a', i, 'ts', timestamptz '2024-01-01' + i * interval '1 second')::text], 0);
		PERFORM pg_sleep(0.15);
	END LOOP;
END
$$;
SELECT wait_until($$SELECT max(id) >= 8 FROM streamflink.checkpoints WHERE pipeline = 'p1'$$);
SELECT pipeline, count(*) <= 3 AS bounded, max(id) - min(id) < 3 AS recent
FROM streamflink.checkpoints GROUP BY pipeline ORDER BY pipeline;
SELECT count(*) <= 3 AS offsets_bounded
FROM streamflink.checkpoint_offset o JOIN streamflink.pipeline p ON p.id = o.pipeline_id
WHERE p.name = 'p1';
-- The last checkpoint and its offsets are always there.
SELECT pipeline, next_offset > 0 AS has_offset FROM streamflink.offsets ORDER BY pipeline;

-- A pipeline marked running with no slot for it (here: the catalog says
-- running, as after a server restart with more running pipelines than
-- slots) is shown waiting, with the reason.
UPDATE streamflink.pipeline SET state = 'running' WHERE name = 'p3';
SELECT name, status, error FROM streamflink.pipelines WHERE name = 'p3';
UPDATE streamflink.pipeline SET state = 'stopped' WHERE name = 'p3';

SELECT streamflink.stop('p1');
SELECT streamflink.stop('p2');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
-- A slot is free again: p3 starts.
SELECT streamflink.start('p3');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'p3'$$);
SELECT streamflink.stop('p3');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
