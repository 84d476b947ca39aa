"""Rego → WebAssembly: parse (regorus) → IR (``frontend``) → WAT (``codegen``) → wasm.

The one entry point is ``compile_sources``; ``compile_files`` reads files first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import wasmtime

from policies.compiler.codegen import generate
from policies.compiler.errors import CompileError
from policies.compiler.frontend import parse_sources
from policies.compiler.header_check import check_decision_headers
from policies.compiler.ir import Loc
from policies.compiler.limits import check_json, decode_utf8
from policies.runtime.module import ABI_VERSION, META_SECTION, Metadata, runtime_sha256
from policies.runtime.wasmbin import add_custom_section

__all__ = [
    "CompileError",
    "assemble",
    "compile_files",
    "compile_sources",
    "load_data",
    "read_sources",
    "to_wat",
]


def _source_digest(sources: Mapping[str, str], data: Any) -> str:
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    h.update(json.dumps(data, sort_keys=True).encode())
    return h.hexdigest()


def to_wat(
    sources: Mapping[str, str], data: Any, entrypoints: Sequence[str]
) -> tuple[str, Metadata]:
    """Compile to WAT text plus the metadata that goes into the ``a1.meta`` section."""
    if not entrypoints:
        raise CompileError(None, "type", "at least one entrypoint is required")
    try:
        program = parse_sources(sources, data)
        check_decision_headers(program, entrypoints)
        module = generate(program, list(entrypoints))
    except RecursionError:  # a last resort: parse_sources's nesting checks should prevent it
        first = Loc(min(sources), 1, 1) if sources else None
        raise CompileError(first, "syntax", "program nested too deeply to compile") from None
    meta = Metadata(
        abi=ABI_VERSION,
        entrypoints=module.entrypoints,
        input_paths=module.input_paths,
        pure=module.pure,
        host_builtins=module.host_builtins,
        source_sha256=_source_digest(sources, data),
        runtime_sha256=runtime_sha256(),
    )
    return module.wat, meta


def assemble(wat: str, meta: Metadata) -> bytes:
    """WAT text plus metadata → a policy module (the ``a1.meta`` section appended)."""
    try:
        wasm = wasmtime.wat2wasm(wat)
    except wasmtime.WasmtimeError as err:  # a compiler bug, never the user's fault
        raise CompileError(None, "type", f"internal compiler error: {err}") from None
    return add_custom_section(bytes(wasm), META_SECTION, meta.to_json())


def compile_sources(
    sources: Mapping[str, str], data: Any = None, entrypoints: Sequence[str] = ()
) -> bytes:
    """Compile Rego modules (name → text) and a data document into a policy module."""
    return assemble(*to_wat(sources, data, entrypoints))


def load_data(path: Path) -> Any:
    try:
        text = decode_utf8(str(path), path.read_bytes())
        check_json(str(path), text)
        return json.loads(text)
    except OSError as err:
        raise CompileError(None, "syntax", f"{path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise CompileError(None, "syntax", f"{path}:{err.lineno}:{err.colno}: {err.msg}") from None


def read_sources(paths: Sequence[Path | str]) -> dict[str, str]:
    """File name → text, with a one-line error naming an unreadable file."""
    sources: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        try:
            sources[str(path)] = decode_utf8(str(path), path.read_bytes())
        except OSError as err:
            raise CompileError(None, "syntax", f"{path}: {err.strerror}") from None
    return sources


def compile_files(
    paths: Sequence[Path | str], data: Path | str | None = None, entrypoints: Sequence[str] = ()
) -> bytes:
    document = load_data(Path(data)) if data else None
    return compile_sources(read_sources(paths), document, entrypoints)
