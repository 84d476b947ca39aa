"""The rollout state machine (control.rollout) with a fake clock and synthetic counters.

Counters are fed the way the scraper feeds them: cumulative per sidecar (``source``),
with restarts that drop them to zero. docs/rollout.md is the contract.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from control.pipeline.state import Assignment
from control.rollout import (
    CounterTracker,
    Counts,
    RolloutController,
    RolloutError,
    Sample,
    State,
)
from control.rollout.controller import HISTORY
from control.spec.model import Rollout

CELLS = ("cell-1", "cell-2", "cell-3")
SOAK = 60
MIN = 100
BOUNDS = Rollout(canary_cell="cell-2", soak_seconds=SOAK, max_error_rate=0.01,
                 max_deny_rate=0.2, min_requests=MIN)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fleet:
    """Sidecars' cumulative counters: ``send`` counts decisions, ``restart`` zeroes one."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], Counts] = {}

    def send(self, cell: str, version: str, allow: int = 0, deny: int = 0, error: int = 0,
             source: str = "s1") -> None:  # fmt: skip
        k = (source, cell, version)
        self.counts[k] = self.counts.get(k, Counts()) + Counts(allow, deny, error)

    def zero(self, cell: str, version: str, source: str = "s1") -> None:
        self.counts.setdefault((source, cell, version), Counts())

    def restart(self, source: str = "s1") -> None:
        for k in list(self.counts):
            if k[0] == source:
                self.counts[k] = Counts()

    def samples(self) -> list[Sample]:
        return [Sample(s, c, v, n) for (s, c, v), n in self.counts.items()]


def make(settings_: Rollout = BOUNDS, cells: tuple[str, ...] = CELLS,
         registry: CollectorRegistry | None = None) -> tuple[RolloutController, Clock]:  # fmt: skip
    clock = Clock()
    return RolloutController(settings_, cells, registry=registry, clock=clock), clock


def start_canary(ctl: RolloutController, fleet: Fleet) -> None:
    ctl.propose("A")
    ctl.propose("B")
    for c in CELLS:  # the scraper's zero samples: assigned, nothing decided yet
        fleet.zero(c, "A")
        fleet.zero(c, "B")
    assert ctl.observe(fleet.samples()) is None


def metric(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


# -- the happy path --------------------------------------------------------------------


def test_first_version_goes_everywhere_at_once() -> None:
    ctl, _ = make()
    assert ctl.assignment() is None
    assert ctl.status()["message"] == "idle: no policy"
    a = ctl.propose("A")
    assert a == Assignment("A") and ctl.state is State.IDLE
    st = ctl.status()
    assert st["stable"] == "A" and st["candidate"] is None
    assert st["cells"] == dict.fromkeys(CELLS, "A")
    assert ctl.propose("A") == Assignment("A")  # the same version again: nothing happens


def test_canary_soak_then_cell_by_cell_then_complete() -> None:
    reg = CollectorRegistry()
    ctl, clock = make(registry=reg)
    fleet = Fleet()
    start_canary(ctl, fleet)
    assert ctl.state is State.CANARY
    assert ctl.assignment() == Assignment("A", {"cell-2": "B"})  # the canary first
    assert ctl.status()["order"] == ["cell-2", "cell-1", "cell-3"]
    assert metric(reg, "a1_rollout_state", state="canary") == 1
    assert metric(reg, "a1_rollout_state", state="idle") == 0

    fleet.send("cell-2", "B", allow=150, deny=10)
    assert ctl.observe(fleet.samples()) is None  # enough traffic, not enough time
    clock.now += SOAK - 1
    assert ctl.tick() is None
    clock.now += 1
    a = ctl.tick()
    assert a == Assignment("A", {"cell-2": "B", "cell-1": "B"}) and ctl.state is State.PROMOTING
    assert ctl.tick() is None  # the new step has its own window: no traffic yet

    fleet.send("cell-1", "B", allow=100)
    clock.now += SOAK
    assert ctl.observe(fleet.samples()) == Assignment("A", dict.fromkeys(CELLS, "B"))
    st = ctl.status()
    assert st["step"] == 3 and st["soak"]["cell"] == "cell-3"
    assert st["observed"]["cell-2"]["passed"] and st["observed"]["cell-1"]["passed"]

    fleet.send("cell-3", "B", allow=MIN)
    clock.now += SOAK
    assert ctl.observe(fleet.samples()) == Assignment("B")
    assert ctl.state is State.IDLE
    st = ctl.status()
    assert st["stable"] == "B" and st["candidate"] is None and st["observed"] == {}
    assert [h["to"] for h in st["history"]] == [
        "idle", "canary", "promoting", "promoting", "complete", "idle"]
    assert metric(reg, "a1_rollout_transitions_total", to="complete") == 1
    assert metric(reg, "a1_rollout_transitions_total", to="promoting") == 2
    assert metric(reg, "a1_rollout_state", state="idle") == 1
    assert metric(reg, "a1_rollout_breaches_total") == 0
    json.dumps(st)


def test_waiting_for_traffic_keeps_soaking() -> None:
    ctl, clock = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=MIN - 1)
    clock.now += 10 * SOAK
    assert ctl.observe(fleet.samples()) is None and ctl.tick() is None
    st = ctl.status()
    assert st["state"] == "canary"
    assert st["soak"] == {
        "cell": "cell-2", "elapsed_s": 10 * SOAK, "remaining_s": 0, "requests": MIN - 1,
        "min_requests": MIN, "waiting_for_traffic": True,
    }  # fmt: skip
    assert st["message"].endswith("waiting for traffic")
    assert not st["observed"]["cell-2"]["judged"]
    fleet.send("cell-2", "B", allow=1)
    assert ctl.observe(fleet.samples()) == Assignment("A", {"cell-2": "B", "cell-1": "B"})


