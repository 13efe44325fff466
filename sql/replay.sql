--
-- replay: streamflink._replay, the deterministic run of a pipeline's
-- operator without Kafka, and the window operator's answers it shows:
-- sessions merged after firing, keys equal in SQL but not in bytes,
-- windows outside the range of timestamps.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_source('rp', brokers => '127.0.0.1:1', topic => 'rp',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');

-- Basics: every message has a row saying how it was taken.
SELECT streamflink.create_window_pipeline('rp_tumble', 'rp', 'k', 'tumble',
       'count(*) AS n, sum(v) AS total', 'rp_tumble_out', size => '10 seconds');
SELECT ord, partition, "offset", event_time, watermark, status, reason
FROM streamflink._replay('rp_tumble', ARRAY[
	'{"k": "a", "v": 1, "ts": "2024-01-01 00:00:01"}',
	'{"k": "b", "v": 2, "ts": "2024-01-01 00:00:12"}',
	'{"k": "a", "v": 3, "ts": "2024-01-01 00:00:05"}',
	'not json',
	'{"k": "a", "v": 4, "ts": "2024-01-01 00:00:13"}'],
	partitions => ARRAY[0, 0, 0, 1, 1], seed => 1, p_advance => 1, p_checkpoint => 0, p_restore => 0);
SELECT * FROM rp_tumble_out ORDER BY k, window_start;
SELECT partition, "offset", error FROM streamflink.dead_letters WHERE pipeline = 'rp_tumble';
SELECT partition, "offset", event_time, watermark, reason FROM streamflink.late_events WHERE pipeline = 'rp_tumble';

-- Restores from checkpoints give the same sink (checked at scale by
-- test/window_diff.sh); a restore rolls back what was written since.
TRUNCATE rp_tumble_out;
SELECT count(*) FILTER (WHERE status = 'accepted') AS accepted
FROM streamflink._replay('rp_tumble',
	ARRAY(SELECT format('{"k": "k%s", "v": %s, "ts": "2024-01-01 00:00:%s"}', i % 3, i, i % 50)
		  FROM generate_series(1, 200) i),
	seed => 7, p_advance => 0.3, p_checkpoint => 0.1, p_restore => 0.1, max_restores => 5);
SELECT k, count(*), sum(n) AS events, sum(total) AS total FROM rp_tumble_out GROUP BY k ORDER BY k;

-- Errors.
SELECT * FROM streamflink._replay('nosuch', ARRAY['x']);
SELECT * FROM streamflink._replay('rp_tumble', ARRAY['x'], ARRAY[0, 1]);
SELECT * FROM streamflink._replay('rp_tumble', ARRAY['x'], ARRAY[-1]);
SELECT has_function_privilege('public', 'streamflink._replay(text, text[], int[], int, float8, float8, float8, int)', 'EXECUTE');

-- A session fires, an allowed late event extends it past the watermark
-- (no longer fired, its row still in the sink), an earlier one moves its
-- start: the row under the old start must go (issue 7, defect 1).
SELECT streamflink.create_window_pipeline('rp_session', 'rp', 'k', 'session',
       'count(*) AS n, sum(v) AS total', 'rp_session_out', gap => '10 seconds',
       allowed_lateness => '5 minutes');
SELECT ord, watermark, status
FROM streamflink._replay('rp_session', ARRAY[
	'{"k": "a", "v": 1, "ts": "2024-01-01 00:00:00"}',
	'{"k": "b", "v": 2, "ts": "2024-01-01 00:00:12"}',
	'{"k": "a", "v": 4, "ts": "2024-01-01 00:00:05"}',
	'{"k": "a", "v": 8, "ts": "2023-12-31 23:59:52"}'],
	p_advance => 1, p_checkpoint => 0, p_restore => 0);
SELECT * FROM rp_session_out ORDER BY k, window_start;

-- Keys equal in SQL are one key, as GROUP BY groups them: numeric scale,
-- float -0 and NaN, interval spans, text under a nondeterministic
-- collation, arrays, composites and domains of those.
CREATE COLLATION regress_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TYPE regress_pair AS (x numeric, y float8);
CREATE DOMAIN regress_dnum AS numeric CHECK (VALUE > -100);
SELECT streamflink.create_source('rpk', brokers => '127.0.0.1:1', topic => 'rpk',
       columns => 'n numeric, f float8, i interval, c text COLLATE regress_ci, a numeric[], '
                  'r regress_pair, dn regress_dnum, v int, ts timestamptz', event_time => 'ts');
CREATE TABLE rpk_events (n numeric, f float8, i interval, c text COLLATE regress_ci,
                         a numeric[], r regress_pair, v int, ts timestamptz,
                         dn regress_dnum GENERATED ALWAYS AS (n) STORED);
INSERT INTO rpk_events VALUES
	(1.0, 0, '1 day', 'Abc', '{1.0,2}', '(1.0,0)', 1, '2024-01-01 00:00:01'),
	(1.00, '-0', '24 hours', 'aBC', '{1,2.00}', '(1,-0)', 2, '2024-01-01 00:00:02'),
	(1, 0, '1 day', 'abc', '{1,2}', '(1.000,0)', 4, '2024-01-01 00:00:03'),
	(2, 'NaN', '1 mon', 'x', NULL, NULL, 8, '2024-01-01 00:00:04'),
	(2.0, '-NaN', '30 days', 'X', NULL, NULL, 16, '2024-01-01 00:00:05'),
	(NULL, NULL, NULL, NULL, NULL, NULL, 32, '2024-01-01 00:00:06'),
	(NULL, NULL, NULL, NULL, NULL, NULL, 64, '2024-01-01 00:00:07'),
	(2, 'NaN', '720 hours', 'x', NULL, NULL, 128, '2024-01-01 00:00:15');
-- One key column at a time, and all together.
DO $$
DECLARE
	col text;
BEGIN
	FOREACH col IN ARRAY ARRAY['n', 'f', 'i', 'c', 'a', 'r', 'dn', 'n, f, i, c, a, r'] LOOP
		PERFORM streamflink.create_window_pipeline('rpk_' || translate(col, ', ', ''), 'rpk', col,
			'tumble', 'count(*) AS cnt, sum(v) AS total', 'rpk_out_' || translate(col, ', ', ''),
			size => '10 seconds');
	END LOOP;
END
$$;
SELECT p.name, (SELECT count(*) FROM streamflink._replay(p.name,
		ARRAY(SELECT json_build_object('n', n, 'f', f, 'i', i, 'c', c, 'a', a::text, 'r', r::text, 'dn', dn, 'v', v, 'ts', ts)::text
			  FROM rpk_events ORDER BY ts), seed => 3)) AS events
FROM streamflink.pipeline p WHERE p.name LIKE 'rpk%' ORDER BY p.name;
-- The sinks equal GROUP BY over the same events.
SELECT 'n' AS key, (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_n) s) AS sink,
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY n, date_bin('10 seconds', ts, 'epoch')) s) AS group_by
UNION ALL
SELECT 'f', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_f) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY f, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'i', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_i) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY i, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'c', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_c) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY c, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'a', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_a) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY a, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'r', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_r) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY r, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'dn', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_dn) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY dn, date_bin('10 seconds', ts, 'epoch')) s)
UNION ALL
SELECT 'all', (SELECT array_agg(x ORDER BY x) FROM (SELECT total AS x FROM rpk_out_nficar) s),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpk_events GROUP BY n, f, i, c, a, r, date_bin('10 seconds', ts, 'epoch')) s);
-- Sink rows show values of the input, equal to every value of their key.
SELECT n, f, i, c, a, r, window_start, cnt, total FROM rpk_out_nficar ORDER BY total;
-- With a key that decodes (no nondeterministic collation), its canonical value.
SELECT n, window_start, cnt, total FROM rpk_out_n ORDER BY total;

