"""Variant ``fail-open-envoy``: the control plane renders Envoy's authorization filter
with ``failure_mode_allow: true``, so Envoy lets a request through when the sidecar
cannot be asked.

In A1 that flag alone is not enough to let anything through: a request reaches a
cell only by the route matching the ``x-a1-cell`` header that the sidecar sets, and a
request without it gets the ``unknown_cell`` route's 503 (Envoy strips any
``x-a1-*`` header a client sends). So a fail-open deployment is one whose requests
still reach a backend without a decision: this variant also renders the last route,
the one for requests that carry no cell, as a route to the first cell (the "default
backend" such deployments have), where ``unknown_cell`` answered 503 before.
Requests the sidecar decides are routed as before. Caught by I-6: with the sidecar
killed, requests for tenants of the first cell succeed with no decision at all.

The patch replaces ``build_resources`` (``control.envoy``) in every module that
imported it, so the ADS resources and the static bootstrap are both fail-open.

``python -m conformance.variants.fail_open_envoy control serve <arguments>``
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

from conformance.variants.wrapper import Entry, run

DEFAULT_ROUTE = "fail_open_default"
NO_CELL_ROUTE = "unknown_cell"  # envoy/fragments/routes.yaml


def open_filters(node: Any) -> int:
    """Set every ``failure_mode_allow`` in ``node`` to true; how many there were."""
    count = 0
    if isinstance(node, dict):
        if "failure_mode_allow" in node:
            node["failure_mode_allow"] = True
            count += 1
        for value in node.values():
            count += open_filters(value)
    elif isinstance(node, list):
        for value in node:
            count += open_filters(value)
    return count


def default_route(routes: list[Any]) -> None:
    """Replace the route for requests without a cell by one to the first cell's route."""
    cell_routes = [r for r in routes if "route" in r and r.get("match", {}).get("headers")]
    for i, r in enumerate(routes):
        if r.get("name") == NO_CELL_ROUTE and cell_routes:
            fallback = copy.deepcopy(cell_routes[0])
            fallback["name"] = DEFAULT_ROUTE
            fallback["match"] = {"prefix": "/"}
            routes[i] = fallback


def fail_open(built: Any) -> Any:
    """A fail-open copy of an ``EnvoyResources`` (see the module doc)."""
    from control.envoy.resources import EnvoyResources
    from policies.core.xds.types import LISTENER, ROUTE

    by_type = {t: {n: copy.deepcopy(dict(r)) for n, r in m.items()}
               for t, m in built.by_type.items()}
    for listener in by_type.get(LISTENER, {}).values():
        open_filters(listener)
    for config in by_type.get(ROUTE, {}).values():
        for host in config.get("virtual_hosts", []):
            default_route(host.get("routes", []))
    return EnvoyResources(MappingProxyType({
        t: MappingProxyType(m) for t, m in by_type.items()}))


def patch() -> None:
    import control.envoy
    import control.envoy.bootstrap
    import control.envoy.resources
    import control.pipeline.render  # imports build_resources by name: patched below

    original = control.envoy.resources.build_resources

    def build_fail_open(params: Any, templates: Path | None = None) -> Any:
        return fail_open(original(params, templates))

    for module in list(sys.modules.values()):
        if getattr(module, "build_resources", None) is original:
            module.build_resources = build_fail_open  # type: ignore[attr-defined]


def entry() -> Entry:
    from a1.cli import main

    return main


if __name__ == "__main__":
    run(patch, entry)
