"""Hostile input lines (issue 6): each case end to end against the stand-in PX, outcome pinned exactly."""

import json
import re
import tracemalloc
from pathlib import Path

import pytest

from e2e import TAG, gspx, write_config, write_events, writes

TRACK = {"type": "track", "userId": "u1", "event": "ok", "timestamp": "2020-01-01T00:00:00Z"}
TRACK_BODY = {"identifyId": "u1", "eventName": "ok", "date": 1577836800000, "attributes": {},
              "propertyKey": TAG, "userType": "USER", "globalContext": {"projectId": "p-123"}}
MiB = 1024 * 1024


@pytest.fixture
def env(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def send(tmp, cfg, events_path, *extra):
    """`gspx send` with --failed-output and --report; returns (run, report dict, failed-output bytes)."""
    failed, report = tmp / "failed.ndjson", tmp / "report.json"
    run = gspx("send", "-c", cfg, "--failed-output", str(failed), "--report", str(report), *extra, events_path)
    return run, json.loads(report.read_text()), failed.read_bytes() if failed.exists() else b""


def counts(report):
    return {k: report[k] for k in ("read", "delivered", "skipped", "failed", "invalid")}


def write_bytes(tmp, data, name="events.ndjson"):
    path = tmp / name
    path.write_bytes(data)
    return str(path)


# ---- invalid UTF-8 ------------------------------------------------------------------------------

def test_invalid_utf8_line_fails_alone_with_byte_offset_and_is_copied_byte_for_byte(env):
    px, cfg, tmp = env
    bad = b'{"type":"track","userId":"u\xff","event":"x"}'
    path = write_bytes(tmp, bad + b"\n" + json.dumps(TRACK).encode() + b"\n")
    run, report, failed = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: not valid UTF-8 (byte offset 27)" in run.stderr
    assert counts(report) == {"read": 2, "delivered": 1, "skipped": 0, "failed": 1, "invalid": 1}
    assert failed == bad + b"\n"
    assert writes(px) == [("POST", "/v1/events/custom", TRACK_BODY)]


# ---- a 20 MB line: reported, never held whole, and the next line keeps its number ------------------

def _big_line_file(tmp):
    path = tmp / "big.ndjson"
    with open(path, "wb") as fh:
        fh.write(json.dumps(TRACK).encode() + b"\n")
        fh.write(b'{"type":"track","userId":"u2","event":"big","properties":{"x":"')
        for _ in range(20):
            fh.write(b"a" * MiB)
        fh.write(b'"}}\n')
        fh.write(json.dumps({**TRACK, "event": "after"}).encode() + b"\n")
    return str(path)


@pytest.mark.parametrize("extra, limit, peak_below", [
    ((), 4 * MiB, 12 * MiB),  # default 4 MiB: measured ~9 MiB (the 4 MiB chunk, copied once); 20 MB whole would exceed it
    (("--max-line-bytes", "1000"), 1000, 4 * MiB),  # measured ~2 MiB: the 1 MiB read buffer
], ids=["default-limit", "small-limit"])
def test_20mb_line_is_invalid_memory_bounded_and_next_line_keeps_its_number(env, extra, limit, peak_below):
    px, cfg, tmp = env
    path = _big_line_file(tmp)
    tracemalloc.start()
    try:
        run, report, failed = send(tmp, cfg, path, *extra)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        (tmp / "big.ndjson").unlink()  # 20 MB: not left for the key scan to read
    assert peak < peak_below, f"peak {peak / MiB:.1f} MiB"
    assert run.exit_code == 1
    assert f"{path}:2: line is longer than {limit} bytes (--max-line-bytes)" in run.stderr
    assert counts(report) == {"read": 3, "delivered": 2, "skipped": 0, "failed": 1, "invalid": 1}
    # the overlong line was never in memory whole, so it cannot be copied to the failed output
    assert failed == b"" and report["failed_output_lines"] == 0
    assert [b["eventName"] for _, _, b in writes(px)] == ["ok", "after"]


def test_20mb_line_dry_run_names_line_2_and_prints_line_3(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    path = _big_line_file(tmp_path)
    try:
        run = gspx("send", "--dry-run", "-c", cfg, path)
    finally:
        (tmp_path / "big.ndjson").unlink()
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["input"] for line in lines] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert lines[1] == {"input": f"{path}:2", "error": "line is longer than 4194304 bytes (--max-line-bytes)"}
    assert lines[2]["requests"][0]["json"]["eventName"] == "after"


# ---- deep nesting ------------------------------------------------------------------------------------

def _nested(depth):
    return '{"type":"track","userId":"u1","event":"deep","properties":{"x":' + "[" * depth + "]" * depth + "}}"


@pytest.mark.parametrize("depth", [100_000, 5_000, 300], ids=["100000", "5000", "300"])
def test_json_nested_too_deep_is_invalid_without_recursion_error(env, depth):
    px, cfg, tmp = env
    line = _nested(depth)
    path = write_events(tmp, [line, TRACK])
    run, report, failed = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: JSON nested too deeply (more than 256 levels)" in run.stderr
    assert "RecursionError" not in run.stderr + run.stdout
    assert counts(report) == {"read": 2, "delivered": 1, "skipped": 0, "failed": 1, "invalid": 1}
    assert failed == line.encode() + b"\n"


def test_json_nested_250_deep_is_accepted_as_compact_attribute_text(env):
    # 2 levels (event, properties) + 250 = 252 <= 256
    px, cfg, tmp = env
    run, report, _ = send(tmp, cfg, write_events(tmp, [_nested(250)]))
    assert run.exit_code == 0, run.stderr
    [(_, _, body)] = writes(px)
    assert body["attributes"] == {"x": "[" * 250 + "]" * 250}


@pytest.mark.parametrize("depth, accepted", [(254, True), (255, False), (450, False)])
def test_nesting_cap_is_exactly_256_levels_and_deep_traits_never_crash_mapping(tmp_path, depth, accepted):
    # object (1) > traits (2) > email: 254 lists reach level 256. Before the cap, 450 levels parsed
    # and then failed as "internal error while mapping: RecursionError".
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    line = '{"type":"identify","userId":"u","traits":{"email":' + "[" * depth + "]" * depth + "}}"
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, [line]))
    [out] = [json.loads(text) for text in run.stdout.splitlines()]
    if accepted:
        assert run.exit_code == 0
        body = next(item["json"] for item in out["requests"] if "json" in item)  # [0] is the GET
        assert json.dumps(body["email"], separators=(",", ":")) == "[" * depth + "]" * depth
    else:
        assert run.exit_code == 1
        assert out["error"] == "JSON nested too deeply (more than 256 levels)"


