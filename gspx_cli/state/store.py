"""The checkpoint's file (CLI.md "The checkpoint"): one SQLite database written in transactions.

It knows nothing of lines or records: it keeps rows (inputs, delivered messageIds, objects known to
exist in PX, requests per UTC day) and buffers the new ones in memory until commit(). checkpoint.py
imports it only when a run has a --checkpoint: sqlite3 costs about 3 ms of start-up, and a dry run
never opens the checkpoint.
"""

import errno
import os
import sqlite3

from gspx_cli.read.names import text_of_name
from gspx_cli.state.schema import (BEYOND, BUSY_TIMEOUT, FORMAT_VERSION, INPUT_COLUMNS, INPUT_VALUES,  # noqa: F401 (API)
                                   entry_of, fit_cache, input_row, open_database, read_error,
                                   rollback)

# Input rows the reader's connection reads at once (InputReader): a walk over a million inputs makes a
# query per WINDOW of them, and holds no more than that.
WINDOW = 512
# what InputReader.settled needs of a row, held WINDOW at a time: whether it was read to its end and
# settled whole, worked out by SQLite, and the identity to compare; not a file's two hashes. A resume
# over 100,000 settled files reads each row once: every column is ~0.1 µs of it (the hashes ~0.5).
_WINDOW_COLUMNS = (f"key, settled_lines, lines IS NOT NULL AND settled_lines >= lines AND NOT ({BEYOND}), "
                   "size, version, mtime_ns, inode")
# The rows of InputReader.whole_files: the files of one folder that an earlier run read to their
# end, settled whole and kept the stat of, as (name, size, mtime_ns, inode) to compare with a stat as is,
# held at once of them: a folder of a million files is compared a chunk at a time
WHOLE_CHUNK = 4096
_WHOLE_FILES = ("SELECT substr(key, ?), size, mtime_ns, inode FROM inputs WHERE key >= ? AND key < ? "
                f"AND mtime_ns IS NOT NULL AND lines IS NOT NULL AND settled_lines >= lines AND NOT ({BEYOND})")
_KINDS = ("user", "account")  # MAPPING.md: the objects PX has, and gspx remembers


class StoreError(OSError):
    """A write to the checkpoint failed (disk full, read-only, removed); strerror says why in words."""


