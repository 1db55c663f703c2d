"""Inputs as archived (issue 18, CLI.md): every line shape RudderStack and Segment archive, directories
read oldest first and streamed, files that hold no events refused once, resume per file inside a folder."""

import gzip
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter

import pytest

from e2e import TEST_KEY, finish, gspx, wait_until, write_config
from gspx_cli.read import archives
from gspx_cli.read import reader, shapes
from gspx_cli.config import Settings
from gspx_cli.mapping.rules import Mapper
from gspx_cli.read.reader import iter_line_batches, iter_records, source_key
from gspx_cli.state.store import CheckpointStore

TS = "2024-01-02T10:00:00.000Z"
INTERNAL_KEY = "1234<<>>anon-internal<<>>u-internal"  # how rudder-server keys a job: never a PX user


def track(n, user="u1", **extra):
    """A track event numbered n (properties.n), with its own messageId."""
    return {"type": "track", "userId": user, "event": "Clicked", "messageId": f"m-{n}", "timestamp": TS,
            "properties": {"n": n}, **extra}


def rudder(n, user="u1"):
    """A bare event as RudderStack's object-storage destinations write it."""
    return track(n, user, rudderId="r-1", receivedAt=TS, request_ip="10.0.0.1", channel="web")


def replay(event):
    """An Event Replay archive record around one event."""
    return {"userId": INTERNAL_KEY, "payload": event, "createdAt": TS, "messageId": event["messageId"]}


def gw_job(events, job_id=1):
    """A legacy gateway backup row (gw_jobs_*): the gateway's request as event_payload."""
    return {"job_id": job_id, "workspace_id": "ws", "uuid": "0f0e", "user_id": INTERNAL_KEY, "custom_val": "GW",
            "event_count": len(events), "created_at": TS,
            "event_payload": {"batch": events, "writeKey": "wk", "requestIP": "10.0.0.1", "receivedAt": TS}}


def error_dump(events, job_id=1):
    """A processor-error dump job (rudder-proc-err-logs)."""
    return {"JobID": job_id, "UserID": INTERNAL_KEY, "CustomVal": "WEBHOOK", "EventPayload": events,
            "Parameters": {"error": "transformer failed", "stage": "user_transformer", "source_id": "s"},
            "CreatedAt": TS}


def staging(i):
    """A warehouse staging line: a table row, not an event."""
    return {"data": {"id": f"row-{i}", "event": "clicked"},
            "metadata": {"table": "tracks", "columns": {"id": "string"}}}


def job_status(i):
    """A jobsdb status row (gw_job_status_*)."""
    return {"id": i, "job_id": i, "job_state": "succeeded", "attempt": 1, "exec_time": TS, "error_code": "200"}


def segment(n, user="u1"):
    """A bare event as Segment's S3 destination writes it."""
    return track(n, user, version=2, projectId="seg-project", receivedAt=TS, sentAt=TS, originalTimestamp=TS,
                 channel="server", _metadata={"bundled": ["Segment.io"]}, integrations={})


