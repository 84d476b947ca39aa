"""Random interleavings of snapshots, subscriptions, ACKs, NACKs and stale nonces,
checked against the xDS spec's rules as an oracle.

The SotW state machine is driven directly (many examples) and through a real
server and channel (fewer); the Delta one directly. Invariants, per response:
- at most one response per type is unanswered, and a type goes out only when
  every subscribed type it waits for (``WAITS_FOR``) holds the current version,
  ACKed (make before break);
- it carries the current snapshot, for the current subscription (no replays);
- it never repeats what the client ACKed, nor a version the client NACKed
  until a different version of that type was sent;
and at the end, a client that ACKs everything converges to the latest snapshot.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from control.xds.cache import Resource, Snapshot, SnapshotCache
from control.xds.delta import DeltaStream
from control.xds.limits import Limits
from control.xds.server import XdsServer
from control.xds.sotw import SotwStream, pack
from control.xds.stream import Response
from policies.core.xds.types import CELL_TABLE, CLUSTER, LISTENER, PUSH_ORDER, ROUTE, WAITS_FOR
from tests.xds_client import AdsClient

TYPES = [CLUSTER, LISTENER, ROUTE, CELL_TABLE]
NAMES = ["a", "b", "c"]
GROUP = "g"
GROUPS = itertools.count()


def make_snapshot(content: dict[str, dict[str, int]]) -> Snapshot:
    return Snapshot(Resource.of(t, n, f"{n}={v}".encode()) for t, m in content.items()
                    for n, v in m.items())


snapshots = st.dictionaries(
    st.sampled_from(TYPES), st.dictionaries(st.sampled_from(NAMES), st.integers(0, 2)),
)
ops = st.lists(st.one_of(
    st.tuples(st.just("snapshot"), snapshots),
    st.tuples(st.just("subscribe"), st.sampled_from(TYPES),
              st.one_of(st.just([]), st.just(["*"]), st.lists(st.sampled_from(NAMES), max_size=3))),
    st.tuples(st.just("ack"), st.sampled_from(TYPES)),
    st.tuples(st.just("nack"), st.sampled_from(TYPES)),
    st.tuples(st.just("stale"), st.sampled_from(TYPES)),
), max_size=25)


class SotwOracle:
    """The client side, plus the spec's rules checked on every response."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.names: dict[str, list[str]] = {}  # last resource_names sent per type
        self.explicit: set[str] = set()
        self.last: dict[str, Any] = {}  # last response per type
        self.nonces: dict[str, list[str]] = {}
        self.open: dict[str, Any] = {}  # the unanswered response per type
        self.acked: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.nacked: dict[str, str] = {}

    def subscription(self, t: str) -> tuple[bool, set[str]]:
        names = set(self.names[t])
        wildcard = "*" in names or (t not in self.explicit and not names)
        return wildcard, names - {"*"}

    def request(self, t: str, names: list[str] | None, nonce_kind: str,
                error: str | None = None) -> discovery_pb2.DiscoveryRequest | None:
        """The request the client sends; updates the model as the server must see it."""
        last = self.last.get(t)
        if nonce_kind == "stale":
            old = self.nonces.get(t, [])[:-1]
            if not old:
                return None
            nonce = old[-1]
        else:
            nonce = last.nonce if last is not None else ""
        if names is None:
            if t not in self.names:
                return None
            names = self.names[t]
        if nonce_kind != "stale":
            if names:
                self.explicit.add(t)
            self.names[t] = names
            if last is not None and self.open.get(t) is last:
                del self.open[t]
                key = (last.version_info, tuple(sorted(res_names(last))))
                if error is None:
                    self.acked[t] = key
                else:
                    self.nacked[t] = last.version_info
        version = self.acked.get(t, ("", ()))[0]
        req = discovery_pb2.DiscoveryRequest(type_url=t, resource_names=names,
                                             version_info=version, response_nonce=nonce)
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return req

    def received(self, r: discovery_pb2.DiscoveryResponse) -> None:
        t, snap = r.type_url, self.snapshot
        assert t not in self.open, "two responses of a type outstanding"
        assert snap is not None and r.version_info == snap.version(t), "not the latest snapshot"
        wildcard, names = self.subscription(t)
        have = snap.resources(t)
        expect = sorted(have) if wildcard else sorted(n for n in names if n in have)
        assert sorted(res_names(r)) == expect, "not the subscribed set"
        for earlier in WAITS_FOR[t]:
            if earlier in self.names and any(self.subscription(earlier)):
                assert self.acked.get(earlier, ("",))[0] == snap.version(earlier), (
                    f"{t} sent before {earlier} was ACKed at the current version")
        key = (r.version_info, tuple(expect))
        assert self.acked.get(t) != key, "re-sent what the client ACKed"
        assert self.nacked.get(t) != r.version_info, "re-sent a NACKed version"
        self.nacked.pop(t, None)
        self.open[t] = self.last[t] = r
        self.nonces.setdefault(t, []).append(r.nonce)


