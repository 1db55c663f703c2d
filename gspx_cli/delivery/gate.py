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
from collections import deque
from dataclasses import dataclass

from gspx_cli.errors import Interrupted, OutageError

HOLD_AFTER_FAILURES = 3  # retryable failures in a row across the run, no answer in between, before PX is suspect
HOLD_MIN_REQUESTS = 2  # ... coming from at least this many requests: one request failing alone may be its own fault
# ... and no answer at all for this long. A PX that fails each request's first attempts still answers
# the third within ~1.5 s of backoff (0.5 s doubling): only silence longer than that says "down".
HOLD_QUIET = 5.0
# PX is *flaky* when at least this share of the last FLAKY_WINDOW attempts failed, from at least
# FLAKY_MIN_REQUESTS requests: the failures are its weather, not one request's, so retrying them spends
# nothing (up to a bound, sender.FREE_RETRIES_PER_RETRY). At 40% of attempts failing, a request fails
# 6 times in a row once in 250: with max_retries 5 a long backfill would lose events to weather.
FLAKY_WINDOW = 100
FLAKY_SHARE = 0.1
FLAKY_MIN_REQUESTS = 3
# Weather is only what *other* requests met lately (CLI.md): failures older than this, or from before
# the request's own previous failure, are stale. Without it, a request PX always refuses kept drawing
# free retries from the run's last failures long after every other request was done (issue 23: 21
# tries over ~6 minutes for one event).
RECENT_FAILURES = 30.0
PROBE_FIRST = 1.0  # CLI.md: probes about 1 s apart at first,
PROBE_CAP = 30.0  # doubling, at most 30 s apart
# The same request is the probe this many times in a row, so its attempts add up: a PX that fails only
# the first attempts of each request lets it through. Then another request's turn, so a request that
# fails for its own reasons cannot keep the gate shut.
PROBE_TURNS = 3

# what an attempt came back with, as the gate sees it
ANSWERED = "answered"  # PX answered: 2xx, or a 4xx about this request (PX is up, whatever the request's fate)
FAILED = "failed"  # a retryable status (429, 5xx)
LOST = "lost"  # no answer: a timeout or a connection error

# how a failed attempt stands, for the retry rule (sender.RetryPolicy)
OPEN = "open"  # PX answers others: the failure is this request's, it spends a retry
SUSPECT = "suspect"  # other requests fail too, lately (flaky, or no answer at all): retried with backoff, free
CLOSED = "closed"  # holding or waiting out a Retry-After: the gate paces the request, for free


class _Ticket:
    """The gate's permission for one attempt; `probe` when it is the one attempt allowed during a hold;
    `cohort` when it waited out a Retry-After and was let go the moment it passed."""

    __slots__ = ("probe", "generation", "cohort")

    def __init__(self, probe, generation, cohort=False):
        self.probe = probe
        self.generation = generation
        self.cohort = cohort


@dataclass(frozen=True)
class GateNews:
    """A hold or wait began ("hold", "wait") or ended ("end": PX answered; "waited": the Retry-After passed);
    times are seconds on the gate's clock."""

    kind: str
    since: float  # when the episode began
    reason: str = ""  # e.g. "HTTP 503", "no answer within 10s (timeout)"
    failures: int = 0  # failures in a row that started it
    next_try: float | None = None  # when the next attempt may start
    duration: float = 0.0  # for "end" and "waited": how long it lasted
    max_outage: float = 0.0


