"""The one place JSON is parsed and written, so every body is strict JSON (MAPPING.md: no NaN/Infinity)."""

import json


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
_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text):
    """Parse one JSON text (str); raises JsonError with a short reason."""
    try:
        value = _decoder.decode(text)
        if "\\ud" in text or "\\uD" in text:
            _reject_lone_surrogates(value)
        return value
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise JsonError("JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        raise JsonError(f"not valid JSON: {exc}") from None


def dumps(obj):
    """Compact strict JSON text, non-ASCII kept as is."""
    return _encoder.encode(obj)


def _reject_lone_surrogates(value):
    # "\ud800" parses into a str that cannot be encoded as UTF-8, so no body could ever carry it
    try:
        _encoder.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError("not valid JSON text: a \\u escape is a lone surrogate") from None
