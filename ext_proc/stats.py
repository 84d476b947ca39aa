"""Hot-path counters: plain ints in per-thread objects, summed only when scraped.

prometheus-client's Counter.inc and Histogram.observe take a lock each (about a
microsecond per decision for the four metrics a decision touches). A thread that
decides owns its ``ThreadStats`` and bumps ints without locks; the collector in
``ext_proc.metrics`` adds the threads up at scrape time.

Decisions are counted per ``Decision.stats_key`` = ``(result, cell, route_cell,
version)``: ``cell`` is the cell the decision names (``a1_decisions_total``),
``route_cell`` and ``version`` are where the request was routed and which policy
version evaluated it (``a1_policy_decisions_total``, what a staged rollout
watches). The key is built once per decision, so counting allocates nothing.
Versions are bounded: a thread folds the counts of versions that left service
(neither in the snapshot nor in the one before) into ``(result, cell, "", "")``
when it first decides under a new snapshot, so ``a1_decisions_total`` stays
monotonic while the per-version label sets go away.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

# Upper bounds of the decision-latency histogram, in seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
)  # fmt: skip
_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS)

# (result, cell named by the decision, cell routed to, policy version used); "" = none.
StatsKey = tuple[str, str, str, str]


class ThreadStats:
    """One deciding thread's counters. Only that thread writes them."""

    __slots__ = (
        "cache_hits", "decisions", "eval_errors", "headers_dropped", "latency_counts",
        "latency_sum_ns",
    )  # fmt: skip

    def __init__(self) -> None:
        self.decisions: dict[StatsKey, int] = {}
        self.latency_counts = [0] * (len(_BOUNDS_NS) + 1)
        self.latency_sum_ns = 0
        self.cache_hits = 0
        self.eval_errors = 0
        self.headers_dropped: dict[str, int] = {}  # label (policies.headers.drop_label) -> n

    def drop_headers(self, labels: tuple[str, ...]) -> None:
        d = self.headers_dropped
        for label in labels:
            d[label] = d.get(label, 0) + 1

    def record(self, key: StatsKey, elapsed_ns: int) -> None:
        d = self.decisions
        d[key] = d.get(key, 0) + 1
        self.latency_counts[bisect_left(_BOUNDS_NS, elapsed_ns)] += 1
        self.latency_sum_ns += elapsed_ns

    def retire(self, live: frozenset[str]) -> None:
        """Fold the counts of versions not in ``live`` into version-less keys (owner only).

        Builds a new dict and stores it in one assignment, so a concurrent scrape
        sees either the old or the new counts, never a half-folded dict."""
        old = self.decisions
        if all(k[3] in live or not k[3] for k in old):
            return
        new: dict[StatsKey, int] = {}
        for k, n in old.items():
            if k[3] and k[3] not in live:
                k = (k[0], k[1], "", "")
            new[k] = new.get(k, 0) + n
        self.decisions = new


class Stats:
    """All threads' counters plus the rare, process-wide ones (guarded by a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[ThreadStats] = []
        self._local = threading.local()
        self.load_failures = 0
        self.policy_version = ""
        self.cells_version = ""
        self.cell_versions: dict[str, str] = {}
        self.live_versions: frozenset[str] = frozenset()

    def mine(self) -> ThreadStats:
        """The calling thread's counters, created on first use."""
        try:
            return self._local.stats  # type: ignore[no-any-return]
        except AttributeError:
            st = ThreadStats()
            with self._lock:
                self._threads.append(st)
            self._local.stats = st
            return st

    def add_load_failure(self) -> None:
        with self._lock:
            self.load_failures += 1

    def set_versions(
        self,
        policy_version: str,
        cells_version: str,
        cell_versions: dict[str, str] | None = None,
        live_versions: frozenset[str] | None = None,
    ) -> None:
        """What is served: the default policy version, the cell table's version, each
        cell's policy version, and the versions whose per-version counts are exposed
        (this snapshot's and the previous one's)."""
        with self._lock:
            self.policy_version = policy_version
            self.cells_version = cells_version
            self.cell_versions = dict(cell_versions or {})
            self.live_versions = live_versions or frozenset((policy_version,))

    def snapshot(self) -> dict[str, object]:
        """Totals over all threads (racy by at most the increments in flight)."""
        with self._lock:
            threads = list(self._threads)
            out: dict[str, object] = {
                "load_failures": self.load_failures,
                "policy_version": self.policy_version,
                "cells_version": self.cells_version,
                "cell_versions": dict(self.cell_versions),
                "live_versions": self.live_versions,
            }
            live = self.live_versions
        decisions: dict[tuple[str, str], int] = {}
        by_version: dict[tuple[str, str, str], int] = {}
        dropped: dict[str, int] = {}
        counts = [0] * (len(_BOUNDS_NS) + 1)
        total_ns = hits = errors = 0
        for st in threads:
            for (result, cell, route, version), v in list(st.decisions.items()):
                k = (result, cell)
                decisions[k] = decisions.get(k, 0) + v
                if version in live:
                    kv = (route, version, result)
                    by_version[kv] = by_version.get(kv, 0) + v
            for k2, v2 in list(st.headers_dropped.items()):
                dropped[k2] = dropped.get(k2, 0) + v2
            for i, c in enumerate(st.latency_counts):
                counts[i] += c
            total_ns += st.latency_sum_ns
            hits += st.cache_hits
            errors += st.eval_errors
        out.update(
            decisions=decisions,
            decisions_by_version=by_version,
            latency_counts=counts,
            latency_sum_ns=total_ns,
            cache_hits=hits,
            eval_errors=errors,
            headers_dropped=dropped,
        )
        return out
