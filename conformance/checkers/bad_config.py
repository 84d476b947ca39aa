"""I-8 bad config is rejected, visibly, and the old config keeps serving.

Config faults: an invalid spec, a resource Envoy NACKs, a corrupted or wrongly
signed bundle, a policy that exhausts its fuel or memory. The check asks for:
no failed op outside the group under the bad policy; every injected fault's
rejection visible (``rejection_visible``); each rejected version NACKed at most
``max_nacks_per_subscriber`` times per subscriber (``xds_nacks``: a server that
re-sends NACKed config gets NACK after NACK); and every 2xx op in the fault window
served by the control window's policy version.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, ops_in, records, spans
from conformance.checkers.stats import load_ops, name_ops
from conformance.checkers.steady import control_baseline, no_failures, verdict
from conformance.history import History

INVARIANT = "I-8"
TITLE = "Bad config is rejected"
STATISTIC = (
    "count of failed authorized load ops (no response or non-2xx) outside group "
    "exempt_group over the fault and recovery windows == 0; every injected fault has an "
    "observation rejection_visible with visible=true; per xds_nacks observation, nacks <= "
    "max_nacks_per_subscriber * subscribers; count of 2xx load ops in the fault window "
    "(outside exempt_group) whose policy_version is not the control window's == 0")


@dataclass(frozen=True)
class Bounds:
    """max_nacks_per_subscriber: one NACK answers a bad version; a second means the
    server sent it again. exempt_group: the group whose tenants are under the bad
    policy (the runner names the fault's affected cell the victim; their refusals are
    I-6's business). min_ops: load ops outside it in the
    fault window."""

    max_nacks_per_subscriber: int = 1
    exempt_group: str = "victim"
    min_ops: int = 10


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    spans(history, scenario)
    injected = sorted({e.fault for e in history.faults(scenario) if e.action == "inject"})
    visible = records(history, scenario, "rejection_visible",
                      {"fault": str, "visible": bool, "where": str})
    nacks = records(history, scenario, "xds_nacks",
                    {"fault": str, "nacks": int, "subscribers": int})
    seen = {r["fault"] for r in visible}
    unseen = [f for f in injected if f not in seen]
    if unseen:
        raise Missing(f"no rejection_visible observation for fault(s) {', '.join(unseen)}")
    measured: dict = {}
    problems: list[str] = []
    control = [o for o in control_baseline(history, scenario, 1, measured, problems)
               if o.group != b.exempt_group]
    during = [o for o in load_ops(ops_in(history, scenario, "fault", "recovery"))
              if o.group != b.exempt_group]
    fault = [o for o in load_ops(ops_in(history, scenario, "fault"))
             if o.group != b.exempt_group]
    if len(fault) < b.min_ops:
        raise Missing(f"{len(fault)} load ops outside group {b.exempt_group!r} in the fault "
                      f"window (minimum {b.min_ops})")
    no_failures(during, measured, problems)

    hidden = [r for r in visible if not r["visible"]]
    measured["rejections"] = {r["fault"]: {"visible": r["visible"], "where": r["where"]}
                              for r in visible}
    if hidden:
        problems.append("rejection not visible for "
                        + ", ".join(f"{r['fault']} (looked in {r['where']})" for r in hidden))

    measured["xds_nacks"] = {r["fault"]: {"nacks": r["nacks"], "subscribers": r["subscribers"]}
                             for r in nacks}
    for r in nacks:
        if r["nacks"] > b.max_nacks_per_subscriber * r["subscribers"]:
            problems.append(f"fault {r['fault']}: {r['nacks']} NACKs from {r['subscribers']} "
                            f"subscriber(s) (at most {b.max_nacks_per_subscriber} each): "
                            "the rejected config was sent again")

    versions = Counter(o.policy_version for o in control if o.ok and o.policy_version)
    if not versions:
        raise Missing("no 2xx control-window op carries a policy_version: the serving "
                      "version cannot be compared")
    last = max((o for o in control if o.ok and o.policy_version), key=lambda o: o.complete)
    stable = last.policy_version
    measured["control_policy_versions"] = dict(versions)
    moved = [o for o in fault if o.ok and o.policy_version != stable]
    measured["fault_ops_off_version"] = len(moved)
    if moved:
        got = Counter(str(o.policy_version) for o in moved)
        problems.append(name_ops(moved, f"2xx ops in the fault window not served by the "
                                 f"control version {stable} (saw {dict(got)})"))
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
