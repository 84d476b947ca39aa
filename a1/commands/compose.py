"""``a1 compose``: prepare the state directory as ``a1 up --runtime docker`` would and
print a Compose file for the same stack (docs/containers.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from a1 import envoy_bootstrap
from a1.argtypes import positive
from a1.commands.stack import _existing_cells, _ports, _stack_ports, _state_dir
from a1.files import write_atomic
from a1.stack import DEFAULT_POLICY, DEFAULT_POLICY_DATA, StackOptions
from policies.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compose", help="print a Compose file for the docker runtime's stack",
                       description="Prepare the state directory as `a1 up --runtime docker` "
                       "does (keys, config, platform spec) and print a Compose-spec file for "
                       "the same stack: containers, networks and subnets, addresses, ports on "
                       "127.0.0.1, healthchecks and start order. Run it with "
                       "`docker compose -f FILE up` (images from `a1 images build`).")
    p.add_argument("--cells", type=positive, default=None,
                   help="number of cells (default: those of an existing cells.yaml, else 3)")
    _state_dir(p)
    _ports(p)
    p.add_argument("--mode", choices=envoy_bootstrap.MODES, default="grpc",
                   help="authorization filter (default grpc ext_authz)")
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="Rego policy")
    p.add_argument("--policy-data", type=Path, default=DEFAULT_POLICY_DATA,
                   help="data document")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.set_defaults(func=cmd_compose)


def cmd_compose(args: argparse.Namespace) -> int:
    from a1.containers import compose, engine, network
    from a1.containers.stack import DockerStack

    names = _existing_cells(args.state_dir) if args.cells is None else None
    n_cells = len(names) if names else (args.cells or 3)
    options = StackOptions(state_dir=args.state_dir, cells=n_cells, cell_names=names,
                           mode=args.mode, ports=_stack_ports(args, n_cells),
                           policy=args.policy, policy_data=args.policy_data)
    try:
        client = engine.connect("a1 compose")
    except UserError as err:  # the file can still be written; subnets checked on the host
        print(f"note: {err}; subnets are chosen against host routes only", file=sys.stderr)
        client = None
    stack = DockerStack(options, client=client)
    if client is None:
        stack.use_plan(stack.make_plan([]))
    else:
        stack.use_plan(stack.make_plan(network.docker_subnets(client)))
    stack.prepare()
    head = (f"# Written by `a1 compose` for state directory {stack.files.state_dir}.\n"
            f"# Run: docker compose -f FILE up   (images: `a1 images build`)\n")
    text = head + yaml.safe_dump(compose.document(stack), sort_keys=False, width=1000)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, text.encode())
    except OSError as err:
        raise UserError(f"{args.output}: cannot write: {err.strerror}") from None
    return 0
