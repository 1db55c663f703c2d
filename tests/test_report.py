"""report.py on its own: progress decisions, quiet/verbose lines, the summary and the --report JSON."""

import io
import json
import re
import time
from pathlib import Path

import pytest

from gspx_cli.coordinator import RunResult
from gspx_cli.delivery.sender import RequestStats
from gspx_cli.errors import ExitCode
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED, Ledger
from gspx_cli.read.reader import ReadStats, Record
from gspx_cli.report import live as live_mod
from gspx_cli.report import reporter as report_mod
from gspx_cli.report.reporter import Reporter, report_data, write_report

# The --report keys docs/send.md documents; a key may be added (and documented), never renamed or removed.
REPORT_KEYS = {"version", "gspx_version", "dry_run", "exit_code", "stopped", "read", "delivered", "skipped",
               "failed", "invalid", "not_sent", "by_type", "skip_reasons", "failure_reasons", "requests",
               "warnings", "elapsed_seconds", "events_per_second", "failed_output", "failed_output_lines",
               "failed_output_not_copied",
               "checkpoint", "possible_duplicates", "holds", "held_seconds",
               # issue 17: requests as money
               "requests_saved", "duplicates_skipped", "upsert", "upsert_advice", "estimate", "daily_budget",
               "writes_left_out",
               # issue 22: archives passed over by date
               "pruned_folders", "pruned_objects", "settled_inputs"}
COUNT_KEYS = {"read", "delivered", "skipped", "failed", "invalid", "not_sent"}


