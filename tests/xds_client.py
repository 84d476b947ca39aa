"""A scripted ADS client for protocol tests: sends exactly the requests a test names.

Deterministic without sleeps: ``settle(server)`` waits until the server's status
shows every request this client sent as processed against the group's latest
snapshot, then returns exactly the responses the server wrote meanwhile (so an
empty list proves that no response was sent).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from control.xds.server import XdsServer

_CLOSE = object()


class AdsClient:
    def __init__(
        self, target: str, *, delta: bool = False, node_id: str = "node-1",
        cluster: str = "a1-edge", max_bytes: int = 64 << 20,
    ) -> None:
        self.node = base_pb2.Node(id=node_id, cluster=cluster)
        self.delta = delta
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
        ])
        self._out: queue.Queue[Any] = queue.Queue()
        self._in: queue.Queue[Any] = queue.Queue()
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(self._requests())
        self.sent = 0
        self.received = 0
        self.error: grpc.RpcError | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[Any]:
        while (item := self._out.get()) is not _CLOSE:
            yield item

    def _read(self) -> None:
        try:
            for response in self.call:
                self._in.put(response)
        except grpc.RpcError as err:
            self.error = err
        self._in.put(None)

    # -- requests --------------------------------------------------------------

    def _put(self, request: Any) -> None:
        if self.sent == 0:
            request.node.CopyFrom(self.node)
        self.sent += 1
        self._out.put(request)

    def request(
        self, type_url: str, names: Iterable[str] = (), *, version: str = "", nonce: str = "",
        error: str | None = None,
    ) -> None:
        """A SotW DiscoveryRequest."""
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._put(req)

    def ack(self, response: Any, names: Iterable[str] = ()) -> None:
        if self.delta:
            self.delta_request(response.type_url, nonce=response.nonce)
        else:
            self.request(response.type_url, names, version=response.version_info,
                         nonce=response.nonce)

    def nack(self, response: Any, message: str, *, names: Iterable[str] = (),
             version: str = "") -> None:
        if self.delta:
            self.delta_request(response.type_url, nonce=response.nonce, error=message)
        else:
            self.request(response.type_url, names, version=version, nonce=response.nonce,
                         error=message)

    def delta_request(
        self, type_url: str, subscribe: Iterable[str] = (), unsubscribe: Iterable[str] = (),
        *, nonce: str = "", error: str | None = None, initial: dict[str, str] | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe), response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._put(req)

    # -- responses ----------------------------------------------------------------

    def recv(self, timeout: float = 10.0) -> Any:
        item = self._in.get(timeout=timeout)
        if item is None:
            self._in.put(None)
            raise AssertionError(f"stream ended: {self.error}")
        self.received += 1
        return item

    def status(self, server: XdsServer) -> dict[str, Any] | None:
        for entry in server.connections():
            if entry["node_id"] == self.node.id:
                return entry
        return None

    def settle(self, server: XdsServer, timeout: float = 10.0) -> list[Any]:
        """Every response the server sent for what it has seen so far (see module doc)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.status(server)
            if entry is not None and entry["processed"] == self.sent:
                generation, _ = server.cache.entry(entry["group"])
                if entry["generation"] == generation:
                    return [self.recv(timeout) for _ in range(entry["responses"] - self.received)]
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not settle: {entry}, sent {self.sent}")
            time.sleep(0.005)

    def ended(self, timeout: float = 10.0) -> grpc.RpcError | None:
        """Wait for the server to close the stream; returns its error (None if OK)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self._in.get(timeout=max(0.01, deadline - time.monotonic()))
            if item is None:
                return self.error
        raise AssertionError("stream still open")

    def close(self) -> None:
        self._out.put(_CLOSE)
        self.call.cancel()
        self.channel.close()
