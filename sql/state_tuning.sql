--
-- state_tuning: RocksDB profiles and option strings of pipelines (checked
-- at creation, with hints; tenants bounded), and streamflink.state_metrics
-- showing RocksDB's numbers of a running pipeline to its owner only.
--
-- The test server runs with the default budget: streamflink.state_memory
-- 1GB over streamflink.max_workers 16, a share of 64MB per worker.
--
\set SHOW_CONTEXT never
SHOW streamflink.state_memory;
SHOW streamflink.state_profile;
-- What each profile sets (the README's table), as a superuser.
SELECT p, regexp_split_to_table(streamflink.state_settings(p), ';') AS setting
FROM unnest(ARRAY['default', 'write_heavy', 'read_heavy', 'large_state']) p;
-- Options apply after the profile; names are case-insensitive, units as in postgresql.conf.
SELECT streamflink.state_settings('large_state',
	' Write_Buffer_Size = 8MB ; block_cache_size=16MB;bloom_filter_bits=12;compaction_style=universal;'
	'compression=zstd;max_open_files=-1;max_background_jobs=8;level_compaction_dynamic_level_bytes=off;');
-- Invalid options and profiles: an error with a hint each.
\set VERBOSITY default
SELECT streamflink.state_settings('fast');
SELECT streamflink.state_settings(NULL, 'wal_dir=/tmp');
SELECT streamflink.state_settings(NULL, 'write_buffer_size');
SELECT streamflink.state_settings(NULL, 'write_buffer_size=');
SELECT streamflink.state_settings(NULL, 'write_buffer_size=lots');
SELECT streamflink.state_settings(NULL, 'write_buffer_size=10kB');
SELECT streamflink.state_settings(NULL, 'max_write_buffer_number=1');
SELECT streamflink.state_settings(NULL, 'bloom_filter_bits=-1');
SELECT streamflink.state_settings(NULL, 'compaction_style=fifo');
SELECT streamflink.state_settings(NULL, 'compression=brotli');
SELECT streamflink.state_settings(NULL, 'block_size=4kB;block_size=8kB');
SELECT streamflink.state_settings(NULL, 'cache_index_and_filter_blocks=maybe');
SELECT streamflink.state_settings(NULL, 'max_open_files=3');
-- The server-wide defaults (postgresql.conf, reloaded) are checked when set.
ALTER SYSTEM SET streamflink.state_options = 'db_paths=/tmp';
ALTER SYSTEM SET streamflink.state_profile = 'fast';

-- Tenants: two roles, each in a schema of its own.
CREATE ROLE regress_st_a;
CREATE ROLE regress_st_b;
GRANT streamflink_user TO regress_st_a, regress_st_b;
CREATE SCHEMA st_a AUTHORIZATION regress_st_a;
CREATE SCHEMA st_b AUTHORIZATION regress_st_b;
SET ROLE regress_st_a;
SET search_path = st_a, public;
-- What could exhaust the server is for superusers only.
SELECT streamflink.state_settings(NULL, 'max_open_files=-1');
SELECT streamflink.state_settings(NULL, 'max_open_files=5000');
SELECT streamflink.state_settings(NULL, 'max_background_jobs=8');
SELECT streamflink.state_settings(NULL, 'max_write_buffer_number=16');
SELECT streamflink.state_settings(NULL, 'block_cache_size=1GB');
SELECT streamflink.state_settings('read_heavy', 'write_buffer_size=32MB');
-- The SQLSTATE of each refusal: 22023 a bad value, 42601 bad syntax, 42501 a superuser's.
CREATE FUNCTION pg_temp.sqlstate(profile text, options text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM streamflink.state_settings(profile, options);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;
SELECT p, o, pg_temp.sqlstate(p, o)
FROM (VALUES (NULL, 'max_open_files=-1'), (NULL, 'max_background_jobs=8'), (NULL, 'block_cache_size=1GB'),
			 (NULL, 'max_background_jobs=0'), (NULL, 'compression=brotli'), (NULL, 'wal_dir=/tmp'),
			 (NULL, 'block_size'), (NULL, 'block_size=4kB;block_size=8kB'), ('fast', NULL),
			 ('write_heavy', 'max_open_files=1024;max_background_jobs=4;max_write_buffer_number=8;write_buffer_size=4MB'),
			 -- memtables waiting for their flush count: 16MB of cache and 7 x 16MB
			 ('write_heavy', 'max_write_buffer_number=8'),
			 -- integers are decimal: no hex, no fraction, a leading zero is no octal
			 (NULL, 'max_open_files=0x100'), (NULL, 'max_write_buffer_number=2.5'),
			 (NULL, 'max_open_files=0100'), (NULL, 'max_open_files=-01'), (NULL, '=5'), (NULL, ' = ')) v(p, o);
DROP FUNCTION pg_temp.sqlstate(text, text);
-- Within the share: fine.
SELECT streamflink.state_settings('read_heavy', 'block_cache_size=16MB;max_open_files=100;max_background_jobs=4');
-- A parallel pipeline's tasks split the share: each of 16 tasks gets 4MB.
SELECT streamflink.state_settings(NULL, NULL, NULL, 16);
SELECT streamflink.state_settings(NULL, 'block_cache_size=16MB', NULL, 4);
-- Tasks of under 2MB each would take more than the share together.
SELECT streamflink.state_settings(NULL, NULL, NULL, 64);
SELECT streamflink.state_settings(NULL, NULL, NULL, 0);
-- A superuser's pipeline may go beyond (checked for the owner, not the caller).
SELECT streamflink.state_settings(NULL, 'block_cache_size=1GB', 'postgres') IS NOT NULL AS superuser_may;

SELECT streamflink.create_source('sta', brokers => regress_brokers(), topic => 'regress_st',
       columns => 'k int, v float8, ts timestamptz', event_time => 'ts');
-- Refused at creation, nothing created.
SELECT streamflink.create_window_pipeline('sta', source => 'sta', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'sta_out',
       state_options => 'max_open_files=-1');
SELECT to_regclass('st_a.sta_out') IS NULL AS no_sink;
SELECT streamflink.create_pattern_pipeline('stp', source => 'sta', key => 'k', pattern => 'a b',
       define => 'a AS v < 1, b AS v > 1', sink => 'stp_out', state_profile => 'huge');
-- Nor by inserting the catalog row directly (the trigger checks for the row's owner).
CREATE TABLE sta_direct (k int, window_start timestamptz, window_end timestamptz, n bigint);
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
		aggregates, sink, allowed_lateness, checkpoint_interval, state_options)
VALUES ('sta_direct', (SELECT id FROM streamflink.source WHERE name = 'sta'), 'window', '{k}',
		'tumble', '1 minute', 'count(*) AS n', 'sta_direct', '0', '1 second',
		'max_background_jobs=64');
DROP TABLE sta_direct;
-- Accepted (a profile's name in any case, kept in lower case).
SELECT streamflink.create_window_pipeline('sta', source => 'sta', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total', sink => 'sta_out',
       state_profile => 'Read_Heavy', state_options => 'block_cache_size=16MB;bloom_filter_bits=12');
SELECT streamflink.create_pattern_pipeline('stp', source => 'sta', key => 'k', pattern => 'a b',
       define => 'a AS v < 1, b AS v > 1', sink => 'stp_out', state_profile => 'write_heavy');
SELECT name, state_profile, state_options FROM streamflink.pipeline ORDER BY name;
-- A tenant cannot change the tuning afterwards (only the desired state).
UPDATE streamflink.pipeline SET state_options = 'max_open_files=-1' WHERE name = 'sta';

-- Nor a direct catalog insert without options of its own.
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
		aggregates, sink, allowed_lateness, checkpoint_interval, parallelism)
VALUES ('sta_par', (SELECT id FROM streamflink.source WHERE name = 'sta'), 'window', '{k}',
		'tumble', '1 minute', 'count(*) AS n', 'sta_out', '0', '1 second', 64);

-- With a budget of 16MB, a worker's share is 4MB (at least): four tasks of
-- a tenant's pipeline would get 1MB each, so neither a new pipeline nor a
-- rescale gets them.  Server options over the share are the DBA's to fix.
RESET ROLE;
ALTER SYSTEM SET streamflink.state_memory = '16MB';
ALTER SYSTEM SET streamflink.state_options = 'block_cache_size=8MB';
SELECT pg_reload_conf();
SELECT pg_sleep(1);
SET ROLE regress_st_a;
SELECT streamflink.state_settings(NULL, NULL, NULL, 4);
UPDATE streamflink.pipeline SET parallelism = 4 WHERE name = 'sta';
SELECT streamflink.state_settings(NULL, NULL);
RESET ROLE;
ALTER SYSTEM RESET streamflink.state_memory;
ALTER SYSTEM RESET streamflink.state_options;
SELECT pg_reload_conf();
SELECT pg_sleep(1);
SET ROLE regress_st_a;
UPDATE streamflink.pipeline SET parallelism = 4 WHERE name = 'sta';
UPDATE streamflink.pipeline SET parallelism = 1 WHERE name = 'sta';

-- A superuser's pipeline given to a tenant must fit the tenant's bounds.
RESET ROLE;
CREATE ROLE regress_st_su SUPERUSER;
GRANT streamflink_user TO regress_st_su;
SET ROLE regress_st_su;
SELECT streamflink.create_source('stsu', brokers => regress_brokers(), topic => 'regress_st',
       columns => 'k int, v float8, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('stsu', source => 'stsu', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'public.stsu_out',
       state_options => 'max_background_jobs=8;max_open_files=-1');
RESET ROLE;
UPDATE streamflink.pipeline SET owner = 'regress_st_a' WHERE name = 'stsu';
-- Its owner no longer a superuser: the worker starts with what a tenant may
-- use (and logs it), rather than failing and restarting every few seconds.
ALTER ROLE regress_st_su NOSUPERUSER;
SET ROLE regress_st_su;
SELECT streamflink.start('stsu');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'stsu'$$);
SELECT name, status, error FROM streamflink.pipelines WHERE name = 'stsu';
SELECT streamflink.stop('stsu');
SELECT streamflink.drop_pipeline('stsu', drop_sink => true);
SELECT streamflink.drop_source('stsu');
RESET ROLE;
DROP ROLE regress_st_su;

-- Settings the worker refuses at its start (here a row changed without the
-- catalog's trigger, as a later release's tighter bound would be): it waits,
-- showing why, rather than restarting every few seconds.
SELECT streamflink.create_source('stbad', brokers => regress_brokers(), topic => 'regress_st',
       columns => 'k int, v float8, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('stbad', source => 'stbad', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'public.stbad_out');
SET session_replication_role = replica;
UPDATE streamflink.pipeline SET state_options = 'bogus=1' WHERE name = 'stbad';
RESET session_replication_role;
SELECT streamflink.start('stbad');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'stbad'$$);
SELECT pid AS stbad_pid FROM streamflink.pipelines WHERE name = 'stbad' \gset
SELECT pg_sleep(6);
SELECT name, status, error, pid = :stbad_pid AS same_worker FROM streamflink.pipelines WHERE name = 'stbad';
SELECT streamflink.stop('stbad');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'stbad'$$);
SELECT streamflink.drop_pipeline('stbad', drop_sink => true);
SELECT streamflink.drop_source('stbad');
SET ROLE regress_st_a;

