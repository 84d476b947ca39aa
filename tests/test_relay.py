"""The xDS relay through real gRPC: a scripted Envoy-like client, the relay, and the real
``control.xds.XdsServer``. Pass-through (the control plane sees the client's own node,
ACKs and NACK text), the record (last ACKed, never NACKed), serving from it while the
control plane is down, re-proxying when it is back, and the disk as an attack surface.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from control.relay import Relay, RelayConfig
from control.relay.cli import main as relay_main
from control.relay.session import Session
from control.relay.store import (
    FILE_NAMES,
    MAGIC,
    RecordError,
    RecordStore,
    decode_record,
    encode_record,
)
from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.core.errors import ConfigError
from policies.core.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.waiting import free_port, wait_until
from tests.xds_client import AdsClient

GROUP = "a1-edge"
MIB = 1 << 20




def snapshot(tag: str, pad: int = 0) -> Snapshot:
    """One cluster, its endpoints, a listener and a route; ``tag`` changes every version."""
    cluster = cluster_pb2.Cluster(name="backend", type=cluster_pb2.Cluster.EDS,
                                  alt_stat_name=tag + "x" * pad)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="backend")
    listener = listener_pb2.Listener(name="edge", stat_prefix=tag)
    route = route_pb2.RouteConfiguration(name="edge-routes",
                                         request_headers_to_remove=[f"x-{tag}"])
    return Snapshot(Resource.from_message(m) for m in (cluster, cla, listener, route))


class Upstream:
    """The real control plane on a fixed port, so that it can be stopped and come back."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache, self.port = cache, free_port()
        self.server: XdsServer | None = None

    def start(self) -> XdsServer:
        self.server = XdsServer(self.cache, port=self.port, registry=CollectorRegistry())
        self.server.start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=0.2)
            self.server = None


@pytest.fixture
def cache() -> SnapshotCache:
    c = SnapshotCache()
    c.set_snapshot(GROUP, snapshot("v1"))
    return c


@pytest.fixture
def upstream(cache: SnapshotCache) -> Iterator[Upstream]:
    up = Upstream(cache)
    up.start()
    yield up
    up.stop()


def relay_config(upstream: Upstream, state: Path, **kw: Any) -> RelayConfig:
    defaults: dict[str, Any] = dict(
        upstream=f"127.0.0.1:{upstream.port}", listen="127.0.0.1:0", state_dir=state,
        connect_timeout_s=1.0, backoff_base_s=0.05, backoff_max_s=0.3, probe_timeout_s=0.5)
    defaults.update(kw)
    return RelayConfig(**defaults)


