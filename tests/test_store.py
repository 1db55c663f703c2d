"""The checkpoint's database (store.py): rows kept across commits and reopens, JSON checkpoints carried
over, files that are not ours refused, write failures as OSErrors, and kill -9 in the middle of commits."""

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from e2e import DEADLINE
from gspx_cli.state.checkpoint import Checkpoint, check_writable
from gspx_cli.errors import ConfigError, ExitCode, OutputError
from gspx_cli.state.ledger import DELIVERED, Ledger
from gspx_cli.read.reader import Record
from gspx_cli.state import schema
from gspx_cli.state.store import FORMAT_VERSION, CheckpointStore, StoreError

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = {"size": 2048, "block": 65536, "head_sha256": "a" * 64, "tail_sha256": "b" * 64}
ENTRIES = {
    "/data/a.ndjson": {"settled_lines": 10, "settled_after": [12, 14], "settled_parts": {"11": [0, 2], "13": [1]},
                       "identity": IDENTITY},
    "/data/b.ndjson.gz": {"settled_lines": 0, "settled_after": [3]},
    "-": {"settled_lines": 7},
}


def is_sqlite(path):
    with open(path, "rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def count(path, table):
    with closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "run.ckpt")


# -- rows across commits and reopens ----------------------------------------------------------------

def test_inputs_round_trip_through_a_commit_and_a_reopen(path):
    with CheckpointStore(path) as store:
        assert store.load_inputs() == {}
        store.commit(ENTRIES)
        assert store.load_inputs() == ENTRIES
    with CheckpointStore(path) as store:
        assert store.load_inputs() == ENTRIES
        store.commit({"-": {"settled_lines": 9}})  # replaces that input's row, leaves the others
        assert store.load_inputs() == {**ENTRIES, "-": {"settled_lines": 9}}


def test_new_rows_are_seen_before_the_commit_after_it_and_after_a_reopen(path):
    with CheckpointStore(path) as store:
        store.add_delivered("m1", "events.ndjson:12")
        store.add_object("user", "u1", "d1")
        store.add_object("account", "g1", "")
        store.add_requests("2030-01-02", 3)
        for _ in ("before", "after"):
            assert store.delivered_at("m1") == "events.ndjson:12" and store.delivered_at("m2") is None
            assert (store.last_write("user", "u1"), store.last_write("account", "g1")) == ("d1", "")
            assert store.last_write("account", "u1") is None  # a user is not an account
            assert store.requests_on("2030-01-02") == 3 and store.requests_on("2030-01-03") == 0
            store.commit({})
    with CheckpointStore(path) as store:
        assert store.delivered_at("m1") == "events.ndjson:12"
        assert (store.last_write("user", "u1"), store.last_write("account", "g1")) == ("d1", "")
        assert store.requests_on("2030-01-02") == 3


def test_rows_not_committed_are_gone_after_a_reopen(path):
    with CheckpointStore(path) as store:
        store.add_delivered("m1", "a:1")
        store.add_object("user", "u1", "d1")
        store.add_requests("2030-01-02", 3)
    with CheckpointStore(path) as store:
        assert store.delivered_at("m1") is None and store.last_write("user", "u1") is None
        assert store.requests_on("2030-01-02") == 0


@pytest.mark.parametrize("where", [
    "events.ndjson:12",
    "",  # delivered, place unknown
    "-:3",  # standard input
    "/dumps/2024:01:02.ndjson:40",  # colons in the path: the line is after the last one
    "notes",  # no line number at all
    "a:007",  # not how gspx writes a line number: kept as it was, not turned into a:7
    "a:",
])
def test_where_a_message_id_was_delivered_comes_back_as_it_was_given(path, where):
    with CheckpointStore(path) as store:
        store.add_delivered("m1", where)
        store.commit({})
    with CheckpointStore(path) as store:
        assert store.delivered_at("m1") == where


def test_the_first_place_a_message_id_was_delivered_is_kept(path):
    with CheckpointStore(path) as store:
        store.add_delivered("m1", "first.ndjson:1")
        store.add_delivered("m1", "second.ndjson:5")
        store.commit({})
        store.add_delivered("m1", "third.ndjson:9")
        store.commit({})
        assert store.delivered_at("m1") == "first.ndjson:1"


