#!/usr/bin/env bash
#
# test/bench/compare.sh BEFORE_REV AFTER_REV: test/bench/bench.sh and
# test/bench/cep_bench.sh for two git revisions of this repository, under
# the same run conditions, and a table of the results.
#
#   bash test/bench/compare.sh main~1 HEAD       (as root, like bench.sh)
#
# Each revision is exported with `git archive` (the repository and its work
# trees are only read) into a temporary directory, built, and installed into
# a private installation of its own (SF_INSTALL, see test/lib.sh).  Then the
# benchmarks run alternately, one at a time, with the same event counts:
#
#   round 1: bench.sh before, bench.sh after, cep_bench.sh before, after
#   round 2: the same ...                       (SF_BENCH_ROUNDS, default 2)
#
# so that a machine getting slower or faster during the run weighs on both
# revisions alike.  The table shows, per benchmark and per measured rate,
# every run of each revision, the medians and after/before; also the
# baselines the scripts measure in the same run (raw librdkafka consume,
# COPY + GROUP BY; for cep_bench.sh the pattern's rate next to a window
# pipeline's) and the ratios against them, which cancel most of the noise
# of a shared machine; and the result counts (windows, matches), which a
# change of behaviour would show.
#
# Environment:
#   SF_BENCH_ROUNDS=N       rounds (default 2)
#   SF_BENCH_EVENTS=N       events of bench.sh (its default: 1000000)
#   CEP_BENCH_EVENTS=N      events of cep_bench.sh (its default: 1000000)
#   CEP_BENCH_KEYS=N        keys of cep_bench.sh (its default: 100000)
#   SF_BENCH_SCRIPTS=own    whose bench scripts, test/lib.sh and test
#                           programs (broker, producer) drive the runs: own
#                           (default: each revision's), before or after (that
#                           revision's for both, so the workload is exactly
#                           the same even if the scripts changed between them)
#   SF_BENCH_LIST="bench.sh cep_bench.sh"   which benchmarks to run
#   SF_KEEP=1               keep the temporary directory (sources, installs,
#                           logs of every run) and print where it is
#
# Not part of the test suite's pass/fail.  Exits non-zero if a build or a
# benchmark run fails (the end of its log is shown).

set -euo pipefail

usage() {
    echo "usage: bash test/bench/compare.sh BEFORE_REV AFTER_REV" >&2
    exit 2
}
[ $# -eq 2 ] || usage

repo=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${SF_BENCH_ROUNDS:-2}
scripts=${SF_BENCH_SCRIPTS:-own}
benches=${SF_BENCH_LIST:-bench.sh cep_bench.sh}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare: bad SF_BENCH_ROUNDS '$rounds'" >&2; exit 2; }
case $scripts in
    own | before | after) ;;
    *) echo "compare: SF_BENCH_SCRIPTS must be own, before or after" >&2; exit 2 ;;
esac
for b in $benches; do
    case $b in
        bench.sh | cep_bench.sh) ;;
        *) echo "compare: unknown benchmark '$b' in SF_BENCH_LIST" >&2; exit 2 ;;
    esac
done

declare -A rev sha src inst
rev[before]=$1
rev[after]=$2
for r in before after; do
    sha[$r]=$(git -C "$repo" rev-parse --verify --quiet "${rev[$r]}^{commit}") ||
        { echo "compare: not a revision: ${rev[$r]}" >&2; exit 2; }
done

# One temporary directory holds everything; its path stays short, as the
# servers' Unix sockets live in their data directories below it.
tmp=$(mktemp -d /tmp/sfcmp.XXXXXX)
chmod 755 "$tmp"
child=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    # A running benchmark stops its own servers and broker on SIGTERM (its
    # sf_cleanup_trap); wait for it before removing its files.
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    if [ "${SF_KEEP:-0}" = 1 ]; then
        echo "compare: SF_KEEP=1, sources, installs and logs kept in $tmp" >&2
    else
        rm -rf -- "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Runs "$@" in the background and waits for it, so that a signal to this
# script interrupts the wait and cleanup() can stop the run.
run_child() {
    local log=$1 rc=0
    shift
    "$@" >"$log" 2>&1 &
    child=$!
    wait "$child" || rc=$?
    child=
    return "$rc"
}

fail_log() {
    echo "compare: $1 failed; end of $2:" >&2
    tail -n 30 "$2" >&2
    exit 1
}

