"""``Publisher``: put a transition's snapshots in the cache, one phase at a time.

A topology change is a list of snapshots (``control.pipeline.topology``): each
phase must be held by every client that subscribes to what it changed before the
next phase may rely on it (a route to a cluster Envoy has not ACKed would 503).
So after each phase but the last the publisher waits, bounded, until every stream
subscribed to each changed type ACKs that type's new version, and at least as many
as were subscribed when the transition began (a client reconnecting mid-transition
stops it rather than being skipped); the server's push
order already makes Envoy take clusters before routes inside one phase. Who
"the right node group" is falls out of the subscriptions: Envoys subscribe to
CDS/EDS/LDS/RDS, sidecars and demo cells to the cell table, sidecars to the
assignment. A NACK or a timeout stops the transition where it is: the phase
published last stays (every phase is a consistent snapshot by itself) and the
reason, with the node and the NACK text, goes to status. The last phase is not
waited on: nothing follows it, and its ACKs and NACKs show in status anyway.

An ACKed intermediate phase is then held for ``drain`` seconds: an ACK says the
client switched, not that the requests it routed by the previous phase finished,
so a phase that removes something (a route, an accepted table) waits for those to
drain. Set it to at least the upstream request timeout where requests are long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control.xds.cache import DEFAULT_GROUP, Snapshot, SnapshotCache, short_type
from control.xds.server import XdsServer
from policies.core.xds.types import PUSH_ORDER

log = logging.getLogger("a1.control.publish")

ACK_TIMEOUT = 10.0  # seconds each phase may wait for its ACKs
DRAIN = 1.0  # seconds an ACKed intermediate phase is held before the next one


@dataclass(frozen=True)
class PublishResult:
    """How far a transition got: ``done`` of ``phases`` published; ``error`` if it stopped."""

    phases: int
    done: int
    error: str | None = None
    nacked: bool = False  # stopped by a NACK (retrying cannot help until the config changes)

    @property
    def ok(self) -> bool:
        return self.error is None and self.done == self.phases


def changed_types(before: Snapshot | None, after: Snapshot) -> list[str]:
    """The types whose version differs, in push order."""
    return [t for t in PUSH_ORDER
            if before is None or before.version(t) != after.version(t)]


class Publisher:
    def __init__(self, cache: SnapshotCache, server: XdsServer, *, group: str = DEFAULT_GROUP,
                 ack_timeout: float = ACK_TIMEOUT, drain: float = DRAIN) -> None:
        self.cache, self.server = cache, server
        self.group = group
        self.ack_timeout = ack_timeout
        self.drain = drain
        self._lock = threading.Lock()
        self._progress: dict[str, Any] | None = None

    def progress(self) -> dict[str, Any] | None:
        """The transition in progress: ``{"phase": i, "phases": n, "waiting_for": [...]}``."""
        with self._lock:
            return dict(self._progress) if self._progress else None

    def _set_progress(self, value: dict[str, Any] | None) -> None:
        with self._lock:
            self._progress = value

    def publish(self, phases: Sequence[Snapshot]) -> PublishResult:
        """Publish every phase in order, waiting for ACKs between phases (see the module)."""
        n = len(phases)
        # The clients present now must all take part: one that is reconnecting when a
        # phase goes out must not let the next phase rely on what it has not got.
        expected = self._subscribers()
        try:
            for i, snapshot in enumerate(phases):
                before = self.cache.snapshot(self.group)
                types = changed_types(before, snapshot)
                self._set_progress({"phase": i + 1, "phases": n, "waiting_for": []})
                self.cache.set_snapshot(self.group, snapshot)
                log.info("control: phase %d of %d published (%s)", i + 1, n,
                         ", ".join(short_type(t) for t in types) or "no change")
                if i == n - 1 or not types:
                    continue
                stopped = self._wait(snapshot, types, i + 1, n, expected)
                if stopped is not None:
                    error, nacked = stopped
                    log.error("control: transition stopped at phase %d of %d: %s", i + 1, n, error)
                    return PublishResult(n, i + 1, error, nacked)
                log.info("control: phase %d of %d ACKed by every subscriber", i + 1, n)
                if self.drain > 0:
                    self._set_progress({"phase": i + 1, "phases": n, "waiting_for": ["drain"]})
                    time.sleep(self.drain)
            return PublishResult(n, n)
        finally:
            self._set_progress(None)

    def _subscribers(self) -> dict[str, int]:
        """How many live streams subscribe to each type."""
        counts: dict[str, int] = {}
        for conn in self.server.connections():
            for type_url, st in (conn.get("types") or {}).items():
                if st.get("wildcard") or st.get("name_count"):
                    counts[type_url] = counts.get(type_url, 0) + 1
        return counts

    def _wait(self, snapshot: Snapshot, types: list[str], phase: int, n: int,
              expected: dict[str, int]) -> tuple[str, bool] | None:
        deadline = time.monotonic() + self.ack_timeout
        for type_url in types:
            version = snapshot.version(type_url)
            self._set_progress({"phase": phase, "phases": n,
                                "waiting_for": [short_type(type_url)]})
            remaining = max(0.0, deadline - time.monotonic())
            if self.server.wait_acked(self.group, type_url, version, timeout=remaining,
                                      min_clients=expected.get(type_url, 0)):
                continue
            return self._why(type_url, version, phase, n)
        return None

    def _why(self, type_url: str, version: str, phase: int, n: int) -> tuple[str, bool]:
        """Name the node that NACKed (with its text) or the ones that did not ACK in time;
        and whether it was a NACK."""
        kind = short_type(type_url)
        late = []
        for conn in self.server.connections():
            st = conn.get("types", {}).get(type_url)
            if st is None or (not st.get("wildcard") and not st.get("names")):
                continue
            node = conn.get("node_id") or conn.get("peer") or "?"
            if st.get("last_nack_version") == version and st.get("acked_version") != version:
                return (f"phase {phase}/{n}: node {node} NACKed {kind} version "
                        f"{version[:12]}: {st.get('last_nack', '')}", True)
            if st.get("acked_version") != version:
                late.append(node)
        shown = ", ".join(late[:5]) + (f" and {len(late) - 5} more" if len(late) > 5 else "")
        return (f"phase {phase}/{n}: {kind} version {version[:12]} not ACKed within "
                f"{self.ack_timeout:g}s by {shown or 'a client that left'}", False)
