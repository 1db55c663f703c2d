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
    not_copied: list = field(default_factory=list)  # FILE:LINE of failed lines too long to copy to the failed output
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self):
        """Events that failed, invalid ones included."""
        return self.outcomes[FAILED] + self.outcomes[INVALID]

    def top_reasons(self, n=5):
        """The n most frequent failure reasons, most frequent first."""
        return sorted(self.reasons.items(), key=lambda kv: -kv[1].count)[:n]


class Ledger:
    """Thread-safe record of outcomes; writes failed events and keeps the settled prefix of each input."""

    def __init__(self, *, failed_output=None, checkpoint=None):
        self.stats = RunStats()
        self._lock = threading.Lock()
        self._failed_path = failed_output
        self._failed_file = None
        self._save_lock = threading.Lock()
        self.checkpoint = Checkpoint(checkpoint) if checkpoint else None

    def open_line(self, records, indices=None):
        """Register the records read from one input line, before any of them is settled.

        indices: each record's position among the events of its line (a batch), when some were
        filtered out because an earlier run settled them; default 0, 1, 2, ...
        """
        # `read` needs no lock: only the reading thread writes it (the lock costs ~0.3 us a line, issue 5)
        self.stats.read += len(records)
        if self.checkpoint:
            with self._lock:
                self.checkpoint.opened(records, indices)

    def settle(self, record, outcome, reason=None, event_type=None):
        """Record the one outcome of a record; failed and invalid ones go to the failed output."""
        with self._lock:
            st = self.stats
            st.outcomes[outcome] += 1
            _type_counts(st, event_type)[outcome] += 1
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

    def settle_dry_run_plan(self, event_type):
        """settle(record, DELIVERED, None, event_type) for a dry run's plan, its most common outcome.

        Only the counts: a dry run has no checkpoint, and a sent event no failed output. And no
        lock: a dry run settles from its one thread (the progress display only reads). Issue 5.
        """
        st = self.stats
        st.outcomes[DELIVERED] += 1
        _type_counts(st, event_type)[DELIVERED] += 1

    def warn(self):
        """Count one warning."""
        with self._lock:
            self.stats.warnings += 1

    def _write_failed(self, record):
        if not self._failed_path:
            return
        if record.unwrapped and record.event is not None:
            line = jsonio.dumps(record.event).encode("utf-8")
        else:
            line = record.raw
        if not line:  # an over-long line is never held in memory, so it cannot be copied: say where it is
            self.stats.not_copied.append(record.where)
            return
        if self._failed_file is None:
            self._failed_file = open(self._failed_path, "ab")
        self._failed_file.write(line + b"\n")
        # flushed before the checkpoint can count the line as settled
        self._failed_file.flush()
        self.stats.failed_output_lines += 1

    def save_checkpoint(self):
        """Write the checkpoint now; the file is written outside the lock so workers never wait on fsync."""
        if not self.checkpoint:
            return
        with self._save_lock:  # one writer at a time, so an older snapshot never lands last
            with self._lock:
                data = self.checkpoint.snapshot()
            self.checkpoint.write(data)

    def close(self):
        """Close the failed output and save the checkpoint a last time."""
        with self._lock:
            if self._failed_file:
                self._failed_file.close()
                self._failed_file = None
        self.save_checkpoint()


def _type_counts(stats, event_type):
    """The outcome Counter of one event type in stats.by_type, made on first use."""
    counts = stats.by_type.get(event_type or "unknown")
    if counts is None:  # not setdefault(..., Counter()): that builds a Counter per event
        counts = stats.by_type[event_type or "unknown"] = Counter()
    return counts


