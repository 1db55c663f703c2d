"""Shared fixtures: the Gainsight PX stand-in, over real HTTP and behind `responses`; the pinned environment."""

import signal
import time

import pytest

from gspx_cli.sandbox import FakePX, SandboxServer, add_to_responses


@pytest.fixture
def px_server():
    """A started SandboxServer on a free 127.0.0.1 port (`.px`, `.base_url`); stopped after the test."""
    server = SandboxServer(FakePX())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_px():
    """(FakePX, base_url) answering requests made with `requests` through `responses`, no sockets."""
    import responses

    px = FakePX()
    base_url = "https://api.aptrinsic.com/v1"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        add_to_responses(rsps, px, base_url)
        yield px, base_url


# ---- hardening (issue 6): hypothesis profiles and the "key never in any output" safeguard ----

import os  # noqa: E402
from pathlib import Path  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

# "fast" (default) keeps the whole suite quick in CI; run the larger one by hand with
#   HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py
# Tests scale their own per-test budgets from the loaded profile's max_examples (100 = fast).
# CI's profile is derandomized: the same examples every run, so a green suite stays green; the
# thorough profile (random, 20x the examples) is the one that hunts for new cases, by hand.
settings.register_profile("fast", max_examples=100, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# Files that deliberately hold the test key: configs written by tests that check api_key handling.
_KEY_HOLDER_SUFFIXES = (".yaml", ".yml")


@pytest.fixture(scope="session", autouse=True)
def _no_test_key_in_outputs(tmp_path_factory):
    """At session end, fail if the test API key is in any file a test wrote (configs excepted)."""
    yield
    from e2e import TEST_KEY

    needle = TEST_KEY.encode()
    leaks = []
    for path in Path(tmp_path_factory.getbasetemp()).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix not in _KEY_HOLDER_SUFFIXES:
            with open(path, "rb") as fh:
                if needle in fh.read():
                    leaks.append(str(path))
    assert not leaks, f"the test API key was written to: {leaks}"


# ---- a pinned environment (issue 10, STYLE habit 14): the suite passes whatever shell runs it ----

# What the terminal and the clock look like to every test (and, through os.environ, to every
# subprocess a test starts): a plain 80-column xterm, no colour forcing, UTC. Like HTTPie's
# MockEnvironment, tests about terminals set these on purpose (monkeypatch.setenv, TtyStringIO).
PINNED_ENV = {"TERM": "xterm", "COLUMNS": "80", "LINES": "25", "TZ": "UTC"}
# Unset for every test: colour switches rich or click honour, rich's tty overrides, Python's own
# buffering (users' shells don't set PYTHONUNBUFFERED, so streaming must work without it), and
# gspx's own variables (tests pass GSPX_API_KEY / -c explicitly).
UNSET_ENV = ("FORCE_COLOR", "NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "COLORTERM", "TTY_COMPATIBLE",
             "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES", "PYTHONUNBUFFERED", "PYTHONIOENCODING",
             "GSPX_CONFIG", "GSPX_API_KEY")
# Python's own start-up dispositions: Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP kill. A
# suite started with SIGINT ignored (`cmd &` in a script, nohup) would otherwise pass SIG_IGN on to
# every subprocess, and a graceful-stop test would then test nothing.
DEFAULT_SIGNALS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                   signal.SIGHUP: signal.SIG_DFL}


@pytest.fixture(autouse=True)
def pinned_environment(monkeypatch):
    """Every test runs under PINNED_ENV, without UNSET_ENV, with default signal dispositions."""
    for name, value in PINNED_ENV.items():
        monkeypatch.setenv(name, value)
    for name in UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    time.tzset()
    previous = {sig: signal.signal(sig, handler) for sig, handler in DEFAULT_SIGNALS.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        monkeypatch.undo()
        time.tzset()
