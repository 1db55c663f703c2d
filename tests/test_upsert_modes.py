"""Backfills that cannot harm what PX holds now (issue 23): update-only never creates, create-only never
overwrites; and one write per object at a time, so two users joining a new account cost one create.

The executor's branches behind `responses`; the modes and the per-object waits end to end, gspx run as
a subprocess against the stand-in that `gspx sandbox` serves, with the stand-in's state checked after."""

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from e2e import TEST_KEY, write_config, write_events
from gspx_cli.delivery.executor import Executor, ObjectWrites, Skip
from gspx_cli.delivery.px import PxClient
from gspx_cli.delivery.sender import Halt, RateLimiter, RequestStats, RetryPolicy, Sender
from gspx_cli.errors import Interrupted, PxError
from gspx_cli.mapping.plan import LEFT_EXISTS, LEFT_MISSING, LEFT_NOT_CREATED, NOT_IN_PX, Plan, RequireUser, Update, Upsert
from gspx_cli.sandbox import _error

BODY = {"email": "new@x.io", "type": "USER", "propertyKeys": ["AP-1"]}
ACCOUNT = {"name": "Acme", "propertyKeys": ["AP-1"]}
RUN_TIMEOUT = 60  # seconds: no gspx run in these tests is unbounded


def _executor(fake_px, mode):
    _, base_url = fake_px
    stats = RequestStats()
    sender = Sender(PxClient(base_url, "test-key-123", timeout=5), RetryPolicy(0), RateLimiter(1e9), Halt(), stats)
    return Executor(sender, stats=stats, mode=mode), stats


def _identify(uid="u1"):
    return Plan("identify", uid, (Upsert("user", uid, BODY, {**BODY, "identifyId": uid}),))


def _group(uid="u1", gid="g1", named=True, require_user=True):
    create = {**ACCOUNT, "id": gid} if named else None
    account = Upsert("account", gid, ACCOUNT if named else {"propertyKeys": ["AP-1"]}, create,
                     create_error=None if named else f"account '{gid}' needs a name to be created")
    steps = (account, Update("user", uid, {"accountId": gid}))
    return Plan("group", uid, ((RequireUser(uid),) if require_user else ()) + steps)


def _sent(px):
    return [(r.method, r.path, r.status) for r in px.requests]


def _answer(px, rule):
    """Let rule(method, path, body) answer a request instead of the stand-in (None: the stand-in)."""
    real = px._decide

    def decide(method, kind, obj_id, hdrs, body, bad_json, attempt):
        got = rule(method, f"/v1{kind.replace('{id}', obj_id or '')}" if kind else None, body)
        return real(method, kind, obj_id, hdrs, body, bad_json, attempt) if got is None else got

    px._decide = decide


# -- update-only: never create --------------------------------------------------------------------------


def test_update_only_updates_a_user_that_exists(fake_px):
    px, _ = fake_px
    px.users["u1"] = {"identifyId": "u1", "email": "old@x.io"}
    executor, stats = _executor(fake_px, "update-only")
    executor.execute(_identify())
    assert _sent(px) == [("PUT", "/v1/users/u1", 204)] and px.users["u1"]["email"] == "new@x.io"
    assert not stats.left_out


def test_update_only_skips_the_event_of_a_missing_user_and_never_creates_it(fake_px):
    px, _ = fake_px
    executor, stats = _executor(fake_px, "update-only")
    with pytest.raises(Skip) as info:
        executor.execute(_identify())
    assert info.value.reason == NOT_IN_PX == "not in Gainsight PX (--upsert update-only)"
    assert _sent(px) == [("PUT", "/v1/users/u1", 404)] and "u1" not in px.users
    assert stats.left_out == {LEFT_MISSING: 1}


def test_update_only_skips_a_group_whose_account_is_missing_whole_without_the_attach(fake_px):
    px, _ = fake_px
    px.users["u1"] = {"identifyId": "u1"}
    executor, stats = _executor(fake_px, "update-only")
    with pytest.raises(Skip):
        executor.execute(_group())
    assert _sent(px) == [("GET", "/v1/users/u1", 200), ("PUT", "/v1/accounts/g1", 404)]
    assert "g1" not in px.accounts and "accountId" not in px.users["u1"]
    assert stats.left_out == {LEFT_MISSING: 2}  # the account's create and the attach


@pytest.mark.parametrize("require_user", [True, False])
def test_update_only_skips_a_group_whose_user_is_missing(fake_px, require_user):
    px, _ = fake_px
    px.accounts["g1"] = {"id": "g1", "name": "Old"}
    executor, _ = _executor(fake_px, "update-only")
    with pytest.raises(Skip) as info:
        executor.execute(_group(require_user=require_user))
    assert info.value.reason == NOT_IN_PX and "u1" not in px.users
    assert _sent(px)[-1] in (("GET", "/v1/users/u1", 404), ("PUT", "/v1/users/u1", 404))


