"""gspx benchmark: `python benchmarks/bench.py` (issue 5; docs/performance.md).

Makes its own deterministic synthetic input (mixed identify/group/track, ~0.7 KB a line, repeat
users and accounts) and prints six figures, each a ratio of two things measured in this run.
Every child process runs without PYTHONUNBUFFERED (as in a user's shell; it would make both
sides write stdout unbuffered and skew figure 1):

1. dry-run time / plain `json.loads` + `json.dumps` of every line, both as subprocesses with
   interpreter start-up, alternated in pairs; the median ratio;
2. delivered requests per second / the configured rate limit, against the local stand-in;
3. requests per event, by event type, against the stand-in (and the identify bound);
4. peak RSS of a dry run over a small and a large input, and their ratio;
5. start-up: a one-event dry run (-q) / `python -c pass`, whole processes, median of alternated pairs;
6. live CPU: CPU seconds of `gspx send` per 1,000 requests to the stand-in (no latency) / a plain
   `requests.Session` loop posting the same bodies with the same concurrency.

`--quick` makes every size small, for a smoke test (tests/test_bench.py); its figures mean little.
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # delivery_rate.py beside this file
sys.path.insert(1, str(HERE.parent))  # gspx_cli, when run from a checkout without installing

PRODUCT_TAG = "AP-BENCH-00000-2"
USERS_PER_EVENT = 1 / 20  # ~20 events per user: a day of product analytics per active user
ACCOUNTS_PER_USER = 1 / 10
TYPE_MIX = (("track", 0.70), ("identify", 0.20), ("group", 0.10))

# The yardstick of figure 1: parse and re-serialise every line with the standard library, writing
# to stdout as gspx does (the benchmark points both at /dev/null).
PLAIN_LOOP = """\
import json, sys
write = sys.stdout.write
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        write(json.dumps(json.loads(line)) + "\\n")
"""


# ---- synthetic input ---------------------------------------------------------------------------

_EVENT_NAMES = ("Order Completed", "Product Viewed", "Report Exported", "Dashboard Opened", "Invite Sent",
                "Search Performed", "Checkout Started", "Feature Used", "File Uploaded", "Comment Added")
_PLANS = ("free", "starter", "pro", "enterprise")
_INDUSTRIES = ("Software", "Retail", "Healthcare", "Finance", "Education", "Media", "Logistics")
_CITIES = (("Chennai", "IN", "India"), ("Berlin", "DE", "Germany"), ("Austin", "US", "United States"),
           ("Lyon", "FR", "France"), ("Osaka", "JP", "Japan"), ("Leeds", "GB", "United Kingdom"))
_FIRST = ("Ana", "Bilal", "Chen", "Dara", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Jamal", "Zoë")
_LAST = ("Okafor", "Schmidt", "Tanaka", "García", "Nguyen", "Kowalski", "Singh", "Müller", "Dubois")
_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"


def _uuid(rng):
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _iso(ms):
    secs, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def _common(rng, user, ms):
    ts = _iso(ms)
    return {
        "userId": user, "anonymousId": _uuid(rng), "messageId": _uuid(rng),
        "timestamp": ts, "originalTimestamp": ts,
        "channel": "web",
        "context": {
            "library": {"name": "RudderLabs JavaScript SDK", "version": "3.7.6"},
            "ip": f"203.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "locale": "en-US",
            "userAgent": _AGENT, "sessionId": 1714560000000 + rng.randint(0, 10**7),
        },
    }


def _identify(rng, user, ms):
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, code, country = rng.choice(_CITIES)
    event = _common(rng, user, ms)
    event.update(type="identify", traits={
        "email": f"{user}@example.com", "firstName": first, "lastName": last, "title": "Engineer",
        "score": rng.randint(0, 100), "plan": rng.choice(_PLANS), "city": city, "countryCode": code,
        "countryName": country, "signUpDate": _iso(ms - rng.randint(10**8, 10**10)),
        "hobbyCustomField": rng.choice(("chess", "running", "piano")),
    })
    return event


def _group(rng, user, account, ms):
    event = _common(rng, user, ms)
    event.update(type="group", groupId=account, traits={
        "name": f"Company {account}", "industry": rng.choice(_INDUSTRIES),
        "numberOfEmployees": rng.randint(5, 20000), "plan": rng.choice(_PLANS),
        "website": f"https://{account}.example.com", "cultureCustomField": "remote-first",
    })
    return event


def _track(rng, user, account, ms):
    event = _common(rng, user, ms)
    path = f"/app/{rng.choice(('orders', 'reports', 'settings', 'search'))}/{rng.randint(1, 9999)}"
    event["context"]["page"] = {"url": "https://app.example.com" + path, "referrer": "https://app.example.com/",
                                "path": path}
    event["context"]["traits"] = {"groupId": account}
    event.update(type="track", event=rng.choice(_EVENT_NAMES), properties={
        "value": round(rng.uniform(1, 500), 2), "currency": "USD", "itemCount": rng.randint(1, 12),
        "source": rng.choice(("web", "email", "ads")), "tags": ["beta", rng.choice(_PLANS)],
    })
    return event


def make_events(path, n, seed=5, mix=TYPE_MIX, exact_mix=False):
    """Write n deterministic synthetic events as NDJSON; returns the number of distinct users.
    mix: (type, weight) pairs; a user's first event is an identify whatever it says, so identifies come
    out a few points above their weight (24% of 100,000 for 20%). exact_mix: the share of each type is its
    weight all the same: an identify goes to a user not seen yet while there is one, any other event to
    a user already seen (the first event is an identify)."""
    rng = random.Random(seed)
    n_users = max(2, round(n * USERS_PER_EVENT))
    n_accounts = max(1, round(n_users * ACCOUNTS_PER_USER))
    account_of = [f"acct-{i % n_accounts:05d}" for i in range(n_users)]
    types, weights = zip(*mix)
    pick, seen = (_exact_picks if exact_mix else _first_sight_picks)(rng, n_users, types, weights)
    ms = 1714560000000
    import json  # the generator's own, independent of gspx's jsonio

    with open(path, "w", encoding="utf-8") as out:
        for _ in range(n):
            ms += rng.randint(1, 2000)
            kind, u = pick()
            user = f"user-{u:06d}"
            if kind == "identify":
                event = _identify(rng, user, ms)
            elif kind == "group":
                event = _group(rng, user, account_of[u], ms)
            else:
                event = _track(rng, user, account_of[u], ms)
            out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
    return len(seen)


def _first_sight_picks(rng, n_users, types, weights):
    """(pick() -> (type, user number), the users seen): a random user and type, identify at first sight."""
    seen = set()

    def pick():
        u = rng.randrange(n_users)
        kind = rng.choices(types, weights)[0]
        if u not in seen:  # a user is identified when first seen, as SDKs do on login
            kind = "identify"
            seen.add(u)
        return kind, u

    return pick, seen


def _exact_picks(rng, n_users, types, weights):
    """As _first_sight_picks, the types drawn first: an identify takes a user not seen yet while there is one."""
    unseen = list(range(n_users))
    rng.shuffle(unseen)
    seen = []

    def pick():
        kind = rng.choices(types, weights)[0] if seen else "identify"
        if kind == "identify" and unseen:
            seen.append(unseen.pop())
            return kind, seen[-1]
        return kind, rng.choice(seen)

    return pick, seen


def write_config(path, base_url=None):
    """A dry-run/delivery config like a real one: attribute maps and a global context."""
    where = f"base_url: {base_url}\n" if base_url else "data_center: US\n"
    Path(path).write_text(
        f"product_tag_key: {PRODUCT_TAG}\n{where}"
        "user_attribute_map:\n  hobbyCustomField: hobby\n"
        "account_attribute_map:\n  cultureCustomField: culture\n"
        "global_context:\n  projectId: p-123\n"
        "delivery:\n  concurrency: 16\n  rate_limit: 200\n  max_retries: 3\n  timeout: 10\n"
    )
    os.chmod(path, 0o600)


def _prefix(src, dst, n):
    """The first n lines of src, so every input size shares one distribution."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for i, line in enumerate(fin):
            if i >= n:
                break
            fout.write(line)


