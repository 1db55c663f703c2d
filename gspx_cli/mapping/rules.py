"""Pure mapping of one RudderStack event to what Gainsight PX needs (MAPPING.md).

No I/O, no clock, no logging: the result (Plan, Skipped or Invalid) carries its warnings.
Mapper binds the field tables in fields.py to conversions once per run; map() is the hot path.
"""

import math
import re
from datetime import datetime, timedelta, timezone

from gspx_cli import jsonio
from gspx_cli.mapping import fields
from gspx_cli.mapping.plan import CUSTOM_EVENTS_PATH, Invalid, Plan, RequireUser, Skipped, Update, Upsert, Write

# MAPPING.md: "outside the signed 64-bit range" is what a PX numeric field cannot hold
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# MAPPING.md "Gainsight PX REST API": custom event limits on the PX side
MAX_EVENT_ATTRIBUTES = 50
MAX_ATTRIBUTE_NAME_CHARS = 1024
# how much of an offending value a warning quotes
_SHOW_CHARS = 60

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_DAY = timedelta(days=1)
# ISO 8601 reduced precision: a year, or a year and month (fromisoformat() takes neither)
_REDUCED_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2}))?")
# ISO 8601 "24:00" (minutes, seconds and fraction all zero) ends the day; text is upper-cased here
_HOUR_24 = re.compile(r"(.+?)[T ]24((?::?00){0,2}(?:[.,]0+)?)(Z|[+-][0-9:]+)?")
_CONTROL_CHARS = re.compile("[\x00-\x1f]")
# MAPPING.md: date and time are separated by T, t or one space, nothing else; fromisoformat() takes
# any one character there ("2019-10-14X09:03", "20240129_1300"). The date part: YYYY-MM-DD, YYYYMMDD
# or an ISO week date; group 1 is what follows it ("" at the end).
_DATE_THEN = re.compile(r"\s*[0-9]{4}(?:-[0-9]{2}-[0-9]{2}|[0-9]{4}|-?W[0-9]{2}(?:-?[0-9])?)(.?)")
_SEPARATORS = frozenset(("T", "t", " ", ""))
# ids that cannot be one URL path segment: requests and servers resolve them (/users/.. -> /)
_DOT_SEGMENTS = frozenset({".", ".."})
# a JSON-style number; Python's int()/float() would also take "1_000", "nan", "infinity"
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GENDERS = {
    "m": "MALE", "male": "MALE",
    "f": "FEMALE", "female": "FEMALE",
    "o": "OTHER", "other": "OTHER", "others": "OTHER",
}
_NO_WARNINGS = ()
_isfinite = math.isfinite


# ---- conversions (MAPPING.md "Conversions"); each returns None when the value is left out ----


def _show(value):
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
    _warn(warnings, field, f"{_show(value)} is outside the signed 64-bit range")
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
        try:  # the common, well-formed case: no copy, no regex
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = _parse_iso_slow(value)
            if parsed is None:
                _warn(warnings, field, f"cannot parse timestamp {_show(value)}")
                return None
        if not (value[4:5] == "-" and value[10:11] in _SEPARATORS) and not _separated_well(value):
            _warn(warnings, field, f"cannot parse timestamp {_show(value)}")
            return None
        if parsed.tzinfo is None:  # no offset, or a bare date: UTC
            parsed = parsed.replace(tzinfo=timezone.utc)
        delta = parsed - _EPOCH
        # floor to the millisecond = dropping the finer digits, also before 1970
        return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return _int64(value, field, warnings)
    elif isinstance(value, float):
        if _finite(value, field, warnings, f"timestamp {_show(value)} is not a finite number") is None:
            return None
        return _int64(int(value), field, warnings)  # int() truncates toward zero
    _warn(warnings, field, f"cannot parse timestamp {_show(value)}")
    return None


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
        return _finite(value, field, warnings, f"number {_show(value)} is too large")
    elif isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            try:
                return _int64(int(text), field, warnings)
            except ValueError:  # more digits than Python converts
                _warn(warnings, field, f"number {_show(value)} is too large")
                return None
        if _FLOAT_TEXT.fullmatch(text):
            return _finite(float(text), field, warnings, f"number {_show(value)} is too large")
    _warn(warnings, field, f"not a number: {_show(value)}")
    return None


