"""Helpers for end-to-end tests: a config pointing at the stand-in, and running `gspx send` through CliRunner."""

import json
import time
from dataclasses import dataclass

from click.testing import CliRunner

from gspx_cli.cli import cli

TEST_KEY = "test-key-0123456789abcdef"  # never allowed to appear in any output (tests grep for it)
TAG = "AP-TEST-1"


def write_config(tmp_path, base_url, extra=""):
    path = tmp_path / "gspx.yaml"
    path.write_text(
        f"product_tag_key: {TAG}\nbase_url: {base_url}\n"
        "user_attribute_map:\n  hobbyCustomField: hobby\n"
        "account_attribute_map:\n  cultureCustomField: culture\n"
        "global_context:\n  projectId: p-123\n"
        "delivery:\n  concurrency: 4\n  rate_limit: 10000\n  max_retries: 3\n  timeout: 5\n" + extra
    )
    path.chmod(0o600)
    return str(path)


def write_events(tmp_path, events, name="events.ndjson"):
    path = tmp_path / name
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    return str(path)


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


def gspx(*args, key=TEST_KEY, input=None):
    """Run the real CLI in-process; the key comes from GSPX_API_KEY like a careful user's."""
    env = {"GSPX_API_KEY": key} if key else {"GSPX_API_KEY": ""}
    result = CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    run = Run(result.exit_code, result.stdout, result.stderr)
    assert TEST_KEY not in run.stdout + run.stderr
    return run


def writes(px):
    """The writes PX applied (2xx), as (method, path, body), in arrival order: an update-first upsert's
    PUT that PX answers "not found" changed nothing."""
    return [(r.method, r.path, r.body) for r in px.requests if r.method != "GET" and 200 <= r.status < 300]


# ---- real processes: every wait bounded ----------------------------------------------------------

DEADLINE = 20.0  # seconds; no wait in a test is unbounded


def wait_until(predicate, deadline=DEADLINE):
    """Poll predicate until it is true (True) or the deadline passes (False)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def finish(proc, timeout=DEADLINE):
    """The exit status of proc, waited for at most timeout seconds; killed if it is still running."""
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
