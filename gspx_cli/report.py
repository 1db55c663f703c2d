"""The only module that prints: dry-run lines to stdout; warnings, errors, progress and summary to stderr."""

import os
import sys
import time

# rich (~30 ms to import) is imported where something is first drawn: a `-q` run that prints
# nothing never loads it (issue 13: start-up).

from gspx_cli import jsonio
from gspx_cli.report_json import report_data, write_report  # noqa: F401 - re-exported: cli.py and tests use them
from gspx_cli.progress import ProgressText, _PlainProgress
from gspx_cli.summary import _clock_time, _duration, summary_facts
from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, OUTCOMES, SKIPPED
from gspx_cli.plan import Plan, Skipped

PROGRESS_REFRESH = 4  # per second
DRY_RUN_BLOCK_LINES = 256  # dry-run lines written to a file or pipe at once (~250 KB); flushed sooner when input pauses
# CLI.md --progress: where the display cannot animate (a log file, a pipe, TERM=dumb), one plain
# status line this often. A module constant so that tests can shorten it.
PLAIN_PROGRESS_SECONDS = 10.0
NARROW_COLUMNS = 60  # below this the summary table would cut its headers ("ty…"): key: value lines instead
DUMB_TERMS = ("dumb", "unknown")  # as rich counts them: no cursor movement, so no live display
def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


