#!/usr/bin/env bash
#
# test/demo.sh: streamflink end to end on embedded defaults.
#
#   sudo bash test/demo.sh        (or as root: bash test/demo.sh)
#
# Installs what is missing (Postgres 15, librdkafka, RocksDB, ...), builds
# and installs the extension into Postgres 15, then starts a throwaway
# Postgres cluster (run by an unprivileged user) and the test Kafka broker,
# and streams ride events into a topic while a hop-window pipeline
# aggregates them and a pattern pipeline looks for stranded riders: the
# live (still open) windows, the committed windows and the pattern matches
# are printed as they change.  Everything it started is stopped at the end.
#
# Knobs: SF_DEMO_SECONDS (30) how long events flow; SF_KEEP=1 leaves the
# server and broker running (the script prints how to connect).

set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib.sh

seconds=${SF_DEMO_SECONDS:-30}

sf_install_deps
echo "== building and installing streamflink"
sf_build

work=$(mktemp -d /tmp/sfdemo.XXXXXX)
chmod 755 "$work"
sf_cleanup_trap
[ "${SF_KEEP:-0}" = 1 ] || sf_cleanup_add_path "$work"

echo "== starting the test Kafka broker and a Postgres 15 cluster"
addr=$(sf_broker_start "$work/broker" ride_events:4)
port=$(sf_free_port)
sf_pg_start "$work/pg" "$port"
psql_() { sf_psql "$work/pg" "$port" "$@"; }
echo "broker: $addr   postgres: psql -h $work/pg -p $port -U postgres"

# Set-up calls return void: their (empty) result tables go nowhere, errors
# and notices still show.
psql_ -q -o /dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('rides', brokers => '$addr', topic => 'ride_events',
       format => 'json', columns => 'geo text, wait_s float8, kind text, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds');
SELECT streamflink.create_window_pipeline('surge', source => 'rides', key => 'geo',
       "window" => 'hop', size => '2 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => 'surge_out', allowed_lateness => '30 seconds', checkpoint_interval => '1 second');
SELECT streamflink.start('surge');
SELECT streamflink.create_pattern_pipeline('stranded', source => 'rides', key => 'geo',
       pattern => 'long{3} -> xl',
       define => \$\$ long AS wait_s > 150, xl AS kind = 'xl' AND wait_s < 30 \$\$,
       within => '1 minute', sink => 'stranded_out', skip => 'skip_past_last_event',
       measures => 'avg(long.wait_s) AS avg_long_wait, xl.wait_s AS xl_wait');
SELECT streamflink.start('stranded');
SQL
cat <<'EOF'
== pipeline "surge": rides per district, 2-minute windows every 30 seconds
   SELECT streamflink.create_source('rides', ..., format => 'json',
          columns => 'geo text, wait_s float8, kind text, ts timestamptz', event_time => 'ts', ...);
   SELECT streamflink.create_window_pipeline('surge', source => 'rides', key => 'geo',
          "window" => 'hop', size => '2 minutes', slide => '30 seconds',
          aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
          sink => 'surge_out', ...);
== pipeline "stranded": per district, three waits over 150 s, then a quick XL ride, within a minute
   SELECT streamflink.create_pattern_pipeline('stranded', source => 'rides', key => 'geo',
          pattern => 'long{3} -> xl',
          define => $$ long AS wait_s > 150, xl AS kind = 'xl' AND wait_s < 30 $$,
          within => '1 minute', sink => 'stranded_out', skip => 'skip_past_last_event', ...);
EOF

# Event time runs 30 seconds per wall-clock second, so windows close while
# you watch: each second, one batch of rides (a few out of order, a few
# malformed) goes to the broker.
gen_batch() {
    python3 - "$1" <<'PY'
import datetime, json, random, sys
b = int(sys.argv[1])
rng = random.Random(b)
t0 = datetime.datetime(2026, 11, 27, 8, 0, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=30 * b)
geos = ["downtown", "airport", "harbor", "campus", "oldtown", "stadium"]
for i in range(2000):
    ts = t0 + datetime.timedelta(milliseconds=15 * i - rng.randint(0, 3000))
    geo = rng.choice(geos[: 3 + b % 4]) if rng.random() < 0.5 else rng.choice(geos)
    ev = {"geo": geo, "wait_s": round(rng.expovariate(1 / (60 + 40 * (geo == "airport"))), 1),
          "kind": rng.choice(["solo", "pool", "xl"]), "ts": ts.isoformat()}
    line = json.dumps(ev) if rng.random() > 0.001 else '{"geo": "harbor", "wait_s": '
    print("%d\t%s" % (i % 4, line))
PY
}

for ((b = 0; b < seconds; b++)); do
    gen_batch "$b" | test/produce "$addr" ride_events --partitions 4 2>/dev/null
    if ((b % 10 == 9)); then
        echo
        echo "== after $((b + 1)) s: live windows (still open), top 6 by rides"
        psql_ -P footer=off -c "SELECT geo, to_char(window_start, 'HH24:MI:SS') AS window_start,
               to_char(window_end, 'HH24:MI:SS') AS window_end, rides,
               round(avg_wait::numeric, 1) AS avg_wait, max_wait
            FROM streamflink.live('surge', NULL::surge_out) ORDER BY rides DESC, geo LIMIT 6"
        psql_ -P footer=off -c "SELECT name, status, events, round(events_per_second) AS events_per_s,
               rows_emitted, dead_letters, late_events, watermark, lag, last_checkpoint
            FROM streamflink.pipelines ORDER BY name"
    fi
    sleep 1
done

sleep 2
echo
echo "== closed windows committed to surge_out (exactly once), the latest 8"
psql_ -P footer=off -c "SELECT geo, to_char(window_start, 'HH24:MI:SS') AS window_start,
       to_char(window_end, 'HH24:MI:SS') AS window_end, rides,
       round(avg_wait::numeric, 1) AS avg_wait, max_wait
    FROM surge_out ORDER BY window_start DESC, rides DESC LIMIT 8"
psql_ -P footer=off -c "SELECT count(*) AS windows, sum(rides) AS rides FROM surge_out"
echo "== pattern matches committed to stranded_out, the latest 5"
psql_ -P footer=off -c "SELECT geo, to_char(match_start, 'HH24:MI:SS.MS') AS match_start,
       to_char(match_end, 'HH24:MI:SS.MS') AS match_end, round(avg_long_wait::numeric, 1) AS avg_long_wait,
       xl_wait, jsonb_array_length(events->'long') AS long_waits
    FROM stranded_out ORDER BY match_end DESC LIMIT 5"
psql_ -P footer=off -c "SELECT count(*) AS matches FROM stranded_out"
echo "== checkpoints (the latest 3) and dead letters"
psql_ -P footer=off -c "SELECT id, duration, state_bytes, new_state_bytes, events, rows_emitted
    FROM streamflink.checkpoints WHERE pipeline = 'surge' ORDER BY id DESC LIMIT 3"
psql_ -P footer=off -c "SELECT pipeline, partition, \"offset\", convert_from(payload, 'UTF8') AS payload, error
    FROM streamflink.dead_letters ORDER BY partition, \"offset\", pipeline LIMIT 4"
psql_ -q -c "SELECT streamflink.stop('surge')" -c "SELECT streamflink.stop('stranded')" >/dev/null
if [ "${SF_KEEP:-0}" = 1 ]; then
    echo "SF_KEEP=1: server and broker keep running: psql -h $work/pg -p $port -U postgres"
else
    echo "== done; stopping the server and the broker"
fi
