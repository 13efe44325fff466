#!/usr/bin/env bash
#
# test/cep_metamorphic.sh: the CEP operator's results do not depend on how
# the watermark moves, nor on restores from checkpoints (issue 7).
#
# A random event set (seed printed first; CEP_META_SEED=N repeats it) goes
# through six patterns that cover the skip strategies, within with a
# timed-out table, greedy and relaxed loops, notNext/notFollowedBy (also
# trailing) and conditions on earlier events.  Each pattern runs three ways
# on the real runtime:
#   big     streamflink.batch_size = 5000, checkpoints every second: the
#           watermark jumps over many events and deadlines at once;
#   step    batch_size = 1, checkpoints every 100 ms: the watermark moves
#           after every message;
#   crash   batch_size = 7, checkpoints every 300 ms, while workers are
#           killed with SIGKILL and the server is stopped in immediate mode
#           (restores from checkpoints, the watermark moving differently
#           again).
# The committed match and timed-out tables of every run must equal the big
# run's, as multisets.
#
# Events go to two partitions by key, in event-time order per partition
# give or take max_out_of_orderness, with duplicate timestamps.  The source
# has no idle timeout (a partition read slowly would not hold the watermark
# back): so no event is ever late, whatever the interleaving, and the test
# checks that none was.
#
#   bash test/cep_metamorphic.sh
#
# Knobs: CEP_META_SEED, CEP_META_EVENTS (4000), CEP_META_KEYS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

seed=${CEP_META_SEED:-$((RANDOM * 32768 + RANDOM))}
nevents=${CEP_META_EVENTS:-4000}
nkeys=${CEP_META_KEYS:-4}
echo "cep_metamorphic: seed $seed ($nevents events, $nkeys keys; CEP_META_SEED=$seed repeats it)"

sf_test_setup cep_metamorphic
work=$SF_TEST_DIR

addr=$(sf_broker_start "$work/broker" cep_meta:2)
port=$(sf_free_port)
sf_pg_start "$work/pg" "$port"
q() { sf_psql "$work/pg" "$port" -d cepmeta -Atq "$@"; }
sf_psql "$work/pg" "$port" -q -c "CREATE DATABASE cepmeta"

# The events: every 5 seconds one, of a random key, 0-15 seconds late
# (multiples of 5: equal timestamps), ids a b c d with a small number x.
q >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('ev', '$addr', 'cep_meta', 'json',
	columns => 'k int, id text, x int, ts timestamptz',
	event_time => 'ts', max_out_of_orderness => '15 seconds');
SELECT setseed($seed / 2147483648.0 - floor($seed / 2147483648.0));
CREATE TABLE events AS
SELECT i, k, id, x,
	   timestamptz '2024-01-01 00:00+00' + i * interval '5 seconds' + j * interval '5 seconds' AS ts
FROM (SELECT i, floor(random() * $nkeys)::int AS k,
			 (ARRAY['a', 'a', 'b', 'b', 'c', 'd'])[1 + floor(random() * 6)::int] AS id,
			 floor(random() * 4)::int AS x, floor(random() * 4)::int AS j
	  FROM generate_series(1, $nevents) i) e;
SELECT streamflink.produce('$addr', 'cep_meta',
	(SELECT array_agg(json_build_object('k', k, 'id', id, 'x', x, 'ts', ts)::text ORDER BY i)
	 FROM events WHERE k % 2 = p), p)
FROM generate_series(0, 1) p;
-- The end: past every deadline, on both partitions.
SELECT streamflink.produce('$addr', 'cep_meta',
	ARRAY['{"k": -1, "id": "end", "x": 0, "ts": "2031-01-01 00:00+00"}'], p)
FROM generate_series(0, 1) p;
SQL

# name|pattern|define|within|skip
patterns=(
    "p1|a -> b|a AS id = 'a', b AS id = 'b' AND x = a.x|2 minutes|skip_past_last_event"
    "p2|a{2,}+ -> c|a AS id = 'a', c AS id = 'c'|3 minutes|skip_to_next"
    "p3|a ->> b -> c|a AS id = 'a', b AS id = 'b' AND x >= a.x, c AS id = 'c'|2 minutes|no_skip"
    "p4|a -> b{1,2} -> !c|a AS id = 'a', b AS id = 'b', c AS id = 'c'|90 seconds|skip_past_last_event"
    "p5|a -> !d -> b{2,}|a AS id = 'a', b AS id = 'b', d AS id = 'd'|4 minutes|skip_to_first(b)"
    "p6|a{->2,3} !d c|a AS id = 'a', c AS id = 'c' AND x < 3, d AS id = 'd'|3 minutes|skip_to_last(a)"
)

run_names() {   # run
    local p
    for p in "${patterns[@]}"; do
        printf '%s_%s ' "${p%%|*}" "$1"
    done
}

