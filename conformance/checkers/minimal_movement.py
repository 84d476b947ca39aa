"""I-9 minimal movement: adding a cell moves about 1/(N+1) of tenants, all to the new cell.

From the tables recorded before and after the change (``table_before``,
``table_after``: ``CellTable.to_dict()`` documents): the fraction of buckets
that changed owner is within an absolute tolerance of k/(N+k) (N cells before, k
added; 1/(N+1) for one), every changed bucket now belongs to a new cell, and the
bucket imbalance max/mean over the new table's cells is bounded. If the scenario
recorded ``sample_tenants``, the sampled tenants' moved fraction passes a two-sided
binomial test against the same k/(N+k) and every moved tenant went to a new cell.
No load op fails while the change happens, and every 2xx op invoked from
``route_grace_s`` to ``route_grace_s + route_check_s`` after ``table_after`` was
recorded is answered by the tenant's cell in the new table (the scenario keeps the
new table at least that long before its repair removes the cell again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, observation, ops_in, spans
from conformance.checkers.stats import load_ops, name_ops, sig
from conformance.checkers.steady import control_baseline, no_failures, verdict
from conformance.history import History
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.tenant import tenant_error

INVARIANT = "I-9"
TITLE = "Minimal movement"
STATISTIC = (
    "moved bucket fraction |moved/B - k/(N+k)| <= move_tolerance (N cells before, k added); "
    "count of buckets or sampled tenants moved to a cell other than an added one == 0; "
    "bucket imbalance max/mean over the new table's cells <= max_imbalance; sampled "
    "tenants (if recorded, at least min_sample): two-sided binomial test of moved count "
    "against k/(N+k), p >= alpha; failed load ops over the fault and recovery windows == 0; "
    "2xx ops invoked in [t + route_grace_s, t + route_grace_s + route_check_s), t the time "
    "table_after was recorded, answered by a cell other than the new table's == 0")


@dataclass(frozen=True)
class Bounds:
    """move_tolerance: add_cell moves exactly floor(B/(N+1)) buckets, so 1% absolute
    only allows for rounding. max_imbalance: the fullest cell may own 5% above the mean.
    alpha/min_sample: the sample test's false-alarm rate and the size below which it has
    no power. route_grace_s: how long the published table may take to reach every Envoy
    and sidecar; route_check_s: how long routing is then held to it."""

    move_tolerance: float = 0.01
    max_imbalance: float = 1.05
    alpha: float = 0.001
    min_sample: int = 100
    route_grace_s: float = 2.0
    route_check_s: float = 3.0


def _table(history: History, scenario: str, name: str) -> CellTable:
    doc = observation(history, scenario, name).value
    try:
        return CellTable.from_dict(doc, f"observation {name}")
    except ConfigError as err:
        raise Missing(str(err)) from None


def _sample(history: History, scenario: str, minimum: int) -> list[str] | None:
    found = history.observations(scenario, "sample_tenants")
    if not found:
        return None
    names = found[-1].value
    if not isinstance(names, list) or not all(
            isinstance(t, str) and tenant_error(t) is None for t in names):
        raise Missing("observation 'sample_tenants' must be a list of tenant names")
    if len(set(names)) < minimum:
        raise Missing(f"{len(set(names))} sample tenants recorded (minimum {minimum})")
    return sorted(set(names))


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    spans(history, scenario)
    before = _table(history, scenario, "table_before")
    after = _table(history, scenario, "table_after")
    t_after = observation(history, scenario, "table_after").t
    sample = _sample(history, scenario, b.min_sample)
    measured: dict[str, Any] = {}
    problems: list[str] = []
    if before.buckets != after.buckets:
        raise Missing(f"tables differ in bucket count ({before.buckets} -> {after.buckets}): "
                      "not a cell addition")
    added = [c for c in after.cells if c not in before.cells]
    removed = [c for c in before.cells if c not in after.cells]
    if not added or removed:
        raise Missing(f"not a cell addition: added {added}, removed {removed}")
    n, k, nb = len(before.cells), len(added), before.buckets
    expected = k / (n + k)
    moved = [x for x in range(nb) if before.cell_of_bucket(x) != after.cell_of_bucket(x)]
    astray = [x for x in moved if after.cell_of_bucket(x) not in added]
    counts = after.bucket_counts()
    imbalance = max(counts.values()) / (nb / len(counts))
    measured.update({
        "cells_before": n, "cells_added": added, "expected_fraction": sig(expected, 4),
        "moved_buckets": len(moved), "moved_fraction": sig(len(moved) / nb, 4),
        "moved_elsewhere_buckets": len(astray), "imbalance": sig(imbalance, 4)})
    if abs(len(moved) / nb - expected) > b.move_tolerance:
        problems.append(f"{len(moved)} of {nb} buckets moved ({len(moved) / nb:.4f}), "
                        f"expected {expected:.4f} +- {b.move_tolerance}")
    if astray:
        first = ", ".join(f"bucket {x}: {before.cell_of_bucket(x)} -> "
                          f"{after.cell_of_bucket(x)}" for x in astray[:5])
        problems.append(f"{len(astray)} buckets moved to a cell that was not added: {first}")
    if imbalance > b.max_imbalance:
        problems.append(f"bucket imbalance max/mean {imbalance:.4f} > {b.max_imbalance}")
    if sample is not None:
        went = [(t, before.lookup(t), after.lookup(t)) for t in sample
                if before.lookup(t) != after.lookup(t)]
        p = binomtest(len(went), len(sample), expected).pvalue
        wrong = [w for w in went if w[2] not in added]
        measured["sample"] = {"tenants": len(sample), "moved": len(went),
                              "p_value": sig(p), "moved_elsewhere": len(wrong)}
        if p < b.alpha:
            problems.append(f"{len(went)} of {len(sample)} sampled tenants moved; binomial "
                            f"test against {expected:.4f}: p={sig(p)} < {b.alpha}")
        if wrong:
            problems.append(f"{len(wrong)} sampled tenants moved to a cell that was not "
                            "added: " + ", ".join(f"{t}: {a} -> {c}" for t, a, c in wrong[:5]))
    control_baseline(history, scenario, 1, measured, problems)
    no_failures(load_ops(ops_in(history, scenario, "fault", "recovery")), measured, problems)
    settled = t_after + b.route_grace_s
    held = [o for o in load_ops(history.ops(scenario))
            if o.ok and o.observed_cell and settled <= o.invoke < settled + b.route_check_s]
    stale = [o for o in held if o.observed_cell != after.lookup(o.tenant)]
    movers = [o for o in held if before.lookup(o.tenant) != after.lookup(o.tenant)]
    measured["routing_checked_2xx"] = len(held)
    measured["routing_checked_movers_2xx"] = len(movers)
    measured["stale_route_2xx"] = len(stale)
    if not movers:
        problems.append("no 2xx op of a moved tenant in the routing check "
                        f"({settled:.3f}s + {b.route_check_s}s): the move is not shown")
    if stale:
        problems.append(name_ops(stale, "2xx ops answered by a cell other than the tenant's "
                                 "in the new table"))
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
