"""Assemble a runnable A1 stack: state directory, config files, ports, processes.

One ``Stack`` is used by ``a1 up``, by the e2e fixtures (on free ports, in a
temporary state directory) and by the conformance suite. Layout of the state
directory (default ``.a1/``)::

    pki/ca.pem, ca-key.pem, server.pem, server-key.pem, jwt-signing-key.pem
    jwks.json         sidecar.yaml     envoy.yaml     cells/<name>.db   logs/<process>.log
    sidecar-grpc.sock sidecar-http.sock  (the sidecar's decision ports, mode 0600)
    xds (config_source "xds", the default with a sidecar):
      platform/          the platform spec the control plane serves (a1/stack_platform.py)
      control/bundle-signing.key, .pub   the dev key that signs policy bundles
      relay/  xds-relay.sock             Envoy's xDS relay and its last-known-good
      sidecar-lkg/                       the sidecar's last-known-good
    static (config_source "static": rbac and none modes, and benchmarks' baselines):
      cells.yaml        authz.wasm

Keys, certificates, the recorded cell table and the cell databases are reused
when present; the spec, the policy and the config files are regenerated on every
``prepare()``.

With ``config_source="xds"`` the control plane starts first and every other
component takes its config from it: Envoy (through the relay, from an ADS
bootstrap), the sidecar (policy bundles, cell table) and the cells (the table).
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from a1 import envoy_bootstrap, package_data, pki
from a1.files import write_atomic
from a1.launcher import (
    Launcher,
    Probe,
    ProcessSpec,
    check_ports_free,
    free_ports,
    grpc_health_probe,
    http_probe,
)
from a1.stack_platform import PlatformInputs, write_platform_spec
from policies.core.errors import UserError
from policies.core.unix_socket import unix_path_error

DEFAULT_STATE_DIR = Path(".a1")
LOOPBACK = "127.0.0.1"
ENTRYPOINT = "a1/authz/decision"
POLICY_LIBRARY = package_data.policy_library()
DEFAULT_POLICY = POLICY_LIBRARY / "authz.rego"
DEFAULT_POLICY_DATA = POLICY_LIBRARY / "data.json"
DEFAULT_INTERNAL_BASE = 10100
OPA_ENVOY_PATH = "envoy/authz/allow"  # OPA-Envoy's default decision path


def cell_names(count: int) -> list[str]:
    return [f"cell-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class StackPorts:
    """Every loopback port of a stack. Defaults are ``a1 up``'s."""

    http: int = 10000
    https: int = 10443
    admin: int = 9901
    sidecar_grpc: int = DEFAULT_INTERNAL_BASE
    sidecar_http: int = DEFAULT_INTERNAL_BASE + 1
    sidecar_metrics: int = DEFAULT_INTERNAL_BASE + 2
    cells: tuple[int, ...] = tuple(DEFAULT_INTERNAL_BASE + 11 + i for i in range(3))
    control: int = DEFAULT_INTERNAL_BASE + 4

    @classmethod
    def defaults(cls, n_cells: int, internal_base: int = DEFAULT_INTERNAL_BASE,
                 http: int = 10000, https: int = 10443, admin: int = 9901) -> StackPorts:
        """Fixed ports: sidecar at base..base+2, the control plane's status at base+4,
        cell i at base+10+i (the control plane's ADS is a Unix socket)."""
        if not 1024 <= internal_base <= 65535 - 11 - n_cells:
            raise UserError(f"--internal-port-base: {internal_base} leaves no room for "
                            f"{n_cells} cells below 65536", 2)
        return cls(http, https, admin, internal_base, internal_base + 1, internal_base + 2,
                   tuple(internal_base + 11 + i for i in range(n_cells)), internal_base + 4)

    @classmethod
    def free(cls, n_cells: int) -> StackPorts:
        """Distinct ports the kernel just handed out (for tests)."""
        return cls.of(free_ports(cls.count(n_cells)), n_cells)

    @staticmethod
    def count(n_cells: int) -> int:
        """How many ports a stack of ``n_cells`` listens on."""
        return 7 + n_cells

    @classmethod
    def of(cls, p: Sequence[int], n_cells: int) -> StackPorts:
        """A stack's ports from ``count(n_cells)`` distinct ones chosen by the caller."""
        if len(p) != cls.count(n_cells) or len(set(p)) != len(p):
            raise UserError(f"ports: {cls.count(n_cells)} distinct ports are needed", 2)
        return cls(p[0], p[1], p[2], p[3], p[4], p[5], tuple(p[7:]), p[6])

    def labelled(self, names: Sequence[str], with_sidecar: bool = True,
                 sidecar_tcp: bool = False, control: bool = False) -> list[tuple[str, int]]:
        out = [("Envoy HTTP listener, --http-port", self.http),
               ("Envoy HTTPS listener, --https-port", self.https),
               ("Envoy admin, --admin-port", self.admin)]
        if control:
            out += [("control plane status, --internal-port-base", self.control)]
        if with_sidecar and sidecar_tcp:  # default: the decision ports are Unix sockets
            out += [("sidecar gRPC, --internal-port-base", self.sidecar_grpc),
                    ("sidecar HTTP, --internal-port-base", self.sidecar_http)]
        if with_sidecar:
            out += [("sidecar metrics, --internal-port-base", self.sidecar_metrics)]
        out += [(f"{n}, --internal-port-base", p) for n, p in zip(names, self.cells, strict=True)]
        return out


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    cells: int = 3
    cell_names: tuple[str, ...] | None = None  # None: cell-1..cell-N
    mode: str = "grpc"
    ports: StackPorts | None = None  # None: StackPorts.defaults(cells)
    policy: Path = DEFAULT_POLICY
    policy_data: Path | None = DEFAULT_POLICY_DATA
    health_interval_ms: int = 1000
    authz_timeout_ms: int = 500
    access_log: bool = True
    envoy_log_level: str = "info"
    envoy_concurrency: int | None = None
    sidecar_settings: dict[str, Any] = field(default_factory=dict)  # merged into sidecar.yaml
    # The sidecar's decision ports: "unix" (sockets in the state directory, mode 0600:
    # only this user can ask for a decision) or "tcp" (loopback ports, any local process).
    sidecar_transport: str = "unix"
    ready_timeout: float = 60.0
    # Where Envoy, the sidecar and the cells get their config: "xds" (the control
    # plane; needs a sidecar mode) or "static" (files written once). None: "xds" when
    # the mode has a sidecar, else "static".
    config_source: str | None = None
    # The input the policy expects ("a1", or "opa-envoy": docs/opa-envoy.md), its
    # entrypoint (None: a1/authz/decision, or envoy/authz/allow for opa-envoy), and
    # whether it verifies tokens itself (then Envoy runs no jwt_authn).
    policy_input: str = "a1"
    entrypoint: str | None = None
    verifies_tokens: bool = False


