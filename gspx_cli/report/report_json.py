"""The --report JSON: the run's counts, keys documented in docs/send.md and only ever added to."""

import os
import stat
import time

from gspx_cli import __version__, jsonio
from gspx_cli.report import costs
from gspx_cli.state.outputs import atomic_write
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, OUTCOMES, SKIPPED

REPORT_REASONS = 20  # failure reasons listed; the summary shows the top few


REPORT_VERSION = 1


def report_data(result, *, exit_code, failed_output=None, checkpoint=None, dry_run=False, elapsed=None):
    """The --report JSON; keys are documented in docs/send.md ("--report JSON") and only ever added to.

    Counts add up: read == delivered + skipped + failed + not_sent, overall and per type;
    `failed` includes `invalid`. In a dry run `delivered` counts the events that would be sent.
    """
    stats, reqs = result.stats, result.requests
    if elapsed is None:
        elapsed = time.monotonic() - stats.started

    def counts(c):
        return {"read": sum(c[o] for o in OUTCOMES), "delivered": c[DELIVERED], "skipped": c[SKIPPED],
                "failed": c[FAILED] + c[INVALID], "invalid": c[INVALID], "not_sent": c[INTERRUPTED]}

    totals = counts(stats.outcomes)
    totals["read"] = stats.read
    return {
        "version": REPORT_VERSION,
        "gspx_version": __version__,
        "dry_run": dry_run,
        "exit_code": int(exit_code),
        "stopped": result.stop_reason,
        **totals,
        "by_type": {t: counts(c) for t, c in sorted(stats.by_type.items())},
        "skip_reasons": dict(stats.skip_reasons.most_common()),
        "failure_reasons": [{"reason": r, "count": e.count, "example": e.example}
                            for r, e in stats.top_reasons(REPORT_REASONS)],
        "requests": {"total": reqs.total, "retries": reqs.retries, "by_kind": dict(sorted(reqs.by_kind.items())),
                     "by_status": {str(k): v for k, v in sorted(reqs.by_status.items(), key=lambda kv: str(kv[0]))},
                     "by_event_type": dict(sorted(reqs.by_event_type.items()))},
        "possible_duplicates": reqs.possible_duplicates,
        "holds": reqs.holds,
        "held_seconds": round(reqs.held_seconds, 3),
        "warnings": stats.warnings,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(stats.read / elapsed, 1) if elapsed > 0 else None,
        "failed_output": failed_output,
        "failed_output_lines": stats.failed_output_lines,
        "failed_output_not_copied": stats.not_copied,
        "checkpoint": None if dry_run else checkpoint,
        # CLI.md "Reading only what the time window needs": passed over by date, never listed or read
        "pruned_folders": getattr(result.read, "pruned_folders", 0),
        "pruned_objects": getattr(result.read, "pruned_objects", 0),
        # files and objects a rerun passed over unread: settled whole by an earlier run, unchanged since
        "settled_inputs": getattr(result.read, "settled_files", 0),
        **costs.report_keys(result, dry_run),
    }


def write_report(dest, result, **kwargs):
    """Write report_data as JSON (one object, one line) to dest: a path or an open text file.

    A path that is a regular file (or new) is replaced in one piece (temp file, then rename), so a
    reader never sees it empty or half-written; anything else (a FIFO, /dev/stdout) is written to.
    """
    text = jsonio.dumps(report_data(result, **kwargs)) + "\n"
    if hasattr(dest, "write"):
        dest.write(text)
        return
    try:
        regular = stat.S_ISREG(os.stat(dest).st_mode)
    except FileNotFoundError:
        regular = True
    if regular:
        atomic_write(dest, text.encode("utf-8", "backslashreplace"))
        return
    with open(dest, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)