# ---- numbers: huge integers, NaN/Infinity, 1e400 ------------------------------------------------------

def test_huge_integers_in_numeric_fields_are_left_out_with_a_warning(env):
    px, cfg, tmp = env
    event = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c", "score": 2**64,
                                                            "numberOfVisits": -(2**63) - 1}}
    run, report, _ = send(tmp, cfg, write_events(tmp, [event]))
    assert run.exit_code == 0, run.stderr
    assert "traits.score: 18446744073709551616 is outside the signed 64-bit range; left out" in run.stderr
    assert "traits.numberOfVisits: -9223372036854775809 is outside the signed 64-bit range; left out" in run.stderr
    assert report["warnings"] == 2
    assert writes(px) == [("POST", "/v1/users", {"identifyId": "u1", "email": "a@b.c", "type": "USER",
                                                 "propertyKeys": [TAG]})]


def test_int64_bounds_in_numeric_fields_are_kept(env):
    px, cfg, tmp = env
    event = {"type": "identify", "userId": "u1", "traits": {"score": 2**63 - 1, "numberOfVisits": -(2**63)}}
    run, report, _ = send(tmp, cfg, write_events(tmp, [event]))
    assert run.exit_code == 0 and report["warnings"] == 0
    [(_, _, body)] = writes(px)
    assert (body["score"], body["numberOfVisits"]) == (2**63 - 1, -(2**63))


