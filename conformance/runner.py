"""The runner: plays scenarios against one target under one load, records the history.

For each scenario: a control window of steady load, the fault injected, the fault
window, the repair, then recovery until every tenant group converges (N
consecutive successes within the scenario's bound, polled, never a sleep), plus a
short settle. Faults are repaired even when a step fails, and every event goes to
the history as it happens (``conformance.history``), so a failed run replays
offline. The checkers judge the history afterwards: the runner itself asserts
nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.checkers.registry import CHECKERS, check, check_history
from conformance.harness.target import Target
from conformance.harness.waiting import NotConverged, poll
from conformance.history import (
    MAX_HISTORY_BYTES,
    TRUNCATED,
    FaultEvent,
    History,
    Observation,
    Op,
    Recorder,
    Window,
)
from conformance.load import Load, Mix, groups_for
from conformance.nemesis.base import Fault
from conformance.scenarios.base import Scenario
from policies.core.errors import one_line

SKIPPED = "skipped"  # observation: why a scenario could not run here
ERROR = "error"  # observation: the runner failed to play it (a nemesis raised)
READBACK = "readback"  # the scenario id of the post-run readback ops
CONVERGED_AFTER = 10  # consecutive ok ops per group that say a group has recovered
SAMPLE_INTERVAL = 0.5  # seconds between samples of a scenario's observations
# Reads to compare latency, writes for I-11, refused probes for I-6, misroutes for I-5.
MIX = Mix(read=0.73, write=0.2, probe=0.05, misroute=0.02)
ONE_CELL_MIX = Mix(read=0.75, write=0.2, probe=0.05, misroute=0.0)

Progress = Callable[[str], None]


@dataclass
class Outcome:
    scenario: Scenario
    skipped: str | None = None
    error: str | None = None  # the runner could not play it (a nemesis failed)


class Run:
    """One target, one load, one recorder; scenarios played one after another."""

    def __init__(self, target: Target, recorder: Recorder, load: Load, *,
                 progress: Progress = lambda _: None, seed: int = 0,
                 run_dir: Path | None = None) -> None:
        self.seed = seed
        self.run_dir = run_dir or target.state_dir
        self.target = target
        self.recorder = recorder
        self.load = load
        self.progress = progress

    def now(self) -> float:
        return self.load.clock()

    def observe(self, scenario: str, name: str, value: object) -> None:
        self.recorder.record(Observation(scenario, name, self.now(), value))

    def _window(self, scenario: Scenario, name: str, seconds: float) -> float:
        """Hold a window of ``seconds``, record it; its end (the next window's start)."""
        start = self.now()
        self._wait_out(scenario, name, seconds)
        end = self.now()
        self.recorder.record(Window(scenario.id, name, start, end))
        return end

    def _wait_out(self, scenario: Scenario, name: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.progress(f"{scenario.id}: {name} window, {left:4.1f}s left, "
                          f"{self.load.live()}")
            time.sleep(min(0.5, left))

    def _sampler(self, scenario: Scenario, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.is_set():
                for name, fn in scenario.sample.items():
                    try:
                        self.observe(scenario.id, name, fn(self))
                    except Exception as err:  # a sample that fails is recorded, not fatal
                        self.observe(scenario.id, name + ".error",
                                     one_line(f"{type(err).__name__}: {err}"))
                stop.wait(SAMPLE_INTERVAL)

        thread = threading.Thread(target=loop, name=f"sample-{scenario.id}", daemon=True)
        thread.start()
        return thread

    def converged(self, since: float, groups: Sequence[str]) -> bool:
        """Every group's last CONVERGED_AFTER reads and writes, all invoked after ``since``,
        succeeded: a fault's residue (a write still waiting on a lock) is not converged."""
        tail: dict[str, list[Op]] = {g: [] for g in groups}
        for event in reversed(self.recorder.history.events):
            if not isinstance(event, Op) or event.group not in tail or \
                    event.f not in ("read", "write"):
                continue
            if event.invoke < since:
                continue
            got = tail[event.group]
            if len(got) < CONVERGED_AFTER:
                got.append(event)
            if all(len(v) >= CONVERGED_AFTER for v in tail.values()):
                break
        return all(len(v) >= CONVERGED_AFTER and all(o.ok for o in v) for v in tail.values())

    def _failed(self, scenario: Scenario, err: Exception) -> Outcome:
        error = f"{type(err).__name__}: {one_line(str(err))}"
        self.progress(f"{scenario.id}: could not be played: {error}")
        self.observe(scenario.id, ERROR, error)
        return Outcome(scenario, error=error)

    def play(self, scenario: Scenario) -> Outcome:
        """Control window, fault, repair, recovery; the fault is repaired whatever happens."""
        self.load.switch(scenario.id)
        self.progress(f"{scenario.id}: {scenario.title}")
        try:
            fault = scenario.fault(self)
            affected = tuple(getattr(fault, "affected_cells", ()))
            victim = (scenario.victim_cell(self) if scenario.victim_cell
                      else affected[0] if affected else None)
            table = self.target.cell_table()
            tenants = groups_for(table, victim)
            if fault.unavailable:
                self.progress(f"{scenario.id}: skipped: {fault.unavailable}")
                self.observe(scenario.id, SKIPPED, fault.unavailable)
                return Outcome(scenario, skipped=fault.unavailable)
            # One cell has no foreign cell to misroute to.
            mix = scenario.mix or (MIX if len(table.cells) > 1 else ONE_CELL_MIX)
            self.load.switch(groups=tenants, mix=mix)
            if not self.load.started:  # the first scenario starts it, with its own groups
                self.load.start()
        except Exception as err:
            return self._failed(scenario, err)
        groups = list(tenants)
        stop = threading.Event()
        sampler = self._sampler(scenario, stop)
        injected = False
        start = repaired = self.now()
        try:
            try:
                start = self._window(scenario, "control", scenario.windows.control)
                self.progress(f"{scenario.id}: inject {fault.name}")
                self.recorder.record(FaultEvent(scenario.id, fault.name, "inject", start,
                                                fault.expect))
                injected = True
                fault.inject()
                if scenario.no_decisions:  # only once it is in: ops sent before got decisions
                    self.load.authorized = False
                if scenario.after_inject:
                    scenario.after_inject(self)
                self._wait_out(scenario, "fault", scenario.windows.fault)
            finally:
                if injected:
                    self.load.authorized = True  # before: the repair brings decisions back
                    try:
                        fault.repair()
                    finally:
                        for name, value in _fault_observations(fault):
                            self.observe(scenario.id, name, value)
                        repaired = self.now()
                        self.recorder.record(Window(scenario.id, "fault", start, repaired))
                        self.recorder.record(FaultEvent(scenario.id, fault.name, "repair",
                                                        repaired, fault.expect))
            if scenario.after_repair:
                scenario.after_repair(self)
            self.progress(f"{scenario.id}: repaired, converging")
            try:
                poll(lambda: self.converged(repaired, groups), timeout=scenario.windows.recovery,
                     interval=0.2, what=f"{scenario.id}: every group to converge")
            except NotConverged as err:
                self.observe(scenario.id, "not_converged", str(err))
            self._wait_out(scenario, "settle", scenario.windows.settle)
        except Exception as err:
            return self._failed(scenario, err)
        finally:
            stop.set()
            sampler.join(5)
            if injected:
                self.recorder.record(Window(scenario.id, "recovery", repaired, self.now()))
        return Outcome(scenario)


def _fault_observations(fault: Fault) -> list[tuple[str, Any]]:
    """What a fault measured about itself (a config fault's rejection, churn's count)."""
    observations = getattr(fault, "observations", None)
    return list(observations()) if callable(observations) else []


def judge(history: History) -> list[CheckResult]:
    """One result per scenario (its invariant's checker), plus the whole-history ones.

    A pure function of the history: a saved ``history.jsonl`` is judged offline
    exactly as the run judged it (``a1 conformance --check``).
    """
    results: list[CheckResult] = []
    if history.observations("*", TRUNCATED):
        results.append(CheckResult("I-11", "*", False, "history bounded", detail=(
            f"the history reached its bound of {MAX_HISTORY_BYTES >> 20} MiB and was cut: "
            "a run is not judged on part of its evidence; run fewer scenarios")))
    meta = history.meta
    announced = list(meta.extra.get("scenarios") or []) if meta else []
    played = set(history.scenarios())
    for sid in announced:
        if sid not in played:  # a run cut short: what it never played did not pass
            results.append(CheckResult(sid.split("/", 1)[0], sid, False, "not run",
                                       detail="the scenario was never played (the run "
                                              "ended before it)"))
    for sid in history.scenarios():
        invariant = sid.split("/", 1)[0]
        if sid == READBACK or invariant not in CHECKERS:
            continue
        skipped = history.observations(sid, SKIPPED)
        errors = history.observations(sid, ERROR)
        if skipped or errors:
            results.append(CheckResult(
                invariant, sid, False, "not run",
                skipped=str(skipped[0].value) if skipped else None,
                detail=f"the scenario could not be played: {errors[0].value}" if errors else ""))
            continue
        if not CHECKERS[invariant].whole_history:  # those judge once, below, over all
            results.append(check(history, sid, invariant))
    results.extend(check_history(history))
    return results
