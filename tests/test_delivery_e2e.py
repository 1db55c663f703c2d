"""Delivery engine end to end (issue 3): faults, per-user order, rate limit, auth fail-fast, failure accounting.

Every test runs the real CLI in-process against the stand-in server on 127.0.0.1.
"""

import json
import random
import re
import threading
from collections import Counter, defaultdict

import pytest

from e2e import gspx, write_config, write_events
from gspx_cli.delivery import gate
from gspx_cli.delivery import sender

FAST_BACKOFF = 0.01  # seconds; the real 0.5 s base would make retry-heavy tests take minutes


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(sender, "BACKOFF_BASE", FAST_BACKOFF)
    # every request failing at first looks like an outage: its probes must be quick too
    monkeypatch.setattr(gate, "PROBE_FIRST", FAST_BACKOFF)
    monkeypatch.setattr(gate, "PROBE_CAP", 4 * FAST_BACKOFF)


def mixed_events(users=30, accounts=10, tracks_per_user=7, seed=7):
    """identify, group, tracks, identify again per user; users interleaved at random, each in its own order.

    Every track carries a unique `n`, so each custom event can be told apart (and no two requests
    are identical, which matters to the stand-in's per-request fault counting).
    """
    rng = random.Random(seed)
    per_user = []
    n = 0
    for u in range(users):
        uid, gid = f"user-{u}", f"acct-{u % accounts}"
        seq = [{"type": "identify", "userId": uid, "traits": {"email": f"{uid}@example.com", "name": f"U {u}"},
                "timestamp": "2024-01-01T00:00:00Z"},
               {"type": "group", "userId": uid, "groupId": gid, "traits": {"name": f"Account {gid}"},
                "timestamp": "2024-01-01T00:00:01Z"}]
        for _ in range(tracks_per_user):
            seq.append({"type": "track", "userId": uid, "event": "Clicked", "properties": {"n": n},
                        "timestamp": "2024-01-02T00:00:00Z"})
            n += 1
        seq.append({"type": "identify", "userId": uid, "traits": {"title": f"t{u}"},
                    "timestamp": "2024-01-03T00:00:00Z"})
        per_user.append(seq)
    out = []
    while any(per_user):
        seq = rng.choice([s for s in per_user if s])
        out.append(seq.pop(0))
    return out


def expected_user_writes(events):
    """Per user, the writes their events must produce, in input order."""
    out = defaultdict(list)
    for e in events:
        if e["type"] == "identify":
            out[e["userId"]].append(("user",))
        elif e["type"] == "group":
            out[e["userId"]].append(("attach", e["groupId"]))
        else:
            out[e["userId"]].append(("event", e["properties"]["n"]))
    return dict(out)


def received_user_writes(px):
    """Per user, the successful writes PX received, in arrival order (failed attempts left out)."""
    out = defaultdict(list)
    for r in px.requests:
        if not 200 <= r.status < 300 or r.method == "GET" or "/accounts" in r.path:
            continue
        if r.path == "/v1/events/custom":
            out[r.body["identifyId"]].append(("event", r.body["attributes"]["n"]))
        elif r.method == "POST":
            out[r.body["identifyId"]].append(("user",))
        elif set(r.body) == {"accountId"}:
            out[r.id].append(("attach", r.body["accountId"]))
        else:
            out[r.id].append(("user",))
    return dict(out)


def track_numbers(px):
    return Counter(e["attributes"]["n"] for e in px.events)


def read_report(path):
    data = json.loads(path.read_text())
    assert data["read"] == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    return data


