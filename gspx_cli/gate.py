"""The gate every attempt passes, together with the rate limiter (CLI.md "Delivery under failures").

Normally it is open. It closes in two cases, for every request of every user at once:

- *holding*: Gainsight PX looks down. Nothing starts except one probe at a time, at growing intervals;
  the first answer ends the hold.
- *waiting*: PX sent a Retry-After. Nothing starts before it has passed, since the limit is the
  subscription's, not one request's.

The rule that tells "PX is down" from "this request is bad" lives in GateState.report(); GateState reads
no clock (every method takes `now`), so its schedule is tested without sleeping (STYLE habit 7).
"""

import threading
import time
from dataclasses import dataclass

from gspx_cli.errors import OutageError

HOLD_AFTER_FAILURES = 3  # retryable failures in a row across the run, no answer in between, before holding
HOLD_MIN_REQUESTS = 2  # ... coming from at least this many requests: one request failing alone may be its own fault
PROBE_FIRST = 1.0  # CLI.md: probes about 1 s apart at first,
PROBE_CAP = 30.0  # doubling, at most 30 s apart

# what an attempt came back with, as the gate sees it
ANSWERED = "answered"  # PX answered: 2xx, or a 4xx about this request (PX is up, whatever the request's fate)
FAILED = "failed"  # a retryable status (429, 5xx)
LOST = "lost"  # no answer: a timeout or a connection error


class _Ticket:
    """The gate's permission for one attempt; `probe` when it is the one attempt allowed during a hold."""

    __slots__ = ("probe", "generation")

    def __init__(self, probe, generation):
        self.probe = probe
        self.generation = generation


@dataclass(frozen=True)
class GateNews:
    """A hold or wait began ("hold", "wait") or ended ("end"); times are seconds on the gate's clock."""

    kind: str
    since: float  # when the episode began
    reason: str = ""  # e.g. "HTTP 503", "no answer within 10s (timeout)"
    failures: int = 0  # failures in a row that started it
    next_try: float | None = None  # when the next attempt may start
    duration: float = 0.0  # for "end": how long it lasted
    max_outage: float = 0.0


class GateState:
    """The gate's bookkeeping and its whole rule; not thread-safe (Gate locks it), reads no clock."""

    def __init__(self, max_outage, *, hold_after=HOLD_AFTER_FAILURES, min_requests=HOLD_MIN_REQUESTS,
                 probe_first=PROBE_FIRST, probe_cap=PROBE_CAP):
        self.max_outage = max_outage
        self._hold_after = hold_after
        self._min_requests = min_requests
        self._probe_first = probe_first
        self._probe_cap = probe_cap
        self.streak = 0  # retryable failures since the last answer
        self._streak_requests = set()
        self._streak_all_lost = True  # the streak is only timeouts / connection errors
        self.since = None  # start of the current hold or wait; None while open
        self.holding = False
        self.not_before = None  # Retry-After: no attempt starts before this
        self.probe_out = False
        self.next_probe = None
        self._interval = probe_first
        self.reason = ""
        self.outage = False  # held past max_outage: every waiting request gives up
        self.generation = 0  # bumped whenever the gate closes further; a ticket from before is stale
        self.holds = 0
        self.held_seconds = 0.0

    @property
    def closed(self):
        """True while holding or waiting (until PX answers again)."""
        return self.since is not None

    def admit(self, now):
        """("go" | "probe" | "outage", 0) or ("wait", seconds): may an attempt start now?"""
        if self.since is None:
            return "go", 0.0
        deadline = self.since + self.max_outage
        if self.outage or now >= deadline:
            self.outage = True
            return "outage", 0.0
        if self.not_before is not None and now < self.not_before:
            return "wait", min(self.not_before, deadline) - now
        if not self.holding:
            return "go", 0.0  # the Retry-After has passed and nothing says PX is down: everyone goes
        if self.probe_out:
            return "wait", deadline - now  # woken when the probe comes back
        if now < self.next_probe:
            return "wait", min(self.next_probe, deadline) - now
        self.probe_out = True
        return "probe", 0.0

    def release(self, probe):
        """An admitted attempt ended without a report (the run is stopping): free the probe slot."""
        if probe:
            self.probe_out = False

    def report(self, now, request, outcome, *, reason="", retry_after=None, probe=False):
        """Take one attempt's outcome; returns GateNews when a hold or wait begins or ends, else None.

        The rule: PX is *down* after HOLD_AFTER_FAILURES retryable failures in a row across the run,
        with no answer of any kind in between, from at least HOLD_MIN_REQUESTS different requests; a
        streak made only of timeouts and connection errors counts from one request too, since those
        say nothing about the request. Any answer (a 2xx, or a 4xx about the request) means PX is up.
        A request that fails while others get answers is "bad", and only it spends its retries.
        """
        if probe:
            self.probe_out = False
        if outcome == ANSWERED:
            self.streak = 0
            self._streak_requests.clear()
            self._streak_all_lost = True
            if self.since is None:
                return None
            news = GateNews("end", self.since, self.reason, duration=now - self.since)
            self.held_seconds += now - self.since
            self.since = self.next_probe = self.not_before = None
            self.holding = self.probe_out = False
            self._interval = self._probe_first
            return news
        self.streak += 1
        self._streak_requests.add(request)
        self._streak_all_lost = self._streak_all_lost and outcome == LOST
        news = None
        if retry_after:  # 0 or a date in the past: nothing to wait for
            until = now + retry_after
            if self.not_before is None or until > self.not_before:
                self.not_before = until
                self.generation += 1
            if self.since is None:
                news = self._begin(now, "wait", f"{reason}, Retry-After {_seconds(retry_after)}")
            if until > self.since + self.max_outage:
                self.outage = True  # PX asks for longer than we may hold: waiting cannot help
        if not self.holding and self.streak >= self._hold_after and (
                len(self._streak_requests) >= self._min_requests or self._streak_all_lost):
            self.holding = True
            self._interval = self._probe_first
            self.next_probe = now + self._interval
            self.generation += 1
            if self.since is None:
                news = self._begin(now, "hold", reason)
        elif self.holding and probe:
            self._interval = min(self._probe_cap, self._interval * 2)
            self.next_probe = now + self._interval
        return news

    def close(self, now):
        """End of the run: a hold still going counts into held_seconds."""
        if self.since is not None:
            self.held_seconds += now - self.since
            self.since = None

    def _begin(self, now, kind, reason):
        self.since = now
        self.reason = reason
        self.holds += 1
        self.generation += 1
        next_try = self.not_before if kind == "wait" else self.next_probe
        return GateNews(kind, now, reason, failures=self.streak, next_try=next_try, max_outage=self.max_outage)