@dataclass(frozen=True)
class StackFiles:
    state_dir: Path

    @property
    def pki(self) -> pki.DevPKI:
        return pki.DevPKI(self.state_dir)

    @property
    def cells_table(self) -> Path:
        return self.state_dir / "cells.yaml"

    @property
    def policy_module(self) -> Path:
        return self.state_dir / "authz.wasm"

    @property
    def sidecar_config(self) -> Path:
        return self.state_dir / "sidecar.yaml"

    @property
    def envoy_config(self) -> Path:
        return self.state_dir / "envoy.yaml"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def status(self) -> Path:
        """``a1 up``'s supervisor status (docs/supervisor.md)."""
        return self.state_dir / "status.json"

    def cell_db(self, name: str) -> Path:
        return self.state_dir / "cells" / f"{name}.db"

    @property
    def platform(self) -> Path:
        """The platform spec directory the control plane watches."""
        return self.state_dir / "platform"

    @property
    def signing_key(self) -> Path:
        return self.state_dir / "control" / "bundle-signing.key"

    @property
    def relay_socket(self) -> Path:
        return self.state_dir / "xds-relay.sock"


_compiled: dict[bytes, bytes] = {}


def compile_policy(policy: Path, data: Path | None, entrypoint: str = ENTRYPOINT) -> bytes:
    """Compile with ``policies.compiler``; memoised per process on the sources' bytes,
    so a test session that starts several stacks compiles once."""
    sources: list[bytes] = []
    for p in (policy, data):
        if p is None:
            continue
        try:
            sources.append(p.read_bytes())
        except OSError as err:
            raise UserError(f"{p}: cannot read policy file: {err.strerror}", 2) from None
    key = hashlib.sha256(b"\0".join([str(policy).encode(), str(data).encode(),
                                     entrypoint.encode(), *sources])).digest()
    if key not in _compiled:
        try:
            from policies.compiler import CompileError, compile_files
        except ImportError as err:
            raise UserError(f"the policy compiler is not available ({err})") from None
        try:
            _compiled[key] = compile_files([policy], data, [entrypoint])
        except CompileError as err:  # already "file:line:col: kind: message"
            raise UserError(str(err), err.exit_code) from None
    return _compiled[key]


