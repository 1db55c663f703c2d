"""Dispatch: each read record parsed, filtered, mapped and deduplicated on the coordinator's thread, its
plan handed to the sink, and everything else settled at once (invalid, skipped, filtered, duplicate).

The coordinator owns the loop, the saves and the wind-down; this owns what happens to one record, and the
messageIds of the events in the sink (MAPPING.md "Duplicate events": one still in flight waits)."""

from orjson import JSONDecodeError, loads as orjson_loads

from gspx_cli.mapping import fields
from gspx_cli.jsonio import SHALLOW_BYTES, exact, loads_bytes_loose
from gspx_cli.mapping.filters import FILTERED, KEPT, UNSURE
from gspx_cli.mapping.plan import Invalid, Plan, RequireUser, Skipped, Update, Upsert
from gspx_cli.mapping.rules import Mapper, message_id as message_id_of
from gspx_cli.read.reader import parse_batch
from gspx_cli.read.shapes import Record, iter_records, parse_line
from gspx_cli.state.dedupe import DUPLICATE, RunMemory, StoredMemory
from gspx_cli.state.ledger import DELIVERED, FAILED, INVALID, SKIPPED

_EVENT_TYPES = fields.SENT_TYPES | fields.SKIPPED_TYPES
_VERDICTS_KEPT = 64  # the "type" spellings whose verdict _kept_quickly remembers
_KEEP = (KEPT,)  # _kept_quickly's verdict on an event the filter keeps (true, unlike KEPT: one look-up finds it)


