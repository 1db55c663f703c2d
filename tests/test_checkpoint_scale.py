"""A checkpoint over many inputs (issue 22): nothing of it loaded whole at open, rows looked up as the walk
reaches each input, a settled file skipped on its stat, and a resume over many small files exact."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections import Counter

from e2e import TEST_KEY, finish, wait_until, write_config
from gspx_cli.read.reader import ReadStats, iter_line_batches, source_key
from gspx_cli.state import store as store_mod
from gspx_cli.state.checkpoint import Checkpoint
from gspx_cli.state.identity import file_identity
from gspx_cli.state.store import CheckpointStore

IDENTITY = {"size": 120, "block": 65536, "head_sha256": "a" * 64, "tail_sha256": "b" * 64}
HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def recorded_inputs(path, n):
    """A checkpoint at path recording n settled files under /data/day/."""
    with CheckpointStore(str(path)) as store:
        store.commit({f"/data/day/{i:06d}.json": {"settled_lines": 1, "settled_after": [3] if i % 7 == 0 else [],
                                                  "identity": IDENTITY} for i in range(n)})


def held_by_opening(path):
    """Python bytes still held after opening the checkpoint at path and asking what a run asks at its start."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ck = Checkpoint(str(path))
        assert ck.resumes_beyond_prefix
        watch = ck.watch()
        assert watch.skip_lines("/data/day/000010.json") == 1
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    ck.close()
    return held


def test_opening_a_checkpoint_holds_nothing_per_recorded_input(tmp_path):
    recorded_inputs(tmp_path / "small.ckpt", 200)
    recorded_inputs(tmp_path / "big.ckpt", 5_000)
    small, big = held_by_opening(tmp_path / "small.ckpt"), held_by_opening(tmp_path / "big.ckpt")
    # loading every input held ~1.5 KB each (7 MB here); a lookup holds at most one window of rows
    assert big - small < 200_000, (small, big)


def test_the_reader_reads_rows_a_window_at_a_time_and_holds_no_more(tmp_path):
    n = 3 * store_mod.WINDOW + 10
    recorded_inputs(tmp_path / "c.ckpt", n)
    with CheckpointStore(str(tmp_path / "c.ckpt")) as store:
        reader = store.reader()
        statements = []
        reader._con.set_trace_callback(statements.append)
        prefixes = [reader.settled(f"/data/day/{i:06d}.json")[0] for i in range(n)]
        assert reader.settled("/data/day/new.json") is None  # past the last row: no row, one query
        assert reader.input_entry("/data/day/000007.json")["settled_after"] == [3]
        held = len(reader._window)
        reader.close()
    assert prefixes == [1] * n
    assert sum("FROM inputs" in s for s in statements) <= n // store_mod.WINDOW + 3
    assert held <= store_mod.WINDOW


def write_lines(path, n, old=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"type": "track", "userId": "u", "event": "E", "properties": {"n": i}}) + "\n"
                            for i in range(n)))
    if old:
        os.utime(path, ns=(HOUR_AGO_NS, HOUR_AGO_NS))
    return path


