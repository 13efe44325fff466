--
-- avro: Avro sources, with the writer schema inline (format avro) and in
-- the Confluent wire format through the test schema registry
-- (test/schema_registry.py, at regress.schema_registry, with
-- test/avro/ride_v1.avsc as id 1 and ride_v2.avsc as id 2).  Payloads are
-- encoded here, in SQL, as the Avro specification says.
--
\set SHOW_CONTEXT never
SET timezone = 'UTC';

CREATE FUNCTION regress_registry() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT current_setting('regress.schema_registry') $$;

-- Avro binary encoding: zig-zag varints, length-prefixed strings, IEEE
-- little-endian floats; the Confluent frame: 0, the id big-endian, the datum.
CREATE FUNCTION avro_long(v bigint) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	z numeric := CASE WHEN v >= 0 THEN 2 * v::numeric ELSE -2 * v::numeric - 1 END;
	o bytea := '\x';
	b int;
BEGIN
	LOOP
		b := (z % 128)::int;
		z := floor(z / 128);
		IF z > 0 THEN
			o := o || set_byte('\x00'::bytea, 0, b | 128);
		ELSE
			RETURN o || set_byte('\x00'::bytea, 0, b);
		END IF;
	END LOOP;
END
$$;
CREATE FUNCTION avro_bytes(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_long(length(b)) || b $$;
CREATE FUNCTION avro_string(s text) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_bytes(convert_to(s, 'UTF8')) $$;
CREATE FUNCTION avro_reverse(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT string_agg(substring(b FROM length(b) + 1 - i FOR 1), '\x'::bytea ORDER BY i)
   FROM generate_series(1, length(b)) i $$;
CREATE FUNCTION avro_double(d float8) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_reverse(float8send(d)) $$;
CREATE FUNCTION avro_float(f float4) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_reverse(float4send(f)) $$;
CREATE FUNCTION confluent(id int, body bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT '\x00'::bytea || int4send(id) || body $$;
-- A ride as schema 1 (geo, wait_s double, kind, ts millis) and as schema 2
-- (geo, wait_s float, ts millis, region; kind removed, region added).
CREATE FUNCTION ride_v1(geo text, wait_s float8, kind text, ts timestamptz) RETURNS bytea
LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_string(geo) || avro_double(wait_s) || avro_string(kind) ||
		  avro_long((extract(epoch FROM ts) * 1000)::bigint) $$;
CREATE FUNCTION ride_v2(geo text, wait_s float4, ts timestamptz, region text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS
$$ SELECT avro_string(geo) || avro_float(wait_s) ||
		  avro_long((extract(epoch FROM ts) * 1000)::bigint) || avro_string(region) $$;

-- ---- format avro: the writer schema inline ----

SELECT streamflink.create_source('avro_types', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro',
	columns => 'i int, l bigint, s smallint, f real, d float8, b bool, t text, v varchar(3),
				by bytea, n int, dt date, tsm timestamptz, tsl timestamp, dec numeric,
				e text, arr jsonb, rec json, num numeric, absent text',
	avro_schema => $${"type": "record", "name": "T", "fields": [
		{"name": "i", "type": "int"},
		{"name": "l", "type": "long"},
		{"name": "s", "type": "int"},
		{"name": "f", "type": "float"},
		{"name": "d", "type": "double"},
		{"name": "b", "type": "boolean"},
		{"name": "t", "type": "string"},
		{"name": "v", "type": "string"},
		{"name": "by", "type": "bytes"},
		{"name": "n", "type": ["null", "int"]},
		{"name": "dt", "type": {"type": "int", "logicalType": "date"}},
		{"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-micros"}},
		{"name": "tsl", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
		{"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
		{"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["RED", "GREEN"]}},
		{"name": "arr", "type": {"type": "array", "items": "long"}},
		{"name": "rec", "type": {"type": "record", "name": "R", "fields": [{"name": "x", "type": "string"}]}},
		{"name": "num", "type": "long"},
		{"name": "ignored", "type": "string"}]}$$);
CREATE FUNCTION types_payload(i bigint DEFAULT 7, s bigint DEFAULT 3, v text DEFAULT 'abc',
							  n bytea DEFAULT avro_long(1) || avro_long(-5),
							  t bytea DEFAULT avro_string('héllo'),
							  tail bytea DEFAULT avro_string('skipped'))
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
	SELECT avro_long(i) || avro_long(-9000000000) || avro_long(s) || avro_float(1.5) ||
		   avro_double(-2.25) || '\x01'::bytea || t || avro_string(v) ||
		   avro_bytes('\xdeadbeef') || n || avro_long(19723) ||
		   avro_long(1704067200123456) || avro_long(1704067200123) ||
		   avro_bytes('\xfb2e') ||	-- -1234 unscaled: -12.34
		   avro_long(1) ||			-- GREEN
		   avro_long(2) || avro_long(10) || avro_long(-20) || avro_long(0) ||
		   avro_string('in') || avro_long(42) || tail
$$;
SELECT jsonb_pretty(decoded), error FROM streamflink.decode('avro_types', types_payload());
-- the null branch of the union, and a value an input function refuses
SELECT decoded -> 'n' AS n, error FROM streamflink.decode('avro_types', types_payload(n => avro_long(0)));
SELECT decoded, error FROM streamflink.decode('avro_types', types_payload(v => 'abcd'));
SELECT decoded, error FROM streamflink.decode('avro_types', types_payload(s => 40000));

-- Every class of undecodable payload: an error (a dead letter in a
-- pipeline), never a crash or a read past the payload.
SELECT what, error
FROM (VALUES
	('empty', '\x'::bytea),
	('truncated', substring(types_payload() FROM 1 FOR 20)),
	('one byte short', substring(types_payload() FROM 1 FOR length(types_payload()) - 1)),
	('trailing bytes', types_payload() || '\x00'::bytea),
	('negative length', types_payload(t => avro_long(-3))),
	('length past the end', types_payload(t => avro_long(1000000000))),
	('int beyond 32 bits', types_payload(i => 4000000000)),
	('varint of 11 bytes', '\xffffffffffffffffffff01'::bytea),
	('union branch 5', types_payload(n => avro_long(5))),
	('array count beyond the payload', types_payload(tail => '\x') || '\x00'::bytea),
	('invalid UTF-8', types_payload(t => avro_bytes('\xc3'))),
	('NUL in a string', types_payload(t => avro_bytes('\x610062')))
) p(what, payload), streamflink.decode('avro_types', payload) d;
-- an array claiming 2^62 null elements in 10 bytes
SELECT streamflink.create_source('avro_nulls', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro', columns => 'a jsonb',
	avro_schema => '{"type": "record", "name": "N", "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}]}');
SELECT decoded, error FROM streamflink.decode('avro_nulls', avro_long(4611686018427387903) || avro_long(0));
SELECT decoded, error FROM streamflink.decode('avro_nulls', avro_long(3) || avro_long(0));

-- Without the source's settings (the decoding function called directly).
SELECT * FROM streamflink._decode('avro', NULL::streamflink.source_avro_nulls, '\x00'::bytea);
-- Refused at creation, with the reason.
SELECT streamflink.create_source('avro_bad', brokers => 'b', topic => 't', format => 'avro',
	columns => 'a int');
SELECT streamflink.create_source('avro_bad', brokers => 'b', topic => 't', format => 'avro',
	columns => 'a int', avro_schema => '{"type": "record", "name": "X", "fields": [');
SELECT streamflink.create_source('avro_bad', brokers => 'b', topic => 't', format => 'avro',
	columns => 'a int', avro_schema => '"long"');
SELECT streamflink.create_source('avro_bad', brokers => 'b', topic => 't', format => 'json',
	columns => 'a int', avro_schema => '{"type": "record", "name": "X", "fields": []}');
SELECT streamflink.create_source('avro_bad', brokers => 'b', topic => 't', format => 'avro',
	columns => 'a int', avro_schema => '{"type": "record", "name": "X", "fields": []}',
	schema_registry => 'http://registry:8081');

-- ---- format avro-confluent: ids through the registry ----

-- The reader schema derived from the columns: a column the writer lacks is
-- NULL, a field no column names is skipped.
SELECT streamflink.create_source('rides_avro', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo text, wait_s float8, kind text, ts timestamptz, region text',
	event_time => 'ts', schema_registry => regress_registry());
SELECT d.* FROM streamflink.decode('rides_avro', confluent(1, ride_v1('g1', 2.5, 'pool', '2024-01-01 00:00:01.5+00'))) d;
SELECT d.* FROM streamflink.decode('rides_avro', confluent(2, ride_v2('g2', 0.75, '2024-01-01 00:00:02+00', 'us'))) d;

-- With a reader schema (Avro's resolution): kind, removed in schema 2, and
-- region, added in it, take the reader's defaults where the writer lacks
-- them; wait_s, a float in schema 2, is promoted to the reader's double.
SELECT streamflink.create_source('rides_reader', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo text, wait_s float8, kind text, ts timestamptz, region text',
	schema_registry => regress_registry(),
	avro_schema => $${"type": "record", "name": "Ride", "namespace": "regress", "fields": [
		{"name": "geo", "type": "string"},
		{"name": "wait_s", "type": "double"},
		{"name": "kind", "type": ["string", "null"], "default": "solo"},
		{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
		{"name": "region", "type": "string", "default": "eu"}]}$$);
SELECT d.* FROM streamflink.decode('rides_reader', confluent(1, ride_v1('g1', 2.5, 'pool', '2024-01-01 00:00:01.5+00'))) d;
SELECT d.* FROM streamflink.decode('rides_reader', confluent(2, ride_v2('g2', 0.75, '2024-01-01 00:00:02+00', 'us'))) d;
-- A reader field the writer lacks and without a default: Avro refuses it.
SELECT streamflink.create_source('rides_strict', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo text, kind text',
	schema_registry => regress_registry(),
	avro_schema => '{"type": "record", "name": "Ride", "namespace": "regress", "fields": [
		{"name": "geo", "type": "string"}, {"name": "kind", "type": "string"}]}');
SELECT d.* FROM streamflink.decode('rides_strict', confluent(2, ride_v2('g2', 0.75, '2024-01-01 00:00:02+00', 'us'))) d;
-- A reader schema must name every column; a type it cannot be read as.
SELECT streamflink.create_source('rides_bad', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo text, other int',
	schema_registry => regress_registry(),
	avro_schema => '{"type": "record", "name": "Ride", "namespace": "regress", "fields": [
		{"name": "geo", "type": "string"}]}');
SELECT streamflink.create_source('rides_int', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo int',
	schema_registry => regress_registry(),
	avro_schema => '{"type": "record", "name": "Ride", "namespace": "regress", "fields": [
		{"name": "geo", "type": "int"}]}');
SELECT d.* FROM streamflink.decode('rides_int', confluent(1, ride_v1('g1', 2.5, 'pool', '2024-01-01 00:00:01.5+00'))) d;

-- Every bad-input class of the wire format and of the registry.
SELECT what, error
FROM (VALUES
	('bad magic byte', '\x01000000010000'::bytea),
	('too short', '\x000000'::bytea),
	('unknown schema id', confluent(77, '\x00')),
	('registry error 500', confluent(9000, '\x00')),
	('registry answer too large', confluent(9001, '\x00')),
	('registry answer not JSON', confluent(9002, '\x00')),
	('not an Avro schema', confluent(9003, '\x00')),
	('registry redirects', confluent(9004, '\x00')),
	('undecodable record', confluent(1, '\x0467')),
	('record with trailing bytes', confluent(2, ride_v2('g', 1, '2024-01-01', 'x') || '\x01'::bytea))
) p(what, payload), streamflink.decode('rides_avro', payload) d;

-- ---- who may name which registry ----

-- Only http and https, for everyone.
SELECT streamflink.create_source('reg_bad', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'file:///etc/passwd');
SELECT streamflink.create_source('reg_bad', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'gopher://registry:70');
SELECT streamflink.create_source('reg_bad', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'http://registry:8081/?x=1');
SELECT streamflink.create_source('reg_bad', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int');
CREATE ROLE regress_avro_tenant;
GRANT streamflink_user TO regress_avro_tenant;
SET ROLE regress_avro_tenant;
-- A tenant: only hosts in streamflink.schema_registry_hosts (empty: none).
SELECT streamflink.create_source('reg_tenant', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'http://169.254.169.254/latest');
SET streamflink.schema_registry_hosts = 'registry.example:8081';	-- a superuser's setting
RESET ROLE;
SET streamflink.schema_registry_hosts = 'registry.example:8081, other.example';
SET ROLE regress_avro_tenant;
SELECT streamflink.create_source('reg_tenant', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'http://registry.example:8081');
SELECT streamflink.create_source('reg_tenant2', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'https://other.example/prefix/');
SELECT streamflink.create_source('reg_tenant3', brokers => 'b', topic => 't', format => 'avro-confluent',
	columns => 'a int', schema_registry => 'http://registry.example:8082');
-- Nor by inserting the row itself (with a row type of its own).
INSERT INTO streamflink.source (name, brokers, topic, format, row_type, max_out_of_orderness, schema_registry)
VALUES ('reg_tenant4', 'b', 't', 'avro-confluent', 'streamflink.source_reg_tenant', '0', 'http://10.0.0.1:8081');
-- The worker checks again, for the source's owner, when it asks.
RESET ROLE;
RESET streamflink.schema_registry_hosts;
SELECT d.* FROM streamflink.decode('reg_tenant', confluent(1, '\x02')) d;
SELECT name, format, schema_registry FROM streamflink.sources WHERE name LIKE 'reg%' ORDER BY name;
SELECT streamflink.drop_source('reg_tenant');
SELECT streamflink.drop_source('reg_tenant2');

-- ---- a pipeline: Kafka, the worker, dead letters, persisted schemas ----

CREATE TABLE avro_rides AS
SELECT i, 'g' || (i % 3) AS geo, (i % 7) * 0.5 AS wait_s, CASE WHEN i % 2 = 0 THEN 'pool' ELSE 'solo' END AS kind,
	   timestamptz '2024-01-01 00:00:00+00' + i * interval '2 seconds' AS ts
FROM generate_series(0, 299) i;
SELECT streamflink.create_window_pipeline('avro_counts', source => 'rides_avro', key => 'geo',
	"window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n, sum(wait_s) AS total',
	sink => 'avro_counts_out', checkpoint_interval => '200 milliseconds');
-- the first half as schema 1, the second as schema 2, and four bad ones
SELECT streamflink.produce(regress_brokers(), 'regress_avro',
	array_agg(CASE WHEN i < 150 THEN confluent(1, ride_v1(geo, wait_s, kind, ts))
				   ELSE confluent(2, ride_v2(geo, wait_s::float4, ts, 'eu')) END ORDER BY i), 0)
FROM avro_rides;
SELECT streamflink.produce(regress_brokers(), 'regress_avro', ARRAY[
	'\x7b2267223a317d'::bytea, confluent(77, '\x00'), confluent(1, '\x0467'), confluent(9000, '\x00'),
	confluent(1, ride_v1('g0', 1, 'solo', '2024-01-01 01:00:00+00'))], 0);
SELECT streamflink.start('avro_counts');
SELECT wait_until($$SELECT events = 305 AND dead_letters = 4 FROM streamflink.pipelines WHERE name = 'avro_counts'$$);
SELECT wait_until($$SELECT count(*) = 30 FROM avro_counts_out$$);
SELECT (SELECT count(*) FROM (
		SELECT geo, date_bin('1 minute', ts, 'epoch') AS window_start, count(*) AS n, sum(wait_s) AS total
		FROM avro_rides GROUP BY 1, 2
		EXCEPT SELECT geo, window_start, n, total FROM avro_counts_out) x) AS missing,
	   (SELECT count(*) FROM avro_counts_out) AS windows;
SELECT "offset", encode(payload, 'hex') AS payload, error
FROM streamflink.dead_letters WHERE pipeline = 'avro_counts' ORDER BY "offset";
-- The worker kept the schemas it resolved, for replays without the registry.
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.avro_schema a
					JOIN streamflink.source s ON s.id = a.source_id WHERE s.name = 'rides_avro'$$);
SELECT a.schema_id, a.schema::jsonb -> 'fields' -> 1 AS second_field
FROM streamflink.avro_schema a JOIN streamflink.source s ON s.id = a.source_id
WHERE s.name = 'rides_avro' ORDER BY 1;
SELECT streamflink.stop('avro_counts');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'avro_counts'$$);
SELECT streamflink.drop_pipeline('avro_counts', drop_sink => true);

-- Stored at once, in a transaction of their own: visible long before the
-- first checkpoint (an hour away), so a crash in between loses nothing.
SELECT streamflink.create_source('rides_avro2', brokers => regress_brokers(), topic => 'regress_avro',
	format => 'avro-confluent', columns => 'geo text, wait_s float8, ts timestamptz',
	event_time => 'ts', schema_registry => regress_registry());
SELECT streamflink.create_window_pipeline('avro_slow', source => 'rides_avro2', key => 'geo',
	"window" => 'tumble', size => '1 minute', aggregates => 'count(*) AS n',
	sink => 'avro_slow_out', checkpoint_interval => '1 hour');
SELECT streamflink.start('avro_slow');
SELECT wait_until($$SELECT count(*) = 2 FROM streamflink.avro_schema a
					JOIN streamflink.source s ON s.id = a.source_id WHERE s.name = 'rides_avro2'$$);
SELECT count(*) AS checkpoints FROM streamflink.checkpoints WHERE pipeline = 'avro_slow';
SELECT streamflink.stop('avro_slow');
SELECT wait_until($$SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = 'avro_slow'$$);
SELECT streamflink.drop_pipeline('avro_slow', drop_sink => true);
SELECT streamflink.drop_source(name) FROM streamflink.sources
WHERE name IN ('avro_types', 'avro_nulls', 'rides_avro', 'rides_avro2', 'rides_reader', 'rides_strict',
			   'rides_int')
ORDER BY name;
SELECT count(*) FROM streamflink.avro_schema;
DROP ROLE regress_avro_tenant;
