"""Reading only what the time window needs (issue 22, CLI.md): archives dated by their layout are passed
over when --since / --lateness say they hold nothing of the window, the result stays that of reading
everything; and an object of a bucket costs one GET, no HEAD (moto's S3 server's request log)."""

import calendar
import json
import subprocess
import sys
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from e2e import write_config
from gspx_cli.read.dating import DAY_MS, HOUR_MS, Window, parse_duration, span
from test_archives import write_gz
from test_buckets import bucket, put_gz, s3_endpoint, store, store_requests  # noqa: F401 - fixtures

RUN_TIMEOUT = 60  # seconds: each gspx subprocess is a small dry run


def ms(day, hour=0):
    """Epoch ms of YYYY-MM-DD at hour (UTC)."""
    year, month, mday = (int(part) for part in day.split("-"))
    return (calendar.timegm((year, month, mday, 0, 0, 0)) + hour * 3600) * 1000


def iso(epoch_ms):
    return f"{_gm(epoch_ms)}Z"


def _gm(epoch_ms):
    import datetime

    return datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


# ---- dating: every layout, pure -------------------------------------------------------------------

def test_both_rudderstack_date_folder_layouts_are_their_utc_day():
    assert span("2024-03-09", True) == (ms("2024-03-09"), ms("2024-03-10"))
    assert span("03-09-2024", True) == (ms("2024-03-09"), ms("2024-03-10"))


@pytest.mark.parametrize("name", ["2024-13-01", "02-30-2024", "2024-3-9", "notes", "v2", "2024-03-09.bak"])
def test_a_folder_name_that_is_no_date_is_undated(name):
    assert span(name, True) is None


def test_an_event_replay_hour_folder_is_its_hour_of_the_date_folder_above():
    day = span("2024-03-09", True)
    assert span("7", True, day) == (ms("2024-03-09", 7), ms("2024-03-09", 8))
    assert span("23", True, day)[1] == ms("2024-03-10")
    assert span("24", True, day) is None
    assert span("7", True, None) is None  # a number folder not under a date folder: not an hour


def test_a_segment_received_day_folder_in_ms_is_that_day():
    assert span(str(ms("2024-03-09")), True) == (ms("2024-03-09"), ms("2024-03-10"))


def test_a_leading_unix_time_dates_a_file_in_seconds_or_ms():
    t = ms("2024-03-09", 5)
    assert span(f"{t // 1000}.src-id.5f1c-uuid.json.gz", False) == (t, t + 1000)
    assert span(f"{t}.a1b2.gz", False) == (t, t + 1)


def test_an_event_replay_file_spans_its_first_to_its_last_unix_time():
    first, last = ms("2024-03-09", 5), ms("2024-03-09", 6)
    assert span(f"{first // 1000}_{last // 1000}_ws_uuid.json.gz", False) == (first, last + 1000)


@pytest.mark.parametrize("name", ["20_99_ws_uuid.json.gz", "999999999.src.uuid.json.gz", "events.ndjson",
                                  "gw_jobs_2.1.9.1704067200000.1704067300000.gz", "2024-03-09.json.gz"])
def test_a_file_name_without_a_unix_time_in_a_known_place_is_undated(name):
    assert span(name, False) is None


def test_since_passes_over_what_ends_a_day_or_more_before_it_and_no_more():
    window = Window(since=ms("2024-03-10"))
    assert window.needs(span("2024-03-09", True))  # one day before: read (time zones)
    assert not window.needs(span("2024-03-08", True))  # two days before: its end is a full day before
    t = ms("2024-03-09")  # a file uploaded exactly one day before since
    assert window.needs(span(f"{t // 1000}.s.u.json.gz", False))
    assert not window.needs(span(f"{t // 1000 - 1}.s.u.json.gz", False))
    assert window.needs(span("2099-01-01", True))  # no --lateness: nothing later is passed over


