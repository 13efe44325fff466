--
-- cep: pattern pipelines (complex event processing).
--
-- Every case runs on its own key of one shared source; each event is
-- written "id[@minute][=x]": the variable conditions test the id's letter,
-- the event time is 2024-01-01 + key days + minute (default: its index in
-- the list), x is a number for iterative conditions.  A match is shown as
-- "var:id var:id ...".  The expected matches are worked out by hand in
-- the comments, following Flink CEP (see src/cep.c for the NFA rules).
--
\set VERBOSITY default

SELECT streamflink.create_source('ev', regress_brokers(), 'regress_cep', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts',
	idle_timeout => '1 second');

CREATE FUNCTION cep_events(key int, spec text) RETURNS text[]
LANGUAGE sql AS $$
	SELECT array_agg(json_build_object(
			'k', key,
			'id', m[1],
			'x', coalesce(m[3]::numeric, 0),
			'ts', timestamptz '2024-01-01 00:00+00' + key * interval '1 day'
				  + coalesce(m[2]::int, i - 1) * interval '1 minute')::text ORDER BY i)
	FROM regexp_split_to_table(btrim(spec), '\s+') WITH ORDINALITY AS t(tok, i),
		 regexp_match(tok, '^([a-z]+[0-9]*)(?:@([0-9]+))?(?:=([0-9.]+))?$') AS m
$$;

-- The matches of key k in a sink, one line each.
CREATE FUNCTION cep_show(sink regclass, key int) RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format($q$
		SELECT (SELECT string_agg(j.key || ':' || (e->>'id'), ' '
								  ORDER BY (e->>'ts')::timestamptz)
				FROM jsonb_each(s.events) j, jsonb_array_elements(j.value) e)
		FROM %s s WHERE s.k = $1 ORDER BY 1$q$, sink) USING key;
END
$$;

-- Start pipelines, wait until they passed the final event, stop them (a
-- stop ends with a checkpoint, so every match is committed).
CREATE FUNCTION cep_run(names text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	n text;
BEGIN
	FOREACH n IN ARRAY names LOOP
		PERFORM streamflink.start(n);
	END LOOP;
END
$$;
-- (A pipeline whose worker has no watermark yet shows NULL: not finished.)
CREATE FUNCTION cep_finished(names text[]) RETURNS bool
LANGUAGE sql AS $$
	SELECT bool_and(coalesce(watermark >= timestamptz '2030-01-01 00:00+00', false))
	FROM streamflink.pipelines WHERE name = ANY (names)
$$;
CREATE FUNCTION cep_stop(names text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	n text;
BEGIN
	FOREACH n IN ARRAY names LOOP
		PERFORM streamflink.stop(n);
	END LOOP;
END
$$;
CREATE FUNCTION cep_stopped(names text[]) RETURNS bool
LANGUAGE sql AS $$
	SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name = ANY (names)
$$;

--
-- Errors at creation point at the offending part.
--
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b{2', NULL, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a -> -> b', NULL, 'bad_sink');
-- (groups, a (b c)+, are accepted as Flink's group patterns: cep_flink)
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b a', NULL, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b{3,2}', NULL, 'bad_sink');
-- notFollowedBy last needs within (Flink: "NotFollowedBy is not supported
-- without windowTime as a last part of a Pattern!")
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a -> !b', NULL, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b+ ->> !c', NULL, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a !b{2} c', NULL, 'bad_sink');
-- (a greedy last variable, a b{2,}+, is accepted as in Flink: cep_flink)
-- (a pattern of optional variables only, a? b*, is accepted as in Flink: its
-- matches hold at least one event; cep_flink)
-- unknown variable in define
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$a AS id = 'a', c AS id = 'c'$$, 'bad_sink');
-- not a boolean condition
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$a AS id = 'a', b AS x + 1$$, 'bad_sink');
-- unknown column
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$a AS id = 'a', b AS amount > 1$$, 'bad_sink');
-- SQL syntax error inside a condition
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$a AS id = 'a', b AS x >$$, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$a id = 'a'$$, 'bad_sink');
-- references to matched events
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$b AS x > LAST(z.x)$$, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$b AS x > sum(x)$$, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b',
	$$b AS x > sum(a.x + b.x)$$, 'bad_sink');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b', NULL, 'bad_sink',
	measures => 'count(a.*)');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b', NULL, 'bad_sink',
	skip => 'skip_to_last(c)');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b', NULL, 'bad_sink',
	skip => 'skip_sideways');
