"""Exact integers over int64 (docs/policy-abi.md, "Values" and "Numbers").

Compiled policies run side by side with regorus on integers drawn from the whole
int64 range, mixed with floats. Within int64 ours must equal regorus and the exact
value; where the exact result leaves int64 (regorus may still hold it, as a u64 or
a rounded float) ours must be an evaluation error, never a different value.
"""

from __future__ import annotations

import json
import math
import struct
from fractions import Fraction
from typing import Any

import pytest
import regorus
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from policies.compiler import compile_sources
from policies.compiler.consts import ConstPool
from policies.runtime import UNDEFINED, PolicyError, PolicyModule
from policies.runtime import values as V
from policies.runtime.host import base

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
TWO53 = 2**53

PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BOUNDARIES = [
    0, 1, -1, 2, 3, -3, TWO53 - 1, TWO53, TWO53 + 1, TWO53 + 2, -TWO53 - 1, -TWO53,
    2**62, -(2**62), 3037000499, 3037000500, -3037000500, 2**32, I64_MAX, I64_MAX - 1,
    I64_MIN, I64_MIN + 1,
]  # fmt: skip
ints = st.one_of(
    st.integers(I64_MIN, I64_MAX),
    st.integers(-(2**55), 2**55),
    st.integers(-(2**33), 2**33),
    st.integers(-100, 100),
    st.sampled_from(BOUNDARIES),
)
# Halves and quarters: regorus rounds tiny fractions through decimals (0 + 5.960464477539063e-08
# is 5.960464477539065e-08 there), which is not what these tests are about.
# At most 15 significant digits: regorus reads those exactly from JSON (longer ones it
# may read a unit in the last place off, which would test its reader, not arithmetic).
fractional = st.builds(
    lambda k, d: k + d, st.integers(-(2**36), 2**36), st.sampled_from([0.5, 0.25, -0.75, 0.125])
)

OPS = {
    "add": "input.a + input.b",
    "sub": "input.a - input.b",
    "mul": "input.a * input.b",
    "div": "input.a / input.b",
    "rem": "input.a % input.b",
    "lt": "input.a < input.b",
    "le": "input.a <= input.b",
    "eq": "input.a == input.b",
    "ne": "input.a != input.b",
    "sum": "sum(input.xs)",
    "product": "product(input.xs)",
    "max": "max(input.xs)",
    "min": "min(input.xs)",
    "sort": "sort(input.xs)",
    "abs": "abs(input.a)",
    "round": "round(input.a)",
    "ceil": "ceil(input.a)",
    "floor": "floor(input.a)",
    "v": 'sprintf("%v", [input.xs])',
    "fmt16": "format_int(input.a, 16)",
    "fmt2": "format_int(input.a, 2)",
    "fmt10": "format_int(input.a, 10)",
    "tonum": "to_number(input.s)",
    "set": "{input.a, input.b}",
    "obj": '{input.a: "a", input.b: "b"}',
    "setin": "input.a in {input.b, input.a}",
    "objget": '{input.a: "a", input.b: "b"}[input.a]',
    "arr": "[input.a, input.b][input.a]",
    "range": "numbers.range(input.a, input.b)",
}
SOURCE = "package n\nimport rego.v1\n" + "".join(f"{k} := {v}\n" for k, v in OPS.items())


