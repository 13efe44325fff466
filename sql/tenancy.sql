--
-- tenancy: two tenants, each a role granted streamflink_user, share the
-- database.  Each defines and runs its own; neither sees nor touches the
-- other's sources, pipelines, checkpoints, dead letters or live windows,
-- whatever way it tries (functions, catalog tables, internal functions).
-- Quotas set by the DBA are enforced with a clear error; produce() is for
-- superusers and the brokers they allow.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SELECT pg_postmaster_start_time() AS postmaster_started \gset

CREATE ROLE regress_alice LOGIN;
CREATE ROLE regress_bob LOGIN;
CREATE ROLE regress_carol LOGIN;		-- not a streamflink user
GRANT streamflink_user TO regress_alice, regress_bob;
CREATE SCHEMA regress_alice AUTHORIZATION regress_alice;
CREATE SCHEMA regress_bob AUTHORIZATION regress_bob;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'streamflink_user';

-- A role the DBA did not grant streamflink_user can do nothing.
SET SESSION AUTHORIZATION regress_carol;
SELECT streamflink.create_source('carol_src', brokers => regress_brokers(), topic => 'regress_tenancy',
       columns => 'k text');
SELECT count(*) FROM streamflink.pipelines;
SELECT count(*) FROM streamflink.dead_letter;
RESET SESSION AUTHORIZATION;

