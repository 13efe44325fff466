--
-- run_operator_cep: the pattern cases of cep.sql, cep_bounds.sql and
-- cep_aggregates.sql through streamflink.run_operator, without Kafka
-- (with cep.sql's helpers cep_events and cep_show, as cep_aggregates).
-- The pipelines are defined as there, each over the same events (cep.sql's
-- cep_events), with the watermark moved after every event to that event's
-- time (what a worker does with no out-of-orderness) and at the end to the
-- end of input.  Each run is checked against a run with no watermark until
-- the end (the matches and timeouts must not depend on the watermark's
-- steps), and its rows are put into the pipeline's own sink and timed-out
-- tables (by this test: run_operator writes nothing), so the queries below
-- are those of the Kafka suites, with the same expected rows.
--
\set VERBOSITY default

-- Events and watermarks of a suite, and the tables of its pipelines filled
-- from run_operator.
CREATE TABLE ro_cep_input (suite text PRIMARY KEY, events text[], watermarks timestamptz[]);
CREATE FUNCTION ro_cep_input(suite text, events text[]) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO ro_cep_input
	SELECT suite, events, array_agg(wm ORDER BY i)
	FROM (SELECT i, max((e::jsonb->>'ts')::timestamptz) OVER (ORDER BY i) AS wm
		  FROM unnest(events) WITH ORDINALITY AS u(e, i)) w
$$;

CREATE FUNCTION ro_cep_fill(suite text, names text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	n text;
	p record;
	differ bigint;
BEGIN
	FOREACH n IN ARRAY names LOOP
		SELECT sink, timed_out INTO STRICT p FROM streamflink.pipelines WHERE name = n;
		CREATE TEMP TABLE ro_rows AS
		SELECT r.* FROM ro_cep_input i, streamflink.run_operator(n, i.events, i.watermarks) r
		WHERE i.suite = ro_cep_fill.suite;
		SELECT count(*) INTO differ FROM (
			(SELECT output, op, data FROM ro_rows
			 EXCEPT ALL
			 SELECT r.output, r.op, r.data FROM ro_cep_input i, streamflink.run_operator(n, i.events) r
			 WHERE i.suite = ro_cep_fill.suite)
			UNION ALL
			(SELECT r.output, r.op, r.data FROM ro_cep_input i, streamflink.run_operator(n, i.events) r
			 WHERE i.suite = ro_cep_fill.suite
			 EXCEPT ALL
			 SELECT output, op, data FROM ro_rows)) d;
		IF differ > 0 THEN
			RAISE EXCEPTION 'pipeline %: % rows differ with one watermark at the end', n, differ;
		END IF;
		IF EXISTS (SELECT FROM ro_rows WHERE output NOT IN ('result', 'timed_out') OR op <> 'insert') THEN
			RAISE EXCEPTION 'pipeline %: rows other than inserted matches', n;
		END IF;
		EXECUTE format('INSERT INTO %s SELECT (jsonb_populate_record(NULL::%s, data)).* FROM ro_rows WHERE output = %L',
					   p.sink, p.sink, 'result');
		IF p.timed_out IS NOT NULL THEN
			EXECUTE format('INSERT INTO %s SELECT (jsonb_populate_record(NULL::%s, data)).* FROM ro_rows WHERE output = %L',
						   p.timed_out, p.timed_out, 'timed_out');
		END IF;
		DROP TABLE ro_rows;
	END LOOP;
END
$$;

--
-- cep.sql: contiguity, negation, quantifiers, greedy rules, iterative
-- conditions, skip strategies, within and timed-out matches (the expected
-- matches are worked out in cep.sql's comments).
--
SELECT streamflink.create_source('ev', '127.0.0.1:1', 'unused', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts');

SELECT streamflink.create_pattern_pipeline('c_next', 'ev', 'k', 'a b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_next_out');

SELECT streamflink.create_pattern_pipeline('c_followed', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_followed_out');

SELECT streamflink.create_pattern_pipeline('c_any', 'ev', 'k', 'a ->> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_any_out');

SELECT streamflink.create_pattern_pipeline('n_notnext', 'ev', 'k', 'a !c -> b',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'n_notnext_out');

SELECT streamflink.create_pattern_pipeline('n_notfollowed', 'ev', 'k', 'a -> !c -> b',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'n_notfollowed_out');

SELECT streamflink.create_pattern_pipeline('q_times', 'ev', 'k', 'a{2,3} b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'q_times_out');

SELECT streamflink.create_pattern_pipeline('q_relaxed', 'ev', 'k', 'a{->2,3} -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'q_relaxed_out');

SELECT streamflink.create_pattern_pipeline('q_optional', 'ev', 'k', 'a b? c',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'q_optional_out');

SELECT streamflink.create_pattern_pipeline('g_nongreedy', 'ev', 'k', 'a{2,} -> b',
	$$a AS x > 0 AND x < 9, b AS x > 5$$, 'g_nongreedy_out');

SELECT streamflink.create_pattern_pipeline('g_greedy', 'ev', 'k', 'a{2,}+ -> b',
	$$a AS x > 0 AND x < 9, b AS x > 5$$, 'g_greedy_out');

SELECT streamflink.create_pattern_pipeline('g_relaxed', 'ev', 'k', 'c -> a{->1,}+ -> d',
	$$c AS id ~ '^c', a AS id ~ '^a', d AS id ~ '^d'$$, 'g_relaxed_out');

SELECT streamflink.create_pattern_pipeline('g_star', 'ev', 'k', 'c -> a{->,}+ -> d',
	$$c AS id ~ '^c', a AS id ~ '^a', d AS id ~ '^d'$$, 'g_star_out');

SELECT streamflink.create_pattern_pipeline('g_waiting', 'ev', 'k', 'a{2,}+ -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'g_waiting_out');

SELECT streamflink.create_pattern_pipeline('g_range', 'ev', 'k', 'a{2,3}+ -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'g_range_out');

SELECT streamflink.create_pattern_pipeline('g_optional', 'ev', 'k', 'c -> a{->,}+ -> d? -> e',
	$$c AS id ~ '^c', a AS id ~ '^a', d AS id ~ '^d', e AS id ~ '^e'$$, 'g_optional_out');

SELECT streamflink.create_pattern_pipeline('i_rising', 'ev', 'k', 'r{10}',
	$$r AS LAST(r.x) IS NULL OR x > LAST(r.x)$$, 'i_rising_out',
	skip => 'skip_past_last_event',
	measures => 'first(r.x) AS first_x, last(r.x) AS last_x, count(r.*) AS n');

SELECT streamflink.create_pattern_pipeline('i_sum', 'ev', 'k', 's+ t',
	$$s AS coalesce(sum(s.x), 0) + x <= 10, t AS x >= 100$$, 'i_sum_out',
	skip => 'skip_past_last_event',
	measures => 'sum(s.x) AS total, t.x AS big');

SELECT streamflink.create_pattern_pipeline('s_none', 'ev', 'k', 'b+ c',
	$$b AS id ~ '^b', c AS id ~ '^c'$$, 's_none_out');

SELECT streamflink.create_pattern_pipeline('s_past', 'ev', 'k', 'b+ c',
	$$b AS id ~ '^b', c AS id ~ '^c'$$, 's_past_out', skip => 'skip_past_last_event');

SELECT streamflink.create_pattern_pipeline('s_first', 'ev', 'k', 'b+ c',
	$$b AS id ~ '^b', c AS id ~ '^c'$$, 's_first_out', skip => 'skip_to_first(b)');

SELECT streamflink.create_pattern_pipeline('s_last', 'ev', 'k', 'b+ c',
	$$b AS id ~ '^b', c AS id ~ '^c'$$, 's_last_out', skip => 'skip_to_last(b)');

SELECT streamflink.create_pattern_pipeline('s_none2', 'ev', 'k', 'a b+',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 's_none2_out');

SELECT streamflink.create_pattern_pipeline('s_next', 'ev', 'k', 'a b+',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 's_next_out', skip => 'skip_to_next');

SELECT streamflink.create_pattern_pipeline('h_past', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = LAST(a.x)$$, 'h_past_out',
	skip => 'skip_past_last_event');

SELECT streamflink.create_pattern_pipeline('h_next', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = LAST(a.x)$$, 'h_next_out',
	skip => 'skip_to_next');

SELECT streamflink.create_pattern_pipeline('h_first', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = LAST(a.x)$$, 'h_first_out',
	skip => 'skip_to_first(b)');

SELECT streamflink.create_pattern_pipeline('h_none', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = LAST(a.x)$$, 'h_none_out');

SELECT streamflink.create_pattern_pipeline('h_within', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = LAST(a.x)$$, 'h_within_out',
	skip => 'skip_past_last_event', within => '5 minutes', timed_out => 'h_within_timeouts');

SELECT streamflink.create_pattern_pipeline('doc_login', 'ev', 'k', 'login -> purchase',
	$$login AS id ~ '^login', purchase AS id ~ '^purchase'$$, 'doc_login_out',
	within => '5 minutes', timed_out => 'doc_login_timeouts');

SELECT streamflink.create_pattern_pipeline('doc_fraud', source => 'ev', key => 'k',
	pattern => 'small{5,} large',
	define => $$ small AS x < 100, large AS x > 5000 AND id ~ '^w' $$,
	within => '1 hour', sink => 'doc_fraud_out', skip => 'skip_past_last_event',
	measures => 'count(small.*) AS n_small, sum(small.x) AS small_total, large.x AS withdrawal');

SELECT streamflink.create_pattern_pipeline('e_notfollowed', 'ev', 'k', 'a -> !b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'e_notfollowed_out',
	within => '3 minutes', timed_out => 'e_notfollowed_timeouts');

SELECT streamflink.create_pattern_pipeline('e_loop', 'ev', 'k', 'a+ -> !b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'e_loop_out',
	within => '3 minutes', timed_out => 'e_loop_timeouts');

SELECT streamflink.create_pattern_pipeline('e_skip', 'ev', 'k', 'a{->>1,} -> c -> !b',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'e_skip_out',
	within => '5 minutes', skip => 'skip_past_last_event');

SELECT streamflink.create_pattern_pipeline('e_notnext', 'ev', 'k', 'a !b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'e_notnext_out');

SELECT streamflink.create_pattern_pipeline('e_notnext_loop', 'ev', 'k', 'a+ !b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'e_notnext_loop_out');

SELECT streamflink.create_pattern_pipeline('e_notnext_within', 'ev', 'k', 'a !b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'e_notnext_within_out',
	within => '3 minutes', timed_out => 'e_notnext_within_timeouts');

SELECT ro_cep_input('cep',
	cep_events(1, 'a1 c1 a2 b1 b2') ||
	cep_events(2, 'a1 d1 c1 b1 a2 b2') ||
	cep_events(3, 'a1 a2 a3 b1 a4 c1 a5 a6 b2') ||
	cep_events(4, 'a1 c1 a2 b1') ||
	cep_events(5, 'a1 c1 a2 b1 c2') ||
	cep_events(6, 'e1=1 e2=2 e3=7 e4=9') ||
	cep_events(7, 'e1=1 e2=2 e3=3 e4=4 e5=5 e6=6 e7=7 e8=8 e9=9 e10=10 e11=11 e12=5') ||
	cep_events(8, 'e1=3 e2=4 e3=2 e4=100') ||
	cep_events(9, 'e1=3 e2=4 e3=5 e4=100') ||
	cep_events(10, 'b1 b2 b3 c1') ||
	cep_events(11, 'a1 b1 b2') ||
	cep_events(12, 'login1@0 purchase1@3 login2@10 purchase2@17') ||
	cep_events(13, 's1=10 s2=20 s3=30 s4=40 s5=50 s6=60 w1=6000') ||
	cep_events(14, 's1=10 s2=20 s3=30 s4=40 s5=50 w1@125=6000') ||
	cep_events(15, 'c x1 a1 x2 a2 x3 a3 d') ||
	cep_events(16, 'a1 a2 x1 a3 b1') ||
	cep_events(17, 'a1 a2 a3 a4 b1') ||
	cep_events(18, 'c a1 x1 a2 e') ||
	cep_events(19, 'c a1 a2 d1 e') ||
	cep_events(20, 'a1=1 a2=2 b1=2 b2=1') ||
	cep_events(21, 'a1@0=1 a2@1=2 b1@2=2') ||
	cep_events(22, 'a1@0=1 a2@1=2 b1@2=2 c1@7') ||
	cep_events(26, 'a1@1 b1@2 a2@4 c@5 b2@10 a3@11 b3@13') ||
	cep_events(27, 'a1@0 b1@3 a2@10') ||
	cep_events(28, 'a1@0 a2@1') ||
	cep_events(29, 'a1@0 a2@1 b1@2') ||
	cep_events(30, 'a1@1 a2@2 a3@3 c1@4 c2@10') ||
	cep_events(31, 'a1 b1 a2 c1 a3') ||
	cep_events(32, 'a1 a2 b1 a3 c1') ||
	cep_events(33, 'a1@0 c1@1 a2@5') ||
	cep_events(3000, 'end'));

SELECT ro_cep_fill('cep', '{e_notfollowed,c_next,c_followed,c_any,n_notnext,n_notfollowed,q_times,q_relaxed,q_optional,g_nongreedy,g_greedy,g_relaxed,g_star,g_waiting,g_range,g_optional,i_rising,i_sum,s_none,s_past,s_first,s_last,s_none2,s_next,h_past,h_next,h_first,h_none,h_within,doc_login,doc_fraud,e_loop,e_skip,e_notnext,e_notnext_loop,e_notnext_within}');
SELECT cep_show('c_next_out', 1) AS "a b";
SELECT cep_show('c_followed_out', 1) AS "a -> b";
SELECT cep_show('c_any_out', 1) AS "a ->> b";
SELECT cep_show('n_notnext_out', 2) AS "a !c -> b";
SELECT cep_show('n_notfollowed_out', 2) AS "a -> !c -> b";
SELECT cep_show('q_times_out', 3) AS "a{2,3} b (key 3)";
SELECT cep_show('q_times_out', 4) AS "a{2,3} b (key 4)";
SELECT cep_show('q_relaxed_out', 4) AS "a{->2,3} -> b";
SELECT cep_show('q_optional_out', 5) AS "a b? c";
SELECT cep_show('g_nongreedy_out', 6) AS "a{2,} -> b";
SELECT cep_show('g_greedy_out', 6) AS "a{2,}+ -> b";
SELECT match_start, match_end, first_x, last_x, n FROM i_rising_out WHERE k = 7;
SELECT cep_show('i_sum_out', 8) AS "s+ t (key 8)", cep_show('i_sum_out', 9) AS "s+ t (key 9)";
SELECT k, total, big FROM i_sum_out WHERE k IN (8, 9) ORDER BY k;
SELECT cep_show('s_none_out', 10) AS "no_skip";
SELECT cep_show('s_past_out', 10) AS "skip_past_last_event";
SELECT cep_show('s_first_out', 10) AS "skip_to_first(b)";
SELECT cep_show('s_last_out', 10) AS "skip_to_last(b)";
SELECT cep_show('s_none2_out', 11) AS "a b+ no_skip";
SELECT cep_show('s_next_out', 11) AS "a b+ skip_to_next";
SELECT cep_show('doc_login_out', 12) AS "login -> purchase";
SELECT k, match_start, timed_out_at, events->'login'->0->>'id' AS login
FROM doc_login_timeouts WHERE k = 12;
SELECT k, match_start, match_end, n_small, small_total, withdrawal
FROM doc_fraud_out WHERE k IN (13, 14) ORDER BY k;
SELECT cep_show('doc_fraud_out', 13) AS "small{5,} large";
SELECT cep_show('g_relaxed_out', 15) AS "c -> a{->1,}+ -> d";
SELECT cep_show('g_star_out', 15) AS "c -> a{->,}+ -> d";
SELECT cep_show('g_waiting_out', 16) AS "a{2,}+ -> b";
SELECT cep_show('g_range_out', 17) AS "a{2,3}+ -> b";
SELECT cep_show('g_optional_out', 18) AS "c -> a{->,}+ -> d? -> e (key 18)";
SELECT cep_show('g_optional_out', 19) AS "c -> a{->,}+ -> d? -> e (key 19)";
SELECT cep_show('h_past_out', 20) AS "skip_past_last_event";
SELECT cep_show('h_next_out', 20) AS "skip_to_next";
SELECT cep_show('h_first_out', 20) AS "skip_to_first(b)";
SELECT cep_show('h_none_out', 20) AS "no_skip";
SELECT cep_show('h_within_out', 21) AS "within (key 21)", cep_show('h_within_out', 22) AS "within (key 22)";
SELECT k, match_start, timed_out_at, events->'a'->0->>'id' AS a
FROM h_within_timeouts WHERE k IN (21, 22) ORDER BY k;
SELECT cep_show('e_notfollowed_out', 26) AS "a -> !b (key 26)", cep_show('e_notfollowed_out', 27) AS "a -> !b (key 27)";
SELECT k, match_start, match_end FROM e_notfollowed_out WHERE k IN (26, 27) ORDER BY k, match_start;
SELECT count(*) AS timed_out FROM e_notfollowed_timeouts WHERE k IN (26, 27);
SELECT cep_show('e_loop_out', 28) AS "a+ -> !b (key 28)";
SELECT cep_show('e_loop_out', 29) AS "a+ -> !b (key 29)";
SELECT count(*) AS timed_out FROM e_loop_timeouts WHERE k IN (28, 29);
SELECT cep_show('e_skip_out', 30) AS "a{->>1,} -> c -> !b";
SELECT cep_show('e_notnext_out', 31) AS "a !b";
SELECT cep_show('e_notnext_loop_out', 32) AS "a+ !b";
SELECT cep_show('e_notnext_within_out', 33) AS "a !b within";
SELECT k, match_start, timed_out_at, events->'a'->0->>'id' AS a
FROM e_notnext_within_timeouts WHERE k = 33;

-- cep.sql's watermark exactly at an event's time: an event at that time is
-- not late (x1@1, the watermark at 00:01, then y1@1).
SELECT streamflink.create_source('ev_eq', '127.0.0.1:1', 'unused', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('late_eq', 'ev_eq', 'k', 'x -> y',
	$$x AS id ~ '^x', y AS id ~ '^y'$$, 'late_eq_out');
SELECT output, (SELECT string_agg(j.key || ':' || (e->>'id'), ' ' ORDER BY (e->>'ts')::timestamptz)
				FROM jsonb_each(data->'events') j, jsonb_array_elements(j.value) e) AS "x -> y"
FROM streamflink.run_operator('late_eq', cep_events(23, 'x1@1') || cep_events(23, 'y1@1'),
	ARRAY['2024-01-24 00:01+00', NULL]::timestamptz[]);

-- cep.sql's data errors in a condition and in a measure: a worker fails
-- (and after a restart dead-letters the message); run_operator ends with
-- the error.
SELECT streamflink.create_pattern_pipeline('err_cond', 'ev_eq', 'k', 'a -> b',
	$$a AS CASE WHEN id ~ '^a' THEN 1 / x > 0 END, b AS id ~ '^b'$$, 'err_cond_out');
SELECT streamflink.create_pattern_pipeline('err_measure', 'ev_eq', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'err_measure_out',
	measures => $$a.x AS ax, CASE WHEN b.id ~ '^b' THEN 1 / b.x END AS inv$$);
\set VERBOSITY terse
SELECT * FROM streamflink.run_operator('err_cond', cep_events(24, 'a1=1 a2=0'));
SELECT * FROM streamflink.run_operator('err_measure', cep_events(25, 'a1 b1=0'));
\set VERBOSITY default

-- Late events and dead letters are rows of their own: an event behind the
-- watermark, a payload that is not JSON.
SELECT ord, event, watermark, output, op, data->'id' AS id, reason
FROM streamflink.run_operator('late_eq', ARRAY['{"k": 1, "id": "x1", "ts": "2024-01-01 00:05+00"}',
	'{"k": 1, "id": "y1", "ts": "2024-01-01 00:04+00"}', 'oops',
	'{"k": 1, "id": "y2", "ts": "2024-01-01 00:06+00"}'],
	ARRAY['2024-01-01 00:05+00', NULL, NULL, NULL]::timestamptz[]);
--
-- cep_bounds.sql: timeouts between events, the bound on partial matches,
-- a within whose deadlines lie beyond the range of timestamps.
--
SELECT streamflink.create_source('evb', '127.0.0.1:1', 'unused', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts');
CREATE FUNCTION cep_show_timeouts(t regclass, key int) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format($q$
		SELECT (SELECT string_agg(j.key || ':' || (e->>'id'), ' '
								  ORDER BY (e->>'ts')::timestamptz)
				FROM jsonb_each(s.events) j, jsonb_array_elements(j.value) e)
			   || ' at ' || to_char(s.timed_out_at AT TIME ZONE 'UTC', 'HH24:MI')
		FROM %s s WHERE s.k = $1 ORDER BY 1$q$, t) USING key;
END
$$;
SELECT streamflink.create_pattern_pipeline('steps', 'evb', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = a.x$$, 'steps_out',
	within => '10 minutes', skip => 'skip_past_last_event', timed_out => 'steps_timeouts');
SELECT streamflink.create_pattern_pipeline('explode', 'evb', 'k', 'a{->>1,} b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'explode_out', max_partial_matches => 20);
SELECT streamflink.create_pattern_pipeline('long_within', 'evb', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'long_within_out',
	within => '100000000 days', timed_out => 'long_within_timeouts');
SELECT ro_cep_input('cep_bounds',
	cep_events(1, 'a1@0=1 a2@1=2 a3@2=3 b1@3=2')
	|| cep_events(2, 'a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 b1')
	|| cep_events(3000, 'end'));
SELECT ro_cep_fill('cep_bounds', '{steps,explode,long_within}');

SELECT cep_show('steps_out', 1) AS "a -> b, skip_past_last_event";
SELECT cep_show_timeouts('steps_timeouts', 1) AS "timed out";
SELECT count(*) AS matches, min(jsonb_array_length(events->'a')) AS shortest,
	   max(jsonb_array_length(events->'a')) AS longest
FROM explode_out WHERE k = 2;
SELECT count(*) AS timed_out FROM long_within_timeouts;
DROP FUNCTION cep_show_timeouts(regclass, int);

--
-- cep_aggregates.sql: aggregates over a variable's events in conditions and
-- measures, FILTER, several arguments.
--
SELECT streamflink.create_source('ev2', '127.0.0.1:1', 'unused', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('agg_measures', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' $$, 'agg_measures_out',
	measures => $$ sum(s.x) FILTER (WHERE s.x > 1) AS big_sum, sum(s.x) AS all_sum,
				   regr_count(s.x::float8, s.x::float8) AS n,
				   round(covar_pop(s.x::float8, s.x::float8)::numeric, 4) AS var $$);
SELECT streamflink.create_pattern_pipeline('agg_filter', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' AND count(s.*) FILTER (WHERE s.x > 1) >= 2 $$,
	'agg_filter_out');
SELECT ro_cep_input('cep_aggregates',
	cep_events(1, 's1=1 s2=1 s3=5 t1') ||
	cep_events(2, 's1=1 s2=1 s3=5 s4=7 t1') ||
	cep_events(3000, 'end'));
SELECT ro_cep_fill('cep_aggregates', '{agg_measures,agg_filter}');

SELECT cep_show('agg_measures_out', 1) AS "s{2,} -> t";
SELECT big_sum, all_sum, n, var FROM agg_measures_out WHERE k = 1 ORDER BY all_sum;
SELECT cep_show('agg_filter_out', 2) AS "t after two s over 1";

-- run_operator wrote no dead letter nor late event.
SELECT count(*) AS dead_letters FROM streamflink.dead_letters
WHERE pipeline IN (SELECT name FROM streamflink.pipelines WHERE kind = 'pattern');

SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM streamflink.pipeline WHERE kind = 'pattern' ORDER BY name;
SELECT streamflink.drop_source(name) FROM unnest('{ev,ev_eq,evb,ev2}'::text[]) name;
DROP FUNCTION ro_cep_fill(text, text[]);
DROP FUNCTION ro_cep_input(text, text[]);
DROP TABLE ro_cep_input;
