"""Executes Plans: worker pool with per-user order, rate limiter, retry policy, known-to-exist cache, stop flag."""

import queue
import random
import signal
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from gspx_cli.errors import AuthRejectedError, ExitCode, GspxError, PxError
from gspx_cli.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED
from gspx_cli.mapping import Mapper
from gspx_cli.plan import Invalid, Plan, RequireUser, Skipped, Upsert, Write, create_path, object_path
from gspx_cli.px import PxClient
from gspx_cli.reader import ReadStats, iter_records

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})  # issue 3; other 4xx are final
AUTH_STATUSES = frozenset({401, 403})  # MAPPING.md: the key is refused, the run stops
BACKOFF_BASE = 0.5  # seconds before the first retry, doubled each time
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0  # a server asking for longer is not obeyed beyond this
QUEUE_PER_WORKER = 64  # bounds memory: the reader waits when workers are this far behind
CHECKPOINT_EVERY = 1.0  # seconds between checkpoint saves during a run


class Interrupted(Exception):
    """The run is stopping; the event is left unsettled so a resume sends it again."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: "retry" after delay, "fail" the event, or "stop" the run."""

    action: str
    delay: float = 0.0


class RetryPolicy:
    """The whole retry rule in one place; reads no clock, so it is tested without sleeping."""

    _parser = Retry(0)  # urllib3 already parses Retry-After (seconds or HTTP date)

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
        if not value:
            return None
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
        self.reason = None  # ExitCode.SIGINT / SIGTERM / AUTH
        self.auth_error = None

    def set(self, reason, auth_error=None):
        if not self._event.is_set():
            self.reason = reason
            self.auth_error = auth_error
            self._event.set()

    def is_set(self):
        return self._event.is_set()

    def wait(self, timeout):
        return self._event.wait(timeout)


def install_signal_handlers(stop):
    """First SIGINT/SIGTERM stops gracefully; a second SIGINT aborts at once."""

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            os._exit(ExitCode.SIGINT)
        stop.set(ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in previous.items()]


@dataclass
class RequestStats:
    """Requests made, by kind, and retries; updated from worker threads."""

    by_kind: Counter = field(default_factory=Counter)  # "POST /users" -> n
    by_status: Counter = field(default_factory=Counter)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self):
        return sum(self.by_kind.values())

    def count(self, kind, status, retry):
        with self.lock:
            self.by_kind[kind] += 1
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

    def call(self, method, path, body=None):
        """The final PxResponse (2xx or a non-retryable answer); raises PxError when retries run out."""
        kind = f"{method} {_path_kind(path)}"
        retries = 0
        while True:
            if self._stop.reason == ExitCode.AUTH:
                raise Interrupted()
            self._limiter.acquire()
            started = time.perf_counter()
            try:
                resp = self._client.request(method, path, body)
                status, error = resp.status, None
            except requests.RequestException as exc:
                resp, status, error = None, None, _describe_exception(exc, self._client.timeout)
            self._stats.count(kind, status or "error", retries > 0)
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
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g}s (timeout)"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed or was dropped"
    return f"request failed ({type(exc).__name__})"


class Executor:
    """Carries out a Plan's steps (MAPPING.md flows), remembering which users and accounts exist."""

    def __init__(self, sender):
        self._call = sender.call
        self._known = {"user": set(), "account": set()}

    def execute(self, plan):
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
        raise PxError(resp.status, f"GET {path}: HTTP {resp.status}: {resp.message}")

    def _upsert(self, step):
        if step.put_first:
            resp = self._call("PUT", object_path(step.kind, step.id), step.update_body)
            if resp.missing:
                self._create(step)
            else:
                self._check(resp, "PUT", object_path(step.kind, step.id))
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
        resp = self._call("POST", create_path(step.kind), step.create_body)
        if resp.conflict:  # made meanwhile by another worker or process: update it instead
            return self._update(step)
        self._check(resp, "POST", create_path(step.kind))

    @staticmethod
    def _check(resp, method, path):
        if not resp.ok:
            raise PxError(resp.status, f"{method} {path}: HTTP {resp.status}: {resp.message}")


