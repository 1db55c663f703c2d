"""One outcome per record: run statistics, the failed-output file and the checkpoint (STYLE habit 8, 9)."""

import os
import re
import time
from collections import Counter

from gspx_cli import jsonio
from gspx_cli.errors import OutputError

DELIVERED, SKIPPED, INVALID, FAILED, INTERRUPTED = "delivered", "skipped", "invalid", "failed", "interrupted"
OUTCOMES = (DELIVERED, SKIPPED, INVALID, FAILED, INTERRUPTED)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")  # ids inside messages, so reasons group


# Plain classes, not @dataclass: it generates and compiles its methods at every start (issue 22).
class Reason:
    """One failure reason: how often, and the first place it happened."""

    def __init__(self, count=0, example=""):
        self.count = count
        self.example = example

    def __eq__(self, other):
        return (self.count, self.example) == (other.count, other.example) if type(other) is Reason else NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"Reason(count={self.count!r}, example={self.example!r})"


class RunStats:
    """Counts of a run; every record read ends in exactly one outcome."""

    def __init__(self):
        self.read = 0
        self.outcomes = Counter()  # outcome -> n
        self.by_type = {}  # type -> Counter(outcome -> n)
        self.reasons = {}  # normalised message -> Reason
        self.skip_reasons = Counter()
        self.warnings = 0
        self.failed_output_lines = 0
        self.unsent_saved = 0  # events read but not sent that the failed output took
        self.not_copied = []  # FILE:LINE of failed lines too long to copy to the failed output
        self.started = time.monotonic()

    @property
    def failed(self):
        """Events that failed, invalid ones included."""
        return self.outcomes[FAILED] + self.outcomes[INVALID]

    def top_reasons(self, n=5):
        """The n most frequent failure reasons, most frequent first."""
        return sorted(self.reasons.items(), key=lambda kv: -kv[1].count)[:n]


class Ledger:
    """One outcome per record, kept by the coordinator alone: counts, the failed output, the checkpoint."""

    def __init__(self, *, failed_output=None, checkpoint=None):
        self.stats = RunStats()
        self.failed_output = failed_output
        self._failed_file = None
        self.output_error = None  # an OutputError once a write failed; nothing more is written there
        self._frozen = False  # the failed output vanished: what it took since is no longer recorded anywhere
        self._closed = False
        self.checkpoint = None
        if checkpoint:  # the checkpoint's modules (bookkeeping, identities; sqlite3 at open) only with one
            from gspx_cli.state.checkpoint import Checkpoint

            self.checkpoint = Checkpoint(checkpoint)

    def read(self, record):
        """Count one record read and open its line in the checkpoint."""
        self.stats.read += 1
        if self.checkpoint is not None:
            self.checkpoint.opened(record)

    def resendable(self, record):
        """True when a --checkpoint rerun sends this record again if it is left unsettled."""
        return self.checkpoint is not None and record.source != "-"

    def settle(self, record, outcome, reason=None, event_type=None):
        """Record the one outcome of a record; failed, invalid and unsent ones may go to the failed output.

        A record is settled in the checkpoint only when its outcome is recorded for good: an unsent
        one only when the failed output took it (else a rerun sends it), an incomplete last line never.
        """
        st = self.stats
        st.outcomes[outcome] += 1
        counts = st.by_type.get(event_type or "unknown")
        if counts is None:  # not setdefault(..., Counter()): that builds a Counter per event
            counts = st.by_type[event_type or "unknown"] = Counter()
        counts[outcome] += 1
        if outcome is DELIVERED or outcome is SKIPPED:
            if outcome is SKIPPED:
                st.skip_reasons[reason or "skipped"] += 1
            recorded = True
        elif outcome is INTERRUPTED:
            recorded = not self.resendable(record) and self._write_failed(record)
            if recorded:
                st.unsent_saved += 1
        else:
            key = _QUOTED.sub("…", reason or outcome)
            entry = st.reasons.get(key)
            if entry is None:
                entry = st.reasons[key] = Reason(example=record.where)
            entry.count += 1
            if record.incomplete and self.resendable(record):
                return  # the file may still be growing: a rerun reads the whole line
            recorded = self._write_failed(record) is not False
        if recorded and self.checkpoint is not None:
            self.checkpoint.settled(record)

    def settle_many(self, outcome, reason, counts):
        """settle(record, outcome, reason, event_type) of counts[event_type] records at once: only for
        delivered or skipped records (nothing to write) in a run without a checkpoint (nothing to mark)."""
        st = self.stats
        by_type = st.by_type
        total = 0
        for event_type, n in counts.items():
            type_counts = by_type.get(event_type or "unknown")
            if type_counts is None:
                type_counts = by_type[event_type or "unknown"] = Counter()
            type_counts[outcome] += n
            total += n
        st.outcomes[outcome] += total
        if outcome is SKIPPED:
            st.skip_reasons[reason or "skipped"] += total

    def warn(self):
        """Count one warning."""
        self.stats.warnings += 1

    def _write_failed(self, record):
        """Append the record to the failed output: True if written, None if there is none, False if it failed."""
        if not self.failed_output:
            return None
        if self.output_error is not None:
            return False
        if record.unwrapped and record.event is not None:
            line = jsonio.dumps(record.event).encode("utf-8")
        else:
            line = record.raw
        if not line:  # an over-long line is never held in memory, so it cannot be copied: say where it is
            self.stats.not_copied.append(record.where)
            return None
        try:
            if self._failed_file is None:
                self._failed_file = open(self.failed_output, "ab")
            self._failed_file.write(line + b"\n")
            # flushed before the checkpoint can count the line as settled
            self._failed_file.flush()
        except OSError as exc:
            self.output_error = OutputError(self.failed_output, "--failed-output", exc)
            return False
        self.stats.failed_output_lines += 1
        return True

    def save_checkpoint(self):
        """Write the checkpoint now; a failure is kept in output_error (the run stops), never raised."""
        self._check_failed_output()
        if self.checkpoint is None or self._frozen or self._closed:
            return
        try:
            self.checkpoint.save()
        except OSError as exc:  # the store's errors are OSErrors too, with SQLite's reason ("database or disk is full")
            if self.output_error is None:
                self.output_error = OutputError(self.checkpoint.path, "--checkpoint", exc)

    def _check_failed_output(self):
        """Stop the run, and freeze the checkpoint, once the open failed output is no longer the file at
        its path (deleted, or moved aside): lines appended since went where nobody can read them, so the
        checkpoint on disk, saved before they were written, stays as it is and a rerun sends them again."""
        if self._failed_file is None or self._frozen:
            return
        try:
            now, ours = os.stat(self.failed_output), os.fstat(self._failed_file.fileno())
            vanished = (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino)
        except OSError:
            vanished = True
        if vanished:
            self._frozen = True
            if self.output_error is None:
                self.output_error = OutputError(self.failed_output, "--failed-output",
                                                "it was removed or replaced during the run")

    def close(self):
        """Close the failed output, save the checkpoint a last time and close its database."""
        self._check_failed_output()
        if self._failed_file:
            try:
                self._failed_file.close()
            except OSError as exc:
                if self.output_error is None:
                    self.output_error = OutputError(self.failed_output, "--failed-output", exc)
            self._failed_file = None
        self.save_checkpoint()
        if self.checkpoint is not None:
            self._closed = True
            self.checkpoint.close()
