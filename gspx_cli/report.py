"""The only module that prints: dry-run lines to stdout; warnings, errors, progress and summary to stderr."""

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gspx_cli import jsonio
from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, OUTCOMES, SKIPPED
from gspx_cli.plan import Invalid, Plan, Skipped, describe

PROGRESS_REFRESH = 4  # per second


class _LiveProgress(Progress):
    """A Progress that pulls fresh counts at each refresh, so workers never touch the display."""

    def __init__(self, *columns, on_refresh, **kwargs):
        super().__init__(*columns, **kwargs)
        self._on_refresh = on_refresh

    def get_renderables(self):
        self._on_refresh()
        yield from super().get_renderables()


class Reporter:
    """Writes everything a run shows; `progress` None means "only when stderr is a terminal"."""

    def __init__(self, *, out=None, err=None, verbose=False, quiet=False, progress=None):
        self._out = out or sys.stdout
        self.console = Console(file=err or sys.stderr, soft_wrap=True, highlight=False)
        self.verbose = verbose and not quiet
        self.quiet = quiet
        self._want_progress = self.console.is_terminal if progress is None else progress
        self._progress = None
        self._sources = None
        self.dry = False

    # -- per event -------------------------------------------------------------------------------
    def dry_run(self, record, result, base_url):
        """One CLI.md dry-run line for one event."""
        if type(result) is Plan:
            line = {"input": record.where, "type": result.type, "requests": describe(result, base_url)}
        elif type(result) is Skipped:
            line = {"input": record.where, "type": result.type, "skipped": result.reason}
        else:
            line = {"input": record.where, "error": result.message}
        self._out.write(jsonio.dumps(line) + "\n")

    def warning(self, where, message):
        if not self.quiet:
            self._print(f"warning: {where}: {message}", "yellow")

    def event_failed(self, where, message):
        self._print(f"error: {where}: {message}", "red")

    def note(self, message):
        if not self.quiet:
            self._print(message)

    def error(self, message):
        self._print(f"error: {message}", "red")

    def request(self, method, url, status, ms, attempt):
        """--verbose: one line per request (the key is a header and never part of the URL)."""
        retry = f" (attempt {attempt})" if attempt > 1 else ""
        self._print(f"{method} {url} -> {status} in {ms:.0f} ms{retry}", "dim")

    def _print(self, text, style=None):
        self.console.print(Text(text, style=style or ""), soft_wrap=True)

    # -- progress --------------------------------------------------------------------------------
    def start(self, stats, requests, read, *, dry_run=False):
        self.dry = dry_run
        self._sources = (stats, requests, read)
        if not self._want_progress or self.quiet:
            return
        self._progress = _LiveProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=self.console,
            refresh_per_second=PROGRESS_REFRESH,
            transient=True,
            get_time=time.monotonic,
            on_refresh=self._update,
        )
        self._task = self._progress.add_task("sending" if not dry_run else "dry run", total=read.bytes_total,
                                             counts="")
        self._progress.start()

    def _update(self):
        stats, reqs, read = self._sources
        out = stats.outcomes
        elapsed = max(time.monotonic() - stats.started, 1e-6)
        done = out[DELIVERED] + out[SKIPPED] + out[FAILED] + out[INVALID]
        counts = (f"read {stats.read:,}  delivered {out[DELIVERED]:,}  skipped {out[SKIPPED]:,}  "
                  f"failed {out[FAILED] + out[INVALID]:,}  requests {reqs.total:,}  retries {reqs.retries:,}  "
                  f"{done / elapsed:,.0f} ev/s")
        self._progress.update(self._task, completed=read.bytes_read, total=read.bytes_total, counts=counts)

    def stop(self):
        if self._progress:
            self._progress.stop()
            self._progress = None

    # -- end of run ------------------------------------------------------------------------------
    def summary(self, result, *, failed_output=None, checkpoint=None):
        """The closing table on stderr."""
        if self.quiet:
            return
        stats, reqs = result.stats, result.requests
        elapsed = time.monotonic() - stats.started
        sent_label = "would send" if self.dry else "delivered"
        table = Table(title="gspx summary" + (" (dry run)" if self.dry else ""), title_justify="left")
        table.add_column("type")
        labels = {DELIVERED: sent_label, SKIPPED: "skipped", INVALID: "invalid", FAILED: "failed",
                  INTERRUPTED: "not sent (stopped)"}
        shown = [o for o in OUTCOMES if o in (DELIVERED, SKIPPED, INVALID, FAILED) or stats.outcomes[o]]
        for o in shown:
            table.add_column(labels[o], justify="right")
        table.add_column("total", justify="right")
        for etype in sorted(stats.by_type):
            row = stats.by_type[etype]
            table.add_row(etype, *(f"{row[o]:,}" for o in shown), f"{sum(row.values()):,}")
        table.add_row("all", *(f"{stats.outcomes[o]:,}" for o in shown), f"{stats.read:,}", style="bold")
        self.console.print(table)
        rate = stats.read / elapsed if elapsed > 0 else 0.0
        out = stats.outcomes
        tally = (f"{stats.read:,} events: {out[DELIVERED]:,} {sent_label}, {out[SKIPPED]:,} skipped, "
                 f"{stats.failed:,} failed")
        if out[INTERRUPTED]:
            tally += f", {out[INTERRUPTED]:,} not sent (stopped)"
        lines = [f"{tally}; {elapsed:.1f}s ({rate:,.0f} events/s)"]
        if not self.dry:
            kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(reqs.by_kind.items())) or "none"
            lines.append(f"requests: {reqs.total:,} ({kinds}); retries: {reqs.retries:,}")
        if stats.skip_reasons:
            lines.append("skipped: " + "; ".join(f"{r} ({n:,})" for r, n in stats.skip_reasons.most_common(5)))
        if stats.reasons:
            lines.append("top failure reasons:")
            for reason, entry in stats.top_reasons():
                lines.append(f"  {entry.count:>6,}  {reason}  (e.g. {entry.example})")
        if stats.warnings:
            lines.append(f"warnings: {stats.warnings:,}")
        if failed_output and stats.failed_output_lines:
            lines.append(f"failed events written to {failed_output} ({stats.failed_output_lines:,} lines)")
        if checkpoint and not self.dry:
            lines.append(f"checkpoint saved to {checkpoint}")
        for line in lines:
            self._print(line)

    def settings_table(self, rows):
        """`gspx check`: the effective settings."""
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        for name, value in rows:
            table.add_row(name, Text(str(value)))
        self.console.print(table)


