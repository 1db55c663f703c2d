"""The only module that prints: dry-run lines to stdout; warnings, errors, progress and summary to stderr."""

import os
import stat
import sys
import threading
import time

# rich (~30 ms to import) is imported where something is first drawn: a `-q` run that prints
# nothing never loads it (issue 13: start-up).

from gspx_cli import __version__, costs, jsonio
from gspx_cli.checkpoint import atomic_write
from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, OUTCOMES, SKIPPED
from gspx_cli.plan import Plan, Skipped

PROGRESS_REFRESH = 4  # per second
DRY_RUN_BLOCK_LINES = 256  # dry-run lines written to a file or pipe at once (~250 KB); flushed sooner when input pauses
# CLI.md --progress: where the display cannot animate (a log file, a pipe, TERM=dumb), one plain
# status line this often. A module constant so that tests can shorten it.
PLAIN_PROGRESS_SECONDS = 10.0
NARROW_COLUMNS = 60  # below this the summary table would cut its headers ("ty…"): key: value lines instead
DUMB_TERMS = ("dumb", "unknown")  # as rich counts them: no cursor movement, so no live display
TOP_REASONS_SHOWN = 5  # failure reasons in the summary; --report lists up to REPORT_REASONS
REPORT_REASONS = 20
# why a run stopped early (--report `stopped`) -> the summary's words
STOPS = {"SIGINT": "Ctrl-C (SIGINT)", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP (hang-up)",
         "auth": "Gainsight PX refusing the API key", "outage": "Gainsight PX staying unavailable (delivery.max_outage)",
         "output": "an output that could not be written",
         "budget": "the day's request budget (--daily-budget) being spent"}


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


class _PlainProgress:
    """One plain status line every `interval` seconds, from its own thread (the live display also
    refreshes from one): no cursor movement or carriage return, so `2> run.log` shows a run is alive."""

    def __init__(self, status, write, interval):
        self._status = status
        self._write = write
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gspx-progress", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped.set()
        self._thread.join(1.0)

    def _run(self):
        while not self._stopped.wait(self._interval):
            self._write(self._status())


