"""load_settings / describe_settings against CLI.md "Config file (YAML)"."""

import os
import textwrap
from pathlib import Path

import pytest

from gspx_cli.config import (
    DATA_CENTERS,
    STARTER_CONFIG,
    DeliverySettings,
    describe_settings,
    load_settings,
)
from gspx_cli.errors import ConfigError, ExitCode

SECRET = "sekrit-KEY-0123456789-abcd"
MINIMAL = "product_tag_key: AP-TEST-2\n"


def write(tmp_path, text, name="gspx.yaml", mode=0o600):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    os.chmod(path, mode)
    return path


def load(path, **kwargs):
    kwargs.setdefault("env", {})
    kwargs.setdefault("require_api_key", False)
    return load_settings(path, **kwargs)


def config_error(path, **kwargs):
    with pytest.raises(ConfigError) as info:
        load(path, **kwargs)
    return info.value


# --- the happy path ------------------------------------------------------------------------------


def test_full_config_from_cli_md_loads_with_every_field(tmp_path):
    path = write(
        tmp_path,
        f"""\
        api_key: "{SECRET}"
        product_tag_key: AP-XXXXXXXXXX-2
        data_center: eu
        user_attribute_map:
          hobbyCustomField: hobby
        account_attribute_map:
          cultureCustomField: culture
        global_context:
          projectId: p-123
        limit_api_for_group: true
        delivery:
          concurrency: 16
          rate_limit: 2.5
          max_retries: 0
          timeout: 3
        """,
    )
    s = load(path, require_api_key=True)
    assert s.api_key == SECRET
    assert s.api_key_from == "config file"
    assert s.product_tag_key == "AP-XXXXXXXXXX-2"
    assert s.data_center == "EU"
    assert s.base_url == DATA_CENTERS["EU"]
    assert s.base_url_from == "data_center"
    assert s.user_attribute_map == {"hobbyCustomField": "hobby"}
    assert s.account_attribute_map == {"cultureCustomField": "culture"}
    assert s.global_context == {"projectId": "p-123"}
    assert s.limit_api_for_group is True
    assert s.delivery == DeliverySettings(concurrency=16, rate_limit=2.5, max_retries=0, timeout=3.0)
    assert s.source == str(path)
    assert s.warnings == ()


def test_minimal_config_gets_defaults(tmp_path):
    s = load(write(tmp_path, MINIMAL))
    assert s.data_center == "US"
    assert s.base_url == "https://api.aptrinsic.com/v1"
    assert s.api_key is None
    assert s.user_attribute_map == {} and s.account_attribute_map == {} and s.global_context == {}
    assert s.limit_api_for_group is False
    assert s.delivery == DeliverySettings()


def test_null_values_mean_defaults(tmp_path):
    path = write(
        tmp_path,
        MINIMAL
        + "api_key:\ndata_center:\nuser_attribute_map:\naccount_attribute_map:\n"
        + "global_context:\nlimit_api_for_group:\ndelivery:\n",
    )
    s = load(path)
    assert s.api_key is None and s.data_center == "US" and s.user_attribute_map == {}
    assert s.delivery == DeliverySettings()


@pytest.mark.parametrize("given, stored", [("US", "US"), ("eu", "EU"), ("Us2", "US2"), (" us ", "US")])
def test_data_center_accepts_any_case(tmp_path, given, stored):
    s = load(write(tmp_path, MINIMAL + f"data_center: '{given}'\n"))
    assert s.data_center == stored
    assert s.base_url == DATA_CENTERS[stored]


# --- where the config file is --------------------------------------------------------------------


def test_path_defaults_to_gspx_config_env(tmp_path):
    path = write(tmp_path, MINIMAL, name="elsewhere.yaml")
    s = load_settings(env={"GSPX_CONFIG": str(path)}, require_api_key=False)
    assert s.source == str(path)


def test_path_defaults_to_gspx_yaml_in_current_directory(tmp_path, monkeypatch):
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={}, require_api_key=False)
    assert s.source == "./gspx.yaml"