class TtyStringIO(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


def _record(n, source="events.ndjson"):
    return Record(source, n, b"{}", {})


def _result(outcomes, stop_reason=None):
    """A RunResult from [(event_type, outcome, reason)], one record per entry, settled through a real Ledger."""
    ledger = Ledger()
    for n, (etype, outcome, reason) in enumerate(outcomes, 1):
        rec = _record(n)
        ledger.read(rec)
        ledger.settle(rec, outcome, reason, etype)
    reqs = RequestStats()
    reqs.count("GET /users", 404, False, "identify")
    reqs.count("POST /users", 503, False, "identify")
    reqs.count("POST /users", 201, True)
    reqs.count("POST /events/custom", 201, False, "track")
    return RunResult(ledger.stats, reqs, ReadStats(), stop_reason=stop_reason)


MIXED = [("identify", DELIVERED, None), ("track", DELIVERED, None), ("track", FAILED, "HTTP 400: bad"),
         ("page", SKIPPED, "page events are not sent to Gainsight PX"), (None, INVALID, "not valid JSON"),
         ("track", INVALID, "event (the event name) is required for track"), ("track", INTERRUPTED, None)]


def test_report_has_the_documented_keys_and_counts_that_add_up():
    data = report_data(_result(MIXED, "SIGINT"), exit_code=ExitCode.SIGINT, failed_output="f.ndjson",
                       checkpoint="c.ckpt", elapsed=2.0)
    assert set(data) == REPORT_KEYS
    assert (data["read"], data["delivered"], data["skipped"], data["failed"], data["invalid"], data["not_sent"]) \
        == (7, 2, 1, 3, 2, 1)
    # `failed` includes `invalid`, so the four outcomes add up to what was read, overall and per type
    assert data["read"] == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    for etype, c in data["by_type"].items():
        assert set(c) == COUNT_KEYS, etype
        assert c["read"] == c["delivered"] + c["skipped"] + c["failed"] + c["not_sent"]
    assert sum(c["read"] for c in data["by_type"].values()) == data["read"]
    assert data["by_type"]["track"] == {"read": 4, "delivered": 1, "skipped": 0, "failed": 2, "invalid": 1,
                                        "not_sent": 1}
    assert data["requests"] == {"total": 4, "retries": 1,
                                "by_kind": {"GET /users": 1, "POST /events/custom": 1, "POST /users": 2},
                                "by_status": {"201": 2, "404": 1, "503": 1},
                                "by_event_type": {"identify": 2, "track": 1}}
    assert sum(r["count"] for r in data["failure_reasons"]) == data["failed"]
    assert all(re.fullmatch(r"events\.ndjson:\d+", r["example"]) for r in data["failure_reasons"])
    assert data["stopped"] == "SIGINT" and data["exit_code"] == 130
    assert data["elapsed_seconds"] == 2.0 and data["events_per_second"] == 3.5
    assert (data["failed_output"], data["checkpoint"], data["dry_run"]) == ("f.ndjson", "c.ckpt", False)


def test_report_of_a_dry_run_names_no_checkpoint():
    data = report_data(_result(MIXED[:2]), exit_code=0, checkpoint="c.ckpt", dry_run=True, elapsed=1)
    assert data["dry_run"] is True and data["checkpoint"] is None and data["stopped"] is None


def test_write_report_writes_one_json_line(tmp_path):
    path = tmp_path / "r.json"
    write_report(str(path), _result(MIXED), exit_code=1, elapsed=1.0)
    text = path.read_text()
    assert text.count("\n") == 1 and json.loads(text)["failed"] == 3


def test_summary_shows_types_requests_reasons_and_where_output_went():
    err = io.StringIO()
    reporter = Reporter(err=err, out=io.StringIO())
    result = _result(MIXED)
    reporter.start(result.stats, result.requests, result.read)
    reporter.stop()
    reporter.summary(result, failed_output="failed.ndjson", checkpoint="run.ckpt")
    text = err.getvalue()
    for expected in ("identify", "track", "page", "not sent", "POST /users 2", "retries       1",
                     "events/s", "elapsed", "(e.g. events.ndjson:3)", "failed.ndjson", "run.ckpt"):
        assert expected in text, expected
    assert "\x1b[" not in text  # not a terminal: no escape codes


def test_quiet_prints_errors_only():
    err = io.StringIO()
    reporter = Reporter(err=err, quiet=True)
    reporter.warning("f:1", "a warning")
    reporter.note("a note")
    reporter.event_failed("f:2", "an event error")
    reporter.error("a run error")
    reporter.summary(_result(MIXED))
    assert err.getvalue().splitlines() == ["error: f:2: an event error", "error: a run error"]


def test_verbose_request_line_has_method_url_status_ms_attempt():
    err = io.StringIO()
    Reporter(err=err, verbose=True).request("POST", "https://api.aptrinsic.com/v1/users", 503, 12.4, 2)
    assert err.getvalue() == "POST https://api.aptrinsic.com/v1/users 503 12ms attempt 2\n"


def test_every_failed_event_gets_its_own_error_line_even_when_quiet():
    err = io.StringIO()
    reporter = Reporter(err=err, quiet=True)
    for n in range(250):
        reporter.event_failed(f"f.ndjson:{n}", "bad")
    lines = err.getvalue().splitlines()
    assert lines == [f"error: f.ndjson:{n}: bad" for n in range(250)]


@pytest.mark.parametrize("stream, flag, quiet, term, shown", [
    (io.StringIO, None, False, "xterm", None),     # not a terminal: no progress
    (TtyStringIO, None, False, "xterm", "live"),   # a terminal: the live display
    (TtyStringIO, False, False, "xterm", None),    # --no-progress
    (io.StringIO, True, False, "xterm", "lines"),  # --progress into a pipe or file: plain lines
    (TtyStringIO, None, False, "dumb", "lines"),   # a dumb terminal cannot move its cursor: plain lines
    (TtyStringIO, True, False, "dumb", "lines"),
    (TtyStringIO, None, True, "xterm", None),      # -q: errors only
    (TtyStringIO, True, True, "xterm", None),      # -q wins over --progress
])
def test_progress_is_live_on_a_terminal_plain_lines_elsewhere_when_forced(stream, flag, quiet, term, shown,
                                                                           monkeypatch):
    monkeypatch.setenv("TERM", term)
    monkeypatch.setattr(report_mod, "PLAIN_PROGRESS_SECONDS", 0.01)
    err, out = stream(), io.StringIO()
    reporter = Reporter(err=err, out=out, progress=flag, quiet=quiet)
    result = _result(MIXED)
    reporter.start(result.stats, result.requests, result.read)
    kind = {type(None): None, live_mod.LiveProgress: "live", report_mod._PlainProgress: "lines"}
    assert kind[type(reporter._progress)] == shown
    if shown == "lines":
        deadline = time.monotonic() + 5
        while "read 7" not in err.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    reporter.stop()
    assert out.getvalue() == ""  # never on stdout
    assert ("read 7" in err.getvalue()) == (shown is not None)
    if shown == "lines":
        assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()


def test_force_color_in_ci_does_not_turn_progress_on(monkeypatch):
    # rich treats FORCE_COLOR as "a terminal"; the progress decision asks the stream itself
    monkeypatch.setenv("FORCE_COLOR", "1")
    reporter = Reporter(err=io.StringIO(), out=io.StringIO())
    result = _result(MIXED)
    reporter.start(result.stats, result.requests, result.read)
    assert reporter._progress is None
    reporter.stop()


def test_dry_run_to_a_terminal_stdout_shows_no_bar_unless_forced():
    result = _result(MIXED)
    reporter = Reporter(err=TtyStringIO(), out=TtyStringIO())
    reporter.start(result.stats, result.requests, result.read, dry_run=True)
    assert reporter._progress is None  # the JSON lines go to the same screen
    reporter = Reporter(err=TtyStringIO(), out=io.StringIO())
    reporter.start(result.stats, result.requests, result.read, dry_run=True)
    assert reporter._progress is not None  # dry run piped into a file or jq: the bar helps
    reporter.stop()


def test_no_color_removes_colour_on_a_terminal(monkeypatch):
    err = TtyStringIO()
    monkeypatch.setenv("NO_COLOR", "1")
    Reporter(err=err).event_failed("f:1", "bad")
    assert err.getvalue() == "error: f:1: bad\n"
    err = TtyStringIO()
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "xterm-256color")
    Reporter(err=err).event_failed("f:1", "bad")
    assert "\x1b[31m" in err.getvalue()  # the same call in colour, so the check above means something


