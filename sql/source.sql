--
-- source: creating, listing and dropping Kafka sources; every error a user
-- can make while declaring one.
--
\set SHOW_CONTEXT never
SELECT streamflink.create_source('rides', brokers => regress_brokers(), topic => 'regress_rides',
       format => 'json', columns => 'geo text, wait_s float8, kind text, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds');
SELECT streamflink.create_source('readings', brokers => regress_brokers(), topic => 'regress_csv',
       format => 'csv', columns => 'sensor int, reading numeric(6,2), at timestamp',
       event_time => 'at', idle_timeout => '2 seconds', options => '{fetch.wait.max.ms=10}');
-- Without event_time the Kafka message timestamp is the event time.
SELECT streamflink.create_source('lines', brokers => regress_brokers(), topic => 'regress_text',
       format => 'text');

SELECT name, topic, format, columns, event_time, max_out_of_orderness, idle_timeout, options
FROM streamflink.sources ORDER BY name;

-- The decoded row is a composite type: every Postgres type works.
SELECT format_type(row_type, NULL) FROM streamflink.source ORDER BY id;

-- Errors.
SELECT streamflink.create_source('rides', brokers => regress_brokers(), topic => 't',
       columns => 'a int');
SELECT streamflink.create_source('bad name', brokers => regress_brokers(), topic => 't',
       columns => 'a int');
SELECT streamflink.create_source('s1', brokers => '', topic => 't', columns => 'a int');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       format => 'avro', columns => 'a int');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       format => 'protobuf', columns => 'a int');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int; DROP TABLE x');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a nosuchtype');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int,, b');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       format => 'text', columns => 'a text, b text');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int', event_time => 'ts');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int, ts date', event_time => 'ts');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int', max_out_of_orderness => '-1 second');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int', max_out_of_orderness => '1 month');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int', idle_timeout => '0');
SELECT streamflink.create_source('s1', brokers => regress_brokers(), topic => 't',
       columns => 'a int', options => '{"not an option"}');
-- A bad librdkafka setting is refused when the pipeline starts (see run).

-- A failed create leaves nothing behind.
SELECT count(*) FROM streamflink.source WHERE name = 's1';
SELECT count(*) FROM pg_type WHERE typname = 'source_s1';

SELECT streamflink.drop_source('lines');
SELECT streamflink.drop_source('lines');
SELECT count(*) FROM pg_type WHERE typname = 'source_lines';
