"""The checkpoint as the reader sees it: what an earlier run recorded of an input, looked up in the database
when the walk reaches that input (never loaded whole: a year of archives is a million inputs), and what
the reader learns of the objects and files it reads, handed to the run's bookkeeping."""

import threading
import time
from collections import OrderedDict

from gspx_cli.errors import ReplacedInputError
from gspx_cli.read.reader import source_key
from gspx_cli.state.identity import (REFUSAL_ADVICE, file_problem, object_problem, read_whole, recorded,
                                     unchanged_since_read)

# Inputs whose rows are kept at hand: the reader asks about one input a few times in a row, and the
# objects fetched ahead (remote.PREFETCH_OBJECTS) are asked about before the one being read.
RECENT = 64


class InputWatch:
    """The reader thread's questions (reader.iter_line_batches `inputs` and `skip_lines`), on a read-only
    connection of its own. One thread uses it; close() may come from another, once the run ends."""

    def __init__(self, checkpoint_path, connection, objects, ends):
        self._path = checkpoint_path
        self._con = connection  # store.InputReader
        self._objects = objects  # source key -> identity of an object read in this run (Checkpoint's)
        self._ends = ends  # queue of (source key, lines, (size, mtime_ns, inode) or None) read to their end
        self._recent = OrderedDict()  # source key -> Recorded or None (no row)
        self._lock = threading.Lock()  # close() never pulls the connection from under a lookup

    def _recorded(self, path):
        key = source_key(path)
        recent = self._recent
        if key in recent:
            recent.move_to_end(key)
            return key, recent[key]
        with self._lock:
            if self._con is None:
                return key, None  # the run has ended: nothing more is read
            entry = self._con.input_entry(key)
        found = recent[key] = None if entry is None else recorded(entry, self._path)
        if len(recent) > RECENT:
            recent.popitem(last=False)
        return key, found

    def skip_lines(self, path):
        """The number of lines of the input at path an earlier run settled (its prefix): the reader skips them."""
        found = self._recorded(path)[1]
        return found.prefix if found is not None else 0

    def settled_whole(self, path, identity=None):
        """True when an earlier run read this input to its end and settled every line of it, and it is
        the same now: an object whose listing's identity (identity) is the one recorded, or a file on
        disk (identity None) whose size, mtime and inode are: a rerun need not open it."""
        found = self._recorded(path)[1]
        if found is None or not found.settled_whole():
            return False
        if identity is None:
            return unchanged_since_read(path, found.identity)
        return found.identity.get("version") == identity["version"] and found.identity["size"] == identity["size"]

    def verify(self, path, identity):
        """Raise ReplacedInputError when a file found in a directory or an object store (identity: the
        object's, None for a file on disk) is not the one this checkpoint recorded with lines settled."""
        found = self._recorded(path)[1]
        if found is None or found.identity is None or (not found.prefix and not found.after):
            return
        if identity is None:
            problem = file_problem(path, found.identity)
        else:
            problem = object_problem(path, found.identity, identity)
        if problem:
            raise ReplacedInputError(f"{problem} {REFUSAL_ADVICE.format(path=self._path)}",
                                     key=f"--checkpoint {self._path}")

    def observe(self, path, identity):
        """The identity of an object being read in this run, saved with its lines."""
        self._objects[source_key(path)] = identity

    def ended(self, path, lines, opened=None):
        """An input was read to its end: it has `lines` lines. opened: a file on disk, still open, whose
        stat then is saved with them (so a rerun that finds it unchanged skips it)."""
        whole = read_whole(opened, time.time_ns()) if opened is not None else None
        if opened is None or whole is not None:
            self._ends.put((source_key(path), lines, whole))

    def close(self):
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()
