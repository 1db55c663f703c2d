"""Reading only what the time window needs, and one request per object (issue 22):
`python benchmarks/pruning.py` (needs the test extras: s3fs, moto[server]).

Starts moto's S3 server on 127.0.0.1 (its request log kept) and uploads ~120 daily folders of a
RudderStack source (`rudder-logs/<source>/<date>/<unix>.<source>.<uuid>.json.gz`, MM-DD-YYYY for the
first half, YYYY-MM-DD after, as a bucket that switched layout), each event archived within the hour
after it happened, a few of them days late. Then, from whole `gspx send --dry-run -q` processes:

- figure 1: a 7-day `--since/--until --lateness 2d` window over the whole prefix: the objects read
  outside the window's margins (from the server's log: must be 0), the folders and objects passed
  over (--report), and its time against the same command over a prefix holding only the folders the
  window needs (the week and its margins), and only the week's 7 folders; median of alternated pairs;
- figure 6: the requests per object of a dry run over a prefix of 1,000 objects, by kind, now and
  before this change (the code at BEFORE, run from an exported copy), and their times.

`--quick` makes every size small, for a smoke test; its figures mean little.
"""

import argparse
import calendar
import gzip
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

BEFORE = "54c7822"  # the last commit with a HEAD and ranged GETs per object
DAYS, OBJECTS_PER_DAY, EVENTS_PER_OBJECT = 120, 20, 20
WINDOW_START_DAY, WINDOW_DAYS, LATENESS_DAYS = 60, 7, 2
FLAT_OBJECTS = 1_000
PAIRS = 5
BUCKET = "bench"
FIRST_DAY = calendar.timegm((2024, 1, 1, 0, 0, 0))
DAY = 86_400
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
               "AWS_EC2_METADATA_DISABLED": "true"}
# runs the gspx_cli found at argv[1] rather than the editable install's (whose import hook comes first)
_RUN_FROM = ("import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in "
             "str(getattr(f, '__module__', ''))]; sys.path.insert(0, sys.argv[1]); sys.argv[:] = ['gspx', "
             "*sys.argv[2:]]; runpy.run_module('gspx_cli', run_name='__main__', alter_sys=True)")
_LOGGED = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/')


