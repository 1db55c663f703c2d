"""Requests are money (issue 17): upserts in the fewest requests whatever PX answers, unchanged writes not
repeated, no event sent twice, a daily budget. Executor flows behind `responses`; runs end to end
against the stand-in over HTTP."""

import json
import threading
import time
from collections import Counter

import pytest

from e2e import gspx, write_config, write_events, writes
from gspx_cli.delivery.budget import DailyBudget
from gspx_cli.errors import BudgetSpentError, PxError
from gspx_cli.delivery.executor import Executor
from gspx_cli.mapping.plan import Plan, Update, Upsert
from gspx_cli.delivery.px import PxClient
from gspx_cli.sandbox import DROP
from gspx_cli.delivery.sender import Halt, RateLimiter, RequestStats, RetryPolicy, Sender

BODY = {"email": "a@b.c", "type": "USER", "propertyKeys": ["AP-1"]}


def _executor(fake_px, max_retries=0):
    _, base_url = fake_px
    stats = RequestStats()
    sender = Sender(PxClient(base_url, "test-key-123", timeout=5), RetryPolicy(max_retries, base=0.001, cap=0.002),
                    RateLimiter(1e9), Halt(), stats)
    return Executor(sender, stats=stats), stats


def _identify(uid="u1", body=BODY, create_first=False):
    return Plan("identify", uid, (Upsert("user", uid, body, {**body, "identifyId": uid}, create_first=create_first),))


def _sent(px):
    return [(r.method, r.path, r.status) for r in px.requests]


def _answer(px, rule):
    """Let rule(method, path, body, attempt) answer a request instead of the stand-in (None: the stand-in)."""
    real = px._decide

    def decide(method, kind, obj_id, hdrs, body, bad_json, attempt):
        got = rule(method, f"/v1{kind.replace('{id}', obj_id or '')}" if kind else None, body, attempt)
        return real(method, kind, obj_id, hdrs, body, bad_json, attempt) if got is None else got

    px._decide = decide


# -- upserts (MAPPING.md "Upserts") ---------------------------------------------------------------------


@pytest.mark.parametrize("create_first, exists, expected", [
    (False, True, [("PUT", "/v1/users/u1", 204)]),  # update-first where the object exists: 1 request
    (False, False, [("PUT", "/v1/users/u1", 404), ("POST", "/v1/users", 201)]),
    (True, False, [("POST", "/v1/users", 201)]),  # create-first where it does not: 1 request
    (True, True, [("POST", "/v1/users", 400), ("PUT", "/v1/users/u1", 204)]),  # PX: 400 "possible duplicate"
])
def test_an_upsert_takes_one_request_for_an_object_in_the_expected_state_and_two_otherwise(
        fake_px, create_first, exists, expected):
    px, _ = fake_px
    if exists:
        px.users["u1"] = {"identifyId": "u1"}
    executor, stats = _executor(fake_px)
    facts = executor.execute(_identify(create_first=create_first))
    assert _sent(px) == expected
    assert px.users["u1"]["email"] == "a@b.c"
    assert [f[:2] for f in facts] == [("user", "u1")]  # what the checkpoint will remember
    assert (stats.upserts_found, stats.upserts_created) == ((1, 0) if exists else (0, 1))


def test_a_create_refused_after_the_update_said_not_found_is_followed_by_one_more_update(fake_px):
    px, _ = fake_px
    px.users["u1"] = {"identifyId": "u1"}  # made by another process just as the update ran
    _answer(px, lambda method, path, body, attempt: px._failure(404) if method == "PUT" and attempt == 1 else None)
    executor, _ = _executor(fake_px)
    executor.execute(_identify())
    assert _sent(px) == [("PUT", "/v1/users/u1", 404), ("POST", "/v1/users", 400), ("PUT", "/v1/users/u1", 204)]


@pytest.mark.parametrize("create_first", [False, True])
def test_an_update_saying_not_found_after_a_refused_create_fails_with_the_creates_message(fake_px, create_first):
    px, _ = fake_px
    from gspx_cli.sandbox import _error

    _answer(px, lambda method, path, body, attempt:
            _error(400, "propertyKeys: unknown product") if method == "POST" else None)
    executor, _ = _executor(fake_px)
    with pytest.raises(PxError) as info:
        executor.execute(_identify(create_first=create_first))
    assert "POST /users: HTTP 400: propertyKeys: unknown product" in info.value.message  # not the 404's
    assert [m for m, _, _ in _sent(px)] == (["POST", "PUT"] if create_first else ["PUT", "POST", "PUT"])


