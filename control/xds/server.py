"""The ADS gRPC server: streams, health, keepalive, limits, status, metrics, ACK waits.

Server choice: ``grpc.aio``. One coroutine per stream (no thread per Envoy), and
the sidecar measured it faster than the thread-pool server; the publisher may
still be synchronous code, so ``start()``/``stop()`` run the server on its own
event loop in a thread, and ``wait_acked`` is the thread-side ``acked``.

Per stream: a reader task feeds a bounded queue (a full queue stops the reading,
so HTTP/2 flow control pushes back), and the stream's loop applies requests to
the protocol state machine (``sotw``/``delta``) and writes the one response due,
if any, reading the latest snapshot each time: a burst of snapshots is one change.
Responses arrive encoded (``stream.Response``): the ADS methods are registered with
an identity serializer, so the bytes a SotW fan-out shares are written as they are.

ACK waits (``acked``) are kept up to date stream by stream: each change of a stream
updates only that stream's membership in each wait of its group, O(1), instead of
rescanning every stream on every ACK (O(N²) per fan-out round).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from prometheus_client import CollectorRegistry, Counter, Gauge

from control.loop_thread import LoopThread, call_on
from control.xds.cache import SnapshotCache, default_node_group, short_type
from control.xds.delta import DeltaStream
from control.xds.limits import Limits, StreamLimitError, StreamProtocolError
from control.xds.sotw import SotwStream
from control.xds.stream import ProtocolStream, Response
from policies.core.unix_socket import clear_stale
from policies.core.xds.types import NODE_CLUSTERS

log = logging.getLogger("a1.control.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 keepalive: the server pings idle clients, and accepts Envoy's own pings."""

    time_ms: int = 30_000  # ping a client after this long without activity
    timeout_ms: int = 10_000  # and drop it if the ping is not answered in time
    min_client_ping_ms: int = 5_000  # clients may ping this often (Envoy's keepalive)


