"""What a run loads at start-up (issue 22: the fixed cost of every run, figures 2 and 4).

The probe runs `gspx send` in a child started with -S: no site start-up, so a module a .pth loads
for the interpreter (an editable install's finder imports pathlib and fnmatch) cannot hide one that
gspx imports; sys.path is this checkout, then the site-packages of this Python.
"""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Only what a plain dry run of one file never needs. Not listed: click and yaml (needed), and inspect,
# typing, datetime, uuid, gettext, which click itself imports.
NOT_FOR_A_DRY_RUN = (
    "requests", "urllib3", "certifi", "sqlite3", "rich", "tempfile", "random", "logging", "pathlib",
    "urllib.parse", "fnmatch", "calendar", "ipaddress", "fsspec", "gspx_cli.sandbox", "gspx_cli.delivery.sender",
    "gspx_cli.delivery.gate", "gspx_cli.delivery.px", "gspx_cli.state.checkpoint", "gspx_cli.state.bookkeeping",
    "gspx_cli.state.store", "gspx_cli.state.watch",
)

PROBE = """\
import sys
before = set(sys.modules)
sys.path[:0] = json_paths
sys.argv = ['gspx', *sys.argv[1:]]
from gspx_cli.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print(code, sorted(set(sys.modules) - before), file=sys.stderr)
"""


def loaded_by(tmp_path, *args):
    """(exit code, modules loaded after the probe started) of `gspx ARGS` in a child without site."""
    paths = [str(ROOT), *site.getsitepackages()]
    probe = PROBE.replace("json_paths", json.dumps(paths))
    env = {k: v for k, v in os.environ.items() if k not in ("GSPX_CONFIG", "GSPX_API_KEY")}
    run = subprocess.run([sys.executable, "-S", "-c", probe, *args], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path), env=env)
    code, _, modules = run.stderr.splitlines()[-1].partition(" ")
    return int(code), set(eval(modules))  # noqa: S307 (a list of names this test's probe printed)


def test_a_dry_run_of_one_file_loads_neither_the_sending_stack_nor_what_only_other_runs_need(tmp_path):
    (tmp_path / "gspx.yaml").write_text("product_tag_key: AP-1\nuser_attribute_map:\n  hobbyCustomField: hobby\n")
    (tmp_path / "one.ndjson").write_text(json.dumps({"type": "identify", "userId": "u1", "messageId": "m1",
                                                     "traits": {"email": "a@b.c"}}) + "\n")
    code, modules = loaded_by(tmp_path, "send", "--dry-run", "-q", "--no-progress", "-c", "gspx.yaml", "one.ndjson")
    assert code == 0
    assert {"click", "yaml", "gspx_cli.coordinator", "gspx_cli.delivery.sinks"} <= modules  # the probe saw the run
    assert sorted(m for m in NOT_FOR_A_DRY_RUN if m in modules) == []


def test_an_event_filter_and_a_base_url_load_what_they_need(tmp_path):
    (tmp_path / "gspx.yaml").write_text("product_tag_key: AP-1\nbase_url: http://127.0.0.1:9/v1\n")
    (tmp_path / "one.ndjson").write_text(json.dumps({"type": "track", "userId": "u/1", "event": "Signed Up"}) + "\n")
    code, modules = loaded_by(tmp_path, "send", "--dry-run", "-q", "--event", "Signed*", "-c", "gspx.yaml",
                              "one.ndjson")
    assert code == 0
    assert {"fnmatch", "urllib.parse"} <= modules


def test_the_startup_benchmark_prints_each_run_side_by_side():
    # one round over a few files: the figures mean little, the script must run (before: when git has it)
    script = ROOT / "benchmarks" / "startup.py"
    run = subprocess.run([sys.executable, str(script), "--rounds", "1", "--files", "5"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in run.stdout.splitlines() if line.startswith("| ")][2:]
    assert {"python -c pass", "dry run, now", "resume, now"} <= set(rows)
