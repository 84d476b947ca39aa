"""Names and scopes resolve as in regorus: imports, rules, builtins, locals and data.

regorus is the oracle. A program either agrees with it on every entrypoint, or is
refused as unsupported (exit 3) with its place; a program regorus evaluates is
never reported as an error (exit 2), and one regorus rejects is never compiled
into a module that answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_sources
from tests.rego_oracle import Compiled, Oracle, agree

LIB = 'package lib\nimport rego.v1\nv := 1\no := {"a": 2}\nf(x) := x + 10\n'


def _outcomes(
    sources: Mapping[str, str], data: Any, entrypoints: list[str], doc: Any
) -> tuple[list[Any], list[Any]] | CompileError:
    try:
        ours = Compiled(sources, entrypoints, data)
    except CompileError as err:
        return err
    theirs = Oracle(sources, data)
    return [ours.eval(e, doc) for e in entrypoints], [theirs.eval(e, doc) for e in entrypoints]


def _assert_like_regorus(
    sources: Mapping[str, str], data: Any, entrypoints: list[str], doc: Any = None
) -> None:
    doc = {} if doc is None else doc
    try:
        oracle = Oracle(sources, data)
    except RuntimeError:
        with pytest.raises(CompileError) as info:
            Compiled(sources, entrypoints, data)
        assert info.value.exit_code == 2, str(info.value)
        return
    try:
        ours = Compiled(sources, entrypoints, data)
    except CompileError as err:
        assert "\n" not in str(err)
        if err.exit_code == 3:
            assert ":" in str(err).split(" unsupported:")[0], str(err)  # has a place
            return
        refs = [oracle.eval(e, doc) for e in entrypoints]
        assert any(r[0] == "error" for r in refs), f"valid program reported as error: {err}"
        return
    for entry in entrypoints:
        mine, ref = ours.eval(entry, doc), oracle.eval(entry, doc)
        assert agree(mine, ref), (
            f"{entry} on {json.dumps(doc)}:\n  compiled: {mine}\n  regorus:  {ref}\n"
            + "\n".join(sources.values())
        )


def _value(sources: Mapping[str, str], entry: str, data: Any = None, doc: Any = None) -> Any:
    """Our answer, after checking regorus gives the same one."""
    _assert_like_regorus(sources, data, [entry], doc)
    return Compiled(sources, [entry], data).eval(entry, {} if doc is None else doc)


def _refused(sources: Mapping[str, str], entry: str, data: Any = None) -> CompileError:
    with pytest.raises(CompileError) as info:
        Compiled(sources, [entry], data)
    return info.value


# ------------------------------------------------------------------- imports


def test_rule_shadows_import_alias_of_a_package() -> None:
    rules = (
        "package rules\nimport data.lib as lib_alias\nimport rego.v1\n"
        'lib_alias := {"v": "from rule"}\nshadow if lib_alias.v == "from rule"\n'
    )
    assert _value({"lib.rego": LIB, "r.rego": rules}, "rules/shadow") == ("value", True)


@pytest.mark.parametrize(
    ("imports", "rules", "doc", "want"),
    [
        ("import input.a", "a := 20\nc := a", {"a": 5}, 20.0),
        ("import data.x as y", "y := 3\nc := y", {}, 3.0),
        ("import data.lib.v", "v := 2\nc := v", {}, 2.0),
        ("import data.lib.o", 'o := {"a": 7}\nc := o.a', {}, 7.0),
        ("import input.s", "s contains 1\nc := s", {"s": 3}, [1.0]),
    ],
)
def test_rule_shadows_import(imports: str, rules: str, doc: Any, want: Any) -> None:
    src = f"package g\nimport rego.v1\n{imports}\n{rules}\n"
    got = _value({"lib.rego": LIB, "g.rego": src}, "g/c", {"x": 1}, doc)
    assert got == ("value", want)


def test_rule_in_another_file_of_the_package_shadows_import() -> None:
    sources = {
        "a.rego": "package g\nimport input.s\nq := s\n",
        "b.rego": "package g\ns := 2\n",
    }
    assert _value(sources, "g/q", doc={"s": 3}) == ("value", 2.0)


@pytest.mark.parametrize(
    ("alias", "call", "want"),
    [
        ("count", "count([1, 2])", 2.0),  # the builtin, not the import
        ("lower", 'lower("A")', "a"),
        ("time", "time.now_ns() > 0", True),
    ],
)
def test_import_alias_never_shadows_a_builtin(alias: str, call: str, want: Any) -> None:
    lib = "package lib\nimport rego.v1\nnow_ns() := -1\nf(x) := 9\nv := 7\n"
    src = f"package g\nimport rego.v1\nimport data.lib as {alias}\nr := {call}\n"
    assert _value({"lib.rego": lib, "g.rego": src}, "g/r") == ("value", want)


def test_alias_naming_a_builtin_namespace_still_reaches_the_builtin() -> None:
    lib = 'package lib\nimport rego.v1\nunmarshal(_) := {"from": "lib"}\n'
    src = "package g\nimport rego.v1\nimport data.lib as json\nr := json.unmarshal(`[1]`)\n"
    assert _value({"lib.rego": lib, "g.rego": src}, "g/r") == ("value", [1])


def test_calls_resolve_in_the_package_first_then_builtins_then_data() -> None:
    sources = {
        "j.rego": "package g.json\nunmarshal(x) := 7\n",
        "l.rego": "package g.lib\ncheck(x) := x + 1\n",
        "g.rego": (
            "package g\nimport rego.v1\ncount(x) := 5\n"
            'r := [count([1]), json.unmarshal("1"), lib.check(1), data.g.lib.check(2)]\n'
        ),
    }
    assert _value(sources, "g/r") == ("value", [5.0, 7.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "src",
    [
        "import data.lib as l\nr := l.f(1)",  # regorus: could not find function l.f
        "import data.lib.f\nr := f(1)",
    ],
)
def test_calls_through_import_aliases_name_no_function(src: str) -> None:
    sources = {"lib.rego": LIB, "g.rego": f"package g\nimport rego.v1\n{src}\nok := 1\n"}
    # regorus fails the call when it evaluates it, OPA when it compiles the policy:
    # refused at build time where an entrypoint reaches it.
    assert Oracle(sources).eval("g/r", {})[0] == "error"
    with pytest.raises(CompileError) as info:
        compile_sources(sources, None, ["g/r"])
    assert info.value.kind == "unsupported"
    assert str(info.value).startswith("g.rego:4:6: unsupported: unknown function "), info.value
    assert Compiled(sources, ["g/ok"]).eval("g/ok", {}) == ("value", 1.0)


@pytest.mark.parametrize(
    "body",
    ["false; count(1, 2)", "false; f(1, 2)", "false; y := f"],
)
def test_call_errors_count_only_when_the_call_is_evaluated(body: str) -> None:
    src = f"package test\nimport rego.v1\nf(x) := 1\nq if {{ {body} }}\nr := f(1, 2) if false\n"
    assert _value({"t.rego": src}, "test") == ("value", {})


@pytest.mark.parametrize(
    ("call", "name"),
    [("foo(1)", "foo"), ("x.y(1)", "x.y"), ("data.lib.nope(1)", "data.lib.nope")],
)
def test_unknown_function_is_refused_where_an_entrypoint_reaches_it(call: str, name: str) -> None:
    src = f"package test\nimport rego.v1\nq if {{ false; {call} }}\nok := 1\n"
    sources = {"t.rego": src, "lib.rego": LIB}
    for entry in ("test", "test/q"):
        with pytest.raises(CompileError) as info:
            compile_sources(sources, None, [entry])
        assert str(info.value) == f"t.rego:3:15: unsupported: unknown function {name}"
    assert _value(sources, "test/ok") == ("value", 1.0)  # q is not reached: compiled


# ---------------------------------------------------------------- data paths


@pytest.mark.parametrize(
    ("data", "entry", "want"),
    [
        ({"test": {"rule1": 0}}, "test", {"rule1": 0.0, "q": 0.0}),  # data wins
        ({"test": {"rule1": 0}}, "test/rule1", 0.0),
        ({"test": {"rule1": 0}}, "test/q", 0.0),
        ({"test": {"other": 0}}, "test", {"other": 0.0, "rule1": 6.0, "q": 6.0}),
        ({"test": {"rule1": {"b": 2}}}, "test/rule1", {"b": 2.0}),
        ({"test": {"u": 5}}, "test/u", 5.0),  # a rule that is undefined
    ],
)
def test_data_document_overrides_rules(data: Any, entry: str, want: Any) -> None:
    src = "package test\nimport rego.v1\nrule1 := 6\nq := rule1\nu := 1 if false\n"
    assert _value({"t.rego": src}, entry, data) == ("value", want)


def test_packages_merge_with_data_at_every_level() -> None:
    sources = {
        "ab.rego": "package a.b\nimport rego.v1\nr := 1\ns contains 2\n",
        "c.rego": "package c\nimport rego.v1\nq := data.a\nks := {k | data.a.b[k]}\n",
    }
    data = {"a": {"c": 2, "b": {"z": 3, "s": [9]}}}
    want = {"b": {"r": 1.0, "s": [9.0], "z": 3.0}, "c": 2.0}
    assert _value(sources, "a", data) == ("value", want)
    assert _value(sources, "c/q", data) == ("value", want)
    assert _value(sources, "c/ks", data) == ("value", ["r", "s", "z"])


def test_numbers_index_data_objects_as_strings() -> None:
    src = "package test\nimport rego.v1\na := [data[1], data.test[2], data.arr[0]]\n"
    data = {"1": "hello", "test": {"2": 100}, "arr": ["first"]}
    assert _value({"t.rego": src}, "test/a", data) == ("value", ["hello", 100.0, "first"])


@pytest.mark.parametrize(
    ("sources", "data"),
    [
        ({"t.rego": "package test\nr := 1\n"}, {"test": 5}),
        ({"t.rego": "package a.b\nr := 1\n"}, {"a": {"b": 5}}),
        ({"t.rego": "package test\ndefault r := count([1])\nr := 5\n"}, None),
        ({"t.rego": 'package test\ndefault r := {"b": 5}.b\n'}, None),
    ],
)
def test_rules_regorus_rejects_only_when_evaluated(sources: dict[str, str], data: Any) -> None:
    # A rule under a scalar in the data, or with an invalid default value: an
    # error wherever it is evaluated, and nowhere else.
    sources = {**sources, "o.rego": "package other\nq := 1\n"}
    _assert_like_regorus(sources, data, ["other/q"])
    assert Compiled(sources, ["other/q"], data).eval("other/q", {}) == ("value", 1.0)
    root = "a" if "a.b" in sources["t.rego"] else "test"
    assert Oracle(sources, data).eval(root, {})[0] == "error"
    assert Compiled(sources, [root], data).eval(root, {})[0] == "error"


def test_reference_to_the_enclosing_package_is_refused_with_its_place() -> None:
    # regorus leaves the referring module's rules out of that value; we refuse.
    err = _refused({"t.rego": "package test\nrule1 := 6\nq := data.test\n"}, "test/q")
    assert err.exit_code == 3
    assert str(err).startswith("t.rego:3:6: unsupported: reference to data.test")


# -------------------------------------------------------------------- locals


@pytest.mark.parametrize(
    ("rules", "doc"),
    [
        ("r := 3\nq := x if { r := 4; x := r }", {}),
        ("r := 3\nf(r) := r + 1\nq := f(10)", {}),
        ("import input.a\nf(a) := a + 1\nq := f(10)", {"a": 1}),
        ("import input.a\nq := x if { a := 4; x := a }", {"a": 1}),
        ("import input.x\nq if { every x in [5] { x > 1 } }", {"x": 0}),
        ("r := 3\nq := x if { [r, x] = [3, 4] }", {}),
        ("q := x if { x := 1; y := [x | x := 2]; x == 1 }", {}),
    ],
)
def test_locals_shadow_rules_and_imports(rules: str, doc: Any) -> None:
    src = f"package test\nimport rego.v1\n{rules}\n"
    _assert_like_regorus({"t.rego": src}, None, ["test/q"], doc)
    Compiled({"t.rego": src}, ["test/q"])  # and it compiles


def test_shadowing_locals_never_share_a_wasm_local_with_other_names() -> None:
    # a shadowing `x` gets a wasm local of its own, whose name no Rego variable has
    names = [f"x_{i}" for i in range(60)]
    decls = "\n".join(f"  {n} := {i}" for i, n in enumerate(names))
    head = f"q := [x, y,\n  {', '.join(names)}]"
    body = f"  x := 1\n{decls}\n  y := [x | x := 2]"
    src = f"package test\nimport rego.v1\n{head} if {{\n{body}\n}}\n"
    want = [1.0, [2.0], *[float(i) for i in range(60)]]
    assert _value({"t.rego": src}, "test/q") == ("value", want)


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        ("r := 3\nq := x if { some r in [5]; x := r }", "t.rego:4:18"),
        ("import input.x\nq := [x | some x in [1]]", "t.rego:4:16"),
        ("q := x if { x := 1; x := 2 }", "t.rego:3:21"),
        ("q := x if { x = 1; x := 2 }", "t.rego:3:13"),
        ("q contains x if { some x in [1]; some x in [2] }", "t.rego:3:39"),
        ("f(x) := x if { x := 1 }\nq := f(1)", "t.rego:3:16"),
        ("q := y if { x := 1; y := [x | some x in [2]] }", "t.rego:3:36"),
    ],
)
def test_redeclared_names_are_errors_like_regorus(rules: str, where: str) -> None:
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    assert Oracle(sources).eval("test/q", {})[0] == "error"
    err = _refused(sources, "test/q")
    assert err.exit_code == 2
    assert str(err).startswith(f"{where}: error: var `"), str(err)


# ------------------------------------------------------ valid, not an error


@pytest.mark.parametrize(
    ("rules", "doc"),
    [
        ("q := [a, b, c] if { [a, [b, c]] := input.x }", {"x": [1, [2, 3]]}),
        ('q := v if { {"k": v} = input.o }', {"o": {"k": 1, "j": 2}}),
        ('q := v if { {"k": v} := input.o }', {"o": {"k": 1}}),
        ('q := v if { {"k": v, "m": 1} = input.o }', {"o": {"k": 1}}),
        ('q := v if { input.o = {"k": v} }', {"o": [1]}),
        ('q := [a, b] if { [a, {"k": [b]}] := input.x }', {"x": [1, {"k": [2]}]}),
        ('q contains [k, b] if { some k, {"a": b} in input.o }', {"o": {"p": {"a": 1}, "r": 3}}),
        ("q contains [a, b] if { some [a, [b, _]] in input.x }", {"x": [[1, [2, 3]], [4, 5]]}),
        ("q := [a, b] if { [a, 1] = [2, b] }", {}),
        ("default q := [x | x := 1]", {}),
        ("default q := {x | some x in input.xs}\nq := 5 if input.b", {"xs": [1, 2]}),
        ('default q := {x: 1 | some x in ["a"]}', {}),
        ('q := {true: 1, 1: 2, null: 3, "1": 4, false: 5, 0: 6}', {}),
        ("q := {input.a: 1, input.b: 2}", {"a": False, "b": 0}),
        ("q[k] if { some k, _ in input.o }", {"o": {"FOO": 1, "BAR": 2}}),
        # regorus schedules literals so that variables are bound before use
        ("q if { y > 1; y = input.n }", {"n": 5}),
        ("q contains x if { x > 1; x = input.xs[_] }", {"xs": [1, 2, 3]}),
        ("q contains x if { x > 1; some x in input.xs }", {"xs": [1, 2, 3]}),
        ("q := z if { z == 3; z = count([1, 2, 3]) }", {}),
        ("q := [x | x > 1; x = input.xs[_]]", {"xs": [3, 1, 2]}),
        ("q contains x if { not x == 2; x = input.xs[_] }", {"xs": [1, 2, 3]}),
        ("q if { every x in input.xs { y > x; y = 10 } }", {"xs": [1, 2, 3]}),
        ("q := c if { c = b + 1; b = a * 2; a = input.n }", {"n": 4}),
        (
            'q contains n if { some {"name": n, "roles": [_]} in input.us }',
            {"us": [{"name": "a", "roles": [1]}, {"name": "b", "roles": []}]},
        ),
        ('name({"name": n}) := n\nq := [name(u) | some u in input.us]', {"us": [{"name": "a"}]}),
        ("default q := 1\ndefault q := 2", {}),  # the first default counts
        ("_ := 1\nq if { some _ in [1] }", {}),  # `some _` is a wildcard, not the rule `_`
    ],
)
def test_valid_programs_compile_and_agree(rules: str, doc: Any) -> None:
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    Compiled(sources, ["test/q"])  # never an error
    _assert_like_regorus(sources, None, ["test", "test/q"], doc)


@pytest.mark.parametrize(
    ("rules", "entry", "want"),
    [
        ("f(x) := 1", "test/f", ("undefined", None)),
        ('f() := {"a": 1}', "test/f", ("value", {"a": 1.0})),
        ('f() := {"a": 1}\ng := 1', "test", ("value", {"f": {"a": 1.0}, "g": 1.0})),
        ("f(x) := 1\ng := 2", "test", ("value", {"g": 2.0})),
        ("f() := input.x\ng := f", "test/g", ("value", 3.0)),
    ],
)
def test_functions_as_entrypoints_like_regorus(rules: str, entry: str, want: Any) -> None:
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    assert _value(sources, entry, doc={"x": 3}) == want


@pytest.mark.parametrize(
    "rules",
    [
        "q := true if { [x, y] = [1, 2, 3] }",
        'q := true if { {"a": x, "b": y} = {"a": 1, "c": 2} }',
        'q := true if { [x] = {"key": 1} }',
        "q := true if { some [x, y] in [[1, 2, 3]] }",
        "q if { y > 1; y := input.n }",  # `:=` is not moved
    ],
)
def test_programs_regorus_rejects_are_errors(rules: str) -> None:
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    assert Oracle(sources).eval("test/q", {})[0] == "error"
    assert _refused(sources, "test/q").exit_code == 2


# ------------------------------------------------------------ generated scopes

_NAMES = ["y", "a", "v", "r0", "r1", "count", "lower", "time", "lib"]
_IMPORTS = [
    "import data.lib",
    "import data.lib as {n}",
    "import data.lib.v as {n}",
    "import data.lib.o as {n}",
    "import input.a",
    "import input.a as {n}",
    "import input.o as {n}",
    "import data.doc as {n}",
    "import data.doc.k as {n}",
]
_USES = [
    "{n}",
    "{n}.a",
    "{n}.v",
    "{n}[0]",
    "count({n})",
    "lower({n})",
    "{n}(1)",
    "f({n})",
    "[x | some x in [{n}]]",
    'object.get({{"a": {n}}}, "a", 0)',
    "data.g.{n}",
    "data.lib.{n}",
]
_BODIES = [
    "{n} := {u}",  # a local shadowing whatever {n} is
    "x := {u}",
    "{u}",
    "some i, x in [{u}]",
    "not {u} == 1",
    "every e in [1] {{ {u} != e }}",
    "[{n}, z] = [{u}, 1]",  # unification: binds, or compares a rule or import
    "z > 0; z = count([{u}])",  # read before its `=` binding: scheduled
    'some [k, {{"a": w}}] in [[{u}, {{"a": 1}}]]',
]


@st.composite
def scope_programs(draw: st.DrawFn) -> tuple[dict[str, str], Any]:
    pick = lambda xs: draw(st.sampled_from(xs))  # noqa: E731
    lines = ["package g", "import rego.v1"]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(pick(_IMPORTS).format(n=pick(_NAMES)))
    lines.append("f(x) := [x]")
    if draw(st.booleans()):  # a function argument named like a rule or an import
        arg = pick(_NAMES)
        lines.append(f"h({arg}) := [{arg}, {pick(_USES).format(n=arg)}]")
        lines.append(f"hc := h({pick(['1', 'input.a', '[1]'])})")
    for i in range(draw(st.integers(1, 4))):
        name = pick(_NAMES) if draw(st.booleans()) else f"q{i}"
        use = pick(_USES).format(n=pick(_NAMES))
        body = pick(_BODIES).format(n=pick(_NAMES), u=use)
        head = pick(
            ["{n} := {u} if {{ {b} }}", "{n} if {{ {b} }}", "{n} contains {u} if {{ {b} }}"]
        )
        lines.append(head.format(n=name, u=pick(_USES).format(n=pick(_NAMES)), b=body))
    data: dict[str, Any] = {"doc": {"k": draw(st.sampled_from([1, "s", [1], {"a": 2}]))}}
    if draw(st.booleans()):
        data["g"] = {pick(_NAMES): draw(st.sampled_from([0, "d", {"a": 3}]))}
    if draw(st.booleans()):
        data["lib"] = {pick(["w", "v", "o"]): 5}
    sources = {"lib.rego": LIB, "g.rego": "\n".join(lines) + "\n"}
    return sources, data


_DOCS = [{}, {"a": "A", "o": {"a": 1}}, {"a": [1, 2], "o": 3}]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=scope_programs())
def test_generated_scopes_agree_with_regorus(program: tuple[dict[str, str], Any]) -> None:
    sources, data = program
    for doc in _DOCS:
        _assert_like_regorus(sources, data, ["g", "lib"], doc)


# ------------------------------------------------------------ odds and ends


def test_rego_v0_syntax_is_refused_as_unsupported_with_its_place() -> None:
    err = _refused({"v0.rego": "package test\nx[a] {\n  a = input.x + 5\n}\n"}, "test")
    assert err.exit_code == 3
    assert str(err).startswith("v0.rego:2:6: unsupported: Rego v0 syntax"), str(err)
    bad = _refused({"bad.rego": "package test\nx := {\n"}, "test")
    assert bad.exit_code == 2  # broken in every syntax: the user's error


@pytest.mark.parametrize(
    "rules",
    [
        "q := [input.nope, count(input.ys)]",  # stops at the undefined element
        "q := {input.nope, count(input.ys)}",
        'q := {"a": input.nope, "b": count(input.ys)}',
        "q := [count(input.ys), input.nope]",  # the error comes first
        "q := input.nope + count(input.ys)",  # operators evaluate every operand
        "q := [x | x := [input.xs[i], i]]",
    ],
)
def test_collections_evaluate_elements_like_regorus(rules: str) -> None:
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    _assert_like_regorus(sources, None, ["test/q"], {"ys": None, "xs": [1]})


@pytest.mark.parametrize(
    ("rules", "doc"),
    [
        ("q := [x | some x in input.xs] if input.b", {"xs": [1], "b": True}),
        ("q contains [x | x := y] if { y := 1 }", {}),
    ],
)
def test_head_comprehensions_under_a_body_are_refused(rules: str, doc: Any) -> None:
    # regorus cannot evaluate them ("statements not scheduled"); we say so up front.
    sources = {"t.rego": f"package test\nimport rego.v1\n{rules}\n"}
    assert Oracle(sources).eval("test/q", doc)[0] == "error"
    err = _refused(sources, "test/q")
    assert err.exit_code == 3 and "comprehension in the head" in str(err)


def test_scheduling_a_long_body_in_reverse_order_stays_fast() -> None:
    # Each literal needs the next one's variable: retrying every literal after each
    # step would be quadratic (about 20 s here); waiting on the missed variable is not.
    import time

    n = 2000
    chain = "\n".join(f"  x{i} = x{i + 1} + 1" for i in range(n))
    src = f"package t\nimport rego.v1\nq := x0 if {{\n{chain}\n  x{n} = 0\n}}\n"
    start = time.monotonic()
    compiled = Compiled({"p.rego": src}, ["t/q"])
    assert time.monotonic() - start < 6
    assert compiled.eval("t/q", {}) == ("value", float(n))


@pytest.mark.parametrize("name", ["input", "data"])
def test_rules_named_input_or_data_are_rejected_like_regorus(name: str) -> None:
    sources = {"t.rego": f"package test\n{name} := 3\nq := 1\n"}
    with pytest.raises(RuntimeError):
        Oracle(sources)
    err = _refused(sources, "test/q")
    assert err.exit_code == 2
    assert str(err) == f"t.rego:2:1: error: {name} cannot be shadowed"


def test_input_import_named_like_a_builtin_namespace() -> None:
    src = "package g\nimport rego.v1\nimport input.time\nr := [time.now_ns() > 0, time.x]\n"
    assert _value({"g.rego": src}, "g/r", doc={"time": {"x": 1}}) == ("value", [True, 1.0])


def test_rules_of_the_same_name_in_other_packages_stay_apart() -> None:
    sources = {
        "a.rego": "package a\nr := 1\nf(x) := x + 1\n",
        "b.rego": (
            "package b\nimport rego.v1\nr := 2\nf(x) := x + 2\n"
            "q := [r, data.a.r, f(0), data.a.f(0)]\n"
        ),
    }
    assert _value(sources, "b/q") == ("value", [2.0, 1.0, 2.0, 1.0])


def test_unary_minus_on_a_non_literal_fails_when_evaluated() -> None:
    sources = {"t.rego": "package test\nimport rego.v1\nq := 1\nr := -input.n\n"}
    _assert_like_regorus(sources, None, ["test/q", "test/r"], {"n": 2})
    assert Compiled(sources, ["test/q"]).eval("test/q", {}) == ("value", 1.0)
    assert Compiled(sources, ["test/r"]).eval("test/r", {})[0] == "error"