def test_huge_integer_id_is_used_as_its_decimal_string(env):
    px, cfg, tmp = env
    big = 123456789012345678901234567890
    run, _, _ = send(tmp, cfg, write_events(tmp, [{"type": "identify", "userId": big}]))
    assert run.exit_code == 0, run.stderr
    assert [(r.method, r.path) for r in px.requests] == [("PUT", f"/v1/users/{big}"), ("POST", "/v1/users")]
    assert px.requests[1].body["identifyId"] == str(big)


@pytest.mark.parametrize("line, message", [
    ('{"type":"track","userId":"u1","event":"x","properties":{"n":' + "9" * 5000 + "}}",
     "number too long: an integer has more than 4300 digits"),
    ('{"type":"track","userId":"u1","event":"x","properties":{"n":NaN}}', "non-standard JSON number (NaN)"),
    ('{"type":"track","userId":"u1","event":"x","properties":{"n":-Infinity}}',
     "non-standard JSON number (-Infinity)"),
    ('{"type":"track","userId":"u1","event":"x","properties":{"n":1e400}}',
     "non-standard JSON number (1e400 is out of range)"),
    ('{"type":"track","userId":"\\ud800","event":"x"}', "not valid JSON text: a \\u escape is a lone surrogate"),
], ids=["5000-digits", "NaN", "-Infinity", "1e400", "lone-surrogate"])
def test_numbers_and_escapes_strict_json_cannot_carry_make_the_line_invalid(env, line, message):
    px, cfg, tmp = env
    path = write_events(tmp, [line])
    run, report, failed = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: {message}" in run.stderr
    assert counts(report) == {"read": 1, "delivered": 0, "skipped": 0, "failed": 1, "invalid": 1}
    assert failed == line.encode() + b"\n"
    assert px.requests == []


# ---- duplicate keys ----------------------------------------------------------------------------------

def test_duplicate_keys_last_one_wins(env):
    px, cfg, tmp = env
    line = '{"type":"identify","userId":"first","traits":{"email":"a@x","email":"b@x"},"userId":"second"}'
    run, _, _ = send(tmp, cfg, write_events(tmp, [line]))
    assert run.exit_code == 0, run.stderr
    assert writes(px) == [("POST", "/v1/users", {"identifyId": "second", "email": "b@x", "type": "USER",
                                                 "propertyKeys": [TAG]})]


# ---- ids: numbers, empty, objects, control characters, slashes, unicode, dot segments -------------------

IDENTIFY_ID_CASES = [
    # (id value(s), expected (method, path) requests, identifyId in the POST body)
    ({"userId": 42}, [("PUT", "/v1/users/42"), ("POST", "/v1/users")], "42"),
    ({"userId": -7}, [("PUT", "/v1/users/-7"), ("POST", "/v1/users")], "-7"),
    ({"userId": "", "anonymousId": "anon"}, [("PUT", "/v1/users/anon"), ("POST", "/v1/users")], "anon"),
    ({"userId": "a/b c"}, [("PUT", "/v1/users/a%2Fb%20c"), ("POST", "/v1/users")], "a/b c"),
    ({"userId": "ü"}, [("PUT", "/v1/users/%C3%BC"), ("POST", "/v1/users")], "ü"),
    ({"userId": "x?y#z%"}, [("PUT", "/v1/users/x%3Fy%23z%25"), ("POST", "/v1/users")], "x?y#z%"),
    ({"userId": "..."}, [("PUT", "/v1/users/..."), ("POST", "/v1/users")], "..."),  # not a dot segment
    ({"userId": "😀 \u2028"}, [("PUT", "/v1/users/%F0%9F%98%80%20%E2%80%A8"), ("POST", "/v1/users")],
     "😀 \u2028"),  # U+2028 is not a control character in MAPPING.md's sense
]


@pytest.mark.parametrize("ids, requests, identify_id", IDENTIFY_ID_CASES,
                         ids=["int", "negative-int", "empty-falls-back", "slash-space", "u-umlaut", "url-chars",
                              "three-dots", "emoji-u2028"])
