#!/usr/bin/env bash
#
# test/fault_parallel.sh: the crash tests on parallel pipelines.
#
# test/fault_test.sh with parallelism 3 (SF_FAULT_PARALLELISM): kill -9 of a
# random task, immediate shutdowns, and the failpoints after one task's
# PREPARE (before the others') and after the decision; the sink must equal
# SQL's answer, dead letters and late events exactly the injected.  In one
# checkpoint mode, picked at random (printed; SF_FAULT_CHECKPOINT_MODE
# aligned or unaligned, SF_FAULT_ALIGNED_TIMEOUT to set it): aligned,
# unaligned, or aligned switching to unaligned after 5 ms of alignment.
# 100,000 events (SF_FAULT_EVENTS) and 4 kills.  test/run_tests.sh runs it
# with SF_PARALLEL_ALL=1 (about 3 minutes on 2 cores).
#
# SF_PARALLEL_ALL=1: every mode in turn, then test/fault_cep.sh with
# CEP_FAULT_PARALLELISM=2 (one partition: the second task's source is idle;
# matches equal to an uninterrupted single worker's).  Longer.
#
# SF_PARALLEL_LOCAL=1 creates the window pipeline with local_aggregation =>
# true (two-stage aggregation), 0 with false; unset, it is automatic (on:
# its aggregates all combine).

set -euo pipefail
cd "$(dirname "$0")/.."

case ${SF_PARALLEL_LOCAL:-} in
    1) export SF_FAULT_LOCAL_AGGREGATION=true ;;
    0) export SF_FAULT_LOCAL_AGGREGATION=false ;;
esac

run() {   # mode timeout
    SF_FAULT_PARALLELISM=${SF_FAULT_PARALLELISM:-3} SF_FAULT_EVENTS=${SF_FAULT_EVENTS:-100000} \
        SF_FAULT_KILLS=${SF_FAULT_KILLS:-4} SF_FAULT_CHECKPOINT_MODE=$1 SF_FAULT_ALIGNED_TIMEOUT=$2 \
        bash test/fault_test.sh
}

if [ "${SF_PARALLEL_ALL:-0}" = 1 ]; then
    run aligned ''
    run unaligned ''
    run aligned '5 ms'
    CEP_FAULT_PARALLELISM=${CEP_FAULT_PARALLELISM:-2} bash test/fault_cep.sh
elif [ -n "${SF_FAULT_CHECKPOINT_MODE:-}" ]; then
    run "$SF_FAULT_CHECKPOINT_MODE" "${SF_FAULT_ALIGNED_TIMEOUT:-}"
else
    case $((RANDOM % 3)) in
        0) run aligned '' ;;
        1) run unaligned '' ;;
        2) run aligned '5 ms' ;;
    esac
fi
