"""The ADS server's protocol, through a real gRPC channel with a scripted client.

``AdsClient.settle`` returns exactly the responses the server wrote for what it
has seen, so "no response" is asserted without sleeping.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterator

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.limits import Limits
from control.xds.server import XdsServer
from policies.core.errors import ConfigError
from policies.core.xds.types import (
    CELL_TABLE,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    POLICY_ASSIGNMENT,
    RESOURCE_WRAPPER,
    ROUTE,
)
from tests.waiting import wait_until
from tests.xds_client import AdsClient

GROUP = "a1-edge"


def snap(**types: dict[str, bytes]) -> Snapshot:
    """snap(cluster={"a": b"1"}, listener={...}): a snapshot from names and values."""
    urls = {"cluster": CLUSTER, "endpoint": ENDPOINT, "listener": LISTENER, "route": ROUTE,
            "cells": CELL_TABLE, "assignment": POLICY_ASSIGNMENT}
    return Snapshot(Resource.of(urls[k], n, v) for k, m in types.items() for n, v in m.items())


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
def server(cache: SnapshotCache) -> Iterator[XdsServer]:
    srv = XdsServer(cache, registry=CollectorRegistry(),
                    limits=Limits(max_names=50, request_burst=200, requests_per_second=1.0))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def clients(server: XdsServer) -> Iterator[list[AdsClient]]:
    made: list[AdsClient] = []
    yield made
    for c in made:
        c.close()


def connect(server: XdsServer, clients: list[AdsClient], **kw: object) -> AdsClient:
    c = AdsClient(f"127.0.0.1:{server.port}", node_id=f"node-{len(clients)}", **kw)  # type: ignore[arg-type]
    clients.append(c)
    return c


def one(responses: list[discovery_pb2.DiscoveryResponse]) -> discovery_pb2.DiscoveryResponse:
    assert len(responses) == 1, responses
    return responses[0]


def names(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for a in response.resources:
        if a.type_url == RESOURCE_WRAPPER:
            out.append(discovery_pb2.Resource.FromString(a.value).name)
        else:
            out.append(a.value.decode())  # test values are their own names
    return out


def values(**m: list[str]) -> dict[str, dict[str, bytes]]:
    return {k: {n: n.encode() for n in ns} for k, ns in m.items()}


# -- SotW -------------------------------------------------------------------------


def test_an_ack_gets_no_response(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"])))
    c = connect(server, clients)
    c.request(CLUSTER)
    r = one(c.settle(server))
    assert sorted(names(r)) == ["a", "b"]
    assert r.version_info == cache.snapshot(GROUP).version(CLUSTER)
    c.ack(r)
    assert c.settle(server) == []
    c.ack(r)  # a repeated ACK is no news either
    assert c.settle(server) == []


def test_a_nack_is_not_resent_until_the_type_changes(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"], cells=["cells"])))
    c = connect(server, clients)
    c.request(CLUSTER)
    bad = one(c.settle(server))
    c.nack(bad, "cluster a: bad")
    assert c.settle(server) == []
    c.request(CLUSTER, nonce=bad.nonce)  # go-control-plane#962: this re-sent it forever
    assert c.settle(server) == []
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"], cells=["cells", "cells.next"])))
    assert c.settle(server) == []  # another type changed; clusters did not
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"])))
    fixed = one(c.settle(server))
    assert fixed.version_info != bad.version_info and sorted(names(fixed)) == ["a", "b"]
    c.ack(fixed)
    assert c.settle(server) == []


def test_stale_nonces_are_ignored(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(route=["r1", "r2"])))
    c = connect(server, clients)
    c.request(ROUTE, ["r1"])
    first = one(c.settle(server))
    c.ack(first, ["r1"])
    cache.set_snapshot(GROUP, snap(**values(route=["r1", "r2", "r3"])))
    second = one(c.settle(server))
    c.request(ROUTE, ["r1", "r2"], version=first.version_info, nonce=first.nonce)  # stale
    c.request(ROUTE, ["r1"], version=first.version_info, nonce=first.nonce, error="stale nack")
    assert c.settle(server) == []
    st = c.status(server)["types"][ROUTE]
    assert st["stale_nonces"] == 2 and st["nack_count"] == 0 and st["names"] == ["r1"]
    c.ack(second, ["r1"])
    assert c.settle(server) == []
    assert c.status(server)["types"][ROUTE]["acked_version"] == second.version_info


def subscribe_all(c: AdsClient, server: XdsServer, order: list[str]) -> dict[str, str]:
    """Subscribe (wildcard) to ``order`` one type at a time, ACKing each; returns versions."""
    got = {}
    for t in order:
        c.request(t)
        r = one(c.settle(server))
        c.ack(r)
        got[t] = r.version_info
    assert c.settle(server) == []
    return got


def test_pushes_go_make_before_break(cache, server, clients) -> None:
    """Clusters, their endpoints and the tables at once; listeners and routes, which
    name clusters, only after the clusters' ACK (Envoy ACKs them once warm)."""
    cache.set_snapshot(GROUP, snap(**values(cluster=["c"], endpoint=["c"], listener=["l"],
                                            route=["r"], cells=["cells"])))
    c = connect(server, clients)
    subscribe_all(c, server, [ROUTE, LISTENER, CELL_TABLE, ENDPOINT, CLUSTER])
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "c2"], endpoint=["c", "c2"],
                                            listener=["l", "l2"], route=["r", "r2"],
                                            cells=["cells", "cells.next"])))
    first = c.settle(server)
    assert [r.type_url for r in first] == [CLUSTER, ENDPOINT, CELL_TABLE]
    for r in first[1:]:
        c.ack(r)
    assert c.settle(server) == []  # endpoints ACKed, clusters not: nothing names c2 yet
    c.ack(first[0])
    second = c.settle(server)
    assert [r.type_url for r in second] == [LISTENER, ROUTE]


