"""Bitwise, range and graph builtins of the host (``policies/runtime/host/misc.py``).

Unit tests call the registered functions; the differential tests compile a policy
applying each builtin to the input and compare every answer with regorus.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.runtime.host import REGISTRY
from policies.runtime.host import misc as host_misc
from policies.runtime.host.base import BuiltinError
from policies.runtime.values import UNDEFINED, RegoSet
from tests.host_diff import Pair, call, refused

# ---------------------------------------------------------------- bits


def test_bits() -> None:
    assert call("bits.and", 12, 10) == 8
    assert call("bits.or", 12, 10) == 14
    assert call("bits.xor", 12, 10) == 6
    assert call("bits.negate", 12) == -13
    assert call("bits.and", -5, 3) == 3
    assert call("bits.lsh", 1, 3) == 8
    assert call("bits.rsh", -8, 1) == -4
    assert call("bits.rsh", -8, 100) == -1  # arithmetic shift
    assert call("bits.lsh", 1, 53) == 2**53
    assert call("bits.lsh", 0, 10**6) == 0
    assert call("bits.and", 2.0, 3) == 2  # an integral double is an integer
    assert "must be an integer" in refused("bits.and", 1.5, 1)
    assert "operand 2 must be number" in refused("bits.or", 1, True)
    assert "must not be negative" in refused("bits.lsh", 1, -1)


def test_results_past_2_53_are_errors_not_rounded() -> None:
    """regorus keeps big integers exactly; A1's doubles cannot, so it refuses them."""
    assert "beyond 2^53" in refused("bits.lsh", 1, 54)
    assert "beyond 2^53" in refused("bits.negate", 2**53)
    assert "beyond 2^53" in refused("bits.or", 2.0**60, 1)
    assert call("bits.and", 2.0**60, 1) == 0


def test_huge_shifts_are_bounded() -> None:
    """No shift builds a huge number: ``1 << 4_000_000_000`` would take 500 MB."""
    assert "beyond 2^53" in refused("bits.lsh", 1, 2**32 - 1)
    assert "beyond 2^53" in refused("bits.lsh", -3, 62)
    assert call("bits.lsh", 0, 2**32 - 1) == 0
    assert call("bits.rsh", 1, 2**32 - 1) == 0
    assert call("bits.rsh", -1, 2**32 - 1) == -1
    assert call("bits.lsh", 1, 2**32) is UNDEFINED  # a count past u32: undefined
    assert call("bits.rsh", 1, 2.0**64) is UNDEFINED


# ---------------------------------------------------------------- numbers.range_step


def test_range_step() -> None:
    assert call("numbers.range_step", 1, 10, 3) == [1, 4, 7, 10]
    assert call("numbers.range_step", 10, 1, 3) == [10, 7, 4, 1]
    assert call("numbers.range_step", 1, 1, 5) == [1]
    assert "positive integer" in refused("numbers.range_step", 1, 10, 0)
    assert "positive integer" in refused("numbers.range_step", 1, 10, 1.5)
    assert "must be integers" in refused("numbers.range_step", 1.5, 10, 1)
    assert "more than" in refused("numbers.range_step", 0, 2**53, 1)  # never built


# ---------------------------------------------------------------- graphs


def test_reachable() -> None:
    g = {"a": ["b"], "b": RegoSet(["c"]), "c": ["a"], "d": ["e"]}
    assert call("graph.reachable", g, ["a"]) == RegoSet(["a", "b", "c"])
    assert call("graph.reachable", g, RegoSet(["d"])) == RegoSet(["d"])  # e is no vertex
    assert call("graph.reachable", {"a": None}, ["a"]) == RegoSet(["a"])
    assert call("graph.reachable", {1: [2.0], 2: [True]}, [1]) == RegoSet([1, 2])
    assert "initial vertices" in refused("graph.reachable", g, "a")
    assert "operand 1 must be object" in refused("graph.reachable", [], ["a"])


def test_reachable_paths() -> None:
    rp = "graph.reachable_paths"
    assert call(rp, {"a": ["b"], "b": ["c"], "c": ["a"]}, ["a"]) == RegoSet([["a", "b", "c"]])
    got = call(rp, {"a": ["b", "c"], "c": ["b"], "b": []}, ["a"])
    assert got == RegoSet([["a", "b"], ["a", "c", "b"]])
    assert call(rp, {"a": ["x"]}, ["a"]) == RegoSet([["a"]])
    assert call(rp, {"a": ["b"]}, ["x"]) == RegoSet([])
    assert call(rp, {"a": [""], "b": ["a"]}, ["b"]) == RegoSet([["b", "a"]])
    assert "array or a set" in refused(rp, {"a": ["b"], "b": "c"}, ["a"])


def test_deep_graphs_do_not_exhaust_the_stack() -> None:
    chain = {str(i): [str(i + 1)] for i in range(50_000)}
    assert len(call("graph.reachable", chain, ["0"])) == 50_000
    (path,) = call("graph.reachable_paths", chain, ["0"])
    assert len(path) == 50_000


