"""Re-spell valid Rego that regorus's lexer refuses, before regorus parses it.

regorus (pinned) refuses three things OPA's Rego v1 accepts:

- a template string (``$"a {x} b"``, raw ``$`a {x} b```): it becomes
  ``concat("", ["a ", __a1_template_value({t | t := x}), " b"])``, the set of
  the expression's values turned into text by a host builtin (``<undefined>``
  for none); the expression's own text is kept in place, so its errors point at
  the user's line and column;

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

from policies.compiler.errors import CompileError
from policies.compiler.ir import Loc
from policies.compiler.limits import check_rego

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


def respell(text: str, file: str = "<policy>") -> Respelled:
    """``text`` as regorus can parse it; a malformed template string is refused
    here, with its place in ``file``."""
    source = text.encode()
    data, map0 = _apply(source, _Templates(source, file).edits())
    if map0.edits:
        _check_limits(text, data, map0, file)
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
    return Respelled(text, second.decode(), strings, [map0, map1, map2])


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


# ------------------------------------------------------------------ template strings

MAX_TEMPLATE_DEPTH = 32
"""Template strings nested in one another's expressions deeper than this are refused."""

TEMPLATE_VALUE = "__a1_template_value"
"""The host builtin (``policies.runtime.host.template_string``) giving one part's text."""

_TOP = re.compile(rb'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*|\$["`]')
_IN_EXPR = re.compile(rb'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*|\$["`]|[{}\n]')
_TEXT = re.compile(rb'(?:[^"\\{\n]|\\[^\n])*')  # a template's text up to `{`, `"`, a newline
_RAW_TEXT = re.compile(rb"(?:[^`\\{]|\\\{?)*")
_ESCAPED_BRACE = re.compile(rb"\\[{}]|\\.|[^\\]+")
_RAW_BRACE = re.compile(rb"\\\{|\\|[^\\]+")


class _Templates:
    """Finds each template string (outside strings and comments) and writes the edits
    that re-spell it; nested templates are edits inside the outer one's expressions."""

    def __init__(self, data: bytes, file: str) -> None:
        self.data, self.file = data, file
        self.out: list[tuple[int, int, bytes]] = []
        self.count = 0

    def edits(self) -> list[tuple[int, int, bytes]]:
        if b"$" not in self.data:
            return []
        pos = 0
        while (m := _TOP.search(self.data, pos)) is not None:
            pos = self._template(m.start(), 1) if m.group()[0] == 0x24 else m.end()
        return self.out

    def _error(self, offset: int, message: str) -> CompileError:
        line_start = self.data.rfind(b"\n", 0, offset) + 1
        col = len(self.data[line_start:offset].decode(errors="replace")) + 1
        return CompileError(
            Loc(self.file, self.data.count(b"\n", 0, offset) + 1, col), "syntax", message
        )

    def _template(self, start: int, depth: int) -> int:
        """Re-spell the template string at ``start``; return the offset after it."""
        if depth > MAX_TEMPLATE_DEPTH:
            raise self._error(start, f"template strings nested deeper than {MAX_TEMPLATE_DEPTH}")
        data, raw = self.data, self.data[start + 1] == 0x60
        close = 0x60 if raw else 0x22
        pos, parts, edit_start = start + 2, b"", start
        while True:
            run = (_RAW_TEXT if raw else _TEXT).match(data, pos)
            assert run is not None
            text = self._text(run.group(), raw, pos)
            if text:
                parts += json.dumps(text).encode() + b", "
            pos = run.end()
            if pos >= len(data) or data[pos] not in (close, 0x7B):
                raise self._error(start, "unterminated template string")
            if data[pos] == close:
                end = pos + 1
                if edit_start == start:  # no expression: a plain string
                    self.out.append((start, end, json.dumps(self._whole(start)).encode()))
                else:
                    self.out.append((edit_start, edit_start + 1, b"})"))
                    self.out.append((edit_start + 1, end, b", " + parts + b'""])'))
                return end
            name = f"__a1_t{self.count}".encode()
            self.count += 1
            # The comprehension's braces are the user's: a regorus error about them,
            # or about the expression, lands on the user's own column.
            if edit_start == start:
                head = b'concat("", ['
            else:
                self.out.append((edit_start, edit_start + 1, b"})"))
                edit_start, head = edit_start + 1, b", "
            self.out.append((edit_start, pos, head + parts + TEMPLATE_VALUE.encode() + b"("))
            self.out.append((pos, pos + 1, b"{" + name + b" | " + name + b" := "))
            parts = b""
            edit_start = self._expression(pos + 1, raw, depth, start)
            pos = edit_start + 1

    def _whole(self, start: int) -> str:
        """The value of a template without expressions (its parts already checked)."""
        raw = self.data[start + 1] == 0x60
        run = (_RAW_TEXT if raw else _TEXT).match(self.data, start + 2)
        assert run is not None
        return self._text(run.group(), raw, start + 2)

    def _text(self, chunk: bytes, raw: bool, at: int) -> str:
        if raw:
            return b"".join(b"{" if t == b"\\{" else t for t in _RAW_BRACE.findall(chunk)).decode()
        plain = b"".join(
            t[1:] if t in (b"\\{", b"\\}") else t for t in _ESCAPED_BRACE.findall(chunk)
        )
        try:
            value = json.loads(b'"' + plain + b'"')
        except ValueError:
            raise self._error(at, "invalid escape or character in template string") from None
        assert isinstance(value, str)
        return value

    def _expression(self, pos: int, raw: bool, depth: int, start: int) -> int:
        """Skip the expression at ``pos`` (nested templates re-spelled); return the
        offset of its closing ``}``."""
        data, braces, first = self.data, 0, pos
        while True:
            m = _IN_EXPR.search(data, pos)
            if m is None or (m.group() == b"\n" and not raw):
                raise self._error(start, "unterminated template string")
            tok = m.group()
            if tok == b"{":
                braces += 1
            elif tok == b"}":
                if braces == 0:
                    if not data[first : m.start()].strip():
                        raise self._error(first - 1, "empty expression in template string")
                    return m.start()
                braces -= 1
            elif tok[0] == 0x24:
                pos = self._template(m.start(), depth + 1)
                continue
            pos = m.end()


def _check_limits(text: str, data: bytes, mapping: _Map, file: str) -> None:
    """The nesting limits again, now that template expressions are plain Rego (the
    first check read each template as one string): regorus's parse time doubles
    with each level of some brackets."""
    try:
        check_rego(file, data.decode())
    except CompileError as err:
        if err.loc is None:
            raise
        place = Respelled(text, data.decode(), {}, [mapping]).old_line_col(
            err.loc.line, err.loc.col
        )
        raise CompileError(Loc(file, *place), err.kind, err.message) from None
