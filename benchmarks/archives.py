"""Directories as inputs (issue 18): `python benchmarks/archives.py` prints two figures.

1. time: `gspx send --dry-run -q` over a directory of 1,000 small gzip files laid out as RudderStack's
   object-storage destinations write them (`rudder-logs/<source>/<date>/<unix>.<source>.<uuid>.json.gz`)
   against the same bytes as one file (the files concatenated: a multi-member gzip), whole processes,
   alternated (ABBA) several times; both medians and the median ratio (the issue's target: <= 1.2);
2. memory: peak RSS of a dry run over a tree of 100,000 tiny objects against one of 1,000, both in
   date folders of 1,000 (a busy source's day), and over 100,000 in one folder, which is listed whole
   to be sorted; the events carry no messageId and share one user, so the run's memory of messageIds
   and users (which grows with events, not files) stays out of the figure.

3. the checkpoint over a walk: the bookkeeping of a live run with `--checkpoint` over 100,000 one-event
   files (the coordinator's calls, in-process, with a save every 1,000 files as a run saves about once
   a second), as it is and as it was before saves wrote only what changed (every input's row at each
   save, nothing forgotten): memory held at the end (tracemalloc) and the time of the last saves.

`--quick` makes every size small, for a smoke test; its figures mean little.
"""

import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench.py beside this file: its synthetic events and child runner
sys.path.insert(1, str(HERE.parent))

import bench  # noqa: E402

FILES = 1_000  # the figure: "a directory of 1,000 small gzip files"
EVENTS_PER_FILE = 20  # a small upload: RudderStack flushes a destination's batch every 30 s by default
FILES_PER_DAY = 1_000  # files in one date folder: ~one upload a minute, over a day, for a busy source
PAIRS = 5  # alternated pairs for the time figure; the median of their ratios is printed
BIG_TREE, SMALL_TREE = 100_000, 1_000  # the figure: "memory flat over 100,000 objects listed"
TINY_EVENT = b'{"type":"track","userId":"u1","event":"Viewed","properties":{"page":1}}\n'
DAY_SECONDS = 86_400
FIRST_DAY = 1_704_067_200  # 2024-01-01T00:00:00Z


def _day_folder(day):
    """RudderStack's date folder of the day-th day after FIRST_DAY (YYYY-MM-DD)."""
    return time.strftime("%Y-%m-%d", time.gmtime(FIRST_DAY + day * DAY_SECONDS))


def _object_name(i):
    """<unix>.<source>.<uuid>.json.gz, as the object-storage destinations name an upload."""
    return f"{FIRST_DAY + i * 60}.src.{i:08x}-0000-4000-8000-000000000000.json.gz"


