"""Input reading: NDJSON files / stdin / .gz into Records that know their file:line (CLI.md "gspx send")."""

import io
import os
import stat
import sys
import zlib
from dataclasses import dataclass

from . import jsonio

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # CLI.md --max-line-bytes default
READ_BUFFER_BYTES = 1024 * 1024  # big reads: fewer syscalls at 100k+ lines/s
GZIP_INPUT_BYTES = 64 * 1024  # compressed bytes per read
GZIP_BUFFER_BYTES = 128 * 1024  # decompressed bytes per buffer fill
DRAIN_CHUNK_BYTES = 64 * 1024  # the rest of an overlong line is skipped this much at a time
GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952; no NDJSON line can start with 0x1f, so sniffing is safe
UTF8_BOM = b"\xef\xbb\xbf"

# Python type -> the JSON name users know, for "not a JSON object (got array)".
_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
# What a broken input raises: OS errors, and EOFError from _GunzipRaw for truncated or corrupt gzip
# (zlib.error is listed in case a zlib call escapes that translation).
_READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass(slots=True)
class Record:
    """One input event (or one bad line) and where it came from."""

    source: str  # the input as the user typed it ("-" for stdin)
    line_no: int  # 1-based
    raw: bytes  # the line as read, without its line ending
    event: dict | None  # the event object; None when the line is bad
    problem: str | None = None  # why the line is bad
    unwrapped: bool = False  # came out of a batch/envelope: failed output writes the event alone

    @property
    def where(self):
        """FILE:LINE, as error lines and dry-run output name it."""
        return f"{self.source}:{self.line_no}"


class ReadStats:
    """Progress counters that iter_records keeps up to date while it reads."""

    __slots__ = ("bytes_read", "bytes_total", "lines", "current")

    def __init__(self):
        self.bytes_read = 0  # bytes taken from the underlying files (compressed bytes for gzip)
        self.bytes_total = None  # sum of the regular files' sizes; None when unknown (stdin, a pipe)
        self.lines = 0  # physical lines read, skipped ones included
        self.current = None  # the source being read, as typed


def source_key(path):
    """The checkpoint key of an input: its absolute path, or "-" for standard input."""
    return "-" if path == "-" else os.path.abspath(path)


def iter_records(paths, *, max_line_bytes=DEFAULT_MAX_LINE_BYTES, skip_lines=None, stats=None, stdin=None):
    """Yield a Record per event (or bad line) of each input in order; no paths or "-" is stdin."""
    paths = list(paths) or ["-"]
    if stats is not None:
        stats.bytes_total = _total_size(paths)
    for path in paths:
        skip = skip_lines.get(source_key(path), 0) if skip_lines else 0
        yield from _iter_source(path, max_line_bytes, skip, stats, stdin)


def _total_size(paths):
    """Sum of the inputs' sizes for a progress bar, or None when some size is unknowable."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            st = os.stat(path)
        except OSError:
            continue  # it becomes a "cannot open" Record and reads 0 bytes
        if not stat.S_ISREG(st.st_mode):
            return None  # a FIFO or /dev/fd/N from process substitution
        total += st.st_size
    return total


class _GunzipRaw(io.RawIOBase):
    """The decompressed bytes of a gzip stream (every member), counting compressed bytes read.

    Not gzip.GzipFile: its buffered reads drop the data already decompressed when a truncated or
    corrupt stream raises, losing up to a buffer of good lines; here every byte before the damage
    is returned first, and the error comes on the next read, at the line reached.
    """

    def __init__(self, file, stats):
        self._read = getattr(file, "read1", file.read)  # read1: a pipe's lines arrive without waiting for a full chunk
        self._stats = stats
        self._z = zlib.decompressobj(wbits=31)  # 31: expect the gzip header and trailer
        self._empty = True  # an empty file reads as empty, as gzip.open does

    def readable(self):
        return True

    def _next_input(self):
        data = self._read(GZIP_INPUT_BYTES)
        if self._stats is not None:
            self._stats.bytes_read += len(data)
        return data

    def readinto(self, buf):
        size = len(buf)
        try:
            while True:
                z = self._z
                if z.unconsumed_tail:  # input left over from a read capped at size
                    out = z.decompress(z.unconsumed_tail, size)
                elif z.eof:  # end of a member: another member, zero padding (as gzip allows) or the end
                    rest = z.unused_data.lstrip(b"\0")
                    while not rest:
                        more = self._next_input()
                        if not more:
                            return 0
                        rest = more.lstrip(b"\0")
                    self._z = z = zlib.decompressobj(wbits=31)
                    out = z.decompress(rest, size)
                else:
                    data = self._next_input()
                    if not data:
                        if self._empty:
                            return 0
                        raise EOFError("gzip data ends early (truncated file?)")
                    self._empty = False
                    out = z.decompress(data, size)
                if out:
                    n = len(out)
                    buf[:n] = out
                    return n
        except zlib.error as exc:
            raise EOFError(f"not gzip data, or corrupt ({exc})") from None


def _starts_with_gzip(file):
    """True when the stream begins with the gzip magic bytes; consumes nothing."""
    peek = getattr(file, "peek", None)
    if peek is not None:
        return peek(2)[:2] == GZIP_MAGIC
    if file.seekable():  # e.g. io.BytesIO in tests
        pos = file.tell()
        head = file.read(2)
        file.seek(pos)
        return head == GZIP_MAGIC
    return False


def _reason(exc):
    """A short human reason: strerror for OS errors ("No such file or directory"), else the message."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _iter_source(path, max_line_bytes, skip, stats, stdin):
    """Records of one input; an input that cannot be opened or read yields a problem Record and ends."""
    if stats is not None:
        stats.current = path
    opened = None
    try:
        try:
            if path == "-":
                base = stdin if stdin is not None else sys.stdin.buffer
            else:
                base = opened = open(path, "rb", buffering=READ_BUFFER_BYTES)
            # CLI.md: a .gz FILE is gzip; other inputs (stdin included) are gunzipped only when
            # they start with the gzip magic bytes, which a text line never does.
            compressed = path.lower().endswith(".gz") or _starts_with_gzip(base)
        except _READ_ERRORS as exc:
            yield Record(path, 0, b"", None, f"cannot open: {_reason(exc)}")
            return
        if compressed:
            stream = io.BufferedReader(_GunzipRaw(base, stats), GZIP_BUFFER_BYTES)
        else:
            stream = base
        yield from _iter_lines(path, stream, max_line_bytes, skip, stats, count_line_bytes=not compressed)
    finally:
        if opened is not None:
            opened.close()


