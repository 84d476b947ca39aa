"""Every invariant's checker by id, and ``check``: the one way to run one.

``check`` validates the events it will read, picks the checker's default bounds
unless given others, and turns missing or malformed evidence into a failed result
that says what is missing: a check with nothing to judge never passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conformance.checkers import (
    bad_config,
    blast_radius,
    config_churn,
    control_outage,
    fail_closed,
    governance_outage,
    minimal_movement,
    no_sync_dependency,
    nothing_lost,
    propagation,
    telemetry,
)
from conformance.checkers.base import CheckResult
from conformance.checkers.evidence import Missing, validate
from conformance.checkers.steady import plain
from conformance.history import History


@dataclass(frozen=True)
class Checker:
    invariant: str
    title: str  # as ../shared/DESIGN.md's invariant table names it
    name: str  # the module: what it checks
    statistic: str
    bounds: type  # a frozen dataclass; ``bounds()`` are the documented defaults
    judge: Callable[[History, str, Any], CheckResult]
    whole_history: bool = False  # may read every scenario (I-6, I-11), not only its own


def _checker(module: Any, whole_history: bool = False) -> Checker:
    return Checker(module.INVARIANT, module.TITLE, module.__name__.rsplit(".", 1)[1],
                   module.STATISTIC, module.Bounds, module.judge, whole_history)


CHECKERS: dict[str, Checker] = {c.invariant: c for c in (
    _checker(control_outage), _checker(governance_outage), _checker(no_sync_dependency),
    _checker(config_churn), _checker(blast_radius), _checker(fail_closed, whole_history=True),
    _checker(telemetry), _checker(bad_config), _checker(minimal_movement),
    _checker(propagation), _checker(nothing_lost, whole_history=True))}

ALL = "*"  # the scenario label of a whole-history check run without one


def checker(invariant: str) -> Checker:
    try:
        return CHECKERS[invariant]
    except KeyError:
        raise ValueError(f"unknown invariant {invariant!r} (expected one of "
                         f"{', '.join(CHECKERS)})") from None


def bounds_for(invariant: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The checker's default bounds with ``overrides`` (a profile's, by field name).

    A field the bounds do not have, or a value of another type, is a ValueError
    naming ``<invariant>.<field>``.
    """
    c = checker(invariant)
    if not overrides:
        return c.bounds()
    fields = {f.name: f for f in dataclasses.fields(c.bounds)}
    defaults = c.bounds()
    for k, v in overrides.items():
        if k not in fields:
            raise ValueError(f"{invariant}.{k}: unknown bound (expected one of "
                             f"{', '.join(fields)})")
        want = type(getattr(defaults, k))
        ok = isinstance(v, want) and not (isinstance(v, bool) and want is not bool)
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            raise ValueError(f"{invariant}.{k}: expected {want.__name__}, got {v!r:.80}")
    return dataclasses.replace(defaults, **{k: (float(v) if isinstance(
        getattr(defaults, k), float) else v) for k, v in overrides.items()})


def check(history: History, scenario: str | None, invariant: str,
          bounds: Any = None) -> CheckResult:
    """Judge ``invariant`` on ``scenario`` of ``history``.

    Whole-history checkers accept ``scenario`` None (labelled "*"): I-6 then, and
    always, reads every scenario; I-11 reads every scenario's writes against the
    run's readback (with a scenario named, only that scenario's).
    """
    c = checker(invariant)
    b = c.bounds() if bounds is None else bounds
    if not isinstance(b, c.bounds):
        raise TypeError(f"{invariant}: bounds must be {c.name}.Bounds, got {type(b).__name__}")
    label = scenario if scenario is not None else ALL
    if scenario is None and not c.whole_history:
        raise ValueError(f"{invariant} judges one scenario: name it")
    try:
        validate(history, None if c.whole_history else scenario)
        return c.judge(history, label, b)
    except Missing as err:
        return CheckResult(invariant, label, False, c.statistic, plain(dataclasses.asdict(b)),
                           err.measured, f"missing evidence: {err}")


def check_history(history: History) -> list[CheckResult]:
    """The whole-history checks (I-6 fail closed, I-11 nothing lost), once per run.

    A run none of whose scenarios writes (``--only I-9``) has nothing I-11 could lose:
    skipped with that reason, neither passed nor failed.
    """
    out = []
    for c in CHECKERS.values():
        if not c.whole_history:
            continue
        if c.invariant == nothing_lost.INVARIANT and not history.ops(f="write"):
            out.append(CheckResult(c.invariant, ALL, False, c.statistic,
                                   skipped="no scenario of this run writes"))
            continue
        out.append(check(history, None, c.invariant))
    return out
