--
-- quota_race: a role's quota holds when two of its sessions create or
-- start pipelines at once, whatever their isolation level.  A session in a
-- REPEATABLE READ transaction took its snapshot before the other session
-- committed: it must still count that session's pipeline.  The other
-- session is a dblink connection as the same tenant.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE EXTENSION dblink;
CREATE ROLE regress_qr;
GRANT streamflink_user TO regress_qr;
CREATE SCHEMA qr AUTHORIZATION regress_qr;
INSERT INTO streamflink.role_quota VALUES ('regress_qr', 2, 1, NULL);
SELECT dblink_connect('other', pg_catalog.format('dbname=%s host=%s port=%s user=' || current_user,
                      current_database(), current_setting('unix_socket_directories'),
                      current_setting('port')));
SELECT dblink_exec('other', 'SET ROLE regress_qr');
SELECT dblink_exec('other', 'SET search_path = qr');

SET ROLE regress_qr;
SET search_path = qr, public;
SELECT streamflink.create_source('qr', brokers => regress_brokers(), topic => 'regress_qr',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('qr_a', source => 'qr', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'qr_a_out');

-- max_pipelines = 2: this transaction's snapshot shows one pipeline; the
-- other session creates the second and commits; this one must not create
-- a third.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM streamflink.pipelines;
RESET ROLE;
SELECT * FROM dblink('other', $$SELECT streamflink.create_window_pipeline('qr_b', source => 'qr', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'qr_b_out')$$) AS t(r text);
SET ROLE regress_qr;
SELECT streamflink.create_window_pipeline('qr_c', source => 'qr', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'qr_c_out');
ROLLBACK;
SELECT name FROM streamflink.pipelines ORDER BY name;

-- max_running = 1: the same with starts.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM streamflink.pipelines WHERE desired_state = 'running';
RESET ROLE;
SELECT * FROM dblink('other', $$SELECT streamflink.start('qr_b')$$) AS t(r text);
SET ROLE regress_qr;
SELECT streamflink.start('qr_a');
ROLLBACK;
SELECT name, desired_state FROM streamflink.pipelines ORDER BY name;

-- And SERIALIZABLE.
SELECT * FROM dblink('other', $$SELECT streamflink.stop('qr_b')$$) AS t(r text);
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM streamflink.pipelines WHERE desired_state = 'running';
RESET ROLE;
SELECT * FROM dblink('other', $$SELECT streamflink.start('qr_b')$$) AS t(r text);
SET ROLE regress_qr;
SELECT streamflink.start('qr_a');
ROLLBACK;
SELECT name, desired_state FROM streamflink.pipelines ORDER BY name;

SELECT streamflink.stop('qr_b');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines$$);
SELECT streamflink.drop_pipeline(p, drop_sink => true) FROM unnest(ARRAY['qr_a', 'qr_b']) p;
SELECT streamflink.drop_source('qr');
RESET ROLE;
RESET search_path;
SELECT dblink_disconnect('other');
DELETE FROM streamflink.role_quota;
DROP SCHEMA qr;
DROP ROLE regress_qr;
DROP EXTENSION dblink;
