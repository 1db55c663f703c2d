"""The fixed cost of a run: gspx's start-up, before and after the start-up work of issue 22.

    python benchmarks/startup.py              # 15 rounds (about a minute)
    python benchmarks/startup.py --rounds 5 --files 200

Side by side in one run, each a whole child process measured from outside (os.wait4), without
PYTHONUNBUFFERED or PYTHONDONTWRITEBYTECODE (bytecode is written once, as an install has it):

1. a one-event dry run (`send --dry-run -q --no-progress -c CFG one.ndjson`), the code of BEFORE (a git
   worktree, when the history is there) and of this checkout, against `python -c pass`;
2. a resume with nothing new: `send -q --checkpoint` over FILES settled one-event files (a first run
   against `gspx sandbox` settles them), before and now, against the same `python -c pass`.

Each round runs every command once, in an order that rotates, so a busy moment of the shared machine
does not land on one of them only; each figure is the median over rounds, and each ratio the median
of the ratios taken within a round.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (write_config: the benchmark's config)
import checkpoint_scale  # noqa: E402  (make_tree, sandbox)
from quota import before_tree, drop_tree  # noqa: E402  (a git worktree of an earlier commit)

BEFORE = "c4df57c"  # the commit before the start-up work (issue 22, figures 2 and 4)
ONE_EVENT = ('{"type":"identify","userId":"u1","messageId":"m1","timestamp":"2024-01-01T00:00:00Z",'
             '"traits":{"email":"a@b.c","plan":"pro"}}\n')


def child_env(src):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "GSPX_CONFIG")}
    env.update(GSPX_API_KEY=checkpoint_scale.KEY)
    if src is not None:
        env["PYTHONPATH"] = str(src)  # ahead of the editable install's finder
    return env


def run(cmd, src):
    """(wall seconds, CPU seconds) of one child; it must exit 0."""
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        # cwd: `python -m` puts the current folder first on sys.path, ahead of PYTHONPATH
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=err, env=child_env(src), cwd=src)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{err.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(commands, rounds):
    """{name: (median wall, median CPU)} and {name: median of wall / `python -c pass` within a round}."""
    for cmd, src in commands.values():  # warm-up: bytecode written, page cache filled
        run(cmd, src)
    names = list(commands)
    got = {name: [] for name in names}
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            got[name].append(run(*commands[name]))
    figures = {name: (statistics.median(w for w, _ in got[name]), statistics.median(c for _, c in got[name]))
               for name in names}
    ratios = {name: statistics.median(a[0] / b[0] for a, b in zip(got[name], got["python -c pass"]))
              for name in names}
    return figures, ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--files", type=int, default=1_000, help="settled files of the resume [1000]")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gspx-startup-"))
    before = before_tree(tmp, BEFORE)
    server = None
    try:
        cfg, one = tmp / "gspx.yaml", tmp / "one.ndjson"
        bench.write_config(cfg)
        one.write_text(ONE_EVENT)
        server, base_url = checkpoint_scale.sandbox()
        live_cfg, ckpt, tree = tmp / "live.yaml", tmp / "run.ckpt", tmp / "tree"
        live_cfg.write_text(f"product_tag_key: PX-BENCH\nbase_url: {base_url}\n")
        checkpoint_scale.make_tree(tree, args.files)
        gspx = [sys.executable, "-m", "gspx_cli", "send", "-q", "--no-progress"]
        dry = [*gspx, "--dry-run", "-c", str(cfg), str(one)]
        resume = [*gspx, "-c", str(live_cfg), "--checkpoint", str(ckpt), "--rate-limit", "100000", str(tree)]
        run(resume, ROOT)  # the first run: settles every file
        commands = {"python -c pass": ([sys.executable, "-c", "pass"], None)}
        for label, src in (("before", before), ("now", ROOT)):
            if src is not None:
                commands[f"dry run, {label}"] = (dry, src)
                commands[f"resume, {label}"] = (resume, src)
        figures, ratios = measure(commands, args.rounds)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if before is not None:
            drop_tree(before)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"start-up, median of {args.rounds} rounds (before: {BEFORE if before else 'history not there'}); "
          f"the resume is over {args.files:,} settled files\n")
    print("| run | wall ms | CPU ms | wall / python -c pass | now / before |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (wall, cpu) in figures.items():
        kind = name.split(",")[0]
        versus = ""
        if name.endswith(", now") and f"{kind}, before" in ratios:
            versus = f"{ratios[name] / ratios[f'{kind}, before']:.2f}"
        print(f"| {name} | {wall * 1000:.0f} | {cpu * 1000:.0f} | {ratios[name]:.2f} | {versus} |")


if __name__ == "__main__":
    main()
