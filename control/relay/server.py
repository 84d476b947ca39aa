"""The relay's gRPC server: one proxied upstream stream per Envoy stream, served from
the record while the control plane is away.

Per Envoy stream (``_Stream``): a reader task puts Envoy's requests, and another the
control plane's responses, on one bounded queue; the stream's loop takes one event
at a time:
- Envoy's request: bookkeeping (``Session``); an ACK of a control-plane response is
  recorded and persisted *before* it is forwarded, so once the control plane sees an
  ACK, the relay's disk holds that config; then forwarded unchanged.
- a control-plane response: forwarded unchanged.
- the control plane's stream ended: a status that answers this client
  (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...) is passed to Envoy; anything else
  (UNAVAILABLE, a reset, a clean end) means it is gone, and the stream is served from
  the record from then on, while ``UpstreamWatch`` probes with backoff.
- the control plane is back: Envoy's stream is closed (UNAVAILABLE); Envoy keeps its
  config, reconnects, and the new stream is proxied, so the control plane sees Envoy's
  own node, versions, ACKs and NACKs, never the relay's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from control.loop_thread import LoopThread, call_on
from control.relay.config import RelayConfig
from control.relay.events import ByteQueue
from control.relay.session import Session, SessionError
from control.relay.store import RecordStore
from control.relay.upstream import UpstreamWatch, channel_options
from control.xds.cache import short_type
from control.xds.limits import Limits
from control.xds.server import ADS_SERVICE, Keepalive, server_options
from policies.core.unix_socket import clear_stale

log = logging.getLogger("a1.control.relay")

# Statuses with which a control plane answers this client rather than fails: Envoy gets them.
PASSED_THROUGH = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
})
MAX_DETAILS = 512

PROXY, RECORD = "proxy", "record"


class _Close(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details[:MAX_DETAILS]


@dataclass
class _Stream:
    id: int
    delta: bool
    session: Session
    events: ByteQueue
    mode: str = PROXY
    recordable: bool = False
    call: Any = None  # the control-plane stream while proxying
    generation: int = 0  # of ``call``: events of an older call are dropped
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class Relay:
    """An xDS relay between one kind of Envoy (``config.node_cluster``) and the control plane.

    ``start()`` runs it on its own event loop in a thread (tests, embedding) and returns
    the bound listen address; ``serve()`` runs it on the caller's loop until ``astop()``.
    """

    def __init__(self, config: RelayConfig) -> None:
        self.config = config.check()
        self.store = RecordStore(config.state_dir, config.node_cluster,
                                 max_record_bytes=config.max_message_bytes,
                                 max_state_bytes=config.max_state_bytes)
        self.address = config.listen
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        self._arrivals = itertools.count(1)  # every control-plane response, in reading order
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._watch: UpstreamWatch | None = None
        self._health: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None  # serve() runs until astop() sets it
        self._runner = LoopThread("a1-relay")

    # -- lifecycle ---------------------------------------------------------------------

    async def astart(self) -> str:
        """Load the record, bind, report SERVING; return the bound listen address."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        loaded = self.store.load()
        log.info("relay: record holds %s (%d types read)", self.store.summary(), len(loaded))
        self._channel = grpc.aio.insecure_channel(self.config.upstream,
                                                  options=channel_options(self.config))
        self._watch = UpstreamWatch(self._channel, self.config)
        limits = Limits(max_send_bytes=self.config.max_message_bytes,
                        max_receive_bytes=self.config.max_message_bytes)
        server = grpc.aio.server(options=server_options(limits, Keepalive()))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        listen = self.config.listen
        if listen.startswith("unix:"):
            sock = Path(listen[len("unix:"):])
            sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            clear_stale(str(sock), "relay: listen")
        port = server.add_insecure_port(listen)
        if port == 0:
            raise OSError(f"relay: cannot bind {listen}")
        await server.start()
        if listen.startswith("unix:"):
            os.chmod(listen[len("unix:"):], 0o600)
        else:
            listen = f"{listen.rpartition(':')[0]}:{port}"
        self._server, self.address = server, listen
        for name in ("", ADS_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("relay: listening on %s, control plane %s, node cluster %s",
                 listen, self.config.upstream, self.config.node_cluster)
        return listen

    async def astop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            for name in ("", ADS_SERVICE):
                await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            await self._server.stop(grace)
            self._server = None
        if self._watch is not None:
            await self._watch.close()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self) -> None:
        await self.astart()
        assert self._stopped is not None
        await self._stopped.wait()

    def start(self) -> str:
        """Run on a new event loop in a daemon thread; return the bound listen address."""
        return self._runner.start(self.astart)

    def stop(self, grace: float = 1.0) -> None:
        self._runner.stop(lambda: self.astop(grace), timeout=grace + 30)

    # -- status --------------------------------------------------------------------------

    def _status(self) -> list[dict[str, Any]]:
        return [{"stream": s.id, "delta": s.delta, "mode": s.mode,
                 "node_id": s.session.node.id if s.session.node else None,
                 "node_cluster": s.session.node.cluster if s.session.node else None,
                 "types": s.session.status()}
                for s in sorted(self._streams.values(), key=lambda s: s.id)]

    def streams(self) -> list[dict[str, Any]]:
        """A JSON-able view of every Envoy stream: node, ``mode`` (proxy | record), and
        per type the version Envoy holds and its last NACK text."""
        return call_on(self._loop, self._status)

    # -- streams ---------------------------------------------------------------------------

    async def _stream(self, requests: AsyncIterator[Any], context: Any, delta: bool) -> None:
        if len(self._streams) >= self.config.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"relay: {len(self._streams)} streams open (limit)")
        sid = next(self._ids)
        st = _Stream(sid, delta, Session(sid),
                     ByteQueue(self.config.max_queued_bytes, self.config.max_queued_messages))
        self._streams[st.id] = st
        st.tasks.append(asyncio.create_task(self._read_envoy(requests, st)))
        try:
            first = await st.events.get()
            if first[0] == "down":
                await self._begin(st, first[1])
                batch = [first, *await st.events.get_batch()] if len(st.events) else [first]
                while await self._handle_batch(st, batch, context):
                    batch = await st.events.get_batch()
        except _Close as close:
            await context.abort(close.code, close.details)
        except SessionError as err:
            log.warning("relay: closing stream %d: %s", st.id, err)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"relay: {err}")
        finally:
            for task in st.tasks:
                task.cancel()
            if st.call is not None:
                st.call.cancel()
            del self._streams[st.id]

    async def _begin(self, st: _Stream, first: Any) -> None:
        """Classify the stream by its first request's node, then reach the control plane."""
        if not first.HasField("node"):
            raise SessionError("the first request carries no node")
        st.recordable = not st.delta and first.node.cluster == self.config.node_cluster
        st.session.node = type(first.node)()
        st.session.node.CopyFrom(first.node)
        assert self._channel is not None
        why = await self._reach_upstream()
        if why is not None:
            await self._lose_upstream(st, why)
            return
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        method = stub.DeltaAggregatedResources if st.delta else stub.StreamAggregatedResources
        st.generation += 1
        st.call = method(wait_for_ready=False)
        st.tasks.append(asyncio.create_task(self._read_upstream(st, st.call, st.generation)))

    async def _reach_upstream(self) -> str | None:
        """None once the channel is READY; why not, as soon as a connection attempt fails
        (a booting Envoy is not kept waiting) or at the connect timeout."""
        assert self._channel is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.connect_timeout_s
        state = self._channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                return "connection failing"
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return "relay stopping"
            remaining = deadline - loop.time()
            try:
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return f"not reachable within {self.config.connect_timeout_s:g}s"
            state = self._channel.get_state(try_to_connect=True)
        return None

    async def _handle_batch(self, st: _Stream, batch: list[tuple[Any, ...]],
                            context: Any) -> bool:
        """Apply events in order, then write what the record owes Envoy (in push order);
        False when Envoy's side ended."""
        for event in batch:
            if event[0] == "down_end":
                return False
            await self._handle(st, event, context)
        if st.mode == RECORD:
            for resp in st.session.due(self.store):
                await context.write(resp)
        return True

    async def _handle(self, st: _Stream, event: tuple[Any, ...], context: Any) -> None:
        kind = event[0]
        if kind == "down":
            req = event[1]
            if not st.delta:
                verdict = st.session.on_request(req)
                if verdict.record is not None and st.recordable:
                    await self.store.record(req.type_url, verdict.record, verdict.seq)
                if verdict.kind == "nack":
                    log.warning("relay: stream %d (node %s) NACKed %s: %s", st.id,
                                st.session.node.id if st.session.node else "?",
                                short_type(req.type_url), req.error_detail.message[:300])
            if st.mode == PROXY and st.call is not None:
                # A failed write means the call ended: its reader reports how.
                with contextlib.suppress(Exception):
                    await st.call.write(req)
        elif kind == "up" and event[1] == st.generation:
            if not st.delta:
                st.session.on_response(event[2], upstream=True, seq=event[3])
            await context.write(event[2])
        elif kind == "up_end" and event[1] == st.generation:
            st.call = None
            code, details = event[2], event[3]
            if code in PASSED_THROUGH:
                raise _Close(code, details)
            await self._lose_upstream(st, f"{code.name}: {details}")
        elif kind == "back":
            log.info("relay: stream %d: the control plane is back; closing it so that Envoy "
                     "reconnects through to it", st.id)
            raise _Close(grpc.StatusCode.UNAVAILABLE,
                         "relay: the control plane is reachable again; reconnect to re-sync")

    async def _lose_upstream(self, st: _Stream, why: str) -> None:
        node = st.session.node
        who = f"stream {st.id} (node {node.id if node else '?'}, cluster " \
              f"{node.cluster if node else '?'})"
        if not st.recordable:
            log.warning("relay: %s: control plane lost (%s); not served from the record",
                        who, why[:200])
            raise _Close(grpc.StatusCode.UNAVAILABLE,
                         f"relay: control plane unavailable ({why}); this stream is not "
                         f"served from the record (" + ("Delta" if st.delta else
                                                         "other node cluster") + ")")
        log.warning("relay: %s served from the record (%s): control plane lost: %s", who,
                    self.store.summary(), why[:200])
        st.mode = RECORD
        st.session.on_fallback()
        st.tasks.append(asyncio.create_task(self._wait_back(st)))

    async def _wait_back(self, st: _Stream) -> None:
        assert self._watch is not None
        await self._watch.wait_back()
        await st.events.put(("back",))

    async def _read_envoy(self, requests: AsyncIterator[Any], st: _Stream) -> None:
        try:
            async for req in requests:
                await st.events.put(("down", req), req.ByteSize())
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        except Exception as err:  # the stream was aborted under the reader
            log.debug("relay: reading stream %d: %s: %s", st.id, type(err).__name__, err)
        await st.events.put(("down_end",))

    async def _read_upstream(self, st: _Stream, call: Any, generation: int) -> None:
        code, details = grpc.StatusCode.OK, "the control plane ended the stream"
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                # numbered as read, so "newer" is the control plane's order on this link
                await st.events.put(("up", generation, resp, next(self._arrivals)),
                                    resp.ByteSize())
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details() or ""
        except asyncio.CancelledError:
            return
        except Exception as err:  # a transport failure grpc did not map to a status
            code, details = grpc.StatusCode.UNAVAILABLE, str(err)
        await st.events.put(("up_end", generation, code, details))


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    async def StreamAggregatedResources(self, request_iterator: AsyncIterator[Any],
                                        context: Any) -> None:
        await self._relay._stream(request_iterator, context, delta=False)

    async def DeltaAggregatedResources(self, request_iterator: AsyncIterator[Any],
                                       context: Any) -> None:
        await self._relay._stream(request_iterator, context, delta=True)