def start_server(log):
    """moto's S3 server on a free 127.0.0.1 port, its request log (stderr) to log: (process, endpoint URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto's S3 server did not start")


def requests_logged(log):
    """(method, target) of every request the server answered so far."""
    return _LOGGED.findall(Path(log).read_text(errors="replace"))


def folder_name(day):
    """The date folder of a day index: MM-DD-YYYY for the first half (an older upload), then YYYY-MM-DD."""
    y, m, d = time.gmtime(FIRST_DAY + day * DAY)[:3]
    return f"{m:02d}-{d:02d}-{y}" if day < DAYS // 2 else f"{y}-{m:02d}-{d:02d}"


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def day_objects(day, per_day, rng, counter):
    """[(name, gzip bytes)] of one day folder: objects uploaded through the day, each event archived within
    the hour after it happened, 2% of them 1 to 3 days late (a phone offline)."""
    out = []
    for i in range(per_day):
        uploaded = FIRST_DAY + day * DAY + (i * DAY) // per_day + rng.randrange(60)
        lines = []
        for _ in range(EVENTS_PER_OBJECT):
            n = next(counter)
            happened = uploaded - rng.randrange(3600)
            if rng.random() < 0.02:
                happened = uploaded - rng.randrange(DAY, 3 * DAY)
            lines.append(json.dumps({"type": "track", "userId": f"u{n % 500}", "event": "Clicked",
                                     "messageId": f"m-{n}", "timestamp": _iso(happened),
                                     "receivedAt": _iso(uploaded), "properties": {"n": n}}))
        out.append((f"{uploaded}.src.{rng.getrandbits(64):016x}.json.gz",
                    gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)))
    return out


def upload(endpoint, days, per_day, flat):
    """The days' folders under rudder-logs/src/; copies of the needed folders and of the week's under
    needed/ and week/; flat objects under flat/. The window's (since, until, needed folder indexes)."""
    import itertools

    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    rng, counter = random.Random(22), itertools.count()
    start = min(WINDOW_START_DAY, days // 2)
    week = range(start, start + WINDOW_DAYS)
    needed = range(start - 1, start + WINDOW_DAYS + LATENESS_DAYS + 1)  # the since margin .. until + lateness
    for day in range(days):
        for name, data in day_objects(day, per_day, rng, counter):
            key = f"rudder-logs/src/{folder_name(day)}/{name}"
            fs.pipe(f"{BUCKET}/{key}", data)
            if day in needed:
                fs.pipe(f"{BUCKET}/needed/{key}", data)
            if day in week:
                fs.pipe(f"{BUCKET}/week/{key}", data)
    for i in range(flat):
        name, data = day_objects(0, 1, rng, counter)[0]
        fs.pipe(f"{BUCKET}/flat/{folder_name(i // 100)}/{i:05d}-{name}", data)
    since, until = FIRST_DAY + start * DAY, FIRST_DAY + (start + WINDOW_DAYS) * DAY
    return since, until


def _cmd(config, endpoint, target, *extra, report=None):
    cmd = [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-q", "--no-progress", "-c", str(config),
           "--endpoint-url", endpoint, *extra]
    if report:
        cmd += ["--report", str(report)]
    return cmd + [target]


def read_outside(requests, since, until):
    """Objects fetched (GET of a key, not a listing) whose leading unix time lies outside the window's
    margins [since - 1 day, until + lateness]."""
    outside = 0
    for method, target in requests:
        if method != "GET" or "list-type" in target:
            continue
        name = target.split("?")[0].rsplit("/", 1)[-1]
        stamp = re.match(r"(\d{10})\.", name)
        if stamp and not (since - DAY <= int(stamp[1]) <= until + LATENESS_DAYS * DAY):
            outside += 1
    return outside


def per_object(requests, objects):
    """Requests per object of one run, by kind: HEAD, GET of an object, listing (a GET with list-type)."""
    heads = sum(1 for m, _ in requests if m == "HEAD")
    gets = sum(1 for m, t in requests if m == "GET" and "list-type" not in t and t.count("/") > 1)
    lists = sum(1 for m, t in requests if m == "GET" and ("list-type" in t or t.count("/") <= 1))
    return {"head": heads / objects, "get": gets / objects, "lists": lists, "total": len(requests) / objects}


def export_before(dest):
    """The gspx_cli of BEFORE, exported to dest (run with PYTHONPATH=dest)."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "gspx_cli"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    days, per_day, flat, pairs = (DAYS, OBJECTS_PER_DAY, FLAT_OBJECTS, PAIRS) if not args.quick else (14, 2, 20, 1)
    bench._EXTRA_ENV.update(CREDENTIALS)
    work = Path(tempfile.mkdtemp(prefix="gspx-pruning-bench-"))
    proc = None
    log = work / "requests.log"
    try:
        config = work / "gspx.yaml"
        bench.write_config(config)
        proc, endpoint = start_server(log)
        print(f"uploading {days} days x {per_day} objects and {flat:,} more to {endpoint}...", file=sys.stderr)
        since, until = upload(endpoint, days, per_day, flat)
        window = ["--since", _iso(since), "--until", _iso(until), "--lateness", f"{LATENESS_DAYS}d"]
        report = work / "report.json"

        mark = len(requests_logged(log))
        bench._run(_cmd(config, endpoint, f"s3://{BUCKET}/rudder-logs/src/", *window, report=report))
        whole = requests_logged(log)[mark:]
        outside = read_outside(whole, since, until)
        fetched = sum(1 for m, t in whole if m == "GET" and "list-type" not in t)
        data = json.loads(report.read_text())
        print(f"timing, {pairs} pairs each...", file=sys.stderr)
        prefix = _cmd(config, endpoint, f"s3://{BUCKET}/rudder-logs/src/", *window)
        vs_needed = bench._pairs(prefix, _cmd(config, endpoint, f"s3://{BUCKET}/needed/rudder-logs/src/", *window),
                                 pairs)
        vs_week = bench._pairs(prefix, _cmd(config, endpoint, f"s3://{BUCKET}/week/rudder-logs/src/", *window), pairs)

        flat_url = f"s3://{BUCKET}/flat/"
        mark = len(requests_logged(log))
        bench._run(_cmd(config, endpoint, flat_url))
        now = per_object(requests_logged(log)[mark:], flat)
        before_dir = work / "before"
        export_before(before_dir)
        now_cmd = _cmd(config, endpoint, flat_url)
        before_cmd = [sys.executable, "-c", _RUN_FROM, str(before_dir), *now_cmd[3:]]
        mark = len(requests_logged(log))
        bench._run(before_cmd)
        before = per_object(requests_logged(log)[mark:], flat)
        vs_before = bench._pairs(now_cmd, before_cmd, pairs)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    objects = days * per_day
    print(f"machine: {os.cpu_count()} CPUs, {sys.platform}, Python {sys.version.split()[0]}; S3: moto on 127.0.0.1")
    print()
    print("| # | figure | measured | ratio |")
    print("|---|---|---|---|")
    print(f"| 1 | 7-day `--since/--until --lateness 2d` window over {days} daily folders ({objects:,} objects, "
          f"both date layouts): objects read outside the window's margins; folders / objects passed over; "
          f"objects fetched | {outside} outside; {data['pruned_folders']} / {data['pruned_objects']} passed over; "
          f"{fetched} fetched | **{outside}** |")
    print(f"| 1 | its time / the same run over a prefix of only the folders it needs (the week, 1 day before, "
          f"{LATENESS_DAYS} after), median of {pairs} alternated pairs | {vs_needed['a']:.2f} s / "
          f"{vs_needed['b']:.2f} s | **{vs_needed['ratio']:.2f}** (range {vs_needed['min']:.2f}-"
          f"{vs_needed['max']:.2f}) |")
    print(f"| 1 | its time / the same run over a prefix of only the week's {WINDOW_DAYS} folders | "
          f"{vs_week['a']:.2f} s / {vs_week['b']:.2f} s | **{vs_week['ratio']:.2f}** (range "
          f"{vs_week['min']:.2f}-{vs_week['max']:.2f}) |")
    print(f"| 6 | requests per object, dry run of an s3:// prefix of {flat:,} objects (in {-(-flat // 100)} "
          f"folders): now | GET {now['get']:.2f}, HEAD {now['head']:.2f}, {now['lists']} listings; "
          f"{vs_before['a']:.2f} s | **{now['total']:.3f}** |")
    print(f"| 6 | the same, before ({BEFORE}: a HEAD and a ranged GET) | GET {before['get']:.2f}, HEAD "
          f"{before['head']:.2f}, {before['lists']} listings; {vs_before['b']:.2f} s | **{before['total']:.3f}** |")
    print(f"| 6 | time now / before, median of {pairs} alternated pairs | {vs_before['a']:.2f} s / "
          f"{vs_before['b']:.2f} s | **{vs_before['ratio']:.2f}** (range {vs_before['min']:.2f}-"
          f"{vs_before['max']:.2f}); {(vs_before['b'] - vs_before['a']) / flat * 1000:.1f} ms less per object |")


if __name__ == "__main__":
    main()
