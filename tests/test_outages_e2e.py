"""Outages and quotas end to end (issue 11): the real CLI against the stand-in's outage switch.

The windows are short (about a second) and the probe schedule is shortened to match, so each test
takes a few seconds; the real schedule (1 s doubling to 30 s) is pinned in test_gate.py.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from e2e import TEST_KEY, gspx, write_config, write_events
from gspx_cli.delivery import gate
from gspx_cli.delivery import sender
from test_delivery_e2e import expected_user_writes, mixed_events, read_report, received_user_writes, track_numbers

PROBE_FIRST = 0.05  # seconds: the real 1 s, scaled down like the windows
PROBE_CAP = 0.2  # the real 30 s
HOLD_QUIET = 0.1  # the real 5 s of silence before a hold, scaled like the backoff (0.5 s -> 0.01 s)


@pytest.fixture
def setup(px_server, tmp_path, monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(gate, "PROBE_FIRST", PROBE_FIRST)
    monkeypatch.setattr(gate, "PROBE_CAP", PROBE_CAP)
    monkeypatch.setattr(gate, "HOLD_QUIET", HOLD_QUIET)
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def tracks(n, users):
    return [{"type": "track", "userId": f"u{i % users}", "event": "E", "properties": {"n": i}} for i in range(n)]


def window(px):
    """(start, end) of the stand-in's outage, on the clock its request log uses."""
    start, end, _, _ = px._outage
    return start, end


def test_an_all_503_window_mid_run_holds_every_event_and_delivers_them_all_in_user_order(setup):
    px, cfg, tmp = setup
    events = mixed_events(users=30, accounts=10, tracks_per_user=7)  # 300 events, ~450 requests
    report = tmp / "report.json"
    px.outage(1.5, status=503, after=0.6)
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--rate-limit", "250", "--report", str(report),
               write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    data = read_report(report)
    assert (data["delivered"], data["failed"]) == (300, 0)
    assert track_numbers(px) == Counter(range(210))  # each custom event once
    assert received_user_writes(px) == expected_user_writes(events)  # per-user order kept
    start, end = window(px)
    during = [r for r in px.requests if start <= r.t < end]
    assert during and all(r.status == 503 for r in during)  # the window really was mid-run
    # the requests in flight when it began, their retries during the quiet time before a hold (backoff
    # from 0.01 s doubling: about 3 each in 0.1 s; flaky is not down), then one probe at a time: 1.5 s
    # at 0.05 doubling to 0.2 s between probes is about 10 probes. Without the hold, 8 workers retried
    # ~every 10-80 ms: ~300.
    assert len(during) <= 8 + 8 * 3 + 12, len(during)
    after = [r.t for r in px.requests if r.t >= end]
    assert after[0] - end <= PROBE_CAP + 0.15  # the next probe finds PX back
    assert data["holds"] >= 1 and 1.0 <= data["held_seconds"] <= 2.5
    assert data["requests"]["retries"] == len(during)  # the failed attempts were all retried
    assert "Gainsight PX looks unavailable" in run.stderr and "HTTP 503" in run.stderr
    assert "Gainsight PX answers again, after" in run.stderr
    assert "held " in run.stderr  # the summary's time held


