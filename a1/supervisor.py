"""Keep a stack's children running: restart what dies, alone, with capped backoff.

``a1 up`` hands every component (cells, the sidecar, Envoy) to one
:class:`Supervisor` once the stack is up. A failure stays inside its component:

- A child that exits without being asked to is reported at once, with its exit
  status and the tail of its log, and restarted after a backoff that starts at
  ``initial_backoff`` and doubles per consecutive failure up to ``max_backoff``.
  The count of consecutive failures (and so the backoff) resets once a restarted
  child has been ready for ``stable_after`` seconds.
- A restarted child is ``starting`` until its readiness probe passes; one that
  is not ready within ``ready_timeout`` is stopped and counted as a failure.
- After ``max_failures`` failures within any ``failure_window`` seconds the
  supervisor gives up on the child (state ``failed``) and never restarts it. A
  given-up cell leaves the rest serving; a given-up *critical* child (Envoy, the
  sidecar) ends :meth:`Supervisor.run` with a :class:`GaveUp`, so ``a1 up``
  stops the stack and exits non-zero with a report, never silently.
- No other component is touched by one child's failure or restart.
- Every change of state is written atomically (rename) to the status file, see
  docs/supervisor.md for its format, and every restart prints a line.

The supervisor runs in one thread and never blocks for long: it polls exits and
readiness each ``interval``, so stopping (``stop`` event) takes effect within
one probe's timeout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from threading import Event
from typing import Any

from a1.files import write_atomic
from a1.launcher import Launcher, LaunchError, ManagedProcess, Probe

STATUS_FORMAT = 1


class State(StrEnum):
    STARTING = "starting"  # started, readiness probe not yet passed
    RUNNING = "running"  # ready
    BACKOFF = "backoff"  # exited unasked; waiting to be restarted
    FAILED = "failed"  # given up on: too many failures in the window
    STOPPED = "stopped"  # stopped on purpose (shutdown), or not yet started


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that died, and when to stop trying."""

    initial_backoff: float = 0.5  # seconds before the first restart
    max_backoff: float = 10.0  # the doubling stops here
    stable_after: float = 10.0  # ready this long → consecutive failures reset
    max_failures: int = 5  # this many failures ...
    failure_window: float = 60.0  # ... within this many seconds → give up
    ready_timeout: float = 60.0  # a restart not ready by then is a failure

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        if self.max_failures < 1 or self.failure_window <= 0 or self.ready_timeout <= 0:
            raise ValueError("max_failures, failure_window and ready_timeout must be positive")

    def backoff(self, consecutive: int) -> float:
        """Delay before the restart that follows the ``consecutive``-th failure (1-based)."""
        if consecutive <= 1:
            return self.initial_backoff
        return min(self.max_backoff, self.initial_backoff * 2 ** min(consecutive - 1, 62))

    def describe(self) -> dict[str, float | int]:
        return {"initial_backoff_s": self.initial_backoff, "max_backoff_s": self.max_backoff,
                "stable_after_s": self.stable_after, "max_failures": self.max_failures,
                "failure_window_s": self.failure_window, "ready_timeout_s": self.ready_timeout}


@dataclass(frozen=True)
class GaveUp:
    """The supervisor gave up on a critical component; the stack cannot serve."""

    name: str
    report: str


@dataclass(frozen=True)
class Exit:
    code: int | None  # None: killed by us after a readiness timeout, code unknown
    reason: str
    at: float  # wall clock

    def to_json(self) -> dict[str, Any]:
        sig = None
        if self.code is not None and self.code < 0:
            try:
                sig = signal.Signals(-self.code).name
            except ValueError:
                sig = str(-self.code)
        return {"code": self.code, "signal": sig, "reason": self.reason, "at": _iso(self.at)}


