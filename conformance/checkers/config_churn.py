"""I-4 config churn: sustained spec updates fail no request and keep p99 within bound.

Churn rewrites unrelated resources and policy versions N times a second. The
check asks for no failed load op, a p99 no worse than a bounded multiple of the
control window's, and proof the churn really ran (``churn_updates`` applied).
Only the tail is bounded, not the whole distribution: applying config costs CPU
that, on 2 cores, the data plane shares, so a small median shift is expected.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import number, ops_in, spans
from conformance.checkers.stats import load_ops, ms, percentile, sig
from conformance.checkers.steady import control_baseline, fault_ops, no_failures, verdict
from conformance.history import History

INVARIANT = "I-4"
TITLE = "Config churn"
STATISTIC = (
    "count of failed load ops (no response or non-2xx) per group over the fault and "
    "recovery windows == 0; p99 latency of 2xx load ops: p99(fault) <= p99_ratio * "
    "p99(control) + p99_slack_ms, with min_samples per window; observation churn_updates "
    "(updates actually applied) >= min_updates")


@dataclass(frozen=True)
class Bounds:
    """p99_ratio/p99_slack_ms: the tail may double, plus 5 ms of scheduler noise.
    min_samples: 2xx ops per window for a p99 that is not just the maximum of a few.
    min_updates: applied updates below which the churn did not really run."""

    p99_ratio: float = 2.0
    p99_slack_ms: float = 5.0
    min_samples: int = 100
    min_updates: int = 10


def judge(history: History, scenario: str, b: Bounds) -> CheckResult:
    spans(history, scenario)
    updates = number(history, scenario, "churn_updates")
    measured: dict = {"churn_updates": int(updates)}
    problems: list[str] = []
    control = control_baseline(history, scenario, 1, measured, problems)
    fault = fault_ops(history, scenario, 1)
    no_failures(load_ops(ops_in(history, scenario, "fault", "recovery")), measured, problems)
    lat_c = [o.latency for o in control if o.ok]
    lat_f = [o.latency for o in fault if o.ok]
    measured["latency"] = {"n_control": len(lat_c), "n_fault": len(lat_f)}
    if min(len(lat_c), len(lat_f)) < b.min_samples:
        problems.append(f"too few 2xx samples for p99: control {len(lat_c)}, fault "
                        f"{len(lat_f)} (minimum {b.min_samples} each)")
    else:
        p99_c, p99_f = percentile(lat_c, 99), percentile(lat_f, 99)
        measured["latency"].update({
            "p99_control_ms": ms(p99_c), "p99_fault_ms": ms(p99_f),
            "p99_ratio": sig(p99_f / p99_c) if p99_c > 0 else None})
        if ms(p99_f) > b.p99_ratio * ms(p99_c) + b.p99_slack_ms:
            problems.append(f"p99 {ms(p99_f)} ms under churn exceeds {b.p99_ratio} x "
                            f"{ms(p99_c)} ms + {b.p99_slack_ms} ms")
    if updates < b.min_updates:
        problems.append(f"only {int(updates)} churn updates applied (minimum "
                        f"{b.min_updates}): the fault did not really run")
    return verdict(INVARIANT, scenario, STATISTIC, b, measured, problems)
