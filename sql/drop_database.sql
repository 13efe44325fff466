--
-- drop_database: DROP DATABASE ... WITH (FORCE) under a running pipeline
-- terminates its worker; the postmaster used to restart it every second
-- for ever, each time failing with FATAL ("database ... does not exist")
-- before the worker's own error handler.  It now leaves for good.  The
-- other database is set up through dblink.
--
\set SHOW_CONTEXT never
CREATE EXTENSION dblink;
CREATE DATABASE regress_sf_dropped;
DO $$
BEGIN
	EXECUTE format('ALTER DATABASE regress_sf_dropped SET regress.brokers = %L', regress_brokers());
END
$$;
SELECT dblink_connect('dropped', format('dbname=regress_sf_dropped host=%s port=%s user=%s',
                      current_setting('unix_socket_directories'), current_setting('port'), current_user));
SELECT dblink_exec('dropped', 'CREATE EXTENSION streamflink');
SELECT * FROM dblink('dropped', $$SELECT streamflink.create_source('d', brokers => current_setting('regress.brokers'),
       topic => 'regress_dropped', columns => 'k int, ts timestamptz', event_time => 'ts')$$) AS t(r text);
SELECT * FROM dblink('dropped', $$SELECT streamflink.create_window_pipeline('d', source => 'd', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'd_out')$$) AS t(r text);
SELECT * FROM dblink('dropped', $$SELECT streamflink.start('d')$$) AS t(r text);
SELECT dblink_disconnect('dropped');
CREATE FUNCTION dropped_worker_running() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	RETURN EXISTS (SELECT 1 FROM pg_stat_activity
				   WHERE datname = 'regress_sf_dropped' AND backend_type = 'streamflink pipeline');
END
$$;
SELECT wait_until('SELECT dropped_worker_running()');
SELECT oid AS dropped_oid FROM pg_database WHERE datname = 'regress_sf_dropped' \gset
SELECT (pg_stat_file('server.log')).size AS log_from \gset
DROP DATABASE regress_sf_dropped WITH (FORCE);
SELECT pg_sleep(4);
-- No restart failed for want of its database (a dynamic worker exits 0 to
-- be forgotten).
SELECT count(*) AS failed_restarts
FROM regexp_matches(pg_read_file('server.log', :log_from,
                                 (pg_stat_file('server.log')).size - :log_from),
                    'database ' || :dropped_oid || ' does not exist', 'g');
DROP FUNCTION dropped_worker_running();
DROP EXTENSION dblink;
