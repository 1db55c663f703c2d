"""The API key stays secret (issue 6): never in any output, plain http only to loopback, TLS always verified.

Every run goes through e2e.gspx(), which already asserts the key is absent from stdout and stderr;
conftest.py scans every file the suite wrote under pytest's basetemp for it at session end.
"""

import re
import traceback
from pathlib import Path

import pytest
import requests
import responses
from click.testing import CliRunner

import gspx_cli
from e2e import TAG, TEST_KEY, gspx, write_config, write_events
from gspx_cli import coordinator
from gspx_cli.delivery import executor
from gspx_cli.cli import cli
from gspx_cli.config import TOP_LEVEL_KEYS, DELIVERY_KEYS, describe_settings, load_settings
from gspx_cli.delivery.px import API_KEY_HEADER, PxClient

EVENTS = [
    {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}},
    {"type": "track", "userId": "u1", "event": "Clicked"},
    {"type": "track", "userId": "u1"},  # invalid: goes to the failed output
]
KEY_BYTES = TEST_KEY.encode()


def assert_no_key_in(*paths):
    for path in paths:
        assert KEY_BYTES not in Path(path).read_bytes(), path


def config_with_key(tmp_path, base_url, mode=0o600, name="keyed.yaml"):
    path = tmp_path / name
    path.write_text(f'api_key: "{TEST_KEY}"\nproduct_tag_key: {TAG}\nbase_url: {base_url}\n'
                    "delivery:\n  max_retries: 0\n  timeout: 2\n")
    path.chmod(mode)
    return str(path)


# ---- a real run's every output -------------------------------------------------------------------

@pytest.mark.parametrize("flags", [(), ("-v",), ("--verbose", "--no-progress"), ("-q",)])
def test_send_outputs_never_hold_the_key(px_server, tmp_path, flags):
    cfg = write_config(tmp_path, px_server.base_url)
    out = {n: tmp_path / n for n in ("failed.ndjson", "report.json", "run.ckpt")}
    run = gspx("send", "-c", cfg, *flags, "--failed-output", str(out["failed.ndjson"]),
               "--report", str(out["report.json"]), "--checkpoint", str(out["run.ckpt"]),
               write_events(tmp_path, EVENTS))
    assert run.exit_code == 1
    assert_no_key_in(*out.values())
    # the key was really used: every request carried it in the header, and only there
    assert {r.headers.get(API_KEY_HEADER.lower()) for r in px_server.px.requests} == {TEST_KEY}
    assert all(TEST_KEY not in r.path for r in px_server.px.requests)
    if "-v" in flags or "--verbose" in flags:
        # verbose does show each request (its line format belongs to report.py)
        assert re.search(rf"POST {re.escape(px_server.base_url)}/users\b.*201", run.stderr)


def test_key_from_config_file_never_shows_in_outputs(px_server, tmp_path):
    cfg = config_with_key(tmp_path, px_server.base_url)
    report = tmp_path / "report.json"
    run = gspx("send", "-c", cfg, "-v", "--report", str(report), write_events(tmp_path, EVENTS), key=None)
    assert run.exit_code == 1
    assert_no_key_in(report)
    assert {r.headers.get(API_KEY_HEADER.lower()) for r in px_server.px.requests} == {TEST_KEY}


def test_dry_run_output_never_holds_the_key(tmp_path):
    cfg = config_with_key(tmp_path, "https://px.example.test/v1")
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, EVENTS), key=None)
    assert run.exit_code == 1
    assert len(run.stdout.splitlines()) == 3


def test_refused_key_stops_with_exit_3_and_no_key_shown(px_server, tmp_path):
    px_server.px.api_key = "the-only-accepted-key"
    cfg = write_config(tmp_path, px_server.base_url)
    report = tmp_path / "report.json"
    run = gspx("send", "-c", cfg, "-v", "--report", str(report), write_events(tmp_path, EVENTS))
    assert run.exit_code == 3
    assert f"Gainsight PX refused the API key (HTTP 401) at {px_server.base_url}" in run.stderr
    assert_no_key_in(report)


def test_connection_refused_fails_events_without_showing_the_key(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}/v1")
    failed = tmp_path / "failed.ndjson"
    run = gspx("send", "-c", cfg, "-v", "--max-retries", "0", "--failed-output", str(failed),
               write_events(tmp_path, EVENTS[:2]))
    assert run.exit_code == 1
    assert "connection failed or was dropped" in run.stderr
    assert_no_key_in(failed)


