"""What a line holds (CLI.md "Inputs as archived"): a bare event, a batch, a router envelope, an Event Replay
record, a gateway backup job, a processor-error dump job; or why it is no event, or why a whole file is
refused. Pure: bytes in, Records out; reader.py cuts inputs into lines and hands them here.
To read a new archive shape, add it to _parse_line / _archive_records (and file_refusal for a file that
holds no events)."""

from orjson import JSONDecodeError, loads as orjson_loads

from gspx_cli import jsonio

INCOMPLETE_PREFIX = "incomplete last line (no line end; is the file still being written?): "

# Python type -> the JSON name users know, for "not a JSON object (got array)".
_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
# What a file whose first event line is one of these shapes is, when gspx refuses it whole (CLI.md
# "Inputs as archived": once per file, never once per line).
_STAGING_FILE = "a RudderStack warehouse staging file, not events"
_JOB_STATUS_FILE = "a RudderStack job-status file, not events"
_ERROR_DUMP_FILE = "a RudderStack processor-error dump, read only with --error-dumps"

# --error-dumps (CLI.md): set once by the command line before a run. Process-wide because it is needed
# both where files are read (the reader thread) and where lines are parsed (the coordinator's thread).
_error_dumps = False
_UNREAD = object()  # parse_line(): the line is still to be parsed


def set_error_dumps(enabled):
    """Read processor-error dump jobs (--error-dumps) or refuse them."""
    global _error_dumps
    _error_dumps = bool(enabled)


