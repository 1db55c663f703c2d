"""The run loop: one coordinator on the main thread owns reading results, mapping, the ledger and the
checkpoint; a reader thread feeds it, a sink (print or HTTP) takes each plan (STYLE habit 13).
"""

import gc
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass

from gspx_cli.mapping import fields
from gspx_cli.delivery.budget import DailyBudget, utc_day
from gspx_cli.state.dedupe import DUPLICATE, RunMemory, StoredMemory
from gspx_cli.errors import STOP_EXIT_CODES, ReplacedInputError
from gspx_cli.mapping.filters import FILTERED
from gspx_cli.state.ledger import DELIVERED, FAILED, INTERRUPTED, INVALID, SKIPPED
from gspx_cli.mapping.rules import Mapper, message_id as message_id_of
from gspx_cli.mapping.plan import Invalid, Plan, RequireUser, Skipped, Update, Upsert
from gspx_cli.read.reader import ReadStats, iter_line_batches, parse_batch

GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
READ_AHEAD_BATCHES = 4  # batches read but not yet dispatched: bounds memory, and what a stop leaves unsent
WAIT_SECONDS = 0.25  # the longest the coordinator sleeps: a signal or a stop is acted on within this
CHECKPOINT_EVERY = 1.0  # seconds between checkpoint saves during a run
STOP_GRACE = 1.0  # beyond delivery.timeout, for requests in flight to come back after a stop
SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
_EVENT_TYPES = fields.SENT_TYPES | fields.SKIPPED_TYPES
_FILTERED_AS = {t: Skipped(t, FILTERED) for t in (*_EVENT_TYPES, None)}  # one value per type, shared


class StopFlag:
    """Why the run stops, set once (the first reason wins); a second signal asks to abort at once."""

    def __init__(self):
        self.reason = None  # a key of errors.STOP_EXIT_CODES: "SIGINT", "auth", "outage", "output", ...
        self.error = None  # the exception behind it, if any
        self.abort = False

    def is_set(self):
        """True once the run is stopping."""
        return self.reason is not None

    def set(self, reason, error=None):
        """Stop the run; the first reason given wins."""
        if self.reason is None:
            self.reason = reason
            self.error = error


def install_signal_handlers(stop):
    """SIGINT, SIGTERM, SIGHUP stop the run gracefully; a second one aborts at once (after the checkpoint)."""

    def handler(signum, frame):
        if stop.is_set():
            stop.abort = True
        else:
            stop.set(SIGNALS[signum])

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    return lambda: [signal.signal(sig, h) for sig, h in previous.items()]


@dataclass
class RunResult:
    """What a run did: the counts, the requests, what was read, and why it stopped early (if it did)."""

    stats: object
    requests: object
    read: ReadStats
    stop_reason: str | None = None
    stop_error: object = None
    estimate: object = None  # estimate.Estimate of a dry run: what a live run would cost
    delivery: object = None  # the run's config.DeliverySettings (rate limit, budget, upsert order)
    budget: object = None  # budget.DailyBudget of a live run: the requests of the day


def run(settings, paths, *, reporter, ledger, dry_run=False, max_line_bytes, stop=None, stdin=None,
        session=None, dedupe=True, clock=time.time, event_filter=None, window=None):
    """Read, map and deliver (or print, for a dry run) every event; returns what happened."""
    # The run makes ~10 containers per event and almost no cycles: the collector need not scan what
    # start-up made (freeze), nor run every 700 allocations (measured ~3% of a dry run).
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        return _run(settings, paths, reporter=reporter, ledger=ledger, dry_run=dry_run,
                    max_line_bytes=max_line_bytes, stop=stop, stdin=stdin, session=session, dedupe=dedupe,
                    clock=clock, event_filter=event_filter, window=window)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run(settings, paths, *, reporter, ledger, dry_run, max_line_bytes, stop, stdin, session, dedupe, clock,
         event_filter, window):
    from gspx_cli.delivery.sender import RequestStats

    stop = stop or StopFlag()
    req_stats = RequestStats()
    inbox = queue.SimpleQueue()
    store = getattr(ledger.checkpoint, "store", None)
    budget = None
    if dry_run:
        from gspx_cli.delivery.sinks import PrintSink

        sink = PrintSink(reporter, settings.base_url, settings.delivery.upsert)
    else:
        from gspx_cli.delivery.sinks import HttpSink

        # every request is counted per UTC day (the checkpoint keeps the counts); a budget caps them
        today = utc_day(clock())
        budget = DailyBudget(settings.delivery.daily_budget,
                             {today: store.requests_on(today)} if store is not None else None, clock=clock)
        sink = HttpSink(settings, reporter, inbox, req_stats, session, budget=budget, dedupe=dedupe)
    coordinator = Coordinator(settings, paths, sink=sink, inbox=inbox, reporter=reporter, ledger=ledger,
                              stop=stop, max_line_bytes=max_line_bytes, stdin=stdin, dedupe=dedupe,
                              budget=budget, event_filter=event_filter, window=window)
    reporter.start(ledger.stats, req_stats, coordinator.read_stats, dry_run=dry_run)
    try:
        coordinator.run()
    finally:
        reporter.stop()
    estimate = sink.estimate if dry_run else None
    return RunResult(ledger.stats, req_stats, coordinator.read_stats, stop.reason, stop.error, estimate,
                     settings.delivery, budget)


