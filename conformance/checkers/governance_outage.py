"""I-2 governance outage: with the policy source down, decisions go on at the same speed.

The control plane that serves policy bundles is paused. Sidecars decide from the
bundle they hold, so no load op may fail and the fault window's latency must be
the control window's (the latency statistic of ``stats``).
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.stats import LATENCY_STATISTIC, LatencyBounds
from conformance.checkers.steady import LATENCY_CHECK, unchanged
from conformance.history import History

INVARIANT = "I-2"
TITLE = "Governance outage"
STATISTIC = LATENCY_CHECK + LATENCY_STATISTIC


@dataclass(frozen=True)
class Bounds(LatencyBounds):
    """The latency statistic's bounds (see ``stats.LatencyBounds``)."""


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    return unchanged(INVARIANT, STATISTIC, history, scenario, b)
