"""The dry run's listings made once per plan shape (issue 22): what expand() lists, what the estimate counts
and what surely_known() learns depend, but for the ids and bodies, only on which objects are known, the
upsert mode and a few flags of each step. The first event of a shape takes the general way (expand,
listing, paths_cost, surely_known) and leaves a template; the next ones fill it with their ids and bodies.

Never templated, so always the general way: a write that would repeat the object's last write (it is
listed with the earlier event that made it, CLI.md "Dry-run output"), create-only (what it lists for an
object known to exist depends on which event made it known), and a shape whose `when` texts name an id.
"""

from dataclasses import dataclass

from gspx_cli.jsonio import fingerprint
from gspx_cli.mapping.plan import (RequireUser, Update, Upsert, body_fingerprint, create_path, expand_step,
                                   object_path, surely_known)
from gspx_cli.mapping.estimate import counts_of

_MAX_SHAPES = 256  # a handful occur; past this many the rest take the general way (bounds memory)
_URLS = 65536  # object URLs remembered per kind (~8 MB); past this many they start again
_UPDATE_BODY, _CREATE_BODY, _BODY = 1, 2, 3  # which body of its step a request carries or a write leaves


@dataclass(slots=True)
class Template:
    """One shape's listing: per request (method, step index, its URL when it is a create's, else None and
    the URLs of its object's kind and whether the step names it by user_id, body slot or 0, when, whether it
    carries an unchanged write's note); the estimate's Tally of its counts; per object learnt (step index,
    digest slot or 0 for "")."""

    requests: tuple
    tally: object
    learns: tuple


# a shape is a number: per step, 6 bits saying what the listing of that step depends on
_UPSERT, _UPDATE, _REQUIRE = 1, 33, 41  # + the step's flags: Upsert 0-31, Update 0-7, RequireUser 0-1
_STEP_BITS = 6


