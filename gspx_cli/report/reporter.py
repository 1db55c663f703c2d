"""Everything a run shows, through one object: dry-run lines to stdout; warnings, errors, progress
and the summary to stderr. Reporter writes the lines itself and hands the rest to progress.py (the
live progress), summary.py (the end-of-run summary) and report_json.py (the --report JSON)."""

import errno
import os
import sys
import time

# rich (~30 ms to import) is imported where something is first drawn: a `-q` run that prints
# nothing never loads it (issue 13: start-up).

import orjson

from gspx_cli import jsonio
from gspx_cli.report.report_json import report_data, write_report  # noqa: F401 - re-exported: cli.py and tests use them
from gspx_cli.report.progress import ProgressText, _PlainProgress  # noqa: F401 - _PlainProgress: tests name it here
from gspx_cli.report.progress import animates, isatty, show, wanted
from gspx_cli.report.summary import print_summary
from gspx_cli.mapping.plan import Plan, Skipped
from gspx_cli.report.timetext import clock_time, duration
from gspx_cli.mapping.fields import SENT_TYPES, SKIPPED_TYPES
from gspx_cli.mapping.filters import FILTERED

# the end of a dry-run line for an event left out by a filter, per type: `,"type":T,"skipped":"filtered"}` and
# the line end, as jsonio.dumps_line writes it (a type that is None writes null, so it takes the general way)
_SKIP_TAILS = {(t, FILTERED): jsonio.dumps_line({"type": t, "skipped": FILTERED}).replace(b"{", b",", 1)
               for t in SENT_TYPES | SKIPPED_TYPES}

_FILTERED_TAILS = {t: b'"' + tail for (t, _), tail in _SKIP_TAILS.items()}  # the same, after FILE:LINE's closing quote
# between a Plan's FILE:LINE and its listing, per type: `","type":T,"requests":`
_PLAN_MIDDLES = {t: b'",' + jsonio.dumps_line({"type": t, "requests": 0})[1:-3] for t in SENT_TYPES}

# what jsonio.dumps_part() runs, for the lines that inline it
_dumps, _PART_OPTIONS, _has_null = orjson.dumps, jsonio.DUMPS_OPTIONS, jsonio.has_null
DRY_RUN_BLOCK_LINES = 256  # dry-run lines written to a file or pipe at once (~250 KB); flushed sooner when input pauses
# CLI.md --progress: where the display cannot animate (a log file, a pipe, TERM=dumb), one plain
# status line this often. Here rather than in progress.py so that tests (and their subprocesses,
# through gspx_cli.report) can shorten it on the module they already use.
PLAIN_PROGRESS_SECONDS = 10.0


class _ClosedOutput:
    """Standard output when the process was started without one: every write fails, as on a closed file."""

    def write(self, data):
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self):
        raise OSError(errno.EBADF, "standard output is closed")

    def fileno(self):
        raise OSError(errno.EBADF, "standard output is closed")


