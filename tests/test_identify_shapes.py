"""An identify's body made by its trait-name shape's code (mapping/traitshapes.py) is the general way's:
the same keys in the same order, the same values, warnings, create body and event time."""

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gspx_cli.config import Settings
from gspx_cli.mapping.builders import GroupBuilder, IdentifyBuilder
from gspx_cli.mapping.plan import Invalid

KEY = "AP-TEST-1"
SETTINGS = Settings(product_tag_key=KEY, base_url="https://api.aptrinsic.com/v1",
                    user_attribute_map={"hobbyField": "hobby", "other": "hobby", "tagField": "tag"})
USUAL = {"email": "a@b.c", "firstName": "Zoë", "lastName": "Dubois", "title": "Engineer", "score": 60,
         "plan": "starter", "city": "Chennai", "countryCode": "IN", "signUpDate": "2024-01-16T19:08:09.973Z",
         "hobbyField": "chess"}
TS = "2024-05-01T10:40:01.276Z"

values = st.sampled_from([
    "x", "", " ", "42", "1.5", "Male", "f", "2024-05-01T10:00:00Z", "2024-05-01", "20240501T100000Z",
    "2024-13-01", "  Ann  Lee ", 0, 7, -1, 2**63 - 1, 2**63, -(2**63) - 1, 1.0, 2.5, True, False, None,
    {}, {"a": 1}, [1, "b"],
])
names = st.sampled_from(sorted({*USUAL, "firstname", "first_name", "lastname", "name", "latitude", "longitude",
                                "gender", "accountId", "createDate", "lastSeenDate", "street", "other",
                                "tagField", "unknown", "userId"}))
changes = st.dictionaries(st.sampled_from(sorted(USUAL)) | names, values, max_size=4)  # the usual names more often
stamps = st.sampled_from([TS, "", None, "bad", 1714560072741, 2.5e12, "2024-05-01T12:40:01+02:00", "20240501"])


def _seen(plan):
    """What of a Plan reaches a user, key order included (a body's JSON)."""
    if isinstance(plan, Invalid):
        return repr(plan)
    upsert, = plan.steps
    return (json.dumps([upsert.kind, upsert.id, list(upsert.update_body.items()),
                        list(upsert.create_body.items()), upsert.create_first]),
            plan.warnings, plan.message_id)


def _event(traits, stamp=TS, context=None):
    event = {"type": "identify", "userId": "u1", "messageId": "m1", "traits": traits}
    if stamp is not None:
        event["timestamp"] = stamp
    if context is not None:
        event["context"] = context
    return event


@settings(max_examples=500, deadline=None)
@given(changes, st.lists(names, max_size=3), stamps, st.booleans(), st.sampled_from([None, {}, {"city": "Rome"}]))
@example({"firstName": None}, [], TS, False, None)
@example({"accountId": ""}, [], TS, False, None)  # a converted trait's "" or null is no value
@example({"accountId": None}, [], TS, False, None)
@example({"lastName": ""}, [], TS, False, None)
@example({"firstName": 7, "name": "Ann Lee"}, [], TS, False, None)
@example({"signUpDate": "2024-13-01", "score": "42"}, [], "bad", False, None)
@example({"city": None, "latitude": "1.5", "other": ""}, [], TS, True, None)
def test_an_identify_mapped_by_its_trait_shape_equals_the_general_way(change, drop, stamp, shuffle, ctx_traits):
    builder = IdentifyBuilder(SETTINGS)
    traits = {**USUAL, **change}
    for name in drop:
        traits.pop(name, None)
    if shuffle:
        traits = dict(reversed(traits.items()))
    event = _event(traits, stamp, None if ctx_traits is None else {"traits": ctx_traits})
    usual = _event(dict(traits.fromkeys(traits, "x")))  # the shape made by an earlier event of it
    builder(usual, "identify", None)
    for _ in range(2):  # the shape's code made, then reused
        assert _seen(builder(event, "identify", None)) == _seen(builder.general(event, "identify", None))


def test_the_usual_identify_takes_its_shape_code_and_gives_the_fixed_body():
    builder = IdentifyBuilder(SETTINGS)
    plans = [builder(_event(dict(USUAL)), "identify", None) for _ in range(2)]
    assert len(builder._shapes._made) == 1 and next(iter(builder._shapes._made.values())) is not None
    upsert, = plans[1].steps
    assert json.dumps(upsert.update_body) == json.dumps({
        "email": "a@b.c", "title": "Engineer", "score": 60, "signUpDate": 1705432089973, "firstName": "Zoë",
        "lastName": "Dubois", "location": {"city": "Chennai", "countryCode": "IN"},
        "customAttributes": {"hobby": "chess"}, "type": "USER", "propertyKeys": [KEY]})
    assert list(upsert.create_body) == ["identifyId", *upsert.update_body, "createDate"]
    assert upsert.create_body["createDate"] == 1714560001276
    assert _seen(plans[1]) == _seen(builder.general(_event(dict(USUAL)), "identify", None))


