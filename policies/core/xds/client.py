"""A generic ADS client (State-of-the-World or Delta) on its own daemon thread.

Every A1 xDS client (the sidecar, the demo cells, the relay, the control benchmark)
uses this one. Why a thread and grpcio's sync API: the data plane must never wait on
the control plane, so nothing here runs on a caller's event loop; the only way in is
the ``on_update`` callback, called on the client's thread.

Contract (docs/sidecar-xds.md):
- ``on_update(type_url, resources, removed)`` gets the WHOLE current set of that
  type (``{name: value bytes}``) and the names that left it, never a partial diff,
  in both SotW and Delta. Returning ACKs; raising NACKs with ``error_detail`` =
  ``google.rpc.Status(code=3, message=<one line of str(err)>)``, and the client keeps
  its previous set for that type (the NACKed one is forgotten).
- Values are ``Any.value``: the serialized message for Envoy types, the raw bytes
  for A1's custom types. A SotW resource wrapped in ``envoy.service.discovery.v3.
  Resource`` carries its name; an unwrapped Envoy resource is named by its own
  ``name`` (``cluster_name`` for endpoints).
- Bounded: a response bigger than ``max_message_bytes`` never reaches Python (gRPC
  refuses it); a type whose set would exceed ``max_type_bytes`` is NACKed.
- Reconnects forever with jittered exponential backoff (0.2 s → 5 s), re-sending
  its subscriptions; SotW sends the last ACKed ``version_info``, Delta sends
  ``initial_resource_versions`` of what it holds.
"""

from __future__ import annotations

import importlib
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from policies.core.errors import one_line
from policies.core.xds import types
from policies.core.xds.types import RESOURCE_WRAPPER

log = logging.getLogger("a1.xds.client")

MiB = 1024 * 1024
MAX_MESSAGE_BYTES = 64 * MiB  # gRPC receive limit: above Envoy's 4 MiB default, for big bundles
MAX_NACK_MESSAGE = 1024  # characters of error_detail.message
INVALID_ARGUMENT = 3  # google.rpc.Code
WILDCARD = "*"

UpdateCallback = Callable[[str, dict[str, bytes], list[str]], None]

# How to name an unwrapped Envoy resource: type URL -> (pb2 module, class, name field).
_ENVOY_NAMES = {
    types.CLUSTER: ("envoy.config.cluster.v3.cluster_pb2", "Cluster", "name"),
    types.ENDPOINT: ("envoy.config.endpoint.v3.endpoint_pb2", "ClusterLoadAssignment",
                     "cluster_name"),
    types.LISTENER: ("envoy.config.listener.v3.listener_pb2", "Listener", "name"),
    types.ROUTE: ("envoy.config.route.v3.route_pb2", "RouteConfiguration", "name"),
    types.SECRET: ("envoy.extensions.transport_sockets.tls.v3.secret_pb2", "Secret", "name"),
}  # fmt: skip


@dataclass(frozen=True)
class Node:
    """The identity the server groups clients by (``cluster``) and reports (``id``).

    ``metadata`` goes out as ``node.metadata`` string fields (the sidecar announces
    its ``a1.metrics_url`` there, for the rollout's scraper)."""

    id: str
    cluster: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)

    def to_proto(self) -> base_pb2.Node:
        node = base_pb2.Node(id=self.id, cluster=self.cluster, user_agent_name="a1")
        if self.metadata:
            node.metadata.update(dict(self.metadata))
        return node


@dataclass
class TypeStatus:
    """What the client holds and reported for one type (a copy, for status pages)."""

    type_url: str
    names: tuple[str, ...] | None  # None: wildcard
    version: str = ""  # last ACKed version_info (SotW) / system_version_info (Delta)
    resources: dict[str, str] = field(default_factory=dict)  # name -> resource version
    acks: int = 0
    nacks: int = 0
    last_nack: str = ""  # error_detail.message of the last NACK ("" if none)
    last_nack_version: str = ""


@dataclass(frozen=True)
class ClientStatus:
    target: str
    delta: bool
    connected: bool
    reconnects: int
    last_error: str
    types: dict[str, TypeStatus]


def _type_order(type_url: str) -> int:
    try:
        return types.PUSH_ORDER.index(type_url)
    except ValueError:
        return len(types.PUSH_ORDER)


def _name_of(type_url: str, value: bytes) -> str:
    spec = _ENVOY_NAMES.get(type_url)
    if spec is None:
        raise ValueError(
            f"{type_url}: resource has no name (custom types must be wrapped in "
            f"envoy.service.discovery.v3.Resource)"
        )
    module, cls, attr = spec
    msg = getattr(importlib.import_module(module), cls)()
    msg.ParseFromString(value)
    return str(getattr(msg, attr))


