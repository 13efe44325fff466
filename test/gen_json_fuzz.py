#!/usr/bin/env python3
"""gen_json_fuzz.py: payloads for the JSON decoder's differential test.

Usage: gen_json_fuzz.py COUNT SEED > payloads.txt

One payload a line, hex-encoded (payloads may hold any byte, newlines
included).  Valid JSON objects over the test source's columns (strings with
every kind of escape, numbers in every form, nested values, duplicate and
escaped keys, whitespace) and mutations of them (bytes flipped, dropped,
inserted, truncated), so that both decoders see valid and broken input.
"""
import json
import random
import sys

count, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
COLS = ["id", "name", "price", "ok", "doc", "raw", "at", "f", "tags"]


def rstring():
    parts = []
    for _ in range(rng.randrange(0, 6)):
        c = rng.random()
        if c < 0.4:
            parts.append(rng.choice(["abc", "x y", "ümlaut", "日本", "😀", "", "1e5"]))
        elif c < 0.7:
            parts.append(rng.choice(['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"]))
        elif c < 0.9:
            parts.append("\\u%04x" % rng.choice([0x41, 0xe9, 0x20ac, 0x7f, 0x1f, 0, 0xd800, 0xdc00, 0xfffd]))
        else:
            parts.append("\\ud83d\\ude00")
    return '"' + "".join(parts) + '"'


def rnumber():
    return rng.choice(["0", "-0", "1", "-12", "3.25", "1e3", "1E-2", "-0.5e+10", "123456789012345678901234567890",
                       "1.000", "0.1", "1e400", "-1e-400", "01", "1.", ".5", "+1", "1e", "-", "0x10"])


def rvalue(depth=0):
    c = rng.random()
    if c < 0.3:
        return rstring()
    if c < 0.55:
        return rnumber()
    if c < 0.65:
        return rng.choice(["true", "false", "null", "tru", "nul", "True"])
    if depth > 3:
        return rnumber()
    if c < 0.82:
        return "[" + ", ".join(rvalue(depth + 1) for _ in range(rng.randrange(0, 4))) + "]"
    return "{" + ", ".join(rkey() + ": " + rvalue(depth + 1) for _ in range(rng.randrange(0, 4))) + "}"


def rkey():
    k = rng.choice(COLS + ["other", "Id", "na\\u006de", "pr\\u0069ce", "", "x\\ty"])
    return '"' + k + '"'


def ws():
    return rng.choice(["", "", " ", "\n", "\t ", "\r\n"])


def payload():
    members = []
    for _ in range(rng.randrange(0, 7)):
        members.append(ws() + rkey() + ws() + ":" + ws() + rvalue() + ws())
    return ws() + "{" + ",".join(members) + "}" + ws()


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randrange(1, 4)):
        if not b:
            break
        i = rng.randrange(len(b))
        c = rng.random()
        if c < 0.3:
            b[i] = rng.choice(b'{}[],:"\\ 0aez-+.\x00\xff')
        elif c < 0.6:
            del b[i]
        elif c < 0.8:
            b.insert(i, rng.choice(b'{}[],:"\\ 0e-'))
        else:
            del b[i:]
    return bytes(b)


for n in range(count):
    p = payload().encode()
    if rng.random() < 0.4:
        p = mutate(p)
    print(p.hex())
