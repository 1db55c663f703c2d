"""One logical request to PX: the shared rate limiter, the retry rule and the attempt loop (STYLE habit 7)."""

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

# requests and urllib3 (and px, built on them) are imported where a real send first needs them:
# a dry run never does, and importing them is ~0.2 s of its start-up (issue 5).

from gspx_cli.errors import AuthRejectedError, GspxError, PxError
from gspx_cli.plan import object_path

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})  # issue 3; other 4xx are final
AUTH_STATUSES = frozenset({401, 403})  # MAPPING.md: the key is refused, the run stops
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0  # a server asking for longer is not obeyed beyond this


class Interrupted(Exception):
    """The run is stopping; the event is left unsettled so a resume sends it again."""


class Halt:
    """Set once when the run stops. Soft (a signal): events in flight finish, without sitting out retry
    waits. Hard (a refused key): not one more attempt is made."""

    def __init__(self):
        self._event = threading.Event()
        self.is_set = self._event.is_set
        self.wait = self._event.wait  # True when set meanwhile
        self.hard = False

    def set(self, hard=False):
        """Stop starting work; hard also stops attempts of events already in flight."""
        self.hard = self.hard or hard
        self._event.set()


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: "retry" after delay, "fail" the event, or "stop" the run."""

    action: str
    delay: float = 0.0


class RetryPolicy:
    """The whole retry rule in one place; reads no clock, so it is tested without sleeping."""

    _parser = None  # urllib3's Retry(0) already parses Retry-After (seconds or HTTP date); made on first use

    def __init__(self, max_retries, *, rand=random.random, base=BACKOFF_BASE, cap=BACKOFF_CAP):
        self.max_retries = max_retries
        self._rand = rand
        self._base = base
        self._cap = cap

    def decide(self, retries_done, status=None, retry_after=None):
        """status None means a timeout or connection error."""
        if status in AUTH_STATUSES:
            return Decision("stop")
        if status is not None and status not in RETRYABLE_STATUSES:
            return Decision("fail")
        if retries_done >= self.max_retries:
            return Decision("fail")
        backoff = min(self._cap, self._base * 2**retries_done)
        delay = backoff / 2 + self._rand() * backoff / 2  # "equal jitter": spread, yet never near zero
        wait = self.retry_after_seconds(retry_after)
        if wait is not None:
            delay = max(delay, wait)
        return Decision("retry", delay)

    def retry_after_seconds(self, value):
        """Seconds a Retry-After header asks for (seconds or HTTP date), capped; None if absent or unreadable."""
        if not value:
            return None
        from urllib3.exceptions import InvalidHeader
        from urllib3.util.retry import Retry

        if RetryPolicy._parser is None:
            RetryPolicy._parser = Retry(0)
        try:
            return min(RETRY_AFTER_CAP, max(0.0, self._parser.parse_retry_after(value)))
        except InvalidHeader:
            return None


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


@dataclass
class RequestStats:
    """Requests made, by kind, and retries; updated from worker threads."""

    by_kind: Counter = field(default_factory=Counter)  # "POST /users" -> n
    by_status: Counter = field(default_factory=Counter)
    by_event_type: Counter = field(default_factory=Counter)  # "track" -> requests made for track events
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self):
        """All requests made, retries included."""
        return sum(self.by_kind.values())

    def count(self, kind, status, retry, event_type=None):
        """Count one attempt."""
        with self.lock:
            self.by_kind[kind] += 1
            if event_type:
                self.by_event_type[event_type] += 1
            self.by_status[status] += 1
            if retry:
                self.retries += 1


class Sender:
    """Makes one logical request: waits for the rate limiter, retries per the policy, stops on a refused key."""

    def __init__(self, client, policy, limiter, halt, stats, on_request=None):
        self._client = client
        self._policy = policy
        self._limiter = limiter
        self._halt = halt
        self._stats = stats
        self._on_request = on_request

    def call(self, method, path, body=None, event_type=None):
        """The final PxResponse (2xx or a non-retryable answer); raises PxError when retries run out.

        Every attempt passes the shared rate limiter and is counted: the retry loop is ours, not urllib3's.
        After a SIGINT/SIGTERM the event in flight still finishes, but no retry wait is sat out;
        after a refused key nothing more is sent.
        """
        import requests

        kind = f"{method} {_path_kind(path)}"
        retries = 0
        while True:
            if self._halt.hard:
                raise Interrupted()
            self._limiter.acquire()
            if self._halt.hard:  # the key was refused while this one waited its turn
                raise Interrupted()
            started = time.perf_counter()
            try:
                resp = self._client.request(method, path, body)
                status, error = resp.status, None
            except requests.RequestException as exc:
                resp, status, error = None, None, _describe_exception(exc, self._client.timeout)
            self._stats.count(kind, status or "error", retries > 0, event_type)
            if self._on_request:
                ms = (time.perf_counter() - started) * 1000
                self._on_request(method, self._client.base_url + path, status or error, ms, retries + 1)
            if resp is not None and resp.ok:
                return resp
            decision = self._policy.decide(retries, status, resp.retry_after if resp else None)
            if decision.action == "stop":
                raise AuthRejectedError(status, self._client.base_url, resp.message)
            if decision.action == "fail":
                if resp is not None and status not in RETRYABLE_STATUSES:
                    return resp
                detail = f"HTTP {status}: {resp.message}" if resp is not None else error
                raise PxError(status, f"{method} {path}: {detail} (gave up after {retries} retries)")
            if self._halt.is_set() or self._halt.wait(decision.delay):
                raise Interrupted()
            retries += 1


def _path_kind(path):
    parts = path.split("/", 2)
    return "/" + parts[1] if parts[1] != "events" else path


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

    from gspx_cli.px import PxClient

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
