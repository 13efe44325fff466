--
-- cep_flink: Flink CEP's own test cases, translated (issue 12), through
-- streamflink.run_operator.  First notNext / notFollowedBy around loops and
-- times, as Flink's NFACompiler builds them; then after-match skip cases.
--
-- Flink's rules used below (NFACompiler, NFA.doProcess):
--  * A notFollowedBy !c right after a loop or times b adds a stop state on
--    c to every inner state of b (the states after 1 .. max-1 events, the
--    looping state, and the looping state's ignore state:
--    addStopStateToLooping, createTimesState, createLooping); the first
--    state of the element after !c has one too (addStopStates).  The ignore
--    state of an optional inner state of a times (past the minimum) is the
--    exception: it has the stop states of the notFollowedBy elements before
--    b instead (createSingletonState calls addStopStates on it).
--  * A notNext !c is a state of its own, which proceeds to a stop state on
--    c; the states of b that proceed (past the minimum, not having ignored
--    an event) reach it on every event.
--  * When one edge of a partial match's state leads to a stop state, every
--    state the event makes of that partial match is discarded: the take,
--    the ignore branch that skips the event inside the loop, the proceed.
--    Completed matches stay.
--
-- Each case is a Flink test (cited by its method name; the events are fed
-- in the test's list order, one minute apart) or a case of the issue.  A
-- row is "result" or "timed_out" and the events by variable.  Variables
-- match the events whose id starts with the variable's letter.
--
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT streamflink.create_source('nl', '127.0.0.1:1', 'unused', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts');

-- Events "a1 b1 ...": one minute apart, in this order ("a1@10": at
-- minute 10; "a1=5": x is 5, else 0).
CREATE FUNCTION nl_events(spec text) RETURNS text[]
LANGUAGE sql AS $$
	SELECT array_agg(json_build_object('k', 1, 'id', m[1], 'x', coalesce(m[3]::numeric, 0),
			'ts', timestamptz '2024-01-01 00:00+00'
				  + coalesce(m[2]::int, i - 1) * interval '1 minute')::text
			ORDER BY i)
	FROM regexp_split_to_table(btrim(spec), '\s+') WITH ORDINALITY AS t(tok, i),
		 regexp_match(tok, '^([a-z_]+[0-9]*)(?:@([0-9]+))?(?:=([0-9.]+))?$') AS m
$$;

-- A pipeline of pattern over nl, run over the events; its rows, one line
-- each.  Without define, each variable v is id ~ '^v' (trailing
-- underscores of v left out).
CREATE FUNCTION nl_run(name text, pattern text, spec text,
					   within interval DEFAULT NULL, skip text DEFAULT 'no_skip',
					   define text DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM streamflink.create_pattern_pipeline(name, 'nl', 'k', pattern,
		coalesce(define,
			(SELECT string_agg(format('%s AS id ~ %L', v, '^' || rtrim(v, '_')), ', ')
			 FROM (SELECT DISTINCT m[1] AS v FROM regexp_matches(pattern, '([a-z_]+)', 'g') m) vs)),
		name || '_out', within => within, skip => skip,
		timed_out => CASE WHEN within IS NOT NULL THEN name || '_to' END);
	RETURN QUERY
	SELECT r.output || ' ' ||
		   (SELECT string_agg(j.key || ':' || (e->>'id'), ' ' ORDER BY (e->>'ts')::timestamptz)
			FROM jsonb_each(r.data->'events') j, jsonb_array_elements(j.value) e)
	FROM streamflink.run_operator(name, nl_events(spec)) r
	ORDER BY 1;
END
$$;

--
-- The issue's case: a -> b{->1,} -> !c -> d on a1 b1 b2 c1 d1.  b1 and b2
-- are in b's looping state; c1 takes its stop edge, which discards the
-- partial match with its ignore branch (that skipped c1 inside the loop),
-- and the one waiting for d (d's first state stops on c): nothing.
--
SELECT nl_run('issue', 'a -> b{->1,} -> !c -> d', 'a1 b1 b2 c1 d1') AS "issue";

--
-- NotPatternITCase.testNotFollowedByNextAfterOneOrMoreEager: a, followedBy
-- b oneOrMore (relaxed iterations), notFollowedBy c, followedBy d, on
-- a1 b1 b2 b3 c1 b4 b5 b6 d1.  a1 waits for b in a relaxed first state,
-- which takes b1 and is gone; every partial match then has b1 and dies at
-- c1.  Flink: no match.
--
SELECT nl_run('next_after_eager', 'a -> b{->1,} -> !c -> d',
	'a1 b1 b2 b3 c1 b4 b5 b6 d1') AS "testNotFollowedByNextAfterOneOrMoreEager";

-- NotPatternITCase.testNotFollowedByNextAfterOneOrMoreCombinations: the
-- same with allowCombinations (b{->>1,}): still b1 in every partial match,
-- all die at c1.  Flink: no match.
SELECT nl_run('next_after_comb', 'a -> b{->>1,} -> !c -> d',
	'a1 b1 b2 b3 c1 b4 b5 b6 d1') AS "testNotFollowedByNextAfterOneOrMoreCombinations";

--
-- NotPatternITCase.testNotFollowedByAnyAfterOneOrMoreEager: followedByAny
-- into b.  a1 keeps waiting for b (the first state of b has no stop state:
-- no notFollowedBy before b), so after c1 it starts b at b4, b5 or b6; the
-- partial matches that took b1, b2 or b3 die at c1.  Relaxed iterations
-- take every later b: b4 b5 b6, b4 b5, b4, b5 b6, b5, b6.  Flink: these 6.
--
SELECT nl_run('any_after_eager', 'a ->> b{->1,} -> !c -> d',
	'a1 b1 b2 b3 c1 b4 b5 b6 d1') AS "testNotFollowedByAnyAfterOneOrMoreEager";

-- NotPatternITCase.testNotFollowedByAnyAfterOneOrMoreCombinations: with
-- allowCombinations also b4 b6.  Flink: these 7.
SELECT nl_run('any_after_comb', 'a ->> b{->>1,} -> !c -> d',
	'a1 b1 b2 b3 c1 b4 b5 b6 d1') AS "testNotFollowedByAnyAfterOneOrMoreCombinations";

--
-- NotPatternITCase.testNotNextAfterOneOrMoreSkipTillNext: a, followedBy b
-- oneOrMore, notNext c, followedBy d, on a1 b1 c1 b2 d1.  At c1 the looping
-- state of b (b1) proceeds to notNext's state, which proceeds to its stop
-- state: the partial match dies with its ignore branch, which would have
-- taken b2.  Flink: no match.
--
SELECT nl_run('notnext_after_next', 'a -> b{->1,} !c -> d', 'a1 b1 c1 b2 d1')
	AS "testNotNextAfterOneOrMoreSkipTillNext";

-- NotPatternITCase.testNotNextAfterOneOrMoreSkipTillAny: followedByAny
-- into b: a1 still waits for b after c1 and takes b2.  Flink: a1 b2 d1.
SELECT nl_run('notnext_after_any', 'a ->> b{->1,} !c -> d', 'a1 b1 c1 b2 d1')
	AS "testNotNextAfterOneOrMoreSkipTillAny";

--
-- NotPatternITCase.testTimesWithNotFollowedBy: a, followedByAny b times(2)
-- (relaxed iterations), notFollowedBy c, followedBy d, on a1 b1 c b2 d.
-- b1 is in the inner state after one event, whose stop state takes c (the
-- ignore branch, the same state in a times, with it); a1 waiting for b
-- takes b2 but needs another b.  Flink: no match.
--
SELECT nl_run('times_not', 'a ->> b{->2} -> !c -> d', 'a1 b1 c1 b2 d1')
	AS "testTimesWithNotFollowedBy";

-- NotPatternITCase.testTimesWithNotFollowedByAfter: the same pattern on
-- a1 d1 e b1 b2 c1 d2: b1 b2 fill b (the partial match is in d's first
-- state, which stops on c1), b2 alone is in the inner state (stops on c1).
-- Flink: no match.
SELECT nl_run('times_not_after', 'a ->> b{->2} -> !c -> d', 'a1 d1 e1 b1 b2 c1 d2')
	AS "testTimesWithNotFollowedByAfter";

--
-- Negations before a loop stop only until its first event (the stop
-- states are on the first state of b).
-- NotPatternITCase.testNotFollowedByBeforeOneOrMoreEager: a, notFollowedBy
-- c, followedBy b oneOrMore, followedBy d, on a1 b1 c1 b4 b5 b6 d1: b1 is
-- taken before c1; c1 is skipped inside the loop.  Flink: b1, b1 b4,
-- b1 b4 b5, b1 b4 b5 b6 (each with a1 and d1).
--
SELECT nl_run('before_eager', 'a -> !c -> b{->1,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeOneOrMoreEager";

-- NotPatternITCase.testNotFollowedByBeforeOneOrMoreCombinations: with
-- allowCombinations, every subset of b4 b5 b6 after b1.  Flink: 8 matches.
SELECT nl_run('before_comb', 'a -> !c -> b{->>1,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeOneOrMoreCombinations";

-- NotPatternITCase.testNotFollowedByAnyBeforeOneOrMoreEager: followedByAny
-- into b: a1 waiting for another first b dies at c1 (b's first state stops
-- on c).  Flink: the 4 matches of the eager case.
SELECT nl_run('before_any_eager', 'a -> !c ->> b{->1,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByAnyBeforeOneOrMoreEager";

-- NotPatternITCase.testNotFollowedByAnyBeforeOneOrMoreCombinations: the 8.
SELECT nl_run('before_any_comb', 'a -> !c ->> b{->>1,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByAnyBeforeOneOrMoreCombinations";

--
-- The other NotPatternITCase cases our syntax expresses (no optional
-- variable right after a negation).
-- testNotNext: a, notNext b, followedByAny c, followedBy d on
-- a1 c1 b1 c2 d1.  Flink: a1 c1 d1, a1 c2 d1.
SELECT nl_run('notnext', 'a !b ->> c -> d', 'a1 c1 b1 c2 d1') AS "testNotNext";
-- testNotNextNoMatches: a !b -> c -> d on a1 b1 c1 c2 d1.  Flink: none.
SELECT nl_run('notnext_none', 'a !b -> c -> d', 'a1 b1 c1 c2 d1') AS "testNotNextNoMatches";
-- testNotNextNoMatchesAtTheEnd: a ->> c ->> d !b on a1 c1 c2 d1 b1: the
-- only d is followed by b1.  Flink: none.
SELECT nl_run('notnext_end', 'a ->> c ->> d !b', 'a1 c1 c2 d1 b1') AS "testNotNextNoMatchesAtTheEnd";
-- testNotFollowedBy: a -> !b ->> c -> d on a1 c1 b1 c2 d1.  Flink: a1 c1 d1.
SELECT nl_run('notfollowed', 'a -> !b ->> c -> d', 'a1 c1 b1 c2 d1') AS "testNotFollowedBy";
-- testNotFollowedByWithBranchingAtStart: a -> !b -> c -> d on
-- a1 b1 c1 a2 c2 d1.  Flink: a2 c2 d1.
SELECT nl_run('notfollowed_branch', 'a -> !b -> c -> d', 'a1 b1 c1 a2 c2 d1')
	AS "testNotFollowedByWithBranchingAtStart";

--
-- Trailing notFollowedBy (with within) after a times still below its
-- minimum: a{->2} -> !c within 5 minutes on a1 c1 a2 a3.  a1 is in the
-- inner state after one event, whose stop state takes c1 (before, the
-- ignore branch survived and matched a1 a2).  a2 a3 fill a: pending until
-- a2's window ends, no c: a match.  a3 alone times out.
--
SELECT nl_run('trailing_times', 'a{->2} -> !c', 'a1 c1 a2 a3', '5 minutes')
	AS "a{->2} -> !c within";

-- The same with notNext: the inner state has no stop state (notNext's
-- state is reached by proceeding only, past the minimum), so a1 skips c1;
-- a1 a2 completes at a3, which is not a c; a2 a3 and a3 time out.
SELECT nl_run('trailing_times_next', 'a{->2} !c', 'a1 c1 a2 a3', '5 minutes')
	AS "a{->2} !c within";

--
-- A times range before a notNext: a{->2,3} !d c within 3 minutes on
-- a1 a2 d1.  a1 a2 is past the minimum: its state proceeds to notNext's
-- state, which stops on d1, so it dies with its ignore branch (before, that
-- branch timed out as a1 a2).  a2 alone is below the minimum (no proceed)
-- and skips d1: it times out.
--
SELECT nl_run('range_notnext', 'a{->2,3} !d c', 'a1 a2 d1', '3 minutes')
	AS "a{->2,3} !d c within";

--
-- A times range before a notFollowedBy, in the ignore state of an optional
-- inner state: a -> b{->1,2} -> !c -> d on a1 b1 e1 c1 b2 d1.  b1 is past
-- the minimum; e1 is skipped into that ignore state, which has no stop
-- state for c (only those of negations before b: none), so c1 does not end
-- it; b2 fills b and d1 completes a1 b1 b2 d1.  The branch that proceeded
-- at e1 to wait for d dies at c1.  (Flink's graph; a looping b would die.)
--
SELECT nl_run('range_ignore', 'a -> b{->1,2} -> !c -> d', 'a1 b1 e1 c1 b2 d1')
	AS "a -> b{->1,2} -> !c -> d";
SELECT nl_run('loop_ignore', 'a -> b{->1,} -> !c -> d', 'a1 b1 e1 c1 b2 d1')
	AS "a -> b{->1,} -> !c -> d";

--
-- Greedy: the looping state's own stop state is not under the greedy
-- condition.  a -> b{->1,}+ -> !c -> d on a1 b1 b2 c1 d1: nothing; on
-- a1 b1 b2 e1 d1 the greedy loop keeps b1 b2 and proceeds at e1 only:
-- a1 b1 b2 d1.
--
SELECT nl_run('greedy_c', 'a -> b{->1,}+ -> !c -> d', 'a1 b1 b2 c1 d1') AS "greedy, c";
SELECT nl_run('greedy_e', 'a -> b{->1,}+ -> !c -> d', 'a1 b1 b2 e1 d1') AS "greedy, e";

--
-- Strict contiguity: a b{2,} !c d on a1 b1 b2 b3 c1 d1 and a1 b1 b2 b3 d1.
-- Consecutive b's cannot skip; past the minimum, c1 reaches notNext's stop
-- state.  First: nothing; second: a1 b1 b2 b3 d1.
--
SELECT nl_run('strict_c', 'a b{2,} !c d', 'a1 b1 b2 b3 c1 d1') AS "strict, c";
SELECT nl_run('strict_d', 'a b{2,} !c d', 'a1 b1 b2 b3 d1') AS "strict, d";

--
-- An optional variable after a negation (NFACompiler.copyWithoutTransitiveNots:
-- a take in the optional variable leads to states without the stop states
-- of the negations before it; skipping it keeps them).
--
-- NotPatternITCase.testNotFollowedByBeforeOptional: a, notFollowedBy b,
-- followedByAny c optional, followedBy d, on a1 c1 b1 c2 d1.  a1 c1 waits
-- for d past b1 (c took c1); a1 waiting for c, or for d without a c, dies
-- at b1.  Flink: a1 c1 d1.
SELECT nl_run('before_optional', 'a -> !b ->> c? -> d', 'a1 c1 b1 c2 d1')
	AS "testNotFollowedByBeforeOptional";

-- NotPatternITCase.testNotFollowedByBeforeOptionalAtTheEnd: a -> !b ->> c?
-- on a1 c1 b1 c2: a1 is a match at once (the rest can be skipped: the
-- notFollowedBy is a condition on c's edges), a1 c1 at c1; a1 waiting for
-- another c dies at b1.  Flink: a1, a1 c1.
SELECT nl_run('before_optional_end', 'a -> !b ->> c?', 'a1 c1 b1 c2')
	AS "testNotFollowedByBeforeOptionalAtTheEnd";

-- NotPatternITCase.testNotFollowedByBeforeZeroOrMore*: a, notFollowedBy c,
-- followedBy / followedByAny b oneOrMore optional (eager or
-- allowCombinations), followedBy d, on a1 b1 c1 b4 b5 b6 d1.  c1 ends a1
-- waiting for d without a b, and a1 waiting for its first b; the partial
-- matches with b1 go on.  Flink: 4 (eager) and 8 (combinations) matches,
-- all with b1.
SELECT nl_run('zero_next_eager', 'a -> !c -> b{->0,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeZeroOrMoreEagerSkipTillNext";
SELECT nl_run('zero_next_comb', 'a -> !c -> b{->>0,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeZeroOrMoreCombinationsSkipTillNext";
SELECT nl_run('zero_any_eager', 'a -> !c ->> b{->0,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeZeroOrMoreEagerSkipTillAny";
SELECT nl_run('zero_any_comb', 'a -> !c ->> b{->>0,} -> d', 'a1 b1 c1 b4 b5 b6 d1')
	AS "testNotFollowedByBeforeZeroOrMoreCombinationsSkipTillAny";

-- NotPatternITCase.testNotFollowByBeforeTimesWithin: a, notFollowedBy b,
-- followedBy c times(0, 2) (Flink: times(1, 2).optional()), within 3
-- minutes (the test's milliseconds as minutes), on a1@1 b1@2 a2@10 c1@11
-- c2@12 a3@20 c3@21 c4@24.  Each a is a match at once; b1 ends a1 waiting
-- for c; a2 c1, a2 c1 c2; a3 c3, whose window ends at 23, before c4.
-- Flink: a1, a2, a2 c1, a2 c1 c2, a3, a3 c3 (the test checks matches only;
-- the partial matches whose window ends are timed out).
SELECT nl_run('before_times_within', 'a -> !b -> c{->0,2}',
	'a1@1 b1@2 a2@10 c1@11 c2@12 a3@20 c3@21 c4@24', '3 minutes')
	AS "testNotFollowByBeforeTimesWithin";

-- notNext before an optional variable: a !c b? -> d.  The event after a is
-- not a c, and may be the b.  On a1 b1 c1 d1: a1 b1 d1, and a1 d1 (b
-- skipped at b1; c1 is not right after a1); on a1 c1 b1 d1: nothing; on
-- a1 e1 c1 d1: a1 d1 (b skipped at e1).
SELECT nl_run('notnext_optional1', 'a !c b? -> d', 'a1 b1 c1 d1') AS "a !c b? -> d (1)";
SELECT nl_run('notnext_optional2', 'a !c b? -> d', 'a1 c1 b1 d1') AS "a !c b? -> d (2)";
SELECT nl_run('notnext_optional3', 'a !c b? -> d', 'a1 e1 c1 d1') AS "a !c b? -> d (3)";

--
-- After-match skip to a variable that took no event: Flink's default
-- (throwExceptionOnMiss not set) prunes nothing, as no_skip.
-- AfterMatchSkipITCase.testSkipToFirstNonExistentPositionWithoutException:
-- a, next b oneOrMore optional consecutive, next c, skipToFirst(b), on
-- a1 c1.  Flink: a1 c1.
SELECT nl_run('skip_first_missing', 'a b* c', 'a1 c1', skip => 'skip_to_first(b)')
	AS "testSkipToFirstNonExistentPositionWithoutException";
-- AfterMatchSkipITCase.testSkipToLastNonExistentPositionWithoutException
-- (the test passes skipToFirst again; skip_to_last here).  Flink: a1 c1.
SELECT nl_run('skip_last_missing', 'a b* c', 'a1 c1', skip => 'skip_to_last(b)')
	AS "testSkipToLastNonExistentPositionWithoutException";
-- AfterMatchSkipITCase.testSkipToFirstWithOptionalMatch: x oneOrMore
-- optional, next b, next c, skipToFirst(b), on events that are b, c, b, c
-- (the test's ab1 c1 ab2 c2 are no x).  Flink: b1 c1, b2 c2.
SELECT nl_run('skip_first_optional', 'x* b c', 'b1 c1 b2 c2', skip => 'skip_to_first(b)')
	AS "testSkipToFirstWithOptionalMatch";

--
-- A skip-to variable whose name ends in "_" (it used to be trimmed), with
-- spaces in the strategy.  AfterMatchSkipITCase.testSkipToLastWithOneOrMore
-- with b named b_: a, next b_ oneOrMore consecutive, skipToLast(b_), on
-- a1 b1 a2 b2 b3 a3 b4: each match prunes the partial matches that started
-- before its last b_ (the one that would take b3 with a2 b2).  Flink:
-- a1 b1, a2 b2, a3 b4.
--
SELECT nl_run('skip_underscore', 'a b_+', 'a1 b1 a2 b2 b3 a3 b4', skip => 'skip to last ( b_ )')
	AS "testSkipToLastWithOneOrMore, b_";
SELECT streamflink.create_pattern_pipeline('skip_bad', 'nl', 'k', 'a b_+', NULL, 'skip_bad_out',
	skip => 'skip_to_last(b)');

--
-- until (Flink's Pattern.until): "b{..,} until (u)", u a condition of
-- define.  On an event satisfying u the loop neither takes nor ignores
-- between iterations (Flink: take and inner ignore conditions "and not
-- until"); it may proceed.  UntilConditionITCase's events: c, then a's
-- with prices (x); the until condition and the last variable e are
-- x = 5 (the test's UNTIL_CONDITION), a4=5 is the "breaking" event.
--
-- testUntilConditionFollowedByOneOrMore: c -> a{->1,} until -> e on
-- c1 a1=2 a2=3 a4=5 a5=6: a1 a2 stops at a4, which e takes.  Flink:
-- c1 a1 a2 a4, c1 a1 a4.
SELECT nl_run('until_one', 'c -> a{->1,} until (u) -> e', 'c1=1 a1=2 a2=3 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5, e AS x = 5$$)
	AS "testUntilConditionFollowedByOneOrMore";
-- testUntilConditionFollowedByOneOrMoreCombinations: a{->>1,}, on
-- c1 a1=2 a2=3 a3=4 a4=5 a5=6.  Flink: a1 a2 a3, a1 a2, a1 a3, a1 (with
-- c1 and a4).
SELECT nl_run('until_comb', 'c -> a{->>1,} until (u) -> e', 'c1=1 a1=2 a2=3 a3=4 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5, e AS x = 5$$)
	AS "testUntilConditionFollowedByOneOrMoreCombinations";
-- testUntilConditionFollowedByOneOrMoreConsecutive: a{1,}.  Flink:
-- c1 a1 a2 a4, c1 a1 a4.
SELECT nl_run('until_consecutive', 'c -> a{1,} until (u) -> e', 'c1=1 a1=2 a2=3 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5, e AS x = 5$$)
	AS "testUntilConditionFollowedByOneOrMoreConsecutive";
-- testUntilConditionFollowedByZeroOrMore: a{->0,}: also c1 a4 (a
-- skipped).  Flink: c1 a1 a2 a4, c1 a1 a4, c1 a4.
SELECT nl_run('until_zero', 'c -> a{->0,} until (u) -> e', 'c1=1 a1=2 a2=3 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5, e AS x = 5$$)
	AS "testUntilConditionFollowedByZeroOrMore";
-- testUntilConditionFollowedByZeroOrMoreCombinations.  Flink: a1 a2 a3,
-- a1 a2, a1 a3, a1, none (with c1 and a4).
SELECT nl_run('until_zero_comb', 'c -> a{->>0,} until (u) -> e', 'c1=1 a1=2 a2=3 a3=4 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5, e AS x = 5$$)
	AS "testUntilConditionFollowedByZeroOrMoreCombinations";
-- testUntilConditionFollowedByAnyOneOrMore: c ->> a{->1,} until, a last,
-- on c1 a1=2 a2=3 a4=5 a5=6: every a run ends at a4; a5 starts a new one
-- (c1 waiting for a is a first state, whose ignore edge until leaves
-- alone).  Flink: c1 a1 a2, c1 a1, c1 a2, c1 a5.
SELECT nl_run('until_any', 'c ->> a{->1,} until (u)', 'c1=1 a1=2 a2=3 a4=5 a5=6',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x = 5$$)
	AS "testUntilConditionFollowedByAnyOneOrMore";
-- Errors: until on no loop (Flink: "The until condition is only
-- applicable to looping states."), an until condition missing in define.
SELECT streamflink.create_pattern_pipeline('until_bad', 'nl', 'k', 'c -> a{2,3} until (u)',
	$$u AS x = 5$$, 'until_bad_out');
SELECT streamflink.create_pattern_pipeline('until_bad', 'nl', 'k', 'c -> a+ until (u)',
	$$a AS x = 1$$, 'until_bad_out');

--
-- A greedy last variable (Flink accepts it): nothing follows it to decide
-- against, so a b{->1,}+ emits every prefix, as a b{->1,}, on
-- a1 b1 e1 b2 b3: a1 b1, a1 b1 b2, a1 b1 b2 b3.
--
SELECT nl_run('greedy_last', 'a b{->1,}+', 'a1 b1 e1 b2 b3') AS "a b{->1,}+";

--
-- An event that both completes a match and reaches a stop state: the
-- completed match is emitted, the partial matches the event makes are
-- discarded (NFA.doProcess keeps final states when it discards a path).
-- a -> !c -> d, c AS x = 9, on a1 d1=9 a2 d2: d's first state takes d1
-- (a final state) and stops on it (x = 9); a2 d2 as usual.
--
SELECT nl_run('stop_and_final', 'a -> !c -> d', 'a1 d1=9 a2 d2',
	define => $$a AS id ~ '^a', c AS x = 9, d AS id ~ '^d'$$) AS "a -> !c -> d, d1 also a c";

--
-- Optional quantified variables, Flink's times(n[, m]).optional() and
-- timesOrMore(n).optional(): no event, or n (..m) of them -- never 1..n-1.
-- Written (b{n})?, (b{n,m})?, (b{n,})?: SQL's row-pattern syntax for "one
-- or no occurrence of b{n}".  (b{0,m}, b* and b? are Flink's
-- times(1, m).optional(), oneOrMore().optional() and optional().)  Flink
-- compiles them as the non-optional quantifier whose first state has a
-- proceed edge too (createTimesState: only the first state is optional),
-- so a partial match with 1..n-1 events cannot proceed.
-- The events of TimesRangeITCase's and TimesOrMoreITCase's ConsecutiveData:
-- c1 (start), f1 (no variable), a1, f2, a2, a3, b1 (end1).
--
-- TimesRangeITCase.testTimesRangeNonStrictOptional2: c, followedByAny a
-- times(2, 3) allowCombinations optional, followedBy b.  a is skipped
-- (c1 b1), or takes 2 or 3 of a1 a2 a3 in any combination: a1 a2 a3,
-- a1 a2, a1 a3, a2 a3.  Flink: these 5.
SELECT nl_run('times_opt2', 'c ->> (a{->>2,3})? -> b', 'c1 f1 a1 f2 a2 a3 b1')
	AS "testTimesRangeNonStrictOptional2";
-- TimesRangeITCase.testTimesRangeNonStrictOptional3: the same with relaxed
-- iterations (a{->2,3}): a run skips no a, so a1 a3 is no match (a1's run
-- takes a2).  Flink: c1 a1 a2 a3 b1, c1 a1 a2 b1, c1 a2 a3 b1, c1 b1.
SELECT nl_run('times_opt3', 'c ->> (a{->2,3})? -> b', 'c1 f1 a1 f2 a2 a3 b1')
	AS "testTimesRangeNonStrictOptional3";
-- TimesOrMoreITCase.testTimesOrMoreStrictOptional: c, followedByAny a
-- timesOrMore(2) consecutive optional, followedBy b: a1 is followed by f2
-- (a run of one, not enough); a2 a3 is a run of two.  Flink: c1 a2 a3 b1,
-- c1 b1.
SELECT nl_run('more_opt', 'c ->> (a{2,})? -> b', 'c1 f1 a1 f2 a2 a3 b1')
	AS "testTimesOrMoreStrictOptional";
-- TimesOrMoreITCase.testTimesOrMoreStrictOptional2: next into a, on
-- c1 a1 a2 a3 b1.  a1 alone cannot proceed to b (1 < 2).  Flink:
-- c1 a1 a2 a3 b1, c1 a1 a2 b1, c1 b1.
SELECT nl_run('more_opt2', 'c (a{2,})? -> b', 'c1 a1 a2 a3 b1')
	AS "testTimesOrMoreStrictOptional2";
-- TimesOrMoreITCase.testTimesOrMoreNonStrictOptional: followedBy into a
-- times(2,) relaxed optional, on c1 f1 b1.  Flink: c1 b1.
SELECT nl_run('more_opt_none', 'c -> (a{->2,})? -> b', 'c1 f1 b1')
	AS "testTimesOrMoreNonStrictOptional";
-- TimesOrMoreITCase.testTimesOrMoreNonStrictOptional2: followedByAny,
-- allowCombinations.  Flink: every 2 or 3 of a1 a2 a3 (a1 a2 a3, a1 a2,
-- a1 a3, a2 a3), and c1 b1.
SELECT nl_run('more_opt_comb', 'c ->> (a{->>2,})? -> b', 'c1 f1 a1 f2 a2 a3 b1')
	AS "testTimesOrMoreNonStrictOptional2";
-- times(2).optional() strictly between c and b, on c1 a1 b1 c2 a2 a3 b2
-- c3 b3: one a is neither none nor two.  c2 a2 a3 b2, c3 b3.
SELECT nl_run('times_opt_exact', 'c (a{2})? b', 'c1 a1 b1 c2 a2 a3 b2 c3 b3') AS "c (a{2})? b";
-- Refused: a ? after a quantifier (SQL's reluctant quantifier, which has
-- no Flink meaning), an optional variable made optional again (Flink:
-- "Optional already applied!"), a negated variable in parentheses.
-- ((a{2})+ is a group of one variable: below.)
SELECT streamflink.create_pattern_pipeline('opt_bad', 'nl', 'k', 'c a{2}? b', NULL, 'opt_bad_out');
SELECT streamflink.create_pattern_pipeline('opt_bad', 'nl', 'k', 'c a+? b', NULL, 'opt_bad_out');
SELECT streamflink.create_pattern_pipeline('opt_bad', 'nl', 'k', 'c (a*)? b', NULL, 'opt_bad_out');
SELECT streamflink.create_pattern_pipeline('opt_bad', 'nl', 'k', 'c !(a) b', NULL, 'opt_bad_out');

--
-- A first variable that may take no event (Flink's optional start state:
-- its proceed edge lets the next variable take the first event).
-- NFAITCase.testIterativeWithLoopingStartingEager: s oneOrMore optional
-- (relaxed iterations), followedBy e, s's condition: the x of s's events
-- so far plus this one below 5; on s1=1 s2=2 s3=3 e1.  s1 s2 (3) cannot
-- take s3 (3 + 3), so its relaxed iterations skip it; s1 cannot skip s2
-- (it satisfies the condition).  e1 alone: s took no event.  Flink:
-- s1 s2 e1, s1 e1, s2 e1, s3 e1, e1.
--
SELECT nl_run('start_zero', 's{->0,} -> e', 's1=1 s2=2 s3=3 e1',
	define => $$s AS id ~ '^s' AND coalesce(sum(s.x), 0) + x < 5, e AS id ~ '^e'$$)
	AS "testIterativeWithLoopingStartingEager";
-- NFAITCase.testIterativeWithLoopingStartingCombination: allowCombinations:
-- also s1 s3 (4).  Flink: s1 s2 e1, s1 s3 e1, s1 e1, s2 e1, s3 e1, e1.
SELECT nl_run('start_zero_comb', 's{->>0,} -> e', 's1=1 s2=2 s3=3 e1',
	define => $$s AS id ~ '^s' AND coalesce(sum(s.x), 0) + x < 5, e AS id ~ '^e'$$)
	AS "testIterativeWithLoopingStartingCombination";
-- NFAITCase.testStartWithZeroOrMoreStrict: a oneOrMore optional
-- consecutive, alone, on c1 a1 c2 a2 a3: a pattern of optional variables
-- only is accepted; its matches are never empty (a match is made by a
-- take).  Flink: a1, a2 a3, a2, a3 (as testStartWithOneOrMoreStrict, a+).
SELECT nl_run('start_zero_alone', 'a*', 'c1 a1 c2 a2 a3') AS "testStartWithZeroOrMoreStrict";
SELECT nl_run('start_one_alone', 'a+', 'c1 a1 c2 a2 a3') AS "testStartWithOneOrMoreStrict";
-- Optional variables only, several: a? b* on a1 b1 c1 b2: a1, a1 b1, b1, b2.
SELECT nl_run('all_optional', 'a? b*', 'a1 b1 c1 b2') AS "a? b*";
-- An optional times first: (a{2})? -> b on a1 e1 b1 a2 a3 b2: a1 alone
-- cannot proceed; b1 and b2 alone, and a2 a3 b2.
SELECT nl_run('start_times_opt', '(a{2})? -> b', 'a1 e1 b1 a2 a3 b2') AS "(a{2})? -> b";

--
-- skip_to_first/last(v) throw_exception_on_miss (Flink's
-- throwExceptionOnMiss(), which Flink SQL's AFTER MATCH SKIP TO FIRST/LAST
-- uses): a match in which v took no event, or whose skip target is its
-- own first event, is an error (a data exception: in a running pipeline
-- the event completing the match goes to the dead-letter table with it).
-- Without it (Flink's CEP default) such a match skips nothing (above).
-- AfterMatchSkipITCase.testSkipToFirstNonExistentPosition: a b* c (b
-- oneOrMore optional consecutive), skipToFirst(b).throwExceptionOnMiss(),
-- on a1 c1.  Flink: FlinkRuntimeException.
SELECT nl_run('skip_first_throw', 'a b* c', 'a1 c1', skip => 'skip_to_first(b) throw_exception_on_miss')
	AS "testSkipToFirstNonExistentPosition";
-- AfterMatchSkipITCase.testSkipToLastNonExistentPosition: skipToLast.
SELECT nl_run('skip_last_throw', 'a b* c', 'a1 c1', skip => 'skip to last(b) throw exception on miss')
	AS "testSkipToLastNonExistentPosition";
-- AfterMatchSkipITCase.testSkipToFirstElementOfMatch: a alone,
-- skipToFirst(a).throwExceptionOnMiss(), on a1: skipping to a1 would skip
-- nothing (MATCH_RECOGNIZE's endless loop).  Flink: FlinkRuntimeException.
SELECT nl_run('skip_first_elem', 'a', 'a1', skip => 'skip_to_first(a) throw_exception_on_miss')
	AS "testSkipToFirstElementOfMatch";
-- With an event of v in every match nothing changes:
-- testSkipToLastWithOneOrMore with throwExceptionOnMiss: a1 b1, a2 b2, a3 b4.
SELECT nl_run('skip_last_throw_ok', 'a b+', 'a1 b1 a2 b2 b3 a3 b4', skip => 'skip_to_last(b) throw_exception_on_miss')
	AS "testSkipToLastWithOneOrMore, throwExceptionOnMiss";
SELECT streamflink.create_pattern_pipeline('skip_bad', 'nl', 'k', 'a b+', NULL, 'skip_bad_out',
	skip => 'skip_to_last(b) throw');

--
-- Groups (Flink's GroupPattern): "(a -> b)" is a sequence used as one
-- element, with a quantifier after it: (a b){2}, (a b){2,3}, (a b)+,
-- (a b)*, (a b)?, ((a b){2})?.  As a variable's quantifier, a group's
-- iterations are consecutive unless written {->n} (relaxed, Flink's
-- default for a group's times/oneOrMore) or {->>n} (allowCombinations);
-- the contiguity written before the group leads into its first
-- iteration.  Each iteration's events belong to the group's variables (a
-- match of c (a b){2} d has two a's and two b's, as Flink's map from
-- pattern name to events).  The NFA runs the group as copies of its
-- elements (pattern.c, expand_group): the minimum, then a looping copy
-- or the optional ones.  Events as in GroupITCase: c, a, b, d; one minute
-- apart.
--
-- GroupITCase.testGroupFollowedByTimes: c, followedBy (a followedBy b)
-- times(2), followedBy d, on c1 a1 b1 a2 b2 d1.  Flink: c1 a1 b1 a2 b2 d1.
SELECT nl_run('group_times', 'c -> (a -> b){->2} -> d', 'c1 a1 b1 a2 b2 d1')
	AS "testGroupFollowedByTimes";
-- GroupITCase.testGroupFollowedByOptional: (a -> b) optional, on
-- c1 a1 a2 b1 d1.  c1's wait for a takes a1 (a relaxed wait ignores only
-- what is no a), which waits for b past a2.  Flink: c1 d1, c1 a1 b1 d1.
SELECT nl_run('group_optional', 'c -> (a -> b)? -> d', 'c1 a1 a2 b1 d1')
	AS "testGroupFollowedByOptional";
-- GroupITCase.testFollowedByGroupTimesOptional: (a -> b) times(2) optional,
-- on c1 a1 d1: no b, so only the group skipped.  Flink: c1 d1.
SELECT nl_run('group_times_optional', 'c -> ((a -> b){->2})? -> d', 'c1 a1 d1')
	AS "testFollowedByGroupTimesOptional";
-- GroupITCase.testGroupFollowedByOneOrMore: (a -> b) oneOrMore, on
-- c1 a1 b1 a2 b2 d1.  Flink: c1 a1 b1 d1, c1 a1 b1 a2 b2 d1.
SELECT nl_run('group_more', 'c -> (a -> b){->1,} -> d', 'c1 a1 b1 a2 b2 d1')
	AS "testGroupFollowedByOneOrMore";
-- GroupITCase.testGroupFollowedByZeroOrMore: oneOrMore optional.  Flink:
-- c1 d1, c1 a1 b1 d1, c1 a1 b1 a2 b2 d1.
SELECT nl_run('group_zero', 'c -> (a -> b){->0,} -> d', 'c1 a1 b1 a2 b2 d1')
	AS "testGroupFollowedByZeroOrMore";
-- GroupITCase.testGroupFollowedByAnyTimesCombinations: followedByAny into
-- (a -> b) times(2) allowCombinations, on c1 a1 b1 a2 b2 a3 b3 d1: any two
-- of the three (a b) pairs, in order.  Flink: a1 b1 a2 b2, a1 b1 a3 b3,
-- a2 b2 a3 b3 (each with c1 and d1).
SELECT nl_run('group_any_comb', 'c ->> (a -> b){->>2} -> d', 'c1 a1 b1 a2 b2 a3 b3 d1')
	AS "testGroupFollowedByAnyTimesCombinations";
-- GroupITCase.testGroupFollowedByAnyTimesOptional: followedByAny into
-- (a -> b) times(2) optional (relaxed iterations: a1 b1's next a is a2).
-- Flink: c1 d1, c1 a1 b1 a2 b2 d1, c1 a2 b2 a3 b3 d1.
SELECT nl_run('group_any_optional', 'c ->> ((a -> b){->2})? -> d', 'c1 a1 b1 a2 b2 a3 b3 d1')
	AS "testGroupFollowedByAnyTimesOptional";
-- GroupITCase.testGroupFollowedByAnyOneOrMore: followedByAny into
-- (a -> b) oneOrMore.  Flink: a1 b1, a2 b2, a3 b3, a1 b1 a2 b2,
-- a2 b2 a3 b3, a1 b1 a2 b2 a3 b3 (each with c1 and d1).
SELECT nl_run('group_any_more', 'c ->> (a -> b){->1,} -> d', 'c1 a1 b1 a2 b2 a3 b3 d1')
	AS "testGroupFollowedByAnyOneOrMore";
-- GroupITCase.testGroupNextZeroOrMore: c, next (a -> b) oneOrMore optional
-- consecutive, followedBy d, on c1 a1 b1 a2 b2 a3 b3 d1.  Flink: c1 d1,
-- c1 a1 b1 d1, c1 a1 b1 a2 b2 d1, c1 a1 b1 a2 b2 a3 b3 d1.
SELECT nl_run('group_next_zero', 'c (a -> b)* -> d', 'c1 a1 b1 a2 b2 a3 b3 d1')
	AS "testGroupNextZeroOrMore";
-- GroupITCase.testGroupNest: d, followedBy (a followedBy (b followedBy c)
-- oneOrMore optional) optional, followedBy e, on d1 a1 b1 c1 b2 c2 e1.
-- Flink: d1 e1, d1 a1 e1, d1 a1 b1 c1 e1, d1 a1 b1 c1 b2 c2 e1.
SELECT nl_run('group_nest', 'd -> (a -> (b -> c){->0,})? -> e', 'd1 a1 b1 c1 b2 c2 e1')
	AS "testGroupNest";
-- GroupITCase.testGroupNestTimes: d, followedByAny (a followedBy (b
-- followedBy c) times(3)) times(0, 2) (Flink: times(1, 2).optional()),
-- followedBy e, on d1 a1 b1 c1 b2 c2 b3 c3 a2 b4 c4 b5 c5 b6 c6 e1.
-- Flink: d1 e1, d1 a1 (b c)x3 e1, d1 a2 (b c)x3 e1, d1 a1 (b c)x3 a2 (b c)x3 e1.
SELECT nl_run('group_nest_times', 'd ->> (a -> (b -> c){->3}){->0,2} -> e',
	'd1 a1 b1 c1 b2 c2 b3 c3 a2 b4 c4 b5 c5 b6 c6 e1')
	AS "testGroupNestTimes";
-- Strict groups: (a b){2,3} between c and d (next everywhere), on
-- c1 a1 b1 a2 b2 a3 b3 d1 c2 a4 b4 d2: c1 with 3 pairs, and c2 with one
-- pair (below the minimum): c1 a1 b1 a2 b2 a3 b3 d1 only (two pairs are
-- followed by a3, not d).
SELECT nl_run('group_range', 'c (a b){2,3} d', 'c1 a1 b1 a2 b2 a3 b3 d1 c2 a4 b4 d2')
	AS "c (a b){2,3} d";
-- A group of one variable with its own quantifier: c (a{2})+ b, strict,
-- on c1 a1 a2 a3 a4 b1: two iterations of two a's, then b1 (after one
-- iteration, a3 is no b).  c1 a1 a2 a3 a4 b1.
SELECT nl_run('group_one_var', 'c (a{2})+ b', 'c1 a1 a2 a3 a4 b1') AS "c (a{2})+ b";
-- A group first and last: (a b)+ alone, strict, on a1 b1 a2 b2 c1 a3 b3.
-- Every run of pairs: a1 b1, a1 b1 a2 b2, a2 b2, a3 b3.
SELECT nl_run('group_alone', '(a b)+', 'a1 b1 a2 b2 c1 a3 b3') AS "(a b)+";
-- Iterative conditions see every iteration's events: pairs while the sum
-- of a's x stays below 5, on a1=1 b1 a2=2 b2 a3=3 b3 d1: c -> (a b)+ -> d
-- without c: (a b)+ -> d; a's condition coalesce(sum(a.x), 0) + x < 5.
SELECT nl_run('group_iterative', '(a b)+ -> d', 'a1=1 b1 a2=2 b2 a3=3 b3 d1',
	define => $$a AS id ~ '^a' AND coalesce(sum(a.x), 0) + x < 5, b AS id ~ '^b', d AS id ~ '^d'$$)
	AS "(a b)+ -> d, sum(a.x) < 5";
-- Skip strategies on groups: skip_past_last_event on (a b)+ alone above:
-- a1 b1 (then every partial match holding a1 or b1 is gone), a2 b2, a3 b3.
SELECT nl_run('group_skip', '(a b)+', 'a1 b1 a2 b2 c1 a3 b3', skip => 'skip_past_last_event')
	AS "(a b)+ skip_past_last_event";

--
-- Refused, with Flink's reasons: alternation (Flink SQL's MATCH_RECOGNIZE:
-- "Currently, CEP doesn't support branching patterns."; Flink CEP has
-- or() on a condition instead), a greedy group (Flink: "Option not
-- applicable to group pattern"), until on a group that does not loop
-- (Flink: "The until condition is only applicable to looping states.").
--
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'a (b | c) d', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'a | b', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b){2,}+ d', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b){2} until (u) d', 'u AS x = 1', 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c () d', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b){1000} d', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c a b) d', NULL, 'group_bad_out');

--
-- until on a looping group (Flink's until() on a GroupPattern): "and not
-- u" on the take and ignore edges of the group's variables and on their
-- own proceed edges, not on the group's edges (NFACompiler's
-- getTakeCondition, getIgnoreCondition and getTrueFunction look at the
-- group being built; a copy's first state proceeds past the group with the
-- enclosing pattern's condition).  c1 a1 b1, then a2 starts a second copy
-- (and the first copy's first state proceeds to e's state, which waits):
-- u1 arrives while the copy waits for b, which neither takes nor ignores
-- it: that partial match ends (without until, a2 b2 e1 would complete).
-- e1 completes c1 a1 b1 e1.  c2 a3 b3, then u2: the looping copy's first
-- state takes and ignores nothing, but proceeds past the group, where e's
-- state waits past u2: c2 a3 b3 e2.
SELECT nl_run('group_until', 'c -> (a -> b){->1,} until (u) -> e', 'c1 a1 b1 a2 u1 b2 e1 c2 a3 b3 u2 e2',
	define => $$c AS id ~ '^c', a AS id ~ '^a', b AS id ~ '^b', e AS id ~ '^e', u AS id ~ '^u'$$)
	AS "c -> (a -> b){->1,} until (u) -> e";
-- The same without until: also c1 a1 b1 a2 b2 e1, and c1's loop goes on
-- past e1 to a3 b3 e2 (with until, that copy ended at u1).
SELECT nl_run('group_no_until', 'c -> (a -> b){->1,} -> e', 'c1 a1 b1 a2 u1 b2 e1 c2 a3 b3 u2 e2')
	AS "c -> (a -> b){->1,} -> e";
-- Not supported with until on a group: groups inside it, an optional first
-- variable (Flink takes the group's optionality for it), greedy variables.
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c ((a b) d)+ until (u) e', 'u AS x = 1', 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a? b)+ until (u) e', 'u AS x = 1', 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b{2,}+ d)+ until (u) e', 'u AS x = 1', 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b)+ until (u) e', NULL, 'group_bad_out');

--
-- Groups with negations.  A group without quantifier is its variables to
-- Flink's NFACompiler (createGroupPatternState builds the group's states
-- into the same sink as the variables would be; a notFollowedBy after the
-- group becomes a stop edge of the next state, getCurrentNotCondition, and
-- of the group's last state if that loops, addStopStateToLooping), so the
-- negation rules above apply unchanged.
--
-- GroupITCase.testGroupNotFollowedBy: c, followedByAny (a followedBy b),
-- notFollowedBy d, followedBy e, on c a1 b1 d a2 b2 e.  c1 ->> a: a1 and
-- (the any-wait goes on) a2 each start a group.  a1 b1 then waits for e
-- with a stop edge on d: d1 ends it.  a2 b2 e1 completes.  Flink: c a2 b2 e.
SELECT nl_run('group_notfollowed', 'c ->> (a -> b) -> !d -> e', 'c1 a1 b1 d1 a2 b2 e1')
	AS "testGroupNotFollowedBy";
-- GroupITCase.testGroupNotNext: the same with notNext d: after a1 b1 the
-- very next event is d1, the notNext state's stop; after a2 b2 it is e1,
-- not a d, and e (followedBy) takes it.  Flink: c a2 b2 e.
SELECT nl_run('group_notnext', 'c ->> (a -> b) !d -> e', 'c1 a1 b1 d1 a2 b2 e1')
	AS "testGroupNotNext";
-- A notFollowedBy inside a group (no x between a and b): a1's group ends at
-- x1; a2 b2 then e1.  Matches: c1 a2 b2 e1.
SELECT nl_run('group_inner_not', 'c ->> (a -> !x -> b) -> e', 'c1 a1 x1 b1 a2 b2 e1')
	AS "c ->> (a -> !x -> b) -> e";
-- A notFollowedBy before a group: the group's first state has its stop
-- edge (addStopStates on the group's first state).  c1 is stopped by x1
-- before any a; c2 a2 b2 then e2, the x2 after the group is no c-to-a x.
-- Matches: c2 a2 b2 e2.
SELECT nl_run('group_before_not', 'c -> !x -> (a b) -> e', 'c1 x1 a1 b1 e1 c2 a2 b2 x2 e2')
	AS "c -> !x -> (a b) -> e";
-- A notNext inside a group, and a group ending in a notNext (its state
-- proceeds to the state after the group on any other event): the event
-- after a is not an x, and the event after b is not a y.  c1 a1 x1: a1's
-- notNext stops; a2 b2 y1: b2's stops; a3 b3 e1 matches.
SELECT nl_run('group_notnext_inner', 'c ->> (a !x -> b !y) -> e', 'c1 a1 x1 b1 a2 b2 y1 a3 b3 e1')
	AS "c ->> (a !x -> b !y) -> e";
-- A greedy loop inside a group without quantifier, and a group next to a
-- negation elsewhere in the pattern: the same matches as without the
-- parentheses (both columns).  a AS x > 0 AND x < 9, b AS x > 5 overlap:
-- on a1=1 a2=2 a3=7 b1=9 greedy a takes a3 (it can), so b is b1 only (a
-- non-greedy a would also give a1 a2 with b a3); d1 then stops the match
-- waiting for e.  The same after c2, with e1: c2 a4 a5 a6 b2 e1 only.
SELECT (SELECT array_agg(r ORDER BY r) FROM nl_run('group_greedy', 'c -> (a{2,}+ -> b) -> !d -> e',
		'c1 a1=1 a2=2 a3=7 b1=9 d1 c2 a4=1 a5=2 a6=7 b2=9 e1',
		define => $$c AS id ~ '^c', a AS x > 0 AND x < 9, b AS x > 5, d AS id ~ '^d', e AS id ~ '^e'$$) r)
	AS "c -> (a{2,}+ -> b) -> !d -> e",
	   (SELECT array_agg(r ORDER BY r) FROM nl_run('group_greedy_flat', 'c -> a{2,}+ -> b -> !d -> e',
		'c1 a1=1 a2=2 a3=7 b1=9 d1 c2 a4=1 a5=2 a6=7 b2=9 e1',
		define => $$c AS id ~ '^c', a AS x > 0 AND x < 9, b AS x > 5, d AS id ~ '^d', e AS id ~ '^e'$$) r)
	AS "the same without the group";
--
-- Negations next to quantified groups, with the stop states Flink adds
-- there (pattern.c, check_negation_in_groups):
--  * notFollowedBy d after (a -> b){->2}: a stop state on d on the first
--    state of the second copy (createTimesState, addStopStateToLooping).
--    c1 a1 b1 then d1 while waiting for a2: the partial match ends (without
--    that stop state a2 b2 e1 would complete it).  c2 a3 b3 a4 b4 e2
--    matches.
SELECT nl_run('group_times_not', 'c -> (a -> b){->2} -> !d -> e', 'c1 a1 b1 d1 a2 b2 e1 c2 a3 b3 a4 b4 e2')
	AS "c -> (a -> b){->2} -> !d -> e";
--  * notFollowedBy d after (a -> b){->1,}: the looping copy's first state
--    proceeds on every event to e's first state, which has the stop state:
--    c1 a1 b1 x1 (the loop waits for an a, and e's state for an e) then d1
--    ends both.  c2 a3 b3 a4 b4 e2: e2 completes c2 a3 b3 (its wait for e
--    began at a4) and c2 a3 b3 a4 b4.
SELECT nl_run('group_loop_not', 'c -> (a -> b){->1,} -> !d -> e', 'c1 a1 b1 x1 d1 a2 b2 e1 c2 a3 b3 a4 b4 e2')
	AS "c -> (a -> b){->1,} -> !d -> e";
--  * notNext d after (a -> b){->1,}: the looping copy's first state
--    proceeds on every event to the notNext state, which stops on d.  c1 a1
--    b1 x1: x1 is no d, so e's state waits; d1 then ends the loop's wait
--    (else a2 b2 e1 would complete c1 a1 b1 a2 b2), and e1 completes c1 a1
--    b1 e1.
SELECT nl_run('group_loop_notnext', 'c -> (a -> b){->1,} !d -> e', 'c1 a1 b1 x1 d1 a2 b2 e1')
	AS "c -> (a -> b){->1,} !d -> e";
--  * notFollowedBy x before (a -> b){->2}: the stop state is on the first
--    copy's first state only (addStopStates for the group): c1 a1 x1 b1 a2
--    b2 e1 matches; c2 x2 (waiting for a) ends c2.
SELECT nl_run('group_before_times', 'c -> !x -> (a -> b){->2} -> e', 'c1 a1 x1 b1 a2 b2 e1 c2 x2 a3 b3 a4 b4 e2')
	AS "c -> !x -> (a -> b){->2} -> e";
--  * a notFollowedBy inside (a -> !x -> b){->2}: each copy's b has it, the
--    next copy's a does not (its Pattern chain begins at a).  c1 a1 b1 x1
--    a2 b2 e1 matches; c2 a3 b3 a4 x2 ends c2.
SELECT nl_run('group_times_inner', 'c -> (a -> !x -> b){->2} -> e', 'c1 a1 b1 x1 a2 b2 e1 c2 a3 b3 a4 x2 b4 e2')
	AS "c -> (a -> !x -> b){->2} -> e";
-- Refused: a notNext or notFollowedBy after an optional group (Flink:
-- "Specifying a pattern with an optional path to NOT condition is not
-- supported yet"), a negation before an optional group (Flink's stop state
-- is on the group's first state, not on its ignore state), ending a
-- quantified group, or ending a pattern after one; a negation reaching
-- across a group boundary through optional variables (Flink looks at the
-- group's optionality, not its variables'); a group ending in notFollowedBy
-- (Flink's stop edges come from the Pattern chain after the group, which
-- links to the group, so the negation would stop nothing) or beginning with
-- a negation (Flink's Pattern.begin); a greedy variable in or next to a
-- quantified group (a greedy variable after one is fine: its greedy
-- condition is on the next state's edges only, and Flink's is too:
-- updateWithGreedyCondition on the loop's sink state).
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> (a b)? !d -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> (a b){->0,2} -> !d -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> !x -> (a b)* -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b !x)+ e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b)+ !x', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> !x -> (a? b) -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> (a -> !x -> b?) -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c -> (a -> !x) -> e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (!x a) e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c (a b{2,}+){2} e', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_bad', 'nl', 'k', 'c b{2,}+ (a e)?', NULL, 'group_bad_out');
SELECT streamflink.create_pattern_pipeline('group_ok', 'nl', 'k', 'c (a b)+ d{2,}+ e', NULL, 'group_ok_out');
SELECT streamflink.drop_pipeline('group_ok');

--
-- Greedy with until (GreedyITCase): a greedy loop proceeds on an event its
-- until holds for into Flink's copy of the next state without the greedy
-- condition (NFACompiler.createLooping and createSingletonState keep it in
-- originalStateMap); proceeding otherwise, the next state's edges carry
-- "and not the loop's condition" (updateWithGreedyCondition, without the
-- until).  The first state of a loop ignores only events its condition
-- does not hold for (its ignore edge is not extended with until).
-- Events c, a's with prices, d; u AS x > 3.
--
-- GreedyITCase.testGreedyUntilZeroOrMoreWithDummyEventsAfterQuantifier: c,
-- followedBy a oneOrMore optional greedy until(price > 3), followedBy d,
-- on c1=1 a1=2 a2=3 a3=3 a4=4 d1=3: the loop takes a1 a2 a3 and leaves at
-- a4 (its until) into the unguarded copy, which skips nothing but waits
-- for d.  Flink: c1 a1 a2 a3 d1.
SELECT nl_run('greedy_until_after', 'c -> a{->0,}+ until (u) -> d', 'c1=1 a1=2 a2=3 a3=3 a4=4 d1=3',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x > 3, d AS id ~ '^d'$$)
	AS "testGreedyUntilZeroOrMoreWithDummyEventsAfterQuantifier";
-- GreedyITCase.testGreedyUntilWithDummyEventsBeforeQuantifier: on
-- c1=1 a0=4 a1=2 a2=3 a3=3 d1=3: c1's wait for a neither takes a0 (until)
-- nor ignores it (it is an a); the optional loop is skipped into the
-- unguarded copy of d's state, which waits past a1 a2 a3.  Flink: c1 d1.
SELECT nl_run('greedy_until_before', 'c -> a{->0,}+ until (u) -> d', 'c1=1 a0=4 a1=2 a2=3 a3=3 d1=3',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x > 3, d AS id ~ '^d'$$)
	AS "testGreedyUntilWithDummyEventsBeforeQuantifier";
-- GreedyITCase.testGreedyUntilOneOrMoreWithDummyEventsAfterQuantifier:
-- a oneOrMore (not optional).  Flink: c1 a1 a2 a3 d1.
SELECT nl_run('greedy_until_more_after', 'c -> a{->1,}+ until (u) -> d', 'c1=1 a1=2 a2=3 a3=3 a4=4 d1=3',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x > 3, d AS id ~ '^d'$$)
	AS "testGreedyUntilOneOrMoreWithDummyEventsAfterQuantifier";
-- GreedyITCase.testGreedyUntilOneOrMoreWithDummyEventsBeforeQuantifier: c1's
-- wait for the first a dies at a0 (neither taken nor ignored, and a needs
-- an event).  Flink: no match.
SELECT nl_run('greedy_until_more_before', 'c -> a{->1,}+ until (u) -> d', 'c1=1 a0=4 a1=2 a2=3 a3=3 d1=3',
	define => $$c AS id ~ '^c', a AS id ~ '^a', u AS x > 3, d AS id ~ '^d'$$)
	AS "testGreedyUntilOneOrMoreWithDummyEventsBeforeQuantifier";

-- The fewest events a match needs (checked against max_partial_match_events):
-- group copies that may be skipped and optional variables count nothing.
SELECT streamflink._pattern_min_events('c (a b)* d{3} (e f){2,3} (g{4})? h{0,2}', NULL, false) AS min_events;
