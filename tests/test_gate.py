"""The shared gate (issue 11): the "PX is down" rule, the probe schedule, Retry-After and max_outage.

GateState reads no clock, so its schedule is driven here with an explicit `now`; the threaded Gate
is tested only for what needs threads (waking on a halt, giving up, telling the news), with short waits.
"""

import threading
import time

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from gspx_cli.errors import OutageError
from gspx_cli.delivery.gate import ANSWERED, CLOSED, FAILED, LOST, OPEN, SUSPECT, Gate, GateState
from gspx_cli.delivery.px import PxClient, error_message
from gspx_cli.errors import Interrupted
from gspx_cli.delivery.sender import Halt, RateLimiter, RequestStats, RetryPolicy, Sender, _answer_lost

F, L, A = FAILED, LOST, ANSWERED


def _state(max_outage=100.0, **kw):
    """The schedule tests start a hold as soon as PX is suspect (quiet=0); the quiet rule has its own tests."""
    return GateState(max_outage, **{"hold_after": 3, "min_requests": 2, "quiet": 0.0, "probe_first": 1.0,
                                    "probe_cap": 30.0, **kw})


@pytest.mark.parametrize("attempts, holding", [
    # (request id, outcome) in the order the gate heard them
    ([(1, F), (1, F), (1, F), (1, F), (1, F)], False),  # one request failing alone may be its own fault
    ([(1, F), (2, F), (1, F)], True),  # three in a row from two requests: PX is down
    ([(1, F), (2, F)], False),  # not yet three
    ([(1, F), (2, F), (3, A), (1, F), (2, F)], False),  # any answer in between resets the count
    ([(1, F), (2, F), (3, A), (1, F), (2, F), (3, F)], True),
    ([(1, L), (1, L), (1, L)], True),  # timeouts / connection errors say nothing about the request
    ([(1, L), (1, F), (1, L)], False),  # ... but a mixed streak from one request does
    ([(1, F), (2, L), (3, F)], True),
])
def test_px_counts_as_down_after_three_failures_in_a_row_from_two_requests(attempts, holding):
    state = _state()
    for request, outcome in attempts:
        state.report(0.0, request, outcome, reason="HTTP 503")
    assert state.holding is holding and state.closed is holding


def test_while_holding_one_probe_at_a_time_goes_at_1_2_4_8_16_30_30_seconds():
    state = _state(max_outage=1000.0)
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    now, probes = 0.0, []
    while len(probes) < 7:
        verdict, wait = state.admit(now)
        if verdict == "wait":
            now += wait
            continue
        assert verdict == "probe"
        probes.append(now)
        assert state.admit(now) == ("wait", pytest.approx(1000.0 - now))  # nobody else while it is out
        state.report(now, 9, F, probe=True)
    assert [b - a for a, b in zip([0.0] + probes, probes)] == [1, 2, 4, 8, 16, 30, 30]


def test_failures_of_requests_already_in_flight_do_not_push_the_probe_back():
    state = _state()
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    state.report(0.5, 4, F)  # sent before the hold began
    assert state.admit(0.9)[0] == "wait"
    assert state.admit(1.0)[0] == "probe"


def test_the_first_answer_ends_the_hold_and_everyone_goes_again():
    state = _state()
    for request in (1, 2, 3):
        state.report(10.0, request, F, reason="HTTP 503")
    assert state.admit(11.0)[0] == "probe"
    state.pop_news()
    state.report(11.5, 1, A, probe=True)
    [news] = state.pop_news()
    assert (news.kind, news.duration) == ("end", 1.5)
    assert [state.admit(11.5)[0] for _ in range(3)] == ["go", "go", "go"]
    assert (state.holds, state.held_seconds) == (1, 1.5)
    # a new outage starts a new schedule: the first probe 1 s after it began, not 2
    for request in (1, 2, 3):
        state.report(20.0, request, F)
    assert state.admit(20.9)[0] == "wait" and state.admit(21.0)[0] == "probe"
    assert state.holds == 2


def test_a_bad_request_answered_by_px_ends_the_hold_too():
    state = _state()
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    state.admit(1.0)
    state.report(1.1, 1, A, probe=True)
    assert state.pop_news()[-1].kind == "end"  # a 400 is an answer: PX is up


