"""Table-driven tests for mapping.py: one row per MAPPING.md rule and conversion edge case."""

import pytest

from gspx_cli.mapping import fields
from gspx_cli.config import Settings
from gspx_cli.mapping.rules import (
    Mapper,
    map_event,
    to_epoch_ms,
    to_float,
    to_gender,
    to_number,
    to_str,
)
from gspx_cli.mapping.plan import CUSTOM_EVENTS_PATH, Invalid, Plan, RequireUser, Skipped, Update, Upsert, Write

KEY = "AP-TEST-1"
BASE_URL = "https://api.aptrinsic.com/v1"
TS = "2019-10-14T09:03:17.562Z"
TS_MS = 1571043797562
INT64_MAX = 2**63 - 1


def make_settings(**overrides):
    return Settings(product_tag_key=KEY, base_url=BASE_URL, **overrides)


MAPPER = Mapper(make_settings())


def identify(traits=None, ctx_traits=None, **extra):
    event = {"type": "identify", "userId": "u1", "timestamp": TS, **extra}
    if traits is not None:
        event["traits"] = traits
    if ctx_traits is not None:
        event["context"] = {"traits": ctx_traits}
    return event


def group(traits=None, **extra):
    event = {"type": "group", "userId": "u1", "groupId": "g1", "timestamp": TS, **extra}
    if traits is not None:
        event["traits"] = traits
    return event


def track(properties=None, **extra):
    event = {"type": "track", "userId": "u1", "event": "Clicked", "timestamp": TS, **extra}
    if properties is not None:
        event["properties"] = properties
    return event


def plan_of(result):
    assert isinstance(result, Plan), result
    return result


def user_update(result):
    return plan_of(result).steps[0].update_body


def account_upsert(result):
    steps = plan_of(result).steps
    return next(s for s in steps if isinstance(s, Upsert))


def track_body(result):
    (step,) = plan_of(result).steps
    return step.body


def base_user(**fields_):
    return {**fields_, "type": "USER", "propertyKeys": [KEY]}


# ---------------------------------------------------------------- conversions

@pytest.mark.parametrize(
    "value, expected",
    [
        ("2019-10-14T09:03:17.562Z", 1571043797562),
        ("2019-10-14T14:33:17.562+05:30", 1571043797562),  # offset applied
        ("2019-10-14T09:03:17.562-00:00", 1571043797562),
        ("2019-10-14T09:03:17.562", 1571043797562),  # no offset: UTC
        ("2019-10-14", 1571011200000),  # bare date: midnight UTC
        ("2019-10-14T09:03:42.517176+00:00", 1571043822517),  # sub-ms digits dropped, not rounded
        ("2019-10-14T09:03:42.5179+00:00", 1571043822517),  # .5179 would round up to 518
        ("2019-10-14T09:03:42.51799999Z", 1571043822517),  # more than 6 fraction digits
        ("2019-10-14t09:03:17.562z", 1571043797562),  # RFC 3339 allows lowercase t/z
        (" 2019-10-14T09:03:17.562Z ", 1571043797562),  # surrounding blanks ignored
        ("1969-12-31T23:59:59.9995Z", -1),  # before 1970: still drops the digits (floor)
        ("1970-01-01T00:00:00Z", 0),
        ("2019", 1546300800000),  # reduced form: the start of the year, UTC
        ("2019-10", 1569888000000),  # reduced form: the start of the month, UTC
        (" 2019-10\n", 1569888000000),
        ("2019-10-14T24:00:00", 1571097600000),  # 24:00 is the midnight that ends the day
        ("2019-10-14T24:00", 1571097600000),
        ("2019-10-14T24:00:00.000Z", 1571097600000),
        ("2019-10-14T24:00:00.000+05:30", 1571077800000),  # 2019-10-15T00:00+05:30
        ("2019-12-31T24:00:00Z", 1577836800000),  # ends the year: 2020-01-01
        ("2020-02-28T24:00Z", 1582934400000),  # leap year: 2020-02-29
        (" 2019-10-14T24:00:00Z\t", 1571097600000),
        ("\t2019-10-14\n", 1571011200000),
        ("2000-01-01\t", 946684800000),  # a bare date, then whitespace: not a separator
        ("2019-10-14 09:03", 1571043780000),  # one space separates date and time too
        ("20240129T1300", 1706533200000),  # the basic format, with its T
        (1571043797562, 1571043797562),  # a number is epoch ms
        (0, 0),
        (-5, -5),
        (1571043797562.9, 1571043797562),  # float truncated toward zero
        (-1.9, -1),  # toward zero, not floor
        (INT64_MAX, INT64_MAX),
    ],
)
def test_to_epoch_ms_converts(value, expected):
    warnings = []
    assert to_epoch_ms(value, "f", warnings) == expected
    assert warnings == []


@pytest.mark.parametrize(
    "value, warning_part",
    [
        ("yesterday", "cannot parse timestamp 'yesterday'"),
        ("2019-13-45", "cannot parse timestamp"),
        ("1571043797562", "cannot parse timestamp"),  # numeric text is not epoch ms (MAPPING.md)
        ("1571043797562.0", "cannot parse timestamp"),
        ("2019-13", "cannot parse timestamp"),  # no month 13
        ("0000", "cannot parse timestamp"),  # no year 0 in Python's calendar
        ("19", "cannot parse timestamp"),
        ("2019-10-14T24:00:01", "cannot parse timestamp"),  # only 24:00:00 exactly ends a day
        ("2019-10-14X09:03", "cannot parse timestamp"),  # only T, t or one space between date and time
        ("20240129_1300", "cannot parse timestamp"),  # (fromisoformat takes any one character there)
        ("2019-10-14_09:03", "cannot parse timestamp"),
        (" 2019-10-14X09:03", "cannot parse timestamp"),
        ("2019-10-14T24:30", "cannot parse timestamp"),
        ("2019-10-14T24:00:00.001Z", "cannot parse timestamp"),
        ("2019-10-14T25:00:00", "cannot parse timestamp"),
        ("9999-12-31T24:00:00", "cannot parse timestamp"),  # the day after is out of range
        ("   ", "cannot parse timestamp"),
        (True, "cannot parse timestamp True"),  # a boolean is not a number
        ({"a": 1}, "cannot parse timestamp"),
        ([1], "cannot parse timestamp"),
        (2**63, "outside the signed 64-bit range"),
        (-(2**63) - 1, "outside the signed 64-bit range"),
        (1e19, "outside the signed 64-bit range"),  # a float beyond int64 after truncation
        (float("inf"), "not a finite number"),
    ],
)
def test_to_epoch_ms_leaves_out_unusable_values_with_a_warning(value, warning_part):
    warnings = []
    assert to_epoch_ms(value, "traits.signUpDate", warnings) is None
    (warning,) = warnings
    assert warning.startswith("traits.signUpDate: ")
    assert warning_part in warning
    assert warning.endswith("; left out")


def test_to_epoch_ms_warning_has_the_documented_shape():
    warnings = []
    to_epoch_ms("yesterday", "traits.signUpDate", warnings)
    assert warnings == ["traits.signUpDate: cannot parse timestamp 'yesterday'; left out"]


@pytest.mark.parametrize(
    "value, expected",
    [
        (100, 100),
        (12.5, 12.5),
        ("12", 12),
        ("-12", -12),
        ("12.5", 12.5),
        (" 7 ", 7),
        ("1e3", 1000.0),
        (".5", 0.5),
        (INT64_MAX, INT64_MAX),
        (str(INT64_MAX), INT64_MAX),
    ],
)
def test_to_number_converts(value, expected):
    warnings = []
    result = to_number(value, "f", warnings)
    assert result == expected and type(result) is type(expected)
    assert warnings == []


