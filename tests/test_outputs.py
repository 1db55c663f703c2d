"""Outputs a multi-day backfill can trust (issue 10): outputs checked before sending, write errors later,
the checkpoint's lock and input identity, plain progress lines in logs, the narrow summary."""

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from rich.console import Console

from e2e import DEADLINE, TEST_KEY, finish, gspx, wait_until, write_config, write_events
from gspx_cli.state import checkpoint as checkpoint_mod
from gspx_cli.read.reader import source_key
from gspx_cli.report.reporter import Reporter
from gspx_cli.state.store import FORMAT_VERSION, CheckpointStore
from test_report import MIXED, _result

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = str(ROOT / "config.example.yaml")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes through any permission bits


def track(n, user=None):
    return {"type": "track", "userId": user or f"u{n % 7}", "event": "E", "properties": {"n": n}}


def numbers(px):
    """How often PX received each event number."""
    return Counter(e["attributes"]["n"] for e in list(px.events))


def saved_inputs(path):
    """The inputs entries the checkpoint at path holds now."""
    with CheckpointStore(str(path)) as store:
        return store.load_inputs()


def no_traceback(text):
    return "Traceback" not in text


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


# -- subprocesses --------------------------------------------------------------------------------

def _env():
    """The pinned test environment (conftest) plus the key: nothing of the developer's shell leaks in."""
    return {**os.environ, "GSPX_API_KEY": TEST_KEY}


def start(args, tmp_path, tag, *, stdin=None, prelude=""):
    """`gspx send ARGS` as a real process, stdout and stderr to files (no pipe can fill); `prelude` is
    Python run first in the process (to shorten a module constant)."""
    code = f"{prelude}\nfrom gspx_cli.cli import main\nmain()"
    out = open(tmp_path / f"{tag}.out", "w")
    err = open(tmp_path / f"{tag}.err", "w")
    proc = subprocess.Popen([sys.executable, "-c", code, "send", *args], stdin=stdin, stdout=out, stderr=err,
                            env=_env(), cwd=str(tmp_path))
    out.close()
    err.close()
    return proc




# -- outputs checked before anything is sent -----------------------------------------------------

BROKEN_PATHS = {
    "missing directory": lambda tmp: str(tmp / "no-such-dir" / "out"),
    "a directory": lambda tmp: str(tmp),
}


@pytest.mark.parametrize("option", ["--failed-output", "--checkpoint", "--report"])
@pytest.mark.parametrize("broken", sorted(BROKEN_PATHS))
def test_an_output_that_cannot_be_written_is_exit_2_naming_it_before_any_request(setup, option, broken):
    px, cfg, tmp = setup
    path = BROKEN_PATHS[broken](tmp)
    events = write_events(tmp, [track(n) for n in range(20)])
    run = gspx("send", "-c", cfg, option, path, events)
    assert run.exit_code == 2, run.stderr
    assert path in run.stderr and option in run.stderr
    assert px.requests == []
    assert no_traceback(run.stderr) and "gspx summary" not in run.stderr  # nothing was read


@pytest.mark.skipif(IS_ROOT, reason="root writes into a read-only directory")
@pytest.mark.parametrize("option", ["--failed-output", "--checkpoint", "--report"])
def test_an_output_in_a_read_only_directory_is_exit_2_before_any_request(setup, option):
    px, cfg, tmp = setup
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        run = gspx("send", "-c", cfg, option, str(folder / "out"), write_events(tmp, [track(1)]))
    finally:
        folder.chmod(0o755)
    assert run.exit_code == 2 and str(folder / "out") in run.stderr
    assert "Permission denied" in run.stderr and px.requests == []


def test_a_device_as_checkpoint_is_refused_as_not_a_regular_file(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, "--checkpoint", "/dev/full", write_events(tmp, [track(1)]))
    assert run.exit_code == 2 and "--checkpoint /dev/full: not a regular file" in run.stderr
    assert px.requests == [] and os.path.exists("/dev/full")


