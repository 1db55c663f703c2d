"""Carries out a Plan by walking its Calls (plan.expand), remembering which users and accounts exist and
the last body written to each (MAPPING.md "Upserts")."""

import threading
from collections import OrderedDict

from gspx_cli.errors import Interrupted, PxError
from gspx_cli.mapping.plan import (CREATE_FIRST, CREATE_MESSAGE, CREATE_ONLY, LEFT_EXISTS, LEFT_MISSING,
                                   LEFT_NOT_CREATED, NOT_IN_PX, SKIP, Call, RequireUser, Update, Upsert, body_digest,
                                   expand_step)

KNOWN_CACHE_SIZE = 1_000_000  # objects remembered per kind (~150 MB at most); past that the oldest is forgotten, which costs a request or two, never an error


class KnownIds:
    """Objects known to exist in PX, each with the digest of the last body written ("" when only found),
    shared by the workers; bounded, oldest forgotten first (LocalIds, behind a lock)."""

    def __init__(self, limit=KNOWN_CACHE_SIZE):
        self._ids = LocalIds(limit)
        self._lock = threading.Lock()

    def get(self, object_id, default=None):
        """The digest of the last write ("" when unknown); default when not known to exist."""
        return self._ids.get(object_id, default)

    def add(self, object_id, last_write=""):
        """Remember one object; the oldest goes when the bound is reached."""
        with self._lock:
            self._ids.add(object_id, last_write)


class LocalIds(OrderedDict):
    """Known objects for one thread, bounded, the most recent write the youngest: the dry run's as it is,
    and the store KnownIds keeps behind its lock for the workers."""

    # an OrderedDict, not a dict: forgetting a dict's first key walks every slot deleted since the dict
    # last grew, so past the bound each add cost O(bound) (30,000 adds past 100,000: 0.27 s with a dict,
    # 0.01 s with an OrderedDict)
    __slots__ = ("limit",)

    def __init__(self, limit=KNOWN_CACHE_SIZE):
        super().__init__()
        self.limit = limit

    def add(self, object_id, last_write=""):
        """Remember one object as the youngest; returns the id forgotten to keep the bound, else None (the
        dry run forgets where that one's write came from too)."""
        if object_id in self:
            self[object_id] = last_write
            self.move_to_end(object_id)  # no delete and re-insert: cheaper
            return None
        self[object_id] = last_write
        if len(self) > self.limit:
            return self.popitem(last=False)[0]
        return None


def new_known(local=False):
    """An empty known-to-exist cache per kind, as expand() reads it; local: for one thread only."""
    cls = LocalIds if local else KnownIds
    return {"user": cls(), "account": cls()}


class Skip(Exception):
    """The event is deliberately not sent on (update-only: an object it needs is not in PX)."""

    def __init__(self, reason, facts):
        super().__init__(reason)
        self.reason, self.facts = reason, facts


class ObjectWrites:
    """The objects with a write in flight: one write per object at a time (MAPPING.md "One object, one
    write at a time"). An event holds at most one object at once, so two events never wait on each other."""

    def __init__(self, halt=None):
        self._busy = set()
        self._cond = threading.Condition()
        self._halt = halt

    def acquire(self, key):
        """Wait until no other event writes to key, then hold it; Interrupted when the run stops meanwhile."""
        with self._cond:
            while key in self._busy:
                if self._halt is not None and self._halt.is_set():
                    raise Interrupted()
                self._cond.wait(0.25)
            self._busy.add(key)

    def release(self, key):
        with self._cond:
            self._busy.discard(key)
            self._cond.notify_all()


