"""The load generator and its operations, against real cells, a real stack and a stalled socket.

- cells alone (in-process ``a1.cell`` servers on free ports): writes acknowledged and
  read back, past the cell's 1000-item page; misroutes get 421;
- a real stack (control plane, Envoy, sidecar, cells): reads and writes through the
  edge carry the cell and the policy version that decided them; every probe is
  refused; ``authorized`` and ``scenario`` switch at run time;
- an open loop keeps its schedule (op i intended at start + i/rate) and, against a
  socket that accepts and never answers, records every op it could not send as
  failed with "overload: not sent", none skipped;
- a seed reproduces the plan; the token cache is bounded in bytes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from a1.cell import MAX_LIST, CellServer, Store, TableWatcher
from a1.stack import Stack
from conformance.harness.stacks import make_stack, tenants_by_cell
from conformance.history import History, Op, Recorder
from conformance.load import (
    OVERLOAD,
    PROBE_KINDS,
    Load,
    Mix,
    OpClient,
    Planner,
    Schedule,
    TokenCache,
    groups_for,
    unexpected,
)
from conformance.load import client as client_module
from policies.core.cells import CellTable
from tests.waiting import wait_until

CELLS = ["cell-1", "cell-2"]


def run_clock() -> Callable[[], float]:
    t0 = time.monotonic()
    return lambda: time.monotonic() - t0


def no_token(tenant: str, roles: Any) -> str:
    return f"token-for-{tenant}"


# -- real cells, started alone -----------------------------------------------------------


class Cells:
    """Two in-process cells sharing one table (each with its own database)."""

    def __init__(self, tmp: Path) -> None:
        self.table = CellTable.balanced(CELLS)
        self.table.save(tmp / "cells.yaml")
        self.servers: dict[str, CellServer] = {}
        self.threads = []
        for name in CELLS:
            server = CellServer(("127.0.0.1", 0), name, Store(tmp / f"{name}.db"),
                                TableWatcher(tmp / "cells.yaml"))
            self.servers[name] = server
            t = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
            t.start()
            self.threads.append(t)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.servers[name].server_address[1]}"

    def tenants(self, cell: str, count: int) -> list[str]:
        return [t for t in (f"tenant-{i}" for i in range(10_000))
                if self.table.lookup(t) == cell][:count]

    def close(self) -> None:
        for s in self.servers.values():
            s.shutdown()
            s.server_close()
            s.store.close()


@pytest.fixture
def cells(tmp_path: Path) -> Iterator[Cells]:
    c = Cells(tmp_path)
    yield c
    c.close()


def cell_client(cells: Cells, edge: str = "cell-1", **kw: Any) -> OpClient:
    """Ops whose "edge" is cell-1 itself (no auth in front: cells do not check tokens)."""
    return OpClient(cells.url(edge), no_token, run_clock(),
                    cell_urls={n: cells.url(n) for n in CELLS}, **kw)


def test_closed_loop_writes_are_acknowledged_and_read_back(cells: Cells) -> None:
    tenants = cells.tenants("cell-1", 3)
    rec = Recorder()
    ops = cell_client(cells)
    load = Load(ops, rec, {"g": dict.fromkeys(tenants, "cell-1")},
                schedule=Schedule.closed(3), mix=Mix(read=1, write=1, probe=0), seed=1,
                scenario="one")
    with load:
        wait_until(lambda: sum(s.total for s in load.stats().values()) >= 60, "60 ops")
        load.switch("two")
        wait_until(lambda: sum(s.total for s in load.stats().values()) >= 120, "120 ops")
    history = rec.history
    writes = history.ops(f="write")
    assert writes and all(w.status == 201 and w.observed_cell == "cell-1" for w in writes)
    assert {o.scenario for o in history.ops()} == {"one", "two"}
    assert len({w.value for w in writes}) == len(writes)  # every value unique in the run
    backs = load.readback()
    assert sorted(b.tenant for b in backs) == sorted(tenants)
    assert all(b.f == "readback" and b.status == 200 and b.group == "g" for b in backs)
    found = {v for b in backs for v in b.value}
    assert found == {w.value for w in writes}
    assert history.ops(f="readback") == backs  # recorded too
    assert all(o.invoke <= o.complete for o in history.ops())


def test_readback_pages_past_the_cells_list_limit(cells: Cells) -> None:
    tenant = cells.tenants("cell-1", 1)[0]
    ops = cell_client(cells, run_id="run1")
    store = cells.servers["cell-1"].store
    written = [f"run1-{i}" for i in range(2 * MAX_LIST + 7)]
    for i, v in enumerate(written):
        store.add(tenant, {"v": v}, "load")
        if i % 500 == 0:  # items of other runs and other shapes are not this run's values
            store.add(tenant, {"v": f"run0-{i}"}, "load")
            store.add(tenant, [i], "load")
    op = ops.readback("s", tenant, "g", "cell-1")
    assert op.status == 200 and op.error is None
    assert op.value == written  # oldest first, none missed, none twice


def test_readback_of_a_broken_listing_has_no_value(cells: Cells, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = cells.tenants("cell-1", 1)[0]
    ops = cell_client(cells)
    op = ops.readback("s", cells.tenants("cell-2", 1)[0], "g", "cell-2")  # cell-1 answers 421
    assert op.status == 421 and op.value is None and "HTTP 421" in (op.error or "")
    store = cells.servers["cell-1"].store
    for _ in range(3):
        store.add(tenant, {"v": ops.new_value()}, "load")
    monkeypatch.setattr(client_module, "MAX_LIST", 1)
    monkeypatch.setattr(client_module, "MAX_PAGES", 2)  # a listing that never ends
    op = ops.readback("s", tenant, "g", "cell-1")
    assert op.value is None and "more than 2 pages" in (op.error or "")


def test_misroutes_get_421_from_the_cell_that_does_not_own_the_tenant(cells: Cells) -> None:
    rec = Recorder()
    groups = {"a": dict.fromkeys(cells.tenants("cell-1", 2), "cell-1"),
              "b": dict.fromkeys(cells.tenants("cell-2", 2), "cell-2")}
    load = Load(cell_client(cells), rec, groups, schedule=Schedule.closed(2),
                mix=Mix(read=0, write=0, probe=0, misroute=1), seed=3)
    with load:
        wait_until(lambda: len(rec.history.ops()) >= 20, "20 misroutes")
    ops = rec.history.ops()
    assert {o.f for o in ops} == {"misroute"}
    for o in ops:
        assert o.status == 421 and not o.authorized and not unexpected(o)
        assert o.observed_cell == o.value["cell"] != o.expected_cell
    assert {o.group for o in ops} == {"a", "b"}


def test_a_misroute_needs_another_cell() -> None:
    with pytest.raises(ValueError, match="misroute needs"):
        Planner({"g": {"t": "cell-1"}}, Mix(misroute=1), 0, ["cell-1"])
    with pytest.raises(ValueError, match="misroute: no URL"):
        OpClient("http://127.0.0.1:1", no_token, run_clock()).misroute("s", "t", "g", "cell-9")


# -- the open loop -----------------------------------------------------------------------


def intended_times_are_contiguous(ops: list[Op], rate: float) -> None:
    """Op i was intended at start + i/rate, for every i: none skipped, none doubled."""
    invokes = sorted(o.invoke for o in ops)
    start = invokes[0]
    assert [round((t - start) * rate) for t in invokes] == list(range(len(invokes)))
    assert all(abs((t - start) * rate - round((t - start) * rate)) < 1e-6 for t in invokes)


def test_open_loop_keeps_its_schedule(cells: Cells) -> None:
    rec = Recorder()
    rate = 80.0
    load = Load(cell_client(cells), rec, {"g": dict.fromkeys(cells.tenants("cell-1", 2),
                                                             "cell-1")},
                schedule=Schedule.open(rate, max_in_flight=8, slack=5.0),
                mix=Mix(read=3, write=1, probe=0), seed=2)
    clock = load.client.clock
    with load:
        t0 = clock()
        wait_until(lambda: len(rec.history.ops()) >= 60, "60 ops")
        elapsed = clock() - t0
    ops = rec.history.ops()
    intended_times_are_contiguous(ops, rate)
    assert all(o.ok for o in ops)
    # Roughly its rate: no more ops were sent than had come due (the schedule, not speed).
    assert len(ops) <= rate * (elapsed + 1.0) + 1


class Stall:
    """A socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_open_loop_records_ops_it_cannot_send_as_overload() -> None:
    stall = Stall()
    try:
        rec = Recorder()
        rate = 50.0
        ops = OpClient(f"http://127.0.0.1:{stall.port}", no_token, run_clock(), timeout=0.5)
        load = Load(ops, rec, {"g": {"tenant-1": "cell-1", "tenant-2": "cell-1"}},
                    schedule=Schedule.open(rate, max_in_flight=2, slack=0.05),
                    mix=Mix(read=1, write=1, probe=1), seed=4)
        with load:
            wait_until(lambda: len(rec.history.ops()) >= 40, "40 ops recorded")
        history = rec.history.ops()
        intended_times_are_contiguous(history, rate)  # none silently skipped
        overload = [o for o in history if o.error == OVERLOAD]
        timed_out = [o for o in history if o.error != OVERLOAD]
        assert overload and timed_out
        assert all(o.status is None and o.error for o in history)
        assert all("timed out" in (o.error or "") for o in timed_out)
        # Latency counts from the intended time: each timed-out op took at least the timeout.
        assert all(o.latency >= 0.5 for o in timed_out)
        assert {o.authorized for o in overload if o.f == "probe"} <= {False}
        stats = load.stats()["g"]
        assert stats.total == len(history) and stats.total_errors == len(history)
    finally:
        stall.close()


