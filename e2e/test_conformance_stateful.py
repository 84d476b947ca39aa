"""Random fault schedules against one small stack, the invariants checked after every step.

A hypothesis ``RuleBasedStateMachine`` drives the conformance suite's own parts
(the Target with a fault proxy on every link, the process and network nemeses, a
Load recording into a Recorder) through random sequences of faults and repairs:
kill and restart a cell or the control plane, kill a cell or the sidecar for a
window, pause and resume the control plane or the telemetry sink, put a toxic on an
xDS link and clear it. Load runs in the background the whole time; every step ends
with a short traffic window.

Why a timeline rather than a per-step model: an op in flight when the next fault
lands must be judged by the faults that overlapped it, not by the step it started
in. So each data-plane fault opens a span on what it impairs (a cell's process, or
the sidecar, which every tenant's path goes through) at the moment before it is
injected, and its repair closes the span only once the affected tenants converged
again (N consecutive successes, polled: ``Run.converged``). After every step:

- I-6: no op with ``authorized=False`` (probes, misroutes, ops sent while the
  sidecar is dead) is 2xx;
- I-5: a read or write of a tenant whose path (its cell, the sidecar) was intact
  for the op's whole life did not fail, and a misroute to a live cell got 421;
- I-1/I-3: the same rule, where only non-data-plane faults were active (the
  control plane killed or paused, xDS links toxic, the sink paused): no op failed.

Teardown (once per generated schedule, even after a failed step) repairs
everything from the processes' real state, not the model (resume every pause,
reset every proxy, restart whatever is dead), waits for the data plane to converge
and every xDS client to reconnect, stops the load, reads every tenant back and
judges I-11 (the registry's nothing_lost checker) and I-6 over the whole history.
Each schedule's history is written as JSON Lines next to the stack, so a failure
replays offline (``a1 conformance check HISTORY``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance.checkers.registry import check
from conformance.harness.stacks import control_status
from conformance.harness.target import Target, TargetOptions
from conformance.harness.waiting import poll
from conformance.history import FaultEvent, Op, Recorder, Window
from conformance.load import Load
from conformance.nemesis import process
from conformance.nemesis.base import Fault
from conformance.nemesis.proxy.faults import toxic
from conformance.runner import MIX, Run

pytestmark = pytest.mark.e2e

CELLS = ("cell-1", "cell-2")
XDS_LINKS = ("envoy-xds", "sidecar-xds")
# Toxics for an xDS link: each must leave the data plane serving (I-1).
TOXICS: dict[str, dict[str, int]] = {
    "blackhole": {},
    "latency": {"latency": 300, "jitter": 100},
    "reset_peer": {"timeout": 200},
    "bandwidth": {"rate": 1},
    "slicer": {"average_size": 64, "size_variation": 32, "delay": 2000},
}
DWELL_S = 0.8  # the traffic window that ends every step (a window of load, not a wait)
SETTLE_S = 30.0  # bound for tenants to converge after their path is repaired
RESYNC_S = 60.0  # bound for every xDS client to reconnect after teardown's repair
SHOWN = 5  # violating ops named in a failure message
SIDECAR = "sidecar"
# Bounded for CI on two cores: the stack starts once (~15 s); a schedule of up to 12
# steps and its teardown take 5 to 30 s. No shrinking: each replay restarts processes,
# and the failing schedule is printed step by step as it is.
SETTINGS = settings(max_examples=6, stateful_step_count=12, deadline=None, derandomize=True,
                    database=None, phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=list(HealthCheck), print_blob=False)


@dataclass
class Timeline:
    """Spans of time when something on a tenant's data path was faulted (end None: open).

    Keys: ``cell-N`` (the cell's process) and ``sidecar`` (every tenant's decision point).
    """

    spans: dict[str, list[list[float | None]]] = field(default_factory=dict)

    def open(self, key: str, t: float) -> None:
        spans = self.spans.setdefault(key, [])
        if not spans or spans[-1][1] is not None:
            spans.append([t, None])

    def close(self, key: str, t: float) -> None:
        spans = self.spans.get(key)
        if spans and spans[-1][1] is None:
            spans[-1][1] = t

    def hit(self, key: str, a: float, b: float) -> bool:
        """Whether ``key`` was faulted at any moment of [a, b]."""
        return any(s <= b and (e is None or e >= a) for s, e in self.spans.get(key, []))

    def path_hit(self, cell: str | None, a: float, b: float) -> bool:
        return cell is None or self.hit(cell, a, b) or self.hit(SIDECAR, a, b)

    def any_hit(self, a: float, b: float) -> bool:
        return any(self.hit(k, a, b) for k in self.spans)


def violation(op: Op, timeline: Timeline) -> str | None:
    """Why ``op`` breaks an invariant given the faults that overlapped it, or None."""
    if not op.authorized:
        if op.ok:
            return f"I-6: unauthorized {op.f} answered {op.status}"
        if op.f == "misroute" and isinstance(op.value, dict):
            cell = str(op.value.get("cell"))
            if not timeline.hit(cell, op.invoke, op.complete) and op.status != 421:
                return f"I-5: misroute to live {cell} answered {op.status} ({op.error}), not 421"
        return None
    if op.f not in ("read", "write") or op.ok:
        return None
    if timeline.path_hit(op.expected_cell, op.invoke, op.complete):
        return None
    which = ("I-5: a tenant with an intact path failed while another cell's path was faulted"
             if timeline.any_hit(op.invoke, op.complete)
             else "I-1/I-3: failed with only non-data-plane faults active")
    return f"{which}: status {op.status} ({op.error})"


def describe(op: Op, why: str) -> str:
    return (f"{why} [{op.f} {op.tenant} cell={op.expected_cell} t={op.invoke:.2f}"
            f"..{op.complete:.2f}s scenario={op.scenario}]")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One two-cell stack for the whole module (a stack takes ~10 s to start)."""
    root = tmp_path_factory.mktemp("stateful")
    with Target(TargetOptions(root=root / "stack", cell_names=CELLS, seed=1)) as t:
        yield t