def test_missing_file_is_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    err = config_error(missing)
    assert err.exit_code == ExitCode.CONFIG
    assert err.file == str(missing)
    assert "not found" in str(err) and str(missing) in str(err)


def test_directory_instead_of_file_is_a_config_error(tmp_path):
    err = config_error(tmp_path)
    assert err.file == str(tmp_path)


def test_empty_file_is_an_empty_mapping_so_product_tag_key_is_missing(tmp_path):
    err = config_error(write(tmp_path, ""))
    assert err.key == "product_tag_key"
    assert "required" in str(err)


# --- YAML syntax and the safe loader -------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "delivery:\n  concurrency: [8\n")
    err = config_error(path)
    assert err.file == str(path)
    assert "invalid YAML" in str(err)
    assert "line " in str(err)


def test_yaml_syntax_error_does_not_echo_the_line_holding_the_key(tmp_path):
    path = write(tmp_path, f'api_key: "{SECRET}\n' + MINIMAL + "x: [\n")
    err = config_error(path)
    assert SECRET not in str(err)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch {marker}']\n",
        MINIMAL + "global_context: !!python/object/apply:os.system ['touch {marker}']\n",
        MINIMAL + "global_context:\n  x: !!python/name:os.system\n",
    ],
)
def test_safe_loader_refuses_python_tags_without_running_them(tmp_path, text):
    marker = tmp_path / "ran"
    path = write(tmp_path, text.format(marker=marker))
    err = config_error(path)
    assert err.file == str(path)
    assert "tag" in str(err)
    assert not marker.exists()