@dataclass
class RunResult:
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
    skip = ledger.checkpoint.skip_lines() if ledger.checkpoint and not dry_run else None
    records = iter_records(paths, max_line_bytes=max_line_bytes, skip_lines=skip, stats=read_stats, stdin=stdin)
    mapper = Mapper(settings)
    result = RunResult(ledger.stats, req_stats, read_stats)
    reporter.start(ledger.stats, req_stats, read_stats, dry_run=dry_run)
    pool = None
    try:
        if not dry_run:
            pool = _Pool(settings, reporter, ledger, stop, req_stats, session)
        _dispatch(records, mapper, settings, reporter, ledger, stop, pool)
        if pool:
            pool.finish(ledger)
    finally:
        if pool:
            pool.close()
        ledger.close()
        reporter.stop()
    result.stop_reason = stop.reason
    result.auth_error = stop.auth_error
    return result


def _dispatch(records, mapper, settings, reporter, ledger, stop, pool):
    map_event = mapper.map
    last_save = time.monotonic()
    for n, group in enumerate(_by_line(records)):
        if stop.is_set():
            break
        ledger.open_line(group)
        for record in group:
            if stop.is_set():
                ledger.settle(record, INTERRUPTED)
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
            if type(result) is Plan:
                if pool is None:
                    reporter.dry_run(record, result, settings.base_url)
                    ledger.settle(record, DELIVERED, event_type=result.type)
                else:
                    pool.submit(record, result)
            elif type(result) is Skipped:
                if pool is None:
                    reporter.dry_run(record, result, settings.base_url)
                ledger.settle(record, SKIPPED, result.reason, result.type)
            else:
                if pool is None:
                    reporter.dry_run(record, result, settings.base_url)
                reporter.event_failed(record.where, result.message)
                ledger.settle(record, INVALID, result.message, result.type)
        if pool is not None and n % 256 == 0 and time.monotonic() - last_save > CHECKPOINT_EVERY:
            ledger.save_checkpoint()
            last_save = time.monotonic()


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


class _Pool:
    """Workers, each owning the users whose id hashes to it, so one user's events stay in input order."""

    def __init__(self, settings, reporter, ledger, stop, req_stats, session):
        d = settings.delivery
        self._client = PxClient(settings.base_url, settings.api_key, timeout=d.timeout,
                                pool_size=d.concurrency, session=session)
        sender = Sender(self._client, RetryPolicy(d.max_retries), RateLimiter(d.rate_limit), stop, req_stats,
                        on_request=reporter.request if reporter.verbose else None)
        self._executor = Executor(sender)
        self._reporter = reporter
        self._ledger = ledger
        self._stop = stop
        self._queues = [queue.Queue(QUEUE_PER_WORKER) for _ in range(d.concurrency)]
        self._threads = [threading.Thread(target=self._work, args=(q,), daemon=True, name=f"gspx-{i}")
                         for i, q in enumerate(self._queues)]
        for t in self._threads:
            t.start()

    def submit(self, record, plan):
        q = self._queues[hash(plan.user_id) % len(self._queues)]
        while True:
            try:
                q.put((record, plan), timeout=0.2)
                return
            except queue.Full:
                if self._stop.is_set():
                    self._ledger.settle(record, INTERRUPTED, event_type=plan.type)
                    return

    def finish(self, ledger):
        for q in self._queues:
            while True:
                try:
                    q.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        last_save = time.monotonic()
        for t in self._threads:
            while t.is_alive():
                t.join(0.2)
                if time.monotonic() - last_save > CHECKPOINT_EVERY:
                    ledger.save_checkpoint()
                    last_save = time.monotonic()

    def close(self):
        self._client.close()

    def _work(self, q):
        ledger, stop = self._ledger, self._stop
        while True:
            item = q.get()
            if item is None:
                return
            record, plan = item
            if stop.is_set():
                ledger.settle(record, INTERRUPTED, event_type=plan.type)
                continue
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
