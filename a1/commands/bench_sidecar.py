"""``a1 bench sidecar``: authorization paths through a real Envoy, side by side.

The options and the run live in ``a1.bench.sidecar`` (also runnable as
``python -m a1.bench.sidecar``), so both entry points share one definition.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from a1.bench import sidecar as bench_sidecar

    bench = sub.add_parser(
        "sidecar",
        help="Envoy RBAC vs no-op ext_authz vs the sidecar (gRPC, HTTP, ext_proc), under load",
        description="Start one Envoy per case, (a) native RBAC, (b) gRPC ext_authz to a "
        "no-op grpcio server, (c) gRPC ext_authz, (d) HTTP ext_authz and (e) ext_proc to the "
        "sidecar, verify each allows and denies as it should, then measure saturating "
        "throughput (wrk) and latency at a fixed rate (h2load) in interleaved rounds. "
        "See docs/benchmarks.md.",
    )
    bench_sidecar.add_arguments(bench)
    bench.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from a1.bench import sidecar as bench_sidecar

    return bench_sidecar.run_cli(args)
