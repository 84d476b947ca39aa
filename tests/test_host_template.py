"""``strings.render_template`` (``policies/runtime/host/template.py``): Go text/template's
subset, as OPA renders it (regorus lacks the builtin).

Expected outputs are what Go's ``text/template`` prints for the same template over
the variables as ``encoding/json`` decodes them, with OPA's ``<undefined>`` for a
missing value.
"""

from __future__ import annotations

from typing import Any

import pytest

from policies.runtime.host import REGISTRY
from policies.runtime.host import template as host_template
from policies.runtime.host.base import BuiltinError


def render(template: str, variables: dict[str, Any]) -> str:
    return REGISTRY["strings.render_template"].fn(template, variables)  # type: ignore[no-any-return]


def refused(template: str, variables: dict[str, Any] | None = None) -> str:
    with pytest.raises(BuiltinError) as info:
        render(template, variables or {})
    return str(info.value)


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("Hello {{.name}}!", {"name": "Ann"}, "Hello Ann!"),
        (
            "{{.n}} {{.f}} {{.t}} {{.b}}",
            {"n": 7, "f": 2.5, "t": True, "b": False},
            "7 2.5 true false",
        ),
        ("{{.user.id}}", {"user": {"id": "u1"}}, "u1"),
        ("[{{.missing}}] [{{.nul}}]", {"nul": None}, "[<undefined>] [<undefined>]"),
        ("{{.a.b.c}}", {}, "<undefined>"),  # a field of a missing value is missing
        (
            "{{.l}} {{.m}}",
            {"l": [1, "x", None, True], "m": {"b": [1], "a": {"c": 2}}},
            "[1 x <nil> true] map[a:map[c:2] b:[1]]",
        ),
        ("{{range .l}}<{{.}}>{{end}}", {"l": ["a", "b"]}, "<a><b>"),
        (
            "{{range $i, $e := .l}}{{if $i}}, {{end}}{{$i}}={{$e}}{{end}}",
            {"l": ["a", "b", "c"]},
            "0=a, 1=b, 2=c",
        ),
        ("{{range $k, $v := .m}}{{$k}}:{{$v}};{{end}}", {"m": {"z": 1, "a": 2}}, "a:2;z:1;"),
        ("{{range $e := .l}}{{$e.id}}{{end}}", {"l": [{"id": 1}, {"id": 2}]}, "12"),
        ("{{range .l}}x{{else}}empty{{end}}", {"l": []}, "empty"),
        ("{{range .nothing}}x{{end}}.", {}, "."),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {"a": "", "b": [0]}, "B"),
        ("{{if .a}}A{{else if .b}}B{{else}}C{{end}}", {"a": {}, "b": ""}, "C"),
        (
            "{{if .t}}yes{{end}}{{if .f}}no{{end}}",
            {"t": True, "f": False},
            "yes",
        ),
        ("{{with .u}}{{.name}}{{else}}anon{{end}}", {"u": {"name": "N"}}, "N"),
        ("{{with .u}}{{.name}}{{else}}anon{{end}}", {}, "anon"),
        ("{{$x := .a}}{{range .l}}{{$x}}{{.}}{{end}}", {"a": "-", "l": [1, 2]}, "-1-2"),
        ("{{range .l}}{{$.top}}{{end}}", {"top": "T", "l": [1, 2]}, "TT"),
        ("a  {{- .x -}}  b", {"x": "X"}, "aXb"),
        ("a {{/* a comment */}}b", {}, "a b"),
        ('{{"lit"}} {{`raw`}} {{42}} {{true}}', {}, "lit raw 42 true"),
        ("literal <no value> text", {}, "literal <undefined> text"),  # as OPA's ReplaceAll
        ("no actions at all", {"x": 1}, "no actions at all"),
    ],
)
def test_renders_as_go_text_template(
    template: str, variables: dict[str, Any], expected: str
) -> None:
    assert render(template, variables) == expected


@pytest.mark.parametrize(
    ("template", "what"),
    [
        ("{{len .l}}", "function len"),
        ('{{printf "%d" .n}}', "function printf"),
        ("{{.a | html}}", "'|'"),
        ('{{define "x"}}{{end}}', "define"),
        ('{{template "x"}}', "template"),
        ("{{range .l}}{{break}}{{end}}", "break"),
        ("{{$x := 1}}{{$x = 2}}", "assignment"),
        ("{{if .a}}", "{{end}}"),
        ("{{end}}", "unexpected"),
        ("{{.a", "unclosed action"),
        ("{{$nope}}", "undefined variable"),
        ("{{if .n}}x{{end}}", "number from the variables"),
        ("{{.f}}", "printing the number"),
        ("{{.s.x}}", "non-object"),
        ("{{range .n}}{{end}}", "can't iterate"),
    ],
)
def test_refuses_what_it_does_not_implement_naming_it(template: str, what: str) -> None:
    message = refused(template, {"l": [1], "n": 0, "f": 1e300, "s": "str", "a": 1})
    assert message.startswith("strings.render_template: ")
    assert what in message


def test_operand_types() -> None:
    with pytest.raises(BuiltinError, match="operand 1 must be string"):
        REGISTRY["strings.render_template"].fn(1, {})
    with pytest.raises(BuiltinError, match="operand 2 must be object"):
        REGISTRY["strings.render_template"].fn("x", [])


def test_nested_ranges_are_bounded_in_work_and_output() -> None:
    """Three nested ranges over 200 elements are 8M iterations: refused, not run."""
    variables = {"l": list(range(200))}
    loop = "{{range .l}}{{range $.l}}{{range $.l}}x{{end}}{{end}}{{end}}"
    assert "steps" in refused(loop, variables)
    big = {"s": "x" * (1 << 20), "l": list(range(20))}
    assert "longer than" in refused("{{range .l}}{{$.s}}{{end}}", big)
    deep = "{{if .a}}" * (host_template.MAX_NESTING + 2)
    assert "nested deeper" in refused(deep, {})


def test_through_the_compiler() -> None:
    from policies.compiler import compile_sources
    from policies.runtime.module import PolicyModule

    src = (
        "package p\n"
        "x := strings.render_template(`{{range $i, $n := .names}}{{if $i}},{{end}}hi {{$n}}"
        '{{end}}`, {"names": input.names})\n'
    )
    ev = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"])).evaluator("p/x")
    assert ev.evaluate({"names": ["a", "b"]}, json_form=True) == "hi a,hi b"
