--
-- hardening: librdkafka options a tenant may not set, an aggregate list
-- that tries to escape the query it is spliced into, and a result row the
-- sink refuses (a key too long for its unique index), which becomes a dead
-- letter instead of failing the pipeline at every replay.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- A tenant: not a superuser, granted streamflink_user as a DBA would.
CREATE ROLE regress_tenant;
GRANT streamflink_user TO regress_tenant;
SET ROLE regress_tenant;

-- Settings that run commands, load code or read server files: refused,
-- with a hint naming what is allowed.
\set VERBOSITY default
SELECT streamflink.create_source('t_kinit', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{sasl.kerberos.kinit.cmd=touch /tmp/pwned}');
\set VERBOSITY terse
SELECT streamflink.create_source('t_plugin', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{plugin.library.paths=/tmp/evil.so}');
SELECT streamflink.create_source('t_ca', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{ssl.ca.location=/etc/shadow}');
SELECT streamflink.create_source('t_key', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{ssl.key.location=/var/lib/postgresql/.ssh/id_rsa}');
SELECT streamflink.create_source('t_engine', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{ssl.engine.location=/tmp/evil.so}');
SELECT streamflink.create_source('t_keytab', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{sasl.kerberos.keytab=/etc/krb5.keytab}');
SELECT streamflink.create_source('t_gssapi', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{sasl.mechanism=GSSAPI}');
SELECT streamflink.create_source('t_oidc', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{sasl.oauthbearer.token.endpoint.url=file:///etc/passwd}');
SELECT streamflink.create_source('t_debug', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{debug=all}');
SELECT streamflink.create_source('t_unknown', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{no.such.setting=1}');
-- Our own settings: refused for everyone (exactly-once rests on them).
SELECT streamflink.create_source('t_reset', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{auto.offset.reset=latest}');
-- What a real cluster connection needs is allowed.
SELECT streamflink.create_source('t_ok', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => ARRAY['security.protocol=sasl_ssl',
       'sasl.mechanism=SCRAM-SHA-512', 'sasl.username=me', 'sasl.password=secret',
       'ssl.ca.pem=-----BEGIN CERTIFICATE-----', 'client.id=tenant',
       'fetch.wait.max.ms=10', 'socket.timeout.ms=30000', 'isolation.level=read_committed']);
RESET ROLE;
SELECT name, owner FROM streamflink.sources WHERE name LIKE 't\_%';

-- A superuser may set what needs one, but not our own settings.
SELECT streamflink._check_kafka_options('{ssl.ca.location=/etc/ssl/certs/ca.pem,debug=all}', current_user::regrole);
SELECT streamflink._check_kafka_options('{enable.auto.commit=true}', current_user::regrole);
SELECT streamflink._check_kafka_options('{group.id=theirs}', current_user::regrole);
-- The worker checks again: a source whose row was made to carry a
-- dangerous setting for a non-superuser owner fails to start, and says so.
-- (The pipeline is the tenant's: a superuser's may not read its source.)
UPDATE streamflink.source SET options = '{sasl.kerberos.kinit.cmd=touch /tmp/pwned}'
WHERE name = 't_ok';
CREATE SCHEMA regress_tenant AUTHORIZATION regress_tenant;
SET ROLE regress_tenant;
SELECT streamflink.create_window_pipeline('t_ok', source => 't_ok', key => '',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 't_ok_out');
SELECT streamflink.start('t_ok');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 't_ok'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 't_ok';
SELECT streamflink.stop('t_ok');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 't_ok'$$);
SELECT streamflink.drop_pipeline('t_ok', drop_sink => true);
SELECT streamflink.drop_source('t_ok');
RESET ROLE;
DROP SCHEMA regress_tenant;

--
-- The aggregate list is a SELECT list and nothing else: text that would
-- take a FROM clause of its own, or comment out what follows it, is
-- refused, and no sink table is made (the attack created the sink WITH
-- DATA, copied from another table).
--
CREATE TABLE regress_secret (k text, n bigint);
INSERT INTO regress_secret VALUES ('password', 42);
SELECT streamflink.create_source('agg', brokers => regress_brokers(), topic => 'regress_longkey',
       columns => 'k text, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('steal', source => 'agg', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n FROM regress_secret GROUP BY k --', sink => 'steal_out');
SELECT streamflink.create_window_pipeline('steal', source => 'agg', key => '',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'max(s.k) AS k, count(*) AS n FROM regress_secret s --', sink => 'steal_out');
SELECT streamflink.create_window_pipeline('steal', source => 'agg', key => '',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n FROM (SELECT * FROM regress_secret) e --', sink => 'steal_out');
SELECT streamflink.create_window_pipeline('steal', source => 'agg', key => '',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n /*', sink => 'steal_out');
SELECT streamflink.create_window_pipeline('steal', source => 'agg', key => '',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n; DROP TABLE regress_secret', sink => 'steal_out');
SELECT to_regclass('steal_out') AS no_sink, count(*) AS secret_intact FROM regress_secret;
-- A trailing comment is harmless: the list ends there, and the sink's
-- columns come from the analysed list, not from the text.
SELECT streamflink.create_window_pipeline('commented', source => 'agg', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n -- how many', sink => 'commented_out');
\d commented_out
SELECT streamflink.drop_pipeline('commented', drop_sink => true);
DROP TABLE regress_secret;

--
-- A key too long for the sink's unique index (btree entries are limited to
-- about 2.7 kB): the row is refused (SQLSTATE 54000) when its window
-- fires.  It goes to the dead-letter table as JSON, the other rows of the
-- batch land, and the pipeline runs on.  So does a row a user's constraint
-- on the sink refuses (23514).
--
SELECT streamflink.create_window_pipeline('longkey', source => 'agg', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n', sink => 'longkey_out');
ALTER TABLE longkey_out ADD CONSTRAINT no_z CHECK (k <> 'z');
CREATE FUNCTION regress_long_key() RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT string_agg(md5(i::text), '') FROM generate_series(1, 125) i $$;
SELECT length(regress_long_key());
SELECT streamflink.produce(regress_brokers(), 'regress_longkey', ARRAY[
	json_build_object('k', 'a', 'ts', '2024-01-01 00:00:10+00')::text,
	json_build_object('k', regress_long_key(), 'ts', '2024-01-01 00:00:20+00')::text,
	json_build_object('k', 'b', 'ts', '2024-01-01 00:00:30+00')::text,
	json_build_object('k', 'b', 'ts', '2024-01-01 00:00:40+00')::text,
	json_build_object('k', 'z', 'ts', '2024-01-01 00:00:50+00')::text,
	json_build_object('k', 'c', 'ts', '2024-01-01 01:00:00+00')::text], 0);
SELECT streamflink.start('longkey');
SELECT wait_until($$SELECT count(*) = 2 FROM longkey_out$$);
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.dead_letters WHERE pipeline = 'longkey'$$);
SELECT k, window_start, n FROM longkey_out ORDER BY k;
SELECT topic, partition, "offset", kind,
       length(convert_from(payload, 'UTF8')::jsonb->>'k') AS key_length,
       convert_from(payload, 'UTF8')::jsonb->>'k' IN ('z', regress_long_key()) AS key_kept,
       convert_from(payload, 'UTF8')::jsonb - 'k' AS rest, error
FROM streamflink.dead_letters WHERE pipeline = 'longkey' ORDER BY error;
SELECT status, error FROM streamflink.pipelines WHERE name = 'longkey';
SELECT streamflink.stop('longkey');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'longkey'$$);
-- Once stopped, it was not restarted by a failure (the row did not fail it).
SELECT count(*) FROM longkey_out;
SELECT streamflink.drop_pipeline('longkey', drop_sink => true);
SELECT streamflink.drop_source('agg');
DROP FUNCTION regress_long_key();

-- The tenant owns nothing any more.
DROP ROLE regress_tenant;
