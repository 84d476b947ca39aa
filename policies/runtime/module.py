"""Loading and evaluating compiled policy modules (docs/policy-abi.md).

The fast path is ``Evaluator.eval_encoded``: one ``memmove`` of the encoded
input into linear memory, one unchecked wasm call, one decode of the result.
An ``Evaluator`` owns a wasmtime ``Store`` and is not thread-safe: use one per
worker thread (``PolicyModule.evaluator`` is cheap after the first call, since
compiled code is shared through the module).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from policies.runtime.host import REGISTRY as HOST_BUILTINS
from policies.runtime.host import BuiltinError, EvalContext
from policies.runtime.values import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NODES,
    UNDEFINED,
    DecodeLimitError,
    decode,
    encode_input,
    encode_value,
)
from policies.runtime.wasmbin import WasmFormatError, custom_sections, section_ids

ABI_VERSION = 1
META_SECTION = "a1.meta"
DEFAULT_FUEL = 10_000_000
DEFAULT_MAX_PAGES = 256  # 16 MiB
PAGE = 65536
MAX_META_BYTES = 1 << 20
RUNTIME_END = 0x10_0000  # a1rt's stack and static data end here (docs/policy-abi.md)
START_SECTION = 8
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer

# The policy module's interface, as ``_describe`` renders a type.
EXPORTS = {"a1_eval": "func (i32, i32) -> (i32)", "a1_input_base": "global i32"}
HOST_IMPORTS = {"time_now_ns": "func () -> (i64)", "a1_host_call": "func (i32, i32) -> (i32)"}
E_HOST = 7  # a host builtin refused its arguments; the evaluator keeps the message
HOST_ERROR = -1  # what a1_host_call returns then

ERROR_NAMES = {
    1: "type error",
    2: "division by zero",
    3: "conflicting values (rule, function or object key)",
    4: "memory cap reached",
    5: "argument out of range",
    6: "internal runtime error",
    7: "builtin error",
}


class BundleError(Exception):
    """A module the runtime refuses to load (the caller keeps its last good one)."""


class PolicyError(Exception):
    """An evaluation that did not produce a result: callers must deny."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class ResultTooLarge(PolicyError):
    """A result past the host's decode budget (values, string bytes, depth): deny.

    Shared records make a tiny policy return an exponential tree; the budget
    keeps decoding it from blocking the sidecar.
    """


@dataclass(frozen=True)
class Metadata:
    abi: int
    entrypoints: list[str]
    input_paths: list[tuple[str, ...]]
    pure: bool
    source_sha256: str
    runtime_sha256: str
    # The host builtins the module calls, by index (``env.a1_host_call``); absent: none.
    host_builtins: tuple[str, ...] = ()

    @classmethod
    def parse(cls, payload: bytes) -> Metadata:
        """The section's JSON, every field checked for its exact type."""
        if len(payload) > MAX_META_BYTES:
            raise BundleError(
                f"malformed {META_SECTION} section: {len(payload)} bytes, "
                f"more than {MAX_META_BYTES}"
            )
        try:
            raw = json.loads(payload)
        except (ValueError, RecursionError) as err:
            what = "nested too deeply" if isinstance(err, RecursionError) else err
            raise BundleError(f"malformed {META_SECTION} section: {what}") from None
        if not isinstance(raw, dict):
            raise BundleError(f"malformed {META_SECTION} section: not a JSON object")
        return cls(
            abi=_field(raw, "abi", "an integer", lambda v: type(v) is int),
            entrypoints=_field(raw, "entrypoints", "a non-empty list of strings", _names),
            input_paths=[
                tuple(p) for p in _field(raw, "input_paths", "a list of lists of strings", _paths)
            ],
            pure=_field(raw, "pure", "a boolean", lambda v: type(v) is bool),
            source_sha256=_field(raw, "source_sha256", "a string", lambda v: type(v) is str),
            runtime_sha256=_field(raw, "runtime_sha256", "a string", lambda v: type(v) is str),
            host_builtins=tuple(
                _field(raw, "host_builtins", "a list of strings", _strings)
                if "host_builtins" in raw
                else ()
            ),
        )

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "abi": self.abi,
            "entrypoints": self.entrypoints,
            "input_paths": [list(p) for p in self.input_paths],
            "pure": self.pure,
            "source_sha256": self.source_sha256,
            "runtime_sha256": self.runtime_sha256,
        }
        if self.host_builtins:
            doc["host_builtins"] = list(self.host_builtins)
        return json.dumps(doc, sort_keys=True).encode()