class Reporter:
    """Writes everything a run shows; `progress` None means "only when stderr is a terminal"."""

    def __init__(self, *, out=None, err=None, verbose=False, quiet=False, progress=None):
        self._out = out or sys.stdout
        err = err or sys.stderr
        self._err = err
        self._console = None
        self.verbose = verbose and not quiet
        self.quiet = quiet
        self._progress_forced = progress
        # "Only when stderr is a terminal": ask the stream itself, not rich, which also says yes
        # when FORCE_COLOR is set (common in CI logs, where a live bar would only add noise).
        self._want_progress = (_isatty(err) if progress is None else progress) and not quiet
        # The bar animates only on a terminal that can move its cursor; a file, a pipe or TERM=dumb
        # (wanted there with --progress, or a dumb terminal by default) gets plain lines instead.
        self._animate = _isatty(err) and os.environ.get("TERM", "").strip().lower() not in DUMB_TERMS
        self._progress = None
        self._task = None
        self._sources = None
        self._finished = None
        self.dry = False

    # -- per event -------------------------------------------------------------------------------
    _dry_write = None  # chosen by the first dry-run line (_dry_writer)
    _held = None  # dry-run lines not yet written (a file or pipe): written in large blocks
    _bin = None  # stdout's binary buffer, once the first dry-run line chose it

    def dry_run(self, record, result, requests=None, unchanged=()):
        """One CLI.md dry-run line for one event; requests: a Plan's listing; unchanged: the (kind, id)
        of writes left out because they would repeat the object's last write."""
        if type(result) is Plan:
            line = {"input": record.where, "type": result.type, "requests": requests}
            if unchanged:
                line["unchanged"] = "; ".join(f"same as the last write to {kind} {object_id}"
                                              for kind, object_id in unchanged)
        elif type(result) is Skipped:
            line = {"input": record.where, "type": result.type, "skipped": result.reason}
        else:
            line = {"input": record.where, "error": result.message}
        (self._dry_write or self._dry_writer())(jsonio.dumps_line(line))

    def flush_out(self):
        """Make the dry-run lines written so far reach the reader of stdout (the reader has nothing more ready)."""
        if self._held:
            self._write_held()
        if self._bin is not None:
            self._bin.flush()
        self._out.flush()

    def abandon_out(self):
        """stdout cannot be written (a full disk): drop what is held and send the rest to /dev/null,
        so that neither this run nor the interpreter's exit tries to write it again."""
        if self._held:
            self._held.clear()
        try:
            fd = self._out.fileno()
        except (AttributeError, OSError, ValueError):
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)

    def _dry_writer(self):
        """Lines kept and written in DRY_RUN_BLOCK blocks when stdout is a file or a pipe: each write
        lets the reader thread take the interpreter, so fewer writes are faster. Through the text
        layer, one at a time, when stdout is a terminal, so each line shows at once."""
        out = self._out
        buffer = getattr(out, "buffer", None)
        if buffer is not None and not getattr(out, "line_buffering", False):
            out.flush()  # anything written through the text layer before stays before
            self._bin = buffer  # beside self._out, which keeps the text stream (and so its buffer) alive
            held = self._held = []
            append = held.append

            def write(data):
                append(data)
                if len(held) >= DRY_RUN_BLOCK_LINES:
                    self._write_held()
        else:
            def write(data):
                out.write(data.decode("utf-8"))
        self._dry_write = write
        return write

    def _write_held(self):
        held = self._held
        self._bin.write(b"".join(held))
        held.clear()

    def warning(self, where, message):
        """A warning line, unless --quiet; where (FILE:LINE) may be None when the message names it."""
        if not self.quiet:
            self._print(f"warning: {where}: {message}" if where else f"warning: {message}", "yellow")

    def event_failed(self, where, message):
        """One failed event: every bad line is named with its FILE:LINE, even with --quiet."""
        self._print(f"error: {where}: {message}", "red")

    def note(self, message):
        """Information for people, unless --quiet."""
        if not self.quiet:
            self._print(message)

    def error(self, message):
        """An error line; shown even with --quiet."""
        self._print(f"error: {message}", "red")

    def gate_news(self, news, waiting):
        """A hold or Retry-After wait began or ended (gate.GateNews, times as epoch seconds): one line each,
        from a worker thread; `waiting` events are queued or in flight."""
        if news.kind == "end":
            self.note(f"Gainsight PX answers again, after {_duration(news.duration)} held; "
                      "resuming at the full rate")
            return
        if news.kind == "waited":
            self.note(f"the Retry-After has passed, after {_duration(news.duration)}; resuming")
            return
        since = _clock_time(news.since)
        next_in = max(0.0, news.next_try - time.time()) if news.next_try is not None else 0.0
        if news.kind == "wait":
            why = f"Gainsight PX asked everyone to wait ({news.reason})"
            how = f"no request starts before {_clock_time(news.next_try)} (in {_duration(next_in)})"
        else:
            why = f"Gainsight PX looks unavailable ({news.failures} failures in a row, last: {news.reason})"
            how = f"one probe at a time, the next in {_duration(next_in)}"
        self.warning(None, f"{why} since {since}: holding {waiting:,} events; {how}; "
                           f"stopping (exit 4) if this lasts past {_duration(news.max_outage)} "
                           "(delivery.max_outage, --max-outage)")

    def request(self, method, url, status, ms, attempt):
        """--verbose: one line per request. The key travels in a header, never in the URL, so it never shows."""
        self._print(f"{method} {url} {status} {ms:.0f}ms attempt {attempt}", "dim")

    @property
    def console(self):
        """The rich Console on stderr, made when something is first drawn."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self._err, soft_wrap=True, highlight=False)
        return self._console

    @console.setter
    def console(self, console):
        """Tests give a Console of a set width."""
        self._console = console

    def _print(self, text, style=None):
        from rich.text import Text

        self.console.print(Text(text, style=style or ""), soft_wrap=True)

    # -- progress --------------------------------------------------------------------------------
    def start(self, stats, requests, read, *, dry_run=False):
        """Begin a run: remember where the counts live; start the progress display if wanted."""
        self.dry = dry_run
        self._sources = (stats, requests, read)
        self._text = ProgressText(self._sources, dry_run)
        self._finished = None
        want = self._want_progress
        if dry_run and self._progress_forced is None and _isatty(self._out):
            want = False  # dry-run lines go to the same terminal: a live bar would tear them
        if not want:
            return
        if not self._animate:
            self._progress = _PlainProgress(self._text.status_line, self._print, PLAIN_PROGRESS_SECONDS)
            self._progress.start()
            return
        from gspx_cli.live import LiveProgress

        self._progress = LiveProgress(self.console, PROGRESS_REFRESH, on_refresh=self._update)
        self._task = self._progress.add_task("dry run" if dry_run else "sending", total=None)
        self._progress.start()

    def _update(self):
        if self._progress is None or self._task is None:  # still being built, or already stopped
            return
        read = self._sources[2]
        self._progress.counts = self._text.counts()
        verb = "dry run" if self.dry else "sending"
        where = f"{verb} {read.current}" if read.current and read.current != "-" else verb
        # bytes_total is known once the reader has started (None for stdin or a pipe: no %, no ETA)
        done = read.bytes_total * self._text.done_fraction() if read.bytes_total else read.bytes_read
        self._progress.update(self._task, completed=done, total=read.bytes_total, description=where)

    def stop(self):
        """End of the run: freeze the clock and take the progress display away."""
        self._finished = time.monotonic()
        if self._progress:
            self._progress.stop()
            self._progress = None

    def elapsed(self, stats):
        """Seconds from the start of the run to stop() (or to now, while running)."""
        return (self._finished or time.monotonic()) - stats.started

    # -- end of run ------------------------------------------------------------------------------
    def summary(self, result, *, failed_output=None, checkpoint=None):
        """The closing summary on stderr: events by type x outcome, then the run's facts; on a console
        narrower than NARROW_COLUMNS, plain `key: value` lines instead of the table."""
        if self.quiet:
            return
        stats = result.stats
        out = stats.outcomes
        elapsed = self.elapsed(stats)
        sent_label = "would send" if self.dry else "delivered"
        narrow = self.console.width < NARROW_COLUMNS
        title = "gspx summary" + (" (dry run)" if self.dry else "")
        labels = {DELIVERED: sent_label, SKIPPED: "skipped", INVALID: "invalid", FAILED: "failed",
                  INTERRUPTED: "not sent"}
        shown = [o for o in OUTCOMES if o != INTERRUPTED or out[o]]
        rows = [(etype, stats.by_type[etype], sum(stats.by_type[etype].values())) for etype in sorted(stats.by_type)]
        rows.append(("all", out, stats.read))

        if narrow:
            self._print(title)
            for name, row, total in rows:
                self._print_fact(name, ", ".join(f"{row[o]:,} {labels[o]}" for o in shown) + f" ({total:,} in all)",
                                 narrow)
        else:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            table.add_column("type")
            for o in shown:
                table.add_column(labels[o], justify="right")
            table.add_column("total", justify="right")
            for name, row, total in rows:
                table.add_row(name, *(f"{row[o]:,}" for o in shown), f"{total:,}",
                              style="bold" if name == "all" and row is out else None)
            self.console.print(table)

        facts = summary_facts(result, dry=self.dry, elapsed=elapsed, failed_output=failed_output,
                              checkpoint=checkpoint)
        for name, value in facts:
            self._print_fact(name, value, narrow)

    def _print_fact(self, name, value, narrow):
        """An aligned fact line, never wrapped (logs keep it whole); narrow: `name: value`, wrapped at words."""
        from rich.text import Text

        if not narrow:
            self._print(f"{name:<14}{value}")
        elif name:
            self.console.print(Text(f"{name}: {value}"), soft_wrap=False)
        else:
            self.console.print(Text(f"  {value.strip()}"), soft_wrap=False)

    def settings_table(self, rows):
        """`gspx check`: the effective settings."""
        width = max((len(name) for name, _ in rows), default=0) + 2
        for name, value in rows:
            self._print(f"{name:<{width}}{value}")