class FaultSchedule(RuleBasedStateMachine):
    """One generated schedule: its own Load and Recorder on the module's stack."""

    target: Target  # set by the test before running
    histories: Path
    counter = 0
    steps_run = 0

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.counter += 1
        self.example = f"sm{cls.counter}"
        self.history_path = cls.histories / f"{self.example}.jsonl"
        self.recorder = Recorder(self.history_path)
        self.load = Load.for_stack(self.target, self.recorder, mix=MIX, seed=cls.counter,
                                   run_id=f"{self.example}-{int(time.time())}")
        self.run = Run(self.target, self.recorder, self.load)
        self.timeline = Timeline()
        self.n = 0
        self.cursor = 0  # events judged so far
        self.stopped = False
        self.failed = False  # a step failed: teardown repairs but does not judge over it
        # The model: what is faulted now, with the Fault that repairs it.
        self.killed: dict[str, Fault] = {}  # cells, control
        self.paused: dict[str, Fault] = {}  # control, sink
        self.toxic: dict[str, Fault] = {}  # xDS link -> toxic

    # -- plumbing ---------------------------------------------------------------------

    def now(self) -> float:
        return self.load.clock()

    def groups_up(self) -> list[str]:
        """Groups (named for their cell) whose cell is up: what can converge."""
        return [c for c in CELLS if c not in self.killed]

    def settle(self, since: float, groups: list[str], what: str) -> None:
        if groups:
            poll(lambda: self.run.converged(since, groups), timeout=SETTLE_S, interval=0.1,
                 what=f"{what}: groups {', '.join(groups)} to converge")

    def step(self, name: str, action: Callable[[], None], *, opens: tuple[str, ...] = (),
             closes: tuple[str, ...] = ()) -> None:
        """Open the spans a fault impairs, act, settle what a repair restored, run traffic
        for a window, then judge every op recorded so far."""
        try:
            self._step(name, action, opens, closes)
        except BaseException:
            self.failed = True
            raise

    def _step(self, name: str, action: Callable[[], None], opens: tuple[str, ...],
              closes: tuple[str, ...]) -> None:
        self.n += 1
        type(self).steps_run += 1
        label = f"{self.example}/{self.n:02d}-{name}"
        self.load.switch(label)
        t0 = self.now()
        for key in opens:
            self.timeline.open(key, t0)
        self.recorder.record(FaultEvent(label, name, "inject", t0,
                                        f"faults before this step: {self.model()}"))
        action()
        if closes:
            self.settle(self.now(), self.groups_up(), label)
            t1 = self.now()
            for key in closes:
                self.timeline.close(key, t1)
        time.sleep(DWELL_S)  # the step's traffic window under the new state
        self.recorder.record(Window(label, "step", t0, self.now()))
        self.judge(label)

    def model(self) -> str:
        parts = [f"killed {n}" for n in sorted(self.killed)]
        parts += [f"paused {n}" for n in sorted(self.paused)]
        parts += [f"{link} {f.name}" for link, f in sorted(self.toxic.items())]
        return ", ".join(parts) or "no fault"

    def judge(self, where: str) -> None:
        events = self.recorder.history.events
        end = len(events)
        found = [describe(e, why) for e in events[self.cursor:end]
                 if isinstance(e, Op) and (why := violation(e, self.timeline))]
        self.cursor = end
        assert not found, (
            f"after step {where} (faults now: {self.model()}): {len(found)} ops broke an "
            f"invariant: " + "; ".join(found[:SHOWN]) + f" (history: {self.history_path})")

    # -- start ------------------------------------------------------------------------

    @initialize()
    def start_load(self) -> None:
        self.failed = True  # until the load runs and converged
        self.load.start()
        self.settle(self.now(), list(CELLS), "start")
        poll(lambda: any(o.ok for o in self.recorder.history.ops(f="write")), timeout=SETTLE_S,
             interval=0.1, what="a first acknowledged write")
        self.judge("start")
        self.failed = False

    # -- cells ------------------------------------------------------------------------

    @precondition(lambda self: len(self.killed.keys() & set(CELLS)) < len(CELLS))
    @rule(data=st.data())
    def kill_cell(self, data: st.DataObject) -> None:
        cell = data.draw(st.sampled_from([c for c in CELLS if c not in self.killed]))
        fault = process.kill(self.target, cell)
        self.step(f"kill-{cell}", fault.inject, opens=(cell,))
        self.killed[cell] = fault

    # A cell learns its table from the control plane: restart it only when that serves.
    @precondition(lambda self: bool(self.killed.keys() & set(CELLS))
                  and "control" not in self.killed and "control" not in self.paused)
    @rule(data=st.data())
    def restart_cell(self, data: st.DataObject) -> None:
        cell = data.draw(st.sampled_from(sorted(self.killed.keys() & set(CELLS))))
        fault = self.killed.pop(cell)
        self.step(f"restart-{cell}", fault.repair, closes=(cell,))

    # Killed and restarted within one step, so a restart and its convergence are judged
    # often, not only when a schedule happens to draw restart_cell after kill_cell.
    @precondition(lambda self: len(self.killed.keys() & set(CELLS)) < len(CELLS)
                  and "control" not in self.killed and "control" not in self.paused)
    @rule(data=st.data())
    def cell_outage(self, data: st.DataObject) -> None:
        cell = data.draw(st.sampled_from([c for c in CELLS if c not in self.killed]))
        fault = process.kill(self.target, cell)

        def outage() -> None:
            fault.inject()
            time.sleep(DWELL_S)  # a traffic window with the cell dead
            fault.repair()

        self.step(f"{cell}-outage", outage, opens=(cell,), closes=(cell,))

    # -- the sidecar (the decision point: every op sent while it is dead must fail) ----

    # One step, killed and restarted: a dead sidecar fails every tenant, so a schedule
    # that left it dead would judge nothing else. It restarts from its last-known-good
    # policy whatever else is faulted (the control plane dead, its xDS link toxic).
    @rule()
    def sidecar_outage(self) -> None:
        fault = process.kill(self.target, SIDECAR)

        def outage() -> None:
            fault.inject()
            self.load.authorized = False  # reaped: from now on no decision can be made
            time.sleep(DWELL_S)  # a traffic window with no decision point
            self.load.authorized = True  # before the restart: ops may succeed from now on
            fault.repair()

        self.step("sidecar-outage", outage, opens=(SIDECAR,), closes=(SIDECAR,))

    # -- the control plane (not on the data path: I-1) --------------------------------

    @precondition(lambda self: "control" not in self.killed and "control" not in self.paused)
    @rule()
    def pause_control(self) -> None:
        fault = process.pause(self.target, "control")
        self.step("pause-control", fault.inject)
        self.paused["control"] = fault

    @precondition(lambda self: "control" in self.paused)
    @rule()
    def resume_control(self) -> None:
        self.step("resume-control", self.paused.pop("control").repair)

    @precondition(lambda self: "control" not in self.killed)
    @rule()
    def kill_control(self) -> None:
        fault = process.kill(self.target, "control")
        self.paused.pop("control", None)  # killed while paused: nothing left to resume
        self.step("kill-control", fault.inject)
        self.killed["control"] = fault

    @precondition(lambda self: "control" in self.killed)
    @rule()
    def restart_control(self) -> None:
        self.step("restart-control", self.killed.pop("control").repair)

    # -- xDS links --------------------------------------------------------------------

    @precondition(lambda self: len(self.toxic) < len(XDS_LINKS))
    @rule(data=st.data(), kind=st.sampled_from(sorted(TOXICS)),
          direction=st.sampled_from(["upstream", "downstream"]))
    def poison_xds(self, data: st.DataObject, kind: str, direction: str) -> None:
        link = data.draw(st.sampled_from([x for x in XDS_LINKS if x not in self.toxic]))
        fault = toxic(self.target, link, kind, direction=direction, **TOXICS[kind])
        self.step(f"{kind}-{direction}-{link}", fault.inject)
        self.toxic[link] = fault

    @precondition(lambda self: bool(self.toxic))
    @rule(data=st.data())
    def clear_xds(self, data: st.DataObject) -> None:
        link = data.draw(st.sampled_from(sorted(self.toxic)))
        self.step(f"clear-{link}", self.toxic.pop(link).repair)

    # -- the telemetry sink (fire and forget: I-3, I-7) -------------------------------

    @precondition(lambda self: "sink" not in self.paused)
    @rule()
    def pause_sink(self) -> None:
        fault = process.pause(self.target, "sink")
        self.step("pause-sink", fault.inject)
        self.paused["sink"] = fault

    @precondition(lambda self: "sink" in self.paused)
    @rule()
    def resume_sink(self) -> None:
        self.step("resume-sink", self.paused.pop("sink").repair)

    # -- traffic under the current faults ---------------------------------------------

    @rule()
    def traffic(self) -> None:
        self.step("traffic", lambda: None)

    # -- teardown ---------------------------------------------------------------------

    def repair_all(self) -> float:
        """Everything back from the processes' real state, whatever the model says."""
        self.load.authorized = True
        process.resume_all()
        for link in self.target.links:
            self.target.proxy(link).reset()
        launcher = self.target.launcher
        for name in ("control", *CELLS, SIDECAR, "sink"):  # the control plane first
            if not launcher[name].alive():
                launcher.restart(name, timeout=process.READY_TIMEOUT)
        self.killed.clear()
        self.paused.clear()
        self.toxic.clear()
        return self.now()

    def teardown(self) -> None:
        try:
            self.load.switch(f"{self.example}/teardown")
            since = self.repair_all()
            self.settle(since, list(CELLS), "teardown")
            t = self.now()
            for key in (*CELLS, SIDECAR):
                self.timeline.close(key, t)
            expected = 2 + len(CELLS)  # the relay (Envoy), the sidecar, each cell
            poll(lambda: control_status(self.target)["xds"]["clients"] >= expected,
                 timeout=RESYNC_S, interval=0.2, what="every xDS client to reconnect")
            self.load.stop()
            self.stopped = True
            if self.failed:  # the step's own failure is the one to report, not masked
                return
            self.judge("teardown")
            self.load.readback(scenario=f"{self.example}/readback")
            history = self.recorder.history
            for invariant in ("I-11", "I-6"):
                result = check(history, None, invariant)
                assert result.passed, (f"{invariant} over {self.example}: {result.detail} "
                                       f"{result.measured} (history: {self.history_path})")
        finally:
            if not self.stopped:
                self.load.stop()
            self.recorder.close()


