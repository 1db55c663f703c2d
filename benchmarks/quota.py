"""Requests per event, and what the checkpoint costs (issue 17): `python benchmarks/quota.py [--events N]`.

Makes a realistic backfill: 70% track, 20% identify, 10% group; each user identified on about 5
sessions, with the same traits 4 times out of 5; 80% of users and accounts already in PX (the
stand-in, seeded); 2% of lines repeated (same messageId) at random distances further on. Then, side
by side in one run, against the local stand-in:

1. requests per event: the reference destination (2 per identify, 4 per group, every line sent),
   gspx before issue 17 (the commit BEFORE, from a git worktree, when the history is there), gspx now
   with update-first and with create-first, and the floor (1 per custom event, 1 per changed upsert
   of an existing object, 2 for a new one, 0 for an unchanged write or a duplicate);
2. a rerun of the same input with the same --checkpoint (requests made: 0 is the target), and a
   dump overlapping the first by half (requests: only the new half's);
3. the checkpoint's cost: delivery rate with and without --checkpoint (latency 20 ms, rate 200/s),
   and with 10 million messageIds in it (--big): its size on disk and the time a rerun of
   1 million of them takes to skip;
4. without a checkpoint, the run's memory of the most recent 1,000,000 messageIds: microseconds
   per add below the limit and past it (the oldest forgotten), and the bytes it holds an id, now and
   as it was (a dict and a deque).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from gspx_cli.jsonio import digest  # noqa: E402
from gspx_cli.sandbox import FakePX, SandboxServer  # noqa: E402

BEFORE = "c8eb35e"  # the last commit before issue 17 (GET-first upserts, no dedupe)
KEY = "bench-key"
TAG = "AP-QUOTA-1"


def make_backfill(n, seed=17):
    """The events of a backfill as described above; returns (events, users, accounts)."""
    rng = random.Random(seed)
    users = [f"user-{i:05d}" for i in range(max(1, n // 25))]
    accounts = [f"acct-{i:04d}" for i in range(max(1, len(users) // 10))]
    account_of = {u: accounts[i % len(accounts)] for i, u in enumerate(users)}
    traits = {u: {"email": f"{u}@example.com", "plan": rng.choice(["free", "pro"])} for u in users}
    events, seq = [], 0
    # each user: 5 sessions of identify + tracks (and a group now and then), interleaved by time
    sessions = []
    for u in users:
        for s in range(5):
            sessions.append((rng.random() * 1e6, u, s))
    sessions.sort()
    for _, u, s in sessions:
        if rng.random() < 0.2:  # 1 time in 5 the traits changed since the last login
            traits[u] = {**traits[u], "title": f"t{rng.randrange(10**6)}"}
        seq += 1
        events.append({"type": "identify", "userId": u, "messageId": f"m{seq}", "traits": dict(traits[u])})
        for _ in range(rng.choice([3, 3, 4, 4, 4])):
            seq += 1
            events.append({"type": "track", "userId": u, "messageId": f"m{seq}", "event": "Feature Used",
                           "properties": {"n": seq}})
        if rng.random() < 0.5:
            a = account_of[u]
            seq += 1
            events.append({"type": "group", "userId": u, "groupId": a, "messageId": f"m{seq}",
                           "traits": {"name": f"Account {a}", "plan": "pro"}})
    for i in sorted(rng.sample(range(len(events)), len(events) // 50), reverse=True):  # 2% repeated
        events.insert(min(len(events), i + rng.randrange(1, 2000)), events[i])
    return events, users, accounts


def reference_requests(events):
    """RudderStack's destination: GET then write per identify, 4 per group, every line sent."""
    return sum({"identify": 2, "group": 4, "track": 1}[e["type"]] for e in events)


def floor_requests(events, existing):
    """1 per custom event, 1 per changed upsert of an existing object, 2 for a new one, 0 for an
    unchanged write or a duplicate; the group's user lookup is not counted."""
    exists, last, seen, total = set(existing), {}, set(), 0
    for e in events:
        if e["messageId"] in seen:
            continue
        seen.add(e["messageId"])
        if e["type"] == "track":
            total += 1
            continue
        writes = [(("user", e["userId"]), e["traits"])] if e["type"] == "identify" else [
            (("account", e["groupId"]), e["traits"]), (("user", e["userId"]), {"accountId": e["groupId"]})]
        for obj, body in writes:
            d = digest(body)
            if last.get(obj) == d:
                continue
            total += 1 if obj in exists else 2
            exists.add(obj)
            last[obj] = d
    return total


def write_events(path, events):
    with open(path, "w") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")


def config(tmp, base_url, extra=""):
    path = tmp / "gspx.yaml"
    path.write_text(f"product_tag_key: {TAG}\nbase_url: {base_url}\ndelivery:\n  concurrency: 16\n"
                    f"  rate_limit: 5000\n  max_retries: 5\n  timeout: 10\n{extra}")
    return path


