#!/usr/bin/env bash
#
# test/window_diff.sh: differential test of the window operator against SQL.
#
# Random cases (test/gen_window_cases.py): tumble, hop and session windows
# with and without allowed lateness; keys of several types, with values
# equal in SQL but not in bytes (numeric scales, float -0 and NaN, interval
# spans, char trailing spaces, text under a nondeterministic collation,
# arrays) and NULL keys;
# duplicate timestamps, out-of-order and late events on 1-4 partitions
# interleaved at random.  Each case runs the pipeline's operator with
# streamflink._replay (seeded watermark steps, checkpoints and restores, no
# Kafka) and compares its sink with SQL's answer over the same events
# (test/window_diff.sql: date_bin for tumble/hop, the session rule checked
# against a gaps-and-islands query; which events count decided from each
# event's time and its arrival watermark).
#
# Run by test/run_tests.sh (part "diff"); alone: bash test/window_diff.sh.
# Knobs: SF_DIFF_CASES (1000, about 100 s; more by hand), SF_DIFF_SEED (random),
# SF_DIFF_DISCARD_CASES (300: the pass with streamflink.debug_discard_state),
# SF_DIFF_KINDS / SF_DIFF_KEYS (e.g. "session" / "int,text": only those),
# SF_KEEP=1 to keep everything after a failure.

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

cases=${SF_DIFF_CASES:-1000}
seed=${SF_DIFF_SEED:-$RANDOM}

sf_test_setup window_diff
work=$SF_TEST_DIR

# run_pass NAME CASES SEED WHAT [PGOPTIONS]: generate CASES cases with SEED
# into $work/NAME.sql, run them (with PGOPTIONS), and exit 1 unless every
# one equals SQL's answer.
run_pass() {
    local name=$1 n=$2 pseed=$3 what=$4 opts=${5:-} secs ok start
    python3 test/gen_window_cases.py "$n" "$pseed" "${SF_DIFF_KINDS:-}" "${SF_DIFF_KEYS:-}" \
        >"$work/$name.sql"
    chmod a+r "$work/$name.sql"
    start=$(date +%s)
    PGOPTIONS="$opts" sf_psql "$work/pg" "$port" -qAt -v ON_ERROR_STOP=0 -f "$work/$name.sql" \
        >"$work/$name.out" 2>&1 || true
    secs=$(($(date +%s) - start))
    ok=$(grep -c ': ok$' "$work/$name.out" || true)
    echo "window_diff: $ok of $n cases equal SQL's answer$what (${secs}s)"
    if [ "$ok" != "$n" ]; then
        grep -v ': ok$' "$work/$name.out" | head -n 20
        echo "window_diff: cases are in $work/$name.sql (SF_KEEP=1 keeps them)"
        exit 1
    fi
}

echo "window_diff: seed $seed (SF_DIFF_SEED=$seed repeats this run), $cases cases"
cp test/window_diff.sql "$work/window_diff.sql"
chmod -R a+rX "$work"
port=$(sf_free_port)
sf_pg_start "$work/pg" "$port"
sf_psql "$work/pg" "$port" -q \
    -c "CREATE EXTENSION streamflink" \
    -c "CREATE COLLATION diff_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)" \
    -f "$work/window_diff.sql"
run_pass cases "$cases" "$seed" ""

# Other cases with streamflink.debug_discard_state: every operator's cache
# written back and emptied, and its pending timers written, between any two
# events (and any two fired windows), so that what an eviction and an early
# timers' flush must keep is checked against SQL too: a window found again
# by its key and by its implicit timer, one known absent only if it was
# never written, one deleted by range only once gone.
dcases=${SF_DIFF_DISCARD_CASES:-300}
if [ "$dcases" -gt 0 ]; then
    run_pass discard_cases "$dcases" "$((seed + 1))" \
        " with streamflink.debug_discard_state (seed $((seed + 1)))" \
        "-c streamflink.debug_discard_state=on"
fi
