"""A stateful stand-in for the Gainsight PX REST API: FakePX, the single state machine (STYLE.md habit 11).

server.py serves it on 127.0.0.1 for end-to-end tests, the benchmarks and `gspx sandbox`, and drives the
same object from `responses` callbacks for socket-free unit tests; faults.py holds its fault knobs.
"""

import json
import time
from collections import Counter

from gspx_cli.sandbox.faults import Faults
from gspx_cli.sandbox.replies import (_NO_CONTENT, _ROUTES, API_KEY_HEADER, DROP, RecordedRequest, _classify, _error,
                                      _json_reply)


class FakePX(Faults):
    """In-memory Gainsight PX: users, accounts, custom events, a request log and fault knobs.

    Order in handle(): an outage window, fail_always, drop_first, fail_first, fail_next, drop_rate,
    fail_rate (all before auth and state, like a proxy in front of PX), then forbid, then the API key, then
    the endpoint. drop_first / fail_first count attempts of each distinct request (method, path, body): a
    PX that fails every request at first. drop_rate / fail_rate are random shares of all attempts (seeded:
    `seed`). fail_always() refuses every request whose body holds a text: one event PX never takes.
    A 502 is answered with a proxy's HTML page, as nginx in front of PX does.

    close_after / close_mode act on connections, over HTTP only (SandboxServer): "abrupt" reads the
    request after the close_after-th on a connection, then resets the connection with no answer (recorded
    with status 0, not applied); "silent" closes a connection after its close_after-th answer without
    saying so, as a keep-alive timeout does.
    """

    def __init__(self, api_key=None, latency=0.0, fail_first=0, fail_status=503, retry_after=None,
                 drop_first=0, fail_rate=0.0, seed=None, forbid=False, drop_rate=0.0, duplicate_status=400,
                 close_after=None, close_mode="abrupt"):
        super().__init__(latency=latency, fail_first=fail_first, fail_status=fail_status, retry_after=retry_after,
                         drop_first=drop_first, fail_rate=fail_rate, seed=seed, forbid=forbid, drop_rate=drop_rate,
                         close_after=close_after, close_mode=close_mode)
        self.api_key = api_key
        # PX's published reference (v0.1.6) answers a create of an existing id 400 "Bad request,
        # possible duplicate"; older stand-ins answered 409
        self.duplicate_status = duplicate_status
        self.users = {}
        self.accounts = {}
        self.events = []
        self.requests = []

    # -- the state machine -----------------------------------------------------------------------

    def handle(self, method, path, headers, body_bytes, hang_up=False):
        """Answer one request: a Reply, or DROP to close the connection without answering. hang_up: the
        server closes this connection whatever the request (close_mode "abrupt"): only recorded."""
        method = method.upper()
        hdrs = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
        if isinstance(body_bytes, str):
            body_bytes = body_bytes.encode("utf-8")
        body_bytes = body_bytes or b""
        kind, obj_id = _classify(path)
        try:
            parsed = json.loads(body_bytes) if body_bytes.strip() else None
            bad_json = False
        except ValueError:
            parsed, bad_json = None, True
        t = time.monotonic()
        with self.lock:
            latency = self.latency
            key = (method, path, body_bytes)
            self._attempts[key] += 1
            attempt = self._attempts[key]
            refused = next((status for text, status in self._fail_always if text in body_bytes), None)
            if hang_up:
                reply = DROP
            elif self.in_outage(t):
                _, _, status, retry_after = self._outage
                reply = self._failure(status, retry_after)
            elif refused is not None:
                reply = self._failure(refused)
            else:
                reply = self._decide(method, kind, obj_id, hdrs, parsed, bad_json, attempt)
            status = 0 if reply is DROP else reply.status
            self.requests.append(RecordedRequest(method, path, obj_id, parsed, status, t, attempt, hdrs))
        if latency and latency > 0:
            time.sleep(latency)  # outside the lock: concurrent requests overlap as on the real API
        return reply

    def _decide(self, method, kind, obj_id, hdrs, body, bad_json, attempt):
        fault = self._fault(attempt)
        if fault is not None:
            return fault
        if self.forbid:
            return _error(403, "The API key does not have write permission")
        key = hdrs.get(API_KEY_HEADER.lower(), "")
        if not key or (self.api_key is not None and key != self.api_key):
            return _error(401, "Invalid or missing API key")
        if kind is None:
            return _error(404, "Not found")
        handler = _ROUTES.get((method, kind))
        if handler is None:
            return _error(405, f"Method {method} not allowed on {kind}")
        if bad_json:
            return _error(400, "Request body is not valid JSON")
        if method in ("POST", "PUT") and not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        return getattr(self, handler)(obj_id, body)

    def _get_user(self, uid, body):
        if uid not in self.users:
            return _error(404, f"User with identifyId '{uid}' not found")
        return _json_reply(200, self.users[uid])

    def _put_user(self, uid, body):
        if uid not in self.users:
            return _error(404, f"User with identifyId '{uid}' not found")
        self.users[uid].update(body)
        self.users[uid]["identifyId"] = uid
        return _NO_CONTENT

    def _duplicate(self, what):
        if self.duplicate_status == 409:
            return _error(409, f"{what} already exists")
        return _error(400, "Bad request, possible duplicate")

    def _post_user(self, _, body):
        uid = body.get("identifyId")
        if not isinstance(uid, str) or not uid:
            return _error(400, "identifyId is required")
        if uid in self.users:
            return self._duplicate(f"User with identifyId '{uid}'")
        self.users[uid] = dict(body)
        return _json_reply(201, self.users[uid])

    def _get_account(self, aid, body):
        if aid not in self.accounts:
            return _error(404, f"Account with id '{aid}' not found")
        return _json_reply(200, self.accounts[aid])

    def _put_account(self, aid, body):
        if aid not in self.accounts:
            return _error(404, f"Account with id '{aid}' not found")
        self.accounts[aid].update(body)
        self.accounts[aid]["id"] = aid
        return _NO_CONTENT

    def _post_account(self, _, body):
        aid = body.get("id")
        if not isinstance(aid, str) or not aid:
            return _error(400, "id is required")
        if aid in self.accounts:
            return self._duplicate(f"Account with id '{aid}'")
        self.accounts[aid] = dict(body)
        return _json_reply(201, self.accounts[aid])

    def _post_event(self, _, body):
        missing = [k for k in ("identifyId", "eventName") if not body.get(k)]
        if missing:
            return _error(400, f"{' and '.join(missing)} required")
        self.events.append(dict(body))
        return _json_reply(201, {"status": "created"})

    # -- reading the state -----------------------------------------------------------------------

    def calls(self, method=None, kind=None):
        """Recorded requests, optionally only those of one method and/or endpoint kind ("/users/{id}")."""
        with self.lock:
            out = list(self.requests)
        return [r for r in out if (method is None or r.method == method.upper())
                and (kind is None or _classify(r.path)[0] == kind)]

    def summary(self):
        """Counts: users, accounts, custom_events, requests, by_status, by_endpoint ("PUT /users/{id}")."""
        with self.lock:
            reqs = list(self.requests)
            out = {"users": len(self.users), "accounts": len(self.accounts),
                   "custom_events": len(self.events), "requests": len(reqs)}
        by_status = Counter(r.status for r in reqs)
        by_endpoint = Counter(f"{r.method} {_classify(r.path)[0] or 'other'}" for r in reqs)
        out["by_status"] = dict(sorted(by_status.items()))
        out["by_endpoint"] = dict(sorted(by_endpoint.items()))
        return out
