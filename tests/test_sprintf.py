"""sprintf as OPA prints it: Go's fmt.Sprintf over OPA's conversion of the arguments.

Where C's printf and Go's fmt agree (%d %x %X %o on integers, %e %E %f on floats,
with flags, widths and precisions), Python's ``%`` operator is the oracle and
hypothesis drives it. The rest (%v, %g, %O, %q, %T, %U, Go's ``%!`` reports, Rego
values as text, argument indexes) is spelled out as Go prints it. The last tests
go through the compiler: the policy calls the host builtin and gets the same text.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies.compiler import compile_sources
from policies.runtime.host.base import REGISTRY, BuiltinError
from policies.runtime.host.sprintf import MAX_PAD, sprintf
from policies.runtime.module import PolicyError, PolicyModule
from policies.runtime.values import RegoSet

PROP = settings(max_examples=300, deadline=None)

# ------------------------------------------------------------------ the C/Go common ground

widths = st.one_of(st.just(""), st.integers(0, 30).map(str))
precisions = st.one_of(st.just(""), st.just("."), st.integers(0, 30).map(lambda n: f".{n}"))
int64s = st.one_of(st.integers(-1000, 1000), st.integers(-(2**63), 2**63 - 1))
# An integral double is an integer in the runtime (and in OPA after arithmetic):
# the float verbs get the others.
floats = st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False).filter(
    lambda x: not x.is_integer()
)


@st.composite
def flags(draw: st.DrawFn, allowed: str) -> str:
    return "".join(draw(st.lists(st.sampled_from(allowed), max_size=3, unique=True)))


def c_format(spec: str, value: int | float) -> str:
    # Python's "%.f" is C's "%.0f"; Go reads "%.f" the same way.
    return (spec.replace(".d", ".0d").replace(".x", ".0x").replace(".X", ".0X")) % value


@given(
    flags("-+ 0"), widths, precisions, st.sampled_from("dxXo"), int64s, st.sampled_from(["", "#"])
)
@PROP
@example("0", "8", "", "d", -3, "")
@example("+", "", ".5", "x", 255, "#")
@example("-", "6", "", "X", -(2**63), "")
def test_integer_verbs_agree_with_c(
    flag: str, width: str, precision: str, verb: str, value: int, sharp: str
) -> None:
    # Python's % parts from Go (and C) on "#o" (0o10, Go 010), on "0" with a precision
    # (Python pads with zeros, Go and C with spaces), on "#" with zero padding (Python
    # counts 0x inside the width, Go does not), and on %.0d of 0 (Go prints nothing,
    # Python "0"): those are in the Go table below.
    if sharp and (verb == "o" or "0" in flag):
        sharp = ""
    if precision:
        flag = flag.replace("0", "")
    if value == 0 and precision in (".", ".0"):
        value = 1
    spec = f"%{sharp}{flag}{width}{precision}{verb}"
    assert sprintf(spec, [value]) == c_format(spec, value), spec


@given(flags("-+ 0#"), widths, precisions, st.sampled_from("eEf"), floats)
@PROP
@example("", "", ".2", "f", 2.675)
@example("0", "12", ".3", "e", -1.5e-7)
@example("#", "", ".0", "f", 0.5)
@example("", "", ".25", "f", 0.1)
def test_float_verbs_agree_with_c(
    flag: str, width: str, precision: str, verb: str, value: float
) -> None:
    spec = f"%{flag}{width}{precision}{verb}"
    assert sprintf(spec, [value]) == c_format(spec, value), spec


@given(floats)
@PROP
def test_g_with_a_precision_agrees_with_c(value: float) -> None:
    for spec in ("%.3g", "%.1g", "%.10G", "%12.5g", "%-+.7g"):
        assert sprintf(spec, [value]) == spec % value, spec


# ------------------------------------------------------------------ Go's own answers

GO: list[tuple[str, list[Any], str]] = [
    # the regorus answers the C builtin copied, now as Go prints them
    ("%d", [-5], "-5"),
    ("%05d", [-3], "-0003"),
    ("%.2f", [3], "%!f(int=03)"),  # an integer is a Go int: the float verb does not fit
    ("%.2f", [3.14159], "3.14"),
    ("%g", [1.5], "1.5"),
    ("%o", [8], "10"),
    ("%O", [8], "0o10"),
    ("%#o", [8], "010"),
    ("%.0d|%#.0x|%5.0d|", [0, 0, 0], "||     |"),
    ("%05.2d|%-05d|", [1, 1], "   01|1    |"),
    ("%#08x", [255], "0x000000ff"),
    ("%#b", [5], "0b101"),
    # %v and %g of floats: shortest digits, an exponent from 1e+06 and below 1e-04
    ("%v", [123456.5], "123456.5"),
    ("%v", [1234567.5], "1.2345675e+06"),
    ("%v", [0.0001], "0.0001"),
    ("%v", [0.00001], "1e-05"),
    ("%v|%v", [1e21 + 0.5, 5e-324], "1e+21|5e-324"),
    ("%g|%G|%.3g|%.3G", [1e-7, 1e-7, 1234567.5, 0.0001234], "1e-07|1E-07|1.23e+06|0.000123"),
    ("%#g|%#.3g|%#.0f", [1.5, 2.5, 2.5], "1.50000|2.50|2."),
    ("%6.2v|%-8v|%08v", [3.14159, 1.5, -1.5], "   3.1|1.5     |-00001.5"),
    (
        "%x|%X|%.1x|%b",
        [1.5, -2.5, 1.96875, 1.5],
        "0x1.8p+00|-0X1.4P+01|0x1.0p+01|6755399441055744p-52",
    ),
    ("%v|%+v|%+d|% d|%x|%X", [5, 5, 5, 5, -255, 255], "5|5|+5| 5|-ff|FF"),
    ("%d|%v", [2**63 - 1, -(2**63)], "9223372036854775807|-9223372036854775808"),
    # characters and quoting
    (
        "%c|%c|%c|%q|%+q|%U|%#U",
        [65, 0x1F600, -1, 65, 0xE9, 0x1F600, 65],
        "A|😀|\ufffd|'A'|'\\u00e9'|U+1F600|U+0041 'A'",
    ),
    ("%q|%+q|%#q|%#q", ['a"b\n', "é", "ab", "a`b"], '"a\\"b\\n"|"\\u00e9"|`ab`|"a`b"'),
    ("%q", ["\x00\x7f\u00a0\u2028😀"], '"\\x00\\x7f\\u00a0\\u2028😀"'),
    ("%x|% X|%# x|%.1x", ["hi", "hi", "hi", "hi"], "6869|68 69|0x68 0x69|68"),
    ("%5s|%-5s|%.2s|%05s|%#v", ["ab", "ab", "héllo", "ab", "a"], '   ab|ab   |hé|000ab|"a"'),
    ("%T|%T|%T|%T|%T", [1, 1.5, "a", [1], True], "int|float64|string|string|string"),
    # what Go reports instead of failing
    ("%s|%d|%t|%z", [5, 1.5, True, 1], "%!s(int=5)|%!d(float64=1.5)|%!t(string=true)|%!z(int=1)"),
    ("%5s|%d", [5, "a"], "%!s(int=    5)|%!d(string=a)"),
    ("%d %d", [1], "1 %!d(MISSING)"),
    ("x", [1, "a", 1.5], "x%!(EXTRA int=1, string=a, float64=1.5)"),
    ("%d %", [1], "1 %!(NOVERB)"),
    ("%!", [], "%!!(MISSING)"),
    ("%%|%5%", [], "%|%"),
    ("%é", [1], "%!é(int=1)"),
    # widths and precisions from arguments, argument indexes
    ("%*d|%-*d|%.*f|%*d", [5, 3, 5, 3, 2, 1.5, -4, 7], "    3|3    |1.50|7   "),
    ("%*d|%.*d", [1.5, 3, -1, 4], "%!(BADWIDTH)3|%!(BADPREC)4"),
    ("%[2]d %[1]d|%[2]*[1]d", [1, 2], "2 1| 1"),
    ("%[3]d|%[0]d|%[x]d", [1], "%!d(BADINDEX)|%!d(BADINDEX)|%!d(BADINDEX)"),
    ("%[1]d %[1]d", [7, 8], "7 7"),  # reordered: no EXTRA report
    # Rego values other than numbers and strings are their Rego text
    ("%v|%s|%v|%v", [True, False, None, [1, "a"]], 'true|false|null|[1, "a"]'),
    ("%v", [{"b": [1.5, 1e21], "a": {"x": None}}], '{"a": {"x": null}, "b": [1.5, 1e+21]}'),
    ("%v|%v|%v", [RegoSet([2, 1]), RegoSet([]), [[], {}]], "{1, 2}|set()|[[], {}]"),
    ("%v", [{1: "a", ("k",): RegoSet(["s"])}], '{1: "a", ["k"]: {"s"}}'),
    ("%v", [['a"\n\u00e9']], '["a\\"\\n\u00e9"]'),
    ("%d", [[1]], "%!d(string=[1])"),
    # integers beyond int64 print exactly, as Go's *big.Int
    ("%d|%s|%v|%x", [2**70, 2**70, -(2**70), 2**70], f"{2**70}|{2**70}|{-(2**70)}|{2**70:x}"),
    (
        "%T|%f|%+d|%08d",
        [2**64, 2**64, 2**64, -(2**64)],
        f"*big.Int|%!f(big.Int={2**64})|+{2**64}|-{2**64}",
    ),
]


@pytest.mark.parametrize(("fmt", "args", "want"), GO)
def test_go_answers(fmt: str, args: list[Any], want: str) -> None:
    assert sprintf(fmt, args) == want


def test_integral_floats_are_integers() -> None:
    """The runtime keeps no float 3.0 apart from 3, as OPA's arithmetic does not."""
    assert sprintf("%d|%v|%v", [3.0, 2.0**60, [2.0]]) == f"3|{2**60}|[2]"


