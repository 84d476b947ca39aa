"""``walk(x, [path, value])``: every pair below ``x``, depth first, as regorus iterates
it (bound, partly bound and unbound outputs); ``walk(x)`` as a value is refused (OPA
iterates it, regorus answers something else)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_sources
from tests.rego_oracle import Compiled, Oracle, agree

SRC = """package t
pairs := [p | walk(input.x, p)]
paths := {path | walk(input.x, [path, _])}
ones := [path | walk(input.x, [path, 1])]
under_a := [[k, v] | walk(input.x, [["a", k], v])]
has if walk(input.x, [["a"], 1])
"""
ENTRIES = ["t/pairs", "t/paths", "t/ones", "t/under_a", "t/has"]

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from(["a", "b", ""]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def both() -> tuple[Compiled, Oracle]:
    sources = {"p.rego": SRC}
    return Compiled(sources, ENTRIES), Oracle(sources)


def _check(both: tuple[Compiled, Oracle], doc: Any) -> None:
    ours, theirs = both
    for entry in ENTRIES:
        got, want = ours.eval(entry, doc), theirs.eval(entry, doc)
        assert agree(got, want), (entry, json.dumps(doc), got, want)


@pytest.mark.parametrize(
    "x",
    [1, "s", None, [], {}, {"a": [1, {"b": 2}], "c": 1}, [[1, [2]], 3], {"a": {"a": 1}}],
)
def test_walk_agrees_with_regorus(both: tuple[Compiled, Oracle], x: Any) -> None:
    _check(both, {"x": x})


def test_walk_of_undefined_has_no_pairs(both: tuple[Compiled, Oracle]) -> None:
    _check(both, {})
    assert both[0].eval("t/pairs", {}) == ("value", [])


def test_walk_of_a_set_keys_paths_by_element() -> None:
    src = 'package t\np := [x | walk({"a", {1}}, x)]\n'
    ours = Compiled({"p.rego": src}, ["t/p"]).eval("t/p", None)
    assert ours == Oracle({"p.rego": src}).eval("t/p", None)
    assert ours[1][1] == [["a"], "a"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_walk_of_generated_values_agrees_with_regorus(x: Any) -> None:
    _check(_BOTH, {"x": x})


_BOTH = (Compiled({"p.rego": SRC}, ENTRIES), Oracle({"p.rego": SRC}))


@pytest.mark.parametrize(
    "src",
    [
        "p := walk([1])",
        "p := count(walk([1]))",
        "p := [x | [x, _] := walk([1])]",
        "p if { walk([1]) }",
        "p := [x | walk([1], x, 2)]",
        "p if { true with walk as 1 }",
        "p if { not walk([1], [[], 2]) }",  # regorus: always undefined
    ],
)
def test_walk_other_than_the_relation_is_refused(src: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": "package t\n" + src}, None, ["t/p"])
    assert info.value.kind == "unsupported"
    assert "walk" in str(info.value)


def test_a_package_function_named_walk_is_called() -> None:
    src = "package t\nwalk(x, y) := x + y\np := walk(1, 2)\n"
    assert Compiled({"p.rego": src}, ["t/p"]).eval("t/p", None) == ("value", 3.0)


def test_walk_of_a_deep_input_is_bounded_by_the_input_limits() -> None:
    doc: Any = 1
    for _ in range(60):
        doc = [doc]
    src = "package t\nn := count([p | walk(input.x, p)])\n"
    assert Compiled({"p.rego": src}, ["t/n"]).eval("t/n", {"x": doc}) == ("value", 61.0)
