"""I-6 fail closed: no request is ever 2xx without a positive decision, under any fault.

Judged over the whole history, every scenario at once: probes (no token, a
foreign tenant, a role the tenant lacks) and every op a scenario sent while the
decision point was down carry ``authorized=False``; none of them may succeed.
A history without any such op shows nothing and fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing
from conformance.checkers.stats import name_ops
from conformance.checkers.steady import verdict
from conformance.history import History

INVARIANT = "I-6"
TITLE = "Fail closed"
STATISTIC = ("count of ops with authorized=false answered 2xx, over every scenario of the "
             "history == 0; at least min_unauthorized such ops must have been sent")


@dataclass(frozen=True)
class Bounds:
    """min_unauthorized: ops that must not succeed the history must hold; one per
    scenario is the suite's practice, one overall is the least that shows anything."""

    min_unauthorized: int = 1


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    """``scenario`` only labels the result: the check reads every scenario."""
    unauth = [o for o in history.ops() if not o.authorized]
    if len(unauth) < b.min_unauthorized:
        raise Missing(f"{len(unauth)} ops with authorized=false in the history (minimum "
                      f"{b.min_unauthorized}): nothing shows that requests fail closed")
    per: dict[str, dict[str, int]] = {}
    for o in unauth:
        row = per.setdefault(o.scenario, {"unauthorized": 0, "succeeded": 0})
        row["unauthorized"] += 1
        row["succeeded"] += o.ok
    bad = [o for o in unauth if o.ok]
    measured = {"unauthorized_ops": len(unauth), "succeeded": len(bad),
                "by_scenario": dict(sorted(per.items()))}
    problems = []
    if bad:
        scen = sorted({o.scenario for o in bad})
        problems.append(name_ops(bad, f"unauthorized ops answered 2xx (scenarios "
                                 f"{', '.join(scen)})"))
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