# ---- running children --------------------------------------------------------------------------


_EXTRA_ENV = {}  # set while figure 6 runs: the stand-in's API key


def _child_env():
    # A user's plain shell: PYTHONUNBUFFERED would make gspx write stdout line by line and the
    # stdlib loop's writes unbuffered and slow (flattering figure 1), and PYTHONDONTWRITEBYTECODE
    # would recompile gspx at every start, which an installed package never does.
    env = dict(os.environ)
    for name in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "GSPX_CONFIG", "GSPX_API_KEY"):
        env.pop(name, None)
    env.update(_EXTRA_ENV)
    return env


def _run(cmd):
    """Run cmd with stdout to /dev/null; (wall seconds, CPU seconds, peak RSS in bytes)."""
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=err, env=_child_env())
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS, its CPU time
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err.read().decode()[-2000:]}")
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # kB on Linux, bytes on macOS
    return wall, usage.ru_utime + usage.ru_stime, rss


def _dry_run_cmd(config, path):
    return [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "--no-progress", "-c", str(config), str(path)]


# ---- the four figures --------------------------------------------------------------------------


def dry_run_ratio(config, path, pairs):
    """Figure 1: median over alternated pairs of dry-run time / stdlib loop time (wall and CPU)."""
    plain_cmd = [sys.executable, "-c", PLAIN_LOOP, str(path)]
    gspx_cmd = _dry_run_cmd(config, path)
    _run(gspx_cmd)  # warm-up: page cache, and bytecode written once as an install would
    walls, cpus, gspx_walls, plain_walls = [], [], [], []
    for i in range(pairs):
        order = (plain_cmd, gspx_cmd) if i % 2 == 0 else (gspx_cmd, plain_cmd)  # ABBA: drift cancels
        results = {id(cmd): _run(cmd) for cmd in order}
        g, p = results[id(gspx_cmd)], results[id(plain_cmd)]
        walls.append(g[0] / p[0])
        cpus.append(g[1] / p[1])
        gspx_walls.append(g[0])
        plain_walls.append(p[0])
    return {"ratio": statistics.median(walls), "cpu_ratio": statistics.median(cpus),
            "gspx_s": statistics.median(gspx_walls), "plain_s": statistics.median(plain_walls),
            "min": min(walls), "max": max(walls)}


