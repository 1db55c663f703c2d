"""Input reading: NDJSON files / stdin / .gz / directories / object-store prefixes cut into lines that know
their file:line (CLI.md "gspx send"); shapes.py says what each line holds."""

from itertools import chain, count, repeat
import os
import select
import stat
import sys
import zlib
from gspx_cli.errors import ReplacedInputError
from gspx_cli.read import archives, remote
from gspx_cli.read.gunzip import gunzip
from gspx_cli.read.names import source_key
from gspx_cli.read.shapes import Record, file_refusal, parse_batch

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024  # CLI.md --max-line-bytes default
READ_CHUNK_BYTES = 64 * 1024  # a read this size stays in the CPU cache while it is split and parsed: 1 MiB reads measured 35% slower
MAX_BATCH = 512  # records handed on at once; bounds what a stop leaves read but not sent
POLL_SECONDS = 0.2  # a silent pipe is re-checked this often for a stop

EMPTY_FOLDER_PROBLEM = "cannot open: Is a directory with no .json, .ndjson or .gz file in it"
GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952; no NDJSON line can start with 0x1f, so sniffing is safe
UTF8_BOM = b"\xef\xbb\xbf"

# What a broken input raises: OS errors, and EOFError from gunzip for truncated or corrupt gzip
# (zlib.error is listed in case a zlib call escapes that translation).
_READ_ERRORS = (OSError, EOFError, zlib.error)
class ReadStats:
    """Progress counters that iter_records keeps up to date while it reads."""

    __slots__ = ("bytes_read", "bytes_total", "lines", "current", "pruned_folders", "pruned_objects",
                 "settled_files")

    def __init__(self):
        self.bytes_read = 0  # bytes taken from the underlying files (compressed bytes for gzip)
        self.bytes_total = None  # sum of the regular files' sizes; None when unknown (stdin, a pipe)
        self.lines = 0  # physical lines read, skipped ones included
        self.current = None  # the source being read, as typed
        self.pruned_folders = 0  # folders of a directory or prefix passed over by date (--since, --lateness)
        self.pruned_objects = 0  # files and objects passed over by date
        self.settled_files = 0  # files and objects passed over unread: settled whole by an earlier run, unchanged


def iter_batches(paths, **kwargs):
    """Yield lists of Records (events or bad lines) of each input in order, each list as soon as the
    lines in it are complete; no paths or "-" is stdin (iter_line_batches, parsed)."""
    for batch in iter_line_batches(paths, **kwargs):
        yield parse_batch(batch)


def iter_line_batches(paths, *, max_line_bytes=DEFAULT_MAX_LINE_BYTES, skip_lines=None, stats=None, stdin=None,
                      stopped=None, inputs=None, outputs=(), window=None):
    """Yield lists of lines still to parse, as (source, line_no, raw, final) tuples, and of problem
    Records (unreadable input, overlong line), as soon as the lines are complete.

    Parsing is left to the consumer (parse_batch): the coordinator parses each batch just before it
    maps it, while the objects are still in the CPU cache (measured ~6% of a dry run faster than
    parsing here, on the reader thread). stopped(): when true, nothing more is read.
    skip_lines: {source key: lines} or skip_lines(path) -> lines: the settled prefix of each input,
    asked when the reader reaches it (a checkpoint looks it up then, never loads every input's).
    inputs: the checkpoint's watch over the files found in directories and object stores (verify()
    raises ReplacedInputError for one that is not what it recorded; observe() takes an object's identity,
    ended() its number of lines once read to its end; settled_whole() says an object need not be fetched,
    unchanged() which files of a folder need not be opened).
    outputs: the run's own output files (--failed-output, --checkpoint), never read from a directory.
    window: a dating.Window; what a directory or prefix holds that it does not need is passed over unread.
    """
    paths = list(paths) or ["-"]
    skip_lines = _prefix_lookup(skip_lines)
    if stats is None:
        stats = ReadStats()  # the walk counts what it passes over in it
    stats.bytes_total = _total_size(paths)
    for path in paths:
        if stopped is not None and stopped():
            return
        if remote.is_url(path):
            yield from _folder_batches(path, remote.walk(path, window, stats), max_line_bytes, skip_lines, stats,
                                       stopped, inputs, in_store=True)
            continue
        if path != "-" and os.path.isdir(path):
            mine = archives.output_names(outputs)
            settled = inputs.unchanged if inputs is not None else None  # files an earlier run settled whole
            walk = archives.walk(path, lambda folder: archives.listing(folder, mine, settled, stats), os.path.join,
                                 window, stats)
            yield from _folder_batches(path, walk, max_line_bytes, skip_lines, stats, stopped, inputs)
            continue
        yield from _source_batches(path, max_line_bytes, skip_lines(path), stats, stdin, stopped)