def _field(raw: dict[str, Any], name: str, want: str, ok: Callable[[Any], bool]) -> Any:
    if name not in raw:
        raise BundleError(f"malformed {META_SECTION} section: no field {name!r}")
    value = raw[name]
    if not ok(value):
        got = type(value).__name__
        raise BundleError(f"malformed {META_SECTION} section: {name} must be {want}, got {got}")
    return value


def _names(v: Any) -> bool:
    return type(v) is list and bool(v) and all(type(e) is str and e for e in v)


def _strings(v: Any) -> bool:
    return type(v) is list and all(type(e) is str for e in v)


def _paths(v: Any) -> bool:
    return type(v) is list and all(type(p) is list and all(type(k) is str for k in p) for p in v)


def _one_line(err: Exception) -> str:
    """wasmtime's multi-line report as one line: the summary and the root cause."""
    lines = [ln.strip() for ln in str(err).splitlines()]
    lines = [ln for ln in lines if ln and ln != "Caused by:" and not ln.startswith("Stack")]
    if not lines:
        return "unknown error"
    cause = lines[-1].lstrip("0123456789: ")
    return lines[0] if len(lines) == 1 else f"{lines[0]}: {cause}"


def _describe(ty: Any) -> str:
    """A wasm extern type as the load errors show it: ``func (i32, i32) -> (i32)``."""
    if isinstance(ty, wasmtime.FuncType):
        params = ", ".join(str(t) for t in ty.params)
        results = ", ".join(str(t) for t in ty.results)
        return f"func ({params}) -> ({results})"
    if isinstance(ty, wasmtime.GlobalType):
        return f"global (mut {ty.content})" if ty.mutable else f"global {ty.content}"
    if isinstance(ty, wasmtime.MemoryType):
        limits = ty.limits
        kind = "memory64" if ty.is_64 else "shared memory" if ty.is_shared else "memory"
        if ty.page_size != PAGE:
            kind += f" (pages of {ty.page_size} bytes)"
        return f"{kind} {limits.min}" + (f" {limits.max}" if limits.max is not None else "")
    if isinstance(ty, wasmtime.TableType):
        return "table"
    return type(ty).__name__


def _check_interface(module: wasmtime.Module) -> None:
    """Every export the host uses and every import, by kind and exact type.

    The host calls ``a1_eval`` unchecked (its signature is trusted), so a wrong
    type must never get past here; other exports are never touched.
    """
    exports = {e.name: _describe(e.type) for e in module.exports}
    for name, want in EXPORTS.items():
        got = exports.get(name)
        if got is None:
            raise BundleError(f"missing export {name} (expected {want})")
        if got != want:
            raise BundleError(f"export {name}: expected {want}, got {got}")
    runtime = _runtime_exports()
    memory = False
    for imp in module.imports:
        where = f"import {imp.module}.{imp.name}"
        got = _describe(imp.type)
        if (imp.module, imp.name) == ("env", "memory"):
            memory = True
            want = "memory <min pages>"
            if got.startswith("memory ") and got.count(" ") == 1:
                continue
        elif imp.module == "env" and imp.name in HOST_IMPORTS:
            want = HOST_IMPORTS[imp.name]
        elif imp.module == "a1rt" and imp.name in runtime:
            want = runtime[imp.name]
        else:
            raise BundleError(f"{where}: neither the host nor the a1rt runtime provides it")
        if got != want:
            raise BundleError(f"{where}: expected {want}, got {got}")
    if not memory:
        raise BundleError("no import env.memory (the memory it shares with a1rt)")


@cache
def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.memory_may_move = False  # the host keeps one raw pointer per store
    config.cranelift_opt_level = "speed"
    return wasmtime.Engine(config)


@cache
def runtime_bytes() -> bytes:
    return resources.files("policies.runtime").joinpath("a1rt.wasm").read_bytes()


@cache
def runtime_sha256() -> str:
    return hashlib.sha256(runtime_bytes()).hexdigest()


@cache
def _runtime_module() -> wasmtime.Module:
    return wasmtime.Module(_engine(), runtime_bytes())


@cache
def _runtime_exports() -> dict[str, str]:
    return {e.name: _describe(e.type) for e in _runtime_module().exports}


