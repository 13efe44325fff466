#!/usr/bin/env python3
"""Random cases for test/window_diff.sh, as a psql script on stdout.

usage: gen_window_cases.py CASES SEED [KINDS [KEYTYPES]]

KINDS, KEYTYPES: comma-separated choices to restrict the cases to (e.g.
"session" and "int,text"), for runs by hand.

Each case, in a transaction rolled back at its end: a source whose key
column has a random type, a tumble, hop or session pipeline with random
size/slide/gap and allowed lateness, and random events in table ev (keys
that are equal in SQL but not in bytes, NULL keys, duplicate timestamps,
out-of-order and late events, 1-4 partitions interleaved at random); then
diff_check() (test/window_diff.sql) with random watermark-step, checkpoint
and restore probabilities and a replay seed.  Prints "case N: ok" or what
differs.  Same CASES and SEED, same script.
"""
import random
import sys

KEYS = {
    'int': ['1', '2', '3', '-7'],
    # by-value images of 2, 8 and 1 bytes (big-endian, signed ones with
    # their sign bit flipped: group_key.c), the extremes included
    'smallint': ['1', '-1', '32767', '-32768'],
    'bigint': ['0', '-1', '256', '9223372036854775807', '-9223372036854775808'],
    'date': ["'2024-01-01'", "'1999-12-31'", "'infinity'", "'-infinity'"],
    'boolean': ['true', 'false'],
    'text': ["'a'", "'b'", "'é'", "'a b'"],
    'numeric': ['1', '1.0', '1.00', '2.5', '2.50', '0', '-0.0', '0.000', '1e2', '100'],
    'float8': ["'0'", "'-0'", "'1.5'", "'NaN'", "'2'", "'1.50'"],
    'interval': ["'1 day'", "'24 hours'", "'1440 minutes'", "'2 days'", "'1 mon'",
                 "'30 days'", "'0'", "'00:00:00'"],
    'text COLLATE diff_ci': ["'abc'", "'ABC'", "'Abc'", "'x'", "'X'", "'straße'", "'STRASSE'"],
    'numeric[]': ["'{1,2}'", "'{1.0,2.00}'", "'{1.00,2}'", "'{3}'", "'{3.0}'", "'{}'"],
    'bpchar': ["'a'", "'a '", "'a   '", "' a'", "'b'", "'b  '"],
}


def interval(secs):
    return "'%s seconds'" % secs


def gen_case(rnd, kinds, ktypes):
    """One random case: its parameters and events (ord, part, key, v, ms)."""
    ktype = rnd.choice(ktypes)
    kind = rnd.choice(kinds)
    size = slide = gap = None
    if kind == 'tumble':
        size = rnd.choice([1, 3, 5, 10, 30])
        slide = size
    elif kind == 'hop':
        size = rnd.choice([4, 6, 10, 30])
        slide = rnd.choice([s for s in (1, 2, 3, 5, 10) if s <= size])
    else:
        gap = rnd.choice([1, 3, 5, 10])
    lateness = rnd.choice([0, 2, 5, 20, 60, 60])
    ooo = rnd.choice([0, 0, 0, 1, 3, 10])
    nparts = rnd.choice([1, 1, 2, 3, 4])
    nevents = rnd.randint(1, 80)
    span = rnd.choice([5, 20, 40, 60, 200])
    keyvals = rnd.sample(KEYS[ktype], rnd.randint(1, len(KEYS[ktype])))
    # Times: mostly increasing, some duplicates, some far back, some
    # near a recent event (within a few gaps or sizes, before or after),
    # on its key: they extend fired windows and sessions, forwards and
    # backwards.  Or, in some cases, any order at all.
    shuffled = rnd.random() < 0.2
    events = []
    t = 0.0

    def add(ts, k):
        ms = int(ts * 1000) if rnd.random() < 0.5 else int(ts) * 1000
        events.append((len(events) + 1, rnd.randrange(nparts), k, rnd.randint(1, 100), ms))

    def any_key():
        return 'NULL' if rnd.random() < 0.08 else rnd.choice(keyvals)

    while len(events) < nevents:
        r = rnd.random()
        if shuffled:
            add(rnd.uniform(0, span), any_key())
        elif r < 0.1 and events:
            add(rnd.choice(events)[4] / 1000.0, any_key())   # duplicate time
        elif r < 0.2:
            add(max(0.0, t - rnd.uniform(0, span)), any_key())  # far back
        elif r < 0.5 and events:
            # a burst near a recent event, on its key, before or after it
            near = rnd.choice(events[-6:])
            for _ in range(rnd.randint(1, 3)):
                add(max(0.0, near[4] / 1000.0 + rnd.uniform(-2, 1) * (gap or size)), near[2])
        else:
            t += rnd.uniform(0, 2.0 * span / nevents)
            add(t, any_key())
    del events[nevents:]
    p_advance = rnd.choice([0.0, 0.05, 0.3, 1.0, 1.0])
    p_checkpoint = rnd.choice([0.0, 0.03, 0.1])
    p_restore = rnd.choice([0.0, 0.1, 0.3])
    rseed = rnd.randint(0, 2 ** 31 - 1)

    return dict(ktype=ktype, kind=kind, size=size, slide=slide, gap=gap,
                lateness=lateness, ooo=ooo, nparts=nparts, nevents=nevents,
                events=events, p_advance=p_advance, p_checkpoint=p_checkpoint,
                p_restore=p_restore, rseed=rseed)


