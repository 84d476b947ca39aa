"""Envoy's config, built once as xDS resources; the static bootstrap is the same set inlined.

- ``params``: what the config depends on (``EnvoyParams``, ``CellEndpoint``) and its checks;
- ``templates``: the YAML templates in ``envoy/`` and their structure-safe substitution;
- ``resources``: ``build_resources(params) -> EnvoyResources`` (proto3 JSON mappings);
- ``inline``: ``inline_static(resources)``, the same set with every reference inlined;
- ``protos``: the resources as xds-protos messages, field-checked, deterministic bytes
  (``pack``, ``to_messages``; not imported here: the protobuf classes cost ~80 ms to load,
  and ``a1``'s static path needs none of them);
- ``bootstrap``: the static bootstrap and the ADS bootstrap.
"""

from control.envoy.bootstrap import ads_bootstrap, static_bootstrap
from control.envoy.inline import inline_static
from control.envoy.params import (
    MODES,
    SIDECAR_MODES,
    CellEndpoint,
    EnvoyParams,
    JwtProvider,
    cluster_name,
    socket_address,
)
from control.envoy.resources import EnvoyResources, build_resources
from control.envoy.templates import TemplateError

__all__ = [
    "MODES",
    "SIDECAR_MODES",
    "CellEndpoint",
    "EnvoyParams",
    "EnvoyResources",
    "JwtProvider",
    "TemplateError",
    "ads_bootstrap",
    "build_resources",
    "cluster_name",
    "inline_static",
    "socket_address",
    "static_bootstrap",
]
