"""The fault proxy's control API: small JSON over HTTP, on loopback only.

    GET    /proxy              {"name", "listen", "upstream", "enabled", "toxics", "stats"}
    POST   /proxy              {"enabled": false|true}: down (connections cut, new ones
                               refused) or up again; answers like GET /proxy
    POST   /reset              every toxic removed, enabled; answers like GET /proxy
    GET    /toxics             [toxic, ...] in chain order
    POST   /toxics             add: {"kind", "name"?, "direction"?, "toxicity"?,
                               "attributes"?} -> 201 with the toxic
    GET    /toxics/NAME        the toxic
    POST   /toxics/NAME        update: {"toxicity"?, "attributes"?} (merged) -> the toxic
    DELETE /toxics/NAME        remove -> {"removed": NAME}
    GET    /stats              {"connections": {open, total, refused, upstream_failed},
                                "bytes": {upstream|downstream: {received, sent}}}

Anyone who reaches this port can cut the planes apart, so it binds loopback, refuses
a foreign Host header (DNS rebinding), and takes changes only with Content-Type
application/json (which a web page cannot send cross-site without a preflight this
server never answers), on every POST and DELETE, body or not. Requests are bounded
(target, body bytes, JSON depth, socket timeout, concurrent connections); every
refusal is a one-line JSON ``{"error": ...}`` naming the field, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from conformance.nemesis.proxy.address import LOOPBACK
from conformance.nemesis.proxy.server import FaultProxy, NoSuchToxic, ToxicConflict
from conformance.nemesis.proxy.toxics import NAME_RE, ToxicError
from policies.compiler.errors import CompileError
from policies.compiler.limits import check_json
from policies.core.errors import ConfigError, one_line

log = logging.getLogger("a1.conformance.proxy")

MAX_TARGET = 256  # bytes of request target
MAX_BODY = 16 * 1024  # bytes of request body (a toxic is a few hundred)
MAX_DEPTH = 4  # JSON nesting (a toxic's attributes are at depth 2)
MAX_CONNECTIONS = 16
SOCKET_TIMEOUT = 10.0


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
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
        log.debug("proxy control: a request failed")  # not socketserver's traceback


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "a1-fault-proxy"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("proxy control: " + format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (bad request line, too many headers) as JSON."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        with contextlib.suppress(OSError):
            self._reply(code, {"error": one_line(message or HTTPStatus(code).phrase)})

    def _reply(self, code: int, doc: Any) -> None:
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        """The request's JSON body (None when empty), bounded before it is read."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise _Refused(411, "chunked bodies are not accepted; send Content-Length")
        text = (self.headers.get("Content-Length") or "0").strip() or "0"
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            self.close_connection = True
            raise _Refused(400, "Content-Length: not a number")
        length = int(text)
        if length > MAX_BODY:
            self.close_connection = True
            raise _Refused(413, f"body: larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return None
        try:
            decoded = raw.decode("utf-8")
            check_json("body", decoded, MAX_DEPTH)
            return json.loads(decoded, parse_constant=_no_constant)
        except UnicodeDecodeError as err:
            raise _Refused(400, f"body: not UTF-8 at byte {err.start}") from None
        except CompileError as err:
            raise _Refused(400, one_line(err)) from None
        except json.JSONDecodeError as err:
            raise _Refused(400, f"body:{err.lineno}:{err.colno}: invalid JSON: {err.msg}"
                           ) from None
        except (ValueError, RecursionError) as err:
            raise _Refused(400, f"body: invalid JSON: {one_line(err, 200)}") from None

    def _dispatch(self, method: str) -> None:
        try:
            code, doc = self._route(method)
        except _Refused as err:
            code, doc = err.status, {"error": one_line(err)}
        except ToxicError as err:
            code, doc = 400, {"error": one_line(err)}
        except NoSuchToxic as err:
            code, doc = 404, {"error": one_line(err)}
        except (ToxicConflict, ConfigError) as err:
            code, doc = 409, {"error": one_line(err)}
        except Exception as err:  # never a traceback to the client; one line in the log
            log.warning("proxy control: %s %s failed: %s", method, self.path[:MAX_TARGET],
                        one_line(err))
            code, doc = 500, {"error": one_line(f"{method}: {err}", 300)}
        with contextlib.suppress(OSError):
            self._reply(code, doc)

    def _route(self, method: str) -> tuple[int, Any]:
        if len(self.path) > MAX_TARGET:
            self.close_connection = True
            raise _Refused(414, f"request target longer than {MAX_TARGET} bytes")
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in LOOPBACK and host != self.server.server_address[0]:
            raise _Refused(421, f"Host {one_line(host, 80)!r} is not this server")
        body = self._body()  # read (bounded) whatever the route, so the stream stays framed
        path = self.path.split("?", 1)[0]
        proxy = self.server.proxy
        if path == "/proxy":
            self._allow(method, "GET", "POST")
            if method == "POST":
                proxy.set_enabled(_enabled(body))
            return 200, proxy.info()
        if path == "/reset":
            self._allow(method, "POST")
            proxy.reset()
            return 200, proxy.info()
        if path == "/stats":
            self._allow(method, "GET")
            return 200, proxy.stats()
        if path == "/toxics":
            self._allow(method, "GET", "POST")
            if method == "GET":
                return 200, proxy.toxics()
            return 201, proxy.add_toxic(body)
        if path.startswith("/toxics/") and NAME_RE.fullmatch(path[8:]):
            name = path[8:]
            self._allow(method, "GET", "POST", "DELETE")
            if method == "GET":
                return 200, proxy.toxic(name)
            if method == "POST":
                return 200, proxy.update_toxic(name, body)
            proxy.remove_toxic(name)
            return 200, {"removed": name}
        raise _Refused(404, f"no such endpoint: {one_line(path, 120)}")

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _Refused(405, f"{method} not allowed here; use {', '.join(allowed)}")
        if method != "GET":  # even a bodiless /reset: no cross-site "simple" POST
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise _Refused(415, "Content-Type: must be application/json")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _enabled(body: Any) -> bool:
    if not isinstance(body, dict):
        raise ToxicError("proxy: must be an object {\"enabled\": true|false}")
    for key in body:
        if key != "enabled":
            raise ToxicError(f"proxy.{one_line(key, 64)}: unknown field (expected enabled)")
    value = body.get("enabled")
    if not isinstance(value, bool):
        raise ToxicError("proxy.enabled: required, true or false")
    return value


class ControlServer:
    """The control API for ``proxy`` on loopback ``host:port`` (0: a free port)."""

    def __init__(self, proxy: FaultProxy, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in LOOPBACK:
            raise ConfigError(f"--control: {host} is not a loopback address (the control API "
                              "has no authentication)")
        self.proxy = proxy
        try:
            self._http = _HttpServer((host, port), proxy)
        except OSError as err:
            raise ConfigError(f"--control {host}:{port}: {err.strerror or err}") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._http.server_address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={
            "poll_interval": 0.05}, name="a1-fault-proxy-control", daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._http.server_close()
