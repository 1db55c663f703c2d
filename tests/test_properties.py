"""Property-based tests (issue 6): reader, mapping and the dry-run pipeline never raise and account for every line.

Budgets come from the hypothesis profile registered in conftest.py ("fast" by default, 100 examples;
HYPOTHESIS_PROFILE=thorough for 2000). Each test scales its own budget from it.
"""

import io
import json
import math
from datetime import date, datetime, timedelta, timezone
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e import gspx, write_config
from gspx_cli import jsonio
from gspx_cli.config import Settings
from gspx_cli.mapping.rules import Mapper, to_epoch_ms, to_str
from gspx_cli.mapping.plan import Invalid, Plan, RequireUser, Skipped, Update, Upsert, Write, describe, object_path
from gspx_cli.read.reader import iter_records

SCALE = settings().max_examples / 100  # 1.0 under the "fast" profile


def budget(n):
    """n examples under the fast profile, scaled for others."""
    return settings(max_examples=max(1, int(n * SCALE)))


# ---- strategies ---------------------------------------------------------------------------------

# JSON values as jsonio.loads can produce them (ints within Python's digit limit, no lone surrogates),
# plus NaN/Infinity, which only a direct caller of Mapper could pass: mapping must drop them too.
scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12)
ids = (st.text(max_size=8) | st.integers() | st.sampled_from([".", "..", "a/b c", "ü", "\x00", "", "x%2F", "?#", "\x85", "\u2028"])
       | json_values)

REAL_EVENTS = [
    {"type": "identify", "userId": "u1", "anonymousId": "a1", "timestamp": "2020-01-01T00:00:00Z",
     "traits": {"email": "a@b.c", "name": "Ada Love Lace", "score": "12", "gender": "f", "latitude": "1.5",
                "city": "Paris", "hobbyCustomField": "chess", "createDate": "2019-10-14T09:03:17.562+05:30"},
     "context": {"traits": {"firstName": "A", "longitude": 2, "accountId": 7}}},
    {"type": "group", "userId": "u1", "groupId": "g1", "originalTimestamp": "2020-01-02",
     "traits": {"name": "Acme", "numberOfEmployees": "12a", "cultureCustomField": "cool", "countryCode": "FR"},
     "integrations": {"Gainsight PX": {"limitAPIForGroup": True}}},
    {"type": "track", "userId": "u1", "event": "Clicked", "timestamp": 1577836800000.7,
     "properties": {"x": 1, "nested": {"a": [1, 2]}, "globalContext": {"k": "v"}, "sessionId": "s"},
     "context": {"page": {"url": "https://x", "referrer": "r"}, "traits": {"groupId": 12}}},
    {"type": "page", "userId": "u1", "name": "Home"},
]
# places worth mutating: every field mapping reads, and a few it does not
MUTATION_PATHS = [
    ("type",), ("userId",), ("anonymousId",), ("groupId",), ("event",), ("timestamp",), ("originalTimestamp",),
    ("traits",), ("traits", "userId"), ("traits", "id"), ("traits", "groupId"), ("traits", "email"),
    ("traits", "name"), ("traits", "firstName"), ("traits", "score"), ("traits", "gender"),
    ("traits", "latitude"), ("traits", "createDate"), ("traits", "hobbyCustomField"),
    ("traits", "cultureCustomField"), ("traits", "numberOfEmployees"), ("context",), ("context", "traits"),
    ("context", "traits", "userId"), ("context", "traits", "groupId"), ("context", "page"),
    ("context", "page", "url"), ("context", "sessionId"), ("properties",), ("properties", "date"),
    ("properties", "globalContext"), ("properties", "sessionId"), ("properties", "x"), ("integrations",),
    ("integrations", "All"), ("integrations", "Gainsight PX"), ("integrations", "GAINSIGHT_PX"), ("batch",),
    ("message",),
]


