"""xDS type URLs, the push order and the content hash both planes agree on.

Kept in the shared core because the control plane versions resources with
:func:`resource_version` and the clients (sidecar, relay, demo cells) compare
the versions they hold with the same function.

Wire convention for A1's own types: a resource of an ``type.a1.dev/`` type has
no name inside its value (the value is raw bytes), so in State-of-the-World
responses the server wraps each one in an ``envoy.service.discovery.v3.Resource``
(``name``, ``version``, ``resource = Any(type_url, value)``), packed as
``Any(RESOURCE_WRAPPER, ...)``, as the xDS spec allows; Envoy's own types go out
as plain ``Any(type_url, value)``. Delta responses carry names natively.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

A1_TYPE_PREFIX = "type.a1.dev/a1.v1."
POLICY_BUNDLE = A1_TYPE_PREFIX + "PolicyBundle"
POLICY_ASSIGNMENT = A1_TYPE_PREFIX + "PolicyAssignment"
CELL_TABLE = A1_TYPE_PREFIX + "CellTable"

# Make before break: what a later type names must already be there.
PUSH_ORDER = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE, POLICY_BUNDLE, CELL_TABLE,
              POLICY_ASSIGNMENT)
KNOWN_TYPES = frozenset(PUSH_ORDER)

# What each type waits for: the server sends a type's new version only once every
# type listed here holds its current version, ACKed. Not a plain chain, because
# Envoy warms resources with later types: a new EDS cluster stays warming, and
# Envoy holds back its CDS ACK, until its endpoints arrive (ClusterManager keeps
# CDS paused while any cluster warms); a listener warms until its route
# configuration and secrets arrive. So endpoints and secrets never wait, and a
# CDS ACK means "clusters warm": listeners and routes, which name clusters, wait
# for it. An assignment names bundle versions and cells, so it waits for both.
WAITS_FOR: dict[str, tuple[str, ...]] = {
    CLUSTER: (),
    ENDPOINT: (),
    SECRET: (),
    LISTENER: (CLUSTER, SECRET),
    ROUTE: (CLUSTER,),
    POLICY_BUNDLE: (),
    CELL_TABLE: (),
    POLICY_ASSIGNMENT: (POLICY_BUNDLE, CELL_TABLE),
}

# SotW responses of every type carry the whole subscribed set; for LDS and CDS the
# spec requires it (a missing name means "deleted"), the others do it for simplicity.
FULL_STATE_TYPES = frozenset({LISTENER, CLUSTER})

RESOURCE_WRAPPER = "type.googleapis.com/envoy.service.discovery.v3.Resource"

# Resource names of A1's own types, written by the control plane and read by the
# sidecar and the cells: one definition, so neither side can drift from the other.
TABLE_NAME = "cells"  # CellTable: the table the sidecar routes by
ACCEPT_PREFIX = "cells.accept."  # CellTable: tables cells also accept in a transition
ASSIGNMENT_NAME = "assignment"  # PolicyAssignment

# Node clusters (how the control plane tells its clients apart) and the node
# metadata key a sidecar announces its metrics URL under (the rollout scrapes it).
EDGE_CLUSTER = "a1-edge"
SIDECAR_CLUSTER = "a1-sidecar"
CELL_CLUSTER = "a1-cell"
NODE_CLUSTERS = frozenset({EDGE_CLUSTER, SIDECAR_CLUSTER, CELL_CLUSTER})
METRICS_URL_KEY = "a1.metrics_url"


def is_a1_type(type_url: str) -> bool:
    return type_url.startswith(A1_TYPE_PREFIX)


def canonical_json(obj: Any) -> bytes:
    """One byte string per JSON value, so equal content hashes equal on every replica."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def resource_version(type_url: str, name: str, value: bytes) -> str:
    """The content hash of one resource: sha256 over type, name and value, 32 hex chars.

    Lengths are framed in so that no (name, value) split can collide with another.
    """
    h = hashlib.sha256()
    for part in (type_url.encode(), name.encode(), value):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]
