#!/usr/bin/env bash
#
# test/bench/nexmark.sh: Nexmark q5, q7 and q11 as streamflink pipelines
# written in SQL, over events of our own Nexmark generator
# (test/nexmark_gen.py: persons, auctions and bids 1:3:46, hot auctions and
# hot bidders) in one Kafka topic, next to Flink's published per-core
# figures and the raw librdkafka consume rate of the same topic in the same
# run.
#
#   bash test/bench/nexmark.sh      (as root; installs what is missing)
#
# Environment (defaults in parentheses):
#   NEXMARK_EVENTS       events of all kinds (2000000)
#   NEXMARK_RATE         events per second of event time (10000: 200 s of
#                        event time for 2M events)
#   NEXMARK_OOO_MS       out-of-orderness of the stream, ms (500); the
#                        source declares the same max_out_of_orderness, so
#                        no event is late
#   NEXMARK_PARTITIONS   partitions of the topic (one per 125,000 events,
#                        at least 4: the test broker keeps 5 MiB of
#                        compressed batches per partition)
#   NEXMARK_QUERIES      which queries ("q5 q7 q11")
#   NEXMARK_PARALLELISM  parallelism levels, each query at each ("1"; e.g.
#                        "1 2")
#
# The queries (Flink's nexmark-flink, rewritten to what our SQL allows):
#   q5  hot items: bids per auction in hopping windows of 10 s sliding by
#       2 s, and the auction(s) with the most bids per window (Top-N, rank 1;
#       Flink's q5 joins the counts with their max, same answer);
#   q7  highest bid: per tumbling 10 s window, the bids (auction, bidder,
#       price) with the highest price (Top-N over the window's distinct
#       bids, rank 1; Flink's q7 joins the bids with the window's max);
#   q11 user sessions: bids per bidder in session windows with a 10 s gap.
# Each is a create_pipeline query over the one source of all events with
# WHERE event_type = 2 (bids), as Flink's bid view over its datagen
# stream; events/s counts every event read (persons and auctions too), as
# Nexmark's throughput does.
#
# Printed per query: events/s (from start until the pipeline's watermark
# passed the last event: every window fired and written, checkpoints every
# second included), the worker's CPU seconds over that time (every task's
# process, all threads: librdkafka's and RocksDB's too) and CPU / wall =
# the cores the pipeline used, events/s per core = events / CPU seconds,
# Flink's per-core figure (Flink 1.13 on 8 cores, from its nexmark
# results; its source is an in-process generator, ours Kafka + JSON
# decoding) and the ratio, and the ratios to the raw consume rate of
# test/consume_bench over the same topic (events/s to its msg/s, and per
# core to its messages per CPU second: the CPU ratio is steadier than the
# wall-clock one on a shared machine, whose load changes between the
# two measurements).  Each
# pipeline's sink is compared with SQL's answer over the same bids loaded
# into a table: the rows differing must be 0 (and no late events, no dead
# letters).  Machines are noisy: compare the ratios of one run.  Not part
# of the test suite's pass/fail.

set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib.sh

events=${NEXMARK_EVENTS:-2000000}
rate=${NEXMARK_RATE:-10000}
ooo=${NEXMARK_OOO_MS:-500}
parts=${NEXMARK_PARTITIONS:-$(( (events + 124999) / 125000 ))}
[ "$parts" -ge 4 ] || parts=4
queries=${NEXMARK_QUERIES:-q5 q7 q11}
levels=${NEXMARK_PARALLELISM:-1}

sf_test_setup nexmark >/dev/null
work=$SF_TEST_DIR

echo "nexmark: generating $events events ($rate/s of event time, out-of-order up to $ooo ms) on $parts partitions"
python3 test/nexmark_gen.py --events "$events" --rate "$rate" --out-of-order-ms "$ooo" \
    --partitions "$parts" --bids-csv "$work/bids.csv" >"$work/events.tsv"
# One more event per partition (a person), years later: the watermark
# passes every window.
for ((p = 0; p < parts; p++)); do
    printf '%d\t{"event_type":0,"id":-1,"date_time":"2031-01-01T00:00:00Z"}\n' "$p"
done >>"$work/events.tsv"
total=$((events + parts))
chmod a+r "$work/bids.csv"

addr=$(sf_broker_start "$work/broker" "nexmark:$parts")
test/produce "$addr" nexmark --partitions "$parts" <"$work/events.tsv"
sf_topic_intact "$addr" nexmark "$parts"
rm -f "$work/events.tsv"

