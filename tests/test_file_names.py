"""Input files whose names are not UTF-8 (an old archive's Latin-1 names): read, reported and resumed
like any other, the name written as JSON's escape of each bad byte, which turns back into the very name."""

import json
import os
import subprocess
import sys

import pytest

from e2e import TEST_KEY, write_config
from gspx_cli.read.names import source_key, text_of_name

NAME = b"caf\xe9-\xff.ndjson"  # Latin-1 "café" and a byte no encoding maps: not UTF-8
EVENTS = [
    {"type": "identify", "userId": "u1", "messageId": "m1", "traits": {"email": "a@example.com"}},
    {"type": "track", "userId": "u1", "event": "Clicked", "messageId": "m2"},
    {"type": "track", "event": "no user"},
]


@pytest.fixture
def odd_file(tmp_path):
    try:
        path = os.path.join(os.fsencode(tmp_path), NAME)
        with open(path, "wb") as fh:
            fh.write(b"".join(json.dumps(e).encode() + b"\n" for e in EVENTS) + b"{not json\n")
    except OSError as exc:  # a filesystem that only takes UTF-8 names (APFS) cannot hold one
        pytest.skip(f"this filesystem refuses a name that is not UTF-8: {exc}")
    return os.fsdecode(NAME)


def send(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("GSPX_CONFIG", "PYTHONUNBUFFERED")}
    env["GSPX_API_KEY"] = TEST_KEY
    return subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--no-progress", *args], cwd=tmp_path,
                          env=env, capture_output=True, timeout=60)


def test_a_name_that_is_not_utf8_is_text_that_turns_back_into_its_bytes():
    name = os.fsdecode(b"/data/caf\xe9.ndjson")
    text = text_of_name(name)
    assert text == "/data/caf\\udce9.ndjson"
    assert text.encode("utf-8")  # SQLite and a UTF-8 output can hold it
    assert os.fsencode(json.loads(f'"{text}"')) == b"/data/caf\xe9.ndjson"
    assert text_of_name("/data/café.ndjson") == "/data/café.ndjson"  # a UTF-8 name is left as it is
    assert source_key(name).endswith("caf\\udce9.ndjson")


def test_a_dry_run_over_a_file_named_in_latin1_lists_every_line_under_its_escaped_name(tmp_path, odd_file):
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    run = send(tmp_path, "--dry-run", "-c", config, "--report", "report.json", "--failed-output", "failed.ndjson",
               odd_file)
    assert b"Traceback" not in run.stderr
    assert run.returncode == 1  # two invalid lines, as for any name
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["input"] for line in lines] == [f"{os.fsdecode(NAME)}:{n}" for n in range(1, 5)]
    assert os.fsencode(lines[0]["input"].rsplit(":", 1)[0]) == NAME  # the escape turns back into the name
    assert [line.get("type") for line in lines[:2]] == ["identify", "track"]
    assert "error" in lines[2] and "error" in lines[3]
    assert b"caf\\udce9-\\udcff.ndjson:3" in run.stderr
    report = json.loads((tmp_path / "report.json").read_bytes())
    assert report["read"] == 4 and report["invalid"] == 2
    assert (tmp_path / "failed.ndjson").read_bytes().endswith(b"{not json\n")


def test_a_live_run_over_a_file_named_in_latin1_resumes_from_its_checkpoint(tmp_path, odd_file, px_server):
    config = write_config(tmp_path, px_server.base_url)
    first = send(tmp_path, "-c", config, "--checkpoint", "ck.db", odd_file)
    assert b"Traceback" not in first.stderr
    assert first.returncode == 1, first.stderr.decode(errors="replace")
    sent = len(px_server.px.requests)
    assert sent >= 2
    with open(os.path.join(os.fsencode(tmp_path), NAME), "ab") as fh:
        fh.write(json.dumps({"type": "track", "userId": "u2", "event": "Later", "messageId": "m3"}).encode() + b"\n")
    again = send(tmp_path, "-c", config, "--checkpoint", "ck.db", "--report", "again.json", odd_file)
    assert b"Traceback" not in again.stderr
    report = json.loads((tmp_path / "again.json").read_bytes())
    assert (report["read"], report["delivered"]) == (1, 1)  # only the line added since
    assert [r.path for r in px_server.px.requests[sent:]] == ["/v1/events/custom"]


