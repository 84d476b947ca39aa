"""I-10's faults: a new policy version written into the spec, measured until it serves.

``swap_policy`` replaces the spec's policy source (the repair restores the exact
bytes). With ``measure``, the time until every cell's tenants are decided by the
new version is recorded as ``propagation_s``: read from the operations themselves
(each carries the ``x-a1-policy-version`` that decided it), so it is what clients
saw, not what the control plane believes. With ``rollback``, the candidate breaches
the rollout's deny bound and the scenario records the rollout's final state.
"""

from __future__ import annotations

import time
from pathlib import Path

from conformance.harness.stacks import control_status, published
from conformance.harness.waiting import poll
from conformance.history import Op
from conformance.nemesis.base import Fault
from conformance.runner import Run
from control.spec import load_spec

DENY_ALL = """package a1.authz

import rego.v1

decision := {"allow": false, "status": 403, "reason": "candidate denies all", "headers": {}}
"""
PROPAGATION_TIMEOUT = 60.0


def _policy_file(run: Run) -> Path:
    spec = load_spec(run.target.spec_dir)
    return run.target.spec_dir / next(iter(spec.policy.sources))


def benign_edit(run: Run) -> str:
    """The same policy with a changed comment: a new version that decides the same."""
    return _policy_file(run).read_text() + f"\n# conformance run {time.time_ns()}\n"


def _versions_since(run: Run, since: float) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for e in run.recorder.history.events:
        if isinstance(e, Op) and e.invoke >= since and e.ok and e.observed_cell:
            seen.setdefault(e.observed_cell, set()).add(e.policy_version or "")
    return seen


def swap_policy(run: Run, text: str, *, measure: bool = False,
                rollback: bool = False) -> Fault:
    path = _policy_file(run)
    original = path.read_bytes()
    scenario = run.load.scenario
    cells = list(run.target.cell_table().cells)

    def old_version() -> str | None:
        ops = [e for e in run.recorder.history.events
               if isinstance(e, Op) and e.scenario == scenario and e.ok and e.policy_version]
        return ops[-1].policy_version if ops else None

    def inject() -> None:
        before = old_version()
        t0, written = time.monotonic(), run.now()
        path.write_text(text)
        if measure:
            def everywhere() -> bool:
                seen = _versions_since(run, written)
                return all(c in seen and seen[c] - {before} for c in cells)

            poll(everywhere, timeout=PROPAGATION_TIMEOUT, interval=0.1,
                 what="every cell decided by the new policy version")
            run.observe(scenario, "propagation_s", round(time.monotonic() - t0, 3))
        if rollback:
            poll(lambda: (control_status(run.target).get("rollout") or {}).get("state")
                 == "rolled_back", timeout=PROPAGATION_TIMEOUT, interval=0.2,
                 what="the rollout to roll the candidate back")
            status = control_status(run.target)["rollout"]
            run.observe(scenario, "rollout", {"state": status["state"],
                                              "canary": (status.get("order") or [None])[0]})

    def repair() -> None:
        path.write_bytes(original)
        poll(lambda: published(run.target), timeout=PROPAGATION_TIMEOUT, interval=0.2,
             what="the original policy published again")

    kind = "rollback" if rollback else "propagation"
    return Fault(f"policy:{kind}", inject, repair,
                 "the candidate is rolled back by itself; only the canary's tenants see it"
                 if rollback else "every cell is decided by the new version within the bound")