# The raw consume rate, and its CPU seconds (user + system, every thread).
TIMEFORMAT='%U %S'
{ time test/consume_bench "$addr" nexmark "$total" >"$work/raw.out" 2>/dev/null; } 2>"$work/raw.time"
raw=$(awk '$1 == "RATE" { print int($2) }' "$work/raw.out")
raw_core=$(awk -v n="$total" '{ c = $1 + $2; printf "%.0f", (c > 0 ? n / c : 0) }' "$work/raw.time")
echo "nexmark: raw librdkafka consume: $raw msg/s, $raw_core msg/s per core (consume_bench's CPU seconds)"

port=$(sf_free_port)
sf_bench_db "$work/pg" "$port" "shared_buffers = '256MB'" "synchronous_commit = off"
q() { sf_psql "$work/pg" "$port" -d bench -Atq "$@"; }

# One source for the three kinds: the union of their fields (Flink's
# nexmark datagen table flattened), NULL where a kind has none.
q <<SQL
SELECT streamflink.create_source('nexmark', '$addr', 'nexmark', 'json',
	columns => 'event_type int, id bigint, name text, email_address text, credit_card text,
	            city text, state text, item_name text, description text, initial_bid bigint,
	            reserve bigint, expires timestamptz, seller bigint, category int,
	            auction bigint, bidder bigint, price bigint, channel text, url text,
	            date_time timestamptz',
	event_time => 'date_time', max_out_of_orderness => '$ooo milliseconds',
	options => '{fetch.wait.max.ms=10}');
CREATE TABLE bids (auction bigint, bidder bigint, price bigint, channel text, date_time timestamptz);
\copy bids FROM '$work/bids.csv' WITH (FORMAT csv)
ANALYZE bids;
SQL

# The queries, and SQL's answers over the bids table.
declare -A query expected flink
query[q5]="SELECT auction, num, window_start, window_end FROM (
	SELECT auction, count(*) AS num, window_start, window_end,
	       rank() OVER (PARTITION BY window_start, window_end ORDER BY count(*) DESC) AS r
	FROM streamflink.hop(nexmark, date_time, slide => '2 seconds', size => '10 seconds')
	WHERE event_type = 2
	GROUP BY auction, window_start, window_end) t
WHERE r <= 1"
expected[q5]="SELECT auction, num, ws, ws + interval '10 seconds' FROM (
	SELECT auction, ws, count(*) AS num, rank() OVER (PARTITION BY ws ORDER BY count(*) DESC) AS r
	FROM (SELECT auction, date_bin('2 seconds', date_time, 'epoch') - k * interval '2 seconds' AS ws
	      FROM bids, generate_series(0, 4) k) w
	GROUP BY auction, ws) t
WHERE r <= 1"
query[q7]="SELECT auction, bidder, price, window_start, window_end FROM (
	SELECT auction, bidder, price, window_start, window_end,
	       rank() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS r
	FROM streamflink.tumble(nexmark, date_time, size => '10 seconds')
	WHERE event_type = 2
	GROUP BY auction, bidder, price, window_start, window_end) t
WHERE r <= 1"
expected[q7]="SELECT DISTINCT auction, bidder, price, ws, ws + interval '10 seconds' FROM (
	SELECT auction, bidder, price, date_bin('10 seconds', date_time, 'epoch') AS ws,
	       rank() OVER (PARTITION BY date_bin('10 seconds', date_time, 'epoch') ORDER BY price DESC) AS r
	FROM bids) t
WHERE r <= 1"
query[q11]="SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM streamflink.session(nexmark, date_time, gap => '10 seconds')
WHERE event_type = 2
GROUP BY bidder, window_start, window_end"
expected[q11]="SELECT bidder, count(*), min(date_time), max(date_time) + interval '10 seconds' FROM (
	SELECT bidder, date_time, sum(new) OVER (PARTITION BY bidder ORDER BY date_time) AS session FROM (
		SELECT bidder, date_time,
		       CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
		                 <= interval '10 seconds' THEN 0 ELSE 1 END AS new
		FROM bids) s) t
GROUP BY bidder, session"
flink[q5]=22000
flink[q7]=12300
flink[q11]=39700

for qn in $queries; do
    [ -n "${query[$qn]:-}" ] || { echo "nexmark: unknown query $qn (q5 q7 q11)" >&2; exit 2; }
    q -c "CREATE TABLE ${qn}_expected AS ${expected[$qn]}"