class CheckpointStore:
    """The checkpoint's database; new rows wait in memory until commit() writes them in one transaction.

    One thread at a time (the coordinator's, STYLE habit 13); check_same_thread is off only because
    the run may open it on another thread than the one that uses it.
    """

    def __init__(self, path):
        self.path = path
        self._con = None
        self._delivered = {}  # message_id -> "FILE:LINE", not yet committed
        self._objects = {}  # (kind, id) -> digest, not yet committed
        self._requests = {}  # day -> requests to add, not yet committed
        # Source names are looked up when used, never loaded whole: a walk of a million files has a
        # million of them. _sources holds those of the rows not yet committed, and is emptied at commit().
        self._sources = {}  # name -> id of the rows waiting for commit()
        self._new_sources = {}  # name -> id, not yet committed
        from gspx_cli.state.carryover import carry_over  # jsonio and tempfile: only for a JSON checkpoint

        # the JSON format (1 or 2) this file was carried over from just now, if it was one
        self.converted_from = carry_over(path)
        self._con = open_database(path)
        try:
            self._identity = _file_id(path)  # which file we write: a commit checks it is still at the path
            self._next_source = self._read_one("SELECT coalesce(max(id), 0) + 1 FROM sources")[0]
        except BaseException:
            self.close()
            raise

    @property
    def conversion_note(self):
        """The note for people when a JSON checkpoint was carried over; None otherwise."""
        if self.converted_from is None:
            return None
        return f"note: converted checkpoint {self.path} from the JSON format {self.converted_from} to SQLite"

    # -- inputs ---------------------------------------------------------------------------------------
    def load_inputs(self):
        """{key: entry} of every input as saved (tests and tools: a run looks inputs up one at a time)."""
        try:
            rows = self._con.execute(f"SELECT {INPUT_COLUMNS} FROM inputs ORDER BY key").fetchall()
        except sqlite3.Error as exc:
            raise read_error(self.path, exc) from None
        return {row[0]: entry_of(row) for row in rows}

    def input_entry(self, key):
        """The saved entry of one input (settled_lines, and settled_after, settled_parts, identity when
        there are any), or None."""
        return input_entry(self._con, self.path, key)

    def settled_beyond_any_prefix(self):
        """True when some input has lines settled beyond its prefix (its partial index: no scan)."""
        return self._read_one(f"SELECT EXISTS (SELECT 1 FROM inputs WHERE {BEYOND})")[0] == 1

    def reader(self):
        """A second, read-only connection to look inputs up from another thread (the reader's): WAL
        lets it read the last commit while this one writes. Has input_entry(key) and close()."""
        return InputReader(self.path)

    def _read_one(self, sql, args=()):
        try:
            return self._con.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise read_error(self.path, exc) from None

    # -- delivered messageIds -------------------------------------------------------------------------
    def delivered_at(self, message_id):
        """Where the event was first delivered ("FILE:LINE"; "" when unknown where); None when never."""
        where = self._delivered.get(message_id)
        if where is not None:
            return where
        row = self._con.execute("SELECT source, line FROM delivered WHERE message_id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        source, line = row
        if source is None:
            return ""
        name = self._read_one("SELECT name FROM sources WHERE id = ?", (source,))[0]
        return name if line is None else f"{name}:{line}"

    def add_delivered(self, message_id, where):
        """Remember a delivered messageId and where (the first place given wins); written at commit()."""
        self._delivered.setdefault(message_id, where or "")

    # -- objects known to exist in PX -----------------------------------------------------------------
    def last_write(self, kind, object_id):
        """The digest of the last write to a user or account ("" when none is recorded); None when it is
        not known to exist."""
        digest = self._objects.get((kind, object_id))
        if digest is not None:
            return digest
        row = self._con.execute("SELECT last_write FROM objects WHERE kind = ? AND id = ?",
                                (kind, object_id)).fetchone()
        return None if row is None else row[0]

    def add_object(self, kind, object_id, digest):
        """Remember that an object exists, with the digest of its last write ("" or None: none)."""
        if kind not in _KINDS:
            raise ValueError(f"not an object kind: {kind!r}")
        self._objects[(kind, object_id)] = digest or ""

    # -- requests per UTC day -------------------------------------------------------------------------
    def requests_on(self, day):
        """Requests made on a UTC day ("YYYY-MM-DD"), by every run with this checkpoint."""
        row = self._con.execute("SELECT count FROM requests WHERE day = ?", (day,)).fetchone()
        return (row[0] if row else 0) + self._requests.get(day, 0)

    def add_requests(self, day, n):
        """Count n more requests on a UTC day; written at commit()."""
        if n:
            self._requests[day] = self._requests.get(day, 0) + n

    def set_requests(self, day, n):
        """Set a day's count at once, in its own transaction (tests: as if earlier runs made n)."""
        self._requests.pop(day, None)
        self._write(lambda con: con.execute("INSERT OR REPLACE INTO requests (day, count) VALUES (?, ?)", (day, n)))

    # -- writing --------------------------------------------------------------------------------------
    def commit(self, inputs):
        """One transaction: the given inputs' entries replace theirs, and every buffered row is written.
        Raises StoreError (an OSError) when it cannot be written; the buffers then stay for a later commit."""
        rows = [input_row(key, entry) for key, entry in inputs.items()]
        self._write(lambda con: self._flush(con, rows))
        self._delivered, self._objects, self._requests = {}, {}, {}
        self._sources, self._new_sources = {}, {}

    def _flush(self, con, input_rows):
        con.executemany(f"INSERT OR REPLACE INTO inputs ({INPUT_COLUMNS}) VALUES ({INPUT_VALUES})",
                        input_rows)
        delivered = [(message_id, *self._place(where)) for message_id, where in self._delivered.items()]
        con.executemany("INSERT INTO sources (id, name) VALUES (?, ?)",
                        [(i, name) for name, i in self._new_sources.items()])
        con.executemany("INSERT OR IGNORE INTO delivered (message_id, source, line) VALUES (?, ?, ?)", delivered)
        con.executemany("INSERT OR REPLACE INTO objects (kind, id, last_write) VALUES (?, ?, ?)",
                        [(kind, object_id, digest) for (kind, object_id), digest in self._objects.items()])
        con.executemany("INSERT INTO requests (day, count) VALUES (?, ?) "
                        "ON CONFLICT (day) DO UPDATE SET count = count + excluded.count", self._requests.items())
        fit_cache(con)  # the cache grows with what was just written (schema.CACHE_SHARE)

    def _place(self, where):
        """(source id, line) of a "FILE:LINE"; a new source name gets its id now, saved with the commit."""
        if not where:
            return None, None
        name, line = _split_where(where)
        name = text_of_name(name)  # SQLite text is UTF-8: a name that is not is kept escaped
        source = self._sources.get(name)
        if source is None:
            row = self._con.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
            if row is not None:
                source = self._sources[name] = row[0]
            else:
                source = self._sources[name] = self._new_sources[name] = self._next_source
                self._next_source += 1
        return source, line

    def _write(self, work):
        """Run work(connection) in one transaction; any failure is a StoreError naming the reason."""
        _check_same_file(self.path, self._identity)
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            work(con)
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            self._forget_new_sources()
            rollback(con)
            raise _write_error(exc) from None
        except BaseException:
            self._forget_new_sources()
            rollback(con)
            raise

    def _forget_new_sources(self):
        """A failed commit wrote no source: their ids are given again by the next one."""
        if self._new_sources:
            self._next_source = min(self._new_sources.values())
        self._sources, self._new_sources = {}, {}

    def close(self):
        """Close the database; rows not committed are dropped. Safe to call twice."""
        con, self._con = self._con, None
        if con is None:
            return
        try:
            con.close()  # the last connection folds the WAL into the file and removes it
        except sqlite3.Error:
            pass  # what was committed is in the WAL, which the next open reads

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InputReader:
    """A read-only connection to the checkpoint's inputs, for the reader thread (CheckpointStore.reader).

    The walk reaches a folder's files one after another, mostly in the order of their keys, so rows
    are read WINDOW at a time from the one asked for on (its folder's only): one query per WINDOW
    inputs, and never more than WINDOW rows held, however many the checkpoint has."""

    def __init__(self, path):
        self.path = path
        self._window = {}  # key -> row, of the keys in [_low, _high)
        self._low = self._high = ""
        try:
            self._con = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            self._con.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise read_error(path, exc) from None

    def input_entry(self, key):
        """The saved entry of one input as a recent commit left it, or None."""
        # the window lacks the hashes: the whole row is read for the few inputs that are opened again
        return None if self._row(key) is None else input_entry(self._con, self.path, key)

    def settled(self, key):
        """(settled_lines, read to its end with every line settled?, identity: (size, version, mtime_ns,
        inode)) of one input, or None: what the reader needs of an input that it may not have to open."""
        row = self.settled_row(key)
        return None if row is None else (row[1], row[2], row[3:])

    def settled_row(self, key):
        """settled(key) as the row it comes from: (key, settled_lines, whole?, size, version, mtime_ns,
        inode), or None (InputWatch asks this of every file of a resumed tree: no tuple is made)."""
        row = self._window.get(key)
        return row if row is not None else self._row(key)

    def _row(self, key):
        row = self._window.get(key)
        if row is not None or self._low <= key < self._high:
            return row
        folder = key[: key.rfind("/") + 1]
        end = folder[:-1] + chr(ord("/") + 1) if folder else "\uffff"  # past every key under folder/
        try:
            rows = self._con.execute(f"SELECT {_WINDOW_COLUMNS} FROM inputs WHERE key >= ? AND key < ? "
                                     "ORDER BY key LIMIT ?", (key, end, WINDOW)).fetchall()
        except sqlite3.Error as exc:
            raise read_error(self.path, exc) from None
        self._window = {row[0]: row for row in rows}
        self._low, self._high = key, (rows[-1][0] if len(rows) == WINDOW else end)
        return self._window.get(key)

    def whole_files(self, prefix, subfolders=()):
        """Lists of at most WHOLE_CHUNK (name, size, mtime_ns, inode): each input directly in the folder
        whose keys start with prefix (ending in a separator) that an earlier run read to its end, settled
        whole and kept the stat of. One query per run of keys between the subfolders' (one for a folder
        of files): the rows below a subfolder are never read."""
        sep = prefix[-1]
        after = chr(ord(sep) + 1)  # past every key that starts with "<name><sep>"
        start = prefix
        for low in sorted(prefix + name + sep for name in subfolders):
            if start < low:
                yield from self._whole_between(prefix, start, low)
            start = max(start, low[:-1] + after)
        yield from self._whole_between(prefix, start, prefix[:-1] + after)

    def _whole_between(self, prefix, low, high):
        try:
            cursor = self._con.execute(_WHOLE_FILES, (len(prefix) + 1, low, high))
            rows = cursor.fetchmany(WHOLE_CHUNK)
        except sqlite3.Error as exc:
            raise read_error(self.path, exc) from None
        while rows:
            yield rows
            try:
                rows = cursor.fetchmany(WHOLE_CHUNK)
            except sqlite3.Error as exc:
                raise read_error(self.path, exc) from None

    def close(self):
        con, self._con = self._con, None
        self._window = {}
        if con is not None:
            con.close()


def input_entry(con, path, key):
    """The saved entry of one input, or None (ConfigError when the database cannot be read)."""
    try:
        row = con.execute(f"SELECT {INPUT_COLUMNS} FROM inputs WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
    return None if row is None else entry_of(row)


# -- errors ---------------------------------------------------------------------------------------------

def _split_where(where):
    """("FILE", LINE) of "FILE:LINE"; (where, None) when it does not end in a line number."""
    name, sep, line = where.rpartition(":")
    try:
        if sep and str(int(line)) == line:
            return name, int(line)
    except ValueError:
        pass
    return where, None



# SQLite's primary result codes (sqlite.org/rescode.html) -> the errno that says the same
_ERRNO = {13: errno.ENOSPC, 8: errno.EROFS, 10: errno.EIO, 14: errno.ENOENT, 23: errno.EACCES}


def _write_error(exc):
    """A StoreError from a sqlite3 error, its reason in SQLite's words ("database or disk is full")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return StoreError(_ERRNO.get(code & 0xFF) if code is not None else None, str(exc))


def _file_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _check_same_file(path, identity):
    """An open database whose file was removed or replaced takes writes that nobody will read: refuse
    them, as OSError (the removed folder says "No such file or directory")."""
    if _file_id(path) != identity:
        raise StoreError(None, "it was removed or replaced during the run")