def test_holding_past_max_outage_gives_up_for_every_waiting_request():
    state = _state(max_outage=10.0)
    for request in (1, 2, 3):
        state.report(5.0, request, F)
    assert state.admit(14.9)[0] in ("wait", "probe")
    assert state.admit(15.0) == ("outage", 0.0)
    state.report(15.1, 7, A)  # too late: the run is stopping
    assert state.admit(15.2)[0] == "go"  # an answer still reopens the gate for whatever is in flight


def test_waits_never_outlast_the_outage_deadline():
    state = _state(max_outage=3.0)
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    state.admit(1.0)
    state.report(1.0, 9, F, probe=True)  # next probe at 3.0
    state.report(1.5, 8, F)
    assert state.admit(2.5) == ("wait", pytest.approx(0.5))


@pytest.mark.parametrize("retry_after, closed", [(120.0, True), (0.5, True), (0.0, False), (None, False)])
def test_a_retry_after_closes_the_gate_for_everyone_until_it_has_passed(retry_after, closed):
    state = _state(max_outage=10800.0)
    standing = state.report(100.0, 1, F, reason="HTTP 429", retry_after=retry_after)
    news = state.pop_news()
    assert state.closed is closed
    if not closed:
        assert news == [] and standing == OPEN and state.admit(100.0)[0] == "go"
        return
    assert standing == CLOSED  # the request waits at the gate: no retry spent
    assert [(n.kind, n.since, n.next_try) for n in news] == [("wait", 100.0, 100.0 + retry_after)]
    assert "Retry-After" in news[0].reason and "HTTP 429" in news[0].reason
    state.report(100.0 + retry_after / 2, 2, A)  # an answer to a request sent before the 429
    assert state.admit(100.0 + retry_after - 0.01)[0] == "wait"  # ... does not end the wait
    assert state.pop_news() == []
    assert state.admit(100.0 + retry_after)[0] == "go"  # nothing says PX is down: all go, at the full rate
    [end] = state.pop_news()
    assert (end.kind, end.duration) == ("waited", retry_after)


def test_a_later_longer_retry_after_extends_the_wait_and_a_shorter_one_does_not_shorten_it():
    state = _state()
    state.report(0.0, 1, F, retry_after=30.0)
    state.report(1.0, 2, F, retry_after=60.0)
    state.report(2.0, 3, F, retry_after=5.0)
    assert state.not_before == 61.0


def test_a_retry_after_beyond_max_outage_stops_at_once():
    state = _state(max_outage=60.0)
    state.report(0.0, 1, F, reason="HTTP 429", retry_after=86400.0)  # a daily quota: waiting cannot help
    assert state.admit(0.0) == ("outage", 0.0)


def test_a_retry_after_during_a_hold_holds_the_probe_back():
    state = _state()
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    state.report(0.2, 4, F, retry_after=20.0)
    assert state.admit(5.0) == ("wait", pytest.approx(15.2))
    assert state.admit(20.2)[0] == "probe"


def test_a_probe_that_never_reported_frees_its_slot():
    state = _state()
    for request in (1, 2, 3):
        state.report(0.0, request, F)
    assert state.admit(1.0)[0] == "probe"
    state.release(True)
    assert state.admit(1.0)[0] == "probe"


# -- the threaded Gate ---------------------------------------------------------------------------------


def _closed_gate(halt, max_outage=600.0, retry_after=120.0, **kw):
    gate = Gate(halt, max_outage, **kw)
    ticket = gate.enter()
    gate.report(ticket, 1, FAILED, reason="HTTP 429", retry_after=retry_after)
    return gate


