"""The one place JSON is parsed and written, so every body is strict JSON (MAPPING.md: no NaN/Infinity)."""

import json


class JsonError(ValueError):
    """A line that is not strict JSON; the message is user-facing."""


def _reject_constant(name):
    raise JsonError(f"non-standard JSON number ({name})")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text):
    """Parse one JSON text (str); raises JsonError with a short reason."""
    try:
        return _decoder.decode(text)
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