def one_second_window_max(times):
    """The most requests that arrived within any one-second sliding window."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_503_twice_per_request_still_delivers_300_mixed_events_once_in_user_order(setup, fast_backoff):
    px, cfg, tmp = setup
    px.fail_first, px.fail_status = 2, 503
    events = mixed_events()
    assert len(events) == 300
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--max-retries", "3", "--report", str(report),
               write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    data = read_report(report)
    assert data["delivered"] == 300 and data["failed"] == 0
    assert track_numbers(px) == Counter(range(210))  # each custom event exactly once
    assert received_user_writes(px) == expected_user_writes(events)
    assert len(px.users) == 30 and len(px.accounts) == 10
    assert all(px.users[f"user-{u}"]["accountId"] == f"acct-{u % 10}" for u in range(30))
    # the fault really applied: every success came on a third or later attempt of that exact request
    assert all(r.attempt >= 3 for r in px.requests if 200 <= r.status < 300 or r.status in (404, 409))
    assert data["requests"]["retries"] >= 600


def test_429_with_retry_after_waits_as_told_then_delivers_once(setup):
    px, cfg, tmp = setup
    px.fail_first, px.fail_status, px.retry_after = 1, 429, "1"
    events = [{"type": "track", "userId": f"u{i}", "event": "E", "properties": {"n": i}} for i in range(4)]
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert track_numbers(px) == Counter(range(4))
    attempts = defaultdict(list)
    for r in px.requests:
        attempts[r.body["attributes"]["n"]].append((r.t, r.status))
    for n, tries in attempts.items():
        assert [s for _, s in tries] == [429, 201]
        assert tries[1][0] - tries[0][0] >= 0.95  # Retry-After: 1 outweighs the shorter backoff
    assert read_report(report)["requests"]["retries"] == 4


def test_dropped_connections_are_retried_and_nothing_is_sent_twice(setup, fast_backoff):
    px, cfg, tmp = setup
    px.drop_first = 1
    events = mixed_events(users=8, accounts=3, tracks_per_user=3)
    run = gspx("send", "-c", cfg, "--concurrency", "8", write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert track_numbers(px) == Counter(range(24))
    assert received_user_writes(px) == expected_user_writes(events)
    assert all((r.status == 0) == (r.attempt == 1) for r in px.requests)


def test_a_timed_out_request_is_retried(setup, fast_backoff):
    px, cfg, tmp = setup
    px.latency = 1.5  # longer than the 1 s timeout below; lifted before the retry goes out
    path = write_events(tmp, [{"type": "track", "userId": "u1", "event": "E", "properties": {"n": 0}}])
    text = open(cfg).read().replace("timeout: 5", "timeout: 1")
    with open(cfg, "w") as fh:
        fh.write(text)
    timer = threading.Timer(0.5, setattr, (px, "latency", 0.0))
    timer.start()
    try:
        run = gspx("send", "-c", cfg, path)
    finally:
        timer.cancel()
    assert run.exit_code == 0, run.stderr
    assert len(px.requests) == 2
    # The stand-in, like PX, stored the first event although its answer came too late: a retried
    # timeout can duplicate a custom event (a retried create instead meets 409 and becomes an update).
    assert len(px.events) == 2


def test_per_user_order_is_kept_at_concurrency_16_while_users_run_in_parallel(setup):
    px, cfg, tmp = setup
    px.latency = 0.005
    events = mixed_events(users=40, accounts=12, tracks_per_user=4, seed=3)
    run = gspx("send", "-c", cfg, "--concurrency", "16", write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert received_user_writes(px) == expected_user_writes(events)
    assert track_numbers(px) == Counter(range(160))
    # different users really were in flight together: some requests overlapped in time
    stamps = sorted(r.t for r in px.requests)
    assert min(b - a for a, b in zip(stamps, stamps[1:])) < px.latency


def test_two_users_of_one_new_account_at_once_do_not_fail_the_run(setup):
    px, cfg, tmp = setup
    for i in range(8):
        px.users[f"u{i}"] = {"identifyId": f"u{i}"}
    px.latency = 0.05  # the groups are in flight together: several workers would see the account missing
    events = [{"type": "group", "userId": f"u{i}", "groupId": "new-acct", "traits": {"name": "New"}}
              for i in range(8)]
    run = gspx("send", "-c", cfg, "--concurrency", "16", write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert list(px.accounts) == ["new-acct"]
    assert all(px.users[f"u{i}"]["accountId"] == "new-acct" for i in range(8))
    # no race: each account write waited for the one in flight, so one create and no refused one
    # (MAPPING.md "One object, one write at a time")
    assert [(r.method, r.status) for r in px.requests if r.path.startswith("/v1/accounts")] == [("PUT", 404),
                                                                                                ("POST", 201)]


def test_rate_limit_counts_every_request_and_holds_in_every_one_second_window(setup):
    px, cfg, tmp = setup
    # 30 identifies of new users (GET + POST each) and 40 tracks: 100 requests, GETs included
    events = [{"type": "identify", "userId": f"u{i}", "traits": {"email": "x@y.z"}} for i in range(30)]
    events += [{"type": "track", "userId": f"u{i % 30}", "event": "E", "properties": {"n": i}} for i in range(40)]
    run = gspx("send", "-c", cfg, "--concurrency", "8", "--rate-limit", "50", write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    times = [r.t for r in px.requests]
    assert len(times) == 100
    assert one_second_window_max(times) <= 50 * 1.1 + 1
    assert max(times) - min(times) >= 1.8  # 100 requests at 50/s take about 2 s: the limit really applied


@pytest.mark.parametrize("fault", ["wrong key (401)", "no write permission (403)"])
def test_refused_key_stops_500_events_with_exit_3_after_few_requests(setup, px_server, fault):
    px, cfg, tmp = setup
    if fault.startswith("wrong"):
        px.api_key = "the-real-key"
    else:
        px.forbid = True
    events = [{"type": "track", "userId": f"u{i}", "event": "E", "properties": {"n": i}} for i in range(500)]
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--concurrency", "16", "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 3
    assert len(px.requests) < 50
    assert "refused the API key" in run.stderr and px_server.base_url in run.stderr
    data = read_report(report)
    assert data["stopped"] == "auth" and data["delivered"] == 0
    assert "gspx summary" in run.stderr


def test_permanent_failures_and_bad_lines_go_to_failed_output_and_the_summary(setup, fast_backoff):
    px, cfg, tmp = setup
    lines = [{"type": "track", "userId": "u1", "event": "E", "properties": {"n": i}} for i in range(4)]
    lines.insert(2, "{not json")
    path = write_events(tmp, lines)
    raw = open(path).read().splitlines()
    failed = tmp / "failed.ndjson"
    failed.write_text("kept from before\n")  # appended to, never truncated
    report = tmp / "report.json"
    px.fail_next(2, 400)  # one user, concurrency 1: the first two tracks get a permanent 400
    run = gspx("send", "-c", cfg, "--concurrency", "1", "--failed-output", str(failed), "--report", str(report),
               path)
    assert run.exit_code == 1
    written = failed.read_text().splitlines()
    assert written[0] == "kept from before"  # then the failed lines byte for byte, in the order they failed
    assert sorted(written[1:]) == sorted([raw[0], raw[1], raw[2]])
    assert f"{path}:1: POST /events/custom: HTTP 400: Service temporarily unavailable" in run.stderr
    # the summary's top reasons, each with an example file:line (the wording around them may change)
    for reason, line in [("HTTP 400: Service temporarily unavailable", 1), ("not valid JSON", 3)]:
        assert re.search(re.escape(reason) + r".*\(e\.g\. " + re.escape(f"{path}:{line}") + r"\)", run.stderr)
    assert len([r for r in px.requests if r.status == 400]) == 2  # a 400 is not retried
    data = read_report(report)
    assert (data["read"], data["delivered"], data["failed"], data["invalid"]) == (5, 2, 3, 1)
    assert data["failed_output_lines"] == 3


def test_retries_give_up_after_max_retries_and_the_event_fails(setup, fast_backoff):
    px, cfg, tmp = setup
    px.fail_first = 10
    failed = tmp / "failed.ndjson"
    path = write_events(tmp, [{"type": "track", "userId": "u1", "event": "E"}])
    run = gspx("send", "-c", cfg, "--max-retries", "2", "--failed-output", str(failed), path)
    assert run.exit_code == 1
    assert len(px.requests) == 3
    assert "HTTP 503: Service temporarily unavailable (gave up after 2 retries)" in run.stderr
    assert failed.read_text() == open(path).read()


def test_user_queues_hand_out_one_user_at_a_time_in_order_and_count_the_backlog():
    from gspx_cli.delivery.sinks import _UserQueues

    q = _UserQueues()
    for item in ("a1", "a2", "b1"):
        q.put(item[0], item)
    assert q.size == 3  # the coordinator takes no more input while this is at the sink's limit
    assert q.get() == ("a", "a1")
    assert q.get() == ("b", "b1")  # a2 waits while a1 is in flight, b goes ahead
    q.put("c", "c1")
    q.done("a")
    assert q.get() == ("c", "c1")
    assert q.get() == ("a", "a2")
    q.close()
    for user in "abc":
        q.done(user)
    assert q.get() is None