class Side:
    """Our compiled module and regorus, each evaluating one rule of SOURCE."""

    def __init__(self) -> None:
        module = PolicyModule.load(
            compile_sources({"n.rego": SOURCE}, None, [f"n/{k}" for k in OPS])
        )
        self.ours = {k: module.evaluator(f"n/{k}") for k in OPS}
        self.engine = regorus.Engine()
        self.engine.add_policy("n.rego", SOURCE)

    def run(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.engine.set_input_json(json.dumps(doc))

    def our(self, rule: str) -> tuple[str, Any]:
        try:
            v = self.ours[rule].evaluate(self.doc, json_form=True)
        except PolicyError as err:
            return ("error", str(err))
        return ("undefined", None) if v is UNDEFINED else ("value", v)

    def theirs(self, rule: str) -> tuple[str, Any]:
        try:
            out = json.loads(self.engine.eval_query_as_json(f"data.n.{rule}"))
        except BaseException as err:  # regorus panics (pyo3) on i64::MIN / -1
            return ("error", str(err).splitlines()[0])
        if not out.get("result"):
            return ("undefined", None)
        return ("value", out["result"][0]["expressions"][0]["value"])


@pytest.fixture(scope="module")
def side() -> Side:
    return Side()


def same(x: Any, y: Any) -> bool:
    """Equal values: two integers exactly (2^53 + 1 != 2^53), a float by its double
    (regorus prints 2^63 as a float as 9223372036854776000, which JSON reads as an int),
    a fraction within regorus's last-place misreading of JSON decimals."""
    if isinstance(x, bool) or isinstance(y, bool):
        return x is y
    if type(x) is int and type(y) is int:
        return x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        if float(x) == float(y):
            return True
        # a fraction regorus read from JSON may be a unit in the last place off
        fractional = any(type(v) is float and not v.is_integer() for v in (x, y))
        return fractional and math.isclose(x, y, rel_tol=1e-15)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    return bool(x == y)


def fits(x: int) -> bool:
    return I64_MIN <= x <= I64_MAX


def expect_exact(side: Side, rule: str, exact: int | None) -> None:
    """Ours is the exact integer (and so is regorus) or, past int64, an error."""
    ours = side.our(rule)
    if exact is None or not fits(exact):
        assert ours[0] == "error" and "out of range" in ours[1], (rule, side.doc, ours)
        return
    assert ours[0] == "value" and type(ours[1]) is int, (rule, ours)
    assert same(ours[1], exact), (rule, side.doc, ours, exact)
    theirs = side.theirs(rule)
    assert theirs == ("value", exact) and type(theirs[1]) is int, (rule, side.doc, theirs, exact)


def agree(side: Side, rule: str) -> Any:
    ours, theirs = side.our(rule), side.theirs(rule)
    assert ours[0] == theirs[0], (rule, side.doc, ours, theirs)
    if ours[0] == "value":
        assert same(ours[1], theirs[1]), (rule, side.doc, ours, theirs)
    return ours[1]


def trunc_rem(a: int, b: int) -> int:
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def fold(xs: list[int], op: Any, start: int) -> int | None:
    """Left fold within int64, as the runtime folds; None once it leaves int64."""
    acc = start
    for x in xs:
        acc = op(acc, x)
        if not fits(acc):
            return None
    return acc


# ---------------------------------------------------------------- integers


@given(a=ints, b=ints)
@PROP
@example(a=TWO53, b=1)
@example(a=9007199254740992, b=3)
@example(a=I64_MAX, b=1)
@example(a=I64_MIN, b=-1)
@example(a=3037000500, b=3037000500)
@example(a=TWO53 + 1, b=TWO53)
def test_integer_arithmetic_and_order(side: Side, a: int, b: int) -> None:
    side.run({"a": a, "b": b, "xs": [a, b], "s": str(a)})
    expect_exact(side, "add", a + b)
    expect_exact(side, "sub", a - b)
    expect_exact(side, "mul", a * b)
    for rule, want in [("lt", a < b), ("le", a <= b), ("eq", a == b), ("ne", a != b)]:
        assert side.our(rule) == ("value", want)
        assert side.theirs(rule) == ("value", want)
    if b == 0:
        assert side.our("div")[0] == "error" and side.our("rem")[0] == "error"
    elif a % b == 0:
        expect_exact(side, "div", a // b)  # exact when it divides (i64::MIN / -1 leaves int64)
    else:
        ours = side.our("div")
        assert ours == ("value", float(Fraction(a, b))), (a, b, ours)  # correctly rounded
        theirs = side.theirs("div")[1]  # regorus: within a few units in the last place
        assert abs(theirs - ours[1]) <= 4 * math.ulp(ours[1]), (a, b, ours, theirs)
    if b == -1 and a == I64_MIN:
        assert side.our("rem") == ("value", 0)  # regorus panics here
    elif b:
        expect_exact(side, "rem", trunc_rem(a, b))


@given(xs=st.lists(ints, max_size=5))
@PROP
@example(xs=[I64_MAX, 1, -5])  # past int64 midway: an error, although the end fits
@example(xs=[2**32, 2**32])
@example(xs=[TWO53, 1, 1])
def test_aggregates(side: Side, xs: list[int]) -> None:
    side.run({"a": 0, "b": 0, "xs": xs, "s": "0"})
    expect_exact(side, "sum", fold(xs, lambda p, q: p + q, 0))
    expect_exact(side, "product", fold(xs, lambda p, q: p * q, 1))
    if xs:
        expect_exact(side, "max", max(xs))
        expect_exact(side, "min", min(xs))
    else:
        assert side.our("max") == side.theirs("max") == ("undefined", None)
    assert same(agree(side, "sort"), sorted(xs))
    assert agree(side, "v") == "[" + ", ".join(map(str, xs)) + "]"


@given(a=ints)
@PROP
@example(a=I64_MIN)
@example(a=-TWO53 - 1)
def test_unary_builtins_and_formatting(side: Side, a: int) -> None:
    side.run({"a": a, "b": a, "xs": [a], "s": f" {a}\n"})
    expect_exact(side, "abs", abs(a))  # abs(i64::MIN) = 2^63: an error
    for rule in ("round", "ceil", "floor", "tonum"):
        expect_exact(side, rule, a)
    assert agree(side, "fmt16") == format(a, "x")
    assert agree(side, "fmt2") == format(a, "b")
    assert agree(side, "fmt10") == str(a)


@given(a=ints, b=ints)
@PROP
@example(a=TWO53, b=TWO53 + 1)
@example(a=I64_MIN, b=I64_MAX)
def test_sets_and_object_keys(side: Side, a: int, b: int) -> None:
    side.run({"a": a, "b": b, "xs": [], "s": "0"})
    assert same(agree(side, "set"), sorted({a, b}))
    assert agree(side, "setin") is True
    if a != b:  # equal keys with two values: an error for us (as OPA), the last for regorus
        assert agree(side, "obj") == {str(a): "a", str(b): "b"}
        assert agree(side, "objget") == "a"
    arr = side.our("arr")
    assert arr == (("value", [a, b][a]) if a in (0, 1) else ("undefined", None)), arr


@given(a=ints, n=st.integers(-3, 3))
@PROP
@example(a=TWO53 - 1, n=3)
@example(a=I64_MAX - 1, n=1)
@example(a=I64_MIN, n=2)
def test_numbers_range(side: Side, a: int, n: int) -> None:
    b = max(I64_MIN, min(I64_MAX, a + n))
    side.run({"a": a, "b": b, "xs": [], "s": "0"})
    step = 1 if b >= a else -1
    want = list(range(a, b + step, step))
    ours = side.our("range")
    assert ours[0] == "value" and same(ours[1], want), (a, b, ours)
    assert same(side.theirs("range")[1], want)


# ---------------------------------------------------------------- with floats


@given(a=ints, f=fractional)
@PROP
@example(a=TWO53 + 1, f=0.5)
@example(a=I64_MAX, f=1.5)
def test_integers_with_non_integral_floats_are_double_arithmetic(
    side: Side, a: int, f: float
) -> None:
    for x, y in ((a, f), (f, a)):
        side.run({"a": x, "b": y, "xs": [x, y], "s": "0"})
        for rule in ("lt", "le", "eq", "ne", "max", "min", "sort"):
            agree(side, rule)  # exact in both
        # Ours is IEEE double arithmetic on the integer's nearest double; regorus rounds
        # through decimals (7601012029319 * 118.5 is 900719925474301.6 there): close.
        for rule, want in [
            ("add", float(x) + float(y)),
            ("sub", float(x) - float(y)),
            ("mul", float(x) * float(y)),
            ("div", float(x) / float(y) if y else None),
        ]:
            ours, theirs = side.our(rule), side.theirs(rule)
            if want is None:
                assert ours[0] == theirs[0] == "error"
                continue
            assert ours[0] == "value" and ours[1] == want, (rule, x, y, ours)
            assert theirs[0] == "value" and math.isclose(theirs[1], want, rel_tol=1e-14), theirs
        assert side.our("rem")[0] == "error"  # modulo of a non-integer
    assert (side.our("lt")[1], side.our("eq")[1]) == (Fraction(f) < a, False)


def test_a_flagged_integer_equals_the_float_of_the_same_value() -> None:
    src = "package n\nimport rego.v1\neq := input.i == input.f\nset := {input.i, input.f}\n"
    module = PolicyModule.load(compile_sources({"n.rego": src}, None, ["n/eq", "n/set"]))
    doc = {"i": 2**60, "f": float(2**60)}
    assert module.evaluator("n/eq").evaluate(doc) is True
    assert len(module.evaluator("n/set").evaluate(doc)) == 1
    doc = {"i": 2**60 + 1, "f": float(2**60)}
    assert module.evaluator("n/eq").evaluate(doc) is False
    assert len(module.evaluator("n/set").evaluate(doc)) == 2


# ---------------------------------------------------------------- to_number


@given(a=st.integers(-(10**25), 10**25))
@PROP
@example(a=I64_MAX + 1)
@example(a=I64_MIN - 1)
@example(a=2**64)
def test_to_number_of_integer_strings(side: Side, a: int) -> None:
    side.run({"a": 0, "b": 0, "xs": [], "s": str(a)})
    expect_exact(side, "tonum", a)  # past int64: an error, never a rounded double


# ---------------------------------------------------------------- the clock


def test_time_now_ns_is_exact_and_one_instant_per_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instant = 1_790_000_000_123_456_789  # odd: a double would round it to 256 ns
    monkeypatch.setattr(base.time, "time_ns", lambda: instant)
    src = "package n\nimport rego.v1\nx := [time.now_ns(), time.now_ns(), time.now_ns() + 1]\n"
    module = PolicyModule.load(compile_sources({"n.rego": src}, None, ["n/x"]))
    assert module.meta.pure is False
    assert module.evaluator().evaluate({}) == [instant, instant, instant + 1]


def test_time_now_ns_is_the_same_within_an_evaluation() -> None:
    src = "package n\nimport rego.v1\nx := time.now_ns() == time.now_ns()\ny := time.now_ns()\n"
    module = PolicyModule.load(compile_sources({"n.rego": src}, None, ["n/x", "n/y"]))
    assert module.evaluator("n/x").evaluate({}) is True
    y = module.evaluator("n/y").evaluate({})
    assert type(y) is int and y > 1_700_000_000 * 10**9


# ---------------------------------------------------------------- the layout


@pytest.mark.parametrize("x", [0, 1, -1, TWO53, -TWO53, TWO53 - 1])
def test_integers_within_2_53_are_never_flagged(x: int) -> None:
    data, _ = V.encode_value(x, 0x1000)
    assert data == struct.pack("<IId", V.T_NUM, 0, float(x))


@pytest.mark.parametrize("x", [TWO53 + 1, -TWO53 - 1, I64_MAX, I64_MIN, 2**60])
def test_integers_beyond_2_53_are_flagged_i64_records(x: int) -> None:
    data, ptr = V.encode_value(x, 0x1000)
    assert data == struct.pack("<BBHIq", V.T_NUM, 1, 0, 0, x)
    out = V.decode(memoryview(bytes(0x1000) + data), ptr)
    assert type(out) is int and out == x


@pytest.mark.parametrize("x", [I64_MAX + 1, I64_MIN - 1, 10**30])
def test_integers_past_int64_are_refused_with_the_path(x: int) -> None:
    with pytest.raises(ValueError, match=r"value\[1\]\.k: integer beyond int64"):
        V.encode_value([0, {"k": x}], 0x1000)


def test_the_constant_pool_keeps_neighbouring_big_integers_apart() -> None:
    pool = ConstPool(0x10_0000)
    assert pool.add(TWO53) != pool.add(TWO53 + 1)
    assert pool.add(2**60) == pool.add(2**60)
    assert pool.add(1) == pool.add(1.0)