def test_a_warming_cluster_gets_its_endpoints_before_the_cluster_ack(
        cache, server, clients) -> None:
    """Envoy holds a new EDS cluster's CDS ACK until its endpoints arrive: the server
    must answer the endpoint request that warming sends, or both wait forever."""
    cache.set_snapshot(GROUP, snap(**values(cluster=["c"], endpoint=["c"])))
    c = connect(server, clients)
    c.request(CLUSTER)
    c.ack(one(c.settle(server)))
    c.request(ENDPOINT, ["c"])
    first_eds = one(c.settle(server))
    c.ack(first_eds, ["c"])
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "c2"], endpoint=["c", "c2"])))
    cds, eds_c = c.settle(server)  # the type's version moved, so c's endpoints come too
    assert (cds.type_url, eds_c.type_url) == (CLUSTER, ENDPOINT)
    c.ack(eds_c, ["c"])
    c.request(ENDPOINT, ["c", "c2"], version=eds_c.version_info,
              nonce=eds_c.nonce)  # warming asks for c2, before any CDS ACK
    eds = one(c.settle(server))
    assert eds.type_url == ENDPOINT and sorted(names(eds)) == ["c", "c2"]


def test_a_nack_stops_the_chain_until_that_type_changes(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["c"], listener=["l"])))
    c = connect(server, clients)
    subscribe_all(c, server, [CLUSTER, LISTENER])
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "bad"], listener=["l", "l2"])))
    c.nack(one(c.settle(server)), "cluster bad: no")
    assert c.settle(server) == []  # the listeners may need the refused cluster: held back
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "bad"], listener=["l", "l3"])))
    assert c.settle(server) == []  # the clusters are still the refused ones
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "good"], listener=["l", "l3"])))
    r = one(c.settle(server))
    assert r.type_url == CLUSTER and sorted(names(r)) == ["c", "good"]
    c.ack(r)
    r = one(c.settle(server))
    assert r.type_url == LISTENER and sorted(names(r)) == ["l", "l3"]


