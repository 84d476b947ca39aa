"""The regex parser: the subset of Rust's ``regex-syntax`` that A1 compiles, with its
quirks, to a syntax tree over Unicode scalar values."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.compiler.patterns.constants import MAX_CP, NEST_CAP
from policies.compiler.patterns.errors import invalid, unsupported_feature
from policies.compiler.patterns.nodes import Alt, Assert, Cat, Node, Rep, Set, literal
from policies.compiler.patterns.ranges import (
    Ranges,
    complement,
    difference,
    intersect,
    normalise,
    union_of,
)
from policies.compiler.patterns.unicode_tables import DIGIT, SPACE, WORD

_META = set("\\.+*?()|[]{}^$#&-~")
_ASCII_CLASSES: dict[str, Ranges] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_REFUSED_FLAGS = {
    "i": "case-insensitive flag (?i)",
    "m": "multi-line flag (?m)",
    "x": "verbose flag (?x)",
    "R": "CRLF flag (?R)",
}
_SIMPLE_ESCAPES = {"a": 0x07, "f": 0x0C, "t": 0x09, "n": 0x0A, "r": 0x0D, "v": 0x0B}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


@dataclass
class _Flags:
    dot_all: bool = False


@dataclass
class _Frame:
    """One open group: the alternatives so far and the concatenation being built."""

    start: int
    flags: _Flags
    alts: list[Node] = field(default_factory=list)
    items: list[Node | None] = field(default_factory=list)  # None: a flag directive


class RegexParser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.names: set[str] = set()

    # -- helpers
    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.p[j] if j < len(self.p) else None

    def eof(self) -> bool:
        return self.i >= len(self.p)

    # -- top level
    def parse(self) -> Node:
        flags = _Flags()
        stack: list[_Frame] = [_Frame(0, flags)]
        while not self.eof():
            frame = stack[-1]
            c = self.p[self.i]
            if c == "(":
                opened = self.parse_group_open(frame)
                if opened is not None:
                    if len(stack) > NEST_CAP:
                        raise unsupported_feature("groups nested too deeply", self.i)
                    stack.append(opened)
            elif c == ")":
                if len(stack) == 1:
                    raise invalid("unopened group", self.i)
                self.i += 1
                done = stack.pop()
                stack[-1].items.append(self.finish(done))
            elif c == "|":
                self.i += 1
                frame.alts.append(self.concat(frame.items))
                frame.items = []
            elif c in "*+?":
                self.check_operand(frame)
                self.i += 1
                self.repeat(frame, {"*": (0, None), "+": (1, None), "?": (0, 1)}[c])
            elif c == "{":
                self.check_operand(frame)
                self.repeat(frame, self.parse_counted())
            else:
                frame.items.append(self.parse_atom(frame.flags))
        if len(stack) > 1:
            raise invalid("unclosed group", stack[-1].start)
        return self.finish(stack[0])

    def concat(self, items: list[Node | None]) -> Node:
        real = tuple(i for i in items if i is not None)
        return real[0] if len(real) == 1 else Cat(real)

    def finish(self, frame: _Frame) -> Node:
        alts = [*frame.alts, self.concat(frame.items)]
        return alts[0] if len(alts) == 1 else Alt(tuple(alts))

    def check_operand(self, frame: _Frame) -> None:
        if not frame.items or frame.items[-1] is None:
            raise invalid("repetition operator missing expression", self.i)

    def repeat(self, frame: _Frame, bounds: tuple[int, int | None]) -> None:
        if self.peek() == "?":  # lazy: same language
            self.i += 1
        lo, hi = bounds
        frame.items[-1] = Rep(frame.items[-1], lo, hi)

    def parse_counted(self) -> tuple[int, int | None]:
        start = self.i
        self.i += 1

        def space() -> None:
            while not self.eof() and _is_white_space(ord(self.p[self.i])):
                self.i += 1

        def number() -> int:
            space()
            j = self.i
            while not self.eof() and self.p[self.i].isascii() and self.p[self.i].isdigit():
                self.i += 1
            if j == self.i:
                if self.eof():
                    raise invalid("unclosed counted repetition", start)
                raise invalid("repetition quantifier expects a valid decimal", self.i)
            value = int(self.p[j : self.i])
            if value > 0xFFFFFFFF:
                raise invalid("repetition count too large", j)
            space()
            return value

        lo = number()
        hi: int | None = lo
        if self.peek() == ",":
            self.i += 1
            space()
            hi = None if self.peek() == "}" else number()
        if self.eof():
            raise invalid("unclosed counted repetition", start)
        if self.p[self.i] != "}":
            raise invalid("repetition quantifier expects a valid decimal", self.i)
        self.i += 1
        if hi is not None and lo > hi:
            raise invalid("invalid repetition range (min > max)", start)
        return lo, hi

    def parse_group_open(self, frame: _Frame) -> _Frame | None:
        start = self.i
        self.i += 1
        if self.peek() != "?":
            return _Frame(start, _Flags(frame.flags.dot_all))
        self.i += 1
        c = self.peek()
        if c == "P" and self.peek(1) == "<":
            self.i += 2
            self.parse_name(start)
            return _Frame(start, _Flags(frame.flags.dot_all))
        if c == "P" and self.peek(1) == "=":
            raise unsupported_feature("backreference `(?P=`", start)
        if c == "<" and self.peek(1) in ("=", "!"):
            raise unsupported_feature("look-behind", start)
        if c == "<":
            self.i += 1
            self.parse_name(start)
            return _Frame(start, _Flags(frame.flags.dot_all))
        if c in ("=", "!"):
            raise unsupported_feature("look-ahead", start)
        # Flags: (?flags) or (?flags:...). Validate the whole group before refusing a flag,
        # so that an invalid group is reported as invalid.
        seen: set[str] = set()
        negate = False
        dangling = False
        dot_all = frame.flags.dot_all
        refused: tuple[str, int] | None = None
        while True:
            if self.eof():
                raise invalid("unclosed group", start)
            c = self.p[self.i]
            if c in ":)":
                if dangling:
                    raise invalid("dangling flag negation", self.i - 1)
                if c == ")" and not seen and not negate:
                    raise invalid("empty flag group", start)
                break
            if c == "-":
                if negate:
                    raise invalid("repeated flag negation", self.i)
                negate = dangling = True
                self.i += 1
                continue
            if c not in "imsUuxR":
                raise invalid(f"unrecognized flag {c!r}", self.i)
            if c in seen:
                raise invalid(f"duplicate flag {c!r}", self.i)
            seen.add(c)
            dangling = False
            if c == "s":
                dot_all = not negate
            elif refused is None and c == "u" and negate:
                refused = ("byte-oriented matching (?-u)", self.i)
            elif refused is None and c in "imxR" and not negate:
                refused = (_REFUSED_FLAGS[c], self.i)
            self.i += 1
        if refused is not None:
            raise unsupported_feature(*refused)
        closer = self.p[self.i]
        self.i += 1
        if closer == ")":
            frame.flags = _Flags(dot_all)
            frame.items.append(None)
            return None
        return _Frame(start, _Flags(dot_all))

    def parse_name(self, start: int) -> None:
        j = self.i
        while not self.eof() and self.p[self.i] != ">":
            ch = self.p[self.i]
            ok = ch == "_" or ch.isalpha() if self.i == j else ch in "_.[]" or ch.isalnum()
            if not ok:
                raise invalid("invalid capture group name", self.i)
            self.i += 1
        if self.eof():
            raise invalid("unclosed capture group name", start)
        name = self.p[j : self.i]
        if not name:
            raise invalid("empty capture group name", self.i)
        if name in self.names:
            raise invalid(f"duplicate capture group name {name!r}", j)
        self.names.add(name)
        self.i += 1

    def parse_atom(self, flags: _Flags) -> Node:
        c = self.p[self.i]
        if c == ".":
            self.i += 1
            return Set(((0, MAX_CP),) if flags.dot_all else ((0, 9), (11, MAX_CP)))
        if c == "^":
            self.i += 1
            return Assert(end=False)
        if c == "$":
            self.i += 1
            return Assert(end=True)
        if c == "[":
            return Set(self.parse_class())
        if c == "\\":
            kind, value = self.parse_escape(in_class=False)
            if kind == "assert":
                return Assert(end=bool(value))
            return Set(value) if kind == "set" else literal(value)  # type: ignore[arg-type]
        self.i += 1
        return literal(ord(c))

    def parse_escape(self, *, in_class: bool) -> tuple[str, object]:
        """At a backslash: ("lit", cp) | ("set", ranges) | ("assert", is_end)."""
        start = self.i
        self.i += 1
        if self.eof():
            raise invalid("incomplete escape sequence", start)
        c = self.p[self.i]
        self.i += 1
        if c in _META:
            return "lit", ord(c)
        if c in _SIMPLE_ESCAPES:
            return "lit", _SIMPLE_ESCAPES[c]
        if c in _HEX_DIGITS:
            return "lit", self.parse_hex(c, start)
        if c in "dswDSW":
            base = {"d": DIGIT, "s": SPACE, "w": WORD}[c.lower()]
            return "set", base if c.islower() else complement(base, MAX_CP)
        if c in "pP":
            raise unsupported_feature(f"Unicode class `\\{c}`", start)
        if c in "bB<>":
            raise unsupported_feature(f"word boundary `\\{c}`", start)
        if c in "Az":
            if in_class:
                raise invalid("escape sequence not valid in character class", start)
            return "assert", c == "z"
        if c.isascii() and c.isdigit():
            raise unsupported_feature("backreference", start)
        if c.isascii() and not c.isalnum():
            return "lit", ord(c)
        raise invalid(f"unrecognized escape sequence `\\{c}`", start)

    def parse_hex(self, kind: str, start: int) -> int:
        if self.peek() == "{":
            self.i += 1
            j = self.i
            while not self.eof() and self.p[self.i] != "}":
                if self.p[self.i] not in "0123456789abcdefABCDEF":
                    raise invalid("invalid hexadecimal digit", self.i)
                self.i += 1
            if self.eof():
                raise invalid("unclosed hexadecimal escape", start)
            digits = self.p[j : self.i]
            self.i += 1
            if not digits:
                raise invalid("empty hexadecimal escape", start)
        else:
            n = _HEX_DIGITS[kind]
            digits = self.p[self.i : self.i + n]
            for k, ch in enumerate(digits):
                if ch not in "0123456789abcdefABCDEF":
                    raise invalid("invalid hexadecimal digit", self.i + k)
            if len(digits) < n:
                raise invalid("incomplete hexadecimal escape", start)
            self.i += n
        value = int(digits, 16)
        if value > MAX_CP or 0xD800 <= value <= 0xDFFF:
            raise invalid("hexadecimal escape is not a Unicode scalar value", start)
        return value

    # -- character classes
    def parse_class(self) -> Ranges:
        start = self.i
        self.i += 1
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        union: list[tuple[int, int]] = []
        while self.peek() == "-":
            union.append((0x2D, 0x2D))
            self.i += 1
        if not union and self.peek() == "]":
            union.append((0x5D, 0x5D))
            self.i += 1
        acc: Ranges | None = None
        op = ""
        while True:
            if self.eof():
                raise invalid("unclosed character class", start)
            c = self.p[self.i]
            two = self.p[self.i : self.i + 2]
            if c == "[":
                ascii_class = self.maybe_ascii_class()
                if ascii_class is not None:
                    union.extend(ascii_class)
                else:
                    union.extend(self.parse_class())
            elif c == "]":
                self.i += 1
                break
            elif two in ("&&", "--", "~~"):
                acc = normalise(union) if acc is None else _set_op(op, acc, normalise(union))
                op = two
                union = []
                self.i += 2
            else:
                union.extend(self.parse_class_range(start))
        result = normalise(union) if acc is None else _set_op(op, acc, normalise(union))
        return complement(result, MAX_CP) if negated else result

    def maybe_ascii_class(self) -> Ranges | None:
        if self.p[self.i : self.i + 2] != "[:":
            return None
        j = self.i + 2
        negated = self.p[j : j + 1] == "^"
        if negated:
            j += 1
        end = self.p.find(":", j)
        if end < 0 or self.p[end : end + 2] != ":]":
            return None
        ranges = _ASCII_CLASSES.get(self.p[j:end])
        if ranges is None:
            return None
        self.i = end + 2
        return complement(ranges, MAX_CP) if negated else ranges

    def parse_class_item(self, start: int) -> tuple[str, object]:
        if self.eof():
            raise invalid("unclosed character class", start)
        if self.p[self.i] == "\\":
            kind, value = self.parse_escape(in_class=True)
            return kind, value
        c = self.p[self.i]
        self.i += 1
        return "lit", ord(c)

    def parse_class_range(self, start: int) -> Ranges:
        at = self.i
        kind1, v1 = self.parse_class_item(start)
        if self.eof():
            raise invalid("unclosed character class", start)
        if self.p[self.i] != "-" or self.peek(1) in ("]", "-"):
            return v1 if kind1 == "set" else ((v1, v1),)  # type: ignore[return-value]
        self.i += 1
        kind2, v2 = self.parse_class_item(start)
        if kind1 != "lit" or kind2 != "lit":
            raise invalid("invalid range boundary, must be a literal", at)
        assert isinstance(v1, int) and isinstance(v2, int)
        if v1 > v2:
            raise invalid("invalid character class range, start > end", at)
        return ((v1, v2),)


def _set_op(op: str, a: Ranges, b: Ranges) -> Ranges:
    if op == "&&":
        return intersect(a, b)
    if op == "--":
        return difference(a, b)
    return union_of(difference(a, b), difference(b, a))


def _is_white_space(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in SPACE)
