"""Generate: a ``PlatformState`` → one consistent ``Snapshot`` (Envoy's and A1's resources).

Envoy's resources come from ``control.envoy`` (the same builder ``a1 up``'s static
bootstrap uses), fed from the spec: listeners (HTTPS with its certificate pushed
inline over SDS), every JWT issuer with its JWKS inline, the sidecar's addresses and
mode, and one cluster, endpoint set and route per routed cell. A1's own resources
are the signed bundles, the assignment and the cell tables. Then the snapshot is
checked as a whole, and a state that fails any check never becomes a snapshot:

- every cell any table names (``cells``, ``cells.accept.<i>``) is routed, and every
  routed cell has its cluster and its ``x-a1-cell`` route;
- every version the assignment names has a bundle, and every bundle holds the
  version it is named for; every per-cell override names a routed cell;
- every listener's SDS secret exists, and ``Snapshot.check`` (routes → clusters,
  listeners → route configs, EDS clusters ↔ endpoints).

Deterministic: equal states render to byte-identical resources, hence equal versions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from control.envoy import CellEndpoint, EnvoyParams, JwtProvider, build_resources, cluster_name
from control.envoy.params import DEFAULT_REQUEST_BODY
from control.envoy.protos import pack
from control.envoy.resources import ROUTE_CONFIG, EnvoyResources
from control.pipeline.state import PlatformState
from control.xds.cache import Resource, Snapshot
from policies.bundle.errors import BundleRefused
from policies.bundle.format import (
    DEFAULT_MAX_MODULE_BYTES,
    parse_manifest,
    reads_request_body,
    split,
)
from policies.core.errors import ConfigError, UserError
from policies.core.xds.types import (
    ACCEPT_PREFIX,
    ASSIGNMENT_NAME,
    CELL_TABLE,
    LISTENER,
    POLICY_ASSIGNMENT,
    POLICY_BUNDLE,
    TABLE_NAME,
    canonical_json,
)
from policies.headers import CELL_HEADER


def envoy_params(state: PlatformState) -> EnvoyParams:
    """What ``control.envoy`` builds Envoy's config from, for this state."""
    spec = state.spec
    known = state.cell_endpoints()
    rows: list[CellEndpoint] = []
    for name in state.routed_cells:
        cell = known.get(name)
        if cell is None:
            raise ConfigError(f"routed cell {name!r}: no endpoints (in neither the spec "
                              "nor the retired cells)")
        rows += [CellEndpoint(name, ep.host, ep.port) for ep in cell.endpoints]
    http, https = spec.listeners.http, spec.listeners.https
    first = http or https
    if first is None:  # the spec's schema requires one; a hand-built spec may not
        raise ConfigError("listeners: at least one of http and https is required")
    tls = https.tls if https is not None else None
    extra: dict[str, Any] = {}
    if spec.sidecar.http is not None:
        extra["sidecar_http"] = spec.sidecar.http
    return EnvoyParams(
        cells=rows,
        jwks_path=None,
        tls_cert=None,
        tls_key=None,
        mode=spec.sidecar.mode,
        bind_address=first.address,
        http_port=http.port if http is not None else EnvoyParams.http_port,
        https_port=https.port if https is not None else EnvoyParams.https_port,
        https_bind_address=https.address if https is not None else None,
        listeners=tuple(k for k, v in (("http", http), ("https", https)) if v is not None),
        tls_cert_pem=tls.cert_pem if tls is not None else None,
        tls_key_pem=tls.key_pem if tls is not None else None,
        sidecar_grpc=spec.sidecar.grpc,
        authz_timeout_ms=spec.sidecar.timeout_ms,
        jwt_providers=tuple(JwtProvider(j.issuer, tuple(j.audiences), j.jwks)
                            for j in spec.jwt),
        access_log=Path(spec.listeners.access_log) if spec.listeners.access_log else None,
        jwt_authn=not spec.policy.verifies_tokens,
        request_body_bytes=DEFAULT_REQUEST_BODY if _reads_body(state.bundles) else 0,
        **extra,
    )


def _reads_body(bundles: Mapping[str, bytes]) -> bool:
    """Whether any OPA-Envoy bundle served reads the request body (its a1.meta says)."""
    from policies.runtime.module import META_SECTION, Metadata
    from policies.runtime.wasmbin import custom_sections

    for version, data in sorted(bundles.items()):
        source = f"PolicyBundle {version[:64]!r}"
        try:
            frame = split(data, source, DEFAULT_MAX_MODULE_BYTES)
            if parse_manifest(frame.manifest, source).input != "opa-envoy":
                continue
            meta = Metadata.parse(custom_sections(frame.module)[META_SECTION])
        except Exception:  # _check_bundle reports a bad bundle; its body needs nothing
            continue
        if reads_request_body(meta.input_paths):
            return True
    return False