def res_names(r: discovery_pb2.DiscoveryResponse) -> list[str]:
    return [discovery_pb2.Resource.FromString(a.value).name if a.type_url.endswith(".Resource")
            else a.value.decode().split("=")[0] for a in r.resources]


def uncached_equal(stream: SotwStream, snapshot: Snapshot | None, encoded: Response) -> Any:
    """The response decoded, after checking its bytes are those of a response built whole
    for this stream (no memo, its own nonce): the shared body changes nothing on the wire."""
    r = stream.decode(encoded)
    assert snapshot is not None and (r.type_url, r.nonce) == (encoded.type_url, encoded.nonce)
    have = snapshot.resources(r.type_url)
    whole = discovery_pb2.DiscoveryResponse(
        version_info=snapshot.version(r.type_url), type_url=r.type_url, nonce=r.nonce,
        resources=[pack(have[n]) for n in sorted(res_names(r))])
    assert encoded.data == whole.SerializeToString(), "differs from the response built whole"
    return r


def run(steps: list[Any], send: Callable[[Any], list[Any]],
        publish: Callable[[Snapshot], list[Any]]) -> None:
    o = SotwOracle()

    def deliver(responses: list[Any]) -> None:
        for r in responses:
            o.received(r)

    for step in steps:
        kind = step[0]
        if kind == "snapshot":
            o.snapshot = make_snapshot(step[1])
            deliver(publish(o.snapshot))
        elif kind == "subscribe":
            req = o.request(step[1], list(step[2]), "current")
            deliver(send(req))
        else:
            t = step[1]
            if kind in ("ack", "nack") and t not in o.open:
                continue
            req = o.request(t, None, "stale" if kind == "stale" else "current",
                            error="refused" if kind == "nack" else None)
            if req is not None:
                deliver(send(req))
    # Convergence: a snapshot unlike any before, and a client that ACKs everything.
    o.snapshot = make_snapshot({t: {"z": 9} for t in TYPES})
    deliver(publish(o.snapshot))
    while o.open:
        deliver(send(o.request(next(iter(o.open)), None, "current")))
    for t in o.names:
        if any(o.subscription(t)):
            assert o.acked.get(t, ("",))[0] == o.snapshot.version(t), f"{t} did not converge"


NODE = base_pb2.Node(id="n", cluster=GROUP)


@settings(max_examples=300, deadline=None)
@given(ops)
# A NACK leaves the client on what it ACKed: a snapshot back at that version is not re-sent.
@example([("snapshot", {}), ("subscribe", CLUSTER, []), ("ack", CLUSTER),
          ("snapshot", {CLUSTER: {"a": 0}}), ("snapshot", {}), ("nack", CLUSTER)])
def test_sotw_state_machine_follows_the_spec(steps: list[Any]) -> None:
    stream = SotwStream(Limits())
    current: list[Snapshot | None] = [None]

    def drain() -> list[Any]:
        out = []
        while (r := stream.next_response(current[0])) is not None:
            out.append(uncached_equal(stream, current[0], r))
        return out

    def send(req: Any) -> list[Any]:
        req.node.CopyFrom(NODE)
        stream.on_request(req, current[0])
        return drain()

    def publish(s: Snapshot) -> list[Any]:
        current[0] = s
        return drain()

    run(steps, send, publish)


class ResendsNacks(SotwStream):
    """go-control-plane#962's behaviour: a NACK does not stop the re-send."""

    def blocked(self, st: Any, snapshot: Snapshot) -> bool:
        return False

    def on_nack(self, st: Any) -> None:
        st.sent_version = None  # the NACK's version_info is old, so "the client needs it"


class Unordered(SotwStream):
    """Pushes every type as soon as it changes, as go-control-plane does by default."""

    def next_response(self, snapshot: Snapshot | None) -> Any:
        for t in PUSH_ORDER:
            state = self.types.get(t)
            ready = snapshot and state and state.active() and not state.pending
            if ready and (r := self.build(state, snapshot)) is not None:
                state.pending, state.sent_version = True, snapshot.version(t)
                return r
        return None