def write_gz(path, lines):
    """A real gzip file of JSON lines (a str line as it is); parent folders made. Returns str(path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_bytes(gzip.compress(body.encode("utf-8")))
    return str(path)


def dry_run(*args):
    """gspx send --dry-run, no API key: (exit code, the stdout lines as objects, stderr)."""
    run = gspx("send", "--dry-run", *args, key=None)
    return run.exit_code, [json.loads(line) for line in run.stdout.splitlines()], run.stderr


@pytest.fixture
def config(tmp_path):
    """A dry-run config (no API key needed)."""
    return write_config(tmp_path, "https://api.aptrinsic.com/v1")


@pytest.fixture(autouse=True)
def _error_dumps_off():
    """Every test starts without --error-dumps, whatever an earlier in-process run set."""
    shapes.set_error_dumps(False)
    yield
    shapes.set_error_dumps(False)


# ---- every line shape -----------------------------------------------------------------------------

# (shape, the line; expected (userId, index, count) of each event; the shape's own userId is never one)
SHAPES = [
    pytest.param(rudder(1, "ua"), [("ua", 0, 1)], id="rudderstack-bare-event"),
    pytest.param(segment(1, "ua"), [("ua", 0, 1)], id="segment-bare-event"),
    pytest.param(replay(track(1, "ua")), [("ua", 0, 1)], id="event-replay-record"),
    pytest.param(gw_job([track(1, "ua"), track(2, "ub")]), [("ua", 0, 2), ("ub", 1, 2)], id="gateway-backup-job"),
    pytest.param({"batch": [track(1, "ua"), track(2, "ub")]}, [("ua", 0, 2), ("ub", 1, 2)], id="batch"),
    pytest.param({"message": track(1, "ua"), "destination": {}}, [("ua", 0, 1)], id="router-envelope"),
]


@pytest.mark.parametrize("line, expected", SHAPES)
def test_each_shape_is_read_from_a_gzip_file_at_its_file_line(tmp_path, line, expected):
    path = write_gz(tmp_path / "part.json.gz", [rudder(0, "first"), "", line])
    records = list(iter_records([path]))
    assert [r.where for r in records] == [f"{path}:1"] + [f"{path}:3"] * len(expected)
    got = [(r.event["userId"], r.index, r.count) for r in records[1:]]
    assert got == expected
    assert all(r.problem is None for r in records)
    assert all(r.event["type"] == "track" for r in records)


@pytest.mark.parametrize("line", [replay(track(1, "real-user")), gw_job([track(1, "real-user")])],
                         ids=["event-replay-record", "gateway-backup-job"])
def test_an_archive_jobs_own_user_id_never_reaches_px(tmp_path, config, line):
    anonymous = {k: v for k, v in track(2).items() if k != "userId"} | {"anonymousId": "anon-7"}
    wrapped = replay(anonymous) if "payload" in line else gw_job([anonymous])
    path = write_gz(tmp_path / "jobs.json.gz", [line, wrapped])
    code, out, _ = dry_run("-c", config, path)
    assert code == 0
    assert [o["requests"][0]["json"]["identifyId"] for o in out] == ["real-user", "anon-7"]
    assert INTERNAL_KEY not in json.dumps(out)


def test_a_failed_event_of_an_archive_job_is_written_alone_to_the_failed_output(tmp_path, config):
    bad = {"type": "track", "userId": "u1", "messageId": "m-bad"}  # a track without its event name
    path = write_gz(tmp_path / "jobs.json.gz", [replay(bad), gw_job([track(1), bad])])
    failed = tmp_path / "failed.ndjson"
    run = gspx("send", "--dry-run", "-q", "-c", config, "--failed-output", str(failed), path, key=None)
    assert run.exit_code == 1
    assert [json.loads(line) for line in failed.read_text().splitlines()] == [bad, bad]


def test_a_segment_event_maps_like_the_rudderstack_event_with_the_same_fields():
    mapper = Mapper(Settings(product_tag_key="AP-TEST-1", base_url="https://api.aptrinsic.com/v1"))
    common = {"userId": "u1", "messageId": "m1", "timestamp": TS, "context": {"ip": "10.0.0.1", "locale": "en-GB"}}
    kinds = [
        {"type": "identify", "traits": {"email": "a@example.com", "firstName": "Ana", "plan": "pro"}},
        {"type": "track", "event": "Clicked", "properties": {"n": 1}},
        {"type": "group", "groupId": "g1", "traits": {"name": "Acme", "industry": "Retail"}},
        {"type": "page", "name": "Home"},
    ]
    for kind in kinds:
        rudder_event = {**common, **kind, "rudderId": "r-1", "receivedAt": TS, "request_ip": "10.0.0.1"}
        segment_event = {**common, **kind, "version": 2, "projectId": "seg-project", "receivedAt": TS,
                         "sentAt": TS, "originalTimestamp": TS, "_metadata": {"bundled": ["Segment.io"]}}
        assert mapper.map(segment_event) == mapper.map(rudder_event), kind["type"]


# ---- processor-error dumps: only with --error-dumps -----------------------------------------------

def test_an_error_dump_is_refused_once_without_error_dumps_and_the_other_files_are_read(tmp_path, config):
    dump = write_gz(tmp_path / "rudder-proc-err-logs" / "01-02-2024" / "dump.json.gz",
                    [error_dump([track(1), track(2)], job_id=1), error_dump([track(3)], job_id=2)])
    events = write_gz(tmp_path / "events.json.gz", [track(4)])
    code, out, err = dry_run("-c", config, dump, events)
    assert code == 0  # nothing in it was sent, and nothing failed: the file is skipped, with a warning
    assert out[0] == {"input": dump, "type": None,
                      "skipped": "a RudderStack processor-error dump, read only with --error-dumps"}
    assert [o["input"] for o in out[1:]] == [f"{events}:1"]
    assert err.count(f"warning: {dump}: a RudderStack processor-error dump, read only with --error-dumps: "
                     "the file is skipped") == 1  # once per file, not once per line


def test_error_dumps_reads_each_event_of_each_dump_job_at_its_line(tmp_path, config):
    dump = write_gz(tmp_path / "dump.json.gz",
                    [error_dump([track(1, "ua"), track(2, "ub")], job_id=1), error_dump([track(3, "uc")], job_id=2)])
    code, out, _ = dry_run("-c", config, "--error-dumps", dump)
    assert code == 0
    assert [(o["input"], o["requests"][0]["json"]["identifyId"]) for o in out] == [
        (f"{dump}:1", "ua"), (f"{dump}:1", "ub"), (f"{dump}:2", "uc")]


def test_error_dumps_lasts_one_run(tmp_path, config):
    dump = write_gz(tmp_path / "dump.json.gz", [error_dump([track(1)])])
    assert dry_run("-c", config, "--error-dumps", dump)[0] == 0
    code, out, _ = dry_run("-c", config, dump)
    assert code == 0 and "skipped" in out[0]


def test_an_error_dump_line_after_events_is_one_problem_without_error_dumps(tmp_path):
    path = write_gz(tmp_path / "mixed.json.gz", [track(1), error_dump([track(2)])])
    records = list(iter_records([path]))
    assert [(r.where, r.problem) for r in records] == [
        (f"{path}:1", None), (f"{path}:2", "a RudderStack processor-error dump job: read only with --error-dumps")]


# ---- files that hold no events: refused once per file ---------------------------------------------

NOT_EVENTS = [
    pytest.param("rudder-warehouse-staging-logs/src/2024-01-02/1704153600.tracks.json.gz", staging,
                 "a RudderStack warehouse staging file, not events", id="warehouse-staging"),
    pytest.param("legacy/gw_job_status_2.100.199.gz", job_status,
                 "a RudderStack job-status file, not events", id="job-status"),
]


@pytest.mark.parametrize("name, make_line, message", NOT_EVENTS)
def test_a_file_of_non_events_is_refused_once_and_the_other_files_are_delivered(px_server, tmp_path, name,
                                                                                 make_line, message):
    cfg = write_config(tmp_path, px_server.base_url)
    before = write_gz(tmp_path / "a.json.gz", [track(1), track(2)])
    refused = write_gz(tmp_path / name, [make_line(i) for i in range(50)])
    after = write_gz(tmp_path / "b.json.gz", [track(3)])
    report = tmp_path / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), before, refused, after)
    assert run.exit_code == 0  # a bucket that mixes such files with events is not a failure
    assert run.stderr.count(f"warning: {refused}: {message}: the file is skipped") == 1
    assert sorted(e["attributes"]["n"] for e in px_server.px.events) == [1, 2, 3]
    counts = json.loads(report.read_text())
    # every record read ends in one outcome: 3 events delivered, the refused file once, as a skip
    assert (counts["read"], counts["delivered"], counts["skipped"], counts["failed"]) == (4, 3, 1, 0)


@pytest.mark.parametrize("make_line, problem", [
    (staging, "a RudderStack warehouse staging line, not an event"),
    (job_status, "a RudderStack job-status line, not an event"),
], ids=["warehouse-staging", "job-status"])
def test_a_non_event_line_after_events_is_one_problem_at_its_line(tmp_path, make_line, problem):
    path = write_gz(tmp_path / "mixed.json.gz", [track(1), make_line(1), track(2)])
    records = list(iter_records([path]))
    assert [(r.where, r.problem) for r in records] == [(f"{path}:1", None), (f"{path}:2", problem),
                                                       (f"{path}:3", None)]


def test_a_refused_file_is_not_read_past_its_first_lines(tmp_path):
    # random rows do not compress: the file is many reads long, and only the first is made
    rng = random.Random(18)
    rows = [{**staging(i), "data": {"id": f"{rng.getrandbits(256):064x}"}} for i in range(20_000)]
    path = write_gz(tmp_path / "staging.json.gz", rows)
    stats = reader.ReadStats()
    batches = list(iter_line_batches([path], stats=stats))
    assert [[(r.where, r.problem, r.refused) for r in b] for b in batches] == [
        [(path, "a RudderStack warehouse staging file, not events", True)]]
    assert stats.bytes_read < os.path.getsize(path)


# ---- directories: every shape, oldest first -------------------------------------------------------

def archive_tree():
    """(path inside the tree, lines) of a bucket synced to disk, in the order gspx must read them; events
    are numbered in that order. Names are chosen so that sorting them as text would get the order wrong."""
    n = iter(range(1, 1000))
    ev = lambda user="u1": track(next(n), user)  # noqa: E731 - numbered in the order of this listing
    seg = lambda: segment(next(n))  # noqa: E731
    files = [
        ("legacy/gw_job_status_2.1.9.gz", [job_status(1), job_status(2)]),
        ("legacy/gw_jobs_2.1.9.1704067200000.1704067300000.gz", [gw_job([ev(), ev("u2")]), gw_job([ev()])]),
        ("legacy/gw_jobs_10.10.19.1704153600000.1704153700000.gz", [gw_job([ev()])]),
        ("replay/src/gw/2024-01-03/9/inst-0/20_99_ws_uuid.json.gz", [replay(ev()), replay(ev())]),
        ("replay/src/gw/2024-01-03/9/inst-0/100_199_ws_uuid.json.gz", [replay(ev())]),
        ("replay/src/gw/2024-01-03/10/inst-0/200_299_ws_uuid.json.gz", [replay(ev())]),
        ("rudder-logs/src/12-31-2023/999999999.src.uuid.json.gz", [rudder(next(n))]),
        ("rudder-logs/src/12-31-2023/1703980800.src.uuid.json.gz", [rudder(next(n)), {"batch": [ev(), ev()]}]),
        ("rudder-logs/src/01-01-2024/1704067200.src.uuid.json.gz", [{"message": ev()}]),
        ("rudder-logs/src/2024-01-02/1704153600.src.uuid.json.gz", [rudder(next(n)), "", rudder(next(n))]),
        ("rudder-proc-err-logs/01-04-2024/1704326400.proc.json.gz", [error_dump([ev(), ev()])]),
        ("rudder-warehouse-staging-logs/src/2024-01-02/1704153600.tracks.json.gz", [staging(1), staging(2)]),
        ("segment-logs/src/1704240000000/1704240000000.a.gz", [seg()]),
        ("segment-logs/src/1704326400000/1704326400001.b.gz", [seg(), seg()]),
    ]
    return files, next(n) - 1


def write_tree(root, files):
    """Write the files in reverse, so no test passes by creation order; and files gspx must leave alone."""
    for name, lines in reversed(files):
        write_gz(root / name, lines)
    (root / "rudder-logs" / "README.txt").write_text("not an archive\n")
    (root / "rudder-logs" / "src" / "manifest.csv").write_text("a,b\n")


def expected_inputs(typed, files):
    """The dry run's `input` of each line it prints for the tree: each event once, a refused file once."""
    refused = {"job_status", "staging"}
    inputs = []
    for name, lines in files:
        where = f"{typed}/{name}"
        if any(word in name for word in refused):
            inputs.append(where)
            continue
        for line_no, line in enumerate(lines, 1):
            if line == "":
                continue
            inner = (line.get("batch") or line.get("event_payload", {}).get("batch") or line.get("EventPayload")
                     or [None])
            inputs += [f"{where}:{line_no}"] * len(inner)
    return inputs


