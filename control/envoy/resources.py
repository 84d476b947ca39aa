"""Envoy's config as xDS resources, built from the templates in ``envoy/``.

This is the one place that decides what Envoy runs. The control plane serves the
result over ADS (listeners with RDS, EDS cell clusters, an SDS secret); the static
bootstrap is the same set inlined (``control.envoy.inline``). So the two forms
cannot drift: a test holds them equal, message by message.

Modes choose the authorization filter between ``jwt_authn`` and the router:
``grpc`` (ext_authz over gRPC, the default), ``http`` (ext_authz over the
sidecar's HTTP fast path), ``ext_proc``, ``rbac`` (Envoy's native RBAC on the
JWT claims, no sidecar) and ``none`` (jwt_authn only). ``rbac`` and ``none``
have no cell selection, so all traffic goes to one pinned cell.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from control.envoy.params import (
    LISTENERS,
    SIDECAR_MODES,
    EnvoyParams,
    cells_by_name,
    check,
    cluster_name,
    endpoint_address,
    socket_address,
)
from control.envoy.templates import render_file, template_dir
from policies.core.xds.types import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SECRET,
    is_a1_type,
)

#: Envoy's types in make-before-break push order.
ENVOY_TYPES = tuple(t for t in PUSH_ORDER if not is_a1_type(t))

HTTP_LISTENER = "a1_http"
HTTPS_LISTENER = "a1_https"
ROUTE_CONFIG = "a1_routes"
TLS_SECRET = "a1_tls"

_AUTHZ_FRAGMENT = {
    "grpc": "authz_grpc.yaml",
    "http": "authz_http.yaml",
    "ext_proc": "authz_ext_proc.yaml",
    "rbac": "authz_rbac.yaml",
}


@dataclass(frozen=True)
class EnvoyResources:
    """Envoy's config: type URL → resource name → resource, in proto3 JSON form.

    The mappings are shared, not copied: read them, or deep-copy before changing.
    """

    by_type: Mapping[str, Mapping[str, Mapping[str, Any]]]

    def of(self, type_url: str) -> Mapping[str, Mapping[str, Any]]:
        return self.by_type.get(type_url, MappingProxyType({}))

    @property
    def listeners(self) -> Mapping[str, Mapping[str, Any]]:
        return self.of(LISTENER)

    @property
    def routes(self) -> Mapping[str, Mapping[str, Any]]:
        return self.of(ROUTE)

    @property
    def clusters(self) -> Mapping[str, Mapping[str, Any]]:
        return self.of(CLUSTER)

    @property
    def endpoints(self) -> Mapping[str, Mapping[str, Any]]:
        return self.of(ENDPOINT)

    @property
    def secrets(self) -> Mapping[str, Mapping[str, Any]]:
        return self.of(SECRET)

    def items(self) -> Iterator[tuple[str, Mapping[str, Mapping[str, Any]]]]:
        """(type URL, resources) in push order, every Envoy type present (maybe empty)."""
        for type_url in ENVOY_TYPES:
            yield type_url, self.of(type_url)


def _duration(ms: int) -> str:
    return f"{ms / 1000:.3f}s"


def build_resources(params: EnvoyParams, templates: Path | None = None) -> EnvoyResources:
    """Check ``params`` and build every listener, route, cluster, endpoint and secret."""
    check(params)
    frag = (templates or template_dir()) / "fragments"
    source = render_file(frag / "config_source.yaml", {})
    timeouts = {"authz_timeout": _duration(params.authz_timeout_ms),
                "upstream_timeout": _duration(params.upstream_timeout_ms),
                "health_interval": _duration(params.health_interval_ms)}

    filters: list[Any] = [_jwt_authn(params, frag)] if params.jwt_authn else []
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
        if params.request_body_bytes:  # an OPA-Envoy policy reads the body
            authz["typed_config"]["with_request_body"] = {
                "max_request_bytes": params.request_body_bytes, "allow_partial_message": True}
        filters.append(authz)
    filters.append(render_file(frag / "router.yaml", {}))

    fixed = render_file(frag / "routes.yaml", {"healthz_per_filter": healthz_per_filter})
    routes: list[Any] = [fixed["healthz"]]
    clusters: dict[str, Any] = {}
    endpoints: dict[str, Any] = {}
    for i, (cell, rows) in enumerate(cells_by_name(params).items()):
        name = cluster_name(cell)
        rendered = render_file(frag / "cell.yaml", {
            **timeouts, "cell": cell, "route_name": f"cell-{cell}", "cluster_name": name,
            "config_source": source,
            "lb_endpoints": [{"endpoint": {"address": endpoint_address(r, f"cells[{i}]")}}
                             for r in rows],
        })
        clusters[name] = rendered["cluster"]
        endpoints[name] = rendered["endpoints"]
        if params.mode in SIDECAR_MODES:
            routes.append(rendered["route"])
    if params.mode in SIDECAR_MODES:
        routes.append(fixed["unknown_cell"])
        sidecar = render_file(frag / "sidecar_clusters.yaml", {
            "sidecar_grpc_address": socket_address(params.sidecar_grpc, "sidecar_grpc"),
            "sidecar_http_address": socket_address(params.sidecar_http, "sidecar_http"),
        })
        chosen = sidecar["http" if params.mode == "http" else "grpc"]
        clusters[chosen["name"]] = chosen
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
            "stat_prefix": prefix, "access_log": access_log, "http_filters": filters,
            "route_config_name": ROUTE_CONFIG, "config_source": source})

    listeners = render_file(frag / "listeners.yaml", {
        "bind_address": params.bind_address, "http_port": params.http_port,
        "https_bind_address": params.https_bind_address or params.bind_address,
        "https_port": params.https_port, "tls_secret": TLS_SECRET, "config_source": source,
        "hcm_http": hcm(HTTP_LISTENER), "hcm_https": hcm(HTTPS_LISTENER)})
    route_config = render_file(frag / "route_config.yaml", {
        "route_config_name": ROUTE_CONFIG, "routes": routes})
    secrets: dict[str, Any] = {}
    if "https" in params.listeners:
        secrets[TLS_SECRET] = render_file(frag / "tls_secret.yaml", {
            "secret_name": TLS_SECRET,
            "certificate_chain": _data_source(params.tls_cert, params.tls_cert_pem),
            "private_key": _data_source(params.tls_key, params.tls_key_pem)})
    return EnvoyResources(MappingProxyType({
        CLUSTER: MappingProxyType(clusters),
        ENDPOINT: MappingProxyType(endpoints),
        SECRET: MappingProxyType(secrets),
        LISTENER: MappingProxyType({listeners[kind]["name"]: listeners[kind]
                                    for kind in LISTENERS if kind in params.listeners}),
        ROUTE: MappingProxyType({ROUTE_CONFIG: route_config}),
    }))


def _data_source(path: Path | None, pem: bytes | None) -> dict[str, str]:
    """An Envoy ``core.v3.DataSource``: the file Envoy reads, or the bytes themselves."""
    if pem is not None:
        return {"inline_bytes": base64.b64encode(pem).decode("ascii")}
    return {"filename": str(path)}


def _jwt_authn(params: EnvoyParams, frag: Path) -> Any:
    """The jwt_authn filter: one provider (``a1-dev``), or one per ``jwt_providers`` entry.

    Several providers are named ``issuer-<i>`` in order, and a request needs a token
    that any one of them verifies (``requires_any``). Each provider is the template's
    one, rendered with that issuer's values, so every provider has the same settings.
    """
    lifetime = f"{params.max_token_lifetime_s}s"
    if not params.jwt_providers:
        local_jwks = ({"inline_string": params.jwks_inline} if params.jwks_inline is not None
                      else {"filename": str(params.jwks_path)})
        return render_file(frag / "jwt_authn.yaml", {
            "issuer": params.issuer, "audience": params.audience, "local_jwks": local_jwks,
            "max_lifetime": lifetime})
    providers: dict[str, Any] = {}
    rendered: Any = None
    for i, p in enumerate(params.jwt_providers):
        rendered = render_file(frag / "jwt_authn.yaml", {
            "issuer": p.issuer, "audience": p.audiences[0],
            "local_jwks": {"inline_string": p.jwks}, "max_lifetime": lifetime})
        (provider,) = rendered["typed_config"]["providers"].values()
        provider["audiences"] = list(p.audiences)
        providers[f"issuer-{i}"] = provider
    names = list(providers)
    requires: dict[str, Any] = (
        {"provider_name": names[0]} if len(names) == 1
        else {"requires_any": {"requirements": [{"provider_name": n} for n in names]}})
    config = rendered["typed_config"]
    config["providers"] = providers
    for rule in config["rules"]:
        if "requires" in rule:
            rule["requires"] = requires
    return rendered