class Record:
    """One input event (or one bad line) and where it came from. Written out, not a @dataclass, which
    generates and compiles its methods at every start (issue 22); compared field by field as one was."""

    __slots__ = ("source", "line_no", "raw", "event", "problem", "unwrapped", "index", "count", "incomplete",
                 "refused")
    __hash__ = None

    def __init__(self, source, line_no, raw, event, problem=None, unwrapped=False, index=0, count=1,
                 incomplete=False, refused=False):
        self.source = source  # the input as the user typed it ("-" for stdin)
        self.line_no = line_no  # 1-based
        self.raw = raw  # the line as read, without its line ending
        self.event = event  # the event object; None when the line is bad
        self.problem = problem  # why the line is bad
        self.unwrapped = unwrapped  # came out of a batch/envelope: failed output writes the event alone
        self.index = index  # its place among the events of its line (a batch line holds several)
        self.count = count  # how many events its line holds
        self.incomplete = incomplete  # the input's unfinished last line: not settled in the checkpoint
        self.refused = refused  # a whole file that holds no events to send: skipped with problem as the reason

    def _fields(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return self._fields() == other._fields() if other.__class__ is self.__class__ else NotImplemented

    def __repr__(self):
        return f"Record({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"

    @property
    def where(self):
        """FILE:LINE, as error lines and dry-run output name it; just FILE for an input that could
        not be opened or read at all (line 0 is no line)."""
        return f"{self.source}:{self.line_no}" if self.line_no else self.source


def parse_batch(batch):
    """The Records of an iter_line_batches batch: its lines parsed, its problem Records as they are."""
    return list(iter_records(batch))


def iter_records(batch, more=None):
    """parse_batch(batch) one Record at a time, each line parsed when its Record is asked for: the dispatcher
    maps an event while the objects just parsed are still in the CPU's caches (~0.3 us an event less than
    parsing the whole batch first). more: a one-item list to which the events of a line beyond its first
    are added (a batch or envelope line), for the count of events read.

    A bare event's line is parsed here by orjson where jsonio.loads_bytes_loose's depth bound holds at one
    sum (a usual event's first "[" comes late) and exact(): the very value of parse_line's loads_bytes, with
    no call, no marking of digits and no count of brackets (~0.3 us a line); any other line, parse_line."""
    find = bytes.find
    for item in batch:
        if type(item) is not tuple:
            yield item
            continue
        raw = item[2]
        first = find(raw, b"[")
        parsed = None
        if (len(raw) if first < 0 else 4 * len(raw) - 3 * first) <= jsonio.SHALLOW_BYTES:
            try:
                parsed = orjson_loads(raw)
            except JSONDecodeError:
                pass  # parse_line says why
            if parsed is not None and jsonio.exact(raw):
                if type(parsed) is dict and "type" in parsed:
                    yield Record(item[0], item[1], raw, parsed)
                    continue
                parsed = _parse_line(item[0], item[1], raw, parsed)  # a batch, an envelope, no event
            else:
                parsed = None
        if parsed is None:
            parsed = parse_line(*item)
        if type(parsed) is dict:
            yield Record(item[0], item[1], raw, parsed)
        else:
            if more is not None:
                more[0] += len(parsed) - 1
            yield from parsed


def file_refusal(raw):
    """Why a file whose first line is raw is refused whole, or None to read it."""
    try:
        value = jsonio.loads_bytes(raw)
    except (UnicodeDecodeError, jsonio.JsonError):
        return None  # reported at its line, like any bad line
    if type(value) is not dict or "type" in value:
        return None
    if _is_staging(value):
        return _STAGING_FILE
    if _is_job_status(value):
        return _JOB_STATUS_FILE
    if "EventPayload" in value and not _error_dumps:
        return _ERROR_DUMP_FILE
    return None


def parse_line(source, line_no, raw, final=False, value=_UNREAD):
    """What one non-blank line holds: the event of a line that is one bare event (a dict, no Record made
    yet: a filter may leave it out first, dispatch.py); else a list of Records: the events of a
    batch/envelope/archived job, or a problem.

    A list, not a generator: a generator per line cost ~1 us of a dry run's ~40 us per event.
    final: the input's last line had no line end; if it does not parse it is *incomplete* (CLI.md).
    value: the line's value when it is already parsed (exactly: jsonio.loads_bytes's value).
    """
    if value is not _UNREAD:
        return value if type(value) is dict and "type" in value else _parse_line(source, line_no, raw, value)
    try:
        value = jsonio.loads_bytes(raw)  # no str copy of the line: orjson reads the bytes
    except (UnicodeDecodeError, jsonio.JsonError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            problem = f"not valid UTF-8 (byte offset {exc.start})"
        else:
            problem = str(exc)
        if final:
            return [Record(source, line_no, raw, None, INCOMPLETE_PREFIX + problem, incomplete=True)]
        return [Record(source, line_no, raw, None, problem)]
    if type(value) is dict and "type" in value:  # a bare event, the most common line: no second call
        return value
    return _parse_line(source, line_no, raw, value)


def _parse_line(source, line_no, raw, value):
    """parse_line() of a parsed line: which shape it is (a bare event, a batch, an envelope, an archived job)."""
    if type(value) is not dict:
        return [Record(source, line_no, raw, None, f"not a JSON object (got {_json_type(value)})")]
    if "type" not in value:
        # CLI.md "Inputs as archived": the shapes that wrap events; a bare event never gets here.
        batch = value.get("batch")
        if type(batch) is list:
            return _batch_records(source, line_no, raw, batch, "batch element")
        message = value.get("message")
        if type(message) is dict:
            return [Record(source, line_no, raw, message, unwrapped=True)]
        return _archive_records(source, line_no, raw, value)
    return value


def _batch_records(source, line_no, raw, items, what):
    """A Record per element of a list of events, each at this line with its index; none for an empty list."""
    records = []
    count = len(items)
    for index, item in enumerate(items):
        if type(item) is dict:
            records.append(Record(source, line_no, raw, item, unwrapped=True, index=index, count=count))
        else:
            # raw is the element alone (not unwrapped), so failed output writes just it.
            problem = f"{what} {index + 1} is not a JSON object (got {_json_type(item)})"
            records.append(Record(source, line_no, jsonio.dumps(item).encode("utf-8"), None, problem,
                                  index=index, count=count))
    return records


def _archive_records(source, line_no, raw, value):
    """Records of an archived job (Event Replay, gateway backup, processor-error dump) or of a non-event line."""
    payload = value.get("payload")
    if type(payload) is dict:
        # Event Replay: the record's own userId is rudder-server's internal key, never the user's id,
        # so only the payload is handed on.
        return _payload_records(source, line_no, raw, payload, "batch element")
    payload = value.get("event_payload")
    if type(payload) is dict:  # legacy gw_jobs_* backup: the gateway's request, {"batch": [...], "writeKey", ...}
        return _payload_records(source, line_no, raw, payload, "batch element")
    if "EventPayload" in value:
        if not _error_dumps:
            return [Record(source, line_no, raw, None, "a RudderStack processor-error dump job: read only with "
                                                       "--error-dumps")]
        payload = value["EventPayload"]
        if type(payload) is list:
            return _batch_records(source, line_no, raw, payload, "EventPayload element")
        if type(payload) is dict:
            return _payload_records(source, line_no, raw, payload, "EventPayload element")
        return [Record(source, line_no, raw, None, f"EventPayload is not a JSON array (got {_json_type(payload)})")]
    # Past a file's first line (which refuses the file whole): a file that mixes shapes, one problem a line.
    if _is_staging(value):
        return [Record(source, line_no, raw, None, "a RudderStack warehouse staging line, not an event")]
    if _is_job_status(value):
        return [Record(source, line_no, raw, None, "a RudderStack job-status line, not an event")]
    return [Record(source, line_no, raw, value)]  # an event without a type: mapping says what is wrong


def _payload_records(source, line_no, raw, payload, what):
    """The events of a job's payload: a gateway batch, or one event."""
    batch = payload.get("batch") if "type" not in payload else None
    if type(batch) is list:
        return _batch_records(source, line_no, raw, batch, what)
    return [Record(source, line_no, raw, payload, unwrapped=True)]


def _is_staging(value):
    """A warehouse staging line: {"data": {columns}, "metadata": {"table", "columns", ...}}."""
    metadata = value.get("metadata")
    return type(metadata) is dict and "table" in metadata and "data" in value


def _is_job_status(value):
    """A jobsdb status row (gw_job_status_*): {"id", "job_id", "job_state", "attempt", ...}."""
    return "job_state" in value and "job_id" in value


def _json_type(value):
    """The JSON name of a parsed value's type."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
