--
-- cep_aggregates: aggregates over the events matched to a variable, in
-- conditions and measures, with everything SQL allows in an aggregate call
-- that the pipeline can run: FILTER, several arguments.  Uses cep.sql's
-- helpers (cep_events, cep_show, cep_run, ...); events "id[=x]" a minute
-- apart on one key per case.
--
\set VERBOSITY default

SELECT streamflink.create_source('ev2', regress_brokers(), 'regress_cep2', 'json',
	columns => 'k int, id text, x numeric, ts timestamptz', event_time => 'ts',
	idle_timeout => '1 second');	-- the topic's other partitions stay empty

-- Key 1: s1=1 s2=1 s3=5 t1 under 's{2,} -> t' (no skip).  The s run must be
-- consecutive, t may come later: {s1 s2 t1} (s3 ignored by the relaxed ->),
-- {s1 s2 s3 t1}, {s2 s3 t1}.  Measures: sum of x over s with and without
-- FILTER, so big_sum is NULL, 5, 5 and all_sum 2, 7, 6; regr_count and
-- covar_pop take two arguments (n = the number of s; covariance of x with
-- itself = its variance: 0, 3.5556 (x = 1, 1, 5), 4).
SELECT streamflink.create_pattern_pipeline('agg_measures', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' $$, 'agg_measures_out',
	measures => $$ sum(s.x) FILTER (WHERE s.x > 1) AS big_sum, sum(s.x) AS all_sum,
				   regr_count(s.x::float8, s.x::float8) AS n,
				   round(covar_pop(s.x::float8, s.x::float8)::numeric, 4) AS var $$);

-- Key 2: s1=1 s2=1 s3=5 s4=7 t1, t only after two s with x > 1: of the six
-- partial matches reaching t1 (s1s2, s1s2s3, s1..s4, s2s3, s2s3s4, s3s4)
-- three have two such s: {s1 s2 s3 s4 t1}, {s2 s3 s4 t1}, {s3 s4 t1}.
SELECT streamflink.create_pattern_pipeline('agg_filter', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' AND count(s.*) FILTER (WHERE s.x > 1) >= 2 $$,
	'agg_filter_out');

-- ORDER BY inside an aggregate, or an aggregate whose state cannot be
-- stored: refused, and said so.
SELECT streamflink.create_pattern_pipeline('agg_bad', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' $$, 'agg_bad_out',
	measures => $$ max(s.id ORDER BY s.x) AS ids $$);
SELECT streamflink.create_pattern_pipeline('agg_bad', 'ev2', 'k', 's{2,} -> t',
	$$ s AS id ~ '^s', t AS id ~ '^t' $$, 'agg_bad_out',
	measures => $$ string_agg(s.id, ',') AS ids $$);

SELECT streamflink.produce(regress_brokers(), 'regress_cep2',
	cep_events(1, 's1=1 s2=1 s3=5 t1') ||
	cep_events(2, 's1=1 s2=1 s3=5 s4=7 t1') ||
	cep_events(3000, 'end'), 0) AS produced;
SELECT cep_run('{agg_measures,agg_filter}');
SELECT wait_until($$SELECT cep_finished('{agg_measures,agg_filter}')$$);
SELECT cep_stop('{agg_measures,agg_filter}');
SELECT wait_until($$SELECT cep_stopped('{agg_measures,agg_filter}')$$);

SELECT cep_show('agg_measures_out', 1) AS "s{2,} -> t";
SELECT big_sum, all_sum, n, var FROM agg_measures_out WHERE k = 1 ORDER BY all_sum;
SELECT cep_show('agg_filter_out', 2) AS "t after two s over 1";

SELECT streamflink.drop_pipeline(name, drop_sink => true)
FROM streamflink.pipeline WHERE kind = 'pattern' ORDER BY name;
SELECT streamflink.drop_source('ev2');
