--
-- cross_owner: a source's types run their code (domain checks, input
-- functions) as the owner of the pipeline that reads it, while decoding
-- and when its key values go into the sink.  A superuser (a DBA looking at
-- a tenant's data, say) who built a pipeline on a tenant's source ran the
-- tenant's domain check as a superuser: the tenant made itself one.  A
-- pipeline's owner may not have privileges its source's owner lacks.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE ROLE regress_co;
GRANT streamflink_user TO regress_co;
CREATE SCHEMA co AUTHORIZATION regress_co;
SET ROLE regress_co;
SET search_path = co, public;
CREATE FUNCTION escalate(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE 'ALTER ROLE regress_co SUPERUSER';
	EXCEPTION WHEN insufficient_privilege THEN
		NULL;
	END;
	RETURN true;
END
$$;
CREATE DOMAIN trap AS int CHECK (co.escalate(VALUE));
SELECT streamflink.create_source('co', brokers => regress_brokers(), topic => 'regress_co',
       columns => 'k int, x trap, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_co', ARRAY[
	'{"k": 1, "x": 1, "ts": "2024-01-01 00:00:00+00"}', '{"k": 2, "x": 2, "ts": "2024-01-01 00:05:00+00"}'], 0);
-- The DBA's pipeline on the tenant's source.
SELECT streamflink.create_window_pipeline('co_dba', source => 'co', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'public.co_dba_out');
SELECT streamflink.start(name) FROM streamflink.pipelines WHERE name = 'co_dba';
SELECT wait_until($$SELECT coalesce(bool_and(events = 2), true) FROM streamflink.pipelines
                    WHERE name = 'co_dba'$$, '20 seconds');
SELECT pg_sleep(3);
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_co';
SELECT streamflink.stop(name) FROM streamflink.pipelines WHERE name = 'co_dba';
SELECT wait_until($$SELECT coalesce(bool_and(status = 'stopped'), true) FROM streamflink.pipelines
                    WHERE name = 'co_dba'$$);
SELECT pg_sleep(3);
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_co';
-- decode() of the tenant's source runs as the tenant.
SELECT * FROM streamflink.decode('co', '{"k": 1, "x": 1, "ts": "2024-01-01 00:00:00+00"}');
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'regress_co';
-- The tenant's own pipeline on it runs as the tenant.
SET ROLE regress_co;
SELECT streamflink.create_window_pipeline('co_own', source => 'co', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'co_own_out');
SELECT streamflink.drop_pipeline('co_own', drop_sink => true);
RESET ROLE;
SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM streamflink.pipelines WHERE name = 'co_dba';
SET ROLE regress_co;
SELECT streamflink.drop_source('co');
DROP DOMAIN trap;
DROP FUNCTION escalate(int);
RESET ROLE;
RESET search_path;
ALTER ROLE regress_co NOSUPERUSER;
DROP SCHEMA co;
DROP ROLE regress_co;