def ensure_cells_table(path: Path, names: list[str]) -> tuple[Any, str | None]:
    """Reuse cells.yaml if it has exactly ``names``; grow it with ``add_cell`` (minimal
    movement) if ``names`` extends it; otherwise write a fresh balanced table.
    Returns the table and, if an existing table changed, a note saying how."""
    from policies.core.cells import CellTable

    if not path.exists():
        table = CellTable.balanced(names)
        table.save(path)
        return table, None
    table = CellTable.load(path)
    have = list(table.cells)
    if have == names:
        return table, None
    if names[: len(have)] == have:
        before = table
        for name in names[len(have):]:
            table = table.add_cell(name)
        table.save(path)
        moved = sum(1 for b in range(table.buckets)
                    if table.cell_of_bucket(b) != before.cell_of_bucket(b))
        return table, (f"{path}: added {', '.join(names[len(have):])}; {moved} of "
                       f"{table.buckets} buckets moved, all to the new cells")
    table = CellTable.balanced(names)
    table.save(path)
    return table, (f"{path}: had cells {', '.join(have)}; rewrote it balanced over "
                   f"{', '.join(names)} (items stored on the old cells may now be elsewhere)")


class Stack:
    """One A1 stack: cells, the sidecar and Envoy, on loopback."""

    def __init__(self, options: StackOptions, launcher: Launcher | None = None) -> None:
        if options.cell_names is not None:
            options = replace(options, cells=len(options.cell_names))
        if options.cells < 1:
            raise UserError("--cells: at least one cell is required", 2)
        if options.mode not in envoy_bootstrap.MODES:
            raise UserError(f"--mode: must be one of {', '.join(envoy_bootstrap.MODES)}", 2)
        ports = options.ports or StackPorts.defaults(options.cells)
        if len(ports.cells) != options.cells:
            raise UserError(f"ports: {len(ports.cells)} cell ports for {options.cells} cells", 2)
        self.options = replace(options, ports=ports, state_dir=options.state_dir.resolve())
        self.ports = ports
        self.files = StackFiles(self.options.state_dir)
        self.cell_names = list(options.cell_names or cell_names(options.cells))
        if self.options.sidecar_transport not in ("unix", "tcp"):
            raise UserError("sidecar_transport: must be unix or tcp", 2)
        source = self.options.config_source or ("xds" if self.with_sidecar else "static")
        if source not in ("xds", "static"):
            raise UserError("config_source: must be xds or static", 2)
        if source == "xds" and not self.with_sidecar:
            raise UserError(f"--mode {self.options.mode}: the control plane serves the "
                            f"sidecar modes ({', '.join(envoy_bootstrap.SIDECAR_MODES)}); "
                            f"this mode runs on a static bootstrap", 2)
        self.config_source = source
        for address in self.unix_sockets():
            why = unix_path_error(address.removeprefix("unix:"))
            if why is not None:
                raise UserError(f"--state-dir: {why}", 2)
        self._launcher = launcher
        self._own_launcher = launcher is None
        self.notes: list[str] = []  # things prepare() changed that the user should know

    @property
    def launcher(self) -> Launcher:
        """The launcher running this stack's processes (created on first use)."""
        if self._launcher is None:
            self._launcher = self.new_launcher()
        return self._launcher

    def new_launcher(self) -> Launcher:
        """The launcher a stack without one given makes (the docker runtime's: containers)."""
        return Launcher()

    def unix_sockets(self) -> list[str]:
        """The Unix socket addresses the stack's processes listen on (path length checked)."""
        sockets = []
        if self.options.sidecar_transport == "unix" and self.with_sidecar:
            sockets += [self.sidecar_grpc_address, self.sidecar_http_address]
        if self.uses_control_plane:
            sockets += [self.xds_address, f"unix:{self.files.relay_socket}"]
        return sockets

    @property
    def entrypoint(self) -> str:
        if self.options.entrypoint is not None:
            return self.options.entrypoint
        return OPA_ENVOY_PATH if self.options.policy_input == "opa-envoy" else ENTRYPOINT

    @property
    def with_sidecar(self) -> bool:
        return self.options.mode in envoy_bootstrap.SIDECAR_MODES

    # -- addresses --------------------------------------------------------------------

    @property
    def bind_host(self) -> str:
        """The address Envoy's listeners and admin and the sidecar's metrics bind."""
        return LOOPBACK

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.http}"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.ports.https}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.admin}"

    @property
    def sidecar_grpc_address(self) -> str:
        if self.options.sidecar_transport == "unix":
            return f"unix:{self.files.state_dir / 'sidecar-grpc.sock'}"
        return f"{LOOPBACK}:{self.ports.sidecar_grpc}"

    @property
    def sidecar_http_address(self) -> str:
        if self.options.sidecar_transport == "unix":
            return f"unix:{self.files.state_dir / 'sidecar-http.sock'}"
        return f"{LOOPBACK}:{self.ports.sidecar_http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.sidecar_metrics}/metrics"

    def cell_url(self, name: str) -> str:
        """Where the cell process itself answers (health probes, direct requests)."""
        return f"http://{LOOPBACK}:{self.ports.cells[self.cell_names.index(name)]}"

    def cell_endpoint(self, name: str) -> tuple[str, int]:
        """Where Envoy reaches a cell: the cell itself here; the conformance suite puts
        a fault proxy in between by overriding this one method."""
        return LOOPBACK, self.ports.cells[self.cell_names.index(name)]

    @property
    def uses_control_plane(self) -> bool:
        return self.config_source == "xds"

    @property
    def xds_address(self) -> str:
        """The control plane's ADS socket (the relay, the sidecar and the cells connect
        here): a 0600 Unix socket in the state directory, so no other local user can
        subscribe to the TLS key Envoy is sent, or pose as the control plane."""
        return f"unix:{self.files.state_dir / 'xds.sock'}"

    @property
    def control_url(self) -> str:
        """The control plane's status endpoint (``a1 status``)."""
        return f"http://{LOOPBACK}:{self.ports.control}"

    # -- files ------------------------------------------------------------------------

    def bootstrap_params(self, mode: str | None = None) -> envoy_bootstrap.BootstrapParams:
        files = self.files
        return envoy_bootstrap.BootstrapParams(
            cells=[envoy_bootstrap.CellEndpoint(n, *self.cell_endpoint(n))
                   for n in self.cell_names],
            jwks_path=files.pki.jwks, tls_cert=files.pki.server_cert,
            tls_key=files.pki.server_key, mode=mode or self.options.mode,
            bind_address=self.bind_host, http_port=self.ports.http,
            https_port=self.ports.https, admin_port=self.ports.admin,
            sidecar_grpc=self.sidecar_grpc_address,
            sidecar_http=self.sidecar_http_address,
            authz_timeout_ms=self.options.authz_timeout_ms,
            health_interval_ms=self.options.health_interval_ms,
            access_log=files.logs / "envoy-access.log" if self.options.access_log else None,
            jwt_authn=not self.options.verifies_tokens,
            request_body_bytes=self._static_body_bytes(),
        )

    def _static_body_bytes(self) -> int:
        """The static bootstrap's body buffering: on when an OPA-Envoy policy reads it."""
        if self.options.policy_input != "opa-envoy" or not self.with_sidecar:
            return 0
        from control.envoy.params import DEFAULT_REQUEST_BODY
        from policies.bundle.format import reads_request_body
        from policies.runtime.module import PolicyModule

        wasm = compile_policy(self.options.policy, self.options.policy_data, self.entrypoint)
        paths = PolicyModule.load(wasm, source=str(self.options.policy)).meta.input_paths
        return DEFAULT_REQUEST_BODY if reads_request_body(paths) else 0

    def sidecar_settings(self) -> dict[str, Any]:
        files = self.files
        doc: dict[str, Any] = {
            "grpc_address": self.sidecar_grpc_address,
            "http_address": self.sidecar_http_address,
            "metrics_address": f"{self.bind_host}:{self.ports.sidecar_metrics}",
            "tenant": {"from": "path"},
            "decision_log": {"path": str(files.logs / "decisions.jsonl"), "queue": 10000},
        }
        if self.uses_control_plane:
            from policies.bundle import public_key_path

            doc["policy"] = {"entrypoint": self.entrypoint, "input": self.options.policy_input}
            doc["source"] = {"kind": "xds", "address": self.xds_address,
                             "state_dir": str(files.state_dir / "sidecar-lkg"),
                             "trusted_keys": str(public_key_path(files.signing_key)),
                             "node_id": "a1-sidecar"}
        else:
            doc["policy"] = {"module": str(files.policy_module), "entrypoint": self.entrypoint,
                             "input": self.options.policy_input}
            doc["cells"] = {"table": str(files.cells_table)}
        doc.update(self.options.sidecar_settings)
        return doc

    def prepare(self) -> None:
        """Write everything the processes need into the state directory."""
        files = self.files
        try:
            pki.private_dir(files.state_dir)  # 0700, tightened if it already existed
            files.logs.mkdir(exist_ok=True)
            (files.state_dir / "cells").mkdir(exist_ok=True)
        except OSError as err:
            raise UserError(f"{files.state_dir}: cannot create state directory: "
                            f"{err.strerror}") from None
        dev = pki.ensure_pki(files.state_dir)
        if self.uses_control_plane:
            self._prepare_xds(dev)
            return
        _, note = ensure_cells_table(files.cells_table, self.cell_names)
        if note:
            self.notes.append(note)
        if self.with_sidecar:
            wasm = compile_policy(self.options.policy, self.options.policy_data, self.entrypoint)
            write_atomic(files.policy_module, wasm)
            write_atomic(files.sidecar_config,
                         yaml.safe_dump(self.sidecar_settings(), sort_keys=False).encode())
        bootstrap = envoy_bootstrap.render_bootstrap(self.bootstrap_params())
        write_atomic(files.envoy_config, envoy_bootstrap.dump(bootstrap).encode())

    def platform_inputs(self) -> PlatformInputs:
        return PlatformInputs(
            cells=[(n, *self.cell_endpoint(n)) for n in self.cell_names],
            bind_address=self.bind_host, http_port=self.ports.http, https_port=self.ports.https,
            sidecar_mode=self.options.mode, sidecar_grpc=self.sidecar_grpc_address,
            sidecar_http=self.sidecar_http_address,
            authz_timeout_ms=self.options.authz_timeout_ms, policy=self.options.policy,
            policy_data=self.options.policy_data, entrypoint=self.entrypoint,
            policy_input=self.options.policy_input, verifies_tokens=self.options.verifies_tokens,
            access_log=(self.files.logs / "envoy-access.log" if self.options.access_log
                        else None))

    def _prepare_xds(self, dev: pki.DevPKI) -> None:
        """The spec, the bundle-signing key, the sidecar's config and Envoy's ADS bootstrap."""
        from policies.bundle import ensure_signing_key

        files = self.files
        for sub in ("control", "relay", "sidecar-lkg"):
            pki.private_dir(files.state_dir / sub)
        write_platform_spec(files.platform, self.platform_inputs(), dev,
                            legacy_table=files.cells_table)
        # Fail here, with the file and position, rather than as a control plane that exits.
        from control.spec import load_spec

        load_spec(files.platform)
        compile_policy(self.options.policy, self.options.policy_data, self.entrypoint)
        ensure_signing_key(files.signing_key)
        write_atomic(files.sidecar_config,
                     yaml.safe_dump(self.sidecar_settings(), sort_keys=False).encode())
        bootstrap = envoy_bootstrap.render_ads_bootstrap(
            "a1-envoy", f"unix:{files.relay_socket}", admin_port=self.ports.admin,
            bind_address=self.bind_host)
        write_atomic(files.envoy_config, envoy_bootstrap.dump(bootstrap).encode())

    # -- processes --------------------------------------------------------------------

    def cell_spec(self, name: str) -> ProcessSpec:
        port = self.ports.cells[self.cell_names.index(name)]
        return ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", "a1.cell", "--name", name, "--port", str(port),
                  *self.cell_listen_args(name), "--db", str(self.files.cell_db(name)),
                  *(["--xds", self.xds_address] if self.uses_control_plane
                    else ["--cells-table", str(self.files.cells_table)])],
            log_path=self.files.logs / f"{name}.log",
            ready=self.cell_probe(name),
        )

    def cell_listen_args(self, name: str) -> list[str]:
        """Where a cell binds beyond its port (default: --host 127.0.0.1)."""
        return []

    def cell_probe(self, name: str) -> Probe:
        return http_probe(f"{self.cell_url(name)}/healthz")

    def sidecar_spec(self) -> ProcessSpec:
        return ProcessSpec(
            name="sidecar",
            argv=[sys.executable, "-m", "ext_proc", "--config", str(self.files.sidecar_config)],
            log_path=self.files.logs / "sidecar.log",
            ready=grpc_health_probe(self.sidecar_grpc_address),
        )

    def control_spec(self) -> ProcessSpec:
        files = self.files
        return ProcessSpec(
            name="control",
            argv=[sys.executable, "-m", "a1", "control", "serve",
                  "--config", str(files.platform), *self.control_listen_args(),
                  "--status-port", str(self.ports.control),
                  "--signing-key", str(files.signing_key)],
            log_path=files.logs / "control.log",
            ready=self.control_probe(),
        )

    def control_listen_args(self) -> list[str]:
        """Where the control plane serves ADS (and status, beyond its port)."""
        return ["--xds-socket", self.xds_address.removeprefix("unix:")]

    def control_probe(self) -> Probe:
        return grpc_health_probe(self.xds_address)

    def relay_spec(self) -> ProcessSpec:
        files = self.files
        return ProcessSpec(
            name="relay",
            argv=[sys.executable, "-m", "control.relay", "--upstream", self.xds_address,
                  "--listen", f"unix:{files.relay_socket}",
                  "--state-dir", str(files.state_dir / "relay")],
            log_path=files.logs / "relay.log",
            ready=grpc_health_probe(f"unix:{files.relay_socket}"),
        )

    def envoy_spec(self) -> ProcessSpec:
        argv = ["envoy", "-c", str(self.files.envoy_config), "--disable-hot-restart",
                "-l", self.options.envoy_log_level, "--drain-time-s", "1"]
        if self.options.envoy_concurrency:
            argv += ["--concurrency", str(self.options.envoy_concurrency)]
        return ProcessSpec(
            name="envoy", argv=argv, log_path=self.files.logs / "envoy.log",
            ready=self.envoy_ready_probe(),
        )

    def envoy_ready_probe(self) -> Probe:
        """Admin /ready, and every cell host healthy in Envoy's own eyes.

        /ready only says the first health-check round *finished*; on a loaded
        machine a cell's first check can time out, leaving it unhealthy (503 "no
        healthy upstream") for a moment after /ready. So wait for the hosts too.
        """
        ready = http_probe(f"{self.admin_url}/ready")
        wanted = [f"{envoy_bootstrap.cluster_name(n)}::{h}:{p}::health_flags::healthy"
                  for n in self.cell_names for h, p in [self.cell_endpoint(n)]]

        def check() -> bool:
            if not ready():
                return False
            with urllib.request.urlopen(f"{self.admin_url}/clusters", timeout=2) as resp:
                lines = set(resp.read().decode().splitlines())
            return all(w in lines for w in wanted)

        return Probe(f"Envoy {self.admin_url}/ready and all cell hosts healthy", check)

    def start(self) -> None:
        """Prepare, check the ports, start cells + sidecar, then Envoy; wait until ready."""
        self.prepare()
        check_ports_free((label, LOOPBACK, port) for label, port in self.host_ports())
        timeout = self.options.ready_timeout
        if self.uses_control_plane:  # the control plane first: everything else reads it
            self.launcher.start(self.control_spec())
            self.launcher.wait_ready(["control"], timeout=timeout)
            self.launcher.start(self.relay_spec())
            self.launcher.wait_ready(["relay"], timeout=timeout)
        specs = [self.cell_spec(n) for n in self.cell_names]
        specs += [self.sidecar_spec()] if self.with_sidecar else []
        first = [p.name for p in self.launcher.start_many(specs)]
        self.launcher.wait_ready(first, timeout=timeout)
        # Envoy last: its first health-check round then finds every cell up.
        self.launcher.start(self.envoy_spec())
        self.launcher.wait_ready(["envoy"], timeout=timeout)

    def host_ports(self) -> list[tuple[str, int]]:
        """(label, port) of every loopback port the stack takes on the host."""
        return self.ports.labelled(self.cell_names, self.with_sidecar,
                                   self.options.sidecar_transport == "tcp",
                                   self.uses_control_plane)

    def stop(self) -> None:
        if self._launcher is None:
            return
        if self._own_launcher:
            self._launcher.close()
        else:
            for name in ["envoy", "sidecar", *reversed(self.cell_names), "relay", "control"]:
                if name in self.launcher.names():
                    self.launcher.stop(name)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------

    def token(self, tenant: str, roles: Sequence[str], sub: str | None = None,
              ttl: int = 3600) -> str:
        return pki.mint_token(self.files.state_dir, tenant, list(roles), sub=sub, ttl=ttl)

    def cell_table(self) -> Any:
        """The table the sidecar routes by (the spec's, with the control plane)."""
        from policies.core.cells import CellTable

        if self.uses_control_plane:
            from control.spec import load_spec

            return load_spec(self.files.platform).cell_table()
        return CellTable.load(self.files.cells_table)
