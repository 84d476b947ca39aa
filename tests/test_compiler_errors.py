"""Bad policies get one clear line naming file:line:col, and the right exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.compiler import CompileError, compile_sources

HEADER = "package t\nimport rego.v1\n"


def _error(src: str, entry: str = "t/x") -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": HEADER + src}, None, [entry])
    return info.value


@pytest.mark.parametrize(
    ("src", "where", "construct"),
    [
        ("x := http.send({})", "p.rego:3:6", "builtin function `http.send`"),
        (
            "r := {}\nx if { y := 1 with data.t.r.a as 2 }",
            "p.rego:4:20",
            "`with data.t.r.a` on part of rule t.r",
        ),
        ("x := 9223372036854775808", "p.rego:3:6", "integer literal 9223372036854775808"),
        ('y := "t"\nx := data[y].x', "p.rego:4:6", "a computed key into data, where rules are"),
    ],
)
def test_unsupported_constructs_name_place_and_construct(
    src: str, where: str, construct: str
) -> None:
    err = _error(src)
    assert err.kind == "unsupported"
    assert err.exit_code == 3
    line = str(err)
    assert line.startswith(where), line
    assert f"unsupported: {construct}" in line, line
    assert "\n" not in line


def test_syntax_error_is_one_line_with_location() -> None:
    err = _error("x := {\n")
    assert err.exit_code == 2
    assert str(err).startswith("p.rego:"), str(err)
    assert "Stack backtrace" not in str(err)
    assert "\n" not in str(err)


def test_unsafe_variable_is_a_type_error() -> None:
    err = _error("x if { y > 1 }")
    assert err.exit_code == 2
    assert str(err).startswith("p.rego:3:8: error: var y is unsafe"), str(err)


def test_recursion_is_an_error_once_evaluated_as_in_regorus() -> None:
    from policies.runtime import UNDEFINED, PolicyError, PolicyModule

    src = HEADER + "x if y\ny if x\nz := 1\nw := w if false\nf(n) := f(n)\nv := f(1)\n"
    entries = ["t/x", "t/y", "t/z", "t/w", "t/v"]
    module = PolicyModule.load(compile_sources({"p.rego": src}, None, entries))
    for entry in ("t/x", "t/y", "t/v"):
        with pytest.raises(PolicyError):
            module.evaluator(entry).evaluate({})
    assert module.evaluator("t/z").evaluate({}) == 1
    assert module.evaluator("t/w").evaluate({}) is UNDEFINED  # never reaches itself


def test_unknown_entrypoint() -> None:
    err = _error("x := 1", entry="t/nope")
    assert "entrypoint 't/nope'" in str(err)


def test_wrong_arity_is_an_error_once_evaluated_as_in_regorus() -> None:
    from policies.runtime import UNDEFINED, PolicyError, PolicyModule

    src = HEADER + 'x := startswith("a")\ny := 1\nz if { false; count(1, 2) }\n'
    module = PolicyModule.load(compile_sources({"p.rego": src}, None, ["t/x", "t/y", "t/z"]))
    with pytest.raises(PolicyError):
        module.evaluator("t/x").evaluate({})
    assert module.evaluator("t/y").evaluate({}) == 1
    assert module.evaluator("t/z").evaluate({}) is UNDEFINED  # not an error


def test_invalid_regex_names_the_call() -> None:
    err = _error('x if regex.match("(a", input.s)')
    assert str(err).startswith("p.rego:3:6"), str(err)
    assert "regex.match" in str(err)


def test_files_that_are_not_utf8_name_line_col_and_byte(tmp_path: Path) -> None:
    from policies.compiler import compile_files, load_data, read_sources

    src = tmp_path / "p.rego"
    src.write_bytes(b'package t\n# \xc3\xa9\nx := "ab\xc0"\n')
    with pytest.raises(CompileError) as info:
        read_sources([src])
    assert str(info.value) == f"{src}:3:9: error: not valid UTF-8 at byte 23"
    assert info.value.exit_code == 2
    data = tmp_path / "data.json"
    data.write_bytes(b'{\n  "k": "\xff"\n}')
    with pytest.raises(CompileError) as info:
        load_data(data)
    assert str(info.value) == f"{data}:2:9: error: not valid UTF-8 at byte 10"
    good = tmp_path / "ok.rego"
    good.write_text("package t\nx := 1\n")
    with pytest.raises(CompileError):
        compile_files([good], data, ["t/x"])


def test_nesting_is_a_located_syntax_error() -> None:
    err = _error("x := " + "[" * 40 + "]" * 40)
    assert str(err).startswith("p.rego:3:") and "nesting deeper than" in str(err)
    assert err.exit_code == 2
