"""How deep brackets nest in a text, found in one linear scan before any parser runs.

Parsers (regorus, ``json``) recurse per level, so a few kilobytes of brackets can
exhaust their stack or their time; every reader of untrusted text checks depth
with this first. Strings (as ``tokens`` matches them) are skipped whole.
"""

from __future__ import annotations

import re

__all__ = ["JSON_TOKENS", "too_deep_at"]

JSON_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[{\]}]')
_OPEN = frozenset("[{(")
_CLOSE = frozenset("]})")


def too_deep_at(tokens: re.Pattern[str], text: str, limit: int) -> int | None:
    """The offset of the first bracket that opens level ``limit + 1``, or None."""
    depth = 0
    for m in tokens.finditer(text):
        c = m.group()
        if c in _OPEN:
            depth += 1
            if depth > limit:
                return m.start()
        elif c in _CLOSE:
            depth = max(depth - 1, 0)
    return None
