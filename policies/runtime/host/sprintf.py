"""``sprintf`` as OPA does it: Go's ``fmt.Sprintf`` over OPA's conversion of each argument.

OPA-Envoy users' policies were written against OPA, so A1 prints what OPA prints,
not what regorus prints (regorus signs negative numbers twice, ignores most
widths and precisions, and errors where Go prints a ``%!verb(type=value)``).
OPA hands ``fmt.Sprintf`` an integer as a Go ``int`` (``*big.Int`` beyond int64),
any other number as a ``float64``, a string as a Go string, and any other value
as its Rego text (``[1, "a"]``, ``{"a": 1}``, ``set()``, ``true``, ``null``) as a
string. Go never fails: a verb that does not fit its argument prints
``%!d(float64=1.5)``, a missing argument ``%!d(MISSING)``, an extra one
``%!(EXTRA int=1)``.

The runtime holds an integral number as an integer, so a number written ``3.0``
is an ``int`` here where OPA, keeping the literal's text, would pass a float64;
the result of arithmetic is an integer in both. Floats nested in a collection
print as Go's ``%v`` does (OPA prints the number's text as it was written).

Work is bounded: widths and precisions past ``MAX_PAD`` and results past
``MAX_RESULT_CHARS`` characters are refused (Go would allocate them).
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.host.strings import MAX_RESULT_CHARS, BoundedText
from policies.runtime.values import RegoSet, rego_sort_key

__all__ = ["MAX_PAD", "go_sprintf", "rego_text", "sprintf"]

MAX_PAD = 10_000
"""Largest width or precision accepted (Go accepts up to 10^6)."""

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_U64 = (1 << 64) - 1
_MAX_RUNE = 0x10FFFF
_LOWER, _UPPER = "0123456789abcdefx", "0123456789ABCDEFX"
_TYPE = {"int": "int", "big": "*big.Int", "float": "float64", "string": "string"}

GoArg = tuple[str, Any]  # (kind, value): kind one of _TYPE's keys

# ------------------------------------------------------------------ Go quoting


def _is_print(r: int) -> bool:
    """Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols, ASCII space."""
    if r <= 0xFF:
        return 0x20 <= r <= 0x7E or (0xA1 <= r <= 0xFF and r != 0xAD)
    return chr(r).isprintable()  # same classes: not Other (C*) nor Separator (Z*)


_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _escaped(r: int, quote: str, ascii_only: bool) -> str:
    """One code point as Go's strconv.appendEscapedRune writes it."""
    c = chr(r)
    if c == quote or c == "\\":
        return "\\" + c
    if (r < 0x80 or not ascii_only) and _is_print(r):
        return c
    if r in _ESCAPES:
        return _ESCAPES[r]
    if r < 0x20 or r == 0x7F:
        return f"\\x{r:02x}"
    if r > _MAX_RUNE or 0xD800 <= r < 0xE000:
        r = 0xFFFD
    return f"\\u{r:04x}" if r < 0x10000 else f"\\U{r:08x}"


def go_quote(s: str, ascii_only: bool = False) -> str:
    """Go's strconv.Quote (QuoteToASCII when ``ascii_only``)."""
    if s.isprintable() and '"' not in s and "\\" not in s and (not ascii_only or s.isascii()):
        return f'"{s}"'
    return '"' + "".join(_escaped(ord(c), '"', ascii_only) for c in s) + '"'


def _quote_rune(r: int, ascii_only: bool) -> str:
    if r > _MAX_RUNE or 0xD800 <= r < 0xE000:
        r = 0xFFFD
    return "'" + _escaped(r, "'", ascii_only) + "'"


def _can_backquote(s: str) -> bool:
    for c in s:
        r = ord(c)
        if r >= 0x80:
            if r == 0xFEFF:
                return False
        elif (r < 0x20 and r != 9) or r == 0x60 or r == 0x7F:
            return False
    return True


# ------------------------------------------------------------------ strconv.FormatFloat


