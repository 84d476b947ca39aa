"""The steady-state hypothesis most invariants share: the data plane serves as before.

Chaos Toolkit's idea, made a count: the control window shows the stack healthy
(enough load ops, none failed), then the fault and recovery windows fail no load
op, each group converges after the repair, and latency stays the control window's.
Each piece appends to the check's ``problems`` (one sentence each, naming ops) and
records its figures in ``measured``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Spans, ops_in, require_ops, spans
from conformance.checkers.stats import (
    LatencyBounds,
    by_group,
    convergence_time,
    failures,
    latency_shift,
    load_ops,
    name_ops,
)
from conformance.history import History, Op

Problems = list[str]
Measured = dict[str, Any]


def verdict(invariant: str, scenario: str, statistic: str, bounds: Any,
            measured: Measured, problems: Problems) -> CheckResult:
    return CheckResult(invariant, scenario, not problems, statistic, plain(asdict(bounds)),
                       measured, "; ".join(problems))


def plain(d: dict[str, Any]) -> dict[str, Any]:
    """Bounds as JSON/YAML-safe values (tuples and sets become sorted lists)."""
    return {k: sorted(v) if isinstance(v, tuple | set | frozenset) else v for k, v in d.items()}


def control_baseline(history: History, scenario: str, min_ops: int,
                     measured: Measured, problems: Problems) -> list[Op]:
    """The control window's load ops: at least ``min_ops``, and none failed.

    A control window with failures means the stack was unhealthy before the fault,
    so nothing measured against it is evidence.
    """
    control = load_ops(ops_in(history, scenario, "control"))
    require_ops(control, f"load ops in the control window of {scenario!r}", min_ops)
    bad = failures(control)
    measured["control_ops"] = len(control)
    measured["control_failed"] = len(bad)
    if bad:
        problems.append("control window unhealthy, so it is no baseline: "
                        + name_ops(bad, "failed ops"))
    return control


def fault_ops(history: History, scenario: str, min_ops: int, *windows: str) -> list[Op]:
    """Load ops of the fault (and any further named) windows: at least ``min_ops``."""
    ops = load_ops(ops_in(history, scenario, "fault", *windows))
    require_ops(ops, f"load ops in the fault window of {scenario!r}", min_ops)
    return ops


def no_failures(ops: list[Op], measured: Measured, problems: Problems,
                key: str = "fault_recovery", groups: set[str] | None = None) -> None:
    """Per group: ops and failed ops; any failure is a problem naming the first few."""
    bad = failures(ops)
    if groups is not None:
        ops = [o for o in ops if o.group in groups]
        bad = [o for o in bad if o.group in groups]
    fails = by_group(bad)
    measured[key] = {g: {"ops": len(v), "failed": len(fails.get(g, []))}
                     for g, v in by_group(ops).items()}
    if bad:
        problems.append(name_ops(bad, f"failed load ops in {key.replace('_', '+')}"))


def converged(history: History, scenario: str, spans: Spans, groups: list[str], n: int,
              within_s: float, measured: Measured, problems: Problems) -> None:
    """Each group's first run of ``n`` consecutive ok ops after the repair, within bound."""
    ops = by_group(load_ops(history.ops(scenario)))
    out: dict[str, float | None] = {}
    late = []
    for g in groups:
        t = convergence_time(ops.get(g, []), spans.repair, n)
        out[g] = None if t is None else round(t, 3)
        if t is None or t > within_s:
            late.append(f"{g} ({'never' if t is None else f'{t:.3f}s'})")
    measured["convergence_s"] = out
    if late:
        problems.append(f"groups not converged ({n} consecutive 2xx ops) within {within_s}s "
                        f"of the repair at {spans.repair:.3f}s: {', '.join(late)}")


def latency(control: list[Op], fault: list[Op], b: LatencyBounds,
            measured: Measured, problems: Problems) -> None:
    """The latency statistic over the 2xx ops of each window."""
    v = latency_shift([o.latency for o in control if o.ok],
                      [o.latency for o in fault if o.ok], b)
    measured["latency"] = v.measured
    if not v.passed:
        problems.append(v.reason)


LATENCY_CHECK = (
    "count of failed load ops (no response or non-2xx) per group over the fault and "
    "recovery windows == 0; and ")


def unchanged(invariant: str, statistic: str, history: History, scenario: str,
              b: LatencyBounds) -> CheckResult:
    """I-2/I-3's judgement: no failed op, and the fault window's latency is the control's."""
    spans(history, scenario)
    measured: Measured = {}
    problems: Problems = []
    control = control_baseline(history, scenario, 1, measured, problems)
    fault = fault_ops(history, scenario, 1)
    no_failures(load_ops(ops_in(history, scenario, "fault", "recovery")), measured, problems)
    latency(control, fault, b, measured, problems)
    return verdict(invariant, scenario, statistic, b, measured, problems)