def _set(event, path, value):
    """Set event[path...] = value, replacing non-objects on the way by objects."""
    node = event
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def mutated_events(draw, values=json_values):
    event = json.loads(json.dumps(draw(st.sampled_from(REAL_EVENTS))))
    for _ in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from(MUTATION_PATHS))
        if draw(st.integers(0, 9)) == 0:
            node = event
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(path[-1], None)
        else:
            value = draw(ids if path[-1] in ("userId", "groupId", "anonymousId", "id") else
                         st.sampled_from(["identify", "GROUP", "Track", "page", "alias", "x", ""]) | values
                         if path == ("type",) else values)
            _set(event, path, value)
    return event


arbitrary_events = st.dictionaries(st.sampled_from(["type", "userId", "groupId", "event", "traits", "properties",
                                                    "context", "anonymousId", "integrations"]) | st.text(max_size=6),
                                   json_values, max_size=6)


# ---- (a) the reader -------------------------------------------------------------------------------

FRAGMENTS = [b"{", b"}", b"[", b"]", b'"', b"\\", b"\r", b"\t", b" ", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\x00",
             b"NaN", b"1e400", b'"\\ud800"', b'{"type":"track"}', b'{"batch":[', b'{"message":', b"null", b"5"]
line_bytes = st.lists(st.binary(max_size=12) | st.sampled_from(FRAGMENTS), max_size=8).map(b"".join)
files = st.lists(line_bytes, max_size=12).flatmap(
    lambda lines: st.tuples(st.just(lines), st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(lines),
                                                     max_size=len(lines)), st.booleans()))


