"""Regex and glob builtins with patterns known only at run time, evaluated by RE2.

Constant patterns never get here: the compiler turns them into DFAs that the
runtime walks in C (``docs/patterns.md``). A pattern built from the input is
matched by RE2 (``google-re2``): linear time in the subject, whatever the
pattern, so ``(a+)+$`` cannot be made to backtrack for seconds as Python's
``re`` would.

regorus (the oracle) uses Rust's ``regex`` crate, whose syntax RE2 does not
read as is (Unicode ``\\d \\s \\w``, nested classes and ``&&``/``--``/``~~``,
``a**``, ``\\u``/``\\U`` escapes, ``{ 1 , 2 }``). So a pattern is first read by
the constant-pattern parser (``policies.compiler.patterns.regex_parse``), which
validates it as Rust does, and re-spelled for RE2 with classes as explicit code
point ranges. What RE2 cannot express as Rust means it (``(?x)``, ``(?R)``,
``(?-u)``, ``\\p`` inside a class, ``\\b`` against non-ASCII text, counts over
1000) is an evaluation error, never a different answer.

Globs reuse the constant-pattern glob parser and its syntax tree (one grammar
for both paths), spelled as a Latin-1 RE2 pattern over the rewritten subject's
bytes, as globset matches bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import re2

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.values import UNDEFINED

__all__ = [
    "MAX_PATTERN",
    "Regex",
    "RegexInvalid",
    "RegexUnsupported",
    "compile_regex",
    "glob_matches",
]

MAX_PATTERN = 64 * 1024
"""Longest pattern (in characters) accepted; a longer one is an error."""

_MAX_TRANSLATED = 1 << 20  # RE2 spelling of one pattern (classes expand), in characters
_MAX_PERL_CLASSES = 256  # each Unicode \w is 796 ranges to merge and spell out
_RE2_MAX_MEM = 4 << 20  # RE2's budget per compiled pattern (program and lazy DFA)
_CACHE_ENTRIES = 128
_CACHE_CHARS = 1 << 20  # sum of cached pattern lengths
_MAX_MATCHES = 1 << 20  # find_n / split / submatch results in one call

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = _RE2_MAX_MEM
_LATIN1 = re2.Options()
_LATIN1.log_errors = False
_LATIN1.max_mem = _RE2_MAX_MEM
_LATIN1.encoding = re2.Options.Encoding.LATIN1
_UNANCHORED = re2._Anchor.UNANCHORED
_ANCHOR_BOTH = re2._Anchor.ANCHOR_BOTH


class RegexInvalid(Exception):
    """A pattern Rust's ``regex`` rejects: regorus's "invalid regex"."""


class RegexUnsupported(Exception):
    """A valid pattern RE2 cannot run with Rust's meaning: an evaluation error."""


# ---------------------------------------------------------------- Rust syntax → RE2


def _hex(cp: int) -> str:
    return f"\\x{{{cp:x}}}"


def _literal(cp: int) -> str:
    ch = chr(cp)
    return ch if ch.isascii() and ch.isalnum() else _hex(cp)


def _class(ranges: tuple[tuple[int, int], ...], top: int = 0x10FFFF) -> str:
    parts: list[str] = []
    for lo, hi in ranges:
        # surrogates never occur in a Python str from UTF-8; RE2 refuses them
        if top > 0xFF and lo <= 0xDFFF and hi >= 0xD800:
            if lo < 0xD800:
                parts.append(_hex(lo) if lo == 0xD7FF else f"{_hex(lo)}-{_hex(0xD7FF)}")
            if hi > 0xDFFF:
                parts.append(_hex(hi) if hi == 0xE000 else f"{_hex(0xE000)}-{_hex(hi)}")
            continue
        parts.append(_hex(lo) if lo == hi else f"{_hex(lo)}-{_hex(hi)}")
    if not parts:
        return f"[^{_hex(0)}-{_hex(top)}]"
    return "[" + "".join(parts) + "]"


