"""Every bound the xDS server enforces, in one place (bytes and counts, never time alone)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Defaults sized for a fleet of Envoys with thousands of clusters; tests shrink them."""

    # gRPC message sizes: a snapshot type may exceed gRPC's 4 MiB default.
    max_send_bytes: int = 64 * MIB
    max_receive_bytes: int = 16 * MIB
    # Subscriptions, per stream: names over all types, and their total bytes.
    max_names: int = 100_000
    max_name_bytes: int = 8 * MIB
    # A NACK's error_detail.message is kept truncated to this many bytes.
    max_error_bytes: int = 4096
    # Requests waiting to be processed on one stream (the reader then stops reading,
    # so HTTP/2 flow control pushes back on the client).
    max_queued_requests: int = 64
    # Token bucket on requests per stream: a burst, then a sustained rate.
    request_burst: int = 2000
    requests_per_second: float = 200.0
    # Concurrent ADS streams on one server.
    max_streams: int = 20_000
    # A node's id and cluster (status shows them, streams are grouped by cluster).
    max_node_chars: int = 256
    # Node metadata kept for status (string fields only; longer ones are dropped).
    node_metadata_fields: int = 16
    node_metadata_key_chars: int = 64
    node_metadata_value_chars: int = 512


    def node_error(self, node: Any) -> str | None:
        """Why a stream's node is refused (an id or cluster too long), or None."""
        for field in ("id", "cluster"):
            value = getattr(node, field)
            if len(value) > self.max_node_chars:
                return (f"node.{field} is {len(value)} characters long; at most "
                        f"{self.max_node_chars} are accepted")
        return None




class StreamLimitError(Exception):
    """A client went past a bound: the stream is closed with RESOURCE_EXHAUSTED."""


class StreamProtocolError(Exception):
    """A client broke the protocol (no node, ...): the stream is closed with INVALID_ARGUMENT."""
