"""``python -m control.relay``: run the relay until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from control.relay.config import MIB, RelayConfig
from control.relay.server import Relay
from policies.core.errors import UserError
from policies.core.xds.types import EDGE_CLUSTER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT",
                        help="the control plane's ADS address")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT|unix:/path",
                        help="where Envoy connects (its ads_bootstrap xds_address)")
    parser.add_argument("--state-dir", required=True, type=Path, metavar="DIR",
                        help="where the last ACKed config is kept (created 0700)")
    parser.add_argument("--node-cluster", default=EDGE_CLUSTER, metavar="NAME",
                        help="the node cluster whose config is recorded and served "
                             "(default %(default)s)")
    parser.add_argument("--max-message-mib", type=int, default=64, metavar="MIB",
                        help="gRPC message size limit, both ways (default %(default)s)")


def config_from(args: argparse.Namespace) -> RelayConfig:
    size = args.max_message_mib * MIB
    return RelayConfig(upstream=args.upstream, listen=args.listen, state_dir=args.state_dir,
                       node_cluster=args.node_cluster, max_message_bytes=size,
                       max_queued_bytes=max(2 * size, 1), max_state_bytes=max(4 * size, 1))


async def _run(relay: Relay) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await relay.astart()
    try:
        await stop.wait()
    finally:
        await relay.astop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        relay = Relay(config_from(args))
        asyncio.run(_run(relay))
    except UserError as err:
        print(f"a1: {err}", file=sys.stderr)
        return err.code
    except (OSError, RuntimeError) as err:  # RuntimeError: gRPC could not bind
        message = str(err) if str(err).startswith("relay:") else f"relay: {err}"
        print(f"a1: {message}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m control.relay",
        description="A local xDS relay for one Envoy: proxies its ADS stream to the control "
                    "plane and serves the last ACKed config while the control plane is down.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