class Templates:
    """Listings of plans by shape, for one dry run's `known` and upsert mode; filling one also counts it
    in the estimate and teaches `known` (and `origin`: which event's write made each object known)."""

    def __init__(self, known, mode, base_url, estimate, origin):
        self._known = known
        # a body's digest, without the remembering wrapper where it cannot help (a body of more than one
        # field is not asked for twice: the learn reuses what the look at `known` took)
        self._digest = fingerprint if known.digest is body_fingerprint else known.digest
        self._mode = mode
        self._base_url = base_url
        self._estimate = estimate
        self._origin = origin  # per kind, id -> (FILE, LINE, known before): keyed as `known`, forgotten with it
        self._shapes = {}  # shape -> Template, or None: this shape takes the general way
        self._urls = {"user": {}, "account": {}}  # per kind, id -> its URL (at most _URLS: bounds memory)

    def fill(self, plan, source, line_no, unchanged):
        """The plan's requests as the general way would list them, counted and learnt, and the (kind, id)
        of its unchanged writes appended to `unchanged`; or None: take the general way (which then counts
        and learns)."""
        steps = plan.steps
        if len(steps) == 1 and steps[0].__class__ is Upsert:  # an identify
            requests = self._fill_upsert(steps[0], source, line_no)
            if requests is not None:
                return requests
        known = self._known
        shape = 0
        origins = None  # step index -> origin of an unchanged write's object
        digests = []  # per step, its body's digest when the look at `known` took it (the learn reuses it)
        for step in steps:
            kind = type(step)
            if kind is Upsert:
                body = step.update_body
            elif kind is Update:
                body = step.body
            elif kind is RequireUser:
                shape = shape << _STEP_BITS | (_REQUIRE + (known["user"].get(step.user_id) is None))
                digests.append(None)
                continue
            else:
                return None
            last = known[step.kind].get(step.id)
            if last:
                # one fingerprint per body: an attach's one-field body by the remembering digest (once
                # per account), any other by the plain one (no look at its cache that cannot hit)
                got = (known.digest if len(body) == 1 else self._digest)(body)
                digests.append(got)
                if last == got:
                    # unchanged: listed for when the write of the event that made it known was not
                    # applied, and expanded as things stood before that write
                    got = self._origin[step.kind].get(step.id)
                    if got is None:
                        return None
                    if origins is None:
                        origins = {}
                    origins[len(digests) - 1] = got
                    flags = 16 + (not got[2])
                else:
                    flags = 0
            else:
                digests.append(None)
                flags = last is None
            if kind is Upsert:
                flags += (_UPSERT + 2 * (step.create_body is None) + (4 if step.create_first else 0)
                          + 8 * (step.kind == "account"))
            else:
                flags = _UPDATE + (flags & 1) + 2 * (step.kind == "account") + (4 if flags & 16 else 0)
            shape = shape << _STEP_BITS | flags
        template = self._shapes.get(shape, False)
        if template is False:
            if len(self._shapes) < _MAX_SHAPES:
                self._shapes[shape] = self._template(plan)
            return None  # this once, the general way
        if template is None:
            return None
        requests = []
        for method, at, url, urls, by_user_id, slot, when, noted in template.requests:
            step = steps[at]
            if urls is not None:  # an object's URL, made once while it is met often
                object_id = step.user_id if by_user_id else step.id
                url = urls.get(object_id)
                if url is None:
                    url = self._url(urls, "user" if by_user_id else step.kind, object_id)
            if slot:
                body = (step.update_body if slot == _UPDATE_BODY else step.create_body if slot == _CREATE_BODY
                        else step.body)
                item = {"method": method, "url": url, "json": body}
            else:
                item = {"method": method, "url": url}
            if noted:  # expand()'s note, as it writes it
                got = origins[at]
                note = f"the write of {got[0]}:{got[1]} to {step.kind} {step.id} was not applied"
                item["when"] = note if when is None else f"{note}; {when}"
                unchanged.append((step.kind, step.id))
            elif when is not None:
                item["when"] = when
            requests.append(item)
        template.tally.uses += 1
        for at, slot in template.learns:
            step = steps[at]
            if slot:
                last = digests[at]
                if last is None:
                    body = step.update_body if slot == _UPDATE_BODY else step.body
                    last = (known.digest if len(body) == 1 else self._digest)(body)
            else:
                last = ""
            learn(known, self._origin, step.kind, step.id, last, source, line_no)
        return requests

    def _fill_upsert(self, step, source, line_no):
        """fill() of a plan of one upsert whose write is not unchanged and whose shape has its template,
        without fill()'s loops (the same shape, so the same template, requests, count and learn); None:
        fill()'s loops decide (an unchanged write's note names the event it repeats)."""
        known = self._known
        kind, object_id, body = step.kind, step.id, step.update_body
        ids = known[kind]
        last = ids.get(object_id)
        digest = None
        if last:
            digest = (known.digest if len(body) == 1 else self._digest)(body)
            if digest == last:
                return None
            shape = 0
        else:
            shape = last is None
        shape += (_UPSERT + 2 * (step.create_body is None) + (4 if step.create_first else 0)
                  + 8 * (kind == "account"))
        template = self._shapes.get(shape)
        if template is None:
            return None
        requests = []
        for method, _, url, urls, _, slot, when, _ in template.requests:  # a single step's: never noted
            if urls is not None:
                url = urls.get(object_id)
                if url is None:
                    url = self._url(urls, kind, object_id)
            if slot:
                item = {"method": method, "url": url, "json": body if slot == _UPDATE_BODY else step.create_body}
            else:
                item = {"method": method, "url": url}
            if when is not None:
                item["when"] = when
            requests.append(item)
        template.tally.uses += 1
        learns = template.learns
        if len(learns) == 1:  # learn(), inlined: whether the object was known is `last` (~0.3 us an identify)
            if not learns[0][1]:
                digest = ""
            elif digest is None:
                digest = (known.digest if len(body) == 1 else self._digest)(body)
            ids[object_id] = digest
            if last is None:
                origin = self._origin[kind]
                if len(ids) > ids.limit:  # LocalIds.add's bound: the least recently written goes
                    origin.pop(ids.popitem(last=False)[0], None)
                origin[object_id] = (source, line_no, False)
            else:
                ids.move_to_end(object_id)  # the youngest
                self._origin[kind][object_id] = (source, line_no, True)
            return requests
        for _, slot in learns:
            if not slot:
                digest = ""
            elif digest is None:
                digest = (known.digest if len(body) == 1 else self._digest)(body)
            learn(known, self._origin, kind, object_id, digest, source, line_no)
        return requests

    def _url(self, urls, kind, object_id):
        """The object's URL, remembered in urls (its kind's, at most _URLS)."""
        if len(urls) >= _URLS:
            urls.clear()
        url = urls[object_id] = self._base_url + object_path(kind, object_id)
        return url

    def _template(self, plan):
        """The plan's Template, read off the general way's Calls; None when some text depends on an id."""
        known, mode, origin = self._known, self._mode, self._origin
        requests, calls, account = [], [], None
        ids = {step.user_id if type(step) is RequireUser else step.id for step in plan.steps}
        for at, step in enumerate(plan.steps):
            first = len(calls)
            unchanged = []
            expand_step(step, known, calls, mode, unchanged, origin, account=account)
            if type(step) is RequireUser:
                path, bodies = object_path("user", step.user_id), ()
            else:
                path = object_path(step.kind, step.id)
                bodies = (((step.update_body, _UPDATE_BODY), (step.create_body, _CREATE_BODY))
                          if type(step) is Upsert else ((step.body, _BODY),))
                if type(step) is Upsert and step.kind == "account":
                    account = step.id
            for call in calls[first:]:
                if call.path == path:
                    create = None
                elif call.path == create_path(getattr(step, "kind", "user")):
                    create = call.path
                else:
                    return None
                slot = 0
                if call.body is not None:
                    slot = next((s for body, s in bodies if body is call.body), None)
                    if slot is None:
                        return None
                when, noted = call.when, False
                if call.unless is not None:  # the note of an unchanged write: fill() writes it
                    got = origin[step.kind].get(step.id) if unchanged and call is calls[first] else None
                    if got is None or call.unless != len(calls):
                        return None
                    note = f"the write of {got[0]}:{got[1]} to {step.kind} {step.id} was not applied"
                    if when == note:
                        when = None
                    elif when.startswith(note + "; "):
                        when = when[len(note) + 2:]
                    else:
                        return None
                    noted = True
                if when is not None and any(i in when for i in ids):
                    return None
                if create is not None:  # the URL is the same for every event of the shape
                    url, urls, by_user_id = self._base_url + create, None, False
                else:
                    by_user_id = type(step) is RequireUser
                    url, urls = None, self._urls["user" if by_user_id else step.kind]
                requests.append((call.method, at, url, urls, by_user_id, slot, when, noted))
        learns = []
        for kind, object_id, last in surely_known(plan, known, mode):
            at, step = next(((at, step) for at, step in enumerate(plan.steps) if type(step) is not RequireUser
                             and step.kind == kind and step.id == object_id), (None, None))
            if at is None:
                return None
            slot = 0 if last == "" else _UPDATE_BODY if type(step) is Upsert else _BODY
            if slot and known.digest(step.update_body if slot == _UPDATE_BODY else step.body) != last:
                return None
            learns.append((at, slot))
        return Template(tuple(requests), self._estimate.tally(counts_of(calls)), tuple(learns))


def learn(known, origin, kind, object_id, last, source, line_no):
    """Remember a write the dry run's way: in known (LocalIds.add: its bound, the most recent write the
    youngest) with its digest, and in origin which event made it; origin forgets what known forgets."""
    ids = known[kind]
    before = object_id in ids
    forgotten = ids.add(object_id, last)
    where = origin[kind]
    if forgotten is not None:
        where.pop(forgotten, None)
    where[object_id] = (source, line_no, before)
