"""The commands through CliRunner (and `gspx sandbox` as a real process): streams, verbosity, report, check, init."""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from e2e import TEST_KEY, gspx, write_config, write_events
from test_report import COUNT_KEYS, REPORT_KEYS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = str(ROOT / "config.example.yaml")
EXAMPLE_EVENTS = str(ROOT / "examples" / "events.ndjson")
IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}}
TRACK = {"type": "track", "userId": "u1", "event": "Clicked"}
PROGRESS_MARKS = ("\x1b[", "\r", "eta ", "elapsed 0:", "sending")  # what a live display leaves behind


@pytest.fixture
def setup(px_server, tmp_path):
    return px_server.px, write_config(tmp_path, px_server.base_url), tmp_path


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


# -- progress and streams ------------------------------------------------------------------------

def test_no_progress_when_stderr_is_not_a_terminal(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, write_events(tmp, [IDENTIFY, TRACK] * 20))
    assert run.exit_code == 0
    assert run.stdout == ""
    assert not [m for m in PROGRESS_MARKS if m in run.stderr]
    assert "gspx summary" in run.stderr


def test_forced_progress_into_a_pipe_is_plain_text_and_stdout_stays_json_lines(tmp_path):
    events = write_events(tmp_path, [IDENTIFY, TRACK, "not json"] * 10)
    run = gspx("send", "--dry-run", "--progress", "-c", EXAMPLE_CONFIG, events, key=None)
    assert run.exit_code == 1
    assert "\x1b" not in run.stderr and "\r" not in run.stderr  # stderr is no terminal: plain lines only
    lines = _json_lines(run.stdout)  # every stdout line is JSON, even with progress and errors around
    assert len(lines) == 30 and "\x1b" not in run.stdout


def test_no_progress_flag_is_accepted(setup):
    px, cfg, tmp = setup
    run = gspx("send", "--no-progress", "-c", cfg, write_events(tmp, [TRACK]))
    assert run.exit_code == 0 and "\x1b[" not in run.stderr


# -- quiet and verbose ---------------------------------------------------------------------------

def test_quiet_shows_errors_only(setup):
    px, cfg, tmp = setup
    # line 3 earns a warning (a timestamp that cannot be parsed): quiet leaves it out
    events = write_events(tmp, [IDENTIFY, "not json", {**TRACK, "timestamp": "yesterday"}])
    run = gspx("send", "-q", "-c", cfg, events)
    assert run.exit_code == 1
    assert run.stderr.splitlines() == [f"error: {events}:2: not valid JSON: Expecting value at column 1"]
    assert run.stdout == ""


def test_verbose_prints_one_line_per_request_without_the_key(setup):
    px, cfg, tmp = setup
    px.fail_next(1)  # one 503, so a retry shows as attempt 2
    run = gspx("send", "-v", "-c", cfg, write_events(tmp, [IDENTIFY, TRACK]))
    assert run.exit_code == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if re.match(r"(GET|POST|PUT) ", line)]
    assert len(lines) == len(px.requests)
    for line in lines:
        assert re.fullmatch(r"(GET|POST|PUT) http://127\.0\.0\.1:\d+/v1/\S+ \d{3} \d+ms attempt \d+", line), line
    assert any(" 503 " in line for line in lines)
    assert any(line.endswith("attempt 2") for line in lines)
    assert TEST_KEY not in run.stderr  # also checked by gspx() for every run


def test_verbose_and_quiet_together_is_a_usage_error(tmp_path):
    run = gspx("send", "-q", "-v", "--dry-run", "-c", EXAMPLE_CONFIG, EXAMPLE_EVENTS)
    assert run.exit_code == 2 and "cannot be used together" in run.stderr


# -- --report ------------------------------------------------------------------------------------

def test_report_json_has_documented_keys_and_adds_up(setup):
    px, cfg, tmp = setup
    report = tmp / "report.json"
    failed = tmp / "failed.ndjson"
    events = write_events(tmp, [IDENTIFY, TRACK, "not json", {"type": "page", "userId": "u1"},
                                {"type": "group", "userId": "nobody", "groupId": "g"}])
    run = gspx("send", "-c", cfg, "--report", str(report), "--failed-output", str(failed), events)
    assert run.exit_code == 1
    data = json.loads(report.read_text())
    assert set(data) == REPORT_KEYS
    assert (data["read"], data["delivered"], data["skipped"], data["failed"], data["invalid"]) == (5, 2, 1, 2, 1)
    assert data["read"] == data["delivered"] + data["skipped"] + data["failed"] + data["not_sent"]
    for counts in data["by_type"].values():
        assert set(counts) == COUNT_KEYS
    assert data["requests"]["total"] == len(px.requests) == sum(data["requests"]["by_kind"].values()) \
        == sum(data["requests"]["by_status"].values())
    assert {r["example"] for r in data["failure_reasons"]} == {f"{events}:3", f"{events}:5"}
    assert data["exit_code"] == 1 and data["stopped"] is None
    assert data["failed_output"] == str(failed) and data["failed_output_lines"] == 2


