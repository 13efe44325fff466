--
-- sql_pipeline: pipelines written as one SQL query (create_pipeline).
-- Each construct's results are compared with the same query run by
-- Postgres over a table of the same events (the window function in FROM
-- replaced by the windows each event falls in); each refusal shows its
-- reason; explain() shows the operator plan.  Operators run through
-- run_operator (no Kafka); a stateless and a window pipeline also run in
-- their workers against the test broker, exactly once into their tables.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET intervalstyle = postgres;

SELECT streamflink.create_source('sq_rides', brokers => regress_brokers(), topic => 'regress_sql',
       format => 'json', columns => 'id int, geo text, wait_s float8, kind text, email text, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds');

-- 600 rides over 30 minutes, in event time order; some 'test' rides.
CREATE TABLE sq_events AS
SELECT i AS id, 'g' || (i % 7) AS geo, (i % 13) * 0.5::float8 AS wait_s,
       CASE WHEN i % 11 = 0 THEN 'test' WHEN i % 3 = 0 THEN 'xl' ELSE 'std' END AS kind,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'User' || i || '@Example.COM' END AS email,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '3 seconds' AS ts
FROM generate_series(0, 599) i;
CREATE TABLE sq_payloads AS
SELECT 'sq_rides' AS source, array_agg(to_jsonb(e)::text ORDER BY id) AS events FROM sq_events e;

-- The sink a run leaves (per key, the last upsert no retraction follows;
-- every insert), as jsonb rows.
CREATE FUNCTION sq_final(pipeline text) RETURNS SETOF jsonb
LANGUAGE sql AS $$
	SELECT data FROM (
		SELECT DISTINCT ON (coalesce(key, to_jsonb(ord))) op, data
		FROM streamflink.run_operator(pipeline,
			(SELECT events FROM sq_payloads WHERE source = (SELECT s.name FROM streamflink.pipeline p
															JOIN streamflink.source s ON s.id = p.source_id
															WHERE p.name = pipeline)))
		WHERE output = 'result'
		ORDER BY coalesce(key, to_jsonb(ord)), ord DESC) d
	WHERE op <> 'retract'
$$;

-- Rows in one and not the other (both ways, with duplicates): 0 and 0 is equal.
CREATE FUNCTION sq_diff(pipeline text, reference text, OUT sink_rows bigint,
						OUT reference_rows bigint, OUT only_sink bigint, OUT only_reference bigint)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE TEMP TABLE sq_a AS SELECT * FROM sq_final(%L) d', pipeline);
	EXECUTE format('CREATE TEMP TABLE sq_b AS SELECT to_jsonb(r) AS d FROM (%s) r', reference);
	SELECT count(*) INTO sink_rows FROM sq_a;
	SELECT count(*) INTO reference_rows FROM sq_b;
	SELECT count(*) INTO only_sink FROM (SELECT d FROM sq_a EXCEPT ALL SELECT d FROM sq_b) x;
	SELECT count(*) INTO only_reference FROM (SELECT d FROM sq_b EXCEPT ALL SELECT d FROM sq_a) x;
	DROP TABLE sq_a, sq_b;
END
$$;

--
-- Stateless: filter and projection, any function and operator.
--
SELECT streamflink.create_pipeline('sq_ingest', $$
	SELECT id, lower(email) AS email, geo || '/' || kind AS tag, wait_s * 60 AS wait_min, ts
	FROM sq_rides WHERE kind <> 'test' AND email IS NOT NULL $$, sink => 'sq_ingest_out');
\d sq_ingest_out
SELECT name, kind, key_columns, window_kind, aggregates, query_tree IS NOT NULL AS analysed
FROM streamflink.pipeline WHERE name = 'sq_ingest';
SELECT * FROM sq_diff('sq_ingest', $$
	SELECT id, lower(email) AS email, geo || '/' || kind AS tag, wait_s * 60 AS wait_min, ts
	FROM sq_events WHERE kind <> 'test' AND email IS NOT NULL $$);
SELECT * FROM streamflink.explain($$
	SELECT id, lower(email) AS email, geo || '/' || kind AS tag, wait_s * 60 AS wait_min, ts
	FROM sq_rides WHERE kind <> 'test' AND email IS NOT NULL $$);
-- SELECT * and an alias.
SELECT streamflink.create_pipeline('sq_all', $$ SELECT * FROM sq_rides r WHERE r.wait_s > 5 $$,
	sink => 'sq_all_out');
SELECT * FROM sq_diff('sq_all', $$ SELECT * FROM sq_events r WHERE r.wait_s > 5 $$);
-- An expression raising an error for an event: the run says so (a worker
-- would dead-letter the message).
SELECT streamflink.create_pipeline('sq_div', $$ SELECT id, 1 / (id - 3) AS x FROM sq_rides $$,
	sink => 'sq_div_out');
