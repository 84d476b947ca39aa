"""The generic ADS client against the real control-plane server (control.xds), on loopback.

SotW and Delta: sync, updates with removals, NACK with the callback's reason,
the byte budget, runtime subscription changes, reconnects (Delta with
``initial_resource_versions``), and the server's view of what the client ACKed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.server import XdsServer
from policies.core.errors import ConfigError, one_line
from policies.core.xds import types
from policies.core.xds.client import MAX_NACK_MESSAGE, AdsClient, Node
from tests.waiting import wait_until

GROUP = "a1-test"
NODE = Node("test-node", GROUP)



def cluster(name: str, timeout_s: int = 1) -> Resource:
    c = cluster_pb2.Cluster(name=name)
    c.connect_timeout.seconds = timeout_s
    return Resource.from_message(c)


def table(name: str, value: bytes) -> Resource:
    return Resource.of(types.CELL_TABLE, name, value)


class Recorder:
    """The callback: records every accepted set; ``refuse(type_url, resources)`` may say why not."""

    def __init__(self, refuse: Callable[[str, dict[str, bytes]], str | None] | None = None):
        self.refuse = refuse
        self.calls: list[tuple[str, dict[str, bytes], list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        why = self.refuse(type_url, resources) if self.refuse else None
        if why:
            raise ConfigError(why)
        with self.lock:
            self.calls.append((type_url, resources, removed))

    def latest(self, type_url: str) -> tuple[dict[str, bytes], list[str]] | None:
        with self.lock:
            for t, res, removed in reversed(self.calls):
                if t == type_url:
                    return res, removed
        return None

    def count(self, type_url: str) -> int:
        with self.lock:
            return sum(1 for t, _, _ in self.calls if t == type_url)


@pytest.fixture
def xds() -> Iterator[tuple[SnapshotCache, XdsServer]]:
    cache = SnapshotCache()
    server = XdsServer(cache)
    server.start()
    try:
        yield cache, server
    finally:
        server.stop(grace=0)


@pytest.fixture
def clients() -> Iterator[list[AdsClient]]:
    made: list[AdsClient] = []
    try:
        yield made
    finally:
        for c in made:
            c.stop()


def make(
    clients: list[AdsClient], server: XdsServer, subs: dict[str, Any], cb: Recorder, **kw: Any
) -> AdsClient:
    c = AdsClient(f"127.0.0.1:{server.port}", NODE, subs, cb, **kw)
    clients.append(c)
    c.start()
    return c


def server_type(server: XdsServer, type_url: str) -> dict[str, Any]:
    conns = server.connections()
    assert conns, "no client connected"
    return conns[0]["types"][type_url]


SNAP1 = Snapshot([cluster("a"), cluster("b"), table("cells", b"T1"), table("cells.next", b"N1")])
SNAP2 = Snapshot([cluster("a"), cluster("c"), table("cells", b"T2"), table("cells.next", b"N1")])


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_initial_sync_update_and_removal(xds: Any, clients: list[AdsClient], delta: bool) -> None:
    cache, server = xds
    cache.set_snapshot(GROUP, SNAP1)
    rec = Recorder()
    c = make(clients, server, {types.CLUSTER: None, types.CELL_TABLE: ["cells"]}, rec, delta=delta)
    assert c.wait_synced(10)
    res, removed = rec.latest(types.CLUSTER)  # type: ignore[misc]
    assert sorted(res) == ["a", "b"] and removed == []
    assert cluster_pb2.Cluster.FromString(res["a"]).name == "a"  # Any.value: the message bytes
    assert rec.latest(types.CELL_TABLE) == ({"cells": b"T1"}, [])  # named: not cells.next
    assert c.status().types[types.CLUSTER].version == SNAP1.version(types.CLUSTER)
    assert server.wait_acked(GROUP, types.CELL_TABLE, SNAP1.version(types.CELL_TABLE), timeout=10)

    cache.set_snapshot(GROUP, SNAP2)
    assert server.wait_acked(GROUP, types.CELL_TABLE, SNAP2.version(types.CELL_TABLE), timeout=10)
    res, removed = rec.latest(types.CLUSTER)  # type: ignore[misc]
    assert sorted(res) == ["a", "c"] and removed == ["b"]  # the whole set, and what left it
    assert rec.latest(types.CELL_TABLE) == ({"cells": b"T2"}, [])
    st = c.status().types[types.CELL_TABLE]
    assert st.version == SNAP2.version(types.CELL_TABLE) and st.nacks == 0
    assert st.resources["cells"] == SNAP2.resources(types.CELL_TABLE)["cells"].version


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_a_raising_callback_nacks_with_its_reason(
    xds: Any, clients: list[AdsClient], delta: bool
) -> None:
    cache, server = xds
    cache.set_snapshot(GROUP, SNAP1)
    rec = Recorder(
        lambda t, res: "cells: bad table\nsecond line" if b"BAD" in res.get("cells", b"") else None
    )
    c = make(clients, server, {types.CELL_TABLE: ["cells"]}, rec, delta=delta)
    assert c.wait_synced(10)

    bad = Snapshot([table("cells", b"BAD")])
    cache.set_snapshot(GROUP, bad)
    assert not server.wait_acked(GROUP, types.CELL_TABLE, bad.version(types.CELL_TABLE), timeout=10)
    st = server_type(server, types.CELL_TABLE)
    assert st["last_nack"] == "cells: bad table second line"  # one line, as sent
    mine = c.status().types[types.CELL_TABLE]
    assert mine.nacks == 1 and mine.last_nack == "cells: bad table second line"
    assert mine.version == SNAP1.version(types.CELL_TABLE)  # still the last good
    assert rec.latest(types.CELL_TABLE) == ({"cells": b"T1"}, [])

    good = Snapshot([table("cells", b"T3")])
    cache.set_snapshot(GROUP, good)
    assert server.wait_acked(GROUP, types.CELL_TABLE, good.version(types.CELL_TABLE), timeout=10)
    assert rec.latest(types.CELL_TABLE) == ({"cells": b"T3"}, [])


def test_nack_message_is_one_bounded_line() -> None:
    text = one_line(ValueError("a\nb\r\n\tc " + "x" * 5000), MAX_NACK_MESSAGE)
    assert "\n" not in text and text.startswith("a b c x")
    assert len(text) == MAX_NACK_MESSAGE
    assert one_line(ValueError()) == "ValueError"


def test_a_type_over_the_byte_budget_is_nacked(xds: Any, clients: list[AdsClient]) -> None:
    cache, server = xds
    big = Snapshot([table("cells", b"x" * 5000)])
    cache.set_snapshot(GROUP, big)
    rec = Recorder()
    c = make(clients, server, {types.CELL_TABLE: ["cells"]}, rec, max_type_bytes=4096)
    wait_until(lambda: c.status().types[types.CELL_TABLE].nacks, what="NACK")
    assert "budget of 4096 bytes" in c.status().types[types.CELL_TABLE].last_nack
    assert rec.calls == []  # the callback never saw it
    assert not c.wait_synced(0)


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_subscriptions_change_at_runtime(xds: Any, clients: list[AdsClient], delta: bool) -> None:
    cache, server = xds
    cache.set_snapshot(GROUP, SNAP1)
    rec = Recorder()
    c = make(clients, server, {types.CELL_TABLE: ["cells"]}, rec, delta=delta)
    assert c.wait_synced(10)
    c.subscribe(types.CELL_TABLE, ["cells", "cells.next"])
    wait_until(
        lambda: rec.latest(types.CELL_TABLE) == ({"cells": b"T1", "cells.next": b"N1"}, []),
        what="both tables",
    )
    c.subscribe(types.CELL_TABLE, ["cells.next"])
    cache.set_snapshot(GROUP, SNAP2)  # an update lets the dropped name leave the held set
    wait_until(
        lambda: rec.latest(types.CELL_TABLE) == ({"cells.next": b"N1"}, ["cells"]),
        what="cells dropped",
    )
    # A type added at runtime is requested on the live stream.
    c.subscribe(types.CLUSTER, None)
    wait_until(lambda: rec.latest(types.CLUSTER), what="clusters")
    assert sorted(rec.latest(types.CLUSTER)[0]) == ["a", "c"]  # type: ignore[index]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_reconnects_after_the_server_returns_and_resyncs(
    clients: list[AdsClient], delta: bool
) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, SNAP1)
    server = XdsServer(cache)
    port = server.start()
    rec = Recorder()
    try:
        c = make(
            clients, server, {types.CLUSTER: None, types.CELL_TABLE: ["cells"]}, rec, delta=delta
        )
        assert c.wait_synced(10)
        acks = c.status().types[types.CLUSTER].acks
    finally:
        server.stop(grace=0)
    wait_until(lambda: not c.status().connected, what="disconnect")
    assert rec.latest(types.CLUSTER)[0].keys() == {"a", "b"}  # type: ignore[index]

    # Back, with the same content: the client says what it holds, so nothing is re-sent.
    again = XdsServer(cache, port=port)
    again.start()
    try:
        def resynced() -> bool:
            conns = again.connections()
            held = conns[0]["types"] if conns else {}
            return bool(held.keys() == {types.CLUSTER, types.CELL_TABLE}
                        and all(t["acked_version"] for t in held.values()))

        wait_until(resynced, what="resync of both types")
        assert c.status().types[types.CLUSTER].acks == acks  # no response was needed
        pushed = {u: t["pushes"] for u, t in again.connections()[0]["types"].items()}
        # SotW resumes a wildcard type from version_info; Delta resumes every type.
        assert pushed[types.CLUSTER] == 0
        assert pushed[types.CELL_TABLE] == (0 if delta else 1)

        cache.set_snapshot(GROUP, SNAP2)
        assert again.wait_acked(GROUP, types.CLUSTER, SNAP2.version(types.CLUSTER), timeout=10)
        res, removed = rec.latest(types.CLUSTER)  # type: ignore[misc]
        assert sorted(res) == ["a", "c"] and removed == ["b"]
        assert c.status().reconnects >= 1
    finally:
        again.stop(grace=0)


def test_delta_reconnect_to_a_changed_server_merges_the_diff(clients: list[AdsClient]) -> None:
    """The server sends only what changed since ``initial_resource_versions``; the
    callback still gets the whole set."""
    cache = SnapshotCache()
    cache.set_snapshot(GROUP, SNAP1)
    server = XdsServer(cache)
    port = server.start()
    rec = Recorder()
    try:
        c = make(clients, server, {types.CLUSTER: None}, rec, delta=True)
        assert c.wait_synced(10)
    finally:
        server.stop(grace=0)
    wait_until(lambda: not c.status().connected, what="disconnect")
    changed = Snapshot([cluster("a"), cluster("b", timeout_s=7)])
    fresh = SnapshotCache()
    fresh.set_snapshot(GROUP, changed)
    again = XdsServer(fresh, port=port)
    again.start()
    try:
        assert again.wait_acked(GROUP, types.CLUSTER, changed.version(types.CLUSTER), timeout=15)
        res, removed = rec.latest(types.CLUSTER)  # type: ignore[misc]
        assert sorted(res) == ["a", "b"] and removed == []
        assert cluster_pb2.Cluster.FromString(res["b"]).connect_timeout.seconds == 7
    finally:
        again.stop(grace=0)


def test_unreachable_server_is_reported_and_stop_is_prompt(clients: list[AdsClient]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Recorder()
    c = AdsClient(f"127.0.0.1:{port}", NODE, {types.CLUSTER: None}, rec, backoff_max=0.5)
    c.start()
    wait_until(lambda: c.status().last_error, what="an error")
    assert "unreachable" in c.status().last_error and not c.status().connected
    assert not c.wait_synced(0)
    c.stop()
    assert c._thread is not None and not c._thread.is_alive()


# -- property: the callback always sees the server's whole set ---------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
STATES = st.dictionaries(NAMES, st.integers(1, 3), max_size=4)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[SnapshotCache, XdsServer]]:
    cache = SnapshotCache()
    server = XdsServer(cache)
    server.start()
    try:
        yield cache, server
    finally:
        server.stop(grace=0)


_groups = iter(range(1_000_000))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STATES, min_size=1, max_size=4), delta=st.booleans())
def test_every_update_delivers_the_whole_set_and_what_left_it(
    shared: tuple[SnapshotCache, XdsServer], steps: list[dict[str, int]], delta: bool
) -> None:
    """Oracle: the published snapshot. After each ACK the callback's set is exactly the
    snapshot's clusters, and ``removed`` is what the previous set had and this one lacks."""
    cache, server = shared
    group = f"prop-{next(_groups)}"
    rec = Recorder()
    c = AdsClient(
        f"127.0.0.1:{server.port}", Node("p", group), {types.CLUSTER: None}, rec, delta=delta
    )
    c.start()
    try:
        before: dict[str, int] = {}
        for step in steps:
            snap = Snapshot([cluster(n, t) for n, t in step.items()])
            cache.set_snapshot(group, snap)
            assert server.wait_acked(group, types.CLUSTER, snap.version(types.CLUSTER), timeout=10)
            got = rec.latest(types.CLUSTER)
            assert got is not None
            res, removed = got
            seen = {
                n: cluster_pb2.Cluster.FromString(b).connect_timeout.seconds for n, b in res.items()
            }
            assert seen == step
            if step != before:  # this step was delivered by a callback of its own
                assert removed == sorted(set(before) - set(step))
            before = step
    finally:
        c.stop()
