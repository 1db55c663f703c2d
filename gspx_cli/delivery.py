"""Executes Plans: workers fed per user (order kept), rate limiter, retry policy, known-to-exist cache, stop flag."""

import random
import signal
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

# requests and urllib3 (and px, built on them) are imported where a real send first needs them:
# a dry run never does, and importing them is ~0.2 s of its start-up (issue 5).

from gspx_cli.errors import AuthRejectedError, ExitCode, GspxError, PxError
from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED
from gspx_cli.mapping import Mapper
from gspx_cli.plan import Invalid, Plan, RequireUser, Skipped, Upsert, Write, create_path, object_path
from gspx_cli.reader import ReadStats, iter_records

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})  # issue 3; other 4xx are final
AUTH_STATUSES = frozenset({401, 403})  # MAPPING.md: the key is refused, the run stops
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0  # a server asking for longer is not obeyed beyond this
QUEUE_PER_WORKER = 64  # bounds memory: the reader waits when concurrency x this many events are queued
CHECKPOINT_EVERY = 1.0  # seconds between checkpoint saves during a run
KNOWN_CACHE_SIZE = 1_000_000  # ids remembered as existing, per kind (~100 MB at most); past that the oldest is forgotten, which costs one GET, never an error


class Interrupted(Exception):
    """The run is stopping; the event is left unsettled so a resume sends it again."""


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


class StopFlag:
    """Set once by a signal or a refused key; everything that loops checks it."""

    def __init__(self):
        self._event = threading.Event()
        # is_set() is the Event's own method, not a wrapper: the reader loop asks per event (issue 5)
        self.is_set = self._event.is_set
        self.reason = None  # ExitCode.SIGINT / SIGTERM / AUTH
        self.auth_error = None

    def set(self, reason, auth_error=None):
        """Stop the run; the first reason given wins."""
        if not self._event.is_set():
            self.reason = reason
            self.auth_error = auth_error
            self._event.set()

    def wait(self, timeout):
        """Sleep up to timeout; True when the run was stopped meanwhile."""
        return self._event.wait(timeout)


def install_signal_handlers(stop):
    """First SIGINT/SIGTERM stops gracefully; a second SIGINT aborts at once."""

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            os.write(2, b"gspx: aborted at once (second Ctrl-C); the checkpoint is as last saved\n")
            os._exit(ExitCode.SIGINT)
        stop.set(ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in previous.items()]


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

    def __init__(self, client, policy, limiter, stop, stats, on_request=None):
        self._client = client
        self._policy = policy
        self._limiter = limiter
        self._stop = stop
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
            if self._stop.reason == ExitCode.AUTH:
                raise Interrupted()
            self._limiter.acquire()
            if self._stop.reason == ExitCode.AUTH:  # the key was refused while this one waited its turn
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
            if self._stop.is_set() or self._stop.wait(decision.delay):
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


class _KnownIds:
    """Ids known to exist in PX, shared by the workers; bounded, oldest forgotten first (an extra GET)."""

    def __init__(self, limit=KNOWN_CACHE_SIZE):
        self._ids = {}  # insertion-ordered: the oldest comes first
        self._limit = limit
        self._lock = threading.Lock()

    def __contains__(self, object_id):
        return object_id in self._ids

    def add(self, object_id):
        with self._lock:
            self._ids[object_id] = None
            if len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]

    def discard(self, object_id):
        with self._lock:
            self._ids.pop(object_id, None)


class Executor:
    """Carries out a Plan's steps (MAPPING.md flows), remembering which users and accounts exist.

    One Executor serves all workers. Two workers may race to create one account (two users of a new
    account): both see 404, one POST wins and the other gets 409, which falls back to the PUT.
    """

    def __init__(self, sender):
        self._sender = sender
        self._local = threading.local()  # the event type of the plan this thread is executing
        self._known = {"user": _KnownIds(), "account": _KnownIds()}

    def _call(self, method, path, body=None):
        return self._sender.call(method, path, body, event_type=getattr(self._local, "type", None))

    def execute(self, plan):
        """Make the requests of one event, in order; raises PxError when the event fails."""
        self._local.type = plan.type
        for step in plan.steps:
            if isinstance(step, Write):
                self._check(self._call(step.method, step.path, step.body), step.method, step.path)
            elif isinstance(step, RequireUser):
                if not self._exists("user", step.user_id):
                    raise PxError(404, f"user '{step.user_id}' not found in Gainsight PX: "
                                       "an identify for this user must come first")
            elif isinstance(step, Upsert):
                self._upsert(step)

    def _exists(self, kind, object_id):
        if object_id in self._known[kind]:
            return True
        path = object_path(kind, object_id)
        resp = self._call("GET", path)
        if resp.ok:
            self._known[kind].add(object_id)
            return True
        if resp.status == 404:
            return False
        self._check(resp, "GET", path)

    def _upsert(self, step):
        if step.put_first:
            path = object_path(step.kind, step.id)
            resp = self._call("PUT", path, step.update_body)
            if resp.missing:
                self._create(step)
            else:
                self._check(resp, "PUT", path)
        elif self._exists(step.kind, step.id):
            self._update(step)
        else:
            self._create(step)
        self._known[step.kind].add(step.id)

    def _update(self, step):
        path = object_path(step.kind, step.id)
        self._check(self._call("PUT", path, step.update_body), "PUT", path)

    def _create(self, step):
        if step.create_body is None:
            raise PxError(None, step.create_error)
        path = create_path(step.kind)
        resp = self._call("POST", path, step.create_body)
        if resp.conflict:  # made meanwhile by another worker or process: update it instead
            return self._update(step)
        self._check(resp, "POST", path)

    @staticmethod
    def _check(resp, method, path):
        if not resp.ok:
            raise PxError(resp.status, f"{method} {path}: HTTP {resp.status}: {resp.message}")


