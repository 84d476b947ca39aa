"""``StatusServer``: the control plane's HTTP endpoint for operators and scrapers.

    GET  /status            the status document (JSON, see docs/control-plane.md)
    GET  /metrics           Prometheus text exposition of the plane's registry
    GET  /healthz           200 "ok" while the process serves
    POST /rollout/promote   promote the rollout now (JSON answer)
    POST /rollout/abort     roll back to the previous version (JSON answer)

It binds loopback by default: promote and abort change what every sidecar runs,
and the endpoint has no authentication, so reaching it must already mean being
the operator. Every request is bounded (request line, headers, body bytes, socket
timeout, concurrent connections); every error is a one-line JSON ``{"error": ...}``
with its HTTP status, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from policies.core.errors import one_line

log = logging.getLogger("a1.control.status")

MAX_PATH = 1024  # bytes of request target
MAX_BODY = 4096  # bytes of request body (the actions take none; a small one is ignored)
MAX_CONNECTIONS = 32  # concurrent connections; more are closed at once
SOCKET_TIMEOUT = 10.0  # seconds a client may take to send a request

GET_PATHS = ("/status", "/metrics", "/healthz")
# An action must carry this header: a browser page cannot add it to a cross-site
# POST without a CORS preflight (which this server never answers), so no web page
# a local user opens can promote or abort a rollout.
ACTION_HEADER = "X-A1-Action"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class ActionRefused(Exception):
    """An action that cannot be done now (no rollout in progress, ...): 409 with the text."""


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: StatusServer) -> None:
        self.owner = owner
        self.slots = threading.BoundedSemaphore(owner.max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
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
        log.warning("status: request from %s failed", client_address[0] if client_address else "?")


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "a1-control"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status: %s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (bad request line, too many headers) as one-line JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsable request: answer as HTTP/1.1 anyway
            self.request_version = "HTTP/1.1"
        with contextlib.suppress(OSError):
            self._reply(code, {"error": one_line(message or HTTPStatus(code).phrase)})

    def _reply(self, code: int, doc: Any, *, allow: str | None = None) -> None:
        body = (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()
        self._send(code, body, "application/json", allow=allow)

    def _send(self, code: int, body: bytes, content_type: str, *, allow: str | None = None
              ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> str | None:
        """The path without its query; None (after replying) when the request is refused."""
        if len(self.path) > MAX_PATH:
            self.close_connection = True
            self._reply(414, {"error": f"request target longer than {MAX_PATH} bytes"})
            return None
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._reply(411, {"error": "chunked bodies are not accepted; send Content-Length"})
            return None
        length_text = self.headers.get("Content-Length", "0").strip() or "0"
        if not length_text.isdigit() or len(length_text) > 12:
            self.close_connection = True
            self._reply(400, {"error": "Content-Length is not a number"})
            return None
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True
            self._reply(413, {"error": f"request body larger than {MAX_BODY} bytes"})
            return None
        if length:
            self.rfile.read(length)  # bounded above; the actions take no body
        return self.path.split("?", 1)[0]

    def _dispatch(self, method: str) -> None:
        path = self._route()
        if path is None:
            return
        owner = self.server.owner
        allowed = "GET, HEAD" if path in GET_PATHS else (
            "POST" if path.startswith("/rollout/") and path[9:] in owner.actions else None)
        if allowed is None:
            self._reply(404, {"error": f"no such endpoint: {one_line(path, 200)}"})
            return
        if method not in allowed.split(", "):
            self._reply(405, {"error": f"{method} not allowed on {path}; use {allowed}"},
                        allow=allowed)
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        if host not in _LOCAL_HOSTS and host != self.server.server_address[0]:
            # A DNS-rebinding page reaches this port under its own name: refuse it.
            self._reply(421, {"error": f"Host {one_line(host, 80)!r} is not this server"})
            return
        if method == "POST" and self.headers.get(ACTION_HEADER) != "1":
            self._reply(403, {"error": f"actions need the header {ACTION_HEADER}: 1"})
            return
        try:
            if path == "/status":
                self._reply(200, owner.status())
            elif path == "/metrics":
                self._send(200, generate_latest(owner.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._reply(200, owner.actions[path[9:]]())
        except ActionRefused as err:
            self._reply(409, {"error": one_line(err)})
        except Exception as err:  # never a traceback to the client; one line in the log
            log.error("status: %s %s failed: %s", method, path, one_line(err))
            self._reply(500, {"error": one_line(f"{path}: {err}")})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")


class StatusServer:
    """Serve ``status()`` and ``registry`` and the named ``actions`` on HOST:PORT.

    ``actions`` maps a name (``promote``, ``abort``) to a function returning a
    JSON-able answer; it may raise ``ActionRefused`` (409) with a one-line reason.
    """

    def __init__(
        self,
        status: Callable[[], Any],
        registry: CollectorRegistry,
        actions: Mapping[str, Callable[[], Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.status = status
        self.registry = registry
        self.actions = dict(actions or {})
        self.host, self.port = host, port
        self.max_connections = max_connections
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve on a daemon thread; returns the bound port (OSError if it cannot)."""
        self._httpd = _HttpServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={
            "poll_interval": 0.2}, name="a1-control-status", daemon=True)
        self._thread.start()
        log.info("status: listening on http://%s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