@pytest.mark.parametrize("text, got", [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    err = config_error(write(tmp_path, text))
    assert "mapping" in str(err) and got in str(err)


# --- every check names file, key and what was expected -------------------------------------------

# (config text after MINIMAL, the key named, words of the expectation)
BAD_VALUES = [
    ("user_atribute_map: {}\n", "user_atribute_map", "did you mean `user_attribute_map`?"),
    ("acount_attribute_map: {}\n", "acount_attribute_map", "did you mean `account_attribute_map`?"),
    ("zzz: 1\n", "zzz", "expected one of"),  # nothing close: list the keys instead
    ("delivery:\n  concurency: 8\n", "delivery.concurency", "did you mean `delivery.concurrency`?"),
    ("delivery:\n  retries: 8\n", "delivery.retries", "did you mean `delivery.max_retries`?"),
    ("delivery: 8\n", "delivery", "expected a mapping"),
    ("delivery:\n  concurrency: eight\n", "delivery.concurrency", "expected a whole number, got 'eight'"),
    ("delivery:\n  concurrency: true\n", "delivery.concurrency", "expected a whole number"),  # bool is not int
    ("delivery:\n  concurrency: 8.5\n", "delivery.concurrency", "expected a whole number"),
    ("delivery:\n  concurrency: 0\n", "delivery.concurrency", "expected 1 to 256"),
    ("delivery:\n  concurrency: 257\n", "delivery.concurrency", "expected 1 to 256"),
    ("delivery:\n  rate_limit: 0\n", "delivery.rate_limit", "greater than 0"),
    ("delivery:\n  rate_limit: -1.5\n", "delivery.rate_limit", "greater than 0"),
    ("delivery:\n  rate_limit: .inf\n", "delivery.rate_limit", "greater than 0"),
    ("delivery:\n  rate_limit: '100'\n", "delivery.rate_limit", "expected a number"),  # quoted: a string
    ("delivery:\n  rate_limit: false\n", "delivery.rate_limit", "expected a number"),
    ("delivery:\n  max_retries: -1\n", "delivery.max_retries", "0 or more"),
    ("delivery:\n  max_retries: 1.0\n", "delivery.max_retries", "expected a whole number"),
    ("delivery:\n  timeout: 0\n", "delivery.timeout", "greater than 0"),
    ("delivery:\n  timeout: 1s\n", "delivery.timeout", "expected a number"),
    ("delivery:\n  max_outage: -1\n", "delivery.max_outage", "0 or more"),
    ("delivery:\n  max_outage: .inf\n", "delivery.max_outage", "0 or more"),  # no hold lasts forever
    ("delivery:\n  max_outage: 3h\n", "delivery.max_outage", "expected a number"),
    ("data_center: APAC\n", "data_center", "expected one of US, EU, US2"),
    ("data_center: 1\n", "data_center", "expected one of US, EU, US2"),
    ("limit_api_for_group: 'yes'\n", "limit_api_for_group", "expected true or false"),
    ("limit_api_for_group: 1\n", "limit_api_for_group", "expected true or false"),
    ("user_attribute_map: hobby\n", "user_attribute_map", "expected a mapping or a list"),
    ("user_attribute_map:\n  hobby: 3\n", "user_attribute_map.hobby", "expected a non-empty string"),
    ("user_attribute_map:\n  hobby: ''\n", "user_attribute_map.hobby", "expected a non-empty string"),
    ("user_attribute_map:\n  hobby: '  '\n", "user_attribute_map.hobby", "expected a non-empty string"),
    ("user_attribute_map:\n  - {from: a, to: ' '}\n", "user_attribute_map[0].to", "expected a non-empty string"),
    ("user_attribute_map:\n  hobby:\n", "user_attribute_map.hobby", "expected a non-empty string"),
    ("user_attribute_map:\n  123: x\n", "user_attribute_map.123", "expected a non-empty string as the name"),
    ("account_attribute_map:\n  - {from: a, to: ''}\n", "account_attribute_map[0].to", "non-empty string"),
    ("account_attribute_map:\n  - {from: a}\n", "account_attribute_map[0].to", "non-empty string"),
    ("account_attribute_map:\n  - {from: a, too: b}\n", "account_attribute_map[0].too", "did you mean"),
    ("account_attribute_map:\n  - a\n", "account_attribute_map[0]", "{from: ..., to: ...}"),
    ("global_context: [1, 2]\n", "global_context[0]", "{from: ..., to: ...}"),
    ("global_context:\n  x: .nan\n", "global_context.x", "finite number"),
    ("global_context:\n  x: !!binary aGk=\n", "global_context.x", "expected a JSON value"),
    ("global_context:\n  x: {1: a}\n", "global_context.x.1", "non-empty string as the name"),
]


@pytest.mark.parametrize("extra, key, expected", BAD_VALUES)
def test_bad_value_error_names_file_key_and_expectation(tmp_path, extra, key, expected):
    path = write(tmp_path, MINIMAL + extra)
    err = config_error(path)
    assert err.exit_code == ExitCode.CONFIG
    assert err.file == str(path)
    assert err.key == key
    message = str(err)
    assert message.startswith(f"{path}: {key}: ")
    assert expected in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("data_center: US\n", "product_tag_key"),
        ("product_tag_key: ''\n", "product_tag_key"),
        ("product_tag_key: '   '\n", "product_tag_key"),
        ("product_tag_key: 12\n", "product_tag_key"),
        ("product_tag_key: [a]\n", "product_tag_key"),
    ],
)
def test_product_tag_key_is_a_required_non_empty_string(tmp_path, text, key):
    err = config_error(write(tmp_path, text))
    assert err.key == key and err.file is not None


def test_rate_limit_and_timeout_accept_int_or_float(tmp_path):
    s = load(write(tmp_path, MINIMAL + "delivery:\n  rate_limit: 7\n  timeout: 0.5\n"))
    assert s.delivery.rate_limit == 7.0 and s.delivery.timeout == 0.5


@pytest.mark.parametrize("n", [1, 256])
def test_concurrency_bounds_are_inclusive(tmp_path, n):
    assert load(write(tmp_path, MINIMAL + f"delivery:\n  concurrency: {n}\n")).delivery.concurrency == n


# --- the API key ---------------------------------------------------------------------------------


def test_api_key_required_unless_dry_run(tmp_path):
    path = write(tmp_path, MINIMAL)
    err = config_error(path, require_api_key=True)
    assert err.key == "api_key" and err.file == str(path)
    assert "GSPX_API_KEY" in str(err)
    assert load(path, require_api_key=False).api_key is None


