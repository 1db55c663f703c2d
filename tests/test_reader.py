"""Reading NDJSON inputs into Records (CLI.md "gspx send": input rules; MAPPING.md: strict JSON)."""

import gzip
import io
import os
import tracemalloc

import pytest

from gspx_cli.read import reader
from gspx_cli.read.reader import DEFAULT_MAX_LINE_BYTES, ReadStats, Record, iter_records, source_key

T = b'{"type":"track","event":"e"}'
EV = {"type": "track", "event": "e"}
I1 = {"type": "identify", "userId": "u1"}
I2 = {"type": "identify", "userId": "u2"}


def rows(records):
    """(line_no, event, problem, unwrapped) for compact comparison."""
    return [(r.line_no, r.event, r.problem, r.unwrapped) for r in records]


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return str(path)


# (file name, file bytes, expected (line_no, event, problem, unwrapped) rows)
CASES = [
    pytest.param("a.ndjson", T + b"\n", [(1, EV, None, False)], id="one-event"),
    pytest.param("a.ndjson", T, [(1, EV, None, False)], id="last-line-without-newline"),
    pytest.param("a.ndjson.gz", T + b"\n" + T + b"\n", [(1, EV, None, False), (2, EV, None, False)], id="gzip"),
    pytest.param("a.ndjson", b"\xef\xbb\xbf" + T + b"\n", [(1, EV, None, False)], id="bom"),
    pytest.param("a.ndjson", T + b"\r\n" + T + b"\r\n", [(1, EV, None, False), (2, EV, None, False)], id="crlf"),
    # blank and whitespace-only lines count for numbering but yield nothing
    pytest.param("a.ndjson", b"\n  \t\n\r\n" + T + b"\n\n", [(4, EV, None, False)], id="blank-lines"),
    pytest.param(
        "a.ndjson",
        b'{"batch":[{"type":"identify","userId":"u1"},{"type":"identify","userId":"u2"}]}\n',
        [(1, I1, None, True), (1, I2, None, True)],
        id="batch",
    ),
    pytest.param(
        "a.ndjson",
        b'{"batch":[{"type":"identify","userId":"u1"},3]}\n',
        [(1, I1, None, True), (1, None, "batch element 2 is not a JSON object (got number)", False)],
        id="batch-with-non-object",
    ),
    # an empty batch holds no events: nothing to send, nothing to fail
    pytest.param("a.ndjson", b'{"batch":[]}\n' + T + b"\n", [(2, EV, None, False)], id="empty-batch"),
    pytest.param(
        "a.ndjson", b'{"message":{"type":"identify","userId":"u1"},"metadata":{}}\n', [(1, I1, None, True)], id="envelope"
    ),
    # with a "type" the line is an event itself, even when it has "batch"/"message" fields
    pytest.param(
        "a.ndjson",
        b'{"type":"track","message":{"a":1},"batch":[1]}\n',
        [(1, {"type": "track", "message": {"a": 1}, "batch": [1]}, None, False)],
        id="typed-event-not-unwrapped",
    ),
    pytest.param("a.ndjson", b'{"type":"track",\n', [(1, None, "not valid JSON", False)], id="bad-json"),
    pytest.param(
        "a.ndjson", b'{"type":"track","x":NaN}\n', [(1, None, "non-standard JSON number (NaN)", False)], id="nan"
    ),
    pytest.param(
        "a.ndjson", b'{"type":"track","x":-Infinity}\n', [(1, None, "non-standard JSON number", False)], id="infinity"
    ),
    pytest.param(
        "a.ndjson", b'{"type":"a","type":"track","event":"e"}\n', [(1, EV, None, False)], id="duplicate-key-last-wins"
    ),
    pytest.param("a.ndjson", b"[1,2]\n", [(1, None, "not a JSON object (got array)", False)], id="array"),
    pytest.param("a.ndjson", b'"x"\n', [(1, None, "not a JSON object (got string)", False)], id="string"),
    pytest.param("a.ndjson", b"null\n", [(1, None, "not a JSON object (got null)", False)], id="null"),
    pytest.param(
        "a.ndjson",
        b'{"t":"\xff"}\n' + T + b"\n",
        [(1, None, "not valid UTF-8 (byte offset 6)", False), (2, EV, None, False)],
        id="invalid-utf8",
    ),
    pytest.param("a.ndjson", b"[" * 100_000 + b"\n", [(1, None, "JSON nested too deeply", False)], id="deep-nesting"),
]


