#!/usr/bin/env bash
#
# test/decode_fuzz.sh: the one-pass JSON scanner against Postgres' own JSON
# parser, on random payloads, valid and broken (test/gen_json_fuzz.py).
# Every payload is decoded twice by streamflink.decode(), once with
# streamflink.json_fast_path on and once off; the decoded rows and the
# error texts must be the same.  Run by test/run_tests.sh.
# Knobs: SF_FUZZ_COUNT (20000), SF_FUZZ_SEED (random).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

count=${SF_FUZZ_COUNT:-20000}
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
[ "$differ" = 0 ]