if [ "$scripts" = own ] &&
   ! git -C "$repo" diff --quiet "${sha[before]}" "${sha[after]}" -- \
       test/bench test/lib.sh test/produce.c test/consume_bench.c test/mock_broker.c; then
    echo "compare: note: the benchmark scripts or test programs differ between the revisions" \
         "(each runs its own; SF_BENCH_SCRIPTS=before or after runs one revision's for both):"
    git -C "$repo" diff --stat "${sha[before]}" "${sha[after]}" -- \
        test/bench test/lib.sh test/produce.c test/consume_bench.c test/mock_broker.c | sed 's/^/  /'
fi

mkdir -p "$tmp/logs" "$tmp/work"
chmod 755 "$tmp/work"
for r in before after; do
    src[$r]=$tmp/src-$r
    inst[$r]=$tmp/install-$r
    mkdir -p "${src[$r]}"
    git -C "$repo" archive --format=tar "${sha[$r]}" | tar -x -C "${src[$r]}"
    echo "compare: building $r = ${rev[$r]} (${sha[$r]:0:10})"
    t0=$(date +%s)
    # sf_build: make, make install into the private installation, and the
    # test programs (broker, producer, consume_bench) in the exported tree.
    # shellcheck disable=SC2016
    run_child "$tmp/logs/build-$r.log" env SF_INSTALL="${inst[$r]}" \
        bash -c 'cd "$1" && . test/lib.sh && sf_install_deps && sf_build' _ "${src[$r]}" ||
        fail_log "building $r" "$tmp/logs/build-$r.log"
    echo "compare: built $r in $(($(date +%s) - t0)) s"
done

unset SF_BENCH_PERF SF_BUILT SF_INSTALL
export SF_WORK=$tmp/work
t_start=$(date +%s)
for ((i = 1; i <= rounds; i++)); do
    for b in $benches; do
        for r in before after; do
            if [ "$scripts" = own ]; then
                script=${src[$r]}/test/bench/$b
            else
                script=${src[$scripts]}/test/bench/$b
            fi
            log=$tmp/logs/$b-$r-$i.log
            t0=$(date +%s)
            # SF_BUILT=1: the script runs against the installation built
            # above, without building again.  SF_KEEP=0: its servers stop
            # when it ends whatever SF_KEEP says here (its output is kept).
            # A port sf_free_port found free can be taken by another process
            # before the server binds it (a busy machine): then the run is
            # repeated, up to twice.
            for try in 1 2 3; do
                rc=0
                run_child "$log" env SF_INSTALL="${inst[$r]}" SF_BUILT=1 SF_KEEP=0 bash "$script" || rc=$?
                if [ "$rc" -eq 0 ] || [ "$try" -eq 3 ] ||
                   ! grep -q "Address already in use" "$log"; then
                    break
                fi
                echo "compare: round $i $b $r: its port was taken meanwhile, running it again"
            done
            [ "$rc" -eq 0 ] || fail_log "$b ($r, round $i)" "$log"
            echo "compare: round $i/$rounds $b $r: $(($(date +%s) - t0)) s"
        done
    done
done
echo "compare: benchmarks took $(($(date +%s) - t_start)) s"
echo

python3 - "$tmp/logs" "$rounds" "$benches" \
    "${rev[before]} (${sha[before]:0:10})" "${rev[after]} (${sha[after]:0:10})" <<'PY'
import os, re, statistics, sys

logs, rounds, benches = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
names = {"before": sys.argv[4], "after": sys.argv[5]}
num = r"([0-9][0-9.]*)"