def test_the_up_front_checks_leave_no_file_behind_when_nothing_fails(setup):
    px, cfg, tmp = setup
    before = set(os.listdir(tmp))
    run = gspx("send", "-c", cfg, "--failed-output", str(tmp / "failed.ndjson"), write_events(tmp, [track(1)]))
    assert run.exit_code == 0, run.stderr
    assert set(os.listdir(tmp)) - before == {"events.ndjson"}  # no empty failed output, no temp file


# -- write errors later ---------------------------------------------------------------------------

def test_failed_output_on_a_full_disk_stops_the_run_exit_1_and_a_rerun_sends_the_unrecorded(setup):
    px, cfg, tmp = setup
    lines = [track(n) if n % 10 else "not json" for n in range(1, 41)]  # 4 invalid lines, 36 events
    events = write_events(tmp, lines)
    ckpt = str(tmp / "run.ckpt")
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--failed-output", "/dev/full", events)
    assert run.exit_code == 1
    assert "error: cannot write --failed-output /dev/full: No space left on device" in run.stderr
    assert "stopped       by --failed-output /dev/full that could not be written" in run.stderr
    assert no_traceback(run.stderr)
    # the invalid line could not be written down, so it is not settled: the rerun reads it again
    again = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--failed-output", str(tmp / "failed.ndjson"), events)
    assert again.exit_code == 1, again.stderr  # the invalid lines fail again, this time on record
    assert (tmp / "failed.ndjson").read_text().splitlines() == ["not json"] * 4
    assert set(numbers(px)) == {n for n in range(1, 41) if n % 10}  # every event delivered, none lost


def test_report_on_a_full_disk_at_the_end_is_an_error_and_exit_1_not_a_traceback(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, "--report", "/dev/full", write_events(tmp, [track(1)]))
    assert run.exit_code == 1
    assert run.stderr.rstrip().splitlines()[-1] == "error: cannot write --report /dev/full: No space left on device"
    assert no_traceback(run.stderr) and len(px.events) == 1


def test_checkpoint_directory_removed_mid_run_stops_with_exit_1_naming_it(setup):
    px, cfg, tmp = setup
    folder = tmp / "state"
    folder.mkdir()
    events = write_events(tmp, [track(n) for n in range(300)])
    px.latency = 0.01
    proc = start(["-c", cfg, "--rate-limit", "100", "--checkpoint", str(folder / "run.ckpt"), events], tmp, "run")
    try:
        assert wait_until(lambda: len(px.events) >= 20 and (folder / "run.ckpt").exists())
        shutil.rmtree(folder)
        assert finish(proc) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp / "run.err").read_text()
    assert f"error: cannot write --checkpoint {folder / 'run.ckpt'}: No such file or directory" in err
    assert "could not be saved" in err and no_traceback(err)
    assert len(px.events) < 300  # it stopped like a signal: nothing new started


def test_failed_output_removed_mid_run_stops_and_leaves_what_it_took_since_unsettled(setup):
    px, cfg, tmp = setup
    failed, ckpt = tmp / "failed.ndjson", tmp / "run.ckpt"
    proc = start(["-c", cfg, "--checkpoint", str(ckpt), "--failed-output", str(failed), "-"], tmp, "run",
                 stdin=subprocess.PIPE)
    try:
        proc.stdin.write(b"bad 1\nbad 2\n")
        proc.stdin.flush()
        assert wait_until(lambda: failed.exists() and len(failed.read_bytes().splitlines()) == 2)
        assert wait_until(lambda: ckpt.exists() and saved_inputs(ckpt).get("-", {}).get("settled_lines") == 2)
        failed.unlink()  # e.g. a cleanup job: what gspx appends now goes into a file nobody can read
        proc.stdin.write(b"bad 3\n" + json.dumps(track(4)).encode() + b"\n")
        proc.stdin.flush()
        assert finish(proc) == 1  # stopped on its own, with standard input still open
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
    err = (tmp / "run.err").read_text()
    assert f"error: cannot write --failed-output {failed}: it was removed or replaced during the run" in err
    assert no_traceback(err)
    # line 3 went into the removed file: the checkpoint does not count it, so a rerun reads it again
    assert saved_inputs(ckpt)["-"]["settled_lines"] == 2