class Coordinator:
    """The one loop that settles events: takes read batches, maps, hands plans to the sink, settles completions."""

    def __init__(self, settings, paths, *, sink, inbox, reporter, ledger, stop, max_line_bytes, stdin=None,
                 dedupe=True, budget=None, event_filter=None, window=None):
        self._settings = settings
        self._filter = event_filter if event_filter else None  # CLI.md "Filters"
        self._sink = sink
        self._inbox = inbox
        self._reporter = reporter
        self._ledger = ledger
        self._stop = stop
        self._mapper = Mapper(settings)
        self._pending = []  # batches taken from the inbox, not yet dispatched (the sink was full)
        self._outstanding = 0  # plans handed to the sink and not yet completed
        self._reader_done = False
        self._next_save = time.monotonic() + CHECKPOINT_EVERY
        self.read_stats = ReadStats()
        checkpoint = ledger.checkpoint
        # the run's memory (CLI.md "The checkpoint"): a dry run settles nothing, so it remembers in memory
        self._store = getattr(checkpoint, "store", None) if sink.remembers else None
        self._budget = budget
        self._messages = None
        if dedupe:
            self._messages = StoredMemory(self._store) if self._store is not None else RunMemory()
        self._message_events = {}  # messageId -> events with it handed to the sink and not completed
        self._resuming = checkpoint is not None and checkpoint.resumes_beyond_prefix
        watch = checkpoint.watch() if checkpoint is not None else None  # looked up as the walk reaches each input
        self._reader = _Reader(paths, inbox, self.read_stats, max_line_bytes=max_line_bytes,
                               skip_lines=watch.skip_lines if watch is not None else None, stdin=stdin,
                               inputs=watch, window=window,
                               outputs=(ledger.failed_output, checkpoint.path if checkpoint else None))

    def run(self):
        """Until every event read is settled, or the run stops; then write everything down."""
        self._reader.start()
        try:
            self._loop()
            if self._stop.is_set():
                self._wind_down()
        finally:
            try:
                self._sink.close(timeout=0.0 if self._stop.is_set() else 5.0)  # after a stop, in flight was waited for
            finally:  # also when stdout went away (BrokenPipeError): the checkpoint is saved
                self._count_requests()
                self._ledger.close()
                if self._ledger.output_error is not None:
                    self._stop.set("output", self._ledger.output_error)

    # -- the loop -----------------------------------------------------------------------------------
    def _loop(self):
        inbox, sink, stop = self._inbox, self._sink, self._stop
        while True:
            if stop.is_set():
                return
            if self._pending and sink.has_room():
                self._dispatch(self._pending.pop(0))
                self._reader.room.release()
                continue
            if self._reader_done and not self._pending and self._outstanding == 0:
                return
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                sink.idle()  # nothing more is ready: flush, so a trickle pipe's lines show at once
                self._tick()
                try:
                    message = inbox.get(timeout=WAIT_SECONDS)
                except queue.Empty:
                    continue
            self._handle(message)
            self._tick()

    def _handle(self, message):
        kind = message[0]
        if kind == "lines":
            self._pending.append(message[1])
        elif kind == "done":
            _, record, outcome, reason, event_type, facts = message
            self._outstanding -= 1
            if facts and self._store is not None:
                for fact in facts:
                    self._store.add_object(*fact)
            self._settle_completion(record, outcome, reason, event_type)
        elif kind == "stop":
            self._stop.set(message[1], message[2])
        elif kind == "eof":
            self._reader_done = True
            if message[1] is not None:  # a bug in the reader: say so, and end the input there
                self._reporter.error(f"internal error while reading: {type(message[1]).__name__}: {message[1]}")

    def _tick(self):
        if self._stop.abort:
            self._abort()
        now = time.monotonic()
        if now >= self._next_save:
            self._save()
            self._next_save = now + CHECKPOINT_EVERY
        error = self._ledger.output_error or self._sink.error
        if error is not None and not self._stop.is_set():
            self._stop.set("output", error)

    def _settle_completion(self, record, outcome, reason, event_type):
        if outcome is FAILED:
            self._reporter.event_failed(record.where, reason)
        # a completion carries the record, not the plan
        message_id = message_id_of(record.event) if self._messages is not None and record.event else None
        if message_id is not None:
            if outcome is DELIVERED:
                self._messages.add(message_id, record.source, record.line_no)
            left = self._message_events.get(message_id, 1) - 1
            if left <= 0:
                self._message_events.pop(message_id, None)
                self._sink.forget(message_id)
            else:
                self._message_events[message_id] = left
        self._ledger.settle(record, outcome, reason, event_type)

    def _dispatch(self, batch):
        """Parse, map each record of a batch and hand plans to the sink; the hot path of a dry run."""
        batch = parse_batch(batch)
        ledger, reporter, sink = self._ledger, self._reporter, self._sink
        map_event, settle, read, submit = self._mapper.map, ledger.settle, ledger.read, sink.submit
        checkpoint = ledger.checkpoint
        resuming = self._resuming
        keep = self._filter.keep if self._filter is not None else None
        messages = self._messages
        # a sink that completes each plan at once (the dry run) remembers its messageId in the same look
        claim = (messages.first_or_add if messages is not None and getattr(sink, "completes_at_once", False)
                 else None)
        if checkpoint is None:  # nothing to open per line: count the batch at once
            ledger.stats.read += len(batch)
        for record in batch:
            if checkpoint is not None:
                if resuming and checkpoint.skip_settled_before(record):
                    continue
                read(record)
            if record.problem is not None:
                if record.refused:  # a whole file of something else than events (reader._file_refusal)
                    result = Skipped(None, record.problem, (f"{record.problem}: the file is skipped",))
                else:
                    result = Invalid(record.problem)
            elif keep is not None and not keep(record.event):
                # left out before mapping: its type for the counts, one line, no listing, estimate or messageId
                event_type = _type_of(record)
                result = _FILTERED_AS.get(event_type) or Skipped(event_type, FILTERED)
                sink.record(record, result)
                settle(record, SKIPPED, FILTERED, event_type)
                continue
            else:
                try:
                    result = map_event(record.event)
                except Exception as exc:  # a mapping bug must fail one event, never the run
                    result = Invalid(f"internal error while mapping: {type(exc).__name__}: {exc}")
            if result.warnings:
                for warning in result.warnings:
                    reporter.warning(record.where, warning)
                    ledger.warn()
            kind = type(result)
            if kind is Plan:
                message_id = result.message_id
                if message_id is not None and messages is not None:
                    if claim is not None:
                        first = claim(message_id, record.source, record.line_no)
                    else:
                        first = messages.delivered_at(message_id)
                    if first is not None:  # MAPPING.md "Duplicate events": never sent twice
                        sink.record(record, Skipped(result.type, f"{DUPLICATE}, first at {first}" if first
                                                    else DUPLICATE))
                        settle(record, SKIPPED, DUPLICATE, result.type)
                        continue
                if self._store is not None:
                    self._recall(result)
                done = submit(record, result)
                if done is None:
                    self._outstanding += 1
                    if message_id is not None and messages is not None:
                        self._message_events[message_id] = self._message_events.get(message_id, 0) + 1
                else:  # completed at once: remembered above (claim), nothing with its messageId is left in the sink
                    if done is DELIVERED and message_id is not None and messages is not None and claim is None:
                        messages.add(message_id, record.source, record.line_no)
                    settle(record, done, None, result.type)
                continue
            sink.record(record, result)
            if kind is Skipped:
                settle(record, SKIPPED, result.reason, result.type)
            else:
                reporter.event_failed(record.where, result.message)
                settle(record, INVALID, result.message, result.type)

    def _recall(self, plan):
        """Tell the sink what the checkpoint knows of the plan's objects (known to exist, last write)."""
        known, store = self._sink.known, self._store
        for step in plan.steps:
            kind = type(step)
            if kind is Upsert or kind is Update:
                object_kind, object_id = step.kind, step.id
            elif kind is RequireUser:
                object_kind, object_id = "user", step.user_id
            else:
                continue
            if known[object_kind].get(object_id) is None:
                last = store.last_write(object_kind, object_id)
                if last is not None:
                    known[object_kind].add(object_id, last)

    def _save(self):
        """The checkpoint, with the requests counted per UTC day since the last save."""
        self._count_requests()
        self._ledger.save_checkpoint()

    def _count_requests(self):
        if self._budget is not None and self._store is not None:
            for day, count in self._budget.drain().items():
                self._store.add_requests(day, count)

    # -- stopping -----------------------------------------------------------------------------------
    def _wind_down(self):
        """Nothing new starts; requests in flight get up to delivery.timeout; the rest is not sent."""
        self._reader.stop()
        self._unsent(self._sink.halt())
        self._pending_to_unsent()
        deadline = time.monotonic() + self._settings.delivery.timeout + STOP_GRACE
        while self._outstanding > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                message = self._inbox.get(timeout=min(WAIT_SECONDS, left))
            except queue.Empty:
                message = None
            if message is not None:
                self._handle(message)
                self._pending_to_unsent()
            self._tick()
        self._drain_inbox()
        self._unsent(self._sink.abandon())  # no answer in time: not settled, a rerun sends it
        self._reader.join(2 * WAIT_SECONDS)  # it reads nothing more; let it hand over what it holds
        self._drain_inbox()

    def _drain_inbox(self):
        while True:
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._handle(message)
        self._pending_to_unsent()

    def _unsent(self, handed):
        """(record, plan) pairs the sink holds that will not be sent (queued, or in flight too long)."""
        for record, plan in handed:
            self._outstanding -= 1
            self._ledger.settle(record, INTERRUPTED, None, plan.type)

    def _pending_to_unsent(self):
        ledger, checkpoint = self._ledger, self._ledger.checkpoint if self._resuming else None
        for batch in self._pending:
            for record in parse_batch(batch):
                if checkpoint is not None and checkpoint.skip_settled_before(record):
                    continue
                ledger.read(record)
                ledger.settle(record, INTERRUPTED, None, _type_of(record))
            self._reader.room.release()
        self._pending = []

    def _abort(self):
        """A second signal: keep what was read but not sent, save the checkpoint and leave now."""
        code = STOP_EXIT_CODES.get(self._stop.reason, 1)
        self._reader.stop()
        self._unsent(self._sink.halt())  # queued, never started: cheap to keep, so kept
        self._pending_to_unsent()
        self._drain_inbox()  # what the reader already handed over; answers that came meanwhile
        kept = self._ledger.stats.unsent_saved
        self._count_requests()
        self._ledger.close()  # the failed output closed, the checkpoint saved
        try:
            self._reporter.flush_out()
        except Exception:  # noqa: BLE001 - leaving anyway; stdout may be a closed pipe
            pass
        where = f"; {kept:,} events read but not sent are in {self._ledger.failed_output}" if kept else ""
        os.write(2, (f"gspx: aborted at once (second signal): the checkpoint is saved{where}; "
                     "requests in flight were not waited for\n").encode())
        os._exit(code)


