"""Where the coordinator hands each Plan: printed (the dry run) or sent over HTTP by worker threads.

A sink's submit() either completes at once and returns the outcome, or returns None and later puts
("done", record, outcome, reason, event type, facts) on the coordinator's inbox; facts are the
(kind, id, digest of the last write) the event taught about PX, for the checkpoint. Nothing here touches the
ledger or the checkpoint: the coordinator alone settles (STYLE habit 13).
"""

import threading
from collections import deque

from gspx_cli.state.dedupe import DUPLICATE
from gspx_cli.errors import AuthRejectedError, BudgetSpentError, Interrupted, OutageError, OutputError, PxError
from gspx_cli.delivery.executor import Executor, Skip, new_known
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, SKIPPED
from gspx_cli.mapping.estimate import Estimate, counts_of
from gspx_cli.mapping.plan import CREATE_ONLY, Call, KnownInMemory, expand, listing, surely_known
from gspx_cli.mapping.templates import Templates, learn
from gspx_cli import jsonio

QUEUE_PER_WORKER = 64  # bounds memory: the coordinator stops taking input past concurrency x this many queued events


def listing_start(method, url):
    """The text of the dry-run listing [{"method":M,"url":U,"json":BODY}] up to BODY, as jsonio.dumps_line
    writes it (Reporter.dry_run_listed); None where a line holding it takes the general way (a null in it)."""
    text = jsonio.dumps_part([{"method": method, "url": url, "json": 0}])
    return text[:-3] if text is not None and text.endswith(b":0}]") else None


