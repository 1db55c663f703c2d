"""Object stores as inputs (issue 18, CLI.md "Inputs as archived"): s3:// against moto's S3 server on
127.0.0.1 started here (as s3fs's own tests do), gs:// through fsspec's memory filesystem; per-object
resume and identity in the checkpoint; one-line errors with exit 2 before anything is sent."""

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
import requests

from e2e import finish, gspx, wait_until, write_config
from gspx_cli.read import remote
from gspx_cli.read.reader import iter_records
from test_archives import (config, dry_run, error_dump, gw_job, replay, rudder, saved_inputs,  # noqa: F401
                           segment, start_send, track)

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          # never a real profile or the instance metadata service: only what a test sets
          "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's standalone S3 server on a free 127.0.0.1 port, for this module's tests; its URL. Its request
    log (one line per request, on its stderr) goes to a file: store_requests() reads it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    _LOGS[url] = log
    try:
        def answers():
            try:
                return requests.get(url, timeout=1).status_code < 500
            except requests.RequestException:
                return False

        assert wait_until(answers, deadline=30), "moto's S3 server did not start"
        yield url
    finally:
        proc.terminate()
        finish(proc, timeout=10)


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    """A new bucket (its name) in the local S3 server, with credentials for it in the environment."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    _STORE["url"] = s3_endpoint
    name = f"b-{uuid.uuid4().hex[:12]}"
    store().mkdir(name)
    monkeypatch.setattr(remote, "_filesystems", {})  # no filesystem of an earlier test is reused
    yield name


_STORE = {}  # "url": the local server's, set by the bucket fixture
_LOGS = {}  # the local server's URL -> its request log
_LOGGED = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/')


def store_requests():
    """(method, path with query) of every request the local server has answered so far, in order."""
    text = _LOGS[_STORE["url"]].read_text(errors="replace")
    return _LOGGED.findall(text)


def store():
    """An s3fs filesystem on the local server, for the tests to put objects."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=_STORE["url"], key="testing", secret="testing", skip_instance_cache=True,
                             use_listings_cache=False)


def put_gz(key, lines):
    """Upload a gzip object of JSON lines at bucket/key."""
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    store().pipe(key, gzip.compress(body.encode("utf-8")))


def numbers(px):
    return Counter(e["attributes"]["n"] for e in list(px.events))


# ---- reading a prefix -----------------------------------------------------------------------------------

def test_a_dry_run_of_an_s3_prefix_reads_every_shape_in_both_date_layouts_oldest_first(bucket, s3_endpoint,
                                                                                        config):
    src = f"{bucket}/rudder-logs/src"
    put_gz(f"{src}/2024-01-02/1704153600.src.u3.json.gz", [rudder(3), replay(track(4))])
    put_gz(f"{src}/01-01-2024/1704070800.src.u2.json.gz", [gw_job([track(1), track(2)])])
    put_gz(f"{src}/01-01-2024/1704067200.src.u1.json.gz", [segment(0)])
    store().pipe(f"{src}/01-01-2024/README.txt", b"not an archive")
    code, lines, err = dry_run("-c", config, "--endpoint-url", s3_endpoint, f"s3://{bucket}/rudder-logs/src/")
    assert code == 0, err
    assert [line["requests"][0]["json"]["attributes"]["n"] for line in lines] == [0, 1, 2, 3, 4]
    assert [line["input"] for line in lines] == [
        f"s3://{src}/01-01-2024/1704067200.src.u1.json.gz:1",
        f"s3://{src}/01-01-2024/1704070800.src.u2.json.gz:1",
        f"s3://{src}/01-01-2024/1704070800.src.u2.json.gz:1",
        f"s3://{src}/2024-01-02/1704153600.src.u3.json.gz:1",
        f"s3://{src}/2024-01-02/1704153600.src.u3.json.gz:2",
    ]


def test_aws_endpoint_url_reaches_the_store_like_endpoint_url(bucket, s3_endpoint, config, monkeypatch):
    put_gz(f"{bucket}/one.json.gz", [track(7)])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    code, lines, err = dry_run("-c", config, f"s3://{bucket}/one.json.gz")
    assert code == 0, err
    assert [line["input"] for line in lines] == [f"s3://{bucket}/one.json.gz:1"]


