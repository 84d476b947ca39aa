"""The docker runtime's address plan: which networks a stack has, their subnets, and the
fixed address of every component on each.

Fixed addresses, not docker's DNS: Envoy's EDS endpoints must be IPs, and a container
restarted under the same name must come back at the same address. Subnets are /24s
taken from a private pool, skipping every subnet an existing docker network or a host
route already covers; creating a network that still overlaps (another run got there
first) moves on to the next free one.

Networks of run R (docs/containers.md)::

    a1-R-data       envoy, sidecar, relay, control   publishes Envoy's, the sidecar's
                                                     and control's status ports
    a1-R-control    control, relay, sidecar, every cell   (internal: xDS over TCP)
    a1-R-cell-NAME  envoy, that cell                       (internal)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.core.errors import UserError

# /24s are taken from these pools in order (RFC 1918 ranges docker's defaults leave alone).
POOLS = ("172.30.0.0/16", "10.213.0.0/16", "192.168.224.0/19")
# The host number of each component on every network it joins; cell i gets CELL_BASE + i.
HOSTS = {"control": 2, "relay": 3, "sidecar": 4, "envoy": 5}
CELL_BASE = 10
XDS_PORT = 18000  # the control plane's ADS port on the control network (not published)


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    role: str  # "data", "control" or "cell"
    subnet: ipaddress.IPv4Network
    internal: bool
    members: tuple[str, ...]  # component names

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


@dataclass
class AddressPlan:
    """Every network of one run and every component's address on each."""

    run: str
    networks: list[NetworkPlan] = field(default_factory=list)
    hosts: dict[str, int] = field(default_factory=dict)

    def ip(self, component: str, network: str) -> str:
        net = self.network(network)
        if component not in net.members:
            raise KeyError(f"{component} is not on {network}")
        return str(net.subnet.network_address + self.hosts[component])

    def network(self, name: str) -> NetworkPlan:
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(name)

    def networks_of(self, component: str) -> dict[str, str]:
        """``{network name: ip}`` of every network ``component`` joins, data first."""
        return {n.name: self.ip(component, n.name) for n in self.networks
                if component in n.members}

    @property
    def data(self) -> str:
        return f"a1-{self.run}-data"

    @property
    def control(self) -> str:
        return f"a1-{self.run}-control"

    def cell_network(self, cell: str) -> str:
        return f"a1-{self.run}-cell-{cell}"


def plan(run: str, cells: Sequence[str], subnets: Iterable[ipaddress.IPv4Network],
         with_control: bool = True, with_sidecar: bool = True) -> AddressPlan:
    """The plan of a stack with ``cells``, its subnets taken in order from ``subnets``."""
    if len(cells) > 254 - CELL_BASE:
        raise UserError(f"--cells: at most {254 - CELL_BASE} cells fit the docker runtime's "
                        f"address plan", 2)
    hosts = dict(HOSTS)
    hosts.update({c: CELL_BASE + i for i, c in enumerate(cells, 1)})
    it = iter(subnets)
    out = AddressPlan(run, hosts=hosts)
    # The control plane joins the data network only to publish its status port: docker
    # publishes nothing of a container on internal networks alone. ADS binds its
    # control-network address only.
    data = ["envoy", *(["sidecar"] if with_sidecar else []),
            *(["relay", "control"] if with_control else [])]
    out.networks.append(NetworkPlan(out.data, "data", next(it), False, tuple(data)))
    if with_control:
        members = ["control", "relay", *(["sidecar"] if with_sidecar else []), *cells]
        out.networks.append(NetworkPlan(out.control, "control", next(it), True, tuple(members)))
    for cell in cells:
        out.networks.append(NetworkPlan(out.cell_network(cell), "cell", next(it), True,
                                        ("envoy", cell)))
    return out


def count(cells: int, with_control: bool = True) -> int:
    """How many subnets a stack of ``cells`` needs."""
    return 1 + int(with_control) + cells


def host_routes(path: Path = Path("/proc/net/route")) -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (a subnet that overlaps one would shadow or be shadowed)."""
    out = []
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) < 8:
            continue
        dest = int(parts[1], 16).to_bytes(4, "little")
        mask = int(parts[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue  # the default route overlaps everything; it is not a conflict
        try:
            out.append(ipaddress.IPv4Network(
                (ipaddress.IPv4Address(dest), bin(int.from_bytes(mask, "big")).count("1"))))
        except ValueError:
            continue
    return out


def docker_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet an existing docker network uses."""
    out = []
    for net in client.api.networks():
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            try:
                sub = ipaddress.ip_network(cfg.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            if isinstance(sub, ipaddress.IPv4Network):
                out.append(sub)
    return out


def free_subnets(taken: Iterable[ipaddress.IPv4Network],
                 pools: Sequence[str] = POOLS) -> Iterator[ipaddress.IPv4Network]:
    """/24s from ``pools`` that overlap nothing in ``taken``, in order."""
    used = list(taken)
    for pool in pools:
        for sub in ipaddress.IPv4Network(pool).subnets(new_prefix=24):
            if not any(sub.overlaps(t) for t in used):
                yield sub