SELECT count(*) FROM sq_final('sq_div');

--
-- Windowed aggregates: WHERE before the window, expression keys and
-- aggregate arguments, output expressions over aggregates, HAVING.
--
SELECT streamflink.create_pipeline('sq_surge', $$
	SELECT geo, window_start, window_end, count(*) AS rides, avg(wait_s) AS avg_wait,
	       count(*) FILTER (WHERE kind = 'xl') * 1.0 / count(*) AS xl_share
	FROM streamflink.hop(sq_rides, ts, slide => '30 seconds', size => '5 minutes')
	WHERE kind <> 'test'
	GROUP BY geo, window_start, window_end
	HAVING count(*) > 10 $$, sink => 'sq_surge_out');
\d sq_surge_out
SELECT name, kind, key_columns, window_kind, window_size, window_slide, aggregates
FROM streamflink.pipeline WHERE name = 'sq_surge';
-- Postgres' answer: each event in the hop windows containing it.
SELECT * FROM sq_diff('sq_surge', $$
	SELECT geo, window_start, window_end, count(*) AS rides, avg(wait_s) AS avg_wait,
	       count(*) FILTER (WHERE kind = 'xl') * 1.0 / count(*) AS xl_share
	FROM (SELECT e.*, ws AS window_start, ws + interval '5 minutes' AS window_end
	      FROM sq_events e,
	           generate_series(date_bin('30 seconds', ts, 'epoch') - interval '4 minutes 30 seconds',
	                           date_bin('30 seconds', ts, 'epoch'), '30 seconds') ws) w
	WHERE kind <> 'test'
	GROUP BY geo, window_start, window_end
	HAVING count(*) > 10 $$);
SELECT * FROM streamflink.explain($$
	SELECT geo, window_start, window_end, count(*) AS rides, avg(wait_s) AS avg_wait,
	       count(*) FILTER (WHERE kind = 'xl') * 1.0 / count(*) AS xl_share
	FROM streamflink.hop(sq_rides, ts, slide => '30 seconds', size => '5 minutes')
	WHERE kind <> 'test'
	GROUP BY geo, window_start, window_end
	HAVING count(*) > 10 $$);

-- Keys that are expressions, in another order than the SELECT list; an
-- aggregate over an expression; outputs mixing keys and aggregates.
SELECT streamflink.create_pipeline('sq_expr', $$
	SELECT sum(wait_s * 2) AS total, upper(geo) AS region, window_start,
	       id % 2 = 0 AS even, max(length(email)) - min(length(email)) AS spread,
	       upper(geo) || ':' || count(*) AS label
	FROM streamflink.tumble(sq_rides, ts, size => '2 minutes')
	GROUP BY id % 2 = 0, upper(geo), window_start $$, sink => 'sq_expr_out');
\d sq_expr_out
SELECT * FROM sq_diff('sq_expr', $$
	SELECT sum(wait_s * 2) AS total, upper(geo) AS region, window_start,
	       id % 2 = 0 AS even, max(length(email)) - min(length(email)) AS spread,
	       upper(geo) || ':' || count(*) AS label
	FROM (SELECT e.*, date_bin('2 minutes', ts, 'epoch') AS window_start FROM sq_events e) w
	GROUP BY id % 2 = 0, upper(geo), window_start $$);

-- No key at all: one row per window.
SELECT streamflink.create_pipeline('sq_total', $$
	SELECT window_start, window_end, count(*) AS n, round(avg(wait_s)::numeric, 3) AS mean
	FROM streamflink.tumble(sq_rides, ts, size => '5 minutes')
	GROUP BY window_start, window_end $$, sink => 'sq_total_out');
SELECT * FROM sq_diff('sq_total', $$
	SELECT window_start, window_end, count(*) AS n, round(avg(wait_s)::numeric, 3) AS mean
	FROM (SELECT e.*, date_bin('5 minutes', ts, 'epoch') AS window_start,
	             date_bin('5 minutes', ts, 'epoch') + interval '5 minutes' AS window_end
	      FROM sq_events e) w
	GROUP BY window_start, window_end $$);

--
-- Nexmark q0, q1, q2 and q11 over a bid stream.
--
SELECT streamflink.create_source('sq_bids', brokers => '127.0.0.1:1', topic => 'sq_bids',
       format => 'json',
       columns => 'auction bigint, bidder bigint, price bigint, channel text, url text, date_time timestamptz, extra text',
       event_time => 'date_time', max_out_of_orderness => '1 second');
