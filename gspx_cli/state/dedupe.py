"""Which messageIds were delivered, so no event is sent twice (MAPPING.md "Duplicate events").

With a checkpoint, its database remembers them across runs; without one, the most recent
MEMORY_LIMIT of this run are kept, in flat memory.
"""

from collections import deque

DUPLICATE = "duplicate messageId"  # the skip reason the counts group by; dry-run lines add "first at"
MEMORY_LIMIT = 1_000_000  # CLI.md "The checkpoint": without one, the most recent 1,000,000 messageIds


class RunMemory:
    """The messageIds delivered in this run, the most recent `limit` of them (oldest forgotten first).

    Keys are hash(messageId): Python's string hash is stable within a process, and two of a million
    ids meet on one 64-bit hash about once in 30 million runs; values pack the input and line.
    """

    def __init__(self, limit=MEMORY_LIMIT):
        self._seen = {}  # hash -> source index << 40 | line
        # the hashes, oldest first: forgetting the oldest is O(1). Not next(iter(dict)): a dict keeps
        # its deleted slots until it grows, and iterating past them made each add past the limit O(limit)
        self._order = deque()
        self._sources = []
        self._source_index = {}
        self._limit = limit

    def delivered_at(self, message_id):
        """FILE:LINE where it was first delivered ("" when unknown); None when never, as far as remembered."""
        packed = self._seen.get(hash(message_id))
        if packed is None:
            return None
        return f"{self._sources[packed >> 40]}:{packed & 0xFF_FFFF_FFFF}"

    def add(self, message_id, source, line_no):
        """Remember one delivered messageId."""
        index = self._source_index.get(source)
        if index is None:
            index = self._source_index[source] = len(self._sources)
            self._sources.append(source)
        seen, key = self._seen, hash(message_id)
        if key not in seen:
            seen[key] = index << 40 | line_no
            order = self._order
            order.append(key)
            if len(order) > self._limit:
                del seen[order.popleft()]


class StoredMemory:
    """The messageIds delivered by every run with this checkpoint (its database)."""

    def __init__(self, store):
        self._store = store

    def delivered_at(self, message_id):
        """FILE:LINE where it was first delivered ("" when unknown); None when never."""
        return self._store.delivered_at(message_id)

    def add(self, message_id, source, line_no):
        """Remember one delivered messageId (written with the checkpoint's next save; the store keeps the
        first place it was given, so no lookup first)."""
        self._store.add_delivered(message_id, f"{source}:{line_no}")