class _Type:
    """Per-type protocol state; guarded by ``AdsClient._lock``."""

    def __init__(self, type_url: str, names: Iterable[str] | None) -> None:
        self.type_url = type_url
        self.names: frozenset[str] | None = None if names is None else frozenset(names)
        self.held: dict[str, bytes] = {}  # the last set the callback accepted
        self.versions: dict[str, str] = {}  # name -> resource version
        self.version = ""  # last ACKed version_info
        self.nonce = ""  # last nonce received on the current stream
        self.acked = False
        self.status = TypeStatus(type_url, None if names is None else tuple(sorted(names)))

    def wanted(self, name: str) -> bool:
        return self.names is None or name in self.names


class AdsClient:
    """``start()``, ``wait_synced(timeout)``, ``subscribe(type_url, names)``, ``stop()``.

    ``subscriptions`` maps each type URL to the resource names wanted, or None for a
    wildcard subscription. Requests go out in ``types.PUSH_ORDER``.
    """

    def __init__(
        self,
        target: str,
        node: Node,
        subscriptions: Mapping[str, Iterable[str] | None],
        on_update: UpdateCallback,
        *,
        delta: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_type_bytes: int = MAX_MESSAGE_BYTES,
        keepalive_time: float = 30.0,
        keepalive_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        credentials: grpc.ChannelCredentials | None = None,
        name: str = "ads-client",
    ) -> None:
        self.target = target
        self.node = node
        self.delta = delta
        self.on_update = on_update
        self.max_message_bytes = max_message_bytes
        self.max_type_bytes = max_type_bytes
        self.backoff = (backoff_initial, backoff_max)
        self.credentials = credentials
        self.name = name
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # Our own loop does the backoff; keep the channel's out of its way.
            ("grpc.initial_reconnect_backoff_ms", int(backoff_initial * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(backoff_initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(backoff_max * 1000)),
        ]
        self._lock = threading.Lock()
        self._types: dict[str, _Type] = {}
        for type_url, names in subscriptions.items():
            self._types[type_url] = _Type(type_url, names)
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] | None = None
        self._call: Any = None
        self._connected = False
        self._reconnects = 0
        self._last_error = ""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            if self._queue is not None:
                self._queue.put(None)
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """True once every subscribed type has ACKed at least one response."""
        return self._synced.wait(timeout)

    def subscribe(self, type_url: str, names: Iterable[str] | None) -> None:
        """Change (or add) a subscription at runtime; sent on the live stream if any.

        Names dropped from a subscription leave the held set at that type's next
        update (they show in its ``removed``), so the callback stays the one place
        where a type's set changes.
        """
        with self._lock:
            t = self._types.get(type_url)
            new = t is None
            if t is None:
                t = self._types[type_url] = _Type(type_url, names)
                self._synced.clear()
                old: frozenset[str] | None = frozenset()
            else:
                old = t.names
                t.names = None if names is None else frozenset(names)
            t.status.names = None if t.names is None else tuple(sorted(t.names))
            if self._queue is None:
                return
            if new:
                req = self._initial(t)
            elif self.delta:
                req = self._delta_change(t, old)
            else:
                req = self._sotw_request(t, t.version)
            self._queue.put(req)

    # -- status ------------------------------------------------------------------------

    def status(self) -> ClientStatus:
        with self._lock:
            copies = {}
            for url, t in self._types.items():
                s = t.status
                copies[url] = TypeStatus(
                    url, s.names, s.version, dict(t.versions), s.acks, s.nacks,
                    s.last_nack, s.last_nack_version,
                )  # fmt: skip
            return ClientStatus(
                self.target, self.delta, self._connected, self._reconnects, self._last_error,
                copies,
            )  # fmt: skip

    # -- the stream loop -----------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            got_response = False
            try:
                got_response = self._stream()
            except Exception as err:  # the client must outlive anything; log and retry
                self._last_error = one_line(err, MAX_NACK_MESSAGE)
                log.error(
                    "%s: ADS stream to %s failed: %s", self.name, self.target, self._last_error
                )
            if self._stop.is_set():
                break
            self._reconnects += 1
            if got_response:
                delay = self.backoff[0]
            pause = random.uniform(delay / 2, delay)
            delay = min(delay * 2, self.backoff[1])
            self._stop.wait(pause)

    def _stream(self) -> bool:
        """One ADS stream until it ends; True if it carried at least one response."""
        if self.credentials is None:
            channel = grpc.insecure_channel(self.target, options=self._options)
        else:
            channel = grpc.secure_channel(self.target, self.credentials, options=self._options)
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        got = False
        try:
            if not self._wait_ready(channel):
                return False
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            with self._lock:
                if self._stop.is_set():
                    return False
                for t in sorted(self._types.values(), key=lambda t: _type_order(t.type_url)):
                    t.nonce = ""
                    q.put(self._initial(t))
                self._queue = q
                rpc = (
                    stub.DeltaAggregatedResources if self.delta else stub.StreamAggregatedResources
                )
                self._call = call = rpc(_drain(q))
                self._connected = True
            log.info("%s: connected to %s", self.name, self.target)
            try:
                for resp in call:
                    got = True
                    if self.delta:
                        self._on_delta(resp, q)
                    else:
                        self._on_sotw(resp, q)
            except grpc.RpcError as err:
                if not self._stop.is_set():
                    self._last_error = one_line(f"{err.code().name}: {err.details()}")
                    log.warning(
                        "%s: ADS stream to %s ended: %s", self.name, self.target, self._last_error
                    )
        finally:
            with self._lock:
                self._queue = None
                self._call = None
                self._connected = False
            q.put(None)
            channel.close()
        return got

    def _wait_ready(self, channel: grpc.Channel) -> bool:
        """Wait (at most the longest backoff) for a connection, so status can say why not."""
        ready = grpc.channel_ready_future(channel)
        deadline = self.backoff[1]
        waited = 0.0
        while not self._stop.is_set():
            try:
                ready.result(timeout=0.25)
                return True
            except grpc.FutureTimeoutError:
                waited += 0.25
                if waited >= deadline:
                    break
        ready.cancel()
        if not self._stop.is_set():
            self._last_error = f"cannot connect to {self.target} (unreachable)"
        return False

    # -- requests --------------------------------------------------------------------------

    def _initial(self, t: _Type) -> Any:
        if not self.delta:
            return self._sotw_request(t, t.version)
        return discovery_pb2.DeltaDiscoveryRequest(
            node=self.node.to_proto(),
            type_url=t.type_url,
            resource_names_subscribe=[] if t.names is None else sorted(t.names),
            initial_resource_versions={n: v for n, v in t.versions.items() if t.wanted(n)},
        )

    def _sotw_request(self, t: _Type, version: str, error: str | None = None) -> Any:
        req = discovery_pb2.DiscoveryRequest(
            node=self.node.to_proto(),
            type_url=t.type_url,
            version_info=version,
            resource_names=[] if t.names is None else sorted(t.names),
            response_nonce=t.nonce,
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=INVALID_ARGUMENT, message=error))
        return req

    def _delta_change(self, t: _Type, old: frozenset[str] | None) -> Any:
        now = t.names
        if old is None and now is not None:
            add, drop = sorted(now), [WILDCARD]
        elif old is not None and now is None:
            add, drop = [WILDCARD], sorted(old)
        else:
            assert old is not None and now is not None
            add, drop = sorted(now - old), sorted(old - now)
        return discovery_pb2.DeltaDiscoveryRequest(
            node=self.node.to_proto(), type_url=t.type_url,
            resource_names_subscribe=add, resource_names_unsubscribe=drop,
        )  # fmt: skip

    def _delta_reply(self, t: _Type, nonce: str, error: str | None = None) -> Any:
        req = discovery_pb2.DeltaDiscoveryRequest(
            node=self.node.to_proto(), type_url=t.type_url, response_nonce=nonce
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=INVALID_ARGUMENT, message=error))
        return req

    # -- responses ---------------------------------------------------------------------------

    def _on_sotw(self, resp: Any, q: queue.SimpleQueue[Any]) -> None:
        with self._lock:
            t = self._types.get(resp.type_url)
            if t is None:
                log.warning(
                    "%s: ignoring a response for unsubscribed type %s", self.name, resp.type_url
                )
                return
            t.nonce = resp.nonce
            held = dict(t.held)
            names = t.names
        try:
            decoded = _decode_sotw(resp)
            # The whole set for a wildcard, LDS/CDS (spec) and A1's types (sent whole);
            # RDS/EDS/SDS responses may carry a subset, which updates only those names.
            full = (
                names is None
                or t.type_url in types.FULL_STATE_TYPES
                or types.is_a1_type(t.type_url)
            )
            base = {} if full else {n: v for n, v in held.items() if n in names}
            new = {n: v for n, (v, _) in decoded.items() if names is None or n in names}
            versions = {n: ver for n, (_, ver) in decoded.items() if n in new}
            new = {**base, **new}
            self._deliver(t, held, new)
        except Exception as err:
            self._nack(
                t, resp.version_info, err, lambda msg: self._sotw_request(t, t.version, msg), q
            )
            return
        with self._lock:
            t.held = new
            t.versions = {n: versions.get(n, t.versions.get(n, "")) for n in new}
            t.version = resp.version_info
            self._ack(t, resp.version_info)
            q.put(self._sotw_request(t, t.version))

    def _on_delta(self, resp: Any, q: queue.SimpleQueue[Any]) -> None:
        with self._lock:
            t = self._types.get(resp.type_url)
            if t is None:
                log.warning(
                    "%s: ignoring a response for unsubscribed type %s", self.name, resp.type_url
                )
                return
            t.nonce = resp.nonce
            held = dict(t.held)
            versions = dict(t.versions)
        try:
            new = {n: v for n, v in held.items() if t.wanted(n)}
            for r in resp.resources:
                if not r.name:
                    raise ValueError(f"{t.type_url}: a resource has no name")
                if not r.HasField("resource"):
                    continue  # a TTL heartbeat: the resource is unchanged
                if r.resource.type_url != t.type_url:
                    raise ValueError(
                        f"{t.type_url}: resource {r.name[:200]!r} has type {r.resource.type_url}"
                    )
                if t.wanted(r.name):
                    new[r.name] = r.resource.value
                    versions[r.name] = r.version
            for name in [*resp.removed_resources, *(r.name for r in resp.removed_resource_names)]:
                new.pop(name, None)
            versions = {n: versions.get(n, "") for n in new}
            self._deliver(t, held, new)
        except Exception as err:
            self._nack(
                t,
                resp.system_version_info,
                err,
                lambda msg: self._delta_reply(t, resp.nonce, msg),
                q,
            )
            return
        with self._lock:
            t.held = new
            t.versions = versions
            t.version = resp.system_version_info
            self._ack(t, resp.system_version_info)
            q.put(self._delta_reply(t, resp.nonce))

    def _deliver(self, t: _Type, held: dict[str, bytes], new: dict[str, bytes]) -> None:
        """Check the budget, then hand the whole set to the callback (which may raise)."""
        size = sum(len(n) + len(v) for n, v in new.items())
        if size > self.max_type_bytes:
            raise ValueError(
                f"{t.type_url}: {len(new)} resources of {size} bytes exceed the client's "
                f"budget of {self.max_type_bytes} bytes"
            )
        if new == held and t.acked:
            return  # nothing changed (a re-send after reconnect): ACK without re-applying
        removed = sorted(set(held) - set(new))
        self.on_update(t.type_url, dict(new), removed)

    def _ack(self, t: _Type, version: str) -> None:
        t.acked = True
        t.status.version = version
        t.status.acks += 1
        log.info(
            "%s: ACK %s version %s (%d resources)",
            self.name,
            t.type_url,
            version or "-",
            len(t.held),
        )
        if all(x.acked for x in self._types.values()):
            self._synced.set()

    def _nack(
        self, t: _Type, version: str, err: BaseException, build: Callable[[str], Any],
        q: queue.SimpleQueue[Any],
    ) -> None:  # fmt: skip
        msg = one_line(err, MAX_NACK_MESSAGE)
        log.warning("%s: NACK %s version %s: %s", self.name, t.type_url, version or "-", msg)
        with self._lock:
            t.status.nacks += 1
            t.status.last_nack = msg
            t.status.last_nack_version = version
            q.put(build(msg))


def _decode_sotw(resp: Any) -> dict[str, tuple[bytes, str]]:
    """``{name: (value bytes, resource version)}`` of a SotW response; raises on bad input."""
    out: dict[str, tuple[bytes, str]] = {}
    for a in resp.resources:
        version = ""
        if a.type_url == RESOURCE_WRAPPER:
            wrapped = discovery_pb2.Resource()
            wrapped.ParseFromString(a.value)
            inner, name, version = wrapped.resource, wrapped.name, wrapped.version
        else:
            inner, name = a, ""
        if inner.type_url != resp.type_url:
            raise ValueError(
                f"{resp.type_url}: response carries a resource of type {inner.type_url[:200]}"
            )
        if not name:
            name = _name_of(resp.type_url, inner.value)
        if not name:
            raise ValueError(f"{resp.type_url}: a resource has no name")
        if name in out:
            raise ValueError(f"{resp.type_url}: resource {name[:200]!r} appears twice")
        out[name] = (inner.value, version)
    return out


def _drain(q: queue.SimpleQueue[Any]) -> Iterator[Any]:
    """The request stream: whatever the client queues, until None."""
    while True:
        item = q.get()
        if item is None:
            return
        yield item