class PrintSink:
    """The dry run: each event's listing goes to stdout at once; the run's knowledge is simulated."""

    remembers = False  # a dry run settles nothing: the checkpoint's memory is neither read nor written
    completes_at_once = True  # submit() returns the outcome: the coordinator remembers a messageId as it submits
    # record_filtered() writes the line through reporter.dry_run_filtered(): the dispatcher may write it
    # itself from the reporter's parts (Dispatcher._kept_quickly)
    filtered_lines_by_reporter = True

    def __init__(self, reporter, base_url, mode=None):
        self._reporter = reporter
        self._base_url = base_url
        self._mode = mode  # delivery.upsert
        # what earlier events make known, as a live run would learn it (CLI.md "Dry-run output")
        # remembered by fingerprint, not by the checkpoint's digest: this knowledge never leaves the process
        # (one thread: no lock)
        self.known = KnownInMemory(new_known(local=True))
        # per kind, id -> (FILE, LINE of the event whose write made it known, known before it): a write it
        # makes unchanged is listed all the same, for when that one is not applied (CLI.md "Dry-run output");
        # keyed as known, and an id forgotten there is forgotten here (plain dicts: known keeps the order)
        self._origin = {"user": {}, "account": {}}
        self.estimate = Estimate()  # what a live run of these events would cost (CLI.md "Cost estimate")
        # listings, counts and learning made once per plan shape (identify and group events)
        self._templates = (None if mode == CREATE_ONLY else
                           Templates(self.known, mode, base_url, self.estimate, self._origin))
        self._custom = {}  # a custom event's path -> (its method, its Tally: the estimate's count of them, its URL)
        self.error = None  # an OutputError once stdout could not be written (disk full): the run stops

    def submit(self, record, plan):
        """Print the plan's listing; the event counts as (would be) delivered."""
        steps = plan.steps
        general = False
        if len(steps) == 1 and type(steps[0]) is Call:  # a custom event: its own listing, and it teaches nothing
            call = steps[0]
            unchanged = ()
            custom = self._custom.get(call.path)
            if custom is not None and custom[0] == call.method:
                custom[1].uses += 1
                if self.error is None and custom[3] is not None:
                    try:  # the listing's text up to the body made once: only the body is written per event
                        if self._reporter.dry_run_listed(record, plan.type, custom[3], call.body):
                            return DELIVERED
                    except BrokenPipeError:
                        raise
                    except OSError as exc:
                        self.error = OutputError(None, "standard output", exc)
                        self._reporter.abandon_out()
                        return DELIVERED
                requests = [{"method": call.method, "url": custom[2], "json": call.body}]
            else:
                self._count_custom(call)
                requests = listing(steps, self._base_url)
        else:
            unchanged = []
            requests = None
            if self._templates is not None:  # counted and learnt as it is filled
                requests = self._templates.fill(plan, record.source, record.line_no, unchanged)
            if requests is None:  # the general way
                general = True
                calls = expand(plan, self.known, unchanged, self._mode, self._origin)
                requests = listing(calls, self._base_url)
        if self.error is None:
            try:  # _write(), inlined: once per event
                self._reporter.dry_run_plan(record, plan.type, requests, unchanged)
            except BrokenPipeError:
                raise
            except OSError as exc:
                self.error = OutputError(None, "standard output", exc)
                self._reporter.abandon_out()
        if general:
            self.estimate.add(calls)
            self._learn(surely_known(plan, self.known, self._mode), record)
        return DELIVERED

    def _count_custom(self, call):
        """Count a custom event the estimate's way; one that is a plain request (the usual one: POST
        /events/custom) gets a Tally, so the next ones with its method and path are one addition each."""
        self.estimate.add([call])
        if call.body is not None and call.when is None and call.known is None and call.alt is None \
                and call.unless is None and call.created is None and len(self._custom) < 64 \
                and call.path not in self._custom:
            url = self._base_url + call.path
            self._custom[call.path] = (call.method, self.estimate.tally(counts_of([call])), url,
                                       listing_start(call.method, url))

    def _learn(self, learnt, record):
        """What a plan taught (surely_known) into known, and which event taught it into origin."""
        for kind, object_id, last in learnt:
            learn(self.known, self._origin, kind, object_id, last, record.source, record.line_no)

    def record(self, record, result):
        """A skipped or invalid event has its line too."""
        if self.error is None:
            try:  # _write(), inlined: once per event left out
                self._reporter.dry_run(record, result)
            except BrokenPipeError:
                raise
            except OSError as exc:
                self.error = OutputError(None, "standard output", exc)
                self._reporter.abandon_out()

    def record_filtered(self, record, event_type):
        """An event a filter left out has its line too."""
        if self.error is None:
            try:
                self._reporter.dry_run_filtered(record, event_type)
            except BrokenPipeError:
                raise
            except OSError as exc:
                self.error = OutputError(None, "standard output", exc)
                self._reporter.abandon_out()

    def _write(self, write, *args):
        # BrokenPipeError (the reader of stdout left: `| head`) ends the run quietly in cli.py;
        # any other write error (a full disk) stops it like a signal, with the summary and report.
        try:
            write(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.error = OutputError(None, "standard output", exc)
            self._reporter.abandon_out()

    def has_room(self):
        return True

    def idle(self):
        """The reader has nothing more ready: what is printed reaches the reader of stdout now."""
        if self.error is None:
            self._write(self._reporter.flush_out)

    def halt(self):
        return []

    def forget(self, message_id):
        pass

    def abandon(self):
        return []

    def close(self, timeout=0.0):
        """The end of the run: the last lines out."""
        self.idle()


class HttpSink:
    """Workers fed from per-user queues, so one user's events go in input order and users run in parallel."""

    error = None  # its outputs are the ledger's; nothing of its own can fail to be written
    remembers = True  # what it learns of PX goes to the checkpoint, and what the checkpoint knows to it
    completes_at_once = False  # outcomes come back on the inbox

    def __init__(self, settings, reporter, inbox, req_stats, session=None, budget=None, dedupe=True):
        from gspx_cli.delivery import gate
        from gspx_cli.delivery.px import PxClient
        from gspx_cli.delivery.sender import BACKOFF_BASE, Halt, RateLimiter, RetryPolicy, Sender

        d = settings.delivery
        self._client = PxClient(settings.base_url, settings.api_key, timeout=d.timeout,
                                pool_size=d.concurrency, session=session)
        self._halt = Halt()
        policy = RetryPolicy(d.max_retries, base=BACKOFF_BASE)  # read now, so tests can shorten it
        # the schedule is read now too, so tests can shorten it
        self._gate = gate.Gate(self._halt, d.max_outage, stats=req_stats,
                               on_news=lambda news: reporter.gate_news(news, self.waiting()),
                               hold_after=gate.HOLD_AFTER_FAILURES, min_requests=gate.HOLD_MIN_REQUESTS,
                               quiet=gate.HOLD_QUIET, probe_first=gate.PROBE_FIRST, probe_cap=gate.PROBE_CAP,
                               probe_turns=gate.PROBE_TURNS)
        sender = Sender(self._client, policy, RateLimiter(d.rate_limit), self._halt, req_stats,
                        on_request=reporter.request if reporter.verbose else None, gate=self._gate, budget=budget)
        self._executor = Executor(sender, stats=req_stats, mode=d.upsert, halt=self._halt)
        self.known = self._executor.known  # the coordinator adds what the checkpoint remembers
        self._dedupe = dedupe  # False with --no-dedupe: events with one messageId may run at once
        # messageId -> "inflight" or "delivered", for the events with it that started.
        # Two events with one messageId never run at once; the coordinator forgets an entry once no
        # event with it is queued (forget()), so this holds only what is in the pipeline.
        self._claims = {}
        self._claims_cond = threading.Condition()
        self._inbox = inbox
        self._queues = _UserQueues()
        self._limit = QUEUE_PER_WORKER * d.concurrency
        self._current = {}  # worker name -> (record, plan) in flight
        self._abandoned = False  # set by abandon(): late outcomes are no longer reported
        self._report_lock = threading.Lock()  # abandon() and a worker's report never interleave
        self._concurrency = d.concurrency
        self._threads = []  # started with the first event to send: a resume with nothing new starts none

    def submit(self, record, plan):
        """Queue the plan behind its user's earlier events; it completes on the inbox."""
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, daemon=True, name=f"gspx-{i}")
                             for i in range(self._concurrency)]
            for t in self._threads:
                t.start()
        self._queues.put(plan.user_id, (record, plan))
        return None

    def record(self, record, result):
        pass

    def record_filtered(self, record, event_type):
        pass

    def has_room(self):
        """False while the queues hold enough: the coordinator then takes no more input."""
        return self._queues.size < self._limit

    def waiting(self):
        """Events queued or in flight: what a hold keeps waiting."""
        return self._queues.size + len(self._current)

    def idle(self):
        pass

    def halt(self, hard=False):
        """Start nothing new; returns the (record, plan) pairs queued and never started."""
        self._halt.set(hard)
        return self._queues.drain()

    def abandon(self):
        """The (record, plan) pairs still in flight after the deadline: their outcome will not be waited for."""
        with self._report_lock:
            self._abandoned = True
            return list(self._current.values())

    def close(self, timeout=0.0):
        """Let the workers leave (after halt(), or with nothing queued), then close the connections."""
        self._queues.close()
        for t in self._threads:
            t.join(timeout)
        self._gate.close()  # a hold still going counts into the time held
        self._client.close()

    def _work(self):
        name = threading.current_thread().name
        while True:
            got = self._queues.get()
            if got is None:
                return
            user, (record, plan) = got
            self._current[name] = (record, plan)
            try:
                outcome, reason, stop, facts = self._deliver_once(plan)
            finally:
                with self._report_lock:
                    del self._current[name]
                    if not self._abandoned:
                        # the stop first: a coordinator that sees its last completion must not end
                        # the run as finished before it reads why the run stopped (a one-event input)
                        if stop is not None:
                            self._inbox.put(("stop",) + stop)
                        self._inbox.put(("done", record, outcome, reason, plan.type, facts))
                self._queues.done(user)

    def forget(self, message_id):
        """No event with this messageId is queued or in flight any more: the coordinator remembers it."""
        with self._claims_cond:
            self._claims.pop(message_id, None)

    def _deliver_once(self, plan):
        """_deliver, unless an event with the same messageId was delivered: then it is skipped; while
        one is in flight, wait for its outcome (MAPPING.md "Duplicate events")."""
        message_id = plan.message_id
        if message_id is None or not self._dedupe:
            return self._deliver(plan)
        claims, cond = self._claims, self._claims_cond
        with cond:
            while True:
                claim = claims.get(message_id)
                if claim is None:
                    claims[message_id] = "inflight"
                    break
                if claim == "delivered":
                    return SKIPPED, DUPLICATE, None, ()
                if self._halt.is_set():
                    return INTERRUPTED, None, None, ()
                cond.wait(0.25)
        result = None
        try:
            result = self._deliver(plan)
            return result
        finally:
            with cond:
                if result is not None and result[0] is DELIVERED:
                    claims[message_id] = "delivered"
                else:
                    del claims[message_id]  # failed or not sent: a later event with it is sent
                cond.notify_all()

    def _deliver(self, plan):
        """(outcome, reason, stop, facts) of one event; stop is (reason, error) when the whole run must stop."""
        if self._halt.is_set():  # queued, never started: not settled, so a resume sends it
            return INTERRUPTED, None, None, ()
        try:
            facts = self._executor.execute(plan)
        except Skip as exc:  # update-only: an object it needs is not in PX, and may not be created
            return SKIPPED, exc.reason, None, exc.facts
        except PxError as exc:
            return FAILED, exc.message, None, ()
        except AuthRejectedError as exc:
            self._halt.set(hard=True)  # not one more request with a refused key
            return INTERRUPTED, None, ("auth", exc), ()
        except OutageError as exc:
            self._halt.set(hard=True)
            return INTERRUPTED, None, ("outage", exc), ()
        except BudgetSpentError as exc:
            self._halt.set(hard=True)  # nothing new starts; the requests on the wire finish
            return INTERRUPTED, None, ("budget", exc), ()
        except Interrupted:
            return INTERRUPTED, None, None, ()
        except Exception as exc:  # a bug must fail one event, never lose it or kill the worker
            return FAILED, f"internal error: {type(exc).__name__}: {exc}", None, ()
        return DELIVERED, None, None, facts


