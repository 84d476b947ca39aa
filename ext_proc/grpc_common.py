"""gRPC server settings shared by the sidecar and the no-op baseline (``ext_proc.noop``).

Kept free of the engine and the policy runtime so the baseline measures grpcio alone.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

AUTH_SERVICE = "envoy.service.auth.v3.Authorization"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def identity(b: bytes) -> bytes:
    """Response serializer for handlers that return pre-serialized messages."""
    return b


SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 1024),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # A CheckRequest carries headers Envoy already bounded (max_request_headers_kb,
    # 60 KiB by default); refuse anything far larger before parsing it.
    ("grpc.max_receive_message_length", 1 << 20),
]


def make_server(handlers: list[grpc.GenericRpcHandler]) -> tuple[grpc.aio.Server, HealthServicer]:
    """A grpc.aio server with A1's settings (shared with the no-op baseline in noop.py)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(handlers)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server, health


async def set_serving(health: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", AUTH_SERVICE, EXT_PROC_SERVICE):
        await health.set(name, status)


def bind(server: grpc.aio.Server, address: str) -> int:
    """Bind ``address`` (HOST:PORT or unix:/path); returns the port (0 for unix sockets)."""
    port = server.add_insecure_port(address)
    if not address.startswith("unix:") and port == 0:
        raise OSError(f"cannot bind {address}")
    return port