def test_dry_run_of_a_tree_of_every_shape_prints_each_event_once_oldest_first(tmp_path, config, monkeypatch):
    files, count = archive_tree()
    write_tree(tmp_path / "bucket", files)
    monkeypatch.chdir(tmp_path)
    code, out, err = dry_run("-c", config, "--error-dumps", "bucket/")
    assert [o["input"] for o in out] == expected_inputs("bucket", files)
    events = [o for o in out if "requests" in o]
    assert [o["requests"][0]["json"]["attributes"]["n"] for o in events] == list(range(1, count + 1))
    assert [o["skipped"] for o in out if "skipped" in o] == ["a RudderStack job-status file, not events",
                                                             "a RudderStack warehouse staging file, not events"]
    assert code == 0  # the two refused files are skipped, with a warning each


def test_a_directory_and_its_files_are_named_as_typed(tmp_path, config, monkeypatch):
    write_gz(tmp_path / "dumps" / "2024-01-02" / "1704153600.src.uuid.json.gz", [track(1), track(2), track(3)])
    monkeypatch.chdir(tmp_path)
    assert [o["input"] for o in dry_run("-c", config, "dumps")[1]] == [
        f"dumps/2024-01-02/1704153600.src.uuid.json.gz:{i}" for i in (1, 2, 3)]


