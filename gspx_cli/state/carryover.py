"""JSON checkpoints (formats 1 and 2, before SQLite) carried over to the database: converted once, at open,
the JSON file left whole until the database that replaces it is complete."""

import os
import sqlite3

from gspx_cli import jsonio
from gspx_cli.errors import ConfigError
from gspx_cli.state.schema import (INPUT_COLUMNS, INPUT_VALUES, MAX_JSON_BYTES, SQLITE_MAGIC, check_version,
                                   input_row, not_ours, open_database)


def carry_over(path):
    """Convert a JSON checkpoint (formats 1 and 2) at path to SQLite and return its format; None when
    path is missing, empty or already SQLite. Raises ConfigError for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
            if not head or head == SQLITE_MAGIC:
                return None
            if os.fstat(fh.fileno()).st_size > MAX_JSON_BYTES or head.lstrip()[:1] not in (b"{", b""):
                raise not_ours(path)
            fh.seek(0)
            text = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint: {exc.strerror}", file=path, key="--checkpoint") from None
    version, input_rows = _parse_json(path, text)
    _convert(path, input_rows)
    return version


def _parse_json(path, text):
    """(version, input rows) of a JSON checkpoint (formats 1 and 2), checked before anything is written."""
    try:
        data = jsonio.loads(text.decode("utf-8"))
        version = data.get("version", 1)
    except (ValueError, AttributeError):
        raise not_ours(path) from None
    check_version(path, version)
    try:
        return version, [input_row(key, entry) for key, entry in data["inputs"].items()]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise not_ours(path) from None


def _convert(path, input_rows):
    """Build the database in a temp file beside path, then rename it over path: the JSON file stays
    whole until the database is complete, whatever happens meanwhile."""
    try:
        _build_and_rename(path, input_rows)
    except (sqlite3.Error, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot convert the JSON checkpoint: {reason}", file=path, key="--checkpoint") from None


def _build_and_rename(path, input_rows):
    import tempfile  # ~3 ms of start-up (random, hashlib): only when a JSON file is converted

    fd, tmp = tempfile.mkstemp(prefix=".gspx-", suffix=".db-tmp", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        con = open_database(tmp)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(f"INSERT INTO inputs ({INPUT_COLUMNS}) VALUES ({INPUT_VALUES})", input_rows)
            con.execute("COMMIT")
        finally:
            con.close()  # WAL folded into the file: it is one file again, ready to rename
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            try:
                os.unlink(leftover)
            except OSError:
                pass


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
