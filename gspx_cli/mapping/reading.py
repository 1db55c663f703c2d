"""MAPPING.md "Reading a value from an event": ids, traits, times, properties and integrations.

What the per-type builders share; pure functions of the event (and of tables made once per run).
"""

import math
import re

import orjson

from gspx_cli import jsonio
from gspx_cli.mapping import fields
from gspx_cli.mapping.convert import CONVERSIONS, INT64_MAX, INT64_MIN, plain, show, to_epoch_ms

# MAPPING.md "Gainsight PX REST API": custom event limits on the PX side
MAX_EVENT_ATTRIBUTES = 50
MAX_ATTRIBUTE_NAME_CHARS = 1024
_CONTROL_CHARS = re.compile("[\x00-\x1f]")
# ids that cannot be one URL path segment: requests and servers resolve them (/users/.. -> /)
DOT_SEGMENTS = frozenset({".", ".."})
NO_WARNINGS = ()
_isfinite = math.isfinite
_orjson_dumps = orjson.dumps
_FLOAT_TOKEN_search = jsonio.FLOAT_TOKEN.search
# attribute names known to be short enough: an event's names are most often those of earlier events, and a
# set look at them costs less than measuring each (no more names are added once it holds 4,096, so at most
# 4,096 and one event's names: a run of ever new names then measures them)
_SHORT_NAMES = set()
_SHORT_NAMES_KEPT = 4096
# orjson's text of a short list or object property -> its text as jsonio.dumps() writes it, for those it writes
# as orjson does: the same few (tags: ["beta","pro"]) recur from event to event, and a look here costs less
# than the float and null checks and the decoding (bounded: a run of ever new values checks each)
_TEXTS = {}
_TEXTS_KEPT = 4096
_TEXT_BYTES = 256

# ---- reading values (MAPPING.md "Reading a value from an event") ----


def _get_path(event, path):
    """The first usable value at a key path, or None; any non-object on the way means absent."""
    value = event
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return None if value == "" else value


def first_of(event, paths):
    """(value, dotted path) of the first usable of paths (precomputed (keys, label) pairs)."""
    for keys, label in paths:
        value = _get_path(event, keys)
        if value is not None:
            return value, label
    return None, None


def key_paths(*key_tuples):
    return tuple((keys, ".".join(keys)) for keys in key_tuples)


def check_id(value, label):
    """(id text, None) or (None, Invalid message) per MAPPING.md's id rule."""
    if isinstance(value, str):
        if _CONTROL_CHARS.search(value):
            return None, f"{label} contains a control character (U+0000 to U+001F): {show(value)}"
        if value in DOT_SEGMENTS:
            return None, f"{label} {value!r} cannot be used as an id: it is not a valid URL path segment"
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value), None  # MAPPING.md: a numeric id is used as its decimal string
        except ValueError:  # more digits than Python converts; jsonio.loads refuses these already
            return None, f"{label} is an integer too long to use as an id"
    return None, f"{label} must be a non-empty string or an integer, not {kind_of(value)}: {show(value)}"


def kind_of(value):
    """What a value is, for messages: "an object", "a float", ..."""
    return {dict: "an object", list: "a list", bool: "a boolean", float: "a float"}.get(
        type(value), type(value).__name__
    )


def event_name(value):
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
        f"event (the event name) must be a non-empty string or an integer, not {kind_of(value)}: "
        f"{show(value)}"
    )


EMPTY = {}
# where a trait's converted value goes in a user/account body
BODY, LOCATION, COORDINATES, CUSTOM = 0, 1, 2, 3


def trait_table(tables, attribute_map, defaults):
    """trait name -> (slot, px field, conversion or None, traits label, context.traits label).

    Built once per run from fields.py's tables, so one pass over an event's traits fills a body.
    """
    rows = {}
    for slot, table in tables:
        for f in table:
            for trait in f.traits:
                convert = None if f.convert is None else CONVERSIONS[f.convert]
                rows[trait] = (slot, f.px, convert, "traits." + trait, "context.traits." + trait)
    for trait, px in attribute_map.items():
        # entries keyed by a default trait are ignored (config.py warns when loading)
        if trait not in defaults:
            rows[trait] = (CUSTOM, px, None, "traits." + trait, "context.traits." + trait)
    return rows


def collect(dispatch, traits, ctx_traits, slots, warnings):
    """Fill slots from the traits dispatch knows: `traits` first, else `context.traits`.

    An empty string is no value, except for a custom attribute with no usable value in the
    other source: that is sent as "" so an app can clear it (MAPPING.md "identify").
    The general way, trait by trait; the builders run collect_common(), which gives the same slots.
    """
    if ctx_traits:
        _collect_context(dispatch, traits, ctx_traits, slots, warnings)
    for name, value in traits.items():
        if value is None:
            continue
        row = dispatch.get(name)
        if row is not None:
            _take(name, row, value, ctx_traits, slots, warnings)


def collect_common(dispatch, traits, ctx_traits, slots, warnings):
    """collect(), with the common trait (text, or an int PX holds, sent as it is) stored without a call:
    this loop runs per trait of every identify and group."""
    if ctx_traits:
        _collect_context(dispatch, traits, ctx_traits, slots, warnings)
    for name, value in traits.items():
        row = dispatch.get(name)
        if row is None:
            continue
        convert = row[2]
        if convert is None:
            cls = value.__class__
            if cls is str and value or cls is int and INT64_MIN <= value <= INT64_MAX:
                slots[row[0]][row[1]] = value
                continue
        elif value is not None and value != "":  # _put(), inlined: a conversion is never a custom attribute
            value = convert(value, row[3], warnings)
            if value is not None:
                slots[row[0]][row[1]] = value
            continue
        if value is not None:
            _take(name, row, value, ctx_traits, slots, warnings)