def test_an_objects_last_write_is_replaced_and_day_counts_add_up(path):
    with CheckpointStore(path) as store:
        store.add_object("user", "u1", "d1")
        store.add_requests("2030-01-02", 3)
        store.commit({})
        store.add_object("user", "u1", "d2")
        store.add_requests("2030-01-02", 4)
        store.commit({})
        assert store.last_write("user", "u1") == "d2" and store.requests_on("2030-01-02") == 7
        store.add_requests("2030-01-02", 1)
        store.set_requests("2030-01-02", 95)  # as if earlier runs made 95: what was buffered goes too
        assert store.requests_on("2030-01-02") == 95
    with CheckpointStore(path) as store:
        assert store.requests_on("2030-01-02") == 95


def test_100000_message_ids_commit_in_one_transaction_and_are_all_found(path):
    ids = [f"0b1f6a2e-4c3d-4e5f-9a8b-{i:012d}" for i in range(100_000)]
    with CheckpointStore(path) as store:
        for i, message_id in enumerate(ids):
            store.add_delivered(message_id, f"dump.ndjson:{i + 1}")
        store.commit({})
        assert all(store.delivered_at(ids[i]) == f"dump.ndjson:{i + 1}" for i in range(0, 100_000, 997))
    assert count(path, "delivered") == 100_000 and count(path, "sources") == 1  # the path is stored once
    with closing(sqlite3.connect(path)) as db:  # lookups by primary key, not a scan
        plan = db.execute("EXPLAIN QUERY PLAN SELECT source, line FROM delivered WHERE message_id = ?",
                          (ids[0],)).fetchall()
    assert "USING PRIMARY KEY" in plan[0][-1]


def test_a_second_connection_reads_the_last_commit_while_the_first_stays_open(path):
    with CheckpointStore(path) as writer:
        writer.commit({"-": {"settled_lines": 1}})
        writer.add_delivered("m1", "-:1")
        writer.commit({"-": {"settled_lines": 2}})
        with CheckpointStore(path) as reader:  # what tests and people do while a run is going
            assert reader.load_inputs() == {"-": {"settled_lines": 2}} and reader.delivered_at("m1") == "-:1"


def test_the_database_is_in_wal_mode_and_says_its_format(path):
    CheckpointStore(path).close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (str(FORMAT_VERSION),)
    assert sorted(os.listdir(os.path.dirname(path))) == ["run.ckpt"]  # closing removed the -wal and -shm


# -- JSON checkpoints carried over ----------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_a_json_checkpoint_is_carried_over_with_everything_it_held(tmp_path, path, version):
    entries = ENTRIES if version == 2 else {k: {"settled_lines": v["settled_lines"]} for k, v in ENTRIES.items()}
    data = {"version": 2, "inputs": entries} if version == 2 else {"inputs": entries}  # 1 had no version key
    Path(path).write_text(json.dumps(data) + "\n")
    with CheckpointStore(path) as store:
        assert store.converted_from == version
        assert store.conversion_note == f"note: converted checkpoint {path} from the JSON format {version} to SQLite"
        assert store.load_inputs() == entries
    assert is_sqlite(path) and sorted(os.listdir(tmp_path)) == ["run.ckpt"]  # no temp file left
    with CheckpointStore(path) as store:
        assert store.converted_from is None and store.conversion_note is None  # once
        assert store.load_inputs() == entries


def test_a_carried_over_checkpoint_resumes_as_the_json_one_did(path):
    Path(path).write_text(json.dumps({"version": 2, "inputs": ENTRIES}))
    ck = Checkpoint(path)
    assert [ck.settled_prefix(key) for key in ("/data/a.ndjson", "/data/b.ndjson.gz", "-")] == [10, 0, 7]
    assert ck.resumes_beyond_prefix
    batch = [Record("/data/a.ndjson", 11, b"{}", {}, unwrapped=True, index=i, count=3) for i in range(3)]
    assert [ck.already_settled(r) for r in batch] == [True, False, True]
    assert ck.already_settled(Record("/data/a.ndjson", 12, b"{}", {}))
    assert ck.check_inputs(["-"])[0] == f"note: converted checkpoint {path} from the JSON format 2 to SQLite"
    ck.close()


