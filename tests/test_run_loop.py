"""The run loop as a filter (issue 9): real pipes whose writer pauses, real signals to gspx alone,
a file still being written, and the coordinator with a fake sink."""

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from e2e import TEST_KEY, finish, wait_until, write_config
from gspx_cli.config import load_settings
from gspx_cli.coordinator import Coordinator, StopFlag
from gspx_cli.state.ledger import DELIVERED, Ledger
from gspx_cli.mapping.plan import Plan
from gspx_cli.report.reporter import Reporter
from gspx_cli.state.store import CheckpointStore
from gspx_cli.read.feeder import READ_AHEAD_BATCHES
from gspx_cli.read.reader import MAX_BATCH


def track(n, user=None):
    return json.dumps({"type": "track", "userId": user or f"u{n % 7}", "event": "E", "properties": {"n": n}})


def saved_inputs(path):
    """The inputs entries the checkpoint at path holds now."""
    with CheckpointStore(str(path)) as store:
        return store.load_inputs()


def spawn(args, tmp_path, *, stdout=subprocess.PIPE):
    """`python -m gspx_cli send ARGS` reading a real pipe; stderr to a file; no PYTHONUNBUFFERED, as in a user's shell."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "GSPX_CONFIG")}
    env["GSPX_API_KEY"] = TEST_KEY
    err = open(tmp_path / "gspx.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", *args], stdin=subprocess.PIPE,
                            stdout=stdout, stderr=err, env=env, cwd=str(tmp_path))
    err.close()
    return proc


def feed(proc, line):
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()




def signal_twice(proc, gap):
    """SIGTERM, and another gap seconds later: (exit status, whether it came within 1.5 s of the second)."""
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = finish(proc)
    return code, time.monotonic() - started < 1.5


def read_line(stream, timeout):
    """One line from a pipe within timeout seconds, else None."""
    if not select.select([stream], [], [], timeout)[0]:
        return None
    return stream.readline()


# -- a filter: every event as soon as its line is complete ---------------------------------------------


def test_trickle_pipe_delivers_each_event_within_a_second_while_the_pipe_stays_open(px_server, tmp_path):
    cfg = write_config(tmp_path, px_server.base_url)
    proc = spawn(["-c", cfg], tmp_path, stdout=subprocess.DEVNULL)
    try:
        for n in range(4):
            feed(proc, track(n))
            started = time.monotonic()
            assert wait_until(lambda: len(px_server.px.events) == n + 1, 5.0), f"event {n} never arrived"
            assert time.monotonic() - started < 1.0, f"event {n} took {time.monotonic() - started:.2f}s"
            time.sleep(0.3)  # the producer pauses; the pipe stays open
    finally:
        proc.stdin.close()
    assert finish(proc) == 0


def test_trickle_dry_run_line_reaches_stdout_within_a_second(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    proc = spawn(["--dry-run", "-c", cfg], tmp_path)
    try:
        for n in range(3):
            feed(proc, track(n))
            line = read_line(proc.stdout, 1.0)
            assert line is not None, f"dry-run line {n} not flushed within a second"
            assert json.loads(line)["input"] == f"-:{n + 1}"
            time.sleep(0.2)
    finally:
        proc.stdin.close()
    assert finish(proc) == 0


# -- signals while the producer is silent ------------------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_while_producer_is_silent_stops_within_two_seconds_and_keeps_every_event(
        px_server, tmp_path, sig, code):
    px_server.px.latency = 0.3  # some events are in flight or queued when the signal comes
    cfg = write_config(tmp_path, px_server.base_url, "")
    failed, report = tmp_path / "failed.ndjson", tmp_path / "report.json"
    proc = spawn(["-c", cfg, "--concurrency", "2", "--failed-output", str(failed), "--report", str(report)],
                 tmp_path, stdout=subprocess.DEVNULL)
    try:
        for n in range(30):
            feed(proc, track(n, user=f"u{n % 3}"))
        assert wait_until(lambda: len(px_server.px.events) >= 2)
        proc.send_signal(sig)  # to gspx alone, not its process group; the pipe stays open and silent
        started = time.monotonic()
        assert finish(proc) == code
        assert time.monotonic() - started < 2.0
    finally:
        proc.stdin.close()
    data = json.loads(report.read_text())
    assert data["read"] == 30 == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    assert data["not_sent"] > 0 and data["failed"] == 0
    delivered = sorted(e["attributes"]["n"] for e in px_server.px.events)
    kept = sorted(json.loads(line)["properties"]["n"] for line in failed.read_text().splitlines())
    assert len(delivered) == data["delivered"] and len(kept) == data["not_sent"]
    assert sorted(delivered + kept) == list(range(30))  # every event read is delivered or kept, once
    err = (tmp_path / "gspx.err").read_text()
    assert f"appended to {failed}" in err and "not sent: as they are" in err and "Traceback" not in err


def test_no_request_starts_after_a_signal_even_within_the_event_in_flight(px_server, tmp_path):
    px_server.px.latency = 1.5  # the identify's update (PUT, which says "not found") is in flight then
    cfg = write_config(tmp_path, px_server.base_url)
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"type": "identify", "userId": "new-user", "traits": {"email": "a@b.c"}}) + "\n")
    ckpt = tmp_path / "run.ckpt"
    proc = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    proc.stdin.close()
    assert wait_until(lambda: len(px_server.px.requests) == 1)  # the PUT has arrived
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert finish(proc) == 143
    assert time.monotonic() - started < 3.0  # the PUT's answer, and not the create it calls for
    assert [(r.method, r.path) for r in px_server.px.requests] == [("PUT", "/v1/users/new-user")]
    px_server.px.latency = 0.0
    again = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    again.stdin.close()
    assert finish(again) == 0
    assert list(px_server.px.users) == ["new-user"]  # the rerun sent the whole event


def test_second_signal_exits_at_once_after_saving_the_checkpoint(px_server, tmp_path):
    px_server.px.latency = 3.0  # in flight far longer than the test waits
    cfg = write_config(tmp_path, px_server.base_url)
    events = tmp_path / "events.ndjson"
    events.write_text("".join(track(n) + "\n" for n in range(20)))
    ckpt = tmp_path / "run.ckpt"
    proc = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    proc.stdin.close()
    assert wait_until(lambda: len(px_server.px.requests) >= 1)
    assert signal_twice(proc, 0.5) == (143, True)
    assert saved_inputs(ckpt)  # saved before leaving
    assert "aborted at once" in (tmp_path / "gspx.err").read_text()


def test_sigterm_with_checkpoint_then_rerun_delivers_every_event_exactly_once(px_server, tmp_path):
    px_server.px.latency = 0.05
    cfg = write_config(tmp_path, px_server.base_url)
    events = tmp_path / "events.ndjson"
    events.write_text("".join(track(n) + "\n" for n in range(200)))
    ckpt = tmp_path / "run.ckpt"
    proc = spawn(["-c", cfg, "--checkpoint", str(ckpt), "--concurrency", "4", str(events)], tmp_path,
                 stdout=subprocess.DEVNULL)
    proc.stdin.close()
    assert wait_until(lambda: len(px_server.px.events) >= 20)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 143
    first = len(px_server.px.events)
    assert first < 200
    px_server.px.latency = 0.0
    again = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    again.stdin.close()
    assert finish(again) == 0
    sent = sorted(e["attributes"]["n"] for e in px_server.px.events)
    assert sent == list(range(200))  # nothing twice, nothing missing


def test_second_signal_still_keeps_the_queued_events_of_a_pipe_in_the_failed_output(px_server, tmp_path):
    px_server.px.latency = 3.0
    cfg = write_config(tmp_path, px_server.base_url)
    failed = tmp_path / "failed.ndjson"
    proc = spawn(["-c", cfg, "--concurrency", "2", "--failed-output", str(failed)], tmp_path,
                 stdout=subprocess.DEVNULL)
    try:
        for n in range(10):
            feed(proc, track(n, user=f"u{n}"))
        assert wait_until(lambda: len(px_server.px.requests) == 2)  # two in flight, eight queued
        assert signal_twice(proc, 0.3) == (143, True)
    finally:
        proc.stdin.close()
    kept = sorted(json.loads(line)["properties"]["n"] for line in failed.read_text().splitlines())
    in_flight = {r.body["attributes"]["n"] for r in px_server.px.requests}
    assert len(kept) == 8 and not in_flight & set(kept) and sorted(kept + list(in_flight)) == list(range(10))
    assert "8 events read but not sent are in" in (tmp_path / "gspx.err").read_text()


# -- a file still being written ----------------------------------------------------------------------


def test_file_appended_while_read_is_resumed_by_checkpoint_with_every_event_once(px_server, tmp_path):
    cfg = write_config(tmp_path, px_server.base_url)
    events = tmp_path / "growing.ndjson"
    line4 = track(4)
    events.write_text("".join(track(n) + "\n" for n in range(4)) + line4[:15])  # line 5 half written
    ckpt, report = tmp_path / "run.ckpt", tmp_path / "report.json"
    first = spawn(["-c", cfg, "--checkpoint", str(ckpt), "--report", str(report), str(events)], tmp_path,
                  stdout=subprocess.DEVNULL)
    first.stdin.close()
    assert finish(first) == 1
    err = (tmp_path / "gspx.err").read_text()
    assert f"{events}:5: incomplete last line" in err
    assert saved_inputs(ckpt)[str(events)]["settled_lines"] == 4
    with open(events, "a") as fh:  # the writer finishes the line and adds another
        fh.write(line4[15:] + "\n" + track(5) + "\n")
    second = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    second.stdin.close()
    assert finish(second) == 0
    assert sorted(e["attributes"]["n"] for e in px_server.px.events) == [0, 1, 2, 3, 4, 5]


def test_complete_last_line_without_line_end_is_an_ordinary_line(px_server, tmp_path):
    cfg = write_config(tmp_path, px_server.base_url)
    events = tmp_path / "events.ndjson"
    events.write_text(track(0) + "\n" + track(1))
    ckpt = tmp_path / "run.ckpt"
    proc = spawn(["-c", cfg, "--checkpoint", str(ckpt), str(events)], tmp_path, stdout=subprocess.DEVNULL)
    proc.stdin.close()
    assert finish(proc) == 0
    assert len(px_server.px.events) == 2
    assert saved_inputs(ckpt)[str(events)]["settled_lines"] == 2


# -- the coordinator with a fake sink -------------------------------------------------------------------


class FakeSink:
    """Takes plans and completes them only when the test says so; nothing is ever sent."""

    error = None
    remembers = False

    def __init__(self, inbox, room=True):
        self.inbox = inbox
        self.taken = []
        self.room = room
        self.halted = False

    def submit(self, record, plan):
        self.taken.append((record, plan))
        return None

    def record(self, record, result):
        pass

    def has_room(self):
        return self.room

    def idle(self):
        pass

    def halt(self):
        self.halted = True
        queued, self.taken = self.taken[1:], self.taken[:1]  # the first is "in flight"
        return queued

    def abandon(self):
        return self.taken

    def close(self, timeout=0.0):
        pass

    def forget(self, message_id):
        pass

    def complete_all(self):
        for record, plan in self.taken:
            self.inbox.put(("done", record, DELIVERED, None, plan.type, ()))
        self.taken = []


@pytest.fixture(params=["inline", "thread"])
def reading(request, monkeypatch):
    """Each coordinator test twice: its file read on the coordinator's thread (as a plain file is), and
    on the reader thread (as stdin, a pipe, a directory or a bucket is)."""
    if request.param == "thread":
        monkeypatch.setattr("gspx_cli.read.feeder.reads_inline", lambda paths: False)
    return request.param


def _coordinator(tmp_path, lines, sink_factory, stop=None, checkpoint=None, failed_output=None):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    settings = load_settings(cfg, require_api_key=False)
    events = tmp_path / "in.ndjson"
    events.write_text("".join(line + "\n" for line in lines))
    inbox = queue.SimpleQueue()
    sink = sink_factory(inbox)
    ledger = Ledger(checkpoint=checkpoint, failed_output=failed_output)
    reporter = Reporter(err=open(os.devnull, "w"), quiet=True, progress=False)
    coordinator = Coordinator(settings, [str(events)], sink=sink, inbox=inbox, reporter=reporter, ledger=ledger,
                              stop=stop or StopFlag(), max_line_bytes=1 << 20)
    return coordinator, sink, ledger


def test_coordinator_settles_only_from_completions_and_ends_when_all_are_back(tmp_path, reading):
    lines = [track(n) for n in range(5)] + ['{"type":"page","userId":"u"}', "not json"]
    coordinator, sink, ledger = _coordinator(tmp_path, lines, FakeSink)
    assert coordinator._reader.inline == (reading == "inline")

    def complete_later():
        wait_until(lambda: len(sink.taken) == 5, 5.0)
        sink.complete_all()

    import threading
    threading.Thread(target=complete_later, daemon=True).start()
    coordinator.run()
    st = ledger.stats
    assert st.read == 7 and st.outcomes == {"delivered": 5, "skipped": 1, "invalid": 1}
    assert all(type(plan) is Plan for _, plan in sink.taken) or not sink.taken


def test_coordinator_stop_counts_queued_and_unread_work_as_not_sent(tmp_path, reading):
    stop = StopFlag()
    lines = [track(n) for n in range(10)]
    coordinator, sink, ledger = _coordinator(tmp_path, lines, FakeSink, stop=stop)

    import threading

    def stop_when_taken():
        wait_until(lambda: len(sink.taken) == 10, 5.0)
        stop.set("SIGTERM")
        wait_until(lambda: sink.halted, 5.0)
        record, _ = sink.taken.pop(0)  # the one in flight comes back after the stop
        coordinator._inbox.put(("done", record, DELIVERED, None, "track", ()))

    threading.Thread(target=stop_when_taken, daemon=True).start()
    coordinator.run()
    st = ledger.stats
    assert sink.halted
    assert st.read == 10 and st.outcomes["delivered"] + st.outcomes["interrupted"] == 10
    assert st.outcomes["interrupted"] == 9 and st.outcomes["delivered"] == 1


def test_coordinator_takes_no_more_input_while_the_sink_is_full(tmp_path, reading):
    stop = StopFlag()
    lines = [track(n) for n in range(3000)]  # several read batches
    coordinator, sink, ledger = _coordinator(tmp_path, lines, lambda inbox: FakeSink(inbox, room=False), stop=stop)

    import threading

    def stop_soon():
        time.sleep(0.5)
        stop.set("SIGINT")

    threading.Thread(target=stop_soon, daemon=True).start()
    coordinator.run()
    assert sink.taken == [] and ledger.stats.read == ledger.stats.outcomes["interrupted"]
    assert ledger.stats.read < 3000  # the reader was held back: at most a few batches read ahead


def test_dry_run_with_stdout_closed_stops_with_a_message_not_a_traceback(tmp_path):
    # `gspx send --dry-run ... >&-`: the interpreter starts with sys.stdout None
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    events = tmp_path / "events.ndjson"
    events.write_text("".join(track(n) + "\n" for n in range(20)))
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "GSPX_CONFIG")}
    with open(tmp_path / "gspx.err", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-c", cfg, "--report",
                               str(report), str(events)], stdin=subprocess.DEVNULL, stderr=err, env=env,
                              cwd=str(tmp_path), timeout=60, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    err = (tmp_path / "gspx.err").read_text()
    assert "error: cannot write standard output: standard output is closed" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    data = json.loads(report.read_text())
    assert data["stopped"] == "output" and data["read"] == data["delivered"] + data["not_sent"]


def test_dry_run_to_a_full_disk_stops_with_a_message_not_a_traceback(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    events = tmp_path / "events.ndjson"
    events.write_text("".join(track(n) + "\n" for n in range(3000)))  # more than one block of output
    report = tmp_path / "report.json"
    with open("/dev/full", "wb") as full:
        proc = spawn(["--dry-run", "-c", cfg, "--report", str(report), str(events)], tmp_path, stdout=full)
        proc.stdin.close()
        assert finish(proc) == 1
    err = (tmp_path / "gspx.err").read_text()
    assert "error: cannot write standard output: No space left on device" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    data = json.loads(report.read_text())
    assert data["stopped"] == "output" and data["read"] == data["delivered"] + data["not_sent"]


def test_dry_run_with_stderr_closed_writes_only_its_lines_to_stdout(tmp_path):
    # `gspx send --dry-run ... 2>&-`: sys.stderr is None, where rich would write the summary to stdout
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    events = tmp_path / "events.ndjson"
    events.write_text("".join(track(n) + "\n" for n in range(5)) + "{not json\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "GSPX_CONFIG")}
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-c", cfg, str(events)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd=str(tmp_path), timeout=60,
                          preexec_fn=lambda: os.close(2))
    assert proc.returncode == 1  # the bad line, as with stderr open
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is data
    assert [line["input"].rsplit(":", 1)[1] for line in lines] == ["1", "2", "3", "4", "5", "6"]
    assert "error" in lines[-1]


@pytest.mark.parametrize("args", [["--no-such-option"], ["/no/such/file.ndjson"]])
def test_a_usage_error_with_stderr_closed_writes_nothing_to_stdout(tmp_path, args):
    # click's UsageError.show() falls back to stdout when sys.stderr is None: `gspx send ... > out 2>&-`
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "GSPX_CONFIG")}
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-c", cfg, *args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, cwd=str(tmp_path), timeout=60,
                          preexec_fn=lambda: os.close(2))
    assert proc.returncode == 2
    assert proc.stdout == b""


class InstantSink(FakeSink):
    """A fast PX: every plan's completion is on the inbox before submit() returns."""

    def __init__(self, inbox):
        super().__init__(inbox)
        self.submitted = 0
        self.most_ahead = 0  # the most lines read and not yet handed to the sink
        self.read_stats = None
        self.sent = []  # the raw line of each plan

    def submit(self, record, plan):
        self.submitted += 1
        self.sent.append(record.raw)
        if self.read_stats is not None:
            self.most_ahead = max(self.most_ahead, self.read_stats.lines - self.submitted)
        self.inbox.put(("done", record, DELIVERED, None, plan.type, ()))
        return None