def server_options(limits: Limits, keepalive: Keepalive) -> list[tuple[str, Any]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", limits.max_send_bytes),
        ("grpc.max_receive_message_length", limits.max_receive_bytes),
        ("grpc.keepalive_time_ms", keepalive.time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", keepalive.min_client_ping_ms),
        ("grpc.http2.min_time_between_pings_ms", keepalive.min_client_ping_ms),
    ]


class _Wake:
    """Queue item: the group's snapshot changed."""


class _End:
    """Queue item: the client closed its side."""


_WAKE, _END = _Wake(), _End()


@dataclass
class _Conn:
    """One live ADS stream, as status and the ACK waiters see it."""

    id: int
    proto: ProtocolStream
    queue: asyncio.Queue[Any]
    started: float
    group: str | None = None
    requests: int = 0  # requests received
    processed: int = 0  # requests applied, with the response they caused written
    responses: int = 0
    generation: int = 0  # snapshot generation the stream last evaluated

    def wake(self) -> None:
        # A full queue is drained first, and the latest snapshot is read after it anyway.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_WAKE)


class _AckWait:
    """One ``acked`` call: which streams of its group are subscribed to its type, which of
    those do not hold its version ACKed, and which NACKed it; updated one stream at a time."""

    def __init__(self, type_url: str, version: str, min_clients: int,
                 done: asyncio.Future[bool]) -> None:
        self.type_url, self.version, self.min_clients = type_url, version, min_clients
        self.done = done
        self.subscribed: set[int] = set()
        self.behind: set[int] = set()
        self.nacked: set[int] = set()

    def update(self, conn: _Conn) -> None:
        self.drop(conn.id)
        st = conn.proto.types.get(self.type_url)
        if st is None or not st.active():
            return
        self.subscribed.add(conn.id)
        if st.acked_version != self.version:
            self.behind.add(conn.id)
            if st.last_nack_version == self.version:
                self.nacked.add(conn.id)  # it will not be ACKed until the config changes

    def drop(self, conn_id: int) -> None:
        self.subscribed.discard(conn_id)
        self.behind.discard(conn_id)
        self.nacked.discard(conn_id)

    def state(self) -> bool | None:
        if self.nacked:
            return False
        if not self.behind and len(self.subscribed) >= self.min_clients:
            return True
        return None

    def settle(self) -> None:
        state = self.state()
        if state is not None and not self.done.done():
            self.done.set_result(state)


def _identity(data: bytes) -> bytes:
    return data


def _ads_handlers(servicer: _Servicer) -> dict[str, grpc.RpcMethodHandler]:
    """The ADS methods, as the generated code registers them, but writing encoded bytes."""
    return {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_identity,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=_identity,
        ),
    }


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "a1_xds_connected", "ADS streams connected, by node cluster", ["node_cluster"],
            registry=registry,
        )
        self.pushes = Counter(
            "a1_xds_pushes_total", "xDS responses sent, by resource type", ["type"],
            registry=registry,
        )
        self.nacks = Counter(
            "a1_xds_nacks_total", "NACKs received, by resource type", ["type"], registry=registry
        )


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class XdsServer:
    """ADS (SotW and Delta) over the snapshots of a ``SnapshotCache``.

    ``host`` is an address to bind with ``port``, or ``unix:/path`` for a Unix socket
    (mode 0600: on one machine, only the owner's processes may connect, and nothing
    else can subscribe to the secrets Envoy is sent).

    ``node_group(node) -> str`` picks the snapshot group of a stream from the
    Envoy ``Node`` of its first request (default: ``node.cluster``, else
    ``"default"``).
    """

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        node_group: Callable[[Any], str] = default_node_group,
        registry: CollectorRegistry | None = None,
        limits: Limits | None = None,
        keepalive: Keepalive | None = None,
    ) -> None:
        self.cache = cache
        self.host, self.port = host, port
        self.node_group = node_group
        self.registry = registry if registry is not None else CollectorRegistry()
        self.limits = limits or Limits()
        self.keepalive = keepalive or Keepalive()
        self._metrics = _Metrics(self.registry)
        self._conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._unwatch: Callable[[], None] | None = None
        self._waits: dict[str, set[_AckWait]] = {}  # by group
        self._runner = LoopThread("a1-xds-server")

    # -- lifecycle ------------------------------------------------------------

    async def astart(self) -> int:
        """Bind, start and report SERVING; returns the bound port."""
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(options=server_options(self.limits, self.keepalive))
        handlers = _ads_handlers(_Servicer(self))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADS_SERVICE,
                                                                              handlers),))
        server.add_registered_method_handlers(ADS_SERVICE, handlers)
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        unix = self.host.startswith("unix:")
        if unix:  # only the owner may connect: the socket is 0600 in a private directory
            clear_stale(self.host[len("unix:"):], "xds")
        wanted = self.host if unix else f"{_bracketed(self.host)}:{self.port}"
        port = server.add_insecure_port(wanted)
        if port == 0:
            raise OSError(f"xds: cannot bind {wanted}")
        await server.start()
        if unix:
            os.chmod(self.host[len("unix:"):], 0o600)
        self._server, self.port = server, 0 if unix else port
        for name in ("", ADS_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._unwatch = self.cache.watch(self._on_cache_change)
        log.info("xds: ADS server listening on %s", self.address)
        return port

    async def astop(self, grace: float = 1.0) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._server is not None:
            for name in ("", ADS_SERVICE):
                await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            await self._server.stop(grace)
            self._server = None

    @property
    def address(self) -> str:
        """Where clients connect: ``unix:/path``, or ``HOST:PORT`` once bound."""
        if self.host.startswith("unix:"):
            return self.host
        return f"{_bracketed(self.host)}:{self.port}"

    def start(self) -> int:
        """Run the server on its own event loop in a daemon thread; returns the port
        (0 on a Unix socket)."""
        return self._runner.start(self.astart)

    def stop(self, grace: float = 1.0) -> None:
        """Stop the server started by ``start()`` and join its thread (a no-op if it
        never started)."""
        self._runner.stop(lambda: self.astop(grace), timeout=grace + 30)

    # -- snapshots -------------------------------------------------------------

    def _on_cache_change(self, group: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed since the check; the server is stopping.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake_group, group)

    def _wake_group(self, group: str) -> None:
        for conn in self._conns.values():
            if conn.group == group:
                conn.wake()

    def _changed(self, conn: _Conn, *, gone: bool = False) -> None:
        """Update the ACK waits of the stream's group with its new state (or its end)."""
        if conn.group is None:
            return  # no node yet: in no group, so in no wait
        for wait in self._waits.get(conn.group, ()):
            if gone:
                wait.drop(conn.id)
            else:
                wait.update(conn)
            wait.settle()

    # -- streams -----------------------------------------------------------------

    async def _stream(
        self, proto: ProtocolStream, requests: AsyncIterator[Any], context: Any
    ) -> None:
        if len(self._conns) >= self.limits.max_streams:
            log.warning("xds: refusing stream from %s: %d streams open (limit)",
                        context.peer(), len(self._conns))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many ADS streams")
        conn = _Conn(next(self._ids), proto, asyncio.Queue(self.limits.max_queued_requests),
                     time.time())
        self._conns[conn.id] = conn
        reader = asyncio.create_task(self._read(requests, conn))
        cluster: str | None = None
        try:
            while True:
                batch = [await conn.queue.get()]
                while not conn.queue.empty():
                    batch.append(conn.queue.get_nowait())
                for item in batch:
                    if item is _END:
                        return
                    if isinstance(item, Exception):
                        raise item
                    if item is _WAKE:
                        continue
                    if conn.group is None:
                        if not item.HasField("node"):
                            raise StreamProtocolError("the first request carries no node")
                        node_error = self.limits.node_error(item.node)
                        if node_error is not None:
                            raise StreamProtocolError(node_error)
                        conn.group = str(self.node_group(item.node))
                        # Bounded label values: A1's node clusters by name, the rest "other".
                        cluster = (item.node.cluster if item.node.cluster in NODE_CLUSTERS
                                   else "other")
                        self._metrics.connected.labels(cluster).inc()
                    self._apply(conn, item)
                generation, snapshot = self.cache.entry(conn.group or "")
                while (response := proto.next_response(snapshot)) is not None:
                    await self._write(context, response)
                    conn.responses += 1
                conn.generation, conn.processed = generation, conn.requests
                self._changed(conn)
        except StreamLimitError as err:
            log.warning("xds: closing stream of node %s (%s): %s", proto.node_id, proto.peer, err)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"xds limit: {err}")
        except StreamProtocolError as err:
            log.warning("xds: closing stream from %s: %s", proto.peer, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        finally:
            reader.cancel()
            del self._conns[conn.id]
            if cluster is not None:
                self._metrics.connected.labels(cluster).dec()
            self._changed(conn, gone=True)

    async def _write(self, context: Any, response: Response) -> None:
        await context.write(response.data)
        self._metrics.pushes.labels(short_type(response.type_url)).inc()

    def _apply(self, conn: _Conn, request: Any) -> None:
        st = conn.proto.types.get(request.type_url)
        nacks = st.nack_count if st else 0
        conn.proto.on_request(request, self.cache.snapshot(conn.group or ""))
        conn.requests += 1
        st = conn.proto.types.get(request.type_url)
        if st is not None and st.nack_count > nacks:
            self._metrics.nacks.labels(short_type(request.type_url)).inc()

    async def _read(self, requests: AsyncIterator[Any], conn: _Conn) -> None:
        """Feed the stream's queue; a client past the request rate gets its stream closed."""
        tokens, last = float(self.limits.request_burst), time.monotonic()
        try:
            async for request in requests:
                now = time.monotonic()
                tokens = min(float(self.limits.request_burst),
                             tokens + (now - last) * self.limits.requests_per_second)
                last = now
                if tokens < 1:
                    await conn.queue.put(StreamLimitError(
                        f"sends requests faster than {self.limits.requests_per_second}/s "
                        f"after a burst of {self.limits.request_burst}"))
                    return
                tokens -= 1
                await conn.queue.put(request)
        except (grpc.RpcError, asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception as err:
            log.warning("xds: reading stream %s: %s", conn.proto.peer, err)
        await conn.queue.put(_END)

    # -- status ---------------------------------------------------------------------

    def _status(self) -> list[dict[str, Any]]:
        out = []
        for conn in sorted(self._conns.values(), key=lambda c: c.id):
            entry = conn.proto.status()
            entry.update(
                stream=conn.id, group=conn.group, connected_at=conn.started,
                requests=conn.requests, processed=conn.processed, responses=conn.responses,
                generation=conn.generation,
            )
            out.append(entry)
        return out

    def connections(self) -> list[dict[str, Any]]:
        """A JSON-able view of every live stream: node, and per type subscription,
        sent version and nonce, ACKed version, NACK count and last NACK text."""
        return call_on(self._loop, self._status)

    async def acked(
        self, group: str, type_url: str, version: str, *, timeout: float, min_clients: int = 1
    ) -> bool:
        """Wait until every stream of ``group`` subscribed to ``type_url`` holds ``version``
        ACKed, and there are at least ``min_clients`` of them.

        Returns True then; False at once when one of them NACKed that version, and
        False at the timeout. Run on the server's loop (``wait_acked`` from a thread).
        """
        wait = _AckWait(type_url, version, min_clients, asyncio.get_running_loop().create_future())
        for conn in self._conns.values():
            if conn.group == group:
                wait.update(conn)
        state = wait.state()
        if state is not None:
            return state
        waits = self._waits.setdefault(group, set())
        waits.add(wait)
        try:
            return await asyncio.wait_for(wait.done, timeout)
        except TimeoutError:
            return False
        finally:
            waits.discard(wait)
            if not waits and self._waits.get(group) is waits:
                del self._waits[group]

    def wait_acked(
        self, group: str, type_url: str, version: str, *, timeout: float, min_clients: int = 1
    ) -> bool:
        """``acked`` for synchronous callers of a server run by ``start()``."""
        if self._loop is None:
            raise RuntimeError("xds: the server is not started")
        future = asyncio.run_coroutine_threadsafe(
            self.acked(group, type_url, version, timeout=timeout, min_clients=min_clients),
            self._loop,
        )
        return future.result(timeout=timeout + 10)

    def nodes(self, cluster: str) -> list[dict[str, Any]]:
        """``node_id`` and ``node_metadata`` of the live streams of node cluster ``cluster``:
        what the rollout's scrape needs each second, without ``connections()``'s per-type
        status of every stream. Any thread: ``list()`` of the dict is atomic under the
        GIL and each node field is assigned once (a stream caught between two shows none)."""
        return [{"node_id": c.proto.node_id, "node_metadata": dict(c.proto.node_metadata)}
                for c in list(self._conns.values()) if c.proto.node_cluster == cluster]


class _Servicer:
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> None:
        proto = SotwStream(self._server.limits, peer=context.peer())
        await self._server._stream(proto, request_iterator, context)

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> None:
        proto = DeltaStream(self._server.limits, peer=context.peer())
        await self._server._stream(proto, request_iterator, context)
