"""``with`` on input, data (base documents and rules) and functions (user functions and
builtins, replaced by a value or another function): compiled policies agree with
regorus, and a value computed under a ``with`` never leaks out of it (nor in)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_sources
from tests.rego_oracle import Compiled, Oracle, agree

DATA = {"roles": {"alice": ["admin"], "bob": ["dev"]}, "d": {"x": 1, "y": [1, 2]}}


def _both(src: str, entry: str = "t/p", data: Any = DATA, input_doc: Any = None) -> tuple:
    sources = {"p.rego": "package t\n" + src}
    ours = Compiled(sources, [entry], data).eval(entry, input_doc)
    theirs = Oracle(sources, data).eval(entry, input_doc)
    return ours, theirs


CASES = {
    # base data documents
    "data doc": 'q := data.roles.alice\np := x if { x := q with data.roles as {"alice": [1]} }',
    "data deeper read": "p := x if { x := data.roles.alice[0] with data.roles.alice as [7] }",
    "data above read": "p := x if { x := data.d with data.d.x as 5 }",
    "data missing path": "p := x if { x := data.zz with data.zz.a.b as 5 }",
    "data over scalar": "p := x if { x := data.d.x with data.d.x.k as 5 }",
    "data via import": "import data.roles\np := x if { x := roles.bob with data.roles.bob as 3 }",
    "data set iteration": "p contains x if { data.d.y[_] = x with data.d.y as {3, 4} }",
    "data undefined value": "p := x if { x := data.d with data.d as input.nope }",
    "data then plain": "p := [a, b] if { a := data.d.x with data.d.x as 9\nb := data.d.x }",
    "data dynamic key": 'p := x if { k := "bob"\nx := data.roles[k] with data.roles.bob as 2 }',
    # rules
    "rule mocked": "r := 1\nq := r + 1\np := [x, y] if { x := q with data.t.r as 10\ny := q }",
    "rule memo reverse": "r := 1\nq := r + 1\np := [y, x] if { y := q\nx := q with data.t.r as 9 }",
    "rule not evaluated": "r := 1 / 0\np := x if { x := r with data.t.r as 3 }",
    "set rule mocked": "s contains 1\np := x if { x := s with data.t.s as [9] }",
    "object rule mocked": 'o[k] := 1 if some k in ["a"]\np := x if { x := o with data.t.o as 2 }',
    "not with": "r if false\np if { not r with data.t.r as false }",
    # builtins
    "builtin value": "p := x if { x := count([1, 2]) with count as 7 }",
    "builtin by function": "mc(_) := 9\np := x if { x := count([1, 2]) with count as mc }",
    "builtin transitively": "q := count([1])\np := [y, z] if { y := q with count as 5\nz := q }",
    "now_ns value": "p := x if { x := time.now_ns() with time.now_ns as 0 }",
    "now_ns rule": "q := time.now_ns()\np := x if { x := q with time.now_ns as 5 }",
    "builtin value args undefined": "p := x if { x := count(input.no) with count as 1 }",
    "builtin dotted": 'p := x if { x := object.get({}, "a", 0) with object.get as 4 }',
    "output form mocked": "f(_) := 2\ng(_) := 1\np if { f(true, 1) with f as g }",
    # user functions
    "function value": "f(_) := 2\np := y if { y := f(1) with f as 7 }",
    "function by function": "f(_) := 2\ng(_) := 3\np := y if { y := f(1) with f as g }",
    "mock calls original": "f(_) := 2\ng(x) := f(x)\np := y if { y := f(1) with f as g }",
    "mock sees no mock": (
        "f(_) := 1\ng(x) := count(x)\np := y if { y := f([1]) with f as g with count as 5 }"
    ),
    "mock rule sees no mock": (
        "f(_) := 1\nr := count([1])\ng(_) := r\np := y if { y := f(1) with f as g with count as 5 }"
    ),
    "mock sees data and input": (
        "f(_) := 1\ng(_) := [data.d.x, input.a]\np := y if { y := f(1) with f as g "
        "with data.d.x as 7 with input.a as 8 }"
    ),
    "last with wins": "f(_) := 1\np := y if { y := f(1) with f as 5 with f as 6 }",
    "value from input": "f(_) := 1\np := y if { y := f(1) with f as input.v }",
    "arity mismatch": "f(_) := 1\ng(_, _) := 2\np := y if { y := f(1) with f as g }",
    "function through rules": "f(x) := x\nq := f(1)\nr := q + 1\np := y if { y := r with f as 5 }",
    "nested withs": (
        "f(_) := 1\ng(_) := 2\nq := [f(0), count([])]\nr := x if { x := q with count as 3 }\n"
        "p := [a, b] if { a := r with f as g\nb := r }"
    ),
    # input
    "input iteration": "p contains x if { input.q[_] = x with input.q as [3, 4] }",
    "input part of whole": 'p := x if { x := input with input.a as "x" with input.a.b as "y" }',
    "some in with": 'p contains [k, v] if { some k, v in input with input.foo as "bar" }',
    "with iterating bindings": (
        "p := [x | some x in input.xs with input.xs as [1, 2, 3]]\n"
        "q contains [x, y] if { some x in input.xs with input.xs as [1, 2]\ny := x * 10 }"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_with_agrees_with_regorus(name: str) -> None:
    ours, theirs = _both(CASES[name], input_doc={"v": 11, "xs": [9]})
    assert agree(ours, theirs), (ours, theirs)


def test_with_on_a_rule_in_a_package_object() -> None:
    sources = {
        "lib.rego": "package lib\nr := 1\nu := [r]\n",
        "p.rego": "package t\np := x if { x := data.lib with data.lib.r as 5 }\n",
    }
    ours = Compiled(sources, ["t/p"]).eval("t/p", None)
    assert ours == Oracle(sources).eval("t/p", None) == ("value", {"r": 5.0, "u": [5.0]})


def test_with_binds_every_solution() -> None:
    ours, theirs = _both(CASES["with iterating bindings"], "t/q", input_doc={})
    assert ours == theirs == ("value", [[1.0, 10.0], [2.0, 20.0]])


@pytest.mark.parametrize(
    ("src", "construct"),
    [
        ("r := {}\np if { r with data.t.r.a as 1 }", "`with data.t.r.a` on part of rule t.r"),
        ("r := 1\np if { r with data.t as {} }", "`with data.t` on a package holding rules"),
        ("f(_) := 1\np if { f(1) with data.t.f as 2 }", "`with data.t.f` on a function"),
        (
            "p if { data.a with data.a as 1 }\nq if { data.a with data.a.b as 1 }",
            "`with data.a` beside `with data.a.b` (one inside the other)",
        ),
        ("r := 1\np if { r with r as 2 }", "`with r`: neither input, data nor a function"),
        ("p if { 1 with nope.fn as 2 }", "`with nope.fn`: neither input, data nor a function"),
        ("p if { every x in [1] { x } with input as 1 }", "`with` on a Every literal"),
    ],
)
def test_refused_with_names_the_construct(src: str, construct: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": "package t\n" + src}, None, ["t/p"])
    assert info.value.kind == "unsupported"
    assert f"unsupported: {construct}" in str(info.value), str(info.value)


# ------------------------------------------------------------ generated programs

_VALUES = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(['"s"', "true", "null", "[1, 2]", '{"x": 4}', "{1}", "[]"]),
).map(str)
_READS = ["r", "q", "h", "data.d", "data.d.x", "k", "count(input.xs)", "f(input.n)"]
_MOCKS = [
    "{d} as {v}",
    "data.t.r as {v}",
    "data.t.q as {v}",
    "count as {v}",
    "count as g",
    "f as {v}",
    "f as g",
    "input.n as {v}",
    "input.xs as {v}",
    "input as {v}",
]
_PROGRAM = """\
r := data.d.x
q := count(input.xs)
f(a) := a + 1
g(a) := [a]
h := f(input.n)
k := [r, q, h]
p := [a, b, c] if {{
\ta := {read1} with {mock1}
\tb := {read2}
\tc := {read3} with {mock2} with {mock3}
}}
"""


@st.composite
def _programs(draw: st.DrawFn) -> str:
    d = draw(st.sampled_from(["data.d", "data.d.x"]))  # never both: refused
    mocks = [draw(st.sampled_from(_MOCKS)).format(d=d, v=draw(_VALUES)) for _ in range(3)]
    reads = [draw(st.sampled_from(_READS)) for _ in range(3)]
    return _PROGRAM.format(
        read1=reads[0],
        read2=reads[1],
        read3=reads[2],
        mock1=mocks[0],
        mock2=mocks[1],
        mock3=mocks[2],
    )


_INPUTS = st.fixed_dictionaries(
    {
        "n": st.one_of(st.integers(-2, 2), st.just("s")),
        "xs": st.lists(st.integers(0, 3), max_size=3),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_programs(), _INPUTS)
def test_generated_with_programs_agree_with_regorus(src: str, input_doc: dict) -> None:
    data = {"d": {"x": 1, "y": 2}}
    ours, theirs = _both(src, data=data, input_doc=input_doc)
    assert agree(ours, theirs), (src, json.dumps(input_doc), ours, theirs)
