"""The checkpoint's file (CLI.md "The checkpoint"): one SQLite database written in transactions.

It knows nothing of lines or records: it keeps rows (inputs, delivered messageIds, objects known to
exist in PX, requests per UTC day) and buffers the new ones in memory until commit(). checkpoint.py
imports it only when a run has a --checkpoint: sqlite3 costs about 3 ms of start-up, and a dry run
never opens the checkpoint.
"""

import errno
import os
import sqlite3

from gspx_cli import jsonio
from gspx_cli.errors import ConfigError

FORMAT_VERSION = 3  # 1 and 2 were JSON documents (checkpoint.py before SQLite); 3 is this database
JSON_VERSIONS = (1, 2)
READABLE_VERSIONS = (*JSON_VERSIONS, FORMAT_VERSION)
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database (sqlite.org/fileformat.html)
# A JSON checkpoint holds ~300 bytes per input (its identity and a short settled_after): 64 MiB is
# 200,000 inputs, far beyond any run's file list. A bigger file is something else (an events dump
# given as --checkpoint by mistake) and is refused without being read into memory.
MAX_JSON_BYTES = 64 * 1024 * 1024
# Page cache in KiB (negative: a size, not a page count). The interior pages of a 10-million-row
# `delivered` table are about 5 MB (4 KiB pages, ~100 keys each), so with 16 MiB every lookup costs
# at most one leaf page read, which the OS cache usually holds.
CACHE_KIB = 16 * 1024
# Seconds a statement waits for another connection's lock (a person reading the file with the
# sqlite3 shell) before failing; CheckpointLock keeps gspx runs apart, so this only covers readers.
BUSY_TIMEOUT = 5.0
# Input rows the reader's connection reads at once (InputReader): a walk over a million inputs makes a
# query per WINDOW of them, and holds no more than that.
WINDOW = 512
_KINDS = ("user", "account")  # MAPPING.md: the objects PX has, and gspx remembers

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # per input (source key): the settled prefix, the few lines settled beyond it (JSON lists: they only
    # cover what was in flight), and its identity when it was saved
    "CREATE TABLE inputs (key TEXT PRIMARY KEY, settled_lines INTEGER NOT NULL, settled_after TEXT, "
    "settled_parts TEXT, size INTEGER, block INTEGER, head_sha256 TEXT, tail_sha256 TEXT, version TEXT, "
    "lines INTEGER, mtime_ns INTEGER, inode INTEGER) "
    "WITHOUT ROWID",
    # input names of `delivered`, once each: tens of millions of rows must not repeat a path each
    "CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # line NULL: `source` is the whole place (not FILE:LINE); source NULL: delivered, place unknown
    "CREATE TABLE delivered (message_id TEXT PRIMARY KEY, source INTEGER, line INTEGER) WITHOUT ROWID",
    "CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, last_write TEXT NOT NULL, "
    "PRIMARY KEY (kind, id)) WITHOUT ROWID",
    "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
)
# version: an object's ETag or generation (remote.identity), and lines: how many it has once read to its
# end; block and the hashes are a file's on disk, and for a file found in a directory that was read to its
# end, mtime_ns and inode with lines: what it was when read whole (a rerun skips it on a stat alone)
_INPUT_COLUMNS = ("key, settled_lines, settled_after, settled_parts, size, block, head_sha256, tail_sha256, version, "
                  "lines, mtime_ns, inode")