# -- the checkpoint lock ---------------------------------------------------------------------------

def _first_run_waiting_on_stdin(px, cfg, tmp, ckpt):
    """A run with ckpt that has sent one event and now waits on its open stdin: it holds the lock."""
    first = start(["-c", cfg, "--checkpoint", ckpt, "-"], tmp, "first", stdin=subprocess.PIPE)
    first.stdin.write((json.dumps(track(1)) + "\n").encode())
    first.stdin.flush()
    assert wait_until(lambda: len(px.events) == 1)  # past its lock, and waiting on stdin
    return first


def test_a_second_run_with_the_same_checkpoint_is_refused_while_the_first_is_alive(setup):
    px, cfg, tmp = setup
    ckpt = str(tmp / "run.ckpt")
    first = _first_run_waiting_on_stdin(px, cfg, tmp, ckpt)
    try:
        second = gspx("send", "-c", cfg, "--checkpoint", ckpt, write_events(tmp, [track(2)]))
        assert second.exit_code == 2
        assert f"--checkpoint {ckpt}: in use by another gspx run" in second.stderr
        assert len(px.events) == 1  # the second sent nothing
        first.stdin.close()
        assert finish(first) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)
    third = gspx("send", "-c", cfg, "--checkpoint", ckpt, write_events(tmp, [track(3)], name="more.ndjson"))
    assert third.exit_code == 0, third.stderr  # the lock went with the first run


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(setup):
    px, cfg, tmp = setup
    ckpt = str(tmp / "run.ckpt")
    first = _first_run_waiting_on_stdin(px, cfg, tmp, ckpt)
    try:
        first.send_signal(signal.SIGKILL)
        assert finish(first) == -signal.SIGKILL
    finally:
        first.stdin.close()
    assert os.path.exists(ckpt + ".lock")  # left behind, as SIGKILL leaves it
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, write_events(tmp, [track(2)]))
    assert run.exit_code == 0, run.stderr


# -- input identity ---------------------------------------------------------------------------------

def _first_run(setup, lines, name="events.ndjson"):
    px, cfg, tmp = setup
    events = write_events(tmp, lines, name=name)
    ckpt = str(tmp / "run.ckpt")
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, events)
    assert run.exit_code == 0, run.stderr
    px.events.clear()
    px.requests.clear()  # what the reruns send, alone
    return events, ckpt


def test_checkpoint_records_each_input_size_and_block_hashes(setup):
    events, ckpt = _first_run(setup, [track(n) for n in range(5)])
    with closing(sqlite3.connect(ckpt)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (str(FORMAT_VERSION),)
    identity = saved_inputs(ckpt)[source_key(events)]["identity"]
    assert identity == checkpoint_mod.file_identity(events)
    assert identity["size"] == os.path.getsize(events) and identity["block"] == 64 * 1024


def test_a_rerun_on_a_truncated_input_is_refused_with_both_sizes(setup):
    px, cfg, tmp = setup
    events, ckpt = _first_run(setup, [track(n) for n in range(10)])
    size = os.path.getsize(events)
    write_events(tmp, [track(n) for n in range(3)])
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, events)
    assert run.exit_code == 2
    now = os.path.getsize(events)
    assert (f"{events} is shorter than when the checkpoint was saved ({now:,} < {size:,} bytes): "
            "replaced or truncated?") in run.stderr
    assert px.requests == []


def test_a_rerun_on_a_replaced_input_of_the_same_size_is_refused_content_differs(setup):
    px, cfg, tmp = setup
    events, ckpt = _first_run(setup, [track(n) for n in range(10, 20)])
    write_events(tmp, [track(n) for n in range(20, 30)])  # a re-exported dump: same length, other events
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, events)
    assert run.exit_code == 2
    assert f"{events}: content differs from when the checkpoint was saved" in run.stderr
    assert px.requests == [] and no_traceback(run.stderr)


