"""The host's decode budget: a small policy cannot make the host build a huge result.

The runtime shares values by pointer, so ``x1 := [x0, x0]`` twenty times over is
a 2^21-node tree to decode. Each policy here is compiled by the real compiler and
run by the real runtime; past the budget the evaluation fails with
``ResultTooLarge`` (a ``PolicyError``, which every caller turns into deny).
"""

from __future__ import annotations

from typing import Any

import pytest

from ext_proc.engine import Engine
from ext_proc.policy import load_policy
from policies.compiler import compile_sources
from policies.core.cells import CellTable
from policies.runtime import PolicyError, PolicyModule
from policies.runtime.module import ResultTooLarge
from policies.runtime.values import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES


def _doubling(levels: int, leaf: str, pair: str = "[{x}, {x}]") -> str:
    """``x0 := leaf``, ``x{i} := pair(x{i-1})``: every level doubles the decoded tree."""
    lines = [f"x0 := {leaf}"]
    lines += [f"x{i} := " + pair.format(x=f"x{i - 1}") for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nr := x{levels}\n"


def _module(body: str, entry: str = "p/r") -> PolicyModule:
    src = "package p\nimport rego.v1\n" + body
    return PolicyModule.load(compile_sources({"p.rego": src}, None, [entry]))


def test_the_reported_policy_is_small_and_refused() -> None:
    body = _doubling(20, "[1, 1]")
    assert len(body) < 500  # the report's policy was 449 bytes
    ev = _module(body).evaluator()
    with pytest.raises(ResultTooLarge, match=f"more than {DEFAULT_MAX_NODES} values"):
        ev.evaluate({})
    assert issubclass(ResultTooLarge, PolicyError)
    # the evaluator is still usable afterwards, and still refuses
    with pytest.raises(ResultTooLarge):
        ev.evaluate({})


@pytest.mark.parametrize(
    "pair", ['{{"a": {x}, "b": {x}}}', "{{{x}, [{x}]}}", '{{"k": [{x}, {x}]}}']
)
def test_shared_objects_and_sets_are_counted(pair: str) -> None:
    ev = _module(_doubling(20, "[1]", pair)).evaluator()
    with pytest.raises(ResultTooLarge, match="values"):
        ev.evaluate({})
    with pytest.raises(ResultTooLarge, match="values"):
        ev.evaluate({}, json_form=True)


def test_shared_strings_are_counted_in_bytes() -> None:
    # 2^11 copies of a 1200-byte string: 2.4 MB of strings in only 4k values
    long = f's1 := "{"a" * 600}"\ns2 := "{"b" * 600}"\ns := concat("", [s1, s2])\n'
    leaf = "s"
    ev = _module(long + _doubling(11, leaf)).evaluator()
    with pytest.raises(ResultTooLarge, match=f"more than {DEFAULT_MAX_BYTES} bytes of strings"):
        ev.evaluate({})
    # shared object keys count too
    keyed = _module(long + _doubling(11, "{s: 1}"))
    with pytest.raises(ResultTooLarge, match="bytes of strings"):
        keyed.evaluator().evaluate({})


def test_deep_result_is_refused() -> None:
    chain = _doubling(DEFAULT_MAX_DEPTH, "[1]", "[{x}]")  # DEFAULT_MAX_DEPTH + 1 arrays
    ev = _module(chain).evaluator()
    with pytest.raises(ResultTooLarge, match=f"nested deeper than {DEFAULT_MAX_DEPTH} levels"):
        ev.evaluate({})
    just = _doubling(DEFAULT_MAX_DEPTH - 1, "[1]", "[{x}]")
    value: Any = _module(just).evaluator().evaluate({})
    for _ in range(DEFAULT_MAX_DEPTH - 1):
        value = value[0]
    assert value == [1]


def test_budget_is_configurable_where_the_evaluator_is_made() -> None:
    module = _module("r := numbers.range(1, 99)\n")  # 100 values with the array itself
    assert len(module.evaluator().evaluate({})) == 99
    assert len(module.evaluator(max_nodes=100).evaluate({})) == 99
    with pytest.raises(ResultTooLarge, match="more than 99 values"):
        module.evaluator(max_nodes=99).evaluate({})
    strings = _module('r := ["abc", "de"]\n')
    assert strings.evaluator(max_bytes=5).evaluate({}) == ["abc", "de"]
    with pytest.raises(ResultTooLarge, match="more than 4 bytes"):
        strings.evaluator(max_bytes=4).evaluate({})
    with pytest.raises(ResultTooLarge, match="deeper than 1 levels"):
        _module("r := [[1]]\n").evaluator(max_depth=1).evaluate({})


def test_the_sidecar_denies_a_result_past_the_budget() -> None:
    src = "package a1.authz\nimport rego.v1\n" + _doubling(20, "[1, 1]").replace("r :=", "big :=")
    src += 'decision := {"allow": true, "status": 200, "reason": "ok", "headers": {}, "x": big}\n'
    entry = "a1/authz/decision"
    module = load_policy(compile_sources({"a.rego": src}, None, [entry]), entry, "a.wasm")
    engine = Engine()
    engine.apply(module, CellTable.balanced(["cell-1"]))
    subject = {"sub": "alice", "tenant": "acme", "roles": ["reader"]}
    d = engine.decide("GET", "/t/acme/items", "", None, subject)
    assert not d.allow and d.status == 500 and d.result == "error"