def _in_thread(fn):
    """Run fn in a thread; returns (thread, box) where box gets ("ok", value) or ("raised", exc)."""
    box = []

    def run():
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(("raised", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_a_halt_wakes_a_request_waiting_out_a_two_minute_retry_after_at_once():
    halt = Halt()
    gate = _closed_gate(halt)
    t, box = _in_thread(gate.enter)
    t.join(0.3)
    assert t.is_alive()  # really waiting
    started = time.monotonic()
    halt.set()  # a SIGTERM: soft
    t.join(2)
    assert not t.is_alive() and time.monotonic() - started < 0.5
    assert box[0][0] == "raised" and isinstance(box[0][1], Interrupted)


def test_waiting_requests_give_up_with_outage_error_past_max_outage():
    gate = Gate(Halt(), 0.3, hold_after=1, min_requests=1, quiet=0.0, probe_first=10.0)
    gate.report(gate.enter(), 1, FAILED, reason="HTTP 503")
    started = time.monotonic()
    threads = [_in_thread(gate.enter) for _ in range(3)]
    for t, _ in threads:
        t.join(3)
    assert time.monotonic() - started < 1.5
    for _, box in threads:
        assert box[0][0] == "raised" and isinstance(box[0][1], OutageError)
        assert "delivery.max_outage (0.3s)" in str(box[0][1]) and "HTTP 503" in str(box[0][1])


def test_the_gate_tells_once_when_a_wait_begins_and_once_when_it_ends_and_counts_the_time():
    news, stats = [], RequestStats()
    gate = Gate(Halt(), 600.0, stats=stats, on_news=news.append)
    first, in_flight = gate.enter(), gate.enter()
    gate.report(first, 1, FAILED, reason="HTTP 429", retry_after=0.2)
    assert stats.hold[0] == "waiting" and abs(stats.hold[1] - time.time()) < 1
    gate.report(in_flight, 2, FAILED, retry_after=0.2)  # the same episode: no second line
    ticket = gate.enter()  # waits out the 0.2 s
    gate.report(ticket, 3, ANSWERED)
    assert [n.kind for n in news] == ["wait", "waited"]
    assert abs(news[0].since - time.time()) < 1  # wall-clock times, for people
    assert 0.15 < news[1].duration < 1 and stats.hold is None
    assert stats.holds == 1 and 0.15 < stats.held_seconds < 1


def test_a_request_that_waited_for_its_rate_slot_while_the_gate_closed_goes_back_to_the_gate():
    gate = Gate(Halt(), 60.0)
    early, other = gate.enter(), gate.enter()
    assert not gate.stale(early)
    gate.report(other, 1, FAILED, retry_after=5.0)
    assert gate.stale(early)  # it must not start before the Retry-After has passed


# -- Sender with the gate, behind `responses` ------------------------------------------------------


def _sender(fake_px, max_retries, **gate_kw):
    px, base_url = fake_px
    stats, halt = RequestStats(), Halt()
    gate = Gate(halt, 30.0, stats=stats, **gate_kw)
    client = PxClient(base_url, "test-key-123", timeout=5)
    return Sender(client, RetryPolicy(max_retries, base=0.001, cap=0.002), RateLimiter(10_000), halt, stats,
                  gate=gate), stats


def test_a_held_request_keeps_its_retries_and_is_delivered_when_px_answers_again(fake_px):
    px, _ = fake_px
    px.fail_first = 4  # with one retry allowed and no hold, this event would fail
    sender, stats = _sender(fake_px, 1, hold_after=2, min_requests=1, quiet=0.0, probe_first=0.001,
                            probe_cap=0.002)
    assert sender.call("POST", "/events/custom", {"identifyId": "u", "eventName": "e"}).ok
    assert stats.total == 5 and stats.holds == 1 and len(px.events) == 1


def test_a_retry_after_is_waited_out_in_full_by_the_request_that_got_it(fake_px):
    px, _ = fake_px
    px.fail_first, px.fail_status, px.retry_after = 1, 429, "0.3"
    sender, stats = _sender(fake_px, 0)  # no retries at all: the wait is not one
    started = time.monotonic()
    assert sender.call("GET", "/users/u1").status == 404
    assert time.monotonic() - started >= 0.29 and stats.total == 2


@pytest.mark.parametrize("method, path, body, expected", [
    ("POST", "/events/custom", {"identifyId": "u", "eventName": "e"}, 1),  # PX may now hold it twice
    ("GET", "/users/u1", None, 0),  # a read changes nothing
    ("PUT", "/users/u1", {"name": "x"}, 0),  # an update is idempotent
])
def test_a_retry_after_a_lost_answer_counts_as_a_possible_duplicate_only_for_custom_events(
        fake_px, method, path, body, expected):
    px, _ = fake_px
    px.drop_first = 1  # the stand-in's DROP: the request arrived, no answer went back
    sender, stats = _sender(fake_px, 3)
    sender.call(method, path, body)
    assert stats.possible_duplicates == expected


@pytest.mark.parametrize("exc, lost", [
    (requests.ReadTimeout(), True),  # sent, unanswered
    (requests.ConnectTimeout(), False),  # never connected: nothing sent
    (requests.ConnectionError(MaxRetryError(None, "/", NewConnectionError(None, "refused"))), False),
    (requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())), True),
    (requests.ConnectionError("FakePX dropped the connection"), True),
])
def test_only_answers_lost_after_sending_may_have_been_applied(exc, lost):
    assert _answer_lost(exc) is lost


