#!/usr/bin/env bash
#
# test/fault_cep.sh: exactly-once for a pattern (CEP) pipeline under crashes.
#
# A known event set (accounts with small transactions and large withdrawals)
# goes through the fraud pattern twice: once uninterrupted (the reference),
# once while the worker is killed with SIGKILL and the server is stopped in
# immediate mode several times, events arriving in waves meanwhile.  The
# committed matches of both runs must be equal as multisets: nothing lost
# (partial matches, buffered events and timers are in the checkpointed
# RocksDB state), nothing doubled (matches are committed with the offsets
# through the 2PC epoch transaction).
#
#   bash test/fault_cep.sh        (as root or as a user who can run Postgres)
#
# Knobs: CEP_FAULT_KEYS (200), CEP_FAULT_EVENTS per wave (20000),
# CEP_FAULT_WAVES (6), CEP_FAULT_PARALLELISM (1): the faulty run's tasks
# (the reference is always a single worker); above 1 a kill hits a random
# task.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

keys=${CEP_FAULT_KEYS:-200}
per_wave=${CEP_FAULT_EVENTS:-20000}
waves=${CEP_FAULT_WAVES:-6}
par=${CEP_FAULT_PARALLELISM:-1}

sf_test_setup fault_cep
work=$SF_TEST_DIR

addr=$(sf_broker_start "$work/broker" cep_fault:1)
port=$(sf_free_port)
sf_pg_start "$work/pg" "$port"
q() { sf_psql "$work/pg" "$port" -d cepfault -Atq "$@"; }
sf_psql "$work/pg" "$port" -q -c "CREATE DATABASE cepfault"

q >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('txns', '$addr', 'cep_fault', 'json',
	columns => 'account int, amount numeric, kind text, ts timestamptz',
	event_time => 'ts', max_out_of_orderness => '10 seconds');
-- Wave w: events of minute w*1000 + i/keys, a deterministic mix.
CREATE FUNCTION wave(w int, n int, keys int) RETURNS text[] LANGUAGE sql AS \$\$
	SELECT array_agg(json_build_object(
			'account', i % keys,
			'amount', CASE WHEN (i * 7919 + w) % 13 = 0 THEN 6000 + i % 100 ELSE (i * 31 + w) % 150 END,
			'kind', CASE WHEN (i * 7919 + w) % 13 = 0 THEN 'WITHDRAWAL' ELSE 'PAYMENT' END,
			'ts', timestamptz '2024-01-01 00:00+00' + ((w * n + i) * interval '1 second'))::text
		ORDER BY i)
	FROM generate_series(0, n - 1) i
\$\$;
SQL

pipeline() {   # name [parallelism]
    q >/dev/null <<SQL
SELECT streamflink.create_pattern_pipeline('$1', source => 'txns', key => 'account',
	pattern => 'small{3,} -> large',
	define => \$\$ small AS amount < 100, large AS amount > 5000 AND kind = 'WITHDRAWAL' \$\$,
	within => '1 hour', sink => '$1_out', skip => 'skip_past_last_event',
	timed_out => '$1_timeouts',
	measures => 'count(small.*) AS n_small, sum(small.amount) AS total, large.amount AS big',
	checkpoint_interval => '300 milliseconds', parallelism => ${2:-1});
SELECT streamflink.start('$1');
SQL
}

produce_wave() {   # w
    q -c "SELECT streamflink.produce('$addr', 'cep_fault', wave($1, $per_wave, $keys), 0)" >/dev/null
}

final_time="2024-01-01 00:00+00"
wait_done() {   # name: watermark past the last event, then a clean stop
    local i
    for ((i = 0; i < 600; i++)); do
        if [ "$(q -c "SELECT coalesce(watermark >= '2030-01-01', false) FROM streamflink.pipelines WHERE name = '$1'")" = t ]; then
            break
        fi
        sleep 0.5
    done
    q -c "SELECT streamflink.stop('$1')" >/dev/null
    for ((i = 0; i < 600; i++)); do
        [ "$(q -c "SELECT status FROM streamflink.pipelines WHERE name = '$1'")" = stopped ] && return 0
        sleep 0.2
    done
    echo "pipeline $1 did not finish" >&2
    return 1
}

# All waves and the final event are produced before the reference runs.
for ((w = 0; w < waves; w++)); do produce_wave "$w"; done
q -c "SELECT streamflink.produce('$addr', 'cep_fault', ARRAY['{\"account\":-1,\"amount\":1,\"kind\":\"END\",\"ts\":\"2031-01-01 00:00+00\"}'], 0)" >/dev/null

echo "reference run: $((waves * per_wave)) events, $keys keys"
pipeline ref
wait_done ref

echo "faulty run, parallelism $par"
pipeline flt "$par"
crashes=0
restarts=0
for ((round = 0; round < 8; round++)); do
    sleep "0.$((RANDOM % 9 + 1))"
    if ((round % 3 == 2)); then
        sf_pg_restart "$work/pg" immediate
        restarts=$((restarts + 1))
        continue
    fi
    if [ "$par" -gt 1 ]; then
        pid=$(q -c "SELECT pid FROM streamflink.tasks WHERE pipeline = 'flt' ORDER BY random() LIMIT 1" || true)
    else
        pid=$(q -c "SELECT pid FROM streamflink.pipelines WHERE name = 'flt'" || true)
    fi
    if [ -n "$pid" ]; then
        kill -9 "$pid" 2>/dev/null && crashes=$((crashes + 1))
        sleep 0.3
    fi
done
wait_done flt

result=$(q <<'SQL'
SELECT (SELECT count(*) FROM ref_out), (SELECT count(*) FROM flt_out),
	   (SELECT count(*) FROM (SELECT * FROM ref_out EXCEPT ALL SELECT * FROM flt_out) d),
	   (SELECT count(*) FROM (SELECT * FROM flt_out EXCEPT ALL SELECT * FROM ref_out) d),
	   (SELECT count(*) FROM ref_timeouts), (SELECT count(*) FROM flt_timeouts),
	   (SELECT count(*) FROM (SELECT * FROM ref_timeouts EXCEPT ALL SELECT * FROM flt_timeouts) d)
	 + (SELECT count(*) FROM (SELECT * FROM flt_timeouts EXCEPT ALL SELECT * FROM ref_timeouts) d)
SQL
)
IFS='|' read -r nref nflt missing extra tref tflt tdiff <<<"$result"
echo "matches: reference $nref, faulty run $nflt (missing $missing, extra $extra);" \
     "timed out: $tref / $tflt (differences $tdiff);" \
     "survived $crashes worker kills and $restarts immediate restarts"
if [ "$nref" -gt 0 ] && [ "$missing" = 0 ] && [ "$extra" = 0 ] && [ "$tdiff" = 0 ]; then
    echo "fault_cep: ok (exactly once)"
else
    echo "fault_cep: FAILED" >&2
    exit 1
fi