-- Sessions under a nondeterministic collation: each shows a value of its
-- own events.
SELECT streamflink.create_window_pipeline('rpk_sc', 'rpk', 'c', 'session',
       'count(*) AS cnt, sum(v) AS total', 'rpk_out_sc', gap => '1 second');
SELECT count(*) FROM streamflink._replay('rpk_sc', ARRAY[
	'{"c": "abc", "v": 1, "ts": "2024-01-01 00:00:00"}',
	'{"c": "ABC", "v": 2, "ts": "2024-01-01 00:00:00.5"}',
	'{"c": "Abc", "v": 4, "ts": "2024-01-01 00:00:05"}',
	'{"c": "aBc", "v": 8, "ts": "2024-01-01 00:00:05.5"}']);
SELECT * FROM rpk_out_sc ORDER BY window_start;

-- char(n) and bpchar: trailing spaces do not count, as in GROUP BY; an
-- array or composite of them too.  The sink shows the value without them
-- (padded again by a char(n) column).
CREATE TYPE regress_cpair AS (c char(3), n int);
SELECT streamflink.create_source('rpc', brokers => '127.0.0.1:1', topic => 'rpc',
       columns => 'c char(4), b bpchar, ba bpchar[], cp regress_cpair, v int, ts timestamptz',
       event_time => 'ts');
