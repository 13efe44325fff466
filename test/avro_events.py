#!/usr/bin/env python3
"""
test/avro_events.py INDIR OUTDIR SPLIT: test/gen_events.py's events as Avro.

Every file of INDIR (chunk-NN.tsv, late.tsv, final.tsv: "PARTITION<TAB>
JSON") is written to OUTDIR with the same name as "PARTITION<TAB>HEX" for
`test/produce --hex`: the Confluent wire format, encoded by the Avro
project's Python implementation (Debian's python3-avro), with
test/avro/ride_micros_v1.avsc as schema id 1 in chunks before SPLIT and
ride_micros_v2.avsc (a field added with a default, the event time
nullable) as id 2 from SPLIT on.  The malformed events stay malformed:
truncated JSON becomes a payload without the magic byte, a bad number a
truncated datum, a missing event time a null one (schema 2).  The other
files of INDIR (events.csv, counts) are copied as they are.
"""
import datetime
import io
import json
import os
import shutil
import struct
import sys

import avro.io
import avro.schema

indir, outdir, split = sys.argv[1], sys.argv[2], int(sys.argv[3])
here = os.path.dirname(os.path.abspath(__file__))
schemas = {}
for sid in (1, 2):
    with open(os.path.join(here, "avro", "ride_micros_v%d.avsc" % sid)) as f:
        s = avro.schema.parse(f.read())
        schemas[sid] = avro.io.DatumWriter(s)
os.makedirs(outdir, exist_ok=True)


def frame(sid, record):
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", sid))
    schemas[sid].write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def convert(payload, sid):
    try:
        e = json.loads(payload)
    except ValueError:
        return payload.encode()     # no magic byte
    if not isinstance(e.get("wait_s"), (int, float)):
        # a datum cut inside its first string
        return frame(1, {"geo": e["geo"], "wait_s": 0.0,
                         "ts": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)})[:7]
    if "ts" not in e:
        return frame(2, {"geo": e["geo"], "region": "eu", "wait_s": float(e["wait_s"]), "ts": None})
    ts = datetime.datetime.fromisoformat(e["ts"])
    r = {"geo": e["geo"], "wait_s": float(e["wait_s"]), "ts": ts}
    if sid == 2:
        r["region"] = "eu"
    return frame(sid, r)


for name in sorted(os.listdir(indir)):
    src = os.path.join(indir, name)
    if not name.endswith(".tsv"):
        shutil.copy(src, os.path.join(outdir, name))
        continue
    sid = 2 if not name.startswith("chunk-") or int(name[6:8]) >= split else 1
    with open(src) as f, open(os.path.join(outdir, name), "w") as out:
        for line in f:
            part, payload = line.rstrip("\n").split("\t", 1)
            out.write("%s\t%s\n" % (part, convert(payload, sid).hex()))
