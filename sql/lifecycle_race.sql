--
-- lifecycle_race: a stop that commits while the worker its start
-- registered is still starting (between reading the pipeline's definition
-- and claiming its slot) is not lost.  It used to be: the worker then ran
-- with desired state "stopped", could be neither stopped nor dropped
-- ("still stopping"), held a worker slot and escaped max_running.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE ROLE regress_lr;
GRANT streamflink_user TO regress_lr;
CREATE SCHEMA lr AUTHORIZATION regress_lr;
SET ROLE regress_lr;
SET search_path = lr, public;
SELECT streamflink.create_source('lr', brokers => regress_brokers(), topic => 'regress_lr',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('lr', source => 'lr', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'lr_out');
-- 64 starts, each followed by a stop, every statement committing on its
-- own (psql's autocommit runs each \gexec cell alone), with a pause of 0
-- to 300 ms after some of them.
SELECT 'SELECT streamflink.start(''lr'')', 'SELECT streamflink.stop(''lr'')',
       'SELECT pg_sleep(' || (ARRAY[0.05, 0.1, 0.2, NULL, NULL, 0.3, 0.05, NULL])[1 + i % 8] || ')'
FROM generate_series(0, 63) i ORDER BY i \gexec
SELECT wait_until($$SELECT status = 'stopped' AND pid IS NULL FROM streamflink.pipelines WHERE name = 'lr'$$,
                  '20 seconds');
SELECT streamflink.drop_pipeline('lr', drop_sink => true);
SELECT streamflink.drop_source('lr');
RESET ROLE;
RESET search_path;
DROP SCHEMA lr;
DROP ROLE regress_lr;
