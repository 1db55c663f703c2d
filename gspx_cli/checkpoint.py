"""The checkpoint: per input, the settled prefix of lines and the few settled beyond it (STYLE habit 9)."""

import os
import tempfile
from collections import deque

from gspx_cli import jsonio
from gspx_cli.errors import ConfigError
from gspx_cli.reader import source_key

CHECKPOINT_VERSION = 1


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

    def already_settled(self, record):
        """True when an earlier run settled this event beyond the prefix."""
        prior = self._prior.get(self._key(record.source))
        if not prior or record.line_no not in prior:
            return False
        parts = prior[record.line_no]
        return parts is None or record.index in parts

    def opened(self, record):
        """Register a record read; the first of its line opens the line with all its events outstanding."""
        if record.line_no <= 0 or record.index:  # "cannot open": no line to remember; or not the line's first
            return
        key, line = self._key(record.source), record.line_no
        self._pending.setdefault(key, {})[line] = record.count
        self._order.setdefault(key, deque()).append(line)
        self._last[key] = line

    def settled(self, record):
        """One record is settled; the prefix grows past every line whose records are all settled."""
        key, line = self._key(record.source), record.line_no
        pending = self._pending.get(key)
        if pending is None or line not in pending:
            return
        pending[line] -= 1
        if record.count > 1:  # a batch line may end settled in part: remember which events are done
            if pending[line] == 0:
                self._parts.pop((key, line), None)
            else:
                self._parts.setdefault((key, line), set()).add(record.index)
        order = self._order[key]
        while order and pending[order[0]] == 0:
            del pending[order.popleft()]

    def snapshot(self):
        """The checkpoint's content now."""
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
