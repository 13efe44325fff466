--
-- live_rls: live() shows a pipeline's open windows to roles that may SELECT
-- its sink, but it cannot apply the sink's row-level security policies to
-- them: a reader those policies would filter used to see every open window
-- (every key), also those the sink itself hid from it.  Such a reader is
-- refused; the sink table stays readable as its policies allow.
--
\set SHOW_CONTEXT never
CREATE ROLE regress_lrs_owner;
CREATE ROLE regress_lrs_reader;
GRANT streamflink_user TO regress_lrs_owner, regress_lrs_reader;
CREATE SCHEMA lrs AUTHORIZATION regress_lrs_owner;
GRANT USAGE ON SCHEMA lrs TO regress_lrs_reader;
SET ROLE regress_lrs_owner;
SET search_path = lrs, public;
SELECT streamflink.create_source('lrs', brokers => regress_brokers(), topic => 'regress_lrs',
       columns => 'k int, ts timestamptz', event_time => 'ts');
SELECT streamflink.create_window_pipeline('lrs', source => 'lrs', key => 'k', "window" => 'tumble',
       size => '1 minute', aggregates => 'count(*) AS n', sink => 'lrs_out');
GRANT SELECT ON lrs_out TO regress_lrs_reader;
-- Without policies, the reader sees the open windows.
SET ROLE regress_lrs_reader;
SELECT count(*) FROM streamflink.live('lrs', NULL::lrs.lrs_out);
-- With them, it is refused; the owner still sees everything.
SET ROLE regress_lrs_owner;
ALTER TABLE lrs_out ENABLE ROW LEVEL SECURITY;
CREATE POLICY key_one ON lrs_out FOR SELECT TO regress_lrs_reader USING (k = 1);
SET ROLE regress_lrs_reader;
SELECT count(*) FROM streamflink.live('lrs', NULL::lrs.lrs_out);
SELECT count(*) FROM streamflink.live('lrs');
SELECT count(*) FROM lrs.lrs_out;
SET ROLE regress_lrs_owner;
SELECT count(*) FROM streamflink.live('lrs', NULL::lrs.lrs_out);
SELECT streamflink.drop_pipeline('lrs', drop_sink => true);
SELECT streamflink.drop_source('lrs');
RESET ROLE;
RESET search_path;
DROP SCHEMA lrs;
DROP ROLE regress_lrs_owner;
DROP ROLE regress_lrs_reader;