def test_error_dumps_and_non_event_objects_in_a_bucket_are_handled_as_files_are(bucket, s3_endpoint, config):
    put_gz(f"{bucket}/err/01-02-2024/1.json.gz", [error_dump([track(1)])])
    put_gz(f"{bucket}/err/01-03-2024/2.json.gz", [track(2)])
    code, lines, err = dry_run("-c", config, "--endpoint-url", s3_endpoint, f"s3://{bucket}/err")
    assert [line["input"] for line in lines if line.get("requests")] == [f"s3://{bucket}/err/01-03-2024/2.json.gz:1"]
    assert f"s3://{bucket}/err/01-02-2024/1.json.gz: a RudderStack processor-error dump" in err
    code, lines, err = dry_run("-c", config, "--endpoint-url", s3_endpoint, "--error-dumps", f"s3://{bucket}/err")
    assert code == 0, err
    assert len([line for line in lines if line.get("requests")]) == 2


# ---- resume per object ----------------------------------------------------------------------------------

def fill(bucket, files=12, per_file=20):
    """files objects of per_file numbered events over two date folders (one per layout); the total."""
    n = 0
    for i in range(files):
        folder = "12-31-2023" if i < files // 2 else "2024-01-01"
        put_gz(f"{bucket}/rudder-logs/src/{folder}/{1704000000 + i}.src.uuid.json.gz",
               [rudder(n + k, f"u{(n + k) % 7}") for k in range(per_file)])
        n += per_file
    return n


