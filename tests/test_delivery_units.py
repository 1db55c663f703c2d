"""RetryPolicy, RateLimiter, Sender and Executor without a real server or real sleeping."""

import email.utils
import subprocess
import sys

import pytest

from gspx_cli.delivery.executor import Executor
from gspx_cli.delivery.gate import CLOSED, OPEN, SUSPECT
from gspx_cli.delivery.sender import (Decision, Halt, Interrupted, RateLimiter, RequestStats, RetryPolicy, Sender,
                             retry_after_seconds)
from gspx_cli.errors import AuthRejectedError, PxError
from gspx_cli.mapping.plan import Plan, RequireUser, Update, Upsert
from gspx_cli.delivery.px import PxClient


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, None])  # None: timeout / connection error
def test_retryable_answers_are_retried_with_a_delay(status):
    decision = RetryPolicy(5, rand=lambda: 0.5).decide(0, status)
    assert decision.action == "retry" and decision.delay > 0


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_other_4xx_fail_without_retry(status):
    assert RetryPolicy(5).decide(0, status) == Decision("fail")


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_stops_the_run(status):
    assert RetryPolicy(5).decide(0, status).action == "stop"


def test_retries_stop_after_max_retries():
    policy = RetryPolicy(2, rand=lambda: 0.0)
    assert policy.decide(1, 503).action == "retry"
    assert policy.decide(2, 503) == Decision("fail")


def test_backoff_doubles_and_is_capped_with_jitter_inside_the_band():
    low = RetryPolicy(10, rand=lambda: 0.0, base=1.0, cap=8.0)
    high = RetryPolicy(10, rand=lambda: 0.999, base=1.0, cap=8.0)
    assert [low.decide(n, 503).delay for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.decide(n, 503).delay, 2) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_failure_while_the_gate_holds_is_retried_without_using_up_retries():
    policy = RetryPolicy(2, rand=lambda: 0.0)
    assert policy.decide(2, 503, standing=CLOSED) == Decision("hold", spent=False)  # out of retries, PX down
    assert policy.decide(0, None, standing=CLOSED) == Decision("hold", spent=False)
    assert policy.decide(0, 400, standing=CLOSED) == Decision("fail")  # about this request, whatever PX's state
    assert policy.decide(0, 401, standing=CLOSED).action == "stop"


def test_a_failure_while_px_is_suspect_is_retried_with_growing_backoff_at_no_cost():
    policy = RetryPolicy(2, rand=lambda: 0.0, base=0.5, cap=30.0)
    # out of retries, but several requests fail and none is answered: maybe PX's fault, so no retry is spent
    assert policy.decide(2, 503, standing=SUSPECT, attempts=3) == Decision("retry", 1.0, spent=False)
    assert policy.decide(2, None, standing=SUSPECT, attempts=6).delay == 8.0  # the backoff still grows
    assert policy.decide(2, 503, standing=OPEN, attempts=3) == Decision("fail")  # PX answers others: its own
    assert policy.decide(1, 503, standing=OPEN, attempts=2) == Decision("retry", 0.5)


def test_a_retry_spent_after_free_ones_waits_on_the_requests_own_backoff():
    policy = RetryPolicy(5, rand=lambda: 0.0, base=0.5, cap=30.0)
    # five free tries in weather took the backoff to 16 s (8-16 s with jitter); alone now, its first own
    # retry waits 0.25-0.5 s, so an event PX always refuses ends within its own retries' backoff (issue 23)
    assert policy.decide(0, 502, standing=SUSPECT, attempts=6) == Decision("retry", 8.0, spent=False)
    assert policy.decide(0, 502, standing=OPEN, attempts=6) == Decision("retry", 0.25)
    assert [policy.decide(n, 502, standing=OPEN, attempts=8 + n).delay for n in range(5)] == [0.25, 0.5, 1, 2, 4]


NOW = 1_700_000_000.0  # an injected "now" (epoch seconds) for Retry-After dates