def test_env_api_key_wins_over_file(tmp_path):
    path = write(tmp_path, MINIMAL + 'api_key: "from-file-1234"\n')
    s = load(path, env={"GSPX_API_KEY": "from-env-5678"}, require_api_key=True)
    assert s.api_key == "from-env-5678"
    assert s.api_key_from == "GSPX_API_KEY"


def test_env_api_key_alone_is_enough(tmp_path):
    s = load(write(tmp_path, MINIMAL), env={"GSPX_API_KEY": SECRET}, require_api_key=True)
    assert s.api_key == SECRET


def test_empty_env_api_key_counts_as_unset(tmp_path):
    path = write(tmp_path, MINIMAL)
    err = config_error(path, env={"GSPX_API_KEY": ""}, require_api_key=True)
    assert err.key == "api_key"


@pytest.mark.parametrize(
    "text",
    [
        "api_key: 123456789012\n",  # a number: must be quoted
        "api_key: ''\n",
        "api_key: [a]\n",
        'api_key: "abc def-sekrit"\n',
    ],
)
def test_bad_api_key_is_an_error_that_does_not_echo_it(tmp_path, text):
    err = config_error(write(tmp_path, MINIMAL + text))
    assert err.key == "api_key"
    for fragment in ("123456789012", "sekrit"):
        assert fragment not in str(err)


def test_bad_env_api_key_names_the_variable_without_echoing_it(tmp_path):
    err = config_error(write(tmp_path, MINIMAL), env={"GSPX_API_KEY": "abc\ndef-sekrit"})
    assert err.key == "GSPX_API_KEY"
    assert "sekrit" not in str(err)


def test_api_key_never_in_repr(tmp_path):
    s = load(write(tmp_path, MINIMAL + f'api_key: "{SECRET}"\n'))
    assert SECRET not in repr(s)
    assert SECRET not in str(s)


def test_api_key_never_in_errors_about_other_keys(tmp_path):
    path = write(tmp_path, f'api_key: "{SECRET}"\n' + MINIMAL + "delivery:\n  concurrency: lots\n")
    err = config_error(path)
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_readable_key_file_warns_with_chmod_and_env_hint(tmp_path):
    path = write(tmp_path, MINIMAL + f'api_key: "{SECRET}"\n', mode=0o644)
    s = load(path)
    assert len(s.warnings) == 1
    assert f"chmod 600 {path}" in s.warnings[0]
    assert "GSPX_API_KEY" in s.warnings[0]
    assert SECRET not in s.warnings[0]


@pytest.mark.parametrize(
    "text, mode",
    [
        (MINIMAL + f'api_key: "{SECRET}"\n', 0o600),  # private file
        (MINIMAL + f'api_key: "{SECRET}"\n', 0o400),
        (MINIMAL, 0o644),  # readable, but holds no key
        (MINIMAL + "api_key:\n", 0o644),  # null key: nothing to protect
    ],
)
def test_no_permission_warning_when_private_or_keyless(tmp_path, text, mode):
    assert load(write(tmp_path, text, mode=mode)).warnings == ()


# --- base_url ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, stored",
    [
        ("https://proxy.example.com/v1", "https://proxy.example.com/v1"),
        ("https://proxy.example.com/v1/", "https://proxy.example.com/v1"),  # trailing slash stripped
        ("http://localhost:8080/v1", "http://localhost:8080/v1"),
        ("http://LOCALHOST/v1/", "http://LOCALHOST/v1"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("http://127.45.6.7/", "http://127.45.6.7"),  # all of 127.0.0.0/8
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
    ],
)
def test_base_url_accepted_and_wins_over_data_center(tmp_path, given, stored):
    s = load(write(tmp_path, MINIMAL + f"data_center: EU\nbase_url: '{given}'\n"))
    assert s.base_url == stored
    assert s.base_url_from == "base_url"


