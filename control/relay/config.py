"""The relay's settings and every bound it enforces (bytes and counts; time only for retries)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from control.envoy.params import socket_address
from policies.core.errors import ConfigError, UserError
from policies.core.xds.types import EDGE_CLUSTER

MIB = 1 << 20


@dataclass(frozen=True)
class RelayConfig:
    """``upstream`` is the control plane (``HOST:PORT``); ``listen`` is where Envoy connects
    (``HOST:PORT`` or ``unix:/path``); ``state_dir`` holds the recorded responses.

    Only streams whose node cluster is ``node_cluster`` are recorded and served from the
    record: the record is one kind of Envoy's config, never to be handed to another kind.
    """

    upstream: str
    listen: str
    state_dir: Path
    node_cluster: str = EDGE_CLUSTER
    # gRPC message size, both ways and on both sides (a type may exceed gRPC's 4 MiB default).
    max_message_bytes: int = 64 * MIB
    # Everything recorded, over all types, in memory and on disk (one type is at most
    # max_message_bytes).
    max_state_bytes: int = 256 * MIB
    # Messages read from either side of one stream and not yet forwarded (the reader waits
    # beyond it, so HTTP/2 flow control pushes back).
    max_queued_bytes: int = 128 * MIB
    max_queued_messages: int = 256
    # Concurrent Envoy streams.
    max_streams: int = 64
    # How long a new stream waits for the control plane before it is served from the record.
    connect_timeout_s: float = 2.0
    # Probing a lost control plane: jittered exponential backoff between health checks.
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    probe_timeout_s: float = 1.0
    # HTTP/2 keepalive towards the control plane (Envoy's side uses the server's defaults).
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000

    def check(self) -> RelayConfig:
        """Raise ``ConfigError`` naming the field of the first bad setting; return self."""
        for field in ("upstream", "listen"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise ConfigError(f"relay: {field}: must be text")
            # port 0 lets the system pick the listen port (tests, embedding)
            checked = value[:-1] + "1" if field == "listen" and value.endswith(":0") else value
            try:
                socket_address(checked, field, names=field == "upstream")
            except UserError as err:
                raise ConfigError(f"relay: {err}") from None
        if not self.node_cluster or len(self.node_cluster) > 256:
            raise ConfigError("relay: node_cluster: must be 1 to 256 characters")
        for field in ("max_message_bytes", "max_state_bytes", "max_queued_bytes",
                      "max_queued_messages", "max_streams"):
            if getattr(self, field) < 1:
                raise ConfigError(f"relay: {field}: must be positive")
        if self.max_queued_bytes < self.max_message_bytes:
            raise ConfigError("relay: max_queued_bytes: must hold one message of "
                              "max_message_bytes")
        for field in ("connect_timeout_s", "backoff_base_s", "backoff_max_s", "probe_timeout_s"):
            if not getattr(self, field) > 0:
                raise ConfigError(f"relay: {field}: must be positive")
        if self.backoff_max_s < self.backoff_base_s:
            raise ConfigError("relay: backoff_max_s: must be at least backoff_base_s")
        return self
