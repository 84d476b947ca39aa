"""Network nemeses of the docker runtime: a container disconnected from a network.

``docker network disconnect`` removes the container's interface on that network:
its peers there see connects fail and established connections stall or reset,
while its other networks (a cell's xDS on the control network, say) keep working.
The repair reconnects it at its planned address, so nothing that names the address
changes. On the process runtime these faults are unavailable, with the reason (its
partitions are network namespaces: ``conformance.nemesis.netns``).
"""

from __future__ import annotations

from typing import Any

from conformance.nemesis.base import Fault, Target
from policies.core.errors import UserError


def disconnect(target: Target, name: str, network: str, *, label: str = "",
               expect: str = "") -> Fault:
    """Disconnect ``name``'s container from ``network``; the repair reconnects it."""
    from a1.containers.launcher import ContainerLauncher

    launcher: Any = target.launcher
    fault_name = f"disconnect:{name}:{label or network}"
    if not isinstance(launcher, ContainerLauncher):
        reason = "network disconnects need the docker runtime (--runtime docker)"

        def refuse() -> None:
            raise UserError(f"{fault_name}: {reason}")

        return Fault(fault_name, refuse, lambda: None, expect="", unavailable=reason)
    if name not in launcher.names():
        raise UserError(f"{fault_name}: no container {name!r} in this run")
    return Fault(fault_name, lambda: launcher.disconnect(name, network),
                 lambda: launcher.connect(name, network),
                 expect=expect or f"{name} cut off {network}; the rest keeps serving and "
                                  "converges after the reconnect")


def cut_cell(target: Target, cell: str) -> Fault:
    """Cut ``cell`` off Envoy's side: its container leaves its own network (Envoy's link
    through the fault proxy); its xDS link on the control network stays."""
    plan = getattr(target, "plan", None)
    net = plan.cell_network(cell) if plan is not None else ""
    return disconnect(target, cell, net, label="cell-network",
                      expect=f"{cell} cut off Envoy's network: only its tenants see errors; "
                             "they converge after the reconnect")


def cut_control(target: Target) -> Fault:
    """Cut the control plane off the control network: every xDS stream (Envoy's relay,
    the sidecar, the cells) loses it at once; its status port stays reachable."""
    plan = getattr(target, "plan", None)
    net = plan.control if plan is not None else ""
    return disconnect(target, "control", net, label="control-network",
                      expect="the control plane partitioned from every xDS client: the data "
                             "plane serves on last-known-good and re-syncs after the reconnect")
