"""The one place JSON is parsed and written, so every body is strict JSON (MAPPING.md: no NaN/Infinity)."""

import json
import re
import sys

import orjson


class JsonError(ValueError):
    """A line that is not strict JSON; the message is user-facing."""


def _reject_constant(name):
    raise JsonError(f"non-standard JSON number ({name})")


def _finite_float(text):
    value = float(text)
    if value in (_INF, -_INF):  # 1e400: valid JSON syntax, but no strict JSON body can carry it
        raise JsonError(f"non-standard JSON number ({text} is out of range)")
    return value


_INF = float("inf")
# Deepest nesting accepted: real events nest < 20 levels; capping well below Python's recursion
# limit (1000) lets mapping, dumps and failed output walk any parsed value without a RecursionError.
MAX_NESTING = 256
# the longest text of objects alone that cannot nest deeper (loads_bytes_loose; inlined in read/shapes.py, dispatch.py)
_SHALLOW_BYTES = SHALLOW_BYTES = 5 * MAX_NESTING + 1
_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

# orjson turns an integer outside [-2**63, 2**64) into a float, silently; such an integer has 19+
# digits, so a line with a run of 19 digits (anywhere, strings included) takes the exact stdlib path.
# The same pass turns "{" into "[" so one count() gives the brackets of the nesting pre-check.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789{", b"000000000[")
_LONG_DIGIT_RUN = b"0" * 19
# orjson escapes every character exactly as the stdlib's dumps() (checked over all of Unicode) and
# writes ints, true/false and separators alike; only floats are spelt differently (1e-7 vs 1e-07).
_FLOAT_TOKEN = re.compile(rb"[0-9][.eE]")
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None on Pythons without the C accelerator
# orjson.dumps leaves these to the `default` hook (absent: TypeError, so the stdlib path decides)
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_LINE_OPTIONS = _DUMPS_OPTIONS | orjson.OPT_APPEND_NEWLINE
# `b"null" in text` as a compiled literal search: ~0.2 us on a 0.4 KB dry-run line, bytes' own search ~0.35
has_null = _has_null = re.compile(b"null").search
# for a caller that inlines dumps()'s common case (mapping.reading.attributes)
DUMPS_OPTIONS, FLOAT_TOKEN = _DUMPS_OPTIONS, _FLOAT_TOKEN


def loads(text):
    """Parse one JSON text (str); raises JsonError with a short reason."""
    try:
        value = _decoder.decode(text)
        if "\\ud" in text or "\\uD" in text:
            _reject_lone_surrogates(value)
        # cheap pre-check: fewer brackets than the cap cannot nest deeper than it
        if len(text) > MAX_NESTING and text.count("[") + text.count("{") > MAX_NESTING and _too_deep(value):
            raise JsonError(f"JSON nested too deeply (more than {MAX_NESTING} levels)")
        return value
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        # removesuffix: "Unterminated string starting at" would read "... at at column 39"
        raise JsonError(f"not valid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}") from None
    except RecursionError:
        raise JsonError(f"JSON nested too deeply (more than {MAX_NESTING} levels)") from None
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        if "integer string conversion" in str(exc):
            raise JsonError(f"number too long: an integer has more than {sys.get_int_max_str_digits()} digits") from None
        raise JsonError(f"not valid JSON: {exc}") from None


def loads_bytes(data):
    """Parse one JSON text from UTF-8 bytes, exactly as loads(data.decode("utf-8")) would.

    Raises UnicodeDecodeError for bytes that are not UTF-8, JsonError for the rest. orjson parses
    what it surely parses as the stdlib would (no long digit run; shallow enough for MAX_NESTING);
    anything else, and anything orjson refuses, goes through loads() for the same value or message.
    """
    marked = data.translate(_DIGITS_TO_ZERO)
    if _LONG_DIGIT_RUN not in marked and (len(data) <= MAX_NESTING or marked.count(b"[") <= MAX_NESTING):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN, 1e400, a lone surrogate, bad UTF-8, bad syntax: loads() says why
    return loads(data.decode("utf-8"))