def run_gspx(src, cfg, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(GSPX_API_KEY=KEY, PYTHONPATH=str(src))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "-q", "-c", str(cfg), *map(str, args)],
                          env=env, capture_output=True, text=True, cwd=str(src))
    return proc.returncode, time.monotonic() - started, proc.stderr


def against_stand_in(src, tmp, events_path, existing_users, existing_accounts, *args, latency=0.0, extra=""):
    """(requests the stand-in received, exit code, seconds) of one gspx run on a freshly seeded stand-in."""
    px = FakePX(latency=latency)
    for u in existing_users:
        px.users[u] = {"identifyId": u}
    for a in existing_accounts:
        px.accounts[a] = {"id": a, "name": a}
    with SandboxServer(px) as server:
        code, took, err = run_gspx(src, config(tmp, server.base_url, extra), *args, events_path)
    if code not in (0, 1):
        print(f"  (exit {code}: {err[-300:]})")
    return len(px.requests), code, took, px


def before_tree(tmp, rev=BEFORE):
    """A worktree of rev (default BEFORE), or None when the history is not there."""
    dest = tmp / "before"
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(dest), rev],
                       check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return dest


def drop_tree(path):
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def figure_1(tmp, n):
    events, users, accounts = make_backfill(n)
    rng = random.Random(3)
    existing_users = [u for u in users if rng.random() < 0.8]
    existing_accounts = [a for a in accounts if rng.random() < 0.8]
    path = tmp / "backfill.ndjson"
    write_events(path, events)
    existing = [("user", u) for u in existing_users] + [("account", a) for a in existing_accounts]
    counts = {"reference destination": reference_requests(events)}
    tree = before_tree(tmp)
    if tree is not None:
        counts[f"gspx before ({BEFORE})"] = against_stand_in(tree, tmp, path, existing_users, existing_accounts)[0]
        drop_tree(tree)
    new, _, _, px_new = against_stand_in(ROOT, tmp, path, existing_users, existing_accounts)
    counts["gspx now, update-first"] = new
    counts["gspx now, create-first"] = against_stand_in(ROOT, tmp, path, existing_users, existing_accounts,
                                                        "--upsert", "create-first")[0]
    counts["floor"] = floor_requests(events, existing)
    print(f"\n1. requests per event: {len(events):,} events ({sum(e['type'] == 'track' for e in events):,} track, "
          f"{sum(e['type'] == 'identify' for e in events):,} identify, {sum(e['type'] == 'group' for e in events):,} "
          f"group; {len(events) - len({e['messageId'] for e in events}):,} repeated lines), "
          f"{len(users):,} users, {len(accounts):,} accounts, 80% already in PX\n")
    print("| run | requests | per event | vs reference |")
    print("| --- | ---: | ---: | ---: |")
    for name, count in counts.items():
        print(f"| {name} | {count:,} | {count / len(events):.3f} | {count / counts['reference destination']:.2f} |")
    return events, existing_users, existing_accounts


def figure_2(tmp, events, existing_users, existing_accounts):
    half = len(events) // 2
    first, second = tmp / "first.ndjson", tmp / "second.ndjson"
    write_events(first, events)
    # a re-export that overlaps the first dump by half: its second half, then as many new events
    fresh = [{**e, "messageId": e["messageId"] + "-new", **({"properties": {"n": -i}} if e["type"] == "track" else {})}
             for i, e in enumerate(events[:half])]
    write_events(second, events[half:] + fresh)
    ckpt = tmp / "rerun.db"
    px = FakePX()
    for u in existing_users:
        px.users[u] = {"identifyId": u}
    for a in existing_accounts:
        px.accounts[a] = {"id": a, "name": a}
    with SandboxServer(px) as server:
        cfg = config(tmp, server.base_url)
        run_gspx(ROOT, cfg, "--checkpoint", ckpt, first)
        before = len(px.requests)
        run_gspx(ROOT, cfg, "--checkpoint", ckpt, first)
        rerun = len(px.requests) - before
        before = len(px.requests)
        run_gspx(ROOT, cfg, "--checkpoint", ckpt, second)
        overlap = len(px.requests) - before
        custom = sum(1 for r in px.requests[before:] if r.path.endswith("/events/custom"))
    print("\n2. reruns with the same --checkpoint\n")
    print("| run | requests |")
    print("| --- | ---: |")
    print(f"| the same input again | {rerun:,} |")
    print(f"| a dump overlapping the first by half ({len(events) - half:,} old + {len(fresh):,} new lines) | "
          f"{overlap:,}, of which {custom:,} custom events (the new half holds "
          f"{len({e['messageId'] for e in fresh if e['type'] == 'track'}):,} distinct new ones) |")


