"""What the sandbox answers: a recorded request, a Reply (or DROP), PX's error body, the routes."""

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote

API_KEY_HEADER = "X-APTRINSIC-API-KEY"


@dataclass
class RecordedRequest:
    """One request as FakePX saw it; status 0 means the connection was dropped unanswered."""

    method: str
    path: str
    id: str | None
    body: object
    status: int
    t: float
    attempt: int
    headers: dict = field(default_factory=dict, repr=False)


@dataclass
class Reply:
    """An answer to write back: status, headers and the JSON body bytes."""

    status: int
    headers: dict
    body: bytes

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body) if self.body else None


class _Drop:
    """Type of DROP: close the connection without answering."""

    def __repr__(self):
        return "DROP"


DROP = _Drop()

# (method, endpoint kind) -> handler name; kinds are what summary() counts by.
_ROUTES = {
    ("GET", "/users/{id}"): "_get_user",
    ("PUT", "/users/{id}"): "_put_user",
    ("POST", "/users"): "_post_user",
    ("GET", "/accounts/{id}"): "_get_account",
    ("PUT", "/accounts/{id}"): "_put_account",
    ("POST", "/accounts"): "_post_account",
    ("POST", "/events/custom"): "_post_event",
}


def _classify(path):
    """Split a /v1 path into (endpoint kind, decoded id or None); kind None when the path is unknown."""
    path = path.split("?", 1)[0]
    if not path.startswith("/v1/"):
        return None, None
    parts = path[len("/v1/"):].split("/")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # tolerate one trailing slash
    if len(parts) == 1 and parts[0] in ("users", "accounts"):
        return f"/{parts[0]}", None
    if parts == ["events", "custom"]:
        return "/events/custom", None
    if len(parts) == 2 and parts[0] in ("users", "accounts") and parts[1]:
        # MAPPING.md: ids travel percent-encoded as one segment, so a raw "/" never splits an id.
        return f"/{parts[0]}/{{id}}", unquote(parts[1])
    return None, None


def _error(status, message, headers=None):
    """A Reply with the PX error body {"externalapierror": {"status", "message"}}."""
    name = HTTPStatus(status).name if status in HTTPStatus._value2member_map_ else str(status)
    return _json_reply(status, {"externalapierror": {"status": name, "message": message}}, headers)


_BAD_GATEWAY_PAGE = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                     b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
                     b"</body>\r\n</html>\r\n")


_NO_CONTENT = Reply(204, {}, b"")  # PX answers an update with 204 and no body


def _json_reply(status, obj, headers=None):
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return Reply(status, h, body)
