"""Prometheus exposition of the sidecar's counters, computed at scrape time.

Metrics (all on the metrics port, ``/metrics``):
``a1_decisions_total{result,cell}`` (``cell``: the cell the decision names, "" when
it names none: a malformed request, an evaluation failure),
``a1_policy_decisions_total{cell,version,result}`` (the cell the request was routed
to and the policy version that evaluated it; what a staged rollout divides into
error and deny rates; label sets only for the versions of the current and the
previous snapshot), ``a1_cell_policy_version{cell,version}`` (1 per cell of the
table: the version its requests get), ``a1_decision_latency_seconds`` (histogram),
``a1_policy_eval_errors_total``, ``a1_policy_load_failures_total``,
``a1_policy_version`` (info:
``a1_policy_version_info{version,cells_version}``), ``a1_cache_hits_total``,
``a1_cache_entries``, ``a1_cache_bytes``, ``a1_claims_cache_bytes``,
``a1_decision_log_dropped_total`` (and ``..._by_reason_total{reason}``),
``a1_decision_log_shipped_total``, ``a1_decision_log_queue_bytes``, the process
collector's ``process_*`` (resident memory, CPU),
``a1_policy_headers_dropped_total{header}`` (header: a fixed forbidden name or a class
such as ``x-envoy-*``, ``:pseudo``, ``invalid-name``, ``invalid-value``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ext_proc import claims
from ext_proc.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ext_proc.engine import Engine


class EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        eng = self.engine
        s = eng.stats.snapshot()
        decisions = CounterMetricFamily(
            "a1_decisions", "Authorization decisions.", labels=["result", "cell"]
        )
        for (result, cell), n in sorted(s["decisions"].items()):  # type: ignore[attr-defined]
            decisions.add_metric([result, cell], n)
        yield decisions
        by_version = CounterMetricFamily(
            "a1_policy_decisions",
            "Decisions by the cell routed to and the policy version that evaluated them "
            "(versions of the current and the previous snapshot).",
            labels=["cell", "version", "result"],
        )
        for (cell, version, result), n in sorted(s["decisions_by_version"].items()):  # type: ignore[attr-defined]
            by_version.add_metric([cell, version, result], n)
        yield by_version
        assigned = GaugeMetricFamily(
            "a1_cell_policy_version",
            "1 for each cell and the policy version its requests are evaluated with.",
            labels=["cell", "version"],
        )
        for cell, version in sorted(s["cell_versions"].items()):  # type: ignore[attr-defined]
            assigned.add_metric([cell, version], 1)
        yield assigned

        counts: list[int] = s["latency_counts"]  # type: ignore[assignment]
        cumulative, buckets = 0, []
        for bound, c in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
            cumulative += c
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "a1_decision_latency_seconds",
            "Time to decide, inside the engine (cache hits included).",
            buckets=buckets,
            sum_value=s["latency_sum_ns"] / 1e9,  # type: ignore[operator]
        )
        yield CounterMetricFamily(
            "a1_policy_eval_errors",
            "Decisions denied because evaluation failed (trap, bad result, internal error).",
            value=s["eval_errors"],
        )
        yield CounterMetricFamily(
            "a1_policy_load_failures",
            "New policy modules or cell tables refused (the last good one kept serving).",
            value=s["load_failures"],
        )
        info = InfoMetricFamily("a1_policy_version", "The policy and cell table being served.")
        info.add_metric([], {"version": s["policy_version"], "cells_version": s["cells_version"]})  # type: ignore[dict-item]
        yield info
        yield CounterMetricFamily(
            "a1_cache_hits",
            "Decisions served from the exact decision cache.",
            value=s["cache_hits"],
        )
        snap = eng.snapshot
        entries = len(snap.cache) if snap is not None and snap.cache is not None else 0
        yield GaugeMetricFamily("a1_cache_entries", "Entries in the decision cache.", value=entries)
        cache = snap.cache if snap is not None else None
        yield GaugeMetricFamily(
            "a1_cache_bytes",
            "Bytes charged to the decision cache (both layers; bound: cache.max_bytes).",
            value=cache.exact.bytes + cache.memo.bytes if cache is not None else 0,
        )
        dropped = CounterMetricFamily(
            "a1_policy_headers_dropped",
            "Headers a policy decision tried to set that the sidecar refused.",
            labels=["header"],
        )
        for label, n in sorted(s["headers_dropped"].items()):  # type: ignore[attr-defined]
            dropped.add_metric([label], n)
        yield dropped
        yield GaugeMetricFamily(
            "a1_claims_cache_bytes",
            "Bytes charged to the decoded-claims caches (bound: claims_cache.max_bytes each).",
            value=claims.cache_bytes(),
        )
        dl = eng.decision_log
        yield CounterMetricFamily(
            "a1_decision_log_dropped",
            "Decision-log entries dropped: queue full (entries or bytes), or not delivered.",
            value=dl.dropped if dl is not None else 0,
        )
        by_reason = CounterMetricFamily(
            "a1_decision_log_dropped_by_reason",
            "Decision-log entries dropped, by reason (queue_full, write_error, sink_*).",
            labels=["reason"],
        )
        for reason, n in sorted((dl.dropped_by_reason() if dl is not None else {}).items()):
            by_reason.add_metric([reason], n)
        yield by_reason
        yield CounterMetricFamily(
            "a1_decision_log_shipped",
            "Decision-log entries the network sink acknowledged (decision_log.url).",
            value=dl.shipped if dl is not None else 0,
        )
        yield GaugeMetricFamily(
            "a1_decision_log_queue_bytes",
            "Bytes queued for the decision-log writer (bound: decision_log.max_bytes).",
            value=dl.pending_bytes if dl is not None else 0,
        )


def make_registry(engine: Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    # process_resident_memory_bytes and friends: memory bounds are checked from outside.
    ProcessCollector(registry=registry)
    return registry


def serve_metrics(address: str, registry: CollectorRegistry) -> object:
    """Start ``/metrics`` on a daemon thread; returns the server (``.shutdown()`` to stop)."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