def test_a_folder_holding_names_that_are_not_utf8_is_resumed_and_its_settled_files_passed_over(tmp_path, px_server):
    # a sub-folder so named once stopped the read of its folder with --checkpoint (its name bound in an SQL
    # query: "internal error while reading"), and a file so named was opened again by every resume
    root = os.path.join(os.fsencode(tmp_path), b"in")
    try:
        os.makedirs(os.path.join(root, b"sub\xe9"))
    except OSError as exc:
        pytest.skip(f"this filesystem refuses a name that is not UTF-8: {exc}")
    files = [os.path.join(root, b"top.ndjson"), os.path.join(root, NAME), os.path.join(root, b"sub\xe9", NAME)]
    for n, path in enumerate(files):
        with open(path, "wb") as fh:
            fh.write(json.dumps({"type": "track", "userId": "u1", "event": "E", "messageId": f"f{n}"}).encode() + b"\n")
        os.utime(path, (1_700_000_000, 1_700_000_000))  # settled whole only when not written just now
    config = write_config(tmp_path, px_server.base_url)
    first = send(tmp_path, "-c", config, "--checkpoint", "ck.db", "--report", "first.json", "in")
    assert b"internal error" not in first.stderr and first.returncode == 0, first.stderr.decode(errors="replace")
    assert json.loads((tmp_path / "first.json").read_bytes())["delivered"] == 3
    again = send(tmp_path, "-c", config, "--checkpoint", "ck.db", "--report", "again.json", "in")
    assert again.returncode == 0, again.stderr.decode(errors="replace")
    report = json.loads((tmp_path / "again.json").read_bytes())
    assert (report["read"], report["settled_inputs"]) == (0, 3)  # none of them opened again


def test_a_name_holding_an_escape_as_it_is_is_not_the_name_escaped_so(tmp_path, px_server):
    # "x\udce9.ndjson" spelt with a backslash, beside a Latin-1 "xé.ndjson": the same key once, and a run
    # with --checkpoint ended in a KeyError traceback (two inputs booked under one key)
    assert text_of_name("/d/x\\udce9.ndjson") != text_of_name(os.fsdecode(b"/d/x\xe9.ndjson"))
    assert text_of_name("/d/a\\b.ndjson") == "/d/a\\b.ndjson"  # a backslash alone: the name as it is
    root = os.path.join(os.fsencode(tmp_path), b"in")
    os.makedirs(root)
    try:
        open(os.path.join(root, b"x\xe9.ndjson"), "wb").close()
    except OSError as exc:
        pytest.skip(f"this filesystem refuses a name that is not UTF-8: {exc}")
    for n, name in enumerate([b"x\xe9.ndjson", b"x\\udce9.ndjson"]):
        path = os.path.join(root, name)
        with open(path, "wb") as fh:
            fh.write(b"".join(json.dumps({"type": "track", "userId": "u1", "event": "E", "messageId": f"c{n}{i}"})
                              .encode() + b"\n" for i in range(n + 2)))
        os.utime(path, (1_700_000_000, 1_700_000_000))
    config = write_config(tmp_path, px_server.base_url)
    first = send(tmp_path, "-c", config, "--checkpoint", "ck.db", "--report", "first.json", "in")
    assert b"Traceback" not in first.stderr and first.returncode == 0, first.stderr.decode(errors="replace")
    assert json.loads((tmp_path / "first.json").read_bytes())["delivered"] == 5
    again = send(tmp_path, "-c", config, "--checkpoint", "ck.db", "--report", "again.json", "in")
    assert again.returncode == 0, again.stderr.decode(errors="replace")
    report = json.loads((tmp_path / "again.json").read_bytes())
    assert (report["read"], report["settled_inputs"]) == (0, 2)