@pytest.mark.parametrize(
    "given",
    [
        "http://example.com/v1",  # plain http off the machine
        "http://10.0.0.1/v1",
        "http://128.0.0.1/v1",
        "http://localhost.example.com/v1",
        "http://[::2]/v1",
        "ftp://127.0.0.1/v1",
        "api.aptrinsic.com/v1",  # no scheme
        "https://",  # no host
        "https://user:pw@proxy.example.com/v1",  # credentials would show in `gspx check`
        "https://proxy.example.com/v1?x=1",
        "http://127.0.0.1:99999/v1",  # bad port
        "",
    ],
)
@pytest.mark.parametrize("require_api_key", [True, False])  # False: --dry-run checks it too
def test_base_url_rejected_naming_base_url(tmp_path, given, require_api_key):
    path = write(tmp_path, MINIMAL + f"base_url: '{given}'\n")
    err = config_error(path, require_api_key=require_api_key, env={"GSPX_API_KEY": SECRET})
    assert err.key == "base_url" and err.file == str(path)


def test_base_url_must_be_a_string(tmp_path):
    err = config_error(write(tmp_path, MINIMAL + "base_url: 8080\n"))
    assert err.key == "base_url"


def test_bad_data_center_is_an_error_even_with_base_url(tmp_path):
    err = config_error(write(tmp_path, MINIMAL + "data_center: XX\nbase_url: https://p.example/v1\n"))
    assert err.key == "data_center"


# --- the three maps ------------------------------------------------------------------------------


def test_maps_accept_rudderstack_dashboard_list_form(tmp_path):
    path = write(
        tmp_path,
        MINIMAL
        + """\
user_attribute_map:
  - {from: hobbyCustomField, to: hobby}
  - {from: '', to: ignored}
  - {to: also-ignored}
  - {from: null, to: x}
  - {from: '', to: ''}
account_attribute_map:
  - from: cultureCustomField
    to: culture
global_context:
  - {from: projectId, to: p-123}
  - {from: count, to: 3}
  - {from: tags, to: [a, b]}
  - {from: '', to: whatever}
""",
    )
    s = load(path)
    assert s.user_attribute_map == {"hobbyCustomField": "hobby"}
    assert s.account_attribute_map == {"cultureCustomField": "culture"}
    assert s.global_context == {"projectId": "p-123", "count": 3, "tags": ["a", "b"]}


def test_both_map_forms_load_to_the_same_settings(tmp_path):
    as_mapping = load(write(tmp_path, MINIMAL + "user_attribute_map: {a: x, b: y}\n", name="m.yaml"))
    as_list = load(
        write(tmp_path, MINIMAL + "user_attribute_map: [{from: a, to: x}, {from: b, to: y}]\n", name="l.yaml")
    )
    assert as_mapping.user_attribute_map == as_list.user_attribute_map == {"a": "x", "b": "y"}


def test_empty_list_map_is_empty(tmp_path):
    assert load(write(tmp_path, MINIMAL + "user_attribute_map: []\n")).user_attribute_map == {}


def test_global_context_keeps_any_json_value_and_turns_dates_into_text(tmp_path):
    path = write(
        tmp_path,
        MINIMAL
        + """\
global_context:
  s: text
  n: 1.5
  b: true
  z: null
  nested: {a: [1, {b: 2}]}
  day: 2024-05-01
""",
    )
    assert load(path).global_context == {
        "s": "text",
        "n": 1.5,
        "b": True,
        "z": None,
        "nested": {"a": [1, {"b": 2}]},
        "day": "2024-05-01",  # YAML reads this as a date; bodies are JSON
    }


@pytest.mark.parametrize(
    "map_name, trait",
    [
        ("user_attribute_map", "email"),
        ("user_attribute_map", "city"),  # location trait
        ("user_attribute_map", "firstname"),  # name alias
        ("user_attribute_map", "name"),
        ("account_attribute_map", "industry"),
        ("account_attribute_map", "city"),
    ],
)
def test_map_entry_for_default_trait_is_dropped_with_warning(tmp_path, map_name, trait):
    path = write(tmp_path, MINIMAL + f"{map_name}:\n  {trait}: px{trait}\n  keepMe: kept\n")
    s = load(path)
    assert getattr(s, map_name) == {"keepMe": "kept"}
    assert len(s.warnings) == 1
    assert f"`{trait}`" in s.warnings[0] and map_name in s.warnings[0] and str(path) in s.warnings[0]


