"""What a checker reads from a history, and the rule that missing evidence fails.

A check with nothing to judge must not pass: a scenario whose fault window was
never recorded, whose control window has no operations, or whose observation is
absent or of the wrong type raises ``Missing``, and the registry turns that into
a failed result saying what is missing. Histories are loaded from files a run (or
an attacker) wrote, so every field a checker uses is type-checked here first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from conformance.history import Event, FaultEvent, History, Meta, Observation, Op, Window


class Missing(Exception):
    """The evidence a check needs is absent or malformed; the message says which."""

    def __init__(self, message: str, measured: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.measured = measured or {}


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _event_error(e: Event) -> str | None:
    if isinstance(e, Op):
        if not (isinstance(e.scenario, str) and isinstance(e.f, str)
                and isinstance(e.tenant, str) and isinstance(e.group, str)):
            return "scenario, f, tenant and group must be strings"
        if not (_num(e.invoke) and _num(e.complete)):
            return "invoke and complete must be finite numbers"
        if e.status is not None and (not isinstance(e.status, int) or isinstance(e.status, bool)):
            return f"status must be an integer or null, got {e.status!r}"
        if not isinstance(e.authorized, bool):
            return f"authorized must be true or false, got {e.authorized!r}"
        for name in ("expected_cell", "observed_cell", "policy_version", "error"):
            v = getattr(e, name)
            if v is not None and not isinstance(v, str):
                return f"{name} must be a string or null"
    elif isinstance(e, Window):
        if not (_num(e.start) and _num(e.end)) or e.end < e.start:
            return "start and end must be finite numbers with start <= end"
    elif isinstance(e, FaultEvent | Observation) and not _num(e.t):
        return "t must be a finite number"
    if not isinstance(e, Meta) and not isinstance(e.scenario, str):
        return "scenario must be a string"
    return None


def validate(history: History, scenario: str | None) -> None:
    """Type-check the events a check reads (one scenario's, or all when None)."""
    for i, e in enumerate(history.events):
        if scenario is not None and (isinstance(e, Meta) or e.scenario != scenario):
            continue
        why = _event_error(e)
        if why is not None:
            who = f" (tenant {e.tenant!r})" if isinstance(e, Op) else ""
            raise Missing(f"malformed {e.type} event #{i}{who}: {why}")


def window(history: History, scenario: str, name: str) -> Window:
    """The scenario's one window called ``name``."""
    found = history.windows(scenario, name)
    if not found:
        raise Missing(f"no {name} window recorded in scenario {scenario!r}")
    if len(found) > 1:
        raise Missing(f"{len(found)} {name} windows in scenario {scenario!r} (expected one)")
    return found[0]


@dataclass(frozen=True)
class Spans:
    """A fault scenario's three windows and when its fault was injected and repaired."""

    control: Window
    fault: Window
    recovery: Window
    inject: float
    repair: float


def spans(history: History, scenario: str) -> Spans:
    control = window(history, scenario, "control")
    fault = window(history, scenario, "fault")
    recovery = window(history, scenario, "recovery")
    events = history.faults(scenario)
    injects = [e.t for e in events if e.action == "inject"]
    repairs = [e.t for e in events if e.action == "repair"]
    if not injects:
        raise Missing(f"no fault inject event recorded in scenario {scenario!r}")
    if not repairs:
        raise Missing(f"no fault repair event recorded in scenario {scenario!r} "
                      "(an unrepaired fault proves nothing about recovery)")
    return Spans(control, fault, recovery, min(injects), max(repairs))


def ops_in(history: History, scenario: str, *names: str, f: str | None = None) -> list[Op]:
    """The scenario's ops held by any of the named windows (``Window.holds``), in order."""
    spans = [w for n in names for w in history.windows(scenario, n)]
    return [o for o in history.ops(scenario, f=f) if any(w.holds(o) for w in spans)]


def observation(history: History, scenario: str, name: str) -> Observation:
    """The scenario's latest observation ``name``."""
    found = history.observations(scenario, name)
    if not found:
        raise Missing(f"observation {name!r} not recorded in scenario {scenario!r}")
    return max(found, key=lambda o: o.t)


def number(history: History, scenario: str, name: str) -> float:
    """The latest observation ``name`` as a finite number."""
    v = observation(history, scenario, name).value
    if not _num(v):
        raise Missing(f"observation {name!r} must be a finite number, got {v!r:.80}")
    return float(v)


def numbers(history: History, scenario: str, name: str) -> list[Observation]:
    """Every observation ``name`` (samples over time), each a finite number; a null
    sample (a scrape that failed) is skipped: the caller requires samples per window."""
    found = [o for o in history.observations(scenario, name) if o.value is not None]
    for o in found:
        if not _num(o.value):
            raise Missing(f"observation {name!r} at {o.t:.3f}s must be a finite number, "
                          f"got {o.value!r:.80}")
    return found


def records(history: History, scenario: str, name: str,
            fields: dict[str, type | tuple[type, ...]]) -> list[dict[str, Any]]:
    """Every observation ``name``, each a mapping with ``fields`` of the given types."""
    out = []
    for o in history.observations(scenario, name):
        v = o.value
        if not isinstance(v, dict):
            raise Missing(f"observation {name!r} at {o.t:.3f}s must be a mapping with "
                          f"{', '.join(fields)}")
        for k, t in fields.items():
            bad = isinstance(v.get(k), bool) and t in (int, (int, float))
            if k not in v or not isinstance(v[k], t) or bad:
                raise Missing(f"observation {name!r} at {o.t:.3f}s: field {k!r} missing or "
                              f"of the wrong type (got {v.get(k)!r:.80})")
        out.append(v)
    return out


def require_ops(ops: list[Op], what: str, minimum: int) -> None:
    if len(ops) < minimum:
        raise Missing(f"{len(ops)} {what} recorded (minimum {minimum})")