def _expected_lines(data):
    """(line_no, raw line without its end) per physical line, split as the reader does."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return list(enumerate(pieces, 1))


def _check_records(data, records, max_line_bytes):
    by_line = {}
    last = 0
    for r in records:
        assert isinstance(r.raw, bytes) and isinstance(r.line_no, int)
        assert r.line_no >= last, "line numbers never go back"
        last = r.line_no
        assert (r.event is None) != (r.problem is None), "exactly one of event and problem"
        if r.event is not None:
            assert type(r.event) is dict
        else:
            assert isinstance(r.problem, str) and r.problem
        by_line.setdefault(r.line_no, []).append(r)
    for line_no, raw in _expected_lines(data):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        blank = not raw or raw.isspace()
        got = by_line.pop(line_no, [])
        if blank:
            assert got == [], f"blank line {line_no} yields nothing"
            continue
        text_is_empty_batch = False
        try:
            value = json.loads(raw)
            text_is_empty_batch = isinstance(value, dict) and "type" not in value and value.get("batch") == []
        except (ValueError, RecursionError):
            pass
        if text_is_empty_batch:  # an empty batch holds no events (reader.py: like a blank line)
            assert got == []
            continue
        assert got, f"non-blank line {line_no} yields a Record"
        # CLI.md: the limit counts the line without its "\n" or "\r\n"; any other "\r" is content
        if len(raw[:-1] if raw.endswith(b"\r") else raw) > max_line_bytes:
            assert [r.problem for r in got] == [f"line is longer than {max_line_bytes} bytes (--max-line-bytes)"]
            continue
        for r in got:
            if not r.unwrapped and (r.event is not None or not r.problem.startswith("batch element")):
                assert r.raw == raw, "a plain line keeps its bytes for the failed output"
    assert by_line == {}, "no Record for a line that does not exist"


@budget(150)
@given(files, st.sampled_from([30, 4 * 1024 * 1024]))
def test_reader_accounts_for_every_line_of_arbitrary_bytes(parts, max_line_bytes):
    lines, ends, bom = parts
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(line + end for line, end in zip(lines, ends))
    if data.startswith(b"\x1f\x8b"):  # gzip magic: sniffed as gzip (tested in test_reader.py)
        data = b" " + data
    records = list(iter_records(["-"], stdin=io.BytesIO(data), max_line_bytes=max_line_bytes))
    _check_records(data, records, max_line_bytes)


json_lines = st.one_of(
    json_values,
    arbitrary_events,
    mutated_events(),
    st.lists(st.one_of(mutated_events(), json_values), max_size=4).map(lambda b: {"batch": b}),
    mutated_events().map(lambda e: {"message": e, "metadata": {"n": 1}}),
)


@budget(80)
@given(st.lists(json_lines, max_size=6))
def test_reader_on_arbitrary_json_values_yields_parsed_events_or_reasons(values):
    data = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    records = list(iter_records(["-"], stdin=io.BytesIO(data)))
    _check_records(data, records, 4 * 1024 * 1024)
    by_line = {}
    for r in records:
        by_line.setdefault(r.line_no, []).append(r)
    for line_no, value in enumerate(values, 1):
        got = by_line.get(line_no, [])
        if _non_finite_inside(value):
            if all(r.problem for r in got):  # strict JSON: the whole line is refused
                assert len(got) == 1 and got[0].problem.startswith("non-standard JSON number")
                continue
        if not isinstance(value, dict):
            assert [r.problem for r in got] == [f"not a JSON object (got {_json_name(value)})"]
        elif "type" not in value and isinstance(value.get("batch"), list):
            assert len(got) == len(value["batch"])
            for r, item in zip(got, value["batch"]):
                assert (r.event == item and r.unwrapped) if isinstance(item, dict) else r.problem.startswith(
                    "batch element")
        elif "type" not in value and isinstance(value.get("message"), dict):
            assert [(r.event, r.unwrapped) for r in got] == [(value["message"], True)]
        else:
            assert [(r.event, r.unwrapped) for r in got] == [(value, False)]


def _non_finite_inside(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite_inside(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite_inside(v) for v in value)
    return False


def _json_name(value):
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}[type(value)]


# ---- (b) the mapping -------------------------------------------------------------------------------

SETTINGS = Settings(product_tag_key="AP-1", base_url="https://px.example.test/v1",
                    user_attribute_map={"hobbyCustomField": "hobby"},
                    account_attribute_map={"cultureCustomField": "culture"},
                    global_context={"projectId": "p-123"})
MAPPER = Mapper(SETTINGS)
LIMITED = Mapper(Settings(product_tag_key="AP-1", base_url="https://x/v1", limit_api_for_group=True))


def _check_body(body):
    assert isinstance(body, dict)
    text = jsonio.dumps(body)
    json.dumps(body, allow_nan=False).encode("utf-8")
    text.encode("utf-8")
    assert jsonio.loads(text) == body, "a body survives a strict round trip"
    assert None not in body.values(), "empty fields are left out, never null"


def _check_path(path, kind=None, object_id=None):
    assert path.isascii() and path.isprintable() and " " not in path
    prefix, _, segment = path[1:].partition("/")
    assert "/" not in segment
    if object_id is not None:
        assert path == object_path(kind, object_id)
        assert unquote(segment) == object_id and segment not in (".", "..")


def _check_result(result):
    assert type(result) in (Plan, Skipped, Invalid)
    for w in result.warnings:
        assert isinstance(w, str) and w
    if type(result) is Invalid:
        assert isinstance(result.message, str) and result.message
        return
    if type(result) is Skipped:
        assert isinstance(result.reason, str) and result.reason
        return
    assert result.type in ("identify", "group", "track") and result.steps
    assert isinstance(result.user_id, str) and result.user_id
    for step in result.steps:
        if isinstance(step, Write):
            _check_body(step.body)
            _check_path(step.path)
        elif isinstance(step, Upsert):
            _check_body(step.update_body)
            if step.create_body is not None:
                _check_body(step.create_body)
            else:
                assert step.create_error
            _check_path(object_path(step.kind, step.id), step.kind, step.id)
        elif isinstance(step, Update):
            _check_body(step.body)
            _check_path(object_path(step.kind, step.id), step.kind, step.id)
        else:
            assert isinstance(step, RequireUser)
            _check_path(object_path("user", step.user_id), "user", step.user_id)
    jsonio.dumps(describe(result, SETTINGS.base_url)).encode("utf-8")


@budget(200)
@given(st.one_of(mutated_events(), arbitrary_events, json_values))
def test_mapping_never_raises_and_every_body_is_strict_json(event):
    for mapper in (MAPPER, LIMITED):
        _check_result(mapper.map(event))


@budget(200)
@given(mutated_events(values=finite_json))
def test_mapping_of_finite_mutations_keeps_ids_and_drops_only_with_warnings(event):
    result = MAPPER.map(event)
    _check_result(result)
    if type(result) is Plan:
        user_id = event.get("userId")
        if isinstance(user_id, str) and user_id and user_id.isprintable() and user_id not in (".", ".."):
            assert result.user_id == user_id
        elif isinstance(user_id, int) and not isinstance(user_id, bool):
            assert result.user_id == str(user_id)


@budget(150)
@given(st.sampled_from([math.nan, math.inf, -math.inf]),
       st.sampled_from(MUTATION_PATHS[3:]))
def test_non_finite_numbers_are_dropped_with_a_warning_never_sent(value, path):
    for base in REAL_EVENTS[:3]:
        event = json.loads(json.dumps(base))
        _set(event, path, value)
        result = MAPPER.map(event)
        _check_result(result)  # strict JSON bodies: the NaN/Infinity is not in them


# ---- (b2) conversions over whole families of inputs (MAPPING.md "Conversions") ----------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@st.composite
def iso_timestamps(draw):
    """(ISO 8601 text of any shape MAPPING.md names, its epoch ms computed without parsing text)."""
    day = draw(st.dates(min_value=date(1, 1, 2), max_value=date(9999, 12, 30)))
    shape = draw(st.sampled_from(["year", "month", "date", "hour", "minute", "second", "fraction", "24:00"]))
    offset_minutes = draw(st.none() | st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    pad = st.sampled_from(["", " ", "\t", "\n", " \r\n"])
    fraction = ""
    if shape in ("year", "month", "date"):
        naive = datetime(day.year, 1 if shape == "year" else day.month, 1 if shape != "date" else day.day)
        text = {"year": f"{day.year:04d}", "month": f"{day.year:04d}-{day.month:02d}", "date": day.isoformat()}[shape]
        offset_minutes = None
    elif shape == "24:00":
        naive = datetime(day.year, day.month, day.day) + timedelta(days=1)  # the midnight that ends the day
        text = day.isoformat() + draw(st.sampled_from(["T", "t"])) + draw(
            st.sampled_from(["24:00", "24:00:00", "24:00:00.000", "24:00:00.000000"]))
    else:
        h, m, sec = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
        naive = datetime(day.year, day.month, day.day, h, m if shape != "hour" else 0,
                         sec if shape in ("second", "fraction") else 0)
        clock = {"hour": f"{h:02d}", "minute": f"{h:02d}:{m:02d}"}.get(shape, f"{h:02d}:{m:02d}:{sec:02d}")
        if shape == "fraction":
            fraction = draw(st.text("0123456789", min_size=1, max_size=9))
            clock += "." + fraction
        text = day.isoformat() + draw(st.sampled_from(["T", "t"])) + clock
    if offset_minutes is None:
        zone = timezone.utc
        if shape not in ("year", "month", "date"):  # a date has no offset: UTC
            text += draw(st.sampled_from(["", "Z", "z", "+00:00"]))
    else:
        zone = timezone(timedelta(minutes=offset_minutes))
        sign = "-" if offset_minutes < 0 else "+"
        text += f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    delta = naive.replace(tzinfo=zone) - _EPOCH
    # digits finer than a millisecond are dropped, not rounded
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + int(fraction[:3].ljust(3, "0"))
    return draw(pad) + text + draw(pad), ms


@budget(300)
@given(iso_timestamps())
def test_every_iso_timestamp_shape_becomes_its_epoch_ms(case):
    text, ms = case
    warnings = []
    assert to_epoch_ms(text, "f", warnings) == ms
    assert warnings == []


@budget(100)
@given(iso_timestamps(), st.sampled_from(["garbage", "1571043797562", "2019-13", "T24:00"]))
def test_an_unparseable_event_time_is_warned_about_and_the_next_source_used(case, bad):
    text, ms = case
    event = {"type": "track", "userId": "u", "event": "E", "properties": {"date": bad}, "timestamp": bad,
             "originalTimestamp": text}
    result = MAPPER.map(event)
    assert result.steps[0].body["date"] == ms
    assert [w.split(":")[0] for w in result.warnings] == ["properties.date", "timestamp"]


@budget(300)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_becomes_its_shortest_round_trip_text(value):
    text = to_str(value)
    assert float(text) == value  # round trip
    if value.is_integer():
        assert text == str(int(value)) and int(text) == value  # 100.0 -> "100", never "1e+16"
    else:
        assert text == repr(value)  # Python's repr is the shortest text that reads back the same
        assert json.loads(text) == value  # and it is a JSON number too


@budget(100)
@given(st.integers(-(2**70), 2**70))
def test_an_integer_becomes_its_decimal_text(value):
    assert to_str(value) == str(value)


@budget(100)
@given(finite_json.filter(lambda v: isinstance(v, (dict, list))))
def test_an_object_or_list_becomes_compact_json_text_in_input_order(value):
    text = to_str(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == value


# ---- (c) the whole pipeline in dry run, through the CLI ----------------------------------------------

pipeline_lines = st.one_of(
    mutated_events(values=finite_json).map(json.dumps),
    st.lists(mutated_events(values=finite_json), max_size=3).map(lambda b: json.dumps({"batch": b})),
    finite_json.map(json.dumps),
    line_bytes.map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.sampled_from(["", "   ", "NaN", '{"type":"track","userId":"u\u0085\u2028","event":"e"}',
                     '{"type":"track","userId":"u","event":"e","properties":{"n":NaN}}',
                     '{"type":"identify","userId":"\\ud800"}', "[" * 400 + "]" * 400,
                     # deeper than the cap but shallower than Python's recursion limit (the old hole)
                     '{"type":"track","userId":"u","event":"e","properties":{"x":' + "[" * 600 + "]" * 600 + "}}",
                     '{"type":"track","userId":"u","event":"e","properties":{"x":' + "[" * 250 + "]" * 250 + "}}",
                     '{"type":"identify","userId":"u","traits":{"email":' + "[" * 450 + "]" * 450 + "}}"]),
)

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for every example (under basetemp, so the key scan in conftest.py covers it)."""
    path = tmp_path_factory.mktemp("dry-run-properties")
    return path, write_config(path, "https://px.example.test/v1")