def to_float(value, field="value", warnings=None):
    """Like to_number, but always a float."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            _warn(warnings, field, f"number {_show(value)} is too large")
            return None
    number = to_number(value, field, warnings)
    return None if number is None else float(number)


def to_str(value, field="value", warnings=None):
    """Text as it is; numbers as decimal text (100.0 -> "100"); true/false, objects and lists as JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if not _isfinite(value):
            _warn(warnings, field, f"{_show(value)} is not a finite number")
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
        _warn(warnings, field, f"{_show(value)} is not strict JSON")
        return None


def to_gender(value, field="value", warnings=None):
    """m/male, f/female, o/other/others (any case) -> MALE/FEMALE/OTHER; anything else unchanged."""
    if isinstance(value, str):
        return _GENDERS.get(value.lower(), value)
    return _plain(value, field, warnings)


def _plain(value, field="value", warnings=None):
    """A value sent as it is, unless strict JSON or PX cannot take it (huge int, inf inside)."""
    if isinstance(value, str) or value is True or value is False:
        return value
    if isinstance(value, int):
        return _int64(value, field, warnings)
    if isinstance(value, float):
        return _finite(value, field, warnings, f"{_show(value)} is not a finite number")
    if isinstance(value, (dict, list)) and _has_non_finite(value):
        _warn(warnings, field, "holds a number that is not finite (not strict JSON)")
        return None
    return value


def _has_non_finite(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


CONVERSIONS = {
    None: _plain,
    "timestamp": to_epoch_ms,
    "number": to_number,
    "float": to_float,
    "string": to_str,
    "gender": to_gender,
}


# ---- reading values (MAPPING.md "Reading a value from an event") ----


def _get_path(event, path):
    """The first usable value at a key path, or None; any non-object on the way means absent."""
    value = event
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return None if value == "" else value


def _first(event, paths):
    """(value, dotted path) of the first usable of paths (precomputed (keys, label) pairs)."""
    for keys, label in paths:
        value = _get_path(event, keys)
        if value is not None:
            return value, label
    return None, None


def _paths(*key_tuples):
    return tuple((keys, ".".join(keys)) for keys in key_tuples)


def _check_id(value, label):
    """(id text, None) or (None, Invalid message) per MAPPING.md's id rule."""
    if isinstance(value, str):
        if _CONTROL_CHARS.search(value):
            return None, f"{label} contains a control character (U+0000 to U+001F): {_show(value)}"
        if value in _DOT_SEGMENTS:
            return None, f"{label} {value!r} cannot be used as an id: it is not a valid URL path segment"
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value), None  # MAPPING.md: a numeric id is used as its decimal string
        except ValueError:  # more digits than Python converts; jsonio.loads refuses these already
            return None, f"{label} is an integer too long to use as an id"
    return None, f"{label} must be a non-empty string or an integer, not {_kind(value)}: {_show(value)}"


def _kind(value):
    """What a value is, for messages: "an object", "a float", ..."""
    return {dict: "an object", list: "a list", bool: "a boolean", float: "a float"}.get(
        type(value), type(value).__name__
    )


def _event_name(value):
    """(eventName, None) or (None, Invalid message): MAPPING.md "track", the slow path.

    A non-empty string, or an integer used as its decimal string; a whitespace-only name is a
    non-empty string and is sent as it is (the spec does not trim event names).
    """
    if value is None or value == "":
        return None, "event (the event name) is required for track"
    if isinstance(value, str):
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value), None
        except ValueError:  # more digits than Python converts; jsonio.loads refuses these already
            return None, "event (the event name) is an integer too long to use as a name"
    return None, (
        f"event (the event name) must be a non-empty string or an integer, not {_kind(value)}: "
        f"{_show(value)}"
    )


_EMPTY = {}
# where a trait's converted value goes in a user/account body
_BODY, _LOCATION, _COORDINATES, _CUSTOM = 0, 1, 2, 3


