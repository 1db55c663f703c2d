"""Users joining one new account at once (issue 23): `python benchmarks/shared_account.py [--users N ...]`.

For each N: N identifies of new users, then N groups of those users into one new account, sent by
`gspx send` against the local stand-in (the one `gspx sandbox` serves, 30 ms latency) at
--concurrency 16 and at --concurrency 1, in this run, side by side: requests in all, and the
account's requests by method and status. MAPPING.md "One object, one write at a time" wants the
same figures at both: one create of the account (update-first: PUT 404, POST 201), no refused
create, and one attach per user.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # gspx_cli, from a checkout

from gspx_cli.sandbox import FakePX, SandboxServer  # noqa: E402


def run_once(users, concurrency, upsert):
    """(requests in all, the account's requests as "METHOD status" -> n) of one gspx run."""
    server = SandboxServer(FakePX(latency=0.03))
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, path = Path(tmp, "gspx.yaml"), Path(tmp, "events.ndjson")
            cfg.write_text(f"product_tag_key: AP-1\nbase_url: {server.base_url}\n")
            lines = [{"type": "identify", "userId": f"u{n}"} for n in range(users)]
            lines += [{"type": "group", "userId": f"u{n}", "groupId": "g1", "traits": {"name": "Acme"}}
                      for n in range(users)]
            path.write_text("".join(json.dumps(e) + "\n" for e in lines))
            env = {**os.environ, "GSPX_API_KEY": "bench-key"}
            env.pop("PYTHONUNBUFFERED", None)
            subprocess.run([sys.executable, "-m", "gspx_cli", "send", "-c", str(cfg), "--concurrency",
                            str(concurrency), "--upsert", upsert, str(path)], env=env, capture_output=True,
                           timeout=300, check=False)
        requests = server.px.requests
        account = Counter(f"{r.method} {r.status}" for r in requests if r.path.startswith("/v1/accounts"))
        return len(requests), dict(sorted(account.items()))
    finally:
        server.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[2, 20, 100])
    ap.add_argument("--upsert", default="update-first")
    args = ap.parse_args(argv)
    print(f"{'users':>6}  {'concurrency 16':<48}  concurrency 1")
    for users in args.users:
        wide, one = run_once(users, 16, args.upsert), run_once(users, 1, args.upsert)
        print(f"{users:>6}  {f'{wide[0]} requests, account {wide[1]}':<48}  {one[0]} requests, account {one[1]}")


if __name__ == "__main__":
    main()