def test_a_duplicate_create_answered_409_by_an_older_stand_in_becomes_the_update_too(fake_px):
    px, _ = fake_px
    px.duplicate_status = 409
    px.users["u1"] = {"identifyId": "u1"}
    executor, _ = _executor(fake_px)
    executor.execute(_identify(create_first=True))
    assert _sent(px) == [("POST", "/v1/users", 409), ("PUT", "/v1/users/u1", 204)]


def test_an_object_known_to_exist_gets_the_update_alone_even_create_first(fake_px):
    px, _ = fake_px
    executor, stats = _executor(fake_px)
    executor.execute(_identify(create_first=True))
    executor.execute(_identify(body={**BODY, "title": "Dr"}, create_first=True))
    assert _sent(px) == [("POST", "/v1/users", 201), ("PUT", "/v1/users/u1", 204)]
    assert stats.saved_known == 1  # the create a known object does without


def test_an_update_identical_to_the_objects_last_write_is_not_sent(fake_px):
    px, _ = fake_px
    executor, stats = _executor(fake_px)
    executor.execute(_identify())
    before = len(px.requests)
    reordered = dict(reversed(list(BODY.items())))  # the same JSON value: key order does not matter
    assert executor.execute(_identify(body=reordered)) == []
    assert len(px.requests) == before and stats.saved_unchanged == 1
    executor.execute(_identify(body={**BODY, "title": "Dr"}))  # a change is sent
    executor.execute(_identify())  # and then the first body is a change again
    assert [m for m, _, _ in _sent(px)[before:]] == ["PUT", "PUT"]


def test_an_attach_repeating_the_users_last_write_is_not_sent(fake_px):
    px, _ = fake_px
    px.users["u1"] = {"identifyId": "u1"}
    executor, stats = _executor(fake_px)
    attach = Plan("group", "u1", (Update("user", "u1", {"accountId": "g1"}),))
    executor.execute(attach)
    executor.execute(attach)
    assert _sent(px) == [("PUT", "/v1/users/u1", 204)] and stats.saved_unchanged == 1


def test_a_failed_write_is_not_the_last_write_so_the_same_body_is_sent_again(fake_px):
    px, _ = fake_px
    executor, _ = _executor(fake_px)
    executor.execute(_identify())
    px.fail_next(1, 503)
    with pytest.raises(PxError):
        executor.execute(_identify(body={**BODY, "title": "Dr"}))  # PX may or may not hold it now
    executor.execute(_identify(body={**BODY, "title": "Dr"}))
    executor.execute(_identify())
    assert [(m, s) for m, _, s in _sent(px)][2:] == [("PUT", 503), ("PUT", 204), ("PUT", 204)]


# -- the daily budget ----------------------------------------------------------------------------------


def test_the_budget_counts_every_request_per_utc_day_and_refuses_past_the_limit():
    now = [1_733_356_800.0 + 86_400 - 2]  # 2024-12-05 23:59:58 UTC
    budget = DailyBudget(3, {"2024-12-05": 1}, clock=lambda: now[0])  # an earlier run made 1 today
    budget.take()
    budget.take()
    with pytest.raises(BudgetSpentError) as info:
        budget.take()
    assert info.value.exit_code == 5
    assert "3 requests on 2024-12-05 (UTC)" in str(info.value) and "in 0h00m" in str(info.value)
    assert budget.spent()
    now[0] += 3  # 00:00:01 the next day: a new day's budget
    assert not budget.spent()
    budget.take()
    assert budget.drain() == {"2024-12-05": 2, "2024-12-06": 1}
    assert budget.drain() == {}


def test_without_a_limit_the_budget_only_counts():
    budget = DailyBudget(None, clock=lambda: 0.0)
    for _ in range(5):
        budget.take()
    assert budget.drain() == {"1970-01-01": 5}


# -- end to end ----------------------------------------------------------------------------------------


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def _track(n, user="u1", message_id=None, **props):
    return {"type": "track", "userId": user, "event": "E", "messageId": message_id or f"m{n}",
            "properties": {"n": n, **props}}


def test_an_event_whose_messageid_was_delivered_is_skipped_as_a_duplicate(setup):
    px, cfg, tmp = setup
    events = [_track(1), _track(2), _track(1), {"type": "track", "userId": "u1", "event": "E", "properties": {}}]
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert sorted(e["attributes"].get("n", 0) for e in px.events) == [0, 1, 2]  # no messageId: always sent
    data = json.loads(report.read_text())
    assert data["skipped"] == 1 and data["skip_reasons"] == {"duplicate messageId": 1}
    assert data["duplicates_skipped"] == 1


