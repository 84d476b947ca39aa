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
refusal is a one-line JSON ``{"error": ...}`` naming the field, never a traceback
(``policies.core.jsonhttp``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from conformance.nemesis.proxy.server import FaultProxy, NoSuchToxic, ToxicConflict
from conformance.nemesis.proxy.toxics import NAME_RE, ToxicError
from policies.compiler.errors import CompileError
from policies.compiler.limits import check_json
from policies.core.errors import ConfigError, one_line
from policies.core.jsonhttp import LOOPBACK_NAMES, HttpError, JsonHandler, JsonHTTPServer

log = logging.getLogger("a1.conformance.proxy")

MAX_TARGET = 256  # bytes of request target
MAX_BODY = 16 * 1024  # bytes of request body (a toxic is a few hundred)
MAX_DEPTH = 4  # JSON nesting (a toxic's attributes are at depth 2)
MAX_CONNECTIONS = 16


class _Handler(JsonHandler):
    server: JsonHTTPServer[FaultProxy]
    server_version = "a1-fault-proxy"

    def _body(self) -> Any:
        """The request's JSON body (None when empty), bounded before it is read."""
        raw = self.read_body(MAX_BODY)
        if not raw.strip():
            return None
        try:
            decoded = raw.decode("utf-8")
            check_json("body", decoded, MAX_DEPTH)
            return json.loads(decoded, parse_constant=_no_constant)
        except UnicodeDecodeError as err:
            raise HttpError(400, f"body: not UTF-8 at byte {err.start}") from None
        except CompileError as err:
            raise HttpError(400, one_line(err)) from None
        except json.JSONDecodeError as err:
            raise HttpError(400, f"body:{err.lineno}:{err.colno}: invalid JSON: {err.msg}"
                            ) from None
        except (ValueError, RecursionError) as err:
            raise HttpError(400, f"body: invalid JSON: {one_line(err, 200)}") from None

    def dispatch(self, method: str) -> None:
        try:
            code, doc = self._route(method)
        except HttpError as err:
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
            self.reply(code, doc)

    def _route(self, method: str) -> tuple[int, Any]:
        path = self.request_path(MAX_TARGET)
        self.check_host()
        body = self._body()  # read (bounded) whatever the route, so the stream stays framed
        proxy = self.server.owner
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
        raise HttpError(404, f"no such endpoint: {one_line(path, 120)}")

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(405, f"{method} not allowed here; use {', '.join(allowed)}")
        if method != "GET":  # even a bodiless /reset: no cross-site "simple" POST
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise HttpError(415, "Content-Type: must be application/json")


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

    def __init__(self, proxy: FaultProxy, host: str = "127.0.0.1", port: int = 0, *,
                 exposed: bool = False) -> None:
        # ``exposed``: the docker runtime's proxies bind their address on a network only
        # the suite's own containers join, published on the host's 127.0.0.1 alone.
        if host not in LOOPBACK_NAMES and not exposed:
            raise ConfigError(f"--control: {host} is not a loopback address (the control API "
                              "has no authentication)")
        self.proxy = proxy
        try:
            self._http = JsonHTTPServer((host, port), _Handler, proxy,
                                        max_connections=MAX_CONNECTIONS, log=log)
        except OSError as err:
            raise ConfigError(f"--control {host}:{port}: {err.strerror or err}") from None

    @property
    def address(self) -> str:
        host, port = self._http.server_address[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def start(self) -> str:
        self._http.start("a1-fault-proxy-control")
        return self.address

    def stop(self) -> None:
        self._http.stop(timeout=10)
