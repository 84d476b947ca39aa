"""Byte accounting of everything the sidecar keeps per request: caches and the log queue.

An attacker picks request sizes, so each structure is bounded in bytes as well as
entries. The accounting is checked against a model (hypothesis): the charged total
equals the sum of the retained entries' costs and never exceeds the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ext_proc import claims, defaults
from ext_proc.decision_log import DecisionLog, entry_cost
from ext_proc.engine import Engine
from ext_proc.policy import load_policy
from policies.core.bounded import ENTRY_OVERHEAD, ByteLRU, sizeof
from tests.test_engine import ALICE, CELLS, ENTRY, compile_authz, payload

ops = st.lists(
    st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 30), st.integers(0, 400)),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, max_entries=st.integers(1, 12), max_bytes=st.integers(0, 2000))
def test_byte_lru_matches_a_model(
    ops: list[tuple[str, int, int]], max_entries: int, max_bytes: int
) -> None:
    lru: ByteLRU[int] = ByteLRU(max_entries, max_bytes)
    model: OrderedDict[int, tuple[int, int]] = OrderedDict()
    for op, key, cost in ops:
        if op == "get":
            got = lru.get(key)
            if key in model:
                model.move_to_end(key)
                assert got == model[key][0]
            else:
                assert got is None
            continue
        lru.put(key, key * 7, cost)
        if cost > max_bytes:
            continue  # never kept, and nothing evicted for it
        model.pop(key, None)
        model[key] = (key * 7, cost)
        while len(model) > max_entries or sum(c for _, c in model.values()) > max_bytes:
            model.popitem(last=False)
        assert lru.bytes == sum(c for _, c in model.values()) <= max_bytes
        assert len(lru) == len(model) <= max_entries
    assert list(lru._d) == list(model)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(v=json_values)
def test_sizeof_counts_every_string_byte(v: Any) -> None:
    def strings(x: Any) -> int:
        if isinstance(x, str):
            return len(x)
        if isinstance(x, list):
            return sum(strings(y) for y in x)
        if isinstance(x, dict):
            return sum(len(k) + strings(y) for k, y in x.items())
        return 0

    assert sizeof(v) >= strings(v)


@settings(max_examples=50, deadline=None)
@given(
    tokens=st.lists(
        st.tuples(st.text(min_size=1, max_size=30), st.lists(st.text(max_size=200), max_size=30)),
        max_size=40,
    ),
    max_bytes=st.integers(1000, 20000),
)
def test_claims_caches_stay_within_their_byte_bound(
    tokens: list[tuple[str, list[str]]], max_bytes: int
) -> None:
    claims.configure(1000, max_bytes)
    try:
        for sub, roles in tokens:
            value = payload({"sub": sub, "tenant": "acme", "roles": roles})
            subject = claims.subject_from_header(value)
            assert subject == {"sub": sub, "tenant": "acme", "roles": roles}
            assert claims._bytes["header"] <= max_bytes
            charged = sum(
                len(k) + sizeof(s) + ENTRY_OVERHEAD for k, s in claims._header_cache.items()
            )
            assert charged == claims._bytes["header"]
    finally:
        claims.configure(defaults.CLAIMS_ENTRIES, defaults.CLAIMS_BYTES)


def test_claims_cache_entry_larger_than_the_budget_is_not_kept() -> None:
    claims.configure(1000, 1000)
    try:
        big = payload({"sub": "x" * 5000, "tenant": "acme"})
        assert claims.subject_from_header(big) == {"sub": "x" * 5000, "tenant": "acme"}
        assert big not in claims._header_cache and claims.cache_bytes() == 0
    finally:
        claims.configure(defaults.CLAIMS_ENTRIES, defaults.CLAIMS_BYTES)


@settings(max_examples=50, deadline=None)
@given(
    paths=st.lists(st.text(max_size=3000), max_size=60),
    max_bytes=st.integers(ENTRY_OVERHEAD, 20000),
)
def test_decision_log_queue_is_bounded_in_bytes(
    tmp_path_factory: Any, paths: list[str], max_bytes: int
) -> None:
    dl = DecisionLog(
        tmp_path_factory.mktemp("dl") / "d.jsonl", queue_size=1000, max_bytes=max_bytes
    )
    try:
        for p in paths:
            dl.append(
                (0.0, "GET", p, None, "alice", "cell-1", False, 403, "denied", "v", False, 1000)
            )
            assert dl.pending_bytes == sum(entry_cost(e) for e in dl._q) <= max_bytes
        assert dl.dropped + len(dl._q) == len(paths)
    finally:
        dl.stop()
    assert dl.pending_bytes == 0


def test_decision_cache_layers_are_bounded_in_bytes(tmp_path: Path) -> None:
    """Distinct 16 KiB paths: the memo and exact layers hold what fits in max_bytes."""
    eng = Engine(cache_size=100_000, cache_bytes=1024 * 1024, max_path=20_000)
    eng.apply(load_policy(compile_authz(), ENTRY, "authz.wasm"), CELLS)
    key = "k"
    for i in range(300):
        d = eng.decide("GET", f"/t/globex/{'x' * 16384}{i}", "", None, ALICE, key)
        assert not d.allow and d.status == 403
    snap = eng.snapshot
    assert snap is not None and snap.cache is not None
    exact, memo = snap.cache.exact, snap.cache.memo
    assert exact.bytes <= 512 * 1024 and memo.bytes <= 512 * 1024
    assert 0 < len(exact) < 40 and 0 < len(memo) < 40  # each entry is charged > 16 KiB
    # Recently used entries still hit.
    last = eng.decide("GET", f"/t/globex/{'x' * 16384}299", "", None, ALICE, key)
    assert eng.decide("GET", f"/t/globex/{'x' * 16384}299", "", None, ALICE, key) is last
