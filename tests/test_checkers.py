"""The checkers on synthetic histories: each passes a healthy run and fails the broken
variants the issue lists; missing evidence fails; property tests against oracles;
a history written by Recorder replays to the same results."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.checkers import stats
from conformance.checkers.base import CheckResult
from conformance.checkers.nothing_lost import key, set_check
from conformance.checkers.registry import CHECKERS, bounds_for, check
from conformance.history import (
    Event,
    FaultEvent,
    History,
    Meta,
    Observation,
    Op,
    Recorder,
    Window,
)
from policies.core.cells import CellTable

CONTROL, FAULT, RECOVERY = (0.0, 10.0), (10.0, 20.0), (20.0, 30.0)
STEP = 0.05  # one op per group every 50 ms: 200 per group per window


class Run:
    """Builds one scenario's events: windows, fault events, load ops, observations."""

    def __init__(self, scenario: str, seed: int = 1) -> None:
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.events: list[Event] = []

    def windows(self, fault: str = "fault:x") -> Run:
        for name, (a, b) in (("control", CONTROL), ("fault", FAULT), ("recovery", RECOVERY)):
            self.events.append(Window(self.scenario, name, a, b))
        self.events.append(FaultEvent(self.scenario, fault, "inject", FAULT[0]))
        self.events.append(FaultEvent(self.scenario, fault, "repair", FAULT[1]))
        return self

    def load(self, group: str = "g", start: float = CONTROL[0], end: float = RECOVERY[1],
             f: str = "read", cell: str = "cell-1", version: str = "v1",
             latency: Callable[[random.Random], float] | None = None, **fields: object) -> Run:
        lat = latency or (lambda r: r.lognormvariate(math.log(0.002), 0.3))
        t, i = start, 0
        while t < end:
            self.events.append(Op(self.scenario, f, f"{group}-t{i % 4}", group, t,
                                  t + lat(self.rng), 200, expected_cell=cell,
                                  observed_cell=cell, policy_version=version, **fields))
            t, i = round(t + STEP, 6), i + 1
        return self

    def op(self, **fields: object) -> Run:
        base = {"scenario": self.scenario, "f": "read", "tenant": "t", "group": "g",
                "invoke": 1.0, "complete": 1.002, "status": 200}
        self.events.append(Op(**{**base, **fields}))  # type: ignore[arg-type]
        return self

    def obs(self, name: str, value: object, t: float = RECOVERY[1]) -> Run:
        self.events.append(Observation(self.scenario, name, t, value))
        return self

    def edit(self, pick: Callable[[Op], bool], **changes: object) -> Run:
        """Replace fields of every op ``pick`` selects (the broken variant)."""
        self.events = [dataclasses.replace(e, **changes)  # type: ignore[arg-type]
                       if isinstance(e, Op) and pick(e) else e for e in self.events]
        return self

    def drop(self, pick: Callable[[Event], bool]) -> Run:
        self.events = [e for e in self.events if not pick(e)]
        return self

    @property
    def history(self) -> History:
        return History(list(self.events))


def in_window(span: tuple[float, float]) -> Callable[[Op], bool]:
    return lambda o: span[0] <= o.invoke < span[1]


# A tenant the healthy I-9 run's new cell takes: the routing check must see a move.
MOVER = next(t for t in (f"tenant-{i}" for i in range(1000))
             if CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024).add_cell("cell-4")
             .lookup(t) == "cell-4")