def loads_bytes_loose(data):
    """orjson's parse of UTF-8 bytes, or None where loads_bytes() may refuse them (it then says why).

    What it parses, loads_bytes() parses too (orjson refuses all that the stdlib refuses: checked
    over bad UTF-8, NaN, 1e400, lone surrogates, control characters, and in tests/test_jsonio_fast.py),
    without the look for long digit runs (~0.8 us of its ~3.2 on a 0.7 KB line), so an integer outside
    64 bits may come out a float: exact(data) says when the value is loads_bytes()'s very value. For a
    look at a line that a filter may leave out (dispatch.py)."""
    # The brackets are counted (~0.3 us each on a 0.7 KB line) only where they may nest too deeply. Each
    # level but the innermost ({} or [], 2 bytes) takes 5 bytes at least ({"":...}) or, as an array, 2:
    # a line of size + 3 x its "[" up to _SHALLOW_BYTES cannot nest deeper than MAX_NESTING. memchr finds
    # the first "[" (an event's arrays, if any, mostly come late): a line holds size - first "[" at most.
    size = len(data)
    if size > MAX_NESTING:
        first = data.find(b"[")
        if size + 3 * (size - first if first >= 0 else 0) > _SHALLOW_BYTES:
            arrays = data.count(b"[", first) if first >= 0 else 0
            if size + 3 * arrays > _SHALLOW_BYTES and arrays + data.count(b"{") > MAX_NESTING:
                return None  # it may nest too deeply
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def exact(data):
    """True when loads_bytes_loose(data) is loads_bytes(data)'s very value (no run of 19 digits)."""
    return _LONG_DIGIT_RUN not in data.translate(_DIGITS_TO_ZERO)


def _too_deep(value):
    """True when containers nest more than MAX_NESTING levels (iterative: no recursion)."""
    stack = [(value, 1)] if type(value) in (dict, list) else []
    while stack:
        container, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        for item in container.values() if type(container) is dict else container:
            if type(item) is dict or type(item) is list:
                stack.append((item, depth + 1))
    return False


def dumps(obj):
    """Compact strict JSON text, non-ASCII kept as is."""
    try:
        out = orjson.dumps(obj, option=_DUMPS_OPTIONS)
        # the stdlib's very characters when no float is spelt and no NaN/inf was written as null
        if b"null" not in out and not _FLOAT_TOKEN.search(out):
            return out.decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is one: ints beyond 64 bits, non-str keys, depth > 254
        pass
    if _c_make_encoder is None:
        return _encoder.encode(obj)
    # what _encoder.encode(obj) runs, minus its Python-level set-up (~2 us of a small value's ~3.5)
    return "".join(_c_make_encoder({}, _encoder.default, json.encoder.encode_basestring, None, ":", ",",
                                   False, False, False)(obj, 0))


def dumps_bytes(obj):
    """dumps(obj) as UTF-8 bytes with the same JSON content (floats may be spelt 1e-7, not 1e-07).

    For whole documents (dry-run lines), not for JSON text kept inside a string value, where
    dumps() keeps the exact characters. orjson writes NaN and infinities as null, so output
    holding "null" is redone by the stdlib, which refuses them as dumps() does.
    """
    return _dumps_bytes(obj, _DUMPS_OPTIONS, b"")


def dumps_line(obj):
    """dumps_bytes(obj) and a line end, made in one go (a dry-run line; _dumps_bytes inlined: once per event)."""
    try:
        out = orjson.dumps(obj, option=_LINE_OPTIONS)
        if not _has_null(out):
            return out
    except TypeError:  # orjson.JSONEncodeError is one: ints beyond 64 bits, non-str keys, depth > 254
        pass
    return dumps(obj).encode("utf-8", "backslashreplace") + b"\n"


def dumps_part(obj):
    """The text dumps_line(obj) writes, for a part of a line made piece by piece; None where dumps_line
    takes the stdlib's way (a null anywhere in the line does: each part is looked at on its own)."""
    try:
        out = orjson.dumps(obj, option=_DUMPS_OPTIONS)
    except TypeError:
        return None
    return None if _has_null(out) else out


def _dumps_bytes(obj, option, end):
    try:
        out = orjson.dumps(obj, option=option)
        if b"null" not in out:
            return out
    except TypeError:  # orjson.JSONEncodeError is one: ints beyond 64 bits, non-str keys, depth > 254
        pass
    return dumps(obj).encode("utf-8", "backslashreplace") + end


def digest(obj):
    """A short fingerprint of a JSON value: equal for equal values, whatever the order of object keys
    (MAPPING.md "Unchanged writes"); kept in the checkpoint for every object written."""
    try:
        text = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # ints beyond 64 bits: the stdlib writes them exactly
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return (_blake2b or _hash_function())(text, digest_size=12).hexdigest()


_blake2b = None  # hashlib is imported at the first digest, not at start-up


def fingerprint(obj):
    """Like digest(), equal for equal values whatever the order of object keys, at about half its cost:
    Python's hash of the key-sorted JSON text, salted per process, so only for what never leaves it
    (the dry run's knowledge of PX). Never 0, so it reads as a known last write."""
    try:
        text = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # ints beyond 64 bits: the stdlib writes them exactly
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hash(text) or 1


def _hash_function():
    global _blake2b
    from hashlib import blake2b

    _blake2b = blake2b
    return blake2b


def _reject_lone_surrogates(value):
    # "\ud800" parses into a str that cannot be encoded as UTF-8, so no body could ever carry it
    try:
        _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError("not valid JSON text: a \\u escape is a lone surrogate") from None