def test_a_change_in_the_last_block_of_a_big_input_is_caught(setup):
    px, cfg, tmp = setup
    pad = "x" * 900
    lines = [{**track(n), "properties": {"n": n, "pad": pad}} for n in range(200)]  # ~190 KiB: 3+ blocks
    events, ckpt = _first_run(setup, lines)
    data = bytearray(open(events, "rb").read())
    data[-500] = ord("y")  # inside a pad, within the last 64 KiB
    open(events, "wb").write(bytes(data))
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, events)
    assert run.exit_code == 2 and "content differs" in run.stderr and "the last 65,536 bytes" in run.stderr


def test_an_input_that_only_grew_is_resumed_after_its_settled_lines(setup):
    px, cfg, tmp = setup
    events, ckpt = _first_run(setup, [track(n) for n in range(10)])
    with open(events, "a") as fh:  # a log that was appended to since
        fh.writelines(json.dumps(track(n)) + "\n" for n in range(10, 15))
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, events)
    assert run.exit_code == 0, run.stderr
    assert numbers(px) == Counter(range(10, 15))
    saved = saved_inputs(ckpt)[source_key(events)]
    assert saved["settled_lines"] == 15 and saved["identity"]["size"] == os.path.getsize(events)


def test_a_version_1_checkpoint_without_identity_is_converted_and_resumed_with_a_note(setup):
    px, cfg, tmp = setup
    events = write_events(tmp, [track(n) for n in range(6)])
    ckpt = tmp / "old.ckpt"
    ckpt.write_text(json.dumps({"version": 1, "inputs": {source_key(events): {"settled_lines": 4}}}))
    run = gspx("send", "-c", cfg, "--checkpoint", str(ckpt), events)
    assert run.exit_code == 0, run.stderr
    assert f"does not record what {events} was" in run.stderr and "resuming after line 4" in run.stderr
    assert f"converted checkpoint {ckpt} from the JSON format 1 to SQLite" in run.stderr
    assert numbers(px) == Counter([4, 5])
    assert ckpt.read_bytes().startswith(b"SQLite format 3\x00")  # rewritten in the current format
    assert saved_inputs(ckpt)[source_key(events)]["identity"] == checkpoint_mod.file_identity(events)


def test_a_checkpoint_from_a_newer_gspx_is_refused(setup):
    px, cfg, tmp = setup
    ckpt = tmp / "new.ckpt"
    ckpt.write_text(json.dumps({"version": 99, "inputs": {}}))
    run = gspx("send", "-c", cfg, "--checkpoint", str(ckpt), write_events(tmp, [track(1)]))
    assert run.exit_code == 2 and "checkpoint version 99" in run.stderr and px.requests == []
    assert json.loads(ckpt.read_text()) == {"version": 99, "inputs": {}}  # left as it was


def test_standard_input_resumes_by_line_count_and_says_so(setup):
    px, cfg, tmp = setup
    ckpt = str(tmp / "run.ckpt")
    piped = "".join(json.dumps(track(n)) + "\n" for n in range(5))
    assert gspx("send", "-c", cfg, "--checkpoint", ckpt, input=piped).exit_code == 0
    more = piped + "".join(json.dumps(track(n)) + "\n" for n in range(5, 8))
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, input=more)
    assert run.exit_code == 0, run.stderr
    assert "standard input: skipping the first 5 lines" in run.stderr and "cannot check" in run.stderr
    assert numbers(px) == Counter(range(8))


# -- progress in logs ------------------------------------------------------------------------------

FAST_PROGRESS = "import gspx_cli.report.reporter as r; r.PLAIN_PROGRESS_SECONDS = 0.3"


def _status_lines(text):
    return [line for line in text.splitlines() if line.startswith("progress ")]


