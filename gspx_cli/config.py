"""Settings from the YAML config, the environment and command-line flags (CLI.md "Config file")."""

import datetime
import json
import math
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gspx_cli.errors import ConfigError
from gspx_cli.mapping.fields import ACCOUNT_DEFAULT_TRAITS, USER_DEFAULT_TRAITS
from gspx_cli.mapping.plan import UPSERT_MODES

# MAPPING.md "Gainsight PX REST API"
DATA_CENTERS = {
    "US": "https://api.aptrinsic.com/v1",
    "EU": "https://api-eu.aptrinsic.com/v1",
    "US2": "https://api-us2.aptrinsic.com/v1",
}

DEFAULT_CONFIG_PATH = "./gspx.yaml"  # CLI.md: default `$GSPX_CONFIG`, else `./gspx.yaml`
API_KEY_ENV = "GSPX_API_KEY"
CONFIG_ENV = "GSPX_CONFIG"
MAX_CONCURRENCY = 256  # CLI.md "Ranges"

TOP_LEVEL_KEYS = (
    "api_key",
    "product_tag_key",
    "data_center",
    "base_url",
    "user_attribute_map",
    "account_attribute_map",
    "global_context",
    "limit_api_for_group",
    "delivery",
)
DELIVERY_KEYS = ("concurrency", "rate_limit", "max_retries", "timeout", "max_outage", "upsert", "daily_budget")
UPSERT_ORDERS = UPSERT_MODES  # MAPPING.md "Upserts": two orders, and update-only / create-only for backfills
MAP_ROW_KEYS = ("from", "to")

# Command-line flag behind each override key, for error messages.
OVERRIDE_FLAGS = {
    "concurrency": "--concurrency",
    "rate_limit": "--rate-limit",
    "max_retries": "--max-retries",
    "timeout": "--timeout",
    "max_outage": "--max-outage",
    "upsert": "--upsert",
    "daily_budget": "--daily-budget",
    "limit_api_for_group": "--limit-api-for-group",
}

STARTER_CONFIG = """\
# gspx configuration (CLI.md "Config file").
# Keep the API key out of this file: set it in the environment instead,
#   export GSPX_API_KEY=...
# (GSPX_API_KEY wins over an api_key written here). If you do write api_key here,
# make the file private: chmod 600 gspx.yaml
# api_key: "..."

# Required: the product tag key of your Gainsight PX product.
product_tag_key: AP-XXXXXXXXXX-2

# US | EU | US2
data_center: US
# Instead of data_center: a proxy, or a local stand-in such as `gspx sandbox`
# (https://, or http:// to localhost / 127.0.0.1 / ::1 only).
# base_url: http://127.0.0.1:8080/v1

# RudderStack trait -> PX custom attribute. Traits that are PX default
# attributes (email, city, ...) are sent anyway and cannot be mapped.
# RudderStack's dashboard form also works: a list of {from: ..., to: ...}.
user_attribute_map:
  hobbyCustomField: hobby

account_attribute_map:
  cultureCustomField: culture

# Default globalContext for custom events (an event's own globalContext wins).
global_context:
  projectId: p-123

# true: the fewer-calls group flow (MAPPING.md).
limit_api_for_group: false

delivery:
  concurrency: 8       # requests in flight at once, 1 to 256
  rate_limit: 100      # requests per second at most, all requests counted
  max_retries: 5       # retries of one request after a retryable failure
  timeout: 10          # seconds per request
  max_outage: 10800    # seconds to hold events while PX is unavailable (3 h), then stop with exit 4
  upsert: update-first # or create-first, for a subscription that is still empty; for a backfill,
  #                    # update-only never creates, create-only never overwrites (MAPPING.md "Upserts")
  # daily_budget: 600000 # requests per UTC day at most, then stop with exit 5 (PX allows ~1,000,000
  #                      # per day per subscription, shared with your live pipeline)
"""


