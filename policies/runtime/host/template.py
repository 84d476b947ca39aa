"""``strings.render_template``: the subset of Go's ``text/template`` that OPA policies use.

regorus lacks the builtin; A1 follows OPA, which executes the template with Go's
``text/template`` over the variables read back from JSON, then spells every
``<no value>`` as ``<undefined>`` (a missing key, or ``null``).

Supported: text; actions ``{{ pipeline }}`` with ``{{-``/``-}}`` trimming; comments;
``if``/``else if``/``else``/``with``/``range`` (``range $i, $e := …``, ``range $e := …``,
and ``else`` in ``range``) closed by ``end``; variables (``$``, ``$x := …``) and field
chains (``.a.b``, ``$x.a``); string, number and boolean literals. Anything else (a
function such as ``len`` or ``printf``, pipes, ``define``/``template``/``block``,
``break``/``continue``, assignments) is refused with a ``BuiltinError`` naming it,
never rendered differently. So is a condition on a number from the variables (Go
sees JSON numbers as ``json.Number`` strings, a subtlety A1 does not guess at) and
a float printed in exponent form.

Output is bounded (``MAX_RESULT_CHARS``) and so is the work (``MAX_STEPS`` node
executions), whatever ``range`` nesting the template has.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.host.strings import MAX_RESULT_CHARS, BoundedText
from policies.runtime.values import RegoSet

__all__ = ["MAX_STEPS", "render"]

FN = "strings.render_template"
MAX_STEPS = 1 << 20
"""Most template nodes one rendering may execute (ranges multiply)."""
MAX_TEMPLATE = 1 << 20
MAX_NESTING = 64

_NO_VALUE = object()  # Go's invalid reflect.Value: printed "<no value>"


class _Index(int):
    """A range index or map key position: a Go ``int``, whose truth is ``!= 0``."""


# ---------------------------------------------------------------- parsing


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    declare: str | None  # "$x" in {{$x := pipeline}}
    operand: Any


@dataclass
class _Block:
    kind: str  # if with range
    operand: Any
    names: tuple[str, ...] = ()  # range $i, $e
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<raw>`[^`]*`)
    | (?P<str>"(?:[^"\\\n]|\\.)*")
    | (?P<num>[-+]?(?:0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+))
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<decl>:=)
    | (?P<assign>=)
    | (?P<comma>,)
    | (?P<pipe>\|)
    | (?P<paren>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue", "nil", "true", "false"}  # fmt: skip


def _lex(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
    return out


def _operand(tokens: list[tuple[str, str]], action: str) -> Any:
    """One operand: ("field", [names]), ("var", name, [names]), ("lit", value)."""
    if len(tokens) != 1:
        for kind, value in tokens:
            if kind == "word" and value not in _KEYWORDS:
                raise BuiltinError(f"{FN}: function {value} is not supported")
            if kind in ("pipe", "paren", "assign"):
                raise BuiltinError(f"{FN}: {value!r} in {{{{{action}}}}} is not supported")
        raise BuiltinError(f"{FN}: unsupported action {{{{{action}}}}}")
    kind, value = tokens[0]
    if kind == "field":
        return ("field", [] if value == "." else value[1:].split("."))
    if kind == "var":
        return ("var", value, [])
    if kind == "raw":
        return ("lit", value[1:-1])
    if kind == "str":
        try:
            return ("lit", json.loads(value))
        except ValueError:
            raise BuiltinError(f"{FN}: unsupported string literal {value}") from None
    if kind == "num":
        if re.fullmatch(r"[-+]?[0-9]+", value):
            return ("lit", int(value))
        raise BuiltinError(f"{FN}: number literal {value} is not supported")
    if kind == "word" and value in ("true", "false"):
        return ("lit", value == "true")
    if kind == "word" and value not in _KEYWORDS:
        raise BuiltinError(f"{FN}: function {value} is not supported")
    raise BuiltinError(f"{FN}: unsupported action {{{{{action}}}}}")


def _var_field(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``$x.a.b`` lexes as a var then a field chain: one operand."""
    kinds = [kind for kind, _ in tokens]
    if kinds == ["var", "field"] and tokens[1][1] != ".":
        return [("varfield", tokens[0][1] + tokens[1][1])]
    return tokens


def _pipeline(tokens: list[tuple[str, str]], action: str) -> Any:
    tokens = _var_field(tokens)
    if len(tokens) == 1 and tokens[0][0] == "varfield":
        name, *names = tokens[0][1].split(".")
        return ("var", name, names)
    return _operand(tokens, action)