def test_types_the_client_did_not_subscribe_are_skipped(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["c"], cells=["cells"])))
    c = connect(server, clients)
    subscribe_all(c, server, [CELL_TABLE])
    cache.set_snapshot(GROUP, snap(**values(cluster=["c", "d"], cells=["cells", "cells.next"])))
    r = one(c.settle(server))
    assert r.type_url == CELL_TABLE and sorted(names(r)) == ["cells", "cells.next"]


def test_a_burst_of_snapshots_is_one_push_of_the_latest(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["c0"])))
    c = connect(server, clients)
    c.request(CLUSTER)
    first = one(c.settle(server))
    for i in range(1, 30):  # while the first push awaits its ACK
        cache.set_snapshot(GROUP, snap(**values(cluster=[f"c{i}"])))
    c.ack(first)
    latest = one(c.settle(server))
    assert names(latest) == ["c29"]


def test_sotw_wildcard_and_named_subscriptions(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(listener=["a", "b"], route=["x", "y"])))
    c = connect(server, clients)
    c.request(ROUTE, ["x", "missing"])
    r = one(c.settle(server))
    assert names(r) == ["x"]  # only the named ones that exist
    c.ack(r, ["x", "missing"])
    c.request(ROUTE, ["x", "y"], version=r.version_info, nonce=r.nonce)
    r = one(c.settle(server))
    assert sorted(names(r)) == ["x", "y"]
    c.ack(r, ["x", "y"])
    c.request(ROUTE, [], version=r.version_info, nonce=r.nonce)  # after names: unsubscribe
    assert c.settle(server) == []
    cache.set_snapshot(GROUP, snap(**values(listener=["a", "b"], route=["x", "y", "z"])))
    assert c.settle(server) == []
    c.request(ROUTE, ["*"], version=r.version_info, nonce=r.nonce)  # explicit wildcard
    r = one(c.settle(server))
    assert sorted(names(r)) == ["x", "y", "z"]
    c.ack(r, ["*"])
    c.request(LISTENER)  # legacy wildcard: never named anything
    r = one(c.settle(server))
    assert sorted(names(r)) == ["a", "b"]
    c.ack(r)
    cache.set_snapshot(GROUP, snap(**values(listener=["b"], route=["x", "y", "z"])))
    r = one(c.settle(server))
    assert r.type_url == LISTENER and names(r) == ["b"]  # full state: "a" is gone


def test_a1_types_carry_their_names_in_a_resource_wrapper(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(cells={"cells": b'{"buckets":4}'}))
    c = connect(server, clients)
    c.request(CELL_TABLE)
    r = one(c.settle(server))
    (wrapped,) = r.resources
    res = discovery_pb2.Resource.FromString(wrapped.value)
    assert wrapped.type_url == RESOURCE_WRAPPER and res.name == "cells"
    assert res.resource.type_url == CELL_TABLE and res.resource.value == b'{"buckets":4}'
    assert res.version == cache.snapshot(GROUP).resources(CELL_TABLE)["cells"].version


def test_a_sotw_client_reconnecting_with_the_current_version_is_not_pushed(
    cache, server, clients
) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    version = cache.snapshot(GROUP).version(CLUSTER)
    c = connect(server, clients)
    c.request(CLUSTER, version=version)
    assert c.settle(server) == []
    assert c.status(server)["types"][CLUSTER]["acked_version"] == version
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"])))
    assert sorted(names(one(c.settle(server)))) == ["a", "b"]


# -- Delta ------------------------------------------------------------------------