def test_map_entry_for_default_trait_in_list_form_is_dropped_with_warning(tmp_path):
    s = load(write(tmp_path, MINIMAL + "user_attribute_map:\n  - {from: email, to: mail}\n"))
    assert s.user_attribute_map == {}
    assert "user_attribute_map[0]" in s.warnings[0]


def test_account_default_trait_is_fine_in_the_user_map(tmp_path):
    # `industry` is an account default attribute, not a user one.
    s = load(write(tmp_path, MINIMAL + "user_attribute_map:\n  industry: industry\n"))
    assert s.user_attribute_map == {"industry": "industry"} and s.warnings == ()


@pytest.mark.parametrize(
    "entries, expected, warned_entries",
    [
        # plain mapping form
        ('  hobbyCustomField: hobby\n', {"hobbyCustomField": "hobby"}, []),  # nothing to trim: no warning
        ('  " hobbyCustomField ": hobby\n', {"hobbyCustomField": "hobby"}, ["user_attribute_map. hobbyCustomField "]),
        ('  hobbyCustomField: " hobby\\t"\n', {"hobbyCustomField": "hobby"}, ["user_attribute_map.hobbyCustomField"]),
        ('  " a ": " x "\n', {"a": "x"}, ["user_attribute_map. a ", "user_attribute_map. a "]),  # key and value
        ('  "\\ta\\n": x\n', {"a": "x"}, ["user_attribute_map.\ta\n"]),
        # dashboard form
        ('  - {from: " a", to: x}\n', {"a": "x"}, ["user_attribute_map[0].from"]),
        ('  - {from: a, to: "x "}\n', {"a": "x"}, ["user_attribute_map[0].to"]),
        ('  - {from: " a ", to: " x "}\n', {"a": "x"}, ["user_attribute_map[0].from", "user_attribute_map[0].to"]),
    ],
)
def test_map_keys_and_values_are_trimmed_with_a_warning_naming_the_entry(tmp_path, entries, expected, warned_entries):
    path = write(tmp_path, MINIMAL + "user_attribute_map:\n" + entries)
    s = load(path)
    assert s.user_attribute_map == expected
    assert len(s.warnings) == len(warned_entries)
    for warning, entry in zip(s.warnings, warned_entries):
        assert warning.startswith(f"{path}: {entry}: ") and "trimmed to" in warning


@pytest.mark.parametrize(
    "map_name, entries",
    [
        ("user_attribute_map", '  " email ": mail\n'),
        ("user_attribute_map", '  - {from: "city ", to: town}\n'),
        ("account_attribute_map", '  "\\tindustry": sector\n'),
    ],
)
def test_default_attribute_check_applies_after_trimming(tmp_path, map_name, entries):
    s = load(write(tmp_path, MINIMAL + f"{map_name}:\n" + entries))
    assert getattr(s, map_name) == {}
    assert "trimmed to" in s.warnings[0] and "is a default attribute" in s.warnings[1]


def test_map_entries_that_differ_only_in_whitespace_are_mapped_twice(tmp_path):
    s = load(write(tmp_path, MINIMAL + 'user_attribute_map:\n  a: x\n  " a": y\n'))
    assert s.user_attribute_map == {"a": "y"}
    assert any("mapped twice" in w for w in s.warnings)


