#!/usr/bin/env bash
#
# test/bench/sink_insert.sh: the Postgres table sink's statements on their
# own, as pg_sink.c runs them: SINK_BENCH_ROWS (1M) window rows (int key,
# window_start, window_end, two bigints; PRIMARY KEY (k, window_start)) in
# batches of 1000 from arrays, each batch in a subtransaction.  The rows
# are windows of 100k keys fired one window after the other, as
# state_scaling.sh's 100k level fires them: SINK_BENCH_ORDER=random (the
# default) writes each window's keys in a scattered order, as the
# operator's timers fire them; sequential in key order.
# SINK_BENCH_PK: the primary key's columns (default "k, window_start";
# "window_start, k" appends each window's rows at the index's right end);
# SINK_BENCH_VARIANTS: some of the variants below.
#
#   upsert         today's upsert: DISTINCT ON, ON CONFLICT DO UPDATE, new rows
#   insert         the plain INSERT of a batch of new rows (SINK_INSERT)
#   upsert_again   the upsert over rows that are all there (late firings)
#   fallback       a plain INSERT failing on its batch's first row, then the
#                  upsert (a new pipeline over a full sink, before the
#                  sink's back-off stops trying)
#
# CPU seconds of the backend (/proc), variants run alternately for
# SINK_BENCH_ROUNDS (3) rounds; printed: the median per variant and its
# ratio to "upsert" (or to the first variant run).  A plain server, no
# extension.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

rows=${SINK_BENCH_ROWS:-1000000}
rounds=${SINK_BENCH_ROUNDS:-3}
case ${SINK_BENCH_ORDER:-random} in
    random) mult=7919 ;;		# prime: a permutation of 0..99999
    sequential) mult=1 ;;
    *) echo "SINK_BENCH_ORDER: random or sequential" >&2; exit 1 ;;
esac

sf_test_setup sink_insert
work=$SF_TEST_DIR
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
port=$(sf_free_port)
SF_PRELOAD='' sf_pg_start "$work/pg" "$port" "shared_buffers = 512MB"
q() { sf_psql "$work/pg" "$port" "$@"; }

q -q <<EOF
CREATE TABLE w (k int, window_start timestamptz, window_end timestamptz, n bigint, total bigint,
				PRIMARY KEY (${SINK_BENCH_PK:-k, window_start}));
-- the batches, made once
CREATE TABLE batches AS
SELECT b, array_agg(((i % 100000)::bigint * $mult % 100000)::int ORDER BY i) AS ks,
	   array_agg(timestamptz '2024-01-01' + (i / 100000) * interval '1 minute' ORDER BY i) AS ws,
	   array_agg(timestamptz '2024-01-01 00:01' + (i / 100000) * interval '1 minute' ORDER BY i) AS we,
	   array_agg(1::bigint ORDER BY i) AS ns, array_agg(i::bigint ORDER BY i) AS ts
FROM generate_series(0, $rows - 1) i, LATERAL (SELECT i / 1000 AS b) x GROUP BY b;

CREATE FUNCTION run(variant text) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM batches ORDER BY b LOOP
		BEGIN
			IF variant IN ('insert', 'fallback') THEN
				BEGIN
					INSERT INTO w (k, window_start, window_end, n, total)
					SELECT * FROM unnest(r.ks, r.ws, r.we, r.ns, r.ts);
					CONTINUE;
				EXCEPTION WHEN unique_violation THEN
					NULL;
				END;
			END IF;
			INSERT INTO w (k, window_start, window_end, n, total)
			SELECT c1, c2, c3, c4, c5 FROM (SELECT DISTINCT ON (c1, c2) *
				FROM unnest(r.ks, r.ws, r.we, r.ns, r.ts) WITH ORDINALITY AS u(c1, c2, c3, c4, c5, ord)
				ORDER BY c1, c2, ord DESC) d
			ON CONFLICT (k, window_start) DO UPDATE SET window_end = EXCLUDED.window_end,
				n = EXCLUDED.n, total = EXCLUDED.total;
		EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
			RAISE;
		END;
	END LOOP;
END
\$\$;
EOF

# CPU seconds of one variant, in a session of its own: the table emptied
# (or filled, for the variants over existing rows) first.
measure() {
    local variant=$1 dir=$work/m prep pid c0 c1
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 777 "$dir"
    case $variant in
        upsert | insert) prep="TRUNCATE w" ;;
        *) prep="TRUNCATE w; SELECT run('insert')" ;;
    esac
    q -q -c "$prep" >/dev/null
    q -q -c "VACUUM ANALYZE w" -c "CHECKPOINT" >/dev/null
    q -q -At <<EOF >/dev/null &
SELECT pg_backend_pid() \g $dir/pid
SELECT pg_sleep(0.5);
SELECT run('$variant');
SELECT 1 \g $dir/done
SELECT pg_sleep(1);
EOF
    until [ -s "$dir/pid" ]; do sleep 0.05; done
    pid=$(cat "$dir/pid")
    c0=$(sf_cpu_seconds "$pid")
    until [ -s "$dir/done" ]; do sleep 0.05; done
    c1=$(sf_cpu_seconds "$pid")
    wait
    awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f\n", b - a }'
}

variants=${SINK_BENCH_VARIANTS:-upsert insert upsert_again fallback}
declare -A cpu
for ((r = 0; r < rounds; r++)); do
    for v in $variants; do
        c=$(measure "$v")
        cpu[$v]="${cpu[$v]:-} $c"
        echo "round $r $v: $c s"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# the ratio's base: upsert, or the first variant if upsert was not run
basev=upsert
[ -n "${cpu[upsert]:-}" ] || basev=${variants%% *}
base=$(echo "${cpu[$basev]}" | median)
printf '\n%-13s %8s %8s   (%d rows, %s keys, batches of 1000, backend CPU seconds, median of %d)\n' \
    variant cpu_s "/$basev" "$rows" "${SINK_BENCH_ORDER:-random}" "$rounds"
for v in $variants; do
    m=$(echo "${cpu[$v]}" | median)
    awk -v v="$v" -v m="$m" -v b="$base" 'BEGIN { printf "%-13s %8.2f %8.2f\n", v, m, m / b }'
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
sf_pg_stop "$work/pg"
