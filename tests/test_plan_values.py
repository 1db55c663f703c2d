"""Plans made with their slots set in place (plan.custom_event_plan for every track, the identify and group
builders' plans) pinned to the same plans made by the constructors: same classes, every slot, equality, repr
and hashing."""

import pytest

from gspx_cli.mapping.plan import CUSTOM_EVENTS_PATH, Call, Plan, Write, custom_event_plan, describe, expand

BODY = {"identifyId": "u1", "eventName": "Clicked", "date": 1714560072741, "attributes": {"n": 1}}
CASES = [
    ("track", "u1", BODY, (), "m1"),
    ("track", "u2", {}, ("properties: not an object (3); ignored",), None),
    ("track", "ü/ \ud7ff", {"x": None, "y": [1.5, "null"]}, ("a", "b"), "m-ü"),
]


def by_constructors(event_type, user_id, body, warnings, message_id):
    return Plan(event_type, user_id, (Write("POST", CUSTOM_EVENTS_PATH, body),), warnings, message_id)


@pytest.mark.parametrize("args", CASES)
def test_custom_event_plan_is_the_constructors_plan_slot_for_slot(args):
    fast, general = custom_event_plan(*args), by_constructors(*args)
    assert type(fast) is Plan and type(fast.steps) is tuple and type(fast.steps[0]) is Call
    # every slot is set (a slot added to Call or Plan and not to the factory fails here, not in a run)
    assert [getattr(fast.steps[0], name) for name in Call.__slots__] == list(general.steps[0]._fields())
    assert [getattr(fast, name) for name in Plan.__slots__] == list(general._fields())
    assert fast == general and not fast != general
    assert repr(fast) == repr(general)
    assert fast.steps[0].body is args[2]


def test_custom_event_plan_is_unhashable_and_mutable_where_the_constructors_plan_is():
    fast, general = custom_event_plan(*CASES[0]), by_constructors(*CASES[0])
    for plan in (fast, general):
        with pytest.raises(TypeError):
            hash(plan)  # its Call is mutable, so unhashable, as the dataclass was
    fast.steps[0].when = "x"  # a dry run may annotate a Call
    assert fast != general


def test_custom_event_plan_lists_and_expands_as_the_constructors_plan():
    fast, general = custom_event_plan(*CASES[0]), by_constructors(*CASES[0])
    assert expand(fast, {"user": {}, "account": {}}) == expand(general, {"user": {}, "account": {}})
    assert describe(fast, "https://px") == describe(general, "https://px") == [
        {"method": "POST", "url": "https://px/events/custom", "json": BODY}]


def _by_constructors(plan):
    """The same plan made by the constructors, from its slots' values."""
    return Plan(*[tuple(type(step)(*step._fields()) for step in value) if name == "steps" else value
                  for name, value in zip(Plan.__slots__, plan._fields())])


@pytest.mark.parametrize("event", [
    {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "a@b.c", "firstName": "A"}},
    {"type": "identify", "userId": "u1", "traits": {"score": "x"}, "context": {"traits": {"title": "T"}}},
    {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "m2", "traits": {"name": "N", "size": 3}},
    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"industry": "x"}},
    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "N"},
     "integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": "yes"}}},
    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "N"},
     "integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": True}}},
])
@pytest.mark.parametrize("upsert", ["update-first", "create-first"])
def test_identify_and_group_plans_made_in_place_are_the_constructors_plans_slot_for_slot(event, upsert):
    from gspx_cli.config import DeliverySettings, Settings
    from gspx_cli.mapping.rules import Mapper

    settings = Settings(product_tag_key="AP-1", base_url="https://px", delivery=DeliverySettings(upsert=upsert))
    plan = Mapper(settings).map(event)
    general = _by_constructors(plan)
    assert type(plan) is Plan and type(plan.steps) is tuple
    # every slot is set (a slot added to a step or Plan and not to the builder fails here, not in a run)
    for step, other in zip(plan.steps, general.steps, strict=True):
        assert type(step) is type(other)
        assert [getattr(step, name) for name in step.__slots__] == list(other._fields())
    assert [getattr(plan, name) for name in Plan.__slots__] == list(general._fields())
    assert plan == general and repr(plan) == repr(general)
    assert expand(plan, {"user": {}, "account": {}}) == expand(general, {"user": {}, "account": {}})
