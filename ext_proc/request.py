"""The request facts the engine decides on, read the same way from all three front doors.

Each wire form (ext_authz ``CheckRequest``, ext_proc ``request_headers``, the HTTP
ext_authz head) has one constructor here, and all of them funnel into
``RequestReader.facts``, which applies the rules once:

- every byte string is decoded as strict UTF-8; invalid UTF-8 is a 400;
- ``:path`` longer than ``limits.max_path`` bytes is a 414;
- the path must be canonical (``/``-rooted, no ``.``/``..`` segment, plain or
  percent-encoded, no ``//``, no ``\\``, no ``%2f``/``%5c``): else 400, so that the
  sidecar and the cell can never disagree about which tenant a path names;
- the target tenant must match the one grammar (``policies.core.tenant``): else 400;
- with a header or host tenant source, a ``/t/<seg>`` path must name that same
  tenant (the cells serve the path's tenant), a repeated or comma-joined tenant
  header is ambiguous, and a non-ASCII host is refused: each a 400;
- a caller whose tenant claim is outside the grammar is refused with 403 (the
  request is well formed; the credential can never match a tenant).

A request that breaks a rule carries ``status`` and ``reason``; the engine turns it
into a deny without evaluating the policy or touching a cache.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from envoy.config.core.v3 import base_pb2

from ext_proc import defaults
from ext_proc.claims import (
    JWT_NAMESPACE,
    PAYLOAD_HEADER,
    Subject,
    subject_from_header,
    subject_from_metadata_bytes,
)
from ext_proc.config import TenantSource
from ext_proc.tenant import TenantFn, TenantRefused, make_tenant_fn
from policies.core.tenant import TENANT_RE, tenant_error, tenant_from_path

A1_PREFIX = "x-a1-"
MAX_BODY = 1024 * 1024  # HTTP door: request bodies are read and ignored, up to this
NOT_UTF8 = "request is not valid UTF-8"  # the same reason on every door


class RequestFacts(NamedTuple):
    """What a decision depends on. ``status`` is 0 for a well-formed request."""

    method: str
    path: str  # without the query string
    tenant: str | None  # the target tenant, canonical
    subject: Subject | None  # the caller's verified claims (sub, tenant, roles)
    subject_key: Any  # the raw claims carrier; determines ``subject`` exactly
    a1_names: tuple[str, ...]  # client-supplied x-a1-* header names, to strip on allow
    status: int = 0
    reason: str = ""


class HttpHead(NamedTuple):
    """The HTTP door's parse: the facts plus what framing the connection needs."""

    facts: RequestFacts
    body_len: int
    close: bool
    broken: bool = False  # framing unusable: answer ``facts.status`` and drop the connection


def _is_canonical_error(path: str) -> str | None:
    """Why ``path`` (query removed) is not canonical, or None. Cheap substring tests first."""
    if path[:1] != "/":
        return "path must start with /"
    if "//" in path:
        return "path has an empty segment (//)"
    if "\\" in path:
        return "path contains a backslash"
    p = path
    if "%" in path:
        low = path.lower()
        if "%2f" in low or "%5c" in low:
            return "path contains an encoded slash or backslash (%2f, %5c)"
        p = low.replace("%2e", ".")
    if "/." in p:
        for seg in p.split("/"):
            if seg == "." or seg == "..":
                return "path contains a dot-segment (. or ..)"
    return None


def remove_names(allow: bool, set_names: frozenset[str], a1: tuple[str, ...]) -> tuple[str, ...]:
    """Client ``x-a1-*`` headers to strip on allow: every one the decision does not set."""
    if not allow or not a1:
        return ()
    return tuple(sorted(k for k in a1 if k not in set_names))


_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)
_MAX_KNOWN_TENANTS = 4096


