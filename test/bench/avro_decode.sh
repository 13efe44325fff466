#!/usr/bin/env bash
#
# test/bench/avro_decode.sh: the Avro decoder next to the JSON decoder, on
# the same events, in the same run.
#
#   bash test/bench/avro_decode.sh          (as root; installs what is missing)
#
# 300k events (SF_BENCH_EVENTS) {k text, v float8, ts timestamptz}, once as
# JSON, once as Avro in the Confluent wire format (encoded by python3-avro;
# the schema through the test registry, test/schema_registry.py).  Prints:
#   - decoding alone: every payload through streamflink._decode() (what
#     streamflink.decode() calls; one decoder for the whole query) in one
#     SELECT, JSON then Avro, SF_BENCH_ROUNDS times (default 5) alternating,
#     and the same calls for a text source (the payload taken as it is: the
#     cost of the call and the row around the decoding);
#   - end to end: a window pipeline (tumbling 1-minute count and avg by key,
#     1,000 keys, checkpoint every second) over a JSON topic and over an Avro
#     topic with the same events, from start() until the checkpoint holding
#     the last offset committed;
# and the Avro/JSON ratios.  Machines are noisy: compare the ratios.
# Not part of the test suite's pass/fail.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

n=${SF_BENCH_EVENTS:-300000}
rounds=${SF_BENCH_ROUNDS:-5}
parts=4
sf_test_setup avro_bench >/dev/null
work=$SF_TEST_DIR

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo "avro_decode: generating $n events"
cat >"$work/bench.avsc" <<'EOF'
{"type": "record", "name": "Bench", "fields": [
  {"name": "k", "type": "string"},
  {"name": "v", "type": "double"},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}
EOF
/usr/bin/python3 - "$n" "$parts" "$work" <<'PY'
import datetime, io, json, struct, sys
import avro.io, avro.schema
n, parts, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
writer = avro.io.DatumWriter(avro.schema.parse(open(work + "/bench.avsc").read()))
base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
with open(work + "/json.tsv", "w") as j, open(work + "/avro.tsv", "w") as a, \
        open(work + "/json.copy", "w") as jc, open(work + "/avro.copy", "w") as ac:
    for i in range(n + parts):
        if i < n:
            e = {"k": "key%d" % ((i * 7919) % 1000), "v": i % 100 + 0.5,
                 "ts": base + datetime.timedelta(milliseconds=i)}
        else:   # one more per partition, an hour later: every window closes
            e = {"k": "key0", "v": 0.0, "ts": base + datetime.timedelta(hours=2)}
        p = i % parts
        text = json.dumps(dict(e, ts=e["ts"].isoformat()))
        j.write("%d\t%s\n" % (p, text))
        jc.write("\\\\x%s\n" % text.encode().hex())    # bytea for COPY
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">i", 1))
        writer.write(e, avro.io.BinaryEncoder(buf))
        a.write("%d\t%s\n" % (p, buf.getvalue().hex()))
        ac.write("\\\\x%s\n" % buf.getvalue().hex())
PY
total=$((n + parts))
chmod -R a+rX "$work"

addr=$(sf_broker_start "$work/broker" "bench_json:$parts" "bench_avro:$parts")
registry=$(sf_registry_start "$work/registry" "1=$work/bench.avsc")
test/produce "$addr" bench_json --partitions "$parts" <"$work/json.tsv"
test/produce "$addr" bench_avro --partitions "$parts" --hex <"$work/avro.tsv"

port=$(sf_free_port)
sf_bench_pg_start "$work/pg" "$port"
sql() { sf_psql "$work/pg" "$port" -qAt "$@"; }
sql >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('bj', brokers => '$addr', topic => 'bench_json', format => 'json',
       columns => 'k text, v float8, ts timestamptz', event_time => 'ts',
       options => '{fetch.wait.max.ms=10}');
SELECT streamflink.create_source('ba', brokers => '$addr', topic => 'bench_avro', format => 'avro-confluent',
       columns => 'k text, v float8, ts timestamptz', event_time => 'ts',
       options => '{fetch.wait.max.ms=10}', schema_registry => '$registry');
