"""The ``a1`` command: one entry point, one subcommand module per area."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from a1.commands import (
    bench_control,
    bench_policy,
    bench_sidecar,
    compose,
    conformance,
    control,
    images,
    policy,
    stack,
)
from policies.core.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a1", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    policy.register(sub)
    stack.register(sub)
    control.register(sub)
    conformance.register(sub)
    images.register(sub)
    compose.register(sub)
    bench = sub.add_parser("bench", help="side-by-side benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bench_policy.register(bench_sub)
    bench_sidecar.register(bench_sub)
    bench_control.register(bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"a1: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
