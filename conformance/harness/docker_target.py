"""``DockerTarget``: the conformance target on the docker runtime (``--runtime docker``).

The same stack, scenarios and checkers as :class:`Target`, on
:class:`a1.containers.stack.DockerStack`: every stack process, the telemetry sink and
every fault proxy is a container of one run (image ``a1-control`` for the harness).
Only addresses differ:

- each fault proxy sits on the network its link crosses: ``envoy-xds`` and
  ``sidecar-xds`` (to the control plane's ADS) and ``sidecar-sink`` on the control
  network, ``envoy-<cell>`` on that cell's network; the sink is on the control
  network (it scrapes the sidecar there);
- the proxies' control APIs and the sink also join ``a1-<run>-harness``, a network
  only the harness joins: a control API binds its address there alone (a stack
  component cannot reach it to cut the planes apart) and is published on the
  host's 127.0.0.1, where the suite drives it;
- a cell added during a run (I-9) joins the data network (Envoy's side) and the
  control network (its xDS).

Teardown is the launcher's: every container and network labelled with the run is
removed, even after a failure.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from typing import Any

from a1.containers import network
from a1.containers.launcher import ContainerLauncher, ContainerPlacement
from a1.containers.stack import ANY, DockerStack
from a1.launcher import ProcessSpec, http_probe
from conformance.harness.target import Target, TargetOptions
from policies.core.errors import UserError

PROXY_PORT = 18080  # every proxy listens here, on its own address (one per container)
# Host numbers of the harness on every network it joins (the stack's are 2..5, cells
# 10+i); the proxy of cell i's link is PROXY_BASE + i; cells added in a run ADDED_BASE + k.
HARNESS_HOSTS = {"sink": 6, "proxy-envoy-xds": 7, "proxy-sidecar-xds": 8,
                 "proxy-sidecar-sink": 9}
PROXY_BASE = 130
ADDED_BASE = 240
MAX_CELLS = 254 - PROXY_BASE


class DockerTarget(Target, DockerStack):
    """A Target whose processes, sink and fault proxies are containers (see the module)."""

    runtime = "docker"

    def __init__(self, options: TargetOptions) -> None:
        if options.netns_cell is not None:
            raise UserError("--runtime docker: cells are cut off by disconnecting their "
                            "network, not by a network namespace", 2)
        self._added: dict[str, int] = {}  # cell added in the run -> host number
        super().__init__(options)
        if len(self.cell_names) > MAX_CELLS:
            raise UserError(f"--runtime docker: at most {MAX_CELLS} cells fit the "
                            f"conformance address plan (have {len(self.cell_names)})", 2)

    # -- the address plan: the stack's, plus the harness ---------------------------------

    def make_plan(self, taken: list[ipaddress.IPv4Network]) -> network.AddressPlan:
        base = super().make_plan(taken)
        used = [*taken, *(n.subnet for n in base.networks)]
        harness_subnet = next(network.free_subnets([*used, *network.host_routes()]))
        hosts = {**base.hosts, **HARNESS_HOSTS}
        hosts.update({self.proxy_name(f"envoy-{c}"): PROXY_BASE + i
                      for i, c in enumerate(self.cell_names, 1)})
        nets = []
        for net in base.networks:
            extra: tuple[str, ...] = ()
            if net.role == "control":
                extra = ("sink", "proxy-envoy-xds", "proxy-sidecar-xds", "proxy-sidecar-sink")
            elif net.role == "cell":
                cell = net.name.removeprefix(f"a1-{base.run}-cell-")
                extra = (self.proxy_name(f"envoy-{cell}"),)
            nets.append(dataclasses.replace(net, members=(*net.members, *extra)))
        harness = ("sink", *(self.proxy_name(link) for link in self.links))
        nets.append(network.NetworkPlan(self.harness_network(base), "harness", harness_subnet,
                                        False, harness))
        return network.AddressPlan(base.run, nets, hosts)

    @staticmethod
    def harness_network(plan: network.AddressPlan) -> str:
        return f"a1-{plan.run}-harness"

    @staticmethod
    def proxy_name(link: str) -> str:
        return f"proxy-{link}"

    def _link_network(self, link: str) -> str:
        if link.startswith("envoy-") and link != "envoy-xds":
            return self.plan.cell_network(link.removeprefix("envoy-"))
        return self.plan.control

    def container_names(self) -> list[str]:
        harness = ["sink", *(self.proxy_name(link) for link in self.links)]
        return [*super().container_names(), *(f"a1-{self.run}-{p}" for p in harness)]

    def placement(self, spec: ProcessSpec) -> ContainerPlacement:
        plan, name = self.plan, spec.name
        harness = self.harness_network(plan)
        if name == "sink":
            return ContainerPlacement("control", {
                harness: plan.ip("sink", harness),
                plan.control: plan.ip("sink", plan.control)}, (self.sink_port,))
        if name.startswith("proxy-") and name.removeprefix("proxy-") in self.links:
            link = name.removeprefix("proxy-")
            net = self._link_network(link)
            return ContainerPlacement("control", {
                harness: plan.ip(name, harness), net: plan.ip(name, net)},
                (self._control_ports[link],))
        if name in self._added:
            return ContainerPlacement("cell", {plan.data: self._added_ip(name, plan.data),
                                               plan.control: self._added_ip(name, plan.control)})
        return super().placement(spec)

    # -- addresses (Target's hooks) ------------------------------------------------------

    def _proxy_listen(self, link: str) -> str:
        name = self.proxy_name(link)
        return f"{self.plan.ip(name, self._link_network(link))}:{PROXY_PORT}"

    def sidecar_settings(self) -> dict[str, Any]:
        """The decision log goes to the sink's proxy by container name (docker's DNS on
        the control network): the sidecar takes a non-loopback sink only by name. The
        sidecar announces its metrics at its control-network address (the rollout's
        scrape: ``control_listen_args``)."""
        doc = super().sidecar_settings()
        name = f"a1-{self.run}-{self.proxy_name('sidecar-sink')}"
        doc["decision_log"] = {**doc["decision_log"],
                               "url": f"http://{name}:{PROXY_PORT}/v1/decisions"}
        return doc

    def _proxy_upstream(self, link: str) -> str:
        if link == "sidecar-sink":
            return f"{self.plan.ip('sink', self.plan.control)}:{self.sink_port}"
        return super()._proxy_upstream(link)

    def proxy_control_bind(self, link: str) -> str:
        name = self.proxy_name(link)
        return f"{self.plan.ip(name, self.harness_network(self.plan))}:{self._control_ports[link]}"

    def proxy_extra_args(self) -> list[str]:
        return ["--control-exposed"]  # bound on the harness network only (see the module)

    def sink_listen(self) -> str:
        return f"{ANY}:{self.sink_port}"

    def sink_scrape_url(self) -> str:
        sidecar = self.plan.ip("sidecar", self.plan.control)
        return f"http://{sidecar}:{self.ports.sidecar_metrics}/metrics"

    def sink_extra_args(self) -> list[str]:
        return ["--scrape-host", self.plan.ip("sidecar", self.plan.control)]

    def cell_endpoint(self, name: str) -> tuple[str, int]:
        """Envoy reaches each cell through its link's proxy, on the cell's network."""
        link = f"envoy-{name}"
        return self.plan.ip(self.proxy_name(link), self._link_network(link)), PROXY_PORT

    def _cell_address(self, name: str) -> str:
        return f"{self.cell_ip(name)}:{self.ports.cells[self.cell_names.index(name)]}"

    def cell_url(self, name: str) -> str:
        return f"http://{self._cell_address(name)}"

    def _added_ip(self, name: str, net: str) -> str:
        return str(self.plan.network(net).subnet.network_address + self._added[name])

    def added_cell(self, name: str, port: int) -> tuple[ProcessSpec, str]:
        """A cell on the data network (where Envoy reaches it, and the host probes it)
        and the control network (its xDS)."""
        if name not in self._added:
            if len(self._added) >= 254 - ADDED_BASE:
                raise UserError(f"{name}: no address left for another added cell")
            self._added[name] = ADDED_BASE + len(self._added)
        ip = self._added_ip(name, self.plan.data)
        spec = ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", "a1.cell", "--name", name, "--port", str(port),
                  "--host", ANY, "--db", str(self.files.cell_db(name)),
                  "--xds", self.xds_address],
            log_path=self.files.logs / f"{name}.log",
            ready=http_probe(f"http://{ip}:{port}/healthz"))
        return spec, f"{ip}:{port}"

    # -- lifecycle -----------------------------------------------------------------------

    def image_kinds(self) -> list[str]:
        return sorted({*super().image_kinds(), "control", "cell"})

    def start_harness(self) -> None:
        """Deferred: the harness joins networks that ``create_networks`` makes (below)."""

    def create_networks(self, attempts: int = 5) -> None:
        super().create_networks(attempts)
        Target.start_harness(self)

    @property
    def container_launcher(self) -> ContainerLauncher:
        launcher = self.launcher
        assert isinstance(launcher, ContainerLauncher)
        return launcher
