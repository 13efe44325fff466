--
-- stop_busy: a stop ends a worker busy in the owner's code that does not
-- return (here a sink trigger sleeping for minutes).  It used to wait for
-- that code for ever: the worker kept its slot, the tenant could neither
-- start nor drop the pipeline ("still stopping"), and the server's fast
-- shutdown waited too.  Now, some seconds after the stop, the code is
-- cancelled as pg_cancel_backend would, and the worker leaves.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SELECT pg_postmaster_start_time() AS started \gset
CREATE ROLE regress_sb;
GRANT streamflink_user TO regress_sb;
CREATE SCHEMA sb AUTHORIZATION regress_sb;
SET ROLE regress_sb;
SET search_path = sb, public;
SELECT streamflink.create_source('sb', brokers => regress_brokers(), topic => 'regress_sb',
       columns => 'k int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('sb', source => 'sb', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'sb_out');
CREATE FUNCTION sleepy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.pg_sleep(600);
	RETURN NEW;
END
$$;
CREATE TRIGGER sleepy BEFORE INSERT ON sb_out FOR EACH ROW EXECUTE FUNCTION sleepy();
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_sb', ARRAY[
	'{"k": 1, "ts": "2024-01-01 00:00:00+00"}', '{"k": 1, "ts": "2024-01-01 00:05:00+00"}'], 0);
SET ROLE regress_sb;
SELECT streamflink.start('sb');
RESET ROLE;
-- The worker is in the trigger (pg_stat_activity is read once per
-- transaction unless cleared).
CREATE FUNCTION public.sb_sleeping() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	RETURN (SELECT count(*) = 1 FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'streamflink pipeline'
			  AND wait_event = 'PgSleep');
END
$$;
SELECT wait_until($$SELECT public.sb_sleeping()$$);
SET ROLE regress_sb;
SELECT streamflink.stop('sb');
SELECT clock_timestamp() AS stopped_at \gset
-- drop_pipeline waits (up to 30 seconds) for the worker to be gone.
SELECT streamflink.drop_pipeline('sb', drop_sink => true);
SELECT clock_timestamp() - :'stopped_at' < interval '15 seconds' AS gone_soon;
SELECT streamflink.drop_source('sb');
DROP FUNCTION sleepy();
RESET ROLE;
RESET search_path;
SELECT public.sb_sleeping();
SELECT pg_postmaster_start_time() = :'started' AS same_postmaster;
DROP SCHEMA sb;
DROP FUNCTION public.sb_sleeping();
DROP ROLE regress_sb;