def test_identify_ids_are_percent_encoded_in_paths_and_kept_in_bodies(env, ids, requests, identify_id):
    px, cfg, tmp = env
    run, _, _ = send(tmp, cfg, write_events(tmp, [{"type": "identify", **ids}]))
    assert run.exit_code == 0, run.stderr
    assert [(r.method, r.path) for r in px.requests] == requests
    assert px.requests[1].body["identifyId"] == identify_id
    assert px.requests[0].id == identify_id  # the stand-in decodes the segment back to the id


def test_group_ids_are_percent_encoded_in_account_and_user_paths(env):
    px, cfg, tmp = env
    px.users["u/1"] = {"identifyId": "u/1"}
    event = {"type": "group", "userId": "u/1", "groupId": 7, "traits": {"name": "Acme ü"}}
    run, _, _ = send(tmp, cfg, write_events(tmp, [event]))
    assert run.exit_code == 0, run.stderr
    assert [(r.method, r.path) for r in px.requests] == [
        ("GET", "/v1/users/u%2F1"), ("PUT", "/v1/accounts/7"), ("POST", "/v1/accounts"), ("PUT", "/v1/users/u%2F1")]
    assert px.requests[2].body == {"id": "7", "name": "Acme ü", "propertyKeys": [TAG]}
    assert px.requests[3].body == {"accountId": "7"}


INVALID_ID_CASES = [
    ({"type": "identify", "userId": ""}, "userId or anonymousId is required for identify"),
    ({"type": "identify", "userId": {"a": 1}}, "userId must be a non-empty string or an integer, not an object: {'a': 1}"),
    ({"type": "identify", "userId": [1]}, "userId must be a non-empty string or an integer, not a list: [1]"),
    ({"type": "identify", "userId": True}, "userId must be a non-empty string or an integer, not a boolean: True"),
    ({"type": "identify", "userId": 4.0}, "userId must be a non-empty string or an integer, not a float: 4.0"),
    ({"type": "identify", "userId": "a\tb"}, "userId contains a control character (U+0000 to U+001F): 'a\\tb'"),
    ({"type": "identify", "userId": "a\x00"}, "userId contains a control character (U+0000 to U+001F): 'a\\x00'"),
    ({"type": "identify", "userId": ".."}, "userId '..' cannot be used as an id: it is not a valid URL path segment"),
    ({"type": "track", "userId": ".", "event": "e"},
     "userId '.' cannot be used as an id: it is not a valid URL path segment"),
    ({"type": "group", "userId": "u1", "groupId": ".."},
     "groupId '..' cannot be used as an id: it is not a valid URL path segment"),
    ({"type": "group", "userId": "u1", "groupId": "g\n1"},
     "groupId contains a control character (U+0000 to U+001F): 'g\\n1'"),
]


@pytest.mark.parametrize("event, message", INVALID_ID_CASES,
                         ids=["empty", "object", "list", "bool", "float", "tab", "nul", "dotdot", "dot-track",
                              "dotdot-group", "newline-group"])
def test_unusable_ids_make_the_event_invalid_and_send_nothing(env, event, message):
    px, cfg, tmp = env
    path = write_events(tmp, [event])
    run, report, failed = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: {message}" in run.stderr
    assert counts(report) == {"read": 1, "delivered": 0, "skipped": 0, "failed": 1, "invalid": 1}
    assert failed == json.dumps(event).encode() + b"\n"
    assert px.requests == []


def test_empty_object_group_id_is_invalid_as_an_object(env):
    # {} is not null or "", so it is the first usable value; then it fails the id rule
    px, cfg, tmp = env
    path = write_events(tmp, [{"type": "group", "userId": "u1", "groupId": {}}])
    run, _, _ = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: groupId must be a non-empty string or an integer, not an object: {{}}" in run.stderr
    assert px.requests == []


# ---- control characters and unicode outside ids are plain JSON text -------------------------------------

