"""What Envoy's config depends on, and the checks that keep bad values out of it.

One parameter set feeds both forms of the same config: the resources the control
plane serves over xDS and the static bootstrap ``a1 up`` writes. Every value is
checked here, with a one-line error naming the field, before any template sees it:
an address must be an IP literal (EDS and STATIC clusters never resolve names), a
port 1..65535 in ASCII digits, text valid UTF-8 (protobuf strings are), and an
inline JWKS a bounded JSON object with a ``keys`` list.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from policies.core.cells import cell_name_error
from policies.core.errors import UserError
from policies.core.identity import MAX_TOKEN_LIFETIME_S
from policies.core.unix_socket import unix_path_error

MODES = ("grpc", "http", "ext_proc", "rbac", "none")
SIDECAR_MODES = ("grpc", "http", "ext_proc")
LISTENERS = ("http", "https")

#: An inline JWKS travels in both listeners of every push; a real one is a few KiB.
MAX_JWKS_BYTES = 64 * 1024
#: jwt_authn providers in one filter (the platform spec's bound on issuers).
MAX_JWT_PROVIDERS = 64
#: An inline PEM certificate chain or key travels in the SDS secret of every push.
MAX_PEM_BYTES = 256 * 1024
#: Body bytes ext_authz may buffer: with headers, a CheckRequest stays under the
#: sidecar's 1 MiB gRPC message limit.
MAX_REQUEST_BODY = 512 * 1024
#: What Envoy buffers when an OPA-Envoy policy reads the body (OPA-Envoy's docs' value).
DEFAULT_REQUEST_BODY = 8192

_DNS_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")


@dataclass(frozen=True)
class CellEndpoint:
    """One upstream endpoint of a cell. Several rows with one name are that cell's endpoints."""

    name: str
    host: str  # an IP literal
    port: int


@dataclass(frozen=True)
class JwtProvider:
    """One issuer jwt_authn accepts: its ``iss``, accepted ``aud`` values and JWKS (JSON text)."""

    issuer: str
    audiences: tuple[str, ...]
    jwks: str


@dataclass(frozen=True)
class EnvoyParams:
    """Everything Envoy's config depends on; defaults are the ``a1 up`` defaults."""

    cells: Sequence[CellEndpoint]
    jwks_path: Path | None  # jwt_authn reads this file, or jwks_inline, or jwt_providers
    tls_cert: Path | None  # Envoy reads these files, or tls_cert_pem / tls_key_pem
    tls_key: Path | None
    mode: str = "grpc"
    bind_address: str = "127.0.0.1"
    http_port: int = 10000
    https_port: int = 10443
    admin_port: int = 9901
    sidecar_grpc: str = "127.0.0.1:10100"  # HOST:PORT or unix:/path
    sidecar_http: str = "127.0.0.1:10101"  # HOST:PORT or unix:/path
    authz_timeout_ms: int = 500
    upstream_timeout_ms: int = 15_000
    health_interval_ms: int = 1000
    access_log: Path | None = None
    pinned_cell: str | None = None  # rbac/none: the one cell that serves (default: first)
    issuer: str = "a1-dev"
    audience: str = "a1"
    max_token_lifetime_s: int = MAX_TOKEN_LIFETIME_S  # jwt_authn max_lifetime
    # HTTP ext_authz: request headers (besides the defaults) sent to the sidecar.
    http_authz_headers: Sequence[str] = field(default=("x-a1-jwt-payload",))
    node_id: str = "a1-edge"
    # The JWKS itself (JSON text), when the control plane pushes it with the listener.
    jwks_inline: str | None = None
    # Which listeners exist (the platform spec may declare only one of them).
    listeners: tuple[str, ...] = LISTENERS
    https_bind_address: str | None = None  # default: bind_address
    # The certificate chain and key themselves (PEM), pushed inline in the SDS secret
    # so that no path of the control plane's host appears in Envoy's config.
    tls_cert_pem: bytes | None = None
    tls_key_pem: bytes | None = None
    # Several issuers (one jwt_authn provider each, any one of them suffices); when
    # given, they replace issuer/audience/jwks_path/jwks_inline.
    jwt_providers: Sequence[JwtProvider] = ()
    # False: no jwt_authn filter (the policy verifies tokens itself: docs/opa-envoy.md).
    jwt_authn: bool = True
    # ext_authz buffers up to this many body bytes for the sidecar (0: none); set when
    # an OPA-Envoy policy reads the body. Partial bodies are sent (truncated_body).
    request_body_bytes: int = 0