def test_min_requests_gates_the_judgement_too() -> None:
    ctl, _ = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", error=MIN - 1)  # every request failed, but too few to judge
    assert ctl.observe(fleet.samples()) is None and ctl.state is State.CANARY
    fleet.send("cell-2", "B", allow=1)
    assert ctl.observe(fleet.samples()) == Assignment("A")
    assert ctl.state is State.ROLLED_BACK


# -- breaches --------------------------------------------------------------------------


def test_error_breach_rolls_back_at_once_and_the_candidate_stays_out() -> None:
    reg = CollectorRegistry()
    ctl, _ = make(registry=reg)
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=98, error=2)  # 2 % > 1 %
    assert ctl.observe(fleet.samples()) == Assignment("A")
    st = ctl.status()
    assert st["state"] == "rolled_back" and st["rejected_version"] == "B"
    assert st["last_breach"] == "error rate 0.0200 > 0.01 on cell cell-2 (2 of 100 requests)"
    assert st["message"] == "rolled back: " + st["last_breach"]
    assert metric(reg, "a1_rollout_breaches_total") == 1
    assert metric(reg, "a1_rollout_state", state="rolled_back") == 1

    assert ctl.propose("B") == Assignment("A")  # the spec still says B: refused
    assert ctl.state is State.ROLLED_BACK
    assert "B was rolled back" in ctl.status()["last_refused"]
    assert ctl.propose("C") == Assignment("A", {"cell-2": "C"})  # a new candidate
    assert ctl.status()["rejected_version"] is None and ctl.status()["last_refused"] is None


def test_deny_breach_on_an_already_promoted_cell() -> None:
    ctl, clock = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=MIN)
    clock.now += SOAK
    assert ctl.observe(fleet.samples()) is not None  # cell-1 soaking now
    fleet.send("cell-2", "B", deny=MIN)  # the canary's window: 100 allow, 100 deny = 50 %
    assert ctl.observe(fleet.samples()) == Assignment("A")
    assert ctl.status()["last_breach"].startswith("deny rate 0.5000 > 0.2 on cell cell-2")


def test_the_window_starts_at_the_soak() -> None:
    """Errors of the candidate before its soak on a cell (an earlier attempt) do not count."""
    ctl, clock = make()
    fleet = Fleet()
    ctl.propose("A")
    ctl.propose("B")
    fleet.send("cell-2", "B", error=MIN)  # a first scrape: baseline, counts for no window
    assert ctl.observe(fleet.samples()) is None and ctl.state is State.CANARY
    fleet.send("cell-2", "B", allow=MIN)
    clock.now += SOAK
    assert ctl.observe(fleet.samples()) is not None and ctl.state is State.PROMOTING


