"""Object-store inputs (issue 18): `python benchmarks/buckets.py` (needs the test extras: s3fs, moto[server]).

Starts moto's S3 server on 127.0.0.1, uploads 1,000 small gzip objects in RudderStack's layout
(`rudder-logs/<source>/<date>/<unix>.<source>.<uuid>.json.gz`, 20 events each) and their
concatenation as one object, and prints, from whole `gspx send --dry-run -q` processes alternated
(ABBA), the time of the prefix against the one object, and against the same files read from a local
directory. Each object costs one LIST share (1,000 keys per page, one per folder), a HEAD and a
ranged GET: against a local server the ratio is what those requests cost, not the network's latency.

`--quick` makes every size small, for a smoke test; its figures mean little.
"""

import argparse
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import archives  # noqa: E402
import bench  # noqa: E402

OBJECTS = 1_000
EVENTS_PER_OBJECT = 20
PAIRS = 3
BUCKET = "bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
               "AWS_EC2_METADATA_DISABLED": "true"}


def start_server():
    """moto's S3 server on a free 127.0.0.1 port: (process, endpoint URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto's S3 server did not start")


def upload(endpoint, tree, single):
    """The tree's files as objects under rudder-logs/, and the single file as all.json.gz."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    for path in sorted(tree.rglob("*.json.gz")):
        fs.pipe(f"{BUCKET}/{path.relative_to(tree).as_posix()}", path.read_bytes())
    fs.pipe(f"{BUCKET}/all.json.gz", single.read_bytes())


def _cmd(config, endpoint, target):
    return [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-q", "--no-progress", "-c", str(config),
            "--endpoint-url", endpoint, str(target)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    objects, pairs = (OBJECTS, PAIRS) if not args.quick else (20, 1)
    bench._EXTRA_ENV.update(CREDENTIALS)
    work = Path(tempfile.mkdtemp(prefix="gspx-buckets-bench-"))
    proc = None
    try:
        config = work / "gspx.yaml"
        bench.write_config(config)
        events = work / "events.ndjson"
        bench.make_events(events, objects * EVENTS_PER_OBJECT)
        paths = archives.write_split(events, work / "tree", EVENTS_PER_OBJECT, objects // 2 or 1)
        archives.concatenate(paths, work / "all.json.gz")
        proc, endpoint = start_server()
        print(f"uploading {objects:,} objects to {endpoint}...", file=sys.stderr)
        upload(endpoint, work / "tree", work / "all.json.gz")
        prefix, single = f"s3://{BUCKET}/rudder-logs/src/", f"s3://{BUCKET}/all.json.gz"
        print(f"timing, {pairs} pairs each...", file=sys.stderr)
        vs_single = bench._pairs(_cmd(config, endpoint, prefix), _cmd(config, endpoint, single), pairs)
        vs_local = bench._pairs(_cmd(config, endpoint, prefix), _cmd(config, endpoint, work / "tree"), pairs)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    per_object = (vs_single["a"] - vs_single["b"]) / objects * 1000
    print(f"machine: {os.cpu_count()} CPUs, {sys.platform}, Python {sys.version.split()[0]}; S3: moto on 127.0.0.1")
    print()
    print("| # | figure | measured | ratio |")
    print("|---|---|---|---|")
    print(f"| 1 | dry run (`-q`) of an s3:// prefix of {objects:,} gzip objects ({objects * EVENTS_PER_OBJECT:,} "
          f"events) / of their concatenation as one object, median of {pairs} alternated pairs | "
          f"{vs_single['a']:.2f} s / {vs_single['b']:.2f} s | **{vs_single['ratio']:.2f}** "
          f"(range {vs_single['min']:.2f}-{vs_single['max']:.2f}); {per_object:.1f} ms per object |")
    print(f"| 2 | the same prefix / the same files in a local directory | {vs_local['a']:.2f} s / "
          f"{vs_local['b']:.2f} s | **{vs_local['ratio']:.2f}** (range {vs_local['min']:.2f}-{vs_local['max']:.2f}) |")


if __name__ == "__main__":
    main()
