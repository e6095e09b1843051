#!/usr/bin/env python3
"""A `ListEvents` page's query through SQLite alone, on a database `tollgate-bench scale` kept
(`--keep DIR`), to tell what its latency owes to the disk (docs/benchmarks.md, "Read tails").

Runs the query the service runs for a page of 100 (newest first) for --seconds, over random
one-hour ranges of the loaded 30 days (`hour`) or random customers (`customer`), on one read-only
connection with an 8 MiB page cache, and prints the latencies beside what the machine read from
disk and the CPU time its hypervisor took meanwhile (/proc/vmstat, /proc/stat). Run it twice:
the first pass reads what the page cache no longer holds, the second what the first brought in.

  target/release/tollgate-bench scale --events 10000000 --keep /var/tmp/scale
  python3 bench/experiments/cold_reads.py /var/tmp/scale/events.db hour
  python3 bench/experiments/cold_reads.py /var/tmp/scale/events.db hour
"""
import argparse
import json
import random
import sqlite3
import time

COLUMNS = "seq, event_id, event_name, external_customer_id, ts, properties, source, ingested_at"
HOUR = 3600 * 1_000_000  # ts is in microseconds


def read_kib():
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("pgpgin "):
                return int(line.split()[1])
    return 0


def ticks():
    """(steal, all) clock ticks of every core."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return fields[7], sum(fields)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("kind", choices=["hour", "customer"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=1000, help="as the scale run's --customers")
    args = parser.parse_args()

    db = sqlite3.connect(f"file:{args.database}?mode=ro", uri=True)
    db.execute("PRAGMA cache_size = -8192")
    scope, start = db.execute("SELECT scope_id, min(ts) FROM events").fetchone()
    rng = random.Random(args.seed)

    latencies = []
    read0, (steal0, all0) = read_kib(), ticks()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        if args.kind == "hour":
            since = start + rng.randrange(30 * 24) * HOUR
            sql = "AND ts >= ? AND ts < ?"
            binds = (scope, since, since + HOUR)
        else:
            sql = "AND external_customer_id = ?"
            binds = (scope, "cus_%04d" % rng.randrange(args.customers))
        t = time.perf_counter()
        rows = db.execute(
            f"SELECT {COLUMNS} FROM events WHERE scope_id = ? {sql} "
            "ORDER BY ts DESC, seq DESC LIMIT 100",
            binds,
        ).fetchall()
        latencies.append(time.perf_counter() - t)
        if not rows:
            raise SystemExit(f"an empty page for {binds}")
    steal1, all1 = ticks()

    latencies.sort()
    at = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3, 3)
    print(json.dumps({
        "kind": args.kind,
        "queries": len(latencies),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(latencies[-1] * 1e3, 3),
        "disk_read_mib": round((read_kib() - read0) / 1024, 1),
        "steal_share": round((steal1 - steal0) / max(1, all1 - all0), 3),
    }))


if __name__ == "__main__":
    main()