class _UserQueues:
    """Events waiting to be sent, one FIFO per user; a user is handed to one worker at a time.

    This keeps each user's events in input order while any idle worker can take any other user,
    so one busy user never holds up the rest (as a fixed user -> worker shard would).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._waiting = {}  # user -> deque of items not yet started
        self._ready = deque()  # users with waiting items and none in flight, oldest first
        self._busy = set()  # users with an item in flight
        self.size = 0
        self._closed = False

    def put(self, user, item):
        """Queue item for user; never blocks (the coordinator watches size)."""
        with self._cond:
            waiting = self._waiting.get(user)
            if waiting is None:
                waiting = self._waiting[user] = deque()
                if user not in self._busy:
                    self._ready.append(user)
                    self._cond.notify()
            waiting.append(item)
            self.size += 1

    def get(self):
        """(user, item) of the oldest ready user, marking the user busy; None once closed and empty."""
        with self._cond:
            while not self._ready:
                if self._closed and self.size == 0:
                    return None
                self._cond.wait()
            user = self._ready.popleft()
            waiting = self._waiting[user]
            item = waiting.popleft()
            if not waiting:
                del self._waiting[user]
            self._busy.add(user)
            self.size -= 1
            return user, item

    def done(self, user):
        """The user's item is settled: its next one (if any) may go."""
        with self._cond:
            self._busy.discard(user)
            if user in self._waiting:
                self._ready.append(user)
                self._cond.notify()
            elif self._closed and self.size == 0:
                self._cond.notify_all()  # idle workers may leave

    def drain(self):
        """Take every waiting item out, in queue order per user."""
        with self._cond:
            items = [item for waiting in self._waiting.values() for item in waiting]
            self._waiting.clear()
            self._ready.clear()
            self.size = 0
            self._cond.notify_all()
            return items

    def close(self):
        """No more puts; workers leave once everything queued has been taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
