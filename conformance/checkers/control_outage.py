"""I-1 control-plane outage: the data plane serves on last-known-good config and re-syncs.

The fault kills, pauses or blackholes the control plane's links. Nothing on the
request path may notice: no load op fails in the fault or recovery window, each
group converges after the repair, and every xDS client reconnects within a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import number, spans
from conformance.checkers.stats import by_group
from conformance.checkers.steady import (
    control_baseline,
    converged,
    fault_ops,
    no_failures,
    verdict,
)
from conformance.history import History

INVARIANT = "I-1"
TITLE = "Control-plane outage"
STATISTIC = (
    "count of failed load ops (no response or non-2xx) per group over the fault and "
    "recovery windows == 0; convergence: per group, the first run of convergence_ops "
    "consecutive 2xx ops invoked after the repair completes within convergence_s of it; "
    "observation resync_s (repair until every xDS client is connected) <= resync_s")


@dataclass(frozen=True)
class Bounds:
    """min_ops: load ops each of the control and fault windows must hold (fewer shows
    nothing). convergence_ops/convergence_s: N consecutive successes within a bound of
    the repair; 15 s covers xDS reconnect backoff on a loaded 2-core machine.
    resync_s: repair to every xDS client connected (Envoy's backoff tops out near 10 s)."""

    min_ops: int = 10
    convergence_ops: int = 5
    convergence_s: float = 15.0
    resync_s: float = 15.0


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    s = spans(history, scenario)
    resync = number(history, scenario, "resync_s")
    measured: dict = {}
    problems: list[str] = []
    control = control_baseline(history, scenario, b.min_ops, measured, problems)
    during = fault_ops(history, scenario, b.min_ops, "recovery")
    no_failures(during, measured, problems)
    converged(history, scenario, s, list(by_group(control)), b.convergence_ops,
              b.convergence_s, measured, problems)
    measured["resync_s"] = round(resync, 3)
    if resync > b.resync_s:
        problems.append(f"xDS clients re-synced {resync:.3f}s after the repair "
                        f"(bound {b.resync_s}s)")
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
