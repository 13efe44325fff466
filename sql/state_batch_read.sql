--
-- state_batch_read: due timers' state read in batches (kstate_prefetch,
-- RocksDB's batched MultiGet).  After a restart every window and every CEP
-- buffer is in RocksDB only, none in the worker's cache, so when the
-- watermark passes them the timer service hands the operators the keys of
-- each next 1024 due timers and they read them in one batch.  10000 keys,
-- two windows each (20000 windows: 19 full batches and a partial one, a
-- key's two windows due in one advance); the sink and the matches must
-- equal SQL's answer.  A tenant's pipelines.  The pattern pipeline runs
-- under large_state, whose index and filter blocks are partitioned in the
-- block cache: its reads go through them.  The stop's checkpoint writes
-- the 20000 windows and the 10000 buffers back in a batch each, over
-- STATE_INGEST_MIN_OPS: they reach RocksDB as table files ingested whole
-- rather than through the memtable (state.c), where the reads after the
-- restart find them.  Once the windows fired, the checkpoint after deletes
-- them, each by a tombstone, and the key groups' gone windows by range
-- deletions before those.  The keys a savepoint's rescale copies count
-- what is left in RocksDB: every window before the firing, none after.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

CREATE ROLE regress_br_tenant;
GRANT streamflink_user TO regress_br_tenant;
CREATE SCHEMA br AUTHORIZATION regress_br_tenant;
SET ROLE regress_br_tenant;
SET search_path = br, public;

SELECT streamflink.create_source('br_src', brokers => regress_brokers(), topic => 'regress_batch_read',
       format => 'json', columns => 'k int, v int, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '10 minutes',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_window_pipeline('br_win', source => 'br_src', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, sum(v) AS total', sink => 'br_win_out');
-- v = 1 then v = 2 in the next event of the key: keys k % 3 <> 0
SELECT streamflink.create_pattern_pipeline('br_cep', 'br_src', 'k', 'a b',
       $$a AS v = 1, b AS v = 2$$, 'br_cep_out', state_profile => 'large_state');

-- Per key: v = 1 in minute 0, v = 2 (k % 3 = 0: v = 3) in minute 1.
CREATE TABLE br.br_events AS
SELECT row_number() OVER (ORDER BY m, k) AS i, k, v, ts
FROM (SELECT k, 0 AS m, 1 AS v, timestamptz '2024-01-01 00:00:00+00' + k * interval '5 ms' AS ts
      FROM generate_series(0, 9999) k
      UNION ALL
      SELECT k, 1, CASE WHEN k % 3 = 0 THEN 3 ELSE 2 END,
             timestamptz '2024-01-01 00:01:00+00' + k * interval '5 ms'
      FROM generate_series(0, 9999) k) e;

SELECT streamflink.start('br_win');
SELECT streamflink.start('br_cep');
RESET ROLE;  -- the test's producer, not the tenant
SELECT streamflink.produce(regress_brokers(), 'regress_batch_read',
       (SELECT array_agg(json_build_object('k', k, 'v', v, 'ts', ts)::text ORDER BY i) FROM br.br_events), 0);
SET ROLE regress_br_tenant;
SELECT wait_until($$SELECT bool_and(events = 20000) FROM streamflink.pipelines WHERE name IN ('br_win', 'br_cep')$$);
-- nothing fired yet (the watermark is 10 minutes behind)
SELECT count(*) FROM br.br_win_out;
SELECT count(*) FROM br.br_cep_out;

-- Stopped (a last checkpoint) and started again: a new worker, its cache empty.
SELECT streamflink.stop('br_win', savepoint => 'open');
SELECT streamflink.stop('br_cep');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name IN ('br_win', 'br_cep')$$);
RESET ROLE;  -- a rescale is a superuser's
-- the 20000 windows and a count of open windows per key group
SELECT streamflink.rescale_savepoint('br_win', 'open', 1) AS keys_open;
SET ROLE regress_br_tenant;
SELECT streamflink.start('br_win');
SELECT streamflink.start('br_cep');
-- an event an hour later: every window and every buffered event is due
RESET ROLE;
SELECT streamflink.produce(regress_brokers(), 'regress_batch_read',
       ARRAY['{"k": -1, "v": 0, "ts": "2024-01-01 01:00:00+00"}'], 0);
SET ROLE regress_br_tenant;
SELECT wait_until($$SELECT bool_and(watermark = '2024-01-01 00:50:00+00') FROM streamflink.pipelines WHERE name IN ('br_win', 'br_cep')$$);
SELECT wait_until($$SELECT count(*) = 20000 FROM br.br_win_out$$);
SELECT wait_until($$SELECT count(*) = 6666 FROM br.br_cep_out$$);

-- The windows equal SQL's answer, both ways.
SELECT count(*) AS windows, sum(n) AS events FROM br.br_win_out;
SELECT count(*) AS missing FROM (
	SELECT k, date_trunc('minute', ts) AS window_start, count(*) AS n, sum(v) AS total
	FROM br.br_events GROUP BY 1, 2
	EXCEPT SELECT k, window_start, n, total FROM br.br_win_out) x;
SELECT count(*) AS extra FROM (
	SELECT k, window_start, n, total FROM br.br_win_out
	EXCEPT SELECT k, date_trunc('minute', ts), count(*), sum(v) FROM br.br_events GROUP BY 1, 2) x;
-- One match per key whose v = 1 is followed by v = 2, and nothing else.
SELECT count(*) AS matches, count(DISTINCT k) AS keys, bool_and(k % 3 <> 0) AS right_keys,
       bool_and(match_end - match_start = interval '1 minute') AS a_minute_apart
FROM br.br_cep_out;
SELECT k, match_start, match_end, events FROM br.br_cep_out WHERE k IN (1, 9998) ORDER BY k;

SELECT streamflink.stop('br_win', savepoint => 'fired');
SELECT streamflink.stop('br_cep');
SELECT wait_until($$SELECT bool_and(status = 'stopped') FROM streamflink.pipelines WHERE name IN ('br_win', 'br_cep')$$);
RESET ROLE;
-- the key groups' counts and key -1's window, still open: no fired window left
SELECT streamflink.rescale_savepoint('br_win', 'fired', 1) AS keys_fired;
SET ROLE regress_br_tenant;
SELECT streamflink.drop_pipeline('br_win', drop_sink => true);
SELECT streamflink.drop_pipeline('br_cep', drop_sink => true);
SELECT streamflink.drop_source('br_src');
DROP TABLE br.br_events;
RESET ROLE;
DROP SCHEMA br;
DROP ROLE regress_br_tenant;