class Dispatcher:
    """What happens to each record read: mapped and handed to the sink, or settled at once."""

    def __init__(self, settings, *, sink, reporter, ledger, store, resuming, dedupe=True, event_filter=None):
        self._filter = event_filter if event_filter else None  # CLI.md "Filters"
        self._sink = sink
        self._reporter = reporter
        self._ledger = ledger
        self._store = store  # the checkpoint's store, when the sink settles what it is given; else None
        self._resuming = resuming
        self._mapper = Mapper(settings)
        self._messages = None
        if dedupe:
            self._messages = StoredMemory(store) if store is not None else RunMemory()
        self._message_events = {}  # messageId -> events with it handed to the sink and not completed
        self._filtered = {}  # event type -> events left out by the filter and not yet counted (_kept)
        self._counted = set()  # the types of which a left-out event was settled one by one
        self._delivered = {}  # event type -> events completed at once, delivered and not yet counted
        self._delivered_types = set()  # the types of which a delivered event was settled one by one
        # _kept_quickly: a --type filter decides on the type alone, and the sink writes each left-out event's
        # line through reporter.dry_run_filtered(), as _kept_quickly does itself
        self._by_type = (self._filter is not None and self._filter.by_type_only
                         and getattr(sink, "filtered_lines_by_reporter", False))
        self._verdicts = {}  # a bare event's "type" -> _verdict(): its fate under a --type filter

    def dispatch(self, batch):
        """Parse and map each record of a batch, hand plans to the sink, settle the rest; returns how many
        plans the sink took to complete later. The hot path of a dry run."""
        if self._ledger.checkpoint is not None:  # each record is read (opened) in the checkpoint
            return self._dispatch(parse_batch(batch), self._filter)
        self._ledger.stats.read += len(batch)  # a batch or envelope line adds its other events below
        if self._filter is None:  # each line parsed as the loop takes its record (iter_records)
            more = [0]
            records = iter_records(batch, more)
            try:
                return self._dispatch(records, None)
            finally:
                for _ in records:  # a loop broken off: the lines left still count their events read
                    pass
                self._ledger.stats.read += more[0]
        quick = self._quick_way()
        kept = self._kept_quickly(batch, *quick) if quick else self._kept(batch)
        try:  # a filter without a checkpoint: left-out events never become Records in the loop
            return self._dispatch(kept, None)
        finally:
            kept.close()  # its counts are in self._filtered even when the loop broke off
            if self._filtered:
                self._ledger.settle_many(SKIPPED, FILTERED, self._filtered)
                self._filtered.clear()

    def _kept(self, batch):
        """The records of a batch but the events the filter leaves out, each of which has its line (a dry
        run's) and is counted here, in input order. The hot path of a filtered run: a left-out event costs
        its quick parse, its filter look and its line; its counts are added at the batch's end (settle_many)."""
        ledger, stats, filtered, counted = self._ledger, self._ledger.stats, self._filtered, self._counted
        left_out, left_out_roughly = self._filter.left_out, self._filter.left_out_roughly
        sink = self._sink
        record_filtered = getattr(sink, "record_filtered", None) or self._record_filtered
        for item in batch:
            if type(item) is not tuple:  # a problem Record of the reader's
                yield item
                continue
            raw = item[2]
            # first the quick parse: a line it finds valid is valid, and its type and strings are exact
            value = loads_bytes_loose(raw)
            if type(value) is dict and "type" in value:  # one bare event
                event_type = left_out_roughly(value)
                if event_type is not KEPT and event_type is not UNSURE:
                    record = Record(item[0], item[1], raw, value)
                    record_filtered(record, event_type)
                    count = filtered.get(event_type)
                    if count is not None:
                        filtered[event_type] = count + 1
                    elif event_type in counted:
                        filtered[event_type] = 1
                    else:  # the run's first of its type, settled at once: the counts' keys in today's order
                        counted.add(event_type)
                        ledger.settle(record, SKIPPED, FILTERED, event_type)
                    continue
            else:
                event_type = UNSURE
            # kept, or not sure: the exact value (the quick one when it is exact), and its shape
            if value is not None and exact(raw):
                parsed = parse_line(item[0], item[1], raw, False, value)
            else:
                parsed = parse_line(*item)
            if type(parsed) is not dict:
                stats.read += len(parsed) - 1
                yield from self._left_in(parsed, left_out, record_filtered)
                continue
            record = Record(item[0], item[1], raw, parsed)
            if event_type is KEPT:
                yield record
                continue
            event_type = left_out(parsed)
            if event_type is KEPT:
                yield record
            else:
                record_filtered(record, event_type)
                ledger.settle(record, SKIPPED, FILTERED, event_type)

    def _quick_way(self):
        """reporter.filtered_block() when _kept_quickly may take a batch: a --type
        filter alone, a dry run whose lines go out in blocks, stdout not failed; else None."""
        if not self._by_type or self._sink.error is not None:
            return None
        return self._reporter.filtered_block()

    def _kept_quickly(self, batch, held, room, head_of, tails):
        """_kept() of a batch, specialised for a --type filter alone in a dry run: a left-out bare event costs
        its quick parse, a look-up of its type and its line (head, number, tail) appended to the reporter's
        held block; no Record, no call per line, its count added at the end. Anything else goes the general
        way (_kept), as do the run's first left-out event of each type (settled one by one: the counts' keys
        in input order) and the line that fills a block (the sink writes it, and handles a write error)."""
        verdicts, kept_one = self._verdicts, self._kept
        append = held.append
        left_out = []  # the type of each event left out here, counted at the end
        counted = left_out.append
        source = head = None
        find, loads = bytes.find, orjson_loads
        try:
            for item in batch:
                if type(item) is not tuple:  # a problem Record of the reader's
                    yield item
                    continue
                raw = item[2]
                # loads_bytes_loose(raw) inlined, where its depth bound holds without a count of brackets
                first = find(raw, b"[")
                if (len(raw) if first < 0 else 4 * len(raw) - 3 * first) <= SHALLOW_BYTES:
                    try:
                        value = loads(raw)
                    except JSONDecodeError:
                        value = None
                else:
                    value = loads_bytes_loose(raw)
                try:  # one look-up for a bare event of a remembered "type"; the rest raise, rarely
                    verdict = verdicts[value["type"]]
                except (KeyError, TypeError):  # not an object, no "type", not a str, or a new spelling
                    verdict = self._verdict_of(value, tails)
                if verdict is _KEEP:
                    if exact(raw):  # else parse_line() reads it exactly, in _kept
                        yield Record(item[0], item[1], raw, value)
                        continue
                elif verdict is not UNSURE and len(held) < room:
                    if item[0] is not source:
                        source = item[0]
                        head = head_of(source)
                    if head is not None:
                        append(b"%s%d%s" % (head, item[1], verdict[1]))
                        counted(verdict[0])
                        continue
                yield from kept_one((item,))
        finally:
            filtered = self._filtered
            for event_type in set(left_out):
                filtered[event_type] = filtered.get(event_type, 0) + left_out.count(event_type)

    def _verdict_of(self, value, tails):
        """_verdict() of a parsed line's "type" when it is a bare event with a str "type"; else UNSURE."""
        if type(value) is dict:
            event_type = value.get("type")
            if type(event_type) is str:
                return self._verdict(event_type, tails)
        return UNSURE

    def _verdict(self, event_type, tails):
        """What _kept_quickly does with a bare event of this "type" (a str): _KEEP; (its type for the counts,
        its line's tail) when left out; UNSURE for the general way (a type without a tail of its own, or
        one no event of which was settled yet). Remembered for a few spellings ("track", "TRACK")."""
        left_out = self._filter.left_out({"type": event_type})
        if left_out is KEPT:
            verdict = _KEEP
        elif left_out not in tails:
            verdict = UNSURE
        elif left_out in self._counted:
            verdict = (left_out, tails[left_out])
        else:
            return UNSURE  # not remembered: the general way settles the first of its type (the counts' keys)
        if len(self._verdicts) < _VERDICTS_KEPT:
            self._verdicts[event_type] = verdict
        return verdict

    def _left_in(self, records, left_out, record_filtered):
        """The records of a batch or envelope line (or its problem) but those the filter leaves out, settled here."""
        for record in records:
            if record.problem is None:
                event_type = left_out(record.event)
                if event_type is not KEPT:
                    record_filtered(record, event_type)
                    self._ledger.settle(record, SKIPPED, FILTERED, event_type)
                    continue
            yield record

    def _dispatch(self, batch, event_filter):
        """dispatch() of the records of a batch; event_filter: the run's, unless they are only those it keeps."""
        delivered = self._delivered
        try:
            return self._dispatch_records(batch, event_filter)
        finally:
            if delivered:
                self._ledger.settle_many(DELIVERED, None, delivered)
                delivered.clear()

    def _dispatch_records(self, batch, event_filter):
        handed = 0
        ledger, reporter, sink = self._ledger, self._reporter, self._sink
        map_event, settle, read, submit = self._mapper.map, ledger.settle, ledger.read, sink.submit
        checkpoint = ledger.checkpoint
        resuming = self._resuming
        recall = self._store is not None
        left_out = event_filter.left_out if event_filter is not None else None
        record_filtered = getattr(sink, "record_filtered", None) or self._record_filtered
        messages = self._messages
        # a sink that completes each plan at once (the dry run) remembers its messageId in the same look
        at_once = getattr(sink, "completes_at_once", False)
        claim = messages.first_or_add if messages is not None and at_once else None
        remember = messages is not None and not at_once  # messageIds remembered as the sink completes
        # without a checkpoint, a delivered event of a type already settled one by one is counted at the
        # batch's end (_dispatch): its settle() would only add counts
        delivered = self._delivered if checkpoint is None else None
        delivered_types = self._delivered_types
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
            elif left_out is not None and (event_type := left_out(record.event)) is not KEPT:
                # left out before mapping: its type for the counts, one line, no listing, estimate or messageId
                record_filtered(record, event_type)
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
                if recall:
                    self._recall(result)
                done = submit(record, result)
                if done is None:
                    handed += 1
                    if message_id is not None and messages is not None:
                        self._message_events[message_id] = self._message_events.get(message_id, 0) + 1
                    continue
                # completed at once: remembered above (claim), nothing with its messageId is left in the sink
                event_type = result.type
                if done is DELIVERED:
                    if message_id is not None and remember:
                        messages.add(message_id, record.source, record.line_no)
                    if delivered is not None:
                        if event_type in delivered_types:
                            delivered[event_type] = delivered.get(event_type, 0) + 1
                            continue
                        delivered_types.add(event_type)  # the run's first of its type: the counts' keys in today's order
                settle(record, done, None, event_type)
                continue
            sink.record(record, result)
            if kind is Skipped:
                settle(record, SKIPPED, result.reason, result.type)
            else:
                reporter.event_failed(record.where, result.message)
                settle(record, INVALID, result.message, result.type)
        return handed

    def _record_filtered(self, record, event_type):
        """sink.record_filtered() for a sink without one."""
        self._sink.record(record, Skipped(event_type, FILTERED))

    def complete(self, record, outcome, reason, event_type):
        """Settle a plan the sink completed later; an event waiting on its messageId may go on."""
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


def type_of(record):
    """The event type of a record never mapped, for the counts by type."""
    event = record.event
    value = event.get("type") if event is not None else None
    if isinstance(value, str) and value.lower() in _EVENT_TYPES:
        return value.lower()
    return None