# ------------------------------------------------------------------ refusals and bounds


def test_wrong_operand_types() -> None:
    with pytest.raises(BuiltinError, match="operand 1 must be string"):
        sprintf(1, [])
    with pytest.raises(BuiltinError, match="operand 2 must be array but got set"):
        sprintf("%v", RegoSet([1]))
    with pytest.raises(BuiltinError, match="%w"):
        sprintf("%w", [1])


def test_widths_and_precisions_are_bounded() -> None:
    assert len(sprintf(f"%{MAX_PAD}d", [1])) == MAX_PAD
    for spec, args in (
        (f"%{MAX_PAD + 1}d", [1]),
        (f"%.{MAX_PAD + 1}f", [0.5]),
        ("%*d", [10**6, 1]),
    ):
        with pytest.raises(BuiltinError, match=str(MAX_PAD)):
            sprintf(spec, args)
    # Past Go's own limit (10^6) the number is not a width: Go's report, no padding
    assert sprintf("%*d", [10**6 + 1, 1]) == "%!(BADWIDTH)1"
    assert sprintf("%99999999d", [1]) == "%!(NOVERB)%!(EXTRA int=1)"


def test_the_result_is_bounded() -> None:
    """A short format repeating a large argument, or many wide fields, is refused early."""
    with pytest.raises(BuiltinError, match="result longer"):
        sprintf("%[1]s" * 40, ["x" * (1 << 19)])
    with pytest.raises(BuiltinError, match="result longer"):
        sprintf("%[1]*[2]d" * 2000, [MAX_PAD, 1])