@dataclass
class RunResult:
    """What a run did: the counts, the requests, what was read, and why it stopped early (if it did)."""

    stats: object
    requests: RequestStats
    read: ReadStats
    stop_reason: object = None
    auth_error: object = None


def run(settings, paths, *, reporter, ledger, dry_run=False, max_line_bytes, stop=None, stdin=None,
        session=None):
    """Read, map and deliver (or print, for a dry run) every event; returns what happened."""
    stop = stop or StopFlag()
    read_stats = ReadStats()
    req_stats = RequestStats()
    checkpoint = ledger.checkpoint if not dry_run else None
    skip = checkpoint.skip_lines() if checkpoint else None
    records = iter_records(paths, max_line_bytes=max_line_bytes, skip_lines=skip, stats=read_stats, stdin=stdin)
    mapper = Mapper(settings)
    result = RunResult(ledger.stats, req_stats, read_stats)
    reporter.start(ledger.stats, req_stats, read_stats, dry_run=dry_run)
    saver = _Saver(ledger if checkpoint else None)
    pool = None
    try:
        if not dry_run:
            pool = _Pool(settings, reporter, ledger, stop, req_stats, session, saver)
        _dispatch(records, mapper, settings, reporter, ledger, stop, pool, saver)
        if pool:
            pool.finish()
    finally:
        if pool:
            pool.close()
        ledger.close()  # saves the checkpoint, also after a stop or an error
        reporter.stop()
    result.stop_reason = stop.reason
    result.auth_error = stop.auth_error
    return result


class _Saver:
    """Saves the checkpoint at most every CHECKPOINT_EVERY seconds, from the main thread only."""

    def __init__(self, ledger, every=CHECKPOINT_EVERY):
        self._ledger = ledger
        self._every = every
        self._next = time.monotonic() + every

    def maybe(self):
        if self._ledger is not None and time.monotonic() >= self._next:
            self._ledger.save_checkpoint()
            self._next = time.monotonic() + self._every


def _dispatch(records, mapper, settings, reporter, ledger, stop, pool, saver):
    # per-event loop: bound methods and settings looked up once (issue 5 profile)
    map_event, is_stopped, settle, base_url = mapper.map, stop.is_set, ledger.settle, settings.base_url
    dry_run = reporter.dry_run if pool is None else None
    checkpoint = ledger.checkpoint if pool is not None else None
    resuming = checkpoint is not None and checkpoint.resumes_beyond_prefix
    for group in _by_line(records):
        if is_stopped():
            break
        saver.maybe()
        indices = None
        if resuming:  # events an earlier run settled beyond its prefix are not sent again
            kept = [(i, r) for i, r in enumerate(group) if not checkpoint.already_settled(r, i)]
            if not kept:
                continue
            if len(kept) < len(group):
                indices, group = [i for i, _ in kept], [r for _, r in kept]
        ledger.open_line(group, indices)
        for record in group:
            if is_stopped():
                settle(record, INTERRUPTED)
                continue
            if record.problem is not None:
                result = Invalid(record.problem)
            else:
                try:
                    result = map_event(record.event)
                except Exception as exc:  # a mapping bug must fail one event, never the run
                    result = Invalid(f"internal error while mapping: {type(exc).__name__}: {exc}")
            for warning in result.warnings:
                reporter.warning(record.where, warning)
                ledger.warn()
            if dry_run is not None:
                dry_run(record, result, base_url)
            if type(result) is Plan:
                if dry_run is not None:
                    ledger.settle_dry_run_plan(result.type)
                else:
                    pool.submit(record, result)
            elif type(result) is Skipped:
                settle(record, SKIPPED, result.reason, result.type)
            else:
                reporter.event_failed(record.where, result.message)
                settle(record, INVALID, result.message, result.type)