class Executor:
    """Makes the requests of one event in the order its Calls say (MAPPING.md flows).

    One Executor serves all workers. Each write step is expanded only once the object is free of other
    events' writes, with what their answers made known: two users joining a new account cost one create,
    never a PUT 404, POST 400, PUT for the second (MAPPING.md "One object, one write at a time").
    """

    def __init__(self, sender, known=None, stats=None, mode=None, halt=None):
        self._sender = sender
        self.known = known if known is not None else new_known()
        self._stats = stats  # sender.RequestStats: requests saved, objects found and created
        self._mode = mode  # delivery.upsert; None: each Upsert's own order
        self._writes = ObjectWrites(halt)
        # create-only: the objects this run created (an attach is made only to them); bounded like known
        self.created = new_known() if mode == CREATE_ONLY else None

    def execute(self, plan):
        """Make the requests of one event; returns what it taught about PX as (kind, id, digest) facts.
        Raises PxError when the event fails, Skip when the mode leaves it out."""
        steps = plan.steps
        facts = []
        if len(steps) == 1 and type(steps[0]) is Call:  # a custom event: no object, nothing to wait for
            self._walk([steps[0]], plan, facts, 0)
            return facts
        account = None
        for n, step in enumerate(steps):
            kind = type(step)
            key = (step.kind, step.id) if kind is Upsert or kind is Update else None
            if key is not None:
                self._writes.acquire(key)
            try:
                calls, unchanged, left = [], [], []
                expand_step(step, self.known, calls, self._mode, unchanged, None, left, account)
                if self._stats is not None:
                    _count_saved(self._stats, step, self.known, unchanged, left, self._mode)
                self._walk(calls, plan, facts, n)
            finally:
                if key is not None:
                    self._writes.release(key)
            if kind is Upsert and step.kind == "account":
                account = step.id
        return facts

    def _walk(self, calls, plan, facts, step_index):
        known, stats, created = self.known, self._stats, self.created
        call_px = self._sender.call
        i, end = 0, len(calls)
        refused = None  # the message of a create PX refused, for an update that then says "not found"
        while i < end:
            call = calls[i]
            if call.created is not None and not any(created[k].get(o) is not None for k, o in call.created):
                _left_out(stats, LEFT_NOT_CREATED)  # create-only: an attach only to what this run made
                i += 1
                continue
            try:
                resp = call_px(call.method, call.path, call.body, plan.type)
            except PxError:
                _forget(known, call, facts)  # unanswered: PX may hold this body or the one before
                raise
            if resp.ok:
                if call.known is not None:
                    last = body_digest(call.wrote) if call.wrote is not None else known[call.known[0]].get(call.known[1], "")
                    known[call.known[0]].add(call.known[1], last)
                    facts.append((*call.known, last))
                    if call.fresh and stats is not None:
                        _count_upsert(stats, call.method == "POST")
                    if created is not None and call.method == "POST":
                        created[call.known[0]].add(call.known[1])
                i = i + 1 if call.ok is None else call.ok
            elif call.missing is not None and resp.missing:
                if call.missing is SKIP:
                    _left_out(stats, LEFT_MISSING, _writes_after(plan, step_index) + (call.method != "GET"))
                    raise Skip(NOT_IN_PX, facts)
                if call.missing is CREATE_MESSAGE:
                    raise PxError(refused[0], refused[1])
                if type(call.missing) is str:
                    raise PxError(resp.status, call.missing)
                i = call.missing
            elif call.duplicate is not None and resp.duplicate:  # create-only: it exists, and keeps what it holds
                kind, object_id = call.known
                last = known[kind].get(object_id, "")
                known[kind].add(object_id, last)
                facts.append((kind, object_id, last))
                if stats is not None:
                    _count_upsert(stats, False)
                _left_out(stats, LEFT_EXISTS)
                i = call.duplicate
            elif call.refused is not None and resp.refused:
                refused = (resp.status, f"{call.method} {call.path}: HTTP {resp.status}: {resp.message}")
                i = call.refused
            else:
                _forget(known, call, facts)
                raise PxError(resp.status, f"{call.method} {call.path}: HTTP {resp.status}: {resp.message}")


def _writes_after(plan, step_index):
    """The writes (upserts, attaches) of the steps after step_index: left out with a skipped event."""
    return sum(1 for step in plan.steps[step_index + 1:] if type(step) is Upsert or type(step) is Update)


def _left_out(stats, reason, n=1):
    if stats is not None and n:
        with stats.lock:
            stats.left_out[reason] += n


def _forget(known, call, facts):
    """A write that failed is not "the last write" (MAPPING.md): its object keeps existing, its digest goes."""
    if call.wrote is not None and call.known is not None:
        kind, object_id = call.known
        if known[kind].get(object_id):
            known[kind].add(object_id, "")
            facts.append((kind, object_id, ""))


def _count_saved(stats, step, known, unchanged, left, mode):
    """Requests a step does without: unchanged writes, lookups or creates of objects known to exist, and
    the writes the mode leaves out (create-only: an object known to exist gets none)."""
    kind = type(step)
    saved_known = 0
    if kind is RequireUser and known["user"].get(step.user_id) is not None:
        saved_known = 1
    elif kind is Upsert and (step.create_first or mode == CREATE_FIRST) and known[step.kind].get(step.id) is not None:
        saved_known = 1
    if not (unchanged or saved_known or left):
        return
    with stats.lock:
        stats.saved_unchanged += len(unchanged)
        stats.saved_known += saved_known
        for reason in left:
            stats.left_out[reason] += 1


def _count_upsert(stats, created):
    with stats.lock:
        if created:
            stats.upserts_created += 1
        else:
            stats.upserts_found += 1