CREATE TABLE sq_bid_events AS
SELECT 1000 + (i * 37) % 500 AS auction, 100 + (i * 13) % 40 AS bidder, 100 + (i * 7919) % 10000 AS price,
       'channel-' || (i % 4) AS channel, 'https://example.com/' || i AS url,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '250 milliseconds'
	     + CASE WHEN i % 50 < 5 THEN interval '30 seconds' * (i / 50) ELSE interval '0' END AS date_time,
       '' AS extra
FROM generate_series(0, 1999) i;
INSERT INTO sq_payloads
SELECT 'sq_bids', array_agg(to_jsonb(b)::text ORDER BY date_time, auction, bidder) FROM sq_bid_events b;
-- q0: pass-through.
SELECT streamflink.create_pipeline('nexmark_q0', $$
	SELECT auction, bidder, price, date_time, extra FROM sq_bids $$, sink => 'nexmark_q0_out');
SELECT * FROM sq_diff('nexmark_q0', $$ SELECT auction, bidder, price, date_time, extra FROM sq_bid_events $$);
-- q1: currency conversion.
SELECT streamflink.create_pipeline('nexmark_q1', $$
	SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM sq_bids $$,
	sink => 'nexmark_q1_out');
SELECT * FROM sq_diff('nexmark_q1', $$ SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM sq_bid_events $$);
-- q2: selection.
SELECT streamflink.create_pipeline('nexmark_q2', $$
	SELECT auction, price FROM sq_bids WHERE auction % 123 = 0 $$, sink => 'nexmark_q2_out');
SELECT * FROM sq_diff('nexmark_q2', $$ SELECT auction, price FROM sq_bid_events WHERE auction % 123 = 0 $$);
-- q11: bids per bidder per session (10 seconds of inactivity ends one).
SELECT streamflink.create_pipeline('nexmark_q11', $$
	SELECT bidder, count(*) AS bid_count, window_start, window_end
	FROM streamflink.session(sq_bids, date_time, gap => '10 seconds')
	GROUP BY bidder, window_start, window_end $$, sink => 'nexmark_q11_out');
-- Postgres' answer: gaps and islands; an event more than the gap after the
-- bidder's previous one starts a session, which ends a gap after its last.
SELECT * FROM sq_diff('nexmark_q11', $$
	SELECT bidder, count(*) AS bid_count, min(date_time) AS window_start,
	       max(date_time) + interval '10 seconds' AS window_end
	FROM (SELECT bidder, date_time, count(*) FILTER (WHERE brk) OVER (PARTITION BY bidder ORDER BY date_time) AS s
	      FROM (SELECT bidder, date_time,
	                   coalesce(date_time > lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
	                                        + interval '10 seconds', true) AS brk
	            FROM sq_bid_events) a) b
	GROUP BY bidder, s $$);
SELECT * FROM streamflink.explain($$
	SELECT bidder, count(*) AS bid_count, window_start, window_end
	FROM streamflink.session(sq_bids, date_time, gap => '10 seconds')
	GROUP BY bidder, window_start, window_end $$);
-- q5, hot items: the auctions with the most bids of each hop window (ties
-- included), as Top-N; Postgres' answer is Nexmark's own formulation (a
-- join with the maximum count per window).
SELECT streamflink.create_pipeline('nexmark_q5', $$
	SELECT auction, num, window_start, window_end FROM (
		SELECT auction, count(*) AS num, window_start, window_end,
		       rank() OVER (PARTITION BY window_start, window_end ORDER BY count(*) DESC) AS r
		FROM streamflink.hop(sq_bids, date_time, slide => '2 seconds', size => '10 seconds')
		GROUP BY auction, window_start, window_end) t
	WHERE r <= 1 $$, sink => 'nexmark_q5_out');
SELECT * FROM sq_diff('nexmark_q5', $$
	WITH w AS (SELECT b.*, ws AS window_start, ws + interval '10 seconds' AS window_end
	           FROM sq_bid_events b,
	                generate_series(date_bin('2 seconds', date_time, 'epoch') - interval '8 seconds',
	                                date_bin('2 seconds', date_time, 'epoch'), '2 seconds') ws),
	     counts AS (SELECT auction, count(*) AS num, window_start, window_end FROM w
	                GROUP BY auction, window_start, window_end),
	     maxes AS (SELECT window_start, max(num) AS maxn FROM counts GROUP BY window_start)
	SELECT c.auction, c.num, c.window_start, c.window_end
	FROM counts c JOIN maxes m ON m.window_start = c.window_start AND c.num = m.maxn $$);
-- q7, highest bid: the bids with the top price of each tumbling window
-- (equal bids counted as one row); Postgres: Nexmark's join with the
-- maximum price.
SELECT streamflink.create_pipeline('nexmark_q7', $$
	SELECT auction, price, bidder, window_start, window_end FROM (
		SELECT auction, price, bidder, window_start, window_end,
		       rank() OVER (PARTITION BY window_start ORDER BY price DESC) AS r
		FROM streamflink.tumble(sq_bids, date_time, size => '10 seconds')
		GROUP BY auction, price, bidder, window_start, window_end) t
	WHERE r <= 1 $$, sink => 'nexmark_q7_out');
