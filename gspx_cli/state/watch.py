"""The checkpoint as the reader sees it: what an earlier run recorded of an input, looked up in the database
when the walk reaches that input (never loaded whole: a year of archives is a million inputs), and what
the reader learns of the objects and files it reads, handed to the run's bookkeeping."""

import contextlib
import functools
import itertools
import operator
import os
import threading
import time

from gspx_cli.errors import ReplacedInputError
from gspx_cli.read import remote
from gspx_cli.read.names import source_key, text_of_name
from gspx_cli.state.identity import REFUSAL_ADVICE, file_problem, object_problem, read_whole, recorded


_STAT = (operator.attrgetter("st_size"), operator.attrgetter("st_mtime_ns"), operator.attrgetter("st_ino"))
_NAME = operator.itemgetter(0)


class InputWatch:
    """The reader thread's questions (reader.iter_line_batches `inputs` and `skip_lines`), on a read-only
    connection of its own. One thread uses it; close() may come from another, once the run ends."""

    def __init__(self, checkpoint_path, connection, objects, ends):
        self._path = checkpoint_path
        self._con = connection  # store.InputReader
        self._objects = objects  # source key -> identity of an object read in this run (Checkpoint's)
        self._ends = ends  # queue of (source key, lines, (size, mtime_ns, inode) or None) read to their end
        self._con_settled, self._con_entry = connection.settled, connection.input_entry
        self._con_row = connection.settled_row
        self._folder = (None, None)  # the last folder as found, and its absolute path ending in a separator
        self._lock = threading.Lock()  # close() never pulls the connection from under a lookup

    def _lookup(self, path, ask):
        key = self._key(path)
        with self._lock:
            if self._con is None:
                return key, None  # the run has ended: nothing more is read
            return key, ask(key)

    def _key(self, path):
        """source_key(path), with the absolute path of its folder worked out once per folder."""
        folder, sep, name = path.rpartition(os.sep)
        if folder == self._folder[0] and sep and name not in (".", "..", ""):
            return self._folder[1] + text_of_name(name)  # a folder cached below is never "-" or a URL's
        if path == "-" or remote.is_url(path):
            return path
        if not sep or name in (".", "..", ""):
            return source_key(path)
        self._folder = (folder, os.path.join(source_key(folder or os.sep), ""))
        return self._folder[1] + text_of_name(name)

    def skip_lines(self, path):
        """The number of lines of the input at path an earlier run settled (its prefix): the reader skips them."""
        found = self._lookup(path, self._con_settled)[1]
        return found[0] if found is not None else 0

    def settled_whole(self, path, identity):
        """True when an earlier run read this object to its end and settled every line of it, and the
        listing's identity is the one recorded: a rerun need not fetch it."""
        found = self._lookup(path, self._con_row)[1]
        if found is None or not found[2]:  # not read to its end with every line settled
            return False
        _, _, _, size, version, _, _ = found
        return version is not None and version == identity["version"] and size == identity["size"]

    def unchanged(self, folder, names, subfolders=()):
        """The names among `names` (files directly in folder, as listed) that an earlier run read to their
        end and settled every line of, and whose size, mtime and inode are what they were then: a rerun
        need not open them. One query for the folder, then one stat per file the checkpoint has."""
        # A resume over a settled year asks this of a million files: the work per file is done in C
        # (map, compress, set), so that the resume costs little more than the stats (issue 22, figure 2).
        done = set()
        with self._lock, _stat_in(folder) as stat:
            if self._con is None:
                return done
            # a key holds a name that is not UTF-8 escaped (text_of_name; a backslash may be doubled)
            if not all(map(str.isascii, subfolders)) or "\\" in "".join(subfolders):
                subfolders = list(map(text_of_name, subfolders))
            listed = odd = None
            for rows in self._con.whole_files(os.path.join(source_key(folder), ""), subfolders):
                if listed is None:
                    listed = set(names)
                    # the rows of names that are not UTF-8 hold their escape (text_of_name): back to the name
                    odd = list(itertools.filterfalse(str.isascii, names))
                    if "\\" in "".join(names):
                        odd += [name for name in names if "\\" in name]
                    odd = {text: name for name in odd if (text := text_of_name(name)) is not name}
                if odd:
                    rows = [(odd[row[0]],) + tuple(row[1:]) if row[0] in odd else row for row in rows]
                # only rows of files listed now are stat'ed: not those deleted since, nor the run's outputs
                rows = [row for row, keep in zip(rows, map(listed.__contains__, map(_NAME, rows))) if keep]
                done.update(_unchanged(stat, rows))
        return done

    def verify(self, path, identity):
        """Raise ReplacedInputError when a file found in a directory or an object store (identity: the
        object's, None for a file on disk) is not the one this checkpoint recorded with lines settled."""
        entry = self._lookup(path, self._con_entry)[1]
        found = None if entry is None else recorded(entry, self._path)
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
        self._objects[self._key(path)] = identity

    def ended(self, path, lines, opened=None):
        """An input was read to its end: it has `lines` lines. opened: a file on disk, still open, whose
        stat then is saved with them (so a rerun that finds it unchanged skips it)."""
        whole = read_whole(opened, time.time_ns()) if opened is not None else None
        if opened is None or whole is not None:
            self._ends.put((self._key(path), lines, whole))

    def close(self):
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()


@contextlib.contextmanager
def _stat_in(folder):
    """stat(name) of a file in folder: by name alone in the open folder where the system allows it
    (no path walked again per file), else by its path."""
    if os.stat not in os.supports_dir_fd:
        yield functools.partial(_stat_at, os.path.join(folder, ""))
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield functools.partial(_stat_at, os.path.join(folder, ""))  # each stat says what is wrong
        return
    try:
        yield functools.partial(os.stat, dir_fd=fd)
    finally:
        os.close(fd)


def _stat_at(prefix, name):
    return os.stat(prefix + name)


def _unchanged(stat, rows):
    """The names of the rows (name, size, mtime_ns, inode) whose file's stat says the same now."""
    names = list(map(_NAME, rows))
    try:
        stats = list(map(stat, names))
    except OSError:  # one vanished since it was listed: the others are still compared
        kept = []
        for row in rows:
            try:
                kept.append((row, stat(row[0])))
            except OSError:
                continue
        rows, stats = [row for row, _ in kept], [st for _, st in kept]
        names = list(map(_NAME, rows))
    now = zip(names, *(map(get, stats) for get in _STAT))
    return itertools.compress(names, map(operator.eq, rows, now))
