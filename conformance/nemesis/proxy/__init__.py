"""The conformance suite's network fault proxy: Toxiproxy's toxics between two planes.

One proxy per link (Envoy <-> xDS, sidecar <-> xDS, sidecar <-> telemetry sink,
Envoy <-> a cell), TCP or Unix socket on either side. Stages, one module each:
``toxics`` (kinds, validation, the per-chunk transform), ``address`` (parsing,
binding), ``server`` (``FaultProxy``: forwarding with bounded buffers), ``api`` (the
loopback JSON control API), ``client`` (``ProxyControl``, used from other
processes), ``__main__`` (the process entry)::

    python -m conformance.nemesis.proxy --listen ADDR --upstream ADDR \\
        --control 127.0.0.1:PORT [--seed N]

In-process (tests): ``running = start_proxy("127.0.0.1:0", "unix:/x.sock")`` then
``running.control.add("latency", latency=100)`` ... ``running.stop()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.nemesis.proxy.address import Address, parse_address
from conformance.nemesis.proxy.api import ControlServer
from conformance.nemesis.proxy.client import ProxyControl, ProxyControlError
from conformance.nemesis.proxy.server import FaultProxy
from conformance.nemesis.proxy.toxics import KINDS, Toxic, ToxicError, parse_toxic
from policies.core.errors import ConfigError


@dataclass
class RunningProxy:
    """A proxy and its control API running in this process (each on its own thread)."""

    proxy: FaultProxy
    server: ControlServer
    control: ProxyControl

    @property
    def listen(self) -> Address:
        return self.proxy.listen

    def stop(self) -> None:
        self.server.stop()
        self.proxy.stop()

    def __enter__(self) -> RunningProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_proxy(listen: str, upstream: str, control: str = "127.0.0.1:0", *,
                seed: int | None = None, link: str = "proxy",
                exposed: bool = False) -> RunningProxy:
    """Start a proxy and its control API in this process; ConfigError on bad input."""
    control_at = parse_address(control, "--control", listen=True)
    if control_at.path:
        raise ConfigError("--control: must be host:port on loopback, not a unix socket")
    proxy = FaultProxy(parse_address(listen, "--listen", listen=True),
                       parse_address(upstream, "--upstream"), seed=seed, name=link)
    server = ControlServer(proxy, control_at.host, control_at.port, exposed=exposed)
    try:
        proxy.start()
    except BaseException:
        server.stop()
        raise
    return RunningProxy(proxy, server, ProxyControl(server.start(), link=link))


__all__ = ["KINDS", "Address", "ControlServer", "FaultProxy", "ProxyControl",
           "ProxyControlError", "RunningProxy", "Toxic", "ToxicError", "parse_address",
           "parse_toxic", "start_proxy"]
