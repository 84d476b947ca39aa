"""Simulated ADS clients for ``a1 bench control``'s fan-out, in a process of their own.

``python -m a1.bench.control_clients --xds HOST:PORT --clients 1000 [--per-connection 1]``

Each client is one SotW ADS stream that behaves as an Envoy does on the wire:
node on the first request only (``set_node_on_first_message_only``, as the A1 ADS
bootstrap has it), a wildcard subscription to each of Envoy's five types, and an
ACK (version and nonce echoed) for every response. It does not decode the
resources: the benchmark measures the server, and Envoy's own cost is what the
real-Envoy rounds show.

Why not ``policies.core.xds.client.AdsClient``: it is a thread per client (and
grpcio's sync streams add one more each), so 1,000 of them on 2 cores would
measure the client process's threads, not the server. One grpc.aio event loop
carries all of them here. Streams whose channel or stream fails are counted and
reported on exit (and in the log); they are not reconnected, so a failure shows.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


async def client(stub: Any, node_id: str, types: Sequence[str], stats: dict[str, int]) -> None:
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import discovery_pb2

    queue: asyncio.Queue[Any] = asyncio.Queue()
    node = base_pb2.Node(id=node_id, cluster="a1-bench", user_agent_name="a1-bench")
    for i, type_url in enumerate(types):
        queue.put_nowait(discovery_pb2.DiscoveryRequest(
            node=node if i == 0 else None, type_url=type_url))

    async def requests() -> AsyncIterator[Any]:
        while (item := await queue.get()) is not None:
            yield item

    try:
        async for resp in stub.StreamAggregatedResources(requests()):
            stats["responses"] += 1
            queue.put_nowait(discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url, version_info=resp.version_info,
                response_nonce=resp.nonce))
    except Exception as err:  # grpc.aio.AioRpcError, cancelled channel
        stats["failed"] += 1
        if stats["failed"] <= 5:
            print(f"control_clients: {node_id}: {' '.join(str(err).split())[:200]}",
                  file=sys.stderr, flush=True)
    finally:
        queue.put_nowait(None)


async def run(target: str, clients: int, per_connection: int) -> dict[str, int]:
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc

    from control.envoy.resources import ENVOY_TYPES

    stats = {"responses": 0, "failed": 0}
    channels, tasks = [], []
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               # one TCP connection per channel, not one shared subchannel for all
               ("grpc.use_local_subchannel_pool", 1)]
    for i in range(clients):
        if i % per_connection == 0:
            channels.append(grpc.aio.insecure_channel(target, options=options))
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channels[-1])
        tasks.append(asyncio.create_task(client(stub, f"bench-client-{i}", ENVOY_TYPES, stats)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m a1.bench.control_clients",
                                description=__doc__.splitlines()[0])
    p.add_argument("--xds", required=True, help="HOST:PORT of the ADS server")
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--per-connection", type=int, default=1,
                   help="ADS streams per gRPC connection (default 1, as Envoys have)")
    args = p.parse_args(argv)
    stats = asyncio.run(run(args.xds, args.clients, max(1, args.per_connection)))
    print(f"control_clients: {stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
