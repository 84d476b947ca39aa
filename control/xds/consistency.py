"""The generic reference check of a snapshot: what Envoy would leave warming or 503.

Only references Envoy resolves by name across xDS types are checked here (the
pipeline adds A1's own rules, such as "every cell has a cluster"):
- every route's cluster (and weighted cluster) is a CDS cluster;
- every listener's RDS route-config name is an RDS resource;
- every EDS cluster has a ClusterLoadAssignment, and every ClusterLoadAssignment
  names an EDS cluster.
The first failure is raised as ConfigError naming the resource and the field.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from policies.core.errors import ConfigError
from policies.core.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

HCM = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def _parse(message_type: Any, resource: Any) -> Any:
    message = message_type()
    try:
        message.ParseFromString(resource.value)
    except Exception as err:
        raise ConfigError(f"snapshot: {resource.name!r} is not a valid "
                          f"{message_type.DESCRIPTOR.name}: {err}") from None
    return message


def check_snapshot(snapshot: Any) -> None:
    clusters = {n: _parse(cluster_pb2.Cluster, r) for n, r in snapshot.resources(CLUSTER).items()}
    routes = snapshot.resources(ROUTE)
    eds = {}
    for name, cluster in clusters.items():
        if cluster.type == cluster_pb2.Cluster.EDS:
            eds[cluster.eds_cluster_config.service_name or name] = name
    for service, cluster_name in sorted(eds.items()):
        if service not in snapshot.resources(ENDPOINT):
            raise ConfigError(f"snapshot: cluster {cluster_name!r} uses EDS but no "
                              f"ClusterLoadAssignment {service!r} exists")
    for name in sorted(snapshot.resources(ENDPOINT)):
        if name not in eds:
            raise ConfigError(f"snapshot: ClusterLoadAssignment {name!r} names no EDS cluster")
    for name, resource in sorted(snapshot.resources(LISTENER).items()):
        listener = _parse(listener_pb2.Listener, resource)
        chains = [*listener.filter_chains]
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for i, chain in enumerate(chains):
            for j, f in enumerate(chain.filters):
                if f.typed_config.type_url != HCM:
                    continue
                hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                if hcm.HasField("rds") and hcm.rds.route_config_name not in routes:
                    raise ConfigError(
                        f"snapshot: listener {name!r} filter_chains[{i}].filters[{j}]: "
                        f"route config {hcm.rds.route_config_name!r} does not exist")
                if hcm.HasField("route_config"):
                    _check_routes(f"listener {name!r} inline route config", hcm.route_config,
                                  clusters)
    for name, resource in sorted(routes.items()):
        _check_routes(f"route config {name!r}", _parse(route_pb2.RouteConfiguration, resource),
                      clusters)


def _check_routes(where: str, config: Any, clusters: dict[str, Any]) -> None:
    for vhost in config.virtual_hosts:
        for i, route in enumerate(vhost.routes):
            if not route.HasField("route"):
                continue
            action = route.route
            names = [action.cluster] if action.cluster else []
            names += [w.name for w in action.weighted_clusters.clusters]
            for cluster in names:
                if cluster not in clusters:
                    raise ConfigError(f"snapshot: {where} virtual_hosts[{vhost.name!r}]"
                                      f".routes[{i}]: cluster {cluster!r} does not exist")
