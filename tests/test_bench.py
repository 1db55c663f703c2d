"""benchmarks/bench.py runs end to end (issue 5); --quick sizes, so its figures are not asserted."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_bench_quick_prints_the_six_figure_rows():
    run = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert all("**" in row for row in rows)  # each row has its ratio