class Checkpoint:
    """Per input, the longest prefix of lines that is fully settled; saved atomically (STYLE habit 9).

    Workers settle lines out of order, so when a run stops, some lines beyond the prefix are already
    delivered while earlier ones were never sent. Those are saved too (`settled_after`, and
    `settled_parts` for batch lines settled in part, by event index), so a resume skips them and
    a clean stop leaves no duplicates. Both lists stay small: they only cover what was in flight.
    """

    def __init__(self, path):
        self.path = path
        self.done, self._prior = _load_state(path)  # key -> prefix; key -> {line: None (whole) | {index}}
        self._pending = {}  # source key -> {line: outstanding records}
        self._order = {}  # source key -> deque of lines not yet in the prefix, in read order
        self._last = {}  # source key -> last line registered
        self._members = {}  # (key, line) -> {id(record): index}, for lines with several records open
        self._parts = {}  # (key, line) -> {index} settled so far, for lines settled in part
        self._keys = {}  # source as typed -> source key: abspath once per input, not per event

    def _key(self, source):
        key = self._keys.get(source)
        if key is None:
            key = self._keys[source] = source_key(source)
        return key

    def skip_lines(self):
        """The settled prefix of each input: the reader skips these lines."""
        return dict(self.done)

    @property
    def resumes_beyond_prefix(self):
        """True when an earlier run settled lines beyond the prefix (already_settled can say yes)."""
        return any(self._prior.values())

    def already_settled(self, record, index):
        """True when an earlier run settled this event (index: its place in its line) beyond the prefix."""
        prior = self._prior.get(self._key(record.source))
        if not prior or record.line_no not in prior:
            return False
        parts = prior[record.line_no]
        return parts is None or index in parts

    def opened(self, records, indices=None):
        """Register one line's records as outstanding."""
        first = records[0]
        if first.line_no <= 0:  # "cannot open": no line to remember
            return
        key, line = self._key(first.source), first.line_no
        self._pending.setdefault(key, {})[line] = len(records)
        self._order.setdefault(key, deque()).append(line)
        self._last[key] = line
        if len(records) > 1:  # a batch line may end settled in part: remember which event is which
            indices = range(len(records)) if indices is None else indices
            self._members[(key, line)] = {id(r): i for r, i in zip(records, indices)}

    def settled(self, record):
        """One record is settled; the prefix grows past every line whose records are all settled."""
        key, line = self._key(record.source), record.line_no
        pending = self._pending.get(key)
        if pending is None or line not in pending:
            return
        pending[line] -= 1
        members = self._members.get((key, line))
        if members is not None:
            index = members.pop(id(record), None)
            if pending[line] == 0:
                del self._members[(key, line)]
                self._parts.pop((key, line), None)
            elif index is not None:
                self._parts.setdefault((key, line), set()).add(index)
        order = self._order[key]
        while order and pending[order[0]] == 0:
            del pending[order.popleft()]

    def snapshot(self):
        """The checkpoint's content now (call under the ledger lock)."""
        inputs = {}
        for key in {*self.done, *self._prior, *self._last}:
            if key in self._last:
                order = self._order[key]
                mark = order[0] - 1 if order else self._last[key]
            else:
                mark = self.done.get(key, 0)
            after = {line: (None if parts is None else set(parts))
                     for line, parts in self._prior.get(key, {}).items() if line > mark}
            pending = self._pending.get(key, {})
            for line in self._order.get(key, ()):
                if pending[line] == 0:
                    after[line] = None
                elif (key, line) in self._parts:
                    after[line] = (after.get(line) or set()) | self._parts[(key, line)]
            while mark + 1 in after and after[mark + 1] is None:  # whole lines right after the prefix join it
                del after[mark + 1]
                mark += 1
            entry = {"settled_lines": mark}
            whole = sorted(line for line, parts in after.items() if parts is None)
            if whole:
                entry["settled_after"] = whole
            parts = {str(line): sorted(p) for line, p in sorted(after.items()) if p}
            if parts:
                entry["settled_parts"] = parts
            inputs[key] = entry
        return {"version": CHECKPOINT_VERSION, "inputs": dict(sorted(inputs.items()))}

    def watermarks(self):
        """Per input, the settled prefix as it stands now."""
        return {k: v["settled_lines"] for k, v in self.snapshot()["inputs"].items()}

    def write(self, data):
        """Write a snapshot() atomically."""
        atomic_write(self.path, (jsonio.dumps(data) + "\n").encode("utf-8"))


def _load_state(path):
    """(prefix per input, lines settled beyond it per input) from a checkpoint file."""
    try:
        with open(path, "rb") as fh:
            data = jsonio.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read checkpoint: {exc}", file=path, key="--checkpoint") from None
    try:
        done, prior = {}, {}
        for key, entry in data["inputs"].items():
            done[key] = int(entry["settled_lines"])
            after = {int(line): None for line in entry.get("settled_after", ())}
            for line, indices in entry.get("settled_parts", {}).items():
                after[int(line)] = {int(i) for i in indices}
            if after:
                prior[key] = after
        return done, prior
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