@pytest.mark.parametrize(
    "value, warning_part",
    [
        ("12a", "not a number: '12a'"),
        ("", "not a number"),
        ("1_000", "not a number"),  # Python int() would take it; JSON would not
        ("nan", "not a number"),
        ("Infinity", "not a number"),
        ("-Infinity", "not a number"),
        ("0x10", "not a number: '0x10'"),  # decimal notation only
        ("12abc", "not a number: '12abc'"),
        ("1e", "not a number"),
        (True, "not a number: True"),  # booleans are not numbers
        ({"n": 1}, "not a number"),
        (2**63, "outside the signed 64-bit range"),
        (-(2**63) - 1, "outside the signed 64-bit range"),
        (str(2**63), "outside the signed 64-bit range"),
        ("1e400", "too large"),  # would be inf
        (float("inf"), "too large"),
        ("9" * 5000, "too large"),  # more digits than Python converts
    ],
)
def test_to_number_leaves_out_unusable_values_with_a_warning(value, warning_part):
    warnings = []
    assert to_number(value, "traits.score", warnings) is None
    (warning,) = warnings
    assert warning.startswith("traits.score: ") and warning_part in warning


@pytest.mark.parametrize(
    "value, expected",
    [(13, 13.0), (13.25, 13.25), ("13.25", 13.25), ("-80", -80.0), (2**63, float(2**63))],
)
def test_to_float_converts(value, expected):
    result = to_float(value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value", ["north", "1e400", 10**400, True, None])
def test_to_float_leaves_out_non_numbers_and_inf(value):
    warnings = []
    assert to_float(value, "traits.latitude", warnings) is None
    assert warnings and warnings[0].startswith("traits.latitude: ")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("abc", "abc"),
        (1234, "1234"),
        (-7, "-7"),
        (1.5, "1.5"),
        (100.0, "100"),  # an integral float is the integer's text
        (-3.0, "-3"),
        (-0.0, "0"),
        (1e16, "10000000000000000"),  # not "1e+16"
        (0.1, "0.1"),  # shortest round-trip text
        (0.30000000000000004, "0.30000000000000004"),
        (1e-07, "1e-07"),  # Python's repr: the shortest text that reads back as the same float
        (True, "true"),  # JSON spelling, not Python's "True"
        (False, "false"),
        ({"a": [1, 2]}, '{"a":[1,2]}'),  # compact JSON
        ({"b": 1, "a": {"d": 2, "c": 3}}, '{"b":1,"a":{"d":2,"c":3}}'),  # input key order
        ([], "[]"),
        (["é"], '["é"]'),
    ],
)
def test_to_str_converts(value, expected):
    warnings = []
    assert to_str(value, "f", warnings) == expected
    assert warnings == []


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), {"x": float("inf")}])
def test_to_str_leaves_out_non_finite_numbers_with_a_warning(value):
    warnings = []
    assert to_str(value, "traits.accountId", warnings) is None
    assert len(warnings) == 1 and warnings[0].startswith("traits.accountId: ")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("m", "MALE"), ("M", "MALE"), ("male", "MALE"), ("Male", "MALE"), ("MALE", "MALE"),
        ("f", "FEMALE"), ("F", "FEMALE"), ("female", "FEMALE"), ("FeMaLe", "FEMALE"),
        ("o", "OTHER"), ("O", "OTHER"), ("other", "OTHER"), ("Others", "OTHER"), ("OTHERS", "OTHER"),
        ("nonbinary", "nonbinary"),  # anything else passes unchanged
        ("x", "x"),
        (1, 1),
    ],
)
def test_to_gender_normalises_known_values(value, expected):
    assert to_gender(value) == expected


# ---------------------------------------------------------------- identify: default attributes

@pytest.mark.parametrize(
    "trait, value, px_value",
    [
        ("email", "a@b.c", "a@b.c"),
        ("role", "admin", "admin"),
        ("accountId", "acc-1", "acc-1"),
        ("accountId", 1234, "1234"),  # string conversion
        ("accountId", 1234.0, "1234"),  # an integral float is the integer's text
        ("accountId", 12.5, "12.5"),
        ("accountId", True, "true"),
        ("accountId", {"b": 1, "a": 2}, '{"b":1,"a":2}'),
        ("createDate", "2019", 1546300800000),
        ("lastSeenDate", "2019-10-14T24:00:00Z", 1571097600000),
        ("signUpDate", " 2019-10-14T09:03:17.562Z\n", TS_MS),
        ("subscriptionId", "sub-1", "sub-1"),
        ("firstName", "Ada", "Ada"),
        ("lastName", "Lovelace", "Lovelace"),
        ("numberOfVisits", 3, 3),
        ("createDate", "2019-10-14", 1571011200000),
        ("gender", "f", "FEMALE"),
        ("globalUnsubscribe", False, False),  # false is a value, not "empty"
        ("lastSeenDate", TS, TS_MS),
        ("sfdcContactId", "003xx", "003xx"),
        ("signUpDate", 1571043797562.7, TS_MS),
        ("title", "Doctor", "Doctor"),
        ("firstVisitDate", "2019-10-14T14:33:17.562+05:30", TS_MS),
        ("phone", "+1 555", "+1 555"),
        ("score", "42", 42),
        ("score", 99.5, 99.5),
    ],
)
def test_identify_maps_each_default_attribute(trait, value, px_value):
    body = user_update(MAPPER.map(identify({trait: value})))
    assert body == base_user(**{trait: px_value})


@pytest.mark.parametrize(
    "trait, value, warning_part",
    [
        ("signUpDate", "yesterday", "traits.signUpDate: cannot parse timestamp 'yesterday'"),
        ("createDate", "soon", "traits.createDate: cannot parse timestamp"),
        ("lastSeenDate", {"x": 1}, "traits.lastSeenDate: cannot parse timestamp"),
        ("firstVisitDate", 2**63, "traits.firstVisitDate: "),
        ("score", "12a", "traits.score: not a number: '12a'"),
        ("score", "0x10", "traits.score: not a number: '0x10'"),
        ("score", "Infinity", "traits.score: not a number: 'Infinity'"),
        ("score", "12abc", "traits.score: not a number: '12abc'"),
        ("score", 2**64, "traits.score: 18446744073709551616 is outside the signed 64-bit range"),
        ("numberOfVisits", -(2**63) - 1, "outside the signed 64-bit range"),  # PX numeric field
        ("score", float("inf"), "traits.score: "),
        ("email", float("inf"), "traits.email: "),  # not strict JSON
    ],
)
def test_identify_leaves_out_unconvertible_attributes_with_a_warning(trait, value, warning_part):
    result = MAPPER.map(identify({trait: value}))
    assert user_update(result) == base_user()
    assert len(result.warnings) == 1
    assert warning_part in result.warnings[0]


@pytest.mark.parametrize("value", [None, ""])
def test_identify_never_sends_null_or_empty_fields(value):
    traits = {"email": value, "city": value, "latitude": value, "firstName": value, "score": value}
    assert user_update(MAPPER.map(identify(traits))) == base_user()


def test_identify_always_has_type_and_property_keys():
    assert user_update(MAPPER.map(identify())) == {"type": "USER", "propertyKeys": [KEY]}


def test_identify_drops_traits_that_are_neither_default_nor_mapped():
    body = user_update(MAPPER.map(identify({"email": "a@b.c", "hobby": "chess", "plan": "pro"})))
    assert body == base_user(email="a@b.c")


# ---------------------------------------------------------------- traits vs context.traits