def _translator() -> type:
    """The translator class, built on first use: it subclasses the compiler's regex
    parser, and importing ``policies.compiler`` while this package loads would cycle."""
    from policies.compiler.patterns.constants import NEST_CAP
    from policies.compiler.patterns.errors import PatternError
    from policies.compiler.patterns.regex_parse import RegexParser

    class Translator(RegexParser):  # type: ignore[misc, valid-type]
        """Walks a pattern as ``RegexParser.parse`` does, spelling each piece for RE2."""

        def __init__(self, pattern: str) -> None:
            super().__init__(pattern)
            self.groups = 0
            self.group_index: dict[str, int] = {}
            self.boundary = False
            self.size = 0
            self.perl_classes = 0
            self.folding = [False]  # (?i) in force, per open group
            self.fold_change: bool | None = None  # what the last flag group did to (?i)

        def translate(self) -> str:
            # a frame: [opener, alternatives, items]; an item is (text, is_operand)
            stack: list[tuple[int, str, list[str], list[tuple[str, bool]]]] = [(0, "", [], [])]
            while not self.eof():
                _, opener, alts, items = stack[-1]
                c = self.p[self.i]
                if c == "(":
                    at = self.i
                    self.fold_change = None
                    text = self.open_group()
                    change = self.fold_change
                    if text.endswith(")"):  # a flag directive: no operand
                        items.append((text, False))
                        if change is not None:
                            self.folding[-1] = change
                    else:
                        if len(stack) > NEST_CAP:
                            raise RegexUnsupported("groups nested too deeply")
                        stack.append((at, text, [], []))
                        self.folding.append(self.folding[-1] if change is None else change)
                elif c == ")":
                    if len(stack) == 1:
                        raise self.invalid("unopened group")
                    self.i += 1
                    stack.pop()
                    self.folding.pop()
                    body = "|".join([*alts, "".join(t for t, _ in items)])
                    stack[-1][3].append((f"{opener}{body})", True))
                elif c == "|":
                    self.i += 1
                    alts.append("".join(t for t, _ in items))
                    items.clear()
                elif c in "*+?" or c == "{":
                    if not items or not items[-1][1]:
                        raise self.invalid("repetition operator missing expression")
                    if c == "{":
                        lo, hi = self.parse_counted()
                        op = f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi is None else hi}}}"
                    else:
                        self.i += 1
                        op = c
                    if self.peek() == "?":
                        self.i += 1
                        op += "?"
                    items[-1] = (f"(?:{items[-1][0]}){op}", True)
                else:
                    text = self.atom()
                    self.size += len(text)
                    if self.size > _MAX_TRANSLATED:  # classes spelled out: \w is 16 KiB
                        raise RegexUnsupported("pattern too large")
                    items.append((text, True))
            if len(stack) > 1:
                raise PatternError(f"unclosed group (at offset {stack[-1][0]})", stack[-1][0])
            return "|".join([*stack[0][2], "".join(t for t, _ in stack[0][3])])

        def parse_escape(self, *, in_class: bool) -> tuple[str, object]:
            if self.peek(1) in ("d", "s", "w", "D", "S", "W"):
                self.perl_classes += 1
                if self.perl_classes > _MAX_PERL_CLASSES:
                    raise RegexUnsupported(f"more than {_MAX_PERL_CLASSES} of \\d \\s \\w")
            return super().parse_escape(in_class=in_class)

        def invalid(self, what: str) -> Exception:
            return PatternError(f"{what} (at offset {self.i})", self.i)

        def open_group(self) -> str:
            """At ``(``: the RE2 opener, or a whole flag directive ``(?flags)``."""
            start = self.i
            self.i += 1
            if self.peek() != "?":
                self.groups += 1
                return "("
            self.i += 1
            c, d = self.peek(), self.peek(1)
            if c in ("=", "!") or (c == "<" and d in ("=", "!")):
                raise self.invalid("look-around is not supported")
            if c == "P" and d == "=":
                raise self.invalid("backreferences are not supported")
            if (c == "P" and d == "<") or c == "<":
                self.i += 2 if c == "P" else 1
                name_at = self.i
                self.parse_name(start)
                self.groups += 1
                self.group_index[self.p[name_at : self.i - 1]] = self.groups
                return "("
            on: list[str] = []
            off: list[str] = []
            seen: set[str] = set()
            negate = dangling = False
            refused = ""
            while True:
                if self.eof():
                    raise PatternError(f"unclosed group (at offset {start})", start)
                c = self.p[self.i]
                if c in ":)":
                    if dangling:
                        raise self.invalid("dangling flag negation")
                    if c == ")" and not seen and not negate:
                        raise self.invalid("empty flag group")
                    break
                if c == "-":
                    if negate:
                        raise self.invalid("repeated flag negation")
                    negate = dangling = True
                elif c not in "imsUuxR":
                    raise self.invalid(f"unrecognized flag {c!r}")
                elif c in seen:
                    raise self.invalid(f"duplicate flag {c!r}")
                else:
                    seen.add(c)
                    dangling = False
                    if (c in "xR" and not negate) or (c == "u" and negate):
                        refused = refused or f"flag {'-' if negate else ''}{c}"
                    elif c in "imsU":
                        (off if negate else on).append(c)
                self.i += 1
            if refused:
                raise RegexUnsupported(f"{refused} is not supported in a run-time pattern")
            if "i" in seen:
                self.fold_change = "i" in on
            closer = self.p[self.i]
            self.i += 1
            flags = "".join(on) + ("-" + "".join(off) if off else "")
            if closer == ")":
                return f"(?{flags})" if flags else "(?:)"
            return f"(?{flags}:"

        def atom(self) -> str:
            c = self.p[self.i]
            if c in ".^$":
                self.i += 1
                return c
            if c == "[":
                start = self.i
                ranges = self.parse_class()
                # Rust case-folds each class item before negating or combining; RE2 folds
                # the result. They agree on plain classes only.
                source = self.p[start : self.i]
                if self.folding[-1] and any(op in source for op in ("^", "&&", "--", "~~")):
                    raise RegexUnsupported("a negated or combined class under (?i)")
                return _class(ranges)
            if c != "\\":
                self.i += 1
                return _literal(ord(c))
            e = self.peek(1)
            if e in ("b", "B"):
                if e == "b" and self.peek(2) == "{" and (self.peek(3) or "").isalpha():
                    raise RegexUnsupported("special word boundaries \\b{…}")
                self.i += 2
                self.boundary = True
                return f"\\{e}"
            if e in ("<", ">"):
                raise RegexUnsupported(f"word boundary \\{e}")
            if e in ("p", "P"):
                return self.unicode_class(e)
            kind, value = self.parse_escape(in_class=False)
            if kind == "assert":
                return "\\z" if value else "\\A"
            if kind == "set":
                return _class(value)
            return _literal(value)

        def unicode_class(self, e: str) -> str:
            start = self.i
            self.i += 2
            if self.eof():
                raise PatternError(f"incomplete escape (at offset {start})", start)
            if self.p[self.i] != "{":
                self.i += 1
                return f"\\{e}{self.p[self.i - 1]}"
            end = self.p.find("}", self.i)
            if end < 0:
                raise PatternError(f"unclosed Unicode class (at offset {start})", start)
            self.i = end + 1
            return f"\\{e}{self.p[start + 2 : end + 1]}"

    return Translator