@pytest.mark.parametrize("name, data, expected", CASES)
def test_reads_file_into_records(tmp_path, name, data, expected):
    path = write(tmp_path, name, data)
    got = list(iter_records([path]))
    assert [r.source for r in got] == [path] * len(got)
    # a problem is compared by its start: JSON error details come from the json module
    got_rows = [(n, e, p[: len(q)] if p and q else p, u) for (n, e, p, u), (_, _, q, _) in zip(rows(got), expected)]
    assert got_rows == expected and len(got) == len(expected)


# (line bytes in the file, expected raw of the Record)
RAW_CASES = [
    pytest.param(T + b"\n", T, id="newline-dropped"),
    pytest.param(T + b"\r\n", T + b"\r", id="crlf-keeps-cr-for-byte-exact-replay"),
    pytest.param(b"\xef\xbb\xbf" + T + b"\n", T, id="bom-dropped"),
    pytest.param(b"not json\n", b"not json", id="bad-line-kept-as-read"),
    pytest.param(b'{"x":"\xff"}\r\n', b'{"x":"\xff"}\r', id="invalid-utf8-kept-as-read"),
]


@pytest.mark.parametrize("data, raw", RAW_CASES)
def test_raw_is_the_line_without_its_newline(tmp_path, data, raw):
    [record] = iter_records([write(tmp_path, "a.ndjson", data)])
    assert record.raw == raw


def test_unwrapped_records_keep_the_whole_line_as_raw(tmp_path):
    line = b'{"batch":[{"type":"identify","userId":"u1"},{"type":"identify","userId":"u2"}]}'
    got = list(iter_records([write(tmp_path, "a.ndjson", line + b"\n")]))
    assert [r.raw for r in got] == [line, line]


def test_non_object_batch_element_raw_is_the_element_alone(tmp_path):
    # failed output writes raw for records that are not unwrapped: the element, not the batch
    got = list(iter_records([write(tmp_path, "a.ndjson", b'{"batch":[{"type":"track"},["a", 1]]}\n')]))
    assert got[1].raw == b'["a",1]' and not got[1].unwrapped


def test_overlong_line_is_a_problem_and_numbering_continues(tmp_path):
    path = write(tmp_path, "a.ndjson", T + b"\n" + b'{"x":"' + b"y" * 500 + b'"}\n' + T + b"\n")
    got = list(iter_records([path], max_line_bytes=100))
    assert rows(got) == [
        (1, EV, None, False),
        (2, None, "line is longer than 100 bytes (--max-line-bytes)", False),
        (3, EV, None, False),
    ]
    assert got[1].raw == b""


# (line content, accepted with max_line_bytes == len(T))
LIMIT_CASES = [
    pytest.param(T + b"\n", True, id="exactly-the-limit"),
    pytest.param(T + b"\r\n", True, id="exactly-the-limit-with-crlf"),
    pytest.param(b"\xef\xbb\xbf" + T + b"\r\n", True, id="bom-not-counted"),
    pytest.param(b" " + T + b"\n", False, id="one-byte-over"),
    pytest.param(b" " + T, False, id="one-byte-over-at-eof"),
    pytest.param(b"  " + T + b"\r\n", False, id="two-bytes-over-with-crlf"),
]


@pytest.mark.parametrize("data, accepted", LIMIT_CASES)
def test_max_line_bytes_counts_the_line_without_its_ending(tmp_path, data, accepted):
    [record] = iter_records([write(tmp_path, "a.ndjson", data)], max_line_bytes=len(T))
    assert (record.event == EV) is accepted
    assert (record.problem is None) is accepted


