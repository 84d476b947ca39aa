"""Differential harness for host builtins: one policy compiled by A1 and run by regorus.

Each rule of the policy applies a builtin to ``input``, so one compilation serves
every hypothesis example. regorus panics on some inputs (``regex.template_match``
slicing past a string's end); a panic is an evaluation error, as ours is, and the
engine is rebuilt after one (it leaves the rule marked as being evaluated).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import strategies as st

from policies.runtime.host import REGISTRY, BuiltinError
from tests.rego_oracle import Compiled, Oracle, Outcome, agree

__all__ = ["Pair", "call", "expr_pair", "mutate", "ours", "refused", "same", "value"]


class Pair:
    """Our compiled module and a regorus engine for the same rules (name -> expression)."""

    def __init__(self, rules: Mapping[str, str]) -> None:
        body = "\n".join(f"{name} := {expr}" for name, expr in rules.items())
        sources = {"h.rego": f"package h\nimport rego.v1\n{body}\n"}
        self.sources = sources
        self.oracle = Oracle(sources)
        self.ours = Compiled(sources, [f"h/{name}" for name in rules])

    def outcomes(self, rule: str, input_doc: Any) -> tuple[Outcome, Outcome]:
        ours = self.ours.eval(f"h/{rule}", input_doc)
        try:
            theirs = self.oracle.eval(f"h/{rule}", input_doc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # pyo3's PanicException is a BaseException
            theirs = ("error", f"regorus panicked: {err}")
            self.oracle = Oracle(self.sources)  # a panic leaves the rule marked in progress
        return ours, theirs

    def check(self, rule: str, input_doc: Any, *, tolerate: tuple[str, ...] = ()) -> Outcome:
        """Assert both agree (errors agree whatever their wording). Where they do not, our
        side may be an error whose message holds one of ``tolerate``: a documented case
        where A1 refuses what regorus answers. Returns our outcome."""
        ours, theirs = self.outcomes(rule, input_doc)
        if not agree(ours, theirs):
            allowed = ours[0] == "error" and any(t in ours[1] for t in tolerate)
            assert allowed, f"{rule} on {input_doc!r}: ours {ours!r}, regorus {theirs!r}"
        return ours


def call(name: str, *args: Any) -> Any:
    """A registered pure host builtin called directly, as the evaluator calls it."""
    return REGISTRY[name].fn(*args)


def refused(name: str, *args: Any) -> str:
    """The message of the ``BuiltinError`` a call raises (the test fails if none)."""
    with pytest.raises(BuiltinError) as info:
        call(name, *args)
    return str(info.value)


# One expression as the rule p/x: the helpers of the builtin families' differential tests.


@functools.cache
def expr_pair(expr: str) -> tuple[Compiled, Oracle]:
    """``x := expr`` compiled by us and loaded in regorus (cached by the text)."""
    src = {"p.rego": f"package p\nx := {expr}\n"}
    return Compiled(src, ["p/x"]), Oracle(src)


def ours(expr: str, input_doc: Any = None) -> Outcome:
    return expr_pair(expr)[0].eval("p/x", {} if input_doc is None else input_doc)


def same(
    expr: str, input_doc: Any = None, *, prepare: Callable[[Any], Any] = lambda doc: doc
) -> Outcome:
    """Our outcome, asserting regorus's is the same (errors agree as errors); ``prepare``
    writes the input in a form regorus's JSON reader takes exactly."""
    compiled, oracle = expr_pair(expr)
    doc = {} if input_doc is None else prepare(input_doc)
    mine, theirs = compiled.eval("p/x", doc), oracle.eval("p/x", doc)
    assert agree(mine, theirs), (expr, input_doc, mine, theirs)
    return mine


def value(
    expr: str, input_doc: Any = None, *, prepare: Callable[[Any], Any] = lambda doc: doc
) -> Any:
    kind, v = same(expr, input_doc, prepare=prepare)
    assert kind == "value", (expr, kind, v)
    return v


def mutate(data: st.DataObject, text: str, alphabet: str, max_edits: int = 3) -> str:
    """``text`` with up to ``max_edits`` characters of ``alphabet`` replaced, inserted or
    deleted: near-misses of a valid input, where parsers disagree."""
    chars = list(text)
    for _ in range(data.draw(st.integers(0, max_edits))):
        i = data.draw(st.integers(0, len(chars)))
        c = data.draw(st.sampled_from(alphabet))
        op = data.draw(st.integers(0, 2))
        if op == 0 and chars:
            chars[min(i, len(chars) - 1)] = c
        elif op == 1:
            chars.insert(i, c)
        elif chars:
            del chars[min(i, len(chars) - 1)]
    return "".join(chars)