def _parse(template: str) -> list[Any]:
    root: list[Any] = []
    # open blocks: (block, list being filled)
    stack: list[tuple[_Block | None, list[Any]]] = [(None, root)]
    pos = 0
    trim_next = False
    while True:
        start = template.find("{{", pos)
        text = template[pos:] if start < 0 else template[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start >= 0 and template.startswith("{{- ", start):
            text = text.rstrip(" \t\r\n")
        if text:
            stack[-1][1].append(_Text(text))
        if start < 0:
            break
        end = template.find("}}", start + 2)
        if end < 0:
            raise BuiltinError(f"{FN}: unclosed action")
        inner = template[start + 2 : end]
        if inner.startswith("- "):
            inner = inner[2:]
        trim_next = inner.endswith(" -")
        if trim_next:
            inner = inner[:-2]
        pos = end + 2
        body = inner.strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise BuiltinError(f"{FN}: unclosed comment")
            continue
        if "/*" in body:  # "}}" inside a comment, or a comment beside code
            raise BuiltinError(f"{FN}: unsupported comment in {{{{{body}}}}}")
        tokens = _lex(body)
        if not tokens:
            raise BuiltinError(f"{FN}: missing value for command")
        head = tokens[0][1] if tokens[0][0] == "word" else ""
        if head in ("if", "with", "range"):
            if len(stack) > MAX_NESTING:
                raise BuiltinError(f"{FN}: blocks nested deeper than {MAX_NESTING}")
            block = _block(head, tokens[1:], body)
            stack[-1][1].append(block)
            stack.append((block, block.body))
        elif head == "else":
            block = stack[-1][0]
            if block is None or stack[-1][1] is block.orelse:
                raise BuiltinError(f"{FN}: unexpected {{{{else}}}}")
            rest = tokens[1:]
            if rest and rest[0] == ("word", "if"):
                if block.kind == "range":
                    raise BuiltinError(f"{FN}: else if in a range is not supported")
                nested = _block("if", rest[1:], body)
                block.orelse.append(nested)
                # the nested if shares its parent's {{end}}: mark it to pop both
                stack[-1] = (block, block.orelse)
                stack.append((nested, nested.body))
                nested.names = ("<chained>",)
            elif rest:
                if rest[0][0] == "word" and rest[0][1] == "with":
                    raise BuiltinError(f"{FN}: else with is not supported")
                raise BuiltinError(f"{FN}: unexpected {body}")
            else:
                stack[-1] = (block, block.orelse)
        elif head == "end":
            if len(tokens) != 1 or stack[-1][0] is None:
                raise BuiltinError(f"{FN}: unexpected {{{{end}}}}")
            while True:
                block, _ = stack.pop()
                if block is None or block.names != ("<chained>",):
                    break
        elif head in ("define", "template", "block", "break", "continue"):
            raise BuiltinError(f"{FN}: {{{{{head}}}}} is not supported")
        elif len(tokens) >= 2 and tokens[0][0] == "var" and tokens[1][0] in ("decl", "assign"):
            if tokens[1][0] == "assign":
                raise BuiltinError(f"{FN}: variable assignment is not supported")
            stack[-1][1].append(_Action(tokens[0][1], _pipeline(tokens[2:], body)))
        else:
            stack[-1][1].append(_Action(None, _pipeline(tokens, body)))
    if len(stack) > 1:
        raise BuiltinError(f"{FN}: unexpected EOF: a block has no {{{{end}}}}")
    return root


def _block(kind: str, tokens: list[tuple[str, str]], action: str) -> _Block:
    names: tuple[str, ...] = ()
    decl = next((k for k, (kind_, _) in enumerate(tokens) if kind_ == "decl"), -1)
    if decl >= 0:
        if kind != "range":
            raise BuiltinError(f"{FN}: a declaration in {{{{{kind}}}}} is not supported")
        heads = tokens[:decl]
        if len(heads) == 1 and heads[0][0] == "var":
            names = (heads[0][1],)
        elif len(heads) == 3 and heads[0][0] == "var" and heads[1][0] == "comma":
            if heads[2][0] != "var":
                raise BuiltinError(f"{FN}: bad range declaration in {{{{{action}}}}}")
            names = (heads[0][1], heads[2][1])
        else:
            raise BuiltinError(f"{FN}: bad range declaration in {{{{{action}}}}}")
        tokens = tokens[decl + 1 :]
    if not tokens:
        raise BuiltinError(f"{FN}: missing value for {kind}")
    return _Block(kind, _pipeline(tokens, action), names)


# ---------------------------------------------------------------- execution


class _Run:
    def __init__(self, root: Any) -> None:
        self.out = BoundedText(f"{FN}: result longer than {MAX_RESULT_CHARS} characters")
        self.emit = self.out.add
        self.steps = 0
        self.root = root

    def value(self, operand: Any, dot: Any, scope: list[dict[str, Any]]) -> Any:
        kind = operand[0]
        if kind == "lit":
            return operand[1]
        if kind == "field":
            return self.fields(dot, operand[1])
        name, names = operand[1], operand[2]
        for frame in reversed(scope):
            if name in frame:
                return self.fields(frame[name], names)
        raise BuiltinError(f"{FN}: undefined variable {name}")

    def fields(self, value: Any, names: list[str]) -> Any:
        for name in names:
            if value is _NO_VALUE or value is None:
                return _NO_VALUE  # Go: a field of a missing value is missing
            if not isinstance(value, dict):
                raise BuiltinError(f"{FN}: can't evaluate field {name} in a non-object value")
            value = value.get(name, _NO_VALUE)
        return value

    def run(self, nodes: list[Any], dot: Any, scope: list[dict[str, Any]]) -> None:
        for node in nodes:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise BuiltinError(f"{FN}: more than {MAX_STEPS} template steps")
            if isinstance(node, _Text):
                self.emit(node.text)
            elif isinstance(node, _Action):
                value = self.value(node.operand, dot, scope)
                if node.declare is None:
                    self.emit(_print(value))
                else:
                    scope[-1][node.declare] = value
            elif node.kind == "range":
                self.range(node, dot, scope)
            else:
                value = self.value(node.operand, dot, scope)
                if _truth(value):
                    self.run(node.body, value if node.kind == "with" else dot, [*scope, {}])
                else:
                    self.run(node.orelse, dot, [*scope, {}])

    def range(self, node: _Block, dot: Any, scope: list[dict[str, Any]]) -> None:
        value = self.value(node.operand, dot, scope)
        if value is _NO_VALUE or value is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, list | tuple):
            items = [(_Index(i), v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            if not all(type(k) is str for k in value):
                raise BuiltinError(f"{FN}: range over an object with non-string keys")
            items = [(k, value[k]) for k in sorted(value)]
        else:
            raise BuiltinError(f"{FN}: range can't iterate over a {type(value).__name__}")
        if not items:
            self.run(node.orelse, dot, [*scope, {}])
            return
        for key, item in items:
            frame: dict[str, Any] = {}
            if len(node.names) == 1:
                frame[node.names[0]] = item
            elif len(node.names) == 2:
                frame[node.names[0]] = key
                frame[node.names[1]] = item
            self.run(node.body, item, [*scope, frame])


def _truth(value: Any) -> bool:
    """Go's ``template.IsTrue`` for the values JSON gives it."""
    if value is _NO_VALUE or value is None:
        return False
    if type(value) is bool:
        return value
    if isinstance(value, _Index):
        return value != 0
    if isinstance(value, int | float):
        raise BuiltinError(f"{FN}: a condition on a number from the variables is not supported")
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    raise BuiltinError(f"{FN}: unsupported value in a condition")


def _number(v: int | float) -> str:
    if type(v) is int or isinstance(v, _Index):
        return str(int(v))
    text = repr(v)
    if "e" in text or "n" in text:  # exponent form, inf, nan: Go's spelling not guessed
        raise BuiltinError(f"{FN}: printing the number {text} is not supported")
    return text


def _print(value: Any, nested: bool = False) -> str:
    """Go's ``fmt.Print`` of the value ``encoding/json`` (with ``UseNumber``) gives."""
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>" if nested else "<no value>"
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if type(value) is str:
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(_print(v, True) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value)
        return "map[" + " ".join(f"{k}:{_print(value[k], True)}" for k in keys) + "]"
    raise BuiltinError(f"{FN}: unsupported value {type(value).__name__}")


def render(template: str, variables: dict[str, Any]) -> str:
    tree = _parse(template)
    run = _Run(variables)
    run.run(tree, variables, [{"$": variables}])
    return run.out.text().replace("<no value>", "<undefined>")


def _json_only(value: Any, depth: int = 0) -> None:
    """Variables cross OPA as JSON: a set would be an array there; A1 refuses it."""
    if depth > 256:
        raise BuiltinError(f"{FN}: variables nested too deeply")
    if isinstance(value, RegoSet | set | frozenset):
        raise BuiltinError(f"{FN}: a set among the variables is not supported")
    if isinstance(value, dict):
        for k, v in value.items():
            if type(k) is not str:
                raise BuiltinError(f"{FN}: a non-string key among the variables")
            _json_only(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _json_only(v, depth + 1)


@builtin("strings.render_template")
def render_template(template: Any, variables: Any) -> str:
    want(FN, 1, template, "string")
    want(FN, 2, variables, "object")
    if len(template) > MAX_TEMPLATE:
        raise BuiltinError(f"{FN}: template longer than {MAX_TEMPLATE} characters")
    _json_only(variables)
    return render(template, variables)