def write_split(events_path, root, per_file, per_day):
    """Cut an NDJSON file into gzip files of per_file lines under root/rudder-logs/src/<date>/; returns
    the paths in the order gspx reads them (the date, then the unix time)."""
    paths = []
    with open(events_path, "rb") as src:
        lines = src.readlines()
    for i in range(0, len(lines), per_file):
        n = i // per_file
        folder = root / "rudder-logs" / "src" / _day_folder(n // per_day)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / _object_name(n)
        path.write_bytes(gzip.compress(b"".join(lines[i:i + per_file]), compresslevel=6))
        paths.append(path)
    return paths


def concatenate(paths, dest):
    """The files' bytes one after the other: what `cat *.gz > all.gz` makes, a valid multi-member gzip."""
    with open(dest, "wb") as out:
        for path in paths:
            out.write(path.read_bytes())


def write_tiny_tree(root, n, per_day):
    """n one-event gzip objects in date folders of per_day."""
    blob = gzip.compress(TINY_EVENT)
    for i in range(n):
        folder = root / _day_folder(i // per_day)
        if i % per_day == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / _object_name(i)).write_bytes(blob)


def _cmd(config, path):
    return [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-q", "--no-progress", "-c", str(config),
            str(path)]


def time_figure(config, tree, single, pairs):
    """Median wall seconds of a dry run over the tree and over the single file, and the median ratio."""
    tree_cmd, single_cmd = _cmd(config, tree), _cmd(config, single)
    bench._run(tree_cmd)  # warm-up: page cache, bytecode
    bench._run(single_cmd)
    ratios, tree_s, single_s = [], [], []
    for i in range(pairs):
        order = (tree_cmd, single_cmd) if i % 2 == 0 else (single_cmd, tree_cmd)  # ABBA: drift cancels
        walls = {id(cmd): bench._run(cmd)[0] for cmd in order}
        tree_s.append(walls[id(tree_cmd)])
        single_s.append(walls[id(single_cmd)])
        ratios.append(tree_s[-1] / single_s[-1])
    return statistics.median(tree_s), statistics.median(single_s), statistics.median(ratios), ratios


def peak_rss(config, path):
    """Peak RSS in bytes, and wall seconds, of one dry run (bench._run: os.wait4 on that child alone)."""
    wall, _, rss = bench._run(_cmd(config, path))
    return rss, wall


def checkpoint_figure(root, n, every, before):
    """(bytes held after n files, median seconds of the last 10 saves) of the checkpoint's bookkeeping
    over the one-event files under root; before: every save writes every row and nothing is forgotten."""
    from gspx_cli.state.checkpoint import Checkpoint
    from gspx_cli.state.ledger import DELIVERED, Ledger
    from gspx_cli.read.reader import Record

    if before:
        def save(self):  # as save() was: the whole snapshot, every time
            self.store.commit(self.snapshot()["inputs"])
    else:
        save = Checkpoint.save
    paths = sorted(str(p) for p in Path(root).rglob("*.json.gz"))[:n]
    db = Path(root).parent / f"bench-{'before' if before else 'now'}.db"
    original = Checkpoint.save
    Checkpoint.save = save
    tracemalloc.start()
    try:
        ledger = Ledger(checkpoint=str(db))
        base = tracemalloc.get_traced_memory()[0]
        saves = []
        for i, path in enumerate(paths, 1):
            record = Record(path, 1, TINY_EVENT, {"type": "track"})
            ledger.read(record)
            ledger.settle(record, DELIVERED)
            if i % every == 0:
                start = time.perf_counter()
                ledger.checkpoint.save()
                saves.append(time.perf_counter() - start)
        held = tracemalloc.get_traced_memory()[0] - base
        ledger.close()
    finally:
        tracemalloc.stop()
        Checkpoint.save = original
        db.unlink(missing_ok=True)
    return held, statistics.median(saves[-10:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--pairs", type=int, default=PAIRS)
    args = parser.parse_args(argv)
    files, big, small, pairs = (FILES, BIG_TREE, SMALL_TREE, args.pairs) if not args.quick else (50, 2_000, 100, 1)
    per_day = FILES_PER_DAY if not args.quick else 100
    work = Path(tempfile.mkdtemp(prefix="gspx-archives-bench-"))
    try:
        config = work / "gspx.yaml"
        bench.write_config(config)
        events = work / "events.ndjson"
        bench.make_events(events, files * EVENTS_PER_FILE)
        print(f"1/3 time: {files:,} gzip files of {EVENTS_PER_FILE} events vs their concatenation, "
              f"{pairs} pairs...", file=sys.stderr)
        paths = write_split(events, work / "tree", EVENTS_PER_FILE, per_day)
        concatenate(paths, work / "all.json.gz")
        tree_s, single_s, ratio, ratios = time_figure(config, work / "tree", work / "all.json.gz", pairs)

        print(f"2/3 memory: trees of {small:,} and {big:,} one-event objects...", file=sys.stderr)
        rows = []
        for label, n, day in ((f"{small:,} objects, folders of {per_day:,}", small, per_day),
                              (f"{big:,} objects, folders of {per_day:,}", big, per_day),
                              (f"{big:,} objects, one folder", big, big)):
            root = work / f"tiny-{n}-{day}"
            write_tiny_tree(root, n, day)
            rows.append((label, *peak_rss(config, root)))
            if n == big and day == per_day:
                kept = root  # for figure 3
            else:
                shutil.rmtree(root)
        # Last, and after every child is measured: this process grows here, and a child forked from a
        # big parent counts the parent's pages in its own peak RSS.
        print(f"3/3 the checkpoint over {big:,} files, now and before...", file=sys.stderr)
        every = 1_000 if not args.quick else 100
        figure3 = [(n_files, *checkpoint_figure(kept, n_files, every, before))
                   for before in (False, True) for n_files in (big // 10, big)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {os.cpu_count()} CPUs, {sys.platform}, Python {sys.version.split()[0]}")
    print()
    print("| # | figure | measured | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| 1 | dry run (`-q`) of a directory of {files:,} gzip files ({files * EVENTS_PER_FILE:,} events) / "
          f"of their concatenation, median of {pairs} alternated pairs | {tree_s:.2f} s / {single_s:.2f} s | "
          f"**{ratio:.2f}** (range {min(ratios):.2f}-{max(ratios):.2f}) | <= 1.2 |")
    base = rows[0][1]
    for label, rss, wall in rows:
        print(f"| 2 | peak RSS of a dry run, {label} ({wall:.1f} s) | {rss / 2**20:.1f} MB | "
              f"**{rss / base:.2f}** (/ the first) | flat |")
    for (n_small, held_small, save_small), (n_big, held_big, save_big), when in (
            (figure3[0], figure3[1], "now"), (figure3[2], figure3[3], "before")):
        print(f"| 3 | checkpoint bookkeeping {when}: memory held after {n_small:,} / {n_big:,} files | "
              f"{held_small / 2**20:.1f} MB / {held_big / 2**20:.1f} MB | **{held_big / max(held_small, 1):.2f}** "
              f"| flat |")
        print(f"| 3 | checkpoint save {when}: median of the last 10 saves after {n_small:,} / {n_big:,} files | "
              f"{save_small * 1000:.1f} ms / {save_big * 1000:.1f} ms | **{save_big / save_small:.2f}** | flat |")


if __name__ == "__main__":
    main()
