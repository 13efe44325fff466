--
-- decode: what sources make of payloads (streamflink.decode runs the same
-- decoder as a pipeline's worker, without Kafka): every column through its
-- type's input function; anything that does not decode is an error text,
-- the one its dead letter would carry, never an ERROR.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE TYPE regress_color AS ENUM ('red', 'green');
CREATE DOMAIN regress_positive AS int CHECK (VALUE > 0);
SELECT streamflink.create_source('j', brokers => regress_brokers(), topic => 'regress_types',
       columns => 'id regress_positive, name text, price numeric(8,2), ok bool, tags text[],
                   doc jsonb, raw json, at timestamptz, color regress_color, f float8');

SELECT payload, d.decoded, d.error
FROM unnest(ARRAY[
	'{"id": 1, "name": "plain", "price": 12.5, "ok": true, "tags": "{a,b}", "at": "2024-01-01 12:00:00+02", "color": "red", "f": 1e3}',
	'  {"id":2,"name":"tab\there \"quoted\" back\\slash \u00e9 \ud83d\ude00"}  ',
	'{"id": 3, "doc": {"a": [1, 2, {"b": null}], "c": "x"}, "raw": [1, "two", {"3": 4}]}',
	'{"id": 4, "name": null, "price": 1.005, "ok": false}',
	'{"id": 5, "id": 6, "na\u006de": "escaped key", "unused": {"deep": [[[{}]]]}, "other": [1,2]}',
	'{"id": 7, "name": 42, "ok": "yes", "doc": "a string", "raw": 1.5e-3}',
	'{}',
	'{"id": 8, "f": -0.0, "price": -1e2}',
	-- errors
	'{"id": 0}',
	'{"id": 9, "color": "blue"}',
	'{"id": 10, "price": 1e10}',
	'{"id": 11, "f": 1e400}',
	'{"id": 12, "tags": ["a", "b"]}',
	'{"id": 13, "at": "yesterday-ish"}',
	'{"id": 14} trailing',
	'{"id": 15',
	'{"id": "16}',
	'{"id": 17, "name": "bad \x escape"}',
	'{"id": 18, "name": "bad \u12 escape"}',
	'{"id": 19,}',
	'{"id": 20 "name": "x"}',
	'{"id" 21}',
	'{id: 22}',
	'{"id": 23, "x": tru}',
	'{"id": 24, "x": [1, 2}',
	'{"id": 25, "x": 01}',
	'[{"id": 26}]',
	'"just a string"',
	'',
	'   '
]) WITH ORDINALITY AS t(payload, n), streamflink.decode('j', payload) d
ORDER BY n;

-- Nesting deeper than the fast scanner goes: Postgres' parser takes over,
-- with the same results (json columns get JSON text, strings included).
SELECT d.* FROM streamflink.decode('j',
	'{"id": 30, "doc": "s", "raw": {"x": ' || repeat('[', 70) || repeat(']', 70) || '}, "deep": ' ||
	repeat('[', 100) || repeat(']', 100) || ', "name": "after\u00e9"}') d;

-- A json column takes a number beyond numeric's range, jsonb does not: the
-- row decodes, decode() says it cannot show it as jsonb.
SELECT * FROM streamflink.decode('j', '{"id": 31, "raw": 1e1000000}');

-- Bytes that are not text: invalid UTF-8, a NUL, a Kafka null value.
SELECT * FROM streamflink.decode('j', '\x7b226964223a20312c20226e616d65223a2022ff227d'::bytea);
SELECT * FROM streamflink.decode('j', '\x7b226964223a20317d00'::bytea);
SELECT * FROM streamflink.decode('j', NULL::bytea);

SELECT streamflink.create_source('c', brokers => regress_brokers(), topic => 'regress_types',
       format => 'csv', columns => 'id int, name text, price numeric, at timestamptz');
SELECT payload, d.decoded, d.error
FROM unnest(ARRAY[
	E'1,plain,1.5,2024-01-01 00:00:00+00',
	E'2,"quoted, with comma",2,2024-01-01 00:00:00+00\n',
	E'3,"with ""quotes"" and\nnewline",,2024-01-01 00:00:00+00\r\n',
	E'4,,"",2024-01-01 00:00:00+00',
	E'5,"",,',
	E'6,unquoted "inner" quotes,1,',
	-- errors
	E'7,a,b,c,d',
	E'8,a',
	E'9,"unterminated,1,',
	E'10,"closed"junk,1,',
	E'x,a,1,',
	E'11,a,1,not a time'
]) WITH ORDINALITY AS t(payload, n), streamflink.decode('c', payload) d
ORDER BY n;

SELECT streamflink.create_source('t', brokers => regress_brokers(), topic => 'regress_types',
       format => 'text');
SELECT * FROM streamflink.decode('t', 'any text, "quotes", {braces}');
SELECT * FROM streamflink.decode('t', NULL::bytea);
SELECT * FROM streamflink.decode('nosuch', 'x');

SELECT streamflink.drop_source(name) FROM (VALUES ('j'), ('c'), ('t')) v(name);
DROP TYPE regress_color;
DROP DOMAIN regress_positive;
