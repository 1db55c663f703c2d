"""MAPPING.md "Conversions": a value as a PX field takes it, or None (and a warning) when it is left out.

Pure functions of one value; the builders bind them to fields once per run (reading.trait_table).
"""

import math
import re
from datetime import datetime, timedelta, timezone

from gspx_cli import jsonio

# MAPPING.md: "outside the signed 64-bit range" is what a PX numeric field cannot hold
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# how much of an offending value a warning quotes
_SHOW_CHARS = 60

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_DAY = timedelta(days=1)
_ONE_MS = timedelta(milliseconds=1)
# ISO 8601 reduced precision: a year, or a year and month (fromisoformat() takes neither)
_REDUCED_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2}))?")
# ISO 8601 "24:00" (minutes, seconds and fraction all zero) ends the day; text is upper-cased here
_HOUR_24 = re.compile(r"(.+?)[T ]24((?::?00){0,2}(?:[.,]0+)?)(Z|[+-][0-9:]+)?")
# MAPPING.md: date and time are separated by T, t or one space, nothing else; fromisoformat() takes
# any one character there ("2019-10-14X09:03", "20240129_1300"). The date part: YYYY-MM-DD, YYYYMMDD
# or an ISO week date; group 1 is what follows it ("" at the end).
_DATE_THEN = re.compile(r"\s*[0-9]{4}(?:-[0-9]{2}-[0-9]{2}|[0-9]{4}|-?W[0-9]{2}(?:-?[0-9])?)(.?)")
_SEPARATORS = frozenset(("T", "t", " ", ""))
# a JSON-style number; Python's int()/float() would also take "1_000", "nan", "infinity"
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GENDERS = {
    "m": "MALE", "male": "MALE",
    "f": "FEMALE", "female": "FEMALE",
    "o": "OTHER", "other": "OTHER", "others": "OTHER",
}
_isfinite = math.isfinite
_fromisoformat = datetime.fromisoformat


# ---- conversions (MAPPING.md "Conversions"); each returns None when the value is left out ----


def show(value):
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts (only from direct Mapper use)
        return "(a number too long to show)"
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def _warn(warnings, field, message):
    if warnings is not None:
        warnings.append(f"{field}: {message}; left out")


def _int64(value, field, warnings):
    if INT64_MIN <= value <= INT64_MAX:
        return value
    _warn(warnings, field, f"{show(value)} is outside the signed 64-bit range")
    return None


def _finite(number, field, warnings, problem):
    """number when finite; else None and a warning (strict JSON has no inf/NaN)."""
    if _isfinite(number):
        return number
    _warn(warnings, field, problem)
    return None


def to_epoch_ms(value, field="value", warnings=None):
    """ISO 8601 text or epoch-ms number -> epoch milliseconds (int); None (and a warning) if unusable."""
    if isinstance(value, str):
        ms = iso_ms(value)
        if ms is not None:  # the common, well-formed case
            return ms
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = _parse_iso_slow(value)
            if parsed is None:
                _warn(warnings, field, f"cannot parse timestamp {show(value)}")
                return None
        if not (value[4:5] == "-" and value[10:11] in _SEPARATORS) and not _separated_well(value):
            _warn(warnings, field, f"cannot parse timestamp {show(value)}")
            return None
        if parsed.tzinfo is None:  # no offset, or a bare date: UTC
            parsed = parsed.replace(tzinfo=timezone.utc)
        # floor to the millisecond = dropping the finer digits, also before 1970 (one exact C division)
        return (parsed - _EPOCH) // _ONE_MS
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return _int64(value, field, warnings)
    elif isinstance(value, float):
        if _finite(value, field, warnings, f"timestamp {show(value)} is not a finite number") is None:
            return None
        return _int64(int(value), field, warnings)  # int() truncates toward zero
    _warn(warnings, field, f"cannot parse timestamp {show(value)}")
    return None