def test_a_dry_run_names_where_a_duplicate_was_first_seen(setup):
    px, cfg, tmp = setup
    path = write_events(tmp, [_track(1), _track(2), _track(1)])
    run = gspx("send", "--dry-run", "-c", cfg, path, key=None)
    lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert lines[2] == {"input": f"{path}:3", "type": "track", "skipped": f"duplicate messageId, first at {path}:1"}


def test_no_dedupe_sends_every_event(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, "--no-dedupe", write_events(tmp, [_track(1), _track(1)]))
    assert run.exit_code == 0 and len(px.events) == 2


def test_two_events_with_one_messageid_in_flight_at_once_are_sent_once(setup):
    px, cfg, tmp = setup
    px.latency = 0.2  # the first is on the wire when a worker takes the second (another user)
    events = [_track(1, user="u1", message_id="same"), _track(2, user="u2", message_id="same")]
    run = gspx("send", "-c", cfg, "--concurrency", "8", write_events(tmp, events))
    assert run.exit_code == 0 and len(px.events) == 1


def test_a_duplicate_waiting_on_an_event_that_fails_is_sent(setup):
    px, cfg, tmp = setup
    px.latency = 0.1
    from gspx_cli.sandbox import _error

    _answer(px, lambda method, path, body, attempt:
            _error(400, "refused") if body and body.get("attributes", {}).get("n") == 1 else None)
    events = [_track(1, user="u1", message_id="same"), _track(2, user="u2", message_id="same")]
    run = gspx("send", "-c", cfg, "--concurrency", "8", write_events(tmp, events))
    assert run.exit_code == 1
    assert [e["attributes"]["n"] for e in px.events] == [2]  # the first failed: the second went


def test_an_unchanged_identify_costs_nothing_and_the_summary_counts_the_requests_saved(setup):
    px, cfg, tmp = setup
    px.users["u1"] = {"identifyId": "u1"}
    same = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}
    events = [{**same, "messageId": f"i{n}"} for n in range(4)]
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 0, run.stderr
    assert [(r.method, r.status) for r in px.requests] == [("PUT", 204)]
    data = json.loads(report.read_text())
    assert data["delivered"] == 4 and data["requests_saved"] == {"unchanged_writes": 3, "known_objects": 0}
    assert "saved" in run.stderr and "3 unchanged writes" in run.stderr


def test_the_summary_says_when_create_first_would_have_saved_requests(setup):
    px, cfg, tmp = setup
    events = [{"type": "identify", "userId": f"u{n}", "traits": {"email": "x@y.z"}} for n in range(5)]
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 0
    assert "--upsert create-first would have saved 5 requests" in run.stderr  # all 5 were new
    assert json.loads(report.read_text())["upsert_advice"] == {"order": "create-first", "would_save": 5}
    run = gspx("send", "-c", cfg, "--upsert", "create-first", write_events(tmp, events, "again.ndjson"))
    assert "would have saved" not in run.stderr or "update-first would have saved" in run.stderr


def test_a_dry_run_estimates_the_requests_time_and_days_of_a_live_run(setup):
    px, cfg, tmp = setup
    events = [{"type": "identify", "userId": "u1"}, _track(1), _track(2),
              {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}]
    report = tmp / "report.json"
    run = gspx("send", "--dry-run", "-c", cfg, "--report", str(report), write_events(tmp, events), key=None)
    estimate = json.loads(report.read_text())["estimate"]
    # identify 1-2, two tracks 2, the group (user known): account 1-2, attach 1
    assert (estimate["fewest"]["requests"], estimate["most"]["requests"]) == (5, 7)
    assert estimate["fewest"]["by_kind"] == {"POST /events/custom": 2, "PUT /accounts": 1, "PUT /users": 2}
    assert estimate["requests_per_day"] == 1_000_000
    assert "estimate" in run.stderr and "5 to 7 requests" in run.stderr


# -- across runs, with the checkpoint -------------------------------------------------------------------


