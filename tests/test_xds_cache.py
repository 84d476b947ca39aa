"""Snapshots: content-hash versions, refusal of bad input, the generic reference
check, the cache's generations and watchers, and the per-snapshot memo of SotW
response bodies (shared by streams, bounded, never stale, byte-identical)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given
from hypothesis import strategies as st

from control.xds import cache as cache_module
from control.xds.cache import Resource, Snapshot, SnapshotCache, default_node_group
from control.xds.limits import Limits
from control.xds.sotw import SotwStream, pack
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


# -- the per-snapshot response memo (shared SotW bodies) ------------------------------------

def sotw(snapshot: Snapshot, names: list[str], type_url: str = CLUSTER) -> Any:
    """A SotW stream subscribed to ``names`` of ``type_url`` (``[]``: wildcard), and the
    message of the response it is sent from ``snapshot``."""
    stream = SotwStream(Limits())
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
    req.node.id, req.node.cluster = "n", "g"
    stream.on_request(req, snapshot)
    encoded = stream.next_response(snapshot)
    assert encoded is not None
    return encoded, stream.decode(encoded)


def body_names(message: Any) -> list[str]:
    return [a.value.decode().split("=")[0] for a in message.resources]


def test_streams_with_one_subscription_share_one_body_and_differ_only_by_nonce() -> None:
    snap = Snapshot(Resource.of(CLUSTER, n, f"{n}=1".encode()) for n in "abc")
    ab1, m1 = sotw(snap, ["a", "b"])
    ab2, m2 = sotw(snap, ["b", "a", "x"])  # the same set of existing names
    a, ma = sotw(snap, ["a"])
    star, mstar = sotw(snap, ["*"])
    _, mlegacy = sotw(snap, [])  # legacy wildcard: the same set as "*"
    assert snap.memo_usage()[0] == 3  # five responses, three bodies: {a, b}, {a}, all
    assert body_names(m1) == body_names(m2) == ["a", "b"] and body_names(ma) == ["a"]
    assert body_names(mstar) == body_names(mlegacy) == ["a", "b", "c"]
    assert m1.nonce != m2.nonce
    m2.nonce = m1.nonce
    assert m1 == m2 and ab1.data != ab2.data and a.data != ab1.data and star.data != ab1.data


def test_a_new_snapshot_never_serves_a_body_cached_for_the_old_one() -> None:
    old = Snapshot([Resource.of(CLUSTER, "a", b"a=1")])
    _, m_old = sotw(old, [])
    new = Snapshot([Resource.of(CLUSTER, "a", b"a=2")])  # same names and type
    assert new.memo_usage() == (0, 0)
    _, m_new = sotw(new, [])
    assert m_old.resources[0].value == b"a=1" and m_new.resources[0].value == b"a=2"
    assert m_new.version_info == new.version(CLUSTER) != m_old.version_info


def test_the_memo_is_bounded_in_entries_and_bytes() -> None:
    snap = Snapshot(Resource.of(CLUSTER, f"n{i}", b"v") for i in range(12))
    names = sorted(snap.names(CLUSTER))
    # A client cycling through distinct subscriptions (2^12 subsets) cannot grow it.
    for k in range(cache_module.MEMO_MAX_ENTRIES + 200):
        chosen = frozenset(n for i, n in enumerate(names) if k >> i & 1)
        snap.memo(CLUSTER, chosen, lambda: b"x")
    entries, size = snap.memo_usage()
    assert entries == cache_module.MEMO_MAX_ENTRIES
    budget = 2 * snap.size_bytes() + cache_module.MEMO_SPARE_BYTES
    assert size <= budget
    # Large values: evicted by bytes, long before the entry bound.
    big = budget // 3
    for k in range(5):
        snap.memo(CLUSTER, frozenset({names[k]}), lambda: b"y" * big)
    entries, size = snap.memo_usage()
    assert size <= budget and entries <= 3
    # One value past the whole budget is returned, never kept.
    huge = snap.memo(ROUTE, frozenset(), lambda: b"z" * (budget + 1))
    assert len(huge) == budget + 1 and snap.memo_usage()[1] <= budget
    assert snap.memo(ROUTE, frozenset(), lambda: b"again") == b"again"


names_st = st.lists(st.sampled_from(["a", "b", "c", "d", "*"]), max_size=4)


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.binary(max_size=8)),
       st.lists(names_st, min_size=1, max_size=6), st.sampled_from([CLUSTER, CELL_TABLE]))
def test_shared_bodies_are_byte_identical_to_responses_built_whole(
    values: dict[str, bytes], subscriptions: list[list[str]], type_url: str
) -> None:
    snap = Snapshot(Resource.of(type_url, n, v) for n, v in values.items())
    have = snap.resources(type_url)
    for names in subscriptions:  # several streams, one snapshot: later ones hit the memo
        encoded, message = sotw(snap, names, type_url)
        wildcard = "*" in names or not names
        chosen = sorted(have) if wildcard else sorted(set(names) & set(have))
        whole = discovery_pb2.DiscoveryResponse(
            version_info=snap.version(type_url), type_url=type_url, nonce=message.nonce,
            resources=[pack(have[n]) for n in chosen])
        assert encoded.data == whole.SerializeToString()
