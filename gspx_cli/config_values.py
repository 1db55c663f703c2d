"""Checks of a config file's values, one key at a time: types, ranges, the three maps and URLs.

Every error names the file and the dotted key; none echoes the API key. config.py builds Settings
from what these return."""

import datetime
import math

from gspx_cli.errors import ConfigError
from gspx_cli.mapping.plan import UPSERT_MODES

MAX_CONCURRENCY = 256  # CLI.md "Ranges"
MAP_ROW_KEYS = ("from", "to")


class FileChecks:
    """The checks of one parsed config file that know its name and collect its warnings."""

    def __init__(self, source):
        self.source = source
        self.warnings = []

    def error(self, key, message):
        return ConfigError(message, file=self.source, key=key)

    def check_keys(self, mapping, allowed, prefix):
        for key in mapping:
            if key in allowed:
                continue
            name = str(key)
            import difflib  # difflib and ipaddress: only when a message or a base_url needs them

            hint = difflib.get_close_matches(name, allowed, n=1)
            message = f"unknown key; expected one of {', '.join(allowed)}"
            if hint:
                message = f"unknown key; did you mean `{prefix}{hint[0]}`?"
            raise self.error(prefix + name, message)

    def non_empty_string(self, key, value):
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type_name(value)}")
        value = value.strip()
        if not value:
            raise self.error(key, "expected a non-empty string")
        return value

    def map_items(self, name, value):
        """(key path, from, to) for a mapping or RudderStack's list of {from, to} rows."""
        if value is None:
            return []
        if isinstance(value, dict):
            return [(f"{name}.{k}", k, v) for k, v in value.items()]
        if isinstance(value, list):
            items = []
            for i, row in enumerate(value):
                where = f"{name}[{i}]"
                if not isinstance(row, dict):
                    raise self.error(
                        where, f"expected a {{from: ..., to: ...}} row, got {type_name(row)}"
                    )
                self.check_keys(row, MAP_ROW_KEYS, prefix=f"{where}.")
                source_key = row.get("from")
                # CLI.md: rows with an empty `from` are ignored (the dashboard leaves blank rows).
                if source_key is None or source_key == "":
                    continue
                if isinstance(source_key, str) and not source_key.strip():
                    self.warnings.append(
                        f"{self.source}: {where}.from: name {source_key!r} is empty once trimmed; "
                        "this map entry is ignored"
                    )
                    continue
                items.append((f"{where}.from", source_key, row.get("to")))
            return items
        raise self.error(
            name,
            "expected a mapping or a list of {from: ..., to: ...} rows, "
            f"got {type_name(value)}",
        )

    def map_key(self, where, key):
        if not isinstance(key, str) or not key.strip():
            raise self.error(
                where, f"expected a non-empty string as the name, got {type_name(key)} (quote it)"
            )
        return key.strip()

    def attribute_map(self, name, data, default_traits):
        result = {}
        for where, raw_key, raw_value in self.map_items(name, data.get(name)):
            if isinstance(raw_key, str) and not raw_key.strip():
                # a mapping key that trims to nothing: ignored like a dashboard row with an empty `from`
                self.warnings.append(
                    f"{self.source}: {where}: trait name {raw_key!r} is empty once trimmed; "
                    "this map entry is ignored"
                )
                continue
            key = self.map_key(where, raw_key)
            value_where = where[: -len(".from")] + ".to" if where.endswith(".from") else where
            if not isinstance(raw_value, str) or not raw_value.strip():
                raise self.error(
                    value_where,
                    "expected a non-empty string (the PX custom attribute name), "
                    f"got {type_name(raw_value)}",
                )
            value = raw_value.strip()
            # MAPPING.md "identify": keys and values are trimmed, with a warning naming the entry
            if key != raw_key:
                self.warnings.append(
                    f"{self.source}: {where}: trait name {raw_key!r} trimmed to {key!r}"
                )
            if value != raw_value:
                self.warnings.append(
                    f"{self.source}: {value_where}: PX attribute name {raw_value!r} trimmed to {value!r}"
                )
            if key in default_traits:
                # MAPPING.md: default attributes are never sent twice.
                self.warnings.append(
                    f"{self.source}: {where}: `{key}` is a default attribute, sent as such; "
                    "this map entry is ignored"
                )
                continue
            if key in result:
                self.warnings.append(
                    f"{self.source}: {where}: `{key}` is mapped twice; the last wins"
                )
            result[key] = value
        return result

    def global_context(self, data):
        result = {}
        for where, key, value in self.map_items("global_context", data.get("global_context")):
            key = self.map_key(where, key)
            value_where = where[: -len(".from")] + ".to" if where.endswith(".from") else where
            result[key] = self.json_value(value_where, value)
        return result

    def json_value(self, where, value):
        """A value that strict JSON can carry; YAML dates become ISO 8601 text."""
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(where, "expected a finite number (bodies are strict JSON)")
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        if isinstance(value, list):
            return [self.json_value(f"{where}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {
                self.map_key(f"{where}.{k}", k): self.json_value(f"{where}.{k}", v)
                for k, v in value.items()
            }
        raise self.error(
            where,
            "expected a JSON value (text, number, boolean, list or mapping), "
            f"got {type_name(value)}",
        )


def check_delivery(name, value, file, key):
    """Type and range of one delivery setting (CLI.md "Ranges")."""
    if name == "upsert":
        if value not in UPSERT_MODES:
            raise ConfigError(f"expected {', '.join(UPSERT_MODES[:-1])} or {UPSERT_MODES[-1]}, got {got(value)}", file=file, key=key)
        return value
    if name in ("concurrency", "max_retries", "daily_budget"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected a whole number, got {got(value)}", file=file, key=key)
        if name == "concurrency" and not 1 <= value <= MAX_CONCURRENCY:
            raise ConfigError(f"expected 1 to {MAX_CONCURRENCY}, got {value}", file=file, key=key)
        if name == "max_retries" and value < 0:
            raise ConfigError(f"expected 0 or more, got {value}", file=file, key=key)
        if name == "daily_budget" and value < 1:
            raise ConfigError(f"expected 1 or more, got {value}", file=file, key=key)
        return value
    # rate_limit (requests per second) and timeout (seconds): any positive number; max_outage: 0 or more
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected a number, got {got(value)}", file=file, key=key)
    if name == "max_outage":
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"expected a number of seconds, 0 or more, got {value}", file=file, key=key)
        return float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"expected a number greater than 0, got {value}", file=file, key=key)
    return float(value)