@pytest.mark.parametrize(
    "entries, entry",
    [
        # plain form: ignored like an empty `from` row, the entry after it still read
        ('  "   ": x\n  keep: kept\n', "user_attribute_map.   "),
        ('  "": x\n  keep: kept\n', "user_attribute_map."),
        ('  - {from: "  ", to: x}\n  - {from: keep, to: kept}\n', "user_attribute_map[0].from"),
        ('  - {from: "\\t", to: x}\n  - {from: keep, to: kept}\n', "user_attribute_map[0].from"),
    ],
)
def test_map_entry_whose_name_trims_to_nothing_is_ignored_with_a_warning(tmp_path, entries, entry):
    path = write(tmp_path, MINIMAL + "user_attribute_map:\n" + entries)
    s = load(path)
    assert s.user_attribute_map == {"keep": "kept"}
    (warning,) = s.warnings
    assert warning.startswith(f"{path}: {entry}: ") and "this map entry is ignored" in warning


@pytest.mark.parametrize("row", ["{from: '', to: x}", "{from: null, to: x}", "{to: x}"])
def test_dashboard_blank_rows_are_ignored_quietly(tmp_path, row):
    s = load(write(tmp_path, MINIMAL + f"user_attribute_map:\n  - {row}\n"))
    assert s.user_attribute_map == {} and s.warnings == ()


def test_duplicate_row_in_list_form_warns_and_last_wins(tmp_path):
    s = load(write(tmp_path, MINIMAL + "user_attribute_map: [{from: a, to: x}, {from: a, to: y}]\n"))
    assert s.user_attribute_map == {"a": "y"}
    assert "twice" in s.warnings[0]


# --- flags (overrides) ---------------------------------------------------------------------------

FILE_DELIVERY = MINIMAL + (
    "limit_api_for_group: false\n"
    "delivery:\n  concurrency: 4\n  rate_limit: 50\n  max_retries: 2\n  timeout: 5\n"
)


def test_overrides_win_over_file(tmp_path):
    overrides = {
        "concurrency": 32,
        "rate_limit": 7.5,
        "max_retries": 0,
        "timeout": 1,
        "limit_api_for_group": True,
    }
    s = load(write(tmp_path, FILE_DELIVERY), overrides=overrides)
    assert s.delivery == DeliverySettings(concurrency=32, rate_limit=7.5, max_retries=0, timeout=1.0)
    assert s.limit_api_for_group is True


def test_none_overrides_are_not_given(tmp_path):
    keys = ["concurrency", "rate_limit", "max_retries", "timeout", "limit_api_for_group"]
    overrides = dict.fromkeys(keys)
    s = load(write(tmp_path, FILE_DELIVERY), overrides=overrides)
    assert s.delivery == DeliverySettings(concurrency=4, rate_limit=50.0, max_retries=2, timeout=5.0)
    assert s.limit_api_for_group is False


def test_one_override_keeps_the_rest_of_the_file(tmp_path):
    s = load(write(tmp_path, FILE_DELIVERY), overrides={"rate_limit": 1})
    assert s.delivery == DeliverySettings(concurrency=4, rate_limit=1.0, max_retries=2, timeout=5.0)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"concurrency": 0}, "--concurrency"),
        ({"concurrency": 300}, "--concurrency"),
        ({"concurrency": True}, "--concurrency"),
        ({"rate_limit": 0}, "--rate-limit"),
        ({"rate_limit": -2.0}, "--rate-limit"),
        ({"max_retries": -1}, "--max-retries"),
        ({"timeout": 0}, "--timeout"),
        ({"max_outage": -5.0}, "--max-outage"),
        ({"limit_api_for_group": "yes"}, "--limit-api-for-group"),
    ],
)
def test_overrides_validated_with_the_same_ranges(tmp_path, overrides, key):
    err = config_error(write(tmp_path, MINIMAL), overrides=overrides)
    assert err.key == key
    assert err.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize("text, overrides, expected", [
    (MINIMAL, {}, 10800.0),  # 3 h, as long as RudderStack's router retries a destination
    (MINIMAL + "delivery:\n  max_outage: 0\n", {}, 0.0),  # stop at the first sign of an outage
    (MINIMAL + "delivery:\n  max_outage: 600\n", {}, 600.0),
    (MINIMAL + "delivery:\n  max_outage: 600\n", {"max_outage": 10.0}, 10.0),  # --max-outage wins
])
def test_max_outage_defaults_to_three_hours_and_the_flag_wins(tmp_path, text, overrides, expected):
    assert load(write(tmp_path, text), overrides=overrides).delivery.max_outage == expected


