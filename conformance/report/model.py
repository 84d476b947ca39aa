"""What every output shares: counts, the fault schedule, and values made safe to print.

A checker's ``bounds`` and ``measured`` are free-form (``Any``), so each output
goes through ``plain``: only YAML/JSON types, with strings and lists capped, so a
checker listing a million violating ops cannot make a report of gigabytes. The
full evidence stays in the run's ``history.jsonl``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.history import History, Op
from conformance.report.titles import order

MAX_STR = 16_384  # characters of one string value
MAX_ITEMS = 200  # items of one list or mapping
MAX_DEPTH = 8


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """``text`` without characters XML 1.0 and HTML cannot show (NUL, C0 controls,
    lone surrogates): each becomes U+FFFD, so it stays visible that something was there.
    Line ends become ``\\n`` (a parser would turn a bare CR into one anyway)."""
    return _CONTROL.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as YAML/JSON types (str keys, lists, scalars), bounded in size."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cap(value)
    if depth >= MAX_DEPTH:
        return _cap(repr(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        items = list(value.items())
        out = {_cap(str(k), 200): plain(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"{len(items) - MAX_ITEMS} more entries (see history.jsonl)"
        return out
    if isinstance(value, set | frozenset):
        value = sorted(value, key=repr)
    if isinstance(value, list | tuple):
        seq = [plain(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            seq.append(f"… {len(value) - MAX_ITEMS} more items (see history.jsonl)")
        return seq
    return _cap(str(value))


def _cap(text: str, limit: int = MAX_STR) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sorted_results(results: Iterable[CheckResult]) -> list[CheckResult]:
    """Results by invariant number, then in the order the run produced them."""
    return sorted(results, key=lambda r: order(r.invariant))


def statistics(results: Iterable[CheckResult]) -> dict[str, int]:
    """The Gateway API report's counters: Passed, Failed, Skipped."""
    outcomes = [r.outcome for r in results]
    return {"Passed": outcomes.count("passed"), "Failed": outcomes.count("failed"),
            "Skipped": outcomes.count("skipped")}


def overall(results: list[CheckResult]) -> str:
    """``failure`` if any check failed, ``partial`` if any was skipped (or none ran),
    else ``success``: a skipped invariant is never reported as proven."""
    stats = statistics(results)
    if stats["Failed"]:
        return "failure"
    return "partial" if stats["Skipped"] or not results else "success"


def by_invariant(results: list[CheckResult]) -> dict[str, str]:
    """One outcome per invariant over its scenarios: failed beats skipped beats passed."""
    out: dict[str, str] = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    for r in sorted_results(results):
        prev = out.get(r.invariant)
        if prev is None or rank[r.outcome] > rank[prev]:
            out[r.invariant] = r.outcome
    return out


@dataclass(frozen=True)
class ScheduledFault:
    """One fault's inject and repair (``repair`` None: never repaired in the history)."""

    scenario: str
    fault: str
    inject: float | None
    repair: float | None
    expect: str

    @property
    def duration(self) -> float | None:
        if self.inject is None or self.repair is None:
            return None
        return self.repair - self.inject


def fault_schedule(history: History, scenario: str | None = None) -> list[ScheduledFault]:
    """Pair each inject with the next repair of the same fault in the same scenario."""
    out: list[ScheduledFault] = []
    open_: dict[tuple[str, str], int] = {}
    for e in history.faults(scenario):
        key = (e.scenario, e.fault)
        if e.action == "inject" or key not in open_:
            inject = e.t if e.action == "inject" else None
            repair = e.t if e.action == "repair" else None
            out.append(ScheduledFault(e.scenario, e.fault, inject, repair, e.expect))
            if e.action == "inject":
                open_[key] = len(out) - 1
            continue
        i = open_.pop(key)
        prev = out[i]
        out[i] = dataclasses.replace(prev, repair=e.t, expect=prev.expect or e.expect)
    return out


def window_span(history: History, scenario: str) -> float:
    """Seconds from the scenario's first window start to its last window end (0: none)."""
    ws = history.windows(scenario)
    return max(0.0, max(w.end for w in ws) - min(w.start for w in ws)) if ws else 0.0


def unexpected(op: Op) -> bool:
    """An outcome the run did not want: a failed authorized op, a refused-request that
    succeeded, or a misroute answered otherwise than 421 (one with no answer, sent to a
    dead cell, neither refuses nor serves: the I-5 checker ignores it, and so does this).
    The red marks of the timeline."""
    if op.f == "misroute":
        return op.status is not None and op.status != 421
    if not op.authorized:
        return op.ok
    return not op.ok
