"""Build-time compilation of constant patterns: regexes and globs to DFAs, CIDRs to networks.

A policy's ``regex.match``, ``glob.match`` and ``net.cidr_contains`` with a constant
pattern are compiled here, once, into position-independent blobs that the runtime
(``policies/runtime/a1rt_match.c``) walks without allocating. The semantics are
regorus's, because regorus is the differential oracle:

- regexes follow Rust's ``regex`` crate (``Regex::is_match``: unanchored search over
  Unicode scalar values, Unicode-aware ``\\d \\s \\w``, ``.`` excludes only ``\\n``);
- globs follow regorus's rewriting of delimiters plus the ``globset`` crate
  (``literal_separator``), which matches *bytes*, full match;
- CIDRs follow the ``ipnet`` crate's parser (leading zeros allowed in octets).

The blob layouts are documented in ``docs/patterns.md``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DFA_CAP",
    "PatternError",
    "compile_cidr",
    "compile_glob",
    "compile_regex",
]

DFA_CAP = 4096
"""Most DFA states a compiled pattern may have; past it the pattern is rejected."""

_NFA_CAP = 50_000
_TABLE_CAP = 1 << 18  # transition table cells (4 bytes each): 1 MiB
_NEST_CAP = 100
_MAX_CP = 0x10FFFF
_MAX_BYTE = 0xFF

DFA_MAGIC = 0x46443141  # b"A1DF"
CIDR_MAGIC = 0x49433141  # b"A1CI"
BLOB_VERSION = 1

# Blob flags (header) and state flags; mirrored in a1rt_match.h.
F_FULL = 1  # full match (glob) rather than unanchored search (regex)
F_BYTES = 2  # symbols are bytes rather than Unicode scalar values
F_NUL_ERROR = 4  # a NUL byte in the subject is an evaluation error
S_MATCH = 1  # entering this state means "match", whatever follows
S_EOI = 2  # accept if the subject ends in this state


class PatternError(ValueError):
    """A pattern that cannot be compiled: invalid, or valid but outside the supported subset.

    ``offset`` is the index (in characters) of the offending construct in the pattern,
    so the compiler can point at it. ``unsupported`` marks a construct A1 does not compile
    (``str(err)`` then starts with "unsupported"); otherwise the pattern is invalid and
    regorus rejects it too. Look-around and backreferences, which Rust's regex (and so
    regorus) also rejects, are reported as unsupported because that is what a policy
    author needs to hear.
    """

    def __init__(self, message: str, offset: int, *, unsupported: bool = False) -> None:
        self.message = message
        self.offset = offset
        self.unsupported = unsupported
        super().__init__(message)


def _invalid(message: str, offset: int) -> PatternError:
    return PatternError(f"invalid pattern: {message} (at offset {offset})", offset)


def _unsupported(feature: str, offset: int) -> PatternError:
    return PatternError(
        f"unsupported pattern feature: {feature} (at offset {offset})", offset, unsupported=True
    )


# ---------------------------------------------------------------------------------------
# Sets of code points (or bytes) as sorted, disjoint, non-adjacent inclusive ranges.

Ranges = tuple[tuple[int, int], ...]


def _norm(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _negate(ranges: Ranges, top: int) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return tuple(out)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _union(*sets: Ranges) -> Ranges:
    return _norm(r for s in sets for r in s)


def _diff(a: Ranges, b: Ranges) -> Ranges:
    return _intersect(a, _negate(b, _MAX_CP))


def _parse_table(text: str) -> Ranges:
    out = []
    for item in text.split():
        lo, _, hi = item.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return _norm(out)


# ---------------------------------------------------------------------------------------
# Pattern syntax trees. Symbols are code points (regex) or bytes (glob).


@dataclass(frozen=True)
class _Set:
    ranges: Ranges


@dataclass(frozen=True)
class _Cat:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Rep:
    item: _Node
    lo: int
    hi: int | None


@dataclass(frozen=True)
class _Assert:
    end: bool  # False: start of text (^, \A); True: end of text ($, \z)


_Node = _Set | _Cat | _Alt | _Rep | _Assert
_EMPTY = _Cat(())


def _lit(cp: int) -> _Set:
    return _Set(((cp, cp),))


def _size(node: _Node) -> int:
    """NFA states the node expands to, saturating at the cap (guards ``a{1000}{1000}``)."""
    if isinstance(node, _Set | _Assert):
        return 2
    if isinstance(node, _Cat | _Alt):
        return min(_NFA_CAP + 1, 2 + sum(_size(i) for i in node.items))
    copies = node.lo if node.hi is None else node.hi
    return min(_NFA_CAP + 1, 2 + _size(node.item) * max(copies, 1) + 2 * (copies + 1))


# ---------------------------------------------------------------------------------------
# Regex parser: the subset of Rust's regex-syntax that A1 compiles, with its quirks.

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
    alts: list[_Node] = field(default_factory=list)
    items: list[_Node | None] = field(default_factory=list)  # None: a flag directive


class _RegexParser:
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
    def parse(self) -> _Node:
        flags = _Flags()
        stack: list[_Frame] = [_Frame(0, flags)]
        while not self.eof():
            frame = stack[-1]
            c = self.p[self.i]
            if c == "(":
                opened = self.parse_group_open(frame)
                if opened is not None:
                    if len(stack) > _NEST_CAP:
                        raise _unsupported("groups nested too deeply", self.i)
                    stack.append(opened)
            elif c == ")":
                if len(stack) == 1:
                    raise _invalid("unopened group", self.i)
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
            raise _invalid("unclosed group", stack[-1].start)
        return self.finish(stack[0])

    def concat(self, items: list[_Node | None]) -> _Node:
        real = tuple(i for i in items if i is not None)
        return real[0] if len(real) == 1 else _Cat(real)

    def finish(self, frame: _Frame) -> _Node:
        alts = [*frame.alts, self.concat(frame.items)]
        return alts[0] if len(alts) == 1 else _Alt(tuple(alts))

    def check_operand(self, frame: _Frame) -> None:
        if not frame.items or frame.items[-1] is None:
            raise _invalid("repetition operator missing expression", self.i)

    def repeat(self, frame: _Frame, bounds: tuple[int, int | None]) -> None:
        if self.peek() == "?":  # lazy: same language
            self.i += 1
        lo, hi = bounds
        frame.items[-1] = _Rep(frame.items[-1], lo, hi)

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
                    raise _invalid("unclosed counted repetition", start)
                raise _invalid("repetition quantifier expects a valid decimal", self.i)
            value = int(self.p[j : self.i])
            if value > 0xFFFFFFFF:
                raise _invalid("repetition count too large", j)
            space()
            return value

        lo = number()
        hi: int | None = lo
        if self.peek() == ",":
            self.i += 1
            space()
            hi = None if self.peek() == "}" else number()
        if self.eof():
            raise _invalid("unclosed counted repetition", start)
        if self.p[self.i] != "}":
            raise _invalid("repetition quantifier expects a valid decimal", self.i)
        self.i += 1
        if hi is not None and lo > hi:
            raise _invalid("invalid repetition range (min > max)", start)
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
            raise _unsupported("backreference `(?P=`", start)
        if c == "<" and self.peek(1) in ("=", "!"):
            raise _unsupported("look-behind", start)
        if c == "<":
            self.i += 1
            self.parse_name(start)
            return _Frame(start, _Flags(frame.flags.dot_all))
        if c in ("=", "!"):
            raise _unsupported("look-ahead", start)
        # Flags: (?flags) or (?flags:...). Validate the whole group before refusing a flag,
        # so that an invalid group is reported as invalid.
        seen: set[str] = set()
        negate = False
        dangling = False
        dot_all = frame.flags.dot_all
        refused: tuple[str, int] | None = None
        while True:
            if self.eof():
                raise _invalid("unclosed group", start)
            c = self.p[self.i]
            if c in ":)":
                if dangling:
                    raise _invalid("dangling flag negation", self.i - 1)
                if c == ")" and not seen and not negate:
                    raise _invalid("empty flag group", start)
                break
            if c == "-":
                if negate:
                    raise _invalid("repeated flag negation", self.i)
                negate = dangling = True
                self.i += 1
                continue
            if c not in "imsUuxR":
                raise _invalid(f"unrecognized flag {c!r}", self.i)
            if c in seen:
                raise _invalid(f"duplicate flag {c!r}", self.i)
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
            raise _unsupported(*refused)
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
                raise _invalid("invalid capture group name", self.i)
            self.i += 1
        if self.eof():
            raise _invalid("unclosed capture group name", start)
        name = self.p[j : self.i]
        if not name:
            raise _invalid("empty capture group name", self.i)
        if name in self.names:
            raise _invalid(f"duplicate capture group name {name!r}", j)
        self.names.add(name)
        self.i += 1

    def parse_atom(self, flags: _Flags) -> _Node:
        c = self.p[self.i]
        if c == ".":
            self.i += 1
            return _Set(((0, _MAX_CP),) if flags.dot_all else ((0, 9), (11, _MAX_CP)))
        if c == "^":
            self.i += 1
            return _Assert(end=False)
        if c == "$":
            self.i += 1
            return _Assert(end=True)
        if c == "[":
            return _Set(self.parse_class())
        if c == "\\":
            kind, value = self.parse_escape(in_class=False)
            if kind == "assert":
                return _Assert(end=bool(value))
            return _Set(value) if kind == "set" else _lit(value)  # type: ignore[arg-type]
        self.i += 1
        return _lit(ord(c))

    def parse_escape(self, *, in_class: bool) -> tuple[str, object]:
        """At a backslash: ("lit", cp) | ("set", ranges) | ("assert", is_end)."""
        start = self.i
        self.i += 1
        if self.eof():
            raise _invalid("incomplete escape sequence", start)
        c = self.p[self.i]
        self.i += 1
        if c in _META:
            return "lit", ord(c)
        if c in _SIMPLE_ESCAPES:
            return "lit", _SIMPLE_ESCAPES[c]
        if c in _HEX_DIGITS:
            return "lit", self.parse_hex(c, start)
        if c in "dswDSW":
            base = {"d": _DIGIT, "s": _SPACE, "w": _WORD}[c.lower()]
            return "set", base if c.islower() else _negate(base, _MAX_CP)
        if c in "pP":
            raise _unsupported(f"Unicode class `\\{c}`", start)
        if c in "bB<>":
            raise _unsupported(f"word boundary `\\{c}`", start)
        if c in "Az":
            if in_class:
                raise _invalid("escape sequence not valid in character class", start)
            return "assert", c == "z"
        if c.isascii() and c.isdigit():
            raise _unsupported("backreference", start)
        if c.isascii() and not c.isalnum():
            return "lit", ord(c)
        raise _invalid(f"unrecognized escape sequence `\\{c}`", start)

    def parse_hex(self, kind: str, start: int) -> int:
        if self.peek() == "{":
            self.i += 1
            j = self.i
            while not self.eof() and self.p[self.i] != "}":
                if self.p[self.i] not in "0123456789abcdefABCDEF":
                    raise _invalid("invalid hexadecimal digit", self.i)
                self.i += 1
            if self.eof():
                raise _invalid("unclosed hexadecimal escape", start)
            digits = self.p[j : self.i]
            self.i += 1
            if not digits:
                raise _invalid("empty hexadecimal escape", start)
        else:
            n = _HEX_DIGITS[kind]
            digits = self.p[self.i : self.i + n]
            for k, ch in enumerate(digits):
                if ch not in "0123456789abcdefABCDEF":
                    raise _invalid("invalid hexadecimal digit", self.i + k)
            if len(digits) < n:
                raise _invalid("incomplete hexadecimal escape", start)
            self.i += n
        value = int(digits, 16)
        if value > _MAX_CP or 0xD800 <= value <= 0xDFFF:
            raise _invalid("hexadecimal escape is not a Unicode scalar value", start)
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
                raise _invalid("unclosed character class", start)
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
                acc = _norm(union) if acc is None else _set_op(op, acc, _norm(union))
                op = two
                union = []
                self.i += 2
            else:
                union.extend(self.parse_class_range(start))
        result = _norm(union) if acc is None else _set_op(op, acc, _norm(union))
        return _negate(result, _MAX_CP) if negated else result

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
        return _negate(ranges, _MAX_CP) if negated else ranges

    def parse_class_item(self, start: int) -> tuple[str, object]:
        if self.eof():
            raise _invalid("unclosed character class", start)
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
            raise _invalid("unclosed character class", start)
        if self.p[self.i] != "-" or self.peek(1) in ("]", "-"):
            return v1 if kind1 == "set" else ((v1, v1),)  # type: ignore[return-value]
        self.i += 1
        kind2, v2 = self.parse_class_item(start)
        if kind1 != "lit" or kind2 != "lit":
            raise _invalid("invalid range boundary, must be a literal", at)
        assert isinstance(v1, int) and isinstance(v2, int)
        if v1 > v2:
            raise _invalid("invalid character class range, start > end", at)
        return ((v1, v2),)


def _set_op(op: str, a: Ranges, b: Ranges) -> Ranges:
    if op == "&&":
        return _intersect(a, b)
    if op == "--":
        return _diff(a, b)
    return _union(_diff(a, b), _diff(b, a))


def _is_white_space(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _SPACE)


# ---------------------------------------------------------------------------------------
# Globs: regorus's delimiter rewriting, then globset's parser and regex translation.


def _glob_rewrite(
    chars: list[tuple[str, int]], delimiters: list[str] | None
) -> list[tuple[str, int]]:
    """regorus's ``make_delimiters_unix_style`` (or its ``null`` variant), keeping origins."""

    def replace(cs: list[tuple[str, int]], old: str, new: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for ch, at in cs:
            if ch == old:
                out.extend((n, at) for n in new)
            else:
                out.append((ch, at))
        return out

    if delimiters is None:
        return replace(chars, "/", "\0")
    if "/" not in delimiters:
        chars = replace(chars, "/", "\0")
    for d in delimiters:
        if d == ":":
            chars = replace(chars, ":", "\0")
        elif d != "/":
            chars = replace(chars, d, f"/{d}/")
    return chars


@dataclass(frozen=True)
class _GTok:
    kind: str  # lit any zom rprefix rsuffix rzom class alts
    char: str = ""
    negated: bool = False
    ranges: tuple[tuple[str, str], ...] = ()
    alts: tuple[tuple[_GTok, ...], ...] = ()


class _GlobParser:
    """A port of globset 0.4's ``Parser`` with ``literal_separator`` and backslash escapes."""

    def __init__(self, chars: list[tuple[str, int]]) -> None:
        self.chars = chars
        self.pos = 0
        self.prev: str | None = None
        self.cur: str | None = None
        self.cur_at = 0
        self.alt_stack: list[tuple[int, int]] = []  # (branch index, offset of "{")
        self.branches: list[list[_GTok]] = [[]]

    def bump(self) -> str | None:
        self.prev = self.cur
        if self.pos < len(self.chars):
            self.cur, self.cur_at = self.chars[self.pos]
            self.pos += 1
        else:
            self.cur = None
        return self.cur

    def peek(self) -> str | None:
        return self.chars[self.pos][0] if self.pos < len(self.chars) else None

    def at(self) -> int:
        return self.cur_at

    def push(self, tok: _GTok) -> None:
        self.branches[-1].append(tok)

    def parse(self) -> tuple[_GTok, ...]:
        while (c := self.bump()) is not None:
            if c == "?":
                self.push(_GTok("any"))
            elif c == "*":
                self.parse_star()
            elif c == "[":
                self.parse_class()
            elif c == "{":
                self.alt_stack.append((len(self.branches), self.at()))
                self.branches.append([])
            elif c == "}":
                if not self.alt_stack:
                    raise _invalid("unopened alternate group; missing '{'", self.at())
                start, _ = self.alt_stack.pop()
                alts = tuple(tuple(b) for b in self.branches[start:])
                del self.branches[start:]
                self.push(_GTok("alts", alts=alts))
            elif c == ",":
                if self.alt_stack:
                    self.branches.append([])
                else:
                    self.push(_GTok("lit", char=","))
            elif c == "\\":
                at = self.at()
                nxt = self.bump()
                if nxt is None:
                    raise _invalid("dangling '\\'", at)
                self.push(_GTok("lit", char=nxt))
            else:
                self.push(_GTok("lit", char=c))
        if len(self.branches) > 1:
            raise _invalid("unclosed alternate group; missing '}'", self.alt_stack[-1][1])
        return tuple(self.branches[0])

    def parse_star(self) -> None:
        prev = self.prev
        if self.peek() != "*":
            self.push(_GTok("zom"))
            return
        self.bump()
        if not self.branches[-1]:
            nxt = self.peek()
            if nxt is not None and nxt != "/":
                self.push(_GTok("zom"))
                self.push(_GTok("zom"))
            else:
                self.push(_GTok("rprefix"))
                self.bump()
            return
        if prev != "/" and (len(self.branches) <= 1 or prev not in (",", "{")):
            self.push(_GTok("zom"))
            self.push(_GTok("zom"))
            return
        nxt = self.peek()
        if nxt is None:
            self.bump()
            is_suffix = True
        elif nxt in (",", "}") and len(self.branches) >= 2:
            is_suffix = True
        elif nxt == "/":
            self.bump()
            is_suffix = False
        else:
            self.push(_GTok("zom"))
            self.push(_GTok("zom"))
            return
        tok = self.branches[-1].pop()
        if tok.kind in ("rprefix", "rsuffix"):
            self.push(tok)
        else:
            self.push(_GTok("rsuffix" if is_suffix else "rzom"))

    def parse_class(self) -> None:
        start = self.at()
        ranges: list[tuple[str, str]] = []
        negated = False
        if self.peek() in ("!", "^"):
            self.bump()
            negated = True
        first = True
        in_range = False
        while True:
            c = self.bump()
            if c is None:
                raise _invalid("unclosed character class; missing ']'", start)
            if c == "]":
                if not first:
                    break
                ranges.append(("]", "]"))
            elif c == "-":
                if first:
                    ranges.append(("-", "-"))
                elif in_range:
                    self.extend_range(ranges, "-")
                    in_range = False
                else:
                    in_range = True
            else:
                if in_range:
                    self.extend_range(ranges, c)
                else:
                    ranges.append((c, c))
                in_range = False
            first = False
        if in_range:
            ranges.append(("-", "-"))
        self.push(_GTok("class", negated=negated, ranges=tuple(ranges)))

    def extend_range(self, ranges: list[tuple[str, str]], end: str) -> None:
        lo = ranges[-1][0]
        if end < lo:
            raise _invalid(f"invalid range; '{lo}' > '{end}'", self.at())
        ranges[-1] = (lo, end)


_NOT_SLASH = ((0x00, 0x2E), (0x30, 0xFF))
_ANY_BYTE = ((0x00, 0xFF),)
_SLASH = _lit(0x2F)
_DOT_STAR = _Rep(_Set(_ANY_BYTE), 0, None)


def _bytes_of(ch: str) -> _Node:
    data = ch.encode("utf-8")
    return _lit(data[0]) if len(data) == 1 else _Cat(tuple(_lit(b) for b in data))


def _glob_class(tok: _GTok) -> _Set:
    """globset writes each char of a class as escaped UTF-8 bytes into a ``(?-u)`` class."""
    items: list[tuple[int, int]] = []
    for a, b in tok.ranges:
        ba, bb = a.encode("utf-8"), b.encode("utf-8")
        if a == b:
            items.extend((x, x) for x in ba)
        else:
            items.extend((x, x) for x in ba[:-1])
            items.append((ba[-1], bb[0]))
            items.extend((x, x) for x in bb[1:])
    ranges = _norm(items)
    return _Set(_negate(ranges, _MAX_BYTE) if tok.negated else ranges)


def _glob_ast(tokens: Sequence[_GTok]) -> tuple[_Node, bool]:
    """Tokens to a byte-level tree, plus whether globset's regex text for them is empty."""
    out: list[_Node] = []
    empty = True
    for tok in tokens:
        if tok.kind == "alts":
            parts = [node for node, is_empty in map(_glob_ast, tok.alts) if not is_empty]
            if parts:
                out.append(_Alt(tuple(parts)))
                empty = False
            continue
        empty = False
        if tok.kind == "lit":
            out.append(_bytes_of(tok.char))
        elif tok.kind == "any":
            out.append(_Set(_NOT_SLASH))
        elif tok.kind == "zom":
            out.append(_Rep(_Set(_NOT_SLASH), 0, None))
        elif tok.kind == "rprefix":  # (?:/?|.*/)
            out.append(_Alt((_Rep(_SLASH, 0, 1), _Cat((_DOT_STAR, _SLASH)))))
        elif tok.kind == "rsuffix":  # /.*
            out.append(_Cat((_SLASH, _DOT_STAR)))
        elif tok.kind == "rzom":  # (?:/|/.*/)
            out.append(_Alt((_SLASH, _Cat((_SLASH, _DOT_STAR, _SLASH)))))
        else:
            out.append(_glob_class(tok))
    return _Cat(tuple(out)), empty


# ---------------------------------------------------------------------------------------
# NFA (Thompson) and DFA (subset construction, pruning, Moore minimisation).


class _NFA:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.sym: list[tuple[Ranges, int] | None] = []
        self.asserts: list[tuple[bool, int] | None] = []

    def new(self) -> int:
        self.eps.append([])
        self.sym.append(None)
        self.asserts.append(None)
        return len(self.eps) - 1

    def build(self, node: _Node) -> tuple[int, int]:
        s = self.new()
        if isinstance(node, _Set):
            t = self.new()
            self.sym[s] = (node.ranges, t)
        elif isinstance(node, _Assert):
            t = self.new()
            self.asserts[s] = (node.end, t)
        elif isinstance(node, _Cat):
            cur = s
            for item in node.items:
                a, b = self.build(item)
                self.eps[cur].append(a)
                cur = b
            t = cur
        elif isinstance(node, _Alt):
            t = self.new()
            for item in node.items:
                a, b = self.build(item)
                self.eps[s].append(a)
                self.eps[b].append(t)
        else:
            cur = s
            for _ in range(node.lo):
                a, b = self.build(node.item)
                self.eps[cur].append(a)
                cur = b
            t = self.new()
            if node.hi is None:
                a, b = self.build(node.item)
                self.eps[cur].extend((a, t))
                self.eps[b].extend((a, t))
            else:
                for _ in range(node.hi - node.lo):
                    a, b = self.build(node.item)
                    self.eps[cur].extend((a, t))
                    cur = b
                self.eps[cur].append(t)
        return s, t

    def closure(self, states: Iterable[int], at_start: bool, at_end: bool) -> set[int]:
        seen: set[int] = set()
        todo = list(states)
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            todo.extend(self.eps[s])
            a = self.asserts[s]
            if a is not None and (at_end if a[0] else at_start):
                todo.append(a[1])
        return seen


@dataclass
class _DFA:
    """A DFA over symbol classes. ``classes`` maps sorted, disjoint symbol ranges to a class;
    symbols outside every range are class 0. ``table[state][class]`` is a state or -1 (dead)."""

    start: int  # -1: the pattern matches nothing
    flags: list[int]
    table: list[list[int]]
    classes: list[tuple[int, int, int]]

    def class_of(self, sym: int) -> int:
        for lo, hi, k in self.classes:
            if lo <= sym <= hi:
                return k
        return 0


def _alphabet(sets: list[Ranges]) -> tuple[list[tuple[int, int, int]], list[frozenset[int]]]:
    """Split the symbols into classes that every set in ``sets`` either holds or excludes.

    Returns the class ranges and, per class, the indices of the sets that hold it; class 0
    is the symbols no set holds.
    """
    events: dict[int, list[tuple[int, int]]] = {}
    for i, ranges in enumerate(sets):
        for lo, hi in ranges:
            events.setdefault(lo, []).append((i, 1))
            events.setdefault(hi + 1, []).append((i, -1))
    sigs: dict[frozenset[int], int] = {frozenset(): 0}
    out: list[tuple[int, int, int]] = []
    active: dict[int, int] = {}
    cuts = sorted(events)
    for n, at in enumerate(cuts):
        for i, d in events[at]:
            active[i] = active.get(i, 0) + d
            if not active[i]:
                del active[i]
        if n + 1 == len(cuts) or not active:
            continue
        k = sigs.setdefault(frozenset(active), len(sigs))
        hi = cuts[n + 1] - 1
        if out and out[-1][2] == k and out[-1][1] + 1 == at:
            out[-1] = (out[-1][0], hi, k)
        else:
            out.append((at, hi, k))
    by_class = [frozenset()] * len(sigs)
    for sig, k in sigs.items():
        by_class[k] = sig
    return out, by_class


def _build_dfa(node: _Node, *, search: bool) -> _DFA:
    if _size(node) > _NFA_CAP:
        raise _unsupported("pattern too large (repetition counts expand past the cap)", 0)
    nfa = _NFA()
    entry, accept = nfa.build(node)

    set_index: dict[Ranges, int] = {}
    sym_set: dict[int, int] = {}
    for s, sym in enumerate(nfa.sym):
        if sym is not None:
            sym_set[s] = set_index.setdefault(sym[0], len(set_index))
    classes, members = _alphabet(list(set_index))

    ids: dict[tuple[frozenset[int], int], int] = {}
    kernels: list[frozenset[int]] = []
    flags: list[int] = []
    match_id = -1

    def add(kernel: frozenset[int], f: int) -> int:
        key = (kernel, f)
        if key not in ids:
            if len(kernels) >= DFA_CAP:
                raise _unsupported(f"pattern needs more than {DFA_CAP} automaton states", 0)
            ids[key] = len(kernels)
            kernels.append(kernel)
            flags.append(f)
        return ids[key]

    def intern(closed: set[int], at_start: bool) -> int:
        nonlocal match_id
        if search and accept in closed:
            if match_id < 0:
                match_id = add(frozenset(), S_MATCH)
            return match_id
        eoi = accept in nfa.closure(closed, at_start, True)
        kernel = frozenset(s for s in closed if s in sym_set)
        if not kernel and not eoi:
            return -1
        return add(kernel, S_EOI if eoi else 0)

    restart = nfa.closure([entry], False, False) if search else set()
    start = intern(nfa.closure([entry], True, False), True)
    table: list[list[int]] = []
    cache: dict[frozenset[int], int] = {}
    i = 0
    while i < len(kernels):
        by_set: dict[int, list[int]] = {}
        for s in kernels[i]:
            by_set.setdefault(sym_set[s], []).append(nfa.sym[s][1])  # type: ignore[index]
        row: list[int] = []
        for k in range(len(members)):
            if flags[i] & S_MATCH:
                row.append(-1)
                continue
            targets = frozenset(t for j in members[k] for t in by_set.get(j, ()))
            if targets not in cache:
                cache[targets] = intern(nfa.closure(targets, False, False) | restart, False)
            row.append(cache[targets])
        table.append(row)
        i += 1
    return _DFA(start, flags, table, classes)


def _minimise(dfa: _DFA) -> _DFA:
    """Drop states that cannot accept, merge equivalent states (Moore), then merge classes
    whose columns agree."""
    n = len(dfa.flags)
    rev: list[set[int]] = [set() for _ in range(n)]
    for s, row in enumerate(dfa.table):
        for t in row:
            if t >= 0:
                rev[t].add(s)
    live = {s for s in range(n) if dfa.flags[s]}
    todo = list(live)
    while todo:
        for p in rev[todo.pop()]:
            if p not in live:
                live.add(p)
                todo.append(p)
    if dfa.start not in live:
        return _DFA(-1, [], [], [])
    block = _hopcroft(dfa, live)
    # One state per block, numbered breadth-first from the start.
    order: dict[int, int] = {}
    reps: list[int] = []
    queue = [dfa.start]
    while queue:
        s = queue.pop(0)
        if block[s] in order:
            continue
        order[block[s]] = len(reps)
        reps.append(s)
        queue.extend(t for t in dfa.table[s] if t in live)
    table = [[order[block[t]] if t in live else -1 for t in dfa.table[s]] for s in reps]
    return _merge_classes(_DFA(0, [dfa.flags[s] for s in reps], table, dfa.classes))


def _hopcroft(dfa: _DFA, live: set[int]) -> dict[int, int]:
    """Hopcroft's partition refinement over the live states; transitions to states outside
    ``live`` count as one dead sink. Returns each live state's block."""
    sink = len(dfa.flags)
    states = [*sorted(live), sink]
    n_classes = len(dfa.table[0])
    inverse: list[dict[int, list[int]]] = [{} for _ in range(n_classes)]
    for s in states:
        row = dfa.table[s] if s != sink else [sink] * n_classes
        for k, t in enumerate(row):
            inverse[k].setdefault(t if t in live else sink, []).append(s)
    by_flags: dict[int, set[int]] = {}
    for s in live:
        by_flags.setdefault(dfa.flags[s], set()).add(s)
    blocks: list[set[int]] = [{sink}, *by_flags.values()]
    block_of = {s: b for b, members in enumerate(blocks) for s in members}
    work = list(range(len(blocks)))
    pending = set(work)
    while work:
        a = work.pop()
        pending.discard(a)
        splitter = list(blocks[a])
        for k in range(n_classes):
            hit: dict[int, list[int]] = {}
            for t in splitter:
                for s in inverse[k].get(t, ()):
                    hit.setdefault(block_of[s], []).append(s)
            for b, inside in hit.items():
                if len(inside) == len(blocks[b]):
                    continue
                new = len(blocks)
                blocks.append(set(inside))
                blocks[b].difference_update(inside)
                for s in inside:
                    block_of[s] = new
                if b in pending or len(blocks[new]) <= len(blocks[b]):
                    work.append(new)
                    pending.add(new)
                else:
                    work.append(b)
                    pending.add(b)
    return {s: block_of[s] for s in live}


def _merge_classes(dfa: _DFA) -> _DFA:
    n_classes = len(dfa.table[0]) if dfa.table else 1
    columns = [tuple(row[k] for row in dfa.table) for k in range(n_classes)]
    ids: dict[tuple[int, ...], int] = {columns[0]: 0}
    remap = [ids.setdefault(col, len(ids)) for col in columns]
    classes: list[tuple[int, int, int]] = []
    for lo, hi, k in dfa.classes:
        nk = remap[k]
        if nk == 0:
            continue
        if classes and classes[-1][2] == nk and classes[-1][1] + 1 == lo:
            classes[-1] = (classes[-1][0], hi, nk)
        else:
            classes.append((lo, hi, nk))
    firsts = {}
    for k, nk in enumerate(remap):
        firsts.setdefault(nk, k)
    table = [[row[firsts[nk]] for nk in range(len(ids))] for row in dfa.table]
    return _DFA(dfa.start, dfa.flags, table, classes)


def _fold_bytes(dfa: _DFA, mapping: list[bytes | None]) -> _DFA:
    """A DFA that reads byte ``b`` as the byte string ``mapping[b]`` (None: no transition)."""
    byte_class = [dfa.class_of(b) for b in range(256)]
    table: list[list[int]] = []
    for s in range(len(dfa.flags)):
        row = [-1]  # class 0: no byte is left outside the classes below
        for b in range(256):
            seq = mapping[b]
            t = -1 if seq is None else s
            for x in seq or b"":
                t = dfa.table[t][byte_class[x]]
                if t < 0:
                    break
            row.append(t)
        table.append(row)
    classes = [(b, b, b + 1) for b in range(256)]
    return _DFA(dfa.start, list(dfa.flags), table, classes)


def _serialise(dfa: _DFA, blob_flags: int) -> bytes:
    n = len(dfa.flags)
    n_classes = len(dfa.table[0]) if n else 1
    if n * n_classes > _TABLE_CAP:
        raise _unsupported(
            f"pattern automaton too large ({n} states x {n_classes} symbol classes)", 0
        )
    total = 32 + 12 * len(dfa.classes) + 4 * n + 4 * n * n_classes
    total += -total % 8
    out = bytearray(
        struct.pack(
            "<8I",
            DFA_MAGIC,
            BLOB_VERSION,
            blob_flags,
            n,
            dfa.start if n else 0xFFFFFFFF,
            n_classes,
            len(dfa.classes),
            total,
        )
    )
    for lo, hi, k in dfa.classes:
        out += struct.pack("<3I", lo, hi, k)
    out += struct.pack(f"<{n}I", *dfa.flags)
    for row in dfa.table:
        out += struct.pack(f"<{n_classes}I", *(t & 0xFFFFFFFF for t in row))
    out += bytes(total - len(out))
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Public API.


def compile_regex(pattern: str) -> bytes:
    """Compile ``regex.match(pattern, s)`` to a search DFA blob over Unicode scalar values.

    Raises :class:`PatternError` for patterns Rust's ``regex`` rejects and for the
    constructs A1 does not compile: look-around, backreferences, word boundaries,
    ``\\p{..}`` classes, the ``i m x R -u`` flags, and automata past :data:`DFA_CAP`.
    """
    node = _RegexParser(pattern).parse()
    return _serialise(_minimise(_build_dfa(node, search=True)), 0)


def glob_delimiters(delimiters: list[object] | None) -> list[str] | None:
    """regorus's delimiter handling: ``null`` stays ``None``; ``[]`` and ``[""]`` mean ``["."]``."""
    if delimiters is None:
        return None
    if not isinstance(delimiters, list) or not all(isinstance(d, str) for d in delimiters):
        raise _invalid("glob.match delimiters must be an array of strings or null", 0)
    if any(len(d.encode("utf-8")) > 1 for d in delimiters):  # type: ignore[union-attr]
        raise _invalid("glob delimiters must be single characters", 0)
    chosen = [d for d in delimiters if d]  # type: ignore[misc]
    return chosen or ["."]


def compile_glob(pattern: str, delimiters: list[str] | None) -> bytes:
    """Compile ``glob.match(pattern, delimiters, s)`` to a full-match DFA blob over bytes.

    The subject rewriting regorus applies before matching (``/`` to NUL, each delimiter
    ``d`` to ``/d/``, ``:`` to NUL) is folded into the automaton's byte transitions.
    """
    delims = glob_delimiters(delimiters)  # type: ignore[arg-type]
    if delims is not None and "\0" in pattern:
        raise _invalid("string contains internal glob placeholder (NUL)", pattern.index("\0"))
    chars = _glob_rewrite([(c, i) for i, c in enumerate(pattern)], delims)
    tokens = _GlobParser(chars).parse()
    if len(tokens) == 1 and tokens[0].kind == "rprefix":
        node: _Node = _DOT_STAR
    else:
        node, _ = _glob_ast(tokens)
    dfa = _minimise(_build_dfa(node, search=False))
    mapping: list[bytes | None] = []
    for b in range(256):
        if b == 0 and delims is not None:
            mapping.append(None)
            continue
        rewritten = _glob_rewrite([(chr(b), 0)], delims) if b < 0x80 else [(chr(b), 0)]
        mapping.append(bytes(ord(c) for c, _ in rewritten))
    if dfa.flags:
        dfa = _minimise(_fold_bytes(dfa, mapping))
    return _serialise(dfa, F_FULL | F_BYTES | (F_NUL_ERROR if delims is not None else 0))


def parse_ip_net(text: str) -> tuple[int, bytes, int] | None:
    """``(family, 16 address bytes, prefix)`` as the ``ipnet`` crate parses ``addr/prefix``."""
    p = _IpParser(text)
    for family in (4, 6):
        p.pos = 0
        got = p.read_v4() if family == 4 else p.read_v6(lenient=True)
        if got is None or not p.take("/"):
            continue
        prefix = p.read_number(10, 2 if family == 4 else 3, 33 if family == 4 else 129)
        if prefix is None:
            continue
        return (family, got, prefix) if p.pos == len(text) else None
    return None


def compile_cidr(cidr: str) -> bytes:
    """Compile the network of ``net.cidr_contains(cidr, x)``: family, prefix, masked address."""
    parsed = parse_ip_net(cidr)
    if parsed is None:
        raise _invalid(f"invalid CIDR {cidr!r}", 0)
    family, addr, prefix = parsed
    bits = int.from_bytes(addr, "big")
    width = 32 if family == 4 else 128
    value = bits >> (128 - width)
    mask = ((1 << width) - 1) ^ ((1 << (width - prefix)) - 1)
    network = (value & mask) << (128 - width)
    return struct.pack("<4I", CIDR_MAGIC, BLOB_VERSION, family, prefix) + network.to_bytes(
        16, "big"
    )


class _IpParser:
    """The address grammar of ``ipnet``'s parser (a copy of an older ``std::net`` parser)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0

    def take(self, ch: str) -> bool:
        if self.s[self.pos : self.pos + 1] == ch:
            self.pos += 1
            return True
        return False

    def read_number(self, radix: int, max_digits: int, upto: int) -> int | None:
        start = self.pos
        value = digits = 0
        while self.pos < len(self.s):
            ch = self.s[self.pos]
            d = "0123456789abcdef".find(ch.lower()) if ch.isascii() else -1
            if d < 0 or d >= radix:
                break
            self.pos += 1
            value = value * radix + d
            digits += 1
            if digits > max_digits or value >= upto:
                self.pos = start
                return None
        if digits == 0:
            self.pos = start
            return None
        return value

    def read_v4(self) -> bytes | None:
        start = self.pos
        octets = []
        for i in range(4):
            if i and not self.take("."):
                self.pos = start
                return None
            n = self.read_number(10, 3, 0x100)
            if n is None:
                self.pos = start
                return None
            octets.append(n)
        return bytes(octets) + bytes(12)

    def read_groups(self, limit: int) -> tuple[list[int], bool]:
        groups: list[int] = []
        while len(groups) < limit:
            i = len(groups)
            if i < limit - 1:
                save = self.pos
                if i == 0 or self.take(":"):
                    v4 = self.read_v4()
                    if v4 is not None:
                        groups += [v4[0] << 8 | v4[1], v4[2] << 8 | v4[3]]
                        return groups, True
                self.pos = save
            save = self.pos
            g = self.read_number(16, 4, 0x10000) if i == 0 or self.take(":") else None
            if g is None:
                self.pos = save
                return groups, False
            groups.append(g)
        return groups, False

    def read_v6(self, *, lenient: bool) -> bytes | None:
        start = self.pos
        head, head_v4 = self.read_groups(8)
        if len(head) == 8:
            return b"".join(g.to_bytes(2, "big") for g in head)
        if head_v4 or not (self.take(":") and self.take(":")):
            self.pos = start
            return None
        tail, _ = self.read_groups(8 - len(head) if lenient else 7 - len(head))
        groups = head + [0] * (8 - len(head) - len(tail)) + tail
        return b"".join(g.to_bytes(2, "big") for g in groups)


# Rust regex-syntax's Perl classes (Unicode 16.0): \d = Nd, \s = White_Space,
# \w = Alphabetic + M + Nd + Pc + Join_Control. Ranges in hex, checked code point by
# code point against regorus in tests/test_patterns.py.
_PERL_DIGIT = """
30-39 660-669 6F0-6F9 7C0-7C9 966-96F 9E6-9EF A66-A6F AE6-AEF B66-B6F BE6-BEF C66-C6F
CE6-CEF D66-D6F DE6-DEF E50-E59 ED0-ED9 F20-F29 1040-1049 1090-1099 17E0-17E9 1810-1819
1946-194F 19D0-19D9 1A80-1A89 1A90-1A99 1B50-1B59 1BB0-1BB9 1C40-1C49 1C50-1C59 A620-A629
A8D0-A8D9 A900-A909 A9D0-A9D9 A9F0-A9F9 AA50-AA59 ABF0-ABF9 FF10-FF19 104A0-104A9
10D30-10D39 10D40-10D49 11066-1106F 110F0-110F9 11136-1113F 111D0-111D9 112F0-112F9
11450-11459 114D0-114D9 11650-11659 116C0-116C9 116D0-116E3 11730-11739 118E0-118E9
11950-11959 11BF0-11BF9 11C50-11C59 11D50-11D59 11DA0-11DA9 11F50-11F59 16130-16139
16A60-16A69 16AC0-16AC9 16B50-16B59 16D70-16D79 1CCF0-1CCF9 1D7CE-1D7FF 1E140-1E149
1E2F0-1E2F9 1E4F0-1E4F9 1E5F1-1E5FA 1E950-1E959 1FBF0-1FBF9
"""

_PERL_SPACE = """
9-D 20 85 A0 1680 2000-200A 2028-2029 202F 205F 3000
"""

_PERL_WORD = """
30-39 41-5A 5F 61-7A AA B5 BA C0-D6 D8-F6 F8-2C1 2C6-2D1 2E0-2E4 2EC 2EE 300-374 376-377
37A-37D 37F 386 388-38A 38C 38E-3A1 3A3-3F5 3F7-481 483-52F 531-556 559 560-588 591-5BD 5BF
5C1-5C2 5C4-5C5 5C7 5D0-5EA 5EF-5F2 610-61A 620-669 66E-6D3 6D5-6DC 6DF-6E8 6EA-6FC 6FF
710-74A 74D-7B1 7C0-7F5 7FA 7FD 800-82D 840-85B 860-86A 870-887 889-88E 897-8E1 8E3-963
966-96F 971-983 985-98C 98F-990 993-9A8 9AA-9B0 9B2 9B6-9B9 9BC-9C4 9C7-9C8 9CB-9CE 9D7
9DC-9DD 9DF-9E3 9E6-9F1 9FC 9FE A01-A03 A05-A0A A0F-A10 A13-A28 A2A-A30 A32-A33 A35-A36
A38-A39 A3C A3E-A42 A47-A48 A4B-A4D A51 A59-A5C A5E A66-A75 A81-A83 A85-A8D A8F-A91 A93-AA8
AAA-AB0 AB2-AB3 AB5-AB9 ABC-AC5 AC7-AC9 ACB-ACD AD0 AE0-AE3 AE6-AEF AF9-AFF B01-B03 B05-B0C
B0F-B10 B13-B28 B2A-B30 B32-B33 B35-B39 B3C-B44 B47-B48 B4B-B4D B55-B57 B5C-B5D B5F-B63
B66-B6F B71 B82-B83 B85-B8A B8E-B90 B92-B95 B99-B9A B9C B9E-B9F BA3-BA4 BA8-BAA BAE-BB9
BBE-BC2 BC6-BC8 BCA-BCD BD0 BD7 BE6-BEF C00-C0C C0E-C10 C12-C28 C2A-C39 C3C-C44 C46-C48
C4A-C4D C55-C56 C58-C5A C5D C60-C63 C66-C6F C80-C83 C85-C8C C8E-C90 C92-CA8 CAA-CB3 CB5-CB9
CBC-CC4 CC6-CC8 CCA-CCD CD5-CD6 CDD-CDE CE0-CE3 CE6-CEF CF1-CF3 D00-D0C D0E-D10 D12-D44
D46-D48 D4A-D4E D54-D57 D5F-D63 D66-D6F D7A-D7F D81-D83 D85-D96 D9A-DB1 DB3-DBB DBD DC0-DC6
DCA DCF-DD4 DD6 DD8-DDF DE6-DEF DF2-DF3 E01-E3A E40-E4E E50-E59 E81-E82 E84 E86-E8A E8C-EA3
EA5 EA7-EBD EC0-EC4 EC6 EC8-ECE ED0-ED9 EDC-EDF F00 F18-F19 F20-F29 F35 F37 F39 F3E-F47
F49-F6C F71-F84 F86-F97 F99-FBC FC6 1000-1049 1050-109D 10A0-10C5 10C7 10CD 10D0-10FA
10FC-1248 124A-124D 1250-1256 1258 125A-125D 1260-1288 128A-128D 1290-12B0 12B2-12B5
12B8-12BE 12C0 12C2-12C5 12C8-12D6 12D8-1310 1312-1315 1318-135A 135D-135F 1380-138F
13A0-13F5 13F8-13FD 1401-166C 166F-167F 1681-169A 16A0-16EA 16EE-16F8 1700-1715 171F-1734
1740-1753 1760-176C 176E-1770 1772-1773 1780-17D3 17D7 17DC-17DD 17E0-17E9 180B-180D
180F-1819 1820-1878 1880-18AA 18B0-18F5 1900-191E 1920-192B 1930-193B 1946-196D 1970-1974
1980-19AB 19B0-19C9 19D0-19D9 1A00-1A1B 1A20-1A5E 1A60-1A7C 1A7F-1A89 1A90-1A99 1AA7
1AB0-1ACE 1B00-1B4C 1B50-1B59 1B6B-1B73 1B80-1BF3 1C00-1C37 1C40-1C49 1C4D-1C7D 1C80-1C8A
1C90-1CBA 1CBD-1CBF 1CD0-1CD2 1CD4-1CFA 1D00-1F15 1F18-1F1D 1F20-1F45 1F48-1F4D 1F50-1F57
1F59 1F5B 1F5D 1F5F-1F7D 1F80-1FB4 1FB6-1FBC 1FBE 1FC2-1FC4 1FC6-1FCC 1FD0-1FD3 1FD6-1FDB
1FE0-1FEC 1FF2-1FF4 1FF6-1FFC 200C-200D 203F-2040 2054 2071 207F 2090-209C 20D0-20F0 2102
2107 210A-2113 2115 2119-211D 2124 2126 2128 212A-212D 212F-2139 213C-213F 2145-2149 214E
2160-2188 24B6-24E9 2C00-2CE4 2CEB-2CF3 2D00-2D25 2D27 2D2D 2D30-2D67 2D6F 2D7F-2D96
2DA0-2DA6 2DA8-2DAE 2DB0-2DB6 2DB8-2DBE 2DC0-2DC6 2DC8-2DCE 2DD0-2DD6 2DD8-2DDE 2DE0-2DFF
2E2F 3005-3007 3021-302F 3031-3035 3038-303C 3041-3096 3099-309A 309D-309F 30A1-30FA
30FC-30FF 3105-312F 3131-318E 31A0-31BF 31F0-31FF 3400-4DBF 4E00-A48C A4D0-A4FD A500-A60C
A610-A62B A640-A672 A674-A67D A67F-A6F1 A717-A71F A722-A788 A78B-A7CD A7D0-A7D1 A7D3
A7D5-A7DC A7F2-A827 A82C A840-A873 A880-A8C5 A8D0-A8D9 A8E0-A8F7 A8FB A8FD-A92D A930-A953
A960-A97C A980-A9C0 A9CF-A9D9 A9E0-A9FE AA00-AA36 AA40-AA4D AA50-AA59 AA60-AA76 AA7A-AAC2
AADB-AADD AAE0-AAEF AAF2-AAF6 AB01-AB06 AB09-AB0E AB11-AB16 AB20-AB26 AB28-AB2E AB30-AB5A
AB5C-AB69 AB70-ABEA ABEC-ABED ABF0-ABF9 AC00-D7A3 D7B0-D7C6 D7CB-D7FB F900-FA6D FA70-FAD9
FB00-FB06 FB13-FB17 FB1D-FB28 FB2A-FB36 FB38-FB3C FB3E FB40-FB41 FB43-FB44 FB46-FBB1
FBD3-FD3D FD50-FD8F FD92-FDC7 FDF0-FDFB FE00-FE0F FE20-FE2F FE33-FE34 FE4D-FE4F FE70-FE74
FE76-FEFC FF10-FF19 FF21-FF3A FF3F FF41-FF5A FF66-FFBE FFC2-FFC7 FFCA-FFCF FFD2-FFD7
FFDA-FFDC 10000-1000B 1000D-10026 10028-1003A 1003C-1003D 1003F-1004D 10050-1005D
10080-100FA 10140-10174 101FD 10280-1029C 102A0-102D0 102E0 10300-1031F 1032D-1034A
10350-1037A 10380-1039D 103A0-103C3 103C8-103CF 103D1-103D5 10400-1049D 104A0-104A9
104B0-104D3 104D8-104FB 10500-10527 10530-10563 10570-1057A 1057C-1058A 1058C-10592
10594-10595 10597-105A1 105A3-105B1 105B3-105B9 105BB-105BC 105C0-105F3 10600-10736
10740-10755 10760-10767 10780-10785 10787-107B0 107B2-107BA 10800-10805 10808 1080A-10835
10837-10838 1083C 1083F-10855 10860-10876 10880-1089E 108E0-108F2 108F4-108F5 10900-10915
10920-10939 10980-109B7 109BE-109BF 10A00-10A03 10A05-10A06 10A0C-10A13 10A15-10A17
10A19-10A35 10A38-10A3A 10A3F 10A60-10A7C 10A80-10A9C 10AC0-10AC7 10AC9-10AE6 10B00-10B35
10B40-10B55 10B60-10B72 10B80-10B91 10C00-10C48 10C80-10CB2 10CC0-10CF2 10D00-10D27
10D30-10D39 10D40-10D65 10D69-10D6D 10D6F-10D85 10E80-10EA9 10EAB-10EAC 10EB0-10EB1
10EC2-10EC4 10EFC-10F1C 10F27 10F30-10F50 10F70-10F85 10FB0-10FC4 10FE0-10FF6 11000-11046
11066-11075 1107F-110BA 110C2 110D0-110E8 110F0-110F9 11100-11134 11136-1113F 11144-11147
11150-11173 11176 11180-111C4 111C9-111CC 111CE-111DA 111DC 11200-11211 11213-11237
1123E-11241 11280-11286 11288 1128A-1128D 1128F-1129D 1129F-112A8 112B0-112EA 112F0-112F9
11300-11303 11305-1130C 1130F-11310 11313-11328 1132A-11330 11332-11333 11335-11339
1133B-11344 11347-11348 1134B-1134D 11350 11357 1135D-11363 11366-1136C 11370-11374
11380-11389 1138B 1138E 11390-113B5 113B7-113C0 113C2 113C5 113C7-113CA 113CC-113D3
113E1-113E2 11400-1144A 11450-11459 1145E-11461 11480-114C5 114C7 114D0-114D9 11580-115B5
115B8-115C0 115D8-115DD 11600-11640 11644 11650-11659 11680-116B8 116C0-116C9 116D0-116E3
11700-1171A 1171D-1172B 11730-11739 11740-11746 11800-1183A 118A0-118E9 118FF-11906 11909
1190C-11913 11915-11916 11918-11935 11937-11938 1193B-11943 11950-11959 119A0-119A7
119AA-119D7 119DA-119E1 119E3-119E4 11A00-11A3E 11A47 11A50-11A99 11A9D 11AB0-11AF8
11BC0-11BE0 11BF0-11BF9 11C00-11C08 11C0A-11C36 11C38-11C40 11C50-11C59 11C72-11C8F
11C92-11CA7 11CA9-11CB6 11D00-11D06 11D08-11D09 11D0B-11D36 11D3A 11D3C-11D3D 11D3F-11D47
11D50-11D59 11D60-11D65 11D67-11D68 11D6A-11D8E 11D90-11D91 11D93-11D98 11DA0-11DA9
11EE0-11EF6 11F00-11F10 11F12-11F3A 11F3E-11F42 11F50-11F5A 11FB0 12000-12399 12400-1246E
12480-12543 12F90-12FF0 13000-1342F 13440-13455 13460-143FA 14400-14646 16100-16139
16800-16A38 16A40-16A5E 16A60-16A69 16A70-16ABE 16AC0-16AC9 16AD0-16AED 16AF0-16AF4
16B00-16B36 16B40-16B43 16B50-16B59 16B63-16B77 16B7D-16B8F 16D40-16D6C 16D70-16D79
16E40-16E7F 16F00-16F4A 16F4F-16F87 16F8F-16F9F 16FE0-16FE1 16FE3-16FE4 16FF0-16FF1
17000-187F7 18800-18CD5 18CFF-18D08 1AFF0-1AFF3 1AFF5-1AFFB 1AFFD-1AFFE 1B000-1B122 1B132
1B150-1B152 1B155 1B164-1B167 1B170-1B2FB 1BC00-1BC6A 1BC70-1BC7C 1BC80-1BC88 1BC90-1BC99
1BC9D-1BC9E 1CCF0-1CCF9 1CF00-1CF2D 1CF30-1CF46 1D165-1D169 1D16D-1D172 1D17B-1D182
1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1D400-1D454 1D456-1D49C 1D49E-1D49F 1D4A2 1D4A5-1D4A6
1D4A9-1D4AC 1D4AE-1D4B9 1D4BB 1D4BD-1D4C3 1D4C5-1D505 1D507-1D50A 1D50D-1D514 1D516-1D51C
1D51E-1D539 1D53B-1D53E 1D540-1D544 1D546 1D54A-1D550 1D552-1D6A5 1D6A8-1D6C0 1D6C2-1D6DA
1D6DC-1D6FA 1D6FC-1D714 1D716-1D734 1D736-1D74E 1D750-1D76E 1D770-1D788 1D78A-1D7A8
1D7AA-1D7C2 1D7C4-1D7CB 1D7CE-1D7FF 1DA00-1DA36 1DA3B-1DA6C 1DA75 1DA84 1DA9B-1DA9F
1DAA1-1DAAF 1DF00-1DF1E 1DF25-1DF2A 1E000-1E006 1E008-1E018 1E01B-1E021 1E023-1E024
1E026-1E02A 1E030-1E06D 1E08F 1E100-1E12C 1E130-1E13D 1E140-1E149 1E14E 1E290-1E2AE
1E2C0-1E2F9 1E4D0-1E4F9 1E5D0-1E5FA 1E7E0-1E7E6 1E7E8-1E7EB 1E7ED-1E7EE 1E7F0-1E7FE
1E800-1E8C4 1E8D0-1E8D6 1E900-1E94B 1E950-1E959 1EE00-1EE03 1EE05-1EE1F 1EE21-1EE22 1EE24
1EE27 1EE29-1EE32 1EE34-1EE37 1EE39 1EE3B 1EE42 1EE47 1EE49 1EE4B 1EE4D-1EE4F 1EE51-1EE52
1EE54 1EE57 1EE59 1EE5B 1EE5D 1EE5F 1EE61-1EE62 1EE64 1EE67-1EE6A 1EE6C-1EE72 1EE74-1EE77
1EE79-1EE7C 1EE7E 1EE80-1EE89 1EE8B-1EE9B 1EEA1-1EEA3 1EEA5-1EEA9 1EEAB-1EEBB 1F130-1F149
1F150-1F169 1F170-1F189 1FBF0-1FBF9 20000-2A6DF 2A700-2B739 2B740-2B81D 2B820-2CEA1
2CEB0-2EBE0 2EBF0-2EE5D 2F800-2FA1D 30000-3134A 31350-323AF E0100-E01EF
"""

_DIGIT = _parse_table(_PERL_DIGIT)
_SPACE = _parse_table(_PERL_SPACE)
_WORD = _parse_table(_PERL_WORD)
