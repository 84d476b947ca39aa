"""String builtins regorus has and the compiler does not map to the C runtime.

Semantics are regorus's, where they differ from OPA's too: ``strings.count``
counts overlapping occurrences, ``strings.replace_n`` replaces key by key in
key order (each replacement sees the previous one's result), and indexes are in
characters (code points). Results that could grow past the memory a policy may
use (``strings.replace_n`` with long values) are refused before they are built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from policies.runtime.host.base import BuiltinError, builtin, want
from policies.runtime.values import RegoSet

__all__ = ["MAX_RESULT_CHARS"]

MAX_RESULT_CHARS = 16 << 20
"""Longest string a builtin here builds (the policy's whole memory is 16 MiB)."""


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
    """Overlapping occurrences, as regorus counts them (OPA's Go ``strings.Count`` does not
    overlap: ``strings.count("aaaa", "aa")`` is 3 here, 2 in OPA)."""
    want("strings.count", 1, search, "string")
    want("strings.count", 2, substring, "string")
    if not substring:
        raise BuiltinError("strings.count: the substring must not be empty")
    n, i = 0, search.find(substring)
    while i >= 0:
        n += 1
        i = search.find(substring, i + 1)
    return n


@builtin("strings.replace_n")
def replace_n(patterns: Any, value: Any) -> str:
    """Each key replaced by its value, key by key in key order, the next key seeing the
    previous result (regorus; OPA replaces all keys in one pass)."""
    fn = "strings.replace_n"
    want(fn, 1, patterns, "object")
    want(fn, 2, value, "string")
    pairs = list(patterns.items())
    for k, v in pairs:
        if type(k) is not str or type(v) is not str:
            raise BuiltinError(f"{fn}: operand 1 must map strings to strings")
    for k, v in sorted(pairs):
        n = value.count(k) if k else len(value) + 1
        if len(value) + n * (len(v) - len(k)) > MAX_RESULT_CHARS:
            raise BuiltinError(f"{fn}: result longer than {MAX_RESULT_CHARS} characters")
        value = value.replace(k, v)
    return value


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