def test_many_unclosed_indexes_stay_linear() -> None:
    """Each "[" looks for "]" once: a long format of "%[" is no quadratic scan."""
    assert sprintf("%[d" * 50_000, [1]) == "%!d(BADINDEX)" * 50_000


# ------------------------------------------------------------------ through the compiler

SOURCE = """package p
import rego.v1
args := [input.user, count(input.roles), input.roles, input.ratio]
msg := sprintf("user %s has %d roles: %v (%.1f%%)", args)
deny contains sprintf("bad value %s", [x]) if { some x in input.values }
raw := sprintf(input.fmt, input.args)
"""


@pytest.fixture(scope="module")
def module() -> PolicyModule:
    return PolicyModule.load(
        compile_sources({"p.rego": SOURCE}, None, ["p/msg", "p/deny", "p/raw"])
    )


def test_compiled_policy_calls_the_host_builtin(module: PolicyModule) -> None:
    assert "sprintf" in module.meta.host_builtins
    assert module.meta.pure is True
    doc = {"user": "ana", "roles": ["admin", "dev"], "ratio": 0.25, "values": [1, "x"]}
    got = module.evaluator("p/msg").evaluate(doc)
    assert got == 'user ana has 2 roles: ["admin", "dev"] (0.2%)'
    assert module.evaluator("p/deny").evaluate(doc, json_form=True) == [
        "bad value %!s(int=1)",
        "bad value x",
    ]


def _json_args(args: list[Any]) -> bool:
    """Arguments an input document can carry: no sets, non-string keys or big integers."""
    return not any(
        isinstance(a, (dict, RegoSet)) or (type(a) is int and abs(a) >= 2**63) for a in args
    )


@pytest.mark.parametrize(("fmt", "args", "want"), [row for row in GO if _json_args(row[1])])
def test_compiled_matches_go(module: PolicyModule, fmt: str, args: list[Any], want: str) -> None:
    assert module.evaluator("p/raw").evaluate({"fmt": fmt, "args": args}) == want


def test_compiled_policy_fails_closed_on_a_refusal(module: PolicyModule) -> None:
    with pytest.raises(PolicyError, match="operand 2 must be array"):
        module.evaluator("p/raw").evaluate({"fmt": "%v", "args": {"a": 1}})
    with pytest.raises(PolicyError, match=str(MAX_PAD)):
        module.evaluator("p/raw").evaluate({"fmt": "%20000d", "args": [1]})


def test_registered_as_a_pure_host_builtin() -> None:
    entry = REGISTRY["sprintf"]
    assert entry.pure and entry.arity == 2