SELECT * FROM sq_diff('nexmark_q7', $$
	SELECT DISTINCT b.auction, b.price, b.bidder, m.window_start, m.window_end
	FROM sq_bid_events b
	JOIN (SELECT date_bin('10 seconds', date_time, 'epoch') AS window_start,
	             date_bin('10 seconds', date_time, 'epoch') + interval '10 seconds' AS window_end,
	             max(price) AS maxprice
	      FROM sq_bid_events GROUP BY 1, 2) m
	  ON b.price = m.maxprice AND b.date_time >= m.window_start AND b.date_time < m.window_end $$);
-- Top 3 bidders by spend per window with row_number() and dense_rank(),
-- against the same queries run by Postgres.
SELECT streamflink.create_pipeline('sq_top_rn', $$
	SELECT * FROM (
		SELECT bidder, window_start, sum(price) AS spend,
		       row_number() OVER (PARTITION BY window_start ORDER BY sum(price) DESC, bidder) AS n
		FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
		GROUP BY bidder, window_start) t
	WHERE n < 4 $$, sink => 'sq_top_rn_out');
SELECT * FROM sq_diff('sq_top_rn', $$
	SELECT * FROM (
		SELECT bidder, window_start, sum(price) AS spend,
		       row_number() OVER (PARTITION BY window_start ORDER BY sum(price) DESC, bidder) AS n
		FROM (SELECT b.*, date_bin('1 minute', date_time, 'epoch') AS window_start FROM sq_bid_events b) w
		GROUP BY bidder, window_start) t
	WHERE n < 4 $$);
SELECT streamflink.create_pipeline('sq_top_dr', $$
	SELECT * FROM (
		SELECT bidder % 5 AS grp, window_start, count(*) AS n,
		       dense_rank() OVER (PARTITION BY window_start ORDER BY count(*)) AS d
		FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
		GROUP BY bidder % 5, window_start) t
	WHERE d <= 2 $$, sink => 'sq_top_dr_out');
SELECT * FROM sq_diff('sq_top_dr', $$
	SELECT * FROM (
		SELECT bidder % 5 AS grp, window_start, count(*) AS n,
		       dense_rank() OVER (PARTITION BY window_start ORDER BY count(*)) AS d
		FROM (SELECT b.*, date_bin('1 minute', date_time, 'epoch') AS window_start FROM sq_bid_events b) w
		GROUP BY bidder % 5, window_start) t
	WHERE d <= 2 $$);
SELECT * FROM streamflink.explain($$
	SELECT auction, num, window_start, window_end FROM (
		SELECT auction, count(*) AS num, window_start, window_end,
		       rank() OVER (PARTITION BY window_start, window_end ORDER BY count(*) DESC) AS r
		FROM streamflink.hop(sq_bids, date_time, slide => '2 seconds', size => '10 seconds')
		GROUP BY auction, window_start, window_end) t
	WHERE r <= 1 $$);