@pytest.mark.parametrize("value, seconds", [
    ("7", 7.0),
    ("120", 120.0),
    ("86400", 86400.0),  # no cap: only delivery.max_outage bounds a wait
    (" 3 ", 3.0),
    ("1.5", 1.5),  # not RFC, but unambiguous
    ("0", 0.0),
    (email.utils.formatdate(NOW + 20, usegmt=True), 20.0),  # an HTTP date
    (email.utils.formatdate(NOW + 3600, usegmt=True), 3600.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # in the past: nothing to wait for
    (email.utils.formatdate(NOW + 20, usegmt=True).replace(" GMT", ""), 20.0),  # no zone: read as GMT
    (email.utils.formatdate(NOW + 20, localtime=False).replace("-0000", "+0100"), 0.0),  # 1 h ahead of GMT
    ("soon", None),
    ("-5", None),
    ("", None),
    (None, None),
    ("Wed, 99 Foo 2015 07:28:00 GMT", None),
])
def test_retry_after_seconds_reads_seconds_and_http_dates_from_an_injected_now(value, seconds):
    got = retry_after_seconds(value, NOW)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_requests_evenly():
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(9):
        limiter.acquire()
        stamps.append(clock.now)
    assert [round(b - a, 6) for a, b in zip(stamps, stamps[1:])] == [0.25] * 8
    # in any one-second window at most rate + 1 requests start
    assert max(sum(1 for s in stamps if t <= s < t + 1) for t in stamps) <= 5


def test_rate_limiter_does_not_bank_idle_time_into_a_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 60  # idle for a minute
    for _ in range(3):
        limiter.acquire()
    assert clock.sleeps == pytest.approx([0.1, 0.1])


def _sender(fake_px, *, max_retries=3, stop=None):
    px, base_url = fake_px
    stats = RequestStats()
    client = PxClient(base_url, "test-key-123", timeout=5)
    policy = RetryPolicy(max_retries, base=0.001, cap=0.002)
    return Sender(client, policy, RateLimiter(10_000), stop or Halt(), stats), stats


def test_sender_retries_503_until_success_and_counts_retries(fake_px):
    px, _ = fake_px
    px.fail_first = 2
    sender, stats = _sender(fake_px)
    resp = sender.call("POST", "/events/custom", {"identifyId": "u", "eventName": "e"})
    assert resp.ok
    assert len(px.events) == 1
    assert stats.total == 3 and stats.retries == 2


def test_sender_gives_up_after_max_retries_with_px_message(fake_px):
    px, _ = fake_px
    px.fail_first = 10
    sender, _ = _sender(fake_px, max_retries=2)
    with pytest.raises(PxError) as info:
        sender.call("GET", "/users/u1")
    assert info.value.status == 503 and "gave up after 2 retries" in info.value.message


def test_a_request_giving_up_on_a_lost_connection_names_pxs_last_answer(fake_px):
    px, _ = fake_px
    px.fail_always("Doomed", 502)
    real_handle = px.handle

    def handle(method, path, headers, body, hang_up=False):  # its last try meets a closed connection
        return real_handle(method, path, headers, body, hang_up=hang_up or len(px.requests) == 2)

    px.handle = handle
    sender, _ = _sender(fake_px, max_retries=2)
    with pytest.raises(PxError) as info:
        sender.call("POST", "/events/custom", {"identifyId": "u", "eventName": "Doomed"})
    assert [r.status for r in px.requests] == [502, 502, 0]
    assert info.value.status == 502
    assert info.value.message.startswith("POST /events/custom: HTTP 502: Bad Gateway")
    assert "last try: connection failed or was dropped" in info.value.message and "<" not in info.value.message


def test_sender_raises_auth_rejected_on_401_with_base_url(fake_px):
    px, base_url = fake_px
    px.api_key = "the-right-key"
    sender, stats = _sender(fake_px)
    with pytest.raises(AuthRejectedError) as info:
        sender.call("GET", "/users/u1")
    assert info.value.status == 401 and base_url in str(info.value)
    assert "test-key-123" not in str(info.value)
    assert stats.total == 1


def test_sender_retries_dropped_connections(fake_px):
    px, _ = fake_px
    px.drop_first = 1
    sender, stats = _sender(fake_px)
    assert sender.call("POST", "/events/custom", {"identifyId": "u", "eventName": "e"}).ok
    assert len(px.events) == 1 and stats.retries == 1


def test_sender_starts_no_request_once_stopped(fake_px):
    stop = Halt()
    stop.set()  # a signal: soft
    sender, stats = _sender(fake_px, stop=stop)
    with pytest.raises(Interrupted):
        sender.call("GET", "/users/u1")
    assert stats.total == 0


def test_sender_does_not_wait_out_a_backoff_when_stopped_meanwhile(fake_px):
    import threading
    import time

    px, _ = fake_px
    px.fail_first = 5
    stop = Halt()
    px_client = PxClient(fake_px[1], "test-key-123", timeout=5)
    stats = RequestStats()
    sender = Sender(px_client, RetryPolicy(3, base=30.0, cap=30.0), RateLimiter(10_000), stop, stats)
    threading.Timer(0.3, stop.set).start()  # the stop comes during the first 15-30 s backoff
    started = time.monotonic()
    with pytest.raises(Interrupted):
        sender.call("GET", "/users/u1")
    assert time.monotonic() - started < 5 and stats.total == 1


def _user_plan(uid, body=None):
    body = body or {"type": "USER", "propertyKeys": ["AP-1"]}
    return Plan("identify", uid, (Upsert("user", uid, body, {**body, "identifyId": uid}),))


def _calls(px):
    return [(r.method, r.path) for r in px.requests]


def test_group_for_unknown_user_fails_saying_identify_first(fake_px):
    sender, _ = _sender(fake_px)
    plan = Plan("group", "ghost", (RequireUser("ghost"), Update("user", "ghost", {"accountId": "g"})))
    with pytest.raises(PxError, match="identify for this user must come first"):
        Executor(sender).execute(plan)


def test_account_without_name_fails_with_create_error(fake_px):
    sender, _ = _sender(fake_px)
    step = Upsert("account", "g1", {}, None, create_error="cannot create account 'g1' without a name")
    with pytest.raises(PxError, match="without a name"):
        Executor(sender).execute(Plan("group", "u1", (step,)))


def test_a_px_client_that_makes_no_request_never_loads_requests():
    # a resume with nothing new to send pays no start-up for requests (~50 ms of imports)
    code = ("import sys\nfrom gspx_cli.delivery.px import PxClient\n"
            "PxClient('http://127.0.0.1:9/v1', 'k', pool_size=4).close()\nprint('requests' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


@pytest.mark.parametrize("cls", ["KnownIds", "LocalIds"])
def test_known_objects_past_their_bound_forget_the_least_recently_written_first(cls):
    from gspx_cli.delivery import executor

    ids = getattr(executor, cls)(3)
    for object_id in ("a", "b", "c"):
        ids.add(object_id, f"d-{object_id}")
    ids.add("a", "d-a2")  # written again: now the youngest
    ids.add("d", "d-d")  # past the bound: "b" is the oldest and goes
    assert [ids.get(k) for k in ("a", "b", "c", "d")] == ["d-a2", None, "d-c", "d-d"]
    for n in range(100):  # far past the bound, it holds exactly the last three
        ids.add(f"x{n}")
    assert [ids.get(k) for k in ("x96", "x97", "x98", "x99")] == [None, "", "", ""]