@budget(40)
@given(lines=st.lists(pipeline_lines, max_size=12))
def test_dry_run_prints_one_json_line_per_event_read(workdir, lines):
    folder, config = workdir
    events = folder / "events.ndjson"
    report = folder / "report.json"
    events.write_bytes(b"".join(line.encode("utf-8", "surrogateescape").replace(b"\n", b" ") + b"\n"
                                for line in lines))
    run = gspx("send", "--dry-run", "-c", config, "--report", str(report), str(events))
    # split on "\n" only: str.splitlines() also splits inside values at U+0085, U+2028, \x1c...
    out = [json.loads(line) for line in run.stdout.split("\n")[:-1]]
    assert run.stdout == "" or run.stdout.endswith("\n")
    stats = json.loads(report.read_text())
    records = list(iter_records([str(events)]))
    assert len(out) == len(records) == stats["read"]
    assert stats["delivered"] + stats["skipped"] + stats["failed"] == stats["read"]
    assert [o["input"] for o in out] == [r.where for r in records]
    for o in out:
        assert len({"requests", "skipped", "error"} & set(o)) == 1
        assert not o.get("error", "").startswith("internal error"), o["error"]
    errors = sum("error" in o for o in out)
    assert errors == stats["failed"]
    assert run.exit_code == (1 if errors else 0)