def cluster_name(cell: str) -> str:
    return f"cell_{cell}"


def utf8_error(value: object, field_name: str) -> str | None:
    """Why ``value`` cannot be a protobuf string (lone surrogates from non-UTF-8 input)."""
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError as err:
        return f"{field_name}: not valid UTF-8 at character {err.start}"
    return None


def _port(value: object, field_name: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise UserError(f"{field_name}: {str(value)[:40]!r} is not a TCP port (1-65535)", 2)
    return value


def _host(host: str, field_name: str, names: bool) -> str:
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if literal.isascii() and "%" not in literal:  # no zone ids: Envoy takes none
        try:
            return str(ipaddress.ip_address(literal))
        except ValueError:
            pass
        if names and _DNS_NAME.match(literal):
            return literal.lower()
    what = "an IP address or a DNS name" if names else "an IP address"
    raise UserError(f"{field_name}: host must be {what}, got {host[:80]!r}", 2)


def socket_address(address: str, field_name: str, *, names: bool = False) -> dict[str, Any]:
    """``HOST:PORT`` or ``unix:/path`` → an Envoy core.v3.Address mapping.

    ``HOST`` is an IP literal (IPv6 in brackets or bare), or with ``names`` a DNS name.
    """
    why = utf8_error(address, field_name)
    if why is not None:
        raise UserError(why, 2)
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        why = "contains NUL" if "\0" in path else unix_path_error(path)
        if why is not None:
            raise UserError(f"{field_name}: {why}", 2)
        return {"pipe": {"path": path}}
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port:
        raise UserError(f"{field_name}: expected HOST:PORT or unix:/path, "
                        f"got {address[:80]!r}", 2)
    return {"socket_address": {"address": _host(host, field_name, names),
                               "port_value": _port(port, field_name)}}


def endpoint_address(cell: CellEndpoint, where: str) -> dict[str, Any]:
    """A cell endpoint → an Envoy core.v3.Address mapping (IP literal, TCP port)."""
    if not isinstance(cell.host, str):
        raise UserError(f"{where}.host: must be text", 2)
    why = utf8_error(cell.host, f"{where}.host")
    if why is not None:
        raise UserError(why, 2)
    return {"socket_address": {"address": _host(cell.host, f"{where}.host", names=False),
                               "port_value": _port(cell.port, f"{where}.port")}}


def cells_by_name(params: EnvoyParams) -> dict[str, list[CellEndpoint]]:
    """Cell name → its endpoint rows, in order of first appearance."""
    out: dict[str, list[CellEndpoint]] = {}
    for row in params.cells:
        out.setdefault(row.name, []).append(row)
    return out


def jwks_error(jwks: object, field_name: str = "jwks_inline") -> str | None:
    """Why ``jwks`` is not an inline JWKS Envoy can take, or None."""
    if not isinstance(jwks, str):
        return f"{field_name}: must be JSON text, got {type(jwks).__name__}"
    why = utf8_error(jwks, field_name)
    if why is not None:
        return why
    size = len(jwks.encode("utf-8"))
    if size > MAX_JWKS_BYTES:
        return f"{field_name}: {size} bytes is more than the {MAX_JWKS_BYTES}-byte limit"
    try:
        doc = json.loads(jwks)
    except (ValueError, RecursionError) as err:
        return f"{field_name}: not JSON: {str(err)[:120]}"
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        return f"{field_name}: must be a JSON object with a non-empty \"keys\" list"
    if not all(isinstance(k, dict) for k in doc["keys"]):
        return f"{field_name}: every entry of \"keys\" must be a JSON object"
    return None


def _text_error(value: object, field_name: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{field_name}: must be non-empty text"
    return utf8_error(value, field_name)


def _check_jwt(params: EnvoyParams) -> None:
    if not params.jwt_providers:
        if (params.jwks_path is None) == (params.jwks_inline is None):
            raise UserError("jwks: give exactly one of jwks_path and jwks_inline", 2)
        if params.jwks_inline is not None:
            why = jwks_error(params.jwks_inline)
            if why is not None:
                raise UserError(why, 2)
        return
    if params.jwks_path is not None or params.jwks_inline is not None:
        raise UserError("jwks: jwt_providers replace jwks_path and jwks_inline; give one", 2)
    if len(params.jwt_providers) > MAX_JWT_PROVIDERS:
        raise UserError(f"jwt_providers: {len(params.jwt_providers)} providers, more than "
                        f"{MAX_JWT_PROVIDERS}", 2)
    for i, p in enumerate(params.jwt_providers):
        where = f"jwt_providers[{i}]"
        if not isinstance(p, JwtProvider):
            raise UserError(f"{where}: must be a JwtProvider", 2)
        if not isinstance(p.audiences, tuple) or not p.audiences:
            raise UserError(f"{where}.audiences: must be a non-empty tuple", 2)
        whys = [_text_error(p.issuer, f"{where}.issuer"),
                *(_text_error(a, f"{where}.audiences[{j}]") for j, a in enumerate(p.audiences)),
                jwks_error(p.jwks, f"{where}.jwks")]
        why = next((w for w in whys if w is not None), None)
        if why is not None:
            raise UserError(why, 2)


def _pem_error(value: object, field_name: str) -> str | None:
    if not isinstance(value, bytes) or not value:
        return f"{field_name}: must be non-empty PEM bytes"
    if len(value) > MAX_PEM_BYTES:
        return f"{field_name}: {len(value)} bytes is more than the {MAX_PEM_BYTES}-byte limit"
    if b"-----BEGIN " not in value:
        return f"{field_name}: not PEM (no -----BEGIN line)"
    return None


def _check_tls(params: EnvoyParams) -> None:
    if "https" not in params.listeners:
        return
    files = (params.tls_cert, params.tls_key)
    pems = (params.tls_cert_pem, params.tls_key_pem)
    has_files = any(v is not None for v in files)
    has_pems = any(v is not None for v in pems)
    if has_files == has_pems or None in (files if has_files else pems):
        raise UserError("tls: the https listener needs tls_cert and tls_key, "
                        "or tls_cert_pem and tls_key_pem", 2)
    for name in ("tls_cert_pem", "tls_key_pem") if has_pems else ():
        why = _pem_error(getattr(params, name), name)
        if why is not None:
            raise UserError(why, 2)


def check(params: EnvoyParams) -> None:
    """Refuse a parameter set Envoy would refuse, or that would make a different config."""
    if params.mode not in MODES:
        raise UserError(f"mode: must be one of {', '.join(MODES)}, got {params.mode!r}", 2)
    if not params.cells:
        raise UserError("cells: at least one cell is required", 2)
    rows: set[tuple[str, str, int]] = set()
    for i, cell in enumerate(params.cells):
        if not isinstance(cell.name, str):
            raise UserError(f"cells[{i}].name: must be text", 2)
        why = cell_name_error(cell.name)
        if why is not None:
            raise UserError(f"cells[{i}]: {why}", 2)
        address = endpoint_address(cell, f"cells[{i}]")["socket_address"]
        row = (cell.name, address["address"], address["port_value"])
        if row in rows:
            raise UserError(f"cells[{i}]: duplicate endpoint {row[1]}:{row[2]} "
                            f"of cell {cell.name!r}", 2)
        rows.add(row)
    if params.pinned_cell is not None and params.pinned_cell not in cells_by_name(params):
        raise UserError(f"pinned_cell: {params.pinned_cell!r} is not one of the cells", 2)
    for name in ("http_port", "https_port", "admin_port"):
        _port(getattr(params, name), name)
    body = params.request_body_bytes
    if isinstance(body, bool) or not isinstance(body, int) or not 0 <= body <= MAX_REQUEST_BODY:
        raise UserError(f"request_body_bytes: must be an integer in [0, {MAX_REQUEST_BODY}], "
                        f"got {body!r}", 2)
    if body and params.mode == "ext_proc":
        raise UserError("request_body_bytes: the ext_proc door reads no body; use grpc", 2)
    for name in ("authz_timeout_ms", "upstream_timeout_ms", "health_interval_ms",
                 "max_token_lifetime_s"):
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UserError(f"{name}: must be positive, got {value}", 2)
    listeners = params.listeners
    if (not isinstance(listeners, tuple) or not listeners or len(set(listeners)) != len(listeners)
            or not set(listeners) <= set(LISTENERS)):
        raise UserError(f"listeners: must be a non-empty tuple of distinct "
                        f"{' and '.join(LISTENERS)}, got {str(listeners)[:80]}", 2)
    _check_jwt(params)
    _check_tls(params)
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, str | Path):
            why = utf8_error(value, f.name)
            if why is not None:
                raise UserError(why, 2)
    for i, header in enumerate(params.http_authz_headers):
        why = utf8_error(header, f"http_authz_headers[{i}]")
        if why is not None:
            raise UserError(why, 2)
    _host(params.bind_address, "bind_address", names=False)
    if params.https_bind_address is not None:
        _host(params.https_bind_address, "https_bind_address", names=False)
