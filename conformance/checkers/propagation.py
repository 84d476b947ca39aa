"""I-10 propagation and staged rollout: a policy reaches every sidecar in time, and a bad
candidate stops at its canary and rolls back.

Two scenarios share this checker, and each records what it proves:
``propagation_s`` (the policy write until every sidecar serves the new version)
is bounded; ``rollout`` ({"state", "canary"}, optionally "candidate") ends in
``expected_state`` (``rolled_back`` for the breaching candidate). With a rollout,
tenants off the canary cell (group ``stable``) see no failed op and, when the
candidate version is named, no 2xx served by it; without one (a benign policy
change everywhere), no load op of any group fails. A scenario recording neither
observation shows nothing and fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, number, ops_in, records, spans
from conformance.checkers.stats import load_ops, name_ops
from conformance.checkers.steady import control_baseline, no_failures, verdict
from conformance.history import History

INVARIANT = "I-10"
TITLE = "Propagation and staged rollout"
STATISTIC = (
    "at least one of: observation propagation_s (policy write until every sidecar serves "
    "it) <= propagation_s; observation rollout.state == expected_state. Failed load ops "
    "over the fault and recovery windows == 0: of group stable when a rollout is recorded "
    "(at least min_ops; and its 2xx ops served by the named candidate version == 0), of "
    "every group otherwise")


@dataclass(frozen=True)
class Bounds:
    """propagation_s: the spec watcher's debounce plus one xDS push to every sidecar is
    well under a second on an idle machine (docs/benchmarks.md); 10 s leaves room for a
    loaded 2-core CI box. expected_state: the breaching candidate must be rolled back.
    stable: the group off the canary cell (the runner's ``bystander``)."""

    propagation_s: float = 10.0
    expected_state: str = "rolled_back"
    stable: str = "bystander"
    min_ops: int = 10


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    spans(history, scenario)
    has_prop = bool(history.observations(scenario, "propagation_s"))
    rollouts = records(history, scenario, "rollout", {"state": str, "canary": (str, type(None))})
    if not has_prop and not rollouts:
        raise Missing(f"neither 'propagation_s' nor 'rollout' recorded in scenario "
                      f"{scenario!r}")
    measured: dict[str, Any] = {}
    problems: list[str] = []
    if has_prop:
        prop = number(history, scenario, "propagation_s")
        measured["propagation_s"] = round(prop, 3)
        if prop > b.propagation_s:
            problems.append(f"the policy took {prop:.3f}s to reach every sidecar (bound "
                            f"{b.propagation_s}s)")
    control_baseline(history, scenario, 1, measured, problems)
    during = load_ops(ops_in(history, scenario, "fault", "recovery"))
    if not rollouts:
        if len(during) < b.min_ops:
            raise Missing(f"{len(during)} load ops in the fault+recovery windows (minimum "
                          f"{b.min_ops})")
        no_failures(during, measured, problems)
        return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
    final = rollouts[-1]
    measured.update({"rollout_state": final["state"], "canary": final["canary"]})
    if final["state"] != b.expected_state:
        problems.append(f"rollout ended {final['state']!r}, expected {b.expected_state!r} "
                        f"(canary {final['canary']})")
    stable = [o for o in during if o.group == b.stable]
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
