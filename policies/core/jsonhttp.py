"""One bounded, traceback-free JSON-over-HTTP server for every loopback API in A1.

The control plane's status endpoint, the fault proxy's control API and the
telemetry sink each answer on a port anyone on the host can reach, so each needs
the same defences, and a second copy is where one of them goes missing. Here they
are once: at most ``max_connections`` requests served at once (more are closed at
accept, not queued), a socket timeout per read, a body read only after its
Content-Length was checked against a limit and never chunked, a Host check against
DNS rebinding, and every refusal (http.server's own too: a bad request line, too
many headers) a one-line JSON ``{"error": ...}`` and every failure one log line,
never an HTML page nor a traceback.

A server subclasses ``JsonHandler`` for its routes and builds a
``JsonHTTPServer(address, handler, owner, ...)``; handlers reach their owner (the
object whose state they serve) as ``self.server.owner``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from policies.core.errors import one_line

O = TypeVar("O")  # noqa: E741 - the owner's type

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SOCKET_TIMEOUT = 10.0  # seconds a client may take for each read of its request


class HttpError(Exception):
    """A refused request: its HTTP ``status``, a one-line message and a short ``reason``
    (``no_length``, ``bad_length``, ``too_large``, ``short_body``, ``too_long``,
    ``bad_host``) for servers that count refusals."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class JsonHTTPServer(ThreadingHTTPServer, Generic[O]):
    """A threading HTTP server serving at most ``max_connections`` connections at once;
    one more is closed at accept (``on_busy`` is called) rather than queued. Handler
    threads are daemons and ``server_close`` does not wait for them, so a client that
    never finishes cannot hold a stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: bursts of connects are not SYN-retried

    def __init__(self, address: tuple[str, int], handler: type[JsonHandler], owner: O, *,
                 max_connections: int, log: logging.Logger,
                 on_busy: Callable[[], object] | None = None) -> None:  # fmt: skip
        self.owner = owner
        self.log = log
        self.on_busy = on_busy
        self.slots = threading.BoundedSemaphore(max_connections)
        self._thread: threading.Thread | None = None
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def start(self, name: str) -> None:
        """Serve on a daemon thread named ``name``."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={
            "poll_interval": 0.05}, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (when started) and close the listening socket; idempotent."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self.server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            if self.on_busy is not None:
                self.on_busy()
            self.shutdown_request(request)  # over the bound: closed, not queued
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr here; one line in the log instead.
        peer = client_address[0] if isinstance(client_address, tuple) else "?"
        self.log.warning("request from %s failed: %s", peer, one_line(sys.exc_info()[1], 200))


class JsonHandler(BaseHTTPRequestHandler):
    """Routes go in ``dispatch(method)`` (or ``do_GET`` and friends); ``reply`` answers
    JSON, ``send_body`` any bytes; ``request_path``, ``check_host`` and ``read_body``
    refuse with ``HttpError``."""

    server: JsonHTTPServer[Any]
    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = SOCKET_TIMEOUT
    json_indent: int | None = None

    def dispatch(self, method: str) -> None:
        """Answer one GET, HEAD, POST, PUT, DELETE or PATCH request."""
        self.send_error(501)

    def _dispatch_command(self) -> None:
        self.dispatch(self.command)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch_command

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:  # fmt: skip
        """http.server's own refusals (bad request line, too many headers) as one-line JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsable request: answer as HTTP/1.x anyway
            self.request_version = self.protocol_version
        with contextlib.suppress(OSError):
            self.reply(code, {"error": one_line(message or HTTPStatus(code).phrase)})

    def reply(self, code: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        """``doc`` as JSON (keys sorted, one trailing newline)."""
        body = (json.dumps(doc, sort_keys=True, indent=self.json_indent) + "\n").encode()
        self.send_body(code, body, "application/json", headers)

    def send_body(self, code: int, body: bytes, content_type: str,
                  headers: Mapping[str, str] | None = None) -> None:  # fmt: skip
        """One complete answer, never cached; no body after a HEAD request."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def refuse(self, status: int, message: str, reason: str = "") -> HttpError:
        """An ``HttpError`` to raise, after which the connection closes (its body may be
        unread, or its framing untrusted)."""
        self.close_connection = True
        return HttpError(status, message, reason)

    def request_path(self, max_target: int) -> str:
        """The request's path without its query; 414 past ``max_target`` bytes."""
        if len(self.path) > max_target:
            raise self.refuse(414, f"request target longer than {max_target} bytes", "too_long")
        return self.path.split("?", 1)[0]

    def check_host(self) -> None:
        """421 unless the Host header names loopback or the bound address: a DNS-rebinding
        page reaches this port under its own name."""
        host = request_host(self.headers.get("Host") or "")
        if host not in LOOPBACK_NAMES and host != str(self.server.server_address[0]).lower():
            raise self.refuse(421, f"Host {one_line(host, 80)!r} is not this server", "bad_host")

    def read_body(self, max_body: int, *, required: bool = False) -> bytes:
        """The request body, bounded before it is read: no chunked bodies (411), one
        decimal Content-Length (400; absent is empty), at most ``max_body`` bytes (413),
        all of them (400). ``required``: an absent or malformed length is a 411 too."""
        chunked = bool(self.headers.get("Transfer-Encoding"))
        lengths = [v.strip() for v in self.headers.get_all("Content-Length") or []]
        if required and (chunked or len(lengths) != 1 or not _decimal(lengths[0])):
            raise self.refuse(411, "one Content-Length is required (no chunked bodies)",
                              "no_length")  # fmt: skip
        if chunked:
            raise self.refuse(411, "chunked bodies are not accepted; send Content-Length",
                              "no_length")  # fmt: skip
        text = (lengths[0] if lengths else "") or "0"
        if len(lengths) > 1 or not _decimal(text):
            raise self.refuse(400, "Content-Length: not one decimal number", "bad_length")
        if len(text) > 18 or int(text) > max_body:
            raise self.refuse(413, f"body: larger than {max_body} bytes", "too_large")
        length = int(text)
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            body = b""
        if len(body) < length:
            raise self.refuse(400, f"body: {len(body)} of its {length} bytes arrived",
                              "short_body")  # fmt: skip
        return body


def request_host(value: str) -> str:
    """The host of a Host header value, lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()
