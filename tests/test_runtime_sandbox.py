"""Bad modules and runaway policies fail with a clear error, never hang, never allow."""

from __future__ import annotations

import json

import pytest
import wasmtime

from policies.compiler import compile_sources
from policies.runtime import ABI_VERSION, BundleError, PolicyError, PolicyModule
from policies.runtime.module import META_SECTION, Metadata, runtime_sha256
from policies.runtime.wasmbin import add_custom_section, custom_sections, without_custom_section

GOOD = compile_sources(
    {"p.rego": "package p\nimport rego.v1\nallow if input.ok == true\n"}, None, ["p/allow"]
)


def _with_meta(wasm: bytes, **changes: object) -> bytes:
    sections = custom_sections(wasm)
    meta = json.loads(sections[META_SECTION])
    meta.update(changes)
    stripped = without_custom_section(wasm, META_SECTION)
    return add_custom_section(stripped, META_SECTION, json.dumps(meta).encode())


def test_good_module_round_trip() -> None:
    ev = PolicyModule.load(GOOD).evaluator()
    assert ev.evaluate({"ok": True}) is True
    assert ev.evaluate({"ok": 1}) is not True


@pytest.mark.parametrize("cut", [0, 4, 8, 20, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated_module_is_refused(cut: int) -> None:
    with pytest.raises(BundleError) as info:
        PolicyModule.load(GOOD[:cut], source="bad.wasm")
    assert str(info.value).startswith("bad.wasm: ")


def test_wrong_abi_is_refused() -> None:
    with pytest.raises(BundleError, match=f"ABI version 99, this runtime speaks {ABI_VERSION}"):
        PolicyModule.load(_with_meta(GOOD, abi=99))


def test_other_runtime_is_refused() -> None:
    with pytest.raises(BundleError, match="different a1rt runtime"):
        PolicyModule.load(_with_meta(GOOD, runtime_sha256="0" * 64))


def test_missing_metadata_is_refused() -> None:
    plain = wasmtime.wat2wasm("(module)")
    with pytest.raises(BundleError, match=r"no a1\.meta section"):
        PolicyModule.load(bytes(plain))


def test_malformed_metadata_is_refused() -> None:
    plain = bytes(wasmtime.wat2wasm("(module)"))
    with pytest.raises(BundleError, match=r"malformed a1\.meta"):
        PolicyModule.load(add_custom_section(plain, META_SECTION, b"{not json"))


def _hand_written(body: str) -> bytes:
    """A module with valid metadata whose a1_eval is ``body`` (for sandbox tests)."""
    wat = f"""(module
      (import "env" "memory" (memory 1))
      (global (export "a1_input_base") i32 (i32.const 1048576))
      (func (export "a1_eval") (param i32 i32) (result i32) {body}))"""
    meta = Metadata(ABI_VERSION, ["x/y"], [], True, "0" * 64, runtime_sha256())
    return add_custom_section(bytes(wasmtime.wat2wasm(wat)), META_SECTION, meta.to_json())


def test_infinite_loop_exhausts_fuel() -> None:
    ev = PolicyModule.load(_hand_written("(loop $l (br $l)) (i32.const 0)")).evaluator(fuel=100_000)
    with pytest.raises(PolicyError, match="out of fuel"):
        ev.evaluate({})
    # The evaluator stays usable (and still fails closed) afterwards.
    with pytest.raises(PolicyError):
        ev.evaluate({})


def test_memory_growth_past_cap_is_an_error() -> None:
    grow = "(drop (memory.grow (i32.const 100000))) (i32.load (i32.const 1073741824))"
    ev = PolicyModule.load(_hand_written(grow)).evaluator(max_pages=64)
    with pytest.raises(PolicyError):
        ev.evaluate({})


def test_bad_result_pointer_is_an_error_not_a_crash() -> None:
    ev = PolicyModule.load(_hand_written("(i32.const 2147483000)")).evaluator()
    with pytest.raises(PolicyError):
        ev.evaluate({})


def test_policy_allocating_past_cap_fails() -> None:
    src = "package p\nimport rego.v1\nx := count([i | some i in numbers.range(1, input.n)])\n"
    ev = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"])).evaluator(
        max_pages=24, fuel=500_000_000
    )
    assert ev.evaluate({"n": 10}) == 10
    with pytest.raises(PolicyError, match="memory cap"):
        ev.evaluate({"n": 5_000_000})
    assert ev.evaluate({"n": 3}) == 3  # the heap resets: one bad input poisons nothing


def test_runaway_policy_exhausts_fuel() -> None:
    src = (
        "package p\nimport rego.v1\n"
        "x := count([1 | some a in input.r; some b in input.r; some c in input.r])\n"
    )
    ev = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"])).evaluator(
        fuel=2_000_000
    )
    with pytest.raises(PolicyError, match="out of fuel"):
        ev.evaluate({"r": list(range(400))})


def test_type_error_reports_code() -> None:
    src = "package p\nimport rego.v1\nx := input.a + 1\n"
    ev = PolicyModule.load(compile_sources({"p.rego": src}, None, ["p/x"])).evaluator()
    with pytest.raises(PolicyError, match="type error") as info:
        ev.evaluate({"a": "s"})
    assert info.value.code == 1
    assert ev.evaluate({"a": 2}) == 3