done

declare -A res_rate res_cpu
# run NAME PARALLELISM: start, wait for the last watermark, sample every
# task's CPU seconds, stop.  Prints "events/s cpu_seconds".
run() {
    local name=$1 par=$2 t0 t1 pids cpu pid c
    t0=$(date +%s.%N)
    q -c "SELECT streamflink.start('$name', parallelism => $par)" >/dev/null
    while [ "$(q -c "SELECT coalesce(watermark >= '2030-01-01', false) FROM streamflink.pipelines WHERE name = '$name'")" != t ]; do
        # a failed query (the server gone) must not keep this loop going
        sf_pg_running "$work/pg" || { echo "nexmark: the server is gone" >&2; exit 1; }
        if [ "$(q -c "SELECT status FROM streamflink.pipelines WHERE name = '$name'")" = failed ]; then
            echo "nexmark: $name failed: $(q -c "SELECT error FROM streamflink.pipelines WHERE name = '$name'")" >&2
            exit 1
        fi
        sleep 0.2
    done
    t1=$(date +%s.%N)
    pids=$(q -c "SELECT pid FROM streamflink.tasks WHERE pipeline = '$name'")
    cpu=0
    for pid in $pids; do
        c=$(sf_cpu_seconds "$pid")
        cpu=$(awk -v a="$cpu" -v b="$c" 'BEGIN { print a + b }')
    done
    q -c "SELECT streamflink.stop('$name')" >/dev/null
    while [ "$(q -c "SELECT status FROM streamflink.pipelines WHERE name = '$name'")" != stopped ]; do
        sf_pg_running "$work/pg" || { echo "nexmark: the server is gone" >&2; exit 1; }
        sleep 0.2
    done
    awk -v n="$total" -v a="$t0" -v b="$t1" -v c="$cpu" 'BEGIN { printf "%.0f %.2f %.2f\n", n / (b - a), c, b - a }'
}

printf '%-5s %3s %10s %8s %7s %6s %11s %11s %8s %8s %9s %6s\n' query par events/s cpu_s wall_s cores \
    events/s/core flink/core vs_flink vs_raw vs_rawcore diff
for par in $levels; do
    for qn in $queries; do
        name=${qn}_p$par
        q -c "SELECT streamflink.create_pipeline('$name', \$q\$ ${query[$qn]} \$q\$, sink => '${name}_out')" >/dev/null
        read -r r cpu wall <<<"$(run "$name" "$par")"
        diff=$(q -c "SELECT (SELECT count(*) FROM (TABLE ${name}_out EXCEPT ALL TABLE ${qn}_expected) a)
                          + (SELECT count(*) FROM (TABLE ${qn}_expected EXCEPT ALL TABLE ${name}_out) b)")
        late=$(q -c "SELECT count(*) FROM streamflink.late_events WHERE pipeline = '$name'")
        dead=$(q -c "SELECT count(*) FROM streamflink.dead_letters WHERE pipeline = '$name'")
        rows=$(q -c "SELECT count(*) FROM ${name}_out")
        awk -v q="$qn" -v p="$par" -v r="$r" -v c="$cpu" -v w="$wall" -v n="$total" -v f="${flink[$qn]}" \
            -v raw="$raw" -v rc="$raw_core" -v d="$diff" 'BEGIN {
            pc = c > 0 ? n / c : 0;
            printf "%-5s %3s %10d %8.1f %7.1f %6.2f %11.0f %11d %8.2f %8.2f %9.2f %6d\n", q, p, r, c, w, c / w, pc,
                f, pc / f, r / raw, pc / rc, d }'
        echo "      ($rows sink rows, SQL's answer $(q -c "SELECT count(*) FROM ${qn}_expected") rows; late events $late, dead letters $dead)"
        q -c "SELECT streamflink.drop_pipeline('$name', drop_sink => true)" >/dev/null
    done
done
echo "nexmark: $total events ($events + $parts end markers), $(wc -l <"$work/bids.csv") bids, $parts partitions;" \
     "raw consume $raw msg/s; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nexmark: cores = worker CPU s / wall s; events/s/core = events / worker CPU s;" \
     "flink/core: Flink 1.13, 8 cores (nexmark-flink results); vs_raw: events/s / raw consume msg/s;" \
     "vs_rawcore: events/s/core / raw consume per core; diff: sink rows differing from SQL's answer"