_TRANSLATOR: type | None = None


def _translate(pattern: str) -> tuple[str, dict[str, int], bool]:
    global _TRANSLATOR
    if _TRANSLATOR is None:
        _TRANSLATOR = _translator()
    from policies.compiler.patterns.errors import PatternError

    t = _TRANSLATOR(pattern)
    try:
        text = t.translate()
    except PatternError as err:
        # The parser calls "unsupported" some things Rust rejects too: look-around,
        # backreferences, and (here, where \b outside classes is translated) \b in a class.
        rust_rejects = ("backreference", "look", "word boundary")
        if err.unsupported and not any(r in err.message for r in rust_rejects):
            raise RegexUnsupported(err.message) from None
        raise RegexInvalid(err.message) from None
    except RecursionError:
        raise RegexUnsupported("pattern nested too deeply") from None
    return text, t.group_index, t.boundary


# ---------------------------------------------------------------- compiled patterns


@dataclass(frozen=True)
class Regex:
    """A compiled run-time pattern: RE2 program plus what Rust's API needs."""

    prog: Any  # re2._re2.RE2
    groups: int
    names: dict[str, int]
    ascii_boundary: bool  # \b or \B: RE2's are ASCII-only, Rust's Unicode

    def search(self, data: bytes, pos: int) -> list[tuple[int, int]] | None:
        spans = self.prog.Match(_UNANCHORED, data, pos, len(data))
        return None if spans[0][0] < 0 else spans

    def iter(self, text: str, data: bytes) -> Iterator[list[tuple[int, int]]]:
        """Successive matches as Rust's ``find_iter``/``captures_iter`` yield them: an
        empty match right where the previous match ended is skipped."""
        if self.ascii_boundary and not text.isascii():
            raise RegexUnsupported("word boundaries against non-ASCII text")
        pos, last_end, n = 0, -1, len(data)
        while pos <= n:
            spans = self.search(data, pos)
            if spans is None:
                return
            s, e = spans[0]
            if s == e and e == last_end:
                pos = e + 1
                while pos < n and (data[pos] & 0xC0) == 0x80:
                    pos += 1
                continue
            yield spans
            last_end = e
            pos = e


