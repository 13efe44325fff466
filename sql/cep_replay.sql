--
-- cep_replay: the CEP operator's matches and timed-out partial matches do
-- not depend on how the watermark moves nor on restores from checkpoints
-- (issue 7).  The same events are replayed (streamflink._replay, without
-- Kafka) through six patterns -- every skip strategy, within with a
-- timed-out table, greedy and relaxed loops, notNext and notFollowedBy,
-- also trailing, conditions on earlier events -- with the watermark moving
-- after every message, rarely, or at random with checkpoints and restores:
-- every run must give the first run's tables.  (test/cep_metamorphic.sh
-- does the same through Kafka, batches and real crashes.)
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

SELECT streamflink.create_source('cr', brokers => '127.0.0.1:1', topic => 'cr',
       columns => 'k int, id text, x int, ts timestamptz', event_time => 'ts',
       max_out_of_orderness => '15 seconds');

-- 600 events, one every 5 seconds, of 3 keys, 0-15 seconds late (equal
-- timestamps too): none is ever late, whatever the watermark does.  Keys go
-- to two partitions.
SELECT setseed(0.25);
CREATE TEMP TABLE cr_events AS
SELECT i, floor(random() * 3)::int AS k,
	   (ARRAY['a', 'a', 'b', 'b', 'c', 'd'])[1 + floor(random() * 6)::int] AS id,
	   floor(random() * 4)::int AS x,
	   timestamptz '2024-01-01 00:00+00' + i * interval '5 seconds'
	   + floor(random() * 4) * interval '5 seconds' AS ts
FROM generate_series(1, 600) i;

CREATE TEMP TABLE cr_patterns (name text, pattern text, define text, within interval, skip text);
INSERT INTO cr_patterns VALUES
	('cr1', 'a -> b', $$a AS id = 'a', b AS id = 'b' AND x = a.x$$, '2 minutes', 'skip_past_last_event'),
	('cr2', 'a{2,}+ -> c', $$a AS id = 'a', c AS id = 'c'$$, '3 minutes', 'skip_to_next'),
	('cr3', 'a ->> b -> c', $$a AS id = 'a', b AS id = 'b' AND x >= a.x, c AS id = 'c'$$, '2 minutes', 'no_skip'),
	('cr4', 'a -> b{1,2} -> !c', $$a AS id = 'a', b AS id = 'b', c AS id = 'c'$$, '90 seconds', 'skip_past_last_event'),
	('cr5', 'a -> !d -> b{2,}', $$a AS id = 'a', b AS id = 'b', d AS id = 'd'$$, '4 minutes', 'skip_to_first(b)'),
	('cr6', 'a{->2,3} !d c', $$a AS id = 'a', c AS id = 'c' AND x < 3, d AS id = 'd'$$, '3 minutes', 'skip_to_last(a)');
SELECT count(*) FROM (
	SELECT streamflink.create_pattern_pipeline(name, 'cr', 'k', pattern, define,
		name || '_out', within => within, skip => skip, timed_out => name || '_to')
	FROM cr_patterns) c;

-- The runs: the watermark after every message; after one message in a
-- hundred; then at random, with checkpoints and up to 5 restores each.
CREATE TEMP TABLE cr_runs (run int, seed int, p_advance float8, p_checkpoint float8, p_restore float8);
INSERT INTO cr_runs VALUES (1, 1, 1, 0, 0), (2, 2, 0.01, 0, 0);
INSERT INTO cr_runs SELECT r, r * 7919, 0.05 + (r % 5) * 0.15, 0.05, 0.03 FROM generate_series(3, 7) r;

CREATE TEMP TABLE cr_results (name text, run int, what text, row jsonb);
DO $$
DECLARE
	p record;
	r record;
	late bigint;
BEGIN
	FOR p IN SELECT name FROM cr_patterns ORDER BY name LOOP
		FOR r IN SELECT * FROM cr_runs ORDER BY run LOOP
			EXECUTE format('TRUNCATE %I, %I', p.name || '_out', p.name || '_to');
			SELECT count(*) FILTER (WHERE status <> 'accepted') INTO late
			FROM streamflink._replay(p.name,
				ARRAY(SELECT json_build_object('k', k, 'id', id, 'x', x, 'ts', ts)::text
					  FROM cr_events ORDER BY i),
				ARRAY(SELECT k % 2 FROM cr_events ORDER BY i),
				seed => r.seed, p_advance => r.p_advance, p_checkpoint => r.p_checkpoint,
				p_restore => r.p_restore, max_restores => 5);
			IF late > 0 THEN
				RAISE EXCEPTION '% events of run % of % were not accepted', late, r.run, p.name;
			END IF;
			EXECUTE format('INSERT INTO cr_results SELECT %L, %s, %L, to_jsonb(s) FROM %I s',
						   p.name, r.run, 'match', p.name || '_out');
			EXECUTE format('INSERT INTO cr_results SELECT %L, %s, %L, to_jsonb(s) FROM %I s',
						   p.name, r.run, 'timed out', p.name || '_to');
		END LOOP;
	END LOOP;
END
$$;

-- What the first run found (so the events exercise every pattern) ...
SELECT name, count(*) FILTER (WHERE what = 'match') AS matches,
	   count(*) FILTER (WHERE what = 'timed out') AS timed_out
FROM cr_results WHERE run = 1 GROUP BY name ORDER BY name;
-- ... and every run differs from it in nothing.
SELECT d.name, d.run, d.what, count(*) AS differences
FROM (
	(SELECT name, run, what, row FROM cr_results WHERE run > 1
	 EXCEPT ALL
	 SELECT c.name, r.run, c.what, c.row FROM cr_results c, cr_runs r WHERE c.run = 1 AND r.run > 1)
	UNION ALL
	(SELECT c.name, r.run, c.what, c.row FROM cr_results c, cr_runs r WHERE c.run = 1 AND r.run > 1
	 EXCEPT ALL
	 SELECT name, run, what, row FROM cr_results WHERE run > 1)) d
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

SELECT count(*) FROM (
	SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM cr_patterns) d;
SELECT streamflink.drop_source('cr');

-- Keys are matched as GROUP BY groups them (issue 7): 'Ab' and 'aB' under a
-- case-insensitive collation are one key, and so are 1.0 and 1.00; a match
-- shows the key's values as its last event has them.
CREATE COLLATION regress_cep_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
SELECT streamflink.create_source('crk', brokers => '127.0.0.1:1', topic => 'crk',
       columns => 'name text COLLATE regress_cep_ci, n numeric, id text, ts timestamptz',
       event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('crk', 'crk', 'name, n', 'a b',
       $$a AS id = 'a', b AS id = 'b'$$, 'crk_out', within => '1 minute', timed_out => 'crk_to');
SELECT status, count(*) FROM streamflink._replay('crk', ARRAY[
	'{"name": "Ab", "n": 1.0, "id": "a", "ts": "2024-01-01 00:00:00+00"}',
	'{"name": "aB", "n": 1.00, "id": "b", "ts": "2024-01-01 00:00:01+00"}',
	'{"name": "AB", "n": 2, "id": "a", "ts": "2024-01-01 00:00:02+00"}',
	'{"name": "xy", "n": 2, "id": "b", "ts": "2024-01-01 00:00:03+00"}']) GROUP BY 1;
SELECT name, n, match_start, match_end FROM crk_out ORDER BY match_start;
SELECT name, n, match_start, timed_out_at FROM crk_to ORDER BY match_start;
SELECT streamflink.drop_pipeline('crk', drop_sink => true);
SELECT streamflink.drop_source('crk');
DROP COLLATION regress_cep_ci;