def healthy(inv: str, scenario: str | None = None) -> Run:
    """A run of ``inv``'s scenario in which the invariant holds."""
    r = Run(scenario or inv).windows()
    if inv == "I-1":
        r.load("a").load("b").obs("resync_s", 2.5)
    elif inv in ("I-2", "I-3"):
        r.load("a")
    elif inv == "I-4":
        r.load("a").obs("churn_updates", 50)
    elif inv == "I-5":
        r.load("bystander", cell="cell-1").load("victim", cell="cell-2")
        r.edit(lambda o: o.group == "victim" and FAULT[0] <= o.invoke < FAULT[1],
               status=None, error="connection refused", observed_cell=None)
        r.op(f="misroute", tenant="bystander-t0", group="bystander", status=421,
             expected_cell="cell-1", observed_cell="cell-2", invoke=15.0, complete=15.01)
    elif inv == "I-6":
        r.load("a").op(f="probe", authorized=False, status=401, invoke=12.0, complete=12.01)
    elif inv == "I-7":
        r.load("a")
        for t in range(0, 30):
            r.obs("sidecar_rss_bytes", 60_000_000 + 100_000 * t, t=t + 0.5)
            r.obs("decision_log_queue_bytes", 1000 * t, t=t + 0.5)
        r.obs("decision_log_max_bytes", 8 << 20)
    elif inv == "I-8":
        r.load("a").load("victim", version="v1").obs(
            "rejection_visible", {"fault": "fault:x", "visible": True, "where": "/status"})
        r.obs("xds_nacks", {"fault": "fault:x", "nacks": 2, "subscribers": 2})
        r.edit(lambda o: o.group == "victim" and in_window(FAULT)(o), status=503)
    elif inv == "I-9":
        before = CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024)
        after = before.add_cell("cell-4")
        r.obs("table_before", before.to_dict(), t=9.0).obs("table_after", after.to_dict(), t=11.0)
        r.obs("sample_tenants", [f"tenant-{i}" for i in range(400)])
        r.load("a").edit(lambda o: True, expected_cell=None, observed_cell=None)
        r.op(tenant=MOVER, group="a", invoke=14.0, complete=14.002,
             observed_cell=after.lookup(MOVER))
    elif inv == "I-10":
        r.load("bystander").load("victim").obs("propagation_s", 1.2).obs(
            "rollout", {"state": "rolled_back", "canary": "cell-2", "candidate": "v2"})
        r.edit(lambda o: o.group == "victim" and in_window(FAULT)(o), status=403,
               policy_version="v2")
    elif inv == "I-11":
        r.load("a", end=CONTROL[1])
        for i in range(6):
            r.op(f="write", tenant="t1", value=f"v{i}", invoke=1.0 + i, complete=1.1 + i)
        r.op(f="write", tenant="t1", value="v-lost-reply", status=None, error="timeout",
             invoke=8.0, complete=9.0)
        r.op(f="readback", tenant="t1", value=[f"v{i}" for i in range(6)] + ["v-lost-reply"],
             invoke=31.0, complete=31.1)
    return r


def run(r: Run, inv: str, **bounds: object) -> CheckResult:
    b = bounds_for(inv, bounds) if bounds else None
    return check(r.history, r.scenario, inv, b)


def assert_fails(res: CheckResult, *words: str) -> None:
    assert not res.passed, res
    for w in words:
        assert w in res.detail, (w, res.detail)


ALL = list(CHECKERS)


# -- every checker: a healthy run passes; results are serialisable ------------------

@pytest.mark.parametrize("inv", ALL)
def test_healthy_history_passes(inv: str) -> None:
    res = run(healthy(inv), inv)
    assert res.passed, res.detail
    assert res.invariant == inv and res.statistic and res.bounds and res.measured
    json.dumps([res.bounds, res.measured], allow_nan=False)
    yaml.safe_dump([res.bounds, res.measured])


@pytest.mark.parametrize("inv", [i for i in ALL if i != "I-6"])
def test_empty_scenario_fails_with_what_is_missing(inv: str) -> None:
    res = check(History([]), "nothing", inv)
    assert not res.passed and res.detail.startswith("missing evidence: ")
    json.dumps([res.bounds, res.measured])


@pytest.mark.parametrize("inv", [i for i in ALL if i != "I-11"])
def test_no_fault_window_fails(inv: str) -> None:
    r = healthy(inv).drop(lambda e: isinstance(e, Window) and e.name == "fault")
    if inv == "I-6":  # I-6 needs no windows: drop its evidence instead
        r.drop(lambda e: isinstance(e, Op) and not e.authorized)
    assert_fails(run(r, inv), "missing evidence")


@pytest.mark.parametrize("inv", ["I-1", "I-2", "I-3", "I-4", "I-5", "I-7", "I-8", "I-9",
                                 "I-10"])
def test_no_control_ops_fails(inv: str) -> None:
    r = healthy(inv).drop(lambda e: isinstance(e, Op) and in_window(CONTROL)(e))
    res = run(r, inv)
    assert_fails(res, "control window")


