"""Carries out a Plan by walking its Calls (plan.expand), remembering which users and accounts exist."""

import threading

from gspx_cli.errors import PxError
from gspx_cli.plan import expand

KNOWN_CACHE_SIZE = 1_000_000  # ids remembered as existing, per kind (~100 MB at most); past that the oldest is forgotten, which costs one GET, never an error


class KnownIds:
    """Ids known to exist in PX, shared by the workers; bounded, oldest forgotten first (an extra GET)."""

    def __init__(self, limit=KNOWN_CACHE_SIZE):
        self._ids = {}  # insertion-ordered: the oldest comes first
        self._limit = limit
        self._lock = threading.Lock()

    def __contains__(self, object_id):
        return object_id in self._ids

    def add(self, object_id):
        """Remember one id; the oldest goes when the bound is reached."""
        with self._lock:
            self._ids[object_id] = None
            if len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]


def new_known():
    """An empty known-to-exist cache per kind, as expand() reads it."""
    return {"user": KnownIds(), "account": KnownIds()}


class Executor:
    """Makes the requests of one event in the order its Calls say (MAPPING.md flows).

    One Executor serves all workers. Two workers may race to create one account (two users of a new
    account): both see 404, one POST wins and the other gets 409, which leads to the PUT.
    """

    def __init__(self, sender, known=None):
        self._sender = sender
        self.known = known if known is not None else new_known()

    def execute(self, plan):
        """Make the requests of one event; raises PxError when the event fails."""
        calls = expand(plan, self.known)
        call_px, known, event_type = self._sender.call, self.known, plan.type
        i, end = 0, len(calls)
        while i < end:
            call = calls[i]
            resp = call_px(call.method, call.path, call.body, event_type)
            if resp.ok:
                if call.known is not None:
                    known[call.known[0]].add(call.known[1])
                i = i + 1 if call.ok is None else call.ok
            elif call.missing is not None and resp.missing:
                if type(call.missing) is str:
                    raise PxError(resp.status, call.missing)
                i = call.missing
            elif call.conflict is not None and resp.conflict:
                i = call.conflict
            else:
                raise PxError(resp.status, f"{call.method} {call.path}: HTTP {resp.status}: {resp.message}")