def _dispatch(tables, attribute_map, defaults):
    """trait name -> (slot, px field, conversion or None, (traits label, context.traits label)).

    Built once per run from fields.py's tables, so one pass over an event's traits fills a body.
    """
    rows = {}
    for slot, table in tables:
        for f in table:
            for trait in f.traits:
                convert = None if f.convert is None else CONVERSIONS[f.convert]
                rows[trait] = (slot, f.px, convert, ("traits." + trait, "context.traits." + trait))
    for trait, px in attribute_map.items():
        # entries keyed by a default trait are ignored (config.py warns when loading)
        if trait not in defaults:
            rows[trait] = (_CUSTOM, px, None, ("traits." + trait, "context.traits." + trait))
    return rows


def _collect(dispatch, traits, ctx_traits, slots, warnings):
    """Fill slots from the traits dispatch knows: `traits` first, else `context.traits`.

    An empty string is no value, except for a custom attribute with no usable value in the
    other source: that is sent as "" so an app can clear it (MAPPING.md "identify").
    """
    if ctx_traits:
        for name, value in ctx_traits.items():
            if value is None:
                continue
            row = dispatch.get(name)
            if row is None:
                continue
            if traits:
                shadow = traits.get(name)
                if shadow is not None and shadow != "":
                    continue  # `traits` wins; its value is taken below
            if value == "":
                if row[0] == _CUSTOM:
                    slots[_CUSTOM][row[1]] = ""
                continue
            _put(slots, row, value, row[3][1], warnings)
    for name, value in traits.items():
        if value is None:
            continue
        row = dispatch.get(name)
        if row is not None:  # _put inlined: this loop runs per trait of every identify and group
            slot, px, convert, labels = row
            if value == "":
                if slot == _CUSTOM:
                    other = ctx_traits.get(name)
                    if other is None or other == "":
                        slots[_CUSTOM][px] = ""
                continue
            if convert is None:
                if value.__class__ is not str:
                    value = _plain(value, labels[0], warnings)
                    if value is None:
                        continue
            else:
                value = convert(value, labels[0], warnings)
                if value is None:
                    continue
            slots[slot][px] = value


def _put(slots, row, value, label, warnings):
    convert = row[2]
    if convert is None:
        if value.__class__ is not str:
            value = _plain(value, label, warnings)
            if value is None:
                return
    else:
        value = convert(value, label, warnings)
        if value is None:
            return
    slots[row[0]][row[1]] = value


def _event_time(event, warnings, date=None):
    """properties.date (when given), else `timestamp`, else `originalTimestamp`, as epoch ms.

    A value that does not parse is warned about and the next one is tried.
    """
    if date is not None and date != "":
        ms = to_epoch_ms(date, "properties.date", warnings)
        if ms is not None:
            return ms
    for key in ("timestamp", "originalTimestamp"):
        value = event.get(key)
        if value is not None and value != "":
            ms = to_epoch_ms(value, key, warnings)
            if ms is not None:
                return ms
    return None


def message_id(event):
    """The event's messageId when it is a non-empty string (MAPPING.md "Duplicate events"), else None."""
    value = event.get("messageId")
    return value if value.__class__ is str and value else None


