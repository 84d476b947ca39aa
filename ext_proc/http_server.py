"""HTTP ext_authz fast path: a minimal HTTP/1.1 keep-alive server on asyncio.

Envoy's HTTP ext_authz client sends the original request's method, path and the
allowed headers. We answer 200 (allow: the ``x-a1-*`` headers go upstream through
``allowed_upstream_headers``; client-supplied ``x-a1-*`` headers are listed in
``x-envoy-auth-headers-to-remove``) or the deny status with the JSON body and
``x-a1-deny-reason`` (passed to the client through ``allowed_client_headers``).
Claims come from ``x-a1-jwt-payload``, which Envoy's jwt_authn writes.

An ``asyncio.Protocol`` (no streams, no framework) parses just what it needs; a
rendered response is memoised on the decision, so a cache hit is one parse, one
dict lookup and one ``transport.write``. Measured on this machine: a trivial
Protocol server answers ~110k req/s under wrk, far above the gRPC floor.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from ext_proc.engine import Decision, Engine, header_safe
from ext_proc.logutil import RateLimited, describe
from ext_proc.opa_envoy.input import HttpView
from ext_proc.request import remove_names

log = logging.getLogger("ext_proc.http")
_limited = RateLimited(log)

MAX_HEAD = 64 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Denied"


def render_http(d: Decision, remove: tuple[str, ...], head: bool) -> bytes:
    key = ("http", remove, head)
    b = d.rendered.get(key)
    if b is not None:
        return b  # type: ignore[no-any-return]
    lines = [f"HTTP/1.1 {d.status if not d.allow else 200} {_reason(d.status)}"]
    lines.extend(f"{k}: {v}" for k, v in d.headers)
    if d.allow and d.remove_headers:  # an OPA-Envoy decision's request_headers_to_remove
        remove = tuple(sorted(set(remove) | {k for k in d.remove_headers if k not in d.set_names}))
    if remove:
        lines.append(f"x-envoy-auth-headers-to-remove: {', '.join(remove)}")
    lines.append(f"content-length: {len(d.body)}")
    b = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if not head:
        b += d.body
    d.memo_render(key, b)
    return b


def _error(status: int, message: str) -> bytes:
    message = header_safe(message)
    body = message.encode()
    return (
        f"HTTP/1.1 {status} {_reason(status)}\r\ncontent-type: text/plain\r\n"
        f"x-a1-deny-reason: {message}\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class AuthzProtocol(asyncio.Protocol):
    """One connection; requests may be pipelined, bodies are read and ignored."""

    __slots__ = ("_buf", "_engine", "_skip", "_transport")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._buf = b""
        self._skip = 0  # body bytes of the current request still to discard
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        while buf:
            if self._skip:
                n = min(self._skip, len(buf))
                self._skip -= n
                buf = buf[n:]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._refuse(out, 431, "request header too large")
                    return
                break
            head = buf[:end]
            buf = buf[end + 4 :]
            try:
                resp, body_len, close = self._handle(head)
            except Exception as err:  # fail closed: deny, and drop the connection
                _limited.log(
                    logging.ERROR, "http", "HTTP front door error (deny): %s", describe(err)
                )
                resp, body_len, close = _error(500, "internal error"), 0, True
            out.append(resp)
            if close:
                self._fail(out, 0, "")
                return
            self._skip = body_len
        self._buf = buf
        if out:
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _refuse(self, out: list[bytes], status: int, message: str) -> None:
        """Count (and log) the refusal like any decision, then answer and close."""
        try:
            self._engine.decide_facts(self._engine.reader.bad(status, message))
        except Exception as err:  # accounting must not keep the refusal from being sent
            _limited.log(logging.ERROR, "http", "HTTP front door error: %s", describe(err))
        self._fail(out, status, message)

    def _fail(self, out: list[bytes], status: int, message: str) -> None:
        if status:
            out.append(_error(status, message))
        self._transport.write(b"".join(out))
        self._transport.close()
        self._buf = b""

    def _handle(self, head: bytes) -> tuple[bytes, int, bool]:
        """(response bytes, request body length to skip, close connection?)."""
        eng = self._engine
        parsed = eng.reader.from_http(head)
        f = parsed.facts
        view = HttpView(head) if eng.opa_envoy and not parsed.broken else None
        d = eng.decide_facts(f, view)  # broken ones too: counted and logged as on the gRPC doors
        if parsed.broken:  # framing is unusable: answer and drop the connection
            return _error(f.status, f.reason), 0, True
        remove = remove_names(d.allow, d.set_names, f.a1_names)
        return render_http(d, remove, f.method == "HEAD"), parsed.body_len, parsed.close

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def start_http(engine: Engine, address: str) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    if address.startswith("unix:"):
        return await loop.create_unix_server(lambda: AuthzProtocol(engine), address[5:])
    host, _, port = address.rpartition(":")
    return await loop.create_server(
        lambda: AuthzProtocol(engine), host.strip("[]"), int(port), backlog=1024, reuse_address=True
    )
