"""I-3 no synchronous dependency: with every non-data-plane process stopped, nothing changes.

Every process off the request path (the control plane and the telemetry sink; the
relay is Envoy's node-local xDS proxy, part of the data plane) gets SIGSTOP. If any
request waited on one of them, ops would fail or slow: so no load op may fail and
the fault window's latency must be the control window's.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.stats import LATENCY_STATISTIC, LatencyBounds
from conformance.checkers.steady import LATENCY_CHECK, unchanged
from conformance.history import History

INVARIANT = "I-3"
TITLE = "No synchronous dependency"
STATISTIC = LATENCY_CHECK + LATENCY_STATISTIC


@dataclass(frozen=True)
class Bounds(LatencyBounds):
    """The latency statistic's bounds (see ``stats.LatencyBounds``)."""


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    return unchanged(INVARIANT, STATISTIC, history, scenario, b)
