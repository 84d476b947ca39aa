"""Builds policies/runtime/a1rt.wasm from the C sources beside this file.

``python -m policies.runtime.build`` compiles every ``policies/runtime/*.c``
with zig's clang (the pinned ``ziglang`` wheel) for wasm32-freestanding and
writes ``a1rt.wasm``. The output is deterministic, so ``--check`` rebuilds to
a temporary file and fails when it differs from the committed module (the
sidecar pins the runtime by its SHA-256).

The build refuses a module that imports anything but ``env.memory`` or whose
``__heap_base`` (stack + static data) reaches the policy's area at 1 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "a1rt.wasm"
RUNTIME_LIMIT = 0x10_0000  # 1 MiB: where the policy's constants start
STACK_SIZE = 256 * 1024

CFLAGS = [
    "--target=wasm32-freestanding",
    "-O2",
    "-g0",
    "-std=c11",
    "-nostdlib",
    "-ffreestanding",
    "-fno-stack-protector",
    "-mbulk-memory",
    "-mnontrapping-fptoint",
    "-msign-ext",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
]
LDFLAGS = [
    "-Wl,--no-entry",
    "-Wl,--import-memory",
    f"-Wl,-z,stack-size={STACK_SIZE}",
    "-Wl,--export=__heap_base",
]


class BuildError(Exception):
    """The runtime did not build or does not meet the ABI's constraints."""


def sources() -> list[Path]:
    return sorted(HERE.glob("*.c"))


def compile_to(out: Path) -> None:
    """Compile and link every source into ``out``."""
    cmd = [
        sys.executable, "-m", "ziglang", "cc", *CFLAGS, *LDFLAGS,
        "-o", str(out), *(str(s.relative_to(HERE)) for s in sources()),
    ]
    proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"compiler failed ({proc.returncode}):\n{proc.stderr.strip()}")
    if proc.stderr.strip():
        print(proc.stderr.strip(), file=sys.stderr)


def verify(wasm: bytes) -> int:
    """Check the module's imports and memory layout; return ``__heap_base``."""
    import wasmtime

    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as err:
        raise BuildError(f"a1rt.wasm is not valid WebAssembly: {err}") from None
    imports = [(i.module, i.name) for i in module.imports]
    if imports != [("env", "memory")]:
        raise BuildError(f"a1rt.wasm must import only env.memory, imports {imports}")
    mem_type = module.imports[0].type
    if not isinstance(mem_type, wasmtime.MemoryType):
        raise BuildError("env.memory is not a memory import")
    store = wasmtime.Store(engine)
    pages = max(mem_type.limits.min, 1)
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(pages, None)))
    linker = wasmtime.Linker(engine)
    linker.define(store, "env", "memory", memory)
    instance = linker.instantiate(store, module)
    heap_base = instance.exports(store)["__heap_base"]
    if not isinstance(heap_base, wasmtime.Global):
        raise BuildError("a1rt.wasm does not export the __heap_base global")
    base = int(heap_base.value(store))  # type: ignore[arg-type]
    if base >= RUNTIME_LIMIT:
        raise BuildError(f"__heap_base {base:#x} reaches the policy area at {RUNTIME_LIMIT:#x}")
    return base


def build(out: Path = OUTPUT) -> bytes:
    """Build, verify and write the runtime to ``out``; return its bytes."""
    with tempfile.TemporaryDirectory(prefix="a1rt-") as tmp:
        target = Path(tmp) / "a1rt.wasm"
        compile_to(target)
        wasm = target.read_bytes()
    verify(wasm)
    out.write_bytes(wasm)
    return wasm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.runtime.build", description=__doc__)
    parser.add_argument(
        "--check", action="store_true",
        help="rebuild to a temporary file and fail if it differs from the committed a1rt.wasm",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory(prefix="a1rt-check-") as tmp:
                fresh = build(Path(tmp) / "a1rt.wasm")
            committed = OUTPUT.read_bytes() if OUTPUT.exists() else b""
            if fresh != committed:
                print(
                    f"{OUTPUT}: out of date with the C sources "
                    "(run python -m policies.runtime.build)", file=sys.stderr,
                )
                return 1
            print(f"{OUTPUT.name} is up to date (sha256 {hashlib.sha256(fresh).hexdigest()})")
            return 0
        wasm = build()
    except BuildError as err:
        print(f"a1rt build failed: {err}", file=sys.stderr)
        return 1
    heap = verify(wasm)
    print(
        f"wrote {OUTPUT} ({len(wasm)} bytes, __heap_base {heap:#x}, "
        f"sha256 {hashlib.sha256(wasm).hexdigest()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
