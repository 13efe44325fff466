#!/usr/bin/env python3
"""
test/gen_avro_fuzz.py COUNT SEED: Avro payloads for test/decode_fuzz.sh.

Records of test/avro/fuzz.avsc encoded by the Avro project's own Python
implementation (Debian's python3-avro: an encoder independent of avro-c and
of streamflink), and random mutations of them (bytes flipped, inserted,
removed, truncated, extended, and lengths, counts and union indexes
replaced by extreme varints).  One line per payload:

    KIND<TAB>HEX<TAB>EXPECTED

KIND is "valid" (EXPECTED: the record as streamflink.decode() must show
it, as JSON; ts as an ISO timestamp) or "mutant" (EXPECTED empty: a row or
an error, whatever it is, but never a crash).  Confluent framing (magic
byte, id 1) is added by the caller where wanted.
"""
import datetime
import io
import json
import os
import random
import struct
import sys

import avro.io
import avro.schema

count, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "avro", "fuzz.avsc")) as f:
    schema = avro.schema.parse(f.read())
writer = avro.io.DatumWriter(schema)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def rand_text():
    alphabet = "abcxyz \"\\\n\té€😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def record():
    ms = rng.randint(0, 4102444800000)
    return {
        "id": rng.randint(-2**31, 2**31 - 1),
        "big": rng.randint(-2**63, 2**63 - 1),
        "price": rng.choice([0.0, -1.5, 1e300, rng.uniform(-1e6, 1e6)]),
        "ok": rng.random() < 0.5,
        "name": rand_text(),
        "note": rng.choice([None, rand_text()]),
        "color": rng.choice(["RED", "GREEN", "BLUE"]),
        "tags": [rng.randint(-1000, 1000) for _ in range(rng.randint(0, 5))],
        "ts": EPOCH + datetime.timedelta(milliseconds=ms),
        "extra": {"k": rand_text(), "v": rng.randint(0, 9)},
        "attrs": {rand_text(): rng.randint(-5, 5) for _ in range(rng.randint(0, 3))},
        "h": bytes(rng.randrange(256) for _ in range(4)),
        "f": struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0],
        "raw": bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))),
    }


def float4_text(x):
    """The shortest text that reads back as the same float4 (as real's output)."""
    for p in range(1, 10):
        t = "%.*g" % (p, x)
        if struct.unpack("<f", struct.pack("<f", float(t)))[0] == x:
            return float(t)
    return x


def encode(r):
    buf = io.BytesIO()
    writer.write(r, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def varint(v):
    z = (v << 1) ^ (v >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 2 and b:
            del b[pos:pos + rng.randint(1, 4)]
        elif op == 3:
            b = b[:pos]
        elif op == 4:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 5:
            extreme = rng.choice([-1, -2**31, 2**31, 2**62, -2**63, 2**63 - 1, 10**9])
            b[pos:pos + 1] = varint(extreme)
        else:
            b[pos:pos] = b"\xff" * rng.randint(1, 12)
    return bytes(b)


for i in range(count):
    r = record()
    data = encode(r)
    if rng.random() < 0.3:
        expected = dict(r)
        expected["ts"] = r["ts"].isoformat()
        expected["h"] = "\\x" + r["h"].hex()
        expected["raw"] = "\\x" + r["raw"].hex()
        expected["f"] = float4_text(r["f"])
        print("valid\t%s\t%s" % (data.hex(), json.dumps(expected, ensure_ascii=False)))
    else:
        print("mutant\t%s\t" % mutate(data).hex())