@pytest.mark.parametrize("inv", ["I-1", "I-2", "I-3", "I-4", "I-5", "I-7", "I-9", "I-10"])
def test_unhealthy_control_window_is_no_baseline(inv: str) -> None:
    r = healthy(inv).edit(lambda o: o.invoke == 1.0 and o.f == "read", status=500)
    assert_fails(run(r, inv), "control window unhealthy")


# -- I-1 control-plane outage --------------------------------------------------------

def test_i1_failed_op_in_fault_window_is_named() -> None:
    r = healthy("I-1").edit(lambda o: o.group == "b" and o.invoke == 12.0, status=503)
    res = run(r, "I-1")
    assert_fails(res, "1 failed load ops", "tenant b-t0 (group b) at 12.000s: status 503")
    assert res.measured["fault_recovery"]["b"]["failed"] == 1


def test_i1_no_response_counts_as_failure() -> None:
    r = healthy("I-1").edit(lambda o: o.invoke == 25.0, status=None, error="reset")
    assert_fails(run(r, "I-1"), "no response (reset)")


def test_i1_resync_above_bound_and_missing() -> None:
    r = healthy("I-1").obs("resync_s", 40.0, t=31.0)
    assert_fails(run(r, "I-1"), "re-synced 40.000s")
    r = healthy("I-1").drop(lambda e: isinstance(e, Observation))
    assert_fails(run(r, "I-1"), "'resync_s' not recorded")
    r = healthy("I-1").drop(lambda e: isinstance(e, Observation)).obs("resync_s", "soon")
    assert_fails(run(r, "I-1"), "must be a finite number")


def test_i1_group_silent_after_repair_never_converges() -> None:
    r = healthy("I-1").drop(lambda e: isinstance(e, Op) and e.group == "b"
                            and e.invoke >= FAULT[1])
    res = run(r, "I-1")
    assert_fails(res, "b (never)")
    assert res.measured["convergence_s"]["b"] is None
    assert res.measured["convergence_s"]["a"] == pytest.approx(0.2, abs=0.01)


def test_i1_no_repair_event_fails() -> None:
    r = healthy("I-1").drop(lambda e: isinstance(e, FaultEvent) and e.action == "repair")
    assert_fails(run(r, "I-1"), "no fault repair event")


# -- I-2 / I-3 / I-7 latency statistic -------------------------------------------------

@pytest.mark.parametrize("inv", ["I-2", "I-3", "I-7"])
def test_latency_shift_of_fault_window_fails(inv: str) -> None:
    r = healthy(inv).drop(lambda e: isinstance(e, Op) and in_window(FAULT)(e))
    r.load("a", start=FAULT[0], end=FAULT[1],
           latency=lambda g: g.lognormvariate(math.log(0.002), 0.3) + 0.004)
    res = run(r, inv)
    assert_fails(res, "latency shifted")
    assert res.measured["latency"]["cliffs_delta"] > 0.9


@pytest.mark.parametrize("inv", ["I-2", "I-3"])
def test_failed_ops_fail_latency_checks(inv: str) -> None:
    r = healthy(inv).edit(lambda o: o.invoke == 15.0, status=504)
    assert_fails(run(r, inv), "status 504")


def test_latency_too_few_samples_states_minimum() -> None:
    r = healthy("I-3").drop(lambda e: isinstance(e, Op) and 10.5 <= e.invoke < 20.0)
    assert_fails(run(r, "I-3"), "minimum 30 each")


def test_latency_p99_tail_alone_fails() -> None:
    r = healthy("I-2")
    r.events = [dataclasses.replace(e, complete=e.invoke + 0.5)
                if isinstance(e, Op) and 10.0 <= e.invoke < 10.2 else e for e in r.events]
    res = run(r, "I-2")
    assert_fails(res, "p99")
    assert "latency shifted" not in res.detail  # 4 slow ops of 200: no distribution shift


def test_mwu_flags_clear_shift_not_same_distribution() -> None:
    g = random.Random(7)
    a = [g.lognormvariate(math.log(0.002), 0.3) for _ in range(300)]
    b = [g.lognormvariate(math.log(0.002), 0.3) for _ in range(300)]
    same = stats.latency_shift(a, b, stats.LatencyBounds())
    assert same.passed and not same.shifted
    shifted = stats.latency_shift(a, [x * 1.5 for x in b], stats.LatencyBounds())
    assert shifted.shifted and not shifted.passed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0001, 1.0), min_size=30, max_size=80),
       st.lists(st.floats(0.0001, 1.0), min_size=30, max_size=80))
