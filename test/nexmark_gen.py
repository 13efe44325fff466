#!/usr/bin/env python3
"""nexmark_gen.py: a Nexmark event generator for test/bench/nexmark.sh.

Usage: nexmark_gen.py [--events N] [--rate R] [--out-of-order-ms D]
                      [--partitions P] [--seed S] [--bids-csv FILE]
                      [--hot-auction-ratio A] [--hot-bidder-ratio B]
                      [--hot-seller-ratio C] [--base-time ISO]

Writes N events to stdout, one message a line as test/produce reads it:
"PARTITION<TAB>JSON".  The model is Nexmark's (Beam's and Flink's
generator: GeneratorConfig, PersonGenerator, AuctionGenerator,
BidGenerator), reimplemented here:

  - Event number n is a person, an auction or a bid by n mod 50: offset 0
    a person, 1-3 an auction, 4-49 a bid (the 1:3:46 proportion).
    Persons and auctions get consecutive ids from 1000 (FIRST_PERSON_ID,
    FIRST_AUCTION_ID).
  - A bid's auction is, with probability 1 - 1/hot_auction_ratio (default
    2), the "hot" auction: the first of the last 100 auctions
    (HOT_AUCTION_RATIO); else a random one of the 100 auctions still in
    flight plus 10 ahead (numInFlightAuctions, AUCTION_ID_LEAD).  Its
    bidder is, with probability 1 - 1/hot_bidder_ratio (default 4), the hot
    bidder: the second of the last 100 persons (HOT_BIDDER_RATIO); else a
    random one of the 1000 active persons plus 10 ahead (numActivePeople,
    PERSON_ID_LEAD).  An auction's seller likewise (hot_seller_ratio 4,
    the first of the last 100 persons).  Prices are
    round(10^(U*6) * 100) as Nexmark's PriceGenerator.
  - Event n's time is base + n / rate seconds (rate: events per second of
    event time, all kinds together, default 10,000); the stream is
    emitted in the order of event time plus a random delay uniform in
    [0, D] ms (default 500), so an event is at most D ms older than any
    event emitted before it: a source with max_out_of_orderness D never
    finds it late.  Messages go to the partitions in turn (message i to
    partition i mod P).
  - One topic for all three kinds, with Nexmark's discriminator
    event_type (0 person, 1 auction, 2 bid) and the kind's fields flat at
    the top level (a JSON source matches columns by key and gives NULL for
    a missing one, so one source with the union of the columns reads all
    three; the watermark is the whole stream's, as in Nexmark).  Not
    generated: Nexmark's "extra" padding field (the test broker keeps at
    most 5 MiB per partition).

--bids-csv FILE also writes the bids as CSV (auction, bidder, price,
channel, date_time), the independent copy SQL checks the pipelines'
answers against.  Deterministic for a given seed.
"""
import argparse
import calendar
import datetime
import heapq
import random
import sys
import time

PROPORTION = 50         # person 1, auction 3, bid 46
PERSON_PROPORTION = 1
AUCTION_PROPORTION = 3
FIRST_PERSON_ID = 1000
FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID = 10
NUM_CATEGORIES = 5
HOT_AUCTION_RATIO = 100
HOT_SELLER_RATIO = 100
HOT_BIDDER_RATIO = 100
NUM_ACTIVE_PEOPLE = 1000
NUM_IN_FLIGHT_AUCTIONS = 100
PERSON_ID_LEAD = 10
AUCTION_ID_LEAD = 10

FIRST_NAMES = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"]
LAST_NAMES = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"]
US_STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
US_CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond",
             "Seattle", "Kent", "Cheyenne"]
CHANNELS = ["Google", "Facebook", "Baidu", "Apple"]


def last_base0_person_id(n):
    epoch, offset = divmod(n, PROPORTION)
    if offset >= PERSON_PROPORTION:
        offset = PERSON_PROPORTION - 1
    return epoch * PERSON_PROPORTION + offset


def last_base0_auction_id(n):
    epoch, offset = divmod(n, PROPORTION)
    if offset < PERSON_PROPORTION:
        epoch -= 1
        offset = AUCTION_PROPORTION - 1
    elif offset >= PERSON_PROPORTION + AUCTION_PROPORTION:
        offset = AUCTION_PROPORTION - 1
    else:
        offset -= PERSON_PROPORTION
    return epoch * AUCTION_PROPORTION + offset


