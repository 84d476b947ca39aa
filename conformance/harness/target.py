"""The stack under test: the real A1 stack, with a fault proxy on every link between planes.

``Target`` is ``a1.stack.Stack`` (the same processes ``a1 up`` starts, through the
same launcher) plus what the suite needs to inject faults and to observe:

- a telemetry sink (``conformance.harness.sink``) that receives the sidecar's
  decision log and scrapes its metrics;
- a fault proxy process (``conformance.nemesis.proxy``) on each link between
  planes: ``envoy-xds`` (Envoy's relay to the control plane), ``sidecar-xds``,
  ``sidecar-sink`` and ``envoy-<cell>`` for each cell. Envoy's cell clusters, the
  relay's upstream, the sidecar's xDS source and its decision-log URL point at
  the proxies, so a nemesis cuts or slows one link without touching the others;
- optionally one cell in its own network namespace, for real partitions;
- optionally a broken variant (``conformance.variants``): named processes start
  through a wrapper module that breaks one behaviour, for the self-test.

Every run has its own directory and free ports; ``close`` (or the context
manager) stops every process, even after a failure.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from a1.launcher import ProcessSpec, http_probe
from a1.stack import LOOPBACK, Stack, StackOptions, StackPorts
from conformance.harness.stacks import HEALTH_INTERVAL_MS, quiet_ports
from conformance.nemesis.proxy import ProxyControl
from policies.core.errors import UserError

DATA_PLANE = ("envoy", "relay", "sidecar")  # with the cells: what must keep serving
# What the data plane must never wait on (I-3): the control plane and the telemetry sink.
NON_DATA_PLANE = ("control", "sink")
ROLLOUT = {"soak_seconds": 2, "max_deny_rate": 0.2, "min_requests": 10}
MAX_SPEC_BYTES = 64 << 20  # a user's spec directory, copied into the run
MAX_SPEC_FILES = 10_000


@dataclass(frozen=True)
class TargetOptions:
    root: Path
    cells: int = 3
    cell_names: tuple[str, ...] | None = None
    user_spec: Path | None = None  # the user's platform spec directory (--config)
    netns_cell: str | None = None  # this cell runs in its own network namespace
    wrap: dict[str, str] = field(default_factory=dict)  # process -> variant wrapper module
    env: dict[str, str] = field(default_factory=dict)  # extra environment for wrapped ones
    seed: int = 0
    ready_timeout: float = 90.0


class Target(Stack):
    """A Stack whose links between planes run through fault proxies (see the module).

    Where the harness listens and how the host reaches it are small methods
    (``proxy_control_bind``, ``proxy_control_address``, ``sink_listen``, ...), so the
    docker runtime's ``DockerTarget`` changes addresses only."""

    runtime = "process"

    def __init__(self, options: TargetOptions) -> None:
        user = _read_user_spec(options.user_spec) if options.user_spec else None
        names = options.cell_names or (tuple(c["name"] for c in user["cells"]) if user
                                       else None)
        count = len(names) if names else options.cells
        # Every port of the run in one block (the stack's, then the proxies' and the
        # sink's): chosen together, no two listeners can be handed the same one.
        ports = quiet_ports(StackPorts.count(count) + 2 * count + 5)
        super().__init__(StackOptions(
            state_dir=options.root, cells=count, cell_names=names,
            ports=StackPorts.of(ports[:StackPorts.count(count)], count),
            health_interval_ms=HEALTH_INTERVAL_MS,
            ready_timeout=options.ready_timeout, config_source="xds"))
        self.target_options = options
        self.user_spec = user
        self.spec_dir = self.files.platform
        self.state_dir = self.files.state_dir
        ports = ports[StackPorts.count(count):]
        self.sink_port = ports.pop()
        self._cell_proxy_ports = {c: ports.pop() for c in self.cell_names}
        self._sink_proxy_port = ports.pop()
        links = ["envoy-xds", "sidecar-xds", "sidecar-sink",
                 *(f"envoy-{c}" for c in self.cell_names)]
        self._control_ports = {link: ports.pop() for link in links}
        self._ns: Any = None  # conformance.nemesis.netns.Netns when a cell is isolated

    # -- links --------------------------------------------------------------------------

    @property
    def links(self) -> list[str]:
        return list(self._control_ports)

    def proxy(self, link: str) -> ProxyControl:
        if link not in self._control_ports:
            raise UserError(f"link {link!r}: no such link (have {', '.join(self.links)})", 2)
        return ProxyControl(self.proxy_control_address(link), link=link)

    def proxy_control_address(self, link: str) -> str:
        """Where the suite (on the host) reaches ``link``'s proxy control API."""
        return f"{LOOPBACK}:{self._control_ports[link]}"

    def proxy_control_bind(self, link: str) -> str:
        """Where ``link``'s proxy binds its control API."""
        return f"{LOOPBACK}:{self._control_ports[link]}"

    def _proxy_socket(self, link: str) -> Path:
        return self.files.state_dir / f"proxy-{link}.sock"

    def _proxy_listen(self, link: str) -> str:
        if link in ("envoy-xds", "sidecar-xds"):
            return f"unix:{self._proxy_socket(link)}"
        if link == "sidecar-sink":
            return f"{LOOPBACK}:{self._sink_proxy_port}"
        return f"{LOOPBACK}:{self._cell_proxy_ports[link.removeprefix('envoy-')]}"

    def _proxy_upstream(self, link: str) -> str:
        if link in ("envoy-xds", "sidecar-xds"):
            return self.xds_address
        if link == "sidecar-sink":
            return f"{LOOPBACK}:{self.sink_port}"
        return self._cell_address(link.removeprefix("envoy-"))

    def netns(self, link: str) -> Any:
        """The network namespace ``link`` runs through (a partition cuts it), or None."""
        cell = self.target_options.netns_cell
        return self._ns if cell is not None and link == f"envoy-{cell}" else None

    def cell_endpoint(self, name: str) -> tuple[str, int]:
        return LOOPBACK, self._cell_proxy_ports[name]

    def cell_url(self, name: str) -> str:
        return f"http://{self._cell_address(name)}"

    def _cell_address(self, name: str) -> str:
        """Where the cell process listens: its namespace's address if it has one."""
        isolated = self._ns is not None and name == self.target_options.netns_cell
        host = self._ns.address if isolated else LOOPBACK
        return f"{host}:{self.ports.cells[self.cell_names.index(name)]}"

    @property
    def sink_url(self) -> str:
        """The sink as the suite on the host reaches it."""
        return f"http://{LOOPBACK}:{self.sink_port}"

    def sink_listen(self) -> str:
        return f"{LOOPBACK}:{self.sink_port}"

    def sink_scrape_url(self) -> str:
        """The sidecar's metrics as the sink reaches them."""
        return self.metrics_url

    def sink_extra_args(self) -> list[str]:
        return []

    # -- process specs ------------------------------------------------------------------

    def _wrapped(self, spec: ProcessSpec) -> ProcessSpec:
        module = self.target_options.wrap.get(spec.name)
        if module is None:
            return spec
        argv = list(spec.argv)
        if argv[:2] != [sys.executable, "-m"]:
            raise UserError(f"variant: process {spec.name!r} is not a Python module", 2)
        env = {**(spec.env or {}), **self.target_options.env}
        return replace(spec, argv=[sys.executable, "-m", module, *argv[3:]], env=env)

    def control_spec(self) -> ProcessSpec:
        return self._wrapped(super().control_spec())

    def relay_spec(self) -> ProcessSpec:
        spec = super().relay_spec()
        argv = list(spec.argv)
        argv[argv.index("--upstream") + 1] = self._proxy_listen("envoy-xds")
        return self._wrapped(replace(spec, argv=argv))

    def cell_spec(self, name: str) -> ProcessSpec:
        spec = self._wrapped(super().cell_spec(name))
        if self._ns is None or name != self.target_options.netns_cell:
            return spec
        argv = [*spec.argv, "--host", self._ns.address]
        return replace(spec, argv=self._ns.wrap(argv),
                       ready=http_probe(f"{self.cell_url(name)}/healthz"))

    def sidecar_settings(self) -> dict[str, Any]:
        doc = super().sidecar_settings()
        doc["source"]["address"] = self._proxy_listen("sidecar-xds")
        doc["decision_log"] = {**doc["decision_log"],
                               "url": f"http://{self._proxy_listen('sidecar-sink')}/v1/decisions"}
        return doc

    def sidecar_spec(self) -> ProcessSpec:
        return self._wrapped(super().sidecar_spec())

    def sink_spec(self) -> ProcessSpec:
        return ProcessSpec(
            name="sink",
            argv=[sys.executable, "-m", "conformance.harness.sink", "--listen",
                  self.sink_listen(), "--out", str(self.files.state_dir / "sink"),
                  # Seldom: a scrape loads the sidecar, and stops while the sink is
                  # paused, so a frequent one would lighten exactly the fault windows.
                  "--scrape", self.sink_scrape_url(), "--scrape-interval", "5",
                  *self.sink_extra_args()],
            log_path=self.files.logs / "sink.log",
            ready=http_probe(f"{self.sink_url}/healthz"))

    def proxy_spec(self, link: str) -> ProcessSpec:
        return ProcessSpec(
            name=f"proxy-{link}",
            argv=[sys.executable, "-m", "conformance.nemesis.proxy",
                  "--listen", self._proxy_listen(link), "--upstream", self._proxy_upstream(link),
                  "--control", self.proxy_control_bind(link),
                  "--seed", str(self.target_options.seed), "--name", link,
                  *self.proxy_extra_args()],
            log_path=self.files.logs / f"proxy-{link}.log",
            ready=http_probe(f"http://{self.proxy_control_address(link)}/proxy"))

    def proxy_extra_args(self) -> list[str]:
        return []

    def added_cell(self, name: str, port: int) -> tuple[ProcessSpec, str]:
        """A cell added to the running platform (I-9): its process spec and the
        endpoint the spec names for it (where Envoy reaches it)."""
        return ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", "a1.cell", "--name", name, "--port", str(port),
                  "--db", str(self.files.cell_db(name)), "--xds", self.xds_address],
            log_path=self.files.logs / f"{name}.log",
            ready=http_probe(f"http://{LOOPBACK}:{port}/healthz")), f"{LOOPBACK}:{port}"

    # -- lifecycle ----------------------------------------------------------------------

    def prepare(self) -> None:
        super().prepare()
        if self.user_spec is not None:
            self._overlay_user_spec()
            return
        # A rollout that judges within seconds, so I-10 fits a run (a user's spec keeps
        # its thresholds and canary, with this soak).
        path = self.spec_dir / "platform.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["rollout"].update(ROLLOUT)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def _overlay_user_spec(self) -> None:
        """The user's cells (names and table), policy and rollout, on the suite's own
        edge, issuer and cell processes: the suite must mint tokens and own the ports."""
        src = self.target_options.user_spec
        assert src is not None and self.user_spec is not None
        ours = yaml.safe_load((self.spec_dir / "platform.yaml").read_text())
        doc = dict(self.user_spec)
        for key in ("cells", "listeners", "sidecar", "jwt"):
            doc[key] = ours[key]
        # Your thresholds and canary, judged within seconds: a run must fit minutes.
        doc["rollout"] = {**ours["rollout"], **(doc.get("rollout") or {}),
                          "soak_seconds": ROLLOUT["soak_seconds"],
                          "min_requests": ROLLOUT["min_requests"]}
        _copy_spec_files(src, self.spec_dir, skip=("platform.yaml", "jwks.json", "tls"))
        from control.spec import load_spec

        (self.spec_dir / "platform.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        load_spec(self.spec_dir)  # fail here, naming the file, not in the control plane

    def start(self) -> None:
        opts = self.target_options
        if opts.netns_cell is not None:
            from conformance.nemesis.netns import Netns, cleanup_stale

            if opts.netns_cell not in self.cell_names:
                raise UserError(f"netns cell {opts.netns_cell!r}: no such cell", 2)
            cleanup_stale()
            self._ns = Netns()
        self.start_harness()
        super().start()

    def start_harness(self) -> None:
        """The sink and every fault proxy, ready before the stack they sit in."""
        self.launcher.start(self.sink_spec())
        for link in self.links:
            self.launcher.start(self.proxy_spec(link))
        self.launcher.wait_ready(["sink", *(f"proxy-{link}" for link in self.links)],
                                 timeout=self.target_options.ready_timeout)

    def stop(self) -> None:
        from conformance.nemesis.process import resume_all

        try:
            resume_all()
        finally:
            try:
                super().stop()
            finally:
                if self._ns is not None:
                    self._ns.close()
                    self._ns = None

    def __enter__(self) -> Target:
        super().__enter__()
        return self


def _read_user_spec(directory: Path) -> dict[str, Any]:
    """The user's platform.yaml, validated by the control plane's own loader first."""
    from control.spec import load_spec

    load_spec(directory)  # one-line errors naming file:line:col
    doc = yaml.safe_load((directory / "platform.yaml").read_text())
    if not isinstance(doc, dict):
        raise UserError(f"{directory / 'platform.yaml'}: not a mapping", 2)
    return doc


def _copy_spec_files(src: Path, dest: Path, skip: tuple[str, ...]) -> None:
    """Copy the regular files of a user's spec directory, bounded: symlinks, devices and
    FIFOs are left out (a spec names files inside its directory; a link could pull in
    the whole filesystem, a FIFO hang the copy). Too much is a one-line error."""
    total, count = 0, 0
    for root, dirs, files in os.walk(src, followlinks=False):
        here = Path(root)
        rel = here.relative_to(src)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in skip]
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            path = here / name
            if rel == Path(".") and name in skip:
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            total, count = total + info.st_size, count + 1
            if total > MAX_SPEC_BYTES or count > MAX_SPEC_FILES:
                raise UserError(f"--config {src}: more than {MAX_SPEC_FILES} files or "
                                f"{MAX_SPEC_BYTES >> 20} MiB; a spec directory holds the "
                                f"spec and its policy files", 2)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel / name, follow_symlinks=False)