-- Top-N forms refused: with allowed lateness, over sessions, partitioned by
-- a key, another condition on the rank, another window function.
SELECT streamflink.create_pipeline('sq_top_bad', $$
	SELECT * FROM (SELECT bidder, window_start, count(*) AS n,
	                      rank() OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r
	               FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r <= 3 $$,
	sink => 'sq_top_bad_out', allowed_lateness => '1 minute');
SELECT to_regclass('sq_top_bad_out');
SELECT streamflink.explain($$
	SELECT * FROM (SELECT bidder, window_start, count(*) AS n,
	                      rank() OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r
	               FROM streamflink.session(sq_bids, date_time, gap => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r <= 3 $$);
SELECT streamflink.explain($$
	SELECT * FROM (SELECT bidder, window_start, count(*) AS n,
	                      rank() OVER (PARTITION BY bidder ORDER BY count(*) DESC) AS r
	               FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r <= 3 $$);
SELECT streamflink.explain($$
	SELECT * FROM (SELECT bidder, window_start, count(*) AS n,
	                      rank() OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r
	               FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r > 3 $$);
SELECT streamflink.explain($$
	SELECT * FROM (SELECT bidder, window_start, count(*) AS n,
	                      lag(count(*)) OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r
	               FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r <= 3 $$);
SELECT streamflink.explain($$
	SELECT bidder, r * 2 AS r2 FROM (SELECT bidder, window_start, count(*) AS n,
	                      rank() OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r
	               FROM streamflink.tumble(sq_bids, date_time, size => '1 minute')
	               GROUP BY bidder, window_start) t WHERE r <= 3 $$);

--
-- MATCH_RECOGNIZE (Flink SQL's syntax) as a pattern pipeline.
--
SELECT streamflink.create_source('sq_txns', brokers => '127.0.0.1:1', topic => 'sq_txns', format => 'json',
       columns => 'account_id int, amount numeric, kind text, ts timestamptz', event_time => 'ts');
CREATE TABLE sq_txn_events AS
SELECT i % 7 AS account_id,
       CASE WHEN i % 23 = 0 THEN 6000 + i ELSE (i * 37) % 150 END::numeric AS amount,
       CASE WHEN i % 2 = 0 THEN 'WITHDRAWAL' ELSE 'DEPOSIT' END AS kind,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' AS ts
FROM generate_series(0, 1999) i;
INSERT INTO sq_payloads
SELECT 'sq_txns', array_agg(to_jsonb(t)::text ORDER BY ts) FROM sq_txn_events t;
-- The README's fraud pattern, and its MATCH_RECOGNIZE form: the same matches.
SELECT streamflink.create_pattern_pipeline('sq_fraud', source => 'sq_txns', key => 'account_id',
	pattern => 'small{3,}+ large',
	define => $$ small AS amount < 100, large AS amount > 5000 AND kind = 'WITHDRAWAL' $$,
	within => '1 hour', sink => 'sq_fraud_out', skip => 'skip_past_last_event',
	measures => 'count(small.*) AS n_small, sum(small.amount) AS total');
SELECT streamflink.create_pipeline('sq_fraud_mr', $$
	SELECT * FROM sq_txns MATCH_RECOGNIZE (
		PARTITION BY account_id
		ORDER BY ts
		MEASURES count(small.*) AS n_small, sum(small.amount) AS total
		ONE ROW PER MATCH
		AFTER MATCH SKIP PAST LAST ROW
		PATTERN (small{3,} large) WITHIN INTERVAL '1' HOUR
		DEFINE small AS amount < 100, large AS amount > 5000 AND kind = 'WITHDRAWAL'
	) AS m $$, sink => 'sq_fraud_mr_out');
SELECT name, kind, key_columns, pattern, define, measures, skip, within
FROM streamflink.pipeline WHERE name = 'sq_fraud_mr';
\d sq_fraud_mr_out
SELECT (SELECT count(*) FROM sq_final('sq_fraud_mr')) AS matches,
       (SELECT count(*) FROM (SELECT * FROM sq_final('sq_fraud_mr') EXCEPT ALL SELECT * FROM sq_final('sq_fraud')) x) AS only_mr,
       (SELECT count(*) FROM (SELECT * FROM sq_final('sq_fraud') EXCEPT ALL SELECT * FROM sq_final('sq_fraud_mr')) x) AS only_api;
-- Strict contiguity against Postgres: a withdrawal of over 100 right after
-- a deposit, per account (lead() over the account's events in time order).
SELECT streamflink.create_pipeline('sq_mr_pair', $$
	SELECT * FROM sq_txns MATCH_RECOGNIZE (
		PARTITION BY account_id ORDER BY ts
		MEASURES last(d.amount) AS deposit, last(w.amount) AS withdrawal
		PATTERN (d w)
		DEFINE d AS kind = 'DEPOSIT', w AS kind = 'WITHDRAWAL' AND amount > 100) $$,
	sink => 'sq_mr_pair_out');
SELECT count(*) AS matches,
       count(*) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM (SELECT account_id, ts AS match_start, next_ts AS match_end, amount AS deposit,
                                 next_amount AS withdrawal
                          FROM (SELECT *, lead(kind) OVER w AS next_kind, lead(ts) OVER w AS next_ts,
                                       lead(amount) OVER w AS next_amount
                                FROM sq_txn_events WINDOW w AS (PARTITION BY account_id ORDER BY ts)) e
                          WHERE kind = 'DEPOSIT' AND next_kind = 'WITHDRAWAL' AND next_amount > 100) r
           WHERE to_jsonb(r) = f - 'events')) AS not_in_postgres,
       (SELECT count(*) FROM sq_txn_events e1
        WHERE kind = 'DEPOSIT' AND EXISTS (
            SELECT 1 FROM sq_txn_events e2 WHERE e2.account_id = e1.account_id AND e2.ts > e1.ts
              AND e2.kind = 'WITHDRAWAL' AND e2.amount > 100
              AND NOT EXISTS (SELECT 1 FROM sq_txn_events e3 WHERE e3.account_id = e1.account_id
                                AND e3.ts > e1.ts AND e3.ts < e2.ts))) AS postgres_matches
FROM sq_final('sq_mr_pair') f;
SELECT * FROM streamflink.explain($$
	SELECT * FROM sq_txns MATCH_RECOGNIZE (
		PARTITION BY account_id ORDER BY ts
		MEASURES count(small.*) AS n_small, sum(small.amount) AS total
		AFTER MATCH SKIP TO NEXT ROW
		PATTERN (small{3,}? large) WITHIN INTERVAL '30 minutes'
		DEFINE small AS amount < 100, large AS amount > 5000) $$);
-- Refused or malformed.
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts PATTERN (a | b) DEFINE a AS true) $$);
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts PATTERN ((a b)+) DEFINE a AS true) $$);
SELECT streamflink.explain($$ SELECT account_id FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts PATTERN (a b) DEFINE a AS true) $$);
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts ALL ROWS PER MATCH PATTERN (a b) DEFINE a AS true) $$);
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts PATTERN (a b) DEFINE a AS true) WHERE x $$);
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id ORDER BY ts PATTERN (a b) DEFINE a AS true $$);
SELECT streamflink.explain($$ SELECT * FROM sq_txns MATCH_RECOGNIZE (PARTITION BY account_id PATTERN (a b) DEFINE a AS true) $$);
SELECT streamflink.create_pipeline('sq_mr_bad', $$ SELECT * FROM sq_txns MATCH_RECOGNIZE (
	PARTITION BY account_id ORDER BY amount PATTERN (a b) DEFINE a AS true) $$, sink => 'sq_mr_bad_out');