def _shortest(a: float) -> tuple[str, int]:
    """Shortest round-trip digits of ``a`` >= 0 and the decimal point's position."""
    if a == 0:
        return "", 0
    _, digits, exp = Decimal(repr(a)).as_tuple()
    ds = "".join(map(str, digits))
    return ds.rstrip("0"), len(ds) + int(exp)


def _rounded(a: float, n: int) -> tuple[str, int]:
    """``a`` >= 0 correctly rounded to ``n`` significant digits (trailing zeros dropped)."""
    if a == 0:
        return "", 0
    mantissa, exp = f"{a:.{n - 1}e}".split("e")
    return mantissa.replace(".", "").rstrip("0"), int(exp) + 1


def _fmt_e(ds: str, dp: int, prec: int, ch: str) -> str:
    s = ds[:1] or "0"
    if prec > 0:
        s += "." + ds[1 : 1 + prec].ljust(prec, "0")
    exp = dp - 1 if ds else 0
    return f"{s}{ch}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f(ds: str, dp: int, prec: int) -> str:
    s = ds[:dp].ljust(dp, "0") if dp > 0 else "0"
    if prec > 0:
        lead = min(max(-dp, 0), prec)  # zeros between the point and the first digit
        frac = "0" * lead + ds[max(dp, 0) : max(dp, 0) + prec - lead]
        s += "." + frac.ljust(prec, "0")
    return s


def _float_bits(a: float) -> tuple[int, int]:
    """Mantissa (with the implicit bit) and unbiased exponent of ``a`` >= 0."""
    bits = struct.unpack("<Q", struct.pack("<d", a))[0]
    exp, mant = (bits >> 52) & 0x7FF, bits & ((1 << 52) - 1)
    if exp == 0:
        exp = 1
    else:
        mant |= 1 << 52
    return mant, exp - 1023


def _fmt_x(a: float, prec: int, verb: str) -> str:
    """Go's %x of a float: 0x1.8p+00."""
    mant, exp = _float_bits(a)
    if mant == 0:
        exp = 0
    mant <<= 60 - 52
    while mant and not mant & (1 << 60):
        mant <<= 1
        exp -= 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if (extra | (mant & 1)) > 1 << 59:
            mant += 1
        mant <<= 60 - shift
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    digits = _LOWER if verb == "x" else _UPPER
    out = ["0", verb, str((mant >> 60) & 1)]
    mant = (mant << 4) & _U64
    if (prec < 0 and mant) or prec > 0:
        out.append(".")
        count = prec if prec > 0 else 16  # shortest: until no bits are left
        for _ in range(count):
            if prec < 0 and not mant:
                break
            out.append(digits[(mant >> 60) & 15])
            mant = (mant << 4) & _U64
    out.append(f"{'p' if verb == 'x' else 'P'}{'-' if exp < 0 else '+'}{abs(exp):02d}")
    return "".join(out)


def format_float(x: float, verb: str, prec: int) -> str:
    """Go's strconv.FormatFloat(x, verb, prec, 64) for verbs b e E f g G x X."""
    a = abs(x)
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if verb == "b":
        mant, exp = _float_bits(a)
        exp -= 52
        return f"{sign}{mant}p{'+' if exp >= 0 else ''}{exp}"
    if verb in "xX":
        return sign + _fmt_x(a, prec, verb)
    if verb in "eE":
        return sign + format(a, f".{prec}{verb}")
    if verb == "f":
        return sign + format(a, f".{prec}f")
    shortest = prec < 0
    if shortest:
        ds, dp = _shortest(a)
        prec, eprec = len(ds), 6
    else:
        prec = max(prec, 1)
        ds, dp = _rounded(a, prec)
        eprec = len(ds) if prec > len(ds) >= dp else prec
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        return sign + _fmt_e(ds, dp, min(prec, len(ds)) - 1, "e" if verb == "g" else "E")
    if prec > dp:
        prec = len(ds)
    return sign + _fmt_f(ds, dp, max(prec - dp, 0))


# ------------------------------------------------------------------ Rego text


def _number_text(v: int | float) -> str:
    if type(v) is int:
        return str(v)
    return format_float(v, "g", -1)