def test_read_ahead_stays_bounded_when_completions_come_back_fast(tmp_path, reading):
    # what is read and not yet dispatched stays a few batches (memory, and what a stop leaves unsent),
    # also when completions keep the inbox busy (inline: a batch is never queued behind them)
    n = 40 * MAX_BATCH
    coordinator, sink, ledger = _coordinator(tmp_path, [track(i) for i in range(n)], InstantSink)
    assert coordinator._reader.inline == (reading == "inline")
    sink.read_stats = coordinator.read_stats
    coordinator.run()
    assert ledger.stats.outcomes == {"delivered": n}
    assert sink.most_ahead <= (READ_AHEAD_BATCHES + 2) * MAX_BATCH, f"{sink.most_ahead:,} lines read ahead"


def test_a_stop_is_acted_on_at_once_while_a_plain_file_read_inline_takes_long(tmp_path):
    # CLI.md: a signal ends a run within about a second. Inline, a batch that takes long to read (a
    # resume passing over a long settled prefix, a slow mount, blank lines) is one pull: the run's stop
    # flag ends it at the next chunk, so what follows the stop is neither waited for nor read. The signal
    # is a real one (SIGALRM, handled on the main thread as SIGINT is), sent once the first lines are in.
    # (A reader thread may well read the whole file before the coordinator takes its second batch: the
    # time to stop with one is pinned with pipes, above.)
    coordinator, sink, ledger = _coordinator(tmp_path, [track(i) for i in range(2 * MAX_BATCH)], InstantSink)
    assert coordinator._reader.inline
    with open(tmp_path / "in.ndjson", "ab") as f:
        f.write(b"\n" * (24 << 20))
        f.write("".join(track(i) + "\n" for i in range(10)).encode())
    stop, stats, at_stop = coordinator._stop, coordinator.read_stats, []
    submit = sink.submit

    def submit_then_alarm(record, plan):
        if sink.submitted == MAX_BATCH:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
        return submit(record, plan)

    def on_alarm(signum, frame):
        at_stop.extend((time.monotonic(), stats.bytes_read))
        stop.set("SIGINT")

    sink.submit = submit_then_alarm
    before = signal.signal(signal.SIGALRM, on_alarm)
    try:
        coordinator.run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert at_stop, "the run ended before the signal"
    took, read_after = time.monotonic() - at_stop[0], stats.bytes_read - at_stop[1]
    assert stop.reason == "SIGINT" and took < 1.0, f"the run went on {took:.1f} s after the signal"
    assert read_after < (4 << 20), f"{read_after:,} bytes read after the signal"
    st = ledger.stats
    assert st.read == st.outcomes["delivered"] + st.outcomes.get("interrupted", 0)
    assert st.read < 2 * MAX_BATCH + 10  # the events after the blank lines were never read


