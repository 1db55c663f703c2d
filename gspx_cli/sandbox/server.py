"""FakePX served: over HTTP on 127.0.0.1 (SandboxServer), through `responses` callbacks, and as
`gspx sandbox` (serve). Stdlib only, except the lazily imported requests/responses in the adapter."""

import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from gspx_cli.sandbox.px import FakePX
from gspx_cli.sandbox.replies import DROP

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