def test_overlapping_archives_send_an_event_once(tmp_path, config):
    # the same event in a destination upload and in an Event Replay archive: dedupe by messageId
    write_gz(tmp_path / "bucket" / "a" / "2024-01-02" / "1704153600.src.uuid.json.gz", [rudder(1), rudder(2)])
    write_gz(tmp_path / "bucket" / "b" / "2024-01-02" / "0" / "i" / "1_2_ws_uuid.json.gz", [replay(track(2))])
    code, out, _ = dry_run("-c", config, str(tmp_path / "bucket"))
    assert code == 0
    assert ["requests" in o for o in out] == [True, True, False]
    assert out[2]["skipped"].startswith("duplicate messageId, first at ")


def test_an_empty_directory_is_one_problem_like_a_missing_file(tmp_path, config):
    (tmp_path / "empty" / "2024-01-02").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x\n")
    code, out, _ = dry_run("-c", config, str(tmp_path / "empty"))
    assert code == 1
    assert out == [{"input": str(tmp_path / "empty"), "error": reader.EMPTY_FOLDER_PROBLEM}]


def test_a_folder_that_cannot_be_listed_is_one_problem_and_the_walk_goes_on(tmp_path, monkeypatch):
    root = tmp_path / "bucket"
    good = write_gz(root / "2024-01-02" / "1.json.gz", [track(1)])
    write_gz(root / "2024-01-01" / "1.json.gz", [track(2)])
    real = os.scandir

    def scandir(path):  # chmod 0 does not stop root, who runs some CI: refuse it here instead
        if str(path).endswith("2024-01-01"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(archives.os, "scandir", scandir)
    records = list(iter_records([str(root)]))
    assert [(r.where, r.problem) for r in records] == [
        (str(root / "2024-01-01"), "cannot open: Permission denied"), (f"{good}:1", None)]


# the order of sibling names: each list is sorted as gspx reads it
ORDERS = [
    pytest.param(["12-31-2023", "01-01-2024", "2024-01-02", "01-03-2024", "2024-02-01"], id="both-date-layouts"),
    pytest.param(["999999999.src.u.json.gz", "1704067200.src.u.json.gz", "1704153600.src.u.json.gz"], id="unix-time"),
    pytest.param(["2", "9", "10", "23"], id="hour-folders"),
    pytest.param(["20_99_ws_u.json.gz", "100_199_ws_u.json.gz"], id="replay-first-job-id"),
    pytest.param(["1704240000000", "1704326400000"], id="segment-day-ms"),
    pytest.param(["gw_jobs_2.1.9.gz", "gw_jobs_10.10.19.gz"], id="gateway-dataset"),
    pytest.param(["a.json", "b.ndjson", "c.json.gz"], id="else-by-name"),
]


@pytest.mark.parametrize("names", ORDERS)
def test_siblings_sort_oldest_first(names):
    assert sorted(reversed(names), key=archives.order_key) == names


def test_only_json_ndjson_and_gz_files_are_read():
    names = ["a.json", "b.ndjson", "c.json.gz", "d.ndjson.gz", "e.gz", "F.JSON.GZ", "g.csv", "h.txt", "i.json.tmp"]
    assert [n for n in names if archives.is_archive_name(n)] == names[:6]


# ---- directories are streamed ---------------------------------------------------------------------

def build_wide_tree(root, days=20, hours=2, files=50):
    """days x hours x files one-event gzip files (2,000 by default) under root/<date>/<hour>/."""
    blob = gzip.compress(json.dumps(track(0)).encode() + b"\n")
    for d in range(days):
        for h in range(hours):
            folder = root / f"2024-01-{d + 1:02d}" / str(h)
            folder.mkdir(parents=True)
            for f in range(files):
                (folder / f"{1704067200 + d * 86400 + h * 3600 + f}.src.u.json.gz").write_bytes(blob)


def counting_scandir(monkeypatch):
    """Count os.scandir calls made by the walk."""
    calls = []
    real = os.scandir

    def scandir(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(archives.os, "scandir", scandir)
    return calls


def test_the_walk_yields_the_first_file_after_one_listing_per_level(tmp_path, monkeypatch):
    build_wide_tree(tmp_path / "t")
    calls = counting_scandir(monkeypatch)
    walk = archives.iter_tree(str(tmp_path / "t"))
    first, problem = next(walk)
    assert problem is None and first == str(tmp_path / "t" / "2024-01-01" / "0" / "1704067200.src.u.json.gz")
    assert calls == [str(tmp_path / "t"), str(tmp_path / "t" / "2024-01-01"), str(tmp_path / "t" / "2024-01-01" / "0")]
    rest = [path for path, _ in walk]
    assert len(rest) == 1999 and len(calls) == 1 + 20 + 40  # each folder listed once, when reached


def test_reading_a_directory_hands_on_its_first_lines_before_listing_the_rest(tmp_path, monkeypatch):
    build_wide_tree(tmp_path / "t")
    calls = counting_scandir(monkeypatch)
    batches = iter_line_batches([str(tmp_path / "t")])
    assert next(batches)[0][:2] == (str(tmp_path / "t" / "2024-01-01" / "0" / "1704067200.src.u.json.gz"), 1)
    assert len(calls) == 3


def test_the_lines_of_small_files_go_on_together_after_the_first_file(tmp_path):
    for i in range(30):
        write_gz(tmp_path / "t" / "2024-01-01" / f"{1704067200 + i}.src.u.json.gz",
                 [track(20 * i + k) for k in range(20)])
    batches = list(iter_line_batches([str(tmp_path / "t")]))
    # the first file's lines at once; then up to reader.MAX_BATCH lines of many files in one hand-over
    assert [len(b) for b in batches] == [20, 520, 60]
    assert [json.loads(item[2])["properties"]["n"] for b in batches for item in b] == list(range(600))


def test_progress_gives_up_on_a_total_for_a_directory_without_walking_it(tmp_path, monkeypatch):
    build_wide_tree(tmp_path / "t", days=1, hours=1, files=3)
    calls = counting_scandir(monkeypatch)
    assert reader._total_size([str(tmp_path / "t")]) is None
    assert calls == []


# ---- resume per file inside a directory -----------------------------------------------------------

def resume_tree(root, n_files=40, per_file=10):
    """n_files gzip files of per_file track events (400 in all, numbered) in date folders of both layouts."""
    n = 0
    for i in range(n_files):
        day = i // 10 + 1
        folder = f"2024-01-{day:02d}" if i % 2 else f"01-{day:02d}-2024"
        lines = []
        for _ in range(per_file):
            lines.append(rudder(n, f"u{n % 37}"))
            n += 1
        write_gz(root / folder / f"{1704067200 + i}.src.uuid.json.gz", lines)
    return n


def start_send(args, out_dir, tag):
    """`python -m gspx_cli send ARGS` in the background, in out_dir; stdout/stderr to files (no pipe can fill)."""
    env = {**os.environ, "GSPX_API_KEY": TEST_KEY}
    env.pop("GSPX_CONFIG", None)
    with open(out_dir / f"{tag}.out", "w") as stdout, open(out_dir / f"{tag}.err", "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "gspx_cli", "send", *args], stdout=stdout, stderr=stderr,
                                env=env, cwd=str(out_dir))


def saved_inputs(path):
    """The checkpoint's entries per input key."""
    with CheckpointStore(str(path)) as store:
        return store.load_inputs()


def delivered_numbers(px):
    return Counter(e["attributes"]["n"] for e in list(px.events))


def test_a_directory_interrupted_then_resumed_with_checkpoint_delivers_every_event_once(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    total = resume_tree(tmp_path / "bucket")
    ckpt = tmp_path / "run.ckpt"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--concurrency", "8", "bucket"]
    px.latency = 0.02
    proc = start_send([*args, "--rate-limit", "150"], tmp_path, "first")
    try:
        assert wait_until(lambda: len(px.events) >= 60), "the first run delivered too little"
        proc.send_signal(signal.SIGINT)
        assert finish(proc) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    first = delivered_numbers(px)
    assert 60 <= sum(first.values()) < total and max(first.values()) == 1
    saved = saved_inputs(ckpt)
    # one checkpoint entry per file inside the folder, keyed as a FILE argument would be
    assert saved and all(key.startswith(str(tmp_path / "bucket") + os.sep) and key.endswith(".json.gz")
                         for key in saved)

    px.latency = 0.0
    proc = start_send(args, tmp_path, "second")
    assert finish(proc) == 0, (tmp_path / "second.err").read_text()
    assert delivered_numbers(px) == Counter(range(total))  # every event exactly once over both runs


def test_a_rerun_on_a_grown_directory_sends_only_the_new_files(px_server, tmp_path, monkeypatch):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    old = write_gz(tmp_path / "bucket" / "2024-01-01" / "1704067200.src.uuid.json.gz", [track(1), track(2)])
    monkeypatch.chdir(tmp_path)
    args = ["send", "-c", cfg, "--checkpoint", "ck.db", "--no-dedupe", "bucket"]
    assert gspx(*args).exit_code == 0
    write_gz(tmp_path / "bucket" / "2024-01-02" / "1704153600.src.uuid.json.gz", [track(3)])
    assert gspx(*args).exit_code == 0
    # --no-dedupe: only the checkpoint's per-file prefix kept the old file from being sent again
    assert delivered_numbers(px) == Counter([1, 2, 3])
    assert saved_inputs(tmp_path / "ck.db")[source_key(old)]["settled_lines"] == 2


def test_a_file_replaced_inside_a_directory_stops_the_rerun_with_exit_2_when_the_walk_reaches_it(px_server, tmp_path,
                                                                                                 monkeypatch):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    write_gz(tmp_path / "bucket" / "2024-01-01" / "1704067200.src.uuid.json.gz", [track(1), track(2)])
    write_gz(tmp_path / "bucket" / "2024-01-02" / "1704153600.src.uuid.json.gz", [track(3)])
    monkeypatch.chdir(tmp_path)
    args = ["send", "-c", cfg, "--checkpoint", "ck.db", "--no-dedupe", "bucket"]
    assert gspx(*args).exit_code == 0
    write_gz(tmp_path / "bucket" / "2024-01-01" / "1704067200.src.uuid.json.gz", [track(7), track(8), track(9)])
    run = gspx(*args)
    assert run.exit_code == 2, run.stderr
    # named as the walk found it under the directory as typed
    assert "bucket/2024-01-01/1704067200.src.uuid.json.gz: content differs from when the checkpoint was saved" \
           in run.stderr
    assert "stopped" in run.stderr and "not what the checkpoint recorded" in run.stderr
    assert delivered_numbers(px) == Counter([1, 2, 3])  # nothing of the replaced file, nothing after it


def test_the_failed_output_inside_the_input_directory_is_not_read_back(tmp_path, config, monkeypatch):
    bad = {"type": "track", "userId": "u1", "messageId": "m-bad"}  # a track without its event name
    write_gz(tmp_path / "bucket" / "2024-01-01" / "1.json.gz", [bad, track(2)])
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second run finds the first run's failed output in the tree
        run = gspx("send", "--dry-run", "-c", config, "--failed-output", "bucket/failed.ndjson", "bucket", key=None)
        assert run.exit_code == 1, run.stderr
        assert "failed.ndjson:" not in run.stderr  # its lines were never read as input
    assert [json.loads(line) for line in (tmp_path / "bucket" / "failed.ndjson").open()] == [bad, bad]


# ---- the benchmark runs (its figures are printed, never asserted) ----------------------------------

def test_the_archives_benchmark_prints_its_time_memory_and_checkpoint_rows():
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "archives.py")
    run = subprocess.run([sys.executable, script, "--quick"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in run.stdout.splitlines() if line.startswith("| ")]
    assert rows == ["#", "1", "2", "2", "2", "3", "3", "3", "3"]