SELECT streamflink.create_pattern_pipeline('bad', 'ev', 'k', 'a b', NULL, 'bad_sink',
	timed_out => 'bad_timeouts');
SELECT count(*) AS no_pipelines FROM streamflink.pipeline WHERE name = 'bad';

--
-- Contiguity.  Key 1: a1 c1 a2 b1 b2.
--   a b	 (next): a1 is followed by c1, not b; a2 b1.
--   a -> b	 (followedBy): each a waits for the next b: a1 b1, a2 b1; a
--			 match that took b1 is complete, so b2 starts nothing.
--   a ->> b (followedByAny): every later b: a1 b1, a1 b2, a2 b1, a2 b2.
--
SELECT streamflink.create_pattern_pipeline('c_next', 'ev', 'k', 'a b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_next_out');
SELECT streamflink.create_pattern_pipeline('c_followed', 'ev', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_followed_out');
SELECT streamflink.create_pattern_pipeline('c_any', 'ev', 'k', 'a ->> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'c_any_out');

--
-- Negation.  Key 2: a1 d1 c1 b1 a2 b2.
--   a !c -> b		(notNext): only the event right after a must not be a
--					c: a1 (d1 follows) b1; a2 b2.
--   a -> !c -> b	(notFollowedBy): no c between a and b: c1 kills the
--					match of a1; a2 b2.
--
SELECT streamflink.create_pattern_pipeline('n_notnext', 'ev', 'k', 'a !c -> b',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'n_notnext_out');
SELECT streamflink.create_pattern_pipeline('n_notfollowed', 'ev', 'k', 'a -> !c -> b',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'n_notfollowed_out');

--
-- Quantifiers.
-- Key 3: a1 a2 a3 b1 a4 c1 a5 a6 b2, pattern a{2,3} b (consecutive a's,
--   then b next): a1 a2 a3 b1 and a2 a3 b1 (a3 b1 has one a only); a4 is
--   followed by c1; a5 a6 b2.
-- Key 4: a1 c1 a2 b1.
--   a{2,3} b: no two consecutive a's: nothing.
--   a{->2,3} -> b (Flink's default relaxed iterations): the loop of a1
--   skips c1 (not an a), takes a2, and b1 follows: a1 a2 b1.  (a2 alone
--   has one a.)
-- Key 5: a1 c1 a2 b1 c2, pattern a b? c (optional b, all next):
--   a1 c1 (b skipped); a2 b1 c2.
--
SELECT streamflink.create_pattern_pipeline('q_times', 'ev', 'k', 'a{2,3} b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'q_times_out');
SELECT streamflink.create_pattern_pipeline('q_relaxed', 'ev', 'k', 'a{->2,3} -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'q_relaxed_out');
SELECT streamflink.create_pattern_pipeline('q_optional', 'ev', 'k', 'a b? c',
	$$a AS id ~ '^a', b AS id ~ '^b', c AS id ~ '^c'$$, 'q_optional_out');

--
-- Greedy.  Key 6: e1=1 e2=2 e3=7 e4=9, a AS 0 < x < 9, b AS x > 5:
-- e3 is both an a and a b.
--   a{2,} -> b (non-greedy: every way): at e3, e1 e2 takes e3 as a b
--   (a:e1 a:e2 b:e3) and as a third a; at e4 (b only) a:e1 a:e2 a:e3 b:e4
--   and a:e2 a:e3 b:e4.
--   a{2,}+ -> b (greedy): e3 can be an a, so it is not a b: only the two
--   matches ending at e4.
--
SELECT streamflink.create_pattern_pipeline('g_nongreedy', 'ev', 'k', 'a{2,} -> b',
	$$a AS x > 0 AND x < 9, b AS x > 5$$, 'g_nongreedy_out');
SELECT streamflink.create_pattern_pipeline('g_greedy', 'ev', 'k', 'a{2,}+ -> b',
	$$a AS x > 0 AND x < 9, b AS x > 5$$, 'g_greedy_out');

--
-- Greedy, as Flink's NFACompiler.updateWithGreedyCondition: every edge of
-- the first state of the element after a greedy one also needs "not a", so
-- a match waiting there dies on the next a (Flink's GreedyITCase).
-- Key 15: c x1 a1 x2 a2 x3 a3 d.
--   c -> a{->1,}+ -> d: c a1 waits for d from x2 and dies at a2, c a1 a2
--   at a3: only c a1 a2 a3 d.
--   c -> a{->,}+ -> d (a*, testGreedyZeroOrMoreInBetween): c, waiting for
--   d from x1, dies at a1 too: the same one match.
-- Key 16: a1 a2 x1 a3 b1, a{2,}+ -> b: a1 a2 waits for b from x1 and dies
--   at a3, and a3 is one a: no match (non-greedy, a1 a2 b1).
-- Key 17: a1 a2 a3 a4 b1, a{2,3}+ -> b (a range): a1 a2 a3 is full at a3,
--   which in Flink puts it in b's first state; a4 kills it there: a2 a3 a4
--   b1 and a3 a4 b1.
-- Key 18: c a1 x1 a2 e, c -> a{->,}+ -> d? -> e: the condition is on the
--   next element's first state only.  At x1 c a1 waits in e, which keeps
--   its edges (and in d's ignore state, which an optional d has apart):
--   a2 does not kill it: c a1 e and c a1 a2 e.
-- Key 19: c a1 a2 d1 e, the same (testGreedyZeroOrMoreBeforeOptional2):
--   c a1 a2 d1 e and c a1 a2 e.
--
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

--
-- Iterative conditions.
-- Key 7: ten consecutive rising readings per sensor (the documentation's
--   third pattern), e1..e11 rising (x = 1..11), e12 falls (x = 5); skip
--   past the last event: e1..e10 only (e2..e11 started inside it).
-- Key 8: s+ t, s AS the running sum of s with this event stays <= 10,
--   t AS x >= 100, skip past the last event.
--   3 4 2 100: 3+4+2 = 9: s:3 s:4 s:2 t:100 (the others pruned).
-- Key 9: 3 4 5 100: 3+4+5 = 12 breaks the first match; 4+5 = 9: s:4 s:5
--   t:100, and 5 100 started inside it.
--
SELECT streamflink.create_pattern_pipeline('i_rising', 'ev', 'k', 'r{10}',
	$$r AS LAST(r.x) IS NULL OR x > LAST(r.x)$$, 'i_rising_out',
	skip => 'skip_past_last_event',
	measures => 'first(r.x) AS first_x, last(r.x) AS last_x, count(r.*) AS n');
SELECT streamflink.create_pattern_pipeline('i_sum', 'ev', 'k', 's+ t',
	$$s AS coalesce(sum(s.x), 0) + x <= 10, t AS x >= 100$$, 'i_sum_out',
	skip => 'skip_past_last_event',
	measures => 'sum(s.x) AS total, t.x AS big');

--
-- After-match skip strategies (Flink's documentation example): key 10,
-- b1 b2 b3 c1, pattern b+ c: the three matches all end at c1.
--   no_skip:				b1 b2 b3 c1, b2 b3 c1, b3 c1
--   skip_past_last_event:	b1 b2 b3 c1 (the others started before c1)
--   skip_to_first(b):		all three (nothing started before b1)
--   skip_to_last(b):		b1 b2 b3 c1, b3 c1 (b2 b3 c1 started before b3)
-- Key 11, a1 b1 b2, pattern a b+: a1 b1 completes at b1 and a1 b1 b2 at b2.
--   no_skip:		a1 b1, a1 b1 b2
--   skip_to_next:	a1 b1 (the match started at a1 is discarded)
--
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

--
-- Matches held back (Flink's NFA.processMatchesAccordingToSkipStrategy):
-- with a skip strategy, a completed match is emitted only once no open
-- partial match started before it; that one may complete first and prune
-- it.  Key 20: a1=1 a2=2 b1=2 b2=1, a -> b, b AS x = LAST(a.x): a2 b1
-- completes at b1 but waits, a1 being open; a1 b2 completes at b2 and goes
-- first.
--   skip_past_last_event:	a1 b2 (a2 b1 started before b2: pruned)
--   skip_to_next:			a1 b2, a2 b1 (only what started at a1 is pruned)
--   skip_to_first(b):		a1 b2 (a2 b1 started before b2)
--   no_skip:				a1 b2, a2 b1, each emitted when it completes
-- Key 21: a1=1@0 a2=2@1 b1=2@2, the same within 5 minutes, skip past the
--   last event: a1 never completes; when the watermark times it out (at
--   minute 5, to the timed-out table), a2 b1 goes.
-- Key 22: a1=1@0 a2=2@1 b1=2@2 c1@7: the same, a1 timed out by c1.
--
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

--
-- The documentation's first two patterns, with within.
-- Key 12: LOGIN then PURCHASE within 5 minutes: login1@0 purchase1@3 is a
--   match; login2@10 purchase2@17 is not (7 minutes): the partial match of
--   login2 times out at minute 15 and goes to the timed-out table.
-- Key 13: at least 5 transactions under 100 followed by a withdrawal over
--   5000, within 1 hour, skip past the last event: s1..s6 w1 (the match
--   from s2 is pruned).
-- Key 14: s1..s5, then w1 two hours later: no match (timed out).
--
SELECT streamflink.create_pattern_pipeline('doc_login', 'ev', 'k', 'login -> purchase',
	$$login AS id ~ '^login', purchase AS id ~ '^purchase'$$, 'doc_login_out',
	within => '5 minutes', timed_out => 'doc_login_timeouts');
SELECT streamflink.create_pattern_pipeline('doc_fraud', source => 'ev', key => 'k',
	pattern => 'small{5,} large',
	define => $$ small AS x < 100, large AS x > 5000 AND id ~ '^w' $$,
	within => '1 hour', sink => 'doc_fraud_out', skip => 'skip_past_last_event',
	measures => 'count(small.*) AS n_small, sum(small.x) AS small_total, large.x AS withdrawal');

-- Catalog rows.
SELECT name, kind, key, pattern, define, measures, within, skip, timed_out, sink
FROM streamflink.pipelines WHERE kind = 'pattern' ORDER BY name;
\d doc_fraud_out
\d doc_login_timeouts

--
-- A negation at the end.  notFollowedBy last (with within only): Flink's
-- pending state; the match (the events before the negation) is emitted
-- when the within window of its first event ends without the negated
-- event, not written to the timed-out table.  Time is advanced before an
-- event is processed (NFA.process calls advanceTime first, timed out when
-- t - start >= within), so an event at the window's end comes too late to
-- cancel it.
-- Key 26, a -> !b within 3 minutes, NotPatternITCase.testNotFollowedByWithinAtEnd:
--   a1@1 b1@2 a2@4 c@5 b2@10 a3@11 b3@13: a1 is cancelled by b1; a2's
--   window ends at minute 7, before b2: a2; a3 is cancelled by b3.
-- Key 27: a1@0 b1@3 a2@10: b1 comes at the end of a1's window: a1; a2 when
--   the final watermark passes minute 13: a2.
-- Key 28, a+ -> !b within 3 minutes: a1@0 a2@1.  a1 is followed by a2 (not
--   a b): pending; a1 a2 and a2 are still in a+ when their windows end,
--   and are matches too (FLINK-31040: before it Flink timed them out):
--   a1, a1 a2, a2.
-- Key 29: a1@0 a2@1 b1@2: b1 ends all three (also those still in a+).
-- Key 30, a{->>1,} -> c -> !b within 5 minutes, skip past the last event,
--   NotPatternITCase.testNotFollowedByWithinAtEndAfterMatch: a1@1 a2@2
--   a3@3 c1@4 c2@10: every combination of a's with c1 is pending; at c2
--   (minute 10) all their windows have ended: the first, a1 a2 a3 c1,
--   prunes the others (FLINK-31017: the skip strategy applies to matches
--   completed by time too).
-- notNext last (no within needed; NFACompiler: an ignore edge from the
-- notNext state to the final state): the match completes at the next
-- event if that is not a b, without it; a b drops it.
-- Key 31, a !b: a1 b1 a2 c1 a3: a1 is dropped at b1; a2 completes at c1;
--   a3 has no next event: nothing.
-- Key 32, a+ !b: a1 a2 b1 a3 c1: a1 completes at a2 (not a b); a1 a2 and
--   a2 are dropped at b1; a3 completes at c1: a1, a3.
-- Key 33, a !b within 3 minutes: a1@0 c1@1 a2@5: a1 completes at c1; a2
--   has no next event within its window: timed out (a notNext state is
--   no pending state), at minute 8.
--
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

-- The events (one partition; the last one moves the watermark past all).
-- (kept: the sinks are compared with run_operator over them at the end)
CREATE TEMP TABLE cep_input AS SELECT
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
	cep_events(3000, 'end') AS events;
SELECT streamflink.produce(regress_brokers(), 'regress_cep', (SELECT events FROM cep_input), 0) AS produced;

SELECT cep_run('{c_next,c_followed,c_any,n_notnext,n_notfollowed,q_times,q_relaxed}');
SELECT wait_until($$SELECT cep_finished('{c_next,c_followed,c_any,n_notnext,n_notfollowed,q_times,q_relaxed}')$$);
SELECT cep_stop('{c_next,c_followed,c_any,n_notnext,n_notfollowed,q_times,q_relaxed}');
SELECT wait_until($$SELECT cep_stopped('{c_next,c_followed,c_any,n_notnext,n_notfollowed,q_times,q_relaxed}')$$);

SELECT cep_show('c_next_out', 1) AS "a b";
SELECT cep_show('c_followed_out', 1) AS "a -> b";
SELECT cep_show('c_any_out', 1) AS "a ->> b";
SELECT cep_show('n_notnext_out', 2) AS "a !c -> b";
SELECT cep_show('n_notfollowed_out', 2) AS "a -> !c -> b";
SELECT cep_show('q_times_out', 3) AS "a{2,3} b (key 3)";
SELECT cep_show('q_times_out', 4) AS "a{2,3} b (key 4)";
SELECT cep_show('q_relaxed_out', 4) AS "a{->2,3} -> b";

SELECT cep_run('{q_optional,g_nongreedy,g_greedy,i_rising,i_sum,s_none,s_past}');
SELECT wait_until($$SELECT cep_finished('{q_optional,g_nongreedy,g_greedy,i_rising,i_sum,s_none,s_past}')$$);
SELECT cep_stop('{q_optional,g_nongreedy,g_greedy,i_rising,i_sum,s_none,s_past}');
SELECT wait_until($$SELECT cep_stopped('{q_optional,g_nongreedy,g_greedy,i_rising,i_sum,s_none,s_past}')$$);

SELECT cep_show('q_optional_out', 5) AS "a b? c";
SELECT cep_show('g_nongreedy_out', 6) AS "a{2,} -> b";
SELECT cep_show('g_greedy_out', 6) AS "a{2,}+ -> b";
SELECT match_start, match_end, first_x, last_x, n FROM i_rising_out WHERE k = 7;
SELECT cep_show('i_sum_out', 8) AS "s+ t (key 8)", cep_show('i_sum_out', 9) AS "s+ t (key 9)";
SELECT k, total, big FROM i_sum_out WHERE k IN (8, 9) ORDER BY k;
SELECT cep_show('s_none_out', 10) AS "no_skip";
SELECT cep_show('s_past_out', 10) AS "skip_past_last_event";

SELECT cep_run('{s_first,s_last,s_none2,s_next,doc_login,doc_fraud}');
SELECT wait_until($$SELECT cep_finished('{s_first,s_last,s_none2,s_next,doc_login,doc_fraud}')$$);
SELECT cep_stop('{s_first,s_last,s_none2,s_next,doc_login,doc_fraud}');
SELECT wait_until($$SELECT cep_stopped('{s_first,s_last,s_none2,s_next,doc_login,doc_fraud}')$$);

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

SELECT cep_run('{g_relaxed,g_star,g_waiting,g_range,g_optional}');
SELECT wait_until($$SELECT cep_finished('{g_relaxed,g_star,g_waiting,g_range,g_optional}')$$);
SELECT cep_stop('{g_relaxed,g_star,g_waiting,g_range,g_optional}');
SELECT wait_until($$SELECT cep_stopped('{g_relaxed,g_star,g_waiting,g_range,g_optional}')$$);

SELECT cep_show('g_relaxed_out', 15) AS "c -> a{->1,}+ -> d";
SELECT cep_show('g_star_out', 15) AS "c -> a{->,}+ -> d";
SELECT cep_show('g_waiting_out', 16) AS "a{2,}+ -> b";
SELECT cep_show('g_range_out', 17) AS "a{2,3}+ -> b";
SELECT cep_show('g_optional_out', 18) AS "c -> a{->,}+ -> d? -> e (key 18)";
SELECT cep_show('g_optional_out', 19) AS "c -> a{->,}+ -> d? -> e (key 19)";

SELECT cep_run('{h_past,h_next,h_first,h_none,h_within}');
SELECT wait_until($$SELECT cep_finished('{h_past,h_next,h_first,h_none,h_within}')$$);
SELECT cep_stop('{h_past,h_next,h_first,h_none,h_within}');
SELECT wait_until($$SELECT cep_stopped('{h_past,h_next,h_first,h_none,h_within}')$$);

SELECT cep_show('h_past_out', 20) AS "skip_past_last_event";
SELECT cep_show('h_next_out', 20) AS "skip_to_next";
SELECT cep_show('h_first_out', 20) AS "skip_to_first(b)";
SELECT cep_show('h_none_out', 20) AS "no_skip";
SELECT cep_show('h_within_out', 21) AS "within (key 21)", cep_show('h_within_out', 22) AS "within (key 22)";
SELECT k, match_start, timed_out_at, events->'a'->0->>'id' AS a
FROM h_within_timeouts WHERE k IN (21, 22) ORDER BY k;

SELECT cep_run('{e_notfollowed,e_loop,e_skip,e_notnext,e_notnext_loop,e_notnext_within}');
SELECT wait_until($$SELECT cep_finished('{e_notfollowed,e_loop,e_skip,e_notnext,e_notnext_loop,e_notnext_within}')$$);
SELECT cep_stop('{e_notfollowed,e_loop,e_skip,e_notnext,e_notnext_loop,e_notnext_within}');
SELECT wait_until($$SELECT cep_stopped('{e_notfollowed,e_loop,e_skip,e_notnext,e_notnext_loop,e_notnext_within}')$$);

SELECT cep_show('e_notfollowed_out', 26) AS "a -> !b (key 26)", cep_show('e_notfollowed_out', 27) AS "a -> !b (key 27)";
-- a match ends at its last event; nothing timed out
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

--
-- Late events (Flink's CepOperator: late if t <= watermark, whose watermark
-- is the maximum event time less the out-of-orderness less 1 ms): an event
-- at the maximum event time so far is not late.  Source ev_eq, no
-- out-of-orderness, x -> y, key 23: x1@1 first; once the watermark is at
-- x1's time, y1@1, at the same time: not late: x1 y1.
--
SELECT streamflink.create_source('ev_eq', regress_brokers(), 'regress_cep_eq', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts',
	idle_timeout => '1 second');
SELECT streamflink.create_pattern_pipeline('late_eq', 'ev_eq', 'k', 'x -> y',
	$$x AS id ~ '^x', y AS id ~ '^y'$$, 'late_eq_out');
SELECT streamflink.produce(regress_brokers(), 'regress_cep_eq', cep_events(23, 'x1@1'), 0) AS produced;
SELECT cep_run('{late_eq}');
SELECT wait_until($$SELECT watermark = timestamptz '2024-01-24 00:01+00'
	FROM streamflink.pipelines WHERE name = 'late_eq'$$);
SELECT streamflink.produce(regress_brokers(), 'regress_cep_eq',
	cep_events(23, 'y1@1') || cep_events(3000, 'end'), 0) AS produced;
SELECT wait_until($$SELECT cep_finished('{late_eq}')$$);
SELECT cep_stop('{late_eq}');
SELECT wait_until($$SELECT cep_stopped('{late_eq}')$$);
SELECT cep_show('late_eq_out', 23) AS "x -> y";
SELECT count(*) AS late FROM streamflink.late_events WHERE pipeline = 'late_eq';

--
-- A runtime error in a condition or a measure stops the pipeline (it is
-- retried after a back-off); the error says where: pipeline, variable or
-- measure, key and event time.  On source ev_eq, key 24: a1=1 a2=0, a's
-- condition divides by x: fails at a2.  Key 25: a1 b1=0, a measure divides
-- by b.x: fails on the match a1 b1.
--
SELECT streamflink.create_pattern_pipeline('err_cond', 'ev_eq', 'k', 'a -> b',
	$$a AS CASE WHEN id ~ '^a' THEN 1 / x > 0 END, b AS id ~ '^b'$$, 'err_cond_out');
SELECT streamflink.create_pattern_pipeline('err_measure', 'ev_eq', 'k', 'a -> b',
	$$a AS id ~ '^a', b AS id ~ '^b'$$, 'err_measure_out',
	measures => $$a.x AS ax, CASE WHEN b.id ~ '^b' THEN 1 / b.x END AS inv$$);
SELECT streamflink.produce(regress_brokers(), 'regress_cep_eq',
	cep_events(24, 'a1=1 a2=0') || cep_events(25, 'a1 b1=0'), 0) AS produced;
SELECT cep_run('{err_cond,err_measure}');
-- (Each is failed for a few seconds of each retry: keep what was seen.)
CREATE TEMP TABLE cep_errors (name text PRIMARY KEY, error text);
SELECT wait_until($$WITH seen AS (
		INSERT INTO cep_errors SELECT name, error FROM streamflink.pipelines
		WHERE name IN ('err_cond', 'err_measure') AND status = 'failed'
		ON CONFLICT DO NOTHING)
	SELECT count(*) = 2 FROM cep_errors$$);
SELECT name, error FROM cep_errors ORDER BY name;
SELECT cep_stop('{err_cond,err_measure}');
SELECT wait_until($$SELECT cep_stopped('{err_cond,err_measure}')$$);

-- Nothing was late, nothing dead.
SELECT count(*) AS late FROM streamflink.late_events WHERE pipeline LIKE 'doc%';
SELECT count(*) AS dead FROM streamflink.dead_letters WHERE pipeline LIKE 'doc%';

-- live() of a pattern pipeline: its open partial matches as of its last
-- checkpoint (here the one of its stop, after every event): key, first
-- and last event's time, events so far by variable; measures NULL.  Key
-- 11 of s_none2 (a b+, a1 b1 b2): a1 b1 b2 may still take another b.
-- doc_fraud's (within 1 hour) have all timed out.
SELECT k, match_start, match_end,
	   (SELECT string_agg(e->>'id', ' ' ORDER BY (e->>'ts')::timestamptz)
		FROM jsonb_each(events) v, jsonb_array_elements(v.value) e) AS events
FROM streamflink.live('s_none2', NULL::s_none2_out)
WHERE k = 11;
SELECT count(*) AS partial_matches FROM streamflink.live('doc_fraud');

-- Every sink and timed-out table of the pipelines above holds exactly the
-- rows streamflink.run_operator gives for the same messages (no Kafka,
-- one watermark step at the end).
CREATE FUNCTION cep_run_operator_differ(pipeline text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	p record;
	differ bigint := 0;
	n bigint;
	t text;
	o text;
BEGIN
	SELECT sink, timed_out INTO STRICT p FROM streamflink.pipelines WHERE name = pipeline;
	CREATE TEMP TABLE cep_ro AS
	SELECT r.output, r.data FROM cep_input, streamflink.run_operator(pipeline, events) r;
	FOREACH o IN ARRAY ARRAY['result', 'timed_out'] LOOP
		t := CASE o WHEN 'result' THEN p.sink ELSE p.timed_out END;
		CONTINUE WHEN t IS NULL;
		EXECUTE format('SELECT count(*) FROM ((SELECT to_jsonb(s) FROM %s s EXCEPT ALL
												SELECT data FROM cep_ro WHERE output = %L)
											   UNION ALL
											   (SELECT data FROM cep_ro WHERE output = %L EXCEPT ALL
												SELECT to_jsonb(s) FROM %s s)) d', t, o, o, t)
			INTO n;
		differ := differ + n;
	END LOOP;
	DROP TABLE cep_ro;
	RETURN differ;
END
$$;
-- (Event times in the events column are shown in the session's time zone:
-- the worker's is the server's, UTC here.)
SET timezone = 'UTC';
SELECT count(*) AS pipelines, sum(cep_run_operator_differ(name)) AS rows_differ
FROM streamflink.pipelines WHERE kind = 'pattern' AND source = 'ev';
RESET timezone;
DROP FUNCTION cep_run_operator_differ(text);

-- Drop everything (sinks and timed-out tables too).
SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM streamflink.pipeline WHERE kind = 'pattern' ORDER BY name;
SELECT to_regclass('doc_login_timeouts') AS timeouts_dropped;
SELECT streamflink.drop_source('ev');
SELECT streamflink.drop_source('ev_eq');
