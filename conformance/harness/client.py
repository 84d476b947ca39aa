"""A small HTTP(S) client for the edge: one connection per request, no retries.

No retries and no pooling on purpose: every request a check records is exactly
one request on the wire, so a failure is never hidden by a retry.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 32 << 20  # bytes of a response body read (a readback page is ~200 KiB)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers}, {self.body[:200]!r})"


class Client:
    """A tiny HTTP(S) client on http.client: one connection per request, no retries."""

    def __init__(self, base_url: str, cafile: Path | None = None, timeout: float = 10.0) -> None:
        url = urlsplit(base_url)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                headers: dict[str, str] | None = None) -> Response:
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                               context=self.context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            body = resp.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:  # an OSError: to a load, "no usable response"
                raise OSError(f"{method} {path}: response body over {MAX_BODY} bytes")
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **kw: Any) -> Response:
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, token, body=body if body is not None else {}, **kw)