def rego_text(v: Any, limit: int = MAX_RESULT_CHARS) -> str:
    """``v`` as OPA's ``Term.String()`` writes it; longer than ``limit`` is refused."""
    out = BoundedText(f"sprintf: an argument's text is longer than {limit} characters", limit)
    put = out.add

    def walk(x: Any) -> None:
        t = type(x)
        if t is str:
            put(go_quote(x))
        elif t is bool:
            put("true" if x else "false")
        elif x is None:
            put("null")
        elif t is int or t is float:
            put(_number_text(_integral(x)))
        elif t is list or t is tuple:
            put("[")
            for i, e in enumerate(x):
                if i:
                    put(", ")
                walk(e)
            put("]")
        elif isinstance(x, dict):
            put("{")
            for i, k in enumerate(sorted(x, key=rego_sort_key)):
                if i:
                    put(", ")
                walk(k)
                put(": ")
                walk(x[k])
            put("}")
        elif isinstance(x, (RegoSet, set, frozenset)):
            if not x:
                put("set()")
                return
            put("{")
            for i, e in enumerate(sorted(x, key=rego_sort_key)):
                if i:
                    put(", ")
                walk(e)
            put("}")
        else:
            raise BuiltinError(f"sprintf: cannot print a {t.__name__}")

    walk(v)
    return out.text()


def _integral(x: int | float) -> int | float:
    """An integral double within int64 is an integer, as the result of OPA's arithmetic is."""
    if type(x) is float and x.is_integer() and _I64_MIN <= x < 2.0**63:
        return int(x)
    return x


def _go_arg(v: Any) -> GoArg:
    """The Go value OPA's sprintf hands fmt.Sprintf for a Rego value."""
    t = type(v)
    if t is int or t is float:
        x = _integral(v)
        if type(x) is float:
            return ("float", x)
        return ("int", x) if _I64_MIN <= x <= _I64_MAX else ("big", x)
    if t is str:
        return ("string", v)
    return ("string", rego_text(v))


# ------------------------------------------------------------------ fmt.Sprintf


def _parsenum(s: str, start: int, end: int) -> tuple[int, bool, int]:
    """Go's fmt.parsenum: a decimal number at s[start:end], giving up past 10^6."""
    if start >= end:
        return 0, False, end
    num, isnum, i = 0, False, start
    while i < end and "0" <= s[i] <= "9":
        if num > 1_000_000:
            return 0, False, end
        num = num * 10 + ord(s[i]) - 48
        isnum = True
        i += 1
    return num, isnum, i


