"""Extra retries only in weather (issue 23, CLI.md "Delivery under failures"): a failure is free only when
*other* requests failed lately too (since the request's previous failure, within about 30 s), at most
three extra per allowed retry; a request failing alone spends its own retries on its own backoff.

GateState and RetryPolicy read no clock: a whole request's life is played here on a fake clock, the
others' failures interleaved at the times they would come, so minutes of backoff take microseconds.
"""

import itertools
import math

import pytest

from gspx_cli.delivery.gate import ANSWERED, FAILED, LOST, OPEN, SUSPECT, GateState
from gspx_cli.delivery.sender import FREE_RETRIES_PER_RETRY, RetryPolicy

DOOMED = 0  # the request PX always refuses
NO_HOLD = dict(quiet=math.inf)  # these tests are about retries: PX never looks down for long enough
_others = itertools.count(1000)


def _weather(state, start, end, every=0.1):
    """Other requests fail in [start, end), one every `every` s, each followed by another's answer
    (PX is up, flaky): distinct request ids, so several requests fail."""
    ids = _others
    t = start
    while t < end:
        state.report(t, next(ids), FAILED, reason="HTTP 503")
        state.report(t, next(ids), ANSWERED)
        t += every


def _play_doomed(max_retries, weather_until, *, start=0.0, every=0.1):
    """The doomed request's attempts from `start`, others failing until `weather_until`, retried as
    Sender.call does; returns its tries as (time, "free" | "spent" | "fail"), the last one "fail"."""
    state = GateState(3600.0, **NO_HOLD)
    policy = RetryPolicy(max_retries, rand=lambda: 0.5)
    _weather(state, 0.0, min(start, weather_until), every)
    now, seen, retries, free, tries = start, start, 0, 0, []
    while len(tries) < 200:
        _weather(state, seen, min(now, weather_until), every)  # what the others met while it waited
        seen = max(seen, now)
        standing = state.report(now, DOOMED, FAILED, reason="HTTP 502")
        decision = policy.decide(retries, 502, standing=standing, attempts=len(tries) + 1, free_done=free)
        if decision.action == "fail":
            return tries + [(now, "fail")]
        tries.append((now, "spent" if decision.spent else "free"))
        retries += decision.spent
        free += not decision.spent
        now += decision.delay
    raise AssertionError("the doomed request never ended")


def _kinds(tries):
    return [kind for _, kind in tries]


def _own_schedule(max_retries):
    """Seconds the doomed request's own retries wait in all, with rand 0.5 (3/4 of each backoff)."""
    return sum(0.75 * min(30.0, 0.5 * 2 ** k) for k in range(max_retries))


@pytest.mark.parametrize("ago, standing", [(29.0, SUSPECT), (31.0, OPEN)])
def test_a_failure_is_free_only_when_other_requests_failed_within_the_last_30_seconds(ago, standing):
    state = GateState(3600.0, **NO_HOLD)
    _weather(state, 0.0, 1.0)  # ten requests failed, ten others were answered
    assert state.report(1.0 + ago, DOOMED, FAILED) == standing


def test_a_request_failing_again_when_nobody_else_failed_since_its_last_failure_spends_its_own_retry():
    state = GateState(3600.0, **NO_HOLD)
    _weather(state, 0.0, 1.0)
    assert state.report(1.0, DOOMED, FAILED) == SUSPECT  # others fail as it does: weather
    assert state.report(2.0, DOOMED, FAILED) == OPEN  # the others' failures are from before its last one
    _weather(state, 2.5, 3.0)
    assert state.report(3.0, DOOMED, FAILED) == SUSPECT  # fresh ones again


def test_a_request_failing_while_the_others_are_answered_spends_its_own_retries():
    state = GateState(3600.0, **NO_HOLD)
    for t in range(50):
        state.report(t, 100 + t, ANSWERED)
        assert state.report(t + 0.5, DOOMED, FAILED) == OPEN


def test_one_other_request_failing_is_not_weather():
    state = GateState(3600.0, **NO_HOLD)
    for t in range(10):
        state.report(t, 7, FAILED)  # another bad request, its retries among answers
        state.report(t, 100 + t, ANSWERED)
        assert state.report(t + 0.5, DOOMED, FAILED) == OPEN


def test_timeouts_in_a_row_say_nothing_about_the_request_even_from_one_alone():
    state = GateState(3600.0, **NO_HOLD)
    assert [state.report(t, DOOMED, LOST) for t in range(4)] == [OPEN, OPEN, SUSPECT, SUSPECT]


@pytest.mark.parametrize("max_retries", [1, 2, 5])
def test_in_weather_that_never_ends_a_refused_request_takes_at_most_three_extra_tries_per_allowed_retry(
        max_retries):
    kinds = _kinds(_play_doomed(max_retries, weather_until=math.inf))
    assert kinds.count("free") == FREE_RETRIES_PER_RETRY * max_retries == 3 * max_retries
    assert kinds.count("spent") == max_retries and kinds[-1] == "fail"


@pytest.mark.parametrize("max_retries", [2, 5])
def test_a_request_failing_alone_spends_its_own_retries_on_its_own_backoff(max_retries):
    tries = _play_doomed(max_retries, weather_until=0.0, start=100.0)
    assert _kinds(tries) == ["spent"] * max_retries + ["fail"]
    assert tries[-1][0] - tries[0][0] == pytest.approx(_own_schedule(max_retries))


@pytest.mark.parametrize("max_retries", [2, 5])
def test_once_the_other_requests_are_done_a_refused_request_ends_on_its_own_retries(max_retries):
    # issue 23: the others were done after a few seconds, yet their last failures kept granting free
    # retries, ever further apart, up to 3 x max_retries of them: 21 tries over ~6 minutes for one event
    tries = _play_doomed(max_retries, weather_until=5.0, start=2.0)
    for (before, _), (_, kind) in zip(tries, tries[1:]):
        if before >= 5.0:  # nobody failed since its previous try
            assert kind != "free"
    kinds = _kinds(tries)
    assert kinds.count("spent") == max_retries and 1 <= kinds.count("free") < 3 * max_retries
    # its last free wait (begun in the weather) and then its own retries: well under a minute
    took = tries[-1][0] - tries[0][0]
    assert took < 3.0 + 30.0 * 0.75 + _own_schedule(max_retries) < 45


def test_other_requests_failures_older_than_the_window_count_for_no_request():
    state = GateState(3600.0, recent=5.0, **NO_HOLD)  # the window is a knob: shortened here
    _weather(state, 0.0, 1.0)
    assert state.report(5.5, DOOMED, FAILED) == SUSPECT  # failures 0.5..0.9 s are within 5 s
    assert state.report(6.5, 1, FAILED) == OPEN  # a request's first failure; the weather is 5.6 s old
