#!/usr/bin/env python3
"""gen_events.py: the known event set of the fault test and the benchmark.

Usage: gen_events.py OUTDIR COUNT PARTITIONS CHUNKS KEYS

Writes, deterministically (fixed seed):
  OUTDIR/chunk-NN.tsv   the main events in CHUNKS files, one message a line
                        as test/produce reads it: "PARTITION<TAB>PAYLOAD".
                        Event times go forward half a second per event and
                        are shuffled by up to 4 seconds (the source declares
                        5 seconds of out-of-orderness); about one message in
                        500 is malformed (bad JSON, a bad number, no event
                        time), so it must end in the dead-letter table.
  OUTDIR/late.tsv       300 events a day older than the stream: produced
                        once the pipeline's watermark has passed the main
                        events, every one of them is late.
  OUTDIR/final.tsv      one event per partition an hour after the last one:
                        it moves the watermark past every window.
  OUTDIR/events.csv     the valid main events (geo, wait_s, ts) for COPY:
                        the independent answer is computed from these by SQL.
  OUTDIR/counts         "valid N", "malformed N", "late N", "total N",
                        "first_ts T", "last_ts T".
"""
import datetime
import json
import os
import random
import sys

outdir, count, parts, chunks, keys = sys.argv[1], *map(int, sys.argv[2:6])
os.makedirs(outdir, exist_ok=True)
rng = random.Random(20261127)
base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def iso(t):
    return t.isoformat()


valid = malformed = 0
per_chunk = (count + chunks - 1) // chunks
last = base
with open(os.path.join(outdir, "events.csv"), "w") as csv:
    for c in range(chunks):
        with open(os.path.join(outdir, "chunk-%02d.tsv" % c), "w") as out:
            for i in range(c * per_chunk, min(count, (c + 1) * per_chunk)):
                p = i % parts
                ts = base + datetime.timedelta(milliseconds=i * 500 - rng.randint(0, 4000))
                ts = max(ts, base)
                geo = "g%02d" % rng.randrange(keys)
                wait = rng.randrange(0, 80) * 0.25
                r = rng.random()
                if r < 0.0007:
                    payload = '{"geo": "%s", "wait_s": ' % geo   # truncated JSON
                elif r < 0.0014:
                    payload = json.dumps({"geo": geo, "wait_s": "n/a", "ts": iso(ts)})
                elif r < 0.002:
                    payload = json.dumps({"geo": geo, "wait_s": wait})
                else:
                    payload = json.dumps({"geo": geo, "wait_s": wait, "ts": iso(ts)})
                    csv.write("%s,%s,%s\n" % (geo, wait, iso(ts)))
                    valid += 1
                    last = max(last, ts)
                    out.write("%d\t%s\n" % (p, payload))
                    continue
                malformed += 1
                out.write("%d\t%s\n" % (p, payload))

late = 300
with open(os.path.join(outdir, "late.tsv"), "w") as out:
    for i in range(late):
        ts = base - datetime.timedelta(days=1) + datetime.timedelta(seconds=i)
        out.write("%d\t%s\n" % (i % parts, json.dumps(
            {"geo": "g00", "wait_s": 1.0, "ts": iso(ts)})))

final_ts = last + datetime.timedelta(hours=1)
with open(os.path.join(outdir, "final.tsv"), "w") as out:
    for p in range(parts):
        out.write("%d\t%s\n" % (p, json.dumps(
            {"geo": "final", "wait_s": 0.0, "ts": iso(final_ts)})))

with open(os.path.join(outdir, "counts"), "w") as out:
    out.write("valid %d\nmalformed %d\nlate %d\ntotal %d\nfirst_ts %s\nlast_ts %s\nfinal_ts %s\n" % (
        valid, malformed, late, count + late + parts, iso(base), iso(last), iso(final_ts)))
