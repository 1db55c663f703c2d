"""One description of a plan (issue 9): what a live run sends for an event is always one path through
the dry run's listing of that event, given what the events before it made known."""

import json

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from gspx_cli.config import DeliverySettings, Settings
from gspx_cli.errors import PxError
from gspx_cli.delivery.executor import Executor, Skip
from gspx_cli.mapping.rules import Mapper
from gspx_cli.mapping.plan import Plan
from gspx_cli.delivery.px import PxClient
from gspx_cli.read.reader import Record
from gspx_cli.sandbox import FakePX, add_to_responses
from gspx_cli.delivery.sender import Halt, RateLimiter, RequestStats, RetryPolicy, Sender
from gspx_cli.delivery.sinks import PrintSink

BASE = "https://api.aptrinsic.com/v1"
ORIGIN = "https://api.aptrinsic.com"
USERS = ["u1", "u2", "a/b c"]
GROUPS = ["g1", "g2"]


class _Capture:
    """A stand-in Reporter that keeps each dry-run listing."""

    def __init__(self):
        self.listings = []

    def dry_run(self, record, result, requests=None, unchanged=()):
        self.listings.append(requests)

    def dry_run_plan(self, record, event_type, requests, unchanged=()):
        self.dry_run(record, None, requests, unchanged)

    def dry_run_listed(self, record, event_type, start, body):
        return False  # the custom event's listing the general way (dry_run_plan)

    def flush_out(self):
        pass


identify = st.builds(lambda u, name: {"type": "identify", "userId": u, "traits": {"email": f"{u}@x.io", **name}},
                     st.sampled_from(USERS), st.sampled_from([{}, {"name": "Ada Lovelace"}]))
group = st.builds(
    lambda u, g, named, limit: {"type": "group", "userId": u, "groupId": g,
                                "traits": {"industry": "x", **({"name": f"Acme {g}"} if named else {})},
                                **({"integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": True}}} if limit else {})},
    st.sampled_from(USERS), st.sampled_from(GROUPS), st.booleans(), st.booleans())
track = st.builds(lambda u: {"type": "track", "userId": u, "event": "Clicked"}, st.sampled_from(USERS))
runs = st.lists(st.one_of(identify, group, track), min_size=1, max_size=12)


def _is_path_through(sent, listing):
    """True when every request sent matches a later item of the listing than the one before it."""
    at = 0
    for method, url, body in sent:
        while at < len(listing):
            item = listing[at]
            at += 1
            if item["method"] == method and item["url"] == url and item.get("json") == body:
                break
        else:
            return False
    return True


def _settings(limit_api_for_group, upsert):
    return Settings(product_tag_key="AP-1", base_url=BASE, limit_api_for_group=limit_api_for_group,
                    delivery=DeliverySettings(upsert=upsert))


def _live(events, limit_api_for_group=False, upsert="update-first", existing=()):
    """Each event's requests, executed one event after another against the stand-in."""
    px = FakePX()
    for kind, object_id in existing:  # made by someone else: PX has them, gspx does not know it
        (px.users if kind == "user" else px.accounts)[object_id] = {}
    s = _settings(limit_api_for_group, upsert)
    mapper = Mapper(s)
    sent = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        add_to_responses(rsps, px, BASE)
        client = PxClient(BASE, "k", timeout=5)
        executor = Executor(Sender(client, RetryPolicy(0), RateLimiter(1e9), Halt(), RequestStats()), mode=upsert)
        for event in events:
            before = len(px.requests)
            plan = mapper.map(event)
            if type(plan) is Plan:
                try:
                    executor.execute(plan)
                except (PxError, Skip):
                    pass  # a failed or skipped event's requests are still a (shorter) path
            sent.append([(r.method, ORIGIN + r.path, r.body) for r in px.requests[before:]])
    return sent


def _listings(events, limit_api_for_group=False, upsert="update-first"):
    s = _settings(limit_api_for_group, upsert)
    mapper, capture = Mapper(s), _Capture()
    sink = PrintSink(capture, BASE, upsert)
    out = []
    for n, event in enumerate(events, 1):
        plan = mapper.map(event)
        if type(plan) is Plan:
            sink.submit(Record("in", n, b"", event), plan)
            out.append(capture.listings[-1])
        else:
            out.append([])
    return out


existing = st.lists(st.sampled_from([("user", u) for u in USERS] + [("account", g) for g in GROUPS]),
                    unique=True, max_size=4)


@settings(max_examples=150)
@given(runs, st.booleans(), st.sampled_from(["update-first", "create-first", "update-only", "create-only"]), existing)
def test_live_requests_of_each_event_are_one_path_through_its_dry_run_listing(events, limited, upsert, made):
    events = json.loads(json.dumps(events))
    live, listed = _live(events, limited, upsert, made), _listings(events, limited, upsert)
    for n, (sent, listing) in enumerate(zip(live, listed)):
        assert _is_path_through(sent, listing), (n, events[n], sent, listing)


def test_a_user_written_earlier_gets_the_update_alone_and_an_identical_write_nothing():
    events = [{"type": "identify", "userId": "u1"}, {"type": "identify", "userId": "u1", "traits": {"title": "x"}},
              {"type": "identify", "userId": "u1", "traits": {"title": "x"}},
              {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}]
    first, changed, same, grp = _listings(events)
    assert [i["method"] for i in first] == ["PUT", "POST", "PUT"]
    assert [(i["method"], "when" in i) for i in changed] == [("PUT", False)]
    # the last write to u1 had this very body: the PUT only for when line 2's write is not applied
    assert [(i["method"], i["when"]) for i in same] == [("PUT", "the write of in:2 to user u1 was not applied")]
    assert [(i["method"], i["url"][len(BASE):]) for i in grp] == [  # no user lookup: u1 is known
        ("PUT", "/accounts/g1"), ("POST", "/accounts"), ("PUT", "/accounts/g1"), ("PUT", "/users/u1")]


def test_create_first_lists_the_create_then_the_update_if_refused():
    [listing] = _listings([{"type": "identify", "userId": "u1"}], upsert="create-first")
    assert [(i["method"], i.get("when")) for i in listing] == [
        ("POST", None), ("PUT", "the create was refused: the user exists")]


@pytest.mark.parametrize("events, writes", [
    # a group whose user was never identified may fail: it teaches the listing nothing
    ([{"type": "group", "userId": "u9", "groupId": "g1", "traits": {"name": "A"}},
      {"type": "group", "userId": "u9", "groupId": "g1", "traits": {"name": "A"}}],
     [["GET /users/u9", "PUT /accounts/g1", "POST /accounts", "PUT /accounts/g1", "PUT /users/u9"]] * 2),
    # an account that this event cannot create (no name) is not assumed to exist afterwards
    ([{"type": "identify", "userId": "u1"},
      {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"industry": "x"}},
      {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"industry": "x"}}],
     [["PUT /users/u1", "POST /users", "PUT /users/u1"], ["PUT /accounts/g1", "PUT /users/u1"],
      ["PUT /accounts/g1", "PUT /users/u1"]]),
])
def test_the_listing_assumes_known_only_what_cannot_fail(events, writes):
    got = [[f"{i['method']} {i['url'][len(BASE):]}" for i in listing] for listing in _listings(events)]
    assert got == writes