def test_random_fault_schedules_keep_the_invariants(target: Target,
                                                    tmp_path: Path) -> None:
    FaultSchedule.target = target
    FaultSchedule.histories = tmp_path
    FaultSchedule.counter = FaultSchedule.steps_run = 0
    run_state_machine_as_test(FaultSchedule, settings=SETTINGS)
    assert FaultSchedule.steps_run >= SETTINGS.max_examples, "the schedules ran no faults"


def _op(f: str = "read", status: int | None = 503, authorized: bool = True,
        cell: str = "cell-1", t: tuple[float, float] = (5.0, 5.1), value: object = None) -> Op:
    return Op("s", f, "t1", cell, t[0], t[1], status, cell, authorized=authorized, value=value)


def test_the_step_judge_excuses_only_faults_on_the_ops_own_path() -> None:
    """The judge itself, on hand-made ops: a failure is excused only by a span on the
    op's cell or the sidecar that overlapped the op; never a 2xx without a decision."""
    tl = Timeline()
    assert violation(_op(), tl) is not None and "I-1/I-3" in str(violation(_op(), tl))
    tl.open("cell-2", 4.0)
    assert "I-5" in str(violation(_op(), tl))  # another cell's fault excuses nothing
    assert violation(_op(cell="cell-2"), tl) is None
    tl.close("cell-2", 4.5)
    assert violation(_op(cell="cell-2"), tl) is not None  # the span ended before the op
    assert violation(_op(cell="cell-2", t=(4.4, 4.6)), tl) is None  # in flight at repair
    tl.open(SIDECAR, 6.0)
    assert violation(_op(t=(5.9, 6.1)), tl) is None  # the sidecar is on every path
    assert violation(_op(status=200), tl) is None
    assert "I-6" in str(violation(_op("probe", 200, authorized=False), tl))
    assert "I-6" in str(violation(_op("read", 201, authorized=False), tl))
    misroute = _op("misroute", 200, authorized=False, value={"cell": "cell-2"})
    assert "I-6" in str(violation(misroute, tl))
    assert "421" in str(violation(_op("misroute", 404, False, value={"cell": "cell-2"}), tl))
    assert violation(_op("misroute", None, False, t=(4.2, 4.3), value={"cell": "cell-2"}),
                     tl) is None  # cell-2 was down then