def delivery_figures(events, latency, rate, concurrency):
    """Figures 2 and 3, from benchmarks/delivery_rate.py (the delivery engineer's stand-in run)."""
    import delivery_rate

    m = delivery_rate.measure(events=events, latency=latency, rate=rate, concurrency=concurrency)
    # the same input measure() sends, to count its distinct users and accounts
    sent = delivery_rate.mixed_events(events)
    identifies = [e for e in sent if e["type"] == "identify"]
    groups = [e for e in sent if e["type"] == "group"]
    m["distinct_users"] = len({e["userId"] for e in identifies})
    m["identify_events"] = len(identifies)
    m["group_events"] = len(groups)
    m["distinct_accounts"] = len({e["groupId"] for e in groups})
    return m


def peak_rss(config, path):
    """Figure 4: the dry run's peak resident set size, in bytes."""
    return _run(_dry_run_cmd(config, path))[2]


def _pairs(a_cmd, b_cmd, pairs, measure=0):
    """Median over alternated pairs (ABBA) of a/b for one of _run's figures (0 wall, 1 CPU), and the medians."""
    _run(a_cmd)
    _run(b_cmd)
    ratios, a_vals, b_vals = [], [], []
    for i in range(pairs):
        order = (a_cmd, b_cmd) if i % 2 == 0 else (b_cmd, a_cmd)
        results = {id(cmd): _run(cmd)[measure] for cmd in order}
        a, b = results[id(a_cmd)], results[id(b_cmd)]
        ratios.append(a / b)
        a_vals.append(a)
        b_vals.append(b)
    return {"ratio": statistics.median(ratios), "a": statistics.median(a_vals), "b": statistics.median(b_vals),
            "min": min(ratios), "max": max(ratios)}


