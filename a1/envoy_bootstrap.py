"""Render Envoy bootstrap YAML from the templates in ``envoy/``.

Templating approach: every template is a plain YAML file, parsed with
``yaml.safe_load`` *first*; placeholders are then substituted in the parsed
tree, and the result is written with ``yaml.safe_dump``. A quoted scalar that is
exactly ``"${name}"`` becomes the value itself (an int, a list, a mapping, a
fragment); ``${name}`` inside a longer string is replaced by text through
``string.Template``. Because substitution happens after parsing, no value (a cell
name, a path with ``: `` or a newline in it) can change the document's shape:
there is no YAML injection, every template stays a valid YAML file that an
editor can check, and an unknown or missing placeholder is an error naming the
template file and the key path. Mapping keys are never substituted.

Modes choose the authorization filter between ``jwt_authn`` and the router:
``grpc`` (ext_authz over gRPC, the default), ``http`` (ext_authz over the
sidecar's HTTP fast path), ``ext_proc``, ``rbac`` (Envoy's native RBAC on the
JWT claims, no sidecar) and ``none`` (jwt_authn only). ``rbac`` and ``none``
have no cell selection, so all traffic goes to one pinned cell.
"""

from __future__ import annotations

import copy
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from a1 import package_data
from a1.pki import MAX_TOKEN_LIFETIME_S
from policies.core.cells import cell_name_error
from policies.core.errors import UserError

MODES = ("grpc", "http", "ext_proc", "rbac", "none")
SIDECAR_MODES = ("grpc", "http", "ext_proc")

TEMPLATE_DIR = package_data.envoy_templates()

_WHOLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_ANY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_AUTHZ_FRAGMENT = {
    "grpc": "authz_grpc.yaml",
    "http": "authz_http.yaml",
    "ext_proc": "authz_ext_proc.yaml",
    "rbac": "authz_rbac.yaml",
}


@dataclass(frozen=True)
class CellEndpoint:
    """Where one cell listens."""

    name: str
    host: str
    port: int


@dataclass(frozen=True)
class BootstrapParams:
    """Everything a bootstrap depends on; defaults are the ``a1 up`` defaults."""

    cells: Sequence[CellEndpoint]
    jwks_path: Path
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
    max_token_lifetime_s: int = MAX_TOKEN_LIFETIME_S  # jwt_authn max_lifetime
    # HTTP ext_authz: request headers (besides the defaults) sent to the sidecar.
    http_authz_headers: Sequence[str] = field(default=("x-a1-jwt-payload",))
    node_id: str = "a1-edge"


