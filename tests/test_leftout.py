"""A --type filter's quick way in a dry run (Dispatcher._kept_quickly: a left-out event's line written from its
parts, counted at the batch's end, no Record) against the general way (_kept): the same lines, in the same
order, the same counts in the same order, the same failed output."""

import io
import json

import pytest

from gspx_cli.config import DeliverySettings, Settings
from gspx_cli.delivery.sinks import PrintSink
from gspx_cli.dispatch import Dispatcher
from gspx_cli.mapping.filters import EventFilter
from gspx_cli.read.shapes import Record
from gspx_cli.report import reporter as reporter_module
from gspx_cli.report.reporter import Reporter
from gspx_cli.state.ledger import Ledger

BASE = "https://px.example.test/v1"


def _event(n, **fields):
    return json.dumps({"userId": f"u{n % 3}", "messageId": f"m{n}", "timestamp": "2024-05-01T10:00:00Z", **fields})


AWKWARD = [
    _event(1, type="track", event="E"),
    _event(2, type="identify", traits={"email": "a@b.c", "score": 5}),
    _event(3, type="group", groupId="g1", traits={"name": "G"}),
    '{"type":"track","event":"E",',  # not JSON
    "[1,2,3]",
    '{"batch":[{"type":"track","event":"B","userId":"u2"},{"type":"identify","userId":"u2"},3]}',
    '{"message":{"type":"identify","userId":"u3"},"metadata":{}}',
    '{"type":"track","event":"E","userId":"u1","n":1234567890123456789012345}',
    '{"type":"identify","userId":"u1","traits":{"n":1234567890123456789012345}}',
    '{"type":"track","userId":"u1","x":1e400}',
    '{"type":"track","userId":"u1","x":NaN}',
    '{"type":"identify","userId":"u1","s":"\\ud800"}',
    '{"type":"track","userId":"u1","d":' + "[" * 300 + "]" * 300 + "}",
    '{"type":"identify","userId":"u1","d":' + '{"a":' * 300 + "1" + "}" * 300 + "}",
    '{"type":"track","d":' + '{"a":' * 256 + "1" + "}" * 256 + "}",  # 257 levels, no "[": bound by its size
    '{"type":"track","d":' + '{"a":' * 255 + "1" + "}" * 255 + ',"t":[1]}',  # 256 levels, a "[" at its end
    '{"type":"track","d":' + '{"a":' * 256 + "1" + "}" * 256 + ',"t":[1]}',
    '{"type":"identify","type":"track","event":"dup","userId":"u1"}',
    '{"type":"track","event":"nested","userId":"u1","properties":{"type":"identify"}}',
    '{"type":"TRACK","event":"E","userId":"u1"}',
    '{"type":"Identify","userId":"u1"}',
    '{"type":"GROUP","groupId":"g","userId":"u1"}',
    '{"type":null,"userId":"u1"}',
    '{"type":5,"userId":"u1"}',
    '{"type":["track"],"userId":"u1"}',
    '{"type":"alias","userId":"u1","previousId":"x"}',
    '{"type":"page","userId":"u1","name":"P"}',
    '{"type":"weird","userId":"u1"}',
    '{"userId":"u1","event":"no type"}',
    '{"type":"track","event":null,"userId":null}',
    '{"type":"identify","userId":"u5","traits":{"age":"42","email":"","name":"Zo\u00eb \u65e5\u672c"}}',
    '{"type":"track","event":"E","userId":"u1","messageId":"m1"}',  # a duplicate messageId
    '"a string"',
]
LINES = [line.encode("utf-8", "surrogatepass") for line in AWKWARD] + [b'{"type":"track","e":"\xff"}']


def _batches(sources):
    """Batches as the reader makes them: items of each source's lines, a problem Record now and then."""
    items = []
    for source in sources:
        for n, raw in enumerate(LINES * 3, 1):
            items.append((source, n, raw, False))
        items.append(Record(source, 99, b"", None, "line is longer than 10 bytes (--max-line-bytes)"))
    return [items[i:i + 37] for i in range(0, len(items), 37)]


