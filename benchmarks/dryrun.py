"""The dry run's speed and memory (issue 22): `python benchmarks/dryrun.py [--quick] [--pairs N]`.

Three figures, each a ratio of things measured side by side in this run (children without
PYTHONUNBUFFERED, stdout to /dev/null; inputs from bench.py's generator, each event its own messageId):

3. peak RSS of a dry run over 500,000 events / over 50,000 (target <= 1.3, and <= 60 MB);
4. a dry run with `--type identify -q` over 100,000 events of the issue's mix (20% identify, 10% group,
   70% track, each user identified at its first event: bench.make_events(exact_mix=True)) / the stdlib
   `json.loads` + `json.dumps` loop over the same lines (target <= 0.6); in the same rounds, the same
   over bench.py's usual events, where each user's first event is an identify on top of the mix (24%
   identify), as this figure was measured before 2026-12-07. Its own events: the first 100,000 of
   figure 3's 500,000 hold 40% identifies (25,000 users, each identified at first sight);
5. a dry run keeping everything / the stdlib loop, on bench.py's mix and on an identify- and group-heavy
   one (35% identify, 20% group, 45% track; both with attribute maps and a global context), and the
   same command at BEFORE (3ac9130: before the quota work, from a git worktree when the history is
   there) / the stdlib loop, the three run in turn (ABC, then rotated) so drift cancels.

Ratios are medians of per-round ratios; the CPU-time ratio is printed beside the wall-time one (on
a shared machine it moves less), and for figure 4 the ratio of each command's quickest run (the
rounds least disturbed by the machine's other tenants, which slow gspx's larger working set more
than the loop's). `--only 4` measures just figure 4 (repeatable); `--compare REV` also
runs figure 4's command at REV (a git worktree of it) in the same rounds, e.g. the commit before a change.
"""

import argparse
import statistics
import sys
import tempfile
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402
from quota import before_tree, drop_tree  # noqa: E402

BEFORE = "3ac9130"  # the last commit before the quota work (issue 17)
HEAVY_MIX = (("track", 0.45), ("identify", 0.35), ("group", 0.20))


def dry_run(config, path, *extra, tree=None):
    cmd = [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "--no-progress", "-c", str(config), *extra,
           str(path)]
    if tree is None:
        return cmd
    # PYTHONPATH before the installed package, and -P so that the current directory (a checkout of
    # today's gspx_cli, as `python -m` would put first) is not: the old tree's gspx_cli is the one imported
    return ["env", f"PYTHONPATH={tree}", sys.executable, "-P", *cmd[1:]]


def rounds(cmds, n):
    """{name: {"wall": [...], "cpu": [...]}} over n rounds, the order rotated each round."""
    names = list(cmds)
    for name in names:  # warm-up: page cache, bytecode
        bench._run(cmds[name])
    out = {name: {"wall": [], "cpu": []} for name in names}
    for i in range(n):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            wall, cpu, _ = bench._run(cmds[name])
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
    return out


def _identify_share(path, n):
    with open(path, "rb") as f:
        return sum(b'"type":"identify"' in line for line in f) / n


