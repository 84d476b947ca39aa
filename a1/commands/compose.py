"""``a1 compose``: prepare the state directory as ``a1 up --runtime docker`` would and
print a Compose file for the same stack (docs/containers.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from a1.commands.stack import stack_flags, stack_options
from a1.files import write_atomic
from policies.core.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compose", help="print a Compose file for the docker runtime's stack",
                       description="Prepare the state directory as `a1 up --runtime docker` "
                       "does (keys, config, platform spec) and print a Compose-spec file for "
                       "the same stack: containers, networks and subnets, addresses, ports on "
                       "127.0.0.1, healthchecks and start order. Run it with "
                       "`docker compose -f FILE up` (images from `a1 images build`).")
    stack_flags(p)
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.set_defaults(func=cmd_compose)


def cmd_compose(args: argparse.Namespace) -> int:
    from a1.containers import compose, engine, network
    from a1.containers.stack import DockerStack

    options = stack_options(args)
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