def _iter_lines(source, stream, max_line_bytes, skip, stats, count_line_bytes):
    """Split a binary stream into lines and turn each into Records; never holds an overlong line."""
    readline = stream.readline
    # Room for "\r\n" after a line of exactly max_line_bytes (+3 for a BOM on line 1), so a chunk
    # that fills the limit without reaching "\n" is certainly too long.
    limit = max_line_bytes + 2
    line_no = 0
    try:
        while True:
            first = line_no == 0
            want = limit + 3 if first else limit
            chunk = readline(want)
            if not chunk:
                return
            line_no += 1
            if stats is not None:
                stats.lines += 1
                if count_line_bytes:
                    stats.bytes_read += len(chunk)
            if len(chunk) == want and chunk[-1] != 10:  # 10 == ord("\n"): no line end within the limit
                while chunk and chunk[-1] != 10:  # discard the rest without keeping it
                    chunk = readline(DRAIN_CHUNK_BYTES)
                    if stats is not None and count_line_bytes:
                        stats.bytes_read += len(chunk)
                if line_no > skip:
                    yield _overlong(source, line_no, max_line_bytes)
                continue
            if line_no <= skip:  # checkpoint resume: settled in an earlier run
                continue
            if first and chunk.startswith(UTF8_BOM):
                chunk = chunk[3:]  # the BOM belongs to the file, not the line: raw stays replayable
            # raw keeps a "\r" so failed output rewrites a CRLF line byte for byte with "\n";
            # JSON treats the "\r" as trailing whitespace when parsing.
            raw = chunk[:-1] if chunk[-1:] == b"\n" else chunk
            if not raw or raw.isspace():
                continue
            if len(raw) > max_line_bytes and (len(raw) - (raw[-1] == 13)) > max_line_bytes:  # 13: "\r"
                yield _overlong(source, line_no, max_line_bytes)
                continue
            yield from _parse_line(source, line_no, raw)
    except _READ_ERRORS as exc:
        # A corrupt or truncated gzip (or an I/O error) ends this input at the line reached;
        # line 0 when nothing at all could be read (e.g. a .gz that is not gzip).
        where = line_no + 1 if line_no else 0
        yield Record(source, where, b"", None, f"cannot read further, rest of input skipped: {_reason(exc)}")


def _overlong(source, line_no, max_line_bytes):
    """The Record for a line over --max-line-bytes; its bytes were not kept."""
    return Record(source, line_no, b"", None, f"line is longer than {max_line_bytes} bytes (--max-line-bytes)")


def _parse_line(source, line_no, raw):
    """Records of one non-blank line, as a list: the event, the events of a batch/envelope, or a problem.

    A list, not a generator: a generator per line cost ~1 us of a dry run's ~40 us per event.
    """
    try:
        value = jsonio.loads_bytes(raw)  # no str copy of the line: orjson reads the bytes
    except UnicodeDecodeError as exc:
        return [Record(source, line_no, raw, None, f"not valid UTF-8 (byte offset {exc.start})")]
    except jsonio.JsonError as exc:
        return [Record(source, line_no, raw, None, str(exc))]
    if type(value) is not dict:
        return [Record(source, line_no, raw, None, f"not a JSON object (got {_json_type(value)})")]
    if "type" not in value:
        # CLI.md: a RudderStack batch {"batch": [...]} or router envelope {"message": {...}}
        # counts each event inside as its own event at this line.
        batch = value.get("batch")
        if type(batch) is list:
            # An empty batch holds no events, so it gives no Record, like a blank line.
            records = []
            for index, item in enumerate(batch, 1):
                if type(item) is dict:
                    records.append(Record(source, line_no, raw, item, unwrapped=True))
                else:
                    # raw is the element alone (not unwrapped), so failed output writes just it.
                    problem = f"batch element {index} is not a JSON object (got {_json_type(item)})"
                    records.append(Record(source, line_no, jsonio.dumps(item).encode("utf-8"), None, problem))
            return records
        message = value.get("message")
        if type(message) is dict:
            return [Record(source, line_no, raw, message, unwrapped=True)]
    return [Record(source, line_no, raw, value)]


def _json_type(value):
    """The JSON name of a parsed value's type."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
