"""Filters (issue 18, CLI.md "Filters"): --since / --until on the event's time, --type, --event; the
events left out are skipped as "filtered", counted and settled."""

import json
import os
import subprocess
import sys

import pytest

from e2e import DEADLINE, gspx, write_config, write_events
from gspx_cli.mapping.filters import UNSURE, EventFilter
from gspx_cli.mapping.rules import to_epoch_ms

JAN = to_epoch_ms("2024-01-01")
FEB = to_epoch_ms("2024-02-01")


@pytest.mark.parametrize("event, kept", [
    ({"type": "track", "event": "E", "timestamp": "2024-01-15T10:00:00Z"}, True),
    ({"type": "track", "event": "E", "timestamp": "2024-01-01T00:00:00Z"}, True),  # since is inclusive
    ({"type": "track", "event": "E", "timestamp": "2024-02-01T00:00:00Z"}, False),  # until is not
    ({"type": "track", "event": "E", "timestamp": "2023-12-31T23:59:59.999Z"}, False),
    ({"type": "track", "event": "E", "originalTimestamp": "2024-01-15"}, True),  # the next source
    ({"type": "track", "event": "E", "timestamp": "junk", "receivedAt": "2024-01-15"}, True),
    ({"type": "track", "event": "E", "receivedAt": 1705312800000}, True),  # epoch ms
    ({"type": "track", "event": "E"}, False),  # no time: it cannot be shown to lie in the window
])
def test_since_and_until_keep_events_whose_time_lies_in_the_window(event, kept):
    assert EventFilter(since=JAN, until=FEB).keep(event) is kept


@pytest.mark.parametrize("types, names, event, kept", [
    (("track",), (), {"type": "Track", "event": "E"}, True),  # types compare in any case
    (("identify", "group"), (), {"type": "track", "event": "E"}, False),
    ((), ("Order *",), {"type": "track", "event": "Order Completed"}, True),
    ((), ("Order *",), {"type": "track", "event": "Product Viewed"}, False),
    ((), ("Order *", "Product*"), {"type": "track", "event": "Product Viewed"}, True),
    ((), ("order *",), {"type": "track", "event": "Order Completed"}, False),  # case counts in names
    ((), ("4?",), {"type": "track", "event": 42}, True),  # an integer name is its decimal text
    ((), ("Order *",), {"type": "identify", "userId": "u"}, True),  # --event is about track events only
    (("track",), ("Order *",), {"type": "identify", "userId": "u"}, False),
])
def test_type_and_event_name_filters(types, names, event, kept):
    assert EventFilter(types=types, events=names).keep(event) is kept


def test_no_filter_is_falsy_so_the_run_pays_nothing_for_it():
    assert not EventFilter() and EventFilter(types=("track",))


def test_filtered_events_are_skipped_counted_and_settled_in_the_checkpoint(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    events = [{"type": "track", "userId": "u1", "event": f"E{n}", "timestamp": f"2024-01-{n:02d}T00:00:00Z"}
              for n in range(1, 11)]
    path = write_events(tmp_path, events)
    ckpt, report = str(tmp_path / "run.db"), tmp_path / "report.json"
    run = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--report", str(report), "--since", "2024-01-03",
               "--until", "2024-01-06", path)
    assert run.exit_code == 0, run.stderr
    assert sorted(e["eventName"] for e in px.events) == ["E3", "E4", "E5"]
    data = json.loads(report.read_text())
    assert (data["delivered"], data["skipped"], data["skip_reasons"]) == (3, 7, {"filtered": 7})
    assert "filtered (7)" in run.stderr
    again = gspx("send", "-c", cfg, "--checkpoint", ckpt, "--report", str(report), path)
    assert again.exit_code == 0 and len(px.events) == 3  # settled: a rerun reads none of them again
    assert json.loads(report.read_text())["read"] == 0


def test_a_live_run_without_a_checkpoint_sends_only_what_the_filter_keeps(px_server, tmp_path):
    px = px_server.px
    cfg = write_config(tmp_path, px_server.base_url)
    events = [{"type": "track", "userId": f"u{n}", "event": "E", "properties": {"type": "identify"}}
              for n in range(1, 600)]  # more than a batch of lines
    events[300] = {"type": "identify", "userId": "kept"}
    report = tmp_path / "report.json"
    run = gspx("send", "-c", cfg, "--report", str(report), "--type", "identify", write_events(tmp_path, events))
    assert run.exit_code == 0, run.stderr
    assert list(px.users) == ["kept"] and not px.events
    data = json.loads(report.read_text())
    assert (data["read"], data["delivered"], data["skip_reasons"]) == (599, 1, {"filtered": 598})


