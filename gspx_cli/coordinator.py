"""The run loop: one coordinator on the main thread owns reading results, mapping, the ledger and the
checkpoint; a reader thread (read/feeder.py) feeds it, dispatch.py turns each record into a plan for the
sink (print or HTTP) or an outcome, completions come back on the inbox (STYLE habit 13).
"""

import gc
import os
import queue
import signal
import time

from gspx_cli.delivery.budget import DailyBudget, utc_day
from gspx_cli.dispatch import Dispatcher, type_of
from gspx_cli.errors import STOP_EXIT_CODES
from gspx_cli.read.feeder import Reader
from gspx_cli.read.reader import ReadStats, parse_batch
from gspx_cli.state.ledger import INTERRUPTED

GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
WAIT_SECONDS = 0.25  # the longest the coordinator sleeps: a signal or a stop is acted on within this
CHECKPOINT_EVERY = 1.0  # seconds between checkpoint saves during a run
STOP_GRACE = 1.0  # beyond delivery.timeout, for requests in flight to come back after a stop
SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


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


class RunResult:
    """What a run did: the counts, the requests, what was read, and why it stopped early (if it did).
    A plain class: @dataclass generates and compiles its methods at every start (issue 22)."""

    def __init__(self, stats, requests, read, stop_reason=None, stop_error=None, estimate=None, delivery=None,
                 budget=None):
        self.stats = stats  # ledger.RunStats
        self.requests = requests  # counts.RequestStats
        self.read = read  # reader.ReadStats
        self.stop_reason = stop_reason
        self.stop_error = stop_error
        self.estimate = estimate  # estimate.Estimate of a dry run: what a live run would cost
        self.delivery = delivery  # the run's config.DeliverySettings (rate limit, budget, upsert order)
        self.budget = budget  # budget.DailyBudget of a live run: the requests of the day


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
    from gspx_cli.delivery.counts import RequestStats

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
        self._sink = sink
        self._inbox = inbox
        self._reporter = reporter
        self._ledger = ledger
        self._stop = stop
        self._pending = []  # batches taken from the inbox, not yet dispatched (the sink was full)
        self._outstanding = 0  # plans handed to the sink and not yet completed
        self._reader_done = False
        self._next_save = time.monotonic() + CHECKPOINT_EVERY
        self.read_stats = ReadStats()
        checkpoint = ledger.checkpoint
        # the run's memory (CLI.md "The checkpoint"): a dry run settles nothing, so it remembers in memory
        self._store = getattr(checkpoint, "store", None) if sink.remembers else None
        self._budget = budget
        self._resuming = checkpoint is not None and checkpoint.resumes_beyond_prefix
        self._dispatcher = Dispatcher(settings, sink=sink, reporter=reporter, ledger=ledger, store=self._store,
                                      resuming=self._resuming, dedupe=dedupe, event_filter=event_filter)
        watch = checkpoint.watch() if checkpoint is not None else None  # looked up as the walk reaches each input
        self._reader = Reader(paths, inbox, self.read_stats, stop.is_set, max_line_bytes=max_line_bytes,
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
                self._outstanding += self._dispatcher.dispatch(self._pending.pop(0))
                self._reader.room.release()
                continue
            if self._reader_done and not self._pending and self._outstanding == 0:
                return
            if not self._pending and not self._reader_done:
                message = self._reader.pull()  # inline reading: the next batch, now (else None: a thread reads)
                if message is not None:
                    self._handle(message)
                    self._tick()
                    continue
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
            self._dispatcher.complete(record, outcome, reason, event_type)
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
                ledger.settle(record, INTERRUPTED, None, type_of(record))
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