def test_mwu_is_symmetric(a: list[float], b: list[float]) -> None:
    bounds = stats.LatencyBounds()
    ab, ba = stats.latency_shift(a, b, bounds), stats.latency_shift(b, a, bounds)
    assert ab.measured["p_value"] == pytest.approx(ba.measured["p_value"], rel=1e-2)
    assert ab.measured["cliffs_delta"] == pytest.approx(-ba.measured["cliffs_delta"], abs=2e-3)
    assert ab.shifted == ba.shifted


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0001, 1.0), min_size=30, max_size=80))
def test_mwu_identical_samples_never_shift(a: list[float]) -> None:
    v = stats.latency_shift(a, list(a), stats.LatencyBounds())
    assert v.passed and v.measured["cliffs_delta"] == 0 and v.measured["p_value"] > 0.9


def test_percentile() -> None:
    assert stats.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert stats.percentile([1.0, 2.0], 100) == 2.0
    with pytest.raises(ValueError):
        stats.percentile([], 99)


# -- convergence ----------------------------------------------------------------------

def brute_convergence(ops: list[Op], since: float, n: int) -> float | None:
    after = sorted((o for o in ops if o.invoke >= since), key=lambda o: (o.invoke, o.complete))
    for i in range(len(after) - n + 1):
        if all(o.ok for o in after[i:i + n]):
            return after[i + n - 1].complete - since
    return None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 2), st.booleans()), max_size=40),
       st.floats(0, 50), st.integers(1, 6))
def test_convergence_matches_brute_force(spec: list, since: float, n: int) -> None:
    ops = [Op("s", "read", "t", "g", t, t + d, 200 if ok else 503) for t, d, ok in spec]
    assert stats.convergence_time(ops, since, n) == brute_convergence(ops, since, n)


# -- I-4 config churn -------------------------------------------------------------------

def test_i4_churn_that_did_not_run_fails() -> None:
    r = healthy("I-4").obs("churn_updates", 3, t=31.0)
    assert_fails(run(r, "I-4"), "only 3 churn updates")
    r = healthy("I-4").drop(lambda e: isinstance(e, Observation))
    assert_fails(run(r, "I-4"), "'churn_updates' not recorded")


def test_i4_p99_blowup_fails() -> None:
    r = healthy("I-4")
    r.events = [dataclasses.replace(e, complete=e.invoke + 0.05)
                if isinstance(e, Op) and 10.0 <= e.invoke < 10.3 else e for e in r.events]
    res = run(r, "I-4")
    assert_fails(res, "p99", "under churn")
    assert res.measured["latency"]["p99_ratio"] > 2


def test_i4_failed_op_fails() -> None:
    r = healthy("I-4").edit(lambda o: o.invoke == 18.0, status=503)
    assert_fails(run(r, "I-4"), "status 503")


# -- I-5 blast radius -----------------------------------------------------------------

def test_i5_bystander_errors_fail() -> None:
    r = healthy("I-5").edit(lambda o: o.group == "bystander" and o.invoke == 11.0, status=503)
    res = run(r, "I-5")
    assert_fails(res, "group bystander", "status 503")
    assert res.measured["bystander"]["bystander"]["failed"] == 1


def test_i5_misroute_answered_200_fails() -> None:
    r = healthy("I-5").edit(lambda o: o.f == "misroute", status=200)
    assert_fails(run(r, "I-5"), "misroute ops not answered 421", "status 200")


def test_i5_no_misroute_probe_is_missing_evidence() -> None:
    r = healthy("I-5").drop(lambda e: isinstance(e, Op) and e.f == "misroute")
    assert_fails(run(r, "I-5"), "0 answered misroute ops")


def test_i5_unanswered_misroute_refuses_nothing() -> None:
    r = healthy("I-5").op(f="misroute", tenant="bystander-t1", group="bystander", status=None,
                          error="connection refused", invoke=16.0, complete=16.5)
    res = run(r, "I-5")
    assert res.passed, res.detail
    assert res.measured["misroutes"] == {"ops": 2, "unanswered": 1, "not_421": 0}