class RequestReader:
    """Builds ``RequestFacts`` from each wire form; holds the tenant source and limits.

    Tenant ids already seen to match the grammar are remembered (at most
    ``_MAX_KNOWN_TENANTS`` of at most 63 characters, then forgotten all at once), so the
    common case is a set lookup instead of a regex match.
    """

    __slots__ = ("_known", "max_path", "tenant_fn", "tenant_header", "tenant_kind")

    def __init__(self, tenant: TenantSource | None = None, max_path: int = defaults.MAX_PATH):
        tenant = tenant or TenantSource()
        self.tenant_kind = tenant.kind
        self.tenant_header: str | None = tenant.header if tenant.kind == "header" else None
        self.tenant_fn: TenantFn = make_tenant_fn(tenant)
        self.max_path = max_path
        self._known: set[str] = set()

    def _canonical(self, tenant: str) -> bool:
        known = self._known
        if tenant in known:
            return True
        if TENANT_RE.match(tenant) is None:
            return False
        if len(known) >= _MAX_KNOWN_TENANTS:
            known.clear()
        known.add(tenant)
        return True

    # -- the one funnel ---------------------------------------------------------------

    def facts(
        self,
        method: str,
        path: str,
        host: str = "",
        tenant_header: str | None = None,
        subject: Subject | None = None,
        subject_key: Any = None,
        a1_names: tuple[str, ...] = (),
    ) -> RequestFacts:
        if len(path) > self.max_path and len(path.encode()) > self.max_path:
            return RequestFacts(method, path[:64], None, subject, subject_key, a1_names, 414,
                                f"path is longer than {self.max_path} bytes")  # fmt: skip
        q = path.find("?")
        if q >= 0:
            path = path[:q]
        if path[:1] != "/" or "//" in path or "\\" in path or "%" in path or "/." in path:
            err = _is_canonical_error(path)  # the common, canonical case skips the call
            if err is not None:
                return RequestFacts(method, path, None, subject, subject_key, a1_names, 400, err)
        if self.tenant_kind == "path":
            tenant = tenant_from_path(path) if path[:3] == "/t/" else None
        else:
            if tenant_header is not None and "," in tenant_header:
                # Two copies (ext_proc, HTTP) or Envoy's comma-joined list (ext_authz).
                return RequestFacts(method, path, None, subject, subject_key, a1_names, 400,
                                    f"ambiguous tenant header {self.tenant_header}: "
                                    "more than one value")  # fmt: skip
            try:
                tenant = self.tenant_fn(path, host, tenant_header)
            except TenantRefused as err:
                return RequestFacts(method, path, None, subject, subject_key, a1_names, 400,
                                    str(err))  # fmt: skip
            in_path = tenant_from_path(path)
            if in_path is not None and in_path != tenant:
                # The cells serve the path's tenant: it must be the one decided on.
                return RequestFacts(method, path, None, subject, subject_key, a1_names, 400,
                                    f"path tenant does not match the {self.tenant_kind} "
                                    "tenant")  # fmt: skip
        known = self._known
        if tenant is not None and tenant not in known and not self._canonical(tenant):
            return RequestFacts(method, path, None, subject, subject_key, a1_names, 400,
                                f"target {tenant_error(tenant)}")  # fmt: skip
        if subject is not None:
            claim = subject.get("tenant")
            if claim is not None and claim not in known and not self._canonical(claim):
                return RequestFacts(method, path, tenant, subject, subject_key, a1_names, 403,
                                    "tenant claim is not a canonical tenant id")  # fmt: skip
        return _new(RequestFacts, (method, path, tenant, subject, subject_key, a1_names, 0, ""))

    def bad(self, status: int, reason: str, method: str = "", path: str = "") -> RequestFacts:
        return RequestFacts(method, path[:64], None, None, None, (), status, reason)

    # -- ext_authz gRPC (a SlimCheckRequest: string fields arrive as bytes) -----------

    def from_check(self, req: Any) -> RequestFacts:
        """Claims come only from jwt_authn's dynamic metadata, never from a header."""
        attrs = req.attributes
        http = attrs.request.http
        headers: Any = http.headers
        if not headers and http.header_map:
            headers = {h.key: h.raw_value or h.value.encode()
                       for h in base_pb2.HeaderMap.FromString(http.header_map).headers}  # fmt: skip
        th = self.tenant_header
        try:
            method = http.method.decode()
            path = http.path.decode()
            host = http.host.decode()
            raw_th = headers.get(th) if th is not None else None
            tenant_header = raw_th.decode().strip() if raw_th is not None else None
        except UnicodeDecodeError:
            return self.bad(400, NOT_UTF8)
        a1 = tuple([k for k in headers if k.startswith(A1_PREFIX)])
        raw = attrs.metadata_context
        return self.facts(
            method, path, host, tenant_header, subject_from_metadata_bytes(raw), raw, a1
        )

    # -- ext_proc request_headers -------------------------------------------------------

    def from_process(self, req: Any) -> RequestFacts:
        """Claims: forwarded jwt_authn metadata, else the ``x-a1-jwt-payload`` header."""
        method = path = host = ""
        payload: str | None = None
        tenant_header: str | None = None
        th = self.tenant_header
        a1: list[str] = []
        try:
            for h in req.request_headers.headers.headers:
                k = h.key
                v = h.raw_value.decode() if h.raw_value else h.value
                if k[:1] == ":":
                    if k == ":path":
                        path = v
                    elif k == ":method":
                        method = v
                    elif k == ":authority":
                        host = v
                elif k.startswith(A1_PREFIX):
                    a1.append(k)
                    if k == PAYLOAD_HEADER:
                        # Two copies (a forged one and Envoy's) are ambiguous: trust neither.
                        payload = v if payload is None else ""
                elif k == th:
                    v = v.strip()  # a second copy joins with ",", as Envoy's ext_authz does
                    tenant_header = v if tenant_header is None else f"{tenant_header},{v}"
                elif k == "host" and not host:
                    host = v
        except UnicodeDecodeError:
            return self.bad(400, NOT_UTF8)
        skey: Any = None
        subject = None
        if JWT_NAMESPACE in req.metadata_context.filter_metadata:
            skey = req.metadata_context.SerializeToString()
            subject = subject_from_metadata_bytes(skey)
        elif payload is not None:
            skey, subject = payload, subject_from_header(payload)
        return self.facts(method, path, host, tenant_header, subject, skey, tuple(a1))

    # -- HTTP ext_authz (one request head, without the blank line) ----------------------

    def from_http(self, head: bytes) -> HttpHead:
        """Claims come from ``x-a1-jwt-payload``, which Envoy's jwt_authn writes."""
        try:
            text = head.decode()
        except UnicodeDecodeError:
            return HttpHead(self.bad(400, NOT_UTF8), 0, True, True)
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return HttpHead(self.bad(400, "malformed request line"), 0, True, True)
        method, path, version = parts
        th = self.tenant_header
        host = ""
        payload: str | None = None
        tenant_header: str | None = None
        body_len = 0
        close = version == "HTTP/1.0"
        a1: list[str] = []
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if not sep:
                return HttpHead(self.bad(400, "malformed header line", method), 0, True, True)
            k = k.lower()
            c = k[0] if k else ""
            if c == "x" and k.startswith(A1_PREFIX):
                a1.append(k)
                if k == PAYLOAD_HEADER:
                    # Two copies (a forged one and Envoy's) are ambiguous: trust neither.
                    payload = v.strip() if payload is None else ""
            elif k == th:
                v = v.strip()  # a second copy joins with ",", as Envoy's ext_authz does
                tenant_header = v if tenant_header is None else f"{tenant_header},{v}"
            elif c == "h" and k == "host":
                host = v.strip()
            elif c == "c":
                if k == "content-length":
                    try:
                        body_len = int(v)
                    except ValueError:
                        return HttpHead(self.bad(400, "bad content-length", method), 0, True, True)
                    if not 0 <= body_len <= MAX_BODY:
                        too_large = self.bad(413, "request body too large", method)
                        return HttpHead(too_large, 0, True, True)
                elif k == "connection":
                    lv = v.strip().lower()
                    close = lv == "close" or (close and lv != "keep-alive")
            elif c == "t" and k == "transfer-encoding":
                bad = self.bad(501, "chunked request bodies are not supported", method)
                return HttpHead(bad, 0, True, True)
        subject = subject_from_header(payload) if payload is not None else None
        f = self.facts(method, path, host, tenant_header, subject, payload, tuple(a1))
        return _new(HttpHead, (f, body_len, close, False))
