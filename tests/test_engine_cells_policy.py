"""Per-cell policy versions (staged rollout, issue 7 part 4): the canary cell runs
the new version, every other cell the default, and each request is evaluated,
cached, labelled and counted with the version of the cell it is routed to.

Modules are small Rego compiled with the real compiler; each carries a mark in
its decision (``x-mark`` on allow, the reason on deny), so a decision shows which
module made it, and the engine's ``x-a1-policy-version`` must name that module.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ext_proc.decision_log import DecisionLog
from ext_proc.engine import Decision, Engine
from ext_proc.grpc_common import bind, make_server
from ext_proc.grpc_server import make_handlers
from ext_proc.metrics import make_registry
from ext_proc.policy import load_policy
from policies.core.cells import CellTable
from tests.test_engine import ENTRY, compile_rego

CELLS = CellTable.balanced(["cell-1", "cell-2", "cell-3"])
CANARY = "cell-2"


def marked(mark: str, allow_get: bool = True) -> Any:
    """A module that allows GET (or denies it, ``allow_get=False``), naming ``mark``."""
    get = (
        f'{{"allow": true, "headers": {{"x-mark": "{mark}"}}}}'
        if allow_get
        else f'{{"allow": false, "status": 403, "reason": "{mark} says no"}}'
    )
    body = (
        f'default decision := {{"allow": false, "status": 403, "reason": "{mark} denies"}}\n'
        f'decision := {get} if input.method == "GET"\n'
    )
    return load_policy(compile_rego(body), ENTRY, f"{mark}.wasm")


MODULES = {m: marked(m) for m in "ABC"}
A, B, C = MODULES["A"], MODULES["B"], MODULES["C"]
B_DENIES = marked("B", allow_get=False)
TRAP = load_policy(compile_rego('decision := {"allow": input.method + 1}'), ENTRY, "trap.wasm")
VERSION_MARK = {mod.version: m for m, mod in MODULES.items()}


def tenants_by_cell(table: CellTable, per_cell: int = 3) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in table.cells}
    i = 0
    while any(len(v) < per_cell for v in out.values()):
        t = f"tenant{i}"
        i += 1
        if len(out[table.lookup(t)]) < per_cell:
            out[table.lookup(t)].append(t)
    return out


TENANTS = tenants_by_cell(CELLS)
ALL_TENANTS = [t for ts in TENANTS.values() for t in ts]


def subject(tenant: str) -> dict[str, Any]:
    return {"sub": "u", "tenant": tenant, "roles": ["reader"]}


def decide(eng: Engine, tenant: str, method: str = "GET", key: Any = "k") -> Decision:
    skey = None if key is None else f"{key}:{tenant}"  # None: no memo, the exact layer only
    return eng.decide(method, f"/t/{tenant}/x", "", None, subject(tenant), skey)


def mark_of(d: Decision) -> str:
    if d.allow:
        return dict(d.headers)["x-mark"]
    return d.reason.split(" ", 1)[0]


def scrape(eng: Engine) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(make_registry(eng)).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_version(eng: Engine) -> dict[tuple[str, str, str], float]:
    """a1_policy_decisions_total as {(cell, version, result): n}."""
    fam = scrape(eng).get("a1_policy_decisions_total", {})
    return {
        (d["cell"], d["version"], d["result"]): n for d, n in ((dict(k), n) for k, n in fam.items())
    }


# -- routing: the version of the target cell ---------------------------------------------


def test_canary_cell_is_evaluated_with_its_version() -> None:
    eng = Engine()
    eng.apply(A, CELLS, {CANARY: B_DENIES})
    for cell, tenants in TENANTS.items():
        for t in tenants:
            for _ in range(2):  # the second is a memo hit: same answer
                d = decide(eng, t)
                assert d.cell == cell
                if cell == CANARY:
                    assert (d.allow, d.status, d.reason) == (False, 403, "B says no")
                    assert d.version == B_DENIES.version
                else:
                    assert d.allow and dict(d.headers)["x-mark"] == "A"
                    assert dict(d.headers)["x-a1-policy-version"] == A.version == d.version
                    assert dict(d.headers)["x-a1-cell"] == cell
    snap = eng.snapshot
    assert snap is not None
    assert snap.version == A.version  # the default, as a1_policy_version_info shows it
    assert snap.cell_versions() == {
        c: B_DENIES.version if c == CANARY else A.version for c in CELLS.cells
    }


def test_overrides_equal_to_the_default_or_for_unknown_cells_add_no_version() -> None:
    eng = Engine()
    again = marked("A")  # another module object, same bytes: the same version
    assert again.version == A.version and again is not A
    eng.apply(A, CELLS, {"cell-1": again, "cell-9": B})
    snap = eng.snapshot
    assert snap is not None
    assert [pv.version for pv in snap.versions] == [A.version]
    assert snap.by_cell == {}
    assert all(mark_of(decide(eng, t)) == "A" for t in ALL_TENANTS)
    # Two cells on one canary module share one version (one evaluator per thread).
    eng.apply(A, CELLS, {"cell-1": B, "cell-3": marked("B")})
    snap = eng.snapshot
    assert snap is not None and [pv.version for pv in snap.versions] == [A.version, B.version]
    for cell, tenants in TENANTS.items():
        assert {mark_of(decide(eng, t)) for t in tenants} == {"A" if cell == "cell-2" else "B"}


def test_the_file_sources_two_argument_call_still_serves_one_version() -> None:
    eng = Engine()
    eng.apply(A, CELLS)
    assert {decide(eng, t).version for t in ALL_TENANTS} == {A.version}
    assert eng.snapshot is not None and eng.snapshot.by_cell == {}


# -- caches ------------------------------------------------------------------------------


def test_caches_never_serve_one_versions_decision_to_another_cell() -> None:
    """The marked policies read only the method, so every tenant's input encodes to the
    same bytes: only the cell in the key keeps the two versions' decisions apart."""
    ev_a, ev_b = A.evaluator(ENTRY), B.evaluator(ENTRY)
    inputs = [{"method": "GET", "path": f"/t/{t}/x", "tenant": t} for t in ALL_TENANTS]
    assert len({ev_a.encode(i) for i in inputs} | {ev_b.encode(i) for i in inputs}) == 1
    eng = Engine()
    eng.apply(A, CELLS, {CANARY: B})
    canary, other = TENANTS[CANARY][0], TENANTS["cell-1"][0]
    for key in ("k", None):  # memo layer, then exact layer only (no subject key)
        for _ in range(3):
            for t, mark in ((canary, "B"), (other, "A"), (canary, "B")):
                d = eng.decide("GET", f"/t/{t}/x", "", None, subject(t), key and f"{key}{t}")
                assert mark_of(d) == mark
                assert d.version == MODULES[mark].version
    snap = eng.snapshot
    assert snap is not None and snap.cache is not None
    assert len(snap.cache.exact) == 2  # one per (input, cell): same bytes, two cells
    assert eng.stats.snapshot()["cache_hits"] >= 12


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    assignment=st.dictionaries(st.sampled_from(CELLS.cells), st.sampled_from("ABC")),
    default=st.sampled_from("ABC"),
    batch=st.lists(
        st.tuples(
            st.sampled_from(ALL_TENANTS),
            st.sampled_from(["GET", "POST"]),
            st.sampled_from(["k1", "k2", None]),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_cached_decisions_equal_uncached_evaluation_per_cell_version(
    assignment: dict[str, str], default: str, batch: list[tuple[str, str, str | None]]
) -> None:
    """Oracle: each module evaluated alone, without any cache, on the request's cell."""
    eng = Engine(cache_size=6)  # small: eviction as well as hits
    eng.apply(MODULES[default], CELLS, {c: MODULES[m] for c, m in assignment.items()})
    for tenant, method, key in batch + batch:
        cell = CELLS.lookup(tenant)
        mod = MODULES[assignment.get(cell, default)]
        d = decide(eng, tenant, method, key)
        want = mod.evaluator(ENTRY).evaluate({"method": method, "path": f"/t/{tenant}/x"})
        assert d.version == mod.version
        if want["allow"] is True:
            assert d.allow and dict(d.headers) == {
                "x-a1-cell": cell, "x-a1-policy-version": mod.version, **want["headers"]
            }  # fmt: skip
        else:
            assert (d.allow, d.reason, d.status) == (False, want["reason"], want["status"])


def test_impure_canary_is_never_cached_while_the_default_is() -> None:
    impure = load_policy(
        compile_rego('decision := {"allow": time.now_ns() > 0, "headers": {"x-mark": "I"}}'),
        ENTRY,
        "impure.wasm",
    )
    assert not impure.meta.pure
    eng = Engine()
    eng.apply(A, CELLS, {CANARY: impure})
    canary, other = TENANTS[CANARY][0], TENANTS["cell-1"][0]
    for _ in range(3):
        assert mark_of(decide(eng, canary)) == "I"
    assert eng.stats.snapshot()["cache_hits"] == 0
    for _ in range(3):
        assert mark_of(decide(eng, other)) == "A"
    assert eng.stats.snapshot()["cache_hits"] == 2


def test_the_snapshots_cache_stays_within_cache_bytes_across_versions() -> None:
    eng = Engine(cache_size=100_000, cache_bytes=256 * 1024, max_path=20_000)
    eng.apply(A, CELLS, {CANARY: B})
    for i in range(200):
        for t in (TENANTS[CANARY][0], TENANTS["cell-1"][0]):
            d = eng.decide("GET", f"/t/{t}/{'x' * 8000}{i}", "", None, subject(t), "k")
            assert d.allow
    snap = eng.snapshot
    assert snap is not None and snap.cache is not None
    assert snap.cache.exact.bytes + snap.cache.memo.bytes <= 256 * 1024
    assert scrape(eng)["a1_cache_bytes"][()] <= 256 * 1024


# -- the real gRPC door ------------------------------------------------------------------


@contextmanager
def grpc_door(eng: Engine) -> Iterator[grpc.Channel]:
    """The sidecar's ext_authz server (ext_proc.grpc_server on grpc.aio), on a free
    loopback port, its event loop on a thread of this process."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def up() -> tuple[grpc.aio.Server, int]:
        server, _health = make_server(make_handlers(eng))
        port = bind(server, "127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(up(), loop).result(10)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def check(channel: grpc.Channel, tenant: str, method: str = "GET") -> Any:
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = method, f"/t/{tenant}/x", "api.local"
    http.headers["x-a1-policy-version"] = "forged"
    req.attributes.metadata_context.filter_metadata["envoy.filters.http.jwt_authn"].update(
        {"jwt_payload": {**subject(tenant), "iss": "a1-dev"}}
    )
    return external_auth_pb2_grpc.AuthorizationStub(channel).Check(req, timeout=5)


def test_grpc_check_answers_with_the_target_cells_version() -> None:
    eng = Engine()
    eng.apply(A, CELLS, {CANARY: B_DENIES})
    with grpc_door(eng) as channel:
        for cell, tenants in TENANTS.items():
            for t in tenants:
                resp = check(channel, t)
                if cell == CANARY:
                    assert resp.status.code == 7
                    assert resp.denied_response.status.code == 403
                    assert json.loads(resp.denied_response.body) == {"error": "B says no"}
                else:
                    assert resp.status.code == 0
                    hs = {h.header.key: h.header.value for h in resp.ok_response.headers}
                    assert hs["x-a1-policy-version"] == A.version  # the forged one overwritten
                    assert (hs["x-a1-cell"], hs["x-mark"]) == (cell, "A")
        # Promotion: the canary's version becomes everyone's; the door follows at once.
        eng.apply(B, CELLS)
        for t in ALL_TENANTS:
            resp = check(channel, t)
            hs = {h.header.key: h.header.value for h in resp.ok_response.headers}
            assert resp.status.code == 0 and (hs["x-mark"], hs["x-a1-policy-version"]) == (
                "B",
                B.version,
            )
    counts = by_version(eng)
    for cell, tenants in TENANTS.items():
        if cell == CANARY:
            assert counts[(cell, B_DENIES.version, "deny")] == len(tenants)
        else:
            assert counts[(cell, A.version, "allow")] == len(tenants)
        assert counts[(cell, B.version, "allow")] == len(tenants)


# -- atomic swaps under concurrent decisions ---------------------------------------------

snapshots = st.lists(
    st.tuples(
        st.sampled_from("ABC"),  # default
        st.dictionaries(st.sampled_from(CELLS.cells), st.sampled_from("ABC")),  # overrides
        st.dictionaries(st.sampled_from(ALL_TENANTS), st.sampled_from(CELLS.cells), max_size=3),
    ),
    min_size=2,
    max_size=6,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=snapshots)
def test_apply_swaps_atomically_under_concurrent_decisions(
    plan: list[tuple[str, dict[str, str], dict[str, str]]],
) -> None:
    """Every decision made while snapshots swap agrees with ONE applied snapshot: the
    tenant's cell, the module assigned to that cell, and the version header naming it."""
    tables = [CELLS.with_overrides(pins) for _, _, pins in plan]
    eng = Engine(cache_size=16)
    eng.apply(MODULES[plan[0][0]], tables[0], {c: MODULES[m] for c, m in plan[0][1].items()})
    stop = threading.Event()
    seen: list[tuple[str, str, str, str]] = []
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                t = ALL_TENANTS[(i * 7 + n) % len(ALL_TENANTS)]
                d = decide(eng, t, key=("k" if i % 3 else None))
                seen.append((t, d.cell, mark_of(d), dict(d.headers)["x-a1-policy-version"]))
                i += 1
        except BaseException as err:  # surfaced by the main thread
            failures.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython can: widen the races
    for th in threads:
        th.start()
    try:
        while len(seen) < 600 and not failures:  # swap for as long as the threads decide
            for (default, over, _), table in zip(plan, tables, strict=True):
                eng.apply(MODULES[default], table, {c: MODULES[m] for c, m in over.items()})
    finally:
        stop.set()
        for th in threads:
            th.join(30)
        sys.setswitchinterval(interval)
    assert not failures
    assert seen
    for tenant, cell, mark, version in seen:
        assert VERSION_MARK[version] == mark  # evaluated by the module the header names
        assert any(
            table.lookup(tenant) == cell and over.get(cell, default) == mark
            for (default, over, _), table in zip(plan, tables, strict=True)
        ), (tenant, cell, mark)
    # Each thread keeps one evaluator per version of the snapshot, no more.
    snap = eng.snapshot
    assert snap is not None and len(snap.versions) <= 3


def test_concurrent_applies_compute_live_versions_from_the_snapshot_they_replace() -> None:
    eng = Engine()
    eng.apply(A, CELLS)
    mods = [A, B, C]
    threads = [
        threading.Thread(
            target=lambda i=i: [eng.apply(mods[(i + j) % 3], CELLS) for j in range(30)]
        )
        for i in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    snap = eng.snapshot
    assert snap is not None and snap.version in snap.live and len(snap.live) <= 2


# -- telemetry for the rollout -----------------------------------------------------------


def test_metrics_count_decisions_by_cell_and_version(tmp_path: Path) -> None:
    dl = DecisionLog(tmp_path / "d.jsonl", queue_size=1000, interval=0.01)
    dl.start()
    eng = Engine(decision_log=dl)
    eng.apply(A, CELLS, {CANARY: TRAP})

    def work() -> None:
        for t in ALL_TENANTS:
            decide(eng, t)  # allow in A's cells; the trap errors in the canary
            decide(eng, t, "POST")  # A denies POST

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dl.stop()
    n = len(TENANTS[CANARY])
    want: dict[tuple[str, str, str], float] = {(CANARY, TRAP.version, "error"): 4 * 2 * n}
    for cell in ("cell-1", "cell-3"):
        k = len(TENANTS[cell])
        want[(cell, A.version, "allow")] = want[(cell, A.version, "deny")] = 4 * k
    assert by_version(eng) == want
    m = scrape(eng)
    assert m["a1_cell_policy_version"] == {
        (("cell", c), ("version", TRAP.version if c == CANARY else A.version)): 1.0
        for c in CELLS.cells
    }
    # The legacy view is unchanged: an evaluation failure names no cell there.
    assert m["a1_decisions_total"][(("cell", ""), ("result", "error"))] == 8 * n
    assert m["a1_policy_eval_errors_total"][()] == 8 * n
    info = m["a1_policy_version_info"]
    assert list(info) == [(("cells_version", CELLS.version), ("version", A.version))]
    # The decision log names the version each request was evaluated with.
    recs = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(recs) == 4 * 2 * len(ALL_TENANTS)
    for r in recs:
        cell = CELLS.lookup(r["tenant"])
        assert r["policy_version"] == (TRAP.version if cell == CANARY else A.version)
        assert r["status"] == (500 if cell == CANARY else 200 if r["method"] == "GET" else 403)


def test_label_sets_of_versions_out_of_service_are_evicted() -> None:
    eng = Engine()
    one = ALL_TENANTS[0]

    def total() -> float:
        return sum(scrape(eng)["a1_decisions_total"].values())

    def versions() -> set[str]:
        return {v for _, v, _ in by_version(eng)}

    eng.apply(A, CELLS)
    decide(eng, one)
    eng.apply(A, CELLS, {CANARY: B})  # canary
    for t in ALL_TENANTS:
        decide(eng, t)
    assert versions() == {A.version, B.version}
    eng.apply(B, CELLS)  # promoted: A was in the previous snapshot, still shown
    decide(eng, one)
    assert versions() == {A.version, B.version}
    before = total()
    eng.apply(C, CELLS)  # A is two snapshots old: its label sets go
    assert versions() == {B.version}  # B's decisions are from the previous snapshot
    assert total() == before  # the legacy counter stays monotonic: A's counts folded in
    decide(eng, one)  # this thread's first decision under C retires A's counters
    assert versions() == {B.version, C.version}
    assert total() == before + 1
    mine = eng.stats.mine().decisions
    assert {k[3] for k in mine} == {B.version, C.version, ""}
    eng.apply(C, CELLS)  # same version again: B leaves, nothing else changes
    decide(eng, TENANTS["cell-1"][1])
    assert versions() == {C.version} and total() == before + 2