class Reporter:
    """Writes everything a run shows; `progress` None means "only when stderr is a terminal"."""

    def __init__(self, *, out=None, err=None, verbose=False, quiet=False, progress=None):
        # a closed stdout (`>&-`) leaves sys.stdout None: its lines fail as a full disk's do (exit 1, said why)
        self._out = out or sys.stdout or _ClosedOutput()
        err = err or sys.stderr  # never None: cli.main() puts os.devnull in place of a closed stderr
        self._err = err
        self._console = None
        self.verbose = verbose and not quiet
        self.quiet = quiet
        self._progress_forced = progress
        self._want_progress = wanted(err, progress, quiet)
        self._animate = animates(err)
        self._progress = None  # the display while it shows (progress.show)
        self._text = None  # what it says (progress.ProgressText), from start()
        self._finished = None
        self.dry = False

    # -- per event -------------------------------------------------------------------------------
    _dry_write = None  # chosen by the first dry-run line (_dry_writer)
    _held = None  # dry-run lines not yet written (a file or pipe): written in large blocks
    _bin = None  # stdout's binary buffer, once the first dry-run line chose it

    def dry_run_plan(self, record, event_type, requests, unchanged=()):
        """dry_run() of a Plan of this event type, the hot path of a dry run: its line made of a head per
        input (as dry_run_filtered's), the line number, a middle per type and the listing's text."""
        middle = _PLAN_MIDDLES.get(event_type)
        if middle is not None and record.line_no and not unchanged:
            source, head = self._head
            if source is not record.source:
                head = self._head_of(record.source)
            if head is not None:
                try:  # jsonio.dumps_part(), inlined: once per event
                    listing = _dumps(requests, option=_PART_OPTIONS)
                except TypeError:
                    listing = None
                if listing is not None and not _has_null(listing):
                    (self._dry_write or self._dry_writer())(
                        b"".join((head, b"%d" % record.line_no, middle, listing, b"}\n")))
                    return
        line = {"input": record.where, "type": event_type, "requests": requests}
        if unchanged:
            line["unchanged"] = "; ".join(f"same as the last write to {kind} {object_id}"
                                          for kind, object_id in unchanged)
        (self._dry_write or self._dry_writer())(jsonio.dumps_line(line))

    def dry_run_listed(self, record, event_type, start, body):
        """dry_run_plan() of a one-request listing (a custom event's) whose text up to its body is `start`
        (listing_start()): the line is made of the head, the line number, the middle, start and the body's
        orjson text. False, with nothing written, where the line takes the general way (dry_run_plan)."""
        middle = _PLAN_MIDDLES.get(event_type)
        if middle is not None and record.line_no:
            source, head = self._head
            if source is not record.source:
                head = self._head_of(record.source)
            if head is not None:
                try:  # jsonio.dumps_part(), inlined: once per event
                    body = _dumps(body, option=_PART_OPTIONS)
                except TypeError:
                    body = None
                if body is not None and not _has_null(body):
                    (self._dry_write or self._dry_writer())(
                        b"".join((head, b"%d" % record.line_no, middle, start, body, b"}]}\n")))
                    return True
        return False

    def dry_run(self, record, result, requests=None, unchanged=()):
        """One CLI.md dry-run line for one event; requests: a Plan's listing; unchanged: the (kind, id)
        of writes left out because they would repeat the object's last write."""
        if type(result) is Plan:
            self.dry_run_plan(record, result.type, requests, unchanged)
            return
        if type(result) is Skipped:
            tail = _SKIP_TAILS.get((result.type, result.reason))
            if tail is not None:  # one of a handful (a filtered track): the line's end is made once
                try:
                    line = b'{"input":' + orjson.dumps(record.where) + tail
                except TypeError:  # a name orjson will not write (a lone surrogate): the general way
                    pass
                else:
                    (self._dry_write or self._dry_writer())(line)
                    return
            line = {"input": record.where, "type": result.type, "skipped": result.reason}
        else:
            line = {"input": record.where, "error": result.message}
        (self._dry_write or self._dry_writer())(jsonio.dumps_line(line))

    _head = (None, None)  # (source, the start of its filtered events' lines: `{"input":"SOURCE:`)

    def dry_run_filtered(self, record, event_type):
        """dry_run(record, Skipped(event_type, FILTERED)): an event left out by a filter, the hot path of a
        filtered run; its line made of a head per input, the line number and a tail per type."""
        tail = _FILTERED_TAILS.get(event_type)
        if tail is not None and record.line_no:
            source, head = self._head
            if source is not record.source:
                head = self._head_of(record.source)
            if head is not None:
                (self._dry_write or self._dry_writer())(head + b"%d" % record.line_no + tail)
                return
        self.dry_run(record, Skipped(event_type, FILTERED))

    def filtered_block(self):
        """What dispatch.py's quick way needs to write the lines of left-out events itself, as
        dry_run_filtered() would: (held, room, head_of, tails), or None where each line is written at once
        (a terminal). A line is head_of(source) (None: the general way), the line number and
        tails[event type] (absent: the general way), appended to held while that holds fewer than room
        lines: the line that fills a block goes the general way, so that the block's write and its errors
        stay the sink's (PrintSink.record_filtered)."""
        if self._dry_write is None:
            self._dry_writer()
        if self._held is None:
            return None
        return self._held, DRY_RUN_BLOCK_LINES - 1, self._head_of, _FILTERED_TAILS

    def _head_of(self, source):
        """`{"input":"SOURCE:`, the start of the input's dry-run lines, kept in _head; None: the general way."""
        try:  # the JSON text of FILE:LINE is that of FILE and of :LINE, which needs no escaping
            head = b'{"input":' + orjson.dumps(source)[:-1] + b":"
        except TypeError:  # a name orjson will not write (a lone surrogate): the general way
            head = None
        if head is not None and b"null" in head:  # dumps_line would write the whole line the stdlib's way
            head = None
        self._head = (source, head)
        return head

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
            self.note(f"Gainsight PX answers again, after {duration(news.duration)} held; "
                      "resuming at the full rate")
            return
        if news.kind == "waited":
            self.note(f"the Retry-After has passed, after {duration(news.duration)}; resuming")
            return
        since = clock_time(news.since)
        next_in = max(0.0, news.next_try - time.time()) if news.next_try is not None else 0.0
        if news.kind == "wait":
            why = f"Gainsight PX asked everyone to wait ({news.reason})"
            how = f"no request starts before {clock_time(news.next_try)} (in {duration(next_in)})"
        else:
            why = f"Gainsight PX looks unavailable ({news.failures} failures in a row, last: {news.reason})"
            how = f"one probe at a time, the next in {duration(next_in)}"
        self.warning(None, f"{why} since {since}: holding {waiting:,} events; {how}; "
                           f"stopping (exit 4) if this lasts past {duration(news.max_outage)} "
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

    # -- progress (progress.py) ------------------------------------------------------------------
    def start(self, stats, requests, read, *, dry_run=False):
        """Begin a run: remember where the counts live; start the progress display if wanted."""
        self.dry = dry_run
        self._text = ProgressText((stats, requests, read), dry_run)
        self._finished = None
        want = self._want_progress
        if dry_run and self._progress_forced is None and isatty(self._out):
            want = False  # dry-run lines go to the same terminal: a live bar would tear them
        if want:
            self._progress = show(self._text, animate=self._animate, console=lambda: self.console,
                                  write=self._print, interval=PLAIN_PROGRESS_SECONDS)

    def stop(self):
        """End of the run: freeze the clock and take the progress display away."""
        self._finished = time.monotonic()
        if self._progress:
            self._progress.stop()
            self._progress = None

    def elapsed(self, stats):
        """Seconds from the start of the run to stop() (or to now, while running)."""
        return (self._finished or time.monotonic()) - stats.started

    # -- end of run (summary.py) -----------------------------------------------------------------
    def summary(self, result, *, failed_output=None, checkpoint=None):
        """The closing summary on stderr, unless --quiet: events by type x outcome, then the run's facts."""
        if self.quiet:
            return
        elapsed = self.elapsed(result.stats)
        print_summary(self.console, result, dry=self.dry, elapsed=elapsed, failed_output=failed_output,
                      checkpoint=checkpoint)

    def settings_table(self, rows):
        """`gspx check`: the effective settings."""
        width = max((len(name) for name, _ in rows), default=0) + 2
        for name, value in rows:
            self._print(f"{name:<{width}}{value}")
