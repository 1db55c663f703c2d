"""The identify/group fast ways (reading.collect_common, the builders' inline checks, templates.fill's
fingerprint reuse and learn) say exactly what the general ways say."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gspx_cli.config import DeliverySettings, Settings
from gspx_cli.delivery.executor import LocalIds
from gspx_cli.delivery.sinks import PrintSink
from gspx_cli.mapping import fields
from gspx_cli.mapping.builders import GroupBuilder, IdentifyBuilder
from gspx_cli.mapping.plan import Invalid, Plan
from gspx_cli.mapping.reading import (BODY, COORDINATES, LOCATION, check_id, collect, collect_common,
                                      key_paths, trait_table, user_id_of)
from gspx_cli.mapping.rules import Mapper
from gspx_cli.read.reader import Record

BASE = "https://api.aptrinsic.com/v1"
MODES = ["update-first", "create-first", "update-only", "create-only"]
_LOCATIONS = ((LOCATION, fields.LOCATION_FIELDS), (COORDINATES, fields.COORDINATE_FIELDS))
USER_TABLE = trait_table(((BODY, fields.USER_FIELDS), *_LOCATIONS), {"hobbyField": "hobby", "other": "hobby"},
                         fields.USER_DEFAULT_TRAITS)
ACCOUNT_TABLE = trait_table(((BODY, fields.ACCOUNT_FIELDS), *_LOCATIONS), {"cultureField": "culture"},
                            fields.ACCOUNT_DEFAULT_TRAITS)

# values a trait may hold: text, empty text, numbers PX can or cannot hold, booleans, null, containers
values = st.sampled_from([
    "x", "", " ", "42", "1.5", "abc", "f", "Male", "2024-05-01T10:00:00Z", "garbage", 0, 7, -1, 2**63 - 1, 2**63,
    -(2**63) - 1, 1.0, 2.5, True, False, None, {}, {"a": 1}, [1, "b"], [float("inf")],
])
names = st.sampled_from(sorted({*USER_TABLE, *ACCOUNT_TABLE, "firstname", "first_name", "lastname", "name",
                                "unknown", "userId"}))
traits = st.dictionaries(names, values, max_size=8)


def _slots(collector, table, mine, theirs):
    slots, warnings = ({}, {}, {}, {}), []
    collector(table, mine, theirs, slots, warnings)
    # key order is part of the output (a body's JSON)
    return [list(slot.items()) for slot in slots], warnings


@settings(max_examples=400, deadline=None)
@given(traits, traits, st.booleans())
def test_collect_common_fills_the_same_slots_in_the_same_order_with_the_same_warnings_as_collect(mine, theirs,
                                                                                                 account):
    table = ACCOUNT_TABLE if account else USER_TABLE
    assert _slots(collect_common, table, mine, theirs) == _slots(collect, table, mine, theirs)


def _settings(upsert="update-first"):
    return Settings(product_tag_key="AP-1", base_url=BASE, user_attribute_map={"hobbyField": "hobby"},
                    account_attribute_map={"cultureField": "culture"}, delivery=DeliverySettings(upsert=upsert))


def test_an_identify_with_awkward_traits_maps_to_its_expected_bodies_and_warnings():
    event = {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T10:00:00Z",
             "traits": {"email": "", "score": "12", "gender": "f", "latitude": "1.5", "city": "Zürich ☃",
                        "hobbyField": "", "numberOfVisits": 2**63, "title": 7, "name": "Ada  King Byron ",
                        "firstname": ""},
             "context": {"traits": {"email": "ctx@x", "hobbyField": "", "longitude": 2, "lastName": "Ctx"}}}
    plan = IdentifyBuilder(_settings())(event, "identify", None)
    body = plan.steps[0].update_body
    # context.traits' values first, then traits' in their order, the names, the nested parts
    assert list(body.items()) == [
        ("email", "ctx@x"), ("score", 12), ("gender", "FEMALE"), ("title", 7), ("lastName", "Ctx"),
        ("firstName", "Ada"),
        ("location", {"city": "Zürich ☃", "coordinates": {"longitude": 2.0, "latitude": 1.5}}),
        ("customAttributes", {"hobby": ""}), ("type", "USER"), ("propertyKeys", ["AP-1"])]
    assert list(body["location"]["coordinates"]) == ["longitude", "latitude"]
    assert plan.steps[0].create_body == {"identifyId": "u1", **body, "signUpDate": 1714557600000,
                                         "createDate": 1714557600000}
    assert plan.warnings == ("traits.numberOfVisits: 9223372036854775808 is outside the signed 64-bit range; "
                             "left out",)


def test_a_full_name_alone_fills_first_and_last_name_and_a_first_alias_wins_over_later_ones():
    build = IdentifyBuilder(_settings())
    plan = build({"type": "identify", "userId": "u", "traits": {"name": "Grace\tBrewster Hopper"}}, "identify", None)
    assert plan.steps[0].update_body["firstName"] == "Grace"
    assert plan.steps[0].update_body["lastName"] == "Brewster Hopper"
    plan = build({"type": "identify", "userId": "u", "traits": {"first_name": "C", "firstName": 5, "name": "A B"}},
                 "identify", None)
    assert (plan.steps[0].update_body["firstName"], plan.steps[0].update_body["lastName"]) == (5, "B")


@given(st.sampled_from(["g1", "", ".", "..", "g\x01", "g\u00a0", "g/ü", 77, True, 1.5, None, [], {}]),
       st.sampled_from([None, "t1", "", 5]))
def test_a_group_id_decided_inline_is_what_check_id_decides(group_id, traits_group_id):
    event = {"type": "group", "userId": "u", "traits": {"name": "N"}}
    if group_id is not None:
        event["groupId"] = group_id
    if traits_group_id is not None:
        event["traits"]["groupId"] = traits_group_id
    got = GroupBuilder(_settings())(event, "group", None)
    # the general way: first usable of groupId, traits.groupId, then MAPPING.md's id rule
    value, label = next(((v, k) for k, v in (("groupId", group_id), ("traits.groupId", traits_group_id))
                         if v is not None and v != ""), (None, None))
    if value is None:
        assert got == Invalid("groupId is required for group", "group")
        return
    expected, problem = check_id(value, label)
    assert got == Invalid(problem, "group") if problem else got.steps[-1].body == {"accountId": expected}


@given(st.sampled_from(["u1", "", ".", "..", "u\x01", "u\u00a0", "u/ü", 77, True, 1.5, None, [], {}]),
       st.sampled_from([None, "anon-1", "", ".", 5]))
def test_a_user_id_decided_inline_is_what_user_id_of_decides(user_id, anonymous_id):
    event = {"groupId": "g1", "traits": {"name": "N", "userId": "from-traits"}}
    if user_id is not None:
        event["userId"] = user_id
    if anonymous_id is not None:
        event["anonymousId"] = anonymous_id
    for builder, paths, event_type in ((IdentifyBuilder(_settings()), fields.USER_ID_PATHS, "identify"),
                                       (GroupBuilder(_settings()), fields.GROUP_USER_ID_PATHS, "group")):
        got = builder({**event, "type": event_type}, event_type, None)
        expected, problem = user_id_of(event, key_paths(*paths), event_type)
        assert got == Invalid(problem, event_type) if problem else got.user_id == expected


# bodies equal as JSON values whatever their key order, and ones that differ only in 1 / 1.0 / true
users = st.sampled_from(["u1", "u2", "u/3"])
scores = st.sampled_from([1, 1.0, True, "1", None])
identify = st.builds(
    lambda u, score, flip: {"type": "identify", "userId": u,
                            "traits": dict(reversed([("email", "e"), ("score", score)]) if flip
                                           else [("email", "e"), ("score", score)])},
    users, scores, st.booleans())
group = st.builds(lambda u, g, named: {"type": "group", "userId": u, "groupId": g,
                                       "traits": {"numberOfUsers": 3, **({"name": "Acme"} if named else {})}},
                  users, st.sampled_from(["g1", "g2"]), st.booleans())


class _Capture:
    def __init__(self):
        self.lines = []

    def dry_run_plan(self, record, event_type, requests, unchanged=()):
        self.lines.append((record.where, json.dumps(requests), list(unchanged)))

    def flush_out(self):
        pass


def _dry_run(events, upsert, templates):
    mapper, capture = Mapper(_settings(upsert)), _Capture()
    sink = PrintSink(capture, BASE, upsert)
    for ids in sink.known.values():
        ids.limit = 2  # past the bound in a few events: what is forgotten is forgotten in origin too
    if not templates:
        sink._templates = None
    for n, event in enumerate(events, 1):
        plan = mapper.map(event)
        if type(plan) is Plan:
            sink.submit(Record("in", n, b"", event), plan)
    known = {kind: list(ids.items()) for kind, ids in sink.known.items()}
    origin = {kind: sorted(where.items()) for kind, where in sink._origin.items()}
    return capture.lines, sink.estimate.fewest, sink.estimate.most, known, origin


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(identify, group), min_size=1, max_size=14), st.sampled_from(MODES))
def test_the_template_fill_lists_counts_and_learns_what_the_general_way_does_under_every_upsert_mode(events,
                                                                                                    upsert):
    assert _dry_run(events, upsert, True) == _dry_run(events, upsert, False)


def test_local_ids_add_returns_the_id_it_forgets_to_keep_its_bound():
    ids = LocalIds(2)
    assert [ids.add("a", 1), ids.add("b", 2), ids.add("a", 3), ids.add("c", 4)] == [None, None, None, "b"]
    assert list(ids.items()) == [("a", 3), ("c", 4)]
