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

MODES = ("grpc", "http", "ext_proc", "rbac", "none")
SIDECAR_MODES = ("grpc", "http", "ext_proc")

#: Node cluster of every edge Envoy; the control plane groups its snapshots by it.
EDGE_NODE_CLUSTER = "a1-edge"
#: jwt_authn ``max_lifetime`` default; equal to ``a1.pki.MAX_TOKEN_LIFETIME_S`` (a test
#: holds them equal), the bound ``a1 token --ttl`` also enforces.
DEFAULT_MAX_TOKEN_LIFETIME_S = 86_400
#: An inline JWKS travels in both listeners of every push; a real one is a few KiB.
MAX_JWKS_BYTES = 64 * 1024

_DNS_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")


@dataclass(frozen=True)
class CellEndpoint:
    """One upstream endpoint of a cell. Several rows with one name are that cell's endpoints."""

    name: str
    host: str  # an IP literal
    port: int


@dataclass(frozen=True)
class EnvoyParams:
    """Everything Envoy's config depends on; defaults are the ``a1 up`` defaults."""

    cells: Sequence[CellEndpoint]
    jwks_path: Path | None  # jwt_authn reads this file, or:
    tls_cert: Path
    tls_key: Path
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
    max_token_lifetime_s: int = DEFAULT_MAX_TOKEN_LIFETIME_S  # jwt_authn max_lifetime
    # HTTP ext_authz: request headers (besides the defaults) sent to the sidecar.
    http_authz_headers: Sequence[str] = field(default=("x-a1-jwt-payload",))
    node_id: str = "a1-edge"
    # The JWKS itself (JSON text), when the control plane pushes it with the listener.
    jwks_inline: str | None = None


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
        if not path or "\0" in path:
            raise UserError(f"{field_name}: expected unix:/path, got {address[:80]!r}", 2)
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


def jwks_error(jwks: object) -> str | None:
    """Why ``jwks`` is not an inline JWKS Envoy can take, or None."""
    if not isinstance(jwks, str):
        return f"jwks_inline: must be JSON text, got {type(jwks).__name__}"
    why = utf8_error(jwks, "jwks_inline")
    if why is not None:
        return why
    size = len(jwks.encode("utf-8"))
    if size > MAX_JWKS_BYTES:
        return f"jwks_inline: {size} bytes is more than the {MAX_JWKS_BYTES}-byte limit"
    try:
        doc = json.loads(jwks)
    except (ValueError, RecursionError) as err:
        return f"jwks_inline: not JSON: {str(err)[:120]}"
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        return "jwks_inline: must be a JSON object with a non-empty \"keys\" list"
    if not all(isinstance(k, dict) for k in doc["keys"]):
        return "jwks_inline: every entry of \"keys\" must be a JSON object"
    return None


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
    for name in ("authz_timeout_ms", "upstream_timeout_ms", "health_interval_ms",
                 "max_token_lifetime_s"):
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UserError(f"{name}: must be positive, got {value}", 2)
    if (params.jwks_path is None) == (params.jwks_inline is None):
        raise UserError("jwks: give exactly one of jwks_path and jwks_inline", 2)
    if params.jwks_inline is not None:
        why = jwks_error(params.jwks_inline)
        if why is not None:
            raise UserError(why, 2)
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
