"""parse_batch's quick way (orjson at once where the depth bound holds at one sum, exact() beside it) makes the
very Records of the general way, parse_line per line, on awkward lines and on any bytes."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gspx_cli import jsonio
from gspx_cli.read.shapes import Record, parse_batch, parse_line


def _general(batch):
    records = []
    for item in batch:
        if type(item) is tuple:
            parsed = parse_line(*item)
            records += [Record(item[0], item[1], item[2], parsed)] if type(parsed) is dict else parsed
        else:
            records.append(item)
    return records


def _deep_objects(depth, tail=b""):
    return b'{"type":"track",' + b'"a":{' * (depth - 1) + b'"b":1' + b"}" * (depth - 1) + tail + b"}"


BIG = b"1234567890123456789012345"
AWKWARD = [
    b'{"type":"identify","userId":"u1","traits":{"email":"a@b.c","n":5}}',
    b'{"type":"track","event":"E","userId":"u1","properties":{"tags":["a","b"]}}',
    b'{"type":"identify","userId":"u1","traits":{"n":' + BIG + b"}}",  # no "[": its bound is its size
    b'{"type":"track","userId":"u1","properties":{"n":' + BIG + b',"t":["x"]}}',
    b'{"type":"track","userId":"u1","x":1e400}', b'{"type":"track","userId":"u1","x":NaN}',
    b'{"type":"identify","userId":"u1","s":"\\ud800"}', b'{"type":"track","e":"\xff"}',
    b'{"type":"track","event":"E",', b"[1,2,3]", b"null", b'"a string"', b"5", b"{}",
    b'{"batch":[{"type":"track","event":"B","userId":"u2"},{"type":"identify","userId":"u2"},3]}',
    b'{"batch":[{"type":"identify","userId":"u2","n":' + BIG + b"}]}",
    b'{"message":{"type":"identify","userId":"u3"},"metadata":{}}',
    b'{"payload":{"type":"identify","userId":"u3"}}', b'{"job_state":"x","job_id":1}',
    b'{"type":"identify","type":"track","event":"dup"}', b'{"userId":"u1","event":"no type"}',
    _deep_objects(jsonio.MAX_NESTING - 1), _deep_objects(jsonio.MAX_NESTING),  # 256 and 257 levels
    _deep_objects(jsonio.MAX_NESTING - 1, b',"t":[1]'), _deep_objects(jsonio.MAX_NESTING, b',"t":[1]'),
    b'{"type":"track","d":' + b"[" * 300 + b"]" * 300 + b"}", b'{"type":"track","d":' + b"[" * 255 + b"]" * 255 + b"}",
    b'{"type":"track","pad":"' + b"x" * 2000 + b'"}',  # past the unchecked size: the general way
    b'{"type":"track","pad":"' + b"x" * 2000 + b'","t":[1]}', b'{"type":"TRACK","s":"Zo\xc3\xab \xe6\x97\xa5"}',
]


def _batch(lines, final_last=True):
    items = [("in.ndjson", n, raw, False) for n, raw in enumerate(lines, 1)]
    if final_last:
        items[-1] = items[-1][:3] + (True,)
    items.insert(2, Record("in.ndjson", 0, b"", None, "line is longer than 10 bytes (--max-line-bytes)"))
    return items


def test_the_quick_way_makes_the_records_of_parse_line_on_awkward_lines():
    for lines in (AWKWARD, AWKWARD[::-1], [AWKWARD[8]]):  # the cut-off line last: an incomplete line
        batch = _batch(lines)
        assert repr(parse_batch(batch)) == repr(_general(batch))  # repr: 1 and 1.0 differ, as in the output


def test_a_long_integer_outside_an_array_keeps_its_digits():
    (record,) = parse_batch([("in", 1, AWKWARD[2], False)])
    assert record.event["traits"]["n"] == int(BIG) and type(record.event["traits"]["n"]) is int


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.text(alphabet='{}[]",:0123456789.eE+-\\untrfalsuype\x00 \xe9',
                                                 max_size=40).map(lambda s: s.encode("utf-8")), min_size=1, max_size=5))
def test_the_quick_way_makes_the_records_of_parse_line_on_any_bytes(lines):
    batch = [("in", n, raw, False) for n, raw in enumerate(lines, 1)]
    assert repr(parse_batch(batch)) == repr(_general(batch))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "userId", "n", "t", "batch"]),
                       st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text()
                       | st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=3), max_size=5))
def test_the_quick_way_makes_the_records_of_parse_line_on_any_event(event):
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    batch = [("in", 1, raw, False)]
    assert repr(parse_batch(batch)) == repr(_general(batch))


def _dispatcher(sink_error_at=None):
    import io

    from gspx_cli.config import DeliverySettings, Settings
    from gspx_cli.delivery.sinks import PrintSink
    from gspx_cli.dispatch import Dispatcher
    from gspx_cli.report.reporter import Reporter
    from gspx_cli.state.ledger import Ledger

    base = "https://px.example.test/v1"
    reporter = Reporter(out=io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), err=io.StringIO(), quiet=True)
    sink = PrintSink(reporter, base)
    if sink_error_at is not None:  # the reader of stdout goes away at that line
        submit = sink.submit

        def failing(record, plan):
            if record.line_no == sink_error_at:
                raise BrokenPipeError
            return submit(record, plan)

        sink.submit = failing
    ledger = Ledger()
    settings = Settings(product_tag_key="AP-1", base_url=base, delivery=DeliverySettings())
    return Dispatcher(settings, sink=sink, reporter=reporter, ledger=ledger, store=None, resuming=False), ledger


_COUNTED = [b'{"type":"track","event":"E","userId":"u1","messageId":"a"}',
            b'{"batch":[{"type":"track","event":"B","userId":"u2"},{"type":"identify","userId":"u2"},3]}',
            b'{"type":"identify","userId":"u1","messageId":"b"}',
            b'{"batch":[{"type":"track","event":"C","userId":"u3"},{"type":"track","event":"D","userId":"u3"}]}']


def test_a_dry_run_without_a_filter_counts_every_event_of_a_batch_read():
    dispatcher, ledger = _dispatcher()
    dispatcher.dispatch(_batch(_COUNTED, final_last=False))
    assert ledger.stats.read == 1 + 3 + 1 + 2 + 1  # the problem Record _batch adds counts too
    assert sum(ledger.stats.outcomes.values()) == ledger.stats.read


def test_a_batch_broken_off_still_counts_the_events_of_its_lines_not_taken():
    dispatcher, ledger = _dispatcher(sink_error_at=1)
    try:
        dispatcher.dispatch(_batch(_COUNTED, final_last=False))
    except BrokenPipeError:
        pass
    assert ledger.stats.read == 8  # as when the whole batch was parsed before the first was mapped
