"""The dry run's per-shape shortcuts (mapping/templates.py, the estimate's shape cache) say exactly what the
general way (expand, listing, paths_cost, surely_known for each event) says."""

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gspx_cli.config import DeliverySettings, Settings
from gspx_cli.delivery.executor import KnownIds, new_known
from gspx_cli.delivery.sinks import PrintSink
from gspx_cli.mapping.estimate import Estimate
from gspx_cli.mapping.plan import KnownInMemory, Plan, Upsert, expand, paths_cost
from gspx_cli.mapping.rules import Mapper
from gspx_cli.read.reader import Record

BASE = "https://api.aptrinsic.com/v1"
MODES = ["update-first", "create-first", "update-only", "create-only"]


class _Capture:
    """A stand-in Reporter that keeps each dry-run line's parts."""

    def __init__(self):
        self.lines = []

    def dry_run(self, record, result, requests=None, unchanged=()):
        self.lines.append((record.where, json.dumps(requests), list(unchanged)))

    def dry_run_plan(self, record, event_type, requests, unchanged=()):
        self.dry_run(record, None, requests, unchanged)

    def dry_run_listed(self, record, event_type, start, body):
        return False  # the custom event's line the general way (dry_run_plan), kept in parts

    def flush_out(self):
        pass


users = st.sampled_from(["u1", "u2", "a/b c", "g1"])
groups = st.sampled_from(["g1", "g2"])
bodies = st.sampled_from([{}, {"name": "Ada Lovelace"}, {"title": "CTO"}])
identify = st.builds(lambda u, t, first: {"type": "identify", "userId": u, "traits": t,
                                          **({"integrations": {"All": True}} if first else {})},
                     users, bodies, st.booleans())
group = st.builds(
    lambda u, g, named, limit: {"type": "group", "userId": u, "groupId": g,
                                "traits": {"industry": "x", **({"name": f"Acme {g}"} if named else {})},
                                **({"integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": True}}} if limit else {})},
    users, groups, st.booleans(), st.booleans())
track = st.builds(lambda u: {"type": "track", "userId": u, "event": "Clicked"}, users)
runs = st.lists(st.one_of(identify, group, track), min_size=1, max_size=16)


def _dry_run(events, upsert, limited, templates, bound=None):
    settings = Settings(product_tag_key="AP-1", base_url=BASE, limit_api_for_group=limited,
                        delivery=DeliverySettings(upsert=upsert))
    mapper, capture = Mapper(settings), _Capture()
    sink = PrintSink(capture, BASE, upsert)
    if bound is not None:  # a run past the bound of what it remembers (1,000,000 per kind) in a few events
        for ids in sink.known.values():
            ids.limit = bound
    if not templates:
        sink._templates = None  # the general way for every event
    for n, event in enumerate(events, 1):
        plan = mapper.map(event)
        if type(plan) is Plan:
            sink.submit(Record("in", n, b"", event), plan)
    # in order, oldest first: the recency that decides what a bound forgets
    known = {kind: list((ids if type(ids) is not KnownIds else ids._ids).items()) for kind, ids in sink.known.items()}
    return capture.lines, sink.estimate.fewest, sink.estimate.most, known


@settings(max_examples=200, deadline=None)
@given(runs, st.sampled_from(MODES), st.booleans())
def test_a_dry_run_lists_counts_and_learns_from_its_shape_templates_what_the_general_way_does(events, upsert,
                                                                                               limited):
    assert _dry_run(events, upsert, limited, True) == _dry_run(events, upsert, limited, False)


@settings(max_examples=100, deadline=None)
@given(runs, st.sampled_from(MODES))
def test_past_its_bound_a_dry_run_forgets_the_least_recently_written_objects_as_the_general_way_does(events,
                                                                                                    upsert):
    with_templates = _dry_run(events, upsert, False, True, bound=2)
    assert with_templates == _dry_run(events, upsert, False, False, bound=2)
    assert all(len(ids) <= 2 for ids in with_templates[3].values())


def test_the_estimate_counts_each_listing_as_walked_when_shapes_differ_only_in_what_a_path_leaves_out():
    # a write listed only for when an earlier event's write was not applied (unless) is no request of a
    # healthy run: a listing with one must not be counted as the same listing without it, nor the reverse
    body = {"email": "a@b.c"}
    plan = Plan("identify", "u", (Upsert("user", "u", body, {"identifyId": "u", **body}),))
    known = KnownInMemory(new_known())
    unknown_calls = expand(plan, known)
    known["user"].add("u", known.digest(body))
    origin = new_known()
    origin["user"].add("u", ("in", 1, False))
    listed_again = expand(plan, known, [], None, origin)  # unchanged, listed for when event 1 was not applied
    assert listed_again and listed_again[0].unless is not None
    known["user"].add("u", "")
    known_calls = expand(plan, known)
    for order in ([unknown_calls, listed_again, known_calls], [listed_again, unknown_calls, known_calls, listed_again]):
        estimate, fewest, most = Estimate(), Counter(), Counter()
        for calls in order:
            estimate.add(calls)
            f, m = paths_cost(calls)
            fewest.update(f)
            most.update(m)
        assert (+estimate.fewest, +estimate.most) == (fewest, most)


