"""Hostile policy modules are refused at load, as one ``BundleError`` line, never a crash.

The host calls ``a1_eval`` through wasmtime's unchecked call, so a module whose
export has another type must never get past loading: before these checks a wrong
signature killed the process with SIGILL on the first call, and an export of the
wrong kind raised ``AttributeError`` on startup and on every reload.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ext_proc.policy import load_policy
from policies.compiler import compile_sources
from policies.core.errors import ConfigError
from policies.runtime import ABI_VERSION, BundleError, PolicyError, PolicyModule
from policies.runtime.module import META_SECTION, Metadata, runtime_sha256
from policies.runtime.wasmbin import add_custom_section, custom_sections, without_custom_section

ROOT = Path(__file__).resolve().parent.parent
MEMORY = '(import "env" "memory" (memory 1))'
BASE = '(global (export "a1_input_base") i32 (i32.const 1048576))'
EVAL = '(func (export "a1_eval") (param i32 i32) (result i32) (i32.const 0))'
META = Metadata(ABI_VERSION, ["x/y"], [["a"]], True, "0" * 64, runtime_sha256())


def hostile(*fields: str, meta: bytes | None = None) -> bytes:
    """A module of ``fields`` with a valid ``a1.meta`` section (or ``meta``)."""
    wasm = bytes(wasmtime.wat2wasm("(module " + " ".join(fields) + ")"))
    return add_custom_section(wasm, META_SECTION, META.to_json() if meta is None else meta)


def refused(wasm: bytes, message: str) -> None:
    """Refused by the runtime and by the sidecar's loader, with ``message`` on one line."""
    with pytest.raises(BundleError) as info:
        PolicyModule.load(wasm, source="bad.wasm")
    text = str(info.value)
    assert text.startswith("bad.wasm: ") and "\n" not in text
    assert message in text, text
    with pytest.raises(ConfigError, match=r"bad\.wasm: policy\.module: invalid policy module: "):
        load_policy(wasm, "x/y", "bad.wasm")


def test_the_hand_written_baseline_loads_and_runs() -> None:
    module = PolicyModule.load(hostile(MEMORY, BASE, EVAL))
    assert module.evaluator().evaluate({"a": 1}) is not True


# -- exports: kind and exact type ---------------------------------------------------------

WRONG_EVAL = [
    ("(param i32 i32 i32 i32) (result i32)", "func (i32, i32, i32, i32) -> (i32)"),
    ("(param i32) (result i32)", "func (i32) -> (i32)"),
    ("(param i32 i32)", "func (i32, i32) -> ()"),
    ("(param i32 i32) (result i64)", "func (i32, i32) -> (i64)"),
    ("(param f64 i32) (result i32)", "func (f64, i32) -> (i32)"),
    ("(param i32 i32) (result i32 i32)", "func (i32, i32) -> (i32, i32)"),
]


@pytest.mark.parametrize(("sig", "got"), WRONG_EVAL)
def test_a1_eval_with_another_signature_is_refused(sig: str, got: str) -> None:
    body = "unreachable"
    wasm = hostile(MEMORY, BASE, f'(func (export "a1_eval") {sig} {body})')
    refused(wasm, f"export a1_eval: expected func (i32, i32) -> (i32), got {got}")


SIGILL_CHILD = """
import sys, wasmtime
from policies.runtime import PolicyModule, BundleError
wasm = sys.stdin.buffer.read()
try:
    ev = PolicyModule.load(wasm).evaluator()
except BundleError as err:
    print("refused:", err)
else:
    print("result:", ev.evaluate({"a": 1}))
"""


def test_the_signature_that_killed_the_process_is_refused_and_it_survives() -> None:
    wasm = hostile(MEMORY, BASE, '(func (export "a1_eval") (param i32 i32 i32 i32) (result i32)'
                   " (i32.const 0))")
    run = subprocess.run(
        [sys.executable, "-c", SIGILL_CHILD], input=wasm, capture_output=True, cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])  # -4 was SIGILL
    assert run.stdout.startswith(b"refused: <module>: export a1_eval: expected func")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((MEMORY, '(func (export "a1_input_base") (result i32) (i32.const 0))', EVAL),
         "export a1_input_base: expected global i32, got func () -> (i32)"),
        ((MEMORY, BASE, '(global (export "a1_eval") i32 (i32.const 0))'),
         "export a1_eval: expected func (i32, i32) -> (i32), got global i32"),
        ((MEMORY, BASE, '(memory (export "a1_eval") 1)'),
         "export a1_eval: expected func (i32, i32) -> (i32), got memory 1"),
        ((MEMORY, BASE, '(table (export "a1_eval") 1 funcref)'),
         "export a1_eval: expected func (i32, i32) -> (i32), got table"),
        ((MEMORY, '(global (export "a1_input_base") (mut i32) (i32.const 1048576))', EVAL),
         "export a1_input_base: expected global i32, got global (mut i32)"),
        ((MEMORY, '(global (export "a1_input_base") i64 (i64.const 1048576))', EVAL),
         "export a1_input_base: expected global i32, got global i64"),
        ((MEMORY, EVAL), "missing export a1_input_base (expected global i32)"),
        ((MEMORY, BASE), "missing export a1_eval (expected func (i32, i32) -> (i32))"),
        ((MEMORY,), "missing export a1_eval"),
    ],
)
def test_exports_of_the_wrong_kind_or_missing_are_refused(
    fields: tuple[str, ...], message: str
) -> None:
    refused(hostile(*fields), message)