class Mapper:
    """Maps events for one run's Settings; everything per-run is computed here, once."""

    def __init__(self, settings):
        self._key = settings.product_tag_key
        self._limit_api_for_group = bool(settings.limit_api_for_group)
        self._create_first = settings.delivery.upsert == "create-first"
        self._global_context = settings.global_context or None

        location = ((_LOCATION, fields.LOCATION_FIELDS), (_COORDINATES, fields.COORDINATE_FIELDS))
        self._user_dispatch = _dispatch(
            ((_BODY, fields.USER_FIELDS), *location),
            settings.user_attribute_map, fields.USER_DEFAULT_TRAITS,
        )
        # names are read alias by alias, all of `traits` before `context.traits`
        self._user_names = tuple((f.px, f.traits) for f in fields.NAME_FIELDS)
        # MAPPING.md "group": account attributes come from the group's `traits` only
        self._account_dispatch = _dispatch(
            ((_BODY, fields.ACCOUNT_FIELDS), *location),
            settings.account_attribute_map, fields.ACCOUNT_DEFAULT_TRAITS,
        )

        self._user_id_paths = _paths(*fields.USER_ID_PATHS)
        self._group_user_id_paths = _paths(*fields.GROUP_USER_ID_PATHS)
        self._group_id_paths = _paths(*fields.GROUP_ID_PATHS)
        self._handlers = {"identify": self._identify, "group": self._group, "track": self._track}

    def map(self, event):
        """One event -> Plan, Skipped or Invalid."""
        if not isinstance(event, dict):
            return Invalid("event is not a JSON object")
        raw_type = event.get("type")
        if not isinstance(raw_type, str) or not raw_type:
            return Invalid("event has no type")
        event_type = raw_type.lower()
        handler = self._handlers.get(event_type)
        if handler is None:
            if event_type in fields.SKIPPED_TYPES:
                return Skipped(event_type, f"{event_type} events are not sent to Gainsight PX")
            return Invalid(f"unknown event type {_show(raw_type)}")
        integrations = event.get("integrations")
        options = None
        if integrations and isinstance(integrations, dict):
            off, options = _integration(integrations)
            if off:
                return Skipped(event_type, off)
        return handler(event, event_type, options)

    # ---- identify (MAPPING.md "identify -> create or update a PX User") ----

    def _identify(self, event, event_type, options):
        user_id, problem = self._user_id(event, self._user_id_paths, event_type)
        if problem:
            return Invalid(problem, event_type)
        warnings = []
        traits, ctx_traits = _trait_sources(event)
        body, location, coordinates, custom = slots = ({}, {}, {}, {})
        _collect(self._user_dispatch, traits, ctx_traits, slots, warnings)
        for px, aliases in self._user_names:
            value = _first_trait(aliases, traits, ctx_traits)
            if value is not None and value.__class__ is not str:
                value = _plain(value, px, warnings)
            if value is not None:
                body[px] = value
        if "firstName" not in body or "lastName" not in body:
            _split_name(body, _first_trait(_FULL_NAME, traits, ctx_traits))
        _finish(body, location, coordinates, custom)
        body["type"] = "USER"
        body["propertyKeys"] = [self._key]

        create = {"identifyId": user_id, **body}
        if "signUpDate" not in body or "createDate" not in body:
            when = _event_time(event, warnings)
            if when is not None:
                create.setdefault("signUpDate", when)
                create.setdefault("createDate", when)
        step = Upsert(kind="user", id=user_id, update_body=body, create_body=create, create_first=self._create_first)
        return Plan(event_type, user_id, (step,), tuple(warnings) if warnings else _NO_WARNINGS,
                    message_id(event))

    # ---- group (MAPPING.md "group -> create or update a PX Account, then attach the user") ----

    def _group(self, event, event_type, options):
        user_id, problem = self._user_id(event, self._group_user_id_paths, event_type)
        if problem:
            return Invalid(problem, event_type)
        value, label = _first(event, self._group_id_paths)
        if value is None:
            return Invalid("groupId is required for group", event_type)
        group_id, problem = _check_id(value, label)
        if problem:
            return Invalid(problem, event_type)

        warnings = []
        traits, _ = _trait_sources(event)
        body, location, coordinates, custom = slots = ({}, {}, {}, {})
        _collect(self._account_dispatch, traits, _EMPTY, slots, warnings)
        _finish(body, location, coordinates, custom)
        body["propertyKeys"] = [self._key]

        create, create_error = None, None
        if "name" in body:
            create = {"id": group_id, **body}
            if "createDate" not in body:  # only a create gets the event time (MAPPING.md)
                when = _event_time(event, warnings)
                if when is not None:
                    create["createDate"] = when
        else:
            create_error = (
                f"account {group_id!r} does not exist and cannot be created without a name "
                "(traits.name)"
            )

        limit = self._limit_api_for_group
        if options is not None:
            option_name, option_values = options
            flag = option_values.get("limitAPIForGroup")
            if flag is True:
                limit = True
            elif flag is not None and flag is not False:
                # MAPPING.md "group": only the boolean true counts; "true", 1, "yes" do not
                warnings.append(
                    f"integrations.{option_name}.limitAPIForGroup: {_show(flag)} is not a JSON boolean "
                    "(only true turns the fewer-calls flow on); ignored"
                )
        upsert = Upsert(
            kind="account", id=group_id, update_body=body, create_body=create,
            create_error=create_error, create_first=self._create_first,
        )
        attach = Update("user", user_id, {"accountId": group_id})
        steps = (upsert, attach) if limit else (RequireUser(user_id), upsert, attach)
        return Plan(event_type, user_id, steps, tuple(warnings) if warnings else _NO_WARNINGS,
                    message_id(event))

    # ---- track (MAPPING.md "track -> one PX custom event") ----

    def _track(self, event, event_type, options):
        user_id, problem = self._user_id(event, self._user_id_paths, event_type)
        if problem:
            return Invalid(problem, event_type)
        name = event.get("event")
        if name.__class__ is not str or not name:
            name, problem = _event_name(name)
            if problem:
                return Invalid(problem, event_type)

        warnings = []
        properties = event.get("properties")
        if properties is None:
            properties = _EMPTY
        elif not isinstance(properties, dict):
            warnings.append(f"properties: not an object ({_show(properties)}); ignored")
            properties = _EMPTY
        context = event.get("context")
        if not isinstance(context, dict):
            context = _EMPTY

        body = {"identifyId": user_id, "eventName": name}
        date = _event_time(event, warnings, properties.get("date"))
        if date is not None:
            body["date"] = date
        traits, ctx_traits = _trait_sources(event)
        value = _first_trait(_GROUP_ID, traits, ctx_traits)
        if value is not None:
            if value.__class__ is not str:
                label = "traits.groupId" if traits.get("groupId") is value else "context.traits.groupId"
                value = to_str(value, label, warnings)
            if value is not None:
                body["accountId"] = value
        value = properties.get("sessionId")
        label = "properties.sessionId"
        if value is None or value == "":
            value = context.get("sessionId")
            label = "context.sessionId"
        if value is not None and value != "":
            value = _plain(value, label, warnings)
            if value is not None:
                body["sessionId"] = value
        page = context.get("page")
        if page and isinstance(page, dict):
            for key in ("url", "referrer"):
                value = page.get(key)
                if value is not None and value != "":
                    if value.__class__ is not str:  # a URL is text: no label built for _plain
                        value = _plain(value, "context.page." + key, warnings)
                    if value is not None:
                        body[key] = value
        body["attributes"] = _attributes(properties, warnings) if properties else {}
        body["propertyKey"] = self._key
        body["userType"] = "USER"
        global_context = self._event_global_context(properties, warnings)
        if global_context:
            body["globalContext"] = global_context
        return Plan(event_type, user_id, (Write("POST", CUSTOM_EVENTS_PATH, body),),
                    tuple(warnings) if warnings else _NO_WARNINGS, message_id(event))

    def _event_global_context(self, properties, warnings):
        # MAPPING.md: a non-empty properties.globalContext wins over the configured one
        value = properties.get("globalContext")
        if value:
            if isinstance(value, dict):
                if not _has_non_finite(value):
                    return value
                warnings.append(
                    "properties.globalContext: holds a number that is not finite; "
                    "the configured global context is used"
                )
            else:
                warnings.append(
                    f"properties.globalContext: not an object ({_show(value)}); "
                    "the configured global context is used"
                )
        return self._global_context

    # ---- shared ----

    def _user_id(self, event, paths, event_type):
        value = event.get("userId")
        if value.__class__ is str and value and value.isprintable() and value not in _DOT_SEGMENTS:
            return value, None  # the common case; isprintable() is false for every control char
        value, label = _first(event, paths)
        if value is None:
            return None, f"userId or anonymousId is required for {event_type}"
        return _check_id(value, label)


