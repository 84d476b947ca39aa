"""Versioned, immutable snapshots per node group: the state half of the xDS server.

As in go-control-plane, the cache only holds state; the per-stream protocol (what
to send, when, and what the client holds) lives in ``sotw``/``delta``. A snapshot
is immutable, and every version in it is a content hash, so two replicas fed the
same input publish the same versions and a client may move between them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from control.xds.consistency import check_snapshot
from policies.core.errors import ConfigError
from policies.core.xds.types import KNOWN_TYPES, PUSH_ORDER, resource_version

DEFAULT_GROUP = "default"

# The per-snapshot memo of encoded responses (``Snapshot.memo``): at most this many
# entries, and this many bytes beyond twice the snapshot's own size (every type's
# full wildcard body fits, with room for a few distinct subscriptions).
MEMO_MAX_ENTRIES = 1024
MEMO_SPARE_BYTES = 16 << 20


@dataclass(frozen=True)
class Resource:
    """One named resource: Envoy types hold the serialized message, A1 types raw bytes."""

    type_url: str
    name: str
    value: bytes
    version: str

    @classmethod
    def of(cls, type_url: str, name: str, value: bytes) -> Resource:
        return cls(type_url, name, bytes(value), resource_version(type_url, name, value))

    @classmethod
    def from_message(cls, message: Any) -> Resource:
        """An Envoy protobuf message, serialized deterministically (map order fixed)."""
        full = message.DESCRIPTOR.full_name
        name = message.cluster_name if full.endswith("ClusterLoadAssignment") else message.name
        value = message.SerializeToString(deterministic=True)
        return cls.of("type.googleapis.com/" + full, name, value)


def _types_version(resources: Mapping[str, Resource]) -> str:
    h = hashlib.sha256()
    for name in sorted(resources):
        h.update(name.encode() + b"\0" + resources[name].version.encode() + b"\n")
    return h.hexdigest()[:32]


class Snapshot:
    """An immutable, consistent set of resources of every type for one node group."""

    __slots__ = ("_by_type", "_memo", "_memo_budget", "_memo_bytes", "_memo_lock", "_names",
                 "_size", "_versions")

    def __init__(self, resources: Iterable[Resource]) -> None:
        by_type: dict[str, dict[str, Resource]] = {t: {} for t in PUSH_ORDER}
        size = 0
        for r in resources:
            if r.type_url not in KNOWN_TYPES:
                raise ConfigError(f"snapshot: resource {r.name!r} has unknown type {r.type_url}")
            if not r.name:
                raise ConfigError(f"snapshot: a {short_type(r.type_url)} resource has no name")
            if r.name in by_type[r.type_url]:
                raise ConfigError(f"snapshot: duplicate {short_type(r.type_url)} {r.name!r}")
            if r.version != resource_version(r.type_url, r.name, r.value):
                kind = short_type(r.type_url)
                raise ConfigError(f"snapshot: {kind} {r.name!r}: version is not its content hash")
            by_type[r.type_url][r.name] = r
            size += len(r.value)
        self._by_type = {t: MappingProxyType(m) for t, m in by_type.items()}
        self._versions = {t: _types_version(m) for t, m in by_type.items()}
        self._names = {t: frozenset(m) for t, m in by_type.items()}
        self._size = size
        self._memo: OrderedDict[tuple[str, frozenset[str]], bytes] = OrderedDict()
        self._memo_bytes = 0
        self._memo_budget = 2 * size + MEMO_SPARE_BYTES
        self._memo_lock = threading.Lock()

    def resources(self, type_url: str) -> Mapping[str, Resource]:
        return self._by_type.get(type_url, MappingProxyType({}))

    def names(self, type_url: str) -> frozenset[str]:
        """Every name of a type, one shared object: the wildcard subscription's set."""
        return self._names.get(type_url, frozenset())

    def memo(self, type_url: str, names: frozenset[str], encode: Callable[[], bytes]) -> bytes:
        """``encode()``, the bytes a response of ``names`` of ``type_url`` shares with every
        stream that chose the same names from this snapshot, computed once.

        A fan-out sends the same resources to every client of a group; only the nonce
        differs. The memo lives in the (immutable) snapshot, so a new snapshot starts
        empty and nothing stale is served. Bounded (least recently used goes first) by
        ``MEMO_MAX_ENTRIES`` and by bytes (``_memo_cost``); a value larger than the whole
        budget is returned without being kept.
        """
        key = (type_url, names)
        with self._memo_lock:
            value = self._memo.get(key)
            if value is not None:
                self._memo.move_to_end(key)
                return value
        value = encode()
        cost = _memo_cost(key, value)
        if cost > self._memo_budget:
            return value
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = value
                self._memo_bytes += cost
                while (len(self._memo) > MEMO_MAX_ENTRIES
                       or self._memo_bytes > self._memo_budget):
                    old_key, old = self._memo.popitem(last=False)
                    self._memo_bytes -= _memo_cost(old_key, old)
        return value

    def memo_usage(self) -> tuple[int, int]:
        """(entries, bytes) held by the memo: for tests and status."""
        with self._memo_lock:
            return len(self._memo), self._memo_bytes

    def version(self, type_url: str) -> str:
        """Hash of the sorted (name, version) pairs of that type; equal content, equal version."""
        return self._versions[type_url]

    def versions(self) -> dict[str, str]:
        return dict(self._versions)

    def size_bytes(self) -> int:
        return self._size

    def check(self) -> None:
        """Raise ConfigError naming the first Envoy reference that does not resolve."""
        check_snapshot(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self._versions == other._versions

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._versions.items())))


