"""Re-spell valid Rego that regorus's lexer refuses, before regorus parses it.

regorus (pinned) refuses two things OPA's Rego v1 accepts:

- a line longer than 1,024 columns (a JWT in a test reaches that): a long
  string literal becomes a short placeholder string, mapped back to its value
  when the front end reads the AST, and a line still too long is broken after
  commas inside ``[ ]`` and ``( )``, where a newline is only white space;
- a keyword as a reference segment (``input.in``, ``data.foo.every``): it
  becomes ``input["in"]``, the same reference.

Every edit is recorded, so a position in the re-spelled text (a regorus span,
a regorus error) maps back to the user's own ``file:line:col``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import dataclass, field

LONG_STRING = 200
"""String literals longer than this many bytes become placeholders."""

MAX_LINE = 800
"""A re-spelled line is kept at most this long where commas allow (regorus: 1,024)."""

KEYWORDS = [
    "as",
    "default",
    "else",
    "every",
    "false",
    "if",
    "import",
    "in",
    "not",
    "null",
    "package",
    "some",
    "true",
    "with",
]

_TOKENS = re.compile(
    rb'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*|\n|[\[\](){},]'
    rb"|(?<=[\w\])}])\.(?:" + "|".join(KEYWORDS).encode() + rb")(?![\w])"
)
_DIRECTIVE = re.compile(rb"[ \t]*(?:import|package)\b")


@dataclass
class _Edit:
    new_start: int
    new_end: int
    old_start: int
    old_end: int


@dataclass
class _Map:
    """New byte offset → old byte offset, through a sorted list of edits."""

    edits: list[_Edit] = field(default_factory=list)

    def old(self, offset: int) -> int:
        i = bisect.bisect_right([e.new_start for e in self.edits], offset) - 1
        if i < 0:
            return offset
        e = self.edits[i]
        if offset < e.new_end:
            return e.old_start
        return e.old_end + (offset - e.new_end)


def _apply(data: bytes, edits: list[tuple[int, int, bytes]]) -> tuple[bytes, _Map]:
    out, mapping, pos = bytearray(), _Map(), 0
    for start, end, replacement in edits:
        out += data[pos:start]
        new_start = len(out)
        out += replacement
        mapping.edits.append(_Edit(new_start, len(out), start, end))
        pos = end
    out += data[pos:]
    return bytes(out), mapping


@dataclass
class Respelled:
    """What regorus parses, and how to read its answers in the user's terms."""

    original: str
    text: str
    strings: dict[str, str]  # placeholder value -> the literal's value
    maps: list[_Map]

    def old_offset(self, offset: int) -> int:
        """A byte offset of ``text`` → the byte offset in ``original`` it came from."""
        for m in reversed(self.maps):
            offset = m.old(offset)
        return offset

    def string(self, value: str) -> str:
        return self.strings.get(value, value)

    def old_line_col(self, line: int, col: int) -> tuple[int, int]:
        """A regorus ``line:col`` in ``text`` → ``line:col`` in ``original``."""
        data = self.text.encode()
        start = 0
        for _ in range(line - 1):
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            start = nl + 1
        end = data.find(b"\n", start)
        row = data[start : end if end >= 0 else len(data)].decode(errors="replace")
        offset = self.old_offset(start + len(row[: col - 1].encode()))
        orig = self.original.encode()
        line_start = orig.rfind(b"\n", 0, offset) + 1
        column = len(orig[line_start:offset].decode(errors="replace")) + 1
        return orig.count(b"\n", 0, offset) + 1, column


def respell(text: str) -> Respelled:
    data = text.encode()
    nonce = hashlib.sha256(data).hexdigest()[:16]
    strings: dict[str, str] = {}
    by_value: dict[str, bytes] = {}
    edits: list[tuple[int, int, bytes]] = []
    line_start, directive = 0, bool(_DIRECTIVE.match(data))
    for m in _TOKENS.finditer(data):
        tok = m.group()
        if tok == b"\n":
            line_start = m.end()
            directive = bool(_DIRECTIVE.match(data, line_start))
        elif tok[:1] == b".":
            if not directive:
                edits.append((m.start(), m.end(), b'["' + tok[1:] + b'"]'))
        elif tok[:1] in (b'"', b"`") and len(tok) > LONG_STRING:
            try:
                value = json.loads(tok) if tok[:1] == b'"' else tok[1:-1].decode()
            except ValueError:
                continue  # regorus reports it
            if value not in by_value:
                placeholder = f"\x01a1:{nonce}:{len(by_value)}"
                strings[placeholder] = value
                by_value[value] = json.dumps(placeholder).encode()
            edits.append((m.start(), m.end(), by_value[value]))
    first, map1 = _apply(data, edits)
    second, map2 = _apply(first, _line_breaks(first))
    return Respelled(text, second.decode(), strings, [map1, map2])


def _line_breaks(data: bytes) -> list[tuple[int, int, bytes]]:
    """Newlines after commas inside brackets (collections, calls, ``some k, v``; a
    newline there is white space to regorus) on lines longer than ``MAX_LINE``."""
    if all(len(line) <= MAX_LINE for line in data.split(b"\n")):
        return []
    edits: list[tuple[int, int, bytes]] = []
    stack: list[bytes] = []
    line_start = last_comma = 0
    for m in _TOKENS.finditer(data):
        tok = m.group()
        if tok == b"\n":
            line_start = last_comma = m.end()
            continue
        if m.end() - line_start > MAX_LINE and last_comma > line_start:
            edits.append((last_comma, last_comma, b"\n"))
            line_start = last_comma
        if tok in (b"[", b"(", b"{"):
            stack.append(tok)
        elif tok in (b"]", b")", b"}"):
            if stack:
                stack.pop()
        elif tok == b"," and stack:
            last_comma = m.end()
    return edits
