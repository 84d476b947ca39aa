"""Everyday Rego constructs against regorus: the output-argument call form, and more.

Each case compiles a small policy and compares its answers with regorus's on
the same inputs (values, undefined, errors); hypothesis generates the inputs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_sources
from policies.runtime.values import MAX_EXACT_INT
from tests.rego_oracle import Compiled, Oracle, agree

_INPUTS: list[Any] = [
    {},
    {"xs": [1, 2, 3], "s": "a.b", "n": 2},
    {"xs": [], "s": "", "n": 0},
    {"xs": "abc", "s": 5, "n": "x"},
    {"xs": {"a": 1}, "s": "x.y.z", "n": 3},
]


def check(src: str, inputs: list[Any] = _INPUTS, entry: str = "p/x", data: Any = None) -> None:
    sources = {"p.rego": src}
    ours, theirs = Compiled(sources, [entry], data), Oracle(sources, data)
    for doc in inputs:
        got, want = ours.eval(entry, doc), theirs.eval(entry, doc)
        assert agree(got, want), (src, doc, got, want)


# --------------------------------------------------- the output-argument form

OUTPUT_FORM = [
    "x := n if count(input.xs, n)",
    "x if count([1, 2], 2)",
    "x if count([1, 2], input.n)",
    "x if not count([1, 2], 3)",
    'x := [a, b] if split(input.s, ".", [a, b])',
    'x := a if split(input.s, ".", [a, "y"])',
    "x := n if { n > 1; count(input.xs, n) }",
    "x := n if { n = 1; count(input.xs, n) }",
    "x := n if { n := 3; count(input.xs, n) }",
    "x := n if { some n in [1, 2, 3]; count(input.xs, n) }",
    "x := ns if ns := [n | count(input.xs, n)]",
    "x if count(input.xs, _)",
    'x := y if base64.encode("a", y)',
    "x := n if count(input.xs, n) with input.xs as [1]",
    "f(a) := a + 1\nx := y if f(input.n, y)",
    "f(a) := a + 1\nx if f(input.n, 3)",
    "f(a, b) := a + b\nx := y if f(1, input.n, y)",
    "f(a) := a\nx := y if data.p.f(input.n, y)",
    "x := n if { count(input.xs, n); count(input.xs, m); n == m }",
]


@pytest.mark.parametrize("body", OUTPUT_FORM)
def test_output_argument_form(body: str) -> None:
    check("package p\n" + body + "\n")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), max_size=4),
    st.integers(0, 5),
    st.sampled_from(["count", "sum", "max", "sort", "to_number"]),
)
def test_output_argument_form_generated(xs: list[int], n: int, fn: str) -> None:
    src = f"package p\nx := y if {fn}(input.xs, y)\nz if {fn}(input.xs, input.n)\n"
    sources = {"p.rego": src}
    ours, theirs = Compiled(sources, ["p/x", "p/z"]), Oracle(sources)
    doc = {"xs": xs, "n": n}
    for entry in ("p/x", "p/z"):
        assert agree(ours.eval(entry, doc), theirs.eval(entry, doc)), (src, doc)


# ------------------------------------------- keywords as reference segments

_KEYWORD_DOC = {"in": 1, "every": {"if": 2}, "contains": 3, "not": [4], "true": "t"}


@pytest.mark.parametrize(
    ("dotted", "bracketed"),
    [
        ("input.in", 'input["in"]'),
        ("input.every.if", 'input["every"]["if"]'),
        ("input.contains", 'input["contains"]'),
        ("input.not[0]", 'input["not"][0]'),
        ("input.true", 'input["true"]'),
        ("data.d.every.if", 'data.d["every"]["if"]'),
        ("[v | some v in input.not]", '[v | some v in input["not"]]'),
        ("{k | some k in input}.in", '{k | some k in input}["in"]'),
    ],
)
def test_keywords_as_reference_segments(dotted: str, bracketed: str) -> None:
    """regorus refuses ``input.in`` (OPA accepts it): we read it as ``input["in"]``."""
    ours = Compiled({"p.rego": f"package p\nx := {dotted}\n"}, ["p/x"], {"d": _KEYWORD_DOC})
    theirs = Oracle({"p.rego": f"package p\nx := {bracketed}\n"}, {"d": _KEYWORD_DOC})
    for doc in [_KEYWORD_DOC, {}, {"in": [1, 2]}]:
        assert agree(ours.eval("p/x", doc), theirs.eval("p/x", doc)), (dotted, doc)


def test_keywords_stay_keywords_elsewhere() -> None:
    """Strings, comments and imports keep their text; ``x in y`` is still membership."""
    src = 'package p\nimport future.keywords.in\nx := [1 in input.in, "a.in", input.x.if] # y.in\n'
    assert Compiled({"p.rego": src}, ["p/x"]).eval("p/x", {"in": [1], "x": {"if": 2}}) == (
        "value",
        [True, "a.in", 2.0],
    )


def test_errors_after_a_respelled_segment_name_the_users_column() -> None:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": "package p\nx := input.in.every + )\n"}, None, ["p/x"])
    assert str(info.value).startswith("p.rego:2:23: error:")


# --------------------------------------------------------- no line-length limit


def _eval(src: str, entry: str = "p/x", doc: Any = None) -> Any:
    return Compiled({"p.rego": src}, [entry]).eval(entry, {} if doc is None else doc)


def test_a_100_kib_jwt_on_one_line_compiles() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9." + "QUJD" * 25_600 + ".c2ln"
    src = (
        f'package p\ntoken := "{jwt}"\n'
        'x := [count(token), token == input.t, startswith(token, "eyJ")]\n'
    )
    assert _eval(src, doc={"t": jwt}) == ("value", [float(len(jwt)), True, True])
    raw = src.replace(f'"{jwt}"', f"`{jwt}`")
    assert _eval(raw, doc={"t": jwt + "x"}) == ("value", [float(len(jwt)), False, True])


def test_long_lines_of_many_short_items_compile() -> None:
    items = ", ".join(f'"k{i}": [{i}, "v{i}"]' for i in range(2000))
    src = f"package p\nobj := {{{items}}}\nx := [count(obj), obj.k1999[1], obj[input.k][0]]\n"
    assert _eval(src, doc={"k": "k7"}) == ("value", [2000.0, "v1999", 7.0])


def test_a_line_that_cannot_be_shortened_is_refused_with_its_place() -> None:
    src = "package p\nx := 1" + " " * 1100 + "\n"
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": src}, None, ["p/x"])
    assert info.value.kind == "unsupported" and str(info.value).startswith("p.rego:2:")


def test_error_columns_past_a_long_string_are_the_users() -> None:
    src = 'package p\nx := "' + "a" * 5000 + '" +\n'
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": src}, None, ["p/x"])
    assert str(info.value).startswith("p.rego:3:1:") or str(info.value).startswith("p.rego:2:")


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=150, max_size=400), st.booleans())
def test_long_string_literals_agree_with_regorus(value: str, raw: bool) -> None:
    """Literals past the placeholder threshold but within regorus's line limit: both
    sides can parse them, so the placeholder path is checked against regorus."""
    if raw:
        if "`" in value:
            return
        literal = f"`{value}`"
    else:
        literal = json.dumps(value, ensure_ascii=bool(len(value) % 2))
    src = f"package p\ns := {literal}\nx := [s, count(s), s == input.s, {literal} == s]\n"
    if max(len(line.encode()) for line in src.splitlines()) > 1000:
        return  # past regorus's own line limit
    sources = {"p.rego": src}
    try:
        oracle = Oracle(sources)
    except RuntimeError:
        return  # regorus's lexer refuses some raw strings (a NUL in one)
    got = Compiled(sources, ["p/x"]).eval("p/x", {"s": value})
    assert agree(got, oracle.eval("p/x", {"s": value}))
    assert got[1][0] == value and got[1][2] is True


# ------------------------------------------------------------------ integers


@pytest.mark.parametrize(
    "literal",
    [
        "28857836529306024611913",  # regorus reads it as a double: its value passes 2^64
        "-28857836529306024611913",
        str(MAX_EXACT_INT + 1),
        str(-MAX_EXACT_INT - 1),
        "1" + "0" * 400,
        "1e40",
    ],
)
def test_integer_literals_beyond_the_exact_range_are_refused(literal: str) -> None:
    src = f"package p\nx := [1,\n  {literal} != 0]\n"
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": src}, None, ["p/x"])
    assert info.value.kind == "unsupported"
    assert str(info.value).startswith("p.rego:3:3: unsupported: integer literal ")
    assert "is beyond" in str(info.value)


def test_integer_literals_within_the_range_are_exact() -> None:
    big = MAX_EXACT_INT
    src = f"package p\nx := [{big}, -{big}, {big} == {big - 1} + 1, 1e3, 1.5]\n"
    assert Compiled({"p.rego": src}, ["p/x"]).evaluators["p/x"].evaluate({}) == [
        big,
        -big,
        True,
        1000,
        1.5,
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"a": {"b": [1, MAX_EXACT_INT + 1]}}, 'data document["a"]["b"][1]'),
        ({"n": -(10**30)}, 'data document["n"]'),
    ],
)
def test_integers_beyond_the_range_in_the_data_document_are_refused(data: Any, where: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": "package p\nx := 1\n"}, data, ["p/x"])
    assert info.value.kind == "unsupported" and str(info.value).startswith(
        f"unsupported: {where}: integer "
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integer_literals_are_exact_or_refused(n: int) -> None:
    src = f"package p\nx := {n}\ny := {n} == input.n\n"
    if abs(n) > MAX_EXACT_INT:
        with pytest.raises(CompileError):
            compile_sources({"p.rego": src}, None, ["p/x"])
        return
    assert Compiled({"p.rego": src}, ["p/x"]).evaluators["p/x"].evaluate({}) == n


# -------------------------------------- multi-segment and bracketed rule heads

REF_HEADS = [
    "p.q.r := 1\np.q.s := 2",
    "p.q.r := 1\np[x] := 2 if x := input.k",
    'p.q.r := 1\np.q[x] := input.n if x := "r"',
    "p[q].r := v if some q, v in input.o",
    "p[q].r := v if some q, v in input.o\np[q].s := 1 if some q in input.ks",
    "p[q].r := v if some q, v in input.o\np.a.r := 1",
    "p[q].r := v if some q, v in input.o\np[q] := 3 if q := input.k",
    'p[q].r := {"a": 1} if q := input.k\np[q].r.b := 2 if q := input.k',
    "a.b contains x if some x in input.ks\na.c := 3",
    "a.b[k] := v if some k, v in input.o\na.b.y := 2",
    "p.q.r := 1 if false\np.q.s := 2",
    "default p.q.r := 5\np.q.s := input.n",
    "p.q.r := 1\nx := p.q\ny := p\nz := data.p.p.q.r",
    "p[q].r := 1 if some q in input.ks",
    "p.q[r] if some r in input.ks",
    "p[q].r if some q in input.ks",
    "p.q.r := 1 if { input.n > 1 } else := 2",
    "p[q].r := v if { some q in input.ks; v := input.n } else := 2",
    'p["q"].r := 1\np.q["s"] := 2',
    "x := p.a.r\np[q].r := 1 if some q in input.ks",
    "x := p[input.k]\np[q].r.s := q if some q in input.ks",
    "a.b.f(x) := x + 1\ny := a.b.f(input.n)",
    "p.q.r := input.n\np.q.s := input.n\nx := [v | some v in p.q]",
]
_HEAD_INPUTS: list[Any] = [
    {},
    {"o": {"a": 1, "b": [2]}, "ks": ["a", "b"], "k": "a", "n": 2},
    {"o": {"a": 1}, "ks": ["a", 1, "a", [1]], "k": "c", "n": 0},
    {"o": {"c": 3}, "ks": [], "k": "b", "n": 5},
    {"o": [1, 2], "ks": "ab", "k": 1, "n": "x"},
]


@pytest.mark.parametrize("rules", REF_HEADS)
def test_rule_heads_with_references(rules: str) -> None:
    check("package p\n" + rules + "\n", _HEAD_INPUTS, entry="p")


def test_rule_heads_with_references_across_packages() -> None:
    sources = {
        "a.rego": "package a\nb.c := 1\nb[k] := 2 if k := input.k\n",
        "b.rego": "package q\nx := data.a.b\ny := data.a.b.c\nz := data.a\n",
    }
    ours, theirs = Compiled(sources, ["q", "a"]), Oracle(sources)
    for doc in _HEAD_INPUTS:
        for entry in ("q", "a"):
            assert agree(ours.eval(entry, doc), theirs.eval(entry, doc)), (entry, doc)


def test_computed_keys_in_contains_heads_are_refused() -> None:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": "package p\na[k] contains 1 if k := 2\n"}, None, ["p"])
    assert str(info.value).startswith("p.rego:2:1: unsupported: a `contains` rule")


_segment = st.sampled_from(["a", "b", "[q]", "[r]"])
_value = st.sampled_from(["1", "2", "q", "input.n", '{"z": 1}', "[q]"])


@st.composite
def _head_rule(draw: st.DrawFn) -> str:
    segments = draw(st.lists(_segment, min_size=0, max_size=2))
    head = "p" + "".join(s if s.startswith("[") else "." + s for s in segments)
    value = draw(_value)
    if "[r]" in head and "r" not in value:
        return f"{head} := {value} if {{ some q, r in input.o }}"
    body = draw(
        st.sampled_from(
            ["some q in input.ks", "q := input.k", "q := 1", "{ some q, r in input.o }"]
        )
    )
    return f"{head} := {value} if {body}"


@settings(max_examples=60, deadline=None)
@given(st.lists(_head_rule(), min_size=1, max_size=3))
def test_generated_rule_heads_agree_with_regorus(rules: list[str]) -> None:
    src = "package p\n" + "\n".join(rules) + "\nx := p[input.k]\n"
    sources = {"p.rego": src}
    theirs = Oracle(sources)
    try:
        ours = Compiled(sources, ["p/p", "p/x"])
    except CompileError as err:  # `p := 1` beside `p.a := 1`: OPA refuses it too
        assert err.kind == "unsupported" and ("inside it" in str(err) or "both" in str(err))
        return
    for doc in _HEAD_INPUTS[:4]:
        for entry in ("p/p", "p/x"):
            got, want = ours.eval(entry, doc), theirs.eval(entry, doc)
            assert agree(got, want), (src, entry, doc, got, want)
