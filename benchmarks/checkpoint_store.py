"""The checkpoint database's costs (store.py): what tests/test_store.py pins as behaviour, timed.

    python benchmarks/checkpoint_store.py            # 1,000,000 messageIds (about half a minute)
    python benchmarks/checkpoint_store.py --rows 10000000

Prints the time to commit batches of 100,000 messageIds, lookups of known and unknown ids as the
table grows, the cost of one save (a commit of a second's worth of rows) with synchronous FULL and
NORMAL, and the size on disk; then lookups side by side with the page cache gspx gives the database
(schema.cache_kib: it grows with the file) and with the fixed 16 MiB it had before, each on a fresh
connection warmed by as many lookups as it is timed on, then a save's cost; the two taken in turn,
best of 3.
"""

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gspx_cli.state import schema  # noqa: E402
from gspx_cli.state.store import CheckpointStore  # noqa: E402

BATCH = 100_000  # messageIds per commit while filling: a long run's backlog, far above one second's worth
SAVE_ROWS = 2_000  # rows per save in a live run: about one second at PX's usual rate limits
LOOKUPS = 20_000


def message_id(i):
    """The i-th of a fixed series of random-looking UUIDs: real messageIds land all over the B-tree."""
    return str(uuid.UUID(bytes=hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).digest()))


def fill(store, rows):
    """Commit rows messageIds in batches; print the time per batch now and then."""
    started = time.monotonic()
    for start in range(0, rows, BATCH):
        t = time.monotonic()
        for i in range(start, min(rows, start + BATCH)):
            store.add_delivered(message_id(i), f"dump.ndjson:{i + 1}")
        store.commit({})
        if (start + BATCH) % 1_000_000 == 0:
            print(f"| batch ending at {start + BATCH:>11,} | {time.monotonic() - t:.2f} s per {BATCH:,} |")
    return time.monotonic() - started


def lookups(store, rows):
    """Microseconds per delivered_at of a known id and of an unknown one."""
    known = [message_id(random.randrange(rows)) for _ in range(LOOKUPS)]
    unknown = [message_id(rows + i) for i in range(LOOKUPS)]
    out = []
    for ids in (known, unknown):
        t = time.monotonic()
        for mid in ids:
            store.delivered_at(mid)
        out.append((time.monotonic() - t) / LOOKUPS * 1e6)
    return out


def cache_costs(db, rows, kib, base):
    """(known, unknown) microseconds per lookup and milliseconds per save (ids from base on) on a fresh
    store whose page cache is kib KiB (None: gspx's)."""
    with CheckpointStore(str(db)) as store:
        if kib is not None:
            store._con.execute(f"PRAGMA cache_size = -{kib}")
        lookups(store, rows)  # warm the cache as a run's earlier lookups would
        hit, miss = lookups(store, rows)
        if kib is not None:  # a commit sizes gspx's cache again: keep the one compared
            store._con.execute(f"PRAGMA cache_size = -{kib}")
        return hit, miss, save_cost(store, "FULL", base, pin_kib=kib)


def save_cost(store, synchronous, base, pin_kib=None):
    """Milliseconds per commit of SAVE_ROWS new ids and one input row (pin_kib: the page cache kept at
    that size, not the one each commit sizes)."""
    store._con.execute(f"PRAGMA synchronous = {synchronous}")
    t, n = time.monotonic(), 20
    for k in range(n):
        for i in range(SAVE_ROWS):
            store.add_delivered(message_id(base + k * SAVE_ROWS + i), "live.ndjson:1")
        store.commit({"live.ndjson": {"settled_lines": k}})
        if pin_kib is not None:
            store._con.execute(f"PRAGMA cache_size = -{pin_kib}")
    return (time.monotonic() - t) / n * 1000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gspx-store-"))
    try:
        db = tmp / "run.ckpt"
        with CheckpointStore(str(db)) as store:
            took = fill(store, a.rows)
            hit, miss = lookups(store, a.rows)
            full = save_cost(store, "FULL", a.rows + 1)
            normal = save_cost(store, "NORMAL", a.rows + 1_000_000)
        size = sum(p.stat().st_size for p in tmp.iterdir())
        ours = schema.cache_kib(db.stat().st_size)
        settings = {f"{ours / 1024:.1f} MiB (gspx: 1/{schema.CACHE_SHARE} of the file)": None,
                    "16 MiB (fixed, before)": 16 * 1024}
        base = a.rows + 2_000_000  # past the ids save_cost used above
        rounds = []
        for _ in range(3):
            round_ = {}
            for name, kib in settings.items():
                round_[name] = cache_costs(db, a.rows, kib, base)
                base += 20 * SAVE_ROWS
            rounds.append(round_)
        side = [(name, [min(r[name][i] for r in rounds) for i in (0, 1, 2)]) for name in settings]  # best of 3
        print(f"| {a.rows:,} messageIds | filled in {took:.1f} s | {size / 1e6:,.0f} MB on disk |")
        print(f"| delivered_at | {hit:.1f} µs known, {miss:.1f} µs unknown |")
        print(f"| one save of {SAVE_ROWS:,} rows | {full:.1f} ms synchronous=FULL, {normal:.1f} ms NORMAL |")
        print()
        print(f"| page cache, {a.rows:,} messageIds | known id | unknown id | one save of {SAVE_ROWS:,} rows |")
        print("| --- | ---: | ---: | ---: |")
        for name, (hit, miss, save) in side:
            print(f"| {name} | {hit:.1f} µs | {miss:.1f} µs | {save:.1f} ms |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
