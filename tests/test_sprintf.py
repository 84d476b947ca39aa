"""sprintf's widths, precisions and float verbs (``%5d %05d %.2f %e %g`` …)
against regorus, which is the oracle: formats built from flags × width ×
precision × verb, applied to numbers, strings and other values.

regorus keeps integers and floats apart; the runtime treats an integral double
within 2^53 (other than -0) as an integer, which is what regorus's arithmetic
produces, and holds integers beyond 2^53 exactly (int64). The generated numbers
stay in that model: integers over int64, other floats as Python's repr writes them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.rego_oracle import Compiled, Oracle, agree
from tests.test_a1rt import E_RANGE, PROP, Runtime, Trapped, check

FLAGS = ["", "", "", "-", "+", " ", "#", "0"]
VERBS = [*"dsvfFeEgGxXoObcqT%", "", "é"]


@st.composite
def specs(draw: st.DrawFn) -> str:
    flag = draw(st.sampled_from(FLAGS))
    width = draw(st.one_of(st.just(""), st.integers(0, 24).map(str), st.just("05")))
    precision = draw(
        st.one_of(
            st.just(""),
            st.just("."),
            st.integers(0, 25).map(lambda n: f".{n}"),
            st.sampled_from([".300", ".308", ".309", ".400", ".65535", ".65536", ".4294967295"]),
        )
    )
    return "%" + flag + width + precision + draw(st.sampled_from(VERBS))


formats = st.lists(
    st.tuples(st.text(st.sampled_from("ab :|"), max_size=3), specs()), min_size=1, max_size=3
).map(lambda parts: "".join(t + s for t, s in parts))

NICE = [0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 1.005, 2.675, 0.1, 0.3, 1e-7, 5e-324, 2.2e-308]
floats = st.one_of(
    st.sampled_from(NICE),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False),
    st.floats(-1e-300, 1e-300, allow_nan=False, allow_infinity=False),
).filter(lambda x: not (x.is_integer() and abs(x) >= 2**53))
numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.integers(-(2**63), 2**63 - 1),
    floats,
)
others = st.one_of(
    st.none(),
    st.booleans(),
    st.text(st.sampled_from("ab%é"), max_size=4),
    st.lists(numbers, max_size=2),
)
arguments = st.lists(st.one_of(numbers, numbers, others), max_size=4)


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime()


@given(formats, arguments)
@PROP
@example("%5d|%-5d|%05d|%.2d", [3, 3, -3, 3])
@example("%.2f|%8.3f|%.0f|%.f|%.3f", [1.5, 3.14159, 2.5, 0.5, 3])
@example("%5s|%-5s|%.3s|%5v", ["ab", "ab", "abcdef", 1.5])
@example("%x|%X|%o|%O|%b|%e|%E|%g|%G|%%", [255, 255, 8, 8, 5, 1.5, 1.5, -1.5, 1e-7])
@example("%e|%e|%e|%E", [100, -12345, 0, 0.0001234])
@example("%g|%g|%G|%g", [0, -0.0, 5e-324, 123456789.5])
@example("%.2f|%.2f|%.2f|%.1f", [-0.0, 0.125, 1.005, -0.04])
@example("%.25f|%.30f|%.308f|%.309f", [0.1, 0.3, 1.5, 1.5])
@example("%.65536f", [1.5])
@example(
    "%d|%x|%o|%b|%e|%f|%.2f|%5d|%025d",
    [2**53 + 1, -(2**63), 2**63 - 1, -(2**60), 2**62, -(2**53) - 1, 2**60, 2**54, -(2**54)],
)
@example("%c|%c|%c", [4294967361, 2**53 + 65, 2**53])  # the low 32 bits, as regorus
@example("%g", [2**53 + 1])
def test_sprintf_matches_regorus(rt: Runtime, fmt: str, args: list[Any]) -> None:
    check(rt, "a1_b_sprintf", "sprintf(a0, a1)", fmt, args)


def test_precision_and_float_verbs(rt: Runtime) -> None:
    """The cases the issue names, spelled out (regorus's answers)."""
    cases = {
        ("%5d", 3): "    3",
        ("%05d", -3): "-000-3",
        ("%.2f", 1.5): "1.50",
        ("%.2f", 3): "3",
        ("%.2f", 0.125): "0.13",
        ("%.3f", -0.0): "-0.000",
        ("%.0f", 2.5): "3",
        ("%e", 1.5): "1.5e0",
        ("%e", 100): "1.00e2",
        ("%E", 0.125): "1.25E-1",
        ("%g", 1.5): "1.5e0",
        ("%g", -1.5): "--1.5e0",
        ("%G", 0): "0",
        ("%5s", "ab"): "ab",
        ("%.3s", "abcdef"): "abcdef",
        ("%.400f", 1.5): "NaN",
    }
    for (fmt, arg), want in cases.items():
        assert rt.apply("a1_b_sprintf", fmt, [arg]) == want, (fmt, arg)


def test_refused_like_regorus(rt: Runtime) -> None:
    """regorus errors (or, past 65535 decimals, panics): the runtime traps."""
    for fmt in ("%-5d", "%8.3f", "%+d", "%#x", "%.65536f"):
        with pytest.raises(Trapped):
            rt.apply("a1_b_sprintf", fmt, [1.5 if "f" in fmt else 3])
    with pytest.raises(Trapped) as err:
        rt.apply("a1_b_sprintf", "%.4294967295f", [0.5])
    assert err.value.code == E_RANGE


@pytest.mark.parametrize("fmt", ["%.2f", "%8.3f", "%e", "%g", "%05d", "%5.1f", "%.2f %e %g %5d %%"])
def test_compiled_policy_passes_sprintf_through(fmt: str) -> None:
    """Through the compiler: the format reaches the runtime unchanged."""
    src = {"p.rego": f'package p\nimport rego.v1\ns := sprintf("{fmt}", input.args)\n'}
    ours, oracle = Compiled(src, ["p/s"]), Oracle(src)
    for args in ([1.5] * 4 + [3], [2.675] * 4 + [-7], [100] * 5, [0.001] * 4 + [12]):
        got, want = ours.eval("p/s", {"args": args}), oracle.eval("p/s", {"args": args})
        assert agree(got, want), (fmt, args, got, want)