# What each script prints, as (key, label, regex); the last group is taken.
PATTERNS = {
    "bench.sh": [
        ("sf", "streamflink end to end, events/s", r"^bench: streamflink end to end: " + num + " events/s"),
        ("raw", "raw librdkafka consume, msg/s", r"^bench: raw librdkafka consume: " + num + " msg/s"),
        ("json", "COPY json + GROUP BY, events/s", r"^bench: COPY json then GROUP BY: " + num + " events/s"),
        ("csv", "COPY csv + GROUP BY, events/s", r"^bench: COPY pre-decoded csv then GROUP BY: " + num + " events/s"),
        ("windows", "windows in the sink", r"^bench: streamflink end to end: .*\(" + num + " windows"),
        ("wrong", "windows differing from SQL's", r"^bench: sink windows differing from SQL's answer: " + num),
    ],
    "cep_bench.sh": [
        ("cep", "fraud pattern, events/s", r"^fraud pattern .*:\s+" + num + " events/s"),
        ("win", "window pipeline, events/s", r"^window pipeline .*:\s+" + num + " events/s"),
        ("matches", "matches", r"^fraud pattern .* events/s, " + num + " matches"),
        ("windows", "windows", r"^window pipeline .* events/s, " + num + " windows"),
        ("cepcpu", "fraud pattern, worker CPU s", r"^fraud pattern worker CPU: " + num + " s"),
        ("wincpu", "window pipeline, worker CPU s", r"^window pipeline worker CPU: " + num + " s"),
        ("cepmain", "fraud pattern, main thread CPU s", r"^fraud pattern worker main thread CPU: " + num + " s"),
        ("winmain", "window pipeline, main thread CPU s", r"^window pipeline worker main thread CPU: " + num + " s"),
        ("ceprss", "fraud pattern, worker peak RSS MB", r"^fraud pattern worker peak RSS: " + num + " MB"),
        ("winrss", "window pipeline, worker peak RSS MB", r"^window pipeline worker peak RSS: " + num + " MB"),
    ],
}
# In-run ratios: numerator and denominator measured in the same run.
RATIOS = {
    "bench.sh": [("sf", "raw", "streamflink / raw consume"),
                 ("sf", "json", "streamflink / COPY json + GROUP BY"),
                 ("sf", "csv", "streamflink / COPY csv + GROUP BY")],
    "cep_bench.sh": [("cep", "win", "pattern / window")],
}
RATES = {"bench.sh": ["sf", "raw", "json", "csv"], "cep_bench.sh": ["cep", "win", "cepcpu", "wincpu", "cepmain", "winmain", "ceprss", "winrss"]}
COUNTS = {"bench.sh": ["windows", "wrong"], "cep_bench.sh": ["matches", "windows"]}
SETTINGS = {"bench.sh": "SF_BENCH_EVENTS=%s" % os.environ.get("SF_BENCH_EVENTS", "1000000"),
            "cep_bench.sh": "CEP_BENCH_EVENTS=%s CEP_BENCH_KEYS=%s" % (
                os.environ.get("CEP_BENCH_EVENTS", "1000000"), os.environ.get("CEP_BENCH_KEYS", "100000"))}

def parse(path, patterns):
    vals = {}
    with open(path, errors="replace") as f:
        for line in f:
            for key, _, rx in patterns:
                m = re.search(rx, line)
                if m:
                    vals[key] = float(m.group(m.lastindex))
    return vals

def fmt(x, ratio=False):
    if x is None:
        return "-"
    if ratio:
        return "%.2f" % x
    return "%.0f" % x if x >= 100 or x == int(x) else "%.2f" % x

summary = []
print("before = %s, after = %s, %d round(s), runs alternating" % (names["before"], names["after"], rounds))
for b in benches:
    runs = {r: [parse(os.path.join(logs, "%s-%s-%d.log" % (b, r, i)), PATTERNS[b])
                for i in range(1, rounds + 1)] for r in ("before", "after")}
    rows = []
    for key, label, _ in PATTERNS[b]:
        rows.append((label, key in RATES[b], {r: [v.get(key) for v in runs[r]] for r in runs}, False))
    for n, d, label in RATIOS[b]:
        rows.append((label + " (in-run)", True,
                     {r: [v[n] / v[d] if v.get(n) and v.get(d) else None for v in runs[r]] for r in runs}, True))
    # Rates and ratios first, result counts last.
    rows.sort(key=lambda row: 0 if row[1] else 1)

    header = ("", "before runs", "after runs", "before med", "after med", "after/before")
    table = []
    for label, compare, vals, ratio in rows:
        med = {}
        for r in vals:
            xs = [x for x in vals[r] if x is not None]
            med[r] = statistics.median(xs) if xs else None
        change = med["after"] / med["before"] if compare and med["before"] and med["after"] is not None else None
        if not compare:
            every = vals["before"] + vals["after"]
            note = "same in every run" if len(set(every)) == 1 else "DIFFER"
            change_s = note
        else:
            change_s = fmt(change, True)
        table.append((label, " ".join(fmt(x, ratio) for x in vals["before"]),
                      " ".join(fmt(x, ratio) for x in vals["after"]),
                      fmt(med["before"], ratio) if compare else "", fmt(med["after"], ratio) if compare else "",
                      change_s))
        if change is not None and (label.split(",")[0] in (
                "streamflink end to end", "fraud pattern", "window pipeline") or "(in-run)" in label):
            summary.append("%s %s: %s" % (b, label, fmt(change, True)))
    widths = [max(len(row[c]) for row in table + [header]) for c in range(len(header))]
    print()
    print("%s (%s)" % (b, SETTINGS[b]))
    for row in [header] + table:
        print("  " + "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                               for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
print()
print("after/before of the medians:")
for s in summary:
    print("  " + s)
PY
