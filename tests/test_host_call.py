"""The host-builtin mechanism (``env.a1_host_call``) through the real compiler and runtime.

Builtins registered here are test doubles of the contract, not of A1: each is a
plain Python function, and every assertion reads what a compiled policy returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compiler import compile_sources
from policies.runtime import BundleError, PolicyError, PolicyModule
from policies.runtime.host import REGISTRY
from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.module import Metadata
from policies.runtime.values import UNDEFINED, RegoSet

CALLS: list[tuple[Any, ...]] = []


@pytest.fixture(autouse=True)
def doubles() -> Iterator[None]:
    """Register the test builtins for one test, then take them out of the registry."""
    added: list[str] = []

    def reg(name: str, fn: Callable[..., Any], pure: bool = True) -> None:
        builtin(name, pure=pure)(fn)
        added.append(name)

    def echo(x: Any) -> Any:
        CALLS.append((x,))
        return x

    def twice(x: Any) -> Any:
        want("a1test.twice", 1, x, "number")
        return x * 2

    def crash(x: Any) -> Any:
        return x["no such key"]

    def clock(ctx: Any) -> int:
        return ctx.now_ns() // 1000  # microseconds: exact as a double

    reg("a1test.echo", echo)
    reg("a1test.twice", twice)
    reg("a1test.crash", crash)
    reg("a1test.undefined", lambda x: UNDEFINED)
    reg("a1test.big", lambda n: "x" * n)
    reg("a1test.huge_int", lambda: 2**63)
    reg("a1test.clock", clock, pure=False)
    CALLS.clear()
    yield
    for name in added:
        REGISTRY.pop(name, None)


def evaluate(body: str, input_doc: Any = None, entry: str = "x", **limits: Any) -> Any:
    module = PolicyModule.load(
        compile_sources({"p.rego": f"package p\n{body}\n"}, None, [f"p/{entry}"])
    )
    return module.evaluator(**limits).evaluate(input_doc if input_doc is not None else {})


def module_of(body: str, entry: str = "x") -> PolicyModule:
    return PolicyModule.load(
        compile_sources({"p.rego": f"package p\n{body}\n"}, None, [f"p/{entry}"])
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_every_value_crosses_the_boundary_both_ways(value: Any) -> None:
    assert evaluate("x := a1test.echo(input.v)", {"v": value}) == value


def test_sets_and_nested_collections_keep_their_type() -> None:
    assert evaluate('x := a1test.echo({"s": {3, 1, 2}, "a": [null, true]})') == {
        "s": RegoSet([1, 2, 3]),
        "a": [None, True],
    }


def test_an_undefined_argument_makes_the_call_undefined_without_calling() -> None:
    assert evaluate("x := a1test.echo(input.missing)") is UNDEFINED
    assert CALLS == []


def test_undefined_result_is_undefined() -> None:
    assert evaluate("x := a1test.undefined(1)") is UNDEFINED
    assert evaluate('x := "fallback" if { not a1test.undefined(1) }') == "fallback"


def test_a_refused_argument_is_an_evaluation_error_with_the_builtins_words() -> None:
    with pytest.raises(PolicyError, match=r"a1test\.twice: operand 1 must be number but got str"):
        evaluate('x := a1test.twice("s")')
    assert evaluate("x := a1test.twice(21)") == 42


def test_a_bug_in_a_builtin_fails_closed() -> None:
    with pytest.raises(PolicyError, match=r"a1test\.crash: internal error: KeyError"):
        evaluate("x := a1test.crash({})")


def test_a_result_the_value_model_cannot_hold_is_an_error_never_a_double() -> None:
    with pytest.raises(PolicyError, match="integer beyond int64"):
        evaluate("x := a1test.huge_int()")


def test_a_result_past_the_memory_cap_is_an_error() -> None:
    with pytest.raises(PolicyError, match="memory cap reached"):
        evaluate("x := a1test.big(input.n)", {"n": 40 << 20})


def test_arguments_past_the_decode_budget_are_refused() -> None:
    with pytest.raises(PolicyError, match="arguments too large"):
        evaluate("x := a1test.echo(input.v)", {"v": list(range(5000))}, max_nodes=1000)


def test_arity_is_checked_when_the_call_is_evaluated() -> None:
    with pytest.raises(PolicyError, match="type error"):
        evaluate("x := a1test.echo(1, 2)")


def test_the_clock_is_one_instant_per_evaluation_and_the_policy_is_impure() -> None:
    module = module_of("x := [a1test.clock(), time.now_ns(), a1test.clock()]")
    assert module.meta.pure is False
    a, b, c = module.evaluator().evaluate({})
    assert a == c and b // 1000 == a  # the same instant, exact to the nanosecond
    later = module.evaluator().evaluate({})
    assert later[0] >= a


def test_a_pure_host_builtin_keeps_the_policy_pure() -> None:
    module = module_of("x := a1test.twice(input.n)")
    assert module.meta.pure is True
    assert module.meta.host_builtins == ("a1test.twice",)


def test_a_module_calling_a_builtin_this_runtime_lacks_is_refused_at_load() -> None:
    wasm = compile_sources({"p.rego": "package p\nx := a1test.echo(1)\n"}, None, ["p/x"])
    REGISTRY.pop("a1test.echo")
    lacks = r"calls builtin .a1test\.echo., which this runtime lacks"
    with pytest.raises(BundleError, match=lacks):
        PolicyModule.load(wasm, source="p.wasm")


def test_a_c_builtin_is_never_sent_to_the_host() -> None:
    builtin("lower")(lambda s: "host")
    try:
        module = module_of('x := lower("ABC")')
        assert module.meta.host_builtins == ()
        assert module.evaluator().evaluate({}) == "abc"
    finally:
        REGISTRY.pop("lower")


def test_metadata_host_builtins_must_be_a_list_of_strings() -> None:
    meta = Metadata(1, ["p/x"], [], True, "0" * 64, "0" * 64, ("a", "b"))
    assert Metadata.parse(meta.to_json()) == meta
    bad = meta.to_json().replace(b'["a", "b"]', b'"a"')
    with pytest.raises(BundleError, match="host_builtins must be a list of strings"):
        Metadata.parse(bad)
    assert b"host_builtins" not in Metadata(1, ["p/x"], [], True, "", "").to_json()


def test_builtin_error_is_the_only_way_a_builtin_refuses() -> None:
    assert issubclass(BuiltinError, Exception)
    assert not issubclass(BuiltinError, ValueError)  # ValueError means "not representable"