@pytest.mark.parametrize(
    "traits, ctx_traits, expected",
    [
        ({"email": "t@x"}, None, {"email": "t@x"}),
        (None, {"email": "c@x"}, {"email": "c@x"}),  # newer SDKs: context.traits
        ({"email": "t@x"}, {"email": "c@x"}, {"email": "t@x"}),  # traits first
        ({"email": None}, {"email": "c@x"}, {"email": "c@x"}),  # null is not usable
        ({"email": ""}, {"email": "c@x"}, {"email": "c@x"}),  # nor is an empty string
        ({"email": "t@x"}, {"city": "Pune"}, {"email": "t@x", "location": {"city": "Pune"}}),  # merged
        ({"score": "bad"}, {"score": 5}, {}),  # a usable but unconvertible traits value still wins
        ("not an object", {"email": "c@x"}, {"email": "c@x"}),
    ],
)
def test_identify_reads_traits_before_context_traits(traits, ctx_traits, expected):
    assert user_update(MAPPER.map(identify(traits, ctx_traits))) == base_user(**expected)


def test_identify_ignores_context_that_is_not_an_object():
    event = identify({"email": "a@b.c"}, context="nope")
    assert user_update(MAPPER.map(event)) == base_user(email="a@b.c")


# ---------------------------------------------------------------- location

@pytest.mark.parametrize("trait", [f.px for f in fields.LOCATION_FIELDS])
def test_identify_maps_each_location_trait(trait):
    assert user_update(MAPPER.map(identify({trait: "v"}))) == base_user(location={trait: "v"})


@pytest.mark.parametrize(
    "traits, location",
    [
        ({"latitude": 13.08, "longitude": 80.27}, {"coordinates": {"latitude": 13.08, "longitude": 80.27}}),
        ({"latitude": "13.08"}, {"coordinates": {"latitude": 13.08}}),  # float conversion
        ({"longitude": 80}, {"coordinates": {"longitude": 80.0}}),
        ({"city": "Chennai", "latitude": 13}, {"city": "Chennai", "coordinates": {"latitude": 13.0}}),
        ({"city": "Chennai", "latitude": None}, {"city": "Chennai"}),  # no empty coordinates
        ({"latitude": "north"}, None),  # unconvertible: left out, so no location at all
        ({"continent": None, "timeZone": ""}, None),  # nothing usable: no location
    ],
)
def test_identify_location_appears_only_when_something_is_in_it(traits, location):
    expected = base_user() if location is None else base_user(location=location)
    assert user_update(MAPPER.map(identify(traits))) == expected


# ---------------------------------------------------------------- names

