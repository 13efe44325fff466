--
-- limits: a server whose postgresql.conf sets streamflink.max_workers = 2,
-- streamflink.checkpoint_history = 3 and max_worker_processes = 4 (see
-- test/run_tests.sh).  The
-- settings are honoured (not dropped as unknown placeholders); a pipeline
-- whose worker finds no free slot waits and says so, takes a slot once one
-- is free, and a start is refused while both are taken; checkpoint history
-- stays bounded.
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
FROM generate_series(1, 4) i;

-- Three pipelines started at once (no slot was taken yet, so each start is
-- allowed): two get the slots, the third waits for one, and says so.
BEGIN;
SELECT streamflink.start('p1');
SELECT streamflink.start('p2');
SELECT streamflink.start('p3');
COMMIT;
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.pipelines WHERE status = 'running'$$);
SELECT desired_state, status, error FROM streamflink.pipelines
WHERE desired_state = 'running' AND status <> 'running';
-- With both slots taken, a start is refused.
SELECT streamflink.start('p4');

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
SELECT wait_until($$SELECT count(DISTINCT pipeline) = 2 FROM streamflink.checkpoints WHERE id >= 8$$);
SELECT count(*) AS running_pipelines, bool_and(n <= 3) AS bounded, bool_and(span < 3) AS recent
FROM (SELECT pipeline, count(*) AS n, max(id) - min(id) AS span
	  FROM streamflink.checkpoints GROUP BY pipeline) c;
SELECT count(*) <= 6 AS offsets_bounded FROM streamflink.checkpoint_offset;
-- The last checkpoint and its offsets are always there.
SELECT count(*) AS with_offsets FROM streamflink.offsets WHERE next_offset > 0;

-- A stop frees a slot: the waiting pipeline takes it.
SELECT streamflink.stop(name) FROM streamflink.pipelines WHERE status = 'running' LIMIT 1;
SELECT wait_until($$SELECT count(*) FILTER (WHERE status = 'running') = 2 AND
	count(*) FILTER (WHERE status = 'waiting for a worker slot') = 0 FROM streamflink.pipelines$$);

SELECT streamflink.stop(name) FROM streamflink.pipelines WHERE desired_state = 'running';
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);

-- max_worker_processes = 4 here, one of them the logical replication
-- launcher's: a start that cannot get a background worker fails at once
-- with the reason (it used to leave the pipeline "starting" for ever).
SELECT wait_until($$SELECT count(*) = 0 FROM pg_stat_activity
					WHERE backend_type = 'streamflink pipeline'$$);
SELECT pg_sleep(0.5);
DO $$
DECLARE
	detail text;
	hint text;
BEGIN
	PERFORM streamflink.start('p' || i) FROM generate_series(1, 4) i;
	RAISE NOTICE 'all started';
EXCEPTION WHEN configuration_limit_exceeded THEN
	GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RAISE NOTICE 'refused: % %', detail, hint;
END
$$;
-- Rolled back: the workers registered before the failure leave.
SELECT desired_state, count(*) FROM streamflink.pipelines GROUP BY 1;