def _clock(seconds):
    """H:MM:SS."""
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


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
        self._finished = None
        want = self._want_progress
        if dry_run and self._progress_forced is None and _isatty(self._out):
            want = False  # dry-run lines go to the same terminal: a live bar would tear them
        if not want:
            return
        if not self._animate:
            self._progress = _PlainProgress(self._status_line, self._print, PLAIN_PROGRESS_SECONDS)
            self._progress.start()
            return
        from gspx_cli.live import LiveProgress

        self._progress = LiveProgress(self.console, PROGRESS_REFRESH, on_refresh=self._update)
        self._task = self._progress.add_task("dry run" if dry_run else "sending", total=None)
        self._progress.start()

    def _counts(self):
        """The counts both displays show: events read, delivered, skipped, failed, requests, retries, rate."""
        stats, reqs, read = self._sources
        out = stats.outcomes
        elapsed = max(time.monotonic() - stats.started, 1e-6)
        done = out[DELIVERED] + out[SKIPPED] + out[FAILED] + out[INVALID]
        if self.dry:
            counts = (f"read {stats.read:,}  would send {out[DELIVERED]:,}  skipped {out[SKIPPED]:,}  "
                      f"invalid {out[INVALID]:,}  {done / elapsed:,.0f} ev/s")
        else:
            counts = (f"read {stats.read:,}  delivered {out[DELIVERED]:,}  skipped {out[SKIPPED]:,}  "
                      f"failed {out[FAILED] + out[INVALID]:,}  requests {reqs.total:,}  retries {reqs.retries:,}  "
                      f"{done / elapsed:,.0f} ev/s")
        if reqs.hold is not None:  # read once: a worker may clear it meanwhile
            state, since = reqs.hold
            counts += (f"  holding: PX unavailable since {_clock_time(since)}" if state == "holding"
                       else f"  waiting: PX asked to wait (Retry-After) since {_clock_time(since)}")
        return counts

    def _status_line(self):
        """One plain progress line: elapsed, where the input is (with % and ETA by bytes when its size
        is known), then the counts."""
        stats, _, read = self._sources
        elapsed = time.monotonic() - stats.started
        source = read.current
        if source is None:
            where = "waiting for input"
        elif read.bytes_total:
            fraction = self._done_fraction()
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            where = f"{source} {fraction:.0%} eta {'?' if eta is None else _clock(eta)}"
        else:  # standard input or a pipe: no size, so no percentage or ETA; lines over all inputs
            where = f"{'standard input' if source == '-' else source}, {read.lines:,} lines read"
        return f"progress {_clock(elapsed)}  {where}  {self._counts()}"

    def _update(self):
        if self._progress is None or self._task is None:  # still being built, or already stopped
            return
        read = self._sources[2]
        self._progress.counts = self._counts()
        verb = "dry run" if self.dry else "sending"
        where = f"{verb} {read.current}" if read.current and read.current != "-" else verb
        # bytes_total is known once the reader has started (None for stdin or a pipe: no %, no ETA)
        done = read.bytes_total * self._done_fraction() if read.bytes_total else read.bytes_read
        self._progress.update(self._task, completed=done, total=read.bytes_total, description=where)

    def _done_fraction(self):
        """How much of the input is done: the share of its bytes read, times the share of the events
        read that are settled. Bytes alone said 100% once a small file was read ahead, while most of
        its events still waited for PX."""
        stats, _, read = self._sources
        fraction = min(read.bytes_read / read.bytes_total, 1.0)
        if stats.read:
            out = stats.outcomes
            settled = out[DELIVERED] + out[SKIPPED] + out[FAILED] + out[INVALID] + out[INTERRUPTED]
            fraction *= min(settled / stats.read, 1.0)
        return fraction

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
        stats, reqs = result.stats, result.requests
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

        facts = []  # (name, value); an empty name continues the fact above

        def fact(name, value):
            facts.append((name, value))

        tally = f"{stats.read:,} read: {out[DELIVERED]:,} {sent_label}, {out[SKIPPED]:,} skipped, {stats.failed:,} failed"
        if out[INTERRUPTED]:
            tally += f", {out[INTERRUPTED]:,} not sent"
        fact("events", tally)
        if not self.dry:
            kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(reqs.by_kind.items())) or "none"
            fact("requests", f"{reqs.total:,} ({kinds})")
            fact("retries", f"{reqs.retries:,}")
            if reqs.holds:
                fact("held", f"{_duration(reqs.held_seconds)} in {reqs.holds:,} "
                             f"{'hold' if reqs.holds == 1 else 'holds'} (PX unavailable, or Retry-After)")
            if reqs.possible_duplicates:
                fact("duplicates?", f"{reqs.possible_duplicates:,} custom events were re-sent after an answer "
                                    "that never came: PX may hold them twice (see README, Delivery guarantees)")
        rate = stats.read / elapsed if elapsed > 0 else 0.0
        fact("elapsed", f"{elapsed:.1f}s")
        throughput = f"{rate:,.0f} events/s"
        if not self.dry and elapsed > 0:
            throughput += f", {reqs.total / elapsed:,.0f} requests/s"
        fact("throughput", throughput)
        if stats.skip_reasons:
            fact("skipped", "; ".join(f"{r} ({n:,})" for r, n in stats.skip_reasons.most_common(3)))
        facts.extend(costs.summary_facts(result, self.dry))
        if stats.reasons:
            reasons = stats.top_reasons(TOP_REASONS_SHOWN)
            for i, (r, e) in enumerate(reasons):
                fact("" if i else "top failures", f"{e.count:>5,}  {r} (e.g. {e.example})")
            if len(stats.reasons) > TOP_REASONS_SHOWN:
                fact("", f"       ... and {len(stats.reasons) - TOP_REASONS_SHOWN:,} other reasons (all in --report)")
        if stats.warnings:
            fact("warnings", f"{stats.warnings:,}")
        broken = result.stop_error if result.stop_reason == "output" else None  # the output that failed
        broken_option = getattr(broken, "option", None)
        if failed_output:
            failed_lines = stats.failed_output_lines - stats.unsent_saved
            if broken_option == "--failed-output":
                later = ("they are not settled: a rerun with the same --checkpoint sends them" if checkpoint
                         else "the error lines above name them")
                fact("failed output", f"{failed_output} (writing failed after {stats.failed_output_lines:,} lines; "
                                      f"the events it could not take are in no file: {later})")
            elif stats.failed_output_lines:
                parts = [f"{failed_lines:,} failed: fix them"] if failed_lines else []
                if stats.unsent_saved:
                    parts.append(f"{stats.unsent_saved:,} not sent: as they are")
                fact("failed output", f"{failed_output} ({stats.failed_output_lines:,} lines appended, "
                                      f"{', '.join(parts)}; then `gspx send ... {failed_output}`)")
            else:
                fact("failed output", f"{failed_output} (nothing appended)")
            if stats.not_copied:
                fact("", f"{len(stats.not_copied):,} failed lines longer than --max-line-bytes were not copied "
                         f"(e.g. {stats.not_copied[0]}); see --report failed_output_not_copied")
        if checkpoint and not self.dry:
            if broken_option == "--checkpoint":
                fact("checkpoint", f"{checkpoint} (could not be saved: a rerun resends what was settled "
                                   "since its last save)")
            else:
                fact("checkpoint", f"{checkpoint} (rerun with the same --checkpoint to skip what is done)")
        if result.stop_reason is not None:
            broken_what = f"{broken_option} {broken.path}" if broken_option and broken.path else broken_option
            why = f"{broken_what} that could not be written" if broken_option else STOPS[result.stop_reason]
            fact("stopped", f"by {why}; {out[INTERRUPTED]:,} events read but not sent")
        if out[INTERRUPTED]:
            fact("not sent", _unsent_advice(stats, failed_output, checkpoint, broken_option == "--failed-output"))
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


def _clock_time(epoch):
    """12:00:01, local time."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _duration(seconds):
    """3s, 2m05s, 3h00m: short, for one line."""
    if seconds == float("inf"):
        return "forever"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _unsent_advice(stats, failed_output, checkpoint, failed_output_broken=False):
    """Where the events read but not sent are, and how to send them."""
    parts = []
    saved = stats.unsent_saved
    if saved:
        parts.append(f"{saved:,} appended to {failed_output}: send them with `gspx send {failed_output}`")
    rest = stats.outcomes[INTERRUPTED] - saved
    if rest and checkpoint:
        parts.append(f"{rest:,} are sent by a rerun with the same --checkpoint")
    elif rest and failed_output_broken:
        parts.append(f"{rest:,} are in no file: --failed-output could not be written")
    elif rest:
        parts.append(f"{rest:,} are in no file: use --failed-output (or --checkpoint for files) to keep them")
    return "; ".join(parts)


REPORT_VERSION = 1


def report_data(result, *, exit_code, failed_output=None, checkpoint=None, dry_run=False, elapsed=None):
    """The --report JSON; keys are documented in the README ("--report JSON") and only ever added to.

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
        atomic_write(dest, text.encode("utf-8"))
        return
    with open(dest, "w", encoding="utf-8") as fh:
        fh.write(text)