REPORT_VERSION = 1


def report_data(result, *, exit_code, failed_output=None, checkpoint=None, dry_run=False):
    """The --report JSON (keys documented in the README; `failed` includes `invalid`)."""
    stats, reqs = result.stats, result.requests
    out = stats.outcomes
    elapsed = time.monotonic() - stats.started
    return {
        "version": REPORT_VERSION,
        "dry_run": dry_run,
        "exit_code": int(exit_code),
        "stopped": {None: None, 130: "SIGINT", 143: "SIGTERM", 3: "auth"}.get(
            None if result.stop_reason is None else int(result.stop_reason)),
        "read": stats.read,
        "delivered": out[DELIVERED],
        "skipped": out[SKIPPED],
        "failed": out[FAILED] + out[INVALID],
        "invalid": out[INVALID],
        "not_sent": out[INTERRUPTED],
        "by_type": {t: {o: c[o] for o in OUTCOMES} for t, c in sorted(stats.by_type.items())},
        "skip_reasons": dict(stats.skip_reasons),
        "failure_reasons": [{"reason": r, "count": e.count, "example": e.example} for r, e in stats.top_reasons(20)],
        "requests": {"total": reqs.total, "retries": reqs.retries, "by_kind": dict(sorted(reqs.by_kind.items())),
                     "by_status": {str(k): v for k, v in sorted(reqs.by_status.items(), key=lambda kv: str(kv[0]))}},
        "warnings": stats.warnings,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(stats.read / elapsed, 1) if elapsed > 0 else None,
        "failed_output": failed_output,
        "failed_output_lines": stats.failed_output_lines,
        "checkpoint": checkpoint,
    }


def write_report(path, result, **kwargs):
    """Write report_data as JSON to path."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(jsonio.dumps(report_data(result, **kwargs)) + "\n")