_INPUT_VALUES = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
_IDENTITY = ("size", "block", "head_sha256", "tail_sha256", "version", "lines", "mtime_ns", "inode")
# added by later releases: the objects' identity (object stores), a file's stat when read whole (issue 22)
_ADDED_COLUMNS = (("version", "TEXT"), ("lines", "INTEGER"), ("mtime_ns", "INTEGER"), ("inode", "INTEGER"))


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
        self._con = _open(path)
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
            rows = self._con.execute(f"SELECT {_INPUT_COLUMNS} FROM inputs ORDER BY key").fetchall()
        except sqlite3.Error as exc:
            raise _read_error(self.path, exc) from None
        return {row[0]: _entry(row) for row in rows}

    def input_entry(self, key):
        """The saved entry of one input (settled_lines, and settled_after, settled_parts, identity when
        there are any), or None."""
        return input_entry(self._con, self.path, key)

    def settled_beyond_any_prefix(self):
        """True when some input has lines settled beyond its prefix (a scan, once per run)."""
        return self._read_one("SELECT EXISTS (SELECT 1 FROM inputs WHERE settled_after IS NOT NULL "
                              "OR settled_parts IS NOT NULL)")[0] == 1

    def reader(self):
        """A second, read-only connection to look inputs up from another thread (the reader's): WAL
        lets it read the last commit while this one writes. Has input_entry(key) and close()."""
        return InputReader(self.path)

    def _read_one(self, sql, args=()):
        try:
            return self._con.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise _read_error(self.path, exc) from None

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
        rows = [_input_row(key, entry) for key, entry in inputs.items()]
        self._write(lambda con: self._flush(con, rows))
        self._delivered, self._objects, self._requests = {}, {}, {}
        self._sources, self._new_sources = {}, {}

    def _flush(self, con, input_rows):
        con.executemany(f"INSERT OR REPLACE INTO inputs ({_INPUT_COLUMNS}) VALUES ({_INPUT_VALUES})",
                        input_rows)
        delivered = [(message_id, *self._place(where)) for message_id, where in self._delivered.items()]
        con.executemany("INSERT INTO sources (id, name) VALUES (?, ?)",
                        [(i, name) for name, i in self._new_sources.items()])
        con.executemany("INSERT OR IGNORE INTO delivered (message_id, source, line) VALUES (?, ?, ?)", delivered)
        con.executemany("INSERT OR REPLACE INTO objects (kind, id, last_write) VALUES (?, ?, ?)",
                        [(kind, object_id, digest) for (kind, object_id), digest in self._objects.items()])
        con.executemany("INSERT INTO requests (day, count) VALUES (?, ?) "
                        "ON CONFLICT (day) DO UPDATE SET count = count + excluded.count", self._requests.items())

    def _place(self, where):
        """(source id, line) of a "FILE:LINE"; a new source name gets its id now, saved with the commit."""
        if not where:
            return None, None
        name, line = _split_where(where)
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
            _rollback(con)
            raise _write_error(exc) from None
        except BaseException:
            self._forget_new_sources()
            _rollback(con)
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
            raise _read_error(path, exc) from None

    def input_entry(self, key):
        """The saved entry of one input as a recent commit left it, or None."""
        row = self._row(key)
        return None if row is None else _entry(row)

    def settled(self, key):
        """(settled_lines, lines settled beyond them?, identity: (size, version, lines, mtime_ns, inode)) of
        one input, or None: what the reader needs of an input that it may not have to open."""
        row = self._row(key)
        if row is None:
            return None
        return row[1], row[2] is not None or row[3] is not None, (row[4], row[8], row[9], row[10], row[11])

    def _row(self, key):
        row = self._window.get(key)
        if row is not None or self._low <= key < self._high:
            return row
        folder = key[: key.rfind("/") + 1]
        end = folder[:-1] + chr(ord("/") + 1) if folder else "\uffff"  # past every key under folder/
        try:
            rows = self._con.execute(f"SELECT {_INPUT_COLUMNS} FROM inputs WHERE key >= ? AND key < ? "
                                     "ORDER BY key LIMIT ?", (key, end, WINDOW)).fetchall()
        except sqlite3.Error as exc:
            raise _read_error(self.path, exc) from None
        self._window = {row[0]: row for row in rows}
        self._low, self._high = key, (rows[-1][0] if len(rows) == WINDOW else end)
        return self._window.get(key)

    def close(self):
        con, self._con = self._con, None
        self._window = {}
        if con is not None:
            con.close()