class _LRU:
    """A per-process cache of compiled patterns, bounded in entries and in the summed
    length of its patterns; safe to share between the sidecar's threads."""

    def __init__(self, entries: int, chars: int) -> None:
        self.entries = entries
        self.max_chars = chars
        self.chars = 0
        self._items: OrderedDict[Any, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: Any, size: int, value: Any) -> None:
        if size > self.max_chars // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.chars -= old[0]
            self._items[key] = (size, value)
            self.chars += size
            while len(self._items) > self.entries or self.chars > self.max_chars:
                _, (dropped, _) = self._items.popitem(last=False)
                self.chars -= dropped


_CACHE = _LRU(_CACHE_ENTRIES, _CACHE_CHARS)  # pattern -> Regex, or the invalid message
_GLOB_CACHE = _LRU(_CACHE_ENTRIES, _CACHE_CHARS)  # (pattern, delimiters) -> RE2 program


def compile_regex(pattern: str) -> Regex:
    """The RE2 program for a Rust-syntax ``pattern``, from a per-process LRU cache.

    Raises ``RegexInvalid`` where Rust's ``regex`` rejects the pattern, and
    ``RegexUnsupported`` where it is valid but cannot be run with Rust's meaning.
    """
    hit = _CACHE.get(pattern)
    if hit is not None:
        if isinstance(hit, str):
            raise RegexInvalid(hit)
        return hit
    if len(pattern) > MAX_PATTERN:
        raise RegexUnsupported(f"pattern longer than {MAX_PATTERN} characters")
    try:
        text, names, boundary = _translate(pattern)
        if len(text) > _MAX_TRANSLATED:
            raise RegexUnsupported("pattern too large")
        prog = re2._re2.RE2(text.encode("utf-8"), _OPTIONS)
        if not prog.ok():
            raise RegexUnsupported(prog.error().decode("utf-8", "replace"))
    except RegexInvalid as err:
        _CACHE.put(pattern, len(pattern), str(err))
        raise
    compiled = Regex(prog, prog.NumberOfCapturingGroups(), names, boundary)
    _CACHE.put(pattern, len(pattern), compiled)
    return compiled


def _regex_for(fn: str, pattern: str) -> Regex:
    try:
        return compile_regex(pattern)
    except RegexInvalid as err:
        raise BuiltinError(f"{fn}: invalid regex: {err}") from None
    except RegexUnsupported as err:
        raise BuiltinError(f"{fn}: unsupported pattern: {err}") from None


def _iter(fn: str, rx: Regex, text: str, data: bytes) -> Iterator[list[tuple[int, int]]]:
    try:
        yield from rx.iter(text, data)
    except RegexUnsupported as err:
        raise BuiltinError(f"{fn}: unsupported pattern: {err}") from None


