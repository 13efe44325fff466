--
-- tenancy_owner: a pipeline's user code runs as the pipeline's owner, and
-- its fragments (aggregates, define, measures) are resolved once, at
-- creation.  A tenant's function that tries ALTER ROLE ... SUPERUSER gets
-- nowhere by any of the ways user code reaches the worker; a later
-- operator in public cannot capture a pipeline; a function a pipeline uses
-- cannot be dropped; a dropped sink or owner is a status error, not a
-- crash.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SELECT pg_postmaster_start_time() AS started \gset

-- A tenant, as a DBA makes one (see the README's Tenancy).
CREATE ROLE sf_tenant;
GRANT streamflink_user TO sf_tenant;
CREATE SCHEMA tenant AUTHORIZATION sf_tenant;

SET ROLE sf_tenant;
SET search_path = tenant, public;
-- The escalation attempt, and ways to call it.  The worker's search_path is
-- pg_catalog, pg_temp: the tenant's functions name their schema.
CREATE FUNCTION escalate() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'ALTER ROLE sf_tenant SUPERUSER';
	RETURN true;
END
$$;
CREATE FUNCTION escalate_int(x int) RETURNS int LANGUAGE sql AS $$ SELECT CASE WHEN tenant.escalate() THEN x END $$;
CREATE FUNCTION escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM tenant.escalate();
	RETURN NEW;
END
$$;
CREATE DOMAIN checked_int AS int CHECK (tenant.escalate());

CREATE FUNCTION events(topic text, n int) RETURNS text[] LANGUAGE sql AS $$
	SELECT array_agg(json_build_object('k', i % 2, 'x', i, 'ts', timestamptz '2024-01-01' + i * interval '1 minute')::text
					 ORDER BY i)
	FROM generate_series(1, n) i
$$;

-- (a) an aggregate argument
SELECT streamflink.create_source('esc_a', brokers => regress_brokers(), topic => 'regress_owner_a',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('esc_a', source => 'esc_a', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'sum(escalate_int(x)) AS s', sink => 'esc_a_out');
-- (b) a pattern condition
SELECT streamflink.create_source('esc_b', brokers => regress_brokers(), topic => 'regress_owner_b',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_pattern_pipeline('esc_b', 'esc_b', 'k', 'a', 'a AS x > 0 AND escalate()',
       'esc_b_out');
-- (c) a domain CHECK of a source column type
SELECT streamflink.create_source('esc_c', brokers => regress_brokers(), topic => 'regress_owner_c',
       columns => 'k int, x checked_int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('esc_c', source => 'esc_c', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'esc_c_out');
-- (d) a trigger on the tenant's own sink table, and (e) a deferred one,
-- which would otherwise fire at PREPARE TRANSACTION
SELECT streamflink.create_source('esc_d', brokers => regress_brokers(), topic => 'regress_owner_d',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('esc_d', source => 'esc_d', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'esc_d_out');
CREATE TRIGGER escalate BEFORE INSERT ON esc_d_out FOR EACH ROW EXECUTE FUNCTION escalate_trigger();
SELECT streamflink.create_window_pipeline('esc_e', source => 'esc_d', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'esc_e_out');
CREATE CONSTRAINT TRIGGER escalate AFTER INSERT ON esc_e_out DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION escalate_trigger();

-- Who runs a pipeline's code: an aggregate that records the role running
-- its transition and final functions.
CREATE FUNCTION who_trans(s text, x int) RETURNS text LANGUAGE sql AS $$ SELECT current_user::text $$;
CREATE FUNCTION who_final(s text) RETURNS text LANGUAGE sql AS $$ SELECT s || '/' || current_user $$;
CREATE AGGREGATE who(int) (SFUNC = who_trans, STYPE = text, FINALFUNC = who_final, INITCOND = '');
SELECT streamflink.create_source('who', brokers => regress_brokers(), topic => 'regress_owner_who',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('who', source => 'who', key => '', "window" => 'tumble',
       size => '1 minute', aggregates => 'who(x) AS ran_as', sink => 'who_out');

-- A catalog row cannot bring its own analysed tree (the trigger computes it
-- from the text), nor name another role as the owner its code runs as: a
-- tenant may not even write those columns, and a row it inserts gets its
-- tree from the trigger.
CREATE TABLE forged_out (n bigint);
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
                                  aggregates, aggregates_tree, sink, allowed_lateness, checkpoint_interval)
SELECT 'forged', id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n', '{QUERY :forged true}',
       'forged_out', '0', '1 second'
FROM streamflink.source WHERE name = 'esc_a';
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
                                  aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'forged', id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
       'forged_out', '0', '1 second'
FROM streamflink.source WHERE name = 'esc_a';
SELECT left(aggregates_tree, 30) AS aggregates_tree FROM streamflink.pipeline WHERE name = 'forged';
UPDATE streamflink.pipeline SET aggregates_tree = '{QUERY :forged true}' WHERE name = 'forged';
-- Not even a superuser's UPDATE gets a tree of its own in.
RESET ROLE;
UPDATE streamflink.pipeline SET aggregates_tree = '{QUERY :forged true}' WHERE name = 'forged';
SET ROLE sf_tenant;
SELECT left(aggregates_tree, 30) AS aggregates_tree FROM streamflink.pipeline WHERE name = 'forged';
DELETE FROM streamflink.pipeline WHERE name = 'forged';
DROP TABLE forged_out;
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
                                  aggregates, sink, allowed_lateness, checkpoint_interval, owner)
SELECT 'spoofed', id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
       'esc_a_out', '0', '1 second', 'postgres'
FROM streamflink.source WHERE name = 'esc_a';
RESET ROLE;

SELECT streamflink.produce(regress_brokers(), t, tenant.events(t, 5), 0)
FROM unnest(ARRAY['regress_owner_a', 'regress_owner_b', 'regress_owner_c', 'regress_owner_d',
                   'regress_owner_who']) t;

SET ROLE sf_tenant;
SELECT streamflink.start(p) FROM unnest(ARRAY['esc_a', 'esc_b', 'esc_c', 'esc_d', 'esc_e', 'who']) p;
-- Each fails as the tenant: the pipeline shows the error and retries.
SELECT wait_until($$SELECT count(*) = 4 FROM streamflink.pipelines
                    WHERE name IN ('esc_a', 'esc_b', 'esc_d', 'esc_e') AND status = 'failed'$$);
SELECT name, status, error FROM streamflink.pipelines
WHERE name IN ('esc_a', 'esc_b', 'esc_d', 'esc_e') ORDER BY name;
-- A value a domain refuses is a dead letter; the tenant's function ran as
-- the tenant, the dead letter was written by the worker.
SELECT wait_until($$SELECT count(*) = 5 FROM streamflink.dead_letters WHERE pipeline = 'esc_c'$$);
SELECT "offset", error FROM streamflink.dead_letters WHERE pipeline = 'esc_c' ORDER BY "offset";
-- The closed windows, written by the worker, and the open one, read by a
-- superuser with live(): the tenant's functions ran as the tenant.
SELECT wait_until($$SELECT count(*) = 4 FROM who_out$$);
SELECT window_start, ran_as FROM who_out ORDER BY window_start;
RESET ROLE;
SELECT current_user, window_start, ran_as FROM streamflink.live('who', NULL::tenant.who_out);
SET ROLE sf_tenant;
SELECT streamflink.stop(p) FROM unnest(ARRAY['esc_a', 'esc_b', 'esc_c', 'esc_d', 'esc_e', 'who']) p;
-- The owner may no longer run its aggregate: a clear error at start.
REVOKE EXECUTE ON FUNCTION who(int) FROM PUBLIC, sf_tenant;
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'who'$$);
SELECT streamflink.start('who');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'who'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'who';
SELECT streamflink.stop('who');
RESET ROLE;
-- decode() of the tenant's source by a superuser runs the domain check as
-- the source's owner too.
SELECT * FROM streamflink.decode('esc_c', '{"k": 1, "x": 1, "ts": "2024-01-01 00:00:00+00"}');
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'sf_tenant';

-- Name capture.  A superuser's pattern pipeline compares a numeric column
-- with an integer constant; the operator is resolved at creation
-- (numeric > numeric, pg_catalog).  Then a role that may create in public
-- defines public.>(numeric, integer), which a fresh parse under the default
-- search_path would now pick: the pipeline still uses pg_catalog's.
RESET search_path;
CREATE TABLE public.captured (who text);
GRANT INSERT, SELECT ON public.captured TO PUBLIC;
CREATE FUNCTION public.doubled(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 $$;
SELECT streamflink.create_source('cap', brokers => regress_brokers(), topic => 'regress_owner_cap',
       columns => 'k int, amount numeric, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_pattern_pipeline('cap', 'cap', 'k', 'big', 'big AS amount > 100', 'cap_out',
       measures => 'doubled(big.amount) AS twice');
CREATE ROLE sf_attacker;
GRANT CREATE ON SCHEMA public TO sf_attacker;
SET ROLE sf_attacker;
CREATE FUNCTION public.evil_gt(a numeric, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.captured VALUES (current_user);
	BEGIN
		EXECUTE 'ALTER ROLE sf_attacker SUPERUSER';
	EXCEPTION WHEN insufficient_privilege THEN
		NULL;
	END;
	RETURN true;
END
$$;
CREATE OPERATOR public.> (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.evil_gt);
SELECT 50::numeric > 100 AS captured_in_a_fresh_parse;
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_owner_cap', ARRAY[
	'{"k": 1, "amount": 50, "ts": "2024-01-01 00:00:00+00"}',
	'{"k": 1, "amount": 150, "ts": "2024-01-01 00:01:00+00"}',
	'{"k": 1, "amount": 20, "ts": "2024-01-01 00:02:00+00"}',
	'{"k": 1, "amount": 300, "ts": "2024-01-01 00:03:00+00"}',
	'{"k": 2, "amount": 0, "ts": "2024-01-01 01:00:00+00"}'], 0);
SELECT streamflink.start('cap');
SELECT wait_until($$SELECT count(*) = 2 FROM cap_out$$);
SELECT k, match_start, twice FROM cap_out ORDER BY match_start;
SELECT who, count(*) FROM public.captured GROUP BY who;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'sf_attacker';

-- The function the measures use cannot be dropped under the pipeline, nor
-- a column of the source's row type.
DROP FUNCTION public.doubled(numeric);
ALTER TYPE streamflink.source_cap DROP ATTRIBUTE amount;
SELECT streamflink.stop('cap');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'cap'$$);

-- The sink dropped under a stopped pipeline: starting it is a clear error
-- in its status, not a crash (the server was not restarted).
DROP TABLE cap_out;
SELECT streamflink.start('cap');
SELECT status, error FROM streamflink.pipelines WHERE name = 'cap';
SELECT pg_postmaster_start_time() = :'started' AS same_postmaster;
-- With the pipeline gone, so are its dependencies.
SELECT streamflink.drop_pipeline('cap');
DROP FUNCTION public.doubled(numeric);

-- The owner dropped under a running pipeline: at its next start the worker
-- says so.
CREATE ROLE sf_gone;
GRANT streamflink_user TO sf_gone;
CREATE SCHEMA gone AUTHORIZATION sf_gone;
SET ROLE sf_gone;
SELECT streamflink.create_source('gone', brokers => regress_brokers(), topic => 'regress_owner_cap',
       columns => 'k int, amount numeric, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('gone', source => 'gone', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'gone.gone_out');
SELECT streamflink.start('gone');
RESET ROLE;
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'gone'$$);
REASSIGN OWNED BY sf_gone TO postgres;
DROP OWNED BY sf_gone;
DROP ROLE sf_gone;
SELECT pg_terminate_backend(pid) FROM streamflink.pipelines WHERE name = 'gone';
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'gone'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'gone';
UPDATE streamflink.pipeline SET state = 'stopped' WHERE name = 'gone';
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'gone'$$);
SELECT pg_postmaster_start_time() = :'started' AS same_postmaster;

-- Clean up.
DELETE FROM streamflink.pipeline WHERE name = 'gone';
DELETE FROM streamflink.source WHERE name = 'gone';
DROP SCHEMA gone CASCADE;
SELECT streamflink.drop_source('cap');
SET ROLE sf_tenant;
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
SELECT streamflink.drop_pipeline(p, drop_sink => true)
FROM unnest(ARRAY['esc_a', 'esc_b', 'esc_c', 'esc_d', 'esc_e', 'who']) p;
SELECT streamflink.drop_source(s) FROM unnest(ARRAY['esc_a', 'esc_b', 'esc_c', 'esc_d', 'who']) s;
RESET ROLE;
DROP OPERATOR public.> (numeric, integer);
DROP FUNCTION public.evil_gt(numeric, integer);
DROP TABLE public.captured;
DROP SCHEMA tenant CASCADE;
REVOKE ALL ON SCHEMA public FROM sf_attacker;
DROP ROLE sf_attacker;
DROP ROLE sf_tenant;