def check_bool(value, file, key):
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {got(value)}", file=file, key=key)
    return value


def check_api_key(value, *, file, key):
    """A usable key; messages never echo the value."""
    if not isinstance(value, str):
        raise ConfigError(
            f"expected a string (quote it), got {type_name(value)}", file=file, key=key
        )
    value = value.strip()
    if not value:
        raise ConfigError("expected a non-empty string", file=file, key=key)
    # A key with spaces or control characters cannot go into an HTTP header, and requests
    # would echo it in its own error.
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError("must not contain spaces or control characters", file=file, key=key)
    return value


def check_base_url(value, *, file):
    """https://, or http:// to a loopback host (CLI.md); returned without a trailing slash."""
    key = "base_url"
    expected = "expected an https:// URL, or http:// to localhost, 127.0.0.0/8 or [::1]"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{expected}, got {type_name(value)}", file=file, key=key)
    url = value.strip()
    from urllib.parse import urlsplit  # ~2 ms of start-up: only for a base_url

    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{expected}; {url!r} is not a valid URL", file=file, key=key) from None
    if parts.username is not None or parts.password is not None:
        # The URL is shown by `gspx check` and dry-run output: no credentials in it.
        raise ConfigError(
            "must not contain user:password@; put no credentials in the URL", file=file, key=key
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{expected}, without ?query or #fragment", file=file, key=key)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{expected}, got {url!r}", file=file, key=key)
    if scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{expected}; plain http:// would send the API key unencrypted to {parts.hostname}",
            file=file,
            key=key,
        )
    return url.rstrip("/")


def is_loopback(host):
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def got(value):
    """The value as written, for messages about keys other than api_key (never echoed)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (str, int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type_name(value)


def type_name(value):
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