def test_report_path_that_cannot_be_written_is_exit_2_before_sending(setup):
    px, cfg, tmp = setup
    run = gspx("send", "-c", cfg, "--report", str(tmp / "no" / "such" / "dir.json"), write_events(tmp, [TRACK]))
    assert run.exit_code == 2 and "report" in run.stderr
    assert px.requests == []


def test_summary_names_failure_example_and_output_paths(setup):
    px, cfg, tmp = setup
    failed, ckpt = tmp / "failed.ndjson", tmp / "run.ckpt"
    events = write_events(tmp, [TRACK, "not json"])
    run = gspx("send", "-c", cfg, "--failed-output", str(failed), "--checkpoint", str(ckpt), events)
    assert f"(e.g. {events}:2)" in run.stderr
    assert str(failed) in run.stderr and str(ckpt) in run.stderr
    assert re.search(r"requests +1 \(POST /events/custom 1\)", run.stderr)


# -- check ---------------------------------------------------------------------------------------

def test_check_accepts_the_example_config():
    run = gspx("check", "-c", EXAMPLE_CONFIG, key=None)
    assert run.exit_code == 0, run.stderr
    assert "https://api.aptrinsic.com/v1" in run.stderr and "AP-XXXXXXXXXX-2" in run.stderr
    assert "hobbyCustomField -> hobby" in run.stderr and "delivery.rate_limit" in run.stderr


def test_check_shows_only_the_last_4_characters_of_the_key():
    run = gspx("check", "-c", EXAMPLE_CONFIG)
    assert run.exit_code == 0
    assert "…" + TEST_KEY[-4:] in run.stderr and TEST_KEY[:-4] not in run.stderr


BAD_CONFIGS = [
    ("missing file", None, "not found"),
    ("invalid YAML", "product_tag_key: [unclosed\n", "invalid YAML"),
    ("not a mapping", "- a\n- b\n", "mapping"),
    ("unknown key", "product_tag_key: AP-1\nuser_atribute_map: {}\n", "did you mean"),
    ("missing product_tag_key", "data_center: US\n", "product_tag_key"),
    ("wrong type", "product_tag_key: AP-1\nlimit_api_for_group: maybe\n", "limit_api_for_group"),
    ("bad data_center", "product_tag_key: AP-1\ndata_center: MARS\n", "data_center"),
    ("http base_url off loopback", "product_tag_key: AP-1\nbase_url: http://example.com/v1\n", "base_url"),
    ("python tag", "product_tag_key: !!python/object/apply:os.system ['true']\n", "tag"),
    ("out of range", "product_tag_key: AP-1\ndelivery:\n  concurrency: 0\n", "delivery.concurrency"),
    ("bad map row", "product_tag_key: AP-1\nuser_attribute_map:\n  - {from: a, too: b}\n", "user_attribute_map"),
]


@pytest.mark.parametrize("kind, text, expected", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_check_exits_2_on_each_kind_of_config_error(tmp_path, kind, text, expected):
    path = tmp_path / "gspx.yaml"
    if text is not None:
        path.write_text(text)
    run = gspx("check", "-c", str(path))
    assert run.exit_code == 2, run.stderr
    assert run.stderr.startswith("gspx: error: ") and str(path) in run.stderr and expected in run.stderr


def test_check_online_without_a_key_exits_2():
    run = gspx("check", "-c", EXAMPLE_CONFIG, "--online", key=None)
    assert run.exit_code == 2 and "GSPX_API_KEY" in run.stderr


def test_check_online_confirms_the_key_with_one_read(setup):
    px, cfg, tmp = setup
    run = gspx("check", "-c", cfg, "--online")
    assert run.exit_code == 0 and "accepted the API key" in run.stderr
    assert [r.method for r in px.requests] == ["GET"]


def test_check_online_with_a_refused_key_exits_3(setup):
    px, cfg, tmp = setup
    px.api_key = "the-real-key"
    run = gspx("check", "-c", cfg, "--online")
    assert run.exit_code == 3 and "refused the API key" in run.stderr


def test_check_reads_gspx_config_when_no_c(monkeypatch):
    from click.testing import CliRunner

    from gspx_cli.cli import cli
    result = CliRunner().invoke(cli, ["check"], env={"GSPX_CONFIG": EXAMPLE_CONFIG, "GSPX_API_KEY": ""})
    assert result.exit_code == 0 and EXAMPLE_CONFIG in result.stderr


# -- init ----------------------------------------------------------------------------------------

def test_init_writes_a_starter_that_check_accepts(tmp_path):
    path = tmp_path / "gspx.yaml"
    run = gspx("init", str(path))
    assert run.exit_code == 0 and "GSPX_API_KEY" in run.stderr
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert gspx("check", "-c", str(path), key=None).exit_code == 0


def test_init_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "gspx.yaml"
    path.write_text("mine\n")
    run = gspx("init", str(path))
    assert run.exit_code == 2 and "--force" in run.stderr
    assert path.read_text() == "mine\n"
    assert gspx("init", "--force", str(path)).exit_code == 0
    assert "product_tag_key" in path.read_text()


def test_init_defaults_to_gspx_yaml_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert gspx("init").exit_code == 0
    assert (tmp_path / "gspx.yaml").exists()


# -- help, version, completion -------------------------------------------------------------------

def test_version():
    from gspx_cli import __version__
    run = gspx("--version")
    assert run.exit_code == 0 and __version__ in run.stdout


def test_top_level_help_lists_each_command_on_one_line():
    run = gspx("--help")
    listed = re.findall(r"^  (\w+) {2,}(\S.*)$", run.stdout.split("Commands:")[1], re.M)
    assert [name for name, _ in listed] == ["check", "init", "sandbox", "send"]
    assert all(not help_.endswith("...") for _, help_ in listed)  # short help fits, not cut off


def _cli_process(*args, **kwargs):
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "gspx_cli", *args], env=env, **kwargs)


