"""One bad event ends promptly (issue 23): PX closes connections every 10 requests and answers one event
with a proxy's 502 page every time. The 300 others are delivered in seconds; the doomed event must fail
after its own retries and a bounded few extra, not be retried for minutes on the run's stale failures.

gspx runs as users run it (a subprocess, real backoff); the stand-in serves in this process.
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from e2e import TEST_KEY, write_config, write_events
from gspx_cli.delivery.sender import FREE_RETRIES_PER_RETRY
from test_delivery_e2e import read_report, track_numbers

MAX_RETRIES = 2
BOUND = 20.0  # seconds for the whole run; before the fix, abrupt closes kept it going ~1 min (~6 with the defaults)


def _events():
    events = [{"type": "track", "userId": f"user-{i % 60}", "event": "E", "properties": {"n": i}} for i in range(300)]
    events.insert(150, {"type": "track", "userId": "user-doomed", "event": "Doomed", "properties": {"n": -1}})
    return events


def _doomed_tries(px):
    return [r for r in px.requests if isinstance(r.body, dict) and r.body.get("eventName") == "Doomed"]


@pytest.mark.parametrize("close_mode", ["abrupt", "silent"])
def test_an_event_px_always_refuses_fails_after_its_own_retries_while_connections_close_every_10_requests(
        px_server, tmp_path, close_mode):
    px = px_server.px
    px.close_after, px.close_mode = 10, close_mode
    px.fail_always("Doomed", 502)
    cfg = write_config(tmp_path, px_server.base_url)
    report = tmp_path / "report.json"
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "-c", cfg, "--concurrency", "8",
                          "--max-retries", str(MAX_RETRIES), "--report", str(report), write_events(tmp_path, _events())],
                         env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    took = time.monotonic() - started
    assert run.returncode == 1, run.stderr
    data = read_report(report)
    assert (data["delivered"], data["failed"], data["not_sent"]) == (300, 1, 0), run.stderr
    assert track_numbers(px) == Counter(range(300))  # every other event once
    [failure] = data["failure_reasons"]
    assert "HTTP 502" in failure["reason"] and "Bad Gateway" in failure["reason"]
    assert "<" not in failure["reason"] + run.stderr  # PX's status, never the page's markup
    tries = _doomed_tries(px)
    assert all(r.status in (0, 502) for r in tries)
    assert MAX_RETRIES + 1 <= len(tries) <= MAX_RETRIES + 1 + FREE_RETRIES_PER_RETRY * MAX_RETRIES
    assert data["holds"] == 0  # one bad event among answers is not an outage
    if close_mode == "abrupt":
        assert sum(1 for r in px.requests if r.status == 0) >= 10  # the closes really happened
    assert took < BOUND, (took, [round(r.t - tries[0].t, 1) for r in tries])