@pytest.mark.parametrize("value", ["-1048576", "0", "1048577", "4096", "16777216", "2147483640"])
def test_an_input_base_outside_the_policy_region_is_refused(value: str) -> None:
    wasm = hostile(MEMORY, f'(global (export "a1_input_base") i32 (i32.const {value}))', EVAL)
    module = PolicyModule.load(wasm)  # the value is only known once instantiated
    with pytest.raises(BundleError, match=r"export a1_input_base: .* is not an 8-aligned address"):
        module.evaluator()
    with pytest.raises(ConfigError, match="does not instantiate: export a1_input_base"):
        load_policy(wasm, "x/y", "bad.wasm")


# -- imports: only what the host and a1rt provide, with their exact types -----------------


@pytest.mark.parametrize(
    ("imp", "message"),
    [
        ('(import "env" "system" (func (param i32)))',
         "import env.system: neither the host nor the a1rt runtime provides it"),
        ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
         "import wasi_snapshot_preview1.fd_write: neither the host nor the a1rt runtime"),
        ('(import "a1rt" "a1_no_such_builtin" (func (param i32) (result i32)))',
         "import a1rt.a1_no_such_builtin: neither the host nor the a1rt runtime provides it"),
        ('(import "a1rt" "a1_get" (func (param i32 i32 i32) (result i32)))',
         "import a1rt.a1_get: expected func (i32, i32) -> (i32), "
         "got func (i32, i32, i32) -> (i32)"),
        ('(import "a1rt" "a1_get" (global i32))',
         "import a1rt.a1_get: expected func (i32, i32) -> (i32), got global i32"),
        ('(import "env" "time_now_ns" (func (result f64)))',
         "import env.time_now_ns: expected func () -> (i64), got func () -> (f64)"),
        ('(import "env" "g" (global i32))', "import env.g: neither the host nor"),
        ('(import "env" "t" (table 1 funcref))', "import env.t: neither the host nor"),
    ],
)
def test_imports_the_host_does_not_provide_exactly_are_refused(imp: str, message: str) -> None:
    refused(hostile(imp, MEMORY, BASE, EVAL), message)


@pytest.mark.parametrize(
    ("memory", "got"),
    [
        ('(import "env" "memory" (memory 1 2))', "got memory 1 2"),
        ('(import "env" "memory" (memory 1 2 shared))', "got shared memory 1 2"),
        ('(import "env" "memory" (memory i64 1))', "got memory64 1"),
        ('(import "env" "memory" (func))', "got func () -> ()"),
    ],
)
def test_a_memory_import_of_another_shape_is_refused(memory: str, got: str) -> None:
    refused(hostile(memory, BASE, EVAL), f"import env.memory: expected memory <min pages>, {got}")


def test_a_module_without_the_shared_memory_is_refused() -> None:
    refused(hostile(BASE, EVAL), "no import env.memory")


def test_a_memory_import_with_a_huge_minimum_is_refused_before_growing() -> None:
    wasm = hostile('(import "env" "memory" (memory 60000))', BASE, EVAL)
    module = PolicyModule.load(wasm)
    with pytest.raises(BundleError, match=r"import env\.memory: needs 60000 pages at start, more "
                       r"than the cap of 256"):
        module.evaluator()
    with pytest.raises(ConfigError, match=r"does not instantiate: import env\.memory: needs 60000"):
        load_policy(wasm, "x/y", "bad.wasm")
    assert module.evaluator(max_pages=60000 + 16) is not None  # the cap is the evaluator's


def test_a_start_function_is_refused_even_one_that_would_loop() -> None:
    looping = '(func $s (loop $l (br $l))) (start $s)'
    refused(hostile(MEMORY, BASE, EVAL, looping), "has a start function")
    refused(hostile(MEMORY, BASE, EVAL, "(func $s) (start $s)"), "has a start function")


# -- bytes and metadata -------------------------------------------------------------------

GOOD = compile_sources(
    {"p.rego": "package p\nimport rego.v1\nallow if input.ok\n"}, None, ["p/allow"]
)


