"""Variant ``sync-policy-fetch``: a sidecar that asks the control plane before each decision.

Before every decision this sidecar makes a blocking call to the control plane (a
gRPC health check, standing for "fetch the current policy"), on the request path,
and denies with 503 when the call fails or takes longer than ``FETCH_TIMEOUT``. The
product never waits on the control plane: it decides from the policy it holds.
Caught by I-3 (and I-1, I-2): with the control plane paused every request stalls
for the timeout and then fails.

Where the control plane is: the environment variable ``A1_VARIANT_CONTROL_ADDRESS``
(a gRPC target, ``HOST:PORT`` or ``unix:/path``) when set, else the ADS address in
the sidecar's own config (``source.address``).

``python -m conformance.variants.sync_policy_fetch --config FILE``
"""

from __future__ import annotations

import os
import threading
from typing import Any

from conformance.variants.wrapper import Entry, arg_value, run

ADDRESS_ENV = "A1_VARIANT_CONTROL_ADDRESS"
FETCH_TIMEOUT = 2.0  # seconds one fetch may block a decision
_CHANNEL_OPTIONS = [  # a control plane that returns is asked again within a second
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def control_address(config_path: str | None) -> str:
    """The control plane's gRPC address (see the module doc); ConfigError if none."""
    from ext_proc.config import load_config
    from policies.core.errors import ConfigError

    address = os.environ.get(ADDRESS_ENV)
    if address:
        return address
    if config_path is not None:
        cfg = load_config(config_path)
        if cfg.xds is not None:
            return cfg.xds.address
    raise ConfigError(f"sync-policy-fetch: set {ADDRESS_ENV} or use source.kind: xds")


class Fetcher:
    """One blocking health check of the control plane per call, on one cached channel."""

    def __init__(self, address: str, timeout: float = FETCH_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self._stub: Any = None
        self._lock = threading.Lock()

    def fetch(self) -> None:
        """Return when the control plane answered SERVING; raise otherwise."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with self._lock:
            if self._stub is None:
                channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
                self._stub = health_pb2_grpc.HealthStub(channel)
            stub = self._stub
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"control plane at {self.address} is not serving")


def patch(address: str) -> None:
    from ext_proc.engine import Engine, deny

    fetcher = Fetcher(address)
    original = Engine.decide_facts

    def decide_after_fetch(self: Engine, f: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            fetcher.fetch()
        except Exception:
            return deny(503, "policy fetch from the control plane failed")
        return original(self, f, *args, **kwargs)

    Engine.decide_facts = decide_after_fetch  # type: ignore[method-assign]


def entry() -> Entry:
    from ext_proc.app import main

    return main


def start() -> None:
    import sys

    from policies.core.errors import ConfigError

    try:
        address = control_address(arg_value(sys.argv[1:], "--config"))
    except ConfigError as err:
        print(f"ext_proc: {err}", file=sys.stderr)
        sys.exit(err.code)
    run(lambda: patch(address), entry)


if __name__ == "__main__":
    start()