def _prefix_lookup(skip_lines):
    """skip_lines as a function of the path as typed or found."""
    if callable(skip_lines):
        return skip_lines
    if not skip_lines:
        return lambda path: 0
    return lambda path: skip_lines.get(source_key(path), 0)


def _folder_batches(folder, walk, max_line_bytes, skip_lines, stats, stopped, inputs, in_store=False):
    """Batches of every archive file of a walk (archives.walk: a directory, or an object-store prefix),
    oldest first, each file read as a FILE argument is."""
    # Each file is an input of its own, named by its path under the folder as typed: its own FILE:LINE
    # and its own checkpoint entry (source_key), so a rerun resumes file by file.
    # The lines of small files are handed on together, up to MAX_BATCH: a batch per 20-line file made
    # the coordinator's per-batch work (and its waits on this thread) a tenth of a directory's time.
    found = handed = False
    pending = []
    passed_before = stats.pruned_folders + stats.pruned_objects + stats.settled_files
    if in_store:  # objects fetched ahead; those an earlier run read to their end and settled are skipped
        walk = remote.prefetched(walk, inputs.settled_whole if inputs is not None else None)
    else:
        walk = ((path, problem, info, None) for path, problem, info in walk)
    for path, problem, info, opener in walk:
        if stopped is not None and stopped():
            break
        found = True
        if problem is not None:
            pending.append(Record(path, 0, b"", None, f"cannot open: {problem}"))
            continue
        if in_store and opener is None:  # read to its end and settled by an earlier run, and not changed since
            stats.settled_files += 1
            continue
        skip = skip_lines(path)
        admit = None
        if in_store:
            admit = _remote_admission(info, inputs)
        elif inputs is not None:
            def admit(path, opened):
                inputs.verify(path, None)
        ended = inputs.ended if inputs is not None else None
        batches = _source_batches(path, max_line_bytes, skip, stats, None, stopped, admit=admit, opener=opener,
                                  ended=ended)
        try:
            for batch in batches:
                if pending:
                    pending += batch
                else:
                    pending = batch
                if len(pending) >= MAX_BATCH or not handed:  # the first lines go at once, as from a file
                    yield pending
                    pending = []
                    handed = True
        except ReplacedInputError:
            if pending:  # the files before it were read: their lines are handed on first
                yield pending
            raise
    if pending:
        yield pending
    # nothing in it, not even what the time window or the checkpoint passed over: most likely the wrong
    # folder, said as a missing file is rather than a silent success
    if not found and stats.pruned_folders + stats.pruned_objects + stats.settled_files == passed_before:
        yield [Record(folder, 0, b"", None, EMPTY_FOLDER_PROBLEM)]


def _remote_admission(listed, inputs):
    """What checks an object once opened: its identity is the one of what is read (the open file's
    details when the store gives them, else the listing's), refused when the checkpoint recorded another."""
    def admit(path, opened):
        details = getattr(opened, "details", None)
        identity = remote.identity(details) if details else listed
        if inputs is not None:
            inputs.verify(path, identity)
            inputs.observe(path, identity)

    return admit


def iter_records(paths, **kwargs):
    """Yield a Record per event (or bad line) of each input in order (iter_batches, flattened)."""
    for batch in iter_batches(paths, **kwargs):
        yield from batch


