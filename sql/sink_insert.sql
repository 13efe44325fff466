--
-- sink_insert: a window's first firing is written with a plain INSERT
-- (pg_sink.c), which must leave the sink exactly as the upsert did: a row
-- the user put in the sink table before the start is upserted; a BEFORE
-- INSERT trigger and a CHECK constraint still see every row, and the rows
-- they refuse become dead letters; a late event within the allowed
-- lateness replaces its window's row; the sink equals SQL's answer.  The
-- pipeline is a tenant's, and runs as her.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

CREATE ROLE regress_si_tenant;
GRANT streamflink_user TO regress_si_tenant;
CREATE SCHEMA si AUTHORIZATION regress_si_tenant;
SET ROLE regress_si_tenant;
SET search_path = si, public;

SELECT streamflink.create_source('si_src', brokers => regress_brokers(), topic => 'regress_sink_insert',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts', idle_timeout => '1 second');
SELECT streamflink.create_window_pipeline('si', source => 'si_src', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(v) AS total', sink => 'si_out',
       allowed_lateness => '2 minutes');

-- The tenant's own additions to the sink: a column the pipeline does not
-- write, a trigger that fills it and refuses key 'bad' with an integrity
-- error, and a constraint.
ALTER TABLE si.si_out ADD COLUMN note text;
ALTER TABLE si.si_out ADD CONSTRAINT small CHECK (total < 1000);
CREATE FUNCTION si.si_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.k = 'bad' THEN
		RAISE EXCEPTION 'no bad keys' USING ERRCODE = 'check_violation';
	END IF;
	NEW.note := coalesce(NEW.note, 'trigger');
	RETURN NEW;
END
$$;
CREATE TRIGGER si_note BEFORE INSERT ON si.si_out FOR EACH ROW EXECUTE FUNCTION si.si_note();

-- Rows the user wrote before the start: one under a window the pipeline
-- fires ('a' at 00:00, upserted: its note stays), one under none.
INSERT INTO si.si_out VALUES
	('a', '2024-01-01 00:00:00+00', '2024-01-01 00:01:00+00', 999, 999, 'user'),
	('user', '2024-01-01 00:00:00+00', '2024-01-01 00:01:00+00', 7, 7, 'user');

-- The events, also in a table for SQL's answer: 40 keys in the first
-- minute, 10 in the second, 'a' twice, 'big' over the constraint, 'bad'
-- refused by the trigger; later minutes fire the earlier ones.
CREATE TABLE si.si_events AS
SELECT 'k' || i AS k, i AS v, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' AS ts
FROM generate_series(0, 39) i
UNION ALL
SELECT 'k' || i, i, timestamptz '2024-01-01 00:01:00+00' + i * interval '1 second'
FROM generate_series(0, 9) i
UNION ALL
VALUES ('a', 1, timestamptz '2024-01-01 00:00:45+00'),
	   ('a', 2, timestamptz '2024-01-01 00:00:50+00'),
	   ('big', 5000, timestamptz '2024-01-01 00:00:51+00'),
	   ('bad', 1, timestamptz '2024-01-01 00:00:52+00'),
	   ('x', 1, timestamptz '2024-01-01 00:02:30+00');
RESET ROLE;

SELECT streamflink.produce(regress_brokers(), 'regress_sink_insert',
	(SELECT array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY ts, k)
	 FROM si.si_events), 0);
SET ROLE regress_si_tenant;
SELECT streamflink.start('si');
SELECT wait_until($$SELECT watermark = '2024-01-01 00:02:30+00' FROM streamflink.pipelines WHERE name = 'si'$$);

-- Late events within the allowed lateness: k0's window at 00:00 fires
-- again (its row replaced), a new key's window at 00:00 fires first late.
INSERT INTO si.si_events VALUES
	('k0', 100, '2024-01-01 00:00:55+00'),
	('late', 3, '2024-01-01 00:00:56+00');
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_sink_insert', ARRAY[
	'{"k": "k0", "v": 100, "ts": "2024-01-01 00:00:55+00"}',
	'{"k": "late", "v": 3, "ts": "2024-01-01 00:00:56+00"}'], 0);
SET ROLE regress_si_tenant;
SELECT wait_until($$SELECT count(*) = 2 FROM si.si_out WHERE k = 'late' OR (k = 'k0' AND n = 2)$$);

