"""Just enough of the WebAssembly binary format to read and add custom sections."""

from __future__ import annotations

MAGIC = b"\0asm\x01\0\0\0"


class WasmFormatError(ValueError):
    pass


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WasmFormatError("truncated LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise WasmFormatError("LEB128 integer too long")


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sections(wasm: bytes) -> list[tuple[int, int, int, str | None, bytes]]:
    """(id, start, end, custom name, custom payload) for every section."""
    if wasm[:8] != MAGIC:
        raise WasmFormatError("not a WebAssembly module (bad magic or version)")
    pos, out = 8, []
    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = _uleb(wasm, pos + 1)
        end = body + size
        if end > len(wasm):
            raise WasmFormatError(f"section {section_id} runs past the end of the module")
        name, payload = None, b""
        if section_id == 0:
            name_len, name_at = _uleb(wasm, body)
            if name_at + name_len > end:
                raise WasmFormatError("custom section name runs past its section")
            name = wasm[name_at : name_at + name_len].decode("utf-8", "replace")
            payload = wasm[name_at + name_len : end]
        out.append((section_id, pos, end, name, payload))
        pos = end
    return out


def custom_sections(wasm: bytes) -> dict[str, bytes]:
    """All custom sections by name; raises ``WasmFormatError`` on a malformed module
    or on a name that appears twice (which of the two would count is ambiguous)."""
    out: dict[str, bytes] = {}
    for _, _, _, name, payload in _sections(wasm):
        if name is not None:
            if name in out:
                raise WasmFormatError(f"custom section {name} appears twice")
            out[name] = payload
    return out


def section_ids(wasm: bytes) -> list[int]:
    """The id of every section in order (1 type, 2 import, ..., 8 start, 0 custom)."""
    return [section_id for section_id, _, _, _, _ in _sections(wasm)]


def without_custom_section(wasm: bytes, name: str) -> bytes:
    kept = [wasm[start:end] for _, start, end, n, _ in _sections(wasm) if n != name]
    return MAGIC + b"".join(kept)


def add_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    encoded = name.encode()
    body = _leb(len(encoded)) + encoded + payload
    return wasm + b"\0" + _leb(len(body)) + body