def _run(tmp_path, types, quick, monkeypatch, sources=("in.ndjson",), batches=None):
    """What a dry run with --type types writes and counts: (stdout bytes, counts, failed output bytes)."""
    if not quick:
        monkeypatch.setattr(Dispatcher, "_quick_way", lambda self: None)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    reporter = Reporter(out=out, err=io.StringIO(), quiet=True)
    failed = tmp_path / f"failed-{quick}.ndjson"
    ledger = Ledger(failed_output=str(failed))
    settings = Settings(product_tag_key="AP-1", base_url=BASE, delivery=DeliverySettings())
    sink = PrintSink(reporter, BASE)
    dispatcher = Dispatcher(settings, sink=sink, reporter=reporter, ledger=ledger, store=None, resuming=False,
                            event_filter=EventFilter(types=types))
    for batch in batches or _batches(sources):
        dispatcher.dispatch(batch)
    reporter.flush_out()
    ledger.close()
    monkeypatch.undo()
    st = ledger.stats
    counts = (st.read, list(st.outcomes.items()), [(t, list(c.items())) for t, c in st.by_type.items()],
              [(k, r.count, r.example) for k, r in st.reasons.items()], list(st.skip_reasons.items()))
    return out.buffer.getvalue(), counts, failed.read_bytes() if failed.exists() else b""


@pytest.mark.parametrize("types", [("identify",), ("track",), ("alias",), ("identify", "group"), ("TRACK",),
                                   ("weird",), ("page", "screen")])
@pytest.mark.parametrize("block", [3, 256])
def test_the_quick_way_writes_and_counts_what_the_general_way_does(tmp_path, monkeypatch, types, block):
    monkeypatch.setattr(reporter_module, "DRY_RUN_BLOCK_LINES", block)
    sources = ("in.ndjson", 'dir/"q" \\\u00fc.ndjson', "-")
    quick = _run(tmp_path, types, True, monkeypatch, sources)
    monkeypatch.setattr(reporter_module, "DRY_RUN_BLOCK_LINES", block)
    general = _run(tmp_path, types, False, monkeypatch, sources)
    assert quick == general
    assert quick[0].count(b"\n") == quick[1][0]  # a line per event read
    assert b'"skipped":"filtered"' in quick[0]


def test_the_quick_way_makes_no_record_of_a_left_out_event(tmp_path, monkeypatch):
    made = []
    general = Dispatcher._kept
    monkeypatch.setattr(Dispatcher, "_kept", lambda self, batch: made.extend(batch) or general(self, batch))
    lines = [_event(n, type="track", event="E").encode() for n in range(1, 1001)]
    batches = [[("in", n, raw, False) for n, raw in enumerate(lines, 1)][i:i + 500] for i in (0, 500)]
    out, counts, _ = _run(tmp_path, ("identify",), True, monkeypatch, batches=batches)
    # the run's first track event is settled one by one (its type's key in the counts), and the line that
    # fills each block of 256 goes through the sink; the other 996 are written and counted in the quick loop
    assert [item[1] for item in made] == [1, 256, 512, 768]
    assert out.count(b'"skipped":"filtered"}\n') == 1000 and counts[0] == 1000
    assert counts[2] == [("track", [("skipped", 1000)])]


def test_the_lines_of_an_input_whose_name_the_quick_way_cannot_write_take_the_general_way(tmp_path, monkeypatch):
    # "null" in a line sends it the stdlib's way (jsonio.dumps_line): reporter.filtered_block's head_of says None
    raw = b'{"type":"track","event":"E","userId":"u"}'
    batches = [[("null.ndjson", n, raw, False) for n in (1, 2, 3)] + [("in.ndjson", 4, raw, False)]]
    quick = _run(tmp_path, ("identify",), True, monkeypatch, batches=batches)
    general = _run(tmp_path, ("identify",), False, monkeypatch, batches=batches)
    assert quick == general and quick[0].count(b"\n") == 4


def test_lines_written_one_at_a_time_as_on_a_terminal_take_the_general_way():
    terminal = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", line_buffering=True)
    assert Reporter(out=terminal, err=io.StringIO()).filtered_block() is None
    held, room, head_of, tails = Reporter(out=io.TextIOWrapper(io.BytesIO()), err=io.StringIO()).filtered_block()
    assert (held, room, head_of("a.ndjson") + b"7" + tails["track"]) == (
        [], reporter_module.DRY_RUN_BLOCK_LINES - 1, b'{"input":"a.ndjson:7","type":"track","skipped":"filtered"}\n')