def read_whole_row(path, settled, lines, stat=None):
    """The checkpoint entry of a file an earlier run read: to its end (lines) with its stat, or not."""
    st = os.stat(path) if stat is None else stat
    identity = {**file_identity(str(path)), "lines": lines, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    if lines is None:
        identity = file_identity(str(path))
    return {"settled_lines": settled, "identity": identity}


def resume_lines(ckpt, root):
    """(lines read, stats, SQL statements on the reader's connection) of a resume of the tree at root."""
    ck = Checkpoint(str(ckpt))
    watch = ck.watch()
    statements = []
    watch._con._con.set_trace_callback(statements.append)
    stats = ReadStats()
    try:
        lines = [(os.path.relpath(source, root), line) for batch in
                 iter_line_batches([str(root)], inputs=watch, skip_lines=watch.skip_lines, stats=stats)
                 for source, line, *_ in batch]
    finally:
        ck.close()
    return lines, stats, statements


def test_a_folder_resumes_exactly_its_changed_half_read_and_new_files_after_one_query(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "WHOLE_CHUNK", 2)  # its rows compared a few at a time, as a huge folder's
    day = tmp_path / "tree" / "2024-01-01"
    same = write_lines(day / "1704067201.json", 2)  # read whole and settled: passed over unopened
    grown = write_lines(day / "1704067202.json", 1)  # read whole, then appended to: read after its line
    moved = write_lines(day / "1704067203.json", 1)  # copied over with its mtime kept: another inode
    half = write_lines(day / "1704067204.json", 3)  # the run stopped after its first line
    gone = write_lines(day / "1704067200.json", 1)  # read whole, then removed: the others are still compared
    settled_grown, settled_moved = read_whole_row(grown, 1, 1), read_whole_row(moved, 1, 1)
    with CheckpointStore(str(tmp_path / "c.ckpt")) as store:
        store.commit({source_key(str(same)): read_whole_row(same, 2, 2),
                      source_key(str(grown)): settled_grown, source_key(str(moved)): settled_moved,
                      source_key(str(half)): read_whole_row(half, 1, None),
                      source_key(str(gone)): read_whole_row(gone, 1, 1)})
    gone.unlink()
    write_lines(day / "1704067202.json", 2)
    copy = write_lines(day / "copy.tmp", 1)
    os.replace(copy, moved)
    write_lines(day / "1704067205.json", 1)  # new since

    lines, stats, statements = resume_lines(tmp_path / "c.ckpt", tmp_path / "tree")
    assert lines == [("2024-01-01/1704067202.json", 2), ("2024-01-01/1704067204.json", 2),
                     ("2024-01-01/1704067204.json", 3), ("2024-01-01/1704067205.json", 1)]
    assert stats.settled_files == 1  # the moved one was opened and checked: same content, nothing to read
    assert sum("FROM inputs" in s for s in statements if "substr" in s) == 1  # one query for the folder


def test_a_folders_query_never_reads_the_rows_below_its_subfolders(tmp_path):
    root = tmp_path / "données"  # SQLite's substr counts characters, as Python does
    files = [write_lines(root / name, 1) for name in ("a.json", "b/x.json", "b-c/y.json", "c.json", "d/e/z.json")]
    with CheckpointStore(str(tmp_path / "c.ckpt")) as store:
        store.commit({source_key(str(path)): read_whole_row(path, 1, 1) for path in files})
        reader = store.reader()
        statements = []
        reader._con.set_trace_callback(statements.append)
        names = [row[0] for rows in reader.whole_files(os.path.join(source_key(str(root)), ""), ["b", "b-c", "d"])
                 for row in rows]
        reader.close()
    assert sorted(names) == ["a.json", "c.json"]
    assert len(statements) == 4  # the keys before b-c/, between b-c/ and b/, between b/ and d/, after d/

    lines, stats, _ = resume_lines(tmp_path / "c.ckpt", root)
    assert lines == [] and stats.settled_files == 5


# ---- through the command, as users run it -------------------------------------------------------------

def start_send(args, out_dir, tag):
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    env.pop("GSPX_CONFIG", None)
    with open(out_dir / f"{tag}.out", "w") as stdout, open(out_dir / f"{tag}.err", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", *args], stdout=stdout, stderr=stderr,
                                env=env, cwd=str(out_dir))


def one_event_files(root, n, old=False):
    """n files of one numbered track event in folders of 100; old: written an hour ago (their mtime)."""
    paths = []
    for i in range(n):
        folder = root / f"2024-01-{1 + i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{1704067200 + i}.events.json"
        path.write_text(json.dumps({"type": "track", "userId": f"u{i % 37}", "event": "E", "properties": {"n": i}})
                        + "\n")
        if old:
            os.utime(path, ns=(HOUR_AGO_NS, HOUR_AGO_NS))
        paths.append(path)
    return paths


def numbers(px):
    return Counter(e["attributes"]["n"] for e in list(px.events))


def saved(ckpt, path):
    with CheckpointStore(str(ckpt)) as store:
        return store.input_entry(source_key(str(path)))


def test_2000_files_stopped_by_sigterm_then_resumed_send_every_event_once(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    one_event_files(tmp_path / "tree", 2000)
    ckpt = tmp_path / "run.ckpt"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--concurrency", "8", "tree"]
    px.latency = 0.01
    proc = start_send([*args, "--rate-limit", "400"], tmp_path, "first")
    try:
        assert wait_until(lambda: len(px.events) >= 300), "the first run delivered too little"
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    first = numbers(px)
    assert 300 <= sum(first.values()) < 2000 and max(first.values()) == 1

    px.latency = 0.0
    proc = start_send(args, tmp_path, "second")
    assert finish(proc) == 0, (tmp_path / "second.err").read_text()
    assert numbers(px) == Counter(range(2000))  # nothing sent twice, nothing lost
    proc = start_send(args, tmp_path, "third")
    assert finish(proc) == 0, (tmp_path / "third.err").read_text()
    assert numbers(px) == Counter(range(2000))  # a resume with nothing new sends nothing


def test_a_resume_skips_unchanged_files_on_their_stat_reads_a_grown_one_and_refuses_a_replaced_one(px_server,
                                                                                                     tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    paths = one_event_files(tmp_path / "tree", 20, old=True)
    ckpt = tmp_path / "run.ckpt"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--no-dedupe", "tree"]
    proc = start_send(args, tmp_path, "first")
    assert finish(proc) == 0, (tmp_path / "first.err").read_text()
    st = os.stat(paths[5])
    # read whole: its stat and number of lines are kept, so a rerun that finds it so need not open it
    assert saved(ckpt, paths[5])["identity"] == {**saved(ckpt, paths[5])["identity"], "lines": 1,
                                                 "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
                                                 "size": st.st_size}

    with open(paths[5], "a") as fh:  # grown: read again from after its settled line
        fh.write(json.dumps({"type": "track", "userId": "u1", "event": "E", "properties": {"n": 100}}) + "\n")
    proc = start_send(args, tmp_path, "second")
    assert finish(proc) == 0, (tmp_path / "second.err").read_text()
    assert numbers(px) == Counter([*range(20), 100])  # --no-dedupe: only the checkpoint kept the rest out

    paths[12].write_text(json.dumps({"type": "track", "userId": "u9", "event": "E", "properties": {"n": 99}}) + "\n")
    proc = start_send(args, tmp_path, "third")
    assert finish(proc) == 2
    err = (tmp_path / "third.err").read_text()
    assert "tree/2024-01-01/1704067212.events.json is shorter than when the checkpoint was saved" in err
    assert numbers(px) == Counter([*range(20), 100])  # nothing of the replaced file


def test_a_resume_over_files_all_settled_sends_nothing_and_then_only_what_was_added(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    one_event_files(tmp_path / "tree", 150, old=True)
    ckpt = tmp_path / "run.ckpt"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--no-dedupe", "--report", "report.json", "tree"]
    proc = start_send(args, tmp_path, "first")
    assert finish(proc) == 0, (tmp_path / "first.err").read_text()

    proc = start_send(args, tmp_path, "second")
    assert finish(proc) == 0, (tmp_path / "second.err").read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    # every file passed over unopened: that is not an empty folder, and --no-dedupe sent nothing again
    assert (report["read"], report["skipped"], report["warnings"]) == (0, 0, 0)
    assert report["settled_inputs"] == 150  # said, so that "0 read" is not a mystery
    assert numbers(px) == Counter(range(150))

    # nor does it load what only sending needs, nor start the HTTP workers (issue 22: its start-up)
    # modules the interpreter's site start-up already loaded (a .pth may import tempfile) are not gspx's
    probe = ("import sys, threading\nbefore = set(sys.modules)\nstarted = []\nstart = threading.Thread.start\n"
             "threading.Thread.start = lambda self: (started.append(self.name), start(self))[1]\n"
             "from gspx_cli.cli import main\nsys.argv = ['gspx', 'send', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
             "print(code, started, sorted(m for m in ('requests', 'html', 'tempfile') if m in set(sys.modules) - before), "
             "file=sys.stderr)\n")
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    env.pop("GSPX_CONFIG", None)
    run = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path), env=env)
    assert run.stderr.splitlines()[-1] == "0 ['gspx-reader'] []", run.stderr

    for path, n in ((tmp_path / "tree" / "2024-01-01" / "1704067199.events.json", 1000),
                    (tmp_path / "tree" / "2024-01-03" / "1704067400.events.json", 1001)):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"type": "track", "userId": "u1", "event": "E", "properties": {"n": n}}) + "\n")
    proc = start_send(args, tmp_path, "third")
    assert finish(proc) == 0, (tmp_path / "third.err").read_text()
    assert numbers(px) == Counter([*range(150), 1000, 1001])