def test_delivered_messageids_are_remembered_across_runs_standard_input_included(setup):
    px, cfg, tmp = setup
    events = [{"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"email": "a@b.c"}},
              _track(1), _track(2)]
    text = "".join(json.dumps(e) + "\n" for e in events)
    ckpt = str(tmp / "run.db")
    assert gspx("send", "-c", cfg, "--checkpoint", ckpt, "-", input=text).exit_code == 0
    sent = len(px.requests)
    report = tmp / "report.json"
    # the same data piped again after more of it: the first lines are skipped by count, the rest by messageId
    again = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--report", str(report), "-", input=text + text)
    assert again.exit_code == 0 and len(px.requests) == sent
    assert json.loads(report.read_text())["duplicates_skipped"] == 3
    # and the same events in a file: no prefix to skip, the messageIds say they were delivered
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--report", str(report), write_events(tmp, events))
    assert run.exit_code == 0 and len(px.requests) == sent
    data = json.loads(report.read_text())
    assert data["skipped"] == 3 and data["duplicates_skipped"] == 3


def test_a_dump_overlapping_an_earlier_one_sends_only_what_is_new(setup):
    px, cfg, tmp = setup
    ckpt = str(tmp / "run.db")
    first = write_events(tmp, [_track(n) for n in range(10)], "first.ndjson")
    second = write_events(tmp, [_track(n) for n in range(5, 15)], "second.ndjson")  # a re-export, half new
    assert gspx("send", "-c", cfg, "--checkpoint", ckpt, first).exit_code == 0
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, second)
    assert run.exit_code == 0
    assert Counter(e["attributes"]["n"] for e in px.events) == Counter(range(15))  # each once


def test_the_checkpoint_remembers_objects_and_their_last_write_across_runs(setup):
    px, cfg, tmp = setup
    ckpt = str(tmp / "run.db")
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}
    group = {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}
    assert gspx("send", "-c", cfg, "--checkpoint", ckpt, write_events(tmp, [identify, group], "a.ndjson")).exit_code == 0
    before = len(px.requests)
    changed = {**group, "traits": {"name": "Acme", "plan": "pro"}}
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, write_events(tmp, [changed, changed], "b.ndjson"))
    assert run.exit_code == 0, run.stderr
    # no user lookup (known), the account's update alone (known), the attach unchanged (the user's last
    # write), and the second group entirely unchanged
    assert [(r.method, r.path) for r in px.requests[before:]] == [("PUT", "/v1/accounts/g1")]


def test_a_spent_daily_budget_stops_with_exit_5_and_the_next_day_goes_on(setup):
    from gspx_cli.delivery.budget import utc_day
    from gspx_cli.state.checkpoint import Checkpoint

    px, cfg, tmp = setup
    ckpt = str(tmp / "run.db")
    path = write_events(tmp, [_track(n, user=f"u{n % 3}") for n in range(20)])
    store = Checkpoint(ckpt).store
    today = utc_day(time.time())
    store.set_requests(today, 95)  # earlier runs today made 95 of the 100 allowed
    store.close()
    report = tmp / "report.json"
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--daily-budget", "100", "--report", str(report), path)
    assert run.exit_code == 5, run.stderr
    assert len(px.requests) == 5  # never more than the budget in a UTC day
    assert "budget is spent" in run.stderr and "next UTC day starts at 00:00 UTC" in run.stderr
    data = json.loads(report.read_text())
    assert data["stopped"] == "budget" and data["failed"] == 0 and data["not_sent"] == 15
    assert data["daily_budget"] == {"limit": 100, "day": today, "used": 100}
    store = Checkpoint(ckpt).store
    assert store.requests_on(today) == 100
    store.set_requests(today, 0)  # as if the next UTC day had come
    store.close()
    again = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--daily-budget", "100", path)
    assert again.exit_code == 0, again.stderr
    assert Counter(e["attributes"]["n"] for e in px.events) == Counter(range(20))  # each once


# ---- a run's memory of messageIds without a checkpoint (CLI.md "The checkpoint") --------------------

def test_a_runs_memory_keeps_the_most_recent_ids_and_forgets_the_oldest_first():
    from gspx_cli.state.dedupe import RunMemory

    memory = RunMemory(limit=3)
    for n in range(5):
        memory.add(f"m-{n}", "in.ndjson", n + 1)
    memory.add("m-3", "other.ndjson", 9)  # seen again: its first place stays, and it is not added twice
    assert [memory.delivered_at(f"m-{n}") for n in range(5)] == [None, None, "in.ndjson:3", "in.ndjson:4",
                                                                 "in.ndjson:5"]
    memory.add("m-5", "in.ndjson", 6)
    assert memory.delivered_at("m-2") is None and memory.delivered_at("m-5") == "in.ndjson:6"

