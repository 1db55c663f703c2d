"""The sandbox's fault knobs: latency, failures and drops of attempts, outage windows, connection
closes. Checked before auth and state, like a proxy in front of PX."""

import random
import threading
import time
from collections import Counter

from gspx_cli.sandbox.replies import _BAD_GATEWAY_PAGE, DROP, Reply, _error


class Faults:
    """What goes wrong, and when; FakePX asks _fault() before it answers as PX would."""

    def __init__(self, latency=0.0, fail_first=0, fail_status=503, retry_after=None, drop_first=0,
                 fail_rate=0.0, seed=None, forbid=False, drop_rate=0.0, close_after=None, close_mode="abrupt"):
        self.lock = threading.RLock()
        self.latency = latency
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.drop_first = drop_first
        self.fail_rate = fail_rate
        self.drop_rate = drop_rate
        self.forbid = forbid
        self.close_after = close_after
        self.close_mode = close_mode
        self._fail_always = []  # (text in the body, status)
        self._attempts = Counter()
        self._fail_next = 0
        self._fail_next_status = None
        self.seed = seed
        self._rng = random.Random(seed)
        self._outage = None  # (start, end or None, status, retry_after) on time.monotonic()

    # -- knobs -----------------------------------------------------------------------------------

    def fail_next(self, n, status=None):
        """Answer the next n requests (whatever they are) with status (default fail_status)."""
        with self.lock:
            self._fail_next = n
            self._fail_next_status = status

    def fail_always(self, body_contains, status=502):
        """Answer every request whose body holds `body_contains` with `status`, every time (502: the
        proxy's HTML page): one event PX never takes, whatever else it does."""
        with self.lock:
            self._fail_always.append((body_contains.encode("utf-8"), status))

    def outage(self, seconds=None, status=503, retry_after=None, after=0.0):
        """From `after` seconds from now, answer every request with `status` (and Retry-After, if given)
        for `seconds` (None: until end_outage()), as PX or a proxy in front of it does when down."""
        start = time.monotonic() + after
        with self.lock:
            self._outage = (start, None if seconds is None else start + seconds, status, retry_after)

    def end_outage(self):
        """Answer normally again."""
        with self.lock:
            self._outage = None

    def in_outage(self, now=None):
        """True while the outage window is open."""
        window = self._outage
        if window is None:
            return False
        now = time.monotonic() if now is None else now
        return window[0] <= now and (window[1] is None or now < window[1])

    def reset_faults(self):
        """Turn every fault off (latency, failures, drops, forbid) and forget attempt counts."""
        with self.lock:
            self.latency = 0.0
            self.fail_first = 0
            self.fail_status = 503
            self.retry_after = None
            self.drop_first = 0
            self.fail_rate = 0.0
            self.drop_rate = 0.0
            self.forbid = False
            self._fail_next = 0
            self._fail_next_status = None
            self._outage = None
            self._fail_always = []
            self.close_after = None
            self._attempts.clear()

    def _fault(self, attempt):
        """The reply a fault knob gives this attempt (DROP included), or None: then PX answers."""
        if attempt <= self.drop_first:
            return DROP
        if attempt <= self.drop_first + self.fail_first:
            return self._failure(self.fail_status)
        if self._fail_next > 0:
            self._fail_next -= 1
            return self._failure(self._fail_next_status or self.fail_status)
        if self.drop_rate and self._rng.random() < self.drop_rate:
            return DROP
        if self.fail_rate and self._rng.random() < self.fail_rate:
            return self._failure(self.fail_status)
        return None

    def _failure(self, status, retry_after=None):
        retry_after = self.retry_after if retry_after is None else retry_after
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 502:
            return Reply(502, {"Content-Type": "text/html", **headers}, _BAD_GATEWAY_PAGE)
        return _error(status, "Service temporarily unavailable" if status != 429 else "Too many requests",
                      headers)