def padded_track(n):
    return json.dumps({"type": "track", "userId": f"u{n % 7}", "event": "E", "properties": {"n": n, "pad": "x" * (n % 17)}})


def run_stopped_mid_read(tmp_path, monkeypatch, lines, stop_after_chunk, **ledger_options):
    """A coordinator run whose stop lands while the chunk after stop_after_chunk is cut into lines (inline:
    a signal inside pull(); with a reader thread, _wind_down's reader.stop() while it reads)."""
    from gspx_cli.read import reader as reader_module

    coordinator, sink, ledger = _coordinator(tmp_path, lines, InstantSink, **ledger_options)
    chunks_of = reader_module._RawChunks.__iter__

    def chunks(raw):
        for at, data in enumerate(chunks_of(raw)):
            yield data
            if at == stop_after_chunk:
                coordinator._stop.set("SIGINT")
                coordinator._reader.stop()

    monkeypatch.setattr(reader_module._RawChunks, "__iter__", chunks)
    coordinator.run()
    monkeypatch.setattr(reader_module._RawChunks, "__iter__", chunks_of)
    return sink, ledger


def test_a_stop_in_the_middle_of_a_line_of_a_file_leaves_no_cut_off_line_in_the_failed_output(
        tmp_path, monkeypatch, reading):
    # the file keeps what was not read: the line the stop cut is not read (neither sent nor failed)
    from gspx_cli.read.reader import READ_CHUNK_BYTES

    lines = [padded_track(n) for n in range(4000)]
    data = "".join(line + "\n" for line in lines).encode()
    assert b"\n" not in data[2 * READ_CHUNK_BYTES - 10:2 * READ_CHUNK_BYTES + 10]  # the cut is inside a line
    failed = tmp_path / "failed.ndjson"
    sink, ledger = run_stopped_mid_read(tmp_path, monkeypatch, lines, 1, failed_output=str(failed))
    st = ledger.stats
    unsent = failed.read_bytes().splitlines() if failed.exists() else []
    assert not set(unsent) - set(line.encode() for line in lines), "a cut-off line in the failed output"
    assert st.read == st.outcomes[DELIVERED] + st.outcomes["interrupted"] == len(sink.sent) + len(unsent)
    assert st.outcomes.get("invalid", 0) == 0


def test_stops_mid_read_and_within_a_resumed_prefix_then_a_rerun_send_each_event_of_a_file_once(
        tmp_path, monkeypatch, reading):
    lines = [padded_track(n) for n in range(6000)]
    checkpoint = str(tmp_path / "run.ckpt")
    sent = []
    for at in (3, 1, 4, None):  # the second run stops while it passes over the first run's settled lines
        sink, ledger = run_stopped_mid_read(tmp_path, monkeypatch, lines, at, checkpoint=checkpoint)
        sent += sink.sent
    assert sorted(sent) == sorted(line.encode() for line in lines)