class PolicyModule:
    """A validated, compiled policy module; evaluators are made from it."""

    def __init__(self, wasm: bytes, meta: Metadata, module: wasmtime.Module) -> None:
        self.wasm = wasm
        self.meta = meta
        self.version = hashlib.sha256(wasm).hexdigest()
        self._module = module

    @classmethod
    def load(cls, wasm: bytes, *, source: str = "<module>") -> PolicyModule:
        """Validate ``wasm`` and compile it; raise ``BundleError`` naming ``source``."""
        try:
            sections = custom_sections(wasm)
            ids = section_ids(wasm)
        except WasmFormatError as err:
            raise BundleError(f"{source}: {err}") from None
        if META_SECTION not in sections:
            raise BundleError(f"{source}: no {META_SECTION} section (not an A1 policy module)")
        try:
            meta = Metadata.parse(sections[META_SECTION])
        except BundleError as err:
            raise BundleError(f"{source}: {err}") from None
        if meta.abi != ABI_VERSION:
            raise BundleError(
                f"{source}: ABI version {meta.abi}, this runtime speaks {ABI_VERSION}"
            )
        if meta.runtime_sha256 != runtime_sha256():
            raise BundleError(f"{source}: built against a different a1rt runtime")
        try:
            module = wasmtime.Module(_engine(), wasm)
        except wasmtime.WasmtimeError as err:
            raise BundleError(f"{source}: invalid WebAssembly: {_one_line(err)}") from None
        if START_SECTION in ids:
            raise BundleError(f"{source}: has a start function (a policy runs only in a1_eval)")
        try:
            _check_interface(module)
        except BundleError as err:
            raise BundleError(f"{source}: {err}") from None
        for name in meta.host_builtins:
            if name not in HOST_BUILTINS:
                raise BundleError(f"{source}: calls builtin {name!r}, which this runtime lacks")
        return cls(wasm, meta, module)

    def evaluator(
        self,
        entrypoint: str | None = None,
        *,
        fuel: int = DEFAULT_FUEL,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> Evaluator:
        """A new evaluator (own store and instance) for ``entrypoint``.

        ``fuel`` and ``max_pages`` bound the wasm call; ``max_nodes``,
        ``max_bytes`` and ``max_depth`` bound decoding its result.
        """
        return Evaluator(
            self,
            entrypoint,
            fuel=fuel,
            max_pages=max_pages,
            max_nodes=max_nodes,
            max_bytes=max_bytes,
            max_depth=max_depth,
        )


class Evaluator:
    def __init__(
        self,
        module: PolicyModule,
        entrypoint: str | None,
        *,
        fuel: int = DEFAULT_FUEL,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        meta = module.meta
        if entrypoint is None:
            entrypoint = meta.entrypoints[0]
        norm = entrypoint.strip("/").replace(".", "/")
        names = [e.strip("/").replace(".", "/") for e in meta.entrypoints]
        if norm not in names:
            have = ", ".join(meta.entrypoints)
            raise BundleError(f"entrypoint {entrypoint!r} is not in the module (has: {have})")
        self.module = module
        self.entry = names.index(norm)
        self.fuel = fuel
        self.limits = {"max_nodes": max_nodes, "max_bytes": max_bytes, "max_depth": max_depth}
        self.store = wasmtime.Store(_engine())
        self.memory = wasmtime.Memory(
            self.store, wasmtime.MemoryType(wasmtime.Limits(1, max_pages))
        )
        linker = wasmtime.Linker(_engine())
        linker.define(self.store, "env", "memory", self.memory)
        # One instant per evaluation, as OPA: every time.now_ns() and every token expiry
        # check of one decision see the same clock (reset by eval_encoded).
        self._clock = EvalContext()
        self._host_error = ""
        self._hosts = [HOST_BUILTINS[name] for name in meta.host_builtins]
        self._impure = not meta.pure
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        self._callbacks: list[Any] = []  # the raw callbacks must outlive the store
        linker.define(self.store, "env", "time_now_ns", self._raw_func([], [i64], self._now))
        linker.define(
            self.store, "env", "a1_host_call", self._raw_func([i32, i32], [i32], self._host_call)
        )
        self.store.set_fuel(fuel)  # instantiation runs initialisers, which burn fuel too
        self._grow_for(_runtime_module(), max_pages)
        self._grow_for(module._module, max_pages)
        try:
            rt = linker.instantiate(self.store, _runtime_module())
            linker.define_instance(self.store, "a1rt", rt)
            inst = linker.instantiate(self.store, module._module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as err:
            raise BundleError(f"cannot instantiate policy: {_one_line(err)}") from None
        exports = inst.exports(self.store)
        base = exports["a1_input_base"]
        if not isinstance(base, wasmtime.Global):  # load checked it; never trust a cast
            raise BundleError("export a1_input_base: expected global i32")
        self.input_base = int(base.value(self.store))  # type: ignore[arg-type]
        cap = max_pages * PAGE
        if self.input_base & 7 or not RUNTIME_END <= self.input_base < cap:
            raise BundleError(
                f"export a1_input_base: {self.input_base:#x} is not an 8-aligned address "
                f"in [{RUNTIME_END:#x}, {cap:#x})"
            )
        self._err = rt.exports(self.store)["a1_err"]
        alloc = rt.exports(self.store)["a1_alloc"]
        if not isinstance(alloc, wasmtime.Func):
            raise BundleError("a1rt: export a1_alloc is not a function")
        self._alloc_ref = ctypes.byref(alloc._func)
        self._alloc_args = (ffi.wasmtime_val_raw_t * 1)()
        func = exports["a1_eval"]
        if (
            not isinstance(func, wasmtime.Func)
            or _describe(func.type(self.store)) != EXPORTS["a1_eval"]
        ):  # load checked it; the unchecked call below must never see another type
            raise BundleError(f"export a1_eval: expected {EXPORTS['a1_eval']}")
        self._func = func
        self._ctx = self.store._context()
        self._func_ref = ctypes.byref(self._func._func)  # type: ignore[union-attr]
        self._args = (ffi.wasmtime_val_raw_t * 2)()
        self._base = ctypes.addressof(self.memory.data_ptr(self.store).contents)
        self._views: dict[int, memoryview] = {}
        self._fuel_left = 0

    def _grow_for(self, module: wasmtime.Module, max_pages: int) -> None:
        """Grow the shared memory to what ``module`` imports it with (its data segments)."""
        for imp in module.imports:
            ty = imp.type
            if isinstance(ty, wasmtime.MemoryType):
                need = ty.limits.min
                if need > max_pages:
                    raise BundleError(
                        f"import env.memory: needs {need} pages at start, "
                        f"more than the cap of {max_pages}"
                    )
                have = self.memory.size(self.store)
                if need > have:
                    self.memory.grow(self.store, need - have)

    # ---------------------------------------------------------------- API

    def encode(self, input_doc: Any) -> bytes:
        """The bytes the policy reads from ``input_doc``: the exact decision-cache key."""
        paths = self.module.meta.input_paths
        return encode_input([_lookup(input_doc, p) for p in paths], self.input_base, paths)

    def evaluate(self, input_doc: Any, *, json_form: bool = False) -> Any:
        return self.eval_encoded(self.encode(input_doc), json_form=json_form)

    def eval_encoded(self, encoded: bytes, *, json_form: bool = False) -> Any:
        """Evaluate with a pre-encoded input; return the result or ``UNDEFINED``.

        ``json_form`` returns the JSON form (sets as sorted lists, non-string
        object keys rendered as JSON), as ``a1 policy eval`` prints it.
        """
        size = self.memory.data_len(self.store)
        end = self.input_base + len(encoded)
        if end + PAGE > size:
            try:
                self.memory.grow(self.store, (end + PAGE - size + PAGE - 1) // PAGE)
            except wasmtime.WasmtimeError:
                raise PolicyError("input exceeds the memory cap", 4) from None
            size = self.memory.data_len(self.store)
        ctypes.memmove(self._base + self.input_base, encoded, len(encoded))
        if self._impure:  # a pure module calls nothing that reads the context
            self._clock.reset()
        self.store.set_fuel(self.fuel)
        args = self._args
        args[0].i32 = self.entry
        args[1].i32 = len(encoded)
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call_unchecked(
            self._ctx, self._func_ref, args, 2, ctypes.byref(trap)
        )
        if error or trap:
            raise self._failure(error, trap)
        ptr = args[0].i32 & 0xFFFFFFFF
        if ptr == 0:
            return UNDEFINED
        try:
            return decode(self._view(self.store), ptr, json_form=json_form, **self.limits)
        except DecodeLimitError as err:
            raise ResultTooLarge(f"result too large: {err}") from None
        except (IndexError, struct.error, ValueError) as err:
            raise PolicyError(f"malformed result: {err}", 6) from None

    def _view(self, store: Any) -> memoryview:
        """The linear memory as bytes (one view per memory size; the memory never moves)."""
        size = self.memory.data_len(store)
        view = self._views.get(size)
        if view is None:
            view = memoryview((ctypes.c_ubyte * size).from_address(self._base)).cast("B")
            self._views = {size: view}
        return view

    def _raw_func(
        self, params: list[Any], results: list[Any], body: Callable[[Any, Any], None]
    ) -> wasmtime.Func:
        """A host function wasm calls without wasmtime-py's per-call conversions (which
        cost ~100 us a call): ``body(raw, caller)`` reads the arguments from and writes
        the result to ``raw``, a ``wasmtime_val_raw_t`` array. ``body`` never raises."""
        ty = wasmtime.FuncType(params, results)

        @ffi.wasmtime_func_unchecked_callback_t
        def callback(env: Any, caller: Any, raw: Any, n: int) -> int:
            body(raw, caller)
            return 0

        func = ffi.wasmtime_func_t()
        ffi.wasmtime_func_new_unchecked(
            self.store._context(), ty.ptr(), callback, None, _NO_FINALIZER, ctypes.byref(func)
        )
        self._callbacks.append((callback, ty))
        return wasmtime.Func._from_raw(func)

    def _now(self, raw: Any, caller: Any) -> None:
        """``env.time_now_ns``: one instant per evaluation (see ``EvalContext``)."""
        raw[0].i64 = self._clock.now_ns()

    def _host_call(self, raw: Any, caller: Any) -> None:
        """``env.a1_host_call(index, args)``: decode the arguments, run the builtin, lay
        the result out in the runtime's heap. Never raises: a failure is kept in
        ``_host_error`` and answered ``HOST_ERROR``, which the policy turns into an
        ``E_HOST`` trap."""
        name = "a host builtin"
        out = HOST_ERROR
        try:
            builtin = self._hosts[raw[0].i32]
            name = builtin.name
            args = decode(self._view(self.store), raw[1].i32 & 0xFFFFFFFF, **self.limits)
            result = builtin.fn(*args) if builtin.pure else builtin.fn(self._clock, *args)
            if result is UNDEFINED:
                out = 0
            else:
                data, _ = encode_value(result, 0)
                addr = self._heap_alloc(caller, len(data))
                if addr is None:
                    self._host_error = "memory cap reached"
                else:
                    data, out = encode_value(result, addr)
                    ctypes.memmove(self._base + addr, data, len(data))
        except BuiltinError as err:
            self._host_error = str(err)
        except DecodeLimitError as err:
            self._host_error = f"{name}: arguments too large ({err})"
        except ValueError as err:  # a result the value model cannot hold
            self._host_error = f"{name}: {err}"
        except (Exception, RecursionError) as err:  # a bug in a builtin still denies
            self._host_error = f"{name}: internal error: {type(err).__name__}"
        raw[0].i32 = out

    def _heap_alloc(self, caller: Any, size: int) -> int | None:
        """``a1_alloc(size)`` called back into wasm from a host function (None: the
        memory cap is reached)."""
        args = self._alloc_args
        args[0].i32 = size
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call_unchecked(
            ffi.wasmtime_caller_context(caller), self._alloc_ref, args, 1, ctypes.byref(trap)
        )
        if error or trap:  # take ownership so the objects are freed
            if error:
                wasmtime.WasmtimeError._from_ptr(error)
            else:
                wasmtime.Trap._from_ptr(trap)
            return None
        return args[0].i32 & 0xFFFFFFFF

    def _failure(self, error: Any, trap: Any) -> PolicyError:
        if error:
            message = str(wasmtime.WasmtimeError._from_ptr(error))
        else:
            message = str(wasmtime.Trap._from_ptr(trap))
        if "fuel" in message:
            return PolicyError("evaluation ran out of fuel (the sandbox's instruction budget)")
        code = int(self._err(self.store) or 0)  # type: ignore[operator]
        if code == E_HOST:
            return PolicyError(f"evaluation error: {self._host_error}", code)
        if code in ERROR_NAMES:
            return PolicyError(f"evaluation error: {ERROR_NAMES[code]}", code)
        first = message.strip().splitlines()[0] if message.strip() else "trap"
        return PolicyError(f"evaluation trapped: {first}")


def _lookup(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        else:
            return UNDEFINED
    return doc
