"""Carries out a Plan by walking its Calls (plan.expand), remembering which users and accounts exist and
the last body written to each (MAPPING.md "Upserts")."""

import threading

from gspx_cli.errors import PxError
from gspx_cli.mapping.plan import CREATE_MESSAGE, RequireUser, Upsert, body_digest, expand

KNOWN_CACHE_SIZE = 1_000_000  # objects remembered per kind (~150 MB at most); past that the oldest is forgotten, which costs a request or two, never an error


class KnownIds:
    """Objects known to exist in PX, each with the digest of the last body written ("" when only found),
    shared by the workers; bounded, oldest forgotten first."""

    def __init__(self, limit=KNOWN_CACHE_SIZE):
        self._ids = {}  # insertion-ordered: the oldest comes first
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, object_id, default=None):
        """The digest of the last write ("" when unknown); default when not known to exist."""
        return self._ids.get(object_id, default)

    def add(self, object_id, last_write=""):
        """Remember one object; the oldest goes when the bound is reached."""
        with self._lock:
            self._ids.pop(object_id, None)  # the most recent write makes it the youngest
            self._ids[object_id] = last_write
            if len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]


def new_known():
    """An empty known-to-exist cache per kind, as expand() reads it."""
    return {"user": KnownIds(), "account": KnownIds()}


class Executor:
    """Makes the requests of one event in the order its Calls say (MAPPING.md flows).

    One Executor serves all workers. Two workers may race to create one account (two users of a new
    account): one POST wins, the other is refused and becomes the PUT.
    """

    def __init__(self, sender, known=None, stats=None):
        self._sender = sender
        self.known = known if known is not None else new_known()
        self._stats = stats  # sender.RequestStats: requests saved, objects found and created

    def execute(self, plan):
        """Make the requests of one event; returns what it taught about PX as (kind, id, digest) facts.
        Raises PxError when the event fails."""
        known, event_type, stats = self.known, plan.type, self._stats
        unchanged = []
        calls = expand(plan, known, unchanged)
        if stats is not None and plan.type != "track":
            _count_saved(stats, plan, known, unchanged)
        call_px = self._sender.call
        facts = []
        i, end = 0, len(calls)
        refused = None  # the message of a create PX refused, for an update that then says "not found"
        while i < end:
            call = calls[i]
            try:
                resp = call_px(call.method, call.path, call.body, event_type)
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
                i = i + 1 if call.ok is None else call.ok
            elif call.missing is not None and resp.missing:
                if call.missing is CREATE_MESSAGE:
                    raise PxError(refused[0], refused[1])
                if type(call.missing) is str:
                    raise PxError(resp.status, call.missing)
                i = call.missing
            elif call.refused is not None and resp.refused:
                refused = (resp.status, f"{call.method} {call.path}: HTTP {resp.status}: {resp.message}")
                i = call.refused
            else:
                _forget(known, call, facts)
                raise PxError(resp.status, f"{call.method} {call.path}: HTTP {resp.status}: {resp.message}")
        return facts


def _forget(known, call, facts):
    """A write that failed is not "the last write" (MAPPING.md): its object keeps existing, its digest goes."""
    if call.wrote is not None and call.known is not None:
        kind, object_id = call.known
        if known[kind].get(object_id):
            known[kind].add(object_id, "")
            facts.append((kind, object_id, ""))


def _count_saved(stats, plan, known, unchanged):
    """Requests a plan does without: unchanged writes, and lookups or creates of objects known to exist."""
    saved_known = 0
    for step in plan.steps:
        kind = type(step)
        if kind is RequireUser and known["user"].get(step.user_id) is not None:
            saved_known += 1
        elif kind is Upsert and step.create_first and known[step.kind].get(step.id) is not None:
            saved_known += 1
    with stats.lock:
        stats.saved_unchanged += len(unchanged)
        stats.saved_known += saved_known


def _count_upsert(stats, created):
    with stats.lock:
        if created:
            stats.upserts_created += 1
        else:
            stats.upserts_found += 1