def test_a_file_modified_just_before_it_was_read_keeps_no_stat_to_be_skipped_on(px_server, tmp_path):
    cfg = write_config(tmp_path, px_server.base_url)
    (path,) = one_event_files(tmp_path / "tree", 1)  # written now: within the file system's mtime granularity
    ckpt = tmp_path / "run.ckpt"
    proc = start_send(["-c", cfg, "--checkpoint", str(ckpt), "tree"], tmp_path, "first")
    assert finish(proc) == 0, (tmp_path / "first.err").read_text()
    identity = saved(ckpt, path)["identity"]
    assert identity["size"] == path.stat().st_size and "mtime_ns" not in identity


def test_a_checkpoint_from_before_the_stat_columns_gains_them(tmp_path):
    path = tmp_path / "old.ckpt"
    with CheckpointStore(str(path)):
        pass
    with sqlite3.connect(path) as db:  # as the release before issue 22 wrote it
        db.execute("CREATE TABLE inputs_old AS SELECT key, settled_lines, settled_after, settled_parts, size, block, "
                   "head_sha256, tail_sha256, version, lines FROM inputs")
        db.execute("DROP TABLE inputs")
        db.execute("ALTER TABLE inputs_old RENAME TO inputs")
        db.execute("INSERT INTO inputs (key, settled_lines, size, version, lines) VALUES ('s3://b/a.json', 2, 9, "
                   "'etag:x', 2)")
    with CheckpointStore(str(path)) as store:
        assert store.input_entry("s3://b/a.json") == {"settled_lines": 2,
                                                       "identity": {"size": 9, "version": "etag:x", "lines": 2}}
        store.commit({"/d/a.json": {"settled_lines": 1, "identity": {**IDENTITY, "lines": 1, "mtime_ns": 5,
                                                                     "inode": 7}}})
        assert store.input_entry("/d/a.json")["identity"]["mtime_ns"] == 5


def test_a_file_read_to_its_end_before_its_lines_reach_the_bookkeeping_keeps_its_line_count(tmp_path):
    from gspx_cli.read.reader import Record
    from gspx_cli.state.ledger import DELIVERED, Ledger

    (path,) = one_event_files(tmp_path / "tree", 1, old=True)
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    watch = led.checkpoint.watch()
    with open(path, "rb", buffering=0) as fh:  # the reader is ahead: the end comes first
        fh.read()
        watch.ended(str(path), 1, fh)
    led.checkpoint.save()  # its lines are not here yet: the end waits
    record = Record(str(path), 1, b"{}", {"type": "track"})
    led.read(record)
    led.settle(record, DELIVERED)
    led.close()
    identity = saved(tmp_path / "c.ckpt", path)["identity"]
    assert identity["lines"] == 1 and identity["mtime_ns"] == HOUR_AGO_NS
