"""What a live run of the events seen would cost in requests, time and days (CLI.md "Cost estimate")."""

from collections import Counter

from gspx_cli.mapping.plan import paths_cost, request_kind

PX_DAILY_QUOTA = 1_000_000  # requests per day per subscription (PX's published reference, v0.1.6)
_DAY = 86_400.0
_SHAPES = 1024  # listing shapes remembered (a handful occur); past it, a shape is walked each time


class Tally:
    """How many events had one listing shape, whose counts_of() is `counts`: counted into the estimate
    when its figures are read, so that each event costs one addition (Estimate.tally)."""

    __slots__ = ("counts", "uses")

    def __init__(self, counts):
        self.counts = counts
        self.uses = 0


class Estimate:
    """Requests by kind along each listing's cheapest path (every object in the state the upsert order
    expects) and its dearest one (none in that state; races aside)."""

    def __init__(self):
        self._fewest = Counter()
        self._most = Counter()
        self._kinds = {}  # (method, object kind or id-less path) -> request kind: a handful, made once
        self._shapes = {}  # a listing's shape -> (its fewest, its most) request kinds and counts
        self._tallies = []  # Tally of each shape counted by its uses (a handful)

    def tally(self, counts):
        """A Tally of listings with these counts_of(): each `uses += 1` counts one event's listing."""
        tally = Tally(counts)
        self._tallies.append(tally)
        return tally

    @property
    def fewest(self):
        """Requests by kind along each listing's cheapest path (a Counter)."""
        return self._totals(0, self._fewest)

    @property
    def most(self):
        """Requests by kind along each listing's dearest path (a Counter)."""
        return self._totals(1, self._most)

    def _totals(self, which, counted):
        totals = Counter(counted)
        for tally in self._tallies:
            if tally.uses:
                for kind, n in tally.counts[which]:
                    totals[kind] += n * tally.uses
        return totals

    def add(self, calls):
        """Count one event's listing."""
        kinds, fewest, most = self._kinds, self._fewest, self._most
        if len(calls) == 1:  # most events: one request either way (a custom event, an update alone)
            call = calls[0]
            # (one listed only for when an earlier write was not applied, or a create-only attach, walks
            # its paths below: either may be left out of a path)
            if call.alt is None and call.unless is None and call.created is None:
                key = (call.method, call.known[0] if call.known is not None else call.path)
                kind = kinds.get(key)
                if kind is None:
                    kind = kinds[key] = f"{call.method} {request_kind(call.path)}"
                fewest[kind] += 1
                most[kind] += 1
                return
        # a longer listing (an object not known yet, a group): its two paths depend only on each call's
        # method, object kind, where its answers lead and whether a path leaves it out (unless, created),
        # so each such shape is walked once
        shape = tuple([(call.method, call.known[0] if call.known is not None else call.path, call.ok, call.alt,
                        call.unless, call.created is not None) for call in calls])
        counts = self._shapes.get(shape)
        if counts is None:
            if not calls:
                return
            counts = counts_of(calls)
            if len(self._shapes) < _SHAPES:
                self._shapes[shape] = counts
        for kind, n in counts[0]:
            fewest[kind] += n
        for kind, n in counts[1]:
            most[kind] += n

    def figures(self, rate_limit, daily_budget=None):
        """The `estimate` of --report: requests fewest and most (total, by kind), and what they cost."""
        per_day = daily_budget or PX_DAILY_QUOTA
        out = {}
        for name, counts in (("fewest", self.fewest), ("most", self.most)):  # each summed once here
            total = sum(counts.values())
            out[name] = {"requests": total, "by_kind": dict(sorted(counts.items())),
                         "seconds": round(total / rate_limit, 1), "days": round(total / per_day, 3)}
        out["rate_limit"] = rate_limit
        out["requests_per_day"] = per_day
        out["per_day_from"] = "delivery.daily_budget" if daily_budget else "PX's documented quota"
        return out


def counts_of(calls):
    """(fewest, most) of a listing, as ((request kind, n), ...) pairs: what Estimate.add counts for it."""
    fewest_kinds, most_kinds = paths_cost(calls)
    return tuple(Counter(fewest_kinds).items()), tuple(Counter(most_kinds).items())


def days_text(days):
    """Days as people read them: "under an hour", "5.2 h", "3.4 days"."""
    hours = days * 24
    if hours < 1:
        return "under an hour"
    if days < 1:
        return f"{hours:.1f} h"
    return f"{days:,.1f} days"


def seconds_text(seconds):
    """A duration: "42 s", "12 min", "3.5 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
