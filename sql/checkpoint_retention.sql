--
-- checkpoint_retention: a checkpoint's time split into its sync part (state
-- flush and snapshot) and its async part (from there to the decision), per
-- pipeline and per task; streamflink.checkpoints_retained keeps that many
-- completed snapshots on disk (inspected as a superuser with pg_ls_dir);
-- new_state_bytes counts the files a snapshot does not share with the one
-- before.
--
\set SHOW_CONTEXT never
SHOW streamflink.checkpoints_retained;

-- The snapshot directories chk-<id> of a pipeline (of a task: task-<n>).
CREATE FUNCTION regress_snapshots(pname text, task int DEFAULT 0)
RETURNS bigint[]
LANGUAGE sql AS $$
	SELECT coalesce(array_agg(substr(d, 5)::bigint ORDER BY substr(d, 5)::bigint), '{}')
	FROM pg_ls_dir(format('streamflink/%s/%s%s',
						  (SELECT oid FROM pg_database WHERE datname = current_database()),
						  (SELECT p.id FROM streamflink.pipeline p WHERE p.name = pname),
						  CASE WHEN task > 0 THEN '/task-' || task ELSE '' END)) d
	WHERE d ~ '^chk-[0-9]+$'
$$;

-- A checkpoint is taken when its epoch had events: n epochs of one event
-- each, every one waited for until its checkpoint completed.
CREATE FUNCTION regress_epochs(pname text, n int) RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	last bigint;
BEGIN
	FOR i IN 1..n LOOP
		SELECT coalesce(p.last_checkpoint, 0) INTO last FROM streamflink.pipelines p WHERE p.name = pname;
		PERFORM streamflink.produce(regress_brokers(), 'regress_retain',
			ARRAY[format('{"k": %s, "ts": "2024-01-01 00:00:30+00"}', i)], 0);
		PERFORM wait_until(format('SELECT last_checkpoint > %s FROM streamflink.pipelines WHERE name = %L',
								  last, pname));
	END LOOP;
	RETURN true;
END
$$;

SELECT streamflink.create_source('ret', brokers => regress_brokers(), topic => 'regress_retain',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('ret', source => 'ret', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n',
       sink => 'ret_out', checkpoint_interval => '100 ms');
SELECT streamflink.produce(regress_brokers(), 'regress_retain',
	(SELECT array_agg(format('{"k": %s, "ts": "2024-01-01 00:00:%s+00"}', i % 50, i % 60))
	 FROM generate_series(1, 200) i), 0);

-- Three snapshots kept (the setting is read when a checkpoint completes).
ALTER SYSTEM SET streamflink.checkpoints_retained = 3;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW streamflink.checkpoints_retained;
SELECT streamflink.start('ret');
SELECT wait_until($$SELECT events = 200 AND last_checkpoint IS NOT NULL
                    FROM streamflink.pipelines WHERE name = 'ret'$$);
SELECT regress_epochs('ret', 5);
SELECT streamflink.stop('ret');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ret'$$);
SELECT cardinality(regress_snapshots('ret')) AS snapshots,
	   (regress_snapshots('ret'))[3] = max(id) AS newest_is_last,
	   (regress_snapshots('ret'))[1] = max(id) - 2 AS oldest_is_last_but_two
FROM streamflink.checkpoints WHERE pipeline = 'ret';

-- Every checkpoint has both parts; together no longer than the checkpoint.
-- The first snapshot is all new; one of an epoch of one event adds little
-- (its small SST file, and RocksDB's MANIFEST, CURRENT and WAL copies).
SELECT count(*) > 0 AS checkpoints,
	   bool_and(sync_duration > interval '0') AS sync,
	   bool_and(async_duration >= interval '0') AS async,
	   bool_and(sync_duration + async_duration <= duration) AS within_duration,
	   bool_and(new_state_bytes <= state_bytes) AS new_within_total,
	   bool_and(new_state_bytes = state_bytes) FILTER (WHERE id = 1) AS first_all_new,
	   bool_and(new_state_bytes < 65536) FILTER (WHERE events = 1 AND id > 1) AS small_epoch_adds_little
FROM streamflink.checkpoints WHERE pipeline = 'ret';
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'streamflink' AND table_name = 'checkpoints' ORDER BY ordinal_position;

-- Back to the default: the next checkpoint leaves the last one only.
ALTER SYSTEM RESET streamflink.checkpoints_retained;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW streamflink.checkpoints_retained;
SELECT streamflink.start('ret');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'ret'$$);
SELECT regress_epochs('ret', 2);
SELECT streamflink.stop('ret');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ret'$$);
SELECT regress_snapshots('ret') = ARRAY[max(id)] AS only_the_last
FROM streamflink.checkpoints WHERE pipeline = 'ret';

-- Not a setting for tenants: the server's disk.
CREATE ROLE regress_ret_tenant;
SET ROLE regress_ret_tenant;
SET streamflink.checkpoints_retained = 5;
RESET ROLE;
DROP ROLE regress_ret_tenant;

-- A parallel pipeline: each task keeps its own snapshots; the pipeline's
-- sync part is its slowest task's, every task has both parts.
ALTER SYSTEM SET streamflink.checkpoints_retained = 2;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW streamflink.checkpoints_retained;
SELECT streamflink.create_window_pipeline('ret_p2', source => 'ret', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n',
       sink => 'ret_p2_out', checkpoint_interval => '100 ms', parallelism => 2);
SELECT streamflink.start('ret_p2');
SELECT wait_until($$SELECT events > 0 AND last_checkpoint IS NOT NULL
                    FROM streamflink.pipelines WHERE name = 'ret_p2'$$);
SELECT regress_epochs('ret_p2', 3);
SELECT streamflink.stop('ret_p2');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'ret_p2'$$);
SELECT cardinality(regress_snapshots('ret_p2', 0)) AS task0, cardinality(regress_snapshots('ret_p2', 1)) AS task1;
SELECT bool_and(c.sync_duration = (SELECT max((t->>'sync_duration')::interval)
									  FROM jsonb_array_elements(c.tasks) t)) AS slowest_task_sync,
	   bool_and(c.async_duration >= interval '0') AS async,
	   bool_and((SELECT bool_and(t ? 'sync_duration' AND t ? 'async_duration'
								 AND (t->>'sync_duration')::interval > interval '0'
								 AND (t->>'async_duration')::interval >= interval '0')
				 FROM jsonb_array_elements(c.tasks) t)) AS tasks_have_both
FROM streamflink.checkpoints c WHERE c.pipeline = 'ret_p2';
ALTER SYSTEM RESET streamflink.checkpoints_retained;
SELECT pg_reload_conf();

SELECT streamflink.drop_pipeline('ret_p2', drop_sink => true);
SELECT streamflink.drop_pipeline('ret', drop_sink => true);
SELECT streamflink.drop_source('ret');
DROP FUNCTION regress_snapshots(text, int);
DROP FUNCTION regress_epochs(text, int);
