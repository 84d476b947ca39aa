"""``python -m conformance.nemesis.proxy``: one fault proxy as a process.

Silent while it runs (the runner reads its state through the control API); stops
cleanly on SIGTERM or SIGINT (exit 0). Bad arguments or an address it cannot bind:
one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import NoReturn

from conformance.nemesis.proxy import start_proxy
from policies.core.errors import UserError, one_line

PROG = "python -m conformance.nemesis.proxy"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {one_line(message)}\n")  # one line, not usage + error


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog=PROG, description="A TCP / Unix-socket fault proxy with "
                     "Toxiproxy's toxics, driven through a loopback JSON control API.")
    parser.add_argument("--listen", required=True, help="host:port or unix:/path")
    parser.add_argument("--upstream", required=True, help="host:port or unix:/path")
    parser.add_argument("--control", required=True, help="loopback host:port of the API")
    parser.add_argument("--seed", type=int, default=None, help="seed of the toxicity draws")
    parser.add_argument("--name", default="proxy", help="the link's name, for messages")
    parser.add_argument("--control-exposed", action="store_true",
                        help="let --control bind a non-loopback address (only inside a "
                             "container, on a network no component of the stack joins)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="fault-proxy: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        running = start_proxy(args.listen, args.upstream, args.control, seed=args.seed,
                              link=args.name, exposed=args.control_exposed)
    except UserError as err:
        print(f"{PROG}: {one_line(err)}", file=sys.stderr)
        return err.code
    try:
        stop.wait()
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