# -- plans, mixes, tokens ----------------------------------------------------------------

GROUPS = {"victim": {"t-1": "cell-1", "t-2": "cell-1"},
          "bystander": {"t-3": "cell-2", "t-4": "cell-2", "t-5": "cell-3"}}


def test_a_seed_reproduces_the_plan() -> None:
    mix = Mix(read=5, write=3, probe=1, misroute=1)
    cellnames = ["cell-1", "cell-2", "cell-3"]
    a = Planner(GROUPS, mix, 42, cellnames).plan(500)
    b = Planner({g: dict(reversed(t.items())) for g, t in reversed(GROUPS.items())}, mix, 42,
                list(reversed(cellnames))).plan(500)
    assert a == b  # same seed, same plan, whatever order the mappings were built in
    assert a != Planner(GROUPS, mix, 43, cellnames).plan(500)
    assert [p.n for p in a] == list(range(500))
    assert Counter(p.group for p in a) == {"victim": 250, "bystander": 250}
    for p in a:
        assert p.tenant in GROUPS[p.group] and p.expected_cell == GROUPS[p.group][p.tenant]
        if p.f == "probe":
            assert p.detail in PROBE_KINDS and p.other != p.tenant
        if p.f == "misroute":
            assert p.detail in cellnames and p.detail != p.expected_cell