def _utf8(s: str) -> bytes:
    return s.encode("utf-8")


def _count(fn: str, n: Any) -> int:
    """regorus's ``n``: an integer; negative (or past i64) means all."""
    if isinstance(n, float) and not n.is_integer():
        raise BuiltinError(f"{fn}: n must be an integer")
    n = int(n)
    return _MAX_MATCHES + 1 if n < 0 or n >= 2**63 else n


def _take(fn: str, items: Iterator[Any], n: int) -> list[Any]:
    out: list[Any] = []
    if n == 0:
        return out
    for item in items:
        out.append(item)
        if len(out) > _MAX_MATCHES:
            raise BuiltinError(f"{fn}: more than {_MAX_MATCHES} matches")
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------- regex builtins


@builtin("regex.match")
def regex_match(pattern: Any, value: Any) -> bool:
    want("regex.match", 1, pattern, "string")
    want("regex.match", 2, value, "string")
    rx = _regex_for("regex.match", pattern)
    return any(True for _ in _iter("regex.match", rx, value, _utf8(value)))


@builtin("regex.is_valid")
def regex_is_valid(pattern: Any) -> bool:
    if type(pattern) is not str:
        return False
    try:
        compile_regex(pattern)
    except RegexInvalid:
        return False
    except RegexUnsupported as err:
        raise BuiltinError(f"regex.is_valid: unsupported pattern: {err}") from None
    return True


def _find_n(fn: str, pattern: Any, value: Any, n: Any) -> tuple[bytes, list[Any]]:
    """``value`` as UTF-8 and the spans of its first ``n`` matches (all when negative)."""
    want(fn, 1, pattern, "string")
    want(fn, 2, value, "string")
    want(fn, 3, n, "number")
    rx = _regex_for(fn, pattern)
    data = _utf8(value)
    return data, _take(fn, _iter(fn, rx, value, data), _count(fn, n))


@builtin("regex.find_n")
def regex_find_n(pattern: Any, value: Any, n: Any) -> list[str]:
    data, found = _find_n("regex.find_n", pattern, value, n)
    return [data[s[0][0] : s[0][1]].decode("utf-8") for s in found]


@builtin("regex.find_all_string_submatch_n")
def regex_find_all_string_submatch_n(pattern: Any, value: Any, n: Any) -> list[list[str]]:
    data, found = _find_n("regex.find_all_string_submatch_n", pattern, value, n)
    return [[data[a:b].decode("utf-8") if a >= 0 else "" for a, b in spans] for spans in found]


@builtin("regex.split")
def regex_split(pattern: Any, value: Any) -> list[str]:
    fn = "regex.split"
    want(fn, 1, pattern, "string")
    want(fn, 2, value, "string")
    rx = _regex_for(fn, pattern)
    data = _utf8(value)
    out: list[str] = []
    last = 0
    for spans in _iter(fn, rx, value, data):
        s, e = spans[0]
        out.append(data[last:s].decode("utf-8"))
        if len(out) > _MAX_MATCHES:
            raise BuiltinError(f"{fn}: more than {_MAX_MATCHES} pieces")
        last = e
    out.append(data[last:].decode("utf-8"))
    return out