def figure_3(tmp, n, big):
    events = [{"type": "track", "userId": f"u{i % 200}", "event": "E", "messageId": f"rate-{i}",
               "properties": {"n": i}} for i in range(n)]
    path = tmp / "rate.ndjson"
    write_events(path, events)
    rows = []
    for label, extra in (("without --checkpoint", ()), ("with --checkpoint", ("--checkpoint", tmp / "rate.db"))):
        px = FakePX(latency=0.02)
        with SandboxServer(px) as server:
            code, took, err = run_gspx(ROOT, config(tmp, server.base_url), *extra, path)
        rows.append((label, len(px.requests) / took))
    print("\n3. the checkpoint's cost\n")
    print("| run | requests/s | ratio |")
    print("| --- | ---: | ---: |")
    for label, rate in rows:
        print(f"| {label} | {rate:,.0f} | {rate / rows[0][1]:.2f} |")
    if big:
        big_figures(tmp)


def big_figures(tmp, total=10_000_000, rerun=1_000_000):
    """10 million messageIds in a checkpoint: its size, and the time to skip a rerun of 1 million."""
    from gspx_cli.state.checkpoint import Checkpoint

    db = tmp / "big.db"
    ck = Checkpoint(str(db))
    store = ck.store
    started = time.monotonic()
    for start in range(0, total, 100_000):
        for i in range(start, start + 100_000):
            store.add_delivered(f"0b1f6a2e-4c3d-4e5f-9a8b-{i:012d}", f"dump.ndjson:{i + 1}")
        store.commit({})
    filled = time.monotonic() - started
    store.close()
    size = db.stat().st_size + sum(p.stat().st_size for p in tmp.glob("big.db-*"))
    path = tmp / "rerun-1m.ndjson"
    with open(path, "w") as fh:
        for i in range(rerun):
            fh.write(json.dumps({"type": "track", "userId": f"u{i % 1000}", "event": "E",
                                 "messageId": f"0b1f6a2e-4c3d-4e5f-9a8b-{i * 7:012d}"}) + "\n")
    px = FakePX()
    with SandboxServer(px) as server:
        code, took, err = run_gspx(ROOT, config(tmp, server.base_url), "--checkpoint", db, path)
    print(f"\n| 10,000,000 messageIds in the checkpoint | {size / 1e6:,.0f} MB on disk (written in {filled:.0f} s) |")
    print(f"| a rerun of 1,000,000 of them | {took:.1f} s to skip them all, {len(px.requests)} requests "
          f"(exit {code}) |")


def figure_4(limit=1_000_000, past=200_000):
    """Per-add cost of the run's messageId memory below and past its limit, and the bytes it holds an id:
    now (flat arrays) and as it was (a dict of hashes and a deque of them, oldest forgotten first)."""
    import time
    import tracemalloc
    from collections import deque

    from gspx_cli.state.dedupe import RunMemory

    class Before:  # the memory this replaced (issue 22)
        def __init__(self, limit):
            self._seen, self._order, self._limit = {}, deque(), limit

        def add(self, message_id, source, line_no):
            seen, key = self._seen, hash(message_id)
            if key not in seen:
                seen[key] = line_no
                self._order.append(key)
                if len(self._order) > self._limit:
                    del seen[self._order.popleft()]

    ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(limit + past)]
    rows = []
    for label, kind in (("now", RunMemory), ("before", Before)):
        memory = kind(limit=limit)
        start = time.perf_counter()
        for n in range(limit):
            memory.add(ids[n], "in.ndjson", n)
        below = (time.perf_counter() - start) / limit
        start = time.perf_counter()
        for n in range(limit, limit + past):
            memory.add(ids[n], "in.ndjson", n)
        beyond = (time.perf_counter() - start) / past
        del memory
        tracemalloc.start()
        memory = kind(limit=limit)
        for n in range(limit):
            memory.add(ids[n], "in.ndjson", n)
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        if label == "now":  # its table is anonymous memory, which tracemalloc does not see
            held += memory._slots.nbytes
        rows.append((label, below, beyond, held / limit))
        del memory
    print(f"\n4. the run's messageId memory (no checkpoint), limit {limit:,}, {past:,} adds past it\n")
    print("| memory | µs per add, the first 1,000,000 | µs per add past the limit | bytes an id at the limit |")
    print("| --- | ---: | ---: | ---: |")
    for label, below, beyond, per_id in rows:
        print(f"| {label} | {below * 1e6:.2f} | {beyond * 1e6:.2f} | **{per_id:.0f}** |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--big", action="store_true", help="also the 10-million-messageId figures (minutes)")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gspx-quota-"))
    try:
        events, users, accounts = figure_1(tmp, a.events)
        figure_2(tmp, events, users, accounts)
        figure_3(tmp, min(a.events, 4000), a.big)
        figure_4()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