def test_the_mix_sets_the_ratios() -> None:
    plan = Planner(GROUPS, Mix(read=6, write=3, probe=1), 7).plan(20_000)
    share = {f: n / len(plan) for f, n in Counter(p.f for p in plan).items()}
    assert share.keys() == {"read", "write", "probe"}
    assert abs(share["read"] - 0.6) < 0.02 and abs(share["write"] - 0.3) < 0.02
    assert Counter(p.detail for p in plan if p.f == "probe").keys() == set(PROBE_KINDS)
    assert {p.f for p in Planner(GROUPS, Mix(read=0, write=1, probe=0), 7).plan(100)} == {"write"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"read": -1}, "mix.read"), ({"write": float("nan")}, "mix.write"),
    ({"read": 0, "write": 0, "probe": 0}, "at least one weight"),
])
def test_bad_mixes_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mix(**kwargs)


@pytest.mark.parametrize(("schedule", "message"), [
    (lambda: Schedule("burst"), "schedule.mode"), (lambda: Schedule.closed(0), "workers"),
    (lambda: Schedule.open(0), "rate"), (lambda: Schedule.open(float("inf")), "rate"),
    (lambda: Schedule.open(10, slack=-1), "slack"),
])
def test_bad_schedules_are_refused(schedule: Callable[[], Schedule], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule()


def test_groups_for_a_victim_cell() -> None:
    table = CellTable.balanced(["cell-1", "cell-2", "cell-3"])
    groups = groups_for(table, victim="cell-2", per_cell=2)
    assert set(groups) == {"victim", "bystander"}
    assert set(groups["victim"].values()) == {"cell-2"} and len(groups["victim"]) == 2
    assert set(groups["bystander"].values()) == {"cell-1", "cell-3"}
    assert all(table.lookup(t) == c for g in groups.values() for t, c in g.items())
    assert set(groups_for(table)) == {"cell-1", "cell-2", "cell-3"}
    with pytest.raises(ValueError, match="victim: no cell"):
        groups_for(table, victim="cell-9")


def test_switching_groups_moves_the_load_and_keeps_every_tenant_for_the_readback(
        cells: Cells) -> None:
    rec = Recorder()
    first = dict.fromkeys(cells.tenants("cell-1", 2), "cell-1")
    load = Load(cell_client(cells), rec, {"a": first}, mix=Mix(read=1, write=0, probe=0))
    with load:
        wait_until(lambda: len(rec.history.ops()) >= 10, "10 ops")
        second = dict.fromkeys(cells.tenants("cell-1", 4)[2:], "cell-1")
        load.switch("later", groups={"b": second})
        wait_until(lambda: len(rec.history.ops(scenario="later")) >= 10, "10 more")
    later = rec.history.ops(scenario="later")
    assert {o.group for o in later[-5:]} == {"b"}
    assert {o.tenant for o in later if o.group == "b"} <= set(second)
    assert {b.tenant: b.group for b in load.readback()} == {
        **dict.fromkeys(first, "a"), **dict.fromkeys(second, "b")}


def test_planner_refuses_empty_groups() -> None:
    with pytest.raises(ValueError, match="at least one group"):
        Planner({"g": {}}, Mix(), 0)


def test_tokens_are_minted_once_per_tenant_and_roles_and_bounded_in_bytes() -> None:
    minted: list[tuple[str, tuple[str, ...]]] = []

    def mint(tenant: str, roles: Any) -> str:
        minted.append((tenant, tuple(roles)))
        return "x" * 500

    cache = TokenCache(mint, max_bytes=10_000)
    for _ in range(3):
        cache.get("a", ["reader"])
        cache.get("a", ["writer"])
    assert minted == [("a", ("reader",)), ("a", ("writer",))]
    for i in range(1000):
        cache.get(f"t-{i}", ["reader"])
    assert cache.bytes <= 10_000 and 0 < len(cache) < 1000
    huge = TokenCache(lambda t, r: "y" * 20_000, max_bytes=10_000)
    assert huge.get("a", []) == "y" * 20_000 and len(huge) == 0  # used, never kept


class Hostile(BaseHTTPRequestHandler):
    """Answers with a huge x-a1-cell header and a listing that is not a listing."""

    def do_GET(self) -> None:
        body = json.dumps({"items": "nope"}).encode()
        self.send_response(200)
        self.send_header("x-a1-cell", "c" * 50_000)
        self.send_header("x-a1-policy-version", "v\u00e9rsion")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def test_hostile_answers_are_recorded_bounded_and_on_one_line() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        ops = OpClient(f"http://127.0.0.1:{server.server_address[1]}", no_token, run_clock())
        op = ops.read("s", "t", "g")
        assert op.status == 200 and len(op.observed_cell or "") == client_module.MAX_HEADER_CHARS
        back = ops.readback("s", "t", "g")
        assert back.value is None and back.error and "\n" not in back.error
    finally:
        server.shutdown()
        server.server_close()
    refused = OpClient(f"http://127.0.0.1:{server.server_address[1]}", no_token, run_clock(),
                       timeout=1).read("s", "t", "g")
    assert refused.status is None and "Connection" in (refused.error or "")


def test_the_history_round_trips_through_jsonl(cells: Cells, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    rec = Recorder(path)
    ops = cell_client(cells)
    tenant = cells.tenants("cell-1", 1)[0]
    for op in (ops.write("s", tenant, "g", "cell-1"),
               ops.misroute("s", cells.tenants("cell-2", 1)[0], "g", "cell-1", "cell-2")):
        rec.record(op)
    rec.close()
    assert History.load(path).ops() == rec.history.ops()


# -- a real stack ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = make_stack(tmp_path_factory.mktemp("stack"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_through_the_stack_ops_carry_their_cell_and_policy_version(stack: Stack) -> None:
    rec = Recorder()
    load = Load.for_stack(stack, rec, schedule=Schedule.closed(4),
                          mix=Mix(read=4, write=3, probe=2, misroute=1), seed=5,
                          scenario="control")
    assert load.planner.tenants() == {t: (cell, cell) for cell, ts in
                                      tenants_by_cell(stack, per_cell=2).items() for t in ts}
    with load:
        wait_until(lambda: len(rec.history.ops()) >= 300, "300 ops", timeout=60)
        load.switch("down")
        load.authorized = False  # as the runner does while the decision point is down
        wait_until(lambda: len(rec.history.ops(scenario="down")) >= 20, "20 more", timeout=60)
    history = rec.history
    control = history.ops(scenario="control")
    assert {o.f for o in control} == {"read", "write", "probe", "misroute"}
    served = [o for o in control if o.f in ("read", "write")]
    assert all(o.ok and o.authorized for o in served), [o for o in served if not o.ok][:3]
    assert all(o.observed_cell == o.expected_cell for o in served)
    versions = {o.policy_version for o in served}
    assert len(versions) == 1 and len(versions.pop() or "") == 64  # the sidecar's sha256
    probes = history.ops(f="probe")
    assert {o.value["probe"] for o in probes} == set(PROBE_KINDS)
    assert all(o.status in (401, 403) and not o.authorized for o in probes), probes[:3]
    misroutes = history.ops(f="misroute")
    assert misroutes and all(o.status == 421 and o.observed_cell != o.expected_cell
                             for o in misroutes)
    assert all(not o.authorized for o in history.ops(scenario="down"))
    assert all(not unexpected(o) for o in control)
    live = load.stats()
    assert set(live) == set(stack.cell_names)
    assert sum(s.total for s in live.values()) == len(history.ops())
    assert all(f"{c} " in load.live() for c in stack.cell_names)

    backs = load.readback()
    assert len(backs) == 6 and all(b.status == 200 and b.value is not None for b in backs)
    acked = {w.value for w in history.ops(f="write") if w.ok}
    found = {v for b in backs for v in b.value}
    assert acked and acked <= found
    assert found <= {w.value for w in history.ops(f="write")}  # nothing unexpected
