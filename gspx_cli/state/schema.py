"""The checkpoint database's tables, its rows as entries, and how a file is opened as one: created when new,
refused when it is not gspx's or is of a newer format, its columns added when an older gspx wrote it."""

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
# Page cache in KiB (negative: a size, not a page count), grown with the database: 1/CACHE_SHARE of
# its file, between SQLite's default and CACHE_MAX_KIB. A lookup by messageId wants the B-trees'
# interior pages cached (about 1% of a table: 4 KiB pages of ~100 keys each), its leaf page being one
# read that the OS cache usually holds; 1/32 of the file holds them with room to spare up to the
# 10-million-row `delivered` table (~5 MB of interior pages). A fixed 16 MiB filled with the leaves a
# run's inserts touch, and made a first run over 100,000 files 25 MB bigger than one over 10,000
# (issue 22, figure 2); benchmarks/checkpoint_store.py measures lookups with both.
CACHE_MIN_KIB = 2 * 1024
CACHE_MAX_KIB = 16 * 1024
CACHE_SHARE = 32
# Seconds a statement waits for another connection's lock (a person reading the file with the
# sqlite3 shell) before failing; CheckpointLock keeps gspx runs apart, so this only covers readers.
BUSY_TIMEOUT = 5.0

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
INPUT_COLUMNS = ("key, settled_lines, settled_after, settled_parts, size, block, head_sha256, tail_sha256, version, "
                 "lines, mtime_ns, inode")
INPUT_VALUES = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
_IDENTITY = ("size", "block", "head_sha256", "tail_sha256", "version", "lines", "mtime_ns", "inode")
# The few inputs with lines settled beyond their prefix (what was in flight when a run stopped): a
# resume asks whether there are any without reading the whole table (issue 22: a million inputs).
BEYOND = "settled_after IS NOT NULL OR settled_parts IS NOT NULL"
BEYOND_INDEX = f"CREATE INDEX IF NOT EXISTS inputs_beyond ON inputs (key) WHERE {BEYOND}"
# added by later releases: the objects' identity (object stores), a file's stat when read whole (issue 22)
_ADDED_COLUMNS = (("version", "TEXT"), ("lines", "INTEGER"), ("mtime_ns", "INTEGER"), ("inode", "INTEGER"))


# -- opening --------------------------------------------------------------------------------------------

def open_database(path):
    """A connection to a gspx database at path, created when the file is new or empty; ConfigError
    when it is another SQLite database or a newer format."""
    try:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
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
        fit_cache(con)
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None


def cache_kib(file_bytes):
    """The page cache, in KiB, for a database of file_bytes (CACHE_SHARE of it, within the bounds)."""
    return min(CACHE_MAX_KIB, max(CACHE_MIN_KIB, file_bytes // 1024 // CACHE_SHARE))


def fit_cache(con):
    """Size the connection's page cache to its database now (at open, and after each commit as it grows)."""
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.execute(f"PRAGMA cache_size = -{cache_kib(pages * page_size)}")


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
                rollback(con)
                raise
        if "meta" not in _tables(con):
            raise ConfigError("not a gspx checkpoint file (a SQLite database of something else)",
                              file=path, key="--checkpoint")
        row = con.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise not_ours(path) from None
    if version != FORMAT_VERSION:
        check_version(path, version)
        raise not_ours(path)  # 1 and 2 were only ever JSON
    _add_columns(path, con)


def _add_columns(path, con):
    """The identity columns and the index added since, added to a database written before them."""
    try:
        columns = {row[1] for row in con.execute("PRAGMA table_info(inputs)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in columns:
                con.execute(f"ALTER TABLE inputs ADD COLUMN {name} {kind}")
        con.execute(BEYOND_INDEX)
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None


def _tables(con):
    return {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def check_version(path, version):
    if version not in READABLE_VERSIONS:
        raise ConfigError(f"checkpoint version {version!r} is not one this gspx reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}): written by a newer gspx?",
                          file=path, key="--checkpoint")


# -- rows -----------------------------------------------------------------------------------------------

def input_row(key, entry):
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


def entry_of(row):
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


def read_error(path, exc):
    if "not a database" in str(exc):
        return not_ours(path)
    return ConfigError(f"cannot read checkpoint: {exc}", file=path, key="--checkpoint")


def not_ours(path):
    return ConfigError("not a gspx checkpoint file", file=path, key="--checkpoint")


def rollback(con):
    if con.in_transaction:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back already (SQLITE_FULL does): nothing was written
