"""A flaky Gainsight PX is not a down one (issue 16): each request failing at first, a random share of
attempts failing, short Retry-Afters while other workers are busy, and a key refused on a one-event input.

The gate runs with its real schedule here (5 s of silence before a hold, probes 1 s apart): the point
is that ordinary weather never reaches it. Only the retry backoff is shortened in-process, so 300
events take seconds; the subprocess tests run gspx exactly as users do, real backoff included.
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from e2e import TEST_KEY, finish, gspx, write_config, write_events
from gspx_cli.delivery import sender
from test_delivery_e2e import expected_user_writes, mixed_events, read_report, received_user_writes, track_numbers

FAST_BACKOFF = 0.01


@pytest.fixture
def setup(px_server, tmp_path, monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_BASE", FAST_BACKOFF)
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def _send_300(px, cfg, tmp, *extra):
    events = mixed_events()
    report = tmp / "report.json"
    started = time.monotonic()
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--report", str(report), *extra, write_events(tmp, events))
    return events, run, read_report(report), time.monotonic() - started


def _assert_all_once_in_user_order(px, events, run, data):
    assert run.exit_code == 0, run.stderr
    assert (data["delivered"], data["failed"], data["not_sent"]) == (300, 0, 0)
    assert track_numbers(px) == Counter(range(210))  # each custom event exactly once
    assert received_user_writes(px) == expected_user_writes(events)  # per-user order
    assert all(px.users[f"user-{u}"]["accountId"] == f"acct-{u % 10}" for u in range(30))


@pytest.mark.parametrize("fault", [
    {"fail_first": 2, "fail_status": 503},
    {"fail_first": 2, "fail_status": 502},  # a proxy's HTML page
    {"drop_first": 2},  # the connection closed, no answer
    {"drop_first": 1, "fail_first": 1, "fail_status": 503},
])
def test_a_px_failing_the_first_two_attempts_of_every_request_delivers_300_events_once_in_order_without_a_hold(
        setup, fault):
    px, cfg, tmp = setup
    for name, value in fault.items():
        setattr(px, name, value)
    events, run, data, took = _send_300(px, cfg, tmp)
    _assert_all_once_in_user_order(px, events, run, data)
    assert all(r.attempt >= 3 for r in px.requests if 200 <= r.status < 300)  # the fault really applied
    assert data["holds"] == 0 and "looks unavailable" not in run.stderr  # weather, not an outage
    assert took < 30  # the retries alone cost ~1 s here; a hold would be minutes


def test_a_px_failing_a_random_40_percent_of_attempts_delivers_300_events_once_in_order(setup):
    px, cfg, tmp = setup
    px.fail_rate = 0.4  # unseeded: thread timing varies which attempt fails anyway, the rule must hold for any
    # default max_retries (5): without free retries in flaky weather ~1 request in 250 would run out
    with open(cfg) as fh:
        text = fh.read().replace("max_retries: 3", "max_retries: 5")
    with open(cfg, "w") as fh:
        fh.write(text)
    events, run, data, took = _send_300(px, cfg, tmp)
    _assert_all_once_in_user_order(px, events, run, data)
    failed = sum(1 for r in px.requests if r.status == 503)
    assert failed > 0.3 * len(px.requests)  # the weather was as bad as asked
    assert data["held_seconds"] < 3 and took < 30


def test_a_request_px_always_refuses_still_fails_in_flaky_weather_after_a_bounded_number_of_attempts(setup):
    px, cfg, tmp = setup
    px.fail_rate = 0.3
    doomed = {"type": "track", "userId": "user-doomed", "event": "Doomed", "properties": {"n": -1}}
    real_decide = px._decide

    def decide(method, kind, obj_id, hdrs, body, bad_json, attempt):
        if isinstance(body, dict) and body.get("eventName") == "Doomed":
            return px._failure(503)
        return real_decide(method, kind, obj_id, hdrs, body, bad_json, attempt)

    px._decide = decide
    events = [{"type": "track", "userId": f"user-{i % 20}", "event": "E", "properties": {"n": i}} for i in range(200)]
    events.insert(100, doomed)
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--max-retries", "2", "--report", str(report),
               write_events(tmp, events))
    data = read_report(report)
    assert run.exit_code == 1 and (data["delivered"], data["failed"]) == (200, 1), run.stderr
    tries = sum(1 for r in px.requests if isinstance(r.body, dict) and r.body.get("eventName") == "Doomed")
    assert 3 <= tries <= 1 + 2 + sender.FREE_RETRIES_PER_RETRY * 2  # its retries, and a bounded few for the weather


def _spawn(cfg, path, *extra):
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    env.pop("PYTHONUNBUFFERED", None)
    return subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", "-c", cfg, *extra, path], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("retry_after", ["1", "3"])
def test_a_short_retry_after_holds_back_every_worker_until_it_has_passed(px_server, tmp_path, retry_after):
    px = px_server.px
    px.latency = 0.05  # seven other workers have requests on the wire when the 429 comes
    events = [{"type": "track", "userId": f"u{i % 16}", "event": "E", "properties": {"n": i}} for i in range(400)]
    path = write_events(tmp_path, events)
    cfg = write_config(tmp_path, px_server.base_url)
    rule_fired = []
    real_decide = px._decide

    def decide(method, kind, obj_id, hdrs, body, bad_json, attempt):
        if isinstance(body, dict) and body.get("attributes", {}).get("n") == 40 and attempt == 1:
            rule_fired.append(time.monotonic())
            return px._failure(429, retry_after)
        return real_decide(method, kind, obj_id, hdrs, body, bad_json, attempt)

    px._decide = decide
    proc = _spawn(cfg, path, "--concurrency", "8", "--report", str(tmp_path / "report.json"))
    assert finish(proc, 60) == 0, proc.stderr.read()
    [at] = rule_fired
    # requests on the wire when the 429 left arrive within their latency; after that nothing starts
    # until the Retry-After has passed, whatever answers the requests sent before it get
    early = [round(r.t - at, 3) for r in px.requests if at + 0.2 < r.t < at + float(retry_after) - 0.02]
    assert early == []
    assert track_numbers(px) == Counter(range(400))
    assert json.loads((tmp_path / "report.json").read_text())["holds"] == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_on_a_one_event_input_exits_3_with_its_message(px_server, tmp_path, status):
    px = px_server.px
    if status == 401:
        px.api_key = "the-server-wants-another-key"
    else:
        px.forbid = True
    cfg = write_config(tmp_path, px_server.base_url)
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "-c", cfg, "--report", str(report)],
                          input='{"type":"track","userId":"u1","event":"x"}\n', env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 3, proc.stderr
    assert f"Gainsight PX refused the API key (HTTP {status})" in proc.stderr
    assert json.loads(report.read_text())["stopped"] == "auth"
    assert TEST_KEY not in proc.stdout + proc.stderr


def test_as_users_run_it_a_px_failing_each_requests_first_two_attempts_is_ridden_out_with_the_real_backoff(
        px_server, tmp_path):
    px = px_server.px
    px.fail_first = 2
    events = mixed_events(users=12, accounts=4, tracks_per_user=2)  # 60 events, ~100 requests
    path = write_events(tmp_path, events)
    cfg = write_config(tmp_path, px_server.base_url)
    report = tmp_path / "report.json"
    started = time.monotonic()
    proc = _spawn(cfg, path, "--concurrency", "8", "--report", str(report))
    code = finish(proc, 60)
    took = time.monotonic() - started
    stderr = proc.stderr.read()
    assert code == 0, stderr
    data = json.loads(report.read_text())
    assert data["delivered"] == 60 and data["holds"] == 0, stderr
    assert received_user_writes(px) == expected_user_writes(events)
    # each request waits two backoffs (0.25-0.5 s, then 0.5-1 s): ~1.1 s, 8 at a time, ~100 requests
    assert took < 30, took
