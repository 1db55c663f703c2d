"""The live progress of a run on stderr: whether it shows, what it says (the counts line, the plain
status line, the share done) and the display that says it: the animated bar (live.py) on a terminal
that can move its cursor, else one plain status line at a time from a thread of its own."""

import os
import threading
import time

from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED
from gspx_cli.report.timetext import clock_time, hms

REFRESH_PER_SECOND = 4  # the animated bar's
DUMB_TERMS = ("dumb", "unknown")  # as rich counts them: no cursor movement, so no live display


def isatty(stream):
    """Whether the stream says it is a terminal; False when it cannot say (no isatty, or closed)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wanted(err, forced, quiet):
    """Whether a run shows progress: as forced (--progress, --no-progress), else only when stderr is a
    terminal; never with --quiet."""
    # Ask the stream itself, not rich, which also says yes when FORCE_COLOR is set (common in CI
    # logs, where a live bar would only add noise).
    return (isatty(err) if forced is None else forced) and not quiet


def animates(err):
    """Whether stderr can show the animated bar: a terminal that can move its cursor."""
    # A file, a pipe or TERM=dumb (wanted there with --progress, or a dumb terminal by default)
    # gets plain lines instead.
    return isatty(err) and os.environ.get("TERM", "").strip().lower() not in DUMB_TERMS


def show(text, *, animate, console, write, interval):
    """Start a progress display and return it (its stop() takes it away): the animated bar, drawn
    on console(), or a plain status line every `interval` seconds through write()."""
    if not animate:
        display = _PlainProgress(text.status_line, write, interval)
    else:
        # rich.progress (~20 ms to import) only for a run that animates; console() likewise makes
        # the rich Console only now.
        from gspx_cli.report.live import LiveProgress

        display = LiveProgress(console(), REFRESH_PER_SECOND, text)
    display.start()
    return display


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
        """Begin the lines, the first after one interval."""
        self._thread.start()

    def stop(self):
        """No more lines."""
        self._stopped.set()
        self._thread.join(1.0)

    def _run(self):
        while not self._stopped.wait(self._interval):
            self._write(self._status())


class ProgressText:
    """What both progress displays say, read from the run's live counters (stats, requests, read)."""

    def __init__(self, sources, dry):
        self._sources = sources
        self.dry = dry
        self.verb = "dry run" if dry else "sending"

    def counts(self):
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
            counts += (f"  holding: PX unavailable since {clock_time(since)}" if state == "holding"
                       else f"  waiting: PX asked to wait (Retry-After) since {clock_time(since)}")
        return counts

    def status_line(self):
        """One plain progress line: elapsed, where the input is (with % and ETA by bytes when its size
        is known), then the counts."""
        stats, _, read = self._sources
        elapsed = time.monotonic() - stats.started
        source = read.current
        if source is None:
            where = "waiting for input"
        elif read.bytes_total:
            fraction = self.done_fraction()
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            where = f"{source} {fraction:.0%} eta {'?' if eta is None else hms(eta)}"
        else:  # standard input or a pipe: no size, so no percentage or ETA; lines over all inputs
            where = f"{'standard input' if source == '-' else source}, {read.lines:,} lines read"
        return f"progress {hms(elapsed)}  {where}  {self.counts()}"

    def bar(self):
        """The animated bar's (description, completed, total), in bytes of input."""
        read = self._sources[2]
        where = f"{self.verb} {read.current}" if read.current and read.current != "-" else self.verb
        # bytes_total is known once the reader has started (None for stdin or a pipe: no %, no ETA)
        done = read.bytes_total * self.done_fraction() if read.bytes_total else read.bytes_read
        return where, done, read.bytes_total

    def done_fraction(self):
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
