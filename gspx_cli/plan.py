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
class Write:
    """One unconditional write: attach user to account, or post a custom event."""

    method: str
    path: str
    body: dict


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


def describe(plan, base_url):
    """The dry-run `requests` list for a Plan (CLI.md "Dry-run output")."""
    out = []
    for step in plan.steps:
        if isinstance(step, Write):
            out.append({"method": step.method, "url": base_url + step.path, "json": step.body})
        elif isinstance(step, RequireUser):
            out.append(
                {"method": "GET", "url": base_url + object_path("user", step.user_id),
                 "when": "user not known to exist yet; a 404 fails the event"}
            )
        elif isinstance(step, Upsert):
            out.extend(_describe_upsert(step, base_url))
    return out


def _describe_upsert(step, base_url):
    # every item stays a real request (method, url, json); a create this event may not make
    # (an account without a name) is said in the `when` of the request that precedes it
    kind = step.kind
    update = {"method": "PUT", "url": base_url + object_path(kind, step.id), "json": step.update_body}
    if step.put_first:
        update["when"] = "always tried first"
        missing = f"PUT says the {kind} is not found"
    else:
        update["when"] = f"{kind} exists"
        missing = f"{kind} not found"
    if step.create_body is None:
        update["when"] += f"; when {missing}, the event fails: {step.create_error}"
        return [update]
    create = {"method": "POST", "url": base_url + create_path(kind), "json": step.create_body, "when": missing}
    return [update, create] if step.put_first else [create, update]