def _by_line(records):
    """Consecutive records of one input line, so a batch line is registered whole before any settles."""
    group = []
    for record in records:
        if group and (record.line_no != group[0].line_no or record.source != group[0].source
                      or record.line_no <= 0):
            yield group
            group = []
        group.append(record)
    if group:
        yield group


class _UserQueues:
    """Events waiting to be sent, one FIFO per user; a user is handed to one worker at a time.

    This keeps each user's events in input order while any idle worker can take any other user,
    so one busy user never holds up the rest (as a fixed user -> worker shard would, once the
    reader blocks on that worker's full queue). At most `limit` events wait in all: the reader
    blocks beyond that, so memory stays flat whatever the input size.
    """

    def __init__(self, limit):
        self._cond = threading.Condition()
        self._waiting = {}  # user -> deque of items not yet started
        self._ready = deque()  # users with waiting items and none in flight, oldest first
        self._busy = set()  # users with an item in flight
        self._size = 0
        self._limit = limit
        self._closed = False

    def put(self, user, item, timeout):
        """Queue item for user; False when there was no room within timeout."""
        with self._cond:
            if self._size >= self._limit and not self._cond.wait_for(lambda: self._size < self._limit, timeout):
                return False
            waiting = self._waiting.get(user)
            if waiting is None:
                waiting = self._waiting[user] = deque()
                if user not in self._busy:
                    self._ready.append(user)
                    self._cond.notify_all()
            waiting.append(item)
            self._size += 1
            return True

    def get(self):
        """(user, item) of the oldest ready user, marking the user busy; None once closed and empty."""
        with self._cond:
            while not self._ready:
                if self._closed and self._size == 0:
                    return None
                self._cond.wait()
            user = self._ready.popleft()
            waiting = self._waiting[user]
            item = waiting.popleft()
            if not waiting:
                del self._waiting[user]
            self._busy.add(user)
            self._size -= 1
            self._cond.notify_all()  # room for the reader (and, when closed and empty, idle workers leave)
            return user, item

    def done(self, user):
        """The user's item is settled: its next one (if any) may go."""
        with self._cond:
            self._busy.discard(user)
            if user in self._waiting:
                self._ready.append(user)
                self._cond.notify_all()

    def close(self):
        """No more puts; workers leave once everything queued has been taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Pool:
    """Workers fed from per-user queues, so one user's events go in input order and users run in parallel."""

    def __init__(self, settings, reporter, ledger, stop, req_stats, session, saver):
        from gspx_cli.px import PxClient

        d = settings.delivery
        self._client = PxClient(settings.base_url, settings.api_key, timeout=d.timeout,
                                pool_size=d.concurrency, session=session)
        policy = RetryPolicy(d.max_retries, base=BACKOFF_BASE)  # read now, so tests can shorten it
        sender = Sender(self._client, policy, RateLimiter(d.rate_limit), stop, req_stats,
                        on_request=reporter.request if reporter.verbose else None)
        self._executor = Executor(sender)
        self._reporter = reporter
        self._ledger = ledger
        self._stop = stop
        self._saver = saver
        self._queues = _UserQueues(QUEUE_PER_WORKER * d.concurrency)
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"gspx-{i}")
                         for i in range(d.concurrency)]
        for t in self._threads:
            t.start()

    def submit(self, record, plan):
        while not self._queues.put(plan.user_id, (record, plan), timeout=0.2):
            if self._stop.is_set():
                self._ledger.settle(record, INTERRUPTED, event_type=plan.type)
                return
            self._saver.maybe()

    def finish(self):
        """Let the workers empty the queues (after a stop they only mark what is left), then join them."""
        self._queues.close()
        for t in self._threads:
            while t.is_alive():
                t.join(0.2)
                self._saver.maybe()

    def close(self):
        self._client.close()

    def _work(self):
        while True:
            got = self._queues.get()
            if got is None:
                return
            user, (record, plan) = got
            try:
                self._deliver(record, plan)
            finally:
                self._queues.done(user)

    def _deliver(self, record, plan):
        ledger, stop = self._ledger, self._stop
        if stop.is_set():  # queued, never started: not settled, so a resume sends it
            ledger.settle(record, INTERRUPTED, event_type=plan.type)
            return
        try:
            self._executor.execute(plan)
        except PxError as exc:
            self._reporter.event_failed(record.where, exc.message)
            ledger.settle(record, FAILED, exc.message, plan.type)
        except AuthRejectedError as exc:
            stop.set(ExitCode.AUTH, exc)
            ledger.settle(record, INTERRUPTED, event_type=plan.type)
        except Interrupted:
            ledger.settle(record, INTERRUPTED, event_type=plan.type)
        except Exception as exc:  # a bug must fail one event, never lose it or kill the worker
            msg = f"internal error: {type(exc).__name__}: {exc}"
            self._reporter.event_failed(record.where, msg)
            ledger.settle(record, FAILED, msg, plan.type)
        else:
            ledger.settle(record, DELIVERED, event_type=plan.type)


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