def test_a_filtered_events_line_made_from_its_parts_is_the_general_ones():
    import io

    from gspx_cli.mapping.filters import FILTERED
    from gspx_cli.mapping.plan import Skipped
    from gspx_cli.report.reporter import Reporter

    def lines(write):
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        reporter = Reporter(out=out, err=io.StringIO(), quiet=True)
        for source in ("a.ndjson", 'dir/"q" \\ü\t.ndjson', "-"):
            for line_no in (0, 1, 12345):
                for event_type in ("track", "identify", "page", None):
                    write(reporter, Record(source, line_no, b"", {}), event_type)
        reporter.flush_out()
        return out.buffer.getvalue()

    made = lines(lambda reporter, record, t: reporter.dry_run_filtered(record, t))
    general = lines(lambda reporter, record, t: reporter.dry_run(record, Skipped(t, FILTERED)))
    assert made == general and made.count(b"\n") == 36


def test_a_write_that_repeats_the_last_one_is_listed_from_its_template_with_its_origin_named():
    # an unchanged write's shape says whether its object was known before the write it repeats; once
    # met, the next ones take its template, whose note names that write's event as the general way's does
    same = {"type": "identify", "userId": "u1", "traits": {"title": "CTO"}}
    other = {**same, "userId": "u2"}
    join = {"type": "group", "userId": "u2", "groupId": "g1", "traits": {"name": "Acme"}}
    events = [same, same, same, same, other, other, {**join, "userId": "u1"}, join, join, join]
    settings = Settings(product_tag_key="AP-1", base_url=BASE, delivery=DeliverySettings(upsert="update-first"))
    mapper, capture = Mapper(settings), _Capture()
    sink = PrintSink(capture, BASE, "update-first")
    filled = []
    fill = sink._templates.fill
    sink._templates.fill = lambda *args: filled.append(fill(*args)) or filled[-1]
    for n, event in enumerate(events, 1):
        sink.submit(Record("in", n, b"", event), mapper.map(event))
    assert [requests is not None for requests in filled] == [False, False, False, True, True, True,
                                                             False, False, False, True]
    assert capture.lines[3][2] == [("user", "u1")] and "the write of in:3 to user u1 was not" in capture.lines[3][1]
    assert capture.lines[9][2] == [("account", "g1"), ("user", "u2")]
    assert "the write of in:9 to account g1" in capture.lines[9][1] and "in:9 to user u2" in capture.lines[9][1]
    assert capture.lines == _dry_run(events, "update-first", False, False)[0]


def test_the_estimate_adds_a_tallys_uses_once_its_figures_are_read():
    estimate = Estimate()
    tally = estimate.tally(((("PUT /users", 1),), (("PUT /users", 1), ("POST /users", 1))))
    estimate.tally(((("POST /accounts", 1),), (("POST /accounts", 1),)))  # never used: no key of its own
    tally.uses += 3
    assert estimate.fewest == Counter({"PUT /users": 3})
    assert estimate.most == Counter({"PUT /users": 3, "POST /users": 3})
    tally.uses += 1
    figures = estimate.figures(rate_limit=2)
    assert figures["fewest"]["requests"] == 4 and figures["most"]["by_kind"] == {"POST /users": 4, "PUT /users": 4}


def test_custom_events_are_counted_by_their_tally_as_the_estimate_counts_a_listing():
    settings = Settings(product_tag_key="AP-1", base_url=BASE, delivery=DeliverySettings(upsert="update-first"))
    mapper, sink = Mapper(settings), PrintSink(_Capture(), BASE, "update-first")
    general = Estimate()
    for n in range(5):
        plan = mapper.map({"type": "track", "userId": f"u{n}", "event": "Clicked"})
        sink.submit(Record("in", n + 1, b"", {}), plan)
        general.add(list(plan.steps))
    assert len(sink._custom) == 1
    assert (sink.estimate.fewest, sink.estimate.most) == (general.fewest, general.most) == \
        (Counter({"POST /events/custom": 5}), Counter({"POST /events/custom": 5}))
