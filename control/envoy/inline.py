"""The static form of an xDS resource set: every reference by name replaced by its target.

Over xDS a listener names its routes (RDS), a cell cluster gets its endpoints by
EDS, and the HTTPS listener names its certificate (SDS), all on the ADS stream. The
static bootstrap says the same thing with nothing to fetch: the route configuration
inline in each HTTP connection manager, each EDS cluster STATIC with its
ClusterLoadAssignment as ``load_assignment``, and the secret in
``static_resources.secrets``, named without an ``sds_config``. A reference that does
not resolve, or a route configuration or endpoint set that nothing references, is
an error: it would make the two forms differ.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from control.envoy.resources import EnvoyResources
from policies.core.errors import ConfigError

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
DOWNSTREAM_TLS_TYPE = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                       "DownstreamTlsContext")


def _inline_listener(listener: dict[str, Any], routes: Mapping[str, Any],
                     secrets: Mapping[str, Any], used_routes: set[str]) -> dict[str, Any]:
    where = f"listener {listener.get('name')!r}"
    for chain in listener.get("filter_chains", []):
        tls = chain.get("transport_socket", {}).get("typed_config", {})
        if tls.get("@type") == DOWNSTREAM_TLS_TYPE:
            for ref in tls.get("common_tls_context", {}).get(
                    "tls_certificate_sds_secret_configs", []):
                if ref.get("name") not in secrets:
                    raise ConfigError(f"{where}: secret {ref.get('name')!r} does not exist")
                ref.pop("sds_config", None)
        for f in chain.get("filters", []):
            hcm = f.get("typed_config", {})
            if hcm.get("@type") != HCM_TYPE or "rds" not in hcm:
                continue
            name = hcm.pop("rds").get("route_config_name")
            if name not in routes:
                raise ConfigError(f"{where}: route configuration {name!r} does not exist")
            hcm["route_config"] = copy.deepcopy(routes[name])
            used_routes.add(name)
    return listener


def _inline_cluster(cluster: dict[str, Any], endpoints: Mapping[str, Any],
                    used_endpoints: set[str]) -> dict[str, Any]:
    if cluster.get("type") != "EDS":
        return cluster
    eds = cluster.pop("eds_cluster_config", {})
    name = eds.get("service_name") or cluster.get("name")
    if name not in endpoints:
        raise ConfigError(f"cluster {cluster.get('name')!r}: endpoints {name!r} do not exist")
    cluster["type"] = "STATIC"
    cluster["load_assignment"] = copy.deepcopy(endpoints[name])
    used_endpoints.add(name)
    return cluster


def inline_static(resources: EnvoyResources) -> dict[str, Any]:
    """``static_resources`` (listeners, clusters, secrets) saying what ``resources`` say."""
    used_routes: set[str] = set()
    used_endpoints: set[str] = set()
    listeners = [_inline_listener(copy.deepcopy(dict(lst)), resources.routes,
                                  resources.secrets, used_routes)
                 for lst in resources.listeners.values()]
    clusters = [_inline_cluster(copy.deepcopy(dict(c)), resources.endpoints, used_endpoints)
                for c in resources.clusters.values()]
    for kind, all_names, used in (("route configuration", resources.routes, used_routes),
                                  ("endpoints", resources.endpoints, used_endpoints)):
        unused = sorted(set(all_names) - used)
        if unused:
            raise ConfigError(f"{kind} {unused[0]!r}: nothing references it, "
                              "so the static form cannot carry it")
    out: dict[str, Any] = {"listeners": listeners, "clusters": clusters}
    if resources.secrets:
        out["secrets"] = [copy.deepcopy(dict(s)) for s in resources.secrets.values()]
    return out
