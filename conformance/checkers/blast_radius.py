"""I-5 blast radius: a failed cell hurts only its own tenants, and cells refuse strangers.

A cell is killed (or partitioned). Tenants of other cells (group ``bystander``) see
no failed op in the fault or recovery window; tenants of the killed cell (group
``victim``) converge after the repair; every answered ``misroute`` op (sent
straight to a cell that does not own the tenant) gets 421 (one sent to the dead cell
gets no answer, which refuses nothing and serves nothing); and no 2xx answer comes from a cell
other than the tenant's (``observed_cell`` against ``expected_cell``), which is how
a cell serving foreign tenants, or two cells sharing a store, would show.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, ops_in, require_ops, spans
from conformance.checkers.stats import load_ops, name_ops
from conformance.checkers.steady import control_baseline, converged, no_failures, verdict
from conformance.history import History

INVARIANT = "I-5"
TITLE = "Blast radius"
MISDIRECTED = 421
STATISTIC = (
    "count of failed load ops (no response or non-2xx) of group bystander over the fault "
    "and recovery windows == 0; every misroute op that got a response got 421 (at least "
    "min_misroutes answered); count of 2xx load ops whose observed_cell differs from "
    "expected_cell == 0; "
    "group victim converges: convergence_ops consecutive 2xx ops within convergence_s of "
    "the repair")


@dataclass(frozen=True)
class Bounds:
    """min_ops: load ops each group needs in the fault+recovery windows.
    min_misroutes: misroute probes without which "cells refuse strangers" is unshown.
    convergence_ops/convergence_s: a restarted cell (process start, its table, then
    Envoy's health check passing) is back within 20 s on a loaded box."""

    min_ops: int = 10
    min_misroutes: int = 1
    convergence_ops: int = 5
    convergence_s: float = 20.0
    victim: str = "victim"
    bystander: str = "bystander"


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    s = spans(history, scenario)
    measured: dict = {}
    problems: list[str] = []
    control_baseline(history, scenario, 1, measured, problems)
    during = load_ops(ops_in(history, scenario, "fault", "recovery"))
    for g in (b.victim, b.bystander):
        require_ops([o for o in during if o.group == g],
                    f"load ops of group {g} in the fault+recovery windows", b.min_ops)
    no_failures(during, measured, problems, key="bystander", groups={b.bystander})
    misroutes = history.ops(scenario, f="misroute")
    answered = [o for o in misroutes if o.status is not None]
    if len(answered) < b.min_misroutes:
        raise Missing(f"{len(answered)} answered misroute ops in scenario {scenario!r} "
                      f"(minimum {b.min_misroutes}; {len(misroutes)} sent)")
    wrong = [o for o in answered if o.status != MISDIRECTED]
    measured["misroutes"] = {"ops": len(misroutes), "unanswered": len(misroutes) - len(answered),
                             "not_421": len(wrong)}
    if wrong:
        problems.append(name_ops(wrong, "misroute ops not answered 421"))
    foreign = [o for o in load_ops(history.ops(scenario)) if o.ok and o.expected_cell
               and o.observed_cell and o.observed_cell != o.expected_cell]
    measured["wrong_cell_2xx"] = len(foreign)
    if foreign:
        problems.append(name_ops(foreign, "2xx ops answered by a cell other than the "
                                 "tenant's expected cell"))
    converged(history, scenario, s, [b.victim], b.convergence_ops, b.convergence_s,
              measured, problems)
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