def iso_ms(text):
    """to_epoch_ms(text) for ISO 8601 text that fromisoformat() reads as it is, its date and time
    separated as MAPPING.md says (the common case: no copy, no regex); None for any other text, which
    to_epoch_ms() then reads or warns about."""
    try:
        parsed = _fromisoformat(text)
    except ValueError:
        return None
    if text[4:5] != "-" or text[10:11] not in _SEPARATORS:
        return None  # a basic-format date ("20240501T..."), for _separated_well() to look at
    if parsed.tzinfo is None:  # no offset, or a bare date: UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    # floor to the millisecond = dropping the finer digits, also before 1970 (one exact C division)
    return (parsed - _EPOCH) // _ONE_MS


def _separated_well(value):
    """False when a date is followed by something other than T, t, one space or the end."""
    match = _DATE_THEN.match(value.strip())  # whitespace around the string is ignored (MAPPING.md)
    return match is None or match.group(1) in _SEPARATORS


def _parse_iso_slow(value):
    """The ISO 8601 forms fromisoformat() refuses (MAPPING.md "timestamp"); a datetime or None.

    Surrounding whitespace, a lowercase "t"/"z" (RFC 3339), the reduced forms YYYY and YYYY-MM,
    and hour 24 (the midnight that ends the day). Only reached when the fast path failed.
    """
    text = value.strip().upper()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        reduced = _REDUCED_DATE.fullmatch(text)
        if reduced:
            year, month = reduced.groups()
            return datetime(int(year), int(month or 1), 1)
        end_of_day = _HOUR_24.fullmatch(text)
        if end_of_day:
            date, zeros, offset = end_of_day.groups()
            return datetime.fromisoformat(f"{date}T00{zeros}{offset or ''}") + _ONE_DAY
    except (ValueError, OverflowError):  # month 13, year 0, or the day after 9999-12-31
        pass
    return None


def to_number(value, field="value", warnings=None):
    """A number as it is, a numeric string converted; None (and a warning) otherwise."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return _int64(value, field, warnings)
    elif isinstance(value, float):
        return _finite(value, field, warnings, f"number {show(value)} is too large")
    elif isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            try:
                return _int64(int(text), field, warnings)
            except ValueError:  # more digits than Python converts
                _warn(warnings, field, f"number {show(value)} is too large")
                return None
        if _FLOAT_TEXT.fullmatch(text):
            return _finite(float(text), field, warnings, f"number {show(value)} is too large")
    _warn(warnings, field, f"not a number: {show(value)}")
    return None


def to_float(value, field="value", warnings=None):
    """Like to_number, but always a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            _warn(warnings, field, f"number {show(value)} is too large")
            return None
    number = to_number(value, field, warnings)
    return None if number is None else float(number)


def to_str(value, field="value", warnings=None):
    """Text as it is; numbers as decimal text (100.0 -> "100"); true/false, objects and lists as JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if not _isfinite(value):
            _warn(warnings, field, f"{show(value)} is not a finite number")
            return None
        # MAPPING.md "string": an integral float is the integer's text; repr() is the shortest round trip
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than Python converts (only from direct Mapper use)
            _warn(warnings, field, "an integer too long to write as text")
            return None
    try:
        return jsonio.dumps(value)
    except ValueError:  # a non-finite float inside
        _warn(warnings, field, f"{show(value)} is not strict JSON")
        return None


def to_gender(value, field="value", warnings=None):
    """m/male, f/female, o/other/others (any case) -> MALE/FEMALE/OTHER; anything else unchanged."""
    if isinstance(value, str):
        return _GENDERS.get(value.lower(), value)
    return plain(value, field, warnings)


def plain(value, field="value", warnings=None):
    """A value sent as it is, unless strict JSON or PX cannot take it (huge int, inf inside)."""
    if isinstance(value, str) or value is True or value is False:
        return value
    if isinstance(value, int):
        return _int64(value, field, warnings)
    if isinstance(value, float):
        return _finite(value, field, warnings, f"{show(value)} is not a finite number")
    if isinstance(value, (dict, list)) and has_non_finite(value):
        _warn(warnings, field, "holds a number that is not finite (not strict JSON)")
        return None
    return value


def has_non_finite(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    return False


CONVERSIONS = {
    None: plain,
    "timestamp": to_epoch_ms,
    "number": to_number,
    "float": to_float,
    "string": to_str,
    "gender": to_gender,
}