_FULL_NAME = (fields.FULL_NAME_TRAIT,)
_GROUP_ID = ("groupId",)  # track: accountId from traits.groupId / context.traits.groupId


def _first_trait(names, traits, ctx_traits):
    """The first usable of traits.<name>..., then context.traits.<name>..., or None."""
    for source in (traits, ctx_traits):
        if source:
            for name in names:
                value = source.get(name)
                if value is not None and value != "":
                    return value
    return None


def _split_name(body, full_name):
    """MAPPING.md "Names": a string `name` split at its first run of whitespace fills what is missing."""
    if not isinstance(full_name, str):
        return
    # split(None, 1): any whitespace (tab, newline, U+3000...) separates; leading whitespace is skipped
    parts = full_name.split(None, 1)
    if not parts:
        return
    if "firstName" not in body:
        body["firstName"] = parts[0]
    if len(parts) == 2 and "lastName" not in body:
        body["lastName"] = parts[1].rstrip()  # inner spacing of the rest kept as it is


def _finish(body, location, coordinates, custom):
    # `location`, `coordinates` and `customAttributes` appear only when something is in them
    if coordinates:
        location["coordinates"] = coordinates
    if location:
        body["location"] = location
    if custom:
        body["customAttributes"] = custom


def _trait_sources(event):
    """(traits, context.traits) as dicts, empty when absent or not objects."""
    traits = event.get("traits")
    if not isinstance(traits, dict):
        traits = _EMPTY
    context = event.get("context")
    ctx_traits = context.get("traits") if isinstance(context, dict) else None
    if not isinstance(ctx_traits, dict):
        ctx_traits = _EMPTY
    return traits, ctx_traits


