"""The run's bookkeeping of settled lines, per input (STYLE habit 9): the longest prefix of lines fully
settled, the few settled beyond it, and which inputs changed since the last save. No I/O: what an earlier
run recorded of an input comes from recorded(key), asked the first time the run touches that input."""

from collections import deque


class Bookkeeping:
    """Workers settle lines out of order, so when a run stops, some lines beyond the prefix are already
    delivered while earlier ones were never sent. Those are kept too (`settled_after`, and
    `settled_parts` for batch lines settled in part, by event index), so a resume skips them and a clean
    stop leaves no duplicates. Both stay small: they only cover what was in flight.

    recorded(key) -> identity.Recorded or None: what an earlier run saved of an input (looked up once,
    then held until forget()); only the inputs this run is working on are in memory.
    """

    def __init__(self, recorded):
        self._lookup = recorded
        self._recorded = {}  # source key -> Recorded or None, of the inputs in memory
        self._pending = {}  # source key -> {line: outstanding records}
        self._order = {}  # source key -> deque of lines not yet in the prefix, in read order
        self._last = {}  # source key -> last line registered in this run
        self._parts = {}  # (key, line) -> {index} settled so far, for lines settled in part
        self.dirty = set()  # keys whose entry changed since the last save: a save writes only those

    def recorded(self, key):
        """What an earlier run saved of the input (identity.Recorded), or None; held while it is in memory."""
        try:
            return self._recorded[key]
        except KeyError:
            found = self._recorded[key] = self._lookup(key)
            return found

    def in_memory(self):
        """The keys of the inputs this run holds: those it read lines of, or asked about."""
        return {*self._last, *(key for key, found in self._recorded.items() if found is not None)}

    def read_in_this_run(self, key):
        return key in self._last

    def unsettled(self, key):
        """True while lines of the input read in this run are not all in its prefix."""
        return bool(self._order.get(key))

    def already_settled(self, key, line, index):
        """True when an earlier run settled this event (line, index in its batch) beyond the prefix."""
        found = self.recorded(key)
        if found is None or line not in found.after:
            return False
        parts = found.after[line]
        return parts is None or index in parts

    def opened(self, key, line, count):
        """The first record of a line was read: the line is open with all its `count` events outstanding."""
        self.recorded(key)
        self._pending.setdefault(key, {})[line] = count
        self._order.setdefault(key, deque()).append(line)
        self._last[key] = line
        self.dirty.add(key)

    def settled(self, key, line, index, count):
        """One event is settled; the prefix grows past every line whose events are all settled."""
        pending = self._pending.get(key)
        if pending is None or line not in pending:
            return
        pending[line] -= 1
        self.dirty.add(key)
        if count > 1:  # a batch line may end settled in part: remember which events are done
            if pending[line] == 0:
                self._parts.pop((key, line), None)
            else:
                self._parts.setdefault((key, line), set()).add(index)
        order = self._order[key]
        while order and pending[order[0]] == 0:
            del pending[order.popleft()]

    def entry(self, key):
        """The input's settled lines now: {"settled_lines"} and "settled_after", "settled_parts" when any."""
        found = self.recorded(key)
        if key in self._last:
            order = self._order[key]
            mark = order[0] - 1 if order else self._last[key]
        else:
            mark = found.prefix if found is not None else 0
        after = {line: (None if parts is None else set(parts))
                 for line, parts in (found.after if found is not None else {}).items() if line > mark}
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
        return entry

    def forget(self, key):
        """Drop the input from memory: its saved row says it all. Should more of its lines come (a growing
        file), they start its bookkeeping again after the saved prefix, as a resume would."""
        for table in (self._pending, self._order, self._last, self._recorded):
            table.pop(key, None)
        self.dirty.discard(key)