--
-- Alice: a source, a window pipeline, running.
--
SET SESSION AUTHORIZATION regress_alice;
SELECT streamflink.create_source('alice_src', brokers => regress_brokers(), topic => 'regress_tenancy',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('alice_p', source => 'alice_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n, sum(v) AS total',
       sink => 'alice_out', checkpoint_interval => '100 milliseconds');
SELECT name, owner FROM streamflink.sources;
SELECT name, source, sink, owner, desired_state FROM streamflink.pipelines;
SELECT typname, typowner::regrole FROM pg_type WHERE typname = 'source_alice_src';
-- produce() connects from the server: not for her, unless the DBA allows the broker.
SELECT streamflink.produce('10.0.0.1:9092', 'regress_tenancy', ARRAY['x']);
RESET SESSION AUTHORIZATION;

-- Superuser: the ids a tenant would guess.
SELECT id AS alice_src_id FROM streamflink.source WHERE name = 'alice_src' \gset
SELECT id AS alice_p_id, sink::oid AS alice_sink_oid FROM streamflink.pipeline WHERE name = 'alice_p' \gset

-- The DBA allows the test broker (a superuser-only setting).
SELECT set_config('streamflink.produce_allowed_brokers', regress_brokers(), false) IS NOT NULL AS allowed;
SET SESSION AUTHORIZATION regress_alice;
SET streamflink.produce_allowed_brokers = '';		-- not hers to change
SELECT streamflink.produce(regress_brokers(), 'regress_tenancy', ARRAY[
	'{"k": "a", "v": 1, "ts": "2024-01-01 00:00:01+00"}',
	'{"k": "a", "v": 2, "ts": "2024-01-01 00:00:02+00"}',
	'{"k": "b", "v": 5, "ts": "2024-01-01 00:00:03+00"}',
	'alice''s secret payload',
	'{"k": "a", "v": 3, "ts": "2024-01-01 00:01:30+00"}'], 0);
SELECT streamflink.start('alice_p');
SELECT wait_until($$SELECT events = 5 AND last_checkpoint IS NOT NULL FROM streamflink.pipelines WHERE name = 'alice_p'$$);
SELECT k, window_start, n, total FROM alice_out ORDER BY k;
SELECT k, window_start, n, total FROM streamflink.live('alice_p', NULL::alice_out);
SELECT convert_from(payload, 'UTF8') AS payload FROM streamflink.dead_letters;
-- Her checkpoints are her worker's record, not hers to rewrite.
DELETE FROM streamflink.checkpoint;
DELETE FROM streamflink.checkpoint_offset;
-- live() takes the sink's row type only.
CREATE TYPE not_the_sink AS (k int, n text);
SELECT * FROM streamflink.live('alice_p', NULL::not_the_sink);
SELECT * FROM streamflink.live('alice_p', NULL::int);
SELECT * FROM streamflink.live('alice_p', NULL::record);
CREATE TYPE alike AS (k text, window_start timestamptz, window_end timestamptz, n bigint, total bigint);
SELECT k, n FROM streamflink.live('alice_p', NULL::alike);
RESET SESSION AUTHORIZATION;

--
-- Bob: his own source and pipeline; nothing of Alice's.
--
SET SESSION AUTHORIZATION regress_bob;
SELECT streamflink.create_source('bob_src', brokers => regress_brokers(), topic => 'regress_tenancy',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('bob_p', source => 'bob_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'bob_out');
-- Names are unique across tenants.
SELECT streamflink.create_source('alice_src', brokers => regress_brokers(), topic => 'x', columns => 'a int');
-- Views and tables show his rows only.
SELECT name FROM streamflink.sources;
SELECT name FROM streamflink.pipelines;
SELECT count(*) FROM streamflink.checkpoints;
SELECT count(*) FROM streamflink.offsets;
SELECT count(*) FROM streamflink.dead_letters;
SELECT count(*) FROM streamflink.late_events;
SELECT count(*) FROM streamflink.source;
SELECT count(*) FROM streamflink.pipeline;
SELECT count(*) FROM streamflink.checkpoint;
SELECT count(*) FROM streamflink.checkpoint_offset;
SELECT count(*) FROM streamflink.dead_letter;
SELECT count(*) FROM streamflink.late_event;
SELECT count(*) FROM streamflink._worker_status();
-- Her pipeline cannot be started, stopped, dropped, read or built on.
SELECT streamflink.stop('alice_p');
SELECT streamflink.start('alice_p');
SELECT streamflink.drop_pipeline('alice_p');
SELECT streamflink.drop_source('alice_src');
SELECT streamflink.decode('alice_src', '{}'::text);
SELECT * FROM streamflink.live('alice_p');
SELECT * FROM streamflink.live('alice_p', NULL::bob_out);
SELECT streamflink.create_window_pipeline('bob_steal', source => 'alice_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'bob_steal_out');
-- Nor through the catalog tables: row-level security, column privileges,
-- and the checks of the catalog's triggers.
UPDATE streamflink.pipeline SET state = 'stopped' WHERE id = :alice_p_id;
DELETE FROM streamflink.pipeline WHERE id = :alice_p_id;
DELETE FROM streamflink.source WHERE id = :alice_src_id;
DELETE FROM streamflink.dead_letter;
UPDATE streamflink.pipeline SET owner = 'regress_alice' WHERE name = 'bob_p';
UPDATE streamflink.pipeline SET sink = sink WHERE name = 'bob_p';
UPDATE streamflink.pipeline SET aggregates = 'count(*) AS n' WHERE name = 'bob_p';
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
VALUES ('bob_steal', :alice_src_id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
	'bob_out', '0', '1 second');
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval, owner)
SELECT 'bob_steal', id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n', 'bob_out', '0',
	'1 second', 'regress_alice' FROM streamflink.source WHERE name = 'bob_src';
-- Durations are checked as create_window_pipeline checks them.
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', id, 'window', '{}', 'tumble', '0', 'count(*) AS n',
	(SELECT sink FROM streamflink.pipeline WHERE name = 'bob_p'), '0', '1 second'
FROM streamflink.source WHERE name = 'bob_src';
-- So are window shapes: no hop of a million slides.
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	window_slide, aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', id, 'window', '{}', 'hop', '1 day', '1 millisecond', 'count(*) AS n',
	(SELECT sink FROM streamflink.pipeline WHERE name = 'bob_p'), '0', '1 second'
FROM streamflink.source WHERE name = 'bob_src';
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', id, 'window', '{nosuch}', 'tumble', '1 day', 'count(*) AS n',
	(SELECT sink FROM streamflink.pipeline WHERE name = 'bob_p'), '0', '1 second'
FROM streamflink.source WHERE name = 'bob_src';
-- Sources inserted by hand are checked as create_source() checks them.
INSERT INTO streamflink.source (name, brokers, topic, format, row_type, max_out_of_orderness, options)
SELECT 'bob_src2', 'b:9092', 't', 'json', row_type, '0', '{"bad option"}'
FROM streamflink.source WHERE name = 'bob_src';
INSERT INTO streamflink.source (name, brokers, topic, format, row_type, max_out_of_orderness)
VALUES ('bob_src2', 'b:9092', 't', 'json', 'bob_out', '0');
-- A sink must be a table of his own: not Alice's (by its OID), nor a catalog table.
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', s.id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
	CAST(:'alice_sink_oid' AS oid)::regclass, '0', '1 second'
FROM streamflink.source s WHERE name = 'bob_src';
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', s.id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
	'streamflink.checkpoint', '0', '1 second'
FROM streamflink.source s WHERE name = 'bob_src';
-- Nor a temporary table: the worker would not see it.
CREATE TEMP TABLE bob_tmp (n bigint);
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, sink, allowed_lateness, checkpoint_interval)
SELECT 'bob_steal', s.id, 'window', '{}', 'tumble', '1 minute', 'count(*) AS n',
	'bob_tmp', '0', '1 second'
FROM streamflink.source s WHERE name = 'bob_src';
-- A worker's records are written by the worker.
INSERT INTO streamflink.checkpoint SELECT id, 99, now(), now(), '0', 0, 0, 0, 0
FROM streamflink.pipeline WHERE name = 'bob_p';
INSERT INTO streamflink.dead_letter (pipeline_id, topic, partition, "offset", error)
VALUES (:alice_p_id, 't', 0, 99, 'forged');
-- The internal functions of the lifecycle are gone; its triggers cannot be called.
SELECT streamflink._terminate(1);
SELECT streamflink._remove_state(1);
SELECT streamflink._pipeline_lifecycle();
-- Quotas are the DBA's to write.
INSERT INTO streamflink.role_quota VALUES ('regress_bob', 100, 100, NULL);
RESET SESSION AUTHORIZATION;

-- Alice's pipeline ran on, untouched.
SELECT name, desired_state, status, events, dead_letters FROM streamflink.pipelines WHERE name = 'alice_p';
SELECT count(*) FROM streamflink.dead_letter WHERE error = 'forged';

-- Alice lets Bob read her results: live() follows SELECT on the sink.
SET SESSION AUTHORIZATION regress_alice;
GRANT USAGE ON SCHEMA regress_alice TO regress_bob;
GRANT SELECT ON alice_out TO regress_bob;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_bob;
SELECT k, n, total FROM streamflink.live('alice_p', NULL::regress_alice.alice_out) ORDER BY k;
SELECT count(*) FROM streamflink.live('alice_p');
SELECT count(*) FROM streamflink.pipelines;	-- still only his
RESET SESSION AUTHORIZATION;

--
-- Quotas.
--
INSERT INTO streamflink.role_quota VALUES ('regress_bob', 1, 0, NULL);
SET SESSION AUTHORIZATION regress_bob;
SELECT streamflink.create_window_pipeline('bob_p2', source => 'bob_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'bob_out2');
SELECT to_regclass('bob_out2') AS sink_not_left_behind;
SELECT streamflink.start('bob_p');
SELECT * FROM streamflink.quotas;
RESET SESSION AUTHORIZATION;
-- A default for every role without a row: Alice's state is over one byte.
INSERT INTO streamflink.role_quota VALUES (NULL, NULL, NULL, 1);
SET SESSION AUTHORIZATION regress_alice;
SELECT streamflink.stop('alice_p');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'alice_p'$$);
DO $$
BEGIN
	PERFORM streamflink.start('alice_p');
EXCEPTION WHEN configuration_limit_exceeded THEN
	RAISE NOTICE '%: %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+ bytes', 'N bytes');
END
$$;
SELECT role, own_row, max_pipelines, pipelines, max_running, running, max_state_bytes,
       state_bytes > 1 AS over FROM streamflink.quotas;
RESET SESSION AUTHORIZATION;
SELECT role, own_row, max_pipelines, pipelines, max_running, running FROM streamflink.quotas
WHERE role::text LIKE 'regress_%' ORDER BY role::text;
DELETE FROM streamflink.role_quota;

-- Ownership follows role membership: what a group role owns, its members
-- manage; others still see nothing of it.
CREATE ROLE regress_team NOLOGIN;
GRANT streamflink_user TO regress_team;
GRANT regress_team TO regress_bob;
GRANT USAGE, CREATE ON SCHEMA regress_bob TO regress_team;
SET SESSION AUTHORIZATION regress_bob;
SET ROLE regress_team;
SELECT streamflink.create_source('team_src', brokers => regress_brokers(), topic => 'regress_tenancy',
       columns => 'k text, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('team_p', source => 'team_src', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'regress_bob.team_out');
RESET ROLE;
SELECT name, owner FROM streamflink.pipelines ORDER BY name;
SELECT streamflink.drop_pipeline('team_p', drop_sink => true);
SELECT streamflink.drop_source('team_src');
RESET SESSION AUTHORIZATION;
REVOKE USAGE, CREATE ON SCHEMA regress_bob FROM regress_team;
DROP ROLE regress_team;

-- produce() waits for its deliveries in short steps: a statement timeout
-- ends it (a broker that is not there).
SET statement_timeout = '1s';
SELECT streamflink.produce('127.0.0.1:1', 'nowhere', ARRAY['x']);
RESET statement_timeout;

-- The postmaster never restarted.
SELECT pg_postmaster_start_time() = :'postmaster_started' AS same_postmaster;