@pytest.fixture
def make_relay(upstream: Upstream, tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    made: list[Relay] = []

    def make(**kw: Any) -> Relay:
        relay = Relay(relay_config(upstream, tmp_path / "state", **kw))
        relay.start()
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.stop(grace=0.2)


@pytest.fixture
def clients() -> Iterator[Callable[..., AdsClient]]:
    made: list[AdsClient] = []

    def connect(relay: Relay, **kw: Any) -> AdsClient:
        client = AdsClient(relay.address, **kw)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def server_entry(server: XdsServer, node_id: str) -> dict[str, Any] | None:
    return next((c for c in server.connections() if c["node_id"] == node_id), None)


def sync_all(client: AdsClient, server: XdsServer, types: tuple[str, ...] = (
        CLUSTER, ENDPOINT, LISTENER, ROUTE)) -> dict[str, discovery_pb2.DiscoveryResponse]:
    """Subscribe to ``types`` through the relay, ACK each response, wait for the ACKs."""
    got = {}
    for type_url in types:
        names = {ENDPOINT: ["backend"], ROUTE: ["edge-routes"]}.get(type_url, [])
        client.request(type_url, names)
        resp = client.recv()
        assert resp.type_url == type_url
        client.ack(resp, names)
        got[type_url] = resp
    for type_url, resp in got.items():
        assert server.wait_acked(GROUP, type_url, resp.version_info, timeout=10)
    return got


def mode_of(relay: Relay, node_id: str) -> str | None:
    return next((s["mode"] for s in relay.streams() if s["node_id"] == node_id), None)


# -- pass-through and the record ---------------------------------------------------------


def test_responses_pass_through_and_the_control_plane_sees_the_client(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    relay = make_relay()
    client = clients(relay, node_id="edge-envoy-1")
    got = sync_all(client, upstream.server)  # type: ignore[arg-type]
    snap = cache.snapshot(GROUP)
    assert snap is not None
    for type_url, resp in got.items():
        assert resp.version_info == snap.version(type_url)
        assert [a.value for a in resp.resources] == [
            r.value for r in snap.resources(type_url).values()]
    entry = server_entry(upstream.server, "edge-envoy-1")  # type: ignore[arg-type]
    assert entry is not None and entry["node_cluster"] == GROUP
    # the nonce is the control plane's own: the relay forwards unchanged
    assert entry["types"][CLUSTER]["sent_nonce"] == got[CLUSTER].nonce
    assert entry["types"][CLUSTER]["acked_version"] == snap.version(CLUSTER)
    # recorded and persisted before the ACK was forwarded
    for type_url, resp in got.items():
        record = relay.store.get(type_url)
        assert record is not None and record.version == resp.version_info
        path = relay.store.path(type_url)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert decode_record(path.read_bytes(), type_url, GROUP, MIB).version_info == \
            resp.version_info
    assert stat.S_IMODE(relay.store.state_dir.stat().st_mode) == 0o700
    assert mode_of(relay, "edge-envoy-1") == "proxy"


def test_a_nack_reaches_the_control_plane_with_its_text_and_is_not_recorded(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    relay = make_relay()
    client = clients(relay, node_id="edge-envoy-1")
    v1 = sync_all(client, upstream.server, (CLUSTER,))[CLUSTER]  # type: ignore[arg-type]
    cache.set_snapshot(GROUP, snapshot("v2"))
    v2 = client.recv()
    assert v2.type_url == CLUSTER and v2.version_info != v1.version_info
    client.nack(v2, "cluster backend: unknown field", version=v1.version_info)

    def nacked() -> dict[str, Any] | None:
        entry = server_entry(upstream.server, "edge-envoy-1")  # type: ignore[arg-type]
        st = entry["types"][CLUSTER] if entry else None
        return st if st and st["nack_count"] == 1 else None

    st_ = wait_until(nacked, "the NACK at the control plane")
    assert st_["last_nack"] == "cluster backend: unknown field"
    assert st_["acked_version"] == v1.version_info
    record = relay.store.get(CLUSTER)
    assert record is not None and record.version == v1.version_info
    on_disk = decode_record(relay.store.path(CLUSTER).read_bytes(), CLUSTER, GROUP, MIB)
    assert on_disk.version_info == v1.version_info
    view = relay.streams()[0]["types"][CLUSTER]
    assert view["last_nack"] == "cluster backend: unknown field"


def test_the_record_follows_the_last_ack(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    relay = make_relay()
    client = clients(relay)
    sync_all(client, upstream.server, (CLUSTER,))  # type: ignore[arg-type]
    cache.set_snapshot(GROUP, snapshot("v3"))
    v3 = client.recv()
    client.ack(v3)
    assert upstream.server.wait_acked(  # type: ignore[union-attr]
        GROUP, CLUSTER, v3.version_info, timeout=10)
    assert relay.store.get(CLUSTER).version == v3.version_info  # type: ignore[union-attr]


# -- the control plane away -------------------------------------------------------------


def test_upstream_down_a_fresh_stream_is_served_the_record_and_reproxied_when_back(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    got = sync_all(clients(relay, node_id="edge-envoy-1"), upstream.server)  # type: ignore[arg-type]
    upstream.stop()

    fresh = clients(relay, node_id="edge-envoy-2")  # an Envoy booting during the outage
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        fresh.request(type_url)
        resp = fresh.recv()
        assert resp.type_url == type_url
        assert resp.version_info == got[type_url].version_info
        assert list(resp.resources) == list(got[type_url].resources)
        assert resp.nonce.startswith("relay-")
        fresh.ack(resp)
    wait_until(lambda: mode_of(relay, "edge-envoy-2") == "record", "record mode")
    # no ACK was answered: the next response is the fifth the relay wrote on this stream
    fresh.request(CLUSTER, version="")  # a new subscription holding nothing: answered
    again_cds = fresh.recv()
    assert again_cds.type_url == CLUSTER and again_cds.nonce.endswith("-5")

    upstream.start()
    err = fresh.ended()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    assert "reachable again" in (err.details() or "")
    again = clients(relay, node_id="edge-envoy-2")
    sync_all(again, upstream.server, (CLUSTER,))  # type: ignore[arg-type]
    assert server_entry(upstream.server, "edge-envoy-2") is not None  # type: ignore[arg-type]
    assert mode_of(relay, "edge-envoy-2") == "proxy"


def test_upstream_lost_mid_stream_keeps_the_stream_and_serves_new_subscriptions(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    client = clients(relay, node_id="edge-envoy-1")
    got = sync_all(client, upstream.server)  # type: ignore[arg-type]
    upstream.stop()
    wait_until(lambda: mode_of(relay, "edge-envoy-1") == "record", "record mode")
    # Envoy holds every type: nothing is re-sent. A request that holds nothing is answered.
    client.request(ROUTE, ["edge-routes"], version="")
    resp = client.recv()
    assert (resp.type_url, resp.version_info) == (ROUTE, got[ROUTE].version_info)
    upstream.start()
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE


def test_a_nacked_record_is_not_sent_again_on_that_stream(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    sync_all(clients(relay), upstream.server, (CLUSTER, LISTENER))  # type: ignore[arg-type]
    upstream.stop()
    fresh = clients(relay, node_id="edge-envoy-2")
    fresh.request(CLUSTER)
    cds = fresh.recv()
    fresh.nack(cds, "rejected by this Envoy")
    fresh.request(CLUSTER)  # asks again holding nothing: the NACKed record is not re-sent
    fresh.request(LISTENER)
    assert fresh.recv().type_url == LISTENER  # events are handled in order: no CDS came first
    view = next(s for s in relay.streams() if s["node_id"] == "edge-envoy-2")
    assert view["types"][CLUSTER]["last_nack"] == "rejected by this Envoy"


def test_record_survives_a_relay_restart_during_the_outage(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    first = make_relay()
    got = sync_all(clients(first), upstream.server)  # type: ignore[arg-type]
    first.stop()
    upstream.stop()
    second = make_relay()
    client = clients(second, node_id="edge-envoy-9")
    client.request(LISTENER)
    resp = client.recv()
    assert resp.version_info == got[LISTENER].version_info


def test_push_order_when_several_types_are_due() -> None:
    store = RecordStore(Path(tempfile.mkdtemp()), GROUP, max_record_bytes=MIB,
                        max_state_bytes=MIB)
    for type_url in (ROUTE, LISTENER, ENDPOINT, CLUSTER):
        store._records[type_url] = store_record(type_url)
    session = Session(1)
    for type_url in (ROUTE, LISTENER, ENDPOINT, CLUSTER):
        req = discovery_pb2.DiscoveryRequest(type_url=type_url)
        if session.node is None:
            req.node.id = "n"
        session.on_request(req)
    assert [r.type_url for r in session.due(store)] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
    assert session.due(store) == []  # each answered once


def store_record(type_url: str) -> Any:
    from control.relay.store import Record

    resp = discovery_pb2.DiscoveryResponse(type_url=type_url, version_info="v-" + type_url[-5:])
    return Record(type_url, resp, resp.ByteSize())


# -- who is recorded, Delta, health, concurrency -------------------------------------------


def test_other_node_clusters_are_proxied_but_never_recorded_or_served(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    cache.set_snapshot("a1-sidecar", snapshot("side"))
    relay = make_relay()
    side = clients(relay, node_id="sidecar-1", cluster="a1-sidecar")
    side.request(CLUSTER)
    resp = side.recv()
    side.ack(resp)
    assert upstream.server.wait_acked(  # type: ignore[union-attr]
        "a1-sidecar", CLUSTER, resp.version_info, timeout=10)
    assert relay.store.get(CLUSTER) is None
    upstream.stop()
    err = side.ended()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    assert "not served from the record" in (err.details() or "")


def test_delta_is_proxied_and_closed_while_the_control_plane_is_away(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    relay = make_relay()
    client = clients(relay, delta=True, node_id="edge-delta")
    client.delta_request(CLUSTER, ["*"])
    resp = client.recv()
    assert [r.name for r in resp.resources] == ["backend"]
    client.ack(resp)
    upstream.stop()
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    assert "Delta" in (err.details() or "")


def test_health_and_concurrent_streams(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    with grpc.insecure_channel(relay.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    many = [clients(relay, node_id=f"edge-envoy-{i}") for i in range(6)]
    for client in many:
        client.request(CLUSTER)
        client.request(LISTENER)
    for client in many:
        for _ in range(2):
            client.ack(client.recv())
    wait_until(lambda: len(upstream.server.connections()) == 6,  # type: ignore[union-attr]
               "six streams at the control plane")
    ids = {c["node_id"] for c in upstream.server.connections()}  # type: ignore[union-attr]
    assert ids == {f"edge-envoy-{i}" for i in range(6)}
    upstream.stop()
    wait_until(lambda: [s["mode"] for s in relay.streams()] == ["record"] * 6, "record mode")


def test_a_client_without_node_is_refused(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay()
    client = clients(relay)
    client.sent = 1  # skip the node on the first request
    client.request(CLUSTER)
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_response_over_the_message_bound_never_reaches_the_client(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache) -> None:
    cache.set_snapshot(GROUP, snapshot("big", pad=200_000))
    relay = make_relay(max_message_bytes=64 * 1024, max_queued_bytes=128 * 1024,
                       max_state_bytes=128 * 1024)
    client = clients(relay)
    client.request(CLUSTER)
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert relay.store.get(CLUSTER) is None


def test_a_type_past_the_state_bound_is_dropped_from_the_record(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient], cache: SnapshotCache,
        caplog: pytest.LogCaptureFixture) -> None:
    relay = make_relay(max_state_bytes=200)
    client = clients(relay)
    with caplog.at_level(logging.WARNING, "a1.control.relay"):
        sync_all(client, upstream.server, (CLUSTER, LISTENER))  # type: ignore[arg-type]
    kept = relay.store.types()
    assert relay.store.total_bytes() <= 200
    assert len(kept) < 2
    assert any("not recording" in r.getMessage() for r in caplog.records)
    for type_url in (CLUSTER, LISTENER):
        assert relay.store.path(type_url).exists() == (type_url in kept)


# -- the disk as input ------------------------------------------------------------------------


def valid_record(type_url: str = CLUSTER, tag: str = "v1") -> bytes:
    snap = snapshot(tag)
    resp = discovery_pb2.DiscoveryResponse(type_url=type_url, version_info=snap.version(type_url),
                                           nonce="n1")
    for r in snap.resources(type_url).values():
        resp.resources.add(type_url=type_url, value=r.value)
    return encode_record(type_url, GROUP, resp)


def test_corrupt_truncated_huge_and_forged_files_are_ignored_with_a_log_line(
        upstream: Upstream, make_relay: Callable[..., Relay], tmp_path: Path,
        clients: Callable[..., AdsClient], caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    good = valid_record(ROUTE)
    (state / FILE_NAMES[ROUTE]).write_bytes(good)
    (state / FILE_NAMES[CLUSTER]).write_bytes(valid_record(CLUSTER)[:-3])  # truncated
    (state / FILE_NAMES[ENDPOINT]).write_bytes(b"garbage" * 10)  # no magic
    (state / FILE_NAMES[LISTENER]).write_bytes(valid_record(CLUSTER))  # a CDS record as LDS
    with open(state / FILE_NAMES["type.a1.dev/a1.v1.CellTable"], "wb") as f:
        f.truncate(200 * MIB)  # huge (sparse): refused by size before reading
    (tmp_path / "elsewhere").write_bytes(valid_record(ENDPOINT))
    (state / FILE_NAMES["type.a1.dev/a1.v1.PolicyBundle"]).symlink_to(tmp_path / "elsewhere")
    (state / ".relay-x.tmp").write_bytes(b"left over by a crash")
    with caplog.at_level(logging.WARNING, "a1.control.relay"):
        relay = make_relay(max_message_bytes=MIB, max_queued_bytes=2 * MIB)
    assert relay.store.types() == [ROUTE]
    messages = [r.getMessage() for r in caplog.records if "ignoring recorded" in r.getMessage()]
    assert len(messages) == 5, messages
    assert all("\n" not in m for m in messages)
    assert not (state / ".relay-x.tmp").exists()
    upstream.stop()
    client = clients(relay)
    client.request(ROUTE, ["edge-routes"])
    assert client.recv().version_info == snapshot("v1").version(ROUTE)


def test_decode_refuses_every_broken_header() -> None:
    good = valid_record()
    n = len(MAGIC)
    hlen = int.from_bytes(good[n:n + 4], "big")
    cases = {
        "bad magic": b"X" + good[1:],
        "truncated header": good[:n + 2],
        "over": good[:n] + (10**6).to_bytes(4, "big") + good[n + 4:],
        "not JSON": good[:n + 4] + b"{" * hlen + good[n + 4 + hlen:],
        "sha256": good[:-1] + bytes([good[-1] ^ 1]),
    }
    for why, data in cases.items():
        with pytest.raises(RecordError):
            decode_record(data, CLUSTER, GROUP, MIB)
        assert why
    with pytest.raises(RecordError, match="node cluster"):
        decode_record(good, CLUSTER, "a1-sidecar", MIB)
    with pytest.raises(RecordError, match="over"):
        decode_record(good, CLUSTER, GROUP, 10)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    good = valid_record()
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RecordError):
        decode_record(bytes(flipped), CLUSTER, GROUP, MIB)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=2048), keep=st.integers(0, 400))
def test_arbitrary_bytes_never_escape_as_anything_but_record_error(blob: bytes,
                                                                   keep: int) -> None:
    for data in (blob, MAGIC + blob, valid_record()[:keep] + blob):
        with contextlib.suppress(RecordError):
            decode_record(data, CLUSTER, GROUP, MIB)


# -- settings and the command --------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("listen", "nowhere", "listen"),
    ("listen", "unix:/" + "x" * 200, "at most"),
    ("upstream", "127.0.0.1:99999", "upstream"),
    ("max_message_bytes", 0, "max_message_bytes"),
    ("max_queued_bytes", 10, "max_queued_bytes"),
    ("backoff_max_s", 0.01, "backoff_max_s"),
    ("node_cluster", "", "node_cluster"),
])
def test_bad_settings_are_one_line_config_errors(tmp_path: Path, field: str, value: Any,
                                                 needle: str) -> None:
    kw: dict[str, Any] = dict(upstream="127.0.0.1:18000", listen="127.0.0.1:0",
                              state_dir=tmp_path)
    kw[field] = value
    with pytest.raises(ConfigError, match=needle) as err:
        RelayConfig(**kw).check()
    assert "\n" not in str(err.value)


def test_the_command_refuses_bad_input_in_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert relay_main(["--upstream", "nohost", "--listen", "127.0.0.1:0",
                       "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("a1: relay: upstream") and "\n" not in err
    sock = tmp_path / "not-a-socket"
    sock.write_text("mine")
    assert relay_main(["--upstream", "127.0.0.1:1", "--listen", f"unix:{sock}",
                       "--state-dir", str(tmp_path)]) == 2
    assert "is not a socket" in capsys.readouterr().err
    assert sock.read_text() == "mine"


def test_listens_on_a_unix_socket_0600(upstream: Upstream,
                                       clients: Callable[..., AdsClient]) -> None:
    short = Path(tempfile.mkdtemp(prefix="a1r", dir="/tmp"))
    relay = Relay(relay_config(upstream, short / "state",
                               listen=f"unix:{short}/state/relay.sock"))
    try:
        relay.start()
        assert stat.S_IMODE(os.stat(short / "state" / "relay.sock").st_mode) == 0o600
        client = clients(relay)
        client.request(CLUSTER)
        assert client.recv().type_url == CLUSTER
    finally:
        relay.stop(grace=0.2)


def test_a_client_past_the_type_and_stream_bounds_is_closed(
        upstream: Upstream, make_relay: Callable[..., Relay],
        clients: Callable[..., AdsClient]) -> None:
    relay = make_relay(max_streams=2)
    client = clients(relay)
    for i in range(65):
        client.request(f"type.example/t{i}")
    err = client.ended()
    assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "type URLs" in (err.details() or "")
    held = [clients(relay, node_id=f"edge-envoy-{i}") for i in range(2)]
    for c in held:
        c.request(CLUSTER)
        c.recv()
    extra = clients(relay, node_id="edge-envoy-x")
    extra.request(CLUSTER)
    err = extra.ended()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