SELECT streamflink.create_pipeline('sq_mr_bad', $$ SELECT * FROM sq_txns MATCH_RECOGNIZE (
	PARTITION BY account_id ORDER BY ts PATTERN (a b) DEFINE a AS amount <) $$, sink => 'sq_mr_bad_out');
SELECT streamflink.create_pipeline('sq_mr_bad', $$ SELECT * FROM sq_txns MATCH_RECOGNIZE (
	PARTITION BY no_such_column ORDER BY ts PATTERN (a b) DEFINE a AS true) $$, sink => 'sq_mr_bad_out');
SELECT to_regclass('sq_mr_bad_out');

--
-- Refused at creation, with the reason and what would work.
--
-- a join of two streams / with a table
SELECT streamflink.explain($$ SELECT r.id FROM sq_rides r JOIN sq_bids b ON b.auction = r.id $$);
SELECT streamflink.explain($$ SELECT r.id FROM sq_rides r, sq_bids b $$);
-- a table is not a source
SELECT streamflink.explain($$ SELECT id FROM sq_events $$);
-- a subquery over another table
SELECT streamflink.explain($$ SELECT id FROM sq_rides WHERE id IN (SELECT id FROM sq_events) $$);
SELECT streamflink.explain($$ SELECT * FROM (SELECT id FROM sq_rides) t $$);
-- ORDER BY, LIMIT, DISTINCT without a window
SELECT streamflink.explain($$ SELECT id FROM sq_rides ORDER BY id $$);
SELECT streamflink.explain($$ SELECT id FROM sq_rides LIMIT 10 $$);
SELECT streamflink.explain($$ SELECT DISTINCT geo FROM sq_rides $$);
-- an aggregate without a window
SELECT streamflink.explain($$ SELECT geo, count(*) AS n FROM sq_rides GROUP BY geo $$);
-- window functions outside the Top-N form
SELECT streamflink.explain($$ SELECT id, rank() OVER (ORDER BY wait_s) AS r FROM sq_rides $$);
-- volatile functions
SELECT streamflink.explain($$ SELECT id, random() AS r FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT id, clock_timestamp() AS t FROM sq_rides $$);
-- UNION, WITH, set-returning functions, GROUPING SETS
SELECT streamflink.explain($$ SELECT id FROM sq_rides UNION SELECT 1 $$);
SELECT streamflink.explain($$ WITH x AS (SELECT 1) SELECT id FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT id, generate_series(1, 2) AS g FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT geo, window_start, count(*) AS n
	FROM streamflink.tumble(sq_rides, ts, size => '1 minute') GROUP BY ROLLUP (geo, window_start) $$);
-- windows: without GROUP BY, without window_start, a key missing from the
-- output, WHERE on window_start, bad arguments
SELECT streamflink.explain($$ SELECT id FROM streamflink.tumble(sq_rides, ts, size => '1 minute') $$);
SELECT streamflink.explain($$ SELECT geo, count(*) AS n FROM streamflink.tumble(sq_rides, ts, size => '1 minute') GROUP BY geo $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.tumble(sq_rides, ts, size => '1 minute') GROUP BY geo, window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.tumble(sq_rides, ts, size => '1 minute')
	WHERE window_start > now() GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.tumble(sq_rides, id, size => '1 minute') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.tumble(sq_rides, ts, size => '1 month') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.hop(sq_rides, ts, slide => '1 second', size => '1 hour') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.hop(sq_rides, ts, size => '1 hour') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) AS n FROM streamflink.tumble(sq_rides, ts, gap => '1 hour') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(DISTINCT geo) AS n FROM streamflink.tumble(sq_rides, ts, size => '1 hour') GROUP BY window_start $$);
