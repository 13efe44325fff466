--
-- checkpoint_format: the checkpoint row records the pipeline watermark
-- (restored from it at start) and the state format of its snapshot; a
-- snapshot of another release's format is refused with an error naming
-- that release, and so is a catalog older than the library.  An upgraded
-- 0.1 installation has the same catalog as a fresh 0.2 one.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
-- (an earlier suite dropped the extension: a fresh 0.2 install)
CREATE EXTENSION streamflink;

SELECT streamflink.create_source('fmt', brokers => regress_brokers(), topic => 'regress_format',
       columns => 'k int, ts timestamptz', event_time => 'ts',
       max_out_of_orderness => '5 seconds');
SELECT streamflink.create_window_pipeline('fmt', source => 'fmt', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n',
       sink => 'fmt_out');
SELECT streamflink.produce(regress_brokers(), 'regress_format', ARRAY[
	'{"k": 1, "ts": "2024-01-01 00:00:10+00"}',
	'{"k": 2, "ts": "2024-01-01 00:00:20+00"}',
	'{"k": 1, "ts": "2024-01-01 00:01:30+00"}'], 0);
SELECT streamflink.start('fmt');
SELECT wait_until($$SELECT events = 3 AND last_checkpoint IS NOT NULL
                    FROM streamflink.pipelines WHERE name = 'fmt'$$);
SELECT streamflink.stop('fmt');

-- The last checkpoint holds the watermark (the latest event less the
-- out-of-orderness) and this release's state format.
SELECT c.watermark, c.state_format
FROM streamflink.checkpoint c JOIN streamflink.pipeline p ON p.id = c.pipeline_id
WHERE p.name = 'fmt' ORDER BY c.id DESC LIMIT 1;
SELECT * FROM fmt_out ORDER BY k, window_start;

-- Started again, the pipeline has that watermark before any new event.
SELECT streamflink.start('fmt');
SELECT wait_until($$SELECT status = 'running' AND watermark IS NOT NULL
                    FROM streamflink.pipelines WHERE name = 'fmt'$$);
SELECT watermark FROM streamflink.pipelines WHERE name = 'fmt';
SELECT streamflink.stop('fmt');

-- A snapshot written by 0.1 (as the upgrade marks 0.1's rows): refused,
-- and the worker waits to be stopped instead of restarting.
UPDATE streamflink.checkpoint SET state_format = 1
WHERE pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'fmt')
  AND id = (SELECT max(id) FROM streamflink.checkpoint c
            WHERE c.pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'fmt'));
SELECT (pg_stat_file('server.log')).size AS log_from \gset
SELECT streamflink.start('fmt');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'fmt'$$);
SELECT pg_sleep(1);
SELECT status, error FROM streamflink.pipelines WHERE name = 'fmt';
-- The server log has its detail and hint.
SELECT m[1] AS detail, m[2] AS hint
FROM regexp_matches(pg_read_file('server.log', :log_from,
                                 (pg_stat_file('server.log')).size - :log_from),
                    'DETAIL:  Checkpoint \d+ (has state format 1[^\n]*)\n[^\n]*HINT:  ([^\n]*)') m;
SELECT streamflink.stop('fmt');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'fmt'$$);

-- A snapshot of an earlier 0.2 build (format 2: a window's key led by its
-- group key, a timer written per window; format 3: an int key's bytes in
-- native order; format 4: hopping windows kept whole, not as slices) is
-- refused as well, by name.
UPDATE streamflink.checkpoint SET state_format = 4
WHERE pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'fmt')
  AND id = (SELECT max(id) FROM streamflink.checkpoint c
            WHERE c.pipeline_id = (SELECT id FROM streamflink.pipeline WHERE name = 'fmt'));
SELECT streamflink.start('fmt');
SELECT wait_until($$SELECT status = 'failed' FROM streamflink.pipelines WHERE name = 'fmt'$$);
SELECT status, error FROM streamflink.pipelines WHERE name = 'fmt';
SELECT streamflink.stop('fmt');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'fmt'$$);

-- The column has no default: a row must say which format it holds.
SELECT column_default IS NULL AS no_default, is_nullable
FROM information_schema.columns
WHERE table_schema = 'streamflink' AND table_name = 'checkpoint' AND column_name = 'state_format';

SELECT streamflink.drop_pipeline('fmt');
SELECT streamflink.drop_source('fmt');

-- A 0.1 catalog in another database (through dblink): a pipeline started
-- there is refused until the extension is updated; updated, the catalog
-- equals this database's fresh 0.2 one.
CREATE EXTENSION dblink;
CREATE DATABASE regress_sf_old;
DO $$
BEGIN
	EXECUTE format('ALTER DATABASE regress_sf_old SET regress.brokers = %L', regress_brokers());