SELECT streamflink.create_source('bt', brokers => '$addr', topic => 'bench_json', format => 'text');
CREATE TABLE pj (payload bytea);
CREATE TABLE pa (payload bytea);
\copy pj FROM '$work/json.copy'
\copy pa FROM '$work/avro.copy'
VACUUM ANALYZE pj, pa;
SQL
echo "avro_decode: payloads loaded: $(sql -c "SELECT (SELECT count(*) || ' json (' || round(avg(length(payload))) FROM pj) || ' bytes), ' || (SELECT count(*) || ' avro (' || round(avg(length(payload))) FROM pa) || ' bytes)'")"

# One SELECT decoding every payload; prints the seconds it took.
decode_time() {
    local table=$1 call=$2
    sql <<SQL | tail -n 1
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SELECT count(*) FILTER (WHERE (d).error IS NULL) FROM (SELECT $call AS d FROM $table p) x \\g /dev/null
SELECT extract(epoch FROM clock_timestamp() - t) FROM t0;
SQL
}
ids=$(sql -c "SELECT (SELECT id FROM streamflink.source WHERE name = 'ba')")
json_call="streamflink._decode('json', NULL::streamflink.source_bj, p.payload, NULL, NULL, NULL, 0)"
avro_call="streamflink._decode('avro-confluent', NULL::streamflink.source_ba, p.payload, NULL, NULL, '$registry', $ids)"
# the call without the work: a text source takes the payload as it is
text_call="streamflink._decode('text', NULL::streamflink.source_bt, p.payload, NULL, NULL, NULL, 0)"
# A check first: both decode every payload to the same rows.
same=$(sql -c "SELECT count(*) FROM (SELECT row_number() OVER () AS i, d.row FROM pj p, LATERAL $json_call d) j
               FULL JOIN (SELECT row_number() OVER () AS i, d.row FROM pa p, LATERAL $avro_call d) a USING (i)
               WHERE j.row::text IS DISTINCT FROM a.row::text")
echo "avro_decode: rows that differ between the JSON and the Avro payloads: $same"
[ "$same" = 0 ] || exit 1
jt=(); at=(); st=()
for ((r = 0; r < rounds; r++)); do
    if ((r % 2 == 0)); then
        jt+=("$(decode_time pj "$json_call")"); at+=("$(decode_time pa "$avro_call")")
    else
        at+=("$(decode_time pa "$avro_call")"); jt+=("$(decode_time pj "$json_call")")
    fi
    st+=("$(decode_time pj "$text_call")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
jm=$(median "${jt[@]}"); am=$(median "${at[@]}"); sm=$(median "${st[@]}")
echo "avro_decode: decoding alone (median of $rounds): json $(sf_rate "$total" 0 "$jm") payloads/s" \
     "(${jt[*]} s), avro $(sf_rate "$total" 0 "$am") payloads/s (${at[*]} s);" \
     "format text (the call, the row, no decoding): $(sf_rate "$total" 0 "$sm") payloads/s"
echo "avro_decode: decoding alone, avro/json rate: $(ratio "$jm" "$am");" \
     "less the cost of the call (format text): $(python3 -c "print('%.2f' % (($jm - $sm) / ($am - $sm)))")"

# End to end, one pipeline after the other.
e2e() {
    local name=$1 source=$2 t0 t1
    sql >/dev/null <<SQL
SELECT streamflink.create_window_pipeline('$name', source => '$source', key => 'k',
       "window" => 'tumble', size => '1 minute',
       aggregates => 'count(*) AS n, avg(v) AS mean', sink => '${name}_out',
       checkpoint_interval => '1 second');
SQL
    t0=$(sf_now)
    sql -c "SELECT streamflink.start('$name')" >/dev/null
    sf_wait_offsets "$work/pg" "$port" "$name" "$total" 6000 0.05 ||
        { echo "avro_decode: pipeline $name did not finish" >&2; exit 1; }
    t1=$(sf_now)
    sql -c "SELECT streamflink.stop('$name')" >/dev/null
    sf_rate "$total" "$t0" "$t1"
}
ej=$(e2e pj_pipe bj)
ea=$(e2e pa_pipe ba)
diff_rows=$(sql -c "SELECT count(*) FROM (SELECT * FROM pj_pipe_out EXCEPT SELECT * FROM pa_pipe_out) x")
echo "avro_decode: end to end: json $ej events/s, avro $ea events/s; avro/json $(ratio "$ea" "$ej");" \
     "sink rows that differ: $diff_rows"