def test_control_characters_in_event_name_and_properties_pass_as_json_text(env):
    px, cfg, tmp = env
    event = {**TRACK, "event": "a\x07b\x00", "properties": {"k\x1f": "v\nü"}}
    run, _, _ = send(tmp, cfg, write_events(tmp, [event]))
    assert run.exit_code == 0, run.stderr
    [(_, _, body)] = writes(px)
    assert body["eventName"] == "a\x07b\x00" and body["attributes"] == {"k\x1f": "v\nü"}


def test_non_string_type_is_invalid_and_names_no_type(env):
    px, cfg, tmp = env
    path = write_events(tmp, [{"type": 5, "userId": "u1"}, {"type": ["track"], "userId": "u1"}])
    run, report, _ = send(tmp, cfg, path)
    assert run.exit_code == 1
    assert f"{path}:1: event has no type" in run.stderr and f"{path}:2: event has no type" in run.stderr
    assert counts(report)["invalid"] == 2


# ---- the checked-in corpus (tests/corpus/nasty.ndjson, documented row by row in EXPECTED.md) --------------

CORPUS = Path(__file__).parent / "corpus"


def _expected_rows():
    """(line, outcome, message) rows of EXPECTED.md's table."""
    rows = []
    for text in (CORPUS / "EXPECTED.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", text)[1:-1]]
        if len(cells) == 4 and cells[0].isdigit():
            rows.append((int(cells[0]), cells[2], cells[3].strip("`").replace("\\|", "|")))
    return rows


def test_nasty_corpus_end_to_end(env):
    px, cfg, tmp = env
    path = str(CORPUS / "nasty.ndjson")
    rows = _expected_rows()
    assert len({line for line, _, _ in rows}) == 33  # every line of the file has a row
    run, report, failed = send(tmp, cfg, path)

    assert run.exit_code == 1
    counted = [(outcome, message) for _, outcome, message in rows if outcome != "ignored"]
    assert counts(report) == {
        "read": len(counted),
        "delivered": sum(o == "delivered" for o, _ in counted),
        "skipped": sum(o == "skipped" for o, _ in counted),
        "failed": sum(o in ("invalid", "failed") for o, _ in counted),
        "invalid": sum(o == "invalid" for o, _ in counted),
    } == {"read": 31, "delivered": 9, "skipped": 2, "failed": 20, "invalid": 19}
    for line, outcome, message in rows:
        if outcome in ("invalid", "failed"):
            assert f"error: {path}:{line}: {message}" in run.stderr
        elif outcome == "delivered" and message:
            assert f"warning: {path}:{line}: {message}" in run.stderr
        elif outcome == "skipped":
            assert report["skip_reasons"][message] == 1
    assert report["warnings"] == 1

    # failed output: plain lines byte for byte (line 6 keeps its \r); batch/envelope members alone
    lines = (CORPUS / "nasty.ndjson").read_bytes().split(b"\n")
    plain = [lines[n - 1] for n in (6, 7, 8, 9, 13, 15, 16, 17, 18, 19, 20, 21, 24, 29, 31, 32, 33)]
    expected = plain + [b"5", b'{"type":"identify"}', b'{"type":"track","userId":"u1"}']
    assert lines[5].endswith(b"\r")
    assert sorted(failed.split(b"\n")[:-1]) == sorted(expected) and failed.endswith(b"\n")
    assert report["failed_output_lines"] == 20

    # what the stand-in received (workers run in parallel: compared in order per kind)
    sent = writes(px)
    assert sorted((m, p) for m, p, _ in sent) == sorted(
        [("POST", "/v1/users")] * 4 + [("PUT", "/v1/users/u1")] + [("POST", "/v1/events/custom")] * 4)
    assert sorted(b["identifyId"] for m, p, b in sent if p == "/v1/users") == ["42", "a/b c ü", "u1", "u2"]
    assert sorted(b["eventName"] for m, p, b in sent if p == "/v1/events/custom") == [
        "bell\x07 and nul\x00", "crlf line", "from batch", "from envelope"]
    assert ("PUT", "/v1/users/a%2Fb%20c%20%C3%BC") in [(r.method, r.path) for r in px.requests]
    assert [b for m, p, b in sent if m == "PUT"] == [{"type": "USER", "propertyKeys": [TAG]}]  # score left out
