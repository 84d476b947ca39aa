"""A local xDS relay for Envoy: last-known-good config that survives a restart during a
control-plane outage (Envoy 1.40's wheel has no KV-store xDS delegate). See docs/relay.md.

- ``config``: ``RelayConfig`` (addresses, state dir, every bound);
- ``store``: the last ACKed response per type, persisted and verified on read;
- ``session``: one Envoy stream's bookkeeping (ACK/NACK detection, what to serve);
- ``events``: a stream's byte-bounded event queue;
- ``upstream``: the control-plane channel and the backoff prober;
- ``server``: ``Relay``, the gRPC proxy; ``cli``: ``python -m control.relay``.
"""

from control.relay.cli import main
from control.relay.config import RelayConfig
from control.relay.server import Relay

__all__ = ["Relay", "RelayConfig", "main"]
