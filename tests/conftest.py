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