def test_lateness_passes_over_what_starts_more_than_it_after_until():
    window = Window(since=ms("2024-03-10"), until=ms("2024-03-17"), lateness=2 * DAY_MS)
    assert window.needs(span("2024-03-19", True))  # starts exactly until + 2d
    assert not window.needs(span("2024-03-20", True))
    t = ms("2024-03-19")
    assert window.needs(span(f"{t // 1000}.s.u.json.gz", False))
    assert not window.needs(span(f"{t // 1000 + 1}.s.u.json.gz", False))
    assert window.needs(None)  # undated: always read


def test_until_alone_or_no_time_filter_passes_over_nothing():
    assert not Window(until=ms("2024-03-17"))
    assert not Window()
    assert Window(until=ms("2024-03-17")).needs(span("2099-01-01", True))


@pytest.mark.parametrize("text, expected", [("7d", 7 * DAY_MS), ("36h", 36 * HOUR_MS), ("1d12h", 36 * HOUR_MS),
                                            ("90m", 90 * 60_000), ("2w", 14 * DAY_MS), (" 1.5h ", 90 * 60_000)])
def test_lateness_durations_read_as_users_write_them(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "-1d", "7d!", "1h7"])
def test_text_that_is_no_duration_is_refused(text):
    assert parse_duration(text) is None


# ---- end to end: a subprocess, as users run it ------------------------------------------------------

def event(n, when_ms):
    return {"type": "track", "userId": "u1", "event": "Clicked", "messageId": f"m-{n}", "timestamp": iso(when_ms),
            "properties": {"n": n}}