def test_unknown_override_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        load(write(tmp_path, MINIMAL), overrides={"concurency": 3})


# --- describe_settings ---------------------------------------------------------------------------


def test_describe_settings_masks_key_and_says_where_url_comes_from(tmp_path):
    path = write(tmp_path, MINIMAL + f'api_key: "{SECRET}"\ndata_center: us2\n')
    rows = dict(describe_settings(load(path)))
    assert rows["config file"] == str(path)
    assert rows["base URL"] == f"{DATA_CENTERS['US2']} (from data_center US2)"
    assert rows["api_key"] == "…abcd (from config file)"
    assert rows["product_tag_key"] == "AP-TEST-2"
    assert rows["delivery.concurrency"] == "8"
    assert rows["delivery.rate_limit"] == "100 requests/s"
    assert rows["limit_api_for_group"] == "false"
    assert all(SECRET not in value for value in rows.values())


def test_describe_settings_with_base_url_env_key_and_maps(tmp_path):
    path = write(
        tmp_path,
        MINIMAL + "base_url: http://127.0.0.1:8080/v1/\nuser_attribute_map: {a: x}\nglobal_context: {p: 1}\n",
    )
    rows = dict(describe_settings(load(path, env={"GSPX_API_KEY": SECRET})))
    assert rows["base URL"].startswith("http://127.0.0.1:8080/v1 (from base_url")
    assert rows["api_key"] == "…abcd (from GSPX_API_KEY)"
    assert rows["user_attribute_map"] == "a -> x"
    assert rows["account_attribute_map"] == "(empty)"
    assert rows["global_context"] == "p: 1"


def test_describe_settings_without_key_says_not_set(tmp_path):
    assert dict(describe_settings(load(write(tmp_path, MINIMAL))))["api_key"] == "not set"


def test_describe_settings_does_not_reveal_a_short_key(tmp_path):
    rows = dict(describe_settings(load(write(tmp_path, MINIMAL), env={"GSPX_API_KEY": "abcde"})))
    assert "abcde" not in rows["api_key"] and "bcde" not in rows["api_key"]


# --- starter config and example ------------------------------------------------------------------


def test_example_config_is_the_starter_config():
    example = Path(__file__).resolve().parents[1] / "config.example.yaml"
    assert example.read_text(encoding="utf-8") == STARTER_CONFIG


def test_starter_config_is_valid_for_dry_run_with_cli_md_values(tmp_path):
    s = load(write(tmp_path, STARTER_CONFIG))
    assert s.api_key is None
    assert s.product_tag_key == "AP-XXXXXXXXXX-2"
    assert s.data_center == "US" and s.base_url_from == "data_center"
    assert s.user_attribute_map == {"hobbyCustomField": "hobby"}
    assert s.account_attribute_map == {"cultureCustomField": "culture"}
    assert s.global_context == {"projectId": "p-123"}
    assert s.limit_api_for_group is False
    assert s.delivery == DeliverySettings()
    assert s.warnings == ()
    assert "GSPX_API_KEY" in STARTER_CONFIG


def test_starter_config_needs_a_key_for_a_real_run(tmp_path):
    err = config_error(write(tmp_path, STARTER_CONFIG), require_api_key=True)
    assert err.key == "api_key"


def test_a_config_path_is_read_as_pathlib_named_it(tmp_path, monkeypatch):
    # config.py opens the file without pathlib (start-up); the paths it names are the same as before
    path = write(tmp_path, MINIMAL)
    assert load(f"{path}/").product_tag_key == "AP-TEST-2"  # a trailing slash: still the file
    assert load(f"{tmp_path}//./gspx.yaml").product_tag_key == "AP-TEST-2"
    monkeypatch.chdir(tmp_path)
    assert "is a directory, expected a YAML config file" in str(config_error(""))  # Path("") is "."
