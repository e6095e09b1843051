#!/usr/bin/env python3
"""Random against time-ordered event ids on SQLite: the unique index, or a memory tail of keys
with two sorted levels (docs/benchmarks.md, "Random client ids").

An experiment outside the service, to decide a layout before building it:

  index  the events table's UNIQUE (scope_id, event_id), as event-service has it
  tail   no unique index: the keys of the newest --tail events live in memory (the events after
         the last flush's seq could rebuild them), are flushed sorted into a small key table,
         which is merged into a large one every --merge keys; a batch is checked against all
         three before its new events are inserted

Each layout loads --load events with random ids into an empty database (once; a second run on
the same file measures on what is there), then alternates --per-block batches of 1000 random ids
and as many of time-ordered ids, for --blocks blocks a side, the order swapped every block, and
prints the rates as JSON. Commits are synced (synchronous = FULL) as the service's are before it
answers. Use a disk folder, not tmpfs:

  python3 bench/experiments/key_tail.py index --load 4000000 /var/tmp/index.db
  python3 bench/experiments/key_tail.py tail --load 4000000 /var/tmp/tail.db
"""
import argparse
import json
import os
import random
import sqlite3
import sys
import time

INSERT = (
    "INSERT INTO events (scope_id, event_id, event_name, external_customer_id, ts, properties,"
    " source, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("layout", choices=["index", "tail"])
    p.add_argument("path")
    p.add_argument("--load", type=int, default=2_000_000)
    p.add_argument("--tail", type=int, default=100_000)
    p.add_argument("--merge", type=int, default=500_000)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--per-block", type=int, default=50)
    a = p.parse_args()

    fresh = not os.path.exists(a.path)
    db = sqlite3.connect(a.path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA cache_size = -32768")  # the service's writer cache, 32 MiB
    if fresh:
        create(db, unique=a.layout == "index")
    store = IndexStore(db) if a.layout == "index" else TailStore(db, a.tail, a.merge)
    gen = Ids()

    if fresh:
        started = time.perf_counter()
        ts = int(time.time() * 1e6) - 30 * 86_400 * 10**6
        for _ in range(a.load // 1000):
            store.insert(gen.batch(gen.random, ts))
            ts += 1000
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"loaded {a.load} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        store.spent = dict.fromkeys(store.spent, 0)

    rates = {"random": [], "ordered": []}
    ts = int(time.time() * 1e6)
    for block in range(a.blocks):
        order = ["random", "ordered"] if block % 2 == 0 else ["ordered", "random"]
        for kind in order:
            make = gen.random if kind == "random" else gen.ordered
            started = time.perf_counter()
            for _ in range(a.per_block):
                store.insert(gen.batch(make, ts))
                ts += 1000
            rates[kind].append(a.per_block * 1000 / (time.perf_counter() - started))
    r = sum(rates["random"]) / a.blocks
    o = sum(rates["ordered"]) / a.blocks
    print(json.dumps({
        "layout": a.layout,
        "stored": db.execute("SELECT count(*) FROM events").fetchone()[0],
        "random_per_s": round(r),
        "ordered_per_s": round(o),
        "ratio": round(r / o, 3),
        "block_ratios": [round(x / y, 2) for x, y in zip(rates["random"], rates["ordered"])],
        "spent": {k: round(v, 1) for k, v in store.spent.items()},
    }))


def create(db, unique):
    idem = ", CONSTRAINT idem UNIQUE (scope_id, event_id)" if unique else ""
    db.executescript(f"""
        CREATE TABLE events (seq INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL,
          event_id TEXT NOT NULL, event_name TEXT NOT NULL, external_customer_id TEXT NOT NULL,
          ts INTEGER NOT NULL, properties TEXT NOT NULL, source TEXT NOT NULL,
          ingested_at INTEGER NOT NULL{idem}) STRICT;
        CREATE INDEX by_time ON events (scope_id, ts DESC, seq DESC);
        CREATE INDEX by_name ON events (scope_id, event_name, ts);
        CREATE INDEX by_customer ON events (scope_id, external_customer_id, ts DESC, seq DESC);
        CREATE TABLE keys_small (scope_id INTEGER, event_id TEXT, seq INTEGER,
          PRIMARY KEY (scope_id, event_id)) WITHOUT ROWID;
        CREATE TABLE keys_large (scope_id INTEGER, event_id TEXT, seq INTEGER,
          PRIMARY KEY (scope_id, event_id)) WITHOUT ROWID;
        CREATE TABLE flushed (seq INTEGER NOT NULL);
        INSERT INTO flushed VALUES (0);
    """)


class Ids:
    """Event ids and rows like the benchmark's: 1000 customers, 50 users, one event name."""

    def __init__(self):
        self.rnd = random.Random(os.urandom(16))
        self.counter = 0

    def random(self):
        return "%032x" % self.rnd.getrandbits(128)

    def ordered(self):
        self.counter += 1
        return "%016x%016x" % (int(time.time() * 1e6), self.counter)

    def batch(self, make, ts):
        now = int(time.time() * 1e6)
        return [
            (1, make(), "api_call", f"cus_{self.rnd.randrange(1000)}", ts + k,
             '{"tokens":%d,"region":"eu","user":{"id":"u%d"}}'
             % (self.rnd.randrange(5000), self.rnd.randrange(50)),
             "bench", now)
            for k in range(1000)
        ]


class IndexStore:
    def __init__(self, db):
        self.db = db
        self.spent = {}

    def insert(self, rows):
        self.db.execute("BEGIN")
        self.db.executemany(INSERT + " ON CONFLICT DO NOTHING", rows)
        self.db.execute("COMMIT")


class TailStore:
    def __init__(self, db, tail, merge):
        self.db, self.tail_max, self.merge_at = db, tail, merge
        # A real store would rebuild this from the events after `flushed.seq` at start.
        self.tail = {}
        self.spent = {"flushes": 0, "flush_s": 0.0, "merges": 0, "merge_s": 0.0}

    def stored(self, table, ids):
        marks = ",".join("?" * len(ids))
        q = f"SELECT event_id FROM {table} WHERE scope_id = 1 AND event_id IN ({marks})"
        return {r[0] for r in self.db.execute(q, ids)}

    def insert(self, rows):
        ids = [r[1] for r in rows]
        self.db.execute("BEGIN")
        seen = {i for i in ids if i in self.tail}
        seen |= self.stored("keys_small", ids) | self.stored("keys_large", ids)
        new, batch = [], set()
        for r in rows:
            if r[1] not in seen and r[1] not in batch:
                batch.add(r[1])
                new.append(r)
        self.db.executemany(INSERT, new)
        last = self.db.execute("SELECT max(seq) FROM events").fetchone()[0]
        self.db.execute("COMMIT")
        first = last - len(new) + 1
        for k, r in enumerate(new):
            self.tail[r[1]] = first + k
        if len(self.tail) >= self.tail_max:
            self.flush(last)

    def flush(self, last):
        started = time.perf_counter()
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO keys_small VALUES (1, ?, ?)", sorted(self.tail.items()))
        self.db.execute("UPDATE flushed SET seq = ?", (last,))
        self.db.execute("COMMIT")
        self.tail.clear()
        self.spent["flushes"] += 1
        self.spent["flush_s"] += time.perf_counter() - started
        if self.db.execute("SELECT count(*) FROM keys_small").fetchone()[0] >= self.merge_at:
            started = time.perf_counter()
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO keys_large SELECT * FROM keys_small ORDER BY scope_id, event_id")
            self.db.execute("DELETE FROM keys_small")
            self.db.execute("COMMIT")
            self.spent["merges"] += 1
            self.spent["merge_s"] += time.perf_counter() - started


if __name__ == "__main__":
    main()
