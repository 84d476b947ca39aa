"""``RolloutController``: which policy version each cell runs, decided over time.

A new version (the candidate) goes to the canary cell first, then to the other cells
one at a time; each step soaks for ``soak_seconds`` while the controller watches the
candidate's error and deny rates on every cell that runs it. A breach sends every
cell back to the stable version at once. The controller is pure state: it never
publishes; each call that changes the assignment returns the new ``Assignment`` and
the caller (the control plane's publisher) pushes it. docs/rollout.md has the
states, the math and the operator actions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from control.pipeline.state import Assignment
from control.rollout.signals import CellVersion, CounterTracker, Counts, Sample
from control.spec.model import Rollout
from policies.core.errors import UserError

HISTORY = 50  # transitions kept for status
MAX_VERSION = 128  # characters of a version name


class State(StrEnum):
    IDLE = "idle"  # one version everywhere (or none yet)
    CANARY = "canary"  # the candidate on the canary cell, soaking
    PROMOTING = "promoting"  # the candidate on more cells, the newest one soaking
    COMPLETE = "complete"  # passing through: the candidate became the stable version
    ROLLED_BACK = "rolled_back"  # a breach: the stable version everywhere
    ABORTED = "aborted"  # the operator's rollback


ROLLING = (State.CANARY, State.PROMOTING)


class RolloutError(UserError):
    """An operator action that cannot be done now (nothing is rolling out)."""


@dataclass
class _Soak:
    cell: str
    started: float  # controller clock
    start: dict[CellVersion, Counts]  # the tracker's totals when the soak started
    passed: bool = False


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.state = Gauge(
            "a1_rollout_state", "1 for the rollout's current state, 0 for the others.",
            ["state"], registry=registry,
        )  # fmt: skip
        self.transitions = Counter(
            "a1_rollout_transitions", "Rollout state transitions, by the state entered.",
            ["to"], registry=registry,
        )  # fmt: skip
        self.breaches = Counter(
            "a1_rollout_breaches", "Automatic rollbacks: a candidate's error or deny rate "
            "went over its bound.", registry=registry,
        )  # fmt: skip
        self.step = Gauge(
            "a1_rollout_candidate_cells", "Cells running the candidate version (0: none).",
            registry=registry,
        )  # fmt: skip
        for s in State:
            self.state.labels(s.value)
            self.transitions.labels(s.value)

    def show(self, state: State, step: int) -> None:
        for s in State:
            self.state.labels(s.value).set(1 if s is state else 0)
        self.step.set(step)


def _check_version(version: str) -> str:
    if (not isinstance(version, str) or not version or len(version) > MAX_VERSION
            or not version.isprintable()):  # fmt: skip
        raise ValueError(f"rollout: bad policy version {version!r}")
    return version


class RolloutController:
    """Thread-safe: the scraper's thread observes, the operator's requests promote or
    abort, the control plane's loop ticks and proposes.

    ``cells`` is the ordered list of cells; the rollout order is the canary cell
    (``settings.canary_cell``, or the first cell when it names none of them)
    followed by the others in that order.
    """

    def __init__(
        self,
        settings: Rollout,
        cells: Sequence[str],
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._wall = wall
        self.settings = settings
        self._cells: tuple[str, ...] = tuple(dict.fromkeys(cells))
        self._metrics = _Metrics(registry if registry is not None else CollectorRegistry())
        self._tracker = CounterTracker()
        self._state = State.IDLE
        self._stable: str | None = None
        self._candidate: str | None = None
        self._on: list[str] = []  # cells running the candidate, in the order they got it
        self._soaks: dict[str, _Soak] = {}
        self._bad: str | None = None  # the last candidate rolled back (never proposed again)
        self._bad_reason = ""
        self._last_breach = ""
        self._last_refused = ""
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._metrics.show(self._state, 0)

    # -- reading ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def order(self) -> tuple[str, ...]:
        canary = self.settings.canary_cell
        if canary not in self._cells:
            return self._cells
        return (canary, *(c for c in self._cells if c != canary))

    def assignment(self) -> Assignment | None:
        """What every cell runs now; None before the first version is proposed."""
        with self._lock:
            return self._assignment()

    def _assignment(self) -> Assignment | None:
        if self._stable is None:
            return None
        cand = self._candidate
        cells = {c: cand for c in self._on} if cand is not None else {}
        return Assignment(default=self._stable, cells=cells)

    # -- inputs ----------------------------------------------------------------------

    def propose(self, version: str) -> Assignment:
        """A new policy version from the pipeline; returns the assignment (changed or not).

        The first version ever goes everywhere at once (there is nothing to compare
        it with). Proposing the candidate again changes nothing; proposing the stable
        version withdraws the candidate; a version that was just rolled back is
        refused (status ``last_refused``) until a different candidate has come."""
        _check_version(version)
        with self._lock:
            if self._stable is None:
                self._stable = version
                self._tracker.track((version,))
                self._move(State.IDLE, version, "first version: everywhere at once")
            elif version == self._candidate:
                pass
            elif version == self._stable:
                if self._state in ROLLING:
                    self._end_candidate()
                    self._move(State.IDLE, version, "the stable version was proposed again: "
                               "candidate withdrawn")  # fmt: skip
            elif version == self._bad:
                self._last_refused = (f"version {version} was rolled back ({self._bad_reason}); "
                                      "propose a new version")  # fmt: skip
            else:
                self._bad, self._bad_reason, self._last_refused = None, "", ""
                self._candidate = version
                self._on, self._soaks = [], {}
                self._tracker.track((self._stable, version))
                if not self.order:
                    self._complete("no cells to soak on")
                else:
                    self._put_on(self.order[0])
                    self._move(State.CANARY, version, f"canary on {self.order[0]}")
            a = self._assignment()
            assert a is not None
            return a

    def configure(
        self, settings: Rollout | None = None, cells: Sequence[str] | None = None
    ) -> Assignment | None:
        """New rollout settings or cell list (a spec change); the new assignment if it
        changed. Removed cells leave the rollout; new cells run the stable version
        until their turn; a rollout whose cells are all gone completes."""
        with self._lock:
            before = self._assignment()
            if settings is not None:
                self.settings = settings
            if cells is not None:
                self._cells = tuple(dict.fromkeys(cells))
                self._on = [c for c in self._on if c in self._cells]
                self._soaks = {c: s for c, s in self._soaks.items() if c in self._cells}
                if self._state in ROLLING and not self._on:
                    if self.order:
                        self._put_on(self.order[0])
                        self._move(self._state, self._candidate or "",
                                   f"cells changed: candidate now on {self.order[0]}")
                    else:
                        self._complete("cells changed: no cells left to soak on")
            self._judge()
            after = self._assignment()
            return after if after != before else None

    def observe(self, samples: Iterable[Sample]) -> Assignment | None:
        """Scraped cumulative counters; the new assignment when they decide a step (a
        breach rolls back within this call; a passed soak promotes)."""
        with self._lock:
            self._tracker.add(samples)
            return self._judge()

    def tick(self) -> Assignment | None:
        """Let time pass: a soak that has lasted long enough with enough traffic promotes."""
        with self._lock:
            return self._judge()

    def promote(self) -> Assignment:
        """The operator skips the rest of the current soak: next cell, or complete."""
        with self._lock:
            self._require_rolling("promote")
            self._advance("operator promote")
            a = self._assignment()
            assert a is not None
            return a

    def abort(self, reason: str = "operator abort") -> Assignment:
        """The operator rolls back: the stable version everywhere, the candidate refused."""
        with self._lock:
            self._require_rolling("abort")
            self._rollback(reason, State.ABORTED)
            a = self._assignment()
            assert a is not None
            return a

    # -- persistence -----------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """What must survive a control-plane restart (JSON-able): without it, a restart
        would take the spec's version, maybe a rolled-back one, as the first version
        and put it everywhere at once. Soak windows are not kept (counters restart)."""
        with self._lock:
            return {
                "stable": self._stable, "candidate": self._candidate,
                "rejected": self._bad, "rejected_reason": self._bad_reason or None,
            }  # fmt: skip

    def restore(self, data: Any) -> Assignment | None:
        """Start from an ``export()`` (before any ``propose``): the stable version, the
        refused candidate, and a running rollout again at its canary (a fresh soak).
        ValueError names the field of a malformed document."""
        if not isinstance(data, dict):
            raise ValueError("rollout state: expected an object")
        fields: dict[str, str | None] = {}
        for key in ("stable", "candidate", "rejected", "rejected_reason"):
            v = data.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"rollout state: {key}: expected a string or null")
            fields[key] = v
            if v is not None and key != "rejected_reason":
                try:
                    _check_version(v)
                except ValueError:
                    raise ValueError(f"rollout state: {key}: bad version {v[:80]!r}") from None
        with self._lock:
            if self._stable is not None:
                raise ValueError("rollout state: restore must come before the first version")
            stable = fields["stable"]
            if stable is None:
                return None
            self._stable = stable
            self._tracker.track((stable,))
            self._move(State.IDLE, stable, "restored")
            if fields["rejected"] not in (None, stable):
                self._bad = fields["rejected"]
                self._bad_reason = (fields["rejected_reason"] or "before a restart")[:1000]
            cand = fields["candidate"]
            if cand is not None and cand not in (stable, self._bad):
                self.propose(cand)
            return self._assignment()

    # -- transitions -----------------------------------------------------------------

    def _require_rolling(self, action: str) -> None:
        if self._state not in ROLLING:
            raise RolloutError(
                f"rollout {action}: no rollout in progress (state {self._state.value}, "
                f"stable version {self._stable or 'none'})"
            )

    def _move(self, to: State, version: str, reason: str) -> None:
        self._history.append({
            "at": round(self._wall(), 3), "from": self._state.value, "to": to.value,
            "version": version, "reason": reason,
        })  # fmt: skip
        self._state = to
        self._metrics.transitions.labels(to.value).inc()
        self._metrics.show(to, len(self._on))

    def _put_on(self, cell: str) -> None:
        self._on.append(cell)
        self._soaks[cell] = _Soak(cell, self._clock(), dict(self._tracker.totals()))

    def _end_candidate(self) -> None:
        self._candidate = None
        self._on, self._soaks = [], {}
        self._tracker.track((self._stable or "",))

    def _complete(self, reason: str) -> None:
        version = self._candidate or ""
        self._stable = version
        self._end_candidate()
        self._move(State.COMPLETE, version, reason)
        self._move(State.IDLE, version, "complete: one version everywhere")

    def _rollback(self, reason: str, to: State) -> None:
        version = self._candidate or ""
        self._bad, self._bad_reason = version, reason
        if to is State.ROLLED_BACK:
            self._last_breach = reason
            self._metrics.breaches.inc()
        self._end_candidate()
        self._move(to, version, reason)

    def _advance(self, reason: str) -> None:
        if self._on:
            self._soaks[self._on[-1]].passed = True
        nxt = next((c for c in self.order if c not in self._on), None)
        if nxt is None:
            self._complete(f"{reason}: every cell passed")
        else:
            self._put_on(nxt)
            self._move(State.PROMOTING, self._candidate or "", f"{reason}: promoted to {nxt}")

    def _window(self, soak: _Soak) -> Counts:
        return self._tracker.window(soak.start, soak.cell, self._candidate or "")

    def _breach(self) -> str | None:
        s = self.settings
        for cell in self._on:
            w = self._window(self._soaks[cell])
            if w.total < s.min_requests:
                continue
            err, deny = w.rates()
            n = int(w.total)
            if err > s.max_error_rate:
                return (f"error rate {err:.4f} > {s.max_error_rate} on cell {cell} "
                        f"({int(w.error)} of {n} requests)")  # fmt: skip
            if deny > s.max_deny_rate:
                return (f"deny rate {deny:.4f} > {s.max_deny_rate} on cell {cell} "
                        f"({int(w.deny)} of {n} requests)")  # fmt: skip
        return None

    def _judge(self) -> Assignment | None:
        """Roll back on a breach, else promote a soak that passed; one step per call."""
        if self._state not in ROLLING:
            return None
        reason = self._breach()
        if reason is not None:
            self._rollback(reason, State.ROLLED_BACK)
            return self._assignment()
        soak = self._soaks[self._on[-1]]
        elapsed = self._clock() - soak.started
        if elapsed >= self.settings.soak_seconds and self._window(soak).total >= (
            self.settings.min_requests
        ):
            self._advance(f"soak passed on {soak.cell}")
            return self._assignment()
        return None

    # -- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-able view: see docs/rollout.md."""
        with self._lock:
            s = self.settings
            now = self._clock()
            a = self._assignment()
            cand = self._candidate
            observed: dict[str, Any] = {}
            for cell in self._on:
                soak = self._soaks[cell]
                w = self._window(soak)
                err, deny = w.rates()
                observed[cell] = {
                    "version": cand, "requests": int(w.total), "allow": int(w.allow),
                    "deny": int(w.deny), "error": int(w.error), "error_rate": round(err, 6),
                    "deny_rate": round(deny, 6), "judged": w.total >= s.min_requests,
                    "soak_elapsed_s": round(now - soak.started, 3), "passed": soak.passed,
                }  # fmt: skip
            soak_view: dict[str, Any] | None = None
            control: dict[str, Any] | None = None
            message = {
                State.IDLE: "idle: one version everywhere" if self._stable else "idle: no policy",
                State.ROLLED_BACK: f"rolled back: {self._last_breach}",
                State.ABORTED: f"aborted: {self._bad_reason}",
            }.get(self._state, "")
            if self._state in ROLLING:
                soak = self._soaks[self._on[-1]]
                w = self._window(soak)
                elapsed = now - soak.started
                remaining = max(0.0, s.soak_seconds - elapsed)
                waiting = remaining == 0 and w.total < s.min_requests
                soak_view = {
                    "cell": soak.cell, "elapsed_s": round(elapsed, 3),
                    "remaining_s": round(remaining, 3), "requests": int(w.total),
                    "min_requests": s.min_requests, "waiting_for_traffic": waiting,
                }  # fmt: skip
                message = (
                    f"{self._state.value}: {cand} on {len(self._on)} of {len(self._cells)} "
                    f"cells, soaking {soak.cell} ({elapsed:.0f} s of {s.soak_seconds} s, "
                    f"{int(w.total)} of {s.min_requests} requests)"
                    + (": waiting for traffic" if waiting else "")
                )
                stable = self._stable or ""
                ctl = Counts()
                for cell in self._cells:
                    if cell not in self._on:
                        ctl = ctl + self._tracker.window(soak.start, cell, stable)
                err, deny = ctl.rates()
                control = {
                    "version": stable, "requests": int(ctl.total),
                    "error_rate": round(err, 6), "deny_rate": round(deny, 6),
                }  # fmt: skip
            return {
                "state": self._state.value,
                "message": message,
                "stable": self._stable,
                "candidate": cand,
                "assignment": None if a is None else {"default": a.default, "cells": dict(a.cells)},
                "cells": {c: (cand if c in self._on else self._stable) for c in self._cells},
                "order": list(self.order),
                "step": len(self._on),
                "steps": len(self._cells),
                "soak": soak_view,
                "observed": observed,
                "control_group": control,
                "bounds": {
                    "canary_cell": s.canary_cell, "soak_seconds": s.soak_seconds,
                    "max_error_rate": s.max_error_rate, "max_deny_rate": s.max_deny_rate,
                    "min_requests": s.min_requests,
                },
                "last_breach": self._last_breach or None,
                "rejected_version": self._bad,
                "last_refused": self._last_refused or None,
                "counter_resets": self._tracker.resets,
                "history": list(self._history),
            }
