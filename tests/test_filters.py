"""Filters (issue 18, CLI.md "Filters"): --since / --until on the event's time, --type, --event; the
events left out are skipped as "filtered", counted and settled."""

import json

import pytest

from e2e import gspx, write_config, write_events
from gspx_cli.mapping.filters import EventFilter
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


def test_an_unreadable_time_is_a_usage_error_before_anything_is_read(tmp_path):
    cfg = write_config(tmp_path, "https://px.example.test/v1")
    run = gspx("send", "--dry-run", "-c", cfg, "--until", "next tuesday", write_events(tmp_path, []), key=None)
    assert run.exit_code == 2 and "--until" in run.stderr and "ISO 8601" in run.stderr
