"""Nesting limits, checked on the raw text before anything parses it.

regorus parses a bracket whose contents could start a comprehension twice
(once as a comprehension, once as a literal), so each level of ``[[…]]`` or
``{{…}}`` doubles the parse time: depth 20 took 32 s. Deep values also make
recursive walkers (ours, json's, the runtime's) raise ``RecursionError``.
Long operator chains deepen the syntax tree the same way. A linear scan of
the brackets and operators outside strings and comments refuses such text
first, with the place of the first token past the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from policies.compiler.errors import CompileError, unsupported
from policies.compiler.ir import Loc
from policies.core.nesting import JSON_TOKENS, too_deep_at
from policies.runtime.values import MAX_EXACT_INT

REGO_MAX_DEPTH = 32
"""Brackets ``[ { (`` open at once in Rego source (the shipped policy and the
test corpus nest at most 4)."""

REGO_MAX_FIRST_CHAIN = 12
"""``[`` / ``{`` brackets open at once where each one is still in the first
element of every such bracket counted before it: regorus parses a first
element twice, so this chain, not the plain depth, sets the parse time
(about 0.3 s at 12, doubling with each level)."""

REGO_MAX_OPERATORS = 256
"""Operators chained in one expression (``1 + 1 + …``, ``- - - 1``), counted
across the brackets it opens: each is one more level of regorus's syntax tree, whose JSON grows
with the square of the depth (3000 took 5 s and 430 MB) and whose parser
overflows its stack on about 2000 unary minuses."""

JSON_MAX_DEPTH = 64
"""Arrays and objects open at once in a data or input document."""

# One token at a time: a string, a comment, a bracket, a separator, an
# operator, a newline or a word; the scan stays linear.
_REGO_TOKENS = re.compile(
    r'"(?:[^"\\\n]+|\\.)*"?|`[^`]*`?|#[^\n]*|:=|==|!=|<=|>=|[\[{(\]}),;\n|&+\-*/%<>=]|[\w.]+'
)
_SEPARATORS = frozenset(",;")
_OPEN = frozenset("[{(")
_CLOSE = frozenset("]})")
_OPERATORS = frozenset(
    [":=", "==", "!=", "<=", ">=", "|", "&", "+", "-", "*", "/", "%", "<", ">", "="]
)


def _too_deep(file: str, text: str, offset: int, limit: int, message: str = "") -> CompileError:
    loc = Loc.at(file, text, offset)
    return CompileError(loc, "syntax", message or f"nesting deeper than {limit}")


def check_rego(
    file: str,
    text: str,
    limit: int = REGO_MAX_DEPTH,
    chain_limit: int = REGO_MAX_FIRST_CHAIN,
    op_limit: int = REGO_MAX_OPERATORS,
) -> None:
    """Refuse Rego source past any of the three limits (brackets open at once,
    the first-element chain, operators in one expression). Strings, raw
    strings and comments do not count."""
    stack: list[list[Any]] = [["", False, 0]]  # [bracket, in its first element, operators]
    chain = ops = 0
    after_op = False  # the last token was an operator: a newline continues the expression
    for m in _REGO_TOKENS.finditer(text):
        c = m.group()
        top = stack[-1]
        if c == "\n":
            if not after_op:
                ops -= top[2]
                top[2] = 0
            continue
        if c[0] == "#":
            continue
        if c in _OPEN:
            counts = c != "("
            stack.append([c, counts, 0])
            chain += counts
            if len(stack) - 1 > limit:
                raise _too_deep(file, text, m.start(), limit)
            if chain > chain_limit:
                what = f"nesting deeper than {chain_limit} ([ or {{ first in [ or {{)"
                raise _too_deep(file, text, m.start(), chain_limit, what)
        elif c in _CLOSE:
            if len(stack) > 1:
                _, first, level_ops = stack.pop()
                chain -= first
                ops -= level_ops
        elif c in _SEPARATORS or c in _OPERATORS:
            if c in _SEPARATORS or c == "|":
                chain -= top[1]
                top[1] = False
            if c in _SEPARATORS:
                ops -= top[2]
                top[2] = 0
            else:
                top[2] += 1
                ops += 1
                if ops > op_limit:
                    what = f"more than {op_limit} operators chained in one expression"
                    raise _too_deep(file, text, m.start(), op_limit, what)
        after_op = c in _OPERATORS


def check_json(file: str, text: str, limit: int = JSON_MAX_DEPTH) -> None:
    """Refuse JSON text whose arrays and objects nest deeper than ``limit``."""
    at = too_deep_at(JSON_TOKENS, text, limit)
    if at is not None:
        raise _too_deep(file, text, at, limit)


def exact_range() -> str:
    """The integers the runtime holds exactly, in words (``±2^53``)."""
    n = MAX_EXACT_INT
    if n & (n - 1) == 0:
        return f"±2^{n.bit_length() - 1} (the exact integer range)"
    if (n + 1) & n == 0:
        return f"±(2^{n.bit_length()}-1) (the exact integer range)"
    return f"±{n} (the exact integer range)"


def check_value(where: str, value: Any, limit: int = JSON_MAX_DEPTH) -> None:
    """Refuse an already-parsed document nested deeper than ``limit``, or holding an
    integer beyond the exact range (it would silently become a double), with the
    path to it. Iterative: a recursive walk would itself overflow on what this refuses."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 0, ())]
    while stack:
        v, depth, path = stack.pop()
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_EXACT_INT:
            shown = str(v) if len(str(v)) <= 40 else str(v)[:37] + "..."
            at = "".join(f"[{json.dumps(k)}]" for k in path)
            raise unsupported(None, f"{where}{at}: integer {shown} is beyond {exact_range()}")
        if isinstance(v, dict):
            children: Any = v.items()
        elif isinstance(v, (list, tuple)):
            children = enumerate(v)
        elif isinstance(v, (set, frozenset)):
            children = ((None, c) for c in v)
        else:
            continue
        if depth + 1 > limit:
            raise CompileError(None, "syntax", f"{where}: nesting deeper than {limit}")
        stack.extend((c, depth + 1, (*path, k) if k is not None else path) for k, c in children)


def decode_utf8(name: str, data: bytes) -> str:
    """Source, data and input files are UTF-8; anything else is refused with
    the offset of the first bad byte rather than a ``UnicodeDecodeError``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        valid = data[: err.start].decode("utf-8")  # valid up to the bad byte
        loc = Loc.at(name, valid, len(valid))
        raise CompileError(loc, "syntax", f"not valid UTF-8 at byte {err.start}") from None