def test_counter_resets_are_counted_like_prometheus() -> None:
    ctl, _ = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=60, error=0)
    ctl.observe(fleet.samples())
    fleet.restart()  # the sidecar restarted: its counters start again
    fleet.send("cell-2", "B", allow=39, error=1)
    assert ctl.observe(fleet.samples()) is None  # 1 of 100: at the bound, not over
    obs = ctl.status()["observed"]["cell-2"]
    assert (obs["requests"], obs["error"], obs["judged"]) == (100, 1, True)
    assert ctl.status()["counter_resets"] >= 1
    fleet.send("cell-2", "B", error=1)
    assert ctl.observe(fleet.samples()) == Assignment("A")  # 2 of 101 > 1 %


def test_one_result_going_down_is_a_reset_of_all_three() -> None:
    t = CounterTracker()
    t.track(["B"])
    t.add([Sample("s", "c", "B", Counts(100, 0, 3))])
    # restarted, and already 3 errors again: the error counter alone did not go down
    t.add([Sample("s", "c", "B", Counts(5, 0, 3))])
    assert t.total("c", "B") == Counts(5, 0, 3)


def test_sidecars_add_up_and_a_vanished_one_keeps_its_counts() -> None:
    t = CounterTracker()
    t.track(["B"])
    t.add([Sample("s1", "c", "B", Counts()), Sample("s2", "c", "B", Counts())])
    t.add([Sample("s1", "c", "B", Counts(10)), Sample("s2", "c", "B", Counts(5))])
    t.add([Sample("s1", "c", "B", Counts(12))])  # s2 gone
    assert t.total("c", "B") == Counts(17)
    t.add([Sample("s1", "c", "A", Counts(50))])  # an untracked version: ignored
    assert t.total("c", "A") == Counts()


def test_forged_values_are_ignored() -> None:
    t = CounterTracker()
    t.track(["B"])
    t.add([Sample("s", "c", "B", Counts())])
    for bad in (Counts(-1), Counts(math.nan), Counts(0, math.inf)):
        t.add([Sample("s", "c", "B", bad)])
    assert t.total("c", "B") == Counts() and t.ignored == 3


def test_tracker_memory_is_bounded() -> None:
    t = CounterTracker(max_series=10)
    t.track(["B"])
    t.add(Sample(f"s{i}", "c", "B", Counts()) for i in range(100))
    assert len(t._last) == 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.booleans(), st.booleans()), max_size=40))
def test_tracker_never_overcounts_and_is_exact_without_restarts(
    steps: list[tuple[int, bool, bool]],
) -> None:
    """Per step: n new decisions, maybe a restart first, maybe a scrape after. Totals
    are monotonic, never above the decisions made after the first scrape, and equal
    to them when no restart happened."""
    t = CounterTracker()
    t.track(["B"])
    value, true, scraped, restarted, last = 0, 0, False, False, 0.0
    for n, restart, scrape in steps:
        if restart:
            value, restarted = 0, True
        value += n
        if scraped:
            true += n
        if scrape:
            t.add([Sample("s", "c", "B", Counts(value))])
            if not scraped:
                scraped, true = True, 0
            got = t.total("c", "B").total
            assert last <= got <= true
            assert restarted or got == true
            last = got


# -- the candidate changes -------------------------------------------------------------


def test_a_new_candidate_restarts_at_the_canary() -> None:
    ctl, clock = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=MIN)
    clock.now += SOAK
    ctl.observe(fleet.samples())
    assert ctl.state is State.PROMOTING
    assert ctl.propose("C") == Assignment("A", {"cell-2": "C"})
    st = ctl.status()
    assert (st["state"], st["stable"], st["candidate"], st["step"]) == ("canary", "A", "C", 1)
    assert ctl.propose("C") == Assignment("A", {"cell-2": "C"})  # again: nothing changes


def test_proposing_the_stable_version_withdraws_the_candidate() -> None:
    ctl, _ = make()
    start_canary(ctl, Fleet())
    assert ctl.propose("A") == Assignment("A")
    st = ctl.status()
    assert st["state"] == "idle" and st["rejected_version"] is None
    assert ctl.propose("B") == Assignment("A", {"cell-2": "B"})  # not refused


def test_bad_versions_are_refused() -> None:
    ctl, _ = make()
    for bad in ("", "x" * 200, "a\nb", None):
        with pytest.raises(ValueError, match="bad policy version"):
            ctl.propose(bad)  # type: ignore[arg-type]


# -- operator actions ------------------------------------------------------------------