def test_an_unreadable_time_is_a_usage_error_before_anything_is_read(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    run = gspx("send", "--dry-run", "-c", cfg, "--until", "next tuesday", write_events(tmp_path, []), key=None)
    assert run.exit_code == 2 and "--until" in run.stderr and "ISO 8601" in run.stderr


# ---- a left-out line costs its quick parse, yet says what it said before (issue 22) ------------------------

# Lines a filter leaves out, or that are bad whatever the filter: each must end as it did when every
# line was parsed exactly before the filter looked at it.
_BAD = [
    "not json at all",
    '{"type":"track","userId":"u","event":"E"',  # cut short
    '[{"type":"identify","userId":"u2"}]',  # an array
    '{"type":"track","userId":"u","n":1' + "0" * 5000 + "}",  # an integer past Python's digit limit
    '{"type":"track","userId":"u","n":1e400}',
    '{"type":"track","userId":"u","n":NaN}',
    '{"type":"track","userId":"u","s":"\\ud800"}',  # a lone surrogate
    '{"type":"track","userId":"u","deep":' + "[" * 300 + "]" * 300 + "}",  # deeper than jsonio.MAX_NESTING
    '{"type":"track","userId":"u","s":"\t"}'.replace("\\t", "\t"),  # a raw control character
]
_LEFT_OUT = [
    '{"type":"track","userId":"u","event":"E","properties":{"type":"identify"}}',  # a nested "type" key
    '{"type":"identify","type":"track","userId":"u","event":"E"}',  # duplicate keys: the last one counts
    '{"type":"track","userId":"u","event":"E","n":123456789012345678901234567890}',
    '{"type":"track","userId":"u","deep":' + "[" * 250 + "]" * 250 + "}",  # deep, but not too deep
    '{"userId":"u","event":"E"}',  # no type
]
_KEPT = [
    '{"type":"track","type":"identify","userId":"u1"}',
    '{"type":"identify","userId":123456789012345678901234567890}',  # a big integer, used exactly
    '{"batch":[{"type":"identify","userId":"u3"},{"type":"track","userId":"u3","event":"E"},7]}',
]


def _dry_run(tmp_path, name, *args):
    """`gspx send --dry-run` in a subprocess, as a user runs it: (exit status, stdout lines, stderr, failed output)."""
    failed = tmp_path / f"{name}.failed"
    proc = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "--no-progress", "-c",
                           str(tmp_path / "gspx.yaml"), "--failed-output", str(failed), *args],
                          capture_output=True, timeout=DEADLINE, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "GSPX_API_KEY"})
    return (proc.returncode, proc.stdout.decode().splitlines(), proc.stderr.decode(),
            failed.read_bytes() if failed.exists() else b"")


def test_a_type_filter_reports_every_bad_line_as_a_run_without_it_does(tmp_path):
    write_config(tmp_path, "https://px.example.test/v1")
    lines = _BAD + _LEFT_OUT + _KEPT
    (tmp_path / "in.ndjson").write_bytes("\n".join(lines).encode() + b"\n" + b'{"type":"track","e":"\xff"}\n')
    code, out, err, failed = _dry_run(tmp_path, "filtered", "--type", "identify", "in.ndjson")
    all_code, all_out, all_err, all_failed = _dry_run(tmp_path, "all", "in.ndjson")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(_BAD) + 2  # the batch's number 7, and the line that is not UTF-8
    # said as a run without the filter says it (that one also fails the left-out events it cannot map)
    assert set(errors) <= {line for line in all_err.splitlines() if line.startswith("error: ")}
    assert "error: in.ndjson:8: JSON nested too deeply (more than 256 levels)" in errors
    assert code == all_code == 1
    assert failed.splitlines() == [line.encode() for line in _BAD] + [b"7", b'{"type":"track","e":"\xff"}']
    # one line per event, in input order, each a left-out one's or the unfiltered run's very line
    assert len(out) == len(all_out)
    for line, unfiltered in zip(out, all_out):
        assert line == unfiltered or json.loads(line)["skipped"] == "filtered"
    skipped = [json.loads(line)["input"] for line in out if '"filtered"' in line]
    first = len(_BAD) + 1
    assert skipped == [f"in.ndjson:{n}" for n in range(first, first + len(_LEFT_OUT))] + [f"in.ndjson:{len(lines)}"]


def test_a_left_out_event_is_counted_by_type_in_the_report(tmp_path):
    write_config(tmp_path, "https://px.example.test/v1")
    (tmp_path / "in.ndjson").write_text("\n".join(_LEFT_OUT + _KEPT) + "\n")
    code, _, _, _ = _dry_run(tmp_path, "r", "--type", "identify", "--report", "report.json", "in.ndjson")
    data = json.loads((tmp_path / "report.json").read_text())
    assert (code, data["skip_reasons"], data["read"]) == (1, {"filtered": 6}, 10)  # the batch holds 3
    assert {t: c["skipped"] for t, c in data["by_type"].items() if c["skipped"]} == {"track": 5, "unknown": 1}


def test_a_big_integer_a_filter_reads_is_read_exactly(tmp_path):
    write_config(tmp_path, "https://px.example.test/v1")
    (tmp_path / "in.ndjson").write_text('{"type":"track","userId":"u","event":99999999999999999999}\n'
                                        '{"type":"track","userId":"u","event":99999999999999999998.5}\n')
    code, out, err, _ = _dry_run(tmp_path, "e", "--event", "9999*", "in.ndjson")
    assert code == 0, err
    assert '"eventName":"99999999999999999999"' in out[0] and '"skipped":"filtered"' in out[1]


def test_the_rough_look_is_unsure_only_where_a_filter_reads_a_number():
    window = EventFilter(since=JAN, until=FEB, types=("track",))
    assert window.left_out_roughly({"type": "track", "timestamp": 1.7e21}) is UNSURE
    assert window.left_out_roughly({"type": "track", "timestamp": "2024-01-15"}) is window.left_out(
        {"type": "track", "timestamp": "2024-01-15"})
    assert EventFilter(events=("4*",)).left_out_roughly({"type": "track", "event": 4e20}) is UNSURE
    by_type = EventFilter(types=("identify",))
    assert by_type.left_out_roughly({"type": "track", "event": 4e20}) == "track"