-- A statement-level UPDATE trigger, which the upsert fires even when it
-- only inserts: the next window's first firing is then upserted, so the
-- trigger fires.  Then an hour later, which fires and drops everything.
CREATE TABLE si.si_log (at timestamptz);
CREATE FUNCTION si.si_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO si.si_log VALUES (now());
	RETURN NULL;
END
$$;
CREATE TRIGGER si_log AFTER UPDATE ON si.si_out FOR EACH STATEMENT EXECUTE FUNCTION si.si_log();
INSERT INTO si.si_events VALUES ('x', 1, '2024-01-01 01:00:00+00');
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_sink_insert', ARRAY[
	'{"k": "x", "v": 1, "ts": "2024-01-01 01:00:00+00"}'], 0);
SET ROLE regress_si_tenant;
SELECT wait_until($$SELECT events = 58 AND watermark = '2024-01-01 01:00:00+00'
                           AND (SELECT count(*) FROM si.si_out WHERE k = 'x') = 1
                    FROM streamflink.pipelines WHERE name = 'si'$$);
SELECT status, error, events, late_events FROM streamflink.pipelines WHERE name = 'si';

-- SQL's answer: every window the watermark passed, less the refused rows;
-- the sink also keeps the user's row under no window.
CREATE VIEW si.si_expected AS
SELECT k, date_bin('1 minute', ts, 'epoch') AS window_start,
       date_bin('1 minute', ts, 'epoch') + interval '1 minute' AS window_end,
       count(*) AS n, sum(v) AS total
FROM si.si_events
GROUP BY 1, 2
HAVING date_bin('1 minute', ts, 'epoch') + interval '1 minute' <= '2024-01-01 01:00:00+00'
   AND k NOT IN ('big', 'bad');
SELECT (SELECT count(*) FROM si.si_expected) AS expected_windows,
       (SELECT count(*) FROM si.si_out WHERE k <> 'user') AS sink_windows,
       (SELECT count(*) FROM (SELECT * FROM si.si_expected
                              EXCEPT SELECT k, window_start, window_end, n, total FROM si.si_out) x) AS missing,
       (SELECT count(*) FROM (SELECT k, window_start, window_end, n, total FROM si.si_out WHERE k <> 'user'
                              EXCEPT SELECT * FROM si.si_expected) x) AS wrong;
SELECT * FROM si.si_out WHERE k IN ('a', 'user', 'k0', 'late') ORDER BY k, window_start;
SELECT note, count(*) FROM si.si_out GROUP BY note ORDER BY note;
SELECT count(*) > 0 AS update_statement_trigger_fired FROM si.si_log;
SELECT convert_from(payload, 'UTF8')::jsonb->>'k' AS k, kind, error
FROM streamflink.dead_letters WHERE pipeline = 'si' ORDER BY 1;

-- The table changed under the running pipeline: pg_sink.c keeps its
-- answer to "may a batch of new rows be a plain INSERT?" until the
-- table's invalidation, so each change counts from the next batch.  Each
-- step sends an event of key x an hour later (as the superuser, who may
-- produce), which fires x's window of the hour before, and waits for the
-- pipeline to have read 'events' events and written 'x_rows' rows of x.
RESET ROLE;
CREATE FUNCTION public.si_next_x(at text, events int, x_rows int) RETURNS bool
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM streamflink.produce(regress_brokers(), 'regress_sink_insert',
		ARRAY[json_build_object('k', 'x', 'v', 1, 'ts', at)::text], 0);
	IF x_rows IS NULL THEN
		RETURN true;
	END IF;
	RETURN wait_until(format($q$SELECT events = %s AND watermark = %L
		AND (SELECT count(*) FROM si.si_out WHERE k = 'x') = %s
		FROM streamflink.pipelines WHERE name = 'si'$q$, events, at, x_rows));
END
$$;