def test_promote_and_abort_refuse_when_nothing_rolls_out() -> None:
    ctl, _ = make()
    for action in (ctl.promote, ctl.abort):
        with pytest.raises(RolloutError, match=r"no rollout in progress \(state idle, stable "
                                               r"version none\)"):  # fmt: skip
            action()
    ctl.propose("A")
    with pytest.raises(RolloutError, match="stable version A"):
        ctl.promote()
    ctl.propose("B")
    ctl.abort()
    for action in (ctl.promote, ctl.abort):
        with pytest.raises(RolloutError, match="state aborted"):
            action()


def test_promote_skips_the_soak_and_completes_at_the_end() -> None:
    ctl, _ = make()
    start_canary(ctl, Fleet())
    assert ctl.promote() == Assignment("A", {"cell-2": "B", "cell-1": "B"})
    assert ctl.promote() == Assignment("A", dict.fromkeys(CELLS, "B"))
    assert ctl.promote() == Assignment("B")
    assert ctl.state is State.IDLE
    assert ctl.status()["history"][-3]["reason"] == "operator promote: promoted to cell-3"


def test_abort_is_a_manual_rollback() -> None:
    reg = CollectorRegistry()
    ctl, _ = make(registry=reg)
    start_canary(ctl, Fleet())
    ctl.promote()
    assert ctl.abort() == Assignment("A")
    st = ctl.status()
    assert st["state"] == "aborted" and st["rejected_version"] == "B"
    assert st["last_breach"] is None and st["message"] == "aborted: operator abort"
    assert metric(reg, "a1_rollout_breaches_total") == 0
    assert metric(reg, "a1_rollout_transitions_total", to="aborted") == 1
    assert ctl.propose("B") == Assignment("A")  # refused like a breach


# -- cells and settings change ---------------------------------------------------------


def test_the_canary_cell_removed_mid_soak_moves_the_canary() -> None:
    ctl, _ = make()
    start_canary(ctl, Fleet())
    assert ctl.configure(cells=("cell-1", "cell-3")) == Assignment("A", {"cell-1": "B"})
    assert ctl.state is State.CANARY
    assert ctl.configure(cells=("cell-1", "cell-3", "cell-4")) is None  # new: stable until later
    assert ctl.status()["cells"] == {"cell-1": "B", "cell-3": "A", "cell-4": "A"}
    assert ctl.configure(cells=()) == Assignment("B")  # nowhere to soak: complete
    assert ctl.state is State.IDLE


def test_no_cells_means_no_soak() -> None:
    ctl, _ = make(cells=())
    ctl.propose("A")
    assert ctl.propose("B") == Assignment("B") and ctl.state is State.IDLE


def test_unknown_canary_cell_uses_the_first() -> None:
    ctl, _ = make(Rollout("nope", SOAK, 0.01, 0.2, MIN))
    ctl.propose("A")
    assert ctl.propose("B") == Assignment("A", {"cell-1": "B"})


def test_new_settings_apply_to_the_running_soak() -> None:
    ctl, clock = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", allow=10)
    ctl.observe(fleet.samples())
    clock.now += 5
    assert ctl.configure(Rollout("cell-2", 5, 0.01, 0.2, 10)) is not None
    assert ctl.state is State.PROMOTING


def test_history_is_bounded() -> None:
    ctl, _ = make()
    ctl.propose("A")
    for i in range(HISTORY):
        ctl.propose(f"v{i}")
    h = ctl.status()["history"]
    assert len(h) == HISTORY and h[-1]["version"] == f"v{HISTORY - 1}"


# -- properties ------------------------------------------------------------------------

VERSIONS = ("A", "B", "C", "D")
PROP = Rollout(canary_cell="cell-2", soak_seconds=SOAK, max_error_rate=0.03, max_deny_rate=0.25,
               min_requests=20)  # fmt: skip
SOURCES = ("s1", "s2")

traffic = st.tuples(st.just("traffic"), st.sampled_from(SOURCES), st.sampled_from(CELLS),
                    st.integers(0, 30), st.integers(0, 10), st.integers(0, 2))  # fmt: skip
op = st.one_of(
    st.tuples(st.just("propose"), st.sampled_from(VERSIONS)),
    traffic, traffic, traffic,
    st.tuples(st.just("restart"), st.sampled_from(SOURCES)),
    st.tuples(st.just("tick"), st.integers(0, 2 * SOAK)),
    st.tuples(st.just("promote")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("cells"), st.lists(st.sampled_from(CELLS), unique=True)),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=60))