def test_a_429_with_retry_after_stops_every_request_until_it_has_passed_and_says_why(setup):
    px, cfg, tmp = setup
    report = tmp / "report.json"
    px.outage(0.5, status=429, retry_after="1.5", after=0.3)
    # --max-retries 0: a quota wait is not a retry, so no event may fail for want of one
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--rate-limit", "150", "--max-retries", "0",
               "--report", str(report), write_events(tmp, tracks(150, users=20)))
    assert run.exit_code == 0, run.stderr
    data = read_report(report)
    assert (data["delivered"], data["failed"]) == (150, 0)
    assert track_numbers(px) == Counter(range(150))
    first_429 = min(r.t for r in px.requests if r.status == 429)
    # requests already on the wire arrive a moment later; after that, nothing until the 1.5 s are over
    quiet = [r for r in px.requests if first_429 + 0.1 < r.t < first_429 + 1.45]
    assert quiet == [], [(round(r.t - first_429, 3), r.status) for r in quiet]
    assert "Gainsight PX asked everyone to wait (HTTP 429, Retry-After 1.5s)" in run.stderr
    assert "no request starts before" in run.stderr and "holding" in run.stderr
    assert data["holds"] == 1 and data["held_seconds"] >= 1.4


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_px_down_for_good_stops_with_exit_4_nothing_failed_and_a_rerun_delivers_each_event_once(setup, where):
    px, cfg, tmp = setup
    events = tracks(300, users=30)
    path = write_events(tmp, events)
    report, failed, ckpt = tmp / "report.json", tmp / "failed.ndjson", tmp / "run.ckpt"
    px.outage(None, status=503, after=0.3)
    args = ["send", "-c", cfg, "--concurrency", "8", "--rate-limit", "300", "--max-outage", "1",
            "--failed-output", str(failed), "--report", str(report)]
    started = time.monotonic()
    if where == "file":
        run = gspx(*args, "--checkpoint", str(ckpt), path)
    else:
        run = gspx(*args, "-", input=open(path).read())
    assert run.exit_code == 4, run.stderr
    assert time.monotonic() - started < 6  # 0.3 s of sending, 1 s held, then the wind-down
    data = read_report(report)
    assert data["stopped"] == "outage" and data["failed"] == 0
    assert data["not_sent"] > 0 and data["delivered"] == len(px.events)
    assert data["read"] == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    assert "stayed unavailable" in run.stderr and "delivery.max_outage (1s)" in run.stderr
    px.end_outage()
    if where == "file":
        assert not failed.exists() or failed.read_text() == ""  # the checkpoint resends them: not copied
        rerun = gspx("send", "-c", cfg, "--checkpoint", str(ckpt), path)
    else:
        assert len(failed.read_text().splitlines()) == data["not_sent"]  # in no other file: kept here
        rerun = gspx("send", "-c", cfg, str(failed))
    assert rerun.exit_code == 0, rerun.stderr
    assert track_numbers(px) == Counter(range(300))  # every event delivered exactly once


def test_answers_slower_than_the_timeout_count_each_resend_as_a_possible_duplicate(setup):
    px, cfg, tmp = setup
    with open(cfg) as fh:
        text = fh.read().replace("timeout: 5", "timeout: 0.3")
    with open(cfg, "w") as fh:
        fh.write(text)
    report = tmp / "report.json"
    px.latency = 0.5  # PX applies each request, but answers after gspx stopped waiting
    timer = threading.Timer(1.0, setattr, (px, "latency", 0.0))
    timer.start()
    try:
        run = gspx("send", "-c", cfg, "--concurrency", "4", "--report", str(report),
                   write_events(tmp, tracks(12, users=6)))
    finally:
        timer.cancel()
    assert run.exit_code == 0, run.stderr
    data = read_report(report)
    assert data["delivered"] == 12
    extra = len(px.events) - 12  # the stand-in, like PX, stored every attempt that got through
    assert extra > 0 and data["possible_duplicates"] == extra
    assert re.search(rf"^duplicates\? +{extra} custom events were re-sent", run.stderr, re.M), run.stderr


def test_a_sigterm_during_a_two_minute_retry_after_ends_the_run_within_two_seconds(px_server, tmp_path):
    px = px_server.px
    px.outage(None, status=429, retry_after="120")
    cfg = write_config(tmp_path, px_server.base_url)
    report = tmp_path / "report.json"
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", "-c", cfg, "--report", str(report),
                             write_events(tmp_path, tracks(50, users=10))],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        text, deadline = b"", time.monotonic() + 20
        while b"asked everyone to wait" not in text:
            assert time.monotonic() < deadline and proc.poll() is None, text
            if select.select([proc.stderr], [], [], 0.2)[0]:
                text += os.read(proc.stderr.fileno(), 4096)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - sent < 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = json.loads(report.read_text())
    assert data["stopped"] == "SIGTERM" and data["failed"] == 0 and data["not_sent"] == 50
    assert data["holds"] == 1 and data["held_seconds"] > 0