def test_default_max_line_bytes_is_4_mib():
    assert DEFAULT_MAX_LINE_BYTES == 4 * 1024 * 1024


def test_overlong_line_is_never_loaded_whole_into_memory(tmp_path):
    path = tmp_path / "big.ndjson"
    block = b"x" * (1024 * 1024)
    with open(path, "wb") as f:
        f.write(b'{"type":"track","p":"')
        for _ in range(50):
            f.write(block)
        f.write(b'"}\n' + T + b"\n")
    del block
    tracemalloc.start()
    try:
        got = list(iter_records([str(path)], max_line_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows(got) == [
        (1, None, "line is longer than 1048576 bytes (--max-line-bytes)", False),
        (2, EV, None, False),
    ]
    assert peak < 8 * 1024 * 1024, peak


def test_overlong_line_in_gzip_is_never_loaded_whole_into_memory(tmp_path):
    path = tmp_path / "big.ndjson.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        for _ in range(50):
            f.write(b"x" * (1024 * 1024))
        f.write(b"\n" + T + b"\n")
    tracemalloc.start()
    try:
        got = list(iter_records([str(path)], max_line_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.line_no, r.event) for r in got] == [(1, None), (2, EV)]
    assert peak < 8 * 1024 * 1024, peak


# (gzip file bytes, expected events)
GZIP_CASES = [
    pytest.param(gzip.compress(T + b"\n") + gzip.compress(T + b"\n"), [EV, EV], id="multi-member"),
    pytest.param(gzip.compress(T + b"\n\n") + b"\0" * 1000, [EV], id="zero-padding-after-member"),
    pytest.param(gzip.compress(b""), [], id="empty"),
    pytest.param(b"", [], id="empty-file"),
]


@pytest.mark.parametrize("data, events", GZIP_CASES)
def test_gzip_variants_are_read(tmp_path, data, events):
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(data)
    assert [(r.event, r.problem) for r in iter_records([str(path)])] == [(e, None) for e in events]


def test_truncated_gzip_keeps_every_complete_line_before_the_damage(tmp_path):
    data = b"".join(b'{"type":"track","id":"%s"}\n' % os.urandom(16).hex().encode() for _ in range(5000))
    path = tmp_path / "a.ndjson.gz"
    path.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    got = list(iter_records([str(path)]))
    good, bad = got[:-1], got[-1]
    assert all(r.problem is None for r in good) and len(good) > 1000
    assert [r.line_no for r in good] == list(range(1, len(good) + 1))
    assert bad.line_no == len(good) + 1
    assert bad.problem == "cannot read further, rest of input skipped: gzip data ends early (truncated file?)"


def test_several_files_are_read_in_order(tmp_path):
    a = write(tmp_path, "a.ndjson", T + b"\n" + T + b"\n")
    b = write(tmp_path, "b.ndjson.gz", b'{"type":"identify","userId":"u1"}\n')
    got = list(iter_records([b, a]))
    assert [(r.where, r.event) for r in got] == [(f"{b}:1", I1), (f"{a}:1", EV), (f"{a}:2", EV)]


# (paths given, expected sources)
STDIN_CASES = [
    pytest.param([], ["-"], id="no-paths"),
    pytest.param(["-"], ["-"], id="dash"),
]


@pytest.mark.parametrize("paths, sources", STDIN_CASES)
def test_stdin_is_read_for_no_paths_or_dash(paths, sources):
    got = list(iter_records(paths, stdin=io.BytesIO(T + b"\n")))
    assert [(r.where, r.event) for r in got] == [("-:1", EV)]


def test_gzip_on_stdin_is_detected_by_its_magic_bytes():
    got = list(iter_records(["-"], stdin=io.BytesIO(gzip.compress(T + b"\n" + T + b"\n"))))
    assert [(r.where, r.event) for r in got] == [("-:1", EV), ("-:2", EV)]


def test_gzip_file_without_gz_suffix_is_detected_by_its_magic_bytes(tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_bytes(gzip.compress(T + b"\n"))
    assert [r.event for r in iter_records([str(path)])] == [EV]


def test_stdin_is_not_closed():
    stdin = io.BytesIO(T + b"\n")
    list(iter_records([], stdin=stdin))
    assert not stdin.closed


def test_file_and_stdin_mixed_in_order(tmp_path):
    a = write(tmp_path, "a.ndjson", T + b"\n")
    got = list(iter_records([a, "-"], stdin=io.BytesIO(b'{"type":"identify","userId":"u1"}\n')))
    assert [r.where for r in got] == [f"{a}:1", "-:1"]


# (file name, file bytes or None for missing, expected line_no, expected problem start)
UNREADABLE_CASES = [
    pytest.param("missing.ndjson", None, 0, "cannot open: No such file or directory", id="missing"),
    pytest.param("dir", "dir", 0, "cannot open: Is a directory", id="directory"),
    pytest.param("a.ndjson.gz", b"not gzip at all\n", 0, "cannot read further", id="gz-suffix-but-not-gzip"),
    pytest.param(
        "a.ndjson.gz", gzip.compress(T + b"\n" + T + b"\n" + T * 1000)[:-30], 3, "cannot read further", id="truncated-gz"
    ),
]


@pytest.mark.parametrize("name, data, line_no, problem", UNREADABLE_CASES)
def test_unreadable_input_is_one_problem_record_and_the_run_goes_on(tmp_path, name, data, line_no, problem):
    path = tmp_path / name
    if data == "dir":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    good = write(tmp_path, "good.ndjson", T + b"\n")
    got = list(iter_records([str(path), good]))
    bad = [r for r in got if r.source == str(path)]
    assert [r.event for r in bad if r.problem] == [None]
    assert bad[-1].line_no == line_no and bad[-1].problem.startswith(problem), bad[-1]
    assert all(r.problem is None for r in bad[:-1])  # lines before the damage were read
    assert [(r.where, r.event) for r in got if r.source == good] == [(f"{good}:1", EV)]


def test_unreadable_file_problem_names_the_error_permission(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    path = write(tmp_path, "a.ndjson", T + b"\n")
    os.chmod(path, 0)
    [record] = iter_records([path])
    assert record.problem == "cannot open: Permission denied"


# (skip_lines for the file, expected line numbers of the Records)
SKIP_CASES = [
    pytest.param(0, [1, 2, 4, 4], id="nothing-skipped"),
    pytest.param(1, [2, 4, 4], id="first-line-skipped"),
    pytest.param(3, [4, 4], id="skips-blank-and-overlong-too"),
    pytest.param(4, [], id="all-skipped"),
    pytest.param(99, [], id="more-than-the-file"),
]


@pytest.mark.parametrize("skip, line_nos", SKIP_CASES)
def test_skip_lines_skips_the_settled_lines_of_that_input(tmp_path, skip, line_nos):
    data = T + b"\n" + b"x" * 200 + b"\n\n" + b'{"batch":[{"type":"track"},{"type":"track"}]}\n'
    path = write(tmp_path, "a.ndjson", data)
    other = write(tmp_path, "b.ndjson", T + b"\n")
    got = list(iter_records([path, other], max_line_bytes=100, skip_lines={source_key(path): skip}))
    assert [r.line_no for r in got if r.source == path] == line_nos
    assert [r.line_no for r in got if r.source == other] == [1]  # other inputs are not skipped


def test_skip_lines_key_is_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "a.ndjson", T + b"\n" + T + b"\n")
    got = list(iter_records(["a.ndjson"], skip_lines={str(tmp_path / "a.ndjson"): 1}))
    assert [r.where for r in got] == ["a.ndjson:2"]  # source stays as typed


def test_source_key_is_absolute_path_or_dash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert source_key("-") == "-"
    assert source_key("x/a.ndjson") == str(tmp_path / "x" / "a.ndjson")


def test_stats_count_plain_file_bytes_and_lines(tmp_path):
    data = b"\xef\xbb\xbf" + T + b"\r\n\n" + b"x" * 300 + b"\n" + T
    path = write(tmp_path, "a.ndjson", data)
    stats = ReadStats()
    got = list(iter_records([path], max_line_bytes=100, stats=stats))
    assert [r.line_no for r in got] == [1, 3, 4] and stats.current == path
    assert (stats.bytes_read, stats.bytes_total, stats.lines) == (len(data), len(data), 4)


def test_stats_count_compressed_bytes_for_gzip(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "READ_CHUNK_BYTES", 64 * 1024)  # several reads of this ~400 KB file
    data = b"".join(b'{"type":"track","id":"%s"}\n' % os.urandom(16).hex().encode() for _ in range(20000))
    path = write(tmp_path, "a.ndjson.gz", data)
    size = os.path.getsize(path)
    stats = ReadStats()
    progress = [stats.bytes_read for _ in iter_records([path], stats=stats)]
    assert stats.bytes_total == size and stats.bytes_read == size and stats.lines == 20000
    assert progress[0] < size  # grows while reading, for a progress bar by file size
    assert progress == sorted(progress)


def test_stats_total_sums_files_and_is_unknown_with_stdin(tmp_path):
    a = write(tmp_path, "a.ndjson", T + b"\n")
    b = write(tmp_path, "b.ndjson", T + b"\n" + T + b"\n")
    stats = ReadStats()
    list(iter_records([a, b], stats=stats))
    assert (stats.bytes_total, stats.bytes_read, stats.lines) == (3 * (len(T) + 1),) * 2 + (3,)
    stats = ReadStats()
    list(iter_records([a, "-"], stats=stats, stdin=io.BytesIO(T + b"\n")))
    assert stats.bytes_total is None and stats.current == "-" and stats.lines == 2


def test_records_are_yielded_lazily(tmp_path):
    path = write(tmp_path, "a.ndjson", T + b"\n" + b"oops\n")
    it = iter_records([path])
    assert next(it).event == EV  # the bad line later does not raise or delay the first record
    assert next(it).problem.startswith("not valid JSON")


def test_record_where_is_file_colon_line():
    assert Record("events.ndjson", 3, b"", None).where == "events.ndjson:3"


@pytest.mark.parametrize("value", [
    pytest.param(123456789012345678901234567890, id="int-beyond-64-bits"),
    pytest.param(-(2**64) - 1, id="negative-beyond-64-bits"),
])
def test_a_huge_integer_among_plain_lines_is_read_exactly(tmp_path, value):
    # the per-chunk fast check must send the one line with a long digit run the exact way
    lines = [T] * 50 + [b'{"type":"track","event":"e","n":%d}' % value] + [T] * 50
    got = list(iter_records([write(tmp_path, "a.ndjson", b"\n".join(lines) + b"\n")]))
    assert got[50].event["n"] == value and type(got[50].event["n"]) is int


def test_deep_nesting_among_plain_lines_is_still_refused(tmp_path):
    deep = b'{"type":"track","x":' + b"[" * 300 + b"]" * 300 + b"}"
    got = list(iter_records([write(tmp_path, "a.ndjson", T + b"\n" + deep + b"\n" + T + b"\n")]))
    assert [r.problem is None for r in got] == [True, False, True]
    assert "nested too deeply" in got[1].problem


def test_an_input_unreadable_from_its_start_is_named_without_a_line_number(tmp_path):
    path = write(tmp_path, "notgz.gz", b"")  # replaced below by text that is not gzip
    (tmp_path / "notgz.gz").write_bytes(T + b"\n")
    [record] = iter_records([path])
    assert record.where == path and record.problem.startswith("cannot read further")