create_run() {   # run checkpoint_interval
    local p name pat def within skip
    for p in "${patterns[@]}"; do
        IFS='|' read -r name pat def within skip <<<"$p"
        q >/dev/null <<SQL
SELECT streamflink.create_pattern_pipeline('${name}_$1', source => 'ev', key => 'k',
	pattern => '$pat', define => \$\$ $def \$\$, within => '$within', skip => '$skip',
	sink => '${name}_$1_out', timed_out => '${name}_$1_to', checkpoint_interval => '$2');
SQL
    done
}

set_batch() {   # size
    q >/dev/null <<SQL
ALTER SYSTEM SET streamflink.batch_size = $1;
SELECT pg_reload_conf();
SQL
}

start_run() {   # run
    local n
    for n in $(run_names "$1"); do
        q -c "SELECT streamflink.start('$n')" >/dev/null
    done
}

list() {   # run: 'p1_x','p2_x',...
    local n out=
    for n in $(run_names "$1"); do out+="${out:+,}'$n'"; done
    echo "$out"
}

finished() {   # run
    [ "$(q -c "SELECT count(*) FILTER (WHERE coalesce(watermark >= '2030-01-01', false))
                      = count(*) FROM streamflink.pipelines WHERE name IN ($(list "$1"))" 2>/dev/null)" = t ]
}

stop_run() {   # run: wait until the watermark passed the end, then stop
    local i n
    for ((i = 0; i < 1200; i++)); do
        finished "$1" && break
        sleep 0.25
    done
    finished "$1" || { echo "run $1 did not reach the end" >&2; return 1; }
    for n in $(run_names "$1"); do
        q -c "SELECT streamflink.stop('$n')" >/dev/null
    done
    for ((i = 0; i < 600; i++)); do
        [ "$(q -c "SELECT bool_and(status = 'stopped') FROM streamflink.pipelines
                   WHERE name IN ($(list "$1"))")" = t ] && return 0
        sleep 0.2
    done
    echo "run $1 did not stop" >&2
    return 1
}

t0=$SECONDS
echo "run big: batch_size 5000, checkpoint 1 s"
set_batch 5000
create_run big '1 second'
start_run big
stop_run big

echo "run step: batch_size 1, checkpoint 100 ms"
set_batch 1
create_run step '100 milliseconds'
start_run step
stop_run step

echo "run crash: batch_size 7, checkpoint 300 ms, kill -9 and immediate restarts"
set_batch 7
create_run crash '300 milliseconds'
start_run crash
kills=0
restarts=0
for ((round = 0; round < 8; round++)); do
    sleep "0.$((RANDOM % 3 + 1))"
    ((kills > 0)) && finished crash && break
    if ((round == 1)); then
        sf_pg_restart "$work/pg" immediate
        restarts=$((restarts + 1))
        continue
    fi
    for pid in $(q -c "SELECT pid FROM streamflink.pipelines WHERE name IN ($(list crash))
                       AND pid IS NOT NULL ORDER BY random() LIMIT 3" 2>/dev/null || true); do
        kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    done
done
stop_run crash
echo "runs took $((SECONDS - t0)) s; $kills worker kills, $restarts immediate restarts"

failed=0
for p in "${patterns[@]}"; do
    name=${p%%|*}
    line=$(q -c "SELECT (SELECT count(*) FROM ${name}_big_out), (SELECT count(*) FROM ${name}_big_to)")
    IFS='|' read -r nm nt <<<"$line"
    diffs=
    for run in step crash; do
        d=$(q <<SQL
SELECT (SELECT count(*) FROM (SELECT * FROM ${name}_big_out EXCEPT ALL SELECT * FROM ${name}_${run}_out) x)
	 + (SELECT count(*) FROM (SELECT * FROM ${name}_${run}_out EXCEPT ALL SELECT * FROM ${name}_big_out) x),
	   (SELECT count(*) FROM (SELECT * FROM ${name}_big_to EXCEPT ALL SELECT * FROM ${name}_${run}_to) x)
	 + (SELECT count(*) FROM (SELECT * FROM ${name}_${run}_to EXCEPT ALL SELECT * FROM ${name}_big_to) x)
SQL
        )
        IFS='|' read -r dm dt <<<"$d"
        diffs+=" $run: $dm/$dt"
        if [ "$dm" != 0 ] || [ "$dt" != 0 ]; then
            failed=1
        fi
    done
    pat=${p#*|}
    echo "$name (${pat%%|*}): $nm matches, $nt timed out; differences (matches/timed out)$diffs"
    if [ "$nm" = 0 ] || [ "$nt" = 0 ]; then
        echo "  (no matches or no timeouts: the events do not exercise this pattern)" >&2
        failed=1
    fi
done
late=$(q -c "SELECT count(*) FROM streamflink.late_events")
if [ "$late" != 0 ]; then
    echo "$late late events: the runs did not see the same events" >&2
    failed=1
fi
if [ "$failed" = 0 ]; then
    echo "cep_metamorphic: ok"
else
    echo "cep_metamorphic: FAILED (seed $seed)" >&2
    exit 1
fi
