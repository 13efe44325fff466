--
-- shared_owner: streamflink_user, the role a DBA grants, owns nothing.
-- Every tenant is a member of it, so a tenant could SET ROLE to it and
-- create sources and pipelines that every other tenant sees, starts, stops
-- and drops, outside its own quota (the default quota row, or none,
-- applied instead).
--
\set SHOW_CONTEXT never
CREATE ROLE regress_so;
GRANT streamflink_user TO regress_so;
CREATE SCHEMA so AUTHORIZATION regress_so;
INSERT INTO streamflink.role_quota VALUES ('regress_so', 0, 0, NULL);
SET ROLE regress_so;
SET search_path = so, public;
SELECT streamflink.create_source('so', brokers => regress_brokers(), topic => 'regress_so',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('so', source => 'so', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'so_out');
GRANT USAGE, CREATE ON SCHEMA so TO streamflink_user;
SET ROLE streamflink_user;
SELECT streamflink.create_source('so_shared', brokers => regress_brokers(), topic => 'regress_so',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('so_shared', source => 'so_shared', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'so_shared_out');
-- Nor by hand.
CREATE TYPE so_t AS (k int, ts timestamptz);
INSERT INTO streamflink.source (name, brokers, topic, format, row_type, event_time, max_out_of_orderness)
VALUES ('so_hand', regress_brokers(), 'regress_so', 'json', 'so_t', 'ts', '0');
DROP TYPE so_t;
SET ROLE regress_so;
SELECT name, owner FROM streamflink.sources ORDER BY name;
SELECT name, owner FROM streamflink.pipelines ORDER BY name;
SELECT streamflink.drop_source('so');
RESET ROLE;
RESET search_path;
DELETE FROM streamflink.role_quota;
DROP SCHEMA so;
DROP ROLE regress_so;
