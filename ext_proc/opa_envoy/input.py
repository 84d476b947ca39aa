"""OPA-Envoy's input document, built lazily from one request: only what the policy reads.

OPA-Envoy gives a policy the protojson form of the ext_authz ``CheckRequest``
(``attributes``: ``source``, ``destination``, ``request.http``, ``metadataContext``,
...) plus ``parsed_path``, ``parsed_query``, ``parsed_body``, ``truncated_body``
and ``version``. Building all of it costs a full protobuf parse, a JSON parse of
the body and a query parse per request; a policy that reads only
``attributes.request.http.method`` needs none of them. So ``build_input`` walks
the compiled module's ``input_paths`` (docs/policy-abi.md) and asks a
``RequestView`` for exactly those parts: a view parses the full request, the
query or the body the first time a part needs it, never otherwise.

Three views, one per front door: ``CheckView`` (ext_authz gRPC: every field),
``ProcessView`` (ext_proc request headers: method, path, host, scheme, headers,
metadata) and ``HttpView`` (HTTP ext_authz: the request line and the headers
Envoy forwards). A part a door does not carry is absent (undefined), never guessed.

Anything that cannot be presented faithfully (a header or body that is not
UTF-8, a JSON body nested deeper than ``MAX_DEPTH`` or with an integer beyond
2^53, invalid percent-encoding in the path, more than ``MAX_PARAMS`` query or
form parameters) raises ``InputRefused``: the request is denied (400) without
evaluating, as OPA-Envoy denies when it cannot build its input.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from policies.core.nesting import JSON_TOKENS, too_deep_at
from policies.runtime.values import MAX_EXACT_INT, MIN_EXACT_INT, UNDEFINED

VERSION = {"ext_authz": "v3", "encoding": "protojson"}
MAX_DEPTH = 64  # arrays and objects in a JSON body (the policy input's own bound)
MAX_PARAMS = 10_000  # query or form parameters
MAX_BODY = 1024 * 1024  # bytes of body parsed (Envoy's max_request_bytes is below this)

HTTP_FIELDS = (
    "id", "method", "headers", "path", "host", "scheme", "query", "fragment", "size",
    "protocol", "body", "rawBody",
)  # fmt: skip
ATTRIBUTE_FIELDS = (
    "source", "destination", "request", "contextExtensions", "metadataContext",
    "routeMetadataContext", "tlsSession",
)  # fmt: skip
TOP_FIELDS = (
    "attributes", "parsed_path", "parsed_query", "parsed_body", "truncated_body", "version",
)  # fmt: skip
_PROTO_NAMES = {
    "source": "source", "destination": "destination", "contextExtensions": "context_extensions",
    "metadataContext": "metadata_context", "routeMetadataContext": "route_metadata_context",
    "tlsSession": "tls_session",
}  # fmt: skip
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")


class InputRefused(Exception):
    """The request cannot be presented as OPA-Envoy's input: deny with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# -- parsing helpers (OPA-Envoy uses Go's net/url and encoding/json) -------------------


def _unescape(s: str, plus: bool) -> str | None:
    """Go's url.PathUnescape / QueryUnescape: None for an invalid escape; strict UTF-8."""
    if plus:
        s = s.replace("+", " ")
    if "%" not in s:
        return s
    if _BAD_ESCAPE.search(s):
        return None
    try:
        return unquote_to_bytes(s).decode()
    except UnicodeDecodeError:
        raise InputRefused(400, "percent-decoded request text is not valid UTF-8") from None


def split_target(path: str) -> tuple[str, str]:
    """(path, raw query) of a request target, as Go's url.Parse splits it."""
    path = path.partition("#")[0]
    p, _, q = path.partition("?")
    return p, q


def parsed_path(path: str) -> list[str]:
    """``parsed_path``: the decoded path without leading slashes, split on ``/``."""
    p, _ = split_target(path)
    decoded = _unescape(p, plus=False)
    if decoded is None:
        raise InputRefused(400, "request path has an invalid percent-encoding")
    return decoded.lstrip("/").split("/")


def parse_query(raw: str, what: str = "query") -> dict[str, list[str]]:
    """Go's url.ParseQuery, keeping what url.Query keeps: ``&``-separated pairs, ``+`` is
    a space, a pair with ``;`` or an invalid escape is skipped; values keep their order."""
    out: dict[str, list[str]] = {}
    if not raw:
        return out
    if raw.count("&") >= MAX_PARAMS:
        raise InputRefused(400, f"request {what} has more than {MAX_PARAMS} parameters")
    for part in raw.split("&"):
        if not part or ";" in part:
            continue
        k, _, v = part.partition("=")
        key = _unescape(k, plus=True)
        value = _unescape(v, plus=True)
        if key is None or value is None:
            continue
        out.setdefault(key, []).append(value)
    return out


