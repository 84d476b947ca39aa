"""The relay never serves a downstream stream older config than that stream was sent.

CI saw Envoy answer 503 for a cell right after it converged, while the relay's upstream
link got ``reset_peer``. Suspected: the control plane's stream resets between Envoy
*receiving* a newer response and *ACKing* it, and the relay falls back to its record
(the last ACKed, older) and serves it. These tests drive that window deterministically:
a control plane the test scripts (``FakeControlPlane``: each ADS stream's responses,
its reset, and the health status the relay's prober sees), the real relay, and a real
gRPC ADS client in Envoy's place. Then a hypothesis property runs random interleavings
of pushes, resets, ACKs, NACKs and other streams' ACKs through the relay's own
bookkeeping (``Session`` + ``RecordStore``) and checks that what a stream is sent, per
type, never goes back.

A test proves that nothing older was sent by a sentinel: the relay handles a stream's
events in order, so when the answer to a later request arrives first, nothing came
before it.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from control.relay import Relay, RelayConfig
from control.relay.session import Session
from control.relay.store import RecordStore
from policies.core.xds.types import CLUSTER, LISTENER
from tests.waiting import wait_until
from tests.xds_client import AdsClient

GROUP = "a1-edge"
MIB = 1 << 20
_RESET = object()


def response(type_url: str, version: str, nonce: str) -> discovery_pb2.DiscoveryResponse:
    """One resource of ``type_url`` whose content names ``version``."""
    msg: Any = (cluster_pb2.Cluster(name="backend", alt_stat_name=version)
                if type_url == CLUSTER else listener_pb2.Listener(name="edge",
                                                                   stat_prefix=version))
    packed = any_pb2.Any()
    packed.Pack(msg)
    return discovery_pb2.DiscoveryResponse(type_url=type_url, version_info=version,
                                           nonce=nonce, resources=[packed])


class UpStream:
    """One ADS stream at the fake control plane: the requests the relay forwarded, and
    the responses (or the reset) the test writes."""

    def __init__(self, requests: Iterator[Any], nonces: Iterator[int]) -> None:
        self.requests: queue.Queue[Any] = queue.Queue()
        self.out: queue.Queue[Any] = queue.Queue()
        self._nonces = nonces
        threading.Thread(target=self._read, args=(requests,), daemon=True).start()

    def _read(self, requests: Iterator[Any]) -> None:
        try:
            for req in requests:
                self.requests.put(req)
        except Exception:  # the stream ended under the reader
            pass
        self.requests.put(None)

    def expect(self, match: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The next forwarded request that ``match``es (others are skipped)."""
        while True:
            req = self.requests.get(timeout=timeout)
            assert req is not None, "the relay ended the upstream stream"
            if match(req):
                return req

    def push(self, type_url: str, version: str) -> discovery_pb2.DiscoveryResponse:
        resp = response(type_url, version, f"cp-{next(self._nonces)}")
        self.out.put(resp)
        return resp

    def reset(self) -> None:
        self.out.put(_RESET)


