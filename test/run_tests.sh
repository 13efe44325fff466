#!/usr/bin/env bash
#
# test/run_tests.sh: every streamflink test, from a fresh Debian 12 machine.
#
#   sudo bash test/run_tests.sh          (or as root: bash test/run_tests.sh)
#
# 1. installs what is missing (Postgres 15 and its headers, librdkafka,
#    RocksDB, kcat, gcc, make, python3);
# 2. builds the extension and the test programs, and installs the extension
#    into a private copy of Postgres (SF_INSTALL), not into the system's;
# 3. starts the test broker (librdkafka's mock cluster, test/mock_broker) and
#    a throwaway Postgres cluster run by an unprivileged user;
# 4. runs pg_regress: the SQL surface (sql/, expected/) against a server
#    with shared_preload_libraries = 'streamflink', then the errors of a
#    server without it and with max_prepared_transactions = 0;
# 5. runs the decoders' fuzz test (test/decode_fuzz.sh: the one-pass JSON
#    scanner against Postgres' JSON parser; Avro from python3-avro, and
#    mutations of it);
# 6. runs the window operator's differential test against SQL
#    (test/window_diff.sh: random cases replayed without Kafka);
# 7. runs the fault tests (test/fault_test.sh, test/fault_cep.sh): kill -9
#    and immediate shutdowns while pipelines run, sinks compared with SQL's
#    answer or with an uninterrupted run (test/fault_avro.sh: an Avro
#    source, the schema registry stopped during replay); test/cep_metamorphic.sh: CEP
#    results equal under different watermark steps, checkpoints and crashes;
#    test/pmdeath_test.sh: the worker exits when the postmaster dies
#    while data flows; test/fault_savepoint.sh: savepoints, stops with
#    savepoint and restores under kill -9 and immediate shutdowns;
#    test/fault_rescale.sh: rescales 1 -> 3 -> 2 -> 1 from the last
#    checkpoint (and from a savepoint) with crashes in the restore, an
#    unclean stop and immediate shutdowns;
#    test/fault_kafka_sink.sh: the Kafka sink's output topic holds exactly
#    SQL's answer across crashes at every instant of its two-phase commit
#    (run twice: one worker, and a pipeline of parallelism 2).
#
# Prints "N passed, N failed" last; exits non-zero if anything failed.
# SF_KEEP=1 keeps servers, broker and files for a look after a failure.
# SF_TESTS="regress fuzz diff fault" picks the parts to run (default: all).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

sf_install_deps

SF_WORK=${SF_WORK:-$(mktemp -d /tmp/sftest.XXXXXX)}
chmod 755 "$SF_WORK"
export SF_WORK
export SF_INSTALL=${SF_INSTALL:-$SF_WORK/install}
sf_cleanup_trap
if [ "${SF_KEEP:-0}" != 1 ]; then
    sf_cleanup_add_path "$SF_WORK"
fi
sf_build
export SF_BUILT=1

parts=${SF_TESTS:-regress fuzz diff fault}
passed=0
failed=0
failures=()

pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAILED: $1"; }

# A pg_regress run: SCHEDULE... against the server in DIR on PORT.
regress() {
    local name=$1 dir=$2 port=$3
    shift 3
    if make -s installcheck PG_CONFIG="$SF_PG_CONFIG" \
            REGRESS="$*" REGRESS_OPTS="--use-existing --dbname=streamflink_regress" \
            PGHOST="$dir" PGPORT="$port" PGUSER=postgres; then
        pass "$name"
    else
        fail "$name"
        [ -f regression.diffs ] && head -n 200 regression.diffs
    fi
}