def startup_ratio(config, one_event_path, pairs):
    """Figure 5: a one-event dry run with -q against an empty interpreter, both whole processes."""
    gspx_cmd = [sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-q", "-c", str(config), str(one_event_path)]
    return _pairs(gspx_cmd, [sys.executable, "-c", "pass"], pairs)


# The yardstick of figure 6: what a hand-written sender does, with as many threads as gspx has connections.
PLAIN_SENDER = """\
import json, sys, threading, requests
url, key, path, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bodies = [json.loads(line) for line in open(path, encoding="utf-8")]
def work(part):
    with requests.Session() as s:
        s.headers.update({"X-APTRINSIC-API-KEY": key, "Content-Type": "application/json"})
        for body in part:
            s.post(url, data=json.dumps(body), timeout=10).raise_for_status()
threads = [threading.Thread(target=work, args=(bodies[i::concurrency],)) for i in range(concurrency)]
for t in threads: t.start()
for t in threads: t.join()
"""


def live_cpu_ratio(events, concurrency, pairs):
    """Figure 6: CPU seconds per 1,000 requests, gspx send / a plain requests loop, same bodies, same stand-in."""
    from gspx_cli.sandbox import FakePX, SandboxServer

    key = "bench-key"
    with tempfile.TemporaryDirectory(prefix="gspx-bench-") as tmp, SandboxServer(FakePX(api_key=key)) as server:
        tmp = Path(tmp)
        rng = random.Random(7)
        lines = []
        for n in range(events):
            user = f"user-{n % 97}"
            lines.append(_track(rng, user, f"acct-{n % 13}", 1714560000000 + n * 1000))
        src = tmp / "track.ndjson"
        src.write_text("".join(json.dumps(e) + "\n" for e in lines))
        cfg = tmp / "gspx.yaml"
        cfg.write_text(f"product_tag_key: {PRODUCT_TAG}\nbase_url: {server.base_url}\n")
        # the bodies gspx would send, from its own dry run: the yardstick posts exactly those
        dry = subprocess.run(_dry_run_cmd(cfg, src), capture_output=True, text=True, env=_child_env(), check=True)
        bodies = tmp / "bodies.ndjson"
        bodies.write_text("".join(json.dumps(json.loads(line)["requests"][0]["json"]) + "\n"
                                  for line in dry.stdout.splitlines()))
        env_key = {"GSPX_API_KEY": key}
        gspx_cmd = [sys.executable, "-m", "gspx_cli", "send", "-q", "-c", str(cfg), "--rate-limit", "1000000",
                    "--concurrency", str(concurrency), str(src)]
        plain_cmd = [sys.executable, "-c", PLAIN_SENDER, server.base_url + "/events/custom", key, str(bodies),
                     str(concurrency)]
        global _EXTRA_ENV
        _EXTRA_ENV = env_key
        try:
            result = _pairs(gspx_cmd, plain_cmd, pairs, measure=1)
        finally:
            _EXTRA_ENV = {}
    per_k = 1000 / events
    return {**result, "a": result["a"] * per_k, "b": result["b"] * per_k}


# ---- the table ---------------------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mb(n):
    return f"{n / 2**20:.1f} MB"


def main(argv=None):
    """Make the inputs, measure, print the table."""
    ap = argparse.ArgumentParser(description="gspx benchmark (issue 5): four figures, each a ratio.")
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 pair: a smoke test, not a measurement")
    ap.add_argument("--events", type=int, help="dry-run events for figure 1 [100000]")
    ap.add_argument("--pairs", type=int, help="alternated pairs for figure 1 [5]")
    ap.add_argument("--delivery-events", type=int, help="events sent to the stand-in [1000]")
    ap.add_argument("--mem-small", type=int, help="events of the small dry run of figure 4 [50000]")
    ap.add_argument("--mem-large", type=int, help="events of the large dry run of figure 4 [500000]")
    ap.add_argument("--startup-pairs", type=int, help="alternated pairs for figure 5 [11]")
    ap.add_argument("--live-events", type=int, help="requests per run of figure 6 [3000]")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    quick = {"events": 1000, "pairs": 1, "delivery_events": 60, "mem_small": 500, "mem_large": 2000,
             "startup_pairs": 1, "live_events": 100}
    full = {"events": 100_000, "pairs": 5, "delivery_events": 1000, "mem_small": 50_000, "mem_large": 500_000,
            "startup_pairs": 11, "live_events": 3000}
    sizes = {k: getattr(args, k) or (quick if args.quick else full)[k] for k in full}
    latency, rate, concurrency = 0.025, 200, 16

    tmp = Path(tempfile.mkdtemp(prefix="gspx-bench-"))
    try:
        largest = max(sizes["events"], sizes["mem_small"], sizes["mem_large"])
        started = time.perf_counter()
        all_events = tmp / "events.ndjson"
        make_events(all_events, largest, seed=args.seed)
        config = tmp / "gspx.yaml"
        write_config(config)
        avg = all_events.stat().st_size / largest
        print(f"input: {largest:,} synthetic events made in {time.perf_counter() - started:.0f} s, "
              f"{avg:.0f} bytes a line; types {', '.join(f'{t} {w:.0%}' for t, w in TYPE_MIX)}; "
              f"1 user per {1 / USERS_PER_EVENT:.0f} events, 1 account per {1 / ACCOUNTS_PER_USER:.0f} users",
              file=sys.stderr)

        def sized(n):
            if n == largest:
                return all_events
            path = tmp / f"events-{n}.ndjson"
            _prefix(all_events, path, n)
            return path

        print("children run without PYTHONUNBUFFERED, as in a user's shell", file=sys.stderr)
        print(f"1/6 dry run vs stdlib loop, {sizes['events']:,} events, {sizes['pairs']} pairs...", file=sys.stderr)
        dry = dry_run_ratio(config, sized(sizes["events"]), sizes["pairs"])
        print(f"2/6, 3/6 delivery to the stand-in, {sizes['delivery_events']:,} events...", file=sys.stderr)
        dlv = delivery_figures(sizes["delivery_events"], latency, rate, concurrency)
        print("4/6 peak RSS...", file=sys.stderr)
        small_path = sized(sizes["mem_small"])
        rss_small = peak_rss(config, small_path)
        if small_path != all_events:
            small_path.unlink()
        rss_large = peak_rss(config, sized(sizes["mem_large"]))
        print(f"5/6 start-up, {sizes['startup_pairs']} pairs...", file=sys.stderr)
        one = tmp / "one.ndjson"
        _prefix(all_events, one, 1)
        start = startup_ratio(config, one, sizes["startup_pairs"])
        print(f"6/6 live CPU, {sizes['live_events']:,} requests a run...", file=sys.stderr)
        live = live_cpu_ratio(sizes["live_events"], concurrency, max(1, sizes["pairs"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    per_type = dlv["requests_per_event_by_type"]
    bound = 1 + dlv["distinct_users"] / max(1, dlv["identify_events"])
    group_floor = 2 + dlv["distinct_accounts"] / max(1, dlv["group_events"])
    try:
        import orjson
        json_lib = f"orjson {orjson.__version__}"
    except ImportError:
        json_lib = "no orjson"
    print(f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, {json_lib}")
    print()
    print("| # | figure | measured | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| 1 | dry-run time / stdlib `json.loads`+`json.dumps` loop, {sizes['events']:,} events "
          f"(median of {sizes['pairs']} alternated pairs; CPU-time ratio {dry['cpu_ratio']:.2f}) "
          f"| {dry['gspx_s']:.2f} s / {dry['plain_s']:.2f} s | **{dry['ratio']:.2f}** "
          f"(range {dry['min']:.2f}-{dry['max']:.2f}) | <= 1.0 |")
    print(f"| 2 | delivered requests/s / `--rate-limit`, {dlv['events']:,} events, stand-in latency "
          f"{latency * 1000:g} ms, `--rate-limit {rate} --concurrency {concurrency}` "
          f"| {dlv['requests_per_s']:.1f} / {rate} req/s (max in a 1 s window: {dlv['max_1s_window']}) "
          f"| **{dlv['ratio_to_limit']:.2f}** | >= 0.9 |")
    print(f"| 3 | requests per event, repeat users and accounts ({dlv['identify_events']} identify / "
          f"{dlv['distinct_users']} users; {dlv['group_events']} group / {dlv['distinct_accounts']} accounts) "
          f"| identify {per_type.get('identify', 0):.2f} (bound 1 + users/identifies = {bound:.2f}); "
          f"group {per_type.get('group', 0):.2f} (floor {group_floor:.2f}); track {per_type.get('track', 0):.2f} "
          f"| **{per_type.get('identify', 0) / bound:.3f}** (identify / bound) | identify <= bound + 2% |")
    print(f"| 4 | peak RSS of a dry run, {sizes['mem_large']:,} / {sizes['mem_small']:,} events "
          f"| {_mb(rss_large)} / {_mb(rss_small)} | **{rss_large / rss_small:.2f}** "
          f"| < 120 MB, <= 1.2 |")
    print(f"| 5 | start-up: one-event dry run (`-q`) / `python -c pass`, whole processes "
          f"(median of {sizes['startup_pairs']} alternated pairs) "
          f"| {start['a'] * 1000:.0f} ms / {start['b'] * 1000:.0f} ms | **{start['ratio']:.2f}** "
          f"(range {start['min']:.2f}-{start['max']:.2f}) | <= 5.0 |")
    print(f"| 6 | CPU per 1,000 requests: `gspx send` / a plain `requests.Session` loop, same bodies, "
          f"{concurrency} threads, stand-in without latency ({sizes['live_events']:,} requests a run) "
          f"| {live['a']:.2f} s / {live['b']:.2f} s | **{live['ratio']:.2f}** "
          f"(range {live['min']:.2f}-{live['max']:.2f}) | <= 1.1 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