def test_i5_cell_serving_foreign_tenant_fails() -> None:
    r = healthy("I-5").edit(lambda o: o.group == "victim" and o.invoke == 12.0, status=200,
                            observed_cell="cell-1")
    assert_fails(run(r, "I-5"), "answered by a cell other than", "cell cell-1")


def test_i5_victim_never_recovers_fails() -> None:
    r = healthy("I-5").edit(lambda o: o.group == "victim" and o.invoke >= FAULT[1],
                            status=503)
    assert_fails(run(r, "I-5"), "victim (never)")


# -- I-6 fail closed ------------------------------------------------------------------

def test_i6_runs_over_the_whole_history() -> None:
    h = History(healthy("I-6").events + healthy("I-1").events
                + Run("other").op(f="probe", tenant="x", authorized=False, status=200,
                                  invoke=5.0).events)
    for scenario in ("I-6", None):
        res = check(h, scenario, "I-6")
        assert_fails(res, "unauthorized ops answered 2xx (scenarios other)",
                     "probe tenant x (group g) at 5.000s: status 200")
        assert res.measured["by_scenario"]["other"] == {"unauthorized": 1, "succeeded": 1}
    assert check(h, None, "I-6").scenario == "*"


def test_i6_2xx_op_marked_unauthorized_fails() -> None:
    r = healthy("I-6").edit(lambda o: o.invoke == 14.0, authorized=False)
    assert_fails(run(r, "I-6"), "1 unauthorized ops answered 2xx")


def test_i6_no_unauthorized_op_is_missing_evidence() -> None:
    assert_fails(run(healthy("I-1"), "I-6"), "nothing shows that requests fail closed")


# -- I-7 telemetry ------------------------------------------------------------------------

def test_i7_rss_growth_fails() -> None:
    r = healthy("I-7").obs("sidecar_rss_bytes", 400_000_000, t=15.0)
    assert_fails(run(r, "I-7"), "sidecar RSS grew to 381.5 MiB")


def test_i7_queue_over_cap_fails() -> None:
    r = healthy("I-7").obs("decision_log_queue_bytes", 9 << 20, t=16.0)
    assert_fails(run(r, "I-7"), "1 decision-log queue samples above the cap")


def test_i7_missing_memory_evidence_fails() -> None:
    r = healthy("I-7").drop(lambda e: isinstance(e, Observation) and e.t < CONTROL[1])
    assert_fails(run(r, "I-7"), "no sidecar_rss_bytes sample in the control window")
    r = healthy("I-7").drop(lambda e: isinstance(e, Observation)
                            and e.name == "decision_log_max_bytes")
    assert_fails(run(r, "I-7"), "'decision_log_max_bytes' not recorded")


# -- I-8 bad config -------------------------------------------------------------------------

def test_i8_renacked_version_fails() -> None:
    r = healthy("I-8").drop(lambda e: isinstance(e, Observation) and e.name == "xds_nacks")
    r.obs("xds_nacks", {"fault": "fault:x", "nacks": 5, "subscribers": 1})
    assert_fails(run(r, "I-8"), "5 NACKs from 1 subscriber(s)", "sent again")


def test_i8_invisible_or_unrecorded_rejection_fails() -> None:
    r = healthy("I-8").drop(lambda e: isinstance(e, Observation)
                            and e.name == "rejection_visible")
    assert_fails(run(r, "I-8"), "no rejection_visible observation for fault(s) fault:x")
    r.obs("rejection_visible", {"fault": "fault:x", "visible": False, "where": "/status"})
    assert_fails(run(r, "I-8"), "rejection not visible for fault:x (looked in /status)")
    r.obs("rejection_visible", {"fault": "fault:x", "visible": "yes", "where": "/status"})
    assert_fails(run(r, "I-8"), "field 'visible' missing or of the wrong type")


def test_i8_new_version_served_in_fault_window_fails() -> None:
    r = healthy("I-8").edit(lambda o: o.group == "a" and o.invoke == 13.0,
                            policy_version="v-bad")
    assert_fails(run(r, "I-8"), "not served by the control version v1", "'v-bad': 1")


def test_i8_failures_outside_bad_group_fail() -> None:
    r = healthy("I-8").edit(lambda o: o.group == "a" and o.invoke == 13.0, status=500)
    assert_fails(run(r, "I-8"), "status 500")


# -- I-9 minimal movement -------------------------------------------------------------------

