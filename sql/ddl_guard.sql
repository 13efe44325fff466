--
-- ddl_guard: what a running pipeline uses cannot be dropped, by any path
-- (DROP TABLE, DROP COLUMN, DROP TYPE ... CASCADE, DROP SCHEMA ... CASCADE,
-- DROP OWNED, DROP EXTENSION); a stopped pipeline whose sink is gone says
-- so when started.  Runs after tenancy (its roles and pipelines), last: it
-- drops the extension.  The postmaster never restarts.
--
\set SHOW_CONTEXT never
SELECT pg_postmaster_start_time() AS postmaster_started \gset

-- Only Alice's pipeline runs.
SELECT count(streamflink.stop(name)) >= 0 AS stopped FROM streamflink.pipelines WHERE desired_state = 'running';
SELECT wait_until($$SELECT bool_and(pid IS NULL) FROM streamflink.pipelines$$);
SET SESSION AUTHORIZATION regress_alice;
SELECT streamflink.start('alice_p');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'alice_p'$$);
DROP TABLE alice_out;
ALTER TABLE alice_out DROP COLUMN total;
DROP TYPE streamflink.source_alice_src CASCADE;
ALTER TYPE streamflink.source_alice_src DROP ATTRIBUTE v;
RESET SESSION AUTHORIZATION;
DROP SCHEMA regress_alice CASCADE;
DROP OWNED BY regress_alice;
DROP EXTENSION streamflink;
DROP EXTENSION streamflink CASCADE;
SET client_min_messages = warning;	-- its notice lists every source type
DROP SCHEMA streamflink CASCADE;
RESET client_min_messages;
SELECT name, desired_state, status FROM streamflink.pipelines WHERE name = 'alice_p';

-- Bob's pipeline is stopped: its sink may go; the pipeline then refuses
-- to start, and can still be dropped.
SET SESSION AUTHORIZATION regress_bob;
DROP TABLE bob_out;
SELECT streamflink.start('bob_p');
SELECT name, desired_state FROM streamflink.pipelines;
SELECT streamflink.drop_pipeline('bob_p', drop_sink => true);
RESET SESSION AUTHORIZATION;

-- Stopped, and its worker gone, the extension drops.
SELECT streamflink.stop('alice_p');
SELECT wait_until($$SELECT bool_and(pid IS NULL) FROM streamflink.pipelines$$);
-- A sink altered since its pipeline was created: live() says so.
SET SESSION AUTHORIZATION regress_alice;
ALTER TABLE alice_out ALTER COLUMN total TYPE text;
SELECT * FROM streamflink.live('alice_p', NULL::alice_out);
-- Dropping her pipeline takes its checkpoints with it.
SELECT count(*) > 0 AS has_checkpoints FROM streamflink.checkpoints WHERE pipeline = 'alice_p';
SELECT streamflink.drop_pipeline('alice_p', drop_sink => true);
RESET SESSION AUTHORIZATION;
SELECT count(*) AS checkpoints_left FROM streamflink.checkpoint c
WHERE NOT EXISTS (SELECT 1 FROM streamflink.pipeline p WHERE p.id = c.pipeline_id);
SELECT 'streamflink/' || oid AS state_dir FROM pg_database WHERE datname = current_database() \gset
SELECT count(*) > 0 AS has_state FROM pg_ls_dir(:'state_dir') d;
DROP EXTENSION streamflink CASCADE;
SELECT count(*) FROM pg_extension WHERE extname = 'streamflink';
-- The pipelines' state went with it: a new catalog numbers pipelines from 1.
SELECT count(*) AS state_left FROM pg_ls_dir(:'state_dir', true, false) d;
SELECT pg_postmaster_start_time() = :'postmaster_started' AS same_postmaster;

DROP OWNED BY regress_alice, regress_bob, regress_carol;
DROP ROLE regress_alice, regress_bob, regress_carol;
