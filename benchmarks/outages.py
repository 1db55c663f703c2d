"""Issue 11's "done when" scenarios at full scale, with the real probe schedule (minutes, not seconds).

    python benchmarks/outages.py window      # 20 s all-503 window in the middle of 600 events, 60 users
    python benchmarks/outages.py quota       # 429 + Retry-After: 120 for 100 s (takes ~2.5 min)
    python benchmarks/outages.py down        # PX down for good, --max-outage 10, then a --checkpoint rerun
    python benchmarks/outages.py slow        # answers slower than delivery.timeout for 5 s
    python benchmarks/outages.py doomed      # one event always 502, connections closed every 10 requests

Each runs `python -m gspx_cli send` as a user would, against the stand-in on 127.0.0.1, and prints
what the issue asks to check.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gspx_cli.sandbox import FakePX, SandboxServer  # noqa: E402

KEY = "bench-key"


def events_for(users, per_user):
    """identify, then tracks, per user, users interleaved; each track has a unique n."""
    out, n = [], 0
    for i in range(per_user):
        for u in range(users):
            if i == 0:
                out.append({"type": "identify", "userId": f"u{u}", "traits": {"email": f"u{u}@x.io"}})
            else:
                out.append({"type": "track", "userId": f"u{u}", "event": "E", "properties": {"n": n}})
                n += 1
    return out, n


def send(tmp, base_url, events_path, *args, timeout=10):
    cfg = tmp / "gspx.yaml"
    cfg.write_text(f"product_tag_key: AP-B-1\nbase_url: {base_url}\n"
                   f"delivery:\n  concurrency: 8\n  rate_limit: 100\n  max_retries: 5\n  timeout: {timeout}\n")
    report = tmp / "report.json"
    env = {**os.environ, "GSPX_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "-c", str(cfg), "--report", str(report),
                           *args, str(events_path)], env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    data = json.loads(report.read_text())
    lines = [ln for ln in proc.stderr.splitlines() if "Gainsight PX" in ln or ln.startswith(("held", "dupl"))]
    print(f"exit {proc.returncode} in {took:.1f}s; read {data['read']} delivered {data['delivered']} "
          f"failed {data['failed']} not_sent {data['not_sent']}; holds {data['holds']} held "
          f"{data['held_seconds']:.1f}s; possible_duplicates {data['possible_duplicates']}")
    for ln in lines:
        print("  stderr:", ln)
    return proc.returncode, data


def per_second(times):
    return max((sum(1 for s in times if t <= s < t + 1) for t in times), default=0)


def order_kept(px, events):
    want = defaultdict(list)
    for e in events:
        if e["type"] == "track":
            want[e["userId"]].append(e["properties"]["n"])
    got = defaultdict(list)
    for r in px.requests:
        if r.path == "/v1/events/custom" and 200 <= r.status < 300:
            got[r.body["identifyId"]].append(r.body["attributes"]["n"])
    return dict(got) == dict(want)


def window(tmp):
    events, n = events_for(60, 10)  # 600 events
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    px = FakePX()
    with SandboxServer(px) as server:
        px.outage(20, status=503, after=3)
        code, data = send(tmp, server.base_url, path)
    start, end, _, _ = px._outage
    during = [r.t for r in px.requests if start <= r.t < end]
    back = min(r.t for r in px.requests if r.t >= end and 200 <= r.status < 300) - end
    print(f"during the 20 s window: {len(during)} requests, at most {per_second(during)} in any second; "
          f"first success {back:.1f}s after recovery; per-user order kept: {order_kept(px, events)}; "
          f"custom events once each: {Counter(e['attributes']['n'] for e in px.events) == Counter(range(n))}")


def quota(tmp):
    events, n = events_for(20, 10)
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    px = FakePX()
    with SandboxServer(px) as server:
        px.outage(100, status=429, retry_after="120", after=1)
        send(tmp, server.base_url, path, "--max-retries", "1")
    first = min(r.t for r in px.requests if r.status == 429)
    early = [r for r in px.requests if first + 0.2 < r.t < first + 120]
    print(f"requests between the first 429 and 120 s later: {len(early)}; "
          f"custom events once each: {Counter(e['attributes']['n'] for e in px.events) == Counter(range(n))}")


def down(tmp):
    events, n = events_for(30, 20)
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    ckpt = tmp / "run.ckpt"
    px = FakePX()
    with SandboxServer(px) as server:
        px.outage(None, status=503, after=2)
        code, data = send(tmp, server.base_url, path, "--max-outage", "10", "--checkpoint", str(ckpt))
        print(f"counts add up: {data['read'] == data['delivered'] + data['skipped'] + data['failed'] + data['not_sent']}")
        px.end_outage()
        send(tmp, server.base_url, path, "--checkpoint", str(ckpt))
    print(f"after the rerun, custom events once each: "
          f"{Counter(e['attributes']['n'] for e in px.events) == Counter(range(n))}")


def slow(tmp):
    events, n = events_for(10, 11)
    events = [e for e in events if e["type"] == "track"]  # custom events first: their repeats are the duplicates
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    px = FakePX(latency=1.5)
    with SandboxServer(px) as server:
        threading.Timer(5, setattr, (px, "latency", 0.0)).start()
        code, data = send(tmp, server.base_url, path, timeout=1)
    tracks = Counter(e["attributes"]["n"] for e in px.events)
    print(f"duplicate custom events in PX: {sum(tracks.values()) - n}; "
          f"possible_duplicates reported: {data['possible_duplicates']}")


def doomed(tmp):
    """Issue 23: 300 events and one PX always answers with a 502 page, connections closed every 10
    requests, abruptly then silently; defaults (max_retries 5). It was 21 tries / ~6 min when abrupt."""
    events = [{"type": "track", "userId": f"u{i % 60}", "event": "E", "properties": {"n": i}} for i in range(300)]
    events.insert(150, {"type": "track", "userId": "u-doomed", "event": "Doomed", "properties": {"n": -1}})
    path = tmp / "events.ndjson"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    for mode in ("abrupt", "silent"):
        px = FakePX(close_after=10, close_mode=mode)
        px.fail_always("Doomed", 502)
        print(f"closes {mode}:", end=" ")
        with SandboxServer(px) as server:
            send(tmp, server.base_url, path)
        tries = [r.t for r in px.requests if isinstance(r.body, dict) and r.body.get("eventName") == "Doomed"]
        print(f"  doomed event: {len(tries)} tries over {tries[-1] - tries[0]:.1f}s; "
              f"{sum(1 for r in px.requests if r.status == 0)} requests dropped by the closes")


if __name__ == "__main__":
    scenario = sys.argv[1] if len(sys.argv) > 1 else "window"
    with tempfile.TemporaryDirectory() as d:
        {"window": window, "quota": quota, "down": down, "slow": slow, "doomed": doomed}[scenario](Path(d))
