"""Settings from the YAML config, the environment and command-line flags (CLI.md "Config file")."""

import os
import stat

import yaml

from gspx_cli.config_values import FileChecks, check_api_key, check_base_url, check_bool, check_delivery, got, type_name
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


_REQUIRED = object()


class _Frozen:
    """What @dataclass(frozen=True) made of the settings, written out: @dataclass generates and compiles
    its methods at every start (issue 22). FIELDS in order, each with its default (_REQUIRED: none; a
    type: a new one per object); HIDDEN fields stay out of repr."""

    FIELDS = ()
    HIDDEN = ()

    def __init__(self, *args, **given):
        names = [name for name, _ in self.FIELDS]
        given.update(zip(names, args))
        unknown = set(given) - set(names)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected field(s) {', '.join(sorted(unknown))}")
        for name, default in self.FIELDS:
            if name in given:
                value = given[name]
            elif default is _REQUIRED:
                raise TypeError(f"{type(self).__name__}: missing field {name}")
            else:
                value = default() if isinstance(default, type) else default
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    __delattr__ = __setattr__

    def _fields(self):
        return tuple(getattr(self, name) for name, _ in self.FIELDS)

    def __eq__(self, other):
        return self._fields() == other._fields() if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self.FIELDS if n not in self.HIDDEN)
        return f"{type(self).__qualname__}({shown})"


def replace(settings, **changes):
    """A copy with some fields changed, as dataclasses.replace made it."""
    return type(settings)(**{**vars(settings), **changes})


class DeliverySettings(_Frozen):
    """How requests are made: parallelism, pace, retries, timeout."""

    FIELDS = (
        ("concurrency", 8),
        ("rate_limit", 100.0),  # requests per second, all requests counted
        ("max_retries", 5),
        ("timeout", 10.0),  # seconds per request
        # seconds to hold events while PX is unavailable before the run stops (exit 4); 3 h, as long as
        # RudderStack's own router retries a failing destination (Router.retryTimeWindow 180 min)
        ("max_outage", 10800.0),
        ("upsert", "update-first"),  # MAPPING.md "Upserts": right where the PX tag runs and objects exist
        ("daily_budget", None),  # requests per UTC day at most (exit 5); None: no budget
    )


class Settings(_Frozen):
    """Everything a run needs; the API key never shows in repr."""

    FIELDS = (
        ("product_tag_key", _REQUIRED),
        ("base_url", _REQUIRED),  # resolved: base_url from the config, else the data center's URL; no trailing slash
        ("api_key", None),
        ("data_center", "US"),
        ("user_attribute_map", dict),  # RudderStack trait -> PX custom attribute
        ("account_attribute_map", dict),
        ("global_context", dict),
        ("limit_api_for_group", False),
        ("delivery", DeliverySettings),
        ("source", None),  # the config file path, for messages
        ("warnings", ()),  # found while loading (ignored map entries, readable key file)
        ("base_url_from", "data_center"),  # "data_center" or "base_url": which key gave base_url
        ("api_key_from", None),  # "GSPX_API_KEY", "config file" or None when no key
    )
    HIDDEN = ("api_key",)


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
        api_key = check_api_key(env_key, file=None, key=API_KEY_ENV)
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
        import json  # only `gspx check` shows the map

        return ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in mapping.items())
    return ", ".join(f"{k} -> {v}" for k, v in mapping.items())


def _read_yaml(source):
    """Parse the config file with the safe loader; an empty file is an empty mapping."""
    try:
        with open(_as_pathlib_would(source), encoding="utf-8") as fh:
            text = fh.read()
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
            f"expected a mapping of settings at the top level, got {type_name(data)}", file=source
        )
    return data


def _as_pathlib_would(source):
    """The path Path(source) named, without importing pathlib (~3 ms of start-up): empty and "." parts
    dropped, so `gspx.yaml/` reads the file and "" is the current folder, as before."""
    parts = [part for part in source.split("/") if part not in ("", ".")]
    return ("/" if source.startswith("/") else "") + "/".join(parts) or "."


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


class _Loader(FileChecks):
    """Checks one parsed config file into Settings; every error names the file and the dotted key."""

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
            api_key = check_api_key(api_key, file=self.source, key="api_key")

        data_center = data.get("data_center")
        if data_center is None:
            data_center = "US"
        else:
            data_center = self.data_center(data_center)

        base_url = data.get("base_url")
        if base_url is None:
            base_url, base_url_from = DATA_CENTERS[data_center], "data_center"
        else:
            base_url, base_url_from = check_base_url(base_url, file=self.source), "base_url"

        limit = data.get("limit_api_for_group")
        limit = False if limit is None else check_bool(limit, self.source, "limit_api_for_group")

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

    def data_center(self, value):
        allowed = ", ".join(DATA_CENTERS)
        if not isinstance(value, str):
            raise self.error("data_center", f"expected one of {allowed}, got {got(value)}")
        upper = value.strip().upper()
        if upper not in DATA_CENTERS:
            raise self.error("data_center", f"expected one of {allowed}, got {value!r}")
        return upper

    def delivery(self, value):
        if value is None:
            return DeliverySettings()
        if not isinstance(value, dict):
            raise self.error("delivery", f"expected a mapping, got {type_name(value)}")
        self.check_keys(value, DELIVERY_KEYS, prefix="delivery.")
        checked = {
            name: check_delivery(name, value[name], self.source, f"delivery.{name}")
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
        limit = check_bool(given.pop("limit_api_for_group"), None, flag)
        settings = replace(settings, limit_api_for_group=limit)
    if given:
        delivery = replace(
            settings.delivery,
            **{k: check_delivery(k, v, None, OVERRIDE_FLAGS[k]) for k, v in given.items()},
        )
        settings = replace(settings, delivery=delivery)
    return settings
