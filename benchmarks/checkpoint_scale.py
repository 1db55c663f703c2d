"""A checkpoint over many inputs (issue 22, figure 2): memory and resume time flat in the number of files.

    python benchmarks/checkpoint_scale.py                    # 100,000 and 10,000 files (a few minutes)
    python benchmarks/checkpoint_scale.py --big 20000 --small 2000

Makes a tree of one-event files (folders of 1,000, as a year of date folders holds them), then side by
side in one run, each gspx a child process measured from outside (os.wait4: its own peak RSS). The
stand-in (`gspx sandbox`) runs in a process of its own: Linux gives a child the peak RSS of the process
that started it as a floor (the parent's memory counts until exec), so a stand-in holding 100,000
events in this process would be measured as gspx's memory.

1. peak RSS of a live run with --checkpoint (against the stand-in on 127.0.0.1, a high --rate-limit)
   over the big tree / over the small one (target <= 1.3);
2. the same for the resume: the same command again, nothing new to send (target <= 1.3);
3. the resume's wall time over the big tree / a Python `os.walk` + `os.stat` of the same tree, itself
   a child process (what refusing a rewritten input needs; target <= 1.5), and the walk gspx does
   (archives.walk with a stat per file) alone, to show what bounds the resume. The three are run in
   turn, ROUNDS times, and the best of each kept (the machine is shared: alternating keeps a busy
   moment from landing on one of them only); their CPU time (user + system) is shown beside.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KEY = "bench-key-0000"
PER_FOLDER = 1_000
ROUNDS = 5

WALK_AND_STAT = """
import os, sys
n = 0
for folder, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in files:
        os.stat(os.path.join(folder, name))
        n += 1
print(n)
"""

GSPX_WALK = """
import os, sys
from gspx_cli.read import archives
n = 0
for path, problem, info in archives.walk(sys.argv[1], archives.listing, os.path.join):
    os.stat(path)
    n += 1
print(n)
"""


def make_tree(root, n):
    """n one-event files under root, PER_FOLDER a folder (day folders, oldest first), written an hour ago
    as archives are: a file modified within a second of being read keeps no stat to be skipped on
    (identity.SETTLE_NS), and the first resume would open it again."""
    hour_ago = time.time_ns() - 3600 * 10**9
    for i in range(n):
        folder = root / f"2024-{1 + i // PER_FOLDER // 28:02d}-{1 + i // PER_FOLDER % 28:02d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        event = {"type": "track", "userId": f"u{i % 997}", "event": "E", "messageId": f"m-{i:08d}",
                 "timestamp": "2024-01-01T00:00:00Z", "properties": {"n": i}}
        path = folder / f"{1704067200 + i}.events.json"
        path.write_text(json.dumps(event) + "\n")
        os.utime(path, ns=(hour_ago, hour_ago))


def child_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "GSPX_CONFIG")}
    env.update(GSPX_API_KEY=KEY, PYTHONPATH=str(ROOT))
    return env


def run(cmd):
    """(wall seconds, peak RSS in bytes, stdout, CPU seconds) of one child, measured from outside."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} exited {code}:\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss * 1024, out.read().decode(), usage.ru_utime + usage.ru_stime


def send(cfg, ckpt, tree, delivered):
    """(wall, peak RSS, CPU) of one run, which must deliver `delivered` events (its --report says)."""
    report = ckpt.with_suffix(".json")
    wall, rss, _, cpu = run([sys.executable, "-m", "gspx_cli", "send", "-q", "-c", str(cfg), "--checkpoint", str(ckpt),
                        "--rate-limit", "100000", "--concurrency", "16", "--report", str(report), str(tree)])
    got = json.loads(report.read_text())["delivered"]
    if got != delivered:
        raise RuntimeError(f"{tree}: {got} events delivered, not {delivered}")
    return wall, rss, cpu


def sandbox():
    """`gspx sandbox` on a free port of 127.0.0.1, in a process of its own; (process, base URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gspx_cli", "sandbox", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def measure(tmp, n):
    """(first run: wall, RSS, CPU; resume: the same; then (best wall, best CPU) of the resume, of the walk
    with stats and of gspx's walk) over n files."""
    tree = tmp / f"tree-{n}"
    make_tree(tree, n)
    ckpt = tmp / f"run-{n}.ckpt"
    first = send(tmp / "gspx.yaml", ckpt, tree, n)
    resume = send(tmp / "gspx.yaml", ckpt, tree, 0)
    resumes, walks, ours = [resume], [], []
    for _ in range(ROUNDS):
        walks.append(run([sys.executable, "-c", WALK_AND_STAT, str(tree)]))
        ours.append(run([sys.executable, "-c", GSPX_WALK, str(tree)]))
        resumes.append(send(tmp / "gspx.yaml", ckpt, tree, 0))
    best = lambda runs, cpu: (min(r[0] for r in runs), min(r[cpu] for r in runs))  # noqa: E731
    return first, resume, best(resumes, 2), best(walks, 3), best(ours, 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gspx-ckpt-scale-"))
    server, base_url = sandbox()
    try:
        (tmp / "gspx.yaml").write_text(f"product_tag_key: PX-BENCH\nbase_url: {base_url}\n")
        small = measure(tmp, args.small)
        big = measure(tmp, args.big)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = lambda b: f"{b / 1e6:.0f} MB"  # noqa: E731
    print(f"| figure | {args.big:,} files | {args.small:,} files | ratio | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| peak RSS, first run | {mb(big[0][1])} | {mb(small[0][1])} | {big[0][1] / small[0][1]:.2f} | <= 1.3 |")
    print(f"| peak RSS, resume (nothing new) | {mb(big[1][1])} | {mb(small[1][1])} | "
          f"{big[1][1] / small[1][1]:.2f} | <= 1.3 |")
    print(f"| first run, wall | {big[0][0]:.1f} s | {small[0][0]:.1f} s | | |")
    print()
    print(f"| resume over {args.big:,} settled files (best of {ROUNDS + 1}; of {ROUNDS} for the walks) | seconds "
          "| / os.walk + os.stat | CPU seconds | / its CPU | target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, (wall, cpu), target in (("gspx send (resume)", big[2], "<= 1.5"),
                                       ("python: os.walk + os.stat", big[3], ""),
                                       ("python: archives.walk + os.stat", big[4], "")):
        print(f"| {label} | {wall:.2f} | {wall / big[3][0]:.2f} | {cpu:.2f} | {cpu / big[3][1]:.2f} | {target} |")
    print(f"| (over {args.small:,}: resume / walk) | {small[2][0]:.2f} | {small[2][0] / small[3][0]:.2f} | "
          f"{small[2][1]:.2f} | {small[2][1] / small[3][1]:.2f} | |")


if __name__ == "__main__":
    main()