@dataclass(frozen=True)
class DeliverySettings:
    """How requests are made: parallelism, pace, retries, timeout."""

    concurrency: int = 8
    rate_limit: float = 100.0  # requests per second, all requests counted
    max_retries: int = 5
    timeout: float = 10.0  # seconds per request
    # seconds to hold events while PX is unavailable before the run stops (exit 4); 3 h, as long as
    # RudderStack's own router retries a failing destination (Router.retryTimeWindow 180 min)
    max_outage: float = 10800.0
    upsert: str = "update-first"  # MAPPING.md "Upserts": right where the PX tag runs and objects exist
    daily_budget: int | None = None  # requests per UTC day at most (exit 5); None: no budget


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; the API key never shows in repr."""

    product_tag_key: str
    base_url: str  # resolved: base_url from the config, else the data center's URL; no trailing slash
    api_key: str | None = field(default=None, repr=False)
    data_center: str = "US"
    user_attribute_map: dict = field(default_factory=dict)  # RudderStack trait -> PX custom attribute
    account_attribute_map: dict = field(default_factory=dict)
    global_context: dict = field(default_factory=dict)
    limit_api_for_group: bool = False
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    source: str | None = None  # the config file path, for messages
    warnings: tuple = ()  # found while loading (ignored map entries, readable key file)
    base_url_from: str = "data_center"  # "data_center" or "base_url": which key gave base_url
    api_key_from: str | None = None  # "GSPX_API_KEY", "config file" or None when no key


def load_settings(path=None, *, env=None, overrides=None, require_api_key=True):
    """Load Settings, layering the config file < environment (GSPX_API_KEY) < flags (overrides)."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    source = str(path)
    loader = _Loader(source)
    data = _read_yaml(source)
    settings = loader.settings_from(data)
    warnings = list(loader.warnings)

    if "api_key" in data and data["api_key"] is not None and _readable_by_others(source):
        warnings.append(
            f"{source}: holds api_key and can be read by other users; "
            f"run `chmod 600 {source}` or remove api_key and set {API_KEY_ENV} instead"
        )

    # Environment: GSPX_API_KEY wins over the file (CLI.md); an empty variable counts as unset.
    env_key = env.get(API_KEY_ENV)
    if env_key is not None and env_key.strip():
        api_key = _check_api_key(env_key, file=None, key=API_KEY_ENV)
        settings = replace(settings, api_key=api_key, api_key_from=API_KEY_ENV)

    settings = _apply_overrides(settings, overrides or {})

    if require_api_key and settings.api_key is None:
        raise ConfigError(
            f"an API key is required: set api_key in the config file or the {API_KEY_ENV} "
            "environment variable (or use --dry-run, which needs none)",
            file=source,
            key="api_key",
        )
    return replace(settings, warnings=tuple(warnings))


def describe_settings(settings):
    """The effective settings as (label, value) rows for `gspx check`; the API key is masked."""
    if settings.base_url_from == "base_url":
        url = f"{settings.base_url} (from base_url; data_center is not used)"
    else:
        url = f"{settings.base_url} (from data_center {settings.data_center})"
    if settings.api_key is None:
        key = "not set"
    else:
        key = _mask_key(settings.api_key)
        if settings.api_key_from:
            key += f" (from {settings.api_key_from})"
    d = settings.delivery
    return [
        ("config file", settings.source or "(none)"),
        ("base URL", url),
        ("api_key", key),
        ("product_tag_key", settings.product_tag_key),
        ("user_attribute_map", _describe_map(settings.user_attribute_map)),
        ("account_attribute_map", _describe_map(settings.account_attribute_map)),
        ("global_context", _describe_map(settings.global_context, json_values=True)),
        ("limit_api_for_group", "true" if settings.limit_api_for_group else "false"),
        ("delivery.concurrency", str(d.concurrency)),
        ("delivery.rate_limit", f"{d.rate_limit:g} requests/s"),
        ("delivery.max_retries", str(d.max_retries)),
        ("delivery.timeout", f"{d.timeout:g} s"),
        ("delivery.max_outage", f"{d.max_outage:g} s"),
        ("delivery.upsert", d.upsert + _UPSERT_NOTES.get(d.upsert, "")),
        ("delivery.daily_budget", f"{d.daily_budget:,} requests per UTC day" if d.daily_budget else "none"),
    ]


