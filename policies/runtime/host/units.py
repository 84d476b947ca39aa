"""``units.parse`` and ``units.parse_bytes``, as regorus computes them.

The number before the suffix is read as a JSON number (serde_json: an integer
that fits 64 bits stays an integer, anything else is a double), then multiplied
by the suffix's power: an integer while the product fits 64 bits, a double past
it or for a fractional power (milli and below). regorus knows SI suffixes OPA
does not (``Q``, ``da``, ``n``...); A1 answers as regorus. An unknown suffix is
undefined, a malformed number an error. An integer result is returned exact: past
int64 (regorus holds u64 too) the runtime's values refuse it rather than round it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.host.clock import RUST_WHITESPACE
from policies.runtime.values import UNDEFINED

__all__ = ["MAX_TEXT"]

MAX_TEXT = 256
"""Longest resource string read (no quantity is longer; a longer one is an error)."""

_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(inf|infinity|nan)", re.ASCII | re.IGNORECASE)
_U64_MAX, _I64_MIN = 2**64 - 1, -(2**63)
_MAX_EXP = 400  # 10^400 overflows a double whatever the digits before it

_TEN = {
    "E": 18, "e": 18, "P": 15, "p": 15, "T": 12, "t": 12, "G": 9, "g": 9, "M": 6,
    "K": 3, "k": 3, "m": -3, "Q": 30, "R": 27, "Y": 24, "Z": 21, "h": 2, "da": 1,
    "d": -1, "c": -2, "\u03bc": -6, "n": -9, "f": -15, "a": -18, "z": -21, "y": -24,
    "r": -27, "q": -30, "": 0,
}  # fmt: skip
_TWO = {"ki": 10, "mi": 20, "gi": 30, "ti": 40, "pi": 50, "ei": 60, "zi": 70, "yi": 80}
_TWO_BYTES = {**_TWO, **{k + "b": v for k, v in _TWO.items()}, "": 0}
_TEN_BYTES = {
    **{k: v for k, v in (("q", 30), ("r", 27), ("y", 24), ("z", 21), ("e", 18),
                          ("p", 15), ("t", 12), ("g", 9), ("m", 6), ("k", 3))},
}  # fmt: skip
_TEN_BYTES.update({k + "b": v for k, v in list(_TEN_BYTES.items())})

Number = int | float


def _fits(n: int) -> bool:
    return _I64_MIN <= n <= _U64_MAX


class _Decimal:
    """``mantissa * 10**exp10 * 2**exp2``, exact, as regorus keeps a parsed number."""

    def __init__(self, mantissa: int, exp10: int, exp2: int = 0) -> None:
        self.m, self.e10, self.e2 = mantissa, exp10, exp2

    def value(self, fn: str) -> Number:
        """An integer when it is one within 64 bits (regorus's integers); else the double
        nearest the exact value (regorus's own conversion can be 1 ulp off it)."""
        m, e10, e2 = self.m, self.e10, self.e2
        if m == 0:
            return 0
        if e10 > _MAX_EXP:
            raise BuiltinError(f"{fn}: could not serialize number")
        if e10 < -2 * _MAX_EXP:
            return 0.0
        exact = Fraction(m) * Fraction(10) ** e10 * Fraction(2) ** e2
        if exact.denominator == 1 and _fits(exact.numerator):
            return exact.numerator
        try:
            return float(exact)
        except OverflowError:
            raise BuiltinError(f"{fn}: could not serialize number") from None


def _split(fn: str, value: Any) -> tuple[str, str]:
    """The number's text and the suffix of a resource string (regorus's reading)."""
    want(fn, 1, value, "string")
    s: str = value
    if len(s) > MAX_TEXT:
        raise BuiltinError(f"{fn}: resource string longer than {MAX_TEXT} characters")
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1]
    if any(c in RUST_WHITESPACE for c in s):
        raise BuiltinError(f"{fn}: spaces not allowed in resource strings")
    last = max((i for i, c in enumerate(s) if "0" <= c <= "9"), default=-1)
    number, suffix = (s[: last + 1], s[last + 1 :]) if last >= 0 else (s, "")
    return ("0" + number if number.startswith(".") else number), suffix


def _number(fn: str, text: str) -> _Decimal:
    """regorus's number syntax: a sign, digits, a point, an exponent; underscores ignored."""
    if _NON_FINITE.fullmatch(text):
        raise BuiltinError(f"{fn}: could not serialize number")
    m = _NUMBER.fullmatch(text.replace("_", ""))
    if m is None or not (m.group(2) or m.group(3) is not None):
        raise BuiltinError(f"{fn}: could not parse number")
    sign, whole, frac, exp = m.groups()
    frac = frac or ""
    mantissa = int(whole + frac or "0") * (-1 if sign == "-" else 1)
    e = int(exp) if exp else 0
    if abs(e) > 10 * _MAX_EXP:
        e = max(min(e, 10 * _MAX_EXP), -10 * _MAX_EXP)
    return _Decimal(mantissa, e - len(frac))


@builtin("units.parse")
def parse(value: Any) -> Any:
    fn = "units.parse"
    text, suffix = _split(fn, value)
    if suffix in _TEN:
        d = _number(fn, text)
        return _Decimal(d.m, d.e10 + _TEN[suffix]).value(fn)
    if suffix.lower() in _TWO:
        d = _number(fn, text)
        return _Decimal(d.m, d.e10, _TWO[suffix.lower()]).value(fn)
    return UNDEFINED


def _round(x: Number) -> Number:
    """Rust's f64::round: halves away from zero."""
    if type(x) is int or abs(x) >= 2**52:
        return x
    r = int(abs(x) + 0.5)
    return -r if x < 0 else r


@builtin("units.parse_bytes")
def parse_bytes(value: Any) -> Any:
    fn = "units.parse_bytes"
    text, suffix = _split(fn, value)
    key = suffix.lower()
    if key in _TWO_BYTES:
        d = _number(fn, text)
        return _round(_Decimal(d.m, d.e10, _TWO_BYTES[key]).value(fn))
    if key in _TEN_BYTES:
        d = _number(fn, text)
        return _round(_Decimal(d.m, d.e10 + _TEN_BYTES[key]).value(fn))
    return UNDEFINED
