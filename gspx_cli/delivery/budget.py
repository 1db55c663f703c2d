"""The day's request budget (CLI.md `--daily-budget`): every attempt counted per UTC day, none beyond it."""

import threading
import time

from gspx_cli.errors import BudgetSpentError

_DAY = 86_400


def utc_day(epoch):
    """The UTC day of an epoch time, as "YYYY-MM-DD"."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


class DailyBudget:
    """Counts requests per UTC day (the checkpoint keeps the counts, shared by its runs); with a limit,
    take() refuses the request that would go past it. Thread-safe; the clock is injected for tests."""

    def __init__(self, limit=None, used_before=None, clock=time.time):
        self.limit = limit
        # {day: requests} earlier runs made (read from the checkpoint at the start, on the main thread:
        # one run at a time, so no other run can add to a day while this one is going)
        self._used_before = used_before or {}
        self._clock = clock
        self._lock = threading.Lock()
        self._new = {}  # day -> requests of this run not yet handed to the checkpoint
        self._counted = {}  # day -> requests of this run
        self.day = None
        self._day_ends = 0.0
        self.used = 0  # requests made today, earlier runs included

    def take(self):
        """Count one request; raises BudgetSpentError when the day's budget is spent."""
        now = self._clock()
        with self._lock:
            if now >= self._day_ends:
                self._roll(now)
            if self.limit is not None and self.used >= self.limit:
                raise BudgetSpentError(self.limit, self.used, self.day, self._day_ends - now)
            self.used += 1
            self._new[self.day] = self._new.get(self.day, 0) + 1
            self._counted[self.day] = self._counted.get(self.day, 0) + 1

    def spent(self):
        """True when no request may start today."""
        with self._lock:
            if self._clock() >= self._day_ends:
                self._roll(self._clock())
            return self.limit is not None and self.used >= self.limit

    def drain(self):
        """{day: requests} counted since the last call, for the checkpoint."""
        with self._lock:
            new, self._new = self._new, {}
            return new

    def _roll(self, now):
        self.day = utc_day(now)
        self._day_ends = (int(now) // _DAY + 1) * _DAY
        self.used = self._used_before.get(self.day, 0) + self._counted.get(self.day, 0)