@dataclass
class Component:
    """What the supervisor knows about one child."""

    name: str
    kind: str  # cell | sidecar | envoy | other: for people and tools reading the status
    critical: bool  # giving up on it ends the stack
    stack_wide: bool  # its death is an outage for every tenant
    impact: str  # one clause saying who is affected while it is down
    ready: Probe | None  # for restarts; None: the spec's own probe
    state: State = State.STOPPED
    pid: int | None = None
    restarts: int = 0
    last_exit: Exit | None = None
    since: float = field(default_factory=time.time)  # wall clock of the last state change
    consecutive: int = 0  # failures since it was last stable
    failures: deque[float] = field(default_factory=deque)  # monotonic times, in the window
    next_start: float = 0.0  # monotonic, while in BACKOFF
    deadline: float = 0.0  # monotonic, while STARTING after a restart
    ready_at: float | None = None  # monotonic, while RUNNING
    down_at: float | None = None  # monotonic: when it last stopped serving

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self.state.value,
                "pid": self.pid, "restarts": self.restarts,
                "last_exit": self.last_exit.to_json() if self.last_exit else None,
                "since": _iso(self.since), "critical": self.critical}


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Supervisor:
    """Restart policy and state machine over a :class:`Launcher`'s children."""

    def __init__(self, launcher: Launcher, policy: RestartPolicy | None = None,
                 status_path: Path | None = None,
                 report: Callable[[str], None] = _stderr) -> None:
        self.launcher = launcher
        self.policy = policy or RestartPolicy()
        self.status_path = status_path
        self._report = report
        self._components: dict[str, Component] = {}
        self._stack_state = "starting"

    # -- setup --------------------------------------------------------------------------

    def watch(self, name: str, *, kind: str = "other", critical: bool = False,
              stack_wide: bool = False, impact: str = "", ready: Probe | None = None) -> None:
        """Declare a component (before or after the launcher starts it)."""
        self._components[name] = Component(name, kind, critical, stack_wide,
                                           impact or f"{name} is unavailable", ready)

    def adopt(self) -> None:
        """The stack is up: take every declared, running child as ``running``."""
        now = time.monotonic()
        for comp in self._components.values():
            proc = self.launcher[comp.name]
            comp.pid = proc.pid
            comp.ready_at = now
            self._set(comp, State.RUNNING)
        self._stack_state = "running"
        self.write_status()

    # -- inspecting ---------------------------------------------------------------------

    def __getitem__(self, name: str) -> Component:
        return self._components[name]

    def status(self) -> dict[str, Any]:
        return {
            "format": STATUS_FORMAT,
            "a1_pid": os.getpid(),
            "updated": _iso(time.time()),
            "stack": self._overall(),
            "policy": self.policy.describe(),
            "components": [c.to_json() for c in self._components.values()],
        }

    def _overall(self) -> str:
        if self._stack_state != "running":
            return self._stack_state
        comps = self._components.values()
        if any(c.critical and c.state is not State.RUNNING for c in comps):
            return "outage"
        if any(c.state is not State.RUNNING for c in comps):
            return "degraded"
        return "running"

    def write_status(self) -> None:
        if self.status_path is None:
            return
        try:
            write_atomic(self.status_path, (json.dumps(self.status(), indent=2) + "\n").encode())
        except OSError as err:  # the stack keeps serving; only the file is stale
            self._report(f"a1: {self.status_path}: cannot write status: {err.strerror}")

    def stopping(self) -> None:
        """Shutdown has begun (components keep their states until they are stopped)."""
        self._stack_state = "stopping"
        self.write_status()

    def stopped(self, stack_state: str = "stopped") -> None:
        """Record the end: every component ``stopped`` (``failed`` ones stay failed)."""
        self._stack_state = stack_state
        for comp in self._components.values():
            if comp.state is not State.FAILED:
                self._set(comp, State.STOPPED)
        self.write_status()

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop: Event, interval: float = 0.1) -> GaveUp | None:
        """Supervise until ``stop`` is set (→ None) or a critical child is given up on."""
        while not stop.is_set():
            gave_up = self.step()
            if gave_up is not None:
                return gave_up
            stop.wait(interval)
        return None

    def step(self) -> GaveUp | None:
        """One pass over every component; returns at the first critical give-up."""
        changed = False
        result: GaveUp | None = None
        for comp in self._components.values():
            before = (comp.state, comp.pid, comp.restarts)
            gave_up = self._step_one(comp)
            changed |= before != (comp.state, comp.pid, comp.restarts)
            if gave_up is not None:
                result = gave_up
                break
        if changed:
            self.write_status()
        return result

    def _step_one(self, comp: Component) -> GaveUp | None:
        now = time.monotonic()
        if comp.state in (State.RUNNING, State.STARTING):
            proc = self.launcher[comp.name]
            if proc.expected_exit:  # someone stopped it on purpose: not a failure
                if not proc.alive():
                    self._set(comp, State.STOPPED)
                return None
            if not proc.alive():
                return self._failed(comp, proc, now)
            if comp.state is State.STARTING:
                probe = comp.ready or proc.spec.ready
                if probe is None or probe():
                    self._up(comp, proc, now)
                elif now > comp.deadline:
                    return self._failed(comp, proc, now, timed_out=probe)
            elif (comp.consecutive and comp.ready_at is not None
                  and now - comp.ready_at >= self.policy.stable_after):
                comp.consecutive = 0  # stable: the next failure starts the backoff afresh
        elif comp.state is State.BACKOFF and now >= comp.next_start:
            return self._restart(comp, now)
        return None

    # -- transitions --------------------------------------------------------------------

    def _set(self, comp: Component, state: State) -> None:
        if comp.state is not state:
            comp.state = state
            comp.since = time.time()

    def _up(self, comp: Component, proc: ManagedProcess, now: float) -> None:
        comp.ready_at = now
        self._set(comp, State.RUNNING)
        down = f" after {now - comp.down_at:.1f}s down" if comp.down_at is not None else ""
        what = "the stack-wide outage is over" if comp.stack_wide else "serving again"
        self._report(f"a1: {comp.name} is back (pid {proc.pid}, restart {comp.restarts})"
                     f"{down}: {what}")
        comp.down_at = None

    def _failed(self, comp: Component, proc: ManagedProcess, now: float,
                timed_out: Probe | None = None) -> GaveUp | None:
        """The child exited unasked (or, with ``timed_out``, never became ready)."""
        if timed_out is None:
            report = self.launcher.death_report(proc)
            reason = proc.describe_exit()
        else:
            reason = (f"{comp.name} (pid {proc.pid}) was not ready after "
                      f"{self.policy.ready_timeout:g}s ({timed_out!r})")
            report = proc.with_log(f"{reason}; stopped it")
        self.launcher.stop(comp.name)  # reap whatever is left of its process group
        comp.last_exit = Exit(proc.returncode, reason, time.time())
        prefix = "stack-wide outage: " if comp.stack_wide else ""
        self._report(f"a1: {prefix}{report}")
        return self._after_failure(comp, now)

    def _after_failure(self, comp: Component, now: float) -> GaveUp | None:
        """Count a failure; give up, or schedule the restart after the backoff."""
        p = self.policy
        comp.pid = None
        comp.ready_at = None
        if comp.down_at is None:
            comp.down_at = now
        comp.failures.append(now)
        while comp.failures and now - comp.failures[0] > p.failure_window:
            comp.failures.popleft()
        comp.consecutive += 1
        if len(comp.failures) >= p.max_failures:
            self._set(comp, State.FAILED)
            report = (f"gave up on {comp.name} after {len(comp.failures)} failures within "
                      f"{p.failure_window:g}s; {comp.impact}")
            if comp.critical:
                self._report(f"a1: {report}")
                return GaveUp(comp.name, report)
            self._report(f"a1: {report}; the rest keep serving (restart `a1 up` to retry)")
            return None
        delay = p.backoff(comp.consecutive)
        comp.next_start = now + delay
        self._set(comp, State.BACKOFF)
        self._report(f"a1: {comp.impact}; restarting {comp.name} in {delay:g}s "
                     f"(failure {len(comp.failures)}; giving up at {p.max_failures} within "
                     f"{p.failure_window:g}s)")
        return None

    def _restart(self, comp: Component, now: float) -> GaveUp | None:
        spec = self.launcher[comp.name].spec
        comp.restarts += 1
        try:
            proc = self.launcher.start(spec)
        except (LaunchError, OSError) as err:  # e.g. the program is gone, or the log dir
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            comp.last_exit = Exit(None, why, time.time())
            self._report(f"a1: restarting {comp.name}: {why}")
            return self._after_failure(comp, now)
        comp.pid = proc.pid
        comp.deadline = now + self.policy.ready_timeout
        self._set(comp, State.STARTING)
        self._report(f"a1: restarted {comp.name} (pid {proc.pid}, restart {comp.restarts})")
        return None
