"""Shared fixtures: the Gainsight PX stand-in, over real HTTP and behind `responses`."""

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
