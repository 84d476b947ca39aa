"""I-10 propagation and staged rollout: a policy reaches every sidecar in time, and a bad
candidate stops at its canary and rolls back.

``propagation_s`` (the policy write until every sidecar serves the new version) is
bounded; ``rollout`` ends in ``expected_state`` (``rolled_back`` for the breaching
candidate the scenario proposes); tenants off the canary cell (group ``stable``)
never see a failed op, and, when the observation names the ``candidate`` version,
never a 2xx served by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, number, ops_in, records, spans
from conformance.checkers.stats import load_ops, name_ops
from conformance.checkers.steady import control_baseline, no_failures, verdict
from conformance.history import History

INVARIANT = "I-10"
STATISTIC = (
    "observation propagation_s (policy write until every sidecar serves it) <= "
    "propagation_s; observation rollout.state == expected_state; count of failed load ops "
    "of group stable over the fault and recovery windows == 0 (at least min_ops); count of "
    "its 2xx ops served by the candidate version (when recorded) == 0")


@dataclass(frozen=True)
class Bounds:
    """propagation_s: the spec watcher's debounce plus one xDS push to every sidecar is
    well under a second on an idle machine (docs/benchmarks.md); 10 s leaves room for a
    loaded 2-core CI box. expected_state: the breaching candidate must be rolled back."""

    propagation_s: float = 10.0
    expected_state: str = "rolled_back"
    stable: str = "stable"
    min_ops: int = 10


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    spans(history, scenario)
    prop = number(history, scenario, "propagation_s")
    rollouts = records(history, scenario, "rollout", {"state": str, "canary": str})
    if not rollouts:
        raise Missing(f"observation 'rollout' not recorded in scenario {scenario!r}")
    final = rollouts[-1]
    measured: dict = {"propagation_s": round(prop, 3), "rollout_state": final["state"],
                      "canary": final["canary"]}
    problems: list[str] = []
    if prop > b.propagation_s:
        problems.append(f"the policy took {prop:.3f}s to reach every sidecar (bound "
                        f"{b.propagation_s}s)")
    if final["state"] != b.expected_state:
        problems.append(f"rollout ended {final['state']!r}, expected {b.expected_state!r} "
                        f"(canary {final['canary']})")
    control_baseline(history, scenario, 1, measured, problems)
    stable = [o for o in load_ops(ops_in(history, scenario, "fault", "recovery"))
              if o.group == b.stable]
    if len(stable) < b.min_ops:
        raise Missing(f"{len(stable)} load ops of group {b.stable!r} in the fault+recovery "
                      f"windows (minimum {b.min_ops})")
    no_failures(stable, measured, problems, key="stable")
    candidate = final.get("candidate")
    if isinstance(candidate, str) and candidate:
        leaked = [o for o in stable if o.ok and o.policy_version == candidate]
        measured["stable_ops_on_candidate"] = len(leaked)
        if leaked:
            problems.append(name_ops(leaked, f"group {b.stable} ops served by the candidate "
                                     f"{candidate}"))
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