SELECT streamflink.explain($$ SELECT window_start, count(*) FROM streamflink.tumble(sq_rides, ts, size => '1 hour') GROUP BY window_start $$);
-- names, columns and syntax errors point into the query
SELECT streamflink.explain($$ SELECT id FROM no_such_source $$);
SELECT streamflink.explain($$ SELECT id, no_such_column FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT id, no_such_function(id) AS x FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT id FROM sq_rides WHERE $$);
SELECT streamflink.explain($$ SELECT id AS a, geo AS a FROM sq_rides $$);
SELECT streamflink.explain($$ SELECT sq_rides FROM sq_rides $$);
SELECT streamflink.explain($$ INSERT INTO sq_events DEFAULT VALUES $$);
-- nothing was created by a refused create_pipeline
SELECT streamflink.create_pipeline('sq_bad', $$ SELECT id FROM sq_rides ORDER BY id $$, sink => 'sq_bad_out');
SELECT to_regclass('sq_bad_out'), (SELECT count(*) FROM streamflink.pipeline WHERE name = 'sq_bad');
-- allowed lateness needs a window
SELECT streamflink.create_pipeline('sq_bad', $$ SELECT id FROM sq_rides $$, sink => 'sq_bad_out',
	allowed_lateness => '1 minute');

--
-- Objects are resolved at creation: a function the query uses cannot be
-- dropped, a later function in another schema changes nothing.
--
CREATE FUNCTION sq_norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(t) $$;
SELECT streamflink.create_pipeline('sq_fn', $$ SELECT id, sq_norm(kind) AS k FROM sq_rides WHERE id < 3 $$,
	sink => 'sq_fn_out');
DROP FUNCTION sq_norm(text);
CREATE SCHEMA sq_shadow;
CREATE FUNCTION sq_shadow.sq_norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'captured' $$;
SET search_path = sq_shadow, public;
SELECT d FROM sq_final('sq_fn') d ORDER BY d->>'id';
RESET search_path;
-- A row inserted by hand gets its shape from its query (the trigger).
CREATE TABLE sq_forged_out (id int);
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, window_kind, window_size,
	aggregates, query, sink, allowed_lateness, checkpoint_interval)
SELECT 'sq_forged', id, 'window', '{geo}', 'tumble', '1 hour', 'count(*) AS n',
	$$ SELECT id FROM sq_rides WHERE id = 1 $$, 'sq_forged_out', '0', '1 second'
FROM streamflink.source WHERE name = 'sq_rides';
SELECT name, kind, key_columns, window_kind, window_size, aggregates, aggregates_tree IS NULL AS no_aggregates
FROM streamflink.pipeline WHERE name = 'sq_forged';
SELECT streamflink.drop_pipeline('sq_forged', drop_sink => true);
-- live() does not show a query's windows yet
SELECT * FROM streamflink.live('sq_surge');

--
-- In the workers, against the test broker: the stateless pipeline and the
-- hop pipeline read the 600 rides (two partitions), exactly once into
-- their tables; an event an hour later on each partition fires every
-- window.
--
SELECT count(*) FROM (
	SELECT streamflink.produce(regress_brokers(), 'regress_sql',
		array_agg(to_jsonb(e)::text ORDER BY id), id % 2)
	FROM sq_events e GROUP BY id % 2) p;
SELECT streamflink.produce(regress_brokers(), 'regress_sql',
	ARRAY['{"id": -1, "geo": "g0", "wait_s": 0, "kind": "test", "ts": "2024-01-01 02:00:00+00"}'], p)
FROM generate_series(0, 1) p;
SELECT streamflink.start('sq_ingest');
SELECT streamflink.start('sq_surge');
SELECT wait_until($$SELECT bool_and(events = 602 AND last_checkpoint IS NOT NULL)
                           AND (SELECT count(*) FROM sq_ingest_out) > 0
                    FROM streamflink.pipelines WHERE name IN ('sq_ingest', 'sq_surge')$$);
SELECT streamflink.stop('sq_ingest');
SELECT streamflink.stop('sq_surge');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines
                    WHERE name IN ('sq_ingest', 'sq_surge')$$);