def main():
    cases = int(sys.argv[1])
    seed = int(sys.argv[2])
    rnd = random.Random(seed)
    kinds = sys.argv[3].split(',') if len(sys.argv) > 3 and sys.argv[3] else \
        ['tumble', 'hop', 'session']
    ktypes = sys.argv[4].split(',') if len(sys.argv) > 4 and sys.argv[4] else list(KEYS)
    out = sys.stdout
    out.write("SET timezone = 'UTC';\n")
    for c in range(1, cases + 1):
        case = gen_case(rnd, kinds, ktypes)
        ktype, kind, size, slide, gap = (case[x] for x in ('ktype', 'kind', 'size', 'slide', 'gap'))
        lateness, ooo, nparts, nevents, events = (case[x] for x in ('lateness', 'ooo', 'nparts', 'nevents', 'events'))
        p_advance, p_checkpoint, p_restore, rseed = (case[x] for x in ('p_advance', 'p_checkpoint', 'p_restore', 'rseed'))
        desc = ("case %d: %s key %s, size %s slide %s gap %s lateness %s ooo %s, %d events on %d "
                "partitions, advance %s checkpoint %s restore %s seed %d"
                % (c, kind, ktype, size, slide, gap, lateness, ooo, nevents, nparts,
                   p_advance, p_checkpoint, p_restore, rseed))
        out.write("BEGIN;\n")
        out.write("SELECT streamflink.create_source('src', brokers => '127.0.0.1:1', topic => 't', "
                  "columns => 'k %s, v int, ts timestamptz', event_time => 'ts', "
                  "max_out_of_orderness => %s) \\g /dev/null\n"
                  % (ktype.replace("'", "''"), interval(ooo)))
        if kind == 'session':
            pargs = "gap => %s" % interval(gap)
        elif kind == 'hop':
            pargs = "size => %s, slide => %s" % (interval(size), interval(slide))
        else:
            pargs = "size => %s" % interval(size)
        out.write("SELECT streamflink.create_window_pipeline('d', 'src', 'k', '%s', "
                  "'count(*) AS n, sum(v) AS s', 'd_out', %s, allowed_lateness => %s) \\g /dev/null\n"
                  % (kind, pargs, interval(lateness)))
        out.write("CREATE TEMP TABLE ev (ord int, part int, k %s, v int, ts timestamptz) ON COMMIT DROP;\n"
                  % ktype)
        out.write("INSERT INTO ev VALUES\n")
        out.write(",\n".join(
            "(%d, %d, %s, %d, timestamptz '2024-01-01 00:00:00+00' + %d * interval '1 millisecond')"
            % e for e in events))
        out.write(";\n")
        out.write("SELECT '%s: ' || coalesce(diff_check('%s', %s, %s, %s, %s, %d, %s, %s, %s), 'ok');\n"
                  % (desc, kind,
                     interval(size) if size else 'NULL', interval(slide) if slide else 'NULL',
                     interval(gap) if gap else 'NULL', interval(lateness), rseed,
                     p_advance, p_checkpoint, p_restore))
        out.write("ROLLBACK;\n")


if __name__ == '__main__':
    main()