def ratio(times, a, b, measure):
    return statistics.median(x / y for x, y in zip(times[a][measure], times[b][measure]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test, figures mean little")
    ap.add_argument("--pairs", type=int, help="rounds per figure [5]")
    ap.add_argument("--before", help=f"a checkout of {BEFORE} to compare with (default: a git worktree of it)")
    ap.add_argument("--only", type=int, choices=(3, 4, 5), action="append", help="only this figure (repeatable)")
    ap.add_argument("--compare", metavar="REV", help="figure 4 also at REV, side by side (a git worktree of it)")
    args = ap.parse_args(argv)
    figures = set(args.only or (3, 4, 5))
    n_time, n_small, n_large, pairs = (2_000, 500, 5_000, 1) if args.quick else (100_000, 50_000, 500_000, 5)
    pairs = args.pairs or pairs
    tmp = Path(tempfile.mkdtemp(prefix="gspx-dryrun-"))
    tree = compare = None
    try:
        config = tmp / "gspx.yaml"
        bench.write_config(config)  # attribute maps and a global context
        mix, heavy, large = tmp / "mix.ndjson", tmp / "heavy.ndjson", tmp / "large.ndjson"
        bench.make_events(large, n_large)
        bench._prefix(large, mix, n_time)
        small = tmp / "small.ndjson"
        bench._prefix(large, small, n_small)
        bench.make_events(heavy, n_time, seed=9, mix=HEAVY_MIX)
        if 5 in figures:
            tree = Path(args.before) if args.before else before_tree(tmp, BEFORE)
        if args.compare and 4 in figures:
            compare = before_tree(tmp / "compare", args.compare)
        plain = {name: [sys.executable, "-c", bench.PLAIN_LOOP, str(path)] for name, path in
                 (("plain mix", mix), ("plain heavy", heavy))}

        if 3 in figures:
            print(f"3/5 peak RSS, {n_large:,} and {n_small:,} events...", file=sys.stderr)
            rss_large = bench._run(dry_run(config, large))[2]
            rss_small = bench._run(dry_run(config, small))[2]

        if 4 in figures:
            print(f"4/5 --type identify, {n_time:,} events, {pairs} rounds...", file=sys.stderr)
            own, usual = tmp / "filtered.ndjson", tmp / "filtered-usual.ndjson"
            bench.make_events(own, n_time, exact_mix=True)
            bench.make_events(usual, n_time)
            identify_share = {path: _identify_share(path, n_time) for path in (own, usual)}
            filtered = ("-q", "--type", "identify")
            cmds = {"gspx": dry_run(config, own, *filtered),
                    "plain": [sys.executable, "-c", bench.PLAIN_LOOP, str(own)],
                    "gspx usual": dry_run(config, usual, *filtered),
                    "plain usual": [sys.executable, "-c", bench.PLAIN_LOOP, str(usual)]}
            if compare is not None:
                cmds["compare"] = dry_run(config, own, *filtered, tree=compare)
            f4 = rounds(cmds, pairs)

        f5 = {}
        for label, path in (("mix", mix), ("heavy", heavy)) if 5 in figures else ():
            print(f"5/5 keeping everything, {label}, {n_time:,} events, {pairs} rounds...", file=sys.stderr)
            cmds = {"gspx": dry_run(config, path), "plain": plain[f"plain {label}"]}
            if tree is not None:
                cmds["before"] = dry_run(config, path, tree=tree)
            f5[label] = rounds(cmds, pairs)
    finally:
        if tree is not None and not args.before:
            drop_tree(tree)
        if compare is not None:
            drop_tree(compare)
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print("| # | figure | measured | ratio | target |")
    print("|---|---|---|---|---|")
    if 3 in figures:
        print(f"| 3 | peak RSS of a dry run, {n_large:,} / {n_small:,} events (each its own messageId) "
              f"| {bench._mb(rss_large)} / {bench._mb(rss_small)} | **{rss_large / rss_small:.2f}** | <= 1.3, <= 60 MB |")
    if 4 in figures:
        at = (f"; at {args.compare}: {med(f4['compare']['wall']):.2f} s, "
              f"**{ratio(f4, 'compare', 'plain', 'wall'):.2f}** (CPU {ratio(f4, 'compare', 'plain', 'cpu'):.2f})"
              if "compare" in f4 else "")
        for mark, gspx, plain, path, what in (("4", "gspx", "plain", own, "the issue's mix"),
                                               ("4'", "gspx usual", "plain usual", usual, "bench.py's usual events")):
            print(f"| {mark} | dry run `--type identify -q` / stdlib loop, {n_time:,} events of {what} "
                  f"({identify_share[path]:.0%} identify) "
                  f"| {med(f4[gspx]['wall']):.2f} s / {med(f4[plain]['wall']):.2f} s "
                  f"| **{ratio(f4, gspx, plain, 'wall'):.2f}** (CPU {ratio(f4, gspx, plain, 'cpu'):.2f}; "
                  f"quickest runs {min(f4[gspx]['wall']) / min(f4[plain]['wall']):.2f}){at if gspx == 'gspx' else ''} "
                  "| <= 0.6 |")
    for label, what in (("mix", "bench.py's mix (70% track)"), ("heavy", "identify- and group-heavy (45% track)")) \
            if 5 in figures else ():
        t = f5[label]
        before = (f"; at {BEFORE}: {med(t['before']['wall']):.2f} s, **{ratio(t, 'before', 'plain', 'wall'):.2f}** "
                  f"(CPU {ratio(t, 'before', 'plain', 'cpu'):.2f}); now / {BEFORE}: "
                  f"**{ratio(t, 'gspx', 'before', 'wall'):.2f}**") if "before" in t else ""
        print(f"| 5 | dry run / stdlib loop, {n_time:,} events, {what} "
              f"| {med(t['gspx']['wall']):.2f} s / {med(t['plain']['wall']):.2f} s "
              f"| **{ratio(t, 'gspx', 'plain', 'wall'):.2f}** (CPU {ratio(t, 'gspx', 'plain', 'cpu'):.2f}){before} "
              f"| below {BEFORE}, then 1.0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