def _i9_with_after(after: CellTable) -> Run:
    r = healthy("I-9").drop(lambda e: isinstance(e, Observation) and e.name == "table_after")
    return r.obs("table_after", after.to_dict(), t=11.0)


def test_i9_moved_to_old_cell_fails() -> None:
    before = CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024)
    good = before.add_cell("cell-4")
    table = [good.cell_of_bucket(b) for b in range(1024)]
    for b in range(0, 40):  # cell-1's first buckets wander to cell-2
        table[b] = "cell-2"
    bad = CellTable(1024, good.cells, table)
    res = run(_i9_with_after(bad), "I-9")
    assert_fails(res, "40 buckets moved to a cell that was not added",
                 "bucket 0: cell-1 -> cell-2", "sampled tenants moved to a cell that was not")


def test_i9_too_many_moved_fails() -> None:
    before = CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024)
    res = run(_i9_with_after(CellTable.balanced(["cell-1", "cell-2", "cell-3", "cell-4"],
                                                1024)), "I-9")
    assert_fails(res, "buckets moved", "expected 0.2500")
    assert res.measured["moved_elsewhere_buckets"] > 0
    del before


def test_i9_imbalance_fails() -> None:
    before = CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024)
    good = before.add_cell("cell-4")
    table = [good.cell_of_bucket(b) for b in range(1024)]
    moved = [b for b in range(1024) if table[b] == "cell-4"]
    for b in moved[:100]:  # give back: cell-4 underfilled, fewer moved
        table[b] = before.cell_of_bucket(b)
    res = run(_i9_with_after(CellTable(1024, good.cells, table)), "I-9")
    assert_fails(res, "bucket imbalance")


def test_i9_stale_route_after_grace_fails() -> None:
    r = healthy("I-9")
    after = CellTable.balanced(["cell-1", "cell-2", "cell-3"], 1024).add_cell("cell-4")
    moved = next(f"tenant-{i}" for i in range(1000) if after.lookup(f"tenant-{i}") == "cell-4")
    for t in (12.0, 14.5, 17.0):  # in the grace, checked, after the check (repair is near)
        r.op(tenant=moved, group="a", invoke=t, complete=t + 0.01, observed_cell="cell-1")
    res = run(r, "I-9")
    assert_fails(res, "1 2xx ops answered by a cell other than the tenant's in the new table",
                 f"tenant {moved} (group a) at 14.500s")
    assert res.measured["routing_checked_2xx"] == 2  # and the healthy run's mover


def test_i9_without_a_moved_tenant_in_the_routing_check_fails() -> None:
    r = healthy("I-9").drop(lambda e: isinstance(e, Op) and e.tenant == MOVER)
    assert_fails(run(r, "I-9"), "no 2xx op of a moved tenant in the routing check")


def test_i9_bad_table_and_small_sample_fail() -> None:
    r = healthy("I-9").obs("table_after", {"buckets": 4, "cells": ["X"]}, t=12.0)
    assert_fails(run(r, "I-9"), "observation table_after: ")
    r = healthy("I-9").obs("sample_tenants", ["a", "b"], t=31.0)
    assert_fails(run(r, "I-9"), "2 sample tenants recorded (minimum 100)")


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.sampled_from([1000, 4096, 16384]))
def test_i9_add_cell_always_passes_table_checks(n: int, buckets: int) -> None:
    before = CellTable.balanced([f"c{i}" for i in range(n)], buckets)
    after = before.add_cell("new")
    r = healthy("I-9").drop(lambda e: isinstance(e, Observation) and e.name.startswith("t"))
    r.drop(lambda e: isinstance(e, Observation) and e.name == "sample_tenants")
    r.obs("table_before", before.to_dict(), t=9.0).obs("table_after", after.to_dict(), t=11.0)
    r.drop(lambda e: isinstance(e, Op) and e.observed_cell is not None)
    mover = next(t for t in (f"tenant-{i}" for i in range(100_000))
                 if before.lookup(t) != after.lookup(t))
    r.op(tenant=mover, group="a", invoke=14.0, complete=14.002, observed_cell=after.lookup(mover))
    res = run(r, "I-9")
    assert res.passed, res.detail
    assert res.measured["moved_buckets"] == buckets // (n + 1)


# -- I-10 propagation and rollout -----------------------------------------------------------

