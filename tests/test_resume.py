"""Graceful stop and resume (issue 3): signals on a real `python -m gspx_cli send`, and the checkpoint itself."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from e2e import TEST_KEY, finish, wait_until, write_config, write_events
from gspx_cli.state import outputs as outputs_mod
from gspx_cli.state.checkpoint import Checkpoint, atomic_write
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, Ledger
from gspx_cli.read.reader import Record, source_key
from gspx_cli.state.store import CheckpointStore



def resume_events():
    """400 track events with unique n: 340 plain lines and 20 batch lines of 3 (different users each)."""
    lines, n = [], 0
    while n < 400:
        if len(lines) % 18 == 17 and n + 3 <= 400:
            lines.append({"batch": [{"type": "track", "userId": f"u{(n + k) % 37}", "event": "E",
                                     "properties": {"n": n + k}} for k in range(3)]})
            n += 3
        else:
            lines.append({"type": "track", "userId": f"u{n % 37}", "event": "E", "properties": {"n": n}})
            n += 1
    return lines


def start_send(args, out_dir, tag):
    """`python -m gspx_cli send ARGS` in the background; its stdout/stderr go to files (no pipe can fill)."""
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    env.pop("GSPX_CONFIG", None)
    stdout = open(out_dir / f"{tag}.out", "w")
    stderr = open(out_dir / f"{tag}.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", *args], stdout=stdout, stderr=stderr,
                            env=env, cwd=str(out_dir))
    stdout.close()
    stderr.close()
    return proc




def saved_inputs(path):
    """The inputs entries the checkpoint at path holds now."""
    with CheckpointStore(str(path)) as store:
        return store.load_inputs()


def event_numbers(px):
    return Counter(e["attributes"]["n"] for e in list(px.events))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_stop_then_resume_with_checkpoint_delivers_all_400_events_once(px_server, tmp_path, signum, code):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    events = write_events(tmp_path, resume_events())
    ckpt = tmp_path / "run.ckpt"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--concurrency", "8", events]
    px.latency = 0.02
    proc = start_send([*args, "--rate-limit", "150"], tmp_path, "first")
    try:
        assert wait_until(lambda: len(px.events) >= 60), "the first run delivered too little"
        proc.send_signal(signum)
        assert finish(proc) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "first.err").read_text()
    assert "gspx summary" in err and "not sent" in err
    assert TEST_KEY not in err
    first = event_numbers(px)
    assert 60 <= sum(first.values()) < 400 and max(first.values()) == 1
    saved = saved_inputs(ckpt)[source_key(events)]
    assert saved["settled_lines"] > 0

    px.latency = 0.0
    proc = start_send(args, tmp_path, "second")
    assert finish(proc) == 0, (tmp_path / "second.err").read_text()
    assert event_numbers(px) == Counter(range(400))  # every event exactly once over both runs


def test_second_sigint_aborts_at_once(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    events = write_events(tmp_path, [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(50)])
    px.latency = 5.0  # a graceful stop would wait this long for the requests in flight
    proc = start_send(["-c", cfg, events], tmp_path, "run")
    try:
        assert wait_until(lambda: len(px.requests) >= 1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        assert proc.poll() is None  # still finishing what is in flight
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert finish(proc, timeout=3) == 130
        assert time.monotonic() - started < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "aborted" in (tmp_path / "run.err").read_text()


# -- the checkpoint itself -------------------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_the_write_fails_midway(tmp_path, monkeypatch):
    target = tmp_path / "run.ckpt"
    target.write_bytes(b"old content\n")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic_write(str(target), b"new content that never lands\n")
    assert target.read_bytes() == b"old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temp file left behind
    monkeypatch.undo()
    atomic_write(str(target), b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


def _records(path, line, n=1):
    return [Record(path, line, b"{}", {"type": "track"}, unwrapped=n > 1, index=i, count=n) for i in range(n)]


def _open(ledger, records):
    """What the coordinator does for each record read."""
    for record in records:
        ledger.read(record)


def test_the_watermark_never_passes_an_unsettled_line(tmp_path):
    src = str(tmp_path / "in.ndjson")
    key = source_key(src)
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    lines = {1: _records(src, 1), 2: _records(src, 2), 3: _records(src, 3, n=3), 5: _records(src, 5),
             6: _records(src, 6)}  # line 4 is blank: no record
    for recs in lines.values():
        _open(led, recs)
    mark = lambda: led.checkpoint.watermarks()[key]  # noqa: E731

    assert mark() == 0
    led.settle(lines[2][0], DELIVERED)
    assert mark() == 0  # line 1 is still out
    led.settle(lines[1][0], DELIVERED)
    assert mark() == 2
    led.settle(lines[3][2], DELIVERED)
    led.settle(lines[5][0], FAILED, "boom")
    led.settle(lines[3][0], INTERRUPTED)  # never sent: the line is not settled
    assert mark() == 2
    snap = led.checkpoint.snapshot()["inputs"][key]
    assert snap == {"settled_lines": 2, "settled_after": [5], "settled_parts": {"3": [2]}}
    led.settle(lines[3][1], DELIVERED)
    assert mark() == 2  # member 0 of the batch line was interrupted
    led.settle(lines[6][0], DELIVERED)
    led.close()
    saved = saved_inputs(tmp_path / "c.ckpt")[key]
    assert saved == {"settled_lines": 2, "settled_after": [5, 6], "settled_parts": {"3": [1, 2]}}


def test_a_resume_skips_the_prefix_and_what_was_settled_beyond_it(tmp_path):
    src = str(tmp_path / "in.ndjson")
    path = str(tmp_path / "c.ckpt")
    first = Ledger(checkpoint=path)
    recs = {n: _records(src, n, 3 if n == 3 else 1) for n in range(1, 6)}
    for r in recs.values():
        _open(first, r)
    for n in (1, 2, 4):
        first.settle(recs[n][0], DELIVERED)
    first.settle(recs[3][1], DELIVERED)
    first.settle(recs[3][0], INTERRUPTED)
    first.settle(recs[3][2], INTERRUPTED)
    first.settle(recs[5][0], INTERRUPTED)
    first.close()

    again = Checkpoint(path)
    assert again.settled_prefix(src) == 2
    assert again.resumes_beyond_prefix
    assert [again.already_settled(r) for r in _records(src, 3, 3)] == [False, True, False]
    assert again.already_settled(_records(src, 4)[0])
    assert not again.already_settled(_records(src, 5)[0])

    # the second run sends line 3's members 0 and 2 and line 5: everything is then settled
    second = Ledger(checkpoint=path)
    left = _records(src, 3, 3)
    _open(second, [left[0]])
    second.checkpoint.opened(left[1])  # settled by the first run: the coordinator skips it
    second.checkpoint.settled(left[1])
    _open(second, [left[2]])
    _open(second, recs[5])
    for r in (left[2], left[0], recs[5][0]):
        second.settle(r, DELIVERED)
    second.close()
    assert saved_inputs(path)[source_key(src)] == {"settled_lines": 5}


def test_a_checkpoint_that_is_not_ours_is_a_config_error(tmp_path):
    from gspx_cli.errors import ConfigError

    path = tmp_path / "c.ckpt"
    path.write_text('{"inputs": {"a": {"settled_after": [1]}}}')
    with pytest.raises(ConfigError, match="not a gspx checkpoint"):
        Checkpoint(str(path))
    assert path.read_text() == '{"inputs": {"a": {"settled_after": [1]}}}'  # not converted, not touched


# ---- saves of a walk over many files (issue 18): only what changed, memory flat ----------------------

def test_a_save_writes_only_the_inputs_that_changed_since_the_last_one(tmp_path, monkeypatch):
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    written = []
    real_commit = led.checkpoint.store.commit
    monkeypatch.setattr(led.checkpoint.store, "commit", lambda inputs: written.append(sorted(inputs))
                        or real_commit(inputs))
    files = [str(tmp_path / f"{i}.ndjson") for i in range(5)]
    for i, src in enumerate(files):
        (rec,) = _records(src, 1)
        _open(led, [rec])
        led.settle(rec, DELIVERED)
        led.checkpoint.save()
    led.checkpoint.save()  # nothing changed since
    assert written == [[source_key(files[0])]] + [[source_key(f)] for f in files[1:]] + [[]]
    led.close()
    assert {k: v["settled_lines"] for k, v in saved_inputs(tmp_path / "c.ckpt").items()} == \
        {source_key(f): 1 for f in files}


def test_a_finished_input_leaves_memory_after_its_save_and_a_later_line_of_it_is_still_saved(tmp_path):
    src = tmp_path / "grows.ndjson"
    src.write_text("{}\n{}\n")
    key = source_key(str(src))
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    first = _records(str(src), 1) + _records(str(src), 2)
    _open(led, first)
    for rec in first:
        led.settle(rec, DELIVERED)
    led.checkpoint.save()
    assert led.checkpoint.snapshot()["inputs"] == {}  # nothing of it left in memory: its row says it all
    with open(src, "a") as fh:
        fh.write("{}\n")
    (third,) = _records(str(src), 3)
    _open(led, [third])
    led.checkpoint.save()
    assert saved_inputs(tmp_path / "c.ckpt")[key]["settled_lines"] == 2  # line 3 read, not settled
    led.settle(third, DELIVERED)
    led.close()
    saved = saved_inputs(tmp_path / "c.ckpt")[key]
    assert saved["settled_lines"] == 3 and saved["identity"]["size"] == 9  # the file as it is now


def test_an_input_with_lines_settled_beyond_its_prefix_stays_in_memory(tmp_path):
    src = str(tmp_path / "in.ndjson")
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    one, two = _records(src, 1), _records(src, 2)
    _open(led, one + two)
    led.settle(two[0], DELIVERED)
    led.checkpoint.save()
    assert led.checkpoint.snapshot()["inputs"][source_key(src)] == {"settled_lines": 0, "settled_after": [2]}
    led.settle(one[0], DELIVERED)
    led.close()
    assert saved_inputs(tmp_path / "c.ckpt")[source_key(src)] == {"settled_lines": 2}


def test_a_typed_input_forgotten_at_a_save_keeps_its_identity_when_more_of_its_lines_settle(tmp_path):
    src = tmp_path / "in.ndjson"
    src.write_text("{}\n" * 10)
    led = Ledger(checkpoint=str(tmp_path / "c.ckpt"))
    led.checkpoint.check_inputs([str(src)])
    for line in (1, 2):  # all read so far is settled at the save: the input leaves memory
        (rec,) = _records(str(src), line)
        _open(led, [rec])
        led.settle(rec, DELIVERED)
    led.checkpoint.save()
    (rec,) = _records(str(src), 3)  # then the rest of its lines come
    _open(led, [rec])
    led.settle(rec, DELIVERED)
    led.close()
    saved = saved_inputs(tmp_path / "c.ckpt")[source_key(str(src))]
    assert saved["settled_lines"] == 3 and saved["identity"]["size"] == 30  # a replaced file is still refused
