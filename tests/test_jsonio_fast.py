"""jsonio's orjson paths (issue 5) give exactly what the stdlib paths give: same values, same errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gspx_cli import jsonio


def _stdlib(data):
    """What reading one line meant before orjson: decode, then jsonio.loads."""
    try:
        return "ok", jsonio.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return "utf8", exc.start
    except jsonio.JsonError as exc:
        return "error", str(exc)


def _fast(data):
    try:
        return "ok", jsonio.loads_bytes(data)
    except UnicodeDecodeError as exc:
        return "utf8", exc.start
    except jsonio.JsonError as exc:
        return "error", str(exc)


def _same(a, b):
    # == alone would let 1 == 1.0 and dict order slip through
    return a[0] == b[0] and (repr(a[1]) == repr(b[1]) if a[0] == "ok" else a[1] == b[1])


@pytest.mark.parametrize("data", [
    b'{"n":18446744073709551615}', b'{"n":18446744073709551616}', b'{"n":-9223372036854775809}',
    b'{"n":123456789012345678901234567890}', b'{"n":1e400}', b'{"n":-1e400}', b'{"n":1.0e-400}',
    b'{"n":NaN}', b'{"n":Infinity}', b'{"s":"\\ud800"}', b'{"s":"\\udfff\\ud800"}', b'{"s":"\\ud83d\\ude00"}',
    b'"\xed\xa0\x80"', b'"\xff"', b'{"a":1,"b":2,"a":3}', b"[" * 256 + b"]" * 256, b"[" * 257 + b"]" * 257,
    b"[" * 2000 + b"]" * 2000, b'{"a":1}\r', b"", b" ", b"[1,]", b"01", b"-0", b"1e5", b"0.1000000000000000055511151231257827",
], ids=repr)
def test_loads_bytes_matches_the_stdlib_path_on_edge_cases(data):
    assert _same(_fast(data), _stdlib(data))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_loads_bytes_and_dumps_bytes_match_the_stdlib_on_any_json(value):
    text = json.dumps(value, ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    assert _same(_fast(data), _stdlib(data))
    # dumps() keeps the stdlib's exact characters (its text ends up inside string values)
    assert jsonio.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if _stdlib(data)[0] == "ok":
        assert json.loads(jsonio.dumps_bytes(value)) == json.loads(jsonio.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet='{}[]",:0123456789.eE+-\\untrfalsu\x00 \xe9', max_size=30).map(
    lambda s: s.encode("utf-8")))
def test_loads_bytes_matches_the_stdlib_path_on_any_bytes(data):
    assert _same(_fast(data), _stdlib(data))


def test_dumps_bytes_refuses_what_dumps_refuses():
    for bad in (float("nan"), [float("inf")], {"x": float("-inf")}):
        with pytest.raises(ValueError):
            jsonio.dumps_bytes(bad)
    assert jsonio.dumps_bytes({"n": 2**70, 1: None}) == jsonio.dumps({"n": 2**70, 1: None}).encode()


@pytest.mark.parametrize("value", [{"a": [1, 2.5, "x"]}, {"n": 2**70}, {"s": "null"}])
def test_dumps_line_is_dumps_bytes_with_a_line_end(value):
    assert jsonio.dumps_line(value) == jsonio.dumps_bytes(value) + b"\n"


# ---- loads_bytes_loose (issue 22): the quick look at a line a filter may leave out ----------------------


def _loose(data):
    value = jsonio.loads_bytes_loose(data)
    return ("ok", value) if value is not None else ("refused", None)


_LOOSE_EDGES = [
    b'{"n":18446744073709551616}', b'{"n":123456789012345678901234567890}', b'{"n":1' + b"0" * 400 + b"}",
    b'{"n":9' + b"9" * 5000 + b"}", b'{"n":1e400}', b'{"n":NaN}', b'{"n":-Infinity}', b'{"s":"\\ud800"}',
    b'{"s":"\\udc00\\ud800","n":12345678901234567890123}', b'{"s":"\xed\xa0\x80","n":12345678901234567890123}',
    b'{"s":"\xc0\xaf"}', b'\xef\xbb\xbf{"a":1}', b'{"a":"\x01"}', b'{"a":1}\x0c', b'{"a":01}',
    b'{"a":1,"a":2}', b'{"type":"track","x":' + b"[" * 256 + b"]" * 256 + b"}", b"[" * 257 + b"]" * 257,
    b"[" * 300 + b"]" * 300, b"[" * 1100 + b"]" * 1100, b'{"a":1}\r', b"[1,]", b"null",
]


@pytest.mark.parametrize("data", _LOOSE_EDGES, ids=repr)
def test_the_quick_parse_finds_valid_only_what_loads_bytes_finds_valid(data):
    loose, exact = _loose(data), _fast(data)
    if loose[0] == "ok":
        assert exact[0] == "ok"
        if jsonio.exact(data):  # then it is the very value
            assert repr(loose[1]) == repr(exact[1])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet='{}[]",:0123456789.eE+-\\untrfalsu\x00 \xe9\ud800', max_size=40).map(
    lambda s: s.encode("utf-8", "surrogatepass")))
def test_the_quick_parse_finds_valid_only_what_loads_bytes_finds_valid_on_any_bytes(data):
    loose, exact = _loose(data), _fast(data)
    assert loose[0] != "ok" or exact[0] == "ok"
    if loose[0] == "ok" and jsonio.exact(data):
        assert _same(loose, exact)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_the_quick_parse_of_json_without_19_digit_runs_is_the_exact_value(value):
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    loose, exact = _loose(data), _fast(data)
    assert loose[0] != "ok" or exact[0] == "ok"
    if jsonio.exact(data) and exact[0] == "ok" and value is not None:
        assert _same(loose, exact)


def _objects(depth, pad=b""):
    """Objects nested depth levels in the fewest bytes ({"":{"":{}}}), pad bytes of string beside the outermost."""
    return b'{"p":"' + pad + b'","":' + b'{"":' * (depth - 2) + b"{}" + b"}" * (depth - 1) if pad else \
        b'{"":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_objects_nested_one_level_too_deep_are_never_shorter_than_the_unchecked_size():
    # the quick parse counts brackets only in a line with a "[" or longer than this: below it, it cannot nest deeper
    assert len(_objects(jsonio.MAX_NESTING + 1)) == jsonio._SHALLOW_BYTES + 1
    assert len(_objects(jsonio.MAX_NESTING)) <= jsonio._SHALLOW_BYTES


@pytest.mark.parametrize("data, valid", [
    (_objects(jsonio.MAX_NESTING), True),
    (_objects(jsonio.MAX_NESTING + 1), False),  # the shortest line too deep: counted, refused
    (_objects(jsonio.MAX_NESTING + 1, pad=b"x" * 2000), False),
    (_objects(3, pad=b"{" * 300), True),  # many brackets in a string of a short line: not counted
    (_objects(3, pad=b"[" * 300), True),  # 300 "[" in a string: counted, yet too few for a line this short
    (_objects(3, pad=b"[" * 400), False),  # counted, more than MAX_NESTING brackets: left to loads_bytes
    (_objects(300, pad=b"x" * 10), False),
])
def test_the_quick_parse_refuses_every_line_nested_too_deeply_and_keeps_shallow_ones(data, valid):
    assert (jsonio.loads_bytes_loose(data) is not None) is valid
    assert _fast(data)[0] == ("ok" if valid or b"[" in data else "error")
    if valid:
        assert repr(jsonio.loads_bytes_loose(data)) == repr(jsonio.loads_bytes(data))


def _nest(arrays, objects):
    """arrays enclosing objects, in the fewest bytes ([[{"":{"":{}}}]]): arrays + objects + 1 levels."""
    return b"[" * arrays + b'{"":' * objects + b"{}" + b"}" * objects + b"]" * arrays


@pytest.mark.parametrize("arrays", [0, 1, 2, 50, 255, 256, 257])
def test_the_shortest_line_nested_one_level_too_deep_is_refused_whatever_its_arrays(arrays):
    objects = max(jsonio.MAX_NESTING - arrays, 0)
    deep = _nest(arrays, objects)
    assert len(deep) + 3 * arrays == jsonio._SHALLOW_BYTES + 1 or arrays > jsonio.MAX_NESTING
    assert jsonio.loads_bytes_loose(deep) is None
    shallow = _nest(min(arrays, jsonio.MAX_NESTING - 1), max(objects - 1, 0))  # MAX_NESTING levels
    assert repr(jsonio.loads_bytes_loose(shallow)) == repr(jsonio.loads_bytes(shallow))


def test_a_shallow_event_with_arrays_is_parsed_quickly_and_exactly():
    line = b'{"type":"track","properties":{"tags":["a","b",[1,[2]]],"s":"[[[{{{"}}'
    assert jsonio.loads_bytes_loose(line) == jsonio.loads_bytes(line)