def test_elapsed_is_frozen_when_the_run_stops():
    result = _result(MIXED)
    reporter = Reporter(err=io.StringIO())
    reporter.start(result.stats, result.requests, result.read)
    reporter.stop()
    first = reporter.elapsed(result.stats)
    assert reporter.elapsed(result.stats) == first


def test_failed_lines_too_long_to_copy_are_named_in_the_summary_and_report(tmp_path):
    from e2e import gspx

    config = str(Path(__file__).resolve().parent.parent / "config.example.yaml")
    events = tmp_path / "long.ndjson"
    events.write_text('{"type":"track","userId":"u","event":"' + "e" * 100 + '"}\n{"type":"page","userId":"u"}\n')
    report = tmp_path / "report.json"
    failed = tmp_path / "failed.ndjson"
    run = gspx("send", "--dry-run", "-c", config, "--max-line-bytes", "50", "--failed-output", str(failed),
               "--report", str(report), str(events))
    assert run.exit_code == 1
    assert f"not copied (e.g. {events}:1)" in run.stderr
    assert json.loads(report.read_text())["failed_output_not_copied"] == [f"{events}:1"]
    assert not failed.exists()


def test_progress_share_done_counts_events_still_waiting_for_px():
    # a small file is read ahead at once: by bytes it would be 100% done while most events still wait
    stats, read = Ledger().stats, ReadStats()
    read.bytes_read = read.bytes_total = 1000
    read.current = "events.ndjson"
    stats.read = 100
    stats.outcomes[DELIVERED] = 30
    stats.outcomes[FAILED] = 10
    reporter = Reporter(err=io.StringIO(), out=io.StringIO(), progress=False)
    reporter.start(stats, RequestStats(), read)
    assert reporter._text.done_fraction() == pytest.approx(0.4)
    assert " 40% eta " in reporter._text.status_line()


class _Pipe(io.TextIOWrapper):
    """A stdout that is a pipe: dry-run lines are written as bytes to its buffer."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8")

    def lines(self):
        self.flush()
        return self.buffer.getvalue()


@pytest.mark.parametrize("source", ["in.ndjson", "null.ndjson", "dir/\u00e9v\u00e9nements \"x\".ndjson", "-"])
@pytest.mark.parametrize("event_type", ["identify", "group", "track", None])
def test_a_plan_line_made_piece_by_piece_is_the_line_the_whole_dict_makes(source, event_type):
    from gspx_cli import jsonio
    from gspx_cli.mapping.plan import Plan

    listings = [
        [{"method": "PUT", "url": "https://x/v1/users/u1", "json": {"score": 1.5, "email": "a@x.io"}}],
        [{"method": "POST", "url": "https://x/v1/events/custom", "json": {"v": 1e-07, "big": 10 ** 20}}],
        [{"method": "PUT", "url": "https://x/v1/users/u1", "json": {"gone": None, "f": 2.5e-08}}],
        [{"method": "PUT", "url": "https://x/v1/users/null", "json": {}, "when": "a 404"}],
    ]
    for unchanged in ((), (("user", "u2"),)):
        out = _Pipe()
        reporter = Reporter(out=out, quiet=True, progress=False)
        expected = b""
        for line_no, requests in enumerate(listings, 1):
            record = Record(source, line_no, b"", {})
            reporter.dry_run(record, Plan(event_type, "u1", ()), requests, unchanged)
            line = {"input": record.where, "type": event_type, "requests": requests}
            if unchanged:
                line["unchanged"] = "same as the last write to user u2"
            expected += jsonio.dumps_line(line)
        reporter.flush_out()
        assert out.lines() == expected
