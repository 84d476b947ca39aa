"""``a1 bench policy``: compiled evaluation against regorus, side by side."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("policy", help="compiled policy vs regorus (same process, same inputs)")
    bench.add_argument("--iterations", type=int, default=30000)
    bench.add_argument("--json", action="store_true", help="print the raw result as JSON")
    bench.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from a1.bench import policy as bench_policy

    argv = ["--iterations", str(args.iterations)] + (["--json"] if args.json else [])
    return bench_policy.main(argv)
