"""Every builtin the compiler accepts exists in the runtime with the right signature."""

from __future__ import annotations

import pytest
import wasmtime

from policies.compiler.builtins import BUILTINS
from policies.compiler.codegen.abi import RUNTIME_SIGS as _RUNTIME_SIGS
from policies.runtime.module import _runtime_module


def _exports() -> dict[str, wasmtime.FuncType]:
    return {
        e.name: e.type for e in _runtime_module().exports if isinstance(e.type, wasmtime.FuncType)
    }


@pytest.mark.parametrize(("rego", "export", "arity"), [(r, e, a) for r, (e, a) in BUILTINS.items()])
def test_builtin_is_exported(rego: str, export: str, arity: int) -> None:
    ty = _exports().get(export)
    assert ty is not None, f"{rego}: runtime lacks {export}"
    assert [str(p) for p in ty.params] == ["i32"] * arity
    assert [str(r) for r in ty.results] == ["i32"]


@pytest.mark.parametrize("name", sorted(_RUNTIME_SIGS))
def test_runtime_service_signature(name: str) -> None:
    ty = _exports().get(name)
    assert ty is not None, f"runtime lacks {name}"
    params, results = _RUNTIME_SIGS[name]
    assert [str(p) for p in ty.params] == params.split()
    assert [str(r) for r in ty.results] == results.split()
