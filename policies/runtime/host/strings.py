"""String builtins the compiler does not map to the C runtime.

Semantics are regorus's, except where regorus and OPA differ: there A1 follows OPA,
as the users' policies come from OPA. ``strings.count`` counts non-overlapping
occurrences (Go's ``strings.Count``; regorus overlaps them), and
``strings.replace_n`` is Go's ``strings.NewReplacer`` over the keys in sorted order
(at each position the first matching key in that order wins, and replaced text is
never scanned again; regorus replaces key by key, each seeing the previous result).
Indexes are in characters (code points). Results that could grow past the memory a
policy may use are refused before they are built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.values import RegoSet

__all__ = ["MAX_RESULT_CHARS", "BoundedText"]

MAX_RESULT_CHARS = 16 << 20
"""Longest string a builtin here builds (the policy's whole memory is 16 MiB)."""


class BoundedText:
    """A result built piece by piece with a running length: past ``limit`` characters the
    builtin fails with ``too_long`` before the text exists (Go or regorus would build it)."""

    __slots__ = ("limit", "parts", "size", "too_long")

    def __init__(self, too_long: str, limit: int = MAX_RESULT_CHARS) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.too_long = too_long

    def add(self, s: str) -> None:
        self.size += len(s)
        if self.size > self.limit:
            raise BuiltinError(self.too_long)
        self.parts.append(s)

    def text(self) -> str:
        return "".join(self.parts)


def _strings(fn: str, position: int, v: Any) -> list[str]:
    """A string, or an array or set of strings, as a list (regorus's string collection)."""
    if type(v) is str:
        return [v]
    if type(v) is list or isinstance(v, (RegoSet, set, frozenset)):
        for i, x in enumerate(v):
            if type(x) is not str:
                raise BuiltinError(f"{fn}: operand {position} element {i} is not a string")
        return list(v)
    raise BuiltinError(
        f"{fn}: operand {position} must be string, array of strings or set of strings"
    )


def _any_match(fn: str, search: Any, base: Any, test: Callable[[str, str], bool]) -> bool:
    searched = _strings(fn, 1, search)
    bases = _strings(fn, 2, base)
    return any(test(s, b) for s in searched for b in bases)


@builtin("strings.any_prefix_match")
def any_prefix_match(search: Any, base: Any) -> bool:
    return _any_match("strings.any_prefix_match", search, base, str.startswith)


@builtin("strings.any_suffix_match")
def any_suffix_match(search: Any, base: Any) -> bool:
    return _any_match("strings.any_suffix_match", search, base, str.endswith)


@builtin("strings.count")
def strings_count(search: Any, substring: Any) -> int:
    """Non-overlapping occurrences, as OPA (Go's ``strings.Count``): ``("aaaa", "aa")``
    is 2 (regorus: 3); an empty substring is found before each character and at the end."""
    want("strings.count", 1, search, "string")
    want("strings.count", 2, substring, "string")
    return search.count(substring)


_REPLACER_MEM = 8 << 20  # RE2's budget for one replace_n key alternation
_UNANCHORED = re2._Anchor.UNANCHORED


def _replacer(keys: list[str]) -> Any:
    """RE2 program matching any of ``keys`` (non-empty, sorted): leftmost-first, so at
    the leftmost position the first key in sorted order wins, as in Go's replacer."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _REPLACER_MEM
    text = "|".join("".join(f"\\x{{{ord(c):x}}}" for c in k) for k in keys)
    prog = re2._re2.RE2(text.encode("ascii"), options)
    if not prog.ok():
        raise BuiltinError("strings.replace_n: too many or too long keys")
    return prog


@builtin("strings.replace_n")
def replace_n(patterns: Any, value: Any) -> str:
    """OPA's ``strings.replace_n``: Go's ``strings.NewReplacer`` with the pairs in key
    order. Scanning left to right, at each position the first key (in sorted order)
    that matches there is replaced and the scan goes on after it; an empty key matches
    at every character boundary (once per position) and loses to no other key, as it
    sorts first. Positions are code points (Go's bytes would split a character)."""
    fn = "strings.replace_n"
    want(fn, 1, patterns, "object")
    want(fn, 2, value, "string")
    for k, v in patterns.items():
        if type(k) is not str:
            raise BuiltinError(f"{fn}: operand 1 non-string key found in pattern object")
        if type(v) is not str:
            raise BuiltinError(f"{fn}: operand 1 non-string value found in pattern object")
    keys = sorted(k for k in patterns if k)
    empty = patterns.get("")
    if not keys and empty is None:
        return value
    data = value.encode("utf-8")
    prog = _replacer(keys) if keys else None
    out = BoundedText(f"{fn}: result longer than {MAX_RESULT_CHARS} characters")
    emit = out.add

    def between(chunk: bytes) -> None:
        text = chunk.decode("utf-8")
        if empty is None:
            emit(text)
        elif text:
            if out.size + len(text) * (len(empty) + 1) > MAX_RESULT_CHARS:
                raise BuiltinError(out.too_long)
            emit(empty + empty.join(text))

    pos = 0
    while prog is not None and pos < len(data):
        spans = prog.Match(_UNANCHORED, data, pos, len(data))
        start, end = spans[0]
        if start < 0:
            break
        between(data[pos:start])
        if empty is not None:
            emit(empty)
        emit(patterns[data[start:end].decode("utf-8")])
        pos = end
    between(data[pos:])
    if empty is not None:
        emit(empty)
    return out.text()


@builtin("strings.split_n")
def split_n(s: Any, delimiter: Any, n: Any) -> list[str]:
    """OPA's ``strings.split_n``: ``split(s, delimiter)``, then its first ``n`` parts
    (the last ``-n`` when ``n`` is negative); an empty delimiter splits characters."""
    fn = "strings.split_n"
    want(fn, 1, s, "string")
    want(fn, 2, delimiter, "string")
    want(fn, 3, n, "number")
    if type(n) is float:
        if not n.is_integer():
            raise BuiltinError(f"{fn}: operand 3 must be an integer but got {n}")
        n = int(n)
    parts = s.split(delimiter) if delimiter else list(s)
    if n >= 0:
        return parts[:n]
    return parts[max(len(parts) + n, 0) :]


def _trim(fn: str, s: Any, cutset: Any, strip: Callable[[str, str], str]) -> str:
    want(fn, 1, s, "string")
    want(fn, 2, cutset, "string")
    return strip(s, cutset) if cutset else s


@builtin("trim_left")
def trim_left(s: Any, cutset: Any) -> str:
    return _trim("trim_left", s, cutset, str.lstrip)


@builtin("trim_right")
def trim_right(s: Any, cutset: Any) -> str:
    return _trim("trim_right", s, cutset, str.rstrip)


@builtin("indexof_n")
def indexof_n(s: Any, sub: Any) -> list[int]:
    """Every (overlapping) position of ``sub`` in ``s``, in characters; an empty ``sub``
    is at every character of ``s`` (not past the last one, as regorus has it)."""
    want("indexof_n", 1, s, "string")
    want("indexof_n", 2, sub, "string")
    if not sub:
        return list(range(len(s)))
    out: list[int] = []
    i = s.find(sub)
    while i >= 0:
        out.append(i)
        i = s.find(sub, i + 1)
    return out
