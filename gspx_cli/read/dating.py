"""When an archive was written, by its name alone, and whether a time window can need it
(CLI.md "Reading only what the time window needs"). Pure: names in, epoch milliseconds out.

A span is (start, end) in epoch ms, end exclusive: what a folder or object of that name holds was
archived in it. Archives are written after their events happen, so a span that ends more than a day
(SINCE_MARGIN_MS: time zones, a workspace's custom time zone) before --since holds none of the
window's events; one that starts more than --lateness after --until holds none that are not later
than the user allows.
"""

import re

SECOND_MS = 1000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SINCE_MARGIN_MS = DAY_MS

# RudderStack's object-storage date folders: YYYY-MM-DD, and MM-DD-YYYY in older uploads
# (a bucket that switched layout holds both).
_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_US_DAY = re.compile(r"(\d{2})-(\d{2})-(\d{4})\Z")
# Event Replay's hour folders under a date folder: <YYYY-MM-DD>/<hour>/
_HOUR = re.compile(r"\d{1,2}\Z")
# Segment's received-day folders: segment-logs/<source>/<day in ms>/
_DAY_IN_MS = re.compile(r"[1-9]\d{12}\Z")
# A unix time is 10 digits in seconds (2001-2286) or 13 in milliseconds, without a leading zero:
# other numbers (job ids, versions, counters padded with zeros) are not taken for times.
# Event Replay: <first>_<last>_<workspace>_<uuid>.json.gz; RudderStack: <unix>.<source>.<uuid>.json.gz;
# Segment: <ms>.<id>.gz.
_UNIX = r"([1-9]\d{12}|[1-9]\d{9})"
_REPLAY_NAME = re.compile(_UNIX + "_" + _UNIX + "_")
_LEADING_UNIX = re.compile(_UNIX + r"\.")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_DURATION_UNITS = {"w": 7 * DAY_MS, "d": DAY_MS, "h": HOUR_MS, "m": 60_000, "s": SECOND_MS}


def span(name, is_dir, parent=None):
    """The (start, end) of what the folder or object `name` holds, or None when its name does not date it.
    parent: the span of the folder it is in (an hour folder is dated within its date folder)."""
    if is_dir:
        return _folder_span(name, parent)
    return _file_span(name)


def _folder_span(name, parent):
    day = _ISO_DAY.match(name)
    if day:
        return _day(int(day[1]), int(day[2]), int(day[3]))
    day = _US_DAY.match(name)
    if day:
        return _day(int(day[3]), int(day[1]), int(day[2]))
    if _HOUR.match(name) and parent is not None and parent[1] - parent[0] == DAY_MS:
        hour = int(name)
        if hour < 24:
            start = parent[0] + hour * HOUR_MS
            return start, start + HOUR_MS
        return None
    if _DAY_IN_MS.match(name):
        start = int(name)
        return start, start + DAY_MS
    return None


def _file_span(name):
    times = _REPLAY_NAME.match(name)
    if times:
        first, last = _instant(times[1]), _instant(times[2])
        return (first[0], last[1]) if first[0] <= last[0] else (last[0], first[1])
    time = _LEADING_UNIX.match(name)
    if time:
        return _instant(time[1])
    return None


def _instant(digits):
    """The span of one unix time as written: a second, or a millisecond."""
    if len(digits) == 13:
        ms = int(digits)
        return ms, ms + 1
    ms = int(digits) * SECOND_MS
    return ms, ms + SECOND_MS


def _day(year, month, day):
    import calendar  # ~1.5 ms of start-up (locale): only once a name is dated

    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]) or year < 1970:
        return None  # 2024-13-45 is a name, not a date
    start = calendar.timegm((year, month, day, 0, 0, 0)) * SECOND_MS
    return start, start + DAY_MS


def parse_duration(text):
    """--lateness: "7d", "36h", "90m", "1d12h", "2w" -> milliseconds; None when it is not a duration."""
    text = text.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return int(sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts))


class Window:
    """The archives a run's --since / --until / --lateness can need; a span None (undated) is always needed."""

    __slots__ = ("low", "high")

    def __init__(self, since=None, until=None, lateness=None):
        # low: a span ending at or before it holds nothing of the window; high: one starting after it neither
        self.low = since - SINCE_MARGIN_MS if since is not None else None
        self.high = until + lateness if until is not None and lateness is not None else None

    def __bool__(self):
        return self.low is not None or self.high is not None

    def needs(self, span):
        """True when an archive of this span may hold events of the window (or cannot be dated)."""
        if span is None:
            return True
        if self.low is not None and span[1] <= self.low:
            return False
        if self.high is not None and span[0] > self.high:
            return False
        return True