@pytest.mark.parametrize(
    ("wasm", "message"),
    [
        (b"", "not a WebAssembly module"),
        (b"\x7fELF\x02\x01\x01" + bytes(64), "not a WebAssembly module"),
        (b"\0asm\x01\0\0\0\x00\xff\xff\xff\xff\x0f", "section 0 runs past the end"),
        (b"\0asm\x01\0\0\0\x00\x80\x80\x80\x80\x80\x80\x01", "LEB128 integer too long"),
        (b"\0asm\x01\0\0\0\x00\x02\x7f\x00", "custom section name runs past its section"),
        (b"\0asm\x01\0\0\0\x01\x50garbage", "section 1 runs past the end"),
        (add_custom_section(b"\0asm\x01\0\0\0\x01\x03\xff\xff\xff", META_SECTION,
                            META.to_json()), "invalid WebAssembly: failed to parse"),
        (add_custom_section(GOOD, META_SECTION, META.to_json()), "a1.meta appears twice"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else "",
)
def test_garbage_and_truncated_bytes_are_refused(wasm: bytes, message: str) -> None:
    refused(wasm, message)


def _meta(**changes: object) -> bytes:
    raw = json.loads(META.to_json())
    raw.update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (_meta(abi=2), f"ABI version 2, this runtime speaks {ABI_VERSION}"),
        (_meta(abi="1"), "abi must be an integer, got str"),
        (_meta(abi=1.0), "abi must be an integer, got float"),
        (_meta(abi=True), "abi must be an integer, got bool"),
        (_meta(pure="false"), "pure must be a boolean, got str"),  # bool("false") is True
        (_meta(pure=0), "pure must be a boolean, got int"),
        (_meta(entrypoints="x/y"), "entrypoints must be a non-empty list of strings, got str"),
        (_meta(entrypoints=[]), "entrypoints must be a non-empty list of strings, got list"),
        (_meta(entrypoints=[1]), "entrypoints must be a non-empty list of strings, got list"),
        (_meta(input_paths=[["a", 1]]), "input_paths must be a list of lists of strings"),
        (_meta(input_paths="a"), "input_paths must be a list of lists of strings, got str"),
        (_meta(runtime_sha256=None), "runtime_sha256 must be a string, got NoneType"),
        (_meta(source_sha256=[]), "source_sha256 must be a string, got list"),
        (json.dumps({"abi": 1}).encode(), "no field 'entrypoints'"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "malformed a1.meta section"),
        (b"{" * 50 + b"}" * 50, "malformed a1.meta section"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"abi": 1, "pad": "' + b"x" * (1 << 20) + b'"}', "more than 1048576"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else "",
)
def test_metadata_of_the_wrong_shape_is_refused(meta: bytes, message: str) -> None:
    refused(hostile(MEMORY, BASE, EVAL, meta=meta), message)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_modules_are_refused_or_run_closed(data: st.DataObject) -> None:
    """Any byte flips: a BundleError at load, or a module that evaluates or fails closed."""
    wasm = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(wasm) - 1))
        wasm[at] = data.draw(st.integers(0, 255))
    try:
        ev = PolicyModule.load(bytes(wasm)).evaluator(fuel=200_000)
    except BundleError as err:
        assert "\n" not in str(err)
        return
    with contextlib.suppress(PolicyError):
        ev.evaluate({"ok": True})


# -- the real sidecar: a refused reload is counted and the last good module serves ---------


def test_the_sidecar_refuses_hostile_reloads_and_keeps_serving(tmp_path: Path) -> None:
    from tests.test_sidecar_grpc import (
        ALICE,
        HTTP,
        payload,
        put,
        start_sidecar,
        stop_sidecar,
    )
    from tests.waiting import wait_until

    sc = start_sidecar(tmp_path)
    try:
        h = HTTP(sc.http)
        claims = {"x-a1-jwt-payload": payload(ALICE)}
        status, hs, _ = h("GET", "/t/acme/a", claims)
        assert status == 200
        v1 = hs["x-a1-policy-version"]
        meta = json.loads(custom_sections(GOOD)[META_SECTION])
        meta["entrypoints"] = ["a1/authz/decision"]
        bad = [
            # killed the sidecar with SIGILL on the first request
            '(func (export "a1_eval") (param i32 i32 i32 i32) (result i32) (i32.const 0))',
            # raised AttributeError in the watcher, uncounted
            '(global (export "a1_eval") i32 (i32.const 0))',
        ]
        for n, field in enumerate(bad, 1):
            wasm = without_custom_section(hostile(MEMORY, BASE, field), META_SECTION)
            put(tmp_path / "authz.wasm",
                add_custom_section(wasm, META_SECTION, json.dumps(meta).encode()))
            wait_until(lambda n=n: sc.metric("a1_policy_load_failures_total") == n,
                       what="refusal")
            status, hs, _ = h("GET", "/t/acme/a", claims)
            assert status == 200 and hs["x-a1-policy-version"] == v1
            assert sc.proc.poll() is None
        assert "export a1_eval: expected func (i32, i32) -> (i32), got global i32" in sc.stderr()
        assert "AttributeError" not in sc.stderr()
    finally:
        code = stop_sidecar(sc)
    assert code == 0