def test_path_explosion_is_bounded() -> None:
    """A complete graph on 20 vertices has more than 10^17 simple paths."""
    complete = {str(i): [str(j) for j in range(20)] for i in range(20)}
    assert "graph too large" in refused("graph.reachable_paths", complete, ["0"])
    assert len(call("graph.reachable", complete, ["0"])) == 20
    # a long chain fanning out: each path recorded costs its length
    fan = {str(i): [str(i + 1)] for i in range(2000)}
    fan["2000"] = [f"leaf{i}" for i in range(host_misc.MAX_STEPS // 1000)]
    fan.update({f"leaf{i}": [] for i in range(host_misc.MAX_STEPS // 1000)})
    assert "graph too large" in refused("graph.reachable_paths", fan, ["0"])


# ---------------------------------------------------------------- differential

DIFF = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ints = st.integers(-(2**53), 2**53)
small = st.integers(-300, 300)


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair(
        {
            "and": "bits.and(input.x, input.y)",
            "or": "bits.or(input.x, input.y)",
            "xor": "bits.xor(input.x, input.y)",
            "neg": "bits.negate(input.x)",
            "lsh": "bits.lsh(input.x, input.s)",
            "rsh": "bits.rsh(input.x, input.s)",
            "range": "numbers.range_step(input.a, input.b, input.s)",
            "reach": "graph.reachable(input.g, input.v)",
            "reach_set": "graph.reachable(input.g, {x | some x in input.v})",
            "paths": "graph.reachable_paths(input.g, input.v)",
        }
    )


# A1 numbers are doubles: a result past 2^53, which regorus holds exactly, is an error.
BEYOND = ("beyond 2^53",)


@DIFF
@given(
    x=st.one_of(ints, small, st.just(1.5)),
    y=st.one_of(ints, small),
    s=st.one_of(st.integers(-1, 70), st.just(0.5), st.just(2**32)),
)
def test_bits_agree_with_regorus(pair: Pair, x: Any, y: Any, s: Any) -> None:
    doc = {"x": x, "y": y, "s": s}
    for rule in ("and", "or", "xor", "neg", "lsh", "rsh"):
        pair.check(rule, doc, tolerate=BEYOND)


@DIFF
@given(
    a=st.one_of(small, st.just(0.5)),
    b=small,
    s=st.one_of(st.integers(-2, 40), st.just(2.5), st.just("1")),
)
def test_range_step_agrees_with_regorus(pair: Pair, a: Any, b: Any, s: Any) -> None:
    pair.check("range", {"a": a, "b": b, "s": s})


vertices = st.sampled_from(["a", "b", "c", "d", "e", ""])
edges = st.one_of(
    st.lists(st.one_of(vertices, st.integers(0, 1)), max_size=4), st.none(), st.just("a")
)
graphs = st.dictionaries(vertices, edges, max_size=6)


@DIFF
@given(g=graphs, v=st.one_of(st.lists(vertices, max_size=3), st.just("a")))
def test_graphs_agree_with_regorus(pair: Pair, g: Any, v: Any) -> None:
    doc = {"g": g, "v": v}
    pair.check("reach", doc)
    pair.check("paths", doc)
    if isinstance(v, list):
        pair.check("reach_set", doc)


# ---------------------------------------------------------------- array.flatten, rand.intn


def _compiled(src: str, entry: str) -> Any:
    from policies.compiler import compile_sources
    from policies.runtime.module import PolicyModule

    return PolicyModule.load(compile_sources({"p.rego": src}, None, [entry])).evaluator(entry)


def test_array_flatten_removes_one_level() -> None:
    flatten = REGISTRY["array.flatten"].fn
    assert flatten([]) == []
    assert flatten([[1, 2], [3], []]) == [1, 2, 3]
    assert flatten([[[1], [2, []]], "s", {"a": 1}, [4, [5]]]) == [
        [1],
        [2, []],
        "s",
        {"a": 1},
        4,
        [5],
    ]
    with pytest.raises(BuiltinError, match="operand 1 must be array"):
        flatten(42)
    with pytest.raises(BuiltinError, match="more than"):
        flatten([[0] * (1 << 19), [0] * (1 << 19), [0]])


def test_rand_intn_is_one_value_per_arguments_within_an_evaluation() -> None:
    from policies.runtime.host.base import EvalContext

    intn = REGISTRY["rand.intn"]
    assert not intn.pure
    ctx = EvalContext()
    first = intn.fn(ctx, "k", 1 << 40)
    assert all(intn.fn(ctx, "k", 1 << 40) == first for _ in range(20))
    assert intn.fn(ctx, "k", -(1 << 40)) == first  # |n|, as OPA
    assert intn.fn(ctx, "k", 0) == 0
    assert 0 <= intn.fn(ctx, "other", 3) < 3
    seen = set()
    for _ in range(20):  # a new evaluation draws again: 20 draws of 2^40 all equal is ~0
        ctx.reset()
        seen.add(intn.fn(ctx, "k", 1 << 40))
    assert len(seen) > 1
    with pytest.raises(BuiltinError, match="integer"):
        intn.fn(ctx, "k", 1.5)
    with pytest.raises(BuiltinError, match="operand 1 must be string"):
        intn.fn(ctx, 1, 2)


def test_rand_intn_memo_is_bounded() -> None:
    from policies.runtime.host.base import EvalContext

    ctx = EvalContext()
    with pytest.raises(BuiltinError, match="distinct calls"):
        for i in range(10_000):
            REGISTRY["rand.intn"].fn(ctx, str(i), 10)


def test_rand_intn_through_the_compiler_is_stable_in_one_evaluation() -> None:
    ev = _compiled(
        "package p\nimport rego.v1\n"
        'x := count({rand.intn("a", 1000000) | some _ in numbers.range(1, 50)})\n'
        'y := [rand.intn("a", 1000000), rand.intn("a", 1000000)]\n',
        "p",
    )
    out = ev.evaluate({}, json_form=True)
    assert out["x"] == 1
    assert out["y"][0] == out["y"][1]
