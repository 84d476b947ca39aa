"""I-7 telemetry is fire-and-forget: a dead or slow sink changes neither latency nor memory.

The sink is stopped or slowed. If the decision log were written inline, requests
would slow or fail; if its queue were unbounded, the sidecar would grow. So: no
failed load op, the latency statistic passes, the sidecar's RSS in the fault
window stays within a bound of the control window's, and every sampled queue
size stays within the configured cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, number, numbers, spans
from conformance.checkers.stats import LATENCY_STATISTIC, LatencyBounds
from conformance.checkers.steady import LATENCY_CHECK, unchanged
from conformance.history import History, Window

INVARIANT = "I-7"
TITLE = "Telemetry is fire-and-forget"
MIB = 1 << 20
STATISTIC = LATENCY_CHECK + LATENCY_STATISTIC + (
    "; memory: max sidecar_rss_bytes sample in the fault window <= rss_ratio * max in the "
    "control window + rss_slack_bytes; every decision_log_queue_bytes sample <= "
    "observation decision_log_max_bytes")


@dataclass(frozen=True)
class Bounds(LatencyBounds):
    """Latency: see ``stats.LatencyBounds``. rss_ratio/rss_slack_bytes: a bounded queue
    adds at most its cap (default 16 MiB) plus allocator slack, so 1.25x + 32 MiB passes a
    bounded sidecar and catches one buffering an outage's worth of decisions."""

    rss_ratio: float = 1.25
    rss_slack_bytes: int = 32 * MIB


def _max_in(samples: list, w: Window, name: str) -> float:
    inside = [o.value for o in samples if w.start <= o.t < w.end]
    if not inside:
        raise Missing(f"no {name} sample in the {w.name} window")
    return float(max(inside))


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    s = spans(history, scenario)
    rss = numbers(history, scenario, "sidecar_rss_bytes")
    rss_c = _max_in(rss, s.control, "sidecar_rss_bytes")
    rss_f = _max_in(rss, s.fault, "sidecar_rss_bytes")
    queue = numbers(history, scenario, "decision_log_queue_bytes")
    if not queue:
        raise Missing(f"observation 'decision_log_queue_bytes' not recorded in scenario "
                      f"{scenario!r}")
    cap = number(history, scenario, "decision_log_max_bytes")
    result = unchanged(INVARIANT, STATISTIC, history, scenario, b)
    problems = [result.detail] if result.detail else []
    measured = dict(result.measured)
    measured["sidecar_rss_max_bytes"] = {"control": int(rss_c), "fault": int(rss_f)}
    limit = b.rss_ratio * rss_c + b.rss_slack_bytes
    if rss_f > limit:
        problems.append(f"sidecar RSS grew to {rss_f / MIB:.1f} MiB in the fault window "
                        f"(bound {limit / MIB:.1f} MiB = {b.rss_ratio} x control max "
                        f"{rss_c / MIB:.1f} MiB + {b.rss_slack_bytes / MIB:.0f} MiB)")
    over = [o for o in queue if o.value > cap]
    measured["decision_log_queue_max_bytes"] = int(max(o.value for o in queue))
    measured["decision_log_max_bytes"] = int(cap)
    if over:
        first = ", ".join(f"{int(o.value)} B at {o.t:.3f}s" for o in over[:5])
        problems.append(f"{len(over)} decision-log queue samples above the cap {int(cap)} B: "
                        f"{first}")
    return CheckResult(INVARIANT, scenario, not problems, STATISTIC, result.bounds,
                       measured, "; ".join(problems))