def _attributes(properties, warnings):
    """properties minus globalContext and nulls; objects and lists as compact JSON text."""
    attributes = {}
    for name, value in properties.items():
        cls = value.__class__
        # what _plain() passes unchanged, decided without building its warning label
        if cls is str or cls is bool or (cls is int and INT64_MIN <= value <= INT64_MAX) or (
            cls is float and _isfinite(value)
        ):
            if name != "globalContext":
                attributes[name] = value
            continue
        if value is None or name == "globalContext":
            continue
        if isinstance(value, (dict, list)):
            try:
                value = jsonio.dumps(value)
            except ValueError:  # a non-finite float inside: not strict JSON
                warnings.append(f"properties.{name[:40]}: holds a number that is not finite; left out")
                continue
        elif not isinstance(value, str):
            value = _plain(value, "properties." + name[:40], warnings)
            if value is None:
                continue
        attributes[name] = value
    if len(attributes) > MAX_EVENT_ATTRIBUTES:
        warnings.append(
            f"properties: {len(attributes)} attributes, more than the {MAX_EVENT_ATTRIBUTES} "
            "Gainsight PX accepts for a custom event"
        )
    if attributes and max(map(len, attributes)) > MAX_ATTRIBUTE_NAME_CHARS:
        for name in (n for n in attributes if len(n) > MAX_ATTRIBUTE_NAME_CHARS):
            warnings.append(
                f"properties.{name[:40]}...: attribute name is {len(name)} characters, more than "
                f"the {MAX_ATTRIBUTE_NAME_CHARS} Gainsight PX accepts"
            )
    return attributes


def _integration(integrations):
    """(reason PX is turned off or None, (PX name, options object) or None) from `integrations`."""
    values = [integrations[n] for n in fields.PX_INTEGRATION_NAMES if integrations.get(n) is not None]
    if values:
        # an explicit false under any of PX's names turns it off, even if another name enables it
        for name in fields.PX_INTEGRATION_NAMES:
            if integrations.get(name) is False:
                return f"integrations.{name} is false: not sent to Gainsight PX", None
        for name in fields.PX_INTEGRATION_NAMES:
            value = integrations.get(name)
            if isinstance(value, dict):
                return None, (name, value)
        return None, None
    if integrations.get("All") is False:
        return "integrations.All is false and Gainsight PX is not enabled: not sent to Gainsight PX", None
    return None, None


def map_event(event, settings):
    """Map one event with a one-off Mapper (convenience; reuse a Mapper for many events)."""
    return Mapper(settings).map(event)
