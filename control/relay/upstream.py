"""The way to the control plane: one gRPC channel shared by every stream, and a
prober that tells the streams served from the record when the control plane is back.

One probe loop at a time, whatever the number of waiting streams: gRPC health
``Check`` with jittered exponential backoff between attempts (half to all of
``base * 2**n``, capped), so a fleet of relays does not reconnect in lockstep. A
server without the health service (UNIMPLEMENTED) answered, so it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control.relay.config import RelayConfig


def channel_options(config: RelayConfig) -> list[tuple[str, Any]]:
    base_ms = int(config.backoff_base_s * 1000)
    max_ms = int(config.backoff_max_s * 1000)
    return [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC's own reconnects follow the same backoff as the prober (its default
        # grows to 120 s, which would hide a control plane that is back).
        ("grpc.initial_reconnect_backoff_ms", base_ms),
        ("grpc.min_reconnect_backoff_ms", base_ms),
        ("grpc.max_reconnect_backoff_ms", max_ms),
        ("grpc.enable_retries", 0),
    ]


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Equal jitter: uniform in [d/2, d] with d = min(cap, base * 2**attempt)."""
    d = min(cap, base * (2 ** min(attempt, 32)))
    return rng.uniform(d / 2, d)


class UpstreamWatch:
    def __init__(self, channel: grpc.aio.Channel, config: RelayConfig,
                 rng: random.Random | None = None) -> None:
        self._health = health_pb2_grpc.HealthStub(channel)
        self._config = config
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self.probes = 0

    async def reachable(self) -> bool:
        self.probes += 1
        try:
            resp = await self._health.Check(health_pb2.HealthCheckRequest(service=""),
                                            timeout=self._config.probe_timeout_s,
                                            wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            return err.code() == grpc.StatusCode.UNIMPLEMENTED
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    async def _probe(self) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(backoff_delay(attempt, self._config.backoff_base_s,
                                              self._config.backoff_max_s, self._rng))
            attempt += 1
            if await self.reachable():
                return

    async def wait_back(self) -> None:
        """Return once the control plane answers a health check (shared by all callers)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._probe())
        await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
