"""Where the reader reads: files on disk on the coordinator's thread, one batch each time it asks; anything
that may wait or overlaps the coordinator's work (stdin, pipes, directories, buckets) on a thread."""

import gzip
import os
import queue
import threading

import pytest

from gspx_cli.read.feeder import Reader, reads_inline
from gspx_cli.read.reader import MAX_BATCH, ReadStats, iter_line_batches


def lines_file(path, n):
    path.write_bytes(b"".join(b'{"type":"track","userId":"u","event":"E","n":%d}\n' % i for i in range(n)))
    return str(path)


def drain_inline(reader):
    """Every message of an inline reader, pulled one by one as the coordinator does."""
    messages = []
    while (message := reader.pull()) is not None:
        messages.append(message)
        if message[0] == "eof":
            break
    return messages


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_plain_files_gzip_files_and_a_missing_one_are_read_inline(tmp_path):
    a, b = lines_file(tmp_path / "a.ndjson", 3), lines_file(tmp_path / "b.json", 3)
    gz = tmp_path / "c.ndjson.GZ"
    gz.write_bytes(gzip.compress(b'{"type":"track","userId":"u","event":"E"}\n'))
    assert reads_inline([a, b]) and reads_inline([a, str(gz)])
    assert reads_inline([a, str(tmp_path / "missing.ndjson")])  # a "cannot open" line at once: never waits


@pytest.mark.parametrize("other", ["-", "stdin", "dir", "fifo", "s3", "gs"])
def test_anything_that_may_wait_or_overlap_keeps_the_reader_thread(tmp_path, other):
    plain = lines_file(tmp_path / "a.ndjson", 3)
    if other == "stdin":
        assert not reads_inline([])  # no FILE: standard input
        return
    path = {"-": "-", "s3": "s3://bucket/prefix/", "gs": "gs://bucket/prefix/"}.get(other)
    if other == "dir":
        (tmp_path / "d").mkdir()
        path = str(tmp_path / "d")
    elif other == "fifo":
        path = str(tmp_path / "f")
        os.mkfifo(path)
    assert not reads_inline([plain, path]) and not reads_inline([path, plain])


def test_an_inline_reader_starts_no_thread_and_hands_every_line_in_order_then_the_end(tmp_path):
    n = 2 * MAX_BATCH + 7  # several batches
    reader = Reader([lines_file(tmp_path / "a.ndjson", n), lines_file(tmp_path / "b.ndjson", 2)],
                          queue.SimpleQueue(), ReadStats(), max_line_bytes=1 << 20)
    before = {t.name for t in threading.enumerate()}
    reader.start()
    messages = drain_inline(reader)
    assert reader.inline and reader._thread.ident is None  # never started
    assert {t.name for t in threading.enumerate()} == before
    kinds = [m[0] for m in messages]
    assert kinds[-1] == "eof" and messages[-1][1] is None and set(kinds[:-1]) == {"lines"}
    items = [item for m in messages[:-1] for item in m[1]]
    assert [(os.path.basename(i[0]), i[1]) for i in items] == (
        [("a.ndjson", k) for k in range(1, n + 1)] + [("b.ndjson", 1), ("b.ndjson", 2)])
    assert all(len(m[1]) <= MAX_BATCH for m in messages[:-1])
    assert reader.pull() is None  # nothing after the end


def test_a_stopped_inline_reader_reads_nothing_more_and_closes_its_file(tmp_path):
    reader = Reader([lines_file(tmp_path / "a.ndjson", 5 * MAX_BATCH)], queue.SimpleQueue(), ReadStats(),
                          max_line_bytes=1 << 20)
    fds = open_fds()
    reader.start()
    assert reader.pull()[0] == "lines"
    assert open_fds() == fds + 1  # the file, open mid-read
    reader.stop()
    assert reader.pull() == ("eof", None)  # not another batch
    reader.join(0.5)
    assert open_fds() == fds and reader.pull() is None


def test_an_inline_read_ends_at_the_next_chunk_once_the_run_is_stopping(tmp_path):
    # a resume passing over a long settled prefix, or a stretch of blank lines, is one long pull:
    # the run's stop flag is looked at before each chunk, so a signal does not wait for its end
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"\n" * (8 << 20) + b'{"type":"track","userId":"u","event":"E"}\n')
    looks = []

    def run_stopped():
        looks.append(1)
        return len(looks) > 3  # the signal comes while the blank lines are read

    reader = Reader([str(path)], queue.SimpleQueue(), stats := ReadStats(), run_stopped,
                          max_line_bytes=1 << 20)
    reader.start()
    assert reader.pull() == ("eof", None)  # the event after the blank lines is never read
    assert 0 < stats.bytes_read < (1 << 20)


def test_a_reader_bug_inline_is_handed_on_as_the_end_with_its_error(tmp_path, monkeypatch):
    def broken(paths, **options):
        yield [("x", 1, b"{}", False)]
        raise RuntimeError("boom")

    monkeypatch.setattr("gspx_cli.read.feeder.iter_line_batches", broken)
    reader = Reader([lines_file(tmp_path / "a.ndjson", 1)], queue.SimpleQueue(), ReadStats())
    reader.start()
    messages = drain_inline(reader)
    assert [m[0] for m in messages] == ["lines", "eof"] and str(messages[-1][1]) == "boom"


def test_a_threaded_reader_hands_on_the_same_messages_as_an_inline_one(tmp_path):
    paths = [lines_file(tmp_path / "a.ndjson", MAX_BATCH + 3)]
    inline = Reader(paths, queue.SimpleQueue(), ReadStats(), max_line_bytes=1 << 20)
    inline.start()
    expected = drain_inline(inline)
    inbox = queue.SimpleQueue()
    threaded = Reader(paths, inbox, ReadStats(), max_line_bytes=1 << 20)
    threaded.inline = False
    threaded.start()
    got = []
    while not got or got[-1][0] != "eof":
        got.append(inbox.get(timeout=5))
        if got[-1][0] == "lines":
            threaded.room.release()
    threaded.join(1.0)
    assert got == expected and threaded.pull() is None


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_read_a_stop_cuts_mid_line_hands_on_whole_lines_only_and_no_damage(tmp_path, gzipped):
    # the input stays where it is: the line the stop cut is not read, and a gzip stream cut short by the
    # stop is not a damaged file
    import random

    rng = random.Random(7)  # incompressible: the gzip file spans many chunks too
    lines = [b'{"type":"track","userId":"u","event":"E","pad":"%s"}' % rng.randbytes(300).hex().encode()
             for _ in range(2000)]
    data = b"".join(line + b"\n" for line in lines)
    path = tmp_path / ("a.ndjson.gz" if gzipped else "a.ndjson")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    looks = []

    def stopped():  # before each chunk read: the third read never happens
        looks.append(1)
        return len(looks) > 3

    items = [item for batch in iter_line_batches([str(path)], stopped=stopped, max_line_bytes=1 << 20)
             for item in batch]
    assert items and all(type(item) is tuple for item in items), "a problem Record"
    assert [item[2] for item in items] == lines[:len(items)] and len(items) < len(lines)