def test_progress_into_a_log_file_prints_plain_status_lines_while_the_run_is_alive(tmp_path):
    proc = start(["--dry-run", "--progress", "-c", EXAMPLE_CONFIG, "-"], tmp_path, "run",
                 stdin=subprocess.PIPE, prelude=FAST_PROGRESS)
    log = tmp_path / "run.err"
    try:
        proc.stdin.write(b"".join(json.dumps(track(n)).encode() + b"\n" for n in range(3)))
        proc.stdin.flush()
        assert wait_until(lambda: len(_status_lines(log.read_text())) >= 2), log.read_text()
        assert proc.poll() is None  # shown before the end, not only in the summary
        proc.stdin.close()
        assert finish(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    line = _status_lines(text)[-1]
    assert "standard input, 3 lines read" in line and "read 3  would send 3" in line and "ev/s" in line


def test_progress_lines_of_a_live_run_give_counts_position_and_eta(setup):
    px, cfg, tmp = setup
    events = write_events(tmp, [track(n) for n in range(40)])
    proc = start(["-c", cfg, "--progress", "--rate-limit", "20", events], tmp, "run", prelude=FAST_PROGRESS)
    assert finish(proc) == 0
    text = (tmp / "run.err").read_text()
    lines = _status_lines(text)
    assert lines and "\r" not in text and "\x1b" not in text
    for word in (f"{events} ", "% eta ", "read ", "delivered ", "skipped ", "failed ", "requests ",
                 "retries ", "ev/s"):
        assert word in lines[-1], (word, lines[-1])


def test_no_progress_lines_in_a_log_without_the_flag_but_warnings_still_print(tmp_path):
    odd = {"type": "track", "userId": "u", "event": "E", "timestamp": "not a time"}
    proc = start(["--dry-run", "-c", EXAMPLE_CONFIG, "-"], tmp_path, "run", stdin=subprocess.PIPE,
                 prelude=FAST_PROGRESS)
    proc.stdin.write(json.dumps(odd).encode() + b"\n")
    proc.stdin.flush()
    time.sleep(1.0)  # three intervals
    proc.stdin.close()
    assert finish(proc) == 0
    text = (tmp_path / "run.err").read_text()
    assert _status_lines(text) == [] and "warning: -:1:" in text


def test_progress_on_a_dumb_terminal_is_plain_lines(tmp_path):
    import pty

    controller, terminal = pty.openpty()
    code = f"{FAST_PROGRESS}\nfrom gspx_cli.cli import main\nmain()"
    proc = subprocess.Popen([sys.executable, "-c", code, "send", "--dry-run", "-c", EXAMPLE_CONFIG, "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=terminal,
                            env={**_env(), "TERM": "dumb"}, cwd=str(tmp_path))
    os.close(terminal)
    seen = b""
    try:
        proc.stdin.write(json.dumps(track(1)).encode() + b"\n")
        proc.stdin.flush()
        end = time.monotonic() + DEADLINE
        while b"\nprogress " not in b"\n" + seen and time.monotonic() < end:
            seen += os.read(controller, 4096)
        proc.stdin.close()
        assert finish(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert b"progress " in seen  # on by default: stderr is a terminal
    assert b"\x1b" not in seen and b"\r" not in seen.replace(b"\r\n", b"\n")  # the pty adds \r to \n


# -- the summary on a narrow terminal -----------------------------------------------------------------

def test_summary_at_40_columns_is_key_value_lines_without_a_table_or_cut_words():
    err = io.StringIO()
    reporter = Reporter(err=err)
    reporter.console = Console(file=err, width=40, soft_wrap=True, highlight=False)
    reporter.summary(_result(MIXED), failed_output="failed.ndjson", checkpoint="run.ckpt")
    text = err.getvalue()
    assert "┃" not in text and "│" not in text and "…" not in text
    assert all(len(line) <= 40 for line in text.splitlines()), text
    lines = text.splitlines()
    assert lines[0] == "gspx summary"
    assert any(line.startswith("identify: ") for line in lines) and any(line.startswith("all: ") for line in lines)
    words = text.split()
    for word in ("delivered,", "skipped,", "invalid,", "failed", "requests:", "throughput:", "checkpoint:"):
        assert word in words, word


def test_summary_at_80_columns_keeps_the_table():
    err = io.StringIO()
    reporter = Reporter(err=err)
    reporter.console = Console(file=err, width=80, soft_wrap=True, highlight=False)
    reporter.summary(_result(MIXED))
    assert "┃ type" in err.getvalue() and "…" not in err.getvalue()