SELECT name, status, error FROM streamflink.pipelines
WHERE name IN ('sq_ingest', 'sq_surge') ORDER BY name;
SELECT count(*) AS dead_letters FROM streamflink.dead_letters WHERE pipeline IN ('sq_ingest', 'sq_surge');
-- Equal to Postgres' answers (the stateless sink once per event).
SELECT (SELECT count(*) FROM sq_ingest_out) AS sink_rows,
       (SELECT count(*) FROM (SELECT * FROM sq_ingest_out EXCEPT ALL
            SELECT id, lower(email) AS email, geo || '/' || kind AS tag, wait_s * 60 AS wait_min, ts
            FROM sq_events WHERE kind <> 'test' AND email IS NOT NULL) x) AS only_sink,
       (SELECT count(*) FROM (SELECT id, lower(email) AS email, geo || '/' || kind AS tag, wait_s * 60 AS wait_min, ts
            FROM sq_events WHERE kind <> 'test' AND email IS NOT NULL EXCEPT ALL
            SELECT * FROM sq_ingest_out) x) AS only_reference;
SELECT (SELECT count(*) FROM sq_surge_out) AS sink_rows,
       (SELECT count(*) FROM (SELECT to_jsonb(s) FROM sq_surge_out s EXCEPT ALL SELECT * FROM sq_final('sq_surge')) x) AS only_sink,
       (SELECT count(*) FROM (SELECT * FROM sq_final('sq_surge') EXCEPT ALL SELECT to_jsonb(s) FROM sq_surge_out s) x) AS only_run_operator;

--
-- Tenants: a query is analysed as its creator (the owner); another
-- tenant's source does not exist for it; the owner's functions run as the
-- owner, and a tenant's function trying to gain privileges fails.
--
CREATE ROLE regress_sq_dora LOGIN;
CREATE ROLE regress_sq_eve LOGIN;
GRANT streamflink_user TO regress_sq_dora, regress_sq_eve;
CREATE SCHEMA regress_sq_dora AUTHORIZATION regress_sq_dora;
CREATE SCHEMA regress_sq_eve AUTHORIZATION regress_sq_eve;
SET SESSION AUTHORIZATION regress_sq_dora;
SET search_path = regress_sq_dora;
SELECT streamflink.create_source('sq_dora_src', brokers => '127.0.0.1:1', topic => 'sq_dora', format => 'csv',
       columns => 'k text, v int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pipeline('sq_dora', $$ SELECT k, v, current_user AS who FROM sq_dora_src $$,
	sink => 'sq_dora_out');
SELECT tableowner FROM pg_tables WHERE tablename = 'sq_dora_out';
-- A volatile function that would try ALTER ROLE is refused at creation,
-- and a non-volatile one may not run it.
CREATE FUNCTION sq_escalate(v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE 'ALTER ROLE regress_sq_dora SUPERUSER';
	RETURN v;
END $$;
SELECT streamflink.create_pipeline('sq_dora2', $$ SELECT k, sq_escalate(v) AS v FROM sq_dora_src $$,
	sink => 'sq_dora2_out');
ALTER FUNCTION sq_escalate(int) IMMUTABLE;
SELECT streamflink.create_pipeline('sq_dora2', $$ SELECT k, sq_escalate(v) AS v FROM sq_dora_src $$,
	sink => 'sq_dora2_out');
RESET SESSION AUTHORIZATION;
-- Run by a superuser: the query still runs as its owner.
SELECT ord, op, data FROM streamflink.run_operator('sq_dora', ARRAY['k,1,2024-01-01 00:00:00+00']);
SELECT ord, op, data FROM streamflink.run_operator('sq_dora2', ARRAY['k,2,2024-01-01 00:00:00+00']);
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sq_dora';
SET SESSION AUTHORIZATION regress_sq_eve;
SET search_path = regress_sq_eve;
SELECT streamflink.create_pipeline('sq_eve', $$ SELECT k FROM sq_dora_src $$, sink => 'sq_eve_out');
SELECT streamflink.explain($$ SELECT k FROM sq_dora_src $$);
RESET SESSION AUTHORIZATION;
RESET search_path;
SELECT streamflink.drop_pipeline('sq_dora', drop_sink => true);
SELECT streamflink.drop_pipeline('sq_dora2', drop_sink => true);
SELECT streamflink.drop_source('sq_dora_src');
DROP SCHEMA regress_sq_dora CASCADE;
DROP SCHEMA regress_sq_eve CASCADE;
DROP ROLE regress_sq_dora, regress_sq_eve;

SELECT streamflink.drop_pipeline(name, drop_sink => true) FROM streamflink.pipeline
WHERE name LIKE 'sq\_%' OR name LIKE 'nexmark\_%' ORDER BY name;
SELECT streamflink.drop_source('sq_rides');
SELECT streamflink.drop_source('sq_bids');
SELECT streamflink.drop_source('sq_txns');