def test_bash_completion_script_is_available():
    proc = _cli_process(env={"_GSPX_COMPLETE": "bash_source"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"_gspx_completion" in out


# -- sandbox -------------------------------------------------------------------------------------

def _read_until(stream, needle, deadline):
    text = b""
    while needle not in text:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {text!r}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"process ended; got {text!r}"
            text += chunk
    return text.decode()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sandbox_prints_its_url_and_on_stop_what_it_received(sig):
    proc = _cli_process("sandbox", "--port", "0", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        text = _read_until(proc.stderr, b"Ctrl-C", deadline)
        base_url = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", text).group(1)
        headers = {"X-APTRINSIC-API-KEY": "k"}
        assert requests.post(f"{base_url}/users", json={"identifyId": "u1"}, headers=headers, timeout=5).ok
        assert requests.get(f"{base_url}/users/nobody", headers=headers, timeout=5).status_code == 404
        proc.send_signal(sig)
        text += _read_until(proc.stderr, b"requests by status", deadline)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "1 users" in text and "201: 1" in text and "404: 1" in text


def test_sandbox_with_api_key_answers_others_401(tmp_path):
    proc = _cli_process("sandbox", "--port", "0", "--api-key", "right", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    try:
        text = _read_until(proc.stderr, b"Ctrl-C", time.monotonic() + 20)
        base_url = re.search(r"listening on (\S+)", text).group(1)
        assert requests.get(f"{base_url}/users/u", headers={"X-APTRINSIC-API-KEY": "wrong"}, timeout=5
                            ).status_code == 401
        assert requests.get(f"{base_url}/users/u", headers={"X-APTRINSIC-API-KEY": "right"}, timeout=5
                            ).status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the README rehearsal, end to end ------------------------------------------------------------

def test_example_file_dry_runs_with_exit_0():
    run = gspx("send", "--dry-run", "-c", EXAMPLE_CONFIG, EXAMPLE_EVENTS, key=None)
    assert run.exit_code == 0, run.stderr
    lines = _json_lines(run.stdout)
    assert [line.get("type") for line in lines] == ["identify", "group", "track", "page"]


def test_example_file_sends_to_the_sandbox(px_server, tmp_path):
    cfg = tmp_path / "gspx.yaml"
    cfg.write_text(Path(EXAMPLE_CONFIG).read_text() + f"base_url: {px_server.base_url}\n")
    run = gspx("send", "-c", str(cfg), EXAMPLE_EVENTS)
    assert run.exit_code == 0, run.stderr
    assert len(px_server.px.users) == 1 and len(px_server.px.accounts) == 1 and len(px_server.px.events) == 1


def test_a_missing_input_file_is_a_usage_error_before_anything_is_sent(tmp_path):
    from e2e import gspx

    events = tmp_path / "ok.ndjson"
    events.write_text('{"type":"track","userId":"u","event":"e"}\n')
    config = str(Path(__file__).resolve().parent.parent / "config.example.yaml")
    run = gspx("send", "--dry-run", "-c", config, str(events), str(tmp_path / "nope.ndjson"))
    assert run.exit_code == 2
    assert "nope.ndjson" in run.stderr and "does not exist" in run.stderr
    assert run.stdout == ""


def test_ctrl_c_during_a_dry_run_exits_130_not_click_aborted(tmp_path):
    events = tmp_path / "many.ndjson"
    line = '{"type":"track","userId":"u","event":"e","properties":{"n":1}}\n'
    events.write_text(line * 400_000)  # several seconds of dry run: time to interrupt it
    config = str(Path(__file__).resolve().parent.parent / "config.example.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-c", config, str(events)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b'{"input"')  # it is running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert b"stopped       by Ctrl-C (SIGINT)" in err
    finally:
        proc.kill()