@pytest.mark.parametrize("yaml_text, message", [
    (f'api_key: "{TEST_KEY} x"\n', "api_key: must not contain spaces or control characters"),
    (f'api_key: "{TEST_KEY}\n', "invalid YAML"),  # unterminated quote: no snippet echoed
    (f'apikey: "{TEST_KEY}"\n', "apikey: unknown key; did you mean `api_key`?"),
    (f'api_key: ["{TEST_KEY}"]\n', "api_key: expected a string (quote it), got a list"),
], ids=["space", "yaml-error", "near-miss", "list"])
def test_config_errors_about_the_key_never_echo_it(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text + f"product_tag_key: {TAG}\n")
    path.chmod(0o600)
    run = gspx("send", "--dry-run", "-c", str(path), write_events(tmp_path, EVENTS), key=None)
    assert run.exit_code == 2
    assert message in run.stderr and str(path) in run.stderr


def test_env_key_with_a_space_is_refused_without_echo(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    run = gspx("send", "-c", cfg, write_events(tmp_path, EVENTS), key=TEST_KEY + " x")
    assert run.exit_code == 2
    assert "GSPX_API_KEY: must not contain spaces or control characters" in run.stderr


def test_settings_repr_and_check_output_mask_the_key(tmp_path):
    cfg = config_with_key(tmp_path, "https://px.example.test/v1")
    settings = load_settings(cfg, env={})
    assert settings.api_key == TEST_KEY
    for text in (repr(settings), str(settings), repr(settings.delivery), repr(describe_settings(settings))):
        assert TEST_KEY not in text
    run = gspx("check", "-c", cfg, key=None)
    assert run.exit_code == 0
    assert "…" + TEST_KEY[-4:] in run.stdout + run.stderr  # masked: only the last 4 characters


def test_traceback_of_a_forced_internal_error_holds_no_key_even_with_locals(tmp_path, monkeypatch):
    def boom(settings, paths, **kwargs):
        raise RuntimeError(f"forced internal error with {settings!r}")

    monkeypatch.setattr(coordinator, "run", boom)
    cfg = config_with_key(tmp_path, "https://px.example.test/v1")  # key from the file: no env in locals
    result = CliRunner().invoke(cli, ["send", "-v", "-c", cfg, write_events(tmp_path, EVENTS)],
                                env={"GSPX_API_KEY": ""})
    assert isinstance(result.exception, RuntimeError)
    exc = result.exception
    text = "".join(traceback.format_exception(exc))
    with_locals = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    assert "forced internal error with Settings(" in text and "settings = Settings(" in with_locals
    assert TEST_KEY not in text + with_locals + result.output


def test_internal_error_while_delivering_fails_the_event_without_the_key(px_server, tmp_path, monkeypatch):
    def boom(self, plan):
        raise RuntimeError(f"forced, client headers hidden: {self._sender!r}")

    monkeypatch.setattr(executor.Executor, "execute", boom)
    cfg = write_config(tmp_path, px_server.base_url)
    run = gspx("send", "-c", cfg, "-v", write_events(tmp_path, EVENTS[:1]))
    assert run.exit_code == 1
    assert "internal error: RuntimeError: forced" in run.stderr


# ---- plain http:// only to loopback, also for --dry-run --------------------------------------------

@pytest.mark.parametrize("base_url", [
    "http://px.example.com/v1", "http://localhost.example.com/v1", "http://10.0.0.1/v1",
    "http://0x7f000001/v1", "HTTP://api.aptrinsic.com/v1",
])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "send"])
def test_plain_http_to_a_non_loopback_host_is_refused_naming_base_url(tmp_path, base_url, dry):
    cfg = write_config(tmp_path, base_url)
    run = gspx("send", *(["--dry-run"] if dry else []), "-c", cfg, write_events(tmp_path, EVENTS))
    assert run.exit_code == 2
    assert f"gspx: error: {cfg}: base_url: expected an https:// URL" in run.stderr
    assert "plain http:// would send the API key unencrypted" in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9/v1", "http://127.1.2.3:9/v1", "http://[::1]:9/v1",
                                      "http://localhost:9/v1", "https://px.example.com/v1"])
def test_https_and_loopback_http_are_accepted(tmp_path, base_url):
    run = gspx("send", "--dry-run", "-c", write_config(tmp_path, base_url), write_events(tmp_path, EVENTS[:1]))
    assert run.exit_code == 0, run.stderr


# ---- the config file's permissions ------------------------------------------------------------------

def test_group_or_world_readable_config_with_key_warns_and_names_chmod_600(tmp_path):
    cfg = config_with_key(tmp_path, "https://px.example.test/v1", mode=0o644)
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, EVENTS[:1]), key=None)
    assert run.exit_code == 0
    assert (f"warning: {cfg}: holds api_key and can be read by other users; run `chmod 600 {cfg}` "
            "or remove api_key and set GSPX_API_KEY instead") in run.stderr


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_group_only_or_other_only_readable_also_warns(tmp_path, mode):
    cfg = config_with_key(tmp_path, "https://px.example.test/v1", mode=mode)
    assert "chmod 600" in gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, EVENTS[:1]), key=None).stderr