@pytest.mark.parametrize(("broken", "steps", "message"), [
    (ResendsNacks, [("snapshot", {CLUSTER: {"a": 1}}), ("subscribe", CLUSTER, []),
                    ("nack", CLUSTER), ("subscribe", CLUSTER, [])], "re-sent a NACKed version"),
    (Unordered, [("snapshot", {CLUSTER: {"a": 1}}), ("subscribe", CLUSTER, []),
                 ("subscribe", LISTENER, [])], "sent before"),
])
def test_the_oracle_catches_a_broken_server(broken: type, steps: list[Any], message: str) -> None:
    stream = broken(Limits())
    current: list[Snapshot | None] = [None]

    def drain() -> list[Any]:
        out = []
        while (r := stream.next_response(current[0])) is not None:
            out.append(uncached_equal(stream, current[0], r))
        return out

    def send(req: Any) -> list[Any]:
        req.node.CopyFrom(NODE)
        stream.on_request(req, current[0])
        return drain()

    def publish(s: Snapshot) -> list[Any]:
        current[0] = s
        return drain()

    with pytest.raises(AssertionError, match=message):
        run(steps, send, publish)


@pytest.fixture(scope="module")
def live() -> Any:
    cache = SnapshotCache()
    server = XdsServer(cache)
    server.start()
    yield cache, server
    server.stop()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_the_real_server_follows_the_spec(live: Any, steps: list[Any]) -> None:
    cache, server = live
    group = f"g{next(GROUPS)}"  # a fresh group: no snapshot until the steps set one
    client = AdsClient(f"127.0.0.1:{server.port}", node_id=group, cluster=group)
    try:
        def send(req: Any) -> list[Any]:
            client._put(req)
            return client.settle(server)

        def publish(s: Snapshot) -> list[Any]:
            cache.set_snapshot(group, s)
            return client.settle(server) if client.sent else []

        run(steps, send, publish)
    finally:
        client.close()


delta_ops = st.lists(st.one_of(
    st.tuples(st.just("snapshot"), snapshots),
    st.tuples(st.just("subscribe"), st.sampled_from(TYPES), st.lists(st.sampled_from([*NAMES, "*"]),
                                                                    max_size=2)),
    st.tuples(st.just("unsubscribe"), st.sampled_from(TYPES), st.lists(st.sampled_from(NAMES),
                                                                      max_size=2)),
    st.tuples(st.just("ack"), st.just("")),
    st.tuples(st.just("nack"), st.just("")),
), max_size=25)


@settings(max_examples=300, deadline=None)
@given(delta_ops)
def test_delta_state_machine_converges_and_sends_only_diffs(steps: list[Any]) -> None:
    stream = DeltaStream(Limits())
    snap: Snapshot | None = None
    have: dict[str, dict[str, str]] = {}  # the client's resources per type
    open_: dict[str, Any] = {}  # the unanswered response per type
    nacked: dict[str, str] = {}

    def drain() -> None:
        while (encoded := stream.next_response(snap)) is not None:
            r = stream.decode(encoded)
            assert (r.type_url, r.nonce) == (encoded.type_url, encoded.nonce)
            assert r.type_url not in open_, "two responses of a type outstanding"
            assert nacked.get(r.type_url) != r.system_version_info, "re-sent a NACKed version"
            nacked.pop(r.type_url, None)
            mine = have.setdefault(r.type_url, {})
            for x in r.resources:
                assert mine.get(x.name) != x.version, "re-sent what the client holds"
            open_[r.type_url] = r

    def answer(error: str | None) -> None:
        r = open_.pop(next(iter(open_)))
        if error is None:
            mine = have[r.type_url]
            wanted = subs.get(r.type_url, set())  # unsubscribed since it was sent: dropped
            mine.update({x.name: x.version for x in r.resources
                         if "*" in wanted or x.name in wanted})
            for n in r.removed_resources:
                mine.pop(n, None)
        else:
            nacked[r.type_url] = r.system_version_info
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=r.type_url, response_nonce=r.nonce)
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        stream.on_request(req, snap)

    subs: dict[str, set[str]] = {}
    for step in steps:
        if step[0] == "snapshot":
            snap = make_snapshot(step[1])
        elif step[0] in ("ack", "nack"):
            if open_:
                answer(None if step[0] == "ack" else "refused")
        else:
            t, names = step[1], step[2]
            first = t not in subs
            s = subs.setdefault(t, set())
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=t, node=NODE)
            if first and (step[0] == "unsubscribe" or not names):
                s.add("*")  # legacy wildcard: the first request subscribes to nothing
            if step[0] == "subscribe":
                req.resource_names_subscribe.extend(names)
                s |= set(names)
            else:
                req.resource_names_unsubscribe.extend(names)
                s -= set(names)
                if "*" not in s:
                    for n in names:
                        have.get(t, {}).pop(n, None)
            stream.on_request(req, snap)
        drain()
    snap = make_snapshot({t: {"z": 9, "a": 7} for t in TYPES})
    drain()
    while open_:
        answer(None)
        drain()
    for t, s in subs.items():
        want = snap.resources(t)
        expect = {n: r.version for n, r in want.items() if "*" in s or n in s}
        assert have.get(t, {}) == expect, f"{t} did not converge"
