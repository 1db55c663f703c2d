"""The dry run's specialised ways for track events, pinned to the general ways beside them: TrackBuilder's
one-pass mapping (against general()), convert.iso_ms (against to_epoch_ms' reading) and a custom event's
dry-run line made from the listing's cached start (against the whole-dict line)."""

import io
import math

import pytest
from hypothesis import given, settings, strategies as st

from gspx_cli import jsonio
from gspx_cli.config import Settings
from gspx_cli.delivery.sinks import PrintSink, listing_start
from gspx_cli.mapping.convert import iso_ms, to_epoch_ms
from gspx_cli.mapping.plan import CUSTOM_EVENTS_PATH, Plan, Write
from gspx_cli.mapping.rules import Mapper
from gspx_cli.read.shapes import Record
from gspx_cli.report.reporter import Reporter

KEY = "AP-TEST-1"
BASE_URL = "https://api.aptrinsic.com/v1"
TS = "2024-05-01T10:41:12.741Z"
TS_MS = 1714560072741
GLOBAL = {"projectId": "p-1"}
MAPPER = Mapper(Settings(product_tag_key=KEY, base_url=BASE_URL, global_context=GLOBAL))
TRACK = MAPPER._handlers["track"]


def usual(**over):
    event = {"type": "track", "userId": "u1", "event": "Clicked", "messageId": "m1", "timestamp": TS,
             "context": {"sessionId": 17, "page": {"url": "https://x/a", "referrer": "https://r/"},
                         "traits": {"groupId": "g1"}},
             "properties": {"value": 29.5, "tags": ["a", "b"], "n": 3}}
    event.update(over)
    return event


def body(globalContext=None, **fields):
    out = {"identifyId": "u1", "eventName": "Clicked", "date": TS_MS, **fields, "propertyKey": KEY, "userType": "USER"}
    if globalContext:
        out["globalContext"] = globalContext
    return out


def mapped(event):
    """map()'s result, after checking that the general way gives the very same one."""
    result = MAPPER.map(event)
    assert result == MAPPER.general(event) == TRACK.general(event, "track", None) or not isinstance(result, Plan)
    return result


