"""``a1 bench control``: spec-change propagation to real Envoys and to a simulated fan-out.

The options and the run live in ``a1.bench.control`` (also runnable as
``python -m a1.bench.control``), so both entry points share one definition.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from a1.bench import control as bench_control

    bench = sub.add_parser(
        "control",
        help="spec change -> every client's ACK, for real Envoys and 1,000 simulated "
        "ADS clients; server memory per client",
        description="Run the xDS server under test in its own process, connect 1, 5 and "
        "20 real Envoys, then --clients simulated ADS clients (beside a no-op ADS floor), "
        "and time spec edits until every client has ACKed the new version (p50/p99, split "
        "into pipeline and push+ACK), with the server's memory per connected client. "
        "See docs/benchmarks.md.",
    )
    bench_control.add_arguments(bench)
    bench.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from a1.bench import control as bench_control

    return bench_control.run_cli(args)
