"""The statistics checkers share: failure counts, percentiles, the latency test, convergence.

Why these and not a fixed latency threshold: the suite runs on shared 2-core CI
machines where absolute latency drifts run to run, so every latency judgement
compares the fault window with the control window of the same run. Why a test
plus an effect-size floor: with thousands of samples Mann–Whitney U calls a
0.1 ms shift "significant"; the floor (Cliff's delta) asks for a shift big
enough to matter. Why also a p99 bound: U compares whole distributions and is
blind to a tail that only 1% of requests see.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from conformance.history import Op

LOAD_FS = ("read", "write")  # client load; probes, misroutes and readbacks are judged apart
SHOWN = 5  # offending ops named in a detail; the rest are counted


def load_ops(ops: Iterable[Op]) -> list[Op]:
    """Load ops that must succeed: reads and writes marked authorized."""
    return [o for o in ops if o.f in LOAD_FS and o.authorized]


def failures(ops: Iterable[Op]) -> list[Op]:
    """Load ops that failed: no response, or a status outside 2xx."""
    return [o for o in load_ops(ops) if not o.ok]


def by_group(ops: Iterable[Op]) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = {}
    for o in ops:
        out.setdefault(o.group, []).append(o)
    return dict(sorted(out.items()))


def describe(op: Op) -> str:
    """One op as a report names it: tenant, group, time and outcome."""
    outcome = f"status {op.status}" if op.status is not None else f"no response ({op.error})"
    cell = f", cell {op.observed_cell}" if op.observed_cell else ""
    return (f"{op.f} tenant {op.tenant} (group {op.group}) at {op.invoke:.3f}s: "
            f"{outcome}{cell}")


def name_ops(ops: Sequence[Op], what: str) -> str:
    """``what``: the first few offending ops, ordered by time, and how many more."""
    first = sorted(ops, key=lambda o: (o.invoke, o.tenant))[:SHOWN]
    more = len(ops) - len(first)
    tail = f"; and {more} more" if more else ""
    return f"{len(ops)} {what}: " + "; ".join(describe(o) for o in first) + tail


def sig(x: float | None, digits: int = 3) -> float | None:
    """``x`` to ``digits`` significant figures (p-values, ratios): readable in a report."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=float), q))


# -- latency ------------------------------------------------------------------------

LATENCY_STATISTIC = (
    "latency of 2xx load ops, fault window vs control window: fails when the two-sided "
    "Mann-Whitney U test rejects equality at alpha AND |Cliff's delta| >= min_effect "
    "(delta = P(fault > control) - P(fault < control)), or when "
    "p99(fault) > p99_ratio * p99(control) + p99_slack_ms; needs min_samples per window")


@dataclass(frozen=True)
class LatencyBounds:
    """Bounds of the latency statistic.

    alpha: the test's false-alarm rate per check; 0.01 because a run checks about
    a dozen windows and a flaky CI is worse than a slightly blunter test.
    min_effect: |Cliff's delta| at or above which a significant shift counts; 0.33 is
    the "medium" threshold of Romano et al. (2006), below which a shift on a shared
    machine is as likely neighbour noise as our code.
    p99_ratio, p99_slack_ms: the tail may grow to ratio x control p99 plus an absolute
    slack (a 2 ms p99 doubling is one scheduler hiccup on 2 cores).
    min_samples: ok ops per window below which U has no power worth reporting.
    """

    alpha: float = 0.01
    min_effect: float = 0.33
    p99_ratio: float = 2.0
    p99_slack_ms: float = 5.0
    min_samples: int = 30


@dataclass(frozen=True)
class LatencyVerdict:
    passed: bool
    shifted: bool  # significant and at least min_effect
    tail_ok: bool
    measured: dict[str, Any]
    reason: str  # empty when passed


def latency_shift(control: Sequence[float], fault: Sequence[float],
                  b: LatencyBounds) -> LatencyVerdict:
    """Judge fault-window latencies (seconds) against the control window's."""
    n_c, n_f = len(control), len(fault)
    measured: dict[str, Any] = {"n_control": n_c, "n_fault": n_f}
    if n_c < b.min_samples or n_f < b.min_samples:
        return LatencyVerdict(False, False, False, measured,
                              f"too few 2xx samples for the latency test: control {n_c}, "
                              f"fault {n_f} (minimum {b.min_samples} each)")
    res = mannwhitneyu(fault, control, alternative="two-sided")
    p = float(res.pvalue)
    if math.isnan(p):  # every value tied: no evidence of any shift
        p = 1.0
    cl = float(res.statistic) / (n_c * n_f)  # P(fault > control) + P(tie) / 2
    delta = 2.0 * cl - 1.0
    p99_c, p99_f = percentile(control, 99), percentile(fault, 99)
    shifted = p < b.alpha and abs(delta) >= b.min_effect
    tail_ok = p99_f * 1000.0 <= b.p99_ratio * p99_c * 1000.0 + b.p99_slack_ms
    measured.update({
        "p_value": sig(p), "cliffs_delta": round(delta, 3),
        "p50_control_ms": ms(percentile(control, 50)), "p50_fault_ms": ms(percentile(fault, 50)),
        "p99_control_ms": ms(p99_c), "p99_fault_ms": ms(p99_f),
        "p99_ratio": sig(p99_f / p99_c) if p99_c > 0 else None,
    })
    reasons = []
    if shifted:
        reasons.append(f"latency shifted: Mann-Whitney p={sig(p)} < alpha {b.alpha} and "
                       f"Cliff's delta {delta:.3f} beyond +-{b.min_effect}")
    if not tail_ok:
        reasons.append(f"p99 {ms(p99_f)} ms in the fault window exceeds {b.p99_ratio} x "
                       f"{ms(p99_c)} ms + {b.p99_slack_ms} ms")
    return LatencyVerdict(not reasons, shifted, tail_ok, measured, "; ".join(reasons))


# -- convergence --------------------------------------------------------------------

def convergence_time(ops: Sequence[Op], since: float, n: int) -> float | None:
    """Seconds from ``since`` until the first run of ``n`` consecutive ok ops completed.

    Ops invoked at or after ``since`` are taken in invoke order; the run ends at the
    n-th op's completion. None: no such run in the ops recorded.
    """
    after = sorted((o for o in ops if o.invoke >= since), key=lambda o: (o.invoke, o.complete))
    streak = 0
    for o in after:
        streak = streak + 1 if o.ok else 0
        if streak >= n:
            return o.complete - since
    return None