# -- create-only: never overwrite -----------------------------------------------------------------------


def test_create_only_creates_a_missing_user_in_one_request(fake_px):
    px, _ = fake_px
    executor, stats = _executor(fake_px, "create-only")
    executor.execute(_identify())
    assert _sent(px) == [("POST", "/v1/users", 201)] and px.users["u1"]["email"] == "new@x.io"
    assert stats.upserts_created == 1


@pytest.mark.parametrize("duplicate_status", [400, 409])
def test_create_only_counts_a_create_refused_as_a_duplicate_as_done_and_overwrites_nothing(fake_px, duplicate_status):
    px, _ = fake_px
    px.duplicate_status = duplicate_status
    px.users["u1"] = {"identifyId": "u1", "email": "newer@x.io"}
    executor, stats = _executor(fake_px, "create-only")
    facts = executor.execute(_identify())
    assert _sent(px) == [("POST", "/v1/users", duplicate_status)]
    assert px.users["u1"]["email"] == "newer@x.io"
    assert [f[:2] for f in facts] == [("user", "u1")]  # known to exist now: the checkpoint remembers it
    assert stats.left_out == {LEFT_EXISTS: 1} and stats.upserts_found == 1
    executor.execute(_identify())  # known to exist: no write at all
    assert len(px.requests) == 1 and stats.left_out == {LEFT_EXISTS: 2}


def test_create_only_fails_on_a_400_that_is_not_a_duplicate_with_pxs_message(fake_px):
    px, _ = fake_px
    _answer(px, lambda method, path, body: _error(400, "propertyKeys: unknown product") if method == "POST" else None)
    executor, _ = _executor(fake_px, "create-only")
    with pytest.raises(PxError) as info:
        executor.execute(_identify())
    assert info.value.message == "POST /users: HTTP 400: propertyKeys: unknown product"
    assert _sent(px) == [("POST", "/v1/users", 400)]  # no update follows


def test_create_only_attaches_only_to_a_user_or_account_this_run_created(fake_px):
    px, _ = fake_px
    px.users["old"] = {"identifyId": "old"}
    px.accounts["g-old"] = {"id": "g-old", "name": "Old"}
    executor, stats = _executor(fake_px, "create-only")
    executor.execute(_group("old", "g-old"))  # neither made by this run: no write at all
    assert "accountId" not in px.users["old"] and px.accounts["g-old"]["name"] == "Old"
    executor.execute(_group("old", "g-new"))  # the account is new: the attach goes
    assert px.users["old"]["accountId"] == "g-new" and px.accounts["g-new"]["name"] == "Acme"
    executor.execute(_identify("fresh"))
    executor.execute(_group("fresh", "g-old"))  # the user is new: the attach goes
    assert px.users["fresh"]["accountId"] == "g-old"
    assert stats.left_out == {LEFT_EXISTS: 2, LEFT_NOT_CREATED: 1}


@pytest.mark.parametrize("exists", [True, False])
def test_create_only_looks_up_an_account_it_cannot_create_and_fails_only_when_missing(fake_px, exists):
    px, _ = fake_px
    px.users["u1"] = {"identifyId": "u1"}
    if exists:
        px.accounts["g1"] = {"id": "g1", "name": "Old"}
    executor, _ = _executor(fake_px, "create-only")
    if exists:
        executor.execute(_group(named=False))
        assert _sent(px)[1:] == [("GET", "/v1/accounts/g1", 200)]  # no write, no attach
    else:
        with pytest.raises(PxError, match="needs a name"):
            executor.execute(_group(named=False))


# -- one object, one write at a time --------------------------------------------------------------------


def test_a_write_to_an_object_waits_for_the_one_in_flight():
    writes, order = ObjectWrites(), []
    writes.acquire(("account", "g1"))

    def second():
        writes.acquire(("account", "g1"))
        order.append("second")
        writes.release(("account", "g1"))

    waiter = threading.Thread(target=second)
    waiter.start()
    writes.acquire(("account", "g2"))  # another object is free
    time.sleep(0.1)
    order.append("first")
    writes.release(("account", "g1"))
    waiter.join(5)
    assert order == ["first", "second"]


def test_a_wait_for_an_objects_write_ends_when_the_run_stops():
    halt = Halt()
    writes = ObjectWrites(halt)
    writes.acquire(("user", "u1"))
    halt.set()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        writes.acquire(("user", "u1"))
    assert time.monotonic() - started < 2