def test_i10_propagation_above_bound_fails() -> None:
    r = healthy("I-10").obs("propagation_s", 42.0, t=31.0)
    assert_fails(run(r, "I-10"), "42.000s to reach every sidecar")


def test_i10_rollout_not_rolled_back_fails() -> None:
    r = healthy("I-10").obs("rollout", {"state": "complete", "canary": "cell-2"}, t=31.0)
    assert_fails(run(r, "I-10"), "rollout ended 'complete', expected 'rolled_back'")


def test_i10_stable_group_hit_by_candidate_fails() -> None:
    r = healthy("I-10").edit(lambda o: o.group == "bystander" and o.invoke == 12.0,
                             status=403, policy_version="v2")
    r.edit(lambda o: o.group == "bystander" and o.invoke == 13.0, policy_version="v2")
    assert_fails(run(r, "I-10"), "status 403", "served by the candidate v2")


def test_i10_propagation_only_scenario_judges_every_group() -> None:
    r = Run("I-10/propagation").windows().load("cell-1").load("cell-2")
    r.obs("propagation_s", 0.8)
    assert run(r, "I-10").passed
    r.edit(lambda o: o.group == "cell-2" and o.invoke == 11.0, status=403)
    assert_fails(run(r, "I-10"), "group cell-2", "status 403")
    r = Run("I-10/x").windows().load("cell-1")
    assert_fails(run(r, "I-10"), "neither 'propagation_s' nor 'rollout' recorded")
    r.obs("rollout", {"state": "rolled_back", "canary": None})
    assert_fails(run(r, "I-10"), "0 load ops of group 'bystander'")


# -- I-11 nothing lost --------------------------------------------------------------------

def test_i11_lost_acknowledged_write_fails() -> None:
    r = healthy("I-11").edit(lambda o: o.f == "readback", value=["v0", "v1", "v2"])
    res = run(r, "I-11")
    assert_fails(res, "3 acknowledged writes lost", 'tenant t1 value "v3"')
    assert res.measured["lost"] == 3


def test_i11_unexpected_value_fails() -> None:
    r = healthy("I-11").edit(lambda o: o.f == "readback",
                             value=[f"v{i}" for i in range(6)] + ["ghost"])
    assert_fails(run(r, "I-11"), "1 unexpected values read back", '"ghost"')


def test_i11_indeterminate_may_be_present_or_absent() -> None:
    res = run(healthy("I-11"), "I-11")
    assert res.measured["recovered"] == 1 and res.measured["indeterminate"] == 1
    r = healthy("I-11").edit(lambda o: o.f == "readback", value=[f"v{i}" for i in range(6)])
    assert run(r, "I-11").passed


def test_i11_refused_write_present_fails() -> None:
    r = healthy("I-11").op(f="write", tenant="t1", value="sneaky", status=403,
                           authorized=False, invoke=9.5, complete=9.6)
    r.edit(lambda o: o.f == "readback", value=[f"v{i}" for i in range(6)] + ["sneaky"])
    assert_fails(run(r, "I-11"), "1 refused (4xx) writes present")


def test_i11_tenant_without_readback_fails() -> None:
    r = healthy("I-11").op(f="write", tenant="t2", value="w", invoke=2.0, complete=2.1)
    assert_fails(run(r, "I-11"), "1 tenants with writes have no 2xx readback: t2")
    r = healthy("I-11").edit(lambda o: o.f == "readback", value="not a list")
    assert_fails(run(r, "I-11"), "value must be the list")


def test_i11_whole_run_checks_every_scenario_against_the_final_readback() -> None:
    a = Run("A").op(f="write", tenant="t1", value="x", invoke=1.0, complete=1.1)
    b = Run("B").op(f="write", tenant="t1", value="y", invoke=2.0, complete=2.1)
    rb = Run("readback").op(f="readback", tenant="t1", value=["x"], invoke=9.0, complete=9.1)
    h = History(a.events + b.events + rb.events)
    res = check(h, None, "I-11")
    assert res.scenario == "*"
    assert_fails(res, "1 acknowledged writes lost", 'tenant t1 value "y"')
    assert check(History(a.events + rb.events), None, "I-11").passed
    assert_fails(check(h, "A", "I-11"), "no 2xx readback: t1")  # one scenario: its own


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.integers(0, 15),
                          st.sampled_from([200, 201, None, 500, 503, 403])), max_size=30),
       st.dictionaries(st.sampled_from(["t1", "t2", "t3"]),
                       st.lists(st.integers(0, 20), max_size=12), max_size=3))