def _total_size(paths):
    """Sum of the inputs' sizes for a progress bar, or None when some size is unknowable."""
    total = 0
    for path in paths:
        if path == "-" or remote.is_url(path):
            return None
        try:
            st = os.stat(path)
        except OSError:
            continue  # it becomes a "cannot open" Record and reads 0 bytes
        if not stat.S_ISREG(st.st_mode):
            # a FIFO or /dev/fd/N from process substitution; or a directory, whose tree is not walked
            # twice (once here, once to read it) when it may hold millions of files
            return None
        total += st.st_size
    return total


class _RawChunks:
    """The bytes of one input as they arrive, each read as large as what is ready (a pipe's lines come
    at once, a file's in READ_CHUNK_BYTES blocks). Stops, without reading again, once stopped() is true."""

    def __init__(self, base, stats, stopped):
        self._stats = stats
        self._stopped = stopped
        try:
            fd = base.fileno()
        except (AttributeError, OSError, ValueError):  # io.BytesIO in tests, CliRunner's stdin
            fd = None
        if fd is None:
            self._read = getattr(base, "read1", base.read)
            self._fd = None
        else:
            self._read = lambda n: os.read(fd, n)  # not the BufferedReader: select() must see all that is unread
            # A pipe, FIFO or terminal may stay silent for ever: wait in short slices so a stop is noticed.
            self._fd = None if stat.S_ISREG(os.fstat(fd).st_mode) else fd
        self._cut = False  # the read was stopped before the end

    def cut_short(self):
        """True when a stop ended the read before the input's end, and what was not read stays where it is
        (a file, an object; not a pipe's bytes, taken from it): its unfinished last line is no line."""
        return self._cut and self._fd is None

    def ready(self):
        """True when the next read will not wait (a regular file always; a pipe when bytes are there)."""
        return self._fd is None or bool(select.select((self._fd,), (), (), 0)[0])

    def __iter__(self):
        read, fd, stopped, stats = self._read, self._fd, self._stopped, self._stats
        while True:
            if stopped is not None and stopped():
                self._cut = True
                return
            if fd is not None and not select.select((fd,), (), (), POLL_SECONDS)[0]:
                continue
            data = read(READ_CHUNK_BYTES)
            if not data:
                return
            if stats is not None:
                stats.bytes_read += len(data)  # compressed bytes for gzip: the bar follows the file
            yield data
            data = None  # not kept alive while the next chunk is read


def _starts_with_gzip(first):
    """True when the stream's first bytes are the gzip magic."""
    return first[:2] == GZIP_MAGIC