def test_a_conversion_that_fails_leaves_the_json_checkpoint_as_it_was(tmp_path, path, monkeypatch):
    text = json.dumps({"version": 2, "inputs": ENTRIES})
    Path(path).write_text(text)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gspx_cli.state.store.os.replace", full_disk)
    with pytest.raises(ConfigError, match="cannot convert the JSON checkpoint: No space left on device") as info:
        CheckpointStore(path)
    assert info.value.exit_code == ExitCode.CONFIG
    assert Path(path).read_text() == text and sorted(os.listdir(tmp_path)) == ["run.ckpt"]


@pytest.mark.parametrize("make", [lambda p: None, lambda p: Path(p).write_bytes(b"")], ids=["missing", "empty"])
def test_a_missing_or_empty_file_is_a_new_checkpoint(path, make):
    make(path)
    with CheckpointStore(path) as store:
        assert store.converted_from is None and store.load_inputs() == {}
    assert is_sqlite(path)


# -- files that are not ours -------------------------------------------------------------------------

def _other_sqlite(path):
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
        db.commit()


@pytest.mark.parametrize("make", [
    lambda p: Path(p).write_text("hello\n"),
    lambda p: Path(p).write_text("[1, 2]"),
    lambda p: Path(p).write_text('{"inputs": {"a": {"settled_after": [1]}}}'),  # no settled_lines
    lambda p: Path(p).write_text('{"type": "track"}\n{"type": "track"}\n'),  # an events file by mistake
    lambda p: Path(p).write_bytes(os.urandom(4096)),
    _other_sqlite,
], ids=["text", "json-list", "json-other", "ndjson", "binary", "other-sqlite"])
def test_a_file_that_is_not_a_gspx_checkpoint_is_refused_with_exit_2_and_left_alone(path, make):
    make(path)
    before = Path(path).read_bytes()
    with pytest.raises(ConfigError, match="not a gspx checkpoint file") as info:
        CheckpointStore(path)
    assert info.value.exit_code == ExitCode.CONFIG
    assert str(info.value).startswith(f"{path}: --checkpoint: ")
    assert Path(path).read_bytes() == before


def _future_sqlite(path):
    CheckpointStore(path).close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE meta SET value = '4' WHERE key = 'version'")
        db.commit()


@pytest.mark.parametrize("make, version", [
    (lambda p: Path(p).write_text(json.dumps({"version": 99, "inputs": {}})), 99),
    (_future_sqlite, 4),
], ids=["json", "sqlite"])
def test_a_checkpoint_from_a_newer_gspx_is_refused_with_exit_2(path, make, version):
    make(path)
    with pytest.raises(ConfigError, match=rf"checkpoint version {version} is not one this gspx reads "
                                          r"\(1, 2, 3\): written by a newer gspx\?") as info:
        CheckpointStore(path)
    assert info.value.exit_code == ExitCode.CONFIG


def test_check_writable_takes_an_existing_json_or_sqlite_checkpoint(tmp_path):
    json_file, db_file = tmp_path / "old.ckpt", tmp_path / "new.ckpt"
    json_file.write_text(json.dumps({"version": 2, "inputs": {}}))
    CheckpointStore(str(db_file)).close()
    for target in (json_file, db_file, tmp_path / "none-yet.ckpt"):
        check_writable(str(target), "--checkpoint", replaced=True)
    assert sorted(os.listdir(tmp_path)) == ["new.ckpt", "old.ckpt"]  # the check leaves nothing behind


# -- write failures -----------------------------------------------------------------------------------------

def _fill_disk(store):
    """From now on the database cannot grow: SQLite answers as on a full disk."""
    pages = store._con.execute("PRAGMA page_count").fetchone()[0]
    store._con.execute(f"PRAGMA max_page_count = {pages}")