def _expander(template: str, rx: Regex) -> Callable[[bytes, list[tuple[int, int]]], bytes]:
    """Rust's ``Captures::expand``: ``$$``, ``$name``/``$1`` (longest run of
    ``[_0-9A-Za-z]``), ``${name}``; an unknown or unmatched group is empty; a ``$``
    starting nothing is literal."""
    parts: list[bytes | int | str] = []
    rest = template
    while rest:
        k = rest.find("$")
        if k < 0:
            parts.append(_utf8(rest))
            break
        parts.append(_utf8(rest[:k]))
        rest = rest[k:]
        if rest.startswith("$$"):
            parts.append(b"$")
            rest = rest[2:]
            continue
        if rest.startswith("${"):
            end = rest.find("}")
            if end < 0:
                parts.append(b"$")
                rest = rest[1:]
                continue
            name, rest = rest[2:end], rest[end + 1 :]
        else:
            j = 1
            while j < len(rest) and (rest[j] == "_" or (rest[j].isascii() and rest[j].isalnum())):
                j += 1
            if j == 1:
                parts.append(b"$")
                rest = rest[1:]
                continue
            name, rest = rest[1:j], rest[j:]
        parts.append(int(name) if name.isascii() and name.isdigit() else name)
    refs: list[bytes | int] = []
    for p in parts:
        if isinstance(p, str):
            index = rx.names.get(p)
            refs.append(b"" if index is None else index)
        else:
            refs.append(p)

    def expand(data: bytes, spans: list[tuple[int, int]]) -> bytes:
        out = bytearray()
        for r in refs:
            if isinstance(r, bytes):
                out += r
            elif r < len(spans) and spans[r][0] >= 0:
                out += data[spans[r][0] : spans[r][1]]
        return bytes(out)

    return expand


_MAX_REPLACED = 16 << 20  # bytes of a regex.replace result


@builtin("regex.replace")
def regex_replace(s: Any, pattern: Any, value: Any) -> Any:
    fn = "regex.replace"
    want(fn, 1, s, "string")
    want(fn, 2, pattern, "string")
    want(fn, 3, value, "string")
    try:
        rx = compile_regex(pattern)
    except RegexInvalid:
        return UNDEFINED  # as regorus (and OPA): an invalid pattern replaces nothing
    except RegexUnsupported as err:
        raise BuiltinError(f"{fn}: unsupported pattern: {err}") from None
    expand = _expander(value, rx)
    data = _utf8(s)
    out = bytearray()
    last = 0
    for spans in _iter(fn, rx, s, data):
        out += data[last : spans[0][0]]
        out += expand(data, spans)
        if len(out) > _MAX_REPLACED:
            raise BuiltinError(f"{fn}: result longer than {_MAX_REPLACED} bytes")
        last = spans[0][1]
    out += data[last:]
    return out.decode("utf-8")


@builtin("regex.template_match")
def regex_template_match(template: Any, value: Any, start_d: Any, end_d: Any) -> Any:
    """regorus's algorithm, on UTF-8 bytes as Rust indexes strings: the literal before
    each delimited pattern must equal the value's same bytes, the pattern must match at
    the start of the rest. Where regorus's slicing panics (the value too short, or cut
    inside a character) this is an error."""
    fn = "regex.template_match"
    for i, arg in enumerate((template, value, start_d, end_d), 1):
        want(fn, i, arg, "string")
    tpl, val = _utf8(template), _utf8(value)
    ds, de = _utf8(start_d), _utf8(end_d)
    while True:
        start, end = tpl.find(ds), tpl.find(de)
        if start < 0 or end < 0:
            break
        if start >= end:
            return UNDEFINED
        if start > len(val) or (start < len(val) and (val[start] & 0xC0) == 0x80):
            raise BuiltinError(f"{fn}: byte index {start} is not within the value")
        if tpl[:start] != val[:start]:
            return False
        rx = _regex_for(fn, tpl[start + len(ds) : end].decode("utf-8"))
        val = val[start:]
        text = val.decode("utf-8")
        m = next(_iter(fn, rx, text, val), None)
        if m is None or m[0][0] != 0:
            return False
        val = val[m[0][1] :]
        tpl = tpl[end + len(de) :]
    return tpl == val


# ---------------------------------------------------------------- globs


def _glob_re2(node: Any) -> str:
    """The glob syntax tree (over bytes) in RE2's Latin-1 spelling."""
    from policies.compiler.patterns.nodes import Alt, Cat, Rep, Set

    if isinstance(node, Set):
        return _class(node.ranges, 0xFF)
    if isinstance(node, Cat):
        return "".join(f"(?:{_glob_re2(i)})" for i in node.items)
    if isinstance(node, Alt):
        return "(?:" + "|".join(_glob_re2(i) for i in node.items) + ")"
    if isinstance(node, Rep):
        hi = "" if node.hi is None else str(node.hi)
        op = {(0, ""): "*", (1, ""): "+", (0, "1"): "?"}.get((node.lo, hi), f"{{{node.lo},{hi}}}")
        return f"(?:{_glob_re2(node.item)}){op}"
    raise AssertionError(f"glob node {node!r}")