def test_private_config_or_readable_config_without_key_does_not_warn(tmp_path):
    private = config_with_key(tmp_path, "https://px.example.test/v1", mode=0o600)
    readable = write_config(tmp_path, "https://px.example.test/v1")
    Path(readable).chmod(0o644)
    for cfg in (private, readable):
        run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, EVENTS[:1]))
        assert "chmod" not in run.stderr


# ---- TLS is always verified ---------------------------------------------------------------------------

def test_no_switch_turns_tls_verification_off():
    source = Path(gspx_cli.__file__).parent
    for path in source.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"verify\s*=\s*(False|0|None)|\.verify\s*=|CERT_NONE|check_hostname|"
                             r"disable_warnings|InsecureRequestWarning", text), path
    for name in TOP_LEVEL_KEYS + DELIVERY_KEYS:
        assert not re.search(r"verify|insecure|tls|ssl|cert", name)
    help_text = gspx("send", "--help").stdout + gspx("check", "--help").stdout
    assert not re.search(r"verify|insecure|no-tls|ssl|cert", help_text, re.IGNORECASE)


@pytest.mark.parametrize("key", ["verify_ssl", "insecure", "tls_verify"])
def test_a_config_key_to_disable_tls_is_an_unknown_key(tmp_path, key):
    cfg = write_config(tmp_path, "https://px.example.test/v1", extra=f"{key}: false\n")
    run = gspx("send", "--dry-run", "-c", cfg, write_events(tmp_path, EVENTS[:1]))
    assert run.exit_code == 2
    assert f"gspx: error: {cfg}: {key}: unknown key" in run.stderr


def test_px_client_requests_are_made_with_verification_on():
    client = PxClient("https://px.example.test/v1", TEST_KEY)
    assert client.session.verify is True
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://px.example.test/v1/events/custom", json={}, status=200)
        assert client.request("POST", "/events/custom", {"a": 1}).ok
        verify = rsps.calls[0].request.req_kwargs["verify"]
        # True, or a CA bundle path when REQUESTS_CA_BUNDLE is set: verification either way
        assert verify is True or (isinstance(verify, str) and Path(verify).exists())


def test_curl_ca_bundle_empty_does_not_turn_verification_off(monkeypatch):
    # requests reads REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE; an empty value must not mean "no verification"
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    settings = requests.Session().merge_environment_settings("https://px.example.test/v1", {}, None, True, None)
    assert settings["verify"] is True


# ---- YAML: safe loader only ---------------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system"])
def test_python_yaml_tags_are_refused_with_exit_2_and_never_executed(tmp_path, tag):
    marker = tmp_path / "executed"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"product_tag_key: {TAG}\napi_key: {tag} ['touch {marker}']\n")
    cfg.chmod(0o600)
    for args in (["send", "--dry-run"], ["send"], ["check"]):
        run = _run_evil(args, cfg, tmp_path)
        assert run.exit_code == 2
        assert f"gspx: error: {cfg}: line 2, column 10: unsupported YAML tag" in run.stderr
    assert not marker.exists()


def _run_evil(args, cfg, tmp_path):
    files = [write_events(tmp_path, EVENTS[:1])] if args[0] == "send" else []
    return gspx(*args, "-c", str(cfg), *files, key=None)


# ---- config values: type and range, CLI.md error style --------------------------------------------------

@pytest.mark.parametrize("delivery_yaml, key, message", [
    ("concurrency: 0", "delivery.concurrency", "expected 1 to 256, got 0"),
    ("concurrency: 257", "delivery.concurrency", "expected 1 to 256, got 257"),
    ("concurrency: '8'", "delivery.concurrency", "expected a whole number, got '8'"),
    ("rate_limit: 0", "delivery.rate_limit", "expected a number greater than 0, got 0"),
    ("rate_limit: -1.5", "delivery.rate_limit", "expected a number greater than 0, got -1.5"),
    ("timeout: 0", "delivery.timeout", "expected a number greater than 0, got 0"),
    ("timeout: .nan", "delivery.timeout", "expected a number greater than 0, got nan"),
    ("max_retries: -1", "delivery.max_retries", "expected 0 or more, got -1"),
])
def test_delivery_values_out_of_range_exit_2_naming_file_and_key(tmp_path, delivery_yaml, key, message):
    path = tmp_path / "ranges.yaml"
    path.write_text(f"product_tag_key: {TAG}\ndelivery:\n  {delivery_yaml}\n")
    run = gspx("send", "--dry-run", "-c", str(path), write_events(tmp_path, EVENTS[:1]))
    assert run.exit_code == 2
    assert f"gspx: error: {path}: {key}: {message}" in run.stderr
    assert run.stdout == ""
