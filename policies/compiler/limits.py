"""Nesting limits, checked on the raw text before anything parses it.

regorus parses a bracket whose contents could start a comprehension twice
(once as a comprehension, once as a literal), so each level of ``[[…]]`` or
``{{…}}`` doubles the parse time: depth 20 took 32 s. Deep values also make
recursive walkers (ours, json's, the runtime's) raise ``RecursionError``.
A linear scan of the brackets outside strings and comments refuses such text
first, with the place of the first bracket past the limit.
"""

from __future__ import annotations

import re
from typing import Any

from policies.compiler.errors import CompileError
from policies.compiler.ir import Loc

REGO_MAX_DEPTH = 32
"""Brackets ``[ { (`` open at once in Rego source (the shipped policy and the
test corpus nest at most 4)."""

REGO_MAX_FIRST_CHAIN = 12
"""``[`` / ``{`` brackets open at once where each one is still in the first
element of every such bracket counted before it: regorus parses a first
element twice, so this chain, not the plain depth, sets the parse time
(about 0.3 s at 12, doubling with each level)."""

JSON_MAX_DEPTH = 64
"""Arrays and objects open at once in a data or input document."""

# One token at a time: a string, a comment, or a bracket (everything else is
# skipped by the regex engine, so the scan stays linear and fast).
_REGO_TOKENS = re.compile(r'"(?:[^"\\\n]+|\\.)*"?|`[^`]*`?|#[^\n]*|[\[{(\]}),|;]')
_JSON_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[{\]}]')
_OPEN = frozenset("[{(")
_CLOSE = frozenset("]})")
_SEPARATORS = frozenset(",|;")


def _too_deep(file: str, text: str, offset: int, limit: int) -> CompileError:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return CompileError(Loc(file, line, col), "syntax", f"nesting deeper than {limit}")


def _scan(tokens: re.Pattern[str], file: str, text: str, limit: int) -> None:
    depth = 0
    for m in tokens.finditer(text):
        c = m.group()
        if c in _OPEN:
            depth += 1
            if depth > limit:
                raise _too_deep(file, text, m.start(), limit)
        elif c in _CLOSE:
            depth = max(depth - 1, 0)


def check_rego(
    file: str, text: str, limit: int = REGO_MAX_DEPTH, chain_limit: int = REGO_MAX_FIRST_CHAIN
) -> None:
    """Refuse Rego source whose brackets ``[ { (`` nest deeper than ``limit``,
    or whose first-element chain of ``[`` / ``{`` exceeds ``chain_limit``.
    Brackets in strings, raw strings and comments do not count."""
    stack: list[list[Any]] = []  # [bracket, still in its first element]
    chain = 0
    for m in _REGO_TOKENS.finditer(text):
        c = m.group()
        if c in _OPEN:
            counts = c != "("
            stack.append([c, counts])
            chain += counts
            if len(stack) > limit:
                raise _too_deep(file, text, m.start(), limit)
            if chain > chain_limit:
                raise CompileError(
                    _too_deep(file, text, m.start(), chain_limit).loc,
                    "syntax",
                    f"nesting deeper than {chain_limit} ([ or {{ as the first element of [ or {{)",
                )
        elif c in _CLOSE:
            if stack:
                chain -= stack.pop()[1]
        elif c in _SEPARATORS and stack and stack[-1][1]:
            stack[-1][1] = False
            chain -= 1


def check_json(file: str, text: str, limit: int = JSON_MAX_DEPTH) -> None:
    """Refuse JSON text whose arrays and objects nest deeper than ``limit``."""
    _scan(_JSON_TOKENS, file, text, limit)


def check_value(where: str, value: Any, limit: int = JSON_MAX_DEPTH) -> None:
    """Refuse an already-parsed document nested deeper than ``limit`` (iteratively:
    a recursive walk would itself overflow on the values this refuses)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, (list, tuple, set, frozenset)):
            children = v
        else:
            continue
        if depth + 1 > limit:
            raise CompileError(None, "syntax", f"{where}: nesting deeper than {limit}")
        stack.extend((c, depth + 1) for c in children)


def decode_utf8(name: str, data: bytes) -> str:
    """Source, data and input files are UTF-8; anything else is refused with
    the offset of the first bad byte rather than a ``UnicodeDecodeError``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        at = err.start
        line_start = data.rfind(b"\n", 0, at) + 1
        col = len(data[line_start:at].decode("utf-8")) + 1  # valid up to the bad byte
        loc = Loc(name, data.count(b"\n", 0, at) + 1, col)
        raise CompileError(loc, "syntax", f"not valid UTF-8 at byte {at}") from None