def _type_of(record):
    """The event type of a record never mapped, for the counts by type."""
    event = record.event
    value = event.get("type") if event is not None else None
    if isinstance(value, str) and value.lower() in _EVENT_TYPES:
        return value.lower()
    return None


class _Reader:
    """The reader thread: reads batches and puts them on the inbox, at most READ_AHEAD_BATCHES ahead."""

    def __init__(self, paths, inbox, stats, **read_options):
        self._paths = list(paths)
        self._inbox = inbox
        self._stats = stats
        self._options = read_options
        self._stopped = threading.Event()
        self.room = threading.Semaphore(READ_AHEAD_BATCHES)
        self._thread = threading.Thread(target=self._run, name="gspx-reader", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        """Read nothing more (a silent pipe is noticed within reader.POLL_SECONDS)."""
        self._stopped.set()

    def join(self, timeout):
        self._thread.join(timeout)

    def _run(self):
        error = None
        stopped = self._stopped.is_set
        try:
            for batch in iter_line_batches(self._paths, stats=self._stats, stopped=stopped, **self._options):
                while not self.room.acquire(timeout=WAIT_SECONDS):
                    if stopped():
                        break  # handed over anyway: what was read is accounted for
                self._inbox.put(("lines", batch))
                if stopped():
                    break
        except ReplacedInputError as exc:  # the run stops there, like a replaced FILE before it (exit 2)
            self._inbox.put(("stop", "replaced", exc))
        except Exception as exc:  # noqa: BLE001 - reported by the coordinator, never a dead silent thread
            error = exc
        self._inbox.put(("eof", error))