def input_entry(con, path, key):
    """The saved entry of one input, or None (ConfigError when the database cannot be read)."""
    try:
        row = con.execute(f"SELECT {_INPUT_COLUMNS} FROM inputs WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:
        raise _read_error(path, exc) from None
    return None if row is None else _entry(row)


# -- opening --------------------------------------------------------------------------------------------

def _open(path):
    """A connection to a gspx database at path, created when the file is new or empty; ConfigError
    when it is another SQLite database or a newer format."""
    try:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _read_error(path, exc) from None
    try:
        _check_schema(path, con)  # first: a database that is not ours is left exactly as it was
        _configure(path, con)
    except BaseException:
        con.close()
        raise
    return con


def _configure(path, con):
    """WAL: a commit appends to one file and is atomic, so a crash or kill -9 leaves the last commit
    whole. synchronous=FULL syncs the WAL at each commit, so a commit that returned also survives a
    power cut, as the JSON checkpoint's fsync did; it costs one fsync per save (about one a second,
    coordinator.CHECKPOINT_EVERY), where NORMAL could lose the commits since the last WAL checkpoint
    and make a rerun resend them."""
    try:
        # where WAL cannot work (no shared memory: some network file systems), SQLite keeps its
        # rollback journal, which is atomic too
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except sqlite3.Error as exc:
        raise _read_error(path, exc) from None


def _check_schema(path, con):
    """Create the tables in a new database; refuse one that gspx did not write, or a newer format."""
    try:
        if not _tables(con):
            con.execute("BEGIN IMMEDIATE")
            try:
                if not _tables(con):  # another connection may have created them while we waited
                    for statement in _SCHEMA:
                        con.execute(statement)
                    con.execute("INSERT INTO meta (key, value) VALUES ('version', ?)", (str(FORMAT_VERSION),))
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise
        if "meta" not in _tables(con):
            raise ConfigError("not a gspx checkpoint file (a SQLite database of something else)",
                              file=path, key="--checkpoint")
        row = con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.Error as exc:
        raise _read_error(path, exc) from None
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise _not_ours(path) from None
    if version != FORMAT_VERSION:
        _check_version(path, version)
        raise _not_ours(path)  # 1 and 2 were only ever JSON
    _add_columns(path, con)


def _add_columns(path, con):
    """The identity columns added since, added to a database written before them."""
    try:
        columns = {row[1] for row in con.execute("PRAGMA table_info(inputs)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in columns:
                con.execute(f"ALTER TABLE inputs ADD COLUMN {name} {kind}")
    except sqlite3.Error as exc:
        raise _read_error(path, exc) from None


def _tables(con):
    return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _check_version(path, version):
    if version not in READABLE_VERSIONS:
        raise ConfigError(f"checkpoint version {version!r} is not one this gspx reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}): written by a newer gspx?",
                          file=path, key="--checkpoint")


# -- rows -----------------------------------------------------------------------------------------------

def _input_row(key, entry):
    """The inputs row of one entry (raises KeyError, TypeError or ValueError when it is not one)."""
    if not isinstance(key, str):
        raise TypeError("input key")
    after = sorted({int(line) for line in entry.get("settled_after", ())})
    parts = {str(int(line)): sorted({int(i) for i in indices})
             for line, indices in entry.get("settled_parts", {}).items()}
    identity = entry.get("identity")
    if identity is None:
        ids = (None,) * 8
    elif identity.get("version") is not None:
        ids = (int(identity["size"]), None, None, None, str(identity["version"]), _int(identity.get("lines")),
               None, None)
    else:
        ids = (int(identity["size"]), int(identity["block"]), str(identity["head_sha256"]),
               str(identity["tail_sha256"]), None, _int(identity.get("lines")), _int(identity.get("mtime_ns")),
               _int(identity.get("inode")))
    return (key, int(entry["settled_lines"]), jsonio.dumps(after) if after else None,
            jsonio.dumps(dict(sorted(parts.items(), key=lambda kv: int(kv[0])))) if parts else None, *ids)


def _int(value):
    return None if value is None else int(value)


def _entry(row):
    """An inputs row as the entry Checkpoint reads (the JSON format 2 entry)."""
    _, settled_lines, after, parts, *identity = row
    entry = {"settled_lines": settled_lines}
    if after:
        entry["settled_after"] = jsonio.loads(after)
    if parts:
        entry["settled_parts"] = jsonio.loads(parts)
    if identity[0] is not None:
        entry["identity"] = {name: value for name, value in zip(_IDENTITY, identity) if value is not None}
    return entry


def _split_where(where):
    """("FILE", LINE) of "FILE:LINE"; (where, None) when it does not end in a line number."""
    name, sep, line = where.rpartition(":")
    try:
        if sep and str(int(line)) == line:
            return name, int(line)
    except ValueError:
        pass
    return where, None


# -- errors ---------------------------------------------------------------------------------------------

# SQLite's primary result codes (sqlite.org/rescode.html) -> the errno that says the same
_ERRNO = {13: errno.ENOSPC, 8: errno.EROFS, 10: errno.EIO, 14: errno.ENOENT, 23: errno.EACCES}


def _write_error(exc):
    """A StoreError from a sqlite3 error, its reason in SQLite's words ("database or disk is full")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return StoreError(_ERRNO.get(code & 0xFF) if code is not None else None, str(exc))


def _read_error(path, exc):
    if "not a database" in str(exc):
        return _not_ours(path)
    return ConfigError(f"cannot read checkpoint: {exc}", file=path, key="--checkpoint")


def _not_ours(path):
    return ConfigError("not a gspx checkpoint file", file=path, key="--checkpoint")


def _rollback(con):
    if con.in_transaction:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already (SQLITE_FULL does): nothing was written


def _file_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _check_same_file(path, identity):
    """An open database whose file was removed or replaced takes writes that nobody will read: refuse
    them, as OSError (the removed folder says "No such file or directory")."""
    if _file_id(path) != identity:
        raise StoreError(None, "it was removed or replaced during the run")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