def _reason(exc):
    """A short human reason: strerror for OS errors ("No such file or directory"), else the message."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _source_batches(path, max_line_bytes, skip, stats, stdin, stopped, admit=None, opener=None, ended=None):
    """Batches of Records of one input; an input that cannot be opened or read yields a problem Record and ends.
    opener(): an object in a store, open for reading (remote.prefetched), instead of a file on disk;
    admit(path, opened): called once it is open, before it is read (it may raise ReplacedInputError);
    ended(path, lines, opened): called once it was read to its end, with its number of lines and the file
    on disk still open (None for an object)."""
    if stats is not None:
        stats.current = path
    opened = None
    try:
        try:
            if path == "-":
                base = stdin if stdin is not None else sys.stdin.buffer
            elif opener is not None:
                base = opened = _RemoteFile(opener)
            else:
                base = opened = open(path, "rb", buffering=0)
            if admit is not None:
                admit(path, opened.raw if opener is not None else opened)
            raw = _RawChunks(base, stats, stopped)
            chunks = iter(raw)
            first = b""
            for data in chunks:  # enough bytes to sniff for gzip or a BOM (a pipe may deliver one byte first)
                first += data
                if len(first) >= 3:
                    break
        except _READ_ERRORS as exc:
            yield [Record(path, 0, b"", None, f"cannot open: {_reason(exc)}")]
            return
        # CLI.md: a .gz FILE is gzip; other inputs (stdin included) are gunzipped only when
        # they start with the gzip magic bytes, which a text line never does.
        stream = chain((first,), chunks) if first else chunks
        if path.lower().endswith(".gz") or _starts_with_gzip(first):
            stream = gunzip(stream)
        tally = [] if ended is not None else None
        yield from _screened(path, _split(path, stream, max_line_bytes, skip, stats, raw.ready, tally, raw.cut_short))
        if tally and not (stopped is not None and stopped()):
            ended(path, tally[0], opened if opener is None else None)
    finally:
        if opened is not None:
            opened.close()


class _RemoteFile:
    """An object-store object as the reader reads files: whatever its library raises is an OSError
    whose text says what happened in one line (remote.explain), so a broken read ends that input only."""

    def __init__(self, opener):
        try:
            self.raw = opener()
        except Exception as exc:  # noqa: BLE001 - botocore and aiohttp errors are not all OSErrors
            raise OSError(remote.explain(exc)) from None

    def read(self, n):
        try:
            return self.raw.read(n)
        except Exception as exc:  # noqa: BLE001
            raise OSError(remote.explain(exc)) from None

    def close(self):
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - a read-only object: nothing is lost when closing fails
            pass


def _screened(source, batches):
    """The batches of one input, or one problem Record when its first line says it holds no events to send."""
    # A refused file is one Record at line 0, like one that cannot be opened: one warning, one skip in
    # the counts (it holds nothing to send: a bucket that mixes such files with events still exits 0),
    # nothing settled in the checkpoint (a rerun refuses it again), and the rest is not read. The first
    # line is parsed here, on the reader thread, because parsing proper happens later on the
    # coordinator's: one extra parse per file.
    for batch in batches:
        for at, item in enumerate(batch):
            if type(item) is tuple:
                refusal = file_refusal(item[2])
                if refusal is not None:
                    batches.close()  # stop reading: the file is refused whole
                    yield [*batch[:at], Record(source, 0, b"", None, refusal, refused=True)]
                    return
                yield batch
                yield from batches
                return
        yield batch  # only problem Records so far (an overlong first line): the next line decides


def _split(source, chunks, max_line_bytes, skip, stats, ready=None, tally=None, cut_short=None):
    """Cut a stream of byte chunks into lines and lines into Records, in batches of up to MAX_BATCH
    records; a batch goes as soon as nothing more is ready (ready() false), so each line of a slow
    pipe is handed on the moment its line end has arrived, and a file's lines go in full batches.

    A line still without its end is kept only up to the limit; beyond that it is discarded as it
    comes and reported as overlong, never held whole. tally: a list that gets the input's number of
    lines once it is read to its end without a read error. cut_short(): true once the chunks ended
    because the run stopped in the middle of an input that stays where it is (_RawChunks.cut_short): the
    line it was in is not handed on cut off (a rerun reads it whole), nor a gzip stream's cut reported.
    """
    # Room for "\r" after a line of exactly max_line_bytes, and 3 more for a BOM on line 1.
    limit = max_line_bytes + 4
    line_no = 0
    tail = []  # pieces of the line whose end has not arrived yet
    tail_len = 0
    discarding = False  # inside an overlong line: drop bytes until its line end
    batch = []
    lines_before = stats.lines if stats is not None else 0  # stats.lines counts over all inputs
    try:
        for chunk in chunks:
            if line_no == 0 and not tail and chunk.startswith(UTF8_BOM):
                chunk = chunk[3:]  # the BOM belongs to the file, not the line: raw stays replayable
            start = 0  # where the chunk's own lines begin
            if tail or discarding:
                nl = chunk.find(b"\n")
                if nl < 0:
                    if not discarding:
                        tail.append(chunk)
                        tail_len += len(chunk)
                        if tail_len > limit:
                            tail, tail_len, discarding = [], 0, True
                    continue
                line_no += 1
                if discarding:
                    if line_no > skip:
                        batch.append(_overlong(source, line_no, max_line_bytes))
                    discarding = False
                elif line_no > skip:
                    tail.append(chunk[:nl])
                    batch.extend(_line(source, line_no, b"".join(tail), max_line_bytes))
                tail, tail_len = [], 0
                start = nl + 1  # not chunk[nl + 1:]: copying the chunk cost as much as splitting it
                if len(batch) >= MAX_BATCH:  # lines longer than a chunk add one record a chunk
                    yield batch
                    batch = []
            if chunk.find(b"\n", start) < 0:  # no more line ends: keep or drop the rest
                lines, last = _NOTHING, chunk[start:]  # no copy when start is 0
            else:
                lines = chunk.split(b"\n")
                last = lines.pop()  # the bytes after the last line end: the start of the next line
                if start:
                    del lines[0]  # the end of the line before, taken above
            if line_no < skip and lines:  # checkpoint resume: lines settled in an earlier run
                settled = min(skip - line_no, len(lines))
                line_no += settled
                lines = lines[settled:]
            if lines and _plain(lines, len(chunk) <= max_line_bytes or max(map(len, lines)) <= max_line_bytes):
                # the hot path: every line of the chunk is an item, made in C (zip) rather than one by one
                batch += zip(repeat(source), count(line_no + 1), lines, repeat(False))
                line_no += len(lines)
                while len(batch) >= MAX_BATCH:
                    yield batch[:MAX_BATCH]
                    batch = batch[MAX_BATCH:]
                lines = _NOTHING
            for line in lines:  # a chunk with a blank, whitespace or overlong line: _line() inlined
                line_no += 1
                if not line or line.isspace():
                    continue
                if len(line) > max_line_bytes and (len(line) - (line[-1] == 13)) > max_line_bytes:  # 13: "\r"
                    batch.append(_overlong(source, line_no, max_line_bytes))
                else:
                    batch.append((source, line_no, line, False))
                if len(batch) >= MAX_BATCH:  # also after an overlong line: a file of them is still cut
                    yield batch
                    batch = []
            if last:
                if len(last) > limit:
                    discarding = True
                else:
                    tail, tail_len = [last], len(last)
            if stats is not None:
                stats.lines = lines_before + line_no
            chunk = lines = last = None  # not kept alive while the next chunk is read
            if batch and (ready is None or not ready()):
                yield batch
                batch = []
        if cut_short is not None and cut_short():
            discarding, tail = False, None
        if discarding:
            line_no += 1
            if line_no > skip:
                batch.append(_overlong(source, line_no, max_line_bytes))
        elif tail:
            line_no += 1
            if line_no > skip:
                batch.extend(_line(source, line_no, b"".join(tail), max_line_bytes, final=True))
        if stats is not None:
            stats.lines = lines_before + line_no
        if tally is not None:  # read to its end: how many lines it has
            tally.append(line_no)
        if batch:
            yield batch
    except _READ_ERRORS as exc:
        # A corrupt or truncated gzip (or an I/O error) ends this input at the line reached;
        # line 0 when nothing at all could be read (e.g. a .gz that is not gzip).
        if stats is not None:
            stats.lines = lines_before + line_no
        if cut_short is not None and cut_short():  # a gzip stream the stop cut is not damaged
            if batch:
                yield batch
            return
        where = line_no + 1 if line_no or tail else 0
        batch.append(Record(source, where, b"", None, f"cannot read further, rest of input skipped: {_reason(exc)}"))
        yield batch


_NOTHING = ()


def _plain(lines, short):
    """True when each of a chunk's lines is an item as it is: none blank or whitespace, none overlong
    (short: none is longer than --max-line-bytes; a chunk shorter than that cannot hold one that is)."""
    return short and all(lines) and not any(map(bytes.isspace, lines))


def _line(source, line_no, raw, max_line_bytes, final=False):
    """The batch items of one physical line (without its "\n"): none for a blank line."""
    # raw keeps a "\r" so failed output rewrites a CRLF line byte for byte with "\n";
    # JSON treats the "\r" as trailing whitespace when parsing.
    if not raw or raw.isspace():
        return _NOTHING
    if len(raw) > max_line_bytes and (len(raw) - (raw[-1] == 13)) > max_line_bytes:  # 13: "\r"
        return (_overlong(source, line_no, max_line_bytes),)
    return ((source, line_no, raw, final),)


def _overlong(source, line_no, max_line_bytes):
    """The Record for a line over --max-line-bytes; its bytes were not kept."""
    return Record(source, line_no, b"", None, f"line is longer than {max_line_bytes} bytes (--max-line-bytes)")