def test_any_sequence_keeps_the_invariants(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Assignments name only proposed versions and existing cells; a rolled-back
    candidate stays out until a different candidate was taken; after every observe
    no judged cell of a running rollout is over a bound (a breach rolled back)."""
    ctl, clock = make(PROP)
    fleet = Fleet()
    cells: tuple[str, ...] = CELLS
    proposed: set[str] = set()
    banned: str | None = None

    def check(a: Assignment | None) -> None:
        cur = ctl.assignment()
        for x in (a, cur):
            if x is None:
                continue
            assert x.versions() <= proposed
            assert set(x.cells) <= set(cells)
            assert banned is None or banned not in x.versions()
        st_ = ctl.status()
        if st_["state"] in ("canary", "promoting"):
            for obs in st_["observed"].values():
                if obs["judged"]:
                    assert obs["error_rate"] <= PROP.max_error_rate
                    assert obs["deny_rate"] <= PROP.max_deny_rate
        json.dumps(st_)

    for o in [("propose", "A"), ("propose", "B"), *ops]:  # start in a rollout
        kind = o[0]
        a: Assignment | None = None
        before = ctl.status()
        if kind == "propose":
            proposed.add(o[1])
            a = ctl.propose(o[1])
            if o[1] not in (banned, before["stable"], before["candidate"]):
                banned = None  # a different candidate arrived: the refusal ends
        elif kind == "traffic":
            _, src, cell, allow, deny, error = o
            cur = ctl.assignment()
            if cur is not None:  # what a scrape sees first: the assigned pairs, maybe at zero
                for s_ in SOURCES:
                    for c in cells:
                        fleet.zero(c, cur.version_of(c), source=s_)
                check(ctl.observe(fleet.samples()))
                fleet.send(cell, cur.version_of(cell), allow, deny, error, source=src)
            a = ctl.observe(fleet.samples())
        elif kind == "restart":
            fleet.restart(o[1])
        elif kind == "tick":
            clock.now += o[1]
            a = ctl.tick()
        elif kind in ("promote", "abort"):
            rolling = before["state"] in ("canary", "promoting")
            try:
                a = getattr(ctl, kind)()
                assert rolling
            except RolloutError:
                assert not rolling
        else:
            cells = tuple(o[1])
            a = ctl.configure(cells=cells)
        after = ctl.status()
        if after["state"] in ("rolled_back", "aborted") and before["candidate"] is not None \
                and after["candidate"] is None and after["stable"] == before["stable"]:
            banned = before["candidate"]
        check(a)
        event(f"state {after['state']}")


# -- restart ---------------------------------------------------------------------------


def test_a_restart_keeps_the_stable_version_and_the_refusal() -> None:
    ctl, _ = make()
    fleet = Fleet()
    start_canary(ctl, fleet)
    fleet.send("cell-2", "B", error=MIN)
    ctl.observe(fleet.samples())
    saved = json.loads(json.dumps(ctl.export()))
    assert saved["stable"] == "A" and saved["rejected"] == "B"

    again, _ = make()
    assert again.restore(saved) == Assignment("A")
    assert again.propose("B") == Assignment("A")  # the spec still names B: still refused
    assert "B was rolled back (error rate" in again.status()["last_refused"]


def test_a_restart_mid_rollout_soaks_again_from_the_canary() -> None:
    ctl, _ = make()
    start_canary(ctl, Fleet())
    ctl.promote()
    again, _ = make()
    assert again.restore(ctl.export()) == Assignment("A", {"cell-2": "B"})
    assert again.state is State.CANARY
    assert again.propose("B") == Assignment("A", {"cell-2": "B"})


@pytest.mark.parametrize(("data", "error"), [
    ([], "expected an object"),
    ({"stable": 5}, "stable: expected a string or null"),
    ({"stable": "a\nb"}, "stable: bad version"),
    ({"stable": "A", "candidate": ""}, "candidate: bad version"),
])  # fmt: skip
def test_a_bad_saved_state_is_refused(data: object, error: str) -> None:
    ctl, _ = make()
    with pytest.raises(ValueError, match=error):
        ctl.restore(data)
    assert ctl.assignment() is None


def test_restore_comes_first() -> None:
    ctl, _ = make()
    ctl.propose("A")
    with pytest.raises(ValueError, match="before the first version"):
        ctl.restore({"stable": "B"})
    assert make()[0].restore({}) is None
