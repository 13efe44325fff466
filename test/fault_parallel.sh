#!/usr/bin/env bash
#
# test/fault_parallel.sh: the crash tests of test/fault_test.sh and
# test/fault_cep.sh on parallel pipelines.
#
# 1. fault_test.sh with parallelism 3 (SF_FAULT_PARALLELISM): kill -9 of a
#    random task, immediate shutdowns, and the failpoints after one task's
#    PREPARE (before the others') and after the decision; the sink must
#    equal SQL's answer, dead letters and late events exactly the injected.
# 2. fault_cep.sh with parallelism 2 (CEP_FAULT_PARALLELISM) on its
#    one-partition topic (task 1 reads nothing: an idle input of every
#    task): matches equal to an uninterrupted single worker's.
#
# Sizes are smaller than the single-worker runs' (SF_FAULT_EVENTS 100000,
# CEP_FAULT_WAVES 4 unless set), to stay within the suite's time budget.

set -euo pipefail
cd "$(dirname "$0")/.."

SF_FAULT_PARALLELISM=${SF_FAULT_PARALLELISM:-3} SF_FAULT_EVENTS=${SF_FAULT_EVENTS:-100000} \
    SF_FAULT_KILLS=${SF_FAULT_KILLS:-4} bash test/fault_test.sh
CEP_FAULT_PARALLELISM=${CEP_FAULT_PARALLELISM:-2} CEP_FAULT_WAVES=${CEP_FAULT_WAVES:-4} \
    bash test/fault_cep.sh