def _memo_cost(key: tuple[str, frozenset[str]], value: bytes) -> int:
    """Bytes charged for one memo entry: the value, and each name with its set slot."""
    return len(value) + len(key[0]) + sum(len(n) + 32 for n in key[1])


def short_type(type_url: str) -> str:
    """The message name of a type URL (``Cluster``, ``CellTable``): for logs and metric labels."""
    return type_url.rsplit(".", 1)[-1].rsplit("/", 1)[-1]


def default_node_group(node: Any) -> str:
    """The node group of an Envoy ``Node``: its cluster, or ``default`` without one."""
    return getattr(node, "cluster", "") or DEFAULT_GROUP


class SnapshotCache:
    """The latest snapshot per node group, with a generation counter and change watchers.

    Thread-safe: the publisher may run in any thread. Watchers are called, in the
    publisher's thread, with the group name; the server turns that into a wake-up
    on its event loop. Streams always read the latest snapshot, so a burst of
    ``set_snapshot`` calls is seen as one change (never replayed one by one).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._snapshots: dict[str, tuple[int, Snapshot]] = {}
        self._generation = 0
        self._watchers: list[Callable[[str], None]] = []

    def set_snapshot(self, group: str, snapshot: Snapshot) -> None:
        with self._lock:
            current = self._snapshots.get(group)
            if current is not None and current[1] == snapshot:
                return  # same content: nothing to wake anyone for
            self._generation += 1
            self._snapshots[group] = (self._generation, snapshot)
            watchers = list(self._watchers)
            self._lock.notify_all()
        for watcher in watchers:
            watcher(group)

    def snapshot(self, group: str) -> Snapshot | None:
        with self._lock:
            entry = self._snapshots.get(group)
        return entry[1] if entry else None

    def entry(self, group: str) -> tuple[int, Snapshot | None]:
        """(generation, snapshot) of a group; the generation grows with every change."""
        with self._lock:
            entry = self._snapshots.get(group)
        return entry if entry else (0, None)

    def groups(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def watch(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(group)`` after every change; returns the function that stops it."""
        with self._lock:
            self._watchers.append(callback)

        def unwatch() -> None:
            with self._lock:
                if callback in self._watchers:
                    self._watchers.remove(callback)

        return unwatch

    def wait(self, group: str, after: int, timeout: float) -> int:
        """Block until the group's generation exceeds ``after`` (or timeout); returns it."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._snapshots.get(group, (0, None))[0] > after, timeout=timeout
            )
            return self._snapshots.get(group, (0, None))[0]