class TemplateError(UserError):
    """A template refers to a placeholder that has no value (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


def load_template(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{path}: template not found") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise TemplateError(f"{where}: invalid YAML template: {err.problem}") from None


def substitute(node: Any, values: Mapping[str, Any], source: str, where: str = "") -> Any:
    """Return a copy of ``node`` with placeholders replaced (see the module doc)."""
    if isinstance(node, dict):
        return {k: substitute(v, values, source, f"{where}.{k}" if where else str(k))
                for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, source, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node
    whole = _WHOLE.match(node)
    if whole:
        name = whole.group(1)
        if name not in values:
            raise TemplateError(f"{source}: {where or '<root>'}: no value for ${{{name}}}")
        return copy.deepcopy(values[name])
    for name in _ANY.findall(node):
        if name not in values:
            raise TemplateError(f"{source}: {where}: no value for ${{{name}}}")
        if not isinstance(values[name], str | int) or isinstance(values[name], bool):
            raise TemplateError(f"{source}: {where}: ${{{name}}} inside text must be text")
    return string.Template(node).substitute({k: str(v) for k, v in values.items()
                                             if isinstance(v, str | int)})


def render_file(path: Path, values: Mapping[str, Any]) -> Any:
    return substitute(load_template(path), values, str(path))


def socket_address(address: str, field_name: str) -> dict[str, Any]:
    """``HOST:PORT`` or ``unix:/path`` → an Envoy core.v3.Address mapping."""
    if address.startswith("unix:"):
        return {"pipe": {"path": address[len("unix:"):]}}
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{field_name}: expected HOST:PORT or unix:/path, got {address!r}", 2)
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def _duration(ms: int) -> str:
    return f"{ms / 1000:.3f}s"


def _check(params: BootstrapParams) -> None:
    if params.mode not in MODES:
        raise UserError(f"mode: must be one of {', '.join(MODES)}, got {params.mode!r}", 2)
    if not params.cells:
        raise UserError("cells: at least one cell is required", 2)
    seen: set[str] = set()
    for cell in params.cells:
        why = cell_name_error(cell.name)
        if why is not None:
            raise UserError(f"cells: {why}", 2)
        if cell.name in seen:
            raise UserError(f"cells: duplicate cell {cell.name!r}", 2)
        seen.add(cell.name)
    if params.pinned_cell is not None and params.pinned_cell not in seen:
        raise UserError(f"pinned_cell: {params.pinned_cell!r} is not one of the cells", 2)
    ports = {"http_port": params.http_port, "https_port": params.https_port,
             "admin_port": params.admin_port}
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise UserError(f"{name}: {port} is not a TCP port", 2)
    if params.max_token_lifetime_s <= 0:
        raise UserError(f"max_token_lifetime_s: must be positive, got "
                        f"{params.max_token_lifetime_s}", 2)


def cluster_name(cell: str) -> str:
    return f"cell_{cell}"


def render_bootstrap(params: BootstrapParams, template_dir: Path = TEMPLATE_DIR) -> dict[str, Any]:
    """The bootstrap as a mapping, ready for :func:`dump`."""
    _check(params)
    frag = template_dir / "fragments"
    timeouts = {"authz_timeout": _duration(params.authz_timeout_ms),
                "upstream_timeout": _duration(params.upstream_timeout_ms),
                "health_interval": _duration(params.health_interval_ms)}

    filters: list[Any] = [render_file(frag / "jwt_authn.yaml", {
        "issuer": params.issuer, "audience": params.audience,
        "jwks_path": str(params.jwks_path),
        "max_lifetime": f"{params.max_token_lifetime_s}s"})]
    healthz_per_filter: dict[str, Any] = {}
    if params.mode != "none":
        authz = render_file(frag / _AUTHZ_FRAGMENT[params.mode], {
            **timeouts,
            # Over a Unix socket the URI's host is only a name: the cluster connects.
            "sidecar_http_uri": "http://a1-sidecar" if params.sidecar_http.startswith("unix:")
            else f"http://{params.sidecar_http}",
            "http_allowed_headers": [{"exact": h.lower()} for h in params.http_authz_headers],
        })
        healthz_per_filter[authz["name"]] = authz.pop("per_route_disabled")
        filters.append(authz)
    filters.append(render_file(frag / "router.yaml", {}))

    fixed = render_file(frag / "routes.yaml", {"healthz_per_filter": healthz_per_filter})
    routes: list[Any] = [fixed["healthz"]]
    clusters: list[Any] = []
    for cell in params.cells:
        name = cluster_name(cell.name)
        rendered = render_file(frag / "cell.yaml", {
            **timeouts, "cell": cell.name, "route_name": f"cell-{cell.name}",
            "cluster_name": name,
            "cell_address": socket_address(f"{cell.host}:{cell.port}", f"cell {cell.name}"),
        })
        clusters.append(rendered["cluster"])
        if params.mode in SIDECAR_MODES:
            routes.append(rendered["route"])
    if params.mode in SIDECAR_MODES:
        routes.append(fixed["unknown_cell"])
        sidecar = render_file(frag / "sidecar_clusters.yaml", {
            "sidecar_grpc_address": socket_address(params.sidecar_grpc, "sidecar_grpc"),
            "sidecar_http_address": socket_address(params.sidecar_http, "sidecar_http"),
        })
        clusters.append(sidecar["http" if params.mode == "http" else "grpc"])
    else:
        pinned = params.pinned_cell or params.cells[0].name
        routes.append(render_file(frag / "pinned_route.yaml", {
            **timeouts, "cluster_name": cluster_name(pinned)}))

    access_log: list[Any] = []
    if params.access_log is not None:
        access_log.append(render_file(frag / "access_log.yaml",
                                      {"access_log_path": str(params.access_log)}))

    def hcm(prefix: str) -> Any:
        return render_file(frag / "hcm.yaml", {
            "stat_prefix": prefix, "access_log": access_log,
            "http_filters": filters, "routes": routes})

    return render_file(template_dir / "bootstrap.yaml", {
        "node_id": params.node_id,
        "bind_address": params.bind_address,
        "admin_port": params.admin_port,
        "http_port": params.http_port,
        "https_port": params.https_port,
        "tls_cert": str(params.tls_cert),
        "tls_key": str(params.tls_key),
        "hcm_http": hcm("a1_http"),
        "hcm_https": hcm("a1_https"),
        "clusters": clusters,
    })


def dump(bootstrap: Mapping[str, Any]) -> str:
    header = "# Generated by `a1 envoy bootstrap` from envoy/*.yaml; edit the templates.\n"
    return header + yaml.safe_dump(dict(bootstrap), sort_keys=False, width=100)