def test_a_shape_without_a_first_name_alias_takes_the_general_way():
    builder = IdentifyBuilder(SETTINGS)
    traits = {"email": "a@b.c", "name": "Ann Lee"}
    plan = builder(_event(traits), "identify", None)
    assert builder._shapes._made == {("email", "name"): None}
    assert plan.steps[0].update_body["firstName"] == "Ann"


def test_shapes_past_the_bound_take_the_general_way_and_map_alike():
    builder = IdentifyBuilder(SETTINGS)
    for i in range(80):
        traits = {"firstName": "A", "lastName": "B", f"t{i}": i}
        event = _event(traits)
        assert _seen(builder(event, "identify", None)) == _seen(builder.general(event, "identify", None))
    assert len(builder._shapes._made) == 64


GROUP_SETTINGS = Settings(product_tag_key=KEY, base_url="https://api.aptrinsic.com/v1",
                          account_attribute_map={"cultureField": "culture", "other": "culture"})
GROUP_USUAL = {"name": "Company g1", "industry": "Finance", "numberOfEmployees": 8042, "plan": "pro",
               "website": "https://g1.example.com", "cultureField": "remote-first"}
group_names = st.sampled_from(sorted({*GROUP_USUAL, "createDate", "lastModifiedDate", "numberOfUsers", "city",
                                      "latitude", "longitude", "other", "groupId", "unknown"}))


def _group_seen(plan):
    if isinstance(plan, Invalid):
        return repr(plan)
    upsert = plan.steps[-2]
    return (json.dumps([[type(step).__name__ for step in plan.steps], upsert.id, list(upsert.update_body.items()),
                        upsert.create_body and list(upsert.create_body.items()), upsert.create_error]),
            plan.warnings, plan.message_id)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GROUP_USUAL)) | group_names, values, max_size=4),
       st.lists(group_names, max_size=3), stamps)
@example({"name": None}, [], TS)
@example({"numberOfEmployees": "12", "plan": ""}, [], "bad")
@example({"latitude": 1.5, "city": "Rome", "other": ""}, [], TS)
def test_a_group_mapped_by_its_trait_shape_equals_the_general_way(change, drop, stamp):
    builder = GroupBuilder(GROUP_SETTINGS)
    traits = {**GROUP_USUAL, **change}
    for name in drop:
        traits.pop(name, None)
    event = {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m1", "traits": traits}
    if stamp is not None:
        event["timestamp"] = stamp
    builder({**event, "traits": dict(traits.fromkeys(traits, "x"))}, "group", None)  # the shape made earlier
    for _ in range(2):
        assert _group_seen(builder(event, "group", None)) == _group_seen(builder.general(event, "group", None))
    assert len(builder._shapes._made) == 1


_AWKWARD = ["x", "", " ", "42", "1.5", "Male", "f", "2024-05-01T10:00:00Z", "2024-05-01", "2024-13-01", 0, 7, -1,
            2**63 - 1, 2**63, 1.0, 2.5, True, False, None, {}, {"a": 1}, [1, "b"]]
_ALL_NAMES = sorted({*USUAL, "firstname", "first_name", "lastname", "name", "latitude", "longitude", "gender",
                     "accountId", "createDate", "lastSeenDate", "street", "other", "tagField", "unknown", "userId",
                     "groupId", "industry", "numberOfEmployees", "website"})


def test_every_trait_with_every_awkward_value_maps_by_shape_as_the_general_way():
    # every pair, not a sample: a converted trait's null or "" once came out "null" and "" by shape
    for name in _ALL_NAMES:
        for value in _AWKWARD:
            traits = {**USUAL, name: value}
            identify = IdentifyBuilder(SETTINGS)
            identify(_event(dict(traits.fromkeys(traits, "x"))), "identify", None)
            event = _event(traits)
            assert _seen(identify(event, "identify", None)) == _seen(identify.general(event, "identify", None)), \
                (name, value)
            group = GroupBuilder(SETTINGS)
            event = {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m", "timestamp": TS,
                     "traits": {"name": "Acme", name: value}}
            group(dict(event, traits=dict.fromkeys(event["traits"], "x")), "group", None)
            shaped, general = group(event, "group", None), group.general(event, "group", None)
            assert repr(shaped) == repr(general) and json.dumps(
                [vars_of(s) for s in getattr(shaped, "steps", ())]) == json.dumps(
                [vars_of(s) for s in getattr(general, "steps", ())]), (name, value)


def vars_of(step):
    """A step's fields as JSON can hold them, bodies with their key order."""
    return [[slot, list(v.items()) if isinstance(v, dict) else v]
            for slot in step.__slots__ for v in (getattr(step, slot, None),) if not callable(v)]
