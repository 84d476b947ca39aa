"""Snapshots: content-hash versions, refusal of bad input, the generic reference
check, and the cache's generations and watchers."""

from __future__ import annotations

import threading

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from hypothesis import given
from hypothesis import strategies as st

from control.xds.cache import Resource, Snapshot, SnapshotCache, default_node_group
from policies.core.errors import ConfigError
from policies.core.xds.types import (
    CELL_TABLE,
    CLUSTER,
    ENDPOINT,
    PUSH_ORDER,
    ROUTE,
    canonical_json,
    resource_version,
)
from tests.test_xds_envoy import edge_snapshot

resources = st.lists(st.tuples(st.sampled_from(PUSH_ORDER), st.text(min_size=1, max_size=8),
                               st.binary(max_size=16)),
                     unique_by=lambda r: (r[0], r[1]), max_size=12)


@given(resources, st.randoms())
def test_versions_are_content_hashes_independent_of_order(items, rnd) -> None:
    a = Snapshot(Resource.of(*r) for r in items)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    b = Snapshot(Resource.of(*r) for r in shuffled)
    assert a.versions() == b.versions() and a == b


def test_a_change_moves_only_its_types_version() -> None:
    a = Snapshot([Resource.of(CLUSTER, "c", b"1"), Resource.of(CELL_TABLE, "cells", b"x")])
    b = Snapshot([Resource.of(CLUSTER, "c", b"2"), Resource.of(CELL_TABLE, "cells", b"x")])
    assert a.version(CLUSTER) != b.version(CLUSTER)
    assert a.version(CELL_TABLE) == b.version(CELL_TABLE)


def test_resource_version_frames_its_parts() -> None:
    assert resource_version(CLUSTER, "ab", b"c") != resource_version(CLUSTER, "a", b"bc")
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'.encode()


@pytest.mark.parametrize(("items", "message"), [
    ([Resource.of(CLUSTER, "c", b"1"), Resource.of(CLUSTER, "c", b"2")], "duplicate Cluster 'c'"),
    ([Resource.of("type.googleapis.com/x.Y", "n", b"")], "unknown type"),
    ([Resource(CLUSTER, "c", b"1", "forged")], "not its content hash"),
    ([Resource.of(CLUSTER, "", b"1")], "has no name"),
])
def test_bad_snapshots_are_refused_with_the_resource_named(items, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Snapshot(items)


def test_the_reference_check_names_what_does_not_resolve() -> None:
    good = edge_snapshot("127.0.0.1", 10000, 10001)
    good.check()
    by = {t: dict(good.resources(t)) for t in PUSH_ORDER}

    def without(type_url: str, name: str, *extra: Resource) -> Snapshot:
        return Snapshot([r for t in PUSH_ORDER for n, r in by[t].items()
                         if (t, n) != (type_url, name)] + list(extra))

    with pytest.raises(ConfigError, match="route config 'edge' does not exist"):
        without(ROUTE, "edge").check()
    with pytest.raises(ConfigError, match="cluster 'backend' uses EDS but no"):
        without(ENDPOINT, "backend").check()
    orphan = Resource.from_message(endpoint_pb2.ClusterLoadAssignment(cluster_name="ghost"))
    with pytest.raises(ConfigError, match="ClusterLoadAssignment 'ghost' names no EDS"):
        without("", "", orphan).check()
    bad_route = route_pb2.RouteConfiguration(name="edge", virtual_hosts=[
        route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster="nowhere"))])])
    with pytest.raises(ConfigError, match=r"routes\[0\]: cluster 'nowhere' does not exist"):
        without(ROUTE, "edge", Resource.from_message(bad_route)).check()
    garbage = Resource.of(CLUSTER, "junk", b"\xff\xff\xff")
    with pytest.raises(ConfigError, match="'junk' is not a valid Cluster"):
        without("", "", garbage).check()


def test_the_cache_counts_generations_wakes_watchers_and_skips_equal_content() -> None:
    cache = SnapshotCache()
    seen: list[str] = []
    unwatch = cache.watch(seen.append)
    assert cache.entry("g") == (0, None) and cache.snapshot("g") is None
    s1 = Snapshot([Resource.of(CLUSTER, "c", b"1")])
    cache.set_snapshot("g", s1)
    cache.set_snapshot("g", Snapshot([Resource.of(CLUSTER, "c", b"1")]))  # same content
    assert seen == ["g"] and cache.entry("g")[0] == 1
    done = threading.Event()
    got: list[int] = []

    def waiter() -> None:
        got.append(cache.wait("g", after=1, timeout=10))
        done.set()

    threading.Thread(target=waiter).start()
    cache.set_snapshot("g", Snapshot([Resource.of(CLUSTER, "c", b"2")]))
    assert done.wait(10) and got == [2]
    unwatch()
    cache.set_snapshot("h", s1)
    assert seen == ["g", "g"] and cache.groups() == ["g", "h"]


def test_the_default_node_group_is_the_node_cluster() -> None:
    from envoy.config.core.v3 import base_pb2

    assert default_node_group(base_pb2.Node(id="x", cluster="a1-sidecar")) == "a1-sidecar"
    assert default_node_group(base_pb2.Node(id="x")) == "default"