if [[ " $parts " == *" regress "* ]]; then
    # Topics the regression tests use; one whose metadata always fails.
    addr=$(sf_broker_start "$SF_WORK/broker" regress_rides:2 regress_csv:1 \
               regress_late:1 regress_types:1 regress_tenancy:1 regress_format:1 regress_start:3 \
               regress_meta:2 regress_time:2 regress_grow:2:4 regress_savepoint:1 regress_savepoint_p:1 \
               regress_sql:2 regress_avro:1 regress_ksink:2 regress_parallel:4 regress_rescale:4 regress_rescale_c:4 regress_rescale_ks:1 regress_retain:2 regress_local:4 regress_timers:1 regress_timers_late:1 regress_batch_read:1 --proxy --missing-topic regress_missing)
    # The test schema registry, with the schemas sql/avro.sql uses.
    registry=$(sf_registry_start "$SF_WORK/registry" 1=test/avro/ride_v1.avsc \
                   2=test/avro/ride_v2.avsc)
    port=$(sf_free_port)
    sf_pg_start "$SF_WORK/pg" "$port"
    sf_psql "$SF_WORK/pg" "$port" -q \
        -c "DROP DATABASE IF EXISTS streamflink_regress" \
        -c "CREATE DATABASE streamflink_regress" \
        -c "ALTER DATABASE streamflink_regress SET regress.brokers = '$addr'" \
        -c "ALTER DATABASE streamflink_regress SET regress.schema_registry = '$registry'"
    regress "pg_regress (SQL surface)" "$SF_WORK/pg" "$port" $(make -s print-regress)
    sf_pg_stop "$SF_WORK/pg"

    # The same binaries, misconfigured: the errors a user meets first.
    misconfigured() {
        local name=$1 dir=$SF_WORK/$1 port
        shift
        port=$(sf_free_port)
        sf_pg_start "$dir" "$port" "$@"
        sf_psql "$dir" "$port" -q \
            -c "CREATE DATABASE streamflink_regress" \
            -c "ALTER DATABASE streamflink_regress SET regress.brokers = '$addr'"
        regress "pg_regress ($name)" "$dir" "$port" "$name"
        sf_pg_stop "$dir"
    }
    SF_PRELOAD='' misconfigured misconfigured
    misconfigured no2pc "max_prepared_transactions = 0"
    # Settings from postgresql.conf are honoured (max_workers used to be
    # dropped as an unknown placeholder).
    misconfigured limits "streamflink.max_workers = 2" "streamflink.checkpoint_history = 3" \
        "max_worker_processes = 4"
    sf_broker_stop "$SF_WORK/broker"
    sf_registry_stop "$SF_WORK/registry"
fi

if [[ " $parts " == *" fuzz "* ]]; then
    if bash test/decode_fuzz.sh; then pass test/decode_fuzz.sh; else fail test/decode_fuzz.sh; fi
fi

if [[ " $parts " == *" diff "* ]]; then
    if bash test/window_diff.sh; then pass test/window_diff.sh; else fail test/window_diff.sh; fi
fi

if [[ " $parts " == *" fault "* ]]; then
    # the Kafka sink with two tasks, each its own producer (its one-worker
    # run is in the list below)
    if SF_KSINK_PARALLELISM=2 bash test/fault_kafka_sink.sh; then
        pass "test/fault_kafka_sink.sh (parallelism 2)"
    else
        fail "test/fault_kafka_sink.sh (parallelism 2)"
    fi
    for t in test/fault_test.sh test/fault_cep.sh test/cep_metamorphic.sh test/pmdeath_test.sh \
             test/fault_savepoint.sh test/fault_avro.sh test/fault_kafka_sink.sh; do
        [ -f "$t" ] || continue
        if bash "$t"; then pass "$t"; else fail "$t"; fi
    done
    # Savepoints rescaled 1 -> 3 -> 2 -> 1 under faults (about a minute).
    if SF_FSP_RESCALE=1 SF_FSP_EVENTS=30000 bash test/fault_savepoint.sh; then
        pass "test/fault_savepoint.sh (rescale)"
    else
        fail "test/fault_savepoint.sh (rescale)"
    fi
    # Rescales from the last checkpoint and a savepoint under faults.
    if bash test/fault_rescale.sh; then
        pass test/fault_rescale.sh
    else
        fail test/fault_rescale.sh
    fi
    # Parallel pipelines: every checkpoint mode at parallelism 3, and the
    # CEP test at parallelism 2 (about 3 minutes on 2 cores).
    if SF_PARALLEL_ALL=1 bash test/fault_parallel.sh; then
        pass test/fault_parallel.sh
    else
        fail test/fault_parallel.sh
    fi
fi

echo
for f in "${failures[@]}"; do
    echo "failed: $f"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