def render(state: PlatformState) -> Snapshot:
    """The snapshot of ``state``; ConfigError naming the resource if it is inconsistent."""
    _check_state(state)
    try:
        envoy = build_resources(envoy_params(state))
    except ConfigError:
        raise
    except UserError as err:  # a parameter Envoy would refuse: same message, config exit code
        raise ConfigError(str(err)) from None
    _check_cells_routed(state, envoy)
    _check_secrets(envoy)
    resources = [Resource.of(t, n, v) for t, of in pack(envoy).items() for n, v in of.items()]
    resources += list(a1_resources(state))
    snapshot = Snapshot(resources)
    snapshot.check()
    return snapshot


def a1_resources(state: PlatformState) -> Iterator[Resource]:
    """The sidecar's resources: bundles, the cell tables, the assignment."""
    for version, data in sorted(state.bundles.items()):
        yield Resource.of(POLICY_BUNDLE, version, data)
    yield Resource.of(CELL_TABLE, TABLE_NAME, canonical_json(state.table.to_dict()))
    for i, table in enumerate(state.accept):
        yield Resource.of(CELL_TABLE, f"{ACCEPT_PREFIX}{i}", canonical_json(table.to_dict()))
    yield Resource.of(POLICY_ASSIGNMENT, ASSIGNMENT_NAME, state.assignment.to_json())


def _check_state(state: PlatformState) -> None:
    routed = set(state.routed_cells)
    if len(routed) != len(state.routed_cells):
        raise ConfigError("routed cells: a cell is listed twice")
    names = [TABLE_NAME, *(f"{ACCEPT_PREFIX}{i}" for i in range(len(state.accept)))]
    for name, table in zip(names, state.tables(), strict=True):
        for cell in table.cells:
            if cell not in routed:
                raise ConfigError(f"CellTable {name!r}: cell {cell!r} has no cluster and "
                                  "route in this snapshot")
    for cell in state.assignment.cells:
        if cell not in routed:
            raise ConfigError(f"PolicyAssignment {ASSIGNMENT_NAME!r}: cells.{cell}: "
                              "not a routed cell")
    for version in sorted(state.assignment.versions()):
        if version not in state.bundles:
            raise ConfigError(f"PolicyAssignment {ASSIGNMENT_NAME!r}: bundle version "
                              f"{version} has no PolicyBundle")
    for version, data in sorted(state.bundles.items()):
        _check_bundle(version, data)


def _check_bundle(version: str, data: bytes) -> None:
    """The bundle parses and holds ``version``; the signature is the sidecar's to verify."""
    source = f"PolicyBundle {version[:64]!r}"
    try:
        manifest = parse_manifest(split(data, source, DEFAULT_MAX_MODULE_BYTES).manifest, source)
    except BundleRefused as err:
        raise ConfigError(str(err)) from None
    if manifest.version != version:
        raise ConfigError(f"{source}: holds bundle {manifest.version}, not the version it "
                          "is named for")


def _cell_routes(envoy: EnvoyResources) -> dict[str, str]:
    """``x-a1-cell`` value → cluster, for every route matched on that header."""
    out: dict[str, str] = {}
    for vhost in envoy.routes.get(ROUTE_CONFIG, {}).get("virtual_hosts", []):
        for route in vhost.get("routes", []):
            for header in route.get("match", {}).get("headers", []):
                exact = header.get("string_match", {}).get("exact")
                if header.get("name") == CELL_HEADER and exact is not None:
                    out[exact] = route.get("route", {}).get("cluster", "")
    return out


def _check_cells_routed(state: PlatformState, envoy: EnvoyResources) -> None:
    routes = _cell_routes(envoy)
    for cell in state.routed_cells:
        cluster = cluster_name(cell)
        if cluster not in envoy.clusters:
            raise ConfigError(f"Cluster {cluster!r}: missing for routed cell {cell!r}")
        if routes.get(cell) != cluster:
            raise ConfigError(f"RouteConfiguration {ROUTE_CONFIG!r}: no {CELL_HEADER} route "
                              f"from cell {cell!r} to cluster {cluster!r}")


def _secret_refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "tls_certificate_sds_secret_configs":
                yield from (ref.get("name", "") for ref in value)
            else:
                yield from _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_refs(value)


def _check_secrets(envoy: EnvoyResources) -> None:
    for name, listener in sorted(envoy.of(LISTENER).items()):
        for ref in _secret_refs(listener):
            if ref not in envoy.secrets:
                raise ConfigError(f"Listener {name!r}: SDS secret {ref!r} does not exist")
