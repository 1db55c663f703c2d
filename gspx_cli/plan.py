"""What mapping decides for one event: a Plan of steps, or Skipped, or Invalid.

Delivery executes a Plan; dry-run describes the same Plan, so the two cannot drift apart.
"""

import re
from dataclasses import dataclass
from urllib.parse import quote

# MAPPING.md "Gainsight PX REST API": create path, then one object's path
_PATHS = {"user": ("/users", "/users/"), "account": ("/accounts", "/accounts/")}
CUSTOM_EVENTS_PATH = "/events/custom"

# Plans are values nobody mutates, but not frozen=True: a frozen dataclass sets each field through
# object.__setattr__, ~1 us per object, and every event builds two or three of them (issue 5).
# unsafe_hash keeps them hashable as frozen ones were.
_VALUE = {"slots": True, "unsafe_hash": True}


# the characters quote() never encodes (RFC 3986 unreserved): such an id is its own segment
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")


def object_path(kind, object_id):
    """The path of one PX object, its id percent-encoded as one segment."""
    if _UNRESERVED.fullmatch(object_id):  # most ids; quote() costs ~1 us per call
        return _PATHS[kind][1] + object_id
    return _PATHS[kind][1] + quote(object_id, safe="")


def create_path(kind):
    """The path that creates a PX object of this kind."""
    return _PATHS[kind][0]


@dataclass(**_VALUE)
class Upsert:
    """Create or update one PX user/account (MAPPING.md identify, group step 2).

    Default: look up (unless known to exist), then PUT update_body or POST create_body.
    put_first (limit_api_for_group): PUT, and create only when PX says the object is missing.
    A create refused as a duplicate is retried once as the PUT.
    """

    kind: str  # "user" | "account"
    id: str
    update_body: dict
    create_body: dict | None  # None: this event may not create the object (see create_error)
    create_error: str | None = None
    put_first: bool = False


@dataclass(**_VALUE)
class RequireUser:
    """The user must already exist in PX (group step 1), else the event fails."""

    user_id: str


@dataclass(**_VALUE)
class Plan:
    """The requests one event needs, in order."""

    type: str  # identify | group | track
    user_id: str
    steps: tuple
    warnings: tuple = ()


@dataclass(**_VALUE)
class Skipped:
    """Deliberately not sent (page/screen/alias, or integrations turn PX off)."""

    type: str | None
    reason: str
    warnings: tuple = ()


@dataclass(**_VALUE)
class Invalid:
    """The event cannot be sent; message says why."""

    message: str
    type: str | None = None
    warnings: tuple = ()


# ---- one description of what a plan may send: the live executor walks it, the dry run lists it ----


@dataclass(slots=True)
class Call:
    """One request a plan may make, and where each kind of answer leads.

    ok / missing / conflict: the index of the next Call (len(calls): the event is done; ok None:
    the next one), or for missing a message to fail the event with; None: that answer fails the
    event with PX's message.
    """

    method: str
    path: str
    body: dict | None
    when: str | None = None  # the case in which it is made (dry-run `when`); None: always
    ok: int | None = None
    missing: object = None
    conflict: int | None = None
    known: tuple | None = None  # (kind, id) known to exist once this call succeeds


# One unconditional write (attach a user to an account, post a custom event) is a plan step that
# is already its own Call: mapping builds it once and the executor and the dry run read it as is.
Write = Call


def expand(plan, known):
    """The Calls of a Plan, given the ids known to exist (known[kind] supports `in`), in listing order.

    Every path the executor can take is a run of these calls in this order, so the dry run's listing
    holds every request a live run could make for the event (CLI.md "Dry-run output").
    """
    calls = []
    for step in plan.steps:
        kind = type(step)
        if kind is Call:
            calls.append(step)
        elif kind is RequireUser:
            if step.user_id not in known["user"]:
                calls.append(Call("GET", object_path("user", step.user_id), None,
                                  "user not known to exist yet; a 404 fails the event", ok=len(calls) + 1,
                                  missing=f"user '{step.user_id}' not found in Gainsight PX: "
                                          "an identify for this user must come first",
                                  known=("user", step.user_id)))
        else:
            _expand_upsert(step, step.id in known[step.kind], calls)
    return calls


def _expand_upsert(step, is_known, calls):
    # MAPPING.md identify / group step 2 / "Fewer calls", and a create refused as a duplicate -> the PUT
    kind, at = step.kind, len(calls)
    mark = (kind, step.id)
    path = object_path(kind, step.id)
    creatable = step.create_body is not None
    if is_known and not step.put_first:  # known to exist: the update is the whole flow
        calls.append(Call("PUT", path, step.update_body, ok=at + 1, known=mark))
        return
    if step.put_first:
        if not creatable:
            calls.append(Call("PUT", path, step.update_body, ok=at + 1, missing=step.create_error, known=mark))
            return
        done = at + 3
        calls.append(Call("PUT", path, step.update_body, ok=done, missing=at + 1, known=mark))
        calls.append(Call("POST", create_path(kind), step.create_body, f"PUT says the {kind} is not found",
                          ok=done, conflict=at + 2, known=mark))
        calls.append(Call("PUT", path, step.update_body, "the create was refused: it was made meanwhile",
                          ok=done, known=mark))
        return
    lookup = f"{kind} not known to exist yet"
    if not creatable:
        done = at + 2
        calls.append(Call("GET", path, None, lookup, ok=at + 1, missing=step.create_error, known=mark))
        calls.append(Call("PUT", path, step.update_body,
                          f"{kind} exists; when it is not found, the event fails: {step.create_error}",
                          ok=done, known=mark))
        return
    done = at + 3
    calls.append(Call("GET", path, None, lookup, ok=at + 2, missing=at + 1, known=mark))
    calls.append(Call("POST", create_path(kind), step.create_body, f"{kind} not found", ok=done,
                      conflict=at + 2, known=mark))
    calls.append(Call("PUT", path, step.update_body, f"{kind} exists, or its create was refused as a duplicate",
                      ok=done, known=mark))


def describe(plan, base_url, known=None):
    """The dry-run `requests` list for a Plan (CLI.md "Dry-run output"), from the same Calls a live run walks."""
    out = []
    for call in expand(plan, known or _NOTHING_KNOWN):
        if call.body is None:
            item = {"method": call.method, "url": base_url + call.path}
        else:
            item = {"method": call.method, "url": base_url + call.path, "json": call.body}
        if call.when is not None:
            item["when"] = call.when
        out.append(item)
    return out


def surely_known(plan, known):
    """The ids that a successful run of the plan is sure to leave existing, for a dry run's `known`.

    Only what cannot fail against a healthy PX: a group whose user is not known may fail (user not
    found), so it teaches nothing; an account this event cannot create may not exist.
    """
    learnt = []
    if len(plan.steps) == 1 and type(plan.steps[0]) is Call:  # a custom event teaches nothing
        return learnt
    for step in plan.steps:
        kind = type(step)
        if kind is RequireUser:
            if step.user_id not in known["user"]:
                return learnt
        elif kind is Upsert:
            if step.create_body is None and step.id not in known[step.kind]:
                return learnt
            learnt.append((step.kind, step.id))
    return learnt


_NOTHING_KNOWN = {"user": (), "account": ()}
