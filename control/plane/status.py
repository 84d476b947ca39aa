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
with its HTTP status, never a traceback (``policies.core.jsonhttp``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from policies.core.errors import one_line
from policies.core.jsonhttp import HttpError, JsonHandler, JsonHTTPServer

log = logging.getLogger("a1.control.status")

MAX_PATH = 1024  # bytes of request target
MAX_BODY = 4096  # bytes of request body (the actions take none; a small one is ignored)
MAX_CONNECTIONS = 32  # concurrent connections; more are closed at once

GET_PATHS = ("/status", "/metrics", "/healthz")
# An action must carry this header: a browser page cannot add it to a cross-site
# POST without a CORS preflight (which this server never answers), so no web page
# a local user opens can promote or abort a rollout.
ACTION_HEADER = "X-A1-Action"


class ActionRefused(Exception):
    """An action that cannot be done now (no rollout in progress, ...): 409 with the text."""


class _Handler(JsonHandler):
    server: JsonHTTPServer[StatusServer]
    server_version = "a1-control"
    json_indent = 1

    def dispatch(self, method: str) -> None:
        try:
            path = self.request_path(MAX_PATH)
            self.read_body(MAX_BODY)  # bounded; the actions take no body
        except HttpError as err:
            self.reply(err.status, {"error": str(err)})
            return
        owner = self.server.owner
        allowed = "GET, HEAD" if path in GET_PATHS else (
            "POST" if path.startswith("/rollout/") and path[9:] in owner.actions else None)
        if allowed is None:
            self.reply(404, {"error": f"no such endpoint: {one_line(path, 200)}"})
            return
        if method not in allowed.split(", "):
            self.reply(405, {"error": f"{method} not allowed on {path}; use {allowed}"},
                       {"Allow": allowed})
            return
        try:
            self.check_host()
        except HttpError as err:
            self.reply(err.status, {"error": str(err)})
            return
        if method == "POST" and self.headers.get(ACTION_HEADER) != "1":
            self.reply(403, {"error": f"actions need the header {ACTION_HEADER}: 1"})
            return
        try:
            if path == "/status":
                self.reply(200, owner.status())
            elif path == "/metrics":
                self.send_body(200, generate_latest(owner.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self.send_body(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self.reply(200, owner.actions[path[9:]]())
        except ActionRefused as err:
            self.reply(409, {"error": one_line(err)})
        except Exception as err:  # never a traceback to the client; one line in the log
            log.error("status: %s %s failed: %s", method, path, one_line(err))
            self.reply(500, {"error": one_line(f"{path}: {err}")})


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
        self._httpd: JsonHTTPServer[StatusServer] | None = None

    def start(self) -> int:
        """Bind and serve on a daemon thread; returns the bound port (OSError if it cannot)."""
        self._httpd = JsonHTTPServer((self.host, self.port), _Handler, self,
                                     max_connections=self.max_connections, log=log)
        self.port = self._httpd.server_address[1]
        self._httpd.start("a1-control-status")
        log.info("status: listening on http://%s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.stop()
            self._httpd = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
