"""I-11 nothing lost: Jepsen's set checker over each tenant's writes and final readback.

Per tenant, from the ``write`` ops and that tenant's last 2xx ``readback`` (whose
``value`` lists the item values found):

- lost: acknowledged (2xx) writes whose value is not read back;
- unexpected: read-back values no write of that tenant attempted;
- recovered: indeterminate writes (no response, or 5xx) whose value is present,
  which is fine, as is their absence;
- rejected but present: values whose every write was refused with a 4xx, yet are
  present. Stricter than Jepsen's set: a 4xx here is a definite answer (authz,
  routing), so a stored refused write is an unauthorized effect.

A tenant with writes but no 2xx readback cannot be verified and fails the check.
Run on one scenario it reads that scenario's ops; run on the whole history
(scenario "*") it reads every scenario's writes against the run's final readback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing
from conformance.checkers.stats import SHOWN
from conformance.checkers.steady import verdict
from conformance.history import History, Op

INVARIANT = "I-11"
TITLE = "Nothing lost"
STATISTIC = (
    "Jepsen set checker per tenant against its last 2xx readback: lost = acknowledged (2xx) "
    "write values not read back; unexpected = read values never attempted; rejected-present "
    "= read values whose every write got a 4xx; all three == 0; indeterminate writes (no "
    "response or 5xx) may be present (counted as recovered) or absent; every tenant with "
    "writes has a readback; at least min_acked acknowledged writes")


@dataclass(frozen=True)
class Bounds:
    """min_acked: acknowledged writes without which the check has nothing to lose."""

    min_acked: int = 1


def key(value: Any) -> str:
    """A value's identity: canonical JSON, so lists and mappings compare by content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class SetOutcome:
    attempted: int = 0
    acked: int = 0
    indeterminate: int = 0
    rejected: int = 0
    read: int = 0
    recovered: int = 0
    lost: list[tuple[str, str]] = field(default_factory=list)  # (tenant, value key)
    unexpected: list[tuple[str, str]] = field(default_factory=list)
    rejected_present: list[tuple[str, str]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # tenants with writes, no 2xx readback


def set_check(writes: list[Op], readbacks: list[Op]) -> SetOutcome:
    """The set checker itself, over plain ops (tests compare it with a model)."""
    out = SetOutcome()
    final: dict[str, Op] = {}
    for r in readbacks:
        if r.ok and (r.tenant not in final or r.complete >= final[r.tenant].complete):
            final[r.tenant] = r
    outcome: dict[str, dict[str, set[str]]] = {}  # tenant -> value -> {"ok","indet","4xx"}
    for w in writes:
        kind = "ok" if w.ok else "4xx" if w.status is not None and 400 <= w.status < 500 \
            else "indet"
        outcome.setdefault(w.tenant, {}).setdefault(key(w.value), set()).add(kind)
    for tenant in sorted(set(outcome) | set(final)):
        tried = outcome.get(tenant, {})
        acked = {v for v, k in tried.items() if "ok" in k}
        refused = {v for v, k in tried.items() if k == {"4xx"}}
        indet = set(tried) - acked - refused
        out.attempted += len(tried)
        out.acked += len(acked)
        out.rejected += len(refused)
        out.indeterminate += len(indet)
        if tenant not in final:
            out.unread.append(tenant)
            continue
        found = {key(v) for v in final[tenant].value}
        out.read += len(found)
        out.recovered += len(found & indet)
        out.lost += [(tenant, v) for v in sorted(acked - found)]
        out.unexpected += [(tenant, v) for v in sorted(found - set(tried))]
        out.rejected_present += [(tenant, v) for v in sorted(found & refused)]
    return out


def _name(pairs: list[tuple[str, str]], what: str) -> str:
    first = "; ".join(f"tenant {t} value {v[:80]}" for t, v in pairs[:SHOWN])
    more = f"; and {len(pairs) - SHOWN} more" if len(pairs) > SHOWN else ""
    return f"{len(pairs)} {what}: {first}{more}"


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    """Every scenario's writes against the run's readback (``scenario`` "*": all of them)."""
    scope = None if scenario == "*" else scenario
    writes = history.ops(scope, f="write")
    readbacks = history.ops(scope, f="readback")
    for r in readbacks:
        if r.ok and not isinstance(r.value, list):
            raise Missing(f"readback of tenant {r.tenant!r} at {r.invoke:.3f}s: value must be "
                          "the list of item values found")
    res = set_check(writes, readbacks)
    if res.acked < b.min_acked:
        raise Missing(f"{res.acked} acknowledged writes in scenario {scenario!r} (minimum "
                      f"{b.min_acked}): nothing could be lost")
    measured = {"attempted": res.attempted, "acknowledged": res.acked,
                "indeterminate": res.indeterminate, "rejected": res.rejected,
                "read": res.read, "recovered": res.recovered, "lost": len(res.lost),
                "unexpected": len(res.unexpected),
                "rejected_present": len(res.rejected_present),
                "tenants_unread": len(res.unread)}
    problems = []
    if res.lost:
        problems.append(_name(res.lost, "acknowledged writes lost"))
    if res.unexpected:
        problems.append(_name(res.unexpected, "unexpected values read back"))
    if res.rejected_present:
        problems.append(_name(res.rejected_present, "refused (4xx) writes present"))
    if res.unread:
        shown = ", ".join(res.unread[:SHOWN])
        problems.append(f"{len(res.unread)} tenants with writes have no 2xx readback: {shown}")
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
