"""``DockerStack``: the same stack as :class:`a1.stack.Stack` (same files, start order and
health gating), each process in its own container (docs/containers.md).

Only addresses differ, through the Stack's small hooks: processes bind 0.0.0.0 (or
their own address) inside their containers; the relay, the sidecar and the cells reach
the control plane over TCP on the internal control network; Envoy reaches each cell
at its fixed address on that cell's internal network; Envoy talks to the sidecar and
the relay over Unix sockets in the shared state directory. The host ports are the
process runtime's: every host URL of the stack is unchanged.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from a1.containers import engine, network
from a1.containers.launcher import ContainerLauncher, ContainerPlacement
from a1.launcher import Launcher, LaunchError, Probe, ProcessSpec, http_probe
from a1.stack import Stack, StackOptions
from policies.core.errors import UserError

ANY = "0.0.0.0"


class DockerStack(Stack):
    """A stack whose processes are containers of one run (``a1 up --runtime docker``)."""

    def __init__(self, options: StackOptions, launcher: Launcher | None = None,
                 client: Any | None = None) -> None:
        if options.sidecar_transport != "unix":
            raise UserError("--runtime docker: the sidecar's decision ports are Unix sockets "
                            "in the state directory (sidecar_transport unix)", 2)
        self._client = client
        self._plan: network.AddressPlan | None = None
        super().__init__(options, launcher)
        self.check_cell_names()
        self.run = engine.run_id(self.files.state_dir)

    def check_cell_names(self) -> None:
        """A cell name becomes a container, host and network name and a key of the
        address plan: it must be a valid cell name and not another component's."""
        from policies.core.cells import cell_name_error

        for name in self.cell_names:
            why = cell_name_error(name)
            if why is None and name in (*network.HOSTS, "data"):
                why = f"cell name {name!r} is taken by a component of the stack"
            if why is not None:
                raise UserError(f"--runtime docker: {why}", 2)

    # -- the engine and the address plan -------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = engine.connect("a1 up --runtime docker")
        return self._client

    @property
    def plan(self) -> network.AddressPlan:
        """The run's networks and addresses (subnets free when first asked)."""
        if self._plan is None:
            self._plan = self.make_plan(network.docker_subnets(self.client))
        return self._plan

    def use_plan(self, plan: network.AddressPlan) -> None:
        """Take ``plan`` (``a1 compose`` chooses subnets without creating networks)."""
        self._plan = plan

    def make_plan(self, taken: list[ipaddress.IPv4Network]) -> network.AddressPlan:
        free = network.free_subnets([*taken, *network.host_routes()])
        return network.plan(self.run, self.cell_names, free, self.uses_control_plane,
                            self.with_sidecar)

    def new_launcher(self) -> Launcher:
        return ContainerLauncher(self.run, self.files.state_dir, self.placement, self.client)

    def container_names(self) -> list[str]:
        procs = ["envoy", *self.cell_names]
        procs += ["sidecar"] if self.with_sidecar else []
        procs += ["control", "relay"] if self.uses_control_plane else []
        return [f"a1-{self.run}-{p}" for p in procs]

    def image_kinds(self) -> list[str]:
        kinds = ["envoy", "cell"]
        kinds += ["sidecar"] if self.with_sidecar else []
        kinds += ["control"] if self.uses_control_plane else []
        return kinds

    def placement(self, spec: ProcessSpec) -> ContainerPlacement:
        """Where each process runs; a subclass adding processes extends this."""
        plan, name, ports = self.plan, spec.name, self.ports
        if name == "envoy":
            return ContainerPlacement("envoy", plan.networks_of("envoy"),
                                      (ports.http, ports.https, ports.admin))
        if name == "sidecar":
            return ContainerPlacement("sidecar", plan.networks_of("sidecar"),
                                      (ports.sidecar_metrics,))
        if name == "control":
            return ContainerPlacement("control", plan.networks_of("control"), (ports.control,))
        if name == "relay":
            return ContainerPlacement("control", plan.networks_of("relay"))
        if name in self.cell_names:  # its own network first: Envoy's link
            nets = plan.networks_of(name)
            first = plan.cell_network(name)
            return ContainerPlacement("cell", {first: nets.pop(first), **nets})
        raise LaunchError(f"{name}: the docker runtime has no placement for this process")

    # -- addresses (the Stack's hooks) ---------------------------------------------------

    @property
    def bind_host(self) -> str:
        return ANY

    def unix_sockets(self) -> list[str]:
        """The sidecar's and the relay's sockets (ADS is TCP on the control network)."""
        sockets = [self.sidecar_grpc_address, self.sidecar_http_address] if self.with_sidecar \
            else []
        return sockets + ([f"unix:{self.files.relay_socket}"] if self.uses_control_plane else [])

    def cell_ip(self, name: str) -> str:
        return self.plan.ip(name, self.plan.cell_network(name))

    def cell_endpoint(self, name: str) -> tuple[str, int]:
        return self.cell_ip(name), self.ports.cells[self.cell_names.index(name)]

    def cell_url(self, name: str) -> str:
        host, port = self.cell_endpoint(name)
        return f"http://{host}:{port}"

    def cell_listen_args(self, name: str) -> list[str]:
        return ["--host", self.cell_ip(name)]  # only on its own network: Envoy's side

    def cell_probe(self, name: str) -> Probe:
        """A GET from inside the cell's container (the host cannot reach its network);
        the launcher is looked up when probing, so building specs needs no engine."""
        url = f"{self.cell_url(name)}/healthz"

        def check() -> bool:
            launcher = self.launcher
            assert isinstance(launcher, ContainerLauncher)
            return launcher.exec_probe(name, url)()

        return Probe(f"GET {url} -> 200 (inside container a1-{self.run}-{name})", check)

    @property
    def xds_address(self) -> str:
        if not self.uses_control_plane:
            return ""
        return f"{self.plan.ip('control', self.plan.control)}:{network.XDS_PORT}"

    def control_listen_args(self) -> list[str]:
        """ADS on the control network, status on the data network (published), and the
        rollout may scrape the sidecar at its control-network address, and only there."""
        plan = self.plan
        return ["--host", plan.ip("control", plan.control), "--xds-port", str(network.XDS_PORT),
                "--status-host", plan.ip("control", plan.data),
                "--scrape-host", plan.ip("sidecar", plan.control)]

    def sidecar_settings(self) -> dict[str, Any]:
        """The sidecar announces its metrics at its control-network address: inside the
        control plane's container, loopback is not the sidecar (docs/rollout.md)."""
        doc = super().sidecar_settings()
        if "source" in doc:
            ip = self.plan.ip("sidecar", self.plan.control)
            doc["source"]["metrics_url"] = f"http://{ip}:{self.ports.sidecar_metrics}/metrics"
        return doc

    def control_probe(self) -> Probe:
        return http_probe(f"{self.control_url}/healthz")

    def host_ports(self) -> list[tuple[str, int]]:
        return [(label, port) for label, port in super().host_ports()
                if port not in self.ports.cells]  # cells publish nothing

    # -- lifecycle -------------------------------------------------------------------------

    def preflight(self) -> None:
        """Before anything starts: the engine answers, the images are there and current,
        and what a dead earlier run of this state directory left is removed (noted)."""
        engine.check_images(self.client, self.image_kinds())
        nets = [n.name for n in self.plan.networks]
        self.notes += engine.clear_leftovers(self.client, self.run, self.files.state_dir,
                                             self.container_names(), nets)

    def create_networks(self, attempts: int = 5) -> None:
        """Create the plan's networks; a subnet someone took meanwhile means a new plan."""
        launcher = self.launcher
        assert isinstance(launcher, ContainerLauncher)
        self._plan = launcher.provision_networks(self.make_plan, attempts)

    def start(self) -> None:
        self.preflight()
        self.create_networks()
        super().start()