def _int(text: str) -> int:
    n = int(text)
    if not MIN_EXACT_INT <= n <= MAX_EXACT_INT:
        raise InputRefused(400, "request body has an integer beyond int64")
    return n


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(text: str) -> Any:
    import json

    if too_deep_at(JSON_TOKENS, text, MAX_DEPTH) is not None:
        raise InputRefused(400, f"request body nests deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, parse_int=_int, parse_constant=_no_constant)
    except InputRefused:
        raise
    except (ValueError, RecursionError):
        raise InputRefused(400, "request body is not valid JSON") from None


def parsed_body(headers: Callable[[str], str | None], body: bytes | None) -> tuple[Any, bool]:
    """(``parsed_body``, ``truncated_body``), as OPA-Envoy: JSON and form bodies are
    parsed; a ``content-length`` beyond the bytes Envoy buffered means truncated (and
    no parsed body); other content types, or no body, are ``null``."""
    ctype = headers("content-type")
    if ctype is None or not body:
        return None, False
    json_body = "application/json" in ctype
    form = "application/x-www-form-urlencoded" in ctype
    if not json_body and not form:
        if "multipart/form-data" in ctype:
            raise InputRefused(415, "multipart request bodies are not parsed")
        return None, False
    length = headers("content-length")
    if length is not None:
        try:
            cl = int(length.strip())
        except ValueError:
            raise InputRefused(400, "bad content-length") from None
        if cl != -1 and cl > len(body):
            return None, True
    if len(body) > MAX_BODY:
        raise InputRefused(413, f"request body over {MAX_BODY} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InputRefused(400, "request body is not valid UTF-8") from None
    if json_body:
        return parse_json_body(text), False
    return parse_query(text, "form body"), False


# -- the views -----------------------------------------------------------------------


class RequestView:
    """One request as OPA-Envoy's input sees it; subclasses read their door's wire form.

    ``http(name)`` is a field of ``attributes.request.http`` (JSON name) or
    ``UNDEFINED``; ``attribute(name)`` a field of ``attributes``. Parts are computed
    once per request.
    """

    def __init__(self) -> None:
        self._headers: dict[str, str] | None = None
        self._body: tuple[Any, bool] | None = None

    # what each door provides
    def _all_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def header(self, name: str) -> str | None:
        return self.headers().get(name)

    def http(self, name: str) -> Any:
        raise NotImplementedError

    def attribute(self, name: str) -> Any:
        return UNDEFINED

    def request_time(self) -> Any:
        return UNDEFINED

    def raw_body(self) -> bytes | None:
        return None

    # shared
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = self._all_headers()
        return self._headers

    def target(self) -> str:
        p = self.http("path")
        return p if isinstance(p, str) else ""

    def parsed_path(self) -> list[str]:
        return parsed_path(self.target())

    def parsed_query(self) -> dict[str, list[str]]:
        return parse_query(split_target(self.target())[1])

    def parsed_body(self) -> tuple[Any, bool]:
        if self._body is None:
            self._body = parsed_body(self.header, self.raw_body())
        return self._body


def _decode(b: bytes) -> str:
    try:
        return b.decode()
    except UnicodeDecodeError:
        raise InputRefused(400, "request is not valid UTF-8") from None


class CheckView(RequestView):
    """ext_authz gRPC: ``slim`` (a ``SlimCheckRequest``) for method, path, host and
    headers; the full ``CheckRequest`` parsed from ``data`` for anything else."""

    def __init__(self, slim: Any, data: bytes | None) -> None:
        super().__init__()
        self._slim = slim
        self._data = data
        self._full: Any = None

    def full(self) -> Any:
        if self._full is None:
            if self._data is None:
                raise InputRefused(500, "the full CheckRequest is not available")
            try:
                self._full = external_auth_pb2.CheckRequest.FromString(self._data)
            except DecodeError:
                raise InputRefused(400, "request is not valid UTF-8") from None
        return self._full

    def _all_headers(self) -> dict[str, str]:
        http = self._slim.attributes.request.http
        if http.headers:
            return {k: _decode(v) for k, v in http.headers.items()}
        full = self.full().attributes.request.http
        return {h.key: h.value or _decode(h.raw_value) for h in full.header_map.headers}

    def header(self, name: str) -> str | None:
        if self._headers is None:
            http = self._slim.attributes.request.http
            if http.headers:
                v = http.headers.get(name)
                return None if v is None else _decode(v)
        return self.headers().get(name)

    def http(self, name: str) -> Any:
        slim = self._slim.attributes.request.http
        if name in ("method", "path", "host"):
            v = getattr(slim, name)
            return _decode(v) if v else UNDEFINED
        if name == "headers":
            return self.headers()
        h = self.full().attributes.request.http
        if name == "size":
            return h.size if h.size else UNDEFINED
        if name == "rawBody":
            return base64.b64encode(h.raw_body).decode() if h.raw_body else UNDEFINED
        v = getattr(h, name, "")
        return v if v else UNDEFINED

    def raw_body(self) -> bytes | None:
        h = self.full().attributes.request.http
        if h.body:
            return h.body.encode()
        return h.raw_body or None

    def attribute(self, name: str) -> Any:
        attrs = self.full().attributes
        field = _PROTO_NAMES.get(name)
        if field is None:
            return UNDEFINED
        msg = getattr(attrs, field)
        if name == "contextExtensions":
            return dict(msg) if msg else UNDEFINED
        if not attrs.HasField(field):
            return UNDEFINED
        return json_format.MessageToDict(msg)

    def request_time(self) -> Any:
        req = self.full().attributes.request
        return req.time.ToJsonString() if req.HasField("time") else UNDEFINED


class ProcessView(RequestView):
    """ext_proc ``request_headers``: method, path, host, scheme and headers (pseudo-headers
    included, as ext_authz sends them), and forwarded metadata."""

    def __init__(self, req: Any) -> None:
        super().__init__()
        self._req = req

    def _all_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for h in self._req.request_headers.headers.headers:
            v = _decode(h.raw_value) if h.raw_value else h.value
            k = h.key.lower()
            out[k] = f"{out[k]},{v}" if k in out else v  # duplicates joined, as ext_authz
        return out

    def http(self, name: str) -> Any:
        if name == "headers":
            return self.headers()
        pseudo = {"method": ":method", "path": ":path", "host": ":authority",
                  "scheme": ":scheme"}.get(name)  # fmt: skip
        if pseudo is None:
            return UNDEFINED
        v = self.headers().get(pseudo)
        if v is None and name == "host":
            v = self.headers().get("host")
        return v if v else UNDEFINED

    def attribute(self, name: str) -> Any:
        if name == "metadataContext" and self._req.HasField("metadata_context"):
            return json_format.MessageToDict(self._req.metadata_context)
        return UNDEFINED


class HttpView(RequestView):
    """HTTP ext_authz: the request line and the headers Envoy forwards (``allowed_headers``)."""

    def __init__(self, head: bytes) -> None:
        super().__init__()
        self._head = head

    def _lines(self) -> list[str]:
        return _decode(self._head).split("\r\n")

    def _all_headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self._lines()[1:]:
            k, _, v = line.partition(":")
            k = k.lower()
            v = v.strip()
            out[k] = f"{out[k]},{v}" if k in out else v
        return out

    def http(self, name: str) -> Any:
        if name == "headers":
            return self.headers()
        if name in ("method", "path", "protocol"):
            parts = self._lines()[0].split(" ")
            if len(parts) != 3:
                return UNDEFINED
            return parts[("method", "path", "protocol").index(name)]
        if name == "host":
            v = self.headers().get("host")
            return v if v else UNDEFINED
        return UNDEFINED


# -- the builder ---------------------------------------------------------------------


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    if value is not UNDEFINED:
        doc[key] = value


def _http_into(http: dict[str, Any], rest: Sequence[str], view: RequestView) -> None:
    if not rest:
        for name in HTTP_FIELDS:
            _set(http, name, view.http(name))
        return
    name = rest[0]
    if name not in HTTP_FIELDS:
        return
    if name == "headers" and len(rest) > 1 and not isinstance(http.get("headers"), dict):
        v = view.header(rest[1])  # one header: the others are never decoded
        if v is not None:
            http.setdefault("_one", {})[rest[1]] = v
        return
    _set(http, name, view.http(name))


def _attributes_into(attrs: dict[str, Any], rest: Sequence[str], view: RequestView) -> None:
    names = ATTRIBUTE_FIELDS if not rest else (rest[0],)
    for name in names:
        if name not in ATTRIBUTE_FIELDS:
            return
        if name == "request":
            req = attrs.setdefault("request", {"http": {}})
            sub = rest[1:] if rest else ()
            if (not sub or sub[0] == "time") and "time" not in req:
                _set(req, "time", view.request_time())
            if not sub or sub[0] == "http":
                _http_into(req["http"], sub[1:], view)
        elif name not in attrs:
            _set(attrs, name, view.attribute(name))


def build_input(paths: Iterable[Sequence[str]], view: RequestView) -> dict[str, Any]:
    """OPA-Envoy's input document, holding (at least) every path in ``paths``.

    ``paths`` are the module's ``input_paths``; ``()`` means the whole document.
    """
    doc: dict[str, Any] = {}
    for path in paths:
        top = TOP_FIELDS if not path else (path[0],)
        for name in top:
            if name == "attributes":
                _attributes_into(doc.setdefault("attributes", {}), path[1:], view)
            elif name == "version":
                doc["version"] = dict(VERSION)
            elif name == "parsed_path":
                if name not in doc:
                    doc[name] = view.parsed_path()
            elif name == "parsed_query":
                if name not in doc:
                    doc[name] = view.parsed_query()
            elif name in ("parsed_body", "truncated_body"):
                body, truncated = view.parsed_body()
                doc["parsed_body"] = body
                doc["truncated_body"] = truncated
    http = doc.get("attributes", {}).get("request", {}).get("http")
    if http is not None and "_one" in http:
        one = http.pop("_one")
        if "headers" not in http:
            http["headers"] = one
    return doc
