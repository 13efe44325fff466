--
-- cep_tenant_bounds: the bounds of partial matches are what keeps a
-- pattern such as a{->>1,} b (2^n partial matches per key) from taking the
-- server's memory; a tenant used to be able to set them to 2^31-1 and have
-- the explosion back.  Above the defaults they need a superuser, however
-- the pipeline row is made.
--
\set SHOW_CONTEXT never
CREATE ROLE regress_tb;
GRANT streamflink_user TO regress_tb;
CREATE SCHEMA tb AUTHORIZATION regress_tb;
SET ROLE regress_tb;
SET search_path = tb, public;
SELECT streamflink.create_source('tb', brokers => regress_brokers(), topic => 'regress_tb',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('tb_huge', 'tb', 'k', 'a{->>1,} b', 'a AS x > 0, b AS x < 0',
       'tb_huge_out', max_partial_matches => 2147483647, max_partial_match_events => 2147483647);
SELECT streamflink.create_pattern_pipeline('tb_huge', 'tb', 'k', 'a{->>1,} b', 'a AS x > 0, b AS x < 0',
       'tb_huge_out', max_partial_matches => 10001);
SELECT streamflink.create_pattern_pipeline('tb_huge', 'tb', 'k', 'a{->>1,} b', 'a AS x > 0, b AS x < 0',
       'tb_huge_out', max_partial_match_events => 100001);
-- Nor by hand.
CREATE TABLE tb_hand (k int, match_start timestamptz NOT NULL, match_end timestamptz NOT NULL,
                      events jsonb NOT NULL);
INSERT INTO streamflink.pipeline (name, source_id, kind, key_columns, pattern, define, skip, sink,
                                  allowed_lateness, checkpoint_interval, max_partial_matches,
                                  max_partial_match_events)
SELECT 'tb_hand', id, 'pattern', '{k}', 'a{->>1,} b', 'a AS x > 0, b AS x < 0', 'no_skip', 'tb_hand',
       '0', '1 second', 2147483647, 2147483647
FROM streamflink.source WHERE name = 'tb';
-- Up to the defaults is the tenant's choice.
SELECT streamflink.create_pattern_pipeline('tb_ok', 'tb', 'k', 'a{->>1,} b', 'a AS x > 0, b AS x < 0',
       'tb_ok_out', max_partial_matches => 10000, max_partial_match_events => 50);
SELECT name, max_partial_matches, max_partial_match_events FROM streamflink.pipelines ORDER BY name;
SELECT streamflink.drop_pipeline('tb_ok', drop_sink => true);
RESET ROLE;
-- A superuser may raise them, for a pipeline of its own.
SELECT streamflink.create_source('tb_su', brokers => regress_brokers(), topic => 'regress_tb',
       columns => 'k int, x int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_pattern_pipeline('tb_su', 'tb_su', 'k', 'a{->>1,} b', 'a AS x > 0, b AS x < 0',
       'tb.tb_su_out', max_partial_matches => 50000, max_partial_match_events => 1000000);
SELECT name, max_partial_matches, max_partial_match_events FROM streamflink.pipelines
WHERE name = 'tb_su';
SELECT streamflink.drop_pipeline('tb_su', drop_sink => true);
SELECT streamflink.drop_source('tb_su');
SET ROLE regress_tb;
SELECT streamflink.drop_source('tb');
DROP TABLE tb_hand;
RESET ROLE;
RESET search_path;
DROP SCHEMA tb;
DROP ROLE regress_tb;
