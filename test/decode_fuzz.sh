#!/usr/bin/env bash
#
# test/decode_fuzz.sh: the one-pass JSON scanner against Postgres' own JSON
# parser, on random payloads, valid and broken (test/gen_json_fuzz.py).
# Every payload is decoded twice by streamflink.decode(), once with
# streamflink.json_fast_path on and once off; the decoded rows and the
# error texts must be the same.
# Then Avro (test/gen_avro_fuzz.py): records encoded by the Avro project's
# Python implementation must decode to what it encoded, inline and in the
# Confluent wire format through the test registry; random mutations of them
# (and of the frame) must give a row or an error, never a crash.
# Run by test/run_tests.sh.
# Knobs: SF_FUZZ_COUNT (20000), SF_AVRO_FUZZ_COUNT (5000), SF_FUZZ_SEED (random).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

count=${SF_FUZZ_COUNT:-20000}
avro_count=${SF_AVRO_FUZZ_COUNT:-5000}
seed=${SF_FUZZ_SEED:-$RANDOM}

sf_test_setup fuzz
work=$SF_TEST_DIR

echo "decode_fuzz: seed $seed (SF_FUZZ_SEED=$seed repeats this run)"
python3 test/gen_json_fuzz.py "$count" "$seed" >"$work/payloads.hex"
chmod -R a+rX "$work"
port=$(sf_free_port)
sf_pg_start "$work/pg" "$port"
result=$(sf_psql "$work/pg" "$port" -qAt <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('fz', brokers => '127.0.0.1:1', topic => 'fz',
       columns => 'id int, name text, price numeric, ok bool, doc jsonb, raw json,
                   at timestamptz, f float8, tags text[]') \\g /dev/null
CREATE TABLE payloads (n serial, hex text);
\\copy payloads (hex) FROM '$work/payloads.hex'
SET streamflink.json_fast_path = on;
CREATE TABLE fast AS SELECT n, d.decoded::text, d.error
	FROM payloads, streamflink.decode('fz', decode(hex, 'hex')) d;
SET streamflink.json_fast_path = off;
CREATE TABLE reference AS SELECT n, d.decoded::text, d.error
	FROM payloads, streamflink.decode('fz', decode(hex, 'hex')) d;
SELECT (SELECT count(*) FROM payloads) || ' ' ||
	   (SELECT count(*) FROM reference WHERE error IS NULL) || ' ' ||
	   (SELECT count(*) FROM (SELECT * FROM fast EXCEPT SELECT * FROM reference) x);
SELECT 'differs: ' || convert_from(decode(p.hex, 'hex'), 'SQL_ASCII') || ' | fast: ' ||
	   coalesce(f.decoded, f.error) || ' | reference: ' || coalesce(r.decoded, r.error)
FROM fast f JOIN reference r USING (n) JOIN payloads p USING (n)
WHERE (f.decoded, f.error) IS DISTINCT FROM (r.decoded, r.error) LIMIT 5;
SQL
)
read -r total valid differ <<<"$(head -n 1 <<<"$result")"
echo "decode_fuzz: $total payloads ($valid decoded, the rest errors): $differ differ"
tail -n +2 <<<"$result"

# ---- Avro ----
/usr/bin/python3 test/gen_avro_fuzz.py "$avro_count" "$seed" >"$work/avro.tsv"
chmod a+r "$work/avro.tsv"
registry=$(sf_registry_start "$work/registry" 1=test/avro/fuzz.avsc)
result=$(sf_psql "$work/pg" "$port" -qAt -v schema="$(cat test/avro/fuzz.avsc)" <<SQL
SELECT streamflink.create_source('fa', brokers => '127.0.0.1:1', topic => 'fa', format => 'avro',
       columns => 'id int, big bigint, price float8, ok bool, name text, note text, color text,
                   tags jsonb, ts timestamptz, extra jsonb, attrs jsonb, h bytea, f real, raw bytea',
       avro_schema => :'schema') \\g /dev/null
SELECT streamflink.create_source('fc', brokers => '127.0.0.1:1', topic => 'fc', format => 'avro-confluent',
       columns => 'id int, big bigint, price float8, ok bool, name text, note text, color text,
                   tags jsonb, ts timestamptz, extra jsonb, attrs jsonb, h bytea, f real, raw bytea',
       schema_registry => '$registry') \\g /dev/null
CREATE TABLE avro_payloads (n serial, kind text, hex text, expected text);
\\copy avro_payloads (kind, hex, expected) FROM '$work/avro.tsv' (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')
-- inline, every payload; the wire format for a part of them, and frames
-- with a mutated header (magic byte, schema ids the registry does not know)
CREATE TABLE avro_in AS
	SELECT n, 'fa' AS source, kind, decode(hex, 'hex') AS payload, expected FROM avro_payloads
	UNION ALL
	SELECT n, 'fc', kind, '\\x0000000001'::bytea || decode(hex, 'hex'), expected
	FROM avro_payloads WHERE n % 5 = 0
	UNION ALL
	SELECT n, 'fc', 'mutant', set_byte('\\x0000000001'::bytea, n % 5, (n * 37) % 256) || decode(hex, 'hex'), ''
	FROM avro_payloads WHERE n % 50 = 1;
CREATE TABLE avro_out AS
	SELECT i.n, i.source, i.kind, i.expected, d.decoded, d.error
	FROM avro_in i, streamflink.decode(i.source, i.payload) d;
SELECT (SELECT count(*) FROM avro_out) || ' ' ||
	   (SELECT count(*) FROM avro_out WHERE kind = 'valid') || ' ' ||
	   (SELECT count(*) FROM avro_out WHERE kind = 'valid' AND NOT coalesce(
			error IS NULL AND decoded - 'ts' = expected::jsonb - 'ts' AND
			(decoded ->> 'ts')::timestamptz = (expected::jsonb ->> 'ts')::timestamptz, false)) || ' ' ||
	   (SELECT count(*) FROM avro_out WHERE kind = 'mutant' AND error IS NULL) || ' ' ||
	   (SELECT count(*) FROM avro_out WHERE kind = 'mutant' AND error IS NOT NULL);
SELECT 'wrong: ' || source || ' ' || n || ' | expected: ' || expected || ' | decoded: ' || coalesce(decoded::text, error)
FROM avro_out WHERE kind = 'valid' AND NOT coalesce(
	error IS NULL AND decoded - 'ts' = expected::jsonb - 'ts' AND
	(decoded ->> 'ts')::timestamptz = (expected::jsonb ->> 'ts')::timestamptz, false) LIMIT 5;
SELECT 'error class: ' || count(*) || ' ' || e
FROM (SELECT regexp_replace(error, '[0-9]+', 'N', 'g') AS e FROM avro_out
	  WHERE kind = 'mutant' AND error IS NOT NULL) x
GROUP BY e ORDER BY count(*) DESC, e LIMIT 15;
SQL
)
read -r atotal avalid awrong arows aerrors <<<"$(head -n 1 <<<"$result")"
echo "decode_fuzz (avro): $atotal payloads: $avalid valid ($awrong not decoded as encoded), mutants: $arows rows, $aerrors errors"
tail -n +2 <<<"$result"
[ "$differ" = 0 ] && [ "$awrong" = 0 ]
