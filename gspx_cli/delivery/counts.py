"""RequestStats: the requests a run made, by kind and status, and what it saved; the reporter reads them.

Apart from sender.py so that a dry run, which makes no request, does not import the sending stack
(sender, gate, random: ~3 ms of its start-up). A plain class, not a dataclass: @dataclass generates
and compiles its methods at every start (~0.5 ms a class)."""

import threading
from collections import Counter


class RequestStats:
    """Requests made, by kind, and retries; updated from worker threads."""

    def __init__(self):
        self.by_kind = Counter()  # "POST /users" -> n
        self.by_status = Counter()
        self.by_event_type = Counter()  # "track" -> requests made for track events
        self.retries = 0
        self.possible_duplicates = 0  # custom events re-sent after an attempt whose answer never came
        self.saved_unchanged = 0  # writes not sent: the object's last write had the same body (MAPPING.md)
        self.saved_known = 0  # lookups and creates not sent: the object was known to exist
        self.upserts_found = 0  # upserts of objects not known beforehand that existed in PX
        self.upserts_created = 0  # ... and that had to be created
        self.left_out = Counter()  # writes update-only/create-only did not make, by why
        self.holds = 0  # times the gate closed (PX down, or a Retry-After); written by the gate
        self.held_seconds = 0.0
        self.hold = None  # ("holding" | "waiting", since as epoch seconds) while closed
        self.lock = threading.Lock()

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
