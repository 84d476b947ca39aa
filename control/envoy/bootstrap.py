"""Envoy bootstraps: static (everything inline) and ADS (everything from the control plane).

Both share the skeleton in ``envoy/bootstrap.yaml`` (node, admin, overload
manager). The static one carries ``inline_static(build_resources(params))``, so it
is by construction the config the control plane would serve for the same params.
The ADS one carries nothing but the way to the control plane: the ``a1_xds``
cluster (HTTP/2 with keepalive) and ``dynamic_resources`` on one ADS stream.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from control.envoy.inline import inline_static
from control.envoy.params import EnvoyParams, socket_address, utf8_error
from control.envoy.resources import build_resources
from control.envoy.templates import render_file, template_dir
from policies.core.errors import UserError
from policies.core.xds.types import EDGE_CLUSTER

ADS_API_TYPES = ("GRPC", "DELTA_GRPC")
XDS_CLUSTER = "a1_xds"


def _skeleton(templates: Path, node_id: str, node_cluster: str, bind_address: str,
              admin_port: int) -> dict[str, Any]:
    return render_file(templates / "bootstrap.yaml", {
        "node_id": node_id, "node_cluster": node_cluster,
        "bind_address": bind_address, "admin_port": admin_port})


def static_bootstrap(params: EnvoyParams, templates: Path | None = None) -> dict[str, Any]:
    """The static bootstrap for ``params`` as a mapping (Envoy YAML/JSON form)."""
    templates = templates or template_dir()
    static = inline_static(build_resources(params, templates))
    return {**_skeleton(templates, params.node_id, EDGE_CLUSTER, params.bind_address,
                        params.admin_port),
            "static_resources": static}


def ads_bootstrap(node_id: str, xds_address: str, *, delta: bool = False,
                  admin_port: int = 9901, bind_address: str = "127.0.0.1",
                  node_cluster: str = EDGE_CLUSTER,
                  templates: Path | None = None) -> dict[str, Any]:
    """A bootstrap whose listeners and clusters all come over ADS from ``xds_address``.

    ``xds_address`` is ``HOST:PORT`` (an IP, or a DNS name resolved by Envoy) or
    ``unix:/path``. ``delta`` picks the incremental protocol (``DELTA_GRPC``).
    """
    templates = templates or template_dir()
    for name, value in (("node_id", node_id), ("node_cluster", node_cluster)):
        why = utf8_error(value, name) if value else f"{name}: must not be empty"
        if why is not None:
            raise UserError(why, 2)
    socket_address(f"{bind_address}:{admin_port}", "admin address")
    address = socket_address(xds_address, "xds_address", names=True)
    named = "socket_address" in address and not _is_ip(address["socket_address"]["address"])
    ads = render_file(templates / "fragments" / "ads.yaml", {
        "api_type": ADS_API_TYPES[1] if delta else ADS_API_TYPES[0],
        "xds_cluster_type": "LOGICAL_DNS" if named else "STATIC",
        "xds_address": address})
    cluster = ads["xds_cluster"]
    if "socket_address" in address:  # TCP keepalive means nothing on a Unix socket
        cluster.update(ads["tcp_keepalive"])
    return {**_skeleton(templates, node_id, node_cluster, bind_address, admin_port),
            "dynamic_resources": ads["dynamic_resources"],
            "static_resources": {"clusters": [cluster]}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