class _Printer:
    """Go's fmt.pp and fmt.fmt for the four kinds of value OPA passes."""

    def __init__(self, fmt: str, args: list[GoArg]) -> None:
        self.fmt, self.args = fmt, args
        self.out = BoundedText(f"sprintf: result longer than {MAX_RESULT_CHARS} characters")
        self.write = self.out.add
        self.reordered = False
        self.good = True
        self._close: tuple[int, int] = (-1, -1)  # last search for "]": (from, found at)
        self.clear()

    def clear(self) -> None:
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = False
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False

    # ---- output

    def padding(self, n: int) -> None:
        if n > 0:
            self.write(("0" if self.zero else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.write(s)
        elif self.minus:
            self.write(s)
            self.padding(self.wid - len(s))
        else:
            self.padding(self.wid - len(s))
            self.write(s)

    # ---- arguments

    def print_arg(self, arg: GoArg, verb: str) -> None:
        kind, v = arg
        if verb == "T":
            self.fmt_s(_TYPE[kind])
        elif kind == "big":
            self.fmt_big(v, verb)
        elif verb == "p":
            self.bad_verb(arg, verb)
        elif kind == "int":
            self.fmt_int(arg, verb)
        elif kind == "float":
            self.fmt_float_verb(arg, verb)
        else:
            self.fmt_string(arg, verb)

    def bad_verb(self, arg: GoArg, verb: str) -> None:
        self.write(f"%!{verb}({_TYPE[arg[0]]}=")
        self.print_arg(arg, "v")
        self.write(")")

    def fmt_int(self, arg: GoArg, verb: str) -> None:
        v: int = arg[1]
        if verb == "v" or verb == "d":
            self.fmt_integer(v, 10, verb, _LOWER)
        elif verb == "b":
            self.fmt_integer(v, 2, verb, _LOWER)
        elif verb == "o" or verb == "O":
            self.fmt_integer(v, 8, verb, _LOWER)
        elif verb == "x" or verb == "X":
            self.fmt_integer(v, 16, verb, _LOWER if verb == "x" else _UPPER)
        elif verb == "c":
            r = v & _U64
            self.pad(chr(0xFFFD if r > _MAX_RUNE or 0xD800 <= r < 0xE000 else r))
        elif verb == "q":
            self.pad(_quote_rune(v & _U64, self.plus))
        elif verb == "U":
            self.fmt_unicode(v & _U64)
        else:
            self.bad_verb(arg, verb)

    def fmt_integer(self, v: int, base: int, verb: str, digits: str) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:  # "print nothing" but the padding
                zero, self.zero = self.zero, False
                self.padding(self.wid)
                self.zero = zero
                return
        elif self.zero and self.wid_present:
            prec = self.wid - (1 if negative or self.plus or self.space else 0)
        s = _digits(u, base, digits)
        if len(s) < prec:
            s = "0" * (prec - len(s)) + s
        if self.sharp:
            if base == 2:
                s = "0b" + s
            elif base == 8 and s[0] != "0":
                s = "0" + s
            elif base == 16:
                s = "0" + digits[16] + s
        if verb == "O":
            s = "0o" + s
        if negative:
            s = "-" + s
        elif self.plus:
            s = "+" + s
        elif self.space:
            s = " " + s
        zero, self.zero = self.zero, False  # zero padding was done as precision
        self.pad(s)
        self.zero = zero

    def fmt_unicode(self, u: int) -> None:
        prec = self.prec if self.prec_present and self.prec > 4 else 4
        s = "U+" + format(u, "X").rjust(prec, "0")
        if self.sharp and u <= _MAX_RUNE and _is_print(u):
            s += f" '{chr(u)}'"
        zero, self.zero = self.zero, False
        self.pad(s)
        self.zero = zero

    def fmt_big(self, v: int, verb: str) -> None:
        """math/big's Int.Format (it pads itself, ignoring fmt's own padding)."""
        bases = {"b": 2, "o": 8, "O": 8, "d": 10, "s": 10, "v": 10, "x": 16, "X": 16}
        if verb == "p":
            raise BuiltinError("sprintf: %p of an integer beyond int64 prints a memory address")
        if verb not in bases:
            self.write(f"%!{verb}(big.Int={v})")
            return
        sign = "-" if v < 0 else "+" if self.plus or self.plus_v else " " if self.space else ""
        prefix = ""
        if self.sharp or self.sharp_v:
            prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb, "")
        if verb == "O":
            prefix = "0o"
        digits = _digits(abs(v), bases[verb], _UPPER if verb == "X" else _LOWER)
        zeros = left = right = 0
        if self.prec_present:
            if len(digits) < self.prec:
                zeros = self.prec - len(digits)
            elif digits == "0" and self.prec == 0:
                return
        length = len(sign) + len(prefix) + zeros + len(digits)
        if self.wid_present and length < self.wid:
            d = self.wid - length
            if self.minus:
                right = d
            elif self.zero and not self.prec_present:
                zeros = d
            else:
                left = d
        self.write(" " * left + sign + prefix + "0" * zeros + digits + " " * right)

    def fmt_float_verb(self, arg: GoArg, verb: str) -> None:
        x: float = arg[1]
        if verb == "v":
            self.fmt_float(x, "g", -1)
        elif verb in ("b", "g", "G", "x", "X"):
            self.fmt_float(x, verb, -1)
        elif verb in ("f", "e", "E"):
            self.fmt_float(x, verb, 6)
        elif verb == "F":
            self.fmt_float(x, "f", 6)
        else:
            self.bad_verb(arg, verb)

    def fmt_float(self, x: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float(x, verb, prec)
        if num[0] != "-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if self.sharp and verb != "b":
            num = self._sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and self.wid_present and self.wid > len(num):
                self.write(num[0])
                self.padding(self.wid - len(num))
                self.write(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def _sharp_float(self, num: str, verb: str, prec: int) -> str:
        """The # flag: always a decimal point; %g keeps its trailing zeros."""
        if verb in "xX":
            raise BuiltinError("sprintf: the # flag with %x or %X of a float is not supported")
        digits = (6 if prec == -1 else prec) if verb in "gG" else 0
        tail = ""
        point = seen = False
        for i in range(1, len(num)):
            c = num[i]
            if c == ".":
                point = True
            elif c in "eE":
                num, tail = num[:i], num[i:]
                break
            else:
                seen = seen or c != "0"
                if seen:
                    digits -= 1
        if not point:
            if len(num) == 2 and num[1] == "0":
                digits -= 1
            num += "."
        return num + "0" * max(digits, 0) + tail

    def fmt_string(self, arg: GoArg, verb: str) -> None:
        s: str = arg[1]
        if verb == "v":
            self.fmt_q(s) if self.sharp_v else self.fmt_s(s)
        elif verb == "s":
            self.fmt_s(s)
        elif verb == "x" or verb == "X":
            self.fmt_sx(s.encode(), _LOWER if verb == "x" else _UPPER)
        elif verb == "q":
            self.fmt_q(s)
        else:
            self.bad_verb(arg, verb)

    def _truncate(self, s: str) -> str:
        return s[: self.prec] if self.prec_present else s

    def fmt_s(self, s: str) -> None:
        self.pad(self._truncate(s))

    def fmt_q(self, s: str) -> None:
        s = self._truncate(s)
        if self.sharp and _can_backquote(s):
            self.pad(f"`{s}`")
        else:
            self.pad(go_quote(s, self.plus))

    def fmt_sx(self, b: bytes, digits: str) -> None:
        if self.prec_present:
            b = b[: self.prec]
        if not b:
            if self.wid_present:
                self.padding(self.wid)
            return
        width = 2 * len(b)
        if self.space:
            width = (2 * width if self.sharp else width) + len(b) - 1
        elif self.sharp:
            width += 2
        if self.wid_present and self.wid > width and not self.minus:
            self.padding(self.wid - width)
        pairs = [digits[c >> 4] + digits[c & 15] for c in b]
        prefix = "0" + digits[16] if self.sharp else ""
        if self.space:
            self.write(" ".join(prefix + p for p in pairs))
        else:
            self.write(prefix + "".join(pairs))
        if self.wid_present and self.wid > width and self.minus:
            self.padding(self.wid - width)

    # ---- the format

    def _next_close(self, start: int) -> int:
        """The first "]" at or after ``start`` (searches only move forward)."""
        frm, at = self._close
        if frm < 0 or start < frm or (at >= 0 and at < start):
            at = self.fmt.find("]", start)
            self._close = (start, at)
        return at

    def arg_number(self, arg_num: int, i: int) -> tuple[int, int, bool]:
        """Go's pp.argNumber: an explicit index ``[n]`` at i, if any."""
        fmt = self.fmt
        if i >= len(fmt) or fmt[i] != "[":
            return arg_num, i, False
        self.reordered = True
        index, wid, ok = 0, 1, False
        if len(fmt) - i >= 3:
            k = self._next_close(i + 1)
            if k >= 0:
                num, isnum, newi = _parsenum(fmt, i + 1, k)
                wid = k - i + 1
                if isnum and newi == k:
                    index, ok = num - 1, True
        if ok and 0 <= index < len(self.args):
            return index, i + wid, True
        self.good = False
        return arg_num, i + wid, ok

    def int_from_arg(self, arg_num: int) -> tuple[int, bool, int]:
        if arg_num >= len(self.args):
            return 0, False, arg_num
        kind, v = self.args[arg_num]
        num, ok = (v, True) if kind == "int" else (0, False)
        if not -1_000_000 <= num <= 1_000_000:
            num, ok = 0, False
        return num, ok, arg_num + 1

    def run(self) -> str:
        fmt, args = self.fmt, self.args
        end, arg_num, i = len(fmt), 0, 0
        while i < end:
            self.good = True
            j = fmt.find("%", i)
            if j < 0:
                self.write(fmt[i:])
                break
            if j > i:
                self.write(fmt[i:j])
            i = j + 1
            self.clear()
            simple = False
            while i < end:
                c = fmt[i]
                if c == "#":
                    self.sharp = True
                elif c == "0":
                    self.zero = not self.minus
                elif c == "+":
                    self.plus = True
                elif c == "-":
                    self.minus, self.zero = True, False
                elif c == " ":
                    self.space = True
                else:
                    simple = "a" <= c <= "z" and arg_num < len(args)
                    break
                i += 1
            if simple:  # flags and a lower-case verb: Go's fast path
                self.verb(fmt[i], args[arg_num])
                arg_num += 1
                i += 1
                continue
            arg_num, i, after_index = self.arg_number(arg_num, i)
            if i < end and fmt[i] == "*":
                i += 1
                self.wid, self.wid_present, arg_num = self.int_from_arg(arg_num)
                if not self.wid_present:
                    self.write("%!(BADWIDTH)")
                if self.wid < 0:
                    self.wid, self.minus, self.zero = -self.wid, True, False
                after_index = False
            else:
                self.wid, self.wid_present, i = _parsenum(fmt, i, end)
                if after_index and self.wid_present:  # "%[3]2d"
                    self.good = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:  # "%[3].2d"
                    self.good = False
                arg_num, i, after_index = self.arg_number(arg_num, i)
                if i < end and fmt[i] == "*":
                    i += 1
                    self.prec, self.prec_present, arg_num = self.int_from_arg(arg_num)
                    if self.prec < 0:
                        self.prec, self.prec_present = 0, False
                    if not self.prec_present:
                        self.write("%!(BADPREC)")
                    after_index = False
                else:
                    self.prec, self.prec_present, i = _parsenum(fmt, i, end)
                    if not self.prec_present:
                        self.prec, self.prec_present = 0, True
            if not after_index:
                arg_num, i, after_index = self.arg_number(arg_num, i)
            if i >= end:
                self.write("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":  # takes no argument, ignores width and precision
                self.write("%")
            elif not self.good:
                self.write(f"%!{verb}(BADINDEX)")
            elif arg_num >= len(args):
                self.write(f"%!{verb}(MISSING)")
            else:
                self.verb(verb, args[arg_num])
                arg_num += 1
        if not self.reordered and arg_num < len(args):
            self.clear()
            self.write("%!(EXTRA ")
            for k, arg in enumerate(args[arg_num:]):
                if k:
                    self.write(", ")
                self.write(_TYPE[arg[0]] + "=")
                self.print_arg(arg, "v")
            self.write(")")
        return self.out.text()

    def verb(self, verb: str, arg: GoArg) -> None:
        if self.wid > MAX_PAD or self.prec > MAX_PAD:
            raise BuiltinError(f"sprintf: width or precision larger than {MAX_PAD}")
        if verb == "w":
            raise BuiltinError("sprintf: %w wraps Go errors; Rego has none")
        if verb == "v":
            self.sharp_v, self.sharp = self.sharp, False
            self.plus_v, self.plus = self.plus, False
        self.print_arg(arg, verb)


def _digits(u: int, base: int, digits: str) -> str:
    if base == 10:
        return str(u)
    s = format(u, {2: "b", 8: "o", 16: "x"}[base])
    return s.upper() if digits is _UPPER else s


def go_sprintf(fmt: str, args: list[GoArg]) -> str:
    """Go's fmt.Sprintf(fmt, args...) for (kind, value) arguments."""
    return _Printer(fmt, args).run()


@builtin("sprintf")
def sprintf(fmt: Any, values: Any) -> str:
    want("sprintf", 1, fmt, "string")
    want("sprintf", 2, values, "array")
    return go_sprintf(fmt, [_go_arg(v) for v in values])
