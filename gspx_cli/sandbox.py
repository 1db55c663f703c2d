"""A stateful stand-in for the Gainsight PX REST API: one FakePX, served over HTTP or via `responses`.

FakePX is the single state machine (STYLE.md habit 11). SandboxServer serves it on 127.0.0.1 for
end-to-end tests, the benchmark and `gspx sandbox`; add_to_responses() drives the same object from
`responses` callbacks for socket-free unit tests. Stdlib only, except the lazily imported
requests/responses in the `responses` adapter.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

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


class FakePX:
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
        self.lock = threading.RLock()
        self.api_key = api_key
        self.latency = latency
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.drop_first = drop_first
        self.fail_rate = fail_rate
        self.drop_rate = drop_rate
        self.forbid = forbid
        # PX's published reference (v0.1.6) answers a create of an existing id 400 "Bad request,
        # possible duplicate"; older stand-ins answered 409
        self.duplicate_status = duplicate_status
        self.close_after = close_after
        self.close_mode = close_mode
        self._fail_always = []  # (text in the body, status)
        self.users = {}
        self.accounts = {}
        self.events = []
        self.requests = []
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

    def _failure(self, status, retry_after=None):
        retry_after = self.retry_after if retry_after is None else retry_after
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 502:
            return Reply(502, {"Content-Type": "text/html", **headers}, _BAD_GATEWAY_PAGE)
        return _error(status, "Service temporarily unavailable" if status != 429 else "Too many requests",
                      headers)

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


# -- real HTTP server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses its connections
    timeout = 30  # an idle keep-alive connection frees its thread after this long

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        px = self.server.px
        self.served += 1
        close_after, mode = px.close_after, px.close_mode
        hang_up = bool(close_after) and mode == "abrupt" and self.served > close_after
        reply = px.handle(self.command, self.path, dict(self.headers.items()), body, hang_up=hang_up)
        if reply is DROP:
            if hang_up:  # a reset (RST), as a proxy dropping the connection mid-request sends
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if close_after and mode == "silent" and self.served >= close_after:
            self.close_connection = True  # after this answer, with no "Connection: close" said
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        # One write for headers and body: two small writes meet Nagle + delayed ACK (~40 ms each).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(reply.body)
        self.flush_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.served = 0  # requests read on this connection (close_after)
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format, *args):  # quiet: no request log on stderr
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops the SYNs of a client opening 16+ connections at once,
    # which then retries after 1 s: every concurrent run would start with a one-second stall.
    request_queue_size = 128

    def __init__(self, addr, px):
        self.px = px
        self._conns = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn, alive):
        with self._conns_lock:
            (self._conns.add if alive else self._conns.discard)(conn)

    def close_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):  # a client hanging up is not news
        pass


class SandboxServer:
    """FakePX served on http://127.0.0.1:PORT/v1 (port 0: a free one); a context manager."""

    def __init__(self, px=None, port=0, host="127.0.0.1"):
        self.px = px if px is not None else FakePX()
        self.host = host
        self.port = port
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        """The URL to put in `base_url`: http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self):
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self.px)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"gspx-sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop serving and close the socket and open connections; never waits more than ~timeout."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        server.close_connections()
        server.server_close()
        thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- responses adapter ---------------------------------------------------------------------------


def add_to_responses(rsps, px, base_url):
    """Route every request under base_url on a responses.RequestsMock to px (DROP -> ConnectionError)."""
    import requests
    import responses

    prefix = urlsplit(base_url).path.rstrip("/")
    url_re = re.compile(re.escape(base_url.rstrip("/")) + r"(/.*)?(\?.*)?$")

    def callback(request):
        path = urlsplit(request.url).path
        rest = path[len(prefix):] if path.startswith(prefix) else path
        reply = px.handle(request.method, "/v1" + rest, request.headers, request.body)
        if reply is DROP:
            raise requests.ConnectionError("FakePX dropped the connection", request=request)
        return reply.status, reply.headers, reply.body

    for method in (responses.GET, responses.POST, responses.PUT, responses.DELETE, responses.PATCH):
        rsps.add_callback(method, url_re, callback=callback)
    return rsps


# -- `gspx sandbox` ------------------------------------------------------------------------------


def serve(port=0, latency_ms=0, fail_rate=0.0, api_key=None, out=None, stop_event=None, outage_after=None,
          outage_for=None, outage_status=503, outage_retry_after=None, fail_first=0, fail_status=503,
          drop_first=0, drop_rate=0.0, seed=None):
    """Run the sandbox until Ctrl-C (or stop_event), telling `out` how to use it; then the summary.

    outage_after / outage_for (seconds) open an outage window: every request is answered
    outage_status (with Retry-After: outage_retry_after, if given); outage_for None means to the end.
    fail_first / drop_first fail the first attempts of every distinct request; fail_rate / drop_rate a
    random share of all attempts (seeded by `seed`).
    """
    import sys

    out = out if out is not None else sys.stderr
    px = FakePX(api_key=api_key, latency=(latency_ms or 0) / 1000.0, fail_rate=fail_rate or 0.0,
                fail_first=fail_first or 0, fail_status=fail_status, drop_first=drop_first or 0,
                drop_rate=drop_rate or 0.0, seed=seed)
    if outage_after is not None or outage_for is not None:
        px.outage(outage_for, status=outage_status, retry_after=outage_retry_after, after=outage_after or 0.0)
    with SandboxServer(px, port=port) as server:
        key_note = "only the key given with --api-key" if api_key else "any non-empty API key"
        print(f"Gainsight PX sandbox listening on {server.base_url}", file=out)
        print(f"  use it with `base_url: {server.base_url}` in the config; it accepts {key_note}.", file=out)
        if latency_ms or fail_rate or drop_rate:
            print(f"  latency {latency_ms} ms, random {fail_status} rate {fail_rate}, random drop rate "
                  f"{drop_rate or 0}", file=out)
        if fail_first or drop_first:
            print(f"  every distinct request: the first {drop_first or 0} attempts dropped, then "
                  f"{fail_first or 0} answered {fail_status}", file=out)
        if px._outage is not None:
            length = f"for {outage_for:g} s" if outage_for is not None else "until stopped"
            ra = f" with Retry-After: {outage_retry_after}" if outage_retry_after is not None else ""
            print(f"  outage: every request answered {outage_status}{ra} from {outage_after or 0:g} s "
                  f"after start, {length}", file=out)
        print("  state lives in memory only; press Ctrl-C to stop.", file=out)
        out.flush()
        try:
            while not (stop_event is not None and stop_event.is_set()):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    s = px.summary()
    statuses = ", ".join(f"{k}: {v}" for k, v in s["by_status"].items()) or "none"
    print(f"sandbox stopped: {s['users']} users, {s['accounts']} accounts, "
          f"{s['custom_events']} custom events; {s['requests']} requests by status: {statuses}", file=out)
    out.flush()
    return s