# -- error text ---------------------------------------------------------------------------------


class _Resp:
    def __init__(self, status, reason, text):
        self.status_code, self.reason, self.text = status, reason, text


NGINX_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
             "</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")
STYLED = ("<!DOCTYPE html><html><head><style>body{color:red}</style><script>var x='<b>';</script></head>"
          "<body><!-- hidden --><p>Service&nbsp;Unavailable &amp; down for maintenance</p></body></html>")


@pytest.mark.parametrize("status, reason, text, expected", [
    (502, "Bad Gateway", NGINX_502, "Bad Gateway: 502 Bad Gateway 502 Bad Gateway nginx/1.25.3"),
    (503, "Service Unavailable", STYLED, "Service Unavailable: Service Unavailable & down for maintenance"),
    (504, "Gateway Timeout", "", "Gateway Timeout"),
    (502, "", "", "HTTP 502"),
    (500, "Internal Server Error", "upstream\x00 failed\n\n  badly", "Internal Server Error: upstream failed badly"),
    (400, "Bad Request", '{"externalapierror": {"status": 400, "message": "identifyId required"}}',
     "identifyId required"),  # PX's own JSON error wins
    (429, "Too Many Requests", '{"message": "slow down"}', "slow down"),
])
def test_an_error_body_that_is_not_json_shows_as_reason_and_plain_text(status, reason, text, expected):
    assert error_message(_Resp(status, reason, text)) == expected


def test_a_long_html_error_page_is_cut_to_about_100_characters_without_markup():
    page = "<html><body>" + "<p>Cloudflare error text, ray id 8f3a</p>" * 50 + "</body></html>"
    message = error_message(_Resp(520, "", page))
    assert len(message) <= 100 and "<" not in message and message.endswith("…")


# -- what people see ---------------------------------------------------------------------------------


def test_the_progress_counts_line_shows_a_hold_and_its_start_time():
    import io

    from gspx_cli.state.ledger import Ledger
    from gspx_cli.read.reader import ReadStats
    from gspx_cli.report.reporter import Reporter

    reqs, err = RequestStats(), io.StringIO()
    reporter = Reporter(err=err, out=io.StringIO(), progress=True)
    reporter.start(Ledger().stats, reqs, ReadStats())
    try:
        since = time.mktime((2024, 1, 1, 12, 0, 1, 0, 0, -1))  # local 12:00:01
        reqs.hold = ("holding", since)
        assert reporter._text.counts().endswith("holding: PX unavailable since 12:00:01")
        assert reporter._text.status_line().endswith("holding: PX unavailable since 12:00:01")  # the log line too
        reqs.hold = None
        assert "holding" not in reporter._text.counts()
    finally:
        reporter.stop()


def test_the_hold_warning_says_why_since_when_how_many_wait_and_when_the_next_try_is():
    import io

    from gspx_cli.delivery.gate import GateNews
    from gspx_cli.report.reporter import Reporter

    err = io.StringIO()
    reporter = Reporter(err=err, out=io.StringIO(), progress=False)
    since = time.mktime((2024, 1, 1, 12, 0, 1, 0, 0, -1))
    reporter.gate_news(GateNews("hold", since, "HTTP 503", failures=3, next_try=time.time() + 8,
                                max_outage=10800), 412)
    reporter.gate_news(GateNews("end", since, "HTTP 503", duration=83), 0)
    first, second = err.getvalue().splitlines()
    assert first.startswith("warning: Gainsight PX looks unavailable (3 failures in a row, last: HTTP 503) "
                            "since 12:00:01: holding 412 events")
    assert "next in 8s" in first or "next in 7s" in first
    assert "3h00m (delivery.max_outage, --max-outage)" in first
    assert second == "Gainsight PX answers again, after 1m23s held; resuming at the full rate"