-- Without the trigger, the next window's first firing (x at 01:00) is a
-- plain INSERT again.  With row-level security forced on the owner, the
-- next one (x at 02:00) is the upsert again, which checks the SELECT
-- policy on every new row (ON CONFLICT DO UPDATE reads the key columns; a
-- plain INSERT does not): the policy logs the worker's rows.
SET ROLE regress_si_tenant;
DROP TRIGGER si_log ON si.si_out;
RESET ROLE;
SELECT si_next_x('2024-01-01 02:00:00+00', 59, 2);
SET ROLE regress_si_tenant;
CREATE TABLE si.si_seen (pid int, k text, window_start timestamptz);
CREATE FUNCTION si.si_seen(k text, window_start timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO si.si_seen VALUES (pg_backend_pid(), k, window_start);
	RETURN true;
END
$$;
CREATE POLICY si_read ON si.si_out FOR SELECT USING (si.si_seen(k, window_start));
CREATE POLICY si_write ON si.si_out FOR INSERT WITH CHECK (true);
CREATE POLICY si_change ON si.si_out FOR UPDATE USING (true);
ALTER TABLE si.si_out ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
RESET ROLE;
SELECT si_next_x('2024-01-01 03:00:00+00', 60, 3);
SET ROLE regress_si_tenant;
SELECT s.k, s.window_start FROM si.si_seen s JOIN streamflink.pipelines p ON p.pid = s.pid
WHERE p.name = 'si' ORDER BY 2;
SELECT k, window_start, window_end, n, total, note FROM si.si_out
WHERE k = 'x' AND window_start >= '2024-01-01 01:00:00+00' ORDER BY window_start;

-- Without row-level security the next window (x at 03:00) is a plain
-- INSERT again.
ALTER TABLE si.si_out NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY;
RESET ROLE;
SELECT si_next_x('2024-01-01 04:00:00+00', 61, 4);

-- A batch of new rows is written by COPY (pg_sink.c: copy_batch) when the
-- table's columns have the rows' own types, by the INSERT, which casts
-- them, when not.  A row trigger records which wrote each row: whether
-- its backend is running a COPY.  x's window at 04:00 is copied; with
-- total made numeric, its window at 05:00 is inserted, cast.
SET ROLE regress_si_tenant;
CREATE TABLE si.si_how (k text, window_start timestamptz, copied boolean);
CREATE FUNCTION si.si_how() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_stat_clear_snapshot();
	INSERT INTO si.si_how VALUES (NEW.k, NEW.window_start,
		EXISTS (SELECT FROM pg_stat_progress_copy WHERE pid = pg_backend_pid()));
	RETURN NULL;
END
$$;
CREATE TRIGGER si_how AFTER INSERT ON si.si_out FOR EACH ROW EXECUTE FUNCTION si.si_how();
RESET ROLE;
SELECT si_next_x('2024-01-01 05:00:00+00', 62, 5);
SET ROLE regress_si_tenant;
ALTER TABLE si.si_out ALTER COLUMN total TYPE numeric;
RESET ROLE;
SELECT si_next_x('2024-01-01 06:00:00+00', 63, 6);
SET ROLE regress_si_tenant;
SELECT k, window_start, copied FROM si.si_how ORDER BY window_start;
SELECT k, window_start, n, total, pg_typeof(total) AS total_type, note FROM si.si_out
WHERE k = 'x' AND window_start >= '2024-01-01 03:00:00+00' ORDER BY window_start;

-- The owner revokes UPDATE on its own table, which the upsert needs: the
-- next batch (x at 06:00) is the upsert, refused, and the pipeline fails
-- and says why, rather than inserting on.
REVOKE UPDATE ON si.si_out FROM regress_si_tenant;
RESET ROLE;
SELECT si_next_x('2024-01-01 07:00:00+00', NULL, NULL);
SET ROLE regress_si_tenant;
-- (the worker restarts and fails again: the status is checked in the wait)
SELECT wait_until($$SELECT status = 'failed' AND error = 'permission denied for table si_out'
                    FROM streamflink.pipelines WHERE name = 'si'$$);
SELECT count(*) AS x_windows FROM si.si_out WHERE k = 'x';

SELECT streamflink.stop('si');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'si'$$);
SELECT streamflink.drop_pipeline('si', drop_sink => true);
SELECT streamflink.drop_source('si_src');
DROP VIEW si.si_expected;
DROP TABLE si.si_events;
DROP FUNCTION si.si_note();
DROP TABLE si.si_log;
DROP FUNCTION si.si_log();
DROP TABLE si.si_seen;
DROP TABLE si.si_how;
DROP FUNCTION si.si_how();
DROP FUNCTION si.si_seen(text, timestamptz);
RESET ROLE;
DROP FUNCTION public.si_next_x(text, int, int);
DROP SCHEMA si;
DROP ROLE regress_si_tenant;