-- Running: RocksDB's numbers in streamflink.state_metrics, with RocksDB's
-- statistics on (off by default: they cost CPU; the block cache's hits and
-- misses are then the worker's own, and the rest is the same: the parallel
-- suite checks them without).
RESET ROLE;
ALTER SYSTEM SET streamflink.state_statistics = on;
SELECT pg_reload_conf();
-- (a backend reads a reload between statements, not inside wait_until's
-- loop; the postmaster, which forks the worker, has read it by then)
SELECT pg_sleep(1);
SHOW streamflink.state_statistics;
SELECT streamflink.produce(regress_brokers(), 'regress_st',
	(SELECT array_agg(format('{"k": %s, "v": %s, "ts": "2024-01-01 00:%s:00+00"}', i % 500, i, lpad((i / 500)::text, 2, '0')))
	 FROM generate_series(0, 2999) i), 0);
SET ROLE regress_st_a;
SELECT streamflink.start('sta');
SELECT wait_until($$SELECT EXISTS (SELECT 1 FROM streamflink.state_metrics
	WHERE pipeline = 'sta' AND estimated_keys > 0 AND live_sst_bytes > 0 AND flushes > 0)$$);
SELECT pipeline, profile, pid IS NOT NULL AS has_pid, estimated_keys > 0 AS keys,
	   live_sst_bytes > 0 AS sst, cardinality(sst_bytes_per_level) AS levels,
	   (SELECT sum(l) FROM unnest(sst_bytes_per_level) l) = live_sst_bytes AS levels_add_up,
	   memtable_bytes > 0 AS memtable, block_cache_capacity = 16 * 1024 * 1024 AS capacity_16mb,
	   block_cache_usage >= 0 AS usage, block_cache_hit_ratio IS NULL OR block_cache_hit_ratio BETWEEN 0 AND 1 AS ratio,
	   pending_compaction_bytes >= 0 AS pending, compactions >= 0 AS compactions,
	   flushes > 0 AS flushes, stall_micros >= 0 AS stall,
	   running_flushes >= 0 AS running_flushes, write_stall, background_errors
FROM streamflink.state_metrics;
-- Another tenant sees nothing of it.
SET ROLE regress_st_b;
SELECT count(*) FROM streamflink.state_metrics;
SELECT count(*) FROM streamflink._state_metrics();
-- A superuser sees it.
RESET ROLE;
SELECT pipeline FROM streamflink.state_metrics;
SET ROLE regress_st_a;
SELECT streamflink.stop('sta');
SELECT streamflink.drop_pipeline('sta', drop_sink => true);
SELECT streamflink.drop_pipeline('stp', drop_sink => true);
SELECT streamflink.drop_source('sta');
RESET ROLE;
RESET search_path;
DROP SCHEMA st_a;
DROP SCHEMA st_b;
DROP ROLE regress_st_a;
DROP ROLE regress_st_b;
RESET ROLE;
ALTER SYSTEM RESET streamflink.state_statistics;
SELECT pg_reload_conf();
