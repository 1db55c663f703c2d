"""One outcome per record: run statistics, the failed-output file and the checkpoint (STYLE habit 8, 9)."""

import os
import re
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from gspx_cli import jsonio
from gspx_cli.errors import ConfigError
from gspx_cli.reader import source_key

DELIVERED, SKIPPED, INVALID, FAILED, INTERRUPTED = "delivered", "skipped", "invalid", "failed", "interrupted"
OUTCOMES = (DELIVERED, SKIPPED, INVALID, FAILED, INTERRUPTED)
CHECKPOINT_VERSION = 1
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")  # ids inside messages, so reasons group


@dataclass
class Reason:
    """One failure reason: how often, and the first place it happened."""

    count: int = 0
    example: str = ""


@dataclass
class RunStats:
    """Counts of a run; every record read ends in exactly one outcome."""

    read: int = 0
    outcomes: Counter = field(default_factory=Counter)  # outcome -> n
    by_type: dict = field(default_factory=dict)  # type -> Counter(outcome -> n)
    reasons: dict = field(default_factory=dict)  # normalised message -> Reason
    skip_reasons: Counter = field(default_factory=Counter)
    warnings: int = 0
    failed_output_lines: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self):
        return self.outcomes[FAILED] + self.outcomes[INVALID]

    def top_reasons(self, n=5):
        return sorted(self.reasons.items(), key=lambda kv: -kv[1].count)[:n]


class Ledger:
    """Thread-safe record of outcomes; writes failed events and keeps the settled prefix of each input."""

    def __init__(self, *, failed_output=None, checkpoint=None):
        self.stats = RunStats()
        self._lock = threading.Lock()
        self._failed_path = failed_output
        self._failed_file = None
        self.checkpoint = Checkpoint(checkpoint) if checkpoint else None

    def open_line(self, records):
        """Register the records read from one input line, before any of them is settled."""
        with self._lock:
            self.stats.read += len(records)
            if self.checkpoint:
                self.checkpoint.opened(records[0], len(records))

    def settle(self, record, outcome, reason=None, event_type=None):
        """Record the one outcome of a record; failed and invalid ones go to the failed output."""
        with self._lock:
            st = self.stats
            st.outcomes[outcome] += 1
            st.by_type.setdefault(event_type or "unknown", Counter())[outcome] += 1
            if outcome in (FAILED, INVALID):
                key = _QUOTED.sub("…", reason or outcome)
                entry = st.reasons.get(key)
                if entry is None:
                    entry = st.reasons[key] = Reason(example=record.where)
                entry.count += 1
                self._write_failed(record)
            elif outcome == SKIPPED:
                st.skip_reasons[reason or "skipped"] += 1
            if self.checkpoint and outcome != INTERRUPTED:
                self.checkpoint.settled(record)

    def warn(self):
        with self._lock:
            self.stats.warnings += 1

    def _write_failed(self, record):
        if not self._failed_path:
            return
        if record.unwrapped and record.event is not None:
            line = jsonio.dumps(record.event).encode("utf-8")
        else:
            line = record.raw
        if not line:  # an over-long line is never held in memory, so it cannot be copied
            return
        if self._failed_file is None:
            self._failed_file = open(self._failed_path, "ab")
        self._failed_file.write(line + b"\n")
        # flushed before the checkpoint can count the line as settled
        self._failed_file.flush()
        self.stats.failed_output_lines += 1

    def save_checkpoint(self):
        with self._lock:
            if self.checkpoint:
                self.checkpoint.save()

    def close(self):
        with self._lock:
            if self._failed_file:
                self._failed_file.close()
                self._failed_file = None
            if self.checkpoint:
                self.checkpoint.save()


class Checkpoint:
    """Per input, the longest prefix of lines that is fully settled; saved atomically."""

    def __init__(self, path):
        self.path = path
        self.done = load_checkpoint(path)  # source key -> settled line count
        self._pending = {}  # source key -> {line: outstanding records}
        self._order = {}  # source key -> deque of lines still outstanding, in read order
        self._last = {}  # source key -> last line registered

    def skip_lines(self):
        return dict(self.done)

    def opened(self, record, count):
        key = source_key(record.source)
        if record.line_no <= 0:
            return
        self._pending.setdefault(key, {})[record.line_no] = count
        self._order.setdefault(key, deque()).append(record.line_no)
        self._last[key] = record.line_no

    def settled(self, record):
        key = source_key(record.source)
        pending = self._pending.get(key)
        if pending is None or record.line_no not in pending:
            return
        pending[record.line_no] -= 1
        order = self._order[key]
        while order and pending[order[0]] == 0:
            del pending[order.popleft()]

    def watermarks(self):
        marks = dict(self.done)
        for key, last in self._last.items():
            order = self._order[key]
            marks[key] = order[0] - 1 if order else last
        return marks

    def save(self):
        data = {"version": CHECKPOINT_VERSION, "inputs": {k: {"settled_lines": v} for k, v in self.watermarks().items()}}
        atomic_write(self.path, (jsonio.dumps(data) + "\n").encode("utf-8"))


def load_checkpoint(path):
    """Settled line counts from a checkpoint file; a missing file means nothing is settled."""
    try:
        with open(path, "rb") as fh:
            data = jsonio.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read checkpoint: {exc}", file=path, key="--checkpoint") from None
    try:
        return {k: int(v["settled_lines"]) for k, v in data["inputs"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError("not a gspx checkpoint file", file=path, key="--checkpoint") from None


def atomic_write(path, data):
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".gspx-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
