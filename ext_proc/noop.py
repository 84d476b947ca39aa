"""A no-op ext_authz server (always OK) with the sidecar's gRPC server settings.

The benchmarks' Python floor: ``python -m ext_proc.noop --address 127.0.0.1:PORT``.
It differs from the sidecar only in deciding nothing, so the ratio between the
two measures the engine's cost, not grpcio's.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2

from ext_proc.grpc_common import AUTH_SERVICE, bind, identity, make_server, set_serving

_OK = external_auth_pb2.CheckResponse()
_OK.status.code = 0
OK_BYTES = _OK.SerializeToString()


async def _check(req: Any, context: grpc.aio.ServicerContext) -> bytes:
    return OK_BYTES


def handlers() -> list[grpc.GenericRpcHandler]:
    return [
        grpc.method_handlers_generic_handler(
            AUTH_SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    _check,
                    request_deserializer=external_auth_pb2.CheckRequest.FromString,
                    response_serializer=identity,
                )
            },
        )
    ]


async def serve(address: str) -> int:
    server, health = make_server(handlers())
    try:
        bind(server, address)
    except Exception as err:
        print(f"ext_proc.noop: cannot bind {address}: {err}", file=sys.stderr)
        return 2
    await server.start()
    await set_serving(health, True)
    print(f"ext_proc.noop: serving {address}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ext_proc.noop", description=__doc__)
    parser.add_argument("--address", required=True, help="HOST:PORT or unix:/path")
    args = parser.parse_args(argv)
    return asyncio.run(serve(args.address))


if __name__ == "__main__":
    sys.exit(main())