class GateState:
    """The gate's bookkeeping and its whole rule; not thread-safe (Gate locks it), reads no clock."""

    def __init__(self, max_outage, *, hold_after=HOLD_AFTER_FAILURES, min_requests=HOLD_MIN_REQUESTS,
                 quiet=HOLD_QUIET, probe_first=PROBE_FIRST, probe_cap=PROBE_CAP, probe_turns=PROBE_TURNS,
                 recent=RECENT_FAILURES):
        self.max_outage = max_outage
        self._recent = recent
        self._hold_after = hold_after
        self._min_requests = min_requests
        self._quiet = quiet
        self._probe_first = probe_first
        self._probe_cap = probe_cap
        self._probe_turns = probe_turns
        self.streak = 0  # retryable failures since the last answer
        self._streak_requests = set()
        self._streak_all_lost = True  # the streak is only timeouts / connection errors
        self._streak_since = None  # when the first failure of the streak came
        self.since = None  # start of the current hold or wait; None while open
        self.holding = False
        self.not_before = None  # Retry-After: no attempt starts before this
        self.probe_out = False
        self.next_probe = None
        self.probe_owner = None  # the request whose turn it is to probe; None: whoever comes first
        self._probe_fails = 0  # failed probes of the owner in a row
        self._interval = probe_first
        self.reason = ""
        self.outage = False  # held past max_outage: every waiting request gives up
        self.generation = 0  # bumped whenever the gate closes further; a ticket from before is stale
        self.holds = 0  # episodes begun (holds and waits): also their numbers
        self.ended = 0  # the number of the last episode that ended
        self.held_seconds = 0.0
        self.attempts = 0  # attempts reported; answers are counted without the lock (Gate.report)
        self._recent_failures = deque()  # (attempt number, time, request) of the recent failures, oldest first
        self.news = []  # GateNews not yet told (Gate tells them outside its lock)

    @property
    def closed(self):
        """True while holding or waiting."""
        return self.since is not None

    @property
    def suspect(self):
        """Failures in a row from several requests (or only lost answers), no answer since: maybe PX's fault."""
        return self.streak >= self._hold_after and (
            len(self._streak_requests) >= self._min_requests or self._streak_all_lost)

    def weather(self, now, request):
        """True when `request`'s failure, just reported, is likely PX's weather rather than its own fault:
        *other* requests failed too since its previous failure, within the last `recent` seconds, and
        either PX answers none (suspect) or they are a flaky share of the recent attempts."""
        recent = self._recent_failures
        while recent and (recent[0][0] <= self.attempts - FLAKY_WINDOW or recent[0][1] < now - self._recent):
            recent.popleft()
        # Failures are kept in the order they came: when the one before this request's latest is its own,
        # nobody else failed since its previous attempt, so the others' failures it would lean on are stale.
        if len(recent) < 2 or recent[-2][2] == request:
            return False
        if self.suspect:
            return True
        others = [other for _, _, other in recent if other != request]
        span = min(FLAKY_WINDOW, self.attempts - recent[0][0] + 1)  # attempts since the oldest recent failure
        if len(others) < max(FLAKY_MIN_REQUESTS, FLAKY_SHARE * span):
            return False
        return len(set(others)) >= FLAKY_MIN_REQUESTS

    def admit(self, now, request=None):
        """("go" | "probe" | "outage", 0) or ("wait", seconds): may an attempt of `request` start now?"""
        if self.since is None:
            return "go", 0.0
        deadline = self.since + self.max_outage
        if self.outage or now >= deadline:
            self.outage = True
            return "outage", 0.0
        if self.not_before is not None:
            if now < self.not_before:
                return "wait", min(self.not_before, deadline) - now
            self.not_before = None  # waited out in full: whatever answers came meanwhile (CLI.md)
            if not self.holding:
                self._end(now, "waited")
                return "go", 0.0
        if not self.holding:
            return "go", 0.0
        if self.probe_out:
            return "wait", deadline - now  # woken when the probe comes back
        if now < self.next_probe:
            return "wait", min(self.next_probe, deadline) - now
        if self.probe_owner is not None and request != self.probe_owner:
            return "wait", deadline - now  # the owner is on its way back to the gate: woken when it reports
        self.probe_out = True
        self.probe_owner = request
        return "probe", 0.0

    def release(self, probe):
        """An admitted attempt ended without a report (the run is stopping): free the probe slot and turn."""
        if probe:
            self.probe_out = False
            self.probe_owner = None
            self._probe_fails = 0

    def report(self, now, request, outcome, *, reason="", retry_after=None, probe=False):
        """Take one attempt's outcome; returns how a failure stands: OPEN, SUSPECT or CLOSED (module top).

        The rule: PX is *down* when it has answered nothing for HOLD_QUIET seconds while failing
        HOLD_AFTER_FAILURES attempts in a row from at least HOLD_MIN_REQUESTS different requests (a
        streak made only of timeouts and connection errors counts from one request too, since those
        say nothing about the request). Any answer (a 2xx, or a 4xx about the request) means PX is up
        and ends a hold. A request that fails while others get answers, or alone, is "bad", and only it
        spends its retries: a failure is SUSPECT (free) only on fresh failures of other requests (weather()).
        A Retry-After closes the gate for everyone until it has passed, answers or not.
        """
        if probe:
            self.probe_out = False
        self.attempts += 1
        if outcome == ANSWERED:
            self.streak = 0
            self._streak_requests.clear()
            self._streak_all_lost = True
            self._streak_since = None
            if self.holding:
                self.holding = False
                self.next_probe = self.probe_owner = None
                self._probe_fails = 0
                self._interval = self._probe_first
                if self.not_before is None:
                    self._end(now, "end")
            return OPEN
        self._recent_failures.append((self.attempts, now, request))
        if self.streak == 0:
            self._streak_since = now
        self.streak += 1
        self._streak_requests.add(request)
        self._streak_all_lost = self._streak_all_lost and outcome == LOST
        if retry_after:  # 0 or a date in the past: nothing to wait for
            until = now + retry_after
            if self.not_before is None or until > self.not_before:
                self.not_before = until
                self.generation += 1
            if self.since is None:
                self._begin(now, "wait", f"{reason}, Retry-After {_seconds(retry_after)}")
            if until > self.since + self.max_outage:
                self.outage = True  # PX asks for longer than we may hold: waiting cannot help
        if not self.holding and self.suspect and now - self._streak_since >= self._quiet:
            self.holding = True
            self._interval = self._probe_first
            self.next_probe = now + self._interval
            self.probe_owner, self._probe_fails = None, 0
            self.generation += 1
            if self.since is None:
                self._begin(now, "hold", reason)
        elif self.holding and probe:
            self._probe_fails += 1
            if self._probe_fails >= self._probe_turns:  # its own fault, maybe: another request's turn
                self.probe_owner, self._probe_fails = None, 0
            self._interval = min(self._probe_cap, self._interval * 2)
            self.next_probe = now + self._interval
        if self.since is not None:
            return CLOSED
        if self.suspect and self._streak_all_lost:
            return SUSPECT  # only lost answers in a row: they say nothing about the request, even from one alone
        return SUSPECT if self.weather(now, request) else OPEN

    def close(self, now):
        """End of the run: a hold still going counts into held_seconds."""
        if self.since is not None:
            self.held_seconds += now - self.since
            self.since = None

    def pop_news(self):
        """The GateNews since the last call, oldest first."""
        news, self.news = self.news, []
        return news

    def _begin(self, now, kind, reason):
        self.since = now
        self.reason = reason
        self.holds += 1
        self.generation += 1
        next_try = self.not_before if kind == "wait" else self.next_probe
        self.news.append(GateNews(kind, now, reason, failures=self.streak, next_try=next_try,
                                  max_outage=self.max_outage))

    def _end(self, now, kind):
        self.news.append(GateNews(kind, self.since, self.reason, duration=now - self.since))
        self.held_seconds += now - self.since
        self.since = None
        self.ended = self.holds


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

    def enter(self, request=None):
        """Wait until an attempt of `request` may start; a _Ticket. Raises OutageError past max_outage,
        and Interrupted when the run stops meanwhile."""
        state = self._state
        if not state.closed:  # the common case, without the lock (a stale read only lets one more go)
            return _Ticket(False, state.generation)
        episode = None  # the hold or wait this request found the gate closed for
        try:
            with self._cond:
                while True:
                    verdict, wait = state.admit(self._clock(), request)
                    if verdict == "go":
                        self._publish()
                        if state.news:
                            self._cond.notify_all()  # the wait is over: everyone waiting goes now
                        return _Ticket(False, state.generation, cohort=episode is not None)
                    if verdict == "probe":
                        return _Ticket(True, state.generation)
                    if verdict == "outage":
                        raise OutageError(self._outage_message())
                    if self._halt.is_set():
                        raise Interrupted()
                    if episode is None:
                        episode = state.holds
                    elif state.ended >= episode and not state.holding:
                        # It waited out a Retry-After in full, and another began as the waiters were let
                        # go: the waiters go together, as requests on the wire when a 429 comes do.
                        # Else each Retry-After would let one request through (PX 429s each new one).
                        return _Ticket(False, state.generation, cohort=True)
                    self._cond.wait(max(wait, 0.001))
        finally:
            self._tell()

    def stale(self, ticket):
        """True when the gate closed while this attempt waited for its rate-limiter slot: re-enter. A
        cohort let go when a Retry-After passed goes on (at most one attempt per worker)."""
        return not (ticket.probe or ticket.cohort) and ticket.generation != self._state.generation

    def release(self, ticket):
        """The admitted attempt was not made (stopping): let another probe go."""
        if ticket.probe:
            with self._cond:
                self._state.release(True)
                self._cond.notify_all()

    def report(self, ticket, request, outcome, *, reason="", retry_after=None):
        """Tell the gate how an attempt went; returns OPEN, SUSPECT or CLOSED (see GateState.report)."""
        state = self._state
        if outcome == ANSWERED and not ticket.probe and state.streak == 0 and not state.holding:
            state.attempts += 1  # a lost increment under a race only blurs the flaky share a little
            return OPEN  # the common case, without the lock
        with self._cond:
            standing = state.report(self._clock(), request, outcome, reason=reason, retry_after=retry_after,
                                    probe=ticket.probe)
            self._publish()
            self._cond.notify_all()
        self._tell()
        return standing

    def close(self):
        """End of the run: count a hold still going."""
        with self._cond:
            self._state.close(self._clock())
            self._publish()

    def _tell(self):
        """Pass the news on, outside the lock: printing must not hold up the workers."""
        if not self._state.news:
            return
        with self._cond:
            news = self._state.pop_news()
        if self._on_news is not None:
            for item in news:
                self._on_news(self._to_wall(item))

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