def test_a_commit_on_a_full_disk_raises_an_oserror_and_keeps_its_rows_for_the_next(path):
    with CheckpointStore(path) as store:
        _fill_disk(store)
        for i in range(20_000):
            store.add_delivered(f"id-{i}", f"dump.ndjson:{i}")
        with pytest.raises(OSError) as info:
            store.commit({"-": {"settled_lines": 5}})
        assert isinstance(info.value, StoreError)
        assert (info.value.errno, info.value.strerror) == (errno.ENOSPC, "database or disk is full")
        assert store.delivered_at("id-7") == "dump.ndjson:7" and store.load_inputs() == {}  # nothing half-written
        store._con.execute("PRAGMA max_page_count = 1073741823")  # room again
        store.commit({"-": {"settled_lines": 5}})
    assert count(path, "delivered") == 20_000 and count(path, "sources") == 1


def test_a_commit_to_a_read_only_database_raises_an_oserror(path):
    with CheckpointStore(path) as store:
        store._con.execute("PRAGMA query_only = ON")  # what SQLite says of a file it may not write
        store.add_delivered("m1", "a:1")
        with pytest.raises(StoreError, match="attempt to write a readonly database") as info:
            store.commit({})
        assert info.value.errno == errno.EROFS


def test_a_commit_after_the_folder_is_removed_raises_no_such_file(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    with CheckpointStore(str(folder / "run.ckpt")) as store:
        store.commit({"-": {"settled_lines": 1}})
        shutil.rmtree(folder)  # the open database still takes writes, that nobody would ever read
        store.add_delivered("m1", "a:1")
        with pytest.raises(OSError) as info:
            store.commit({"-": {"settled_lines": 2}})
        assert info.value.strerror == "No such file or directory"


def test_a_commit_after_the_file_is_replaced_raises_an_oserror(path):
    with CheckpointStore(path) as store:
        store.commit({})
        Path(path + ".new").write_text("")
        os.replace(path + ".new", path)
        with pytest.raises(StoreError, match="removed or replaced during the run"):
            store.commit({})


def test_the_ledger_turns_a_failed_save_into_an_output_error_naming_the_path(path):
    ledger = Ledger(checkpoint=path)
    _fill_disk(ledger.checkpoint.store)
    for i in range(20_000):
        ledger.checkpoint.store.add_delivered(f"id-{i}", f"dump.ndjson:{i}")
    ledger.save_checkpoint()  # never raises: the run stops on output_error
    assert isinstance(ledger.output_error, OutputError)
    assert str(ledger.output_error) == f"cannot write --checkpoint {path}: database or disk is full"
    ledger.close()
    ledger.close()  # closing twice is harmless


def test_checkpoint_save_writes_the_settled_lines_and_the_stores_rows_together(tmp_path, path):
    src = str(tmp_path / "in.ndjson")
    ledger = Ledger(checkpoint=path)
    record = Record(src, 1, b"{}", {"type": "track"})
    ledger.read(record)
    ledger.settle(record, DELIVERED)
    ledger.checkpoint.store.add_delivered("m1", f"{src}:1")
    ledger.close()
    with CheckpointStore(path) as store:
        assert store.load_inputs()[src]["settled_lines"] == 1 and store.delivered_at("m1") == f"{src}:1"


# -- kill -9 -------------------------------------------------------------------------------------------------

# A writer that commits forever: in commit i, input "in" says i lines and 50 messageIds and 50
# requests join. Every commit that returned is printed.
WRITER = """
import sys
from gspx_cli.state.store import CheckpointStore
store = CheckpointStore(sys.argv[1])
i = 0
while True:
    i += 1
    for j in range(50):
        store.add_delivered(f"m{i}-{j}", f"in:{i}")
    store.add_requests("2030-01-02", 50)
    store.add_object("user", f"u{i % 10}", f"d{i}")
    store.commit({"in": {"settled_lines": i}})
    print(i, flush=True)
"""


def test_kill_9_in_the_middle_of_commits_leaves_an_earlier_whole_state(path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        last = 0
        while last < 200:  # enough commits that the kill lands in the middle of one, most likely
            line = proc.stdout.readline()
            assert line, "the writer stopped on its own"
            last = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with CheckpointStore(path) as store:
        n = store.load_inputs()["in"]["settled_lines"]
        assert n >= last  # every commit that returned is there
        assert store.requests_on("2030-01-02") == 50 * n  # and nothing of the one the kill cut
        assert store.delivered_at(f"m{n}-49") == f"in:{n}" and store.delivered_at(f"m{n + 1}-0") is None
        assert store.last_write("user", f"u{n % 10}") == f"d{n}"
    assert count(path, "delivered") == 50 * n


# ---- objects in a store (issue 18): their identity is an ETag or generation and a size -------------

def test_an_objects_identity_round_trips_beside_a_files(path):
    file_entry = {"settled_lines": 3, "identity": {"size": 10, "block": 65536, "head_sha256": "a" * 64,
                                                   "tail_sha256": "b" * 64}}
    object_entry = {"settled_lines": 7, "identity": {"size": 120, "version": 'etag:"0f0e"', "lines": 7}}
    with CheckpointStore(path) as store:
        store.commit({"/data/a.ndjson": file_entry, "s3://bkt/a.json.gz": object_entry})
    with CheckpointStore(path) as store:
        assert store.load_inputs() == {"/data/a.ndjson": file_entry, "s3://bkt/a.json.gz": object_entry}


def test_a_database_written_before_objects_were_read_gains_their_column_and_keeps_its_rows(path):
    with closing(sqlite3.connect(path)) as con:  # the schema as the first SQLite gspx wrote it
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        con.execute("CREATE TABLE inputs (key TEXT PRIMARY KEY, settled_lines INTEGER NOT NULL, settled_after TEXT, "
                    "settled_parts TEXT, size INTEGER, block INTEGER, head_sha256 TEXT, tail_sha256 TEXT) "
                    "WITHOUT ROWID")
        for statement in ("CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
                          "CREATE TABLE delivered (message_id TEXT PRIMARY KEY, source INTEGER, line INTEGER) "
                          "WITHOUT ROWID",
                          "CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, last_write TEXT NOT NULL, "
                          "PRIMARY KEY (kind, id)) WITHOUT ROWID",
                          "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID"):
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('version', '3')")
        con.execute("INSERT INTO inputs VALUES ('/data/old.ndjson', 5, NULL, NULL, 9, 65536, 'h', 't')")
        con.commit()
    with CheckpointStore(path) as store:
        assert store.load_inputs() == {"/data/old.ndjson": {"settled_lines": 5, "identity": {
            "size": 9, "block": 65536, "head_sha256": "h", "tail_sha256": "t"}}}
        store.commit({"s3://bkt/new.json.gz": {"settled_lines": 1, "identity": {"size": 4, "version": "etag:x"}}})
    with CheckpointStore(path) as store:
        assert store.load_inputs()["s3://bkt/new.json.gz"]["identity"] == {"size": 4, "version": "etag:x"}


# -- the page cache (issue 22, figure 2) -------------------------------------------------------------

def test_the_page_cache_is_a_share_of_the_file_within_its_bounds():
    assert schema.cache_kib(0) == schema.CACHE_MIN_KIB
    assert schema.cache_kib(64 << 20) == schema.CACHE_MIN_KIB  # a 100,000-file run's database: the floor
    assert schema.cache_kib(320 << 20) == 10 * 1024  # 1/32 of the file
    assert schema.cache_kib(10 << 30) == schema.CACHE_MAX_KIB


def test_the_page_cache_grows_with_what_commits_write(path, monkeypatch):
    monkeypatch.setattr(schema, "CACHE_SHARE", 1)  # a share that a few thousand rows get past the floor
    monkeypatch.setattr(schema, "CACHE_MIN_KIB", 64)
    with CheckpointStore(path) as store:
        before = -store._con.execute("PRAGMA cache_size").fetchone()[0]
        for i in range(20_000):
            store.add_delivered(f"message-{i:08d}", f"dump.ndjson:{i + 1}")
        store.commit({})
        after = -store._con.execute("PRAGMA cache_size").fetchone()[0]
    assert before == 64
    assert after > 256  # ~1 MB of rows: the cache is the file's size in KiB