def test_an_account_made_by_another_event_meanwhile_gets_no_second_write(fake_px):
    px, _ = fake_px
    px.users.update({"u1": {"identifyId": "u1"}, "u2": {"identifyId": "u2"}})
    executor, stats = _executor(fake_px, None)
    executor.execute(_group("u1"))
    before = len(px.requests)
    executor.execute(_group("u2"))
    assert _sent(px)[before:] == [("GET", "/v1/users/u2", 200), ("PUT", "/v1/users/u2", 204)]
    assert stats.saved_unchanged == 1


# -- end to end: gspx as users run it, against the stand-in -----------------------------------------------


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def _gspx(cfg, *args, key=TEST_KEY):
    env = {**os.environ, "GSPX_API_KEY": key or ""}
    env.pop("PYTHONUNBUFFERED", None)
    run = subprocess.run([sys.executable, "-m", "gspx_cli", *args[:1], "-c", cfg, *args[1:]], env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert TEST_KEY not in run.stdout + run.stderr
    return run


def _backfill(px):
    """PX holds a user and an account that changed since the archive; the archive also has new ones."""
    px.users["old"] = {"identifyId": "old", "email": "newer@x.io"}
    px.accounts["acct-old"] = {"id": "acct-old", "name": "Renamed since"}
    return [{"type": "identify", "userId": "old", "traits": {"email": "stale@x.io"}},
            {"type": "identify", "userId": "new", "traits": {"email": "new@x.io"}},
            {"type": "group", "userId": "old", "groupId": "acct-old", "traits": {"name": "Stale name"}},
            {"type": "group", "userId": "new", "groupId": "acct-new", "traits": {"name": "New Co"}},
            {"type": "group", "userId": "old", "groupId": "acct-new2", "traits": {"name": "Other Co"}},
            {"type": "track", "userId": "new", "event": "Clicked"}]


def test_update_only_end_to_end_updates_what_exists_and_skips_the_rest(setup):
    px, cfg, tmp = setup
    report = tmp / "report.json"
    run = _gspx(cfg, "send", "--upsert", "update-only", "--report", str(report), write_events(tmp, _backfill(px)))
    assert run.returncode == 0, run.stderr
    assert list(px.users) == ["old"] and list(px.accounts) == ["acct-old"]  # nobody created
    assert (px.users["old"]["email"], px.users["old"]["accountId"]) == ("stale@x.io", "acct-old")
    assert px.accounts["acct-old"]["name"] == "Stale name"
    assert len(px.events) == 1  # custom events are sent as usual
    data = json.loads(report.read_text())
    # skipped: the new user's identify and group, and the group of an account not in PX; left out: the
    # new user's create, account and attach, the missing account's create and its attach
    assert data["skip_reasons"] == {NOT_IN_PX: 3} and data["delivered"] == 3
    assert data["writes_left_out"] == {NOT_IN_PX: 5} and data["upsert"] == "update-only"
    assert "left out" in run.stderr and "5 writes not made" in run.stderr


def test_create_only_end_to_end_creates_what_is_missing_and_overwrites_nothing(setup):
    px, cfg, tmp = setup
    report = tmp / "report.json"
    run = _gspx(cfg, "send", "--upsert", "create-only", "--report", str(report), write_events(tmp, _backfill(px)))
    assert run.returncode == 0, run.stderr
    assert px.users["old"] == {"identifyId": "old", "email": "newer@x.io", "accountId": "acct-new2"}
    assert px.users["new"]["email"] == "new@x.io" and px.users["new"]["accountId"] == "acct-new"
    assert px.accounts["acct-old"]["name"] == "Renamed since"
    assert (px.accounts["acct-new"]["name"], px.accounts["acct-new2"]["name"]) == ("New Co", "Other Co")
    assert not [r for r in px.requests if r.method == "PUT" and "accountId" not in (r.body or {})]  # no overwrite
    data = json.loads(report.read_text())
    assert data["delivered"] == 6 and data["writes_left_out"] == {LEFT_EXISTS: 2, LEFT_NOT_CREATED: 1}


def test_create_only_end_to_end_fails_a_400_that_is_not_a_duplicate_with_pxs_message(setup):
    px, cfg, tmp = setup
    _answer(px, lambda method, path, body: _error(400, "propertyKeys: unknown product") if method == "POST" else None)
    run = _gspx(cfg, "send", "--upsert", "create-only", write_events(tmp, [{"type": "identify", "userId": "u1"}]))
    assert run.returncode == 1
    assert "POST /users: HTTP 400: propertyKeys: unknown product" in run.stderr
    assert [(r.method, r.status) for r in px.requests] == [("POST", 400)] and not px.users


@pytest.mark.parametrize("mode", ["update-first", "create-first", "create-only"])
@pytest.mark.parametrize("users", [2, 20])
def test_users_joining_one_new_account_at_once_cost_one_create_and_their_attaches(setup, users, mode):
    px, cfg, tmp = setup
    px.latency = 0.03  # every group is in flight at once
    events = [{"type": "identify", "userId": f"u{n}"} for n in range(users)]
    events += [{"type": "group", "userId": f"u{n}", "groupId": "g1", "traits": {"name": "Acme"}} for n in range(users)]
    run = _gspx(cfg, "send", "--concurrency", "16", "--upsert", mode, write_events(tmp, events))
    assert run.returncode == 0, run.stderr
    account = Counter((r.method, r.status) for r in px.requests if "/accounts" in r.path)
    assert account == ({("PUT", 404): 1, ("POST", 201): 1} if mode == "update-first" else {("POST", 201): 1})
    attaches = [r for r in px.requests if r.method == "PUT" and r.body == {"accountId": "g1"}]
    assert sorted(r.path for r in attaches) == sorted(f"/v1/users/u{n}" for n in range(users))
    assert all(200 <= r.status < 300 for r in attaches)
    assert all(px.users[f"u{n}"]["accountId"] == "g1" for n in range(users))


def _dry(cfg, tmp, events, *args):
    path = write_events(tmp, events)
    run = _gspx(cfg, "send", "--dry-run", *args, path, key=None)
    assert run.returncode == 0, run.stderr
    return path, [json.loads(line) for line in run.stdout.splitlines()]


def test_a_dry_run_lists_which_branch_each_mode_skips(setup):
    _, cfg, tmp = setup
    events = [{"type": "identify", "userId": "u1"},
              {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}]
    _, (ident, grp) = _dry(cfg, tmp, events, "--upsert", "update-only")
    assert [(i["method"], i["when"]) for i in ident["requests"]] == [
        ("PUT", "always; a 404 skips the event: not in Gainsight PX (--upsert update-only)")]
    assert [i["method"] for i in grp["requests"]] == ["GET", "PUT", "PUT"]  # update-only made nothing surely known
    assert all("skips the event: not in Gainsight PX (--upsert update-only)" in i["when"] for i in grp["requests"])
    _, (ident, grp) = _dry(cfg, tmp, events, "--upsert", "create-only")
    assert [(i["method"], i["url"].rsplit("/v1", 1)[1]) for i in ident["requests"]] == [("POST", "/users")]
    assert "refused as a duplicate when the user exists, which then gets no write" in ident["requests"][0]["when"]
    assert [(i["method"], i.get("when")) for i in grp["requests"]][1:] == [
        ("PUT", "skipped unless this run created user u1 or account g1 (--upsert create-only)")]


def test_a_dry_run_marks_a_write_an_earlier_event_makes_unchanged(setup):
    _, cfg, tmp = setup
    events = [{"type": "identify", "userId": "u1"}, {"type": "identify", "userId": "u2"},
              {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
              {"type": "group", "userId": "u2", "groupId": "g1", "traits": {"name": "Acme"}}]
    path, lines = _dry(cfg, tmp, events)
    fourth = lines[3]
    assert fourth["unchanged"] == "same as the last write to account g1"
    requests = [(i["method"], i["url"].rsplit("/v1", 1)[1], i.get("when")) for i in fourth["requests"]]
    assert requests[0] == ("PUT", "/accounts/g1", f"the write of {path}:3 to account g1 was not applied")
    assert [r[:2] for r in requests[1:]] == [("POST", "/accounts"), ("PUT", "/accounts/g1"), ("PUT", "/users/u2")]
    _, lines = _dry(cfg, tmp, events, "--upsert", "create-only")
    assert lines[3]["requests"][0]["when"].startswith(f"the write of {path}:3 to account g1 was not applied")


@pytest.mark.parametrize("mode, fewest, most", [
    ("update-first", 3, 5), ("create-first", 3, 5), ("update-only", 2, 4), ("create-only", 2, 3)])
def test_the_cost_estimate_gives_the_fewest_and_most_requests_of_each_mode(setup, mode, fewest, most):
    _, cfg, tmp = setup
    report = tmp / "report.json"
    events = [{"type": "identify", "userId": "u1"},
              {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}]
    _dry(cfg, tmp, events, "--upsert", mode, "--report", str(report))
    estimate = json.loads(report.read_text())["estimate"]
    assert (estimate["fewest"]["requests"], estimate["most"]["requests"]) == (fewest, most)


def test_check_shows_the_upsert_mode_in_effect(setup):
    _, cfg, tmp = setup
    with open(cfg, "a") as fh:
        fh.write("  upsert: update-only\n")
    run = _gspx(cfg, "check", key=None)
    assert run.returncode == 0, run.stderr
    assert "update-only (never creates" in run.stdout + run.stderr


def test_send_help_describes_the_modes():
    run = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--help"], capture_output=True, text=True,
                         timeout=RUN_TIMEOUT)
    text = " ".join(run.stdout.split())
    assert "update-only never creates" in text and "create-only never overwrites" in text