_UPSERT_NOTES = {  # what `gspx check` adds to the two modes that leave writes out
    "update-only": " (never creates: events of users and accounts not in PX are skipped)",
    "create-only": " (never overwrites: users and accounts that exist get no write)",
}


def _mask_key(api_key):
    # Showing the last 4 characters of a very short key would show most of it.
    if len(api_key) < 8:
        return "… (set)"
    return "…" + api_key[-4:]


def _describe_map(mapping, json_values=False):
    if not mapping:
        return "(empty)"
    if json_values:
        return ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in mapping.items())
    return ", ".join(f"{k} -> {v}" for k, v in mapping.items())


def _read_yaml(source):
    """Parse the config file with the safe loader; an empty file is an empty mapping."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found (create one with `gspx init`, pass -c PATH or set "
            f"{CONFIG_ENV})",
            file=source,
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML config file", file=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text ({exc.reason})", file=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", file=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        # A tag the safe loader does not know (e.g. !!python/object): refused, never executed.
        raise ConfigError(
            f"{_where(exc)}unsupported YAML tag ({exc.problem}); only plain YAML is allowed",
            file=source,
        ) from None
    except yaml.YAMLError as exc:
        # Only the problem and its line: the snippet YAML adds could echo an api_key.
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise ConfigError(f"{_where(exc)}invalid YAML: {problem}", file=source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of settings at the top level, got {_type_name(data)}", file=source
        )
    return data


def _where(exc):
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return ""
    return f"line {mark.line + 1}, column {mark.column + 1}: "


def _readable_by_others(source):
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


class _Loader:
    """Checks one parsed config file; every error names the file and the dotted key."""

    def __init__(self, source):
        self.source = source
        self.warnings = []

    def error(self, key, message):
        return ConfigError(message, file=self.source, key=key)

    def settings_from(self, data):
        self.check_keys(data, TOP_LEVEL_KEYS, prefix="")

        product_tag_key = data.get("product_tag_key")
        if product_tag_key is None:
            raise self.error(
                "product_tag_key", "is required: the product tag key, e.g. AP-XXXXXXXXXX-2"
            )
        product_tag_key = self.non_empty_string("product_tag_key", product_tag_key)

        api_key = data.get("api_key")
        if api_key is not None:
            api_key = _check_api_key(api_key, file=self.source, key="api_key")

        data_center = data.get("data_center")
        if data_center is None:
            data_center = "US"
        else:
            data_center = self.data_center(data_center)

        base_url = data.get("base_url")
        if base_url is None:
            base_url, base_url_from = DATA_CENTERS[data_center], "data_center"
        else:
            base_url, base_url_from = _check_base_url(base_url, file=self.source), "base_url"

        limit = data.get("limit_api_for_group")
        limit = False if limit is None else _check_bool(limit, self.source, "limit_api_for_group")

        return Settings(
            product_tag_key=product_tag_key,
            base_url=base_url,
            api_key=api_key,
            data_center=data_center,
            user_attribute_map=self.attribute_map("user_attribute_map", data, USER_DEFAULT_TRAITS),
            account_attribute_map=self.attribute_map(
                "account_attribute_map", data, ACCOUNT_DEFAULT_TRAITS
            ),
            global_context=self.global_context(data),
            limit_api_for_group=limit,
            delivery=self.delivery(data.get("delivery")),
            source=self.source,
            base_url_from=base_url_from,
            api_key_from="config file" if api_key is not None else None,
        )

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
            raise self.error(key, f"expected a string, got {_type_name(value)}")
        value = value.strip()
        if not value:
            raise self.error(key, "expected a non-empty string")
        return value

    def data_center(self, value):
        allowed = ", ".join(DATA_CENTERS)
        if not isinstance(value, str):
            raise self.error("data_center", f"expected one of {allowed}, got {_got(value)}")
        upper = value.strip().upper()
        if upper not in DATA_CENTERS:
            raise self.error("data_center", f"expected one of {allowed}, got {value!r}")
        return upper

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
                        where, f"expected a {{from: ..., to: ...}} row, got {_type_name(row)}"
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
            f"got {_type_name(value)}",
        )

    def map_key(self, where, key):
        if not isinstance(key, str) or not key.strip():
            raise self.error(
                where, f"expected a non-empty string as the name, got {_type_name(key)} (quote it)"
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
                    f"got {_type_name(raw_value)}",
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
            f"got {_type_name(value)}",
        )

    def delivery(self, value):
        if value is None:
            return DeliverySettings()
        if not isinstance(value, dict):
            raise self.error("delivery", f"expected a mapping, got {_type_name(value)}")
        self.check_keys(value, DELIVERY_KEYS, prefix="delivery.")
        checked = {
            name: _check_delivery(name, value[name], self.source, f"delivery.{name}")
            for name in DELIVERY_KEYS
            if value.get(name) is not None
        }
        return DeliverySettings(**checked)


def _apply_overrides(settings, overrides):
    """Flags win over the file; None means the flag was not given."""
    unknown = set(overrides) - set(OVERRIDE_FLAGS)
    if unknown:
        raise ValueError(f"unknown override(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if "limit_api_for_group" in given:
        flag = OVERRIDE_FLAGS["limit_api_for_group"]
        limit = _check_bool(given.pop("limit_api_for_group"), None, flag)
        settings = replace(settings, limit_api_for_group=limit)
    if given:
        delivery = replace(
            settings.delivery,
            **{k: _check_delivery(k, v, None, OVERRIDE_FLAGS[k]) for k, v in given.items()},
        )
        settings = replace(settings, delivery=delivery)
    return settings


def _check_delivery(name, value, file, key):
    """Type and range of one delivery setting (CLI.md "Ranges")."""
    if name == "upsert":
        if value not in UPSERT_ORDERS:
            raise ConfigError(f"expected {', '.join(UPSERT_ORDERS[:-1])} or {UPSERT_ORDERS[-1]}, got {_got(value)}", file=file, key=key)
        return value
    if name in ("concurrency", "max_retries", "daily_budget"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected a whole number, got {_got(value)}", file=file, key=key)
        if name == "concurrency" and not 1 <= value <= MAX_CONCURRENCY:
            raise ConfigError(f"expected 1 to {MAX_CONCURRENCY}, got {value}", file=file, key=key)
        if name == "max_retries" and value < 0:
            raise ConfigError(f"expected 0 or more, got {value}", file=file, key=key)
        if name == "daily_budget" and value < 1:
            raise ConfigError(f"expected 1 or more, got {value}", file=file, key=key)
        return value
    # rate_limit (requests per second) and timeout (seconds): any positive number; max_outage: 0 or more
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected a number, got {_got(value)}", file=file, key=key)
    if name == "max_outage":
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"expected a number of seconds, 0 or more, got {value}", file=file, key=key)
        return float(value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"expected a number greater than 0, got {value}", file=file, key=key)
    return float(value)


def _check_bool(value, file, key):
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_got(value)}", file=file, key=key)
    return value


def _check_api_key(value, *, file, key):
    """A usable key; messages never echo the value."""
    if not isinstance(value, str):
        raise ConfigError(
            f"expected a string (quote it), got {_type_name(value)}", file=file, key=key
        )
    value = value.strip()
    if not value:
        raise ConfigError("expected a non-empty string", file=file, key=key)
    # A key with spaces or control characters cannot go into an HTTP header, and requests
    # would echo it in its own error.
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError("must not contain spaces or control characters", file=file, key=key)
    return value


def _check_base_url(value, *, file):
    """https://, or http:// to a loopback host (CLI.md); returned without a trailing slash."""
    key = "base_url"
    expected = "expected an https:// URL, or http:// to localhost, 127.0.0.0/8 or [::1]"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{expected}, got {_type_name(value)}", file=file, key=key)
    url = value.strip()
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
    if scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{expected}; plain http:// would send the API key unencrypted to {parts.hostname}",
            file=file,
            key=key,
        )
    return url.rstrip("/")


def _is_loopback(host):
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _got(value):
    """The value as written, for messages about keys other than api_key (never echoed)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (str, int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return _type_name(value)


def _type_name(value):
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
