"""One logical request to PX: the shared rate limiter, the retry rule and the attempt loop (STYLE habit 7)."""

import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import timezone

# requests and urllib3 (and px, built on them) are imported where a real send first needs them:
# a dry run never does, and importing them is ~0.2 s of its start-up (issue 5).

from gspx_cli.errors import AuthRejectedError, GspxError, Interrupted, PxError
from gspx_cli.delivery.counts import RequestStats  # noqa: F401 (its old home: callers import it here)
from gspx_cli.delivery.gate import ANSWERED, CLOSED, FAILED, LOST, OPEN, SUSPECT, Gate
from gspx_cli.mapping.plan import object_path, request_kind

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})  # issue 3; other 4xx are final
AUTH_STATUSES = frozenset({401, 403})  # MAPPING.md: the key is refused, the run stops
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time
BACKOFF_CAP = 30.0
# Free retries (PX flaky or suspect, gate.py) a request may take per retry it is allowed: weather must
# not fail events, yet a request PX always refuses must end even in bad weather (max_retries 5: 20 attempts).
FREE_RETRIES_PER_RETRY = 3
# Kinds whose repeat creates a second object in PX: a retried custom event whose first answer was lost
# may be in PX twice (PX's API has no idempotency key). A repeated create of a user or account meets
# 409 and becomes an update; PUTs are idempotent; GETs change nothing.
DUPLICATING_KINDS = frozenset({"POST /events/custom"})


class Halt:
    """Set once when the run stops: no request starts after it (the ones in flight finish, and no
    retry wait is sat out). Hard (a refused key, an outage) also tells the gate's waiters why."""

    def __init__(self):
        self._event = threading.Event()
        self.is_set = self._event.is_set
        self.wait = self._event.wait  # True when set meanwhile
        self.hard = False
        self._listeners = []

    def on_set(self, callback):
        """Call callback() on every set(): waits that are not on this Halt's own event wake too."""
        self._listeners.append(callback)

    def set(self, hard=False):
        """Stop starting work; hard also stops attempts of events already in flight."""
        self.hard = self.hard or hard
        self._event.set()
        for callback in self._listeners:
            callback()


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: "retry" after delay (`spent`: it uses up one of the request's
    retries), "hold" (the gate paces it, no retry used up), "fail" the event, or "stop" the run."""

    action: str
    delay: float = 0.0
    spent: bool = True


class RetryPolicy:
    """The whole retry rule in one place; reads no clock, so it is tested without sleeping."""

    def __init__(self, max_retries, *, rand=random.random, base=BACKOFF_BASE, cap=BACKOFF_CAP):
        self.max_retries = max_retries
        self._rand = rand
        self._base = base
        self._cap = cap

    def decide(self, retries_done, status=None, *, standing=OPEN, attempts=None, free_done=0):
        """status None means a timeout or connection error. standing (gate.py): CLOSED, the gate holds
        or waits, so the failure is PX's and the gate paces the request; SUSPECT, other requests fail
        too, lately, so it is likely PX's: retried with backoff at no cost, up to FREE_RETRIES_PER_RETRY x
        max_retries free retries (`free_done` so far); OPEN, PX answers others (or nobody else is left),
        so it is this request's and spends a retry. A free retry's backoff follows `attempts` (default
        retries_done + 1), so it keeps growing through the weather; a spent one follows retries_done, the
        request's own schedule: one PX always refuses then ends within its own retries' backoff (about
        15 s with the defaults), not 30 s apart after its free ones (CLI.md)."""
        if status in AUTH_STATUSES:
            return Decision("stop")
        if status is not None and status not in RETRYABLE_STATUSES:
            return Decision("fail")
        if standing == CLOSED:
            return Decision("hold", spent=False)
        free = standing == SUSPECT and free_done < FREE_RETRIES_PER_RETRY * self.max_retries
        if not free and retries_done >= self.max_retries:
            return Decision("fail")
        step = retries_done if not free or attempts is None else attempts - 1
        backoff = min(self._cap, self._base * 2 ** min(step, 32))
        delay = backoff / 2 + self._rand() * backoff / 2  # "equal jitter": spread, yet never near zero
        return Decision("retry", delay, spent=not free)


_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")  # RFC 9110: 1*DIGIT; a fraction is tolerated


def retry_after_seconds(value, now):
    """Seconds a Retry-After header asks for, from `now` (epoch seconds, for an HTTP date); 0 for a
    date in the past; None when absent or unreadable. No cap: only delivery.max_outage bounds it."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        import email.utils  # ~6 ms: only when an HTTP date arrives (issue 13: start-up)

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


