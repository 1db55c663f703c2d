"""What mapping decides for one event: a Plan of steps, or Skipped, or Invalid.

Delivery executes a Plan; dry-run describes the same Plan, so the two cannot drift apart.
"""

import re

from gspx_cli.jsonio import digest, fingerprint

# MAPPING.md "Gainsight PX REST API": create path, then one object's path
_PATHS = {"user": ("/users", "/users/"), "account": ("/accounts", "/accounts/")}
CUSTOM_EVENTS_PATH = "/events/custom"


# the characters quote() never encodes (RFC 3986 unreserved): such an id is its own segment
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")


def object_path(kind, object_id):
    """The path of one PX object, its id percent-encoded as one segment."""
    if _UNRESERVED.fullmatch(object_id):  # most ids; quote() costs ~1 us per call
        return _PATHS[kind][1] + object_id
    from urllib.parse import quote  # ~2 ms of start-up (ipaddress): only for such an id

    return _PATHS[kind][1] + quote(object_id, safe="")


def create_path(kind):
    """The path that creates a PX object of this kind."""
    return _PATHS[kind][0]


class _Value:
    """What @dataclass(slots=True, unsafe_hash=True) made of these classes, written out: @dataclass
    compiles its methods at every start, ~0.4 ms a class (issue 22). Values nobody mutates, but not
    frozen: that sets each field through object.__setattr__, ~1 us, and an event builds two or three."""

    __slots__ = ()

    def _fields(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return self._fields() == other._fields() if other.__class__ is self.__class__ else NotImplemented

    def __hash__(self):
        return hash(self._fields())

    def __repr__(self):
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Upsert(_Value):
    """Create or update one PX user/account (MAPPING.md identify, group step 2, "Upserts").

    update-first: PUT update_body, and POST create_body when PX says the object is missing;
    create_first: POST create_body, and PUT update_body when PX refuses the create. An object known to
    exist gets the PUT alone, and no request at all when update_body is its last write's.
    kind: "user" | "account"; create_body None: this event may not create the object (see create_error).
    """

    __slots__ = ("kind", "id", "update_body", "create_body", "create_error", "create_first")

    def __init__(self, kind, id, update_body, create_body, create_error=None, create_first=False):
        self.kind = kind
        self.id = id
        self.update_body = update_body
        self.create_body = create_body
        self.create_error = create_error
        self.create_first = create_first


class Update(_Value):
    """PUT one body to an object that must exist (group step 3, the attach); not repeated when unchanged."""

    __slots__ = ("kind", "id", "body")

    def __init__(self, kind, id, body):
        self.kind = kind
        self.id = id
        self.body = body


class RequireUser(_Value):
    """The user must already exist in PX (group step 1), else the event fails."""

    __slots__ = ("user_id",)

    def __init__(self, user_id):
        self.user_id = user_id


class Plan(_Value):
    """The requests one event needs, in order (type: identify | group | track); message_id: the event's
    messageId, for an event is never sent twice (MAPPING.md "Upserts")."""

    __slots__ = ("type", "user_id", "steps", "warnings", "message_id")

    def __init__(self, type, user_id, steps, warnings=(), message_id=None):
        self.type = type
        self.user_id = user_id
        self.steps = steps
        self.warnings = warnings
        self.message_id = message_id


class Skipped(_Value):
    """Deliberately not sent (page/screen/alias, or integrations turn PX off)."""

    __slots__ = ("type", "reason", "warnings")

    def __init__(self, type, reason, warnings=()):
        self.type = type
        self.reason = reason
        self.warnings = warnings


class Invalid(_Value):
    """The event cannot be sent; message says why."""

    __slots__ = ("message", "type", "warnings")

    def __init__(self, message, type=None, warnings=()):
        self.message = message
        self.type = type
        self.warnings = warnings


# ---- one description of what a plan may send: the live executor walks it, the dry run lists it ----


class Call(_Value):
    """One request a plan may make, and where each kind of answer leads.

    ok / missing / refused / duplicate: the index of the next Call (len(calls): the event is done; ok
    None: the next one), or for missing a message to fail the event with (CREATE_MESSAGE: the message of
    the create refused just before; SKIP: the event is skipped, NOT_IN_PX); None: that answer fails the
    event with PX's message.
    """

    __slots__ = ("method", "path", "body", "when", "ok", "missing", "refused", "known", "wrote", "alt", "fresh",
                 "duplicate", "created", "unless")
    __hash__ = None  # mutable (a dry run adds `when` and `unless`), as the dataclass was

    def __init__(self, method, path, body, when=None, ok=None, missing=None, refused=None, known=None, wrote=None,
                 alt=None, fresh=False, duplicate=None, created=None, unless=None):
        self.method = method
        self.path = path
        self.body = body
        self.when = when  # the case in which it is made (dry-run `when`); None: always
        self.ok = ok
        self.missing = missing
        self.refused = refused  # a create refused (any 400, or 409): MAPPING.md "Upserts"
        self.known = known  # (kind, id) known to exist once this call succeeds
        self.wrote = wrote  # the update body this write leaves in PX (its digest is remembered)
        self.alt = alt  # where the object being in the other state than expected leads (estimates)
        self.fresh = fresh  # an upsert's call whose object was not known: its answer tells found or created
        self.duplicate = duplicate  # create-only: a create refused because the object exists (found, done)
        self.created = created  # create-only attach: made only if this run created one of these (kind, id)
        # dry run: listed only for when an earlier event's write was not applied; where a healthy run goes
        self.unless = unless  # instead (that write applied, this one is unchanged)


# One unconditional write (post a custom event) is a plan step that is already its own Call: mapping
# builds it once and the executor and the dry run read it as is.
Write = Call
_new = object.__new__


def custom_event_plan(event_type, user_id, body, warnings, message_id):
    """Plan(event_type, user_id, (Write("POST", CUSTOM_EVENTS_PATH, body),), warnings, message_id), the plan
    of every track, with its slots set in place rather than through the two constructors' calls (the
    same classes and values: tests/test_plan_values.py pins it to them, every slot included)."""
    write = _new(Call)
    write.method = "POST"
    write.path = CUSTOM_EVENTS_PATH
    write.body = body
    write.when = write.ok = write.missing = write.refused = write.known = write.wrote = write.alt = None
    write.fresh = False
    write.duplicate = write.created = write.unless = None
    plan = _new(Plan)
    plan.type = event_type
    plan.user_id = user_id
    plan.steps = (write,)
    plan.warnings = warnings
    plan.message_id = message_id
    return plan


CREATE_MESSAGE = object()  # Call.missing: fail with the refused create's message (MAPPING.md "Upserts")
SKIP = object()  # Call.missing: the object is not in PX and update-only may not create it: skip the event

# delivery.upsert (MAPPING.md "Upserts"): two orders, and two modes that never create / never overwrite
UPDATE_FIRST, CREATE_FIRST, UPDATE_ONLY, CREATE_ONLY = "update-first", "create-first", "update-only", "create-only"
UPSERT_MODES = (UPDATE_FIRST, CREATE_FIRST, UPDATE_ONLY, CREATE_ONLY)
NOT_IN_PX = "not in Gainsight PX (--upsert update-only)"  # the skip reason (MAPPING.md), counted as is
# why a write was left out by a mode: the keys of --report's writes_left_out
LEFT_MISSING = NOT_IN_PX
LEFT_EXISTS = "exists (--upsert create-only)"
LEFT_NOT_CREATED = "attach to objects this run did not create (--upsert create-only)"
END = 1 << 62  # a Call index past any listing: the event ends there (skipped)


def expand(plan, known, unchanged=None, mode=None, origin=None):
    """The Calls of a Plan, given what is known of PX (known[kind].get(id): None when not known to exist,
    else the digest of the last write, "" when unknown), in listing order.

    Every path the executor can take is a run of these calls in this order, so the dry run's listing
    holds every request a live run could make for the event (CLI.md "Dry-run output"). Writes that
    would repeat the object's last write are left out and, when `unchanged` is a list, named in it;
    with `origin` (a dry run's: which earlier event made that last write, see _before), they are
    listed all the same, for when that write is not applied.
    """
    calls = []
    account = None
    for step in plan.steps:
        expand_step(step, known, calls, mode, unchanged, origin, account=account)
        if type(step) is Upsert and step.kind == "account":
            account = step.id
    return calls


def expand_step(step, known, calls, mode=None, unchanged=None, origin=None, left_out=None, account=None):
    """Append the Calls of one step to calls (its indexes count from the calls before it); left_out, a
    list, gets the reasons of the writes the mode leaves out before any request; account: the id of the
    plan's account, which a create-only attach may need to have been created by this run."""
    kind = type(step)
    if kind is Call:
        calls.append(step)
        return
    if kind is RequireUser:
        if known["user"].get(step.user_id) is None:
            _require_user(step.user_id, calls, mode)
        return
    object_kind, object_id = step.kind, step.id
    last = known[object_kind].get(object_id)
    body = step.body if kind is Update else step.update_body
    at, where = len(calls), None
    if last and _unchanged(known, object_kind, object_id, body, unchanged):
        where, last = _before(origin, object_kind, object_id)  # listed for when that write is not applied
        if where is None:
            return
    if last is not None and kind is Upsert and mode == CREATE_ONLY:  # never overwrite what exists
        if where is None:
            earlier, before = _before(origin, object_kind, object_id)
            if earlier is not None:  # a dry run: only for when that event's write is not applied
                where, last = earlier, before
        if last is not None:
            if left_out is not None:
                left_out.append(LEFT_EXISTS)
            return
    if kind is Update:
        _expand_update(step, calls, mode, account)
    else:
        _expand_upsert(step, last is not None, calls, mode)
    if where is not None:
        first = calls[at]
        note = f"the write of {where} to {object_kind} {object_id} was not applied"
        first.when = note if first.when is None else f"{note}; {first.when}"
        first.unless = len(calls)


def _before(origin, kind, object_id):
    """(FILE:LINE, what was known before) of the earlier event whose write made the object known (a dry
    run's origin: per kind, id -> (FILE, LINE, known before)), or (None, None); "" when it was known
    before that write too, None when not."""
    got = origin[kind].get(object_id) if origin is not None else None
    if got is None:
        return None, None
    return f"{got[0]}:{got[1]}", "" if got[2] else None


def _require_user(user_id, calls, mode):
    mark, path, at = ("user", user_id), object_path("user", user_id), len(calls)
    if mode == UPDATE_ONLY:  # MAPPING.md: a group whose user is missing is skipped, not failed
        calls.append(Call("GET", path, None, f"user not known to exist yet; a 404 skips the event: {NOT_IN_PX}",
                          ok=at + 1, missing=SKIP, known=mark, alt=END))
        return
    calls.append(Call("GET", path, None, "user not known to exist yet; a 404 fails the event", ok=at + 1,
                      missing=f"user '{user_id}' not found in Gainsight PX: an identify for this user must come first",
                      known=mark))


def _expand_update(step, calls, mode, account):
    # the attach: a plain update of a user known to exist by then (MAPPING.md "One object, one write")
    path, mark, at = object_path(step.kind, step.id), (step.kind, step.id), len(calls)
    if mode == UPDATE_ONLY:
        calls.append(Call("PUT", path, step.body, f"always; a 404 skips the event: {NOT_IN_PX}", ok=at + 1,
                          missing=SKIP, known=mark, wrote=step.body, alt=END))
    elif mode == CREATE_ONLY:
        created = (mark,) if account is None else (mark, ("account", account))
        names = f"{step.kind} {step.id}" + ("" if account is None else f" or account {account}")
        calls.append(Call("PUT", path, step.body, f"skipped unless this run created {names} (--upsert create-only)",
                          ok=at + 1, known=mark, wrote=step.body, created=created))
    else:
        calls.append(Call("PUT", path, step.body, ok=at + 1, known=mark, wrote=step.body))


_ONE_FIELD_DIGESTS = 4096  # past this many (~1 MB) a cache starts again: it bounds memory, not correctness


def _remembering(hash_of):
    """hash_of(body), computed once when it is asked for twice in a row (the listing and surely_known()
    ask for the same body in turn; the slot holds the body, so `is` cannot match a new dict at a reused
    address, and swapping a tuple is safe across threads), and once per value for a one-field body of
    text (the attach {"accountId": ...}: once per account)."""
    last_seen = (None, None)
    one_field = {}  # (name, text) -> hash_of({name: text})

    def remembered(body):
        nonlocal last_seen
        last_body, last = last_seen
        if last_body is body:
            return last
        if len(body) == 1:
            item = next(iter(body.items()))
            if item[1].__class__ is str:
                last = one_field.get(item)
                if last is None:
                    if len(one_field) >= _ONE_FIELD_DIGESTS:
                        one_field.clear()
                    last = one_field[item] = hash_of(body)
                return last  # the last-body slot keeps the account's body, asked for again after the attach
        last = hash_of(body)
        last_seen = (body, last)
        return last

    return remembered


body_digest = _remembering(digest)  # what the executor and the checkpoint remember of a write
body_fingerprint = _remembering(fingerprint)  # the same for a `known` that never leaves the process


class KnownInMemory(dict):
    """expand()'s `known` for knowledge kept only in this process: writes remembered by body_fingerprint."""

    digest = staticmethod(body_fingerprint)


def _unchanged(known, kind, object_id, body, unchanged):
    last = known[kind].get(object_id)
    # a `known` that never leaves the process (the dry run's KnownInMemory) remembers cheaper fingerprints
    if not last or last != getattr(known, "digest", body_digest)(body):
        return False
    if unchanged is not None:
        unchanged.append((kind, object_id))
    return True


def _expand_upsert(step, is_known, calls, mode=None):
    # MAPPING.md "Upserts": update-first or create-first; an object known to exist gets the PUT first
    kind, at = step.kind, len(calls)
    mark, body, fresh = (kind, step.id), step.update_body, not is_known
    path = object_path(kind, step.id)
    if mode == UPDATE_ONLY:  # never create: "not found" skips the event
        calls.append(Call("PUT", path, body, f"always; a 404 skips the event: {NOT_IN_PX}", ok=at + 1,
                          missing=SKIP, known=mark, wrote=body, alt=END, fresh=fresh))
        return
    if mode == CREATE_ONLY:  # never overwrite: only the create (an object known to exist gets nothing)
        if step.create_body is None:  # cannot create: it must exist already, else the event fails
            calls.append(Call("GET", path, None, f"the {kind} cannot be created by this event: a 404 fails it "
                                                 "(--upsert create-only)", ok=at + 1, missing=step.create_error,
                              known=mark))
            return
        calls.append(Call("POST", create_path(kind), step.create_body,
                          f"always; refused as a duplicate when the {kind} exists, which then gets no write "
                          "(--upsert create-only)", ok=at + 1, duplicate=at + 1, known=mark, wrote=body, fresh=True))
        return
    if step.create_body is None:  # may not create: the update alone, and "not found" fails the event
        calls.append(Call("PUT", path, body, ok=at + 1, missing=step.create_error, known=mark, wrote=body,
                          fresh=fresh))
        return
    if is_known:  # known to exist (this run, or the checkpoint): the PUT alone, PX's "not found" fails it
        calls.append(Call("PUT", path, body, ok=at + 1, known=mark, wrote=body))
        return
    if step.create_first or mode == CREATE_FIRST:
        done = at + 2
        calls.append(Call("POST", create_path(kind), step.create_body, ok=done, refused=at + 1, known=mark,
                          wrote=body, alt=at + 1, fresh=True))
        calls.append(Call("PUT", path, body, f"the create was refused: the {kind} exists", ok=done,
                          missing=CREATE_MESSAGE, known=mark, wrote=body, fresh=True))
        return
    done = at + 3
    calls.append(Call("PUT", path, body, ok=done, missing=at + 1, known=mark, wrote=body, alt=at + 1, fresh=True))
    calls.append(Call("POST", create_path(kind), step.create_body, f"PUT says the {kind} is not found",
                      ok=done, refused=at + 2, known=mark, wrote=body, fresh=True))
    calls.append(Call("PUT", path, body, "the create was refused: it was made meanwhile", ok=done,
                      missing=CREATE_MESSAGE, known=mark, wrote=body, fresh=True))


def describe(plan, base_url, known=None, unchanged=None):
    """The dry-run `requests` list for a Plan (CLI.md "Dry-run output"), from the same Calls a live run walks."""
    return listing(expand(plan, known or _NOTHING_KNOWN, unchanged), base_url)


def listing(calls, base_url):
    """The dry-run `requests` list of expanded Calls."""
    out = []
    for call in calls:
        if call.body is None:
            item = {"method": call.method, "url": base_url + call.path}
        else:
            item = {"method": call.method, "url": base_url + call.path, "json": call.body}
        if call.when is not None:
            item["when"] = call.when
        out.append(item)
    return out


def paths_cost(calls):
    """(fewest, most) requests of a listing: of the path where every object is in the state the upsert
    mode expects and the one where none is (CLI.md "Cost estimate"), the shorter and the longer (in
    update-only, a missing object ends the event early); each as a list of request kinds ("PUT /users")."""
    expected, other = _walk(calls, False), _walk(calls, True)
    return (expected, other) if len(expected) <= len(other) else (other, expected)


def _walk(calls, other_state):
    out, i = [], 0
    while i < len(calls):
        call = calls[i]
        if call.unless is not None:  # a healthy run applied the earlier write: this one is unchanged
            i = call.unless
            continue
        if other_state and call.created is not None:  # create-only: nothing created, no attach
            i += 1
            continue
        out.append(f"{call.method} {request_kind(call.path)}")
        nxt = call.alt if other_state and call.alt is not None else call.ok
        i = i + 1 if nxt is None else nxt
    return out


def request_kind(path):
    """The endpoint of a path, for counts: "/users", "/accounts", "/events/custom"."""
    parts = path.split("/", 2)
    return "/" + parts[1] if parts[1] != "events" else path


def surely_known(plan, known, mode=None):
    """The (kind, id, digest) that a successful run of the plan is sure to leave in PX, for a dry run's
    `known`: the digest of the last body written, "" for an object only found to exist (or, in
    create-only, created or found: which one, the dry run cannot tell).

    Only what cannot fail against a healthy PX: a group whose user is not known may fail (user not
    found), so it teaches nothing; an account this event cannot create may not exist; in update-only,
    an object not known may be missing, and the event skipped.
    """
    learnt = []
    if len(plan.steps) == 1 and type(plan.steps[0]) is Call:  # a custom event teaches nothing
        return learnt
    digest_of = getattr(known, "digest", body_digest)
    for step in plan.steps:
        kind = type(step)
        if kind is RequireUser:
            if known["user"].get(step.user_id) is None:
                return learnt
        elif kind is Upsert:
            is_known = known[step.kind].get(step.id) is not None
            if not is_known and (step.create_body is None or mode == UPDATE_ONLY):
                return learnt
            if mode != CREATE_ONLY:
                learnt.append((step.kind, step.id, digest_of(step.update_body)))
            elif not is_known:
                learnt.append((step.kind, step.id, ""))
        elif kind is Update:  # the attach: sure only of a user known or made by this very plan
            if known[step.kind].get(step.id) is None and (step.kind, step.id) not in {k[:2] for k in learnt}:
                return learnt
            learnt.append((step.kind, step.id, "" if mode == CREATE_ONLY else digest_of(step.body)))
    return learnt


class _Nothing:
    """Nothing known: every get() is None."""

    @staticmethod
    def get(object_id, default=None):
        return default


_NOTHING_KNOWN = {"user": _Nothing(), "account": _Nothing()}