class FakeControlPlane(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """An ADS server the test scripts, with a health service the relay's prober reads."""

    def __init__(self) -> None:
        self.streams: queue.Queue[UpStream] = queue.Queue()
        self._nonces = itertools.count(1)
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.up(True)
        self.server.start()

    def up(self, serving: bool) -> None:
        """What the relay's health probe sees (NOT_SERVING keeps it serving the record)."""
        self.health.set("", health_pb2.HealthCheckResponse.SERVING if serving
                        else health_pb2.HealthCheckResponse.NOT_SERVING)

    def next_stream(self, timeout: float = 10.0) -> UpStream:
        return self.streams.get(timeout=timeout)

    def StreamAggregatedResources(self, request_iterator: Any, context: Any) -> Any:
        stream = UpStream(request_iterator, self._nonces)
        self.streams.put(stream)
        while context.is_active():
            try:
                item = stream.out.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is _RESET:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset by peer (test)")
            yield item

    def stop(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def cp() -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane()
    yield plane
    plane.stop()


@pytest.fixture
def make_relay(cp: FakeControlPlane, tmp_path: Path) -> Iterator[Callable[[], Relay]]:
    made: list[Relay] = []

    def make() -> Relay:
        relay = Relay(RelayConfig(upstream=cp.address, listen="127.0.0.1:0",
                                  state_dir=tmp_path / "state", connect_timeout_s=2.0,
                                  backoff_base_s=0.05, backoff_max_s=0.2,
                                  probe_timeout_s=0.5))
        relay.start()
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.stop(grace=0.2)


@pytest.fixture
def clients() -> Iterator[Callable[..., AdsClient]]:
    made: list[AdsClient] = []

    def connect(relay: Relay, node_id: str = "edge-envoy-1") -> AdsClient:
        client = AdsClient(relay.address, node_id=node_id)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def is_ack(type_url: str, version: str) -> Callable[[Any], bool]:
    return lambda r: r.type_url == type_url and r.version_info == version and \
        bool(r.response_nonce) and not r.HasField("error_detail")


def mode_of(relay: Relay, node_id: str) -> str | None:
    return next((s["mode"] for s in relay.streams() if s["node_id"] == node_id), None)


def open_upstream(cp: FakeControlPlane, client: AdsClient, type_url: str,
                  version: str = "") -> UpStream:
    """Subscribe: the relay opens its control-plane stream on the client's first request."""
    client.request(type_url, version=version)
    return cp.next_stream()


def sync(client: AdsClient, up: UpStream, type_url: str, version: str,
         requested: bool = False) -> Any:
    """Subscribe (unless done), get ``version`` from the control plane, ACK."""
    if not requested:
        client.request(type_url)
    up.expect(lambda r: r.type_url == type_url and not r.response_nonce)
    up.push(type_url, version)
    got = client.recv()
    assert (got.type_url, got.version_info) == (type_url, version)
    client.ack(got)
    up.expect(is_ack(type_url, version))
    return got


def reset_upstream(cp: FakeControlPlane, up: UpStream, relay: Relay, node_id: str) -> None:
    """The control plane's stream resets; the prober keeps finding it away."""
    cp.up(False)
    up.reset()
    wait_until(lambda: mode_of(relay, node_id) == "record", "the stream served from the record")


def sentinel(client: AdsClient) -> None:
    """Ask for LDS holding nothing: the record answers it. Events are handled in order,
    so if LDS is the next thing received, nothing (no older CDS) was written before."""
    client.request(LISTENER, version="")
    got = client.recv()
    assert got.type_url == LISTENER, f"the relay wrote {got.type_url} {got.version_info} first"


# -- the window: received, not yet ACKed, when the control plane's stream resets ---------


@pytest.mark.parametrize("answer", ["ack", "nack", "none"])
def test_a_response_received_before_an_upstream_reset_is_never_followed_by_older_config(
        cp: FakeControlPlane, make_relay: Callable[[], Relay],
        clients: Callable[..., AdsClient], answer: str) -> None:
    relay = make_relay()
    client = clients(relay)
    up = open_upstream(cp, client, CLUSTER)
    sync(client, up, CLUSTER, "c1", requested=True)
    sync(client, up, LISTENER, "l1")
    assert relay.store.get(CLUSTER).version == "c1"  # type: ignore[union-attr]

    up.push(CLUSTER, "c2")  # the cell is healthy again
    c2 = client.recv()
    assert c2.version_info == "c2"
    reset_upstream(cp, up, relay, "edge-envoy-1")  # before Envoy's answer reached anyone
    if answer == "ack":
        client.ack(c2)
    elif answer == "nack":
        client.nack(c2, "rejected", version="c1")
    sentinel(client)
    expect = "c2" if answer == "ack" else "c1"
    wait_until(lambda: relay.store.get(CLUSTER).version == expect,  # type: ignore[union-attr]
               f"the record at {expect}")

    # The control plane is back: the stream is closed, Envoy reconnects and offers what it
    # holds itself (the relay forwards it unchanged); the control plane moves it on.
    cp.up(True)
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    again = clients(relay)
    held = "c2" if answer == "ack" else "c1"
    up2 = open_upstream(cp, again, CLUSTER, held)
    offered = up2.expect(lambda r: r.type_url == CLUSTER)
    assert offered.version_info == held and offered.node.id == "edge-envoy-1"


@pytest.mark.parametrize("order", ["nack-then-reset", "reset-then-resubscribe"])
def test_a_stream_holding_nothing_that_was_sent_newer_config_is_not_sent_the_older_record(
        cp: FakeControlPlane, make_relay: Callable[[], Relay],
        clients: Callable[..., AdsClient], order: str) -> None:
    """The record (c1, from another Envoy) is older than what this stream received (c2)."""
    relay = make_relay()
    other = clients(relay, "edge-envoy-0")
    up0 = open_upstream(cp, other, CLUSTER)
    sync(other, up0, CLUSTER, "c1", requested=True)
    sync(other, up0, LISTENER, "l1")

    client = clients(relay)
    up = open_upstream(cp, client, CLUSTER)
    up.expect(lambda r: r.type_url == CLUSTER)
    up.push(CLUSTER, "c2")
    c2 = client.recv()
    if order == "nack-then-reset":
        client.nack(c2, "rejected")  # Envoy holds nothing of CDS; it was sent c2
        up.expect(lambda r: r.HasField("error_detail"))
        reset_upstream(cp, up, relay, "edge-envoy-1")
    else:
        reset_upstream(cp, up, relay, "edge-envoy-1")
        # a request that carries c2's nonce but is neither its ACK nor its NACK
        client.request(CLUSTER, ["backend"], version="", nonce=c2.nonce)
    sentinel(client)
    view = next(s for s in relay.streams() if s["node_id"] == "edge-envoy-1")
    assert view["types"][CLUSTER]["sent"] == "c2"


def test_a_late_ack_of_an_older_response_does_not_replace_a_newer_record(
        cp: FakeControlPlane, make_relay: Callable[[], Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    slow, fast = clients(relay, "edge-envoy-slow"), clients(relay, "edge-envoy-fast")
    slow.request(CLUSTER)
    up_slow = cp.next_stream()
    fast.request(CLUSTER)
    up_fast = cp.next_stream()
    up_slow.expect(lambda r: r.type_url == CLUSTER)
    up_fast.expect(lambda r: r.type_url == CLUSTER)
    up_slow.push(CLUSTER, "c1")
    c1_slow = slow.recv()
    up_fast.push(CLUSTER, "c1")
    fast.ack(fast.recv())
    up_fast.expect(is_ack(CLUSTER, "c1"))
    up_fast.push(CLUSTER, "c2")
    fast.ack(fast.recv())
    up_fast.expect(is_ack(CLUSTER, "c2"))
    slow.ack(c1_slow)  # the slow Envoy's ACK of c1 arrives last
    up_slow.expect(is_ack(CLUSTER, "c1"))
    assert relay.store.get(CLUSTER).version == "c2"  # type: ignore[union-attr]

    # what a booting Envoy gets during an outage, from memory and after a relay restart
    cp.up(False)
    up_slow.reset()
    up_fast.reset()
    relay.stop(grace=0.2)
    restarted = make_relay()
    assert restarted.store.get(CLUSTER).version == "c2"  # type: ignore[union-attr]



def test_a_late_ack_does_not_bring_back_older_config_after_the_newest_was_dropped(
        tmp_path: Path) -> None:
    """The newest ACKed response passed the state bound, so the type's record was dropped
    (never kept stale); an older response ACKed late must not become the record either."""
    store = RecordStore(tmp_path, GROUP, max_record_bytes=MIB, max_state_bytes=400)
    small = response(CLUSTER, "c1", "cp-1")
    big = response(CLUSTER, "c3", "cp-3")
    big.resources[0].value += b"x" * 1000
    asyncio.run(store.record(CLUSTER, small, 1))
    asyncio.run(store.record(CLUSTER, big, 3))
    assert store.get(CLUSTER) is None and not store.path(CLUSTER).exists()
    asyncio.run(store.record(CLUSTER, response(CLUSTER, "c2", "cp-2"), 2))
    assert store.get(CLUSTER) is None and not store.path(CLUSTER).exists()


# -- the property: random interleavings through the relay's own bookkeeping ----------------

TYPES = (CLUSTER, LISTENER)
OPS = st.lists(st.tuples(
    st.sampled_from(["push", "push", "ack", "ack", "nack", "resubscribe", "reset", "back",
                     "other_ack", "late_ack", "subscribe"]),
    st.sampled_from(TYPES)), min_size=8, max_size=40)


class Model:
    """One Envoy (what it holds per type) on a stream through ``Session``, the store, and
    a control plane numbering its responses in arrival order, as ``Relay`` does."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.seqs = itertools.count(1)
        self.sids = itertools.count(1)
        self.holds: dict[str, str] = {}  # what Envoy accepted, per type
        self.seq_of: dict[str, int] = {}  # version -> arrival number
        self.acked_seqs: dict[str, list[int]] = {t: [] for t in TYPES}
        self.old: list[tuple[str, discovery_pb2.DiscoveryResponse, int]] = []  # for late ACKs
        self.new_stream()

    def new_stream(self) -> None:
        """Envoy (re)connects: a new session, proxied, offering what it holds."""
        self.session = Session(next(self.sids))
        self.proxy = True
        self.sent: dict[str, list[int]] = {t: [] for t in TYPES}
        self.last: dict[str, discovery_pb2.DiscoveryResponse] = {}
        self.nacked: dict[str, set[str]] = {t: set() for t in TYPES}
        for t in TYPES:
            self.request(t, version=self.holds.get(t, ""))

    def request(self, type_url: str, *, version: str, nonce: str = "",
                error: str | None = None) -> None:
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version,
                                             response_nonce=nonce)
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if self.session.node is None:
            req.node.id = "edge-envoy-1"
        verdict = self.session.on_request(req)
        event(f"request: {verdict.kind}")
        if verdict.record is not None:
            self.acked_seqs[type_url].append(verdict.seq)
            asyncio.run(self.store.record(type_url, verdict.record, verdict.seq))

    def write(self, resp: discovery_pb2.DiscoveryResponse, seq: int) -> None:
        sent = self.sent[resp.type_url]
        assert not sent or seq >= sent[-1], \
            f"{resp.type_url}: sent #{seq} ({resp.version_info}) after #{sent[-1]}"
        assert resp.version_info not in self.nacked[resp.type_url] or \
            not resp.nonce.startswith("relay-"), f"{resp.version_info} was NACKed here"
        sent.append(seq)
        self.last[resp.type_url] = resp

    def step(self, op: str, t: str) -> None:
        last = self.last.get(t)
        if op == "push" and self.proxy:
            seq = next(self.seqs)
            resp = response(t, f"{t[-7:]}-{seq}", f"cp-{seq}")
            self.seq_of[resp.version_info] = seq
            self.session.on_response(resp, upstream=True, seq=seq)
            self.write(resp, seq)
            self.old.append((t, resp, seq))
        elif op == "ack" and last is not None:
            self.holds[t] = last.version_info
            self.request(t, version=last.version_info, nonce=last.nonce)
        elif op == "nack" and last is not None:
            self.nacked[t].add(last.version_info)
            self.request(t, version=self.holds.get(t, ""), nonce=last.nonce, error="no")
        elif op == "resubscribe":
            self.request(t, version=self.holds.get(t, ""), nonce=last.nonce if last else "")
        elif op == "subscribe":  # a new subscription holding nothing (Envoy let it go)
            self.holds.pop(t, None)
            self.request(t, version="")
        elif op == "reset" and self.proxy:
            self.proxy = False
            self.session.on_fallback()
        elif op == "back" and not self.proxy:
            self.new_stream()
        elif op in ("other_ack", "late_ack"):  # another Envoy's stream ACKs
            if op == "other_ack":
                seq = next(self.seqs)
                resp = response(t, f"{t[-7:]}-{seq}", f"cp-{seq}")
            else:
                olds = [o for o in self.old if o[0] == t]
                if not olds:
                    return
                _, resp, seq = olds[0]
            self.acked_seqs[t].append(seq)
            asyncio.run(self.store.record(t, resp, seq))
        if not self.proxy:
            for resp in self.session.due(self.store):
                record = self.store.get(resp.type_url)
                assert record is not None
                event("served from the record")
                self.write(resp, record.seq)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_what_a_stream_is_sent_never_goes_back_and_the_record_is_the_newest_ack(
        ops: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as state:
        model = Model(RecordStore(Path(state), GROUP, max_record_bytes=MIB,
                                  max_state_bytes=4 * MIB))
        for op, type_url in ops:
            model.step(op, type_url)
        for t in TYPES:
            record = model.store.get(t)
            if model.acked_seqs[t]:
                assert record is not None and record.seq == max(model.acked_seqs[t])
            reread = RecordStore(Path(state), GROUP, max_record_bytes=MIB,
                                 max_state_bytes=4 * MIB)
            reread.load()
            again = reread.get(t)
            assert (again.version if again else None) == (record.version if record else None)