def _seconds(value):
    return f"{value:g}s"


class Gate:
    """GateState shared by the workers: enter() before each attempt, report() after it.

    Every wait wakes when the Halt is set, so a signal during a two-minute Retry-After still ends the
    run within about a second. `on_news(GateNews)` is called outside the lock (it prints).
    """

    def __init__(self, halt, max_outage, *, stats=None, on_news=None, clock=time.monotonic,
                 wall=time.time, **schedule):
        self._state = GateState(max_outage, **schedule)
        self._halt = halt
        self._stats = stats
        self._on_news = on_news
        self._clock = clock
        self._wall = wall
        self._cond = threading.Condition()
        halt.on_set(self._wake)

    def enter(self):
        """Wait until an attempt may start; a _Ticket. Raises OutageError past max_outage, and
        Interrupted (from sender) when the run stops meanwhile."""
        state = self._state
        if not state.closed:  # the common case, without the lock (a stale read only lets one more go)
            return _Ticket(False, state.generation)
        from gspx_cli.sender import Interrupted

        with self._cond:
            while True:
                verdict, wait = state.admit(self._clock())
                if verdict == "go":
                    return _Ticket(False, state.generation)
                if verdict == "probe":
                    return _Ticket(True, state.generation)
                if verdict == "outage":
                    raise OutageError(self._outage_message())
                if self._halt.is_set():
                    raise Interrupted()
                self._cond.wait(max(wait, 0.001))

    def stale(self, ticket):
        """True when the gate closed while this attempt waited for its rate-limiter slot: re-enter."""
        return not ticket.probe and ticket.generation != self._state.generation

    def release(self, ticket):
        """The admitted attempt was not made (stopping): let another probe go."""
        if ticket.probe:
            with self._cond:
                self._state.release(True)
                self._cond.notify_all()

    def report(self, ticket, request, outcome, *, reason="", retry_after=None):
        """Tell the gate how an attempt went; returns True while the gate is closed (the attempt's
        failure then does not use up the request's retries)."""
        state = self._state
        if outcome == ANSWERED and not ticket.probe and state.streak == 0 and not state.closed:
            return False  # the common case, without the lock
        with self._cond:
            news = state.report(self._clock(), request, outcome, reason=reason, retry_after=retry_after,
                                probe=ticket.probe)
            closed = state.closed
            self._publish()
            self._cond.notify_all()
        if news is not None and self._on_news is not None:
            self._on_news(self._to_wall(news))
        return closed

    def close(self):
        """End of the run: count a hold still going."""
        with self._cond:
            self._state.close(self._clock())
            self._publish()

    def _publish(self):
        """Copy what the progress display, summary and --report show into RequestStats."""
        stats, state = self._stats, self._state
        if stats is None:
            return
        stats.holds = state.holds
        stats.held_seconds = state.held_seconds
        if state.since is None:
            stats.hold = None
        else:
            stats.hold = ("holding" if state.holding else "waiting", self._wall() - (self._clock() - state.since))

    def _to_wall(self, news):
        """News with its times on the wall clock, for people."""
        offset = self._wall() - self._clock()
        next_try = None if news.next_try is None else news.next_try + offset
        return GateNews(news.kind, news.since + offset, news.reason, news.failures, next_try, news.duration,
                        news.max_outage)

    def _outage_message(self):
        state = self._state
        held = self._clock() - state.since
        since = time.strftime("%H:%M:%S", time.localtime(self._wall() - held))
        if held < state.max_outage:
            why = (f"it asks to wait longer (Retry-After) than delivery.max_outage allows "
                   f"({state.max_outage:g}s)")
        else:
            why = f"for longer than delivery.max_outage ({state.max_outage:g}s)"
        return f"Gainsight PX stayed unavailable ({state.reason}, since {since}): {why}; stopping"

    def _wake(self):
        with self._cond:
            self._cond.notify_all()
