"""Which events a run keeps (CLI.md "Filters"): --since / --until on the event time, --type, --event.

Events left out are skipped with the reason "filtered", counted and settled like any other skip.
"""


from gspx_cli.mapping.fields import SENT_TYPES, SKIPPED_TYPES
from gspx_cli.mapping.rules import to_epoch_ms

FILTERED = "filtered"
_TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")  # CLI.md: the event's time, in this order
_EVENT_TYPES = SENT_TYPES | SKIPPED_TYPES
_NUMBERS = (int, float)
KEPT = False  # left_out(): the event passes every filter
UNSURE = True  # left_out_roughly(): a number it reads may be off; ask left_out() of the exact value


class EventFilter:
    """keep(event) for the run's filters; since/until in epoch milliseconds, [since, until)."""

    def __init__(self, since=None, until=None, types=(), events=()):
        self._since = since
        self._until = until
        self._types = frozenset(t.lower() for t in types)
        self._events = tuple(events)
        if self._events:  # fnmatch (and its regexes) only for --event: a run without it never loads them
            from fnmatch import fnmatchcase

            self._match = fnmatchcase
        # the filters but --type, or None when there are none (a --type filter decides on the type alone)
        self._others = self._passes_others if events or since is not None or until is not None else None
        if self._others is None:  # a --type filter reads no number
            self.left_out_roughly = self.left_out
        self.by_type_only = self._others is None  # left_out(event) depends on event["type"] alone

    def __bool__(self):
        return self._since is not None or self._until is not None or bool(self._types) or bool(self._events)

    def keep(self, event):
        """True when the event passes every filter given."""
        return self.left_out(event) is KEPT

    def left_out(self, event):
        """KEPT when the event passes every filter given; else its type for the counts (a known type in
        lower case, or None), read in the same look."""
        event_type = event.get("type")
        event_type = event_type.lower() if isinstance(event_type, str) else None
        if (not self._types or event_type in self._types) and (self._others is None or
                                                               self._others(event, event_type)):
            return KEPT
        return event_type if event_type in _EVENT_TYPES else None

    def left_out_roughly(self, event):
        """left_out() of an event whose numbers may be off (jsonio.loads_bytes_loose: a big integer may be a
        float), or UNSURE when the filters read a number of it. Types and strings are always exact."""
        if self._others is not None:
            if self._events and type(event.get("event")) in _NUMBERS:
                return UNSURE
            if self._since is not None or self._until is not None:
                for name in _TIME_FIELDS:
                    if type(event.get(name)) in _NUMBERS:
                        return UNSURE
        return self.left_out(event)

    def _passes_others(self, event, event_type):
        """The filters but --type."""
        if self._events and event_type == "track":
            name = event.get("event")
            if isinstance(name, int) and not isinstance(name, bool):
                name = str(name)
            if not isinstance(name, str) or not any(self._match(name, p) for p in self._events):
                return False
        if self._since is not None or self._until is not None:
            when = event_time(event)
            if when is None:
                return False  # no readable time: it cannot be shown to lie in the window
            if self._since is not None and when < self._since:
                return False
            if self._until is not None and when >= self._until:
                return False
        return True


def event_time(event):
    """The event's time in epoch ms: timestamp, else originalTimestamp, else receivedAt; None if none parses."""
    for name in _TIME_FIELDS:
        value = event.get(name)
        if value is not None and value != "":
            ms = to_epoch_ms(value)
            if ms is not None:
                return ms
    return None