AWKWARD = [
    (usual(), body(accountId="g1", sessionId=17, url="https://x/a", referrer="https://r/",
                   attributes={"value": 29.5, "tags": '["a","b"]', "n": 3}, globalContext=GLOBAL), ()),
    (usual(userId=42, context={}), body(identifyId="42", attributes={"value": 29.5, "tags": '["a","b"]', "n": 3},
                                        globalContext=GLOBAL), ()),
    (usual(userId=None, anonymousId="a1", properties={}, context={}),
     body(identifyId="a1", attributes={}, globalContext=GLOBAL), ()),
    (usual(timestamp=1714560072741.9, properties=None, context={}), body(attributes={}, globalContext=GLOBAL), ()),
    (usual(timestamp="bad", originalTimestamp="2024-05-01", properties={}, context={}),
     body(date=1714521600000, attributes={}, globalContext=GLOBAL),
     ("timestamp: cannot parse timestamp 'bad'; left out",)),
    (usual(timestamp="2024-05-01X10:41", properties={}, context={}),
     {k: v for k, v in body(attributes={}, globalContext=GLOBAL).items() if k != "date"},
     ("timestamp: cannot parse timestamp '2024-05-01X10:41'; left out",)),
    (usual(timestamp="20240501T104112.741Z", properties={}, context={}), body(attributes={}, globalContext=GLOBAL), ()),
    (usual(properties={"date": "2024-01-01", "sessionId": "ps"}, context={"sessionId": "cs"}),
     body(date=1704067200000, sessionId="ps", attributes={"date": "2024-01-01", "sessionId": "ps"},
          globalContext=GLOBAL), ()),
    (usual(properties={"sessionId": ""}, context={"sessionId": "cs", "page": {"url": 5, "referrer": ""}}),
     body(sessionId="cs", url=5, attributes={"sessionId": ""}, globalContext=GLOBAL), ()),
    (usual(properties={}, context={"sessionId": 2**63, "page": {"url": None, "referrer": ["r"]}}),
     body(referrer=["r"], attributes={}, globalContext=GLOBAL),
     ("context.sessionId: 9223372036854775808 is outside the signed 64-bit range; left out",)),
    (usual(properties={}, context={"sessionId": 1.5, "page": "not an object", "traits": {"groupId": 7}}),
     body(accountId="7", sessionId=1.5, attributes={}, globalContext=GLOBAL), ()),
    (usual(properties={}, context={"traits": {"groupId": ""}}, traits={"groupId": "tg"}),
     body(accountId="tg", attributes={}, globalContext=GLOBAL), ()),
    (usual(properties={"globalContext": "text", "x": 1}, context={}),
     body(attributes={"x": 1}, globalContext=GLOBAL),
     ("properties.globalContext: not an object ('text'); the configured global context is used",)),
    (usual(properties={"globalContext": {"v": math.nan}}, context={}),
     body(attributes={}, globalContext=GLOBAL),
     ("properties.globalContext: holds a number that is not finite; the configured global context is used",)),
    (usual(properties={"globalContext": {}}, context={}), body(attributes={}, globalContext=GLOBAL), ()),
    (usual(properties={"globalContext": {"mine": 1}}, context={}), body(attributes={}, globalContext={"mine": 1}),
     ()),
    (usual(properties={"n": None, "e": "", "s": "null", "f": 1e-07, "l": [1, None], "o": {"k": math.inf}},
           context={}),
     body(attributes={"e": "", "s": "null", "f": 1e-07, "l": "[1,null]"}, globalContext=GLOBAL),
     ("properties.o: holds a number that is not finite; left out",)),
    (usual(properties={"big": 2**64 - 1, "nan": math.nan}, context={}), body(attributes={}, globalContext=GLOBAL),
     ("properties.big: 18446744073709551615 is outside the signed 64-bit range; left out",
      "properties.nan: nan is not a finite number; left out")),
    (usual(properties="text", context={}), body(attributes={}, globalContext=GLOBAL),
     ("properties: not an object ('text'); ignored",)),
    (usual(event=7, userId="ü 🙂", context="text", properties={"ключ": "é"}),
     body(identifyId="ü 🙂", eventName="7", attributes={"ключ": "é"}, globalContext=GLOBAL), ()),
]


@pytest.mark.parametrize("event, expected, warnings", AWKWARD)
def test_a_track_maps_to_its_body_and_warnings_the_same_way_fast_or_general(event, expected, warnings):
    result = mapped(event)
    assert result.steps == (Write("POST", CUSTOM_EVENTS_PATH, expected),)
    assert list(result.steps[0].body) == list(expected)  # the key order is the dry-run line's
    assert result.warnings == warnings


@pytest.mark.parametrize("event", [
    usual(type="TRACK"), usual(integrations={"All": True}), usual(integrations={"All": False}),
    usual(integrations={"Gainsight PX": {"x": 1}}), usual(userId=".."), usual(userId="a\tb"), usual(event=""),
    usual(event=None), usual(messageId=5), usual(messageId=""), usual(properties={"x" * 1100: 1}),
    usual(properties={f"k{i}": i for i in range(60)}),
])
def test_events_beside_the_usual_shape_map_the_general_way(event):
    assert MAPPER.map(event) == MAPPER.general(event)


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                    st.sampled_from(["", TS, "2024-05-01", "2024", "bad", "20240501T1041Z", " 2024-05-01T10:41Z"]),
                    st.lists(st.integers() | st.none(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                                    st.floats(), max_size=2))
_objects = st.dictionaries(st.sampled_from(["url", "referrer", "sessionId", "groupId", "date", "globalContext",
                                            "page", "traits", "x"]), _values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "userId": _values, "anonymousId": _values, "event": _values, "timestamp": _values, "originalTimestamp": _values,
    "messageId": _values, "properties": _objects | _values, "traits": _objects | _values,
    "context": st.fixed_dictionaries({}, optional={"page": _objects | _values, "traits": _objects | _values,
                                                   "sessionId": _values}) | _values}))