def test_i11_set_checker_matches_model(writes: list, reads: dict) -> None:
    w_ops = [Op("s", "write", t, "g", float(i), i + 0.5, s, value=v)
             for i, (t, v, s) in enumerate(writes)]
    r_ops = [Op("s", "readback", t, "g", 100.0, 100.5, 200, value=vs)
             for t, vs in reads.items()]
    out = set_check(w_ops, r_ops)
    attempted = {(t, key(v)) for t, v, _ in writes}
    acked = {(t, key(v)) for t, v, s in writes if s in (200, 201)}
    read = {(t, key(v)) for t, vs in reads.items() for v in vs}
    read_tenants = set(reads)
    assert set(out.lost) == {p for p in acked - read if p[0] in read_tenants}
    assert set(out.unexpected) == read - attempted
    assert set(out.unread) == {t for t, _, _ in writes} - read_tenants
    refused = {(t, key(v)) for t, v, s in writes
               if all(s2 == 403 for t2, v2, s2 in writes if (t2, v2) == (t, v))}
    assert set(out.rejected_present) == read & refused


# -- registry ------------------------------------------------------------------------------

def test_registry_lists_every_invariant_with_frozen_documented_bounds() -> None:
    assert list(CHECKERS) == [f"I-{i}" for i in range(1, 12)]
    for inv, c in CHECKERS.items():
        b = c.bounds()
        assert dataclasses.is_dataclass(b) and c.bounds.__doc__ and c.statistic
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(b, dataclasses.fields(b)[0].name, 0)
        assert c.invariant == inv
    assert [c.invariant for c in CHECKERS.values() if c.whole_history] == ["I-6", "I-11"]


def test_bounds_overrides_and_errors() -> None:
    b = bounds_for("I-1", {"resync_s": 30, "convergence_ops": 3})
    assert b.resync_s == 30.0 and isinstance(b.resync_s, float) and b.convergence_ops == 3
    assert run(healthy("I-1").obs("resync_s", 20.0, t=31.0), "I-1", resync_s=30).passed
    with pytest.raises(ValueError, match=r"I-1\.nope: unknown bound"):
        bounds_for("I-1", {"nope": 1})
    with pytest.raises(ValueError, match=r"I-1\.convergence_ops: expected int"):
        bounds_for("I-1", {"convergence_ops": True})
    with pytest.raises(ValueError, match="unknown invariant 'I-12'"):
        check(History([]), "s", "I-12")
    with pytest.raises(TypeError, match=r"bounds must be control_outage\.Bounds"):
        check(History([]), "s", "I-1", bounds_for("I-2"))
    with pytest.raises(ValueError, match="name it"):
        check(History([]), None, "I-1")


def test_forged_event_fields_fail_without_traceback() -> None:
    r = healthy("I-1").op(status="200", invoke=3.0)
    assert_fails(run(r, "I-1"), "malformed op event", "status must be an integer")
    r = healthy("I-6").op(authorized="no", invoke=3.0)
    assert_fails(run(r, "I-6"), "authorized must be true or false")
    r = healthy("I-1").op(invoke=float("nan"))
    assert_fails(run(r, "I-1"), "invoke and complete must be finite")


# -- replay -----------------------------------------------------------------------------------

def test_recorded_history_replays_to_the_same_results(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    rec = Recorder(path)
    rec.record(Meta("run-1", 7, "quick", "a1", "0", "2025-01-01T00:00:00Z"))
    for inv in ALL:
        rec.extend(healthy(inv).events)
    broken = healthy("I-5", "I-5-broken").edit(lambda o: o.f == "misroute", status=200)
    rec.extend(broken.events)
    rec.close()
    live = rec.history
    loaded = History.load(path)
    assert loaded.events == live.events
    for inv in ALL:
        for scenario in (inv, "I-5-broken"):
            a, b = check(live, scenario, inv), check(loaded, scenario, inv)
            assert a == b
        assert check(loaded, inv, inv).passed, (inv, check(loaded, inv, inv).detail)
    assert not check(loaded, "I-5-broken", "I-5").passed
