"""Gainsight PX REST client: one requests.Session, one attempt per call, no retries (sender.py decides those)."""

import re
import threading
from dataclasses import dataclass

from gspx_cli import jsonio

API_KEY_HEADER = "X-APTRINSIC-API-KEY"  # MAPPING.md "Gainsight PX REST API"


@dataclass(frozen=True, slots=True)
class PxResponse:
    """What one request came back with; message is PX's error text for non-2xx answers."""

    status: int
    message: str = ""
    retry_after: str | None = None

    @property
    def ok(self):
        """Any 2xx is success (MAPPING.md)."""
        return 200 <= self.status < 300

    @property
    def refused(self):
        """A create refused: any 400 (PX's "Bad request, possible duplicate", whose text is not
        documented) or 409 (older stand-ins); MAPPING.md "Upserts"."""
        return self.status == 400 or self.status == 409

    @property
    def duplicate(self):
        """A create refused because the object exists (MAPPING.md "Upserts", create-only): 409, or a 400
        whose message says "duplicate"; another 400 is about the request itself."""
        return self.status == 409 or (self.status == 400 and "duplicate" in self.message.lower())

    @property
    def missing(self):
        """PX says the object does not exist (MAPPING.md "Upserts": 404, or a 400 saying "not found")."""
        return self.status == 404 or (self.status == 400 and "not found" in self.message.lower())


class PxClient:
    """Makes single requests to one PX base URL with the API key header."""

    def __init__(self, base_url, api_key, *, timeout=10.0, pool_size=8, session=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._pool_size = max(pool_size, 1)
        self._headers = {API_KEY_HEADER: api_key or "", "Content-Type": "application/json",
                         "Accept": "application/json"}
        self._lock = threading.Lock()
        # requests (~50 ms of imports) is loaded with the first request: a resume with nothing new to
        # send, or a run whose events were all delivered before, never makes one
        self._session = None if session is None else self._configured(session)

    @property
    def session(self):
        """The requests.Session, made on first use (the workers' first requests may race to it)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import requests

                    self._session = self._configured(requests.Session())
        return self._session

    def _configured(self, session):
        from requests.adapters import HTTPAdapter

        # urllib3 must not retry on its own: every attempt has to pass the rate limiter and be counted
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(self._headers)
        return session

    def request(self, method, path, body=None):
        """One attempt; transport failures raise requests.RequestException."""
        data = None if body is None else jsonio.dumps(body).encode("utf-8")
        resp = self.session.request(method, self.base_url + path, data=data, timeout=self.timeout)
        try:
            if 200 <= resp.status_code < 300:
                return PxResponse(resp.status_code)
            return PxResponse(resp.status_code, error_message(resp), resp.headers.get("Retry-After"))
        finally:
            resp.close()

    def close(self):
        """Close the session's connections (none when it was never used)."""
        if self._session is not None:
            self._session.close()


ERROR_EXCERPT_CHARS = 100  # CLI.md: a non-JSON error body shows at most a short plain-text excerpt

_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_TAG_OR_COMMENT = re.compile(r"<!--.*?-->|<[^>]*>", re.S)


def error_message(resp):
    """PX's own error text when the body has one, else the reason phrase and a short plain-text excerpt
    (a proxy's HTML error page shows as "Bad Gateway: 502 Bad Gateway nginx", never as markup)."""
    text = resp.text[:2000]
    try:
        payload = jsonio.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        inner = payload.get("externalapierror")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "error", "errorMessage"):
            if isinstance(payload.get(key), str) and payload[key]:
                return payload[key]
    reason = resp.reason or ""
    excerpt = plain_excerpt(resp.text[:20000])  # more than JSON needs: a page's <style> can be long
    if excerpt and reason:
        return f"{reason}: {excerpt}"
    return reason or excerpt or f"HTTP {resp.status_code}"


def plain_excerpt(text, limit=ERROR_EXCERPT_CHARS):
    """Text with markup, scripts and entities gone and whitespace collapsed, cut to `limit` characters."""
    text = _TAG_OR_COMMENT.sub(" ", _SCRIPT_OR_STYLE.sub(" ", text))
    import html  # html.entities is ~2 ms of start-up: only when an error page is shown

    text = " ".join(html.unescape(text).split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"
