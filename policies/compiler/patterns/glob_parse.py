"""Globs: regorus's delimiter rewriting, then ``globset``'s parser and its translation
to a syntax tree over bytes.

One deliberate difference from regorus, following OPA (the users' policies come from
OPA): an empty alternative in ``{…}`` matches the empty string, so
``glob.match("{**/,}x", null, "x")`` is true as in OPA, where globset drops empty
alternatives and regorus answers false. The constant-pattern DFA and the run-time RE2
path both build on ``glob_ast``, so they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.compiler.patterns.constants import MAX_BYTE
from policies.compiler.patterns.errors import invalid
from policies.compiler.patterns.nodes import Alt, Cat, Node, Rep, Set, literal
from policies.compiler.patterns.ranges import complement, normalise


def glob_rewrite(
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


class GlobParser:
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
                    raise invalid("unopened alternate group; missing '{'", self.at())
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
                    raise invalid("dangling '\\'", at)
                self.push(_GTok("lit", char=nxt))
            else:
                self.push(_GTok("lit", char=c))
        if len(self.branches) > 1:
            raise invalid("unclosed alternate group; missing '}'", self.alt_stack[-1][1])
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
                raise invalid("unclosed character class; missing ']'", start)
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
            raise invalid(f"invalid range; '{lo}' > '{end}'", self.at())
        ranges[-1] = (lo, end)


_NOT_SLASH = ((0x00, 0x2E), (0x30, 0xFF))
_ANY_BYTE = ((0x00, 0xFF),)
_SLASH = literal(0x2F)
DOT_STAR = Rep(Set(_ANY_BYTE), 0, None)


def has_empty_alternative(tokens: Sequence[_GTok]) -> bool:
    """Whether a ``{…}`` group mixes an empty alternative with non-empty ones: where
    A1 (as OPA) and regorus (globset) read the glob differently."""
    for tok in tokens:
        if tok.kind == "alts":
            empties = [glob_ast(alt)[1] for alt in tok.alts]
            if any(empties) and not all(empties):
                return True
            if any(has_empty_alternative(alt) for alt in tok.alts):
                return True
    return False


def _bytes_of(ch: str) -> Node:
    data = ch.encode("utf-8")
    return literal(data[0]) if len(data) == 1 else Cat(tuple(literal(b) for b in data))


def _glob_class(tok: _GTok) -> Set:
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
    ranges = normalise(items)
    return Set(complement(ranges, MAX_BYTE) if tok.negated else ranges)


def glob_ast(tokens: Sequence[_GTok]) -> tuple[Node, bool]:
    """Tokens to a byte-level tree, plus whether it is empty (matches only the empty string).

    An empty alternative beside non-empty ones stays an alternative matching the empty
    string (OPA: ``{a,}`` matches ``a`` and ``""``; globset would drop it).
    """
    out: list[Node] = []
    empty = True
    for tok in tokens:
        if tok.kind == "alts":
            branches = [glob_ast(alt) for alt in tok.alts]
            parts = [node for node, is_empty in branches if not is_empty]
            if parts:
                if len(parts) < len(branches):
                    parts.append(Cat(()))
                out.append(Alt(tuple(parts)))
                empty = False
            continue
        empty = False
        if tok.kind == "lit":
            out.append(_bytes_of(tok.char))
        elif tok.kind == "any":
            out.append(Set(_NOT_SLASH))
        elif tok.kind == "zom":
            out.append(Rep(Set(_NOT_SLASH), 0, None))
        elif tok.kind == "rprefix":  # (?:/?|.*/)
            out.append(Alt((Rep(_SLASH, 0, 1), Cat((DOT_STAR, _SLASH)))))
        elif tok.kind == "rsuffix":  # /.*
            out.append(Cat((_SLASH, DOT_STAR)))
        elif tok.kind == "rzom":  # (?:/|/.*/)
            out.append(Alt((_SLASH, Cat((_SLASH, DOT_STAR, _SLASH)))))
        else:
            out.append(_glob_class(tok))
    return Cat(tuple(out)), empty