class RateLimiter:
    """Spaces requests evenly at `rate` per second across all threads (no bursts above the rate)."""

    def __init__(self, rate, *, clock=time.monotonic, sleep=time.sleep):
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self):
        """Wait for this request's slot."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


class Sender:
    """Makes one logical request: passes the gate and the rate limiter, retries per the policy, stops on a
    refused key."""

    def __init__(self, client, policy, limiter, halt, stats, on_request=None, *, gate=None, wall=time.time,
                 budget=None):
        self._client = client
        self._policy = policy
        self._limiter = limiter
        self._halt = halt
        self._stats = stats
        self._on_request = on_request
        self._gate = gate if gate is not None else Gate(halt, float("inf"), stats=stats)
        self._wall = wall  # for Retry-After dates
        self._budget = budget  # budget.DailyBudget: counts every attempt per UTC day, refuses past the limit
        self._ids = iter(range(1, 1 << 62))  # one id per logical request, for the gate's "different requests"

    def call(self, method, path, body=None, event_type=None):
        """The final PxResponse (2xx or a non-retryable answer); raises PxError when retries run out.

        Every attempt passes the shared gate and rate limiter and is counted: the retry loop is ours,
        not urllib3's. While the gate holds (PX down, or a Retry-After), a failure uses up no retry.
        Once the run stops (a signal, a refused key) no request starts: the one in flight finishes,
        and its event, left unsettled, is sent whole by a rerun. Raises OutageError when PX stays
        down past max_outage.
        """
        import requests

        gate, halt = self._gate, self._halt
        kind = f"{method} {request_kind(path)}"
        request = next(self._ids)
        retries = attempts = free = 0
        unconfirmed = False  # the previous attempt may have been applied although no answer came
        refusal = None  # PX's last retryable answer (status, message): the reason, if its retries run out
        while True:
            if halt.is_set():  # the run is stopping: nothing new starts (CLI.md "Interruptions")
                raise Interrupted()
            ticket = gate.enter(request)
            try:
                self._limiter.acquire()
                if halt.is_set():  # a stop, or a refused key, while this one waited its turn
                    raise Interrupted()
            except BaseException:
                gate.release(ticket)
                raise
            if gate.stale(ticket):  # a hold or Retry-After began while it waited for its slot
                continue
            if self._budget is not None:
                try:
                    self._budget.take()  # retries and lookups count: the quota is PX's, per request
                except BaseException:
                    gate.release(ticket)
                    raise
            if unconfirmed and kind in DUPLICATING_KINDS:
                with self._stats.lock:
                    self._stats.possible_duplicates += 1
            started = time.perf_counter()
            try:
                resp = self._client.request(method, path, body)
                status, error, unconfirmed = resp.status, None, False
            except requests.RequestException as exc:
                resp, status, error = None, None, _describe_exception(exc, self._client.timeout)
                unconfirmed = _answer_lost(exc)
            except BaseException:
                gate.release(ticket)
                raise
            self._stats.count(kind, status or "error", attempts > 0, event_type)
            attempts += 1
            if self._on_request:
                ms = (time.perf_counter() - started) * 1000
                self._on_request(method, self._client.base_url + path, status or error, ms, attempts)
            if resp is not None and (resp.ok or status not in RETRYABLE_STATUSES):
                standing = gate.report(ticket, request, ANSWERED)  # PX answered: it is up, whatever this request's fate
                if resp.ok:
                    return resp
            else:
                wait = retry_after_seconds(resp.retry_after, self._wall()) if resp is not None else None
                if resp is not None:
                    refusal = (status, resp.message)
                standing = gate.report(ticket, request, FAILED if resp is not None else LOST,
                                       reason=f"HTTP {status}" if resp is not None else error, retry_after=wait)
            decision = self._policy.decide(retries, status, standing=standing, attempts=attempts, free_done=free)
            if decision.action == "stop":
                raise AuthRejectedError(status, self._client.base_url, resp.message)
            if decision.action == "fail":
                if resp is not None and status not in RETRYABLE_STATUSES:
                    return resp
                detail = f"HTTP {status}: {resp.message}" if resp is not None else error
                if resp is None and refusal is not None:  # PX's answer says more than the last try's lost connection
                    status = refusal[0]
                    detail = f"HTTP {status}: {refusal[1]}; last try: {error}"
                weather = f" and {free} more while PX was failing others too" if free else ""
                raise PxError(status, f"{method} {path}: {detail} (gave up after {retries} retries{weather})")
            if halt.is_set():  # stopping: no wait is sat out, at the gate or here
                raise Interrupted()
            if decision.action == "retry":
                if halt.wait(decision.delay):
                    raise Interrupted()
                retries += decision.spent
                free += not decision.spent


def _answer_lost(exc):
    """True when the request may have reached PX but no answer came back (it may have been applied)."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.Timeout):
        return True  # a read timeout: sent, unanswered
    if isinstance(exc, requests.ConnectionError):
        # a connection never made (refused, no route, DNS) sent nothing; one dropped later may have
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return not isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too
    return False


def _describe_exception(exc, timeout):
    import requests

    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g}s (timeout)"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or was dropped"
    return f"request failed ({type(exc).__name__})"


KEY_PROBE_ID = "gspx-check-key-probe"  # a user that need not exist: a 404 proves the key was accepted


def check_key(settings):
    """One cheap read request; raises AuthRejectedError when PX refuses the key."""
    import requests

    from gspx_cli.delivery.px import PxClient

    client = PxClient(settings.base_url, settings.api_key, timeout=settings.delivery.timeout, pool_size=1)
    try:
        resp = client.request("GET", object_path("user", KEY_PROBE_ID))
    except requests.RequestException as exc:
        raise GspxError(f"cannot reach {settings.base_url}: "
                        f"{_describe_exception(exc, settings.delivery.timeout)}") from None
    finally:
        client.close()
    if resp.status in AUTH_STATUSES:
        raise AuthRejectedError(resp.status, settings.base_url, resp.message)
    if not (resp.ok or resp.status == 404):
        raise GspxError(f"unexpected answer from {settings.base_url}: HTTP {resp.status}: {resp.message}")