END
$$;
SELECT dblink_connect('old', format('dbname=regress_sf_old host=%s port=%s user=%s',
                      current_setting('unix_socket_directories'), current_setting('port'), current_user));
SELECT dblink_exec('old', $$CREATE EXTENSION streamflink VERSION '0.1'$$);
SELECT * FROM dblink('old', $$SELECT extversion FROM pg_extension WHERE extname = 'streamflink'$$) AS t(v text);
SELECT * FROM dblink('old', $$SELECT streamflink.create_source('o', brokers => current_setting('regress.brokers'),
       topic => 'regress_format', columns => 'k int, ts timestamptz', event_time => 'ts')$$) AS t(r text);
SELECT * FROM dblink('old', $$SELECT streamflink.create_window_pipeline('o', source => 'o', key => 'k',
       "window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n', sink => 'o_out')$$) AS t(r text);
SELECT * FROM dblink('old', $$SELECT streamflink.start('o')$$) AS t(r text);
CREATE FUNCTION old_status() RETURNS TABLE (status text, error text) LANGUAGE sql AS $$
	SELECT * FROM dblink('old', $q$SELECT status, error FROM streamflink.pipelines WHERE name = 'o'$q$)
		AS t(status text, error text)
$$;
SELECT wait_until($$SELECT status = 'failed' FROM old_status()$$);
SELECT * FROM old_status();
SELECT * FROM dblink('old', $$SELECT streamflink.stop('o')$$) AS t(r text);
SELECT dblink_exec('old', 'ALTER EXTENSION streamflink UPDATE');
SELECT * FROM dblink('old', $$SELECT extversion FROM pg_extension WHERE extname = 'streamflink'$$) AS t(v text);

-- The catalog, as text: tables' columns, constraints, indexes, views,
-- functions, triggers and the tables pg_dump keeps.
CREATE FUNCTION sf_catalog() RETURNS SETOF text LANGUAGE sql AS $f$
	SELECT format('column %s.%s %s %s %s %s', table_name, column_name, ordinal_position,
				  data_type, is_nullable, column_default)
	FROM information_schema.columns WHERE table_schema = 'streamflink'
	UNION ALL
	SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
	FROM pg_constraint WHERE connamespace = 'streamflink'::regnamespace
	UNION ALL
	SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'streamflink'
	UNION ALL
	SELECT format('view %s %s', viewname, md5(pg_get_viewdef(format('streamflink.%I', viewname)::regclass)))
	FROM pg_views WHERE schemaname = 'streamflink'
	UNION ALL
	SELECT format('function %s(%s) %s %s %s %s %s', proname, pg_get_function_identity_arguments(oid),
				  pg_get_function_result(oid), prosecdef, provolatile, proacl, md5(prosrc))
	FROM pg_proc WHERE pronamespace = 'streamflink'::regnamespace
	UNION ALL
	SELECT format('trigger %s %s', tgrelid::regclass, pg_get_triggerdef(oid))
	FROM pg_trigger WHERE NOT tgisinternal
	  AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'streamflink'::regnamespace)
	UNION ALL
	SELECT format('config %s', c::regclass) FROM pg_extension, unnest(extconfig) c
	WHERE extname = 'streamflink'
	UNION ALL
	SELECT format('type %s %s', t.typname, t.typtype)
	FROM pg_type t JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
	JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
	WHERE e.extname = 'streamflink' AND d.deptype = 'e'
	UNION ALL
	SELECT format('event trigger %s %s %s %s', evtname, evtevent, evtfoid::regproc, evttags)
	FROM pg_event_trigger
$f$;
SELECT dblink_exec('old', format('CREATE FUNCTION sf_catalog() RETURNS SETOF text LANGUAGE sql AS %L',
                                 (SELECT prosrc FROM pg_proc WHERE proname = 'sf_catalog')));
SELECT count(*) > 100 AS catalog_items FROM sf_catalog();
(SELECT 'only fresh: ' || x FROM sf_catalog() x
 EXCEPT SELECT 'only fresh: ' || y FROM dblink('old', 'SELECT * FROM sf_catalog()') AS t(y text))
UNION ALL
(SELECT 'only upgraded: ' || y FROM dblink('old', 'SELECT * FROM sf_catalog()') AS t(y text)
 EXCEPT SELECT 'only upgraded: ' || x FROM sf_catalog() x);

SELECT dblink_disconnect('old');
DROP DATABASE regress_sf_old WITH (FORCE);
DROP FUNCTION sf_catalog();
DROP FUNCTION old_status();
DROP EXTENSION dblink;
DROP EXTENSION streamflink CASCADE;