def _collect_context(dispatch, traits, ctx_traits, slots, warnings):
    """The values of context.traits that `traits` does not give (they come first in a body)."""
    for name, value in ctx_traits.items():
        if value is None:
            continue
        row = dispatch.get(name)
        if row is None:
            continue
        if traits:
            shadow = traits.get(name)
            if shadow is not None and shadow != "":
                continue  # `traits` wins; its value is taken after these
        if value == "":
            if row[0] == CUSTOM:
                slots[CUSTOM][row[1]] = ""
            continue
        _put(slots, row, value, row[4], warnings)


def _take(name, row, value, ctx_traits, slots, warnings):
    """One value of `traits` (not None) into its slot."""
    if value == "":
        if row[0] == CUSTOM:
            other = ctx_traits.get(name)
            if other is None or other == "":
                slots[CUSTOM][row[1]] = ""
        return
    _put(slots, row, value, row[3], warnings)


def _put(slots, row, value, label, warnings):
    convert = row[2]
    if convert is None:
        if value.__class__ is not str:
            value = plain(value, label, warnings)
            if value is None:
                return
    else:
        value = convert(value, label, warnings)
        if value is None:
            return
    slots[row[0]][row[1]] = value


def event_time(event, warnings, date=None):
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



FULL_NAME = (fields.FULL_NAME_TRAIT,)


def first_trait(names, traits, ctx_traits):
    """The first usable of traits.<name>..., then context.traits.<name>..., or None."""
    for source in (traits, ctx_traits):
        if source:
            for name in names:
                value = source.get(name)
                if value is not None and value != "":
                    return value
    return None


def split_name(body, full_name):
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


def finish(body, location, coordinates, custom):
    # `location`, `coordinates` and `customAttributes` appear only when something is in them
    if coordinates:
        location["coordinates"] = coordinates
    if location:
        body["location"] = location
    if custom:
        body["customAttributes"] = custom


def trait_sources(event):
    """(traits, context.traits) as dicts, empty when absent or not objects."""
    traits = event.get("traits")
    if not isinstance(traits, dict):
        traits = EMPTY
    context = event.get("context")
    ctx_traits = context.get("traits") if isinstance(context, dict) else None
    if not isinstance(ctx_traits, dict):
        ctx_traits = EMPTY
    return traits, ctx_traits


def attributes(properties, warnings):
    """properties minus globalContext and nulls; objects and lists as compact JSON text."""
    attributes = {}
    for name, value in properties.items():
        cls = value.__class__
        # what plain() passes unchanged, decided without building its warning label
        if cls is str or cls is bool or (cls is int and INT64_MIN <= value <= INT64_MAX) or (
            cls is float and _isfinite(value)
        ):
            if name != "globalContext":
                attributes[name] = value
            continue
        if value is None or name == "globalContext":
            continue
        if cls is list or cls is dict:  # jsonio.dumps() inlined for its common case (orjson's text is the stdlib's)
            try:
                raw = _orjson_dumps(value, option=jsonio.DUMPS_OPTIONS)
            except TypeError:
                raw = None
            if raw is not None:
                text = _TEXTS.get(raw)
                if text is None and b"null" not in raw and not _FLOAT_TOKEN_search(raw):
                    text = raw.decode("utf-8")
                    if len(raw) <= _TEXT_BYTES and len(_TEXTS) < _TEXTS_KEPT:
                        _TEXTS[raw] = text
                if text is not None:
                    attributes[name] = text
                    continue
        if isinstance(value, (dict, list)):
            try:
                value = jsonio.dumps(value)
            except ValueError:  # a non-finite float inside: not strict JSON
                warnings.append(f"properties.{name[:40]}: holds a number that is not finite; left out")
                continue
        elif not isinstance(value, str):
            value = plain(value, "properties." + name[:40], warnings)
            if value is None:
                continue
        attributes[name] = value
    if len(attributes) > MAX_EVENT_ATTRIBUTES:
        warnings.append(
            f"properties: {len(attributes)} attributes, more than the {MAX_EVENT_ATTRIBUTES} "
            "Gainsight PX accepts for a custom event"
        )
    if not _SHORT_NAMES.issuperset(attributes):  # a name not seen before (a handful a run)
        if max(map(len, attributes)) > MAX_ATTRIBUTE_NAME_CHARS:
            for name in (n for n in attributes if len(n) > MAX_ATTRIBUTE_NAME_CHARS):
                warnings.append(
                    f"properties.{name[:40]}...: attribute name is {len(name)} characters, more than "
                    f"the {MAX_ATTRIBUTE_NAME_CHARS} Gainsight PX accepts"
                )
        elif len(_SHORT_NAMES) < _SHORT_NAMES_KEPT:
            _SHORT_NAMES.update(attributes)
    return attributes


def integration(integrations):
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


def user_id_of(event, paths, event_type):
    """(user id, None) or (None, Invalid message): `userId` when it is a plain id, else the first usable of paths."""
    value = event.get("userId")
    if value.__class__ is str and value and value.isprintable() and value not in DOT_SEGMENTS:
        return value, None  # the common case; isprintable() is false for every control char
    value, label = first_of(event, paths)
    if value is None:
        return None, f"userId or anonymousId is required for {event_type}"
    return check_id(value, label)