def _glob_program(pattern: str, delims: list[str] | None) -> Any:
    from policies.compiler.patterns import PatternError
    from policies.compiler.patterns.glob_parse import DOT_STAR, GlobParser, glob_ast, glob_rewrite

    key = (pattern, None if delims is None else tuple(delims))
    hit = _GLOB_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        chars = glob_rewrite([(c, i) for i, c in enumerate(pattern)], delims)
        tokens = GlobParser(chars).parse()
        if len(tokens) == 1 and tokens[0].kind == "rprefix":
            node = DOT_STAR
        else:
            node, _ = glob_ast(tokens)
        text = _glob_re2(node)
    except PatternError as err:
        raise BuiltinError(f"glob.match: invalid glob: {err.message}") from None
    except RecursionError:
        raise BuiltinError("glob.match: unsupported glob: nested too deeply") from None
    if len(text) > _MAX_TRANSLATED:
        raise BuiltinError("glob.match: unsupported glob: pattern too large")
    prog = re2._re2.RE2(text.encode("latin-1"), _LATIN1)
    if not prog.ok():
        raise BuiltinError(f"glob.match: unsupported glob: {prog.error().decode()}")
    _GLOB_CACHE.put(key, len(pattern), prog)
    return prog


def glob_matches(pattern: str, delimiters: list[str] | None, subject: str) -> bool:
    """regorus's ``glob.match``: the subject rewritten as the pattern was (``/`` to NUL,
    each delimiter ``d`` to ``/d/``, ``:`` to NUL), then matched fully, byte by byte."""
    from policies.compiler.patterns import PatternError, glob_delimiters
    from policies.compiler.patterns.glob_parse import glob_rewrite

    if len(pattern) > MAX_PATTERN:
        raise BuiltinError(f"glob.match: pattern longer than {MAX_PATTERN} characters")
    try:
        delims = glob_delimiters(delimiters)  # type: ignore[arg-type]
    except PatternError:
        raise BuiltinError("glob.match: delimiters must be single character") from None
    if delims is not None and ("\0" in pattern or "\0" in subject):
        raise BuiltinError("glob.match: string contains internal glob placeholder")
    prog = _glob_program(pattern, delims)
    rewritten = "".join(c for c, _ in glob_rewrite([(c, 0) for c in subject], delims))
    data = rewritten.encode("utf-8")
    return prog.Match(_ANCHOR_BOTH, data, 0, len(data))[0][0] >= 0


@builtin("glob.match")
def glob_match(pattern: Any, delimiters: Any, value: Any) -> bool:
    fn = "glob.match"
    want(fn, 1, pattern, "string")
    want(fn, 3, value, "string")
    if delimiters is not None:
        if type(delimiters) is not list:
            raise BuiltinError(f"{fn}: delimiters must be an array of strings or null")
        for i, d in enumerate(delimiters):
            if type(d) is not str:
                raise BuiltinError(f"{fn}: delimiter {i} is not a string")
    return glob_matches(pattern, delimiters, value)


@builtin("glob.quote_meta")
def glob_quote_meta(pattern: Any) -> str:
    """regorus's ``glob.quote_meta``: the pattern must parse as a glob; then each ``*``
    is escaped (and nothing else, as regorus does)."""
    want("glob.quote_meta", 1, pattern, "string")
    if len(pattern) > MAX_PATTERN:
        raise BuiltinError(f"glob.quote_meta: pattern longer than {MAX_PATTERN} characters")
    try:
        _glob_program(pattern, None)
    except BuiltinError as err:
        raise BuiltinError(str(err).replace("glob.match", "glob.quote_meta")) from None
    return pattern.replace("*", "\\*")


# ---------------------------------------------------------------- regex.globs_match