@pytest.mark.parametrize(
    "traits, ctx_traits, expected",
    [
        ({"firstName": "Ada", "lastName": "Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        ({"firstname": "Ada", "lastname": "Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        ({"first_name": "Ada", "last_name": "Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        ({"firstName": "A", "firstname": "B", "first_name": "C"}, None, {"firstName": "A"}),
        ({"firstname": "B", "first_name": "C"}, None, {"firstName": "B"}),
        # every traits alias comes before any context.traits alias
        ({"first_name": "T"}, {"firstName": "C"}, {"firstName": "T"}),
        (None, {"firstname": "C", "last_name": "D"}, {"firstName": "C", "lastName": "D"}),
        ({"firstName": None}, {"firstName": "C"}, {"firstName": "C"}),
        ({"name": "Some User"}, None, {"firstName": "Some", "lastName": "User"}),
        ({"name": "Jean Luc Picard"}, None, {"firstName": "Jean", "lastName": "Luc Picard"}),
        ({"name": "Madonna"}, None, {"firstName": "Madonna"}),  # nothing after the space
        ({"name": "Ada  Lovelace "}, None, {"firstName": "Ada", "lastName": "Lovelace"}),  # rest trimmed
        ({"name": " Ada  Lovelace "}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        # any whitespace separates, as str.split() sees it
        ({"name": "Ada\tLovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        ({"name": "Ada\nLovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        ({"name": "Ada\u00a0Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),  # no-break space
        ({"name": "Ada\u3000Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),  # ideographic space
        ({"name": "\tAda \t Lovelace\n"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),
        # the rest keeps its inner spacing
        ({"name": "Ada King  Lovelace"}, None, {"firstName": "Ada", "lastName": "King  Lovelace"}),
        ({"name": "Ada\tKing\tLovelace "}, None, {"firstName": "Ada", "lastName": "King\tLovelace"}),
        ({"name": "  \t "}, None, {}),  # only whitespace: nothing to split
        ({"name": " Ada Lovelace"}, None, {"firstName": "Ada", "lastName": "Lovelace"}),  # name trimmed first
        ({"name": "Some User", "firstName": "Ada"}, None, {"firstName": "Ada", "lastName": "User"}),
        ({"name": "Some User", "last_name": "L"}, None, {"firstName": "Some", "lastName": "L"}),
        ({"name": "Some User", "firstName": "A", "lastName": "B"}, None, {"firstName": "A", "lastName": "B"}),
        (None, {"name": "Ctx Name"}, {"firstName": "Ctx", "lastName": "Name"}),
        ({"name": 42}, None, {}),  # only a string name is split
        ({"name": ""}, None, {}),
    ],
)
def test_identify_fills_names_from_aliases_then_splits_name(traits, ctx_traits, expected):
    assert user_update(MAPPER.map(identify(traits, ctx_traits))) == base_user(**expected)


# ---------------------------------------------------------------- custom attributes

CUSTOM_MAPPER = Mapper(make_settings(user_attribute_map={"hobbyCustomField": "hobby", "tier": "plan_tier"}))


@pytest.mark.parametrize(
    "traits, ctx_traits, custom",
    [
        ({"hobbyCustomField": "Painting"}, None, {"hobby": "Painting"}),
        ({"hobbyCustomField": "Painting", "tier": 2}, None, {"hobby": "Painting", "plan_tier": 2}),
        (None, {"tier": "gold"}, {"plan_tier": "gold"}),
        ({"tier": "t"}, {"tier": "c"}, {"plan_tier": "t"}),  # traits wins on a clash
        ({"tier": None}, {"tier": "c"}, {"plan_tier": "c"}),  # null is dropped, the other is used
        ({"tier": {"a": 1}}, None, {"plan_tier": {"a": 1}}),  # objects pass as they are
        ({"tier": None}, None, None),  # null values dropped: customAttributes left out
        # "" clears the attribute in PX, unless the other source has a usable value
        ({"tier": ""}, None, {"plan_tier": ""}),
        (None, {"tier": ""}, {"plan_tier": ""}),
        ({"tier": ""}, {"tier": ""}, {"plan_tier": ""}),
        ({"tier": None}, {"tier": ""}, {"plan_tier": ""}),
        ({"tier": ""}, {"tier": None}, {"plan_tier": ""}),
        ({"tier": ""}, {"tier": "c"}, {"plan_tier": "c"}),  # context.traits has a usable value
        (None, {"tier": "c", "hobbyCustomField": ""}, {"plan_tier": "c", "hobby": ""}),
        ({"tier": "t"}, {"tier": ""}, {"plan_tier": "t"}),
        ({"tier": ""}, {"tier": 2**63}, None),  # usable (if unsendable) beats "" (warned about)
        ({"unmapped": "x"}, None, None),
        ({"tier": 2**63}, None, None),  # no PX number holds it
    ],
)
def test_identify_maps_custom_attributes_through_user_attribute_map(traits, ctx_traits, custom):
    body = user_update(CUSTOM_MAPPER.map(identify(traits, ctx_traits)))
    assert body == (base_user() if custom is None else base_user(customAttributes=custom))


def test_custom_attribute_map_entries_for_default_traits_are_ignored():
    # config.py warns about these when loading; mapping never sends a default attribute twice
    mapper = Mapper(make_settings(user_attribute_map={"email": "mail", "city": "town", "first_name": "fn"}))
    body = user_update(mapper.map(identify({"email": "a@b.c", "city": "Pune", "first_name": "Ada"})))
    assert body == base_user(email="a@b.c", firstName="Ada", location={"city": "Pune"})


@pytest.mark.parametrize(
    "names, trait",
    [
        (fields.USER_DEFAULT_TRAITS, "email"),
        (fields.USER_DEFAULT_TRAITS, "latitude"),
        (fields.USER_DEFAULT_TRAITS, "firstname"),
        (fields.USER_DEFAULT_TRAITS, "last_name"),
        (fields.USER_DEFAULT_TRAITS, "name"),
        (fields.USER_DEFAULT_TRAITS, "timeZone"),
        (fields.ACCOUNT_DEFAULT_TRAITS, "name"),
        (fields.ACCOUNT_DEFAULT_TRAITS, "numberOfUsers"),
        (fields.ACCOUNT_DEFAULT_TRAITS, "longitude"),
        (fields.ACCOUNT_DEFAULT_TRAITS, "city"),
    ],
)
def test_default_trait_sets_name_every_consumed_trait(names, trait):
    assert trait in names


# ---------------------------------------------------------------- identify: the Upsert

def test_identify_creates_with_identify_id_and_event_time_defaults():
    result = MAPPER.map(identify({"email": "a@b.c"}))
    (step,) = plan_of(result).steps
    assert step == Upsert(
        kind="user",
        id="u1",
        update_body=base_user(email="a@b.c"),
        create_body={"identifyId": "u1", **base_user(email="a@b.c"), "signUpDate": TS_MS, "createDate": TS_MS},
    )
    assert result.type == "identify" and result.user_id == "u1" and result.warnings == ()


@pytest.mark.parametrize(
    "traits, extra, create_dates",
    [
        ({"signUpDate": 5, "createDate": 6}, {}, {"signUpDate": 5, "createDate": 6}),  # present: kept
        ({"signUpDate": 5}, {}, {"signUpDate": 5, "createDate": TS_MS}),
        ({"createDate": 6}, {}, {"signUpDate": TS_MS, "createDate": 6}),
        # no timestamp: originalTimestamp is the event time
        ({}, {"timestamp": None, "originalTimestamp": "2019-10-14"}, {"signUpDate": 1571011200000, "createDate": 1571011200000}),
        # an unparseable timestamp is warned about and originalTimestamp used
        ({}, {"timestamp": "bad", "originalTimestamp": "2019-10-14"}, {"signUpDate": 1571011200000, "createDate": 1571011200000}),
        ({}, {"timestamp": None}, {}),  # no event time at all: no defaults (mapping reads no clock)
        ({"signUpDate": "junk"}, {}, {"signUpDate": TS_MS, "createDate": TS_MS}),  # left out, then defaulted
        ({}, {"timestamp": " 2019-10-14T24:00:00Z "}, {"signUpDate": 1571097600000, "createDate": 1571097600000}),
        ({}, {"timestamp": "1571043797562", "originalTimestamp": 5}, {"signUpDate": 5, "createDate": 5}),
        ({}, {"timestamp": "bad", "originalTimestamp": "worse"}, {}),
    ],
)
def test_identify_create_body_defaults_dates_to_event_time(traits, extra, create_dates):
    step = plan_of(MAPPER.map(identify(traits, **extra))).steps[0]
    assert {k: step.create_body[k] for k in ("signUpDate", "createDate") if k in step.create_body} == create_dates
    # the update body never carries the event time or the identifyId
    assert "identifyId" not in step.update_body
    assert TS_MS not in step.update_body.values()


# ---------------------------------------------------------------- group

def test_group_default_flow_requires_user_upserts_account_then_attaches():
    result = MAPPER.map(group({"name": "Acme"}))
    assert plan_of(result).steps == (
        RequireUser("u1"),
        Upsert(
            kind="account",
            id="g1",
            update_body={"name": "Acme", "propertyKeys": [KEY]},
            create_body={"id": "g1", "name": "Acme", "propertyKeys": [KEY], "createDate": TS_MS},
        ),
        Update("user", "u1", {"accountId": "g1"}),
    )
    assert result.type == "group" and result.user_id == "u1"


@pytest.mark.parametrize(
    "trait, value, px_value",
    [
        ("name", "Acme", "Acme"),
        ("trackedSubscriptionId", "s1", "s1"),
        ("sfdcId", "001", "001"),
        ("dunsNumber", "123", "123"),
        ("industry", "Retail", "Retail"),
        ("numberOfEmployees", "250", 250),  # number
        ("numberOfEmployees", 10000, 10000),
        ("sicCode", "7372", "7372"),
        ("website", "acme.io", "acme.io"),
        ("naicsCode", "5112", "5112"),
        ("plan", "gold", "gold"),
        ("numberOfUsers", 12, 12),
        ("numberOfUsers", "12.0", 12.0),
        ("parentGroupId", "g0", "g0"),
        ("createDate", "2019-10-14", 1571011200000),
        ("lastModifiedDate", TS, TS_MS),
        ("lastSeenDate", "2019-10-14T14:33:17.562+05:30", TS_MS),
        ("city", "Chennai", None),  # location, checked below
    ],
)
def test_group_maps_each_account_attribute(trait, value, px_value):
    upsert = account_upsert(MAPPER.map(group({trait: value})))
    if px_value is None:
        assert upsert.update_body == {"location": {trait: value}, "propertyKeys": [KEY]}
    else:
        assert upsert.update_body == {trait: px_value, "propertyKeys": [KEY]}


@pytest.mark.parametrize(
    "traits, warning_part",
    [
        ({"numberOfEmployees": "lots"}, "traits.numberOfEmployees: not a number: 'lots'"),
        ({"numberOfUsers": 2**63}, "traits.numberOfUsers: "),
        ({"lastModifiedDate": "then"}, "traits.lastModifiedDate: cannot parse timestamp 'then'"),
    ],
)
def test_group_leaves_out_unconvertible_account_attributes_with_a_warning(traits, warning_part):
    result = MAPPER.map(group(traits))
    assert account_upsert(result).update_body == {"propertyKeys": [KEY]}
    assert len(result.warnings) == 1 and warning_part in result.warnings[0]


def test_group_account_location_matches_users():
    traits = {"countryName": "INDIA", "city": "Chennai", "latitude": "13.08", "longitude": 80.27}
    upsert = account_upsert(MAPPER.map(group(traits)))
    assert upsert.update_body["location"] == {
        "countryName": "INDIA", "city": "Chennai", "coordinates": {"latitude": 13.08, "longitude": 80.27}
    }


def test_group_reads_account_attributes_from_group_traits_only():
    # context.traits describe the user in a group event, not the account
    event = group({"name": "Acme"}, context={"traits": {"industry": "Retail", "cultureCustomField": "x"}})
    mapper = Mapper(make_settings(account_attribute_map={"cultureCustomField": "culture"}))
    assert account_upsert(mapper.map(event)).update_body == {"name": "Acme", "propertyKeys": [KEY]}


@pytest.mark.parametrize(
    "traits, custom",
    [
        ({"cultureCustomField": "cool"}, {"culture": "cool"}),
        ({"cultureCustomField": None}, None),
        ({"cultureCustomField": ""}, {"culture": ""}),  # "" clears the attribute
        ({"cultureCustomField": "", "website": ""}, {"culture": ""}),  # a default attribute's "" is no value
        ({"other": "x"}, None),  # not mapped: dropped
        ({"website": "w"}, None),  # default attribute: never a custom one, even when mapped
    ],
)
def test_group_maps_custom_attributes_through_account_attribute_map(traits, custom):
    mapper = Mapper(make_settings(account_attribute_map={"cultureCustomField": "culture", "website": "site"}))
    body = account_upsert(mapper.map(group(traits))).update_body
    assert body.get("customAttributes") == custom


@pytest.mark.parametrize(
    "traits, extra, update_create_date, create_create_date",
    [
        ({"name": "A"}, {}, None, TS_MS),  # update never gets the event time
        ({"name": "A", "createDate": "2019-10-14"}, {}, 1571011200000, 1571011200000),
        ({"name": "A"}, {"timestamp": None, "originalTimestamp": TS}, None, TS_MS),
        ({"name": "A"}, {"timestamp": None}, None, None),
        ({"name": "A"}, {"timestamp": "bad", "originalTimestamp": TS}, None, TS_MS),  # next source tried
        ({"name": "A"}, {"timestamp": "2019-10"}, None, 1569888000000),
    ],
)
def test_group_create_date_defaults_to_event_time_only_on_create(traits, extra, update_create_date, create_create_date):
    upsert = account_upsert(MAPPER.map(group(traits, **extra)))
    assert upsert.update_body.get("createDate") == update_create_date
    assert upsert.create_body.get("createDate") == create_create_date
    assert upsert.create_body["id"] == "g1" and "id" not in upsert.update_body


@pytest.mark.parametrize("traits", [{}, {"name": None}, {"name": ""}, {"industry": "x"}])
def test_group_without_name_cannot_create_the_account(traits):
    upsert = account_upsert(MAPPER.map(group(traits)))
    assert upsert.create_body is None
    assert "name" in upsert.create_error and "g1" in upsert.create_error


@pytest.mark.parametrize(
    "config_limit, integrations, limited",
    [
        (False, None, False),
        (True, None, True),
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": True}}, True),
        (False, {"GAINSIGHTPX": {"limitAPIForGroup": True}}, True),
        (False, {"gainsightPx": {"limitAPIForGroup": True}}, True),
        (False, {"Gainsight PX": {"limitAPIForGroup": True}}, True),
        (False, {"gainsight px": {"limitAPIForGroup": True}}, True),
        (False, {"Gainsight Px": {"limitAPIForGroup": True}}, True),
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": False}}, False),
        (True, {"GAINSIGHT_PX": {"limitAPIForGroup": False}}, True),  # either one turns it on
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": "true"}}, False),  # only JSON true counts
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": 1}}, False),
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": "yes"}}, False),
        (False, {"GAINSIGHT_PX": {"limitAPIForGroup": None}}, False),
        (True, {"GAINSIGHT_PX": {"limitAPIForGroup": "false"}}, True),  # ignored: the config still counts
        (False, {"GAINSIGHT_PX": True}, False),
        (False, {"Other": {"limitAPIForGroup": True}}, False),
    ],
)
def test_group_limit_api_skips_the_user_check_only(config_limit, integrations, limited):
    mapper = Mapper(make_settings(limit_api_for_group=config_limit))
    extra = {} if integrations is None else {"integrations": integrations}
    steps = plan_of(mapper.map(group({"name": "Acme"}, **extra))).steps
    if limited:
        assert [type(s) for s in steps] == [Upsert, Update]
    else:
        assert [type(s) for s in steps] == [RequireUser, Upsert, Update]
    assert steps[-2].create_first is False  # MAPPING.md: steps 2 and 3 are the same in both flows
    assert steps[-1] == Update("user", "u1", {"accountId": "g1"})


@pytest.mark.parametrize(
    "value, warned",
    [
        (True, False),
        (False, False),  # a boolean: off, nothing to warn about
        (None, False),  # null counts as absent
        ("true", True),
        ("True", True),
        (1, True),
        (1.0, True),
        ("yes", True),
        ({"on": True}, True),
        ([True], True),
    ],
)
def test_group_limit_api_on_the_event_other_than_a_boolean_is_ignored_with_a_warning(value, warned):
    result = MAPPER.map(group({"name": "Acme"}, integrations={"Gainsight PX": {"limitAPIForGroup": value}}))
    assert (plan_of(result).steps[0] == RequireUser("u1")) is (value is not True)
    expected = [f"integrations.Gainsight PX.limitAPIForGroup: {value!r} is not a JSON boolean "
                "(only true turns the fewer-calls flow on); ignored"]
    assert list(result.warnings) == (expected if warned else [])


@pytest.mark.parametrize("event_type", ["identify", "track"])
def test_limit_api_for_group_is_read_for_group_events_only(event_type):
    event = {"type": event_type, "userId": "u", "event": "E",
             "integrations": {"GAINSIGHT_PX": {"limitAPIForGroup": "true"}}}
    assert plan_of(MAPPER.map(event)).warnings == ()


@pytest.mark.parametrize(
    "event, group_id",
    [
        ({"groupId": "g1"}, "g1"),
        ({"traits": {"groupId": "tg"}}, "tg"),
        ({"groupId": "g1", "traits": {"groupId": "tg"}}, "g1"),
        ({"groupId": "", "traits": {"groupId": "tg"}}, "tg"),
        ({"groupId": 42}, "42"),  # numeric id: decimal string
        ({"groupId": "a/b c"}, "a/b c"),  # quoting happens in the path only
    ],
)
def test_group_id_comes_from_group_id_then_traits(event, group_id):
    result = MAPPER.map({"type": "group", "userId": "u1", **event})
    assert account_upsert(result).id == group_id
    assert plan_of(result).steps[-1].body == {"accountId": group_id}


def test_group_numeric_user_id_is_a_decimal_string_in_paths():
    result = MAPPER.map({"type": "group", "userId": 7, "groupId": 8, "traits": {"name": "A"}})
    assert plan_of(result).steps[0] == RequireUser("7")
    assert plan_of(result).steps[-1] == Update("user", "7", {"accountId": "8"})


# ---------------------------------------------------------------- user ids

@pytest.mark.parametrize(
    "event, user_id",
    [
        ({"userId": "u", "anonymousId": "a"}, "u"),
        ({"traits": {"userId": "tu", "id": "ti"}, "anonymousId": "a"}, "tu"),
        ({"traits": {"id": "ti"}, "context": {"traits": {"userId": "cu"}}}, "ti"),
        ({"context": {"traits": {"userId": "cu", "id": "ci"}}, "anonymousId": "a"}, "cu"),
        ({"context": {"traits": {"id": "ci"}}, "anonymousId": "a"}, "ci"),
        ({"anonymousId": "a"}, "a"),
        ({"userId": None, "anonymousId": "a"}, "a"),
        ({"userId": "", "anonymousId": "a"}, "a"),  # empty is not usable
        ({"userId": 42}, "42"),  # numeric id
        ({"userId": -3}, "-3"),
        ({"userId": 2**70}, str(2**70)),  # ids are strings in PX: no 64-bit limit
        ({"userId": "ü ser"}, "ü ser"),
        ({"userId": "a\x7fb"}, "a\x7fb"),  # DEL is not in U+0000-U+001F
    ],
)
@pytest.mark.parametrize("event_type", ["identify", "track"])
def test_user_id_is_the_first_usable_of_the_identify_and_track_list(event, user_id, event_type):
    result = MAPPER.map({"type": event_type, "event": "E", **event})
    assert plan_of(result).user_id == user_id


@pytest.mark.parametrize(
    "event, user_id",
    [
        ({"userId": "u", "anonymousId": "a"}, "u"),
        ({"traits": {"userId": "tu", "id": "ti"}, "anonymousId": "a"}, "a"),  # group traits are the account's
        ({"traits": {"id": "ti"}, "context": {"traits": {"userId": "cu"}}}, "cu"),
        ({"context": {"traits": {"id": "ci"}}, "anonymousId": "a"}, "ci"),
        ({"anonymousId": "a"}, "a"),
        ({"userId": 42}, "42"),
    ],
)
def test_group_user_id_skips_group_traits(event, user_id):
    result = MAPPER.map({"type": "group", "groupId": "g", **event})
    assert plan_of(result).user_id == user_id


def test_identify_update_body_never_holds_the_identify_id():
    step = plan_of(MAPPER.map(identify({"userId": "x", "id": "y"}))).steps[0]
    assert step.create_body["identifyId"] == "u1"
    assert "identifyId" not in step.update_body and "userId" not in step.update_body


# ---------------------------------------------------------------- invalid events

@pytest.mark.parametrize(
    "event, message",
    [
        ("not an object", "event is not a JSON object"),
        ([{"type": "track"}], "event is not a JSON object"),
        ({}, "event has no type"),
        ({"type": None}, "event has no type"),
        ({"type": ""}, "event has no type"),
        ({"type": 5}, "event has no type"),
        ({"type": "purchase"}, "unknown event type 'purchase'"),
        ({"type": "identify"}, "userId or anonymousId is required for identify"),
        ({"type": "track", "event": "E"}, "userId or anonymousId is required for track"),
        ({"type": "group", "groupId": "g"}, "userId or anonymousId is required for group"),
        # group does not read the user id from (account) traits
        ({"type": "group", "groupId": "g", "traits": {"userId": "u"}}, "userId or anonymousId is required for group"),
        ({"type": "identify", "userId": "", "anonymousId": None}, "userId or anonymousId is required for identify"),
        ({"type": "group", "userId": "u"}, "groupId is required for group"),
        ({"type": "group", "userId": "u", "groupId": ""}, "groupId is required for group"),
        ({"type": "track", "userId": "u"}, "event (the event name) is required for track"),
        ({"type": "track", "userId": "u", "event": ""}, "event (the event name) is required for track"),
        ({"type": "track", "userId": "u", "event": {"n": 1}},
         "event (the event name) must be a non-empty string or an integer, not an object: {'n': 1}"),
        ({"type": "track", "userId": "u", "event": 1.5},
         "event (the event name) must be a non-empty string or an integer, not a float: 1.5"),
        ({"type": "track", "userId": "u", "event": 4.0},  # an integral float is still a float
         "event (the event name) must be a non-empty string or an integer, not a float: 4.0"),
        ({"type": "track", "userId": "u", "event": True},
         "event (the event name) must be a non-empty string or an integer, not a boolean: True"),
        ({"type": "track", "userId": "u", "event": False},
         "event (the event name) must be a non-empty string or an integer, not a boolean: False"),
        ({"type": "track", "userId": "u", "event": ["E"]},
         "event (the event name) must be a non-empty string or an integer, not a list: ['E']"),
        # MAPPING.md: ids . and .. cannot be a URL path segment
        ({"type": "identify", "userId": "."}, "userId '.' cannot be used as an id: it is not a valid URL path segment"),
        ({"type": "track", "userId": "..", "event": "E"},
         "userId '..' cannot be used as an id: it is not a valid URL path segment"),
        ({"type": "identify", "anonymousId": ".."},
         "anonymousId '..' cannot be used as an id: it is not a valid URL path segment"),
        ({"type": "group", "userId": "u", "groupId": "."},
         "groupId '.' cannot be used as an id: it is not a valid URL path segment"),
        ({"type": "group", "userId": "u", "traits": {"groupId": ".."}},
         "traits.groupId '..' cannot be used as an id: it is not a valid URL path segment"),
    ],
)
def test_events_lacking_what_they_need_are_invalid(event, message):
    result = MAPPER.map(event)
    assert isinstance(result, Invalid)
    assert result.message == message


@pytest.mark.parametrize(
    "event, field, what",
    [
        ({"userId": {"id": 1}}, "userId", "an object"),
        ({"userId": ["u"]}, "userId", "a list"),
        ({"userId": True}, "userId", "a boolean"),
        ({"userId": False, "anonymousId": "a"}, "userId", "a boolean"),  # false is a value: invalid, no fallback
        ({"userId": 4.0}, "userId", "a float"),
        ({"traits": {"userId": 1.5}}, "traits.userId", "a float"),
        ({"context": {"traits": {"id": []}}}, "context.traits.id", "a list"),
        ({"anonymousId": {}}, "anonymousId", "an object"),
    ],
)
def test_user_ids_of_the_wrong_kind_make_the_event_invalid(event, field, what):
    result = MAPPER.map({"type": "identify", **event})
    assert isinstance(result, Invalid)
    assert result.message.startswith(f"{field} must be a non-empty string or an integer, not {what}")


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "tab\there", "\x1f", "\r"])
@pytest.mark.parametrize("field", ["userId", "anonymousId", "groupId"])
def test_ids_with_control_characters_make_the_event_invalid(bad, field):
    event = {"type": "group", "userId": "u", "groupId": "g", **{field: bad}}
    if field == "anonymousId":
        del event["userId"]
    result = MAPPER.map(event)
    assert isinstance(result, Invalid)
    assert result.message.startswith(f"{field} contains a control character")


@pytest.mark.parametrize("bad", [True, 1.5, {"id": "g"}, ["g"]])
def test_group_ids_of_the_wrong_kind_make_the_event_invalid(bad):
    result = MAPPER.map({"type": "group", "userId": "u", "groupId": bad})
    assert isinstance(result, Invalid) and result.message.startswith("groupId must be a non-empty string")


def test_invalid_result_carries_the_lowercase_type():
    assert MAPPER.map({"type": "TRACK", "userId": "u"}).type == "track"


# ---------------------------------------------------------------- which events are sent

@pytest.mark.parametrize(
    "event_type, plan_type",
    [("identify", "identify"), ("IDENTIFY", "identify"), ("Group", "group"), ("tRaCk", "track")],
)
def test_type_is_compared_case_insensitively(event_type, plan_type):
    event = {"type": event_type, "userId": "u", "groupId": "g", "event": "E"}
    assert plan_of(MAPPER.map(event)).type == plan_type


@pytest.mark.parametrize("event_type", ["page", "screen", "alias", "Page", "SCREEN"])
def test_page_screen_and_alias_are_skipped(event_type):
    result = MAPPER.map({"type": event_type, "userId": "u"})
    assert result == Skipped(event_type.lower(), f"{event_type.lower()} events are not sent to Gainsight PX")


@pytest.mark.parametrize(
    "integrations, sent",
    [
        ({}, True),
        ({"All": True}, True),
        ({"All": False}, False),
        ({"All": False, "GAINSIGHT_PX": True}, True),
        ({"All": False, "Gainsight PX": {"limitAPIForGroup": True}}, True),  # options object enables
        ({"All": False, "gainsightPx": {}}, True),  # any non-null value enables
        ({"All": False, "GAINSIGHT_PX": None}, False),  # null counts as absent
        ({"GAINSIGHT_PX": False}, False),
        ({"GAINSIGHTPX": False}, False),
        ({"gainsightPx": False}, False),
        ({"Gainsight PX": False}, False),
        ({"gainsight px": False}, False),
        ({"Gainsight Px": False}, False),
        ({"All": True, "GAINSIGHT_PX": False}, False),  # explicit false beats All
        ({"GAINSIGHT_PX": None}, True),
        ({"All": False, "gainsight_px": True}, False),  # not one of PX's names
        ({"All": None}, True),  # only false turns things off
        ({"GAINSIGHT_PX": True, "gainsightPx": False}, False),  # conflicting names: false wins
        ({"All": False, "GAINSIGHT_PX": "yes"}, True),
    ],
)
@pytest.mark.parametrize("event_type", ["identify", "group", "track"])
def test_integrations_can_turn_gainsight_px_off(integrations, sent, event_type):
    event = {"type": event_type, "userId": "u", "groupId": "g", "event": "E", "integrations": integrations}
    result = MAPPER.map(event)
    if sent:
        assert isinstance(result, Plan)
    else:
        assert isinstance(result, Skipped) and result.type == event_type
        assert "integrations" in result.reason and "not sent to Gainsight PX" in result.reason


@pytest.mark.parametrize("integrations", [None, "GAINSIGHT_PX", ["All"], 0])
def test_integrations_that_is_not_an_object_is_ignored(integrations):
    assert isinstance(MAPPER.map(track(integrations=integrations)), Plan)


def test_skipped_by_integrations_before_checking_required_fields():
    # an event not meant for PX is skipped, not reported as invalid
    result = MAPPER.map({"type": "track", "integrations": {"All": False}})
    assert isinstance(result, Skipped)


# ---------------------------------------------------------------- track

def test_track_minimal_body():
    result = MAPPER.map(track())
    assert plan_of(result).steps == (
        Write(
            "POST",
            CUSTOM_EVENTS_PATH,
            {
                "identifyId": "u1",
                "eventName": "Clicked",
                "date": TS_MS,
                "attributes": {},
                "propertyKey": KEY,
                "userType": "USER",
            },
        ),
    )
    assert result.type == "track" and result.user_id == "u1" and result.warnings == ()


@pytest.mark.parametrize(
    "extra, expected",
    [
        ({"properties": {"date": "2019-10-14"}}, 1571011200000),  # properties.date first
        ({"properties": {"date": 1571043797562.9}}, TS_MS),
        ({"properties": {"date": None}}, TS_MS),
        ({"properties": {"date": "garbage"}}, TS_MS),  # warned about, then timestamp used
        ({"properties": {"date": "2019"}}, 1546300800000),
        ({"properties": {"date": "2019-10-14T24:00:00Z"}}, 1571097600000),
        ({"properties": {"date": "1571043797562"}}, TS_MS),  # numeric text: not epoch, next source
        ({"properties": {"date": "garbage"}, "timestamp": "bad", "originalTimestamp": "2019-10-14"}, 1571011200000),
        ({"properties": {"date": "garbage"}, "timestamp": "bad", "originalTimestamp": "worse"}, None),
        ({"timestamp": "bad", "originalTimestamp": 1571043797562.9}, TS_MS),
        ({"timestamp": None, "originalTimestamp": "2019-10-14"}, 1571011200000),
        ({"timestamp": "2019-10-14T14:33:17.562+05:30"}, TS_MS),
        ({"timestamp": None}, None),  # no time at all: date left out
    ],
)
def test_track_date_from_properties_date_then_timestamp_then_original(extra, expected):
    event = {**track(), **extra}
    assert track_body(MAPPER.map(event)).get("date") == expected


@pytest.mark.parametrize(
    "extra, account_id",
    [
        ({"traits": {"groupId": "g1"}}, "g1"),
        ({"context": {"traits": {"groupId": "g2"}}}, "g2"),
        ({"traits": {"groupId": "g1"}, "context": {"traits": {"groupId": "g2"}}}, "g1"),
        ({"traits": {"groupId": ""}, "context": {"traits": {"groupId": "g2"}}}, "g2"),
        ({"traits": {"groupId": 99}}, "99"),  # string conversion
        ({"groupId": "top-level"}, None),  # not read for track
        ({}, None),
    ],
)
def test_track_account_id_from_traits_group_id(extra, account_id):
    assert track_body(MAPPER.map(track(**extra))).get("accountId") == account_id


@pytest.mark.parametrize(
    "extra, session_id",
    [
        ({"properties": {"sessionId": "p"}}, "p"),
        ({"context": {"sessionId": 1700000000}}, 1700000000),
        ({"properties": {"sessionId": "p"}, "context": {"sessionId": "c"}}, "p"),
        ({"properties": {"sessionId": None}, "context": {"sessionId": "c"}}, "c"),
        ({}, None),
    ],
)
def test_track_session_id_from_properties_then_context(extra, session_id):
    assert track_body(MAPPER.map(track(**extra))).get("sessionId") == session_id


@pytest.mark.parametrize(
    "page, expected",
    [
        ({"url": "https://x/a", "referrer": "https://r"}, {"url": "https://x/a", "referrer": "https://r"}),
        ({"url": "https://x/a"}, {"url": "https://x/a"}),
        ({"url": None, "referrer": ""}, {}),
        ("not an object", {}),
    ],
)
def test_track_url_and_referrer_from_context_page(page, expected):
    body = track_body(MAPPER.map(track(context={"page": page})))
    assert {k: body[k] for k in ("url", "referrer") if k in body} == expected


@pytest.mark.parametrize(
    "properties, attributes",
    [
        (None, {}),
        ({}, {}),
        ({"a": "x", "b": 1, "c": 1.5, "d": True}, {"a": "x", "b": 1, "c": 1.5, "d": True}),
        ({"a": None, "b": "x"}, {"b": "x"}),  # nulls dropped
        ({"a": ""}, {"a": ""}),  # an empty string is a value here
        ({"o": {"a": [1, 2]}}, {"o": '{"a":[1,2]}'}),  # compact JSON text
        ({"l": [1, "two", None]}, {"l": '[1,"two",null]'}),
        ({"u": {"city": "Zürich", "emoji": "🙂"}}, {"u": '{"city":"Zürich","emoji":"🙂"}'}),  # non-ASCII kept
        ({"e": {}, "f": []}, {"e": "{}", "f": "[]"}),
        ({"o": {"z": 1, "a": {"y": 2, "b": 3}}}, {"o": '{"z":1,"a":{"y":2,"b":3}}'}),  # input key order kept
        ({"o": {"n": 1.0, "m": 1e-07}}, {"o": '{"n":1.0,"m":1e-07}'}),  # numbers as in the input
        ({"globalContext": {"p": 1}, "x": 1}, {"x": 1}),  # globalContext is not an attribute
        ({"date": "2019-10-14", "sessionId": "s"}, {"date": "2019-10-14", "sessionId": "s"}),  # kept too
        ({"big": 2**63, "ok": 2}, {"ok": 2}),  # no 64-bit integer: left out with a warning
        ({"inf": float("inf"), "nested": {"x": float("inf")}}, {}),  # not strict JSON: left out
    ],
)
def test_track_attributes_are_properties_stringified(properties, attributes):
    assert track_body(MAPPER.map(track(properties))).get("attributes") == attributes


@pytest.mark.parametrize(
    "name, event_name",
    [
        ("Clicked", "Clicked"),
        (42, "42"),  # an integer is used as its decimal string
        (0, "0"),  # zero is a value, not "empty"
        (-7, "-7"),
        (2**70, str(2**70)),  # a name, not a PX number: no 64-bit limit
        ("  ", "  "),  # a non-empty string: sent as it is (MAPPING.md does not trim event names)
        (" Clicked ", " Clicked "),
        ("a\x07b", "a\x07b"),  # control characters are fine in a name (it is in a body, not a path)
    ],
)
def test_track_event_name_is_a_non_empty_string_or_an_integer(name, event_name):
    assert track_body(MAPPER.map(track(event=name)))["eventName"] == event_name


@pytest.mark.parametrize(
    "extra, warnings",
    [
        ({}, []),
        ({"timestamp": "bad"}, ["timestamp: cannot parse timestamp 'bad'; left out"]),
        ({"timestamp": "bad", "originalTimestamp": "2019"}, ["timestamp: cannot parse timestamp 'bad'; left out"]),
        ({"timestamp": "bad", "originalTimestamp": "worse"}, [
            "timestamp: cannot parse timestamp 'bad'; left out",
            "originalTimestamp: cannot parse timestamp 'worse'; left out",
        ]),
        ({"timestamp": None, "originalTimestamp": "worse"}, ["originalTimestamp: cannot parse timestamp 'worse'; left out"]),
        ({"properties": {"date": "x"}, "timestamp": "y"}, [
            "properties.date: cannot parse timestamp 'x'; left out",
            "timestamp: cannot parse timestamp 'y'; left out",
        ]),
        ({"properties": {"date": "x"}, "timestamp": " 2019-10-14T24:00 "}, ["properties.date: cannot parse timestamp 'x'; left out"]),
        ({"properties": {"date": "2019"}, "timestamp": "bad"}, []),  # a later source is not read
        ({"properties": {"date": "20240129_1300"}, "timestamp": TS}, [  # not a date: the next source
            "properties.date: cannot parse timestamp '20240129_1300'; left out"]),
    ],
)
def test_track_date_warns_about_each_unparseable_source_it_tries(extra, warnings):
    event = {**track(), **extra}
    assert list(MAPPER.map(event).warnings) == warnings


def test_a_date_and_time_joined_by_another_character_is_warned_about_and_left_out_of_a_user():
    result = MAPPER.map({"type": "identify", "userId": "u2", "traits": {"lastSeenDate": "2019-10-14X09:03"}})
    upsert = result.steps[0]
    assert "lastSeenDate" not in upsert.update_body
    assert list(result.warnings) == ["traits.lastSeenDate: cannot parse timestamp '2019-10-14X09:03'; left out"]


@pytest.mark.parametrize(
    "event",
    [
        identify(timestamp="bad", originalTimestamp=TS),
        group({"name": "Acme"}, timestamp="bad", originalTimestamp=TS),
    ],
)
def test_event_time_warns_about_an_unparseable_timestamp_and_uses_original_timestamp(event):
    result = MAPPER.map(event)
    assert list(result.warnings) == ["timestamp: cannot parse timestamp 'bad'; left out"]
    assert plan_of(result).steps[-2 if event["type"] == "group" else 0].create_body["createDate"] == TS_MS


def test_track_properties_that_are_not_an_object_are_ignored_with_a_warning():
    result = MAPPER.map(track(["a"]))
    assert track_body(result)["attributes"] == {}
    assert result.warnings and result.warnings[0].startswith("properties: not an object")


@pytest.mark.parametrize(
    "configured, in_event, expected",
    [
        ({}, None, None),  # both empty: left out
        ({"projectId": "p-123"}, None, {"projectId": "p-123"}),
        ({"projectId": "p-123"}, {"projectId": "p-999"}, {"projectId": "p-999"}),  # payload wins
        ({}, {"projectId": "p-999"}, {"projectId": "p-999"}),
        ({"projectId": "p-123"}, {}, {"projectId": "p-123"}),  # empty payload object: config used
        ({"projectId": "p-123"}, "p-999", {"projectId": "p-123"}),  # not an object: config used (warned)
        ({}, {}, None),
    ],
)
def test_track_global_context_payload_wins_over_config(configured, in_event, expected):
    mapper = Mapper(make_settings(global_context=configured))
    properties = {} if in_event is None else {"globalContext": in_event}
    assert track_body(mapper.map(track(properties))).get("globalContext") == expected


@pytest.mark.parametrize(
    "count, warned",
    [(50, False), (51, True)],  # PX accepts at most 50 attributes
)
def test_track_warns_about_more_than_50_attributes(count, warned):
    result = MAPPER.map(track({f"a{i}": i for i in range(count)}))
    assert len(track_body(result)["attributes"]) == count  # still sent; PX decides
    assert any("more than the 50" in w for w in result.warnings) is warned


@pytest.mark.parametrize("length, warned", [(1024, False), (1025, True)])
def test_track_warns_about_attribute_names_over_1024_characters(length, warned):
    result = MAPPER.map(track({"x" * length: 1}))
    assert any("1024" in w for w in result.warnings) is warned


@pytest.mark.parametrize(
    "properties, warning_part",
    [
        ({"date": "garbage"}, "properties.date: cannot parse timestamp 'garbage'"),
        ({"big": 2**63}, "properties.big: "),
        ({"nested": {"x": float("inf")}}, "properties.nested: "),
    ],
)
def test_track_warnings_name_the_field(properties, warning_part):
    result = MAPPER.map(track(properties))
    assert len(result.warnings) == 1 and warning_part in result.warnings[0]


# ---------------------------------------------------------------- the destination description's samples

SAMPLE_SETTINGS = make_settings(
    user_attribute_map={"hobbyCustomField": "hobby"},
    account_attribute_map={"cultureCustomField": "culture"},
    global_context={"projectId": "p-123"},
)


def test_sample_identify_maps_to_the_exact_bodies():
    event = {
        "type": "identify",
        "userId": "sample-user-id",
        "timestamp": TS,
        "context": {
            "traits": {
                "email": "user@domain.com",
                "name": "Some User",
                "gender": "M",
                "countryName": "INDIA",
                "countryCode": "IN",
                "city": "CHENNAI",
                "score": 100,
                "hobbyCustomField": "Painting",
                "title": "Doctor",
            }
        },
    }
    update = {
        "email": "user@domain.com",
        "firstName": "Some",
        "lastName": "User",
        "gender": "MALE",
        "score": 100,
        "title": "Doctor",
        "location": {"countryName": "INDIA", "countryCode": "IN", "city": "CHENNAI"},
        "customAttributes": {"hobby": "Painting"},
        "type": "USER",
        "propertyKeys": ["AP-TEST-1"],
    }
    result = map_event(event, SAMPLE_SETTINGS)
    assert result == Plan(
        type="identify",
        user_id="sample-user-id",
        steps=(
            Upsert(
                kind="user",
                id="sample-user-id",
                update_body=update,
                create_body={"identifyId": "sample-user-id", **update, "signUpDate": TS_MS, "createDate": TS_MS},
            ),
        ),
    )


def test_sample_group_maps_to_the_exact_bodies():
    event = {
        "type": "group",
        "userId": "sample-user-id",
        "groupId": "sample-group-id",
        "timestamp": TS,
        "traits": {
            "name": "Example Group",
            "industry": "Online Streaming",
            "numberOfEmployees": 10000,
            "website": "www.exmaple-group.com",
            "cultureCustomField": "cool",
        },
    }
    update = {
        "name": "Example Group",
        "industry": "Online Streaming",
        "numberOfEmployees": 10000,
        "website": "www.exmaple-group.com",
        "customAttributes": {"culture": "cool"},
        "propertyKeys": ["AP-TEST-1"],
    }
    assert map_event(event, SAMPLE_SETTINGS) == Plan(
        type="group",
        user_id="sample-user-id",
        steps=(
            RequireUser("sample-user-id"),
            Upsert(
                kind="account",
                id="sample-group-id",
                update_body=update,
                create_body={"id": "sample-group-id", **update, "createDate": TS_MS},
            ),
            Update("user", "sample-user-id", {"accountId": "sample-group-id"}),
        ),
    )


@pytest.mark.parametrize(
    "properties",
    [
        {"description": "Example track call", "status": "demo"},  # config's global context
        {"description": "Example track call", "status": "demo", "globalContext": {"projectId": "p-123"}},
    ],
)
def test_sample_track_maps_to_the_exact_body(properties):
    event = {
        "type": "track",
        "userId": "sample-user-id",
        "event": "Track User",
        "timestamp": TS,
        "properties": properties,
    }
    assert map_event(event, SAMPLE_SETTINGS) == Plan(
        type="track",
        user_id="sample-user-id",
        steps=(
            Write(
                "POST",
                "/events/custom",
                {
                    "identifyId": "sample-user-id",
                    "eventName": "Track User",
                    "date": TS_MS,
                    "attributes": {"description": "Example track call", "status": "demo"},
                    "propertyKey": "AP-TEST-1",
                    "userType": "USER",
                    "globalContext": {"projectId": "p-123"},
                },
            ),
        ),
    )


def test_mapping_does_not_change_the_event():
    event = {
        "type": "track", "userId": "u", "event": "E", "timestamp": TS,
        "properties": {"o": {"a": 1}, "n": None, "globalContext": {"p": 1}},
        "context": {"traits": {"groupId": 5}},
    }
    before = repr(event)
    MAPPER.map(event)
    assert repr(event) == before