def test_any_track_maps_the_same_fast_or_general(event):
    event["type"] = "track"
    assert MAPPER.map(event) == TRACK.general(event, "track", None)


@pytest.mark.parametrize("text", [
    TS, "2024-05-01", "2024-05-01T10:41", "2024-05-01 10:41:12+05:30", "2024-05-01t10:41:12", "1969-12-31T23:59:59.9995Z",
    "0001-01-01T00:00:00+05:00", "2024-W18-3", "20240501", "20240501T104112Z", "2024-05-01X10:41", "2024",
    "2024-05-01T24:00:00Z", " 2024-05-01", "2024-05-01T10:41:12.123456789Z", "bad", "",
])
def test_iso_ms_reads_what_to_epoch_ms_reads_or_leaves_it_to_it(text):
    warnings = []
    ms = iso_ms(text)
    assert ms is None or ms == to_epoch_ms(text, "t", warnings) and not warnings


class _Pipe(io.TextIOWrapper):
    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8")

    def lines(self):
        self.flush()
        return self.buffer.getvalue()


@pytest.mark.parametrize("source", ["in.ndjson", "null.ndjson", "dir/\u00e9v \"x\".ndjson", "-"])
@pytest.mark.parametrize("base_url", [BASE_URL, "http://127.0.0.1:9/nullable"])
def test_a_custom_event_line_from_its_listing_start_is_the_line_the_whole_dict_makes(source, base_url):
    bodies = [{"eventName": "E", "attributes": {"v": 1.5}}, {"v": 1e-07, "big": 2**63 - 1},
              {"s": "nullable", "f": 2.5e-08}, {"u": "ü 🙂\u2028", "l": "[1,null]"}, {}, {"x": None}]
    out = _Pipe()
    reporter = Reporter(out=out, quiet=True, progress=False)
    sink = PrintSink(reporter, base_url)
    expected = b""
    for line_no, event_body in enumerate(bodies * 2, 1):
        record = Record(source, line_no, b"", {})
        plan = Plan("track", "u1", (Write("POST", CUSTOM_EVENTS_PATH, event_body),))
        sink.submit(record, plan)
        requests = [{"method": "POST", "url": base_url + CUSTOM_EVENTS_PATH, "json": event_body}]
        expected += jsonio.dumps_line({"input": record.where, "type": "track", "requests": requests})
    sink.close()
    assert out.lines() == expected
    assert sink.estimate.fewest == {"POST /events/custom": len(bodies) * 2}


def test_a_listing_start_is_the_text_before_the_body():
    start = listing_start("POST", BASE_URL + CUSTOM_EVENTS_PATH)
    assert start + b'{"a":1}}]' == jsonio.dumps_part([{"method": "POST", "url": BASE_URL + CUSTOM_EVENTS_PATH,
                                                      "json": {"a": 1}}])
    assert listing_start("POST", "https://null.example/v1/events/custom") is None


def test_the_usual_track_is_mapped_in_one_pass_without_the_general_way(monkeypatch):
    def general(*args):
        raise AssertionError("the general way was taken")

    monkeypatch.setattr(TRACK, "general", general)
    assert isinstance(MAPPER.map(usual()), Plan)
    assert isinstance(MAPPER.map(usual(properties={}, context={"page": {"url": "u"}})), Plan)


def test_mapper_calls_the_builders_it_holds_for_each_type():
    # map() calls each builder's bound __call__ (kept beside _handlers): the very builders, the same plans
    for name, builder in MAPPER._handlers.items():
        assert MAPPER._calls[name].__self__ is builder
    assert MAPPER.map(usual()) == TRACK(usual(), "track", None) == TRACK.general(usual(), "track", None)
    assert MAPPER.map({**usual(), "type": "Track"}) == TRACK(usual(), "track", None)  # the general way's lookup