def test_a_prefix_interrupted_then_resumed_delivers_every_event_once(px_server, bucket, s3_endpoint, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    total = fill(bucket)
    ckpt = tmp_path / "ck.db"
    args = ["-c", cfg, "--checkpoint", str(ckpt), "--endpoint-url", s3_endpoint, "--concurrency", "8",
            f"s3://{bucket}/rudder-logs/src/"]
    px.latency = 0.02
    proc = start_send([*args, "--rate-limit", "100"], tmp_path, "first")
    try:
        assert wait_until(lambda: len(px.events) >= 40), (tmp_path / "first.err").read_text()
        proc.send_signal(signal.SIGINT)
        assert finish(proc) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    first = numbers(px)
    assert 40 <= sum(first.values()) < total and max(first.values()) == 1
    saved = saved_inputs(ckpt)
    # one entry per object, keyed by its URL, with the object's ETag and size
    assert saved and all(key.startswith(f"s3://{bucket}/rudder-logs/src/") for key in saved)
    assert all(entry["identity"]["version"].startswith("etag:") and entry["identity"]["size"] > 0
               for entry in saved.values())

    px.latency = 0.0
    # --no-dedupe: only the per-object resume keeps the first run's events from being sent again
    proc = start_send([*args, "--no-dedupe"], tmp_path, "second")
    assert finish(proc, timeout=60) == 0, (tmp_path / "second.err").read_text()
    assert numbers(px) == Counter(range(total))


@pytest.fixture
def two_objects(px_server, bucket, s3_endpoint, tmp_path, monkeypatch):
    """Two objects under s3://BUCKET/logs/ (events 1, 2 and 3) and the send arguments that read them with
    a checkpoint (ck.db, in tmp_path) and --no-dedupe, so that only the checkpoint's resume keeps an
    event from being sent twice."""
    put_gz(f"{bucket}/logs/2024-01-01/1.json.gz", [track(1), track(2)])
    put_gz(f"{bucket}/logs/2024-01-02/2.json.gz", [track(3)])
    monkeypatch.chdir(tmp_path)
    return ["send", "-c", write_config(tmp_path, px_server.base_url), "--checkpoint", "ck.db", "--endpoint-url",
            s3_endpoint, "--no-dedupe", f"s3://{bucket}/logs/"]


def test_an_object_replaced_since_the_checkpoint_stops_the_run_with_exit_2(px_server, bucket, two_objects):
    px, args = px_server.px, two_objects
    assert gspx(*args).exit_code == 0
    put_gz(f"{bucket}/logs/2024-01-01/1.json.gz", [track(1), track(2), track(5)])  # re-exported: another object
    sent = len(px.events)
    run = gspx(*args)
    assert run.exit_code == 2, run.stderr
    assert f"s3://{bucket}/logs/2024-01-01/1.json.gz: the object differs from when the checkpoint was saved" \
           in run.stderr
    assert "replaced?" in run.stderr and "Traceback" not in run.stderr
    assert len(px.events) == sent  # nothing of it sent again, and nothing after it


def test_a_rerun_fetches_no_object_that_was_read_to_its_end_and_settled(px_server, bucket, two_objects, tmp_path,
                                                                        monkeypatch):
    px, args = px_server.px, two_objects
    opened = []
    real_open = remote.open_object
    monkeypatch.setattr(remote, "open_object", lambda url: opened.append(url) or real_open(url))
    assert gspx(*args).exit_code == 0
    assert len(opened) == 2
    saved = saved_inputs(tmp_path / "ck.db")
    assert {key: (entry["settled_lines"], entry["identity"]["lines"]) for key, entry in saved.items()} == {
        f"s3://{bucket}/logs/2024-01-01/1.json.gz": (2, 2), f"s3://{bucket}/logs/2024-01-02/2.json.gz": (1, 1)}
    put_gz(f"{bucket}/logs/2024-01-03/3.json.gz", [track(4)])
    opened.clear()
    run = gspx(*args)
    assert run.exit_code == 0, run.stderr
    assert opened == [f"s3://{bucket}/logs/2024-01-03/3.json.gz"]  # the settled ones are not downloaded again
    assert numbers(px) == Counter([1, 2, 3, 4])
    assert re.search(r"^already done +2 files settled by an earlier run with this checkpoint", run.stderr, re.M)


# ---- errors: one line, exit 2, nothing sent -----------------------------------------------------------

def test_a_missing_bucket_is_one_line_and_exit_2_before_anything_is_sent(px_server, bucket, s3_endpoint, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    local = tmp_path / "first.ndjson"
    local.write_text(json.dumps(track(1)) + "\n")
    run = gspx("send", "-c", cfg, "--endpoint-url", s3_endpoint, str(local), "s3://no-such-bucket-here/rudder-logs/")
    assert run.exit_code == 2
    assert run.stderr.strip().splitlines() == [
        "gspx: error: s3://no-such-bucket-here/rudder-logs/: no such bucket or prefix "
        "(The specified bucket does not exist)"]
    assert len(px.requests) == 0


def test_a_missing_prefix_is_one_line_and_exit_2(bucket, s3_endpoint, config):
    code, lines, err = dry_run("-c", config, "--endpoint-url", s3_endpoint, f"s3://{bucket}/nothing/here/")
    assert code == 2 and lines == []
    assert err.startswith(f"gspx: error: s3://{bucket}/nothing/here/: no such bucket or prefix")
    assert len(err.strip().splitlines()) == 1


def test_no_credentials_is_one_line_and_exit_2(bucket, s3_endpoint, config, monkeypatch):
    put_gz(f"{bucket}/one.json.gz", [track(1)])
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, lines, err = dry_run("-c", config, "--endpoint-url", s3_endpoint, f"s3://{bucket}/one.json.gz")
    assert code == 2 and lines == []
    assert err.strip().splitlines() == [
        f"gspx: error: s3://{bucket}/one.json.gz: no credentials for the object store (Unable to locate "
        "credentials); set them as its library looks for them (environment, profile, instance role)"]


class _DeniedFS:
    def info(self, path):
        raise PermissionError(13, "Access Denied")


def test_access_denied_is_one_line_and_exit_2(config, monkeypatch):
    monkeypatch.setattr(remote, "_endpoint_url", None)
    monkeypatch.setattr(remote, "_filesystems", {"s3": _DeniedFS()})
    code, lines, err = dry_run("-c", config, "s3://locked/rudder-logs/")
    assert code == 2 and lines == []
    assert err.strip().splitlines() == ["gspx: error: s3://locked/rudder-logs/: access denied "
                                        "([Errno 13] Access Denied)"]


def test_a_missing_extra_names_the_install_command(config, monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs now raises ImportError
    monkeypatch.setattr(remote, "_filesystems", {})
    code, lines, err = dry_run("-c", config, "gs://bucket/segment-logs/")
    assert code == 2
    assert err.strip() == "gspx: error: gs://bucket/segment-logs/: reading gs:// needs gcsfs: " \
                          "pip install 'gspx-cli[gcs]'"


# ---- gs:// through fsspec's memory filesystem ----------------------------------------------------------

@pytest.fixture
def memory_gcs(monkeypatch):
    """gs:// served by a fresh fsspec memory filesystem (the paths handling is gcsfs's and fsspec's)."""
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store = {}
    fs.pseudo_dirs = [""]
    monkeypatch.setattr(remote, "_filesystems", {"gcs": fs})
    return fs


def test_a_gs_prefix_is_read_oldest_first_and_resumed_per_object(px_server, memory_gcs, tmp_path, monkeypatch):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    day_ms = 1704067200000
    for i, day in enumerate((day_ms + 86400000, day_ms)):  # Segment's day folders in ms, written newest first
        memory_gcs.pipe(f"bkt/segment-logs/src/{day}/{i}.gz",
                        gzip.compress((json.dumps(segment(10 - i)) + "\n").encode()))
    monkeypatch.chdir(tmp_path)
    run = gspx("send", "-c", cfg, "--checkpoint", "ck.db", "gs://bkt/segment-logs/src")
    assert run.exit_code == 0, run.stderr
    assert [e["attributes"]["n"] for e in px.events] == [9, 10]  # the older day first
    saved = saved_inputs(tmp_path / "ck.db")
    assert sorted(saved) == [f"gs://bkt/segment-logs/src/{day_ms}/1.gz", f"gs://bkt/segment-logs/src/{day_ms + 86400000}/0.gz"]
    memory_gcs.pipe(f"bkt/segment-logs/src/{day_ms + 2 * 86400000}/2.gz",
                    gzip.compress((json.dumps(segment(11)) + "\n").encode()))
    run = gspx("send", "-c", cfg, "--checkpoint", "ck.db", "--no-dedupe", "gs://bkt/segment-logs/src")
    assert run.exit_code == 0, run.stderr
    assert [e["attributes"]["n"] for e in px.events] == [9, 10, 11]


# ---- the walk lists one folder at a time ---------------------------------------------------------------

def test_a_prefix_walk_reads_the_first_object_before_listing_the_next_folder(memory_gcs, monkeypatch):
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        memory_gcs.pipe(f"bkt/logs/{day}/1.json.gz", gzip.compress(b"{}\n"))
    listed = []
    real_ls = memory_gcs.ls
    monkeypatch.setattr(memory_gcs, "ls", lambda path, detail=True, **kw: listed.append(path) or real_ls(path, detail))
    walk = remote.walk("gs://bkt/logs")
    first, problem, identity = next(walk)
    assert (first, problem) == ("gs://bkt/logs/2024-01-01/1.json.gz", None)
    assert identity["size"] > 0
    assert listed == ["bkt/logs", "bkt/logs/2024-01-01"]
    assert [path for path, _, _ in walk] == ["gs://bkt/logs/2024-01-02/1.json.gz", "gs://bkt/logs/2024-01-03/1.json.gz"]


def test_small_objects_are_fetched_ahead_several_at_once_and_read_in_order(memory_gcs, monkeypatch):
    import threading

    for i in range(12):
        memory_gcs.pipe(f"bkt/logs/2024-01-01/{1704067200 + i}.json.gz",
                        gzip.compress((json.dumps(track(i)) + "\n").encode()))
    lock, running, most = threading.Lock(), [0], [0]
    real_open = remote.open_object

    def slow_open(url):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # a store's latency
        with lock:
            running[0] -= 1
        return real_open(url)

    monkeypatch.setattr(remote, "open_object", slow_open)
    records = list(iter_records(["gs://bkt/logs"]))
    assert [r.event["properties"]["n"] for r in records] == list(range(12))
    assert most[0] > 1  # fetched side by side, not one at a time


class ClientConnectorError(OSError):  # named as aiohttp's: explain() goes by the class names of the MRO
    pass


class ClientConnectorDNSError(ClientConnectorError):
    pass


class _UnreachableFS:
    def info(self, path):
        import logging

        try:
            raise ClientConnectorDNSError("Cannot connect to host storage.googleapis.com:443")
        except ClientConnectorDNSError as exc:  # as gcsfs does before it gives up: a traceback in its log
            logging.getLogger("gcsfs").error("_request out of retries on exception: %s", exc, exc_info=True)
            raise


def test_an_unreachable_store_is_one_line_without_the_librarys_logged_tracebacks(config, monkeypatch):
    import logging

    monkeypatch.setattr(logging.root, "handlers", [])  # as in a user's run: no handler but Python's last resort
    for name in ("gcsfs", "fsspec"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    monkeypatch.setattr(remote, "_filesystems", {"gcs": _UnreachableFS()})
    code, lines, err = dry_run("-c", config, "gs://bucket/segment-logs/")
    assert code == 2 and lines == []
    assert err.strip().splitlines() == ["gspx: error: gs://bucket/segment-logs/: cannot reach the object store "
                                        "(Cannot connect to host storage.googleapis.com:443)"]