def main():
    ap = argparse.ArgumentParser(description="Nexmark events as PARTITION<TAB>JSON lines")
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--rate", type=float, default=10000.0, help="events per second of event time")
    ap.add_argument("--out-of-order-ms", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bids-csv")
    ap.add_argument("--hot-auction-ratio", type=int, default=2)
    ap.add_argument("--hot-bidder-ratio", type=int, default=4)
    ap.add_argument("--hot-seller-ratio", type=int, default=4)
    ap.add_argument("--base-time", default="2024-01-01T00:00:00")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    rand, randrange, choice = rng.random, rng.randrange, rng.choice
    base_ms = calendar.timegm(datetime.datetime.fromisoformat(a.base_time).timetuple()) * 1000
    out = sys.stdout
    csv = open(a.bids_csv, "w") if a.bids_csv else None
    parts = a.partitions
    delay = a.out_of_order_ms

    sec_cache = [None, ""]

    def iso(ms):
        s, frac = divmod(ms, 1000)
        if s != sec_cache[0]:
            sec_cache[0] = s
            sec_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        return "%s.%03dZ" % (sec_cache[1], frac)

    def price():
        return round(10.0 ** (rand() * 6.0) * 100.0)

    def next_person(n):
        # a random active person, or one of the next few not yet created
        people = last_base0_person_id(n) + 1
        active = min(people, NUM_ACTIVE_PEOPLE)
        return people - active + randrange(active + PERSON_ID_LEAD)

    def next_auction(n):
        hi = last_base0_auction_id(n)
        lo = max(hi - NUM_IN_FLIGHT_AUCTIONS, 0)
        return lo + randrange(hi - lo + 1 + AUCTION_ID_LEAD)

    def event(n, ts):
        offset = n % PROPORTION
        dt = iso(ts)
        if offset < PERSON_PROPORTION:
            pid = last_base0_person_id(n) + FIRST_PERSON_ID
            name = "%s %s" % (choice(FIRST_NAMES), choice(LAST_NAMES))
            return ('{"event_type":0,"id":%d,"name":"%s","email_address":"%s@%s.com",'
                    '"credit_card":"%04d %04d %04d %04d","city":"%s","state":"%s","date_time":"%s"}'
                    % (pid, name, name.replace(" ", "."), choice(LAST_NAMES).lower(),
                       randrange(10000), randrange(10000), randrange(10000), randrange(10000),
                       choice(US_CITIES), choice(US_STATES), dt))
        if offset < PERSON_PROPORTION + AUCTION_PROPORTION:
            aid = last_base0_auction_id(n) + FIRST_AUCTION_ID
            if randrange(a.hot_seller_ratio) > 0:
                seller = (last_base0_person_id(n) // HOT_SELLER_RATIO) * HOT_SELLER_RATIO
            else:
                seller = next_person(n)
            initial = price()
            return ('{"event_type":1,"id":%d,"item_name":"item-%d","description":"auction %d",'
                    '"initial_bid":%d,"reserve":%d,"date_time":"%s","expires":"%s",'
                    '"seller":%d,"category":%d}'
                    % (aid, aid, aid, initial, initial + price(), dt,
                       iso(ts + 2000 + randrange(20000)), seller + FIRST_PERSON_ID,
                       FIRST_CATEGORY_ID + randrange(NUM_CATEGORIES)))
        if randrange(a.hot_auction_ratio) > 0:
            auction = (last_base0_auction_id(n) // HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        else:
            auction = next_auction(n)
        auction += FIRST_AUCTION_ID
        if randrange(a.hot_bidder_ratio) > 0:
            bidder = (last_base0_person_id(n) // HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        else:
            bidder = next_person(n)
        bidder += FIRST_PERSON_ID
        p = price()
        ch = randrange(len(CHANNELS))
        if csv:
            csv.write("%d,%d,%d,%s,%s\n" % (auction, bidder, p, CHANNELS[ch], dt))
        return ('{"event_type":2,"auction":%d,"bidder":%d,"price":%d,"channel":"%s",'
                '"url":"https://www.nexmark.com/item.htm?query=1&channel_id=%d","date_time":"%s"}'
                % (auction, bidder, p, CHANNELS[ch], ch, dt))

    # Emit in order of event time + delay: a heap of (emit time, n, line).
    heap = []
    emitted = 0
    w = out.write
    step = 1000.0 / a.rate
    for n in range(a.events):
        ts = base_ms + int(n * step)
        while heap and heap[0][0] <= ts:
            w("%d\t%s\n" % (emitted % parts, heapq.heappop(heap)[2]))
            emitted += 1
        heapq.heappush(heap, (ts + (randrange(delay + 1) if delay > 0 else 0), n, event(n, ts)))
    while heap:
        w("%d\t%s\n" % (emitted % parts, heapq.heappop(heap)[2]))
        emitted += 1
    if csv:
        csv.close()


if __name__ == "__main__":
    main()
