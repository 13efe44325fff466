--
-- cep_bounds: time and state bounds of pattern pipelines (issues 6 and 7).
-- Uses cep_events, cep_show, cep_run, cep_finished, cep_stop and
-- cep_stopped from the cep suite.
--
\set VERBOSITY default

SELECT streamflink.create_source('evb', regress_brokers(), 'regress_cep_bounds', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts',
	idle_timeout => '1 second');

-- Timed-out rows of key k, one line each.
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

--
-- Deadlines pass one at a time (issue 7): the same events give the same
-- timeouts however far the watermark moves at once.  Key 1, minutes:
--   a1@0 x=1, a2@1 x=2, a3@2 x=3, b1@3 x=2; b must have its a's x.
-- a2 b1 completes at minute 3 but waits: a1's partial match started
-- earlier and is open.  At a1's deadline (minute 10) a1 times out, which
-- releases a2 b1; skip_past_last_event then prunes a3's partial match
-- (started before b1), so it never reaches its own deadline (minute 12).
-- Timing out everything up to the watermark first (the old code, when
-- one watermark step passed both deadlines) also timed out a3.
--
SELECT streamflink.create_pattern_pipeline('steps', 'evb', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b' AND x = a.x$$, 'steps_out',
	within => '10 minutes', skip => 'skip_past_last_event', timed_out => 'steps_timeouts');

--
-- The bound of partial matches (issue 6): a{->>1,} b without within makes
-- every subset of the a's a partial match (2^n).  With at most 20 partial
-- matches per key, after each event the oldest partial matches' successors
-- are kept first, the newest beyond 20 are discarded and counted.
--
SELECT streamflink.create_pattern_pipeline('explode', 'evb', 'k', 'a{->>1,} b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'explode_out', max_partial_matches => 20);

-- Bad bounds, and a pattern that could never fit in the event bound.
SELECT streamflink.create_pattern_pipeline('bad_bound', 'evb', 'k', 'a b',
	NULL, 'bad_bound_out', max_partial_matches => 0);
SELECT streamflink.create_pattern_pipeline('bad_bound', 'evb', 'k', 'a{100000} b',
	NULL, 'bad_bound_out');
SELECT streamflink.create_pattern_pipeline('bad_bound', 'evb', 'k', 'a{100} -> b{2,}',
	NULL, 'bad_bound_out', max_partial_match_events => 101);
-- A within longer than 64-bit microseconds hold is refused; a long one is
-- fine (its deadlines lie past the timestamp range: they never come).
SELECT streamflink.create_pattern_pipeline('bad_bound', 'evb', 'k', 'a b',
	NULL, 'bad_bound_out', within => '200000000 days');
SELECT streamflink.create_pattern_pipeline('long_within', 'evb', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'long_within_out',
	within => '100000000 days', timed_out => 'long_within_timeouts');
SELECT name, max_partial_matches, max_partial_match_events FROM streamflink.pipelines
WHERE name IN ('steps', 'explode', 'long_within') ORDER BY name;

SELECT streamflink.produce(regress_brokers(), 'regress_cep_bounds',
	cep_events(1, 'a1@0=1 a2@1=2 a3@2=3 b1@3=2')
	|| cep_events(2, 'a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 b1')
	|| cep_events(3000, 'end'), 0) AS produced;
SELECT cep_run('{steps,explode,long_within}');
SELECT wait_until($$SELECT cep_finished('{steps,explode,long_within}')$$);

SELECT cep_show('steps_out', 1) AS "a -> b, skip_past_last_event";
SELECT cep_show_timeouts('steps_timeouts', 1) AS "timed out";

-- The bound held, and what it discarded is reported.
SELECT wait_until($$SELECT partial_matches_dropped > 0 FROM streamflink.pipelines WHERE name = 'explode'$$);
-- (open partial matches: 7 of key 1, every subset of its 3 a's, and 20 of
-- key 2.)
SELECT open_count FROM streamflink.pipelines WHERE name = 'explode';
SELECT cep_stop('{steps,explode,long_within}');
SELECT wait_until($$SELECT cep_stopped('{steps,explode,long_within}')$$);
-- The same events always discard the same partial matches.  Of the 2^12 - 1
-- subsets of key 2's a's, the 20 kept before b1 are what a1's partial
-- match became (in order: take each a, then ignore it); the 10 of them
-- that took the last a can proceed to b1 (one that ignored an event may
-- only take another a, as in Flink), with 9 to 12 a's each.
SELECT count(*) AS matches, min(jsonb_array_length(events->'a')) AS shortest,
	   max(jsonb_array_length(events->'a')) AS longest
FROM explode_out WHERE k = 2;
-- A deadline past the timestamp range never comes: nothing timed out.
SELECT count(*) AS timed_out FROM long_within_timeouts;

--
-- A worker busy in a long NFA step still stops within a couple of seconds
-- (the NFA loops check for interrupts and a requested stop).
--
SELECT streamflink.create_pattern_pipeline('busy', 'evb', 'k', 'a{->>1,} b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'busy_out',
	max_partial_matches => 50000, max_partial_match_events => 1000000);
SELECT streamflink.produce(regress_brokers(), 'regress_cep_bounds',
	(SELECT array_agg(e) FROM generate_series(1, 200) i,
			unnest(cep_events(5, 'a1 a2 a3 a4 a5 a6 a7 a8 a9 a10')) e)
	|| cep_events(3001, 'end'), 0) AS produced;
SELECT cep_run('{busy}');
SELECT wait_until($$SELECT status = 'running' FROM streamflink.pipelines WHERE name = 'busy'$$);
SELECT pg_sleep(3);
-- (still in its first firing, which runs all 2000 a's of key 5, each
-- through up to the bound's 50000 partial matches: 400 a's were done in
-- about 3 s on a 2-core machine, too close to the sleep)
SELECT coalesce(watermark < '2030-01-01', true) AS still_busy
FROM streamflink.pipelines WHERE name = 'busy';
CREATE TEMP TABLE busy_stop AS SELECT clock_timestamp() AS asked;
SELECT cep_stop('{busy}');
SELECT wait_until($$SELECT cep_stopped('{busy}')$$, '20 seconds');
SELECT clock_timestamp() - asked < interval '3 seconds' AS stopped_quickly FROM busy_stop;

SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM streamflink.pipeline WHERE name IN ('steps', 'explode', 'long_within', 'busy') ORDER BY name;
DROP FUNCTION cep_show_timeouts(regclass, int);
SELECT streamflink.drop_source('evb');
