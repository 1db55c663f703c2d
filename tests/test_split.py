"""reader._split's quick way (a chunk's lines made items at once, in C) and its line-by-line way, on awkward
chunkings: both must cut, number and report the lines as a plain split of the whole input does."""

import pytest

from gspx_cli.read import reader
from gspx_cli.read.reader import ReadStats, Record

EV = b'{"type":"track","event":"e","userId":"u"}'
LIMIT = 48  # --max-line-bytes of these tests: EV fits
AWKWARD = (
    reader.UTF8_BOM + EV + b"\r\n"  # BOM, CRLF
    + b"\n  \t\n\r\n"  # blank, whitespace and lone-CR lines
    + b"x" * LIMIT + b"\n"  # exactly the limit
    + b"y" * LIMIT + b"\r\n"  # the limit and its "\r"
    + b"z" * (LIMIT + 1) + b"\n"  # one byte past it
    + b"w" * 200 + b"\n"  # far past it, longer than some chunks
    + EV + b"\n" + EV + b"\n" + b"[1,2]\n" + EV  # a last line without its end
)
_PLAIN = reader._plain


def expected(data, skip=0, limit=LIMIT):
    """What the lines of data are, from one split of the whole: (line_no, raw, final) or (line_no, problem)."""
    if data.startswith(reader.UTF8_BOM):
        data = data[3:]
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    out = []
    for n, line in enumerate(lines, 1):
        if n <= skip or not line or line.isspace():
            continue
        if len(line) - line.endswith(b"\r") > limit:
            out.append((n, f"line is longer than {limit} bytes (--max-line-bytes)"))
        else:
            out.append((n, line, n == len(lines) and not data.endswith(b"\n")))
    return out, len(lines)


def split(chunks, monkeypatch, *, general, skip=0, limit=LIMIT):
    """What _split makes of chunks, as expected() says it; general: the line-by-line way throughout."""
    monkeypatch.setattr(reader, "_plain", (lambda lines, short: False) if general else _PLAIN)
    first = b""
    while chunks and len(first) < 3:  # as _source_batches: 3 bytes at least before the first split (a BOM)
        first += chunks.pop(0)
    stats, tally = ReadStats(), []
    batches = list(reader._split("in", iter([first, *chunks]), limit, skip, stats, None, tally))
    items = [(i[1], i[2], i[3]) if type(i) is tuple else (i.line_no, i.problem) for b in batches for i in b]
    assert all(type(i) is Record or i[0] == "in" for b in batches for i in b)
    assert stats.lines == tally[0]
    return items, tally[0]


def cut(data, *at):
    edges = (0, *at, len(data))
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def pieces(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("general", [False, True], ids=["quick", "line-by-line"])
def test_a_line_cut_at_any_byte_by_a_chunk_boundary_is_read_as_a_whole_input_is(monkeypatch, general):
    for at in range(1, len(AWKWARD)):
        assert split(cut(AWKWARD, at), monkeypatch, general=general) == expected(AWKWARD), at


@pytest.mark.parametrize("general", [False, True], ids=["quick", "line-by-line"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 48, 49, 50, 64, 200, 1000])
def test_chunks_of_any_size_are_read_as_a_whole_input_is(monkeypatch, general, size):
    assert split(pieces(AWKWARD, size), monkeypatch, general=general) == expected(AWKWARD)


@pytest.mark.parametrize("general", [False, True], ids=["quick", "line-by-line"])
@pytest.mark.parametrize("skip", [0, 1, 2, 5, 8, 11, 12, 13, 40])
def test_the_lines_a_checkpoint_settled_are_skipped_in_any_chunking(monkeypatch, general, skip):
    for chunks in ([AWKWARD], cut(AWKWARD, 50, 120), pieces(AWKWARD, 9), pieces(AWKWARD, 45)):
        assert split(chunks, monkeypatch, general=general, skip=skip) == expected(AWKWARD, skip), chunks


@pytest.mark.parametrize("general", [False, True], ids=["quick", "line-by-line"])
def test_input_ending_with_its_line_end_or_in_blank_lines_has_no_final_line(monkeypatch, general):
    for data in (EV + b"\n", EV + b"\r\n", EV + b"\n\n  \n", b"\n\n", EV + b"\n" + b"v" * 300):
        for size in (1, 5, 41, 64):
            assert split(pieces(data, size), monkeypatch, general=general) == expected(data), (data, size)


@pytest.mark.parametrize("batch", [1, 2, 3, 512])
def test_the_quick_way_hands_on_batches_of_max_batch_records(monkeypatch, batch):
    monkeypatch.setattr(reader, "MAX_BATCH", batch)
    data = b"".join(EV + b"\n" for _ in range(20)) + b"\n" + EV + b"\n"
    batches = list(reader._split("in", iter([data]), 1000, 0, None))
    assert [len(b) for b in batches] == [batch] * (21 // batch) + ([21 % batch] if 21 % batch else [])
    assert [i[1] for b in batches for i in b] == [*range(1, 21), 22]


def test_plain_chunks_take_the_quick_way(monkeypatch):
    taken = []
    monkeypatch.setattr(reader, "_plain", lambda lines, short: taken.append(_PLAIN(lines, short)) or taken[-1])
    data = b"".join(EV + b"\n" for _ in range(5))
    assert [i[1] for b in reader._split("in", iter([data, data]), 1000, 0, None) for i in b] == [*range(1, 11)]
    assert taken == [True, True]
    taken.clear()
    list(reader._split("in", iter([data + b"\n" + data]), 1000, 0, None))  # a blank line: line by line
    assert taken == [False]


@pytest.mark.parametrize("size", [64, 5000])
def test_a_file_of_overlong_lines_is_still_handed_on_in_batches_of_max_batch(monkeypatch, size):
    # a regular file is always ready(), so nothing but the batch bound cuts it: one batch of every
    # overlong line would hold them all (memory, and what a stop leaves read but not sent)
    monkeypatch.setattr(reader, "MAX_BATCH", 4)
    data = b"".join(b"x" * 100 + b"\n" for _ in range(30))  # lines both within a chunk and across chunks
    batches = list(reader._split("in", iter(pieces(data, size)), 10, 0, None, lambda: True))
    assert max(len(b) for b in batches) <= 4
    assert [i.line_no for b in batches for i in b] == list(range(1, 31))
    assert all(i.problem.startswith("line is longer than 10 bytes") for b in batches for i in b)