def dnames(r: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    return sorted(x.name for x in r.resources)


def test_delta_subscribe_unsubscribe_and_removed_resources(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"], route=["x", "y"])))
    c = connect(server, clients, delta=True)
    c.delta_request(CLUSTER)  # legacy wildcard
    r = one(c.settle(server))
    assert dnames(r) == ["a", "b"] and not r.removed_resources
    assert r.system_version_info == cache.snapshot(GROUP).version(CLUSTER)
    c.ack(r)
    assert c.settle(server) == []
    cache.set_snapshot(GROUP, snap(**values(cluster=["b", "c"], route=["x", "y"])))
    r = one(c.settle(server))
    assert dnames(r) == ["c"] and list(r.removed_resources) == ["a"]  # only the diff
    c.ack(r)
    c.delta_request(ROUTE, ["x", "nope"])
    r = one(c.settle(server))
    assert dnames(r) == ["x"] and list(r.removed_resources) == ["nope"]  # does not exist
    c.ack(r)
    c.delta_request(ROUTE, ["y"])
    r = one(c.settle(server))
    assert dnames(r) == ["y"] and not r.removed_resources
    c.ack(r)
    c.delta_request(ROUTE, unsubscribe=["x"])
    assert c.settle(server) == []  # the client dropped it itself
    cache.set_snapshot(GROUP, snap(cluster={"b": b"b", "c": b"c"}, route={"x": b"x2", "y": b"y"}))
    assert c.settle(server) == []  # x changed, but nobody here wants it
    cache.set_snapshot(GROUP, snap(cluster={"b": b"b", "c": b"c"}, route={"x": b"x2"}))
    r = one(c.settle(server))
    assert not r.resources and list(r.removed_resources) == ["y"]


def test_delta_reconnect_with_initial_resource_versions(cache, server, clients) -> None:
    s = snap(**values(cluster=["a", "b"]))
    cache.set_snapshot(GROUP, s)
    current = {n: r.version for n, r in s.resources(CLUSTER).items()}
    c = connect(server, clients, delta=True)
    c.delta_request(CLUSTER, initial=dict(current))
    assert c.settle(server) == []  # it has everything already
    assert c.status(server)["types"][CLUSTER]["acked_version"] == s.version(CLUSTER)
    c2 = connect(server, clients, delta=True)
    c2.delta_request(CLUSTER, initial={"a": current["a"], "b": "old", "gone": "v"})
    r = one(c2.settle(server))
    assert dnames(r) == ["b"] and list(r.removed_resources) == ["gone"]


def test_delta_nack_is_not_resent_and_stale_nonces_do_not_ack(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    c = connect(server, clients, delta=True)
    c.delta_request(CLUSTER)
    r = one(c.settle(server))
    c.delta_request(CLUSTER, nonce="not-a-nonce-we-sent")
    assert c.settle(server) == []
    assert c.status(server)["types"][CLUSTER]["pending"] is True
    c.nack(r, "no")
    assert c.settle(server) == []
    c.delta_request(CLUSTER, ["a"])
    assert c.settle(server) == []
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"])))
    r = one(c.settle(server))
    assert dnames(r) == ["a", "b"]  # nothing was applied: the whole diff again


# -- replicas, size, health, status, metrics, waits ---------------------------------


def test_two_replicas_on_the_same_input_agree_on_every_version(clients) -> None:
    caches, servers = [SnapshotCache(), SnapshotCache()], []
    try:
        got = []
        for cache in caches:
            cache.set_snapshot(GROUP, snap(**values(cluster=["b", "a"], cells=["cells"])))
            srv = XdsServer(cache)
            srv.start()
            servers.append(srv)
            c = connect(srv, clients)
            c.request(CLUSTER)
            r1 = one(c.settle(srv))
            c.ack(r1)
            c.request(CELL_TABLE)
            r2 = one(c.settle(srv))
            d = connect(srv, clients, delta=True)
            d.delta_request(CLUSTER)
            r3 = one(d.settle(srv))
            got.append((r1.version_info, r2.version_info, r2.resources[0].value,
                        r3.system_version_info, [(x.name, x.version) for x in r3.resources]))
        assert got[0] == got[1]
    finally:
        for srv in servers:
            srv.stop()


def test_a_resource_bigger_than_4_mib_arrives_whole(cache, server, clients) -> None:
    big = bytes(range(256)) * (5 * 4096 + 17)  # ~5 MiB
    cache.set_snapshot(GROUP, snap(cells={"cells": big}))
    c = connect(server, clients)
    c.request(CELL_TABLE)
    r = one(c.settle(server))
    res = discovery_pb2.Resource.FromString(r.resources[0].value)
    assert len(big) > 4 << 20 and res.resource.value == big


def test_health_answers_serving(server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "envoy.service.discovery.v3.AggregatedDiscoveryService"):
            got = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert got.status == health_pb2.HealthCheckResponse.SERVING



def metric(server: XdsServer, name: str, **labels: str) -> float:
    return server.registry.get_sample_value(name, labels) or 0.0


def test_status_and_metrics_show_acks_and_nacks(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"], cells=["cells"])))
    c = connect(server, clients, cluster="a1-edge")
    c.request(CLUSTER)
    r = one(c.settle(server))
    c.ack(r)
    c.request(CELL_TABLE)
    bad = one(c.settle(server))
    c.nack(bad, "cell table: bucket 3 has no cell\n(second line)")
    c.settle(server)
    (entry,) = server.connections()
    assert entry["node_id"] == "node-0" and entry["node_cluster"] == "a1-edge"
    assert entry["group"] == GROUP
    cl, ct = entry["types"][CLUSTER], entry["types"][CELL_TABLE]
    assert cl["acked_version"] == r.version_info and cl["sent_nonce"] == r.nonce
    assert cl["nack_count"] == 0 and cl["wildcard"] is True
    assert ct["acked_version"] is None and ct["nack_count"] == 1
    assert ct["last_nack"] == "cell table: bucket 3 has no cell (second line)"
    assert ct["last_nack_version"] == bad.version_info
    assert metric(server, "a1_xds_connected", node_cluster="a1-edge") == 1
    assert metric(server, "a1_xds_pushes_total", type="Cluster") == 1
    assert metric(server, "a1_xds_nacks_total", type="CellTable") == 1
    c.close()
    clients.remove(c)
    wait_until(lambda: not server.connections())
    assert metric(server, "a1_xds_connected", node_cluster="a1-edge") == 0


def test_wait_acked_returns_when_every_client_acked_and_fails_fast_on_a_nack(
    cache, server, clients
) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    version = cache.snapshot(GROUP).version(CLUSTER)
    assert server.wait_acked(GROUP, CLUSTER, version, timeout=0.05) is False  # nobody yet
    a, b = connect(server, clients), connect(server, clients)
    a.request(CLUSTER)
    b.request(CLUSTER)
    ra, rb = one(a.settle(server)), one(b.settle(server))
    a.ack(ra)
    a.settle(server)
    assert server.wait_acked(GROUP, CLUSTER, version, timeout=0.05) is False  # b has not
    b.ack(rb)
    assert server.wait_acked(GROUP, CLUSTER, version, timeout=10, min_clients=2) is True
    cache.set_snapshot(GROUP, snap(**values(cluster=["a", "b"])))
    v2 = cache.snapshot(GROUP).version(CLUSTER)
    a.nack(one(a.settle(server)), "no")
    a.settle(server)
    assert server.wait_acked(GROUP, CLUSTER, v2, timeout=10) is False


def test_an_ack_wait_follows_each_streams_acks_and_departures(cache, server, clients) -> None:
    """The wait is updated one stream at a time (no rescan): an ACK, a stream that left,
    and the last ACK each move it, and it is unregistered once answered."""
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    version = cache.snapshot(GROUP).version(CLUSTER)
    a, b, c = (connect(server, clients) for _ in range(3))
    for x in (a, b, c):
        x.request(CLUSTER)
    ra, rb, _ = (one(x.settle(server)) for x in (a, b, c))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(server.wait_acked, GROUP, CLUSTER, version, timeout=30,
                              min_clients=2)
        wait_until(lambda: server._waits)  # registered: what follows updates it
        a.ack(ra)
        a.settle(server)
        c.close()  # never ACKs, and leaves: no longer waited for
        clients.remove(c)
        wait_until(lambda: len(server.connections()) == 2)
        assert not waiting.done()  # b is behind
        b.ack(rb)
        assert waiting.result(timeout=30) is True
    assert not server._waits


# -- bounds and bad clients ------------------------------------------------------------


def test_too_many_names_closes_the_stream(cache, server, clients, caplog) -> None:
    c = connect(server, clients)
    with caplog.at_level(logging.WARNING, "a1.control.xds"):
        c.request(ROUTE, [f"r{i}" for i in range(51)])
        err = c.ended()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "subscribes 51 names" in caplog.text


def test_a_request_flood_closes_the_stream(cache, server, clients) -> None:
    c = connect(server, clients)
    for _ in range(400):  # burst 200, then 1/s in this fixture
        c.request(CLUSTER)
    err = c.ended()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "faster than" in err.details()


def test_a_huge_error_detail_is_kept_truncated(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    c = connect(server, clients)
    c.request(CLUSTER)
    c.nack(one(c.settle(server)), "x" * (1 << 20))
    c.settle(server)
    assert len(c.status(server)["types"][CLUSTER]["last_nack"]) == 4096


def test_unknown_types_are_ignored_and_the_stream_lives_on(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    c = connect(server, clients)
    c.request("type.googleapis.com/no.such.Type")
    assert c.settle(server) == []
    c.request(CLUSTER)
    assert names(one(c.settle(server))) == ["a"]


def test_a_first_request_without_a_node_is_refused(server) -> None:
    c = AdsClient(f"127.0.0.1:{server.port}")
    c.node.Clear()
    try:
        c._out.put(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
        err = c.ended()
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        c.close()


@pytest.mark.parametrize("field", ["node_id", "cluster"])
def test_an_oversized_node_id_or_cluster_is_refused(server, field: str) -> None:
    c = AdsClient(f"127.0.0.1:{server.port}", **{field: "n" * 100_000})  # type: ignore[arg-type]
    try:
        c.request(CLUSTER)
        err = c.ended()
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 256" in (err.details() or "")
    finally:
        c.close()


def test_the_connected_metric_names_only_a1_node_clusters(cache, server, clients) -> None:
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    for cluster in ("a1-edge", "made-up-1", "made-up-2"):
        connect(server, clients, cluster=cluster).request(CLUSTER)

    def samples() -> dict[str, float]:
        return {s.labels["node_cluster"]: s.value
                for metric in server.registry.collect() if metric.name == "a1_xds_connected"
                for s in metric.samples}

    wait_until(lambda: sum(samples().values()) == 3, "three streams counted")
    assert samples() == {"a1-edge": 1.0, "other": 2.0}


def test_a_unix_socket_server_is_private_and_never_takes_over_a_live_socket(
        cache, tmp_path) -> None:
    import os
    import stat

    path = tmp_path / "xds.sock"
    cache.set_snapshot(GROUP, snap(**values(cluster=["a"])))
    first = XdsServer(cache, host=f"unix:{path}")
    first.start()
    try:
        assert first.address == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        c = AdsClient(f"unix:{path}", cluster=GROUP)
        try:
            c.request(CLUSTER)
            assert names(one(c.settle(first))) == ["a"]
        finally:
            c.close()
        second = XdsServer(cache, host=f"unix:{path}")
        with pytest.raises(ConfigError, match="in use by a running process"):
            second.start()
    finally:
        first.stop(grace=0)
    # A socket left behind by a dead server is replaced.
    third = XdsServer(cache, host=f"unix:{path}")
    third.start()
    third.stop(grace=0)