CREATE TABLE rpc_events (c char(4), b bpchar, ba bpchar[], cp regress_cpair, v int);
INSERT INTO rpc_events VALUES
	('a', 'a', '{a,"b "}', '(a,1)', 1), ('a ', 'a ', '{"a ",b}', '("a  ",1)', 2),
	('a   ', 'a   ', '{"a  ","b  "}', '(a,1)', 4), ('b', 'b', '{b}', '(b,1)', 8),
	(' a', ' a', '{" a"}', '(" a",1)', 16), (NULL, NULL, NULL, NULL, 32);
SELECT count(*) FROM (
	SELECT streamflink.create_window_pipeline('rpc_' || col, 'rpc', col, 'tumble',
		'count(*) AS cnt, sum(v) AS total', 'rpc_out_' || col, size => '1 minute')
	FROM unnest(ARRAY['c', 'b', 'ba', 'cp']) col) c;
SELECT p.name, (SELECT count(*) FROM streamflink._replay(p.name,
		ARRAY(SELECT json_build_object('c', c, 'b', b, 'ba', ba::text, 'cp', cp::text, 'v', v,
									   'ts', timestamptz '2024-01-01 00:00:00+00' + v * interval '1 second')::text
			  FROM rpc_events ORDER BY v), seed => 5)) AS events
FROM streamflink.pipeline p WHERE p.name LIKE 'rpc%' ORDER BY p.name;
SELECT 'c' AS key, (SELECT array_agg(total ORDER BY total) FROM rpc_out_c) AS sink,
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpc_events GROUP BY c) s) AS group_by
UNION ALL
SELECT 'b', (SELECT array_agg(total ORDER BY total) FROM rpc_out_b),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpc_events GROUP BY b) s)
UNION ALL
SELECT 'ba', (SELECT array_agg(total ORDER BY total) FROM rpc_out_ba),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpc_events GROUP BY ba) s)
UNION ALL
SELECT 'cp', (SELECT array_agg(total ORDER BY total) FROM rpc_out_cp),
       (SELECT array_agg(x ORDER BY x) FROM (SELECT sum(v) AS x FROM rpc_events GROUP BY cp) s);
SELECT '"' || c || '"' AS c, octet_length(c) AS bytes, total FROM rpc_out_c ORDER BY total;
SELECT '"' || b::text || '"' AS b, octet_length(b) AS bytes, total FROM rpc_out_b ORDER BY total;

-- A key type without equality is refused as GROUP BY refuses it; one
-- whose equality is not bytewise and has no canonical form, too.
SELECT streamflink.create_source('rpj', brokers => '127.0.0.1:1', topic => 'rpj',
       columns => 'j json, jb jsonb, p point, ir int4range, nr numrange, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('rpj', 'rpj', 'j', 'tumble', 'count(*) AS n', 'rpj_out', size => '1 minute');
SELECT streamflink.create_window_pipeline('rpj', 'rpj', 'p', 'tumble', 'count(*) AS n', 'rpj_out', size => '1 minute');
SELECT streamflink.create_window_pipeline('rpj', 'rpj', 'jb', 'tumble', 'count(*) AS n', 'rpj_out', size => '1 minute');
SELECT streamflink.create_window_pipeline('rpj', 'rpj', 'nr', 'tumble', 'count(*) AS n', 'rpj_out', size => '1 minute');
SELECT streamflink.create_pattern_pipeline('rpj', 'rpj', 'j', 'a b', NULL, 'rpj_out');
-- Ranges of types with bytewise equality are fine.
SELECT streamflink.create_window_pipeline('rpj', 'rpj', 'ir', 'tumble', 'count(*) AS n', 'rpj_out', size => '1 minute');

-- Windows outside the range of timestamps: late events with a reason,
-- never a sink row with an out-of-range timestamp.
SELECT streamflink.create_window_pipeline('rp_hop', 'rp', 'k', 'hop',
       'count(*) AS n', 'rp_hop_out', size => '1 hour', slide => '20 minutes',
       allowed_lateness => '1 day');
SELECT ord, status, reason
FROM streamflink._replay('rp_hop', ARRAY[
	'{"k": "a", "v": 1, "ts": "294276-12-31 23:59:59"}',
	'{"k": "a", "v": 1, "ts": "294276-12-30 00:00:00"}',
	'{"k": "a", "v": 1, "ts": "4714-11-24 00:10:00 BC"}',
	'{"k": "a", "v": 1, "ts": "4714-11-24 01:10:00 BC"}'], p_advance => 0);
SELECT * FROM rp_hop_out ORDER BY window_start;
SELECT ord, status, reason
FROM streamflink._replay('rp_session', ARRAY[
	'{"k": "z", "v": 1, "ts": "294276-12-31 23:59:55"}',
	'{"k": "z", "v": 1, "ts": "294276-12-31 23:49:55"}'], p_advance => 0);
SELECT * FROM rp_session_out WHERE k = 'z';