_GI_MAX_STATES = 1 << 20  # product states one regex.globs_match may visit
_GI_ANY: tuple[tuple[int, int], ...] = ((0, 0x10FFFF),)


@dataclass(frozen=True)
class _GiToken:
    chars: tuple[tuple[int, int], ...]  # sorted, merged code point ranges
    star: bool  # X* (an X+ is spelled X X*)


def _gi_tokens(pattern: str) -> list[_GiToken]:
    """OPA's glob-intersection syntax: ``.``, ``[...]`` (ranges, no negation: ``^`` is a
    character), ``\\`` escapes, and ``*``/``+`` after a non-flag; every other character
    (``?``, ``(``, ``{``, ``|``, ``^``, ``$``) is itself."""
    fn = "regex.globs_match"
    out: list[_GiToken] = []
    i, n = 0, len(pattern)

    def take() -> tuple[str, bool]:
        nonlocal i
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise BuiltinError(f"{fn}: input ends with a \\ (escape) character")
            i += 2
            return pattern[i - 1], True
        i += 1
        return c, False

    while i < n:
        at = i
        c, escaped = take()
        if not escaped and c in "*+":
            raise BuiltinError(f"{fn}: flag '{c}' at {at} must be preceded by a non-flag")
        if not escaped and c == "]":
            raise BuiltinError(f"{fn}: set-close ']' at {at} with no preceding '['")
        if not escaped and c == ".":
            chars = _GI_ANY
        elif not escaped and c == "[":
            items: list[tuple[int, int]] = []
            prev: int | None = None
            while True:
                if i >= n:
                    raise BuiltinError(f"{fn}: found [ at {at} without matching ]")
                d, esc = take()
                if not esc and d == "]":
                    break
                if not esc and d == "-":
                    if prev is None:
                        raise BuiltinError(f"{fn}: range character '-' must follow a character")
                    if i >= n - 1:
                        raise BuiltinError(f"{fn}: range character '-' must precede a character")
                    e, esc2 = take()
                    if not esc2 and e in "]-":
                        raise BuiltinError(f"{fn}: range character '-' followed by '{e}'")
                    if ord(e) < prev:
                        raise BuiltinError(f"{fn}: range {chr(prev)}-{e} is out of order")
                    items.append((prev, ord(e)))
                    prev = None
                else:
                    items.append((ord(d), ord(d)))
                    prev = ord(d)
            chars = _gi_merge(items)
        else:
            chars = ((ord(c), ord(c)),)
        flag = pattern[i] if i < n else ""
        if flag in ("*", "+"):
            i += 1
            if flag == "+":
                out.append(_GiToken(chars, False))
            out.append(_GiToken(chars, True))
        else:
            out.append(_GiToken(chars, False))
    return out


def _gi_merge(items: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(items):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _gi_meet(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    """Whether two range lists share a code point."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


@builtin("regex.globs_match")
def regex_globs_match(glob1: Any, glob2: Any) -> bool:
    """OPA's ``regex.globs_match``: whether some string (the empty one included) matches
    both patterns, each read whole. Decided exactly, by a search of the two patterns'
    product automaton, bounded to ``_GI_MAX_STATES`` states (regorus lacks it)."""
    fn = "regex.globs_match"
    want(fn, 1, glob1, "string")
    want(fn, 2, glob2, "string")
    for i, g in ((1, glob1), (2, glob2)):
        if len(g) > MAX_PATTERN:
            raise BuiltinError(f"{fn}: operand {i} longer than {MAX_PATTERN} characters")
    a, b = _gi_tokens(glob1), _gi_tokens(glob2)
    if (len(a) + 1) * (len(b) + 1) > _GI_MAX_STATES:
        raise BuiltinError(f"{fn}: patterns too long to intersect")
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i].star:
            todo.append((i + 1, j))
        if j < len(b) and b[j].star:
            todo.append((i, j + 1))
        if i < len(a) and j < len(b) and _gi_meet(a[i].chars, b[j].chars):
            todo.append((i if a[i].star else i + 1, j if b[j].star else j + 1))
    return False