def send_dry(tmp_path, *args, env=None):
    """`python -m gspx_cli send --dry-run` in a subprocess: (exit code, [properties.n printed], stderr, report)."""
    cfg = write_config(tmp_path, "https://api.aptrinsic.com/v1")
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    run = subprocess.run([sys.executable, "-m", "gspx_cli", "send", "--dry-run", "-c", cfg, "--report", str(report),
                          *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                         env={**__import__("os").environ, "GSPX_API_KEY": "", **(env or {})})
    numbers = [json.loads(line)["requests"][0]["json"]["attributes"]["n"]
               for line in run.stdout.splitlines() if json.loads(line).get("requests")]
    data = json.loads(report.read_text()) if report.exists() else None
    return run.returncode, numbers, run.stderr, data


WINDOW = ["--since", "2024-03-10", "--until", "2024-03-17", "--lateness", "2d"]


def window_tree(root):
    """A source that switched date layout (MM-DD-YYYY until 03-12, then YYYY-MM-DD), ten days of folders
    around the window [03-10, 03-17) with --lateness 2d; each folder one file, its event the folder's day.
    Also: a late event (of 03-16, uploaded on 03-18: inside the margin), and an undated file. The events
    the run must print, in the order read."""
    expected = []
    for day in range(5, 22):
        when = ms(f"2024-03-{day:02d}", 12)
        folder = f"03-{day:02d}-2024" if day <= 12 else f"2024-03-{day:02d}"
        lines = [event(day, when)]
        if day == 18:
            lines.append(event(100, ms("2024-03-16", 23)))  # archived two days late: still found
        write_gz(root / "rudder-logs" / "src" / folder / f"{when // 1000}.src.uuid.json.gz", lines)
        if 10 <= day < 17:
            expected.append(day)
        if day == 18:
            expected.append(100)
    write_gz(root / "manual" / "export.json.gz", [event(200, ms("2024-03-11"))])  # no date in its name: read
    return [200, *expected]


def test_a_window_reads_only_the_folders_it_needs_in_both_layouts_and_finds_the_late_event(tmp_path):
    expected = window_tree(tmp_path / "tree")
    code, numbers, err, report = send_dry(tmp_path, *WINDOW, str(tmp_path / "tree"))
    assert code == 0, err
    assert numbers == expected
    # listed: 03-09 (the day's margin) .. 03-19 (until + 2d), 11 folders of 17; 6 passed over, never
    # opened; in 03-19 the file uploaded at 12:00 is past until + 2d (00:00) and is not read either
    assert (report["pruned_folders"], report["pruned_objects"]) == (6, 1)
    assert report["read"] == 10 + 1 + 1  # one event a file read, the late one, the undated one
    assert "passed over" in err and "6 folders and 1 file dated outside the time window" in err
    # the same events as reading everything with the same event filter
    code, everything, err, report = send_dry(tmp_path, "--since", "2024-03-10", "--until", "2024-03-17",
                                             str(tmp_path / "tree"))
    assert sorted(everything) == sorted(expected)
    assert (report["pruned_folders"], report["pruned_objects"]) == (4, 0)  # --until alone prunes no later one


def test_the_since_margin_is_one_day_exactly_for_folders_and_file_names(tmp_path):
    # events of the window written into archives dated before it: what is read shows in the output
    inside = ms("2024-03-10", 1)
    write_gz(tmp_path / "t" / "a" / "2024-03-09" / "x.json.gz", [event(1, inside)])  # one day before: read
    write_gz(tmp_path / "t" / "a" / "03-08-2024" / "x.json.gz", [event(2, inside)])  # two days: not
    one_day, two_days = ms("2024-03-09") // 1000, ms("2024-03-08") // 1000
    write_gz(tmp_path / "t" / "b" / f"{one_day}.src.uuid.json.gz", [event(3, inside)])
    write_gz(tmp_path / "t" / "b" / f"{two_days}.src.uuid.json.gz", [event(4, inside)])
    write_gz(tmp_path / "t" / "c" / "20_99_ws_uuid.json.gz", [event(5, inside)])  # job ids, not times: read
    code, numbers, err, report = send_dry(tmp_path, "--since", "2024-03-10", str(tmp_path / "t"))
    assert code == 0, err
    assert numbers == [1, 3, 5]
    assert (report["pruned_folders"], report["pruned_objects"]) == (1, 1)


def test_event_replay_hour_folders_and_segment_day_folders_are_pruned_by_their_dates(tmp_path):
    inside = ms("2024-03-10", 13)
    replay = tmp_path / "t" / "replay" / "src" / "gw" / "2024-03-09"
    write_gz(replay / "0" / "inst" / "1_2_ws_u.json.gz", [event(1, inside)])  # 03-09 00h: ends 23h before
    write_gz(replay / "23" / "inst" / "3_4_ws_u.json.gz", [event(2, inside)])  # 03-09 23h: read
    seg = tmp_path / "t" / "segment-logs" / "src"
    write_gz(seg / str(ms("2024-03-08")) / f"{ms('2024-03-08', 3)}.a.gz", [event(3, inside)])
    write_gz(seg / str(ms("2024-03-09")) / f"{ms('2024-03-09', 3)}.b.gz", [event(5, inside)])  # 33h before
    write_gz(seg / str(ms("2024-03-09")) / f"{ms('2024-03-09', 13)}.c.gz", [event(4, inside)])  # 23h before
    code, numbers, err, report = send_dry(tmp_path, "--since", "2024-03-10T12:00:00Z", str(tmp_path / "t"))
    assert code == 0, err
    assert numbers == [2, 4]
    assert (report["pruned_folders"], report["pruned_objects"]) == (2, 1)  # hour 0, segment 03-08; one file


def test_a_directory_folder_the_window_passes_over_is_never_listed(tmp_path, monkeypatch):
    from gspx_cli.read.reader import ReadStats, iter_records
    from test_archives import build_wide_tree, counting_scandir

    build_wide_tree(tmp_path / "t", days=10, hours=2, files=3)  # 2024-01-01 .. 2024-01-10, hours 0 and 1
    calls = counting_scandir(monkeypatch)
    stats = ReadStats()
    window = Window(since=ms("2024-01-08"), until=ms("2024-01-09"), lateness=HOUR_MS)
    records = list(iter_records([str(tmp_path / "t")], stats=stats, window=window))
    # read: 01-07 (the margin), 01-08, and 01-09 hour 0 (starts at until) and hour 1 (an hour after: not more)
    listed = sorted(path[len(str(tmp_path / "t")):] for path in calls)
    assert listed == ["", "/2024-01-07", "/2024-01-07/0", "/2024-01-07/1", "/2024-01-08", "/2024-01-08/0",
                      "/2024-01-08/1", "/2024-01-09", "/2024-01-09/0", "/2024-01-09/1"]
    # 7 date folders (01-01 .. 01-06, 01-10); in 01-09/1 the files of 01:00:01 and 01:00:02 (01:00:00 is read)
    assert (stats.pruned_folders, stats.pruned_objects) == (7, 2)
    assert len(records) == 3 * 2 * 2 + 3 + 1


def test_a_typed_folder_that_the_window_passes_over_whole_is_no_error(tmp_path):
    write_gz(tmp_path / "t" / f"{ms('2020-01-01') // 1000}.src.uuid.json.gz", [event(1, ms("2020-01-01"))])
    code, numbers, err, report = send_dry(tmp_path, "--since", "2024-03-10", str(tmp_path / "t"))
    assert code == 0, err
    assert numbers == [] and report["pruned_objects"] == 1
    assert "cannot open" not in err


def test_lateness_without_until_is_a_usage_error(tmp_path):
    write_gz(tmp_path / "t" / "x.json.gz", [event(1, ms("2024-03-10"))])
    code, numbers, err, report = send_dry(tmp_path, "--since", "2024-03-10", "--lateness", "2d", str(tmp_path / "t"))
    assert code == 2 and numbers == [] and report is None
    assert "--lateness needs --until" in err and "Traceback" not in err


def test_a_lateness_that_is_no_duration_is_a_usage_error(tmp_path):
    code, numbers, err, _ = send_dry(tmp_path, "--until", "2024-03-10", "--lateness", "two days", str(tmp_path))
    assert code == 2
    assert "'two days' is not a duration" in err


# ---- buckets: the same pruning, and one GET an object ---------------------------------------------

def _listed_prefixes(requests, bucket):
    prefixes = []
    for method, target in requests:
        url = urlsplit(target)
        if method == "GET" and url.path.strip("/") == bucket and "list-type=2" in url.query:
            prefixes.append(unquote(parse_qs(url.query).get("prefix", [""])[0]))
    return prefixes


def test_a_bucket_prefix_is_pruned_folder_by_folder_never_listing_a_pruned_folder(bucket, s3_endpoint, tmp_path):
    src = f"{bucket}/rudder-logs/src"
    for day in (7, 8, 9, 10, 20):  # 03-07 and 03-08 before the margin, 03-20 past the lateness
        folder = f"03-{day:02d}-2024" if day < 9 else f"2024-03-{day:02d}"
        when = ms(f"2024-03-{day:02d}", 12)
        put_gz(f"{src}/{folder}/{when // 1000}.src.uuid.json.gz", [event(day, when)])
    put_gz(f"{src}/2024-03-10/{ms('2024-03-21') // 1000}.src.late.json.gz", [event(99, ms("2024-03-10"))])
    put_gz(f"{src}/2024-03-10/undated.json.gz", [event(98, ms("2024-03-10", 1))])
    before = len(store_requests())
    code, numbers, err, report = send_dry(tmp_path, "--endpoint-url", s3_endpoint, "--since", "2024-03-10",
                                          "--until", "2024-03-17", "--lateness", "2d", f"s3://{src}/")
    assert code == 0, err
    assert numbers == [10, 98]  # 03-09's event is before since: read, left out by the event filter
    assert (report["pruned_folders"], report["pruned_objects"]) == (3, 1)
    requests = store_requests()[before:]
    listed = _listed_prefixes(requests, bucket)
    assert "rudder-logs/src/2024-03-10/" in listed and "rudder-logs/src/2024-03-09/" in listed
    assert not [p for p in listed if "03-07" in p or "03-08" in p or "03-20" in p]  # pruned: never listed
    gets = [target for method, target in requests if method == "GET" and "list-type" not in target]
    assert not any("03-07" in t or "03-08" in t or "03-20" in t or ".late." in t for t in gets)  # nor fetched


def test_each_object_of_a_prefix_costs_one_get_and_no_head(bucket, s3_endpoint, tmp_path):
    for i in range(6):
        put_gz(f"{bucket}/logs/2024-03-1{i // 3}/{1710000000 + i}.src.u.json.gz", [event(i, ms("2024-03-10"))])
    big = "".join(json.dumps(event(10 + i, ms("2024-03-10"))) + "\n" for i in range(3))
    store().pipe(f"{bucket}/logs/2024-03-11/plain.ndjson", big.encode())  # not gzip
    before = len(store_requests())
    code, numbers, err, _ = send_dry(tmp_path, "--endpoint-url", s3_endpoint, f"s3://{bucket}/logs/")
    assert code == 0, err
    assert sorted(numbers) == [0, 1, 2, 3, 4, 5, 10, 11, 12]
    requests = store_requests()[before:]
    assert [method for method, _ in requests if method == "HEAD"] == []
    gets = [urlsplit(target).path for method, target in requests if method == "GET" and "list-type" not in target]
    assert sorted(gets) == sorted(f"/{bucket}/logs/2024-03-1{i // 3}/{1710000000 + i}.src.u.json.gz"
                                  for i in range(6)) + [f"/{bucket}/logs/2024-03-11/plain.ndjson"]


def test_a_large_object_is_one_streamed_get(bucket, s3_endpoint, monkeypatch):
    from gspx_cli.read import remote
    from gspx_cli.read.reader import iter_records

    put_gz(f"{bucket}/big/2024-03-10/1710000000.src.u.json.gz", [event(i, ms("2024-03-10")) for i in range(3)])
    monkeypatch.setattr(remote, "PREFETCH_MAX_BYTES", 0)  # every object "large": streamed at its turn
    monkeypatch.setattr(remote, "_endpoint_url", s3_endpoint)
    before = len(store_requests())
    records = list(iter_records([f"s3://{bucket}/big/"]))
    assert [r.event["properties"]["n"] for r in records] == [0, 1, 2]
    requests = store_requests()[before:]
    assert [m for m, _ in requests if m == "HEAD"] == []
    assert len([t for m, t in requests if m == "GET" and "list-type" not in t]) == 1


class _FakeGcs:
    """A 127.0.0.1 server answering gcsfs's media downloads (GET .../o/NAME?alt=media) of one object
    with its generation, as GCS does; every request recorded."""

    def __init__(self, body):
        import http.server
        import threading

        seen = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                seen.append((self.command, self.path))
                missing = "missing" in self.path
                self.send_response(404 if missing else 200)
                data = b"No such object" if missing else body
                self.send_header("Content-Length", str(len(data)))
                if not missing:
                    self.send_header("x-goog-generation", "1710000000000001")
                    self.send_header("x-goog-stored-content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_HEAD = do_GET  # noqa: N815 - recorded, never expected

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def test_a_gs_object_is_one_get_read_as_it_arrives_with_its_generation_as_identity():
    import gzip as gz

    import gcsfs

    from gspx_cli.read import objects, remote

    body = gz.compress(b"".join(json.dumps(event(i, ms("2024-03-10"))).encode() + b"\n" for i in range(50)))
    fake = _FakeGcs(body)
    try:
        fs = gcsfs.GCSFileSystem(endpoint_url=fake.url, token="anon", skip_instance_cache=True)
        with objects.gcs_get(fs, "bkt/logs/2024-03-10/1710000000.src.u.json.gz") as fh:
            assert remote.identity(fh.details) == {"size": len(body), "version": "generation:1710000000000001"}
            assert fh.read(10) + fh.read() == body
        assert fake.requests == [("GET", "/download/storage/v1/b/bkt/o/logs%2F2024-03-10%2F1710000000.src.u.json.gz"
                                          "?alt=media")]
        with pytest.raises(FileNotFoundError):
            objects.gcs_get(fs, "bkt/missing.json.gz")
    finally:
        fake.server.shutdown()


@pytest.mark.parametrize("name, is_dir", [("0000000001.json", False), ("0000000000001.gz", False),
                                          ("0000000000000", True), ("12345678901.json", False)])
def test_numbers_padded_with_zeros_or_of_other_lengths_are_no_unix_times(name, is_dir):
    assert span(name, is_dir) is None
