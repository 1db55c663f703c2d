"""Each input's identity as the run saves it: taken anew for the inputs this run reads (a file hashed again
only when its stat changed), an object's as the reader found it, and the number of lines of an input read
to its end, with a file's stat then (identity.py says what an identity is)."""

import os
import queue

from gspx_cli.read import remote
from gspx_cli.state.identity import file_identity

# Saves an input read to its end waits for its first lines to reach the bookkeeping (the reader runs
# ahead of the sends) before its end is dropped: it then keeps no line count, and a rerun opens it.
EARLY_SAVES = 5


class Identities:
    """Kept by the coordinator's thread; objects and ends are filled by the reader's (watch.InputWatch)."""

    def __init__(self):
        self.objects = {}  # URL -> identity of the object read in this run
        self.ends = queue.SimpleQueue()  # (key, lines, read) of inputs read to their end
        self._seen = {}  # source key -> (stat signature, identity): an input that did not change is not hashed again
        self._whole = {}  # source key -> (lines, (size, mtime_ns, inode) or None) once read to its end
        self._early = {}  # source key -> (lines, read, saves left): read to its end, none of its lines here yet

    def take_ends(self, known, limit):
        """([keys], more): the inputs read to their end since the last call that known(key) says this run
        or an earlier one has lines of, at most `limit` (a reader far ahead of the sends must not make one
        save hold them all); more: True when more are waiting."""
        early, self._early = self._early, {}
        ends = [(key, lines, read, saves) for key, (lines, read, saves) in early.items()]
        for _ in range(limit):
            try:
                ends.append((*self.ends.get_nowait(), EARLY_SAVES))
            except queue.Empty:
                break
        taken = []
        for key, lines, read, saves in ends:
            if key in self._whole or known(key):
                self._whole[key] = (lines, read)
                taken.append(key)
            elif saves:  # its lines are still on their way to the bookkeeping
                self._early[key] = (lines, read, saves - 1)
        return taken, len(ends) - len(early) == limit and not self.ends.empty()

    def ended(self, key):
        return key in self._whole

    def of(self, key, path, now, recorded):
        """The identity to save: taken now (now: this run reads it) or else the recorded one; with its number
        of lines when it was read to its end (and, for a file, its stat then, when that is still its stat:
        what lets a rerun skip it unopened)."""
        whole = self._whole.get(key)
        identity = self._now(key, path) if now or whole is not None else None
        if identity is None:
            identity = recorded
        if identity is None or whole is None:
            return identity
        lines, read = whole
        if "version" in identity:
            return {**identity, "lines": lines}
        seen = self._seen.get(key)
        if read is not None and seen is not None and seen[0] == read and seen[1] is identity:
            return {**identity, "lines": lines, "mtime_ns": read[1], "inode": read[2]}
        return identity

    def _now(self, key, path):
        """The identity of an input as it is now (a growing file: its size now); None when unknown."""
        if path is None or key == "-":
            return None
        if remote.is_url(key):
            return self.objects.get(key)
        try:
            st = os.stat(path)
        except OSError:
            return None
        signature = (st.st_size, st.st_mtime_ns, st.st_ino)
        seen = self._seen.get(key)
        if seen is not None and seen[0] == signature:
            return seen[1]
        identity = file_identity(path)
        self._seen[key] = (signature, identity)
        return identity

    def forget(self, key):
        for table in (self._seen, self.objects, self._whole):
            table.pop(key, None)
