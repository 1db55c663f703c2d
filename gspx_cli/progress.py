"""The live progress of a run on stderr, as text: the counts line and the plain status line (a log
file, a pipe, a dumb terminal) that Reporter shows, and the thread that prints the plain one."""

import threading
import time

from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED
from gspx_cli.summary import _clock_time


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


class ProgressText:
    """What both progress displays say, read from the run's live counters (stats, requests, read)."""

    def __init__(self, sources, dry):
        self._sources = sources
        self.dry = dry

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
            counts += (f"  holding: PX unavailable since {_clock_time(since)}" if state == "holding"
                       else f"  waiting: PX asked to wait (Retry-After) since {_clock_time(since)}")
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
            where = f"{source} {fraction:.0%} eta {'?' if eta is None else _clock(eta)}"
        else:  # standard input or a pipe: no size, so no percentage or ETA; lines over all inputs
            where = f"{'standard input' if source == '-' else source}, {read.lines:,} lines read"
        return f"progress {_clock(elapsed)}  {where}  {self.counts()}"

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
