"""The dry run's listings made once per plan shape (issue 22): what expand() lists, what the estimate counts
and what surely_known() learns depend, but for the ids and bodies, only on which objects are known, the
upsert mode and a few flags of each step. The first event of a shape takes the general way (expand,
listing, paths_cost, surely_known) and leaves a template; the next ones fill it with their ids and bodies.

Never templated, so always the general way: a write that would repeat the object's last write (it is
listed with the earlier event that made it, CLI.md "Dry-run output"), create-only (what it lists for an
object known to exist depends on which event made it known), and a shape whose `when` texts name an id.
"""

from dataclasses import dataclass

from gspx_cli.mapping.plan import (RequireUser, Update, Upsert, create_path, expand_step, object_path,
                                   surely_known)
from gspx_cli.mapping.estimate import counts_of

_MAX_SHAPES = 256  # a handful occur; past this many the rest take the general way (bounds memory)
_UPDATE_BODY, _CREATE_BODY, _BODY = 1, 2, 3  # which body of its step a request carries or a write leaves


@dataclass(slots=True)
class Template:
    """One shape's listing: per request (method, step index, its create path or None for the object's own,
    body slot or 0, when); the estimate's counts; per object learnt (step index, digest slot or 0 for "")."""

    requests: tuple
    counts: tuple
    learns: tuple


class Templates:
    """Listings of plans by shape, for one dry run's `known` and upsert mode."""

    def __init__(self, known, mode, base_url):
        self._known = known
        self._mode = mode
        self._base_url = base_url
        self._shapes = {}  # shape -> Template, or None: this shape takes the general way

    def fill(self, plan):
        """(requests, learnt) of the plan as the general way would make them, or None: take the general way."""
        known = self._known
        digest = known.digest
        shape = []
        for step in plan.steps:
            kind = type(step)
            if kind is Upsert:
                last = known[step.kind].get(step.id)
                if last and last == digest(step.update_body):
                    return None  # unchanged: listed with its origin
                shape.append((step.kind, last is None, step.create_body is None, step.create_first))
            elif kind is Update:
                last = known[step.kind].get(step.id)
                if last and last == digest(step.body):
                    return None
                shape.append((step.kind, last is None))
            elif kind is RequireUser:
                shape.append(known["user"].get(step.user_id) is None)
            else:
                return None
        shape = tuple(shape)
        template = self._shapes.get(shape, False)
        if template is False:
            if len(self._shapes) < _MAX_SHAPES:
                self._shapes[shape] = self._template(plan)
            return None  # this once, the general way
        if template is None:
            return None
        steps, base_url = plan.steps, self._base_url
        requests = []
        for method, at, path, slot, when in template.requests:
            step = steps[at]
            if path is not None:
                url = base_url + path
            else:
                url = base_url + (object_path("user", step.user_id) if type(step) is RequireUser
                                  else object_path(step.kind, step.id))
            if slot:
                body = (step.update_body if slot == _UPDATE_BODY else step.create_body if slot == _CREATE_BODY
                        else step.body)
                item = {"method": method, "url": url, "json": body}
            else:
                item = {"method": method, "url": url}
            if when is not None:
                item["when"] = when
            requests.append(item)
        learnt = []
        for at, slot in template.learns:
            step = steps[at]
            if not slot:
                learnt.append((step.kind, step.id, ""))
            else:
                learnt.append((step.kind, step.id, digest(step.update_body if slot == _UPDATE_BODY else step.body)))
        return requests, template.counts, learnt

    def _template(self, plan):
        """The plan's Template, read off the general way's Calls; None when some text depends on an id."""
        known, mode = self._known, self._mode
        requests, calls, account = [], [], None
        ids = {step.user_id if type(step) is RequireUser else step.id for step in plan.steps}
        for at, step in enumerate(plan.steps):
            first = len(calls)
            expand_step(step, known, calls, mode, [], None, account=account)
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
                if call.unless is not None or call.when is not None and any(i in call.when for i in ids):
                    return None
                requests.append((call.method, at, create, slot, call.when))
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
        return Template(tuple(requests), counts_of(calls), tuple(learns))

