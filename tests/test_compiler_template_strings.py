"""Template strings (``$"..{x}.."``, raw ``$`..{x}..```), which the pinned regorus does
not parse: re-spelled before it parses, evaluated through the real compiler and runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler import CompileError, compile_sources
from policies.compiler.respell import MAX_TEMPLATE_DEPTH, respell
from policies.runtime.host.base import BuiltinError
from policies.runtime.host.template_string import template_value
from policies.runtime.module import PolicyError, PolicyModule
from policies.runtime.values import RegoSet

HEADER = "package t\n"


def _eval(src: str, input: Any = None, data: Any = None, entry: str = "t/x") -> Any:
    module = PolicyModule.load(compile_sources({"p.rego": HEADER + src}, data, [entry]))
    return module.evaluator().evaluate(input)


def _error(src: str) -> str:
    with pytest.raises(CompileError) as info:
        compile_sources({"p.rego": HEADER + src}, None, ["t/x"])
    line = str(info.value)
    assert "\n" not in line and "Traceback" not in line
    return line.split(":", 1)[1]  # the place without the file name


def test_plain_and_empty_templates_are_strings() -> None:
    assert _eval('x := [$"", $"foo bar", $``, $`a\nb`]') == ["", "foo bar", "", "a\nb"]


def test_escapes_as_in_strings_and_escaped_braces() -> None:
    src = r'x := [$"\t\n\"\\\u00e9", $"\{1}", $"a \{1\} b", $"\{{1}", $"{1}\}", $"a}b"]'
    assert _eval(src) == ['\t\n"\\é', "{1}", "a {1} b", "{1", "1}", "a}b"]


def test_raw_template_keeps_backslashes_but_escapes_brace() -> None:
    assert _eval(r"x := [$`\n{1}`, $`\{1}`, $`a\{{2}`]") == ["\\n1", "{1}", "a{2"]


def test_values_are_strings_as_is_others_as_rego_text() -> None:
    src = 'x := $"{"s"} {42} {13.37} {true} {null} {[1, "a"]} {set()} {{2, 1}} {{"a": "b"}} {{}}"'
    assert _eval(src) == 's 42 13.37 true null [1, "a"] set() {1, 2} {"a": "b"} {}'


def test_undefined_expression_is_marked() -> None:
    assert (
        _eval('x := $"{input.a}, {data.b}, {input.c}"', {"c": 1}) == "<undefined>, <undefined>, 1"
    )


def test_several_values_is_an_evaluation_error() -> None:
    with pytest.raises(PolicyError, match="must not produce multiple outputs"):
        _eval('x := $"{input.xs[_]}"', {"xs": [1, 2]})
    assert _eval('x := $"{input.xs[_]}"', {"xs": [1, 1]}) == "1"  # one value, twice


def test_nesting_both_forms() -> None:
    src = 'a := "foo"\nx := $`{$"{a}"}\n{$`{$"{input.b}"}\nbaz`}`'
    assert _eval(src) == "foo\n<undefined>\nbaz"
    assert _eval(src, {"b": "bar"}) == "foo\nbar\nbaz"


def test_expressions_calls_comprehensions_and_with() -> None:
    src = (
        "a := input.a\n"
        'x := [$"{1 + 2} {{1} | {2}} {[y | some y in [3]]} {count([1])}",'
        ' $"{a with input as {"a": 7}}", $"{{k: v | some k, v in ["z"]}}"]'
    )
    assert _eval(src) == ["3 {1, 2} [3] 1", "7", '{0: "z"}']


def test_in_comprehensions_every_and_with_outside() -> None:
    src = (
        'x := {"c": [y | some v in input.l; y := $"<{v}>"], "e": e, "w": w}\n'
        'e if { every i, v in input.l { input.m[i] == $"<{v}>" } }\n'
        'w := y if { y := $"{input.l}" with input.l as 5 }'
    )
    assert _eval(src, {"l": ["a"], "m": ["<a>"]}) == {"c": ["<a>"], "e": True, "w": "5"}


def test_as_operand_of_in() -> None:
    assert _eval('id := 1\nx if { $"user_{id}" in {"user_1"} }') is True


def test_dollar_in_strings_and_comments_is_left_alone() -> None:
    assert _eval('# $"{\nx := ["$\\"{", `$"{`]') == ['$"{', '$"{']


def test_keyword_refs_and_long_strings_inside_expressions() -> None:
    long = "y" * 1500
    assert _eval(f'x := $"{{input.in}} {{"{long}"}}"', {"in": 1}) == "1 " + long


@pytest.mark.parametrize(
    ("src", "place", "message"),
    [
        ('x := $"abc', "2:6:", "unterminated template string"),
        ('x := $"abc {1}\n"', "2:6:", "unterminated template string"),
        ('x := $"{1\n}"', "2:6:", "unterminated template string"),
        ("x := $`abc {1", "2:6:", "unterminated template string"),
        ('x := $"a {}"', "2:10:", "empty expression in template string"),
        ('x := 1\ny := $"a \\q {1}"', "3:8:", "invalid escape"),
        ('x := $"{input.a +}"', "2:8:", "error:"),  # regorus's, at the user's brace
        ('x := 1\ny := $"{1} {input[}"', "3:12:", "error:"),
    ],
)
def test_errors_name_the_users_place(src: str, place: str, message: str) -> None:
    where = _error(src)
    assert where.startswith(place), where
    assert message in where, where


def test_error_names_the_file_given() -> None:
    with pytest.raises(CompileError) as info:
        respell('package t\nx := $"a', "q.rego")
    assert str(info.value) == "q.rego:2:6: error: unterminated template string"


def test_nesting_is_bounded() -> None:
    def nested(n: int) -> str:
        return "x := " + '$"{' * n + "1" + '}"' * n

    assert _eval(nested(3)) == "1"
    assert _error(nested(MAX_TEMPLATE_DEPTH + 1))  # the bracket limits may refuse it first
    with pytest.raises(CompileError, match=f"nested deeper than {MAX_TEMPLATE_DEPTH}"):
        respell(HEADER + nested(MAX_TEMPLATE_DEPTH + 1))


def test_ten_thousand_nested_braces_and_templates_are_refused_not_crashed() -> None:
    braces = 'x := $"' + "{" * 10_000 + "}" * 10_000 + '"'
    assert _error(braces)
    templates = 'x := $"{' * 10_000 + '}"' * 10_000
    assert _error(templates)
    assert "unterminated" in _error('x := $"' + "{" * 10_000)


def test_huge_template_is_linear_and_correct() -> None:
    parts = 5_000
    src = "x := $`" + "ab {input.v}\n" * parts + "`"
    assert respell(HEADER + src).text.count("__a1_template_value") == parts
    small = "x := $`" + "ab {input.v}\n" * 200 + "`"
    assert _eval(small, {"v": 1}) == "ab 1\n" * 200


def test_builtin_directly() -> None:
    assert template_value(RegoSet()) == "<undefined>"
    assert template_value(RegoSet(["s"])) == "s"
    assert template_value(RegoSet([[1, "a"]])) == '[1, "a"]'
    with pytest.raises(BuiltinError, match="multiple outputs"):
        template_value(RegoSet([1, 2]))
    with pytest.raises(BuiltinError, match="must be set"):
        template_value([1])


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(_TEXT, st.integers(-(2**40), 2**40)), max_size=4))
def test_template_equals_concatenation(parts: list[str | int]) -> None:
    """Literal text (any characters, escaped as JSON escapes them, braces escaped)
    and integer expressions give what a plain concatenation gives."""
    src = ""
    for p in parts:
        if isinstance(p, str):
            src += json.dumps(p)[1:-1].replace("{", "\\{").replace("}", "\\}")
        else:
            src += "{" + str(p) + "}"
    assert _eval(f'x := $"{src}"') == "".join(str(p) for p in parts)
