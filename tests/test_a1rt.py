"""a1rt.wasm against regorus: the runtime library run in wasmtime, values
written with policies.runtime.values, results compared with what regorus
computes for the same Rego expression (errors included)."""

from __future__ import annotations

import ctypes
import json
import math
import random
import re
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import regorus
import wasmtime
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from policies.runtime import values as V
from policies.runtime.values import UNDEFINED, RegoSet, rego_compare

WASM = Path(__file__).resolve().parents[1] / "policies" / "runtime" / "a1rt.wasm"
E_TYPE, E_DIV0, E_CONFLICT, E_OOM, E_RANGE, E_INTERNAL = 1, 2, 3, 4, 5, 6
VALUES_BASE = 0x10_0000  # test values go where a policy's constants would
HEAP_BASE = 0x20_0000
PAGE = 65536

PROP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- harness


class Trapped(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"trap (a1_err={code}): {message}")
        self.code = code


class Runtime:
    """One a1rt instance over a host-created memory, as the sidecar builds it."""

    _engine = wasmtime.Engine()
    _module = wasmtime.Module(_engine, WASM.read_bytes())

    def __init__(self, max_pages: int = 256) -> None:
        self.store = wasmtime.Store(self._engine)
        self.memory = wasmtime.Memory(
            self.store, wasmtime.MemoryType(wasmtime.Limits(HEAP_BASE // PAGE + 1, max_pages))
        )
        linker = wasmtime.Linker(self._engine)
        linker.define(self.store, "env", "memory", self.memory)
        inst = linker.instantiate(self.store, self._module)
        self.fn = {
            e.name: inst.exports(self.store)[e.name]
            for e in self._module.exports
            if isinstance(e.type, wasmtime.FuncType)
        }
        self.top = VALUES_BASE
        self.reset()

    def reset(self, heap: int = HEAP_BASE) -> None:
        self.top = VALUES_BASE
        self.fn["a1_reset"](self.store, heap)

    def put(self, v: Any) -> int:
        data, ptr = V.encode_value(v, self.top)
        self.memory.write(self.store, data, self.top)
        self.top = (self.top + len(data) + 7) & ~7
        assert self.top < HEAP_BASE
        return ptr

    def call(self, name: str, *args: Any) -> Any:
        try:
            return self.fn[name](self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            raise Trapped(int(self.fn["a1_err"](self.store)), str(err).splitlines()[0]) from None

    def view(self) -> memoryview:
        size = self.memory.data_len(self.store)
        base = ctypes.addressof(self.memory.data_ptr(self.store).contents)
        return memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")

    def get(self, ptr: int) -> Any:
        return V.decode(self.view(), ptr & 0xFFFFFFFF)

    def apply(self, name: str, *vals: Any) -> Any:
        """Reset, write vals, call name on their pointers, decode the result."""
        self.reset()
        ptrs = [self.put(v) for v in vals]
        return self.get(self.call(name, *ptrs))


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime()


# ---------------------------------------------------------------- the oracle


def lit(v: Any) -> str:
    """A Rego literal for a Python value."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        assert math.isfinite(v)
        if v == 0 and math.copysign(1, v) < 0:
            return "-0.0"
        return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, RegoSet):
        return "{" + _join(lit(x) for x in v) + "}" if v else "set()"
    if isinstance(v, (list, tuple)):
        return "[" + _join(lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + _join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _join(parts: Any) -> str:
    """Comma-joined, with line breaks: regorus caps lines at 1024 columns and
    files at 20000 lines."""
    out, width = [], 0
    for i, p in enumerate(parts):
        if i:
            sep = ",\n" if width + len(p) > 400 else ", "
            width = 0 if sep == ",\n" else width
            out.append(sep)
        out.append(p)
        width += len(p) + 2
    return "".join(out)


TYPE_ERROR = re.compile(
    r"expects .*argument|requires .*argument|string collection|set of sets|expects set"
)


class Oracle:
    """regorus's verdict on `x := expr` (args bound to a0, a1, ...): an
    error, undefined, or a value, optionally compared with ours."""

    def __init__(self, expr: str, args: tuple[Any, ...] = (), compare_to: Any = UNDEFINED) -> None:
        self.expr = expr
        lines = ["package p", "import rego.v1"]
        lines += [f"a{i} := {lit(a)}" for i, a in enumerate(args)]
        lines += [f"x := {expr}", "d if { _ = x }"]
        if compare_to is not UNDEFINED:
            lines += [f"c := {lit(compare_to)}", "ok if { x == c }"]
        engine = regorus.Engine()
        engine.add_policy("p.rego", "\n".join(lines) + "\n")
        self.engine = engine
        self.error: str | None = None
        self.defined = False
        self.panicked = False
        try:
            self.defined = engine.eval_rule("data.p.d") is True
        except RuntimeError as err:
            m = re.search(r"error: (.*)", str(err))
            self.error = m.group(1) if m else str(err).splitlines()[0]
        except BaseException as err:  # pyo3's PanicException is a BaseException
            if type(err).__name__ != "PanicException":
                raise
            self.panicked = True

    def equals_ours(self) -> bool:
        return self.engine.eval_rule("data.p.ok") is True

    def shown(self) -> str:
        try:
            return str(self.engine.eval_rule_as_json("data.p.x"))
        except RuntimeError as err:
            return f"<{str(err).strip().splitlines()[0]}>"


def check(rt: Runtime, export: str, expr: str, *args: Any) -> None:
    """Run export on args and expr (over a0, a1, ...) in regorus; they must agree."""
    try:
        ours: Any = rt.apply(export, *args)
        trap: Trapped | None = None
    except Trapped as t:
        ours, trap = UNDEFINED, t
    oracle = Oracle(expr, args, ours)
    if oracle.panicked:
        return  # a regorus bug: nothing to compare
    what = f"{expr} with {args!r}"
    if oracle.error is not None:
        assert trap is not None, f"{what}: regorus: {oracle.error}; a1rt: {ours!r}"
        if TYPE_ERROR.search(oracle.error):
            assert trap.code == E_TYPE, f"{what}: regorus: {oracle.error}; a1rt: {trap}"
        else:
            assert trap.code in (E_TYPE, E_DIV0, E_RANGE), f"{what}: {trap}"
        return
    shown = oracle.shown() if oracle.defined else "undefined"
    assert trap is None, f"{what}: regorus gives {shown}; a1rt {trap}"
    if not oracle.defined:
        assert ours is UNDEFINED, f"{what}: regorus undefined, a1rt {ours!r}"
        return
    assert ours is not UNDEFINED, f"{what}: regorus {shown}, a1rt undefined"
    assert oracle.equals_ours(), f"{what}: regorus {shown}, a1rt {ours!r}"


# ---------------------------------------------------------------- strategies

SPECIAL = [
    *"aAbzZ09 ,./-_%",
    "é",
    "É",
    "ß",
    "ẞ",
    "Σ",
    "σ",
    "ς",
    "İ",
    "ı",
    "ﬁ",
    "ǅ",
    "Ω",
    "ŉ",
    "ΐ",
    "\u0301",
    "\u0345",
    "😀",
    "𐐀",
    "\t",
    "\n",
    "\u00a0",
    "\u2028",
    "\u3000",
    '"',
    "\\",
    "\x01",
    "\x7f",
    "Ⓐ",
]
chars = st.one_of(st.sampled_from(SPECIAL), st.characters(exclude_categories=("Cs",)))
texts = st.text(chars, max_size=8)
small_ints = st.integers(-1000, 1000)
ints = st.one_of(small_ints, st.integers(-(2**40), 2**40))
# Beyond 2^53 regorus computes with exact decimals and a1rt with doubles (the
# compiler rejects such literals), and regorus panics printing huge numbers in
# error messages: values stay below 2^53, except in the formatting tests.
NICE_FLOATS = [
    0.5,
    1.5,
    -2.5,
    0.1,
    0.2,
    0.30000000000000004,
    1e-7,
    2.5e-10,
    123456789.125,
    -0.75,
    3.0e15 + 0.5,
    1 / 3,
    5e-324,
    4503599627370495.5,
]
floats = st.one_of(
    st.sampled_from(NICE_FLOATS), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
)
numbers = st.one_of(ints, floats)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def _collections(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(RegoSet),
        st.dictionaries(texts, children, max_size=4),
    )


values = st.recursive(scalars, _collections, max_leaves=8)
arrays = st.lists(values, max_size=5)
sets = st.lists(values, max_size=5).map(RegoSet)
objects = st.dictionaries(texts, values, max_size=5)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right type, sometimes anything (to check type errors)."""
    return st.one_of(good, good, good, values)


def _bounded(v: Any) -> bool:
    return not (isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > 1000)


def maybe_bounded(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``maybe`` without numbers beyond ±1000 (for builtins whose output grows with them)."""
    return st.one_of(good, good, good, values.filter(_bounded))


# ---------------------------------------------------------------- layout and build


def test_exports_and_imports() -> None:
    module = Runtime._module
    assert [(i.module, i.name) for i in module.imports] == [("env", "memory")]
    names = {e.name for e in module.exports}
    for required in [
        "a1_reset",
        "a1_alloc",
        "a1_fail",
        "a1_err",
        "a1_bool",
        "a1_num",
        "a1_null",
        "a1_arr_new",
        "a1_arr_push",
        "a1_set_new",
        "a1_set_add",
        "a1_obj_new",
        "a1_obj_put",
        "a1_tag",
        "a1_truthy",
        "a1_len",
        "a1_key_at",
        "a1_val_at",
        "a1_get",
        "a1_num_of",
        "a1_cmp",
        "a1_eq",
        "a1_cmp_op",
        "a1_in",
        "a1_in2",
        "a1_add",
        "a1_sub",
        "a1_mul",
        "a1_div",
        "a1_rem",
        "a1_or",
        "a1_and",
        "a1_b_startswith",
        "a1_to_string",
        "a1_b_object_get",
        "a1_dfa_match",
        "a1_cidr_match",
        "__heap_base",
    ]:
        assert required in names, required


def test_committed_wasm_matches_sources(capsys: pytest.CaptureFixture[str]) -> None:
    from policies.runtime import build

    assert build.main(["--check"]) == 0, capsys.readouterr().err
    assert build.verify(WASM.read_bytes()) < 0x10_0000


def test_scalars_and_layout(rt: Runtime) -> None:
    rt.reset()
    t, f, n = rt.call("a1_bool", 1), rt.call("a1_bool", 0), rt.call("a1_null")
    assert (rt.get(t), rt.get(f), rt.get(n)) == (True, False, None)
    assert rt.call("a1_tag", 0) == 0
    assert [rt.call("a1_tag", p) for p in (n, f)] == [1, 2]
    for x in (0.0, 1.0, 255.0, 256.0, -1.0, 1.5, -0.0, 2.0**53, 1e300):
        p = rt.call("a1_num", x)
        assert p % 8 == 0
        assert rt.call("a1_tag", p) == 3
        got = rt.call("a1_num_of", p)
        assert got == x and math.copysign(1, got) == math.copysign(1, x)
    p = rt.call("a1_num", 1000.0)
    raw = bytes(rt.view()[p : p + 16])
    assert raw == bytes([3, 0, 0, 0, 0, 0, 0, 0]) + struct.pack("<d", 1000.0)
    s = rt.call("a1_b_lower", rt.put("ABC"))
    assert bytes(rt.view()[s : s + 11]) == bytes([4, 0, 0, 0, 3, 0, 0, 0]) + b"abc"


def test_truthy_len(rt: Runtime) -> None:
    rt.reset()
    cases = [
        (None, 1, -1),
        (False, 0, -1),
        (True, 1, -1),
        (0, 1, -1),
        ("", 1, -1),
        ([1, 2], 1, 2),
        (RegoSet([1]), 1, 1),
        ({"a": 1}, 1, 1),
        ([], 1, 0),
    ]
    for v, truthy, n in cases:
        p = rt.put(v)
        assert rt.call("a1_truthy", p) == truthy, v
        assert rt.call("a1_len", p) == n, v
    assert rt.call("a1_truthy", 0) == 0


@given(values)
@PROP
def test_encode_decode_roundtrip(rt: Runtime, v: Any) -> None:
    rt.reset()
    p = rt.put(v)
    back = rt.get(p)
    assert rego_compare(back, v) == 0
    assert rt.call("a1_eq", p, rt.put(back)) == 1


def test_builders_keep_order_and_grow(rt: Runtime) -> None:
    rng = random.Random(7)
    rt.reset()
    # arrays: in-place growth (nothing allocated in between) and copying growth
    arr = rt.call("a1_arr_new", 0)
    for i in range(300):
        arr = rt.call("a1_arr_push", arr, rt.put(i) if i % 3 else rt.call("a1_num", float(i)))
    assert rt.get(arr) == list(range(300))
    arr2 = rt.call("a1_arr_new", 2)
    items = [rt.put(f"s{i}") for i in range(100)]
    for p in items:
        arr2 = rt.call("a1_arr_push", arr2, p)
    assert rt.get(arr2) == [f"s{i}" for i in range(100)]
    # a constant array is copied, never written
    const = rt.put([1, 2])
    grown = rt.call("a1_arr_push", const, rt.put(3))
    assert rt.get(const) == [1, 2] and rt.get(grown) == [1, 2, 3]
    # sets: random insertion order, duplicates
    pool = [None, True, False, 0, 1, 1.5, -3, "a", "b", "", [1], [1, 2], {"k": 1}, RegoSet([2])]
    s = rt.call("a1_set_new")
    for v in [rng.choice(pool) for _ in range(200)]:
        s = rt.call("a1_set_add", s, rt.put(v))
    got = rt.get(s)
    assert isinstance(got, RegoSet)
    assert list(got) == list(RegoSet(x for x in pool if rego_compare(x, x) == 0 and x in got))
    # objects: sorted keys, equal re-put is a no-op, a different value conflicts
    o = rt.call("a1_obj_new")
    keys = [f"k{rng.randrange(50)}" for _ in range(120)]
    for k in keys:
        o = rt.call("a1_obj_put", o, rt.put(k), rt.put(len(k)))
    got_o = rt.get(o)
    assert list(got_o) == sorted(set(keys))
    with pytest.raises(Trapped) as err:
        rt.call("a1_obj_put", o, rt.put(keys[0]), rt.put("different"))
    assert err.value.code == E_CONFLICT
    # non-string keys order by the total order
    o2 = rt.call("a1_obj_new")
    for k in ["b", 2, None, [1], "a", True]:
        o2 = rt.call("a1_obj_put", o2, rt.put(k), rt.put(1))
    assert [rt.get(rt.call("a1_key_at", o2, i)) for i in range(6)] == [None, True, 2, "a", "b", [1]]


def test_key_val_at(rt: Runtime) -> None:
    rt.reset()
    a, s, o = rt.put(["x", "y"]), rt.put(RegoSet(["q", "p"])), rt.put({"b": 2, "a": 1})
    assert [rt.get(rt.call("a1_key_at", a, i)) for i in range(2)] == [0, 1]
    assert [rt.get(rt.call("a1_val_at", a, i)) for i in range(2)] == ["x", "y"]
    assert [rt.get(rt.call("a1_key_at", s, i)) for i in range(2)] == ["p", "q"]
    assert [rt.get(rt.call("a1_val_at", s, i)) for i in range(2)] == ["p", "q"]
    assert [rt.get(rt.call("a1_key_at", o, i)) for i in range(2)] == ["a", "b"]
    assert [rt.get(rt.call("a1_val_at", o, i)) for i in range(2)] == [1, 2]
    with pytest.raises(Trapped) as err:
        rt.call("a1_val_at", a, 2)
    assert err.value.code == E_INTERNAL


def test_oom_and_memory_growth() -> None:
    small = Runtime(max_pages=HEAP_BASE // PAGE + 4)
    p = small.call("a1_alloc", 3 * PAGE)  # grows the memory
    assert p == HEAP_BASE and small.call("a1_alloc", 8) == HEAP_BASE + 3 * PAGE
    with pytest.raises(Trapped) as err:
        small.call("a1_alloc", 2 * PAGE)
    assert err.value.code == E_OOM
    with pytest.raises(Trapped) as err:
        small.call("a1_alloc", 0xFFFFFFF0)
    assert err.value.code == E_OOM
    small.reset()  # the heap starts over after a trap
    assert small.call("a1_alloc", 16) == HEAP_BASE
    with pytest.raises(Trapped) as err:
        small.call("a1_b_numbers_range", small.put(0), small.put(10_000_000))
    assert err.value.code == E_OOM


def test_fail_records_code(rt: Runtime) -> None:
    rt.reset()
    for code in (1, 5, 6):
        with pytest.raises(Trapped) as err:
            rt.call("a1_fail", code)
        assert err.value.code == code
    rt.reset()
    assert rt.call("a1_err") == 0


def test_stack_pointer_restored_after_traps(rt: Runtime) -> None:
    # format_int traps after taking a stack frame; without the reset in
    # a1_reset, 2000 such traps would run the 256 KiB stack out.
    for _ in range(2000):
        rt.reset()
        with pytest.raises(Trapped):
            rt.call("a1_b_format_int", rt.put(10), rt.put(3))
    rt.reset()
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    a, b = rt.put(deep), rt.put(deep)
    assert rt.call("a1_cmp", a, b) == 0
    assert rt.get(rt.call("a1_b_format_int", rt.put(255), rt.put(16))) == "ff"


def test_stack_overflow_traps_and_recovers(rt: Runtime) -> None:
    # Two 50000-deep chains of one-element arrays, written by hand: comparing
    # them recurses past the 256 KiB stack, which must trap (the stack sits
    # below the static data), not corrupt memory.
    depth = 50_000
    end = HEAP_BASE + 32 * depth + 64
    have = rt.memory.size(rt.store)
    if end // PAGE + 1 > have:
        rt.memory.grow(rt.store, end // PAGE + 1 - have)
    rt.reset(end)
    chains = []
    for base in (HEAP_BASE, HEAP_BASE + 16 * depth):
        recs = bytearray()
        for i in range(depth):
            child = base + 16 * (i + 1) if i + 1 < depth else 0
            recs += struct.pack("<IIII", 5, 1 if child else 0, child, 0)
        rt.memory.write(rt.store, bytes(recs), base)
        chains.append(base)
    with pytest.raises(Trapped):
        rt.call("a1_cmp", *chains)
    rt.reset()
    assert rt.apply("a1_b_lower", "ÀB") == "àb"
    assert rt.apply("a1_to_string", [1.5, "x"]) == '[1.5, "x"]'


# ---------------------------------------------------------------- order, lookup, membership


@given(values, values)
@PROP
@example(1, 1.0)
@example(False, 0)
@example({"a": 1}, {"a": 1, "b": 0})
@example({"a": 2}, {"b": 1})
@example(RegoSet([1, 2]), RegoSet([1, 3]))
@example([1, 2], RegoSet())
def test_compare_matches_regorus(rt: Runtime, a: Any, b: Any) -> None:
    rt.reset()
    pa, pb = rt.put(a), rt.put(b)
    c = rt.call("a1_cmp", pa, pb)
    assert c == rego_compare(a, b)
    ops = [rt.call("a1_cmp_op", op, pa, pb) for op in range(4)]
    eq = rt.call("a1_eq", pa, pb)
    assert eq == (c == 0)
    expected = [c < 0, c <= 0, c > 0, c >= 0, c == 0]
    assert [*ops, eq] == [int(x) for x in expected]
    o = Oracle("[a0 < a1, a0 <= a1, a0 > a1, a0 >= a1, a0 == a1]", (a, b), expected)
    assert o.error is None and o.equals_ours(), (a, b, o.shown())


def test_equal_floats_and_ints(rt: Runtime) -> None:
    rt.reset()
    assert rt.call("a1_eq", rt.put(1), rt.put(1.0)) == 1
    assert rt.call("a1_eq", rt.put([1, {"a": 2}]), rt.put([1.0, {"a": 2.0}])) == 1
    assert rt.call("a1_eq", rt.put(True), rt.put(1)) == 0
    assert rt.call("a1_cmp", rt.put(-0.0), rt.put(0)) == 0


lookup_keys = st.one_of(values, st.integers(-2, 6), st.sampled_from([0.5, 1.0, "a", ""]))


@given(st.one_of(arrays, sets, objects, values), lookup_keys)
@PROP
def test_get_matches_regorus(rt: Runtime, coll: Any, key: Any) -> None:
    if isinstance(coll, dict) and coll and isinstance(key, str) and key not in coll:
        key = sorted(coll)[len(key) % len(coll)]
    check(rt, "a1_get", "a0[a1]", coll, key)


@given(values, st.one_of(arrays, sets, objects, values))
@PROP
def test_in_matches_regorus(rt: Runtime, v: Any, coll: Any) -> None:
    if isinstance(coll, (list, RegoSet)) and coll and v is None:
        v = coll[0]
    rt.reset()
    got = rt.call("a1_in", rt.put(v), rt.put(coll))
    o = Oracle("a0 in a1", (v, coll), bool(got))
    assert o.error is None and o.equals_ours(), (v, coll, got, o.shown())


@given(st.one_of(values, st.integers(-1, 4)), values, st.one_of(arrays, sets, objects))
@PROP
def test_in2_matches_regorus(rt: Runtime, k: Any, v: Any, coll: Any) -> None:
    if isinstance(coll, dict) and coll and k is None:
        k, v = next(iter(coll.items()))
    if isinstance(coll, list) and coll and k is None:
        k, v = len(coll) - 1, coll[-1]
    rt.reset()
    got = rt.call("a1_in2", rt.put(k), rt.put(v), rt.put(coll))
    o = Oracle("a0, a1 in a2", (k, v, coll), bool(got))
    assert o.error is None and o.equals_ours(), (k, v, coll, got, o.shown())


# ---------------------------------------------------------------- arithmetic


arith_floats = st.floats(-1e6, 1e6).filter(lambda x: x == 0 or abs(x) > 1e-6)
arith_operands = st.one_of(small_ints, arith_floats, st.integers(-(2**26), 2**26), sets, values)
OPS = {
    "+": "a1_add",
    "-": "a1_sub",
    "*": "a1_mul",
    "/": "a1_div",
    "%": "a1_rem",
    "|": "a1_or",
    "&": "a1_and",
}


@given(st.sampled_from(sorted(OPS)), arith_operands, arith_operands)
@PROP
@example("%", 7, -3)
@example("%", -7, 3)
@example("%", 1.5, 1)
@example("/", 1, 0)
@example("%", 1.5, 0)
@example("-", RegoSet([1, 2]), RegoSet([2]))
@example("-", 1, RegoSet([1]))
@example("*", 0, -1)
def test_arithmetic_matches_regorus(rt: Runtime, op: str, a: Any, b: Any) -> None:
    check(rt, OPS[op], f"a0 {op} a1", a, b)


def test_arithmetic_codes(rt: Runtime) -> None:
    cases = [
        ("a1_div", 1, 0, E_DIV0),
        ("a1_rem", 1, 0, E_DIV0),
        ("a1_rem", 1.5, 0, E_DIV0),
        ("a1_rem", 1.5, 1, E_RANGE),
        ("a1_add", "a", 1, E_TYPE),
        ("a1_sub", [1], [1], E_TYPE),
        ("a1_or", 1, 2, E_TYPE),
        ("a1_mul", 1e300, 1e300, E_RANGE),
    ]
    for fn, a, b, code in cases:
        with pytest.raises(Trapped) as err:
            rt.apply(fn, a, b)
        assert err.value.code == code, (fn, a, b)
    assert rt.apply("a1_neg", 2) == -2
    assert rt.apply("a1_sub", RegoSet([1, 2, 3]), RegoSet([2])) == RegoSet([1, 3])


# ---------------------------------------------------------------- builtins

Strat = st.SearchStrategy[Any]
idx = st.one_of(st.integers(-2, 10), st.sampled_from([1.5, -0.5]))

BUILTINS: dict[str, list[Strat]] = {
    "startswith": [maybe(texts), maybe(texts)],
    "endswith": [maybe(texts), maybe(texts)],
    "contains": [maybe(texts), maybe(texts)],
    "lower": [maybe(texts)],
    "upper": [maybe(texts)],
    "concat": [
        maybe(texts),
        maybe(st.one_of(st.lists(texts, max_size=4), st.lists(texts, max_size=4).map(RegoSet))),
    ],
    "split": [maybe(texts), maybe(st.sampled_from(["", ",", "ab", "é", "a"]) | texts)],
    "trim": [maybe(texts), maybe(texts)],
    "trim_prefix": [maybe(texts), maybe(texts)],
    "trim_suffix": [maybe(texts), maybe(texts)],
    "trim_space": [maybe(texts)],
    "replace": [maybe(texts), maybe(st.sampled_from(["", "a", "é", "ab"]) | texts), maybe(texts)],
    "indexof": [maybe(texts), maybe(st.sampled_from(["", "a", "é", "b"]) | texts)],
    "substring": [maybe(texts), maybe(idx), maybe(idx)],
    "strings.reverse": [maybe(texts)],
    "count": [values],
    "sum": [maybe(st.lists(numbers, max_size=4) | st.lists(numbers, max_size=4).map(RegoSet))],
    "product": [maybe(st.lists(small_ints, max_size=4) | st.lists(floats, max_size=3))],
    "max": [maybe(arrays | sets)],
    "min": [maybe(arrays | sets)],
    "sort": [maybe(arrays | sets)],
    "array.concat": [maybe(arrays), maybe(arrays)],
    "array.slice": [maybe(arrays), maybe(idx), maybe(idx)],
    "array.reverse": [maybe(arrays)],
    "object.get": [
        maybe(objects),
        st.one_of(texts, st.lists(st.one_of(texts, idx), max_size=3), values),
        values,
    ],
    "object.keys": [maybe(objects)],
    "object.remove": [maybe(objects), maybe(arrays | sets | objects)],
    "object.union": [maybe(objects), maybe(objects)],
    "union": [maybe(st.lists(sets, max_size=3).map(RegoSet))],
    "intersection": [maybe(st.lists(sets, max_size=3).map(RegoSet))],
    "is_null": [values],
    "is_boolean": [values],
    "is_number": [values],
    "is_string": [values],
    "is_array": [values],
    "is_set": [values],
    "is_object": [values],
    "type_name": [values],
    "to_number": [
        maybe(
            st.one_of(
                st.none(),
                st.booleans(),
                numbers,
                texts,
                st.from_regex(
                    r"\A\s?-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,6})?"
                    r"([eE][+-]?[0-9])?\s?\Z"
                ),
            )
        )
    ],
    "abs": [maybe(numbers)],
    "round": [maybe(numbers)],
    "ceil": [maybe(numbers)],
    "floor": [maybe(numbers)],
    "format_int": [maybe(numbers), maybe(st.sampled_from([2, 8, 10, 16, 3, 16.5]))],
    # Bounded even when the type is wrong: regorus materialises the whole range, and
    # numbers.range(0, 1e18) would take the test process's memory with it.
    "numbers.range": [
        maybe_bounded(st.integers(-5, 5) | st.just(1.5)),
        maybe_bounded(st.integers(-5, 5)),
    ],
}

# Small tweaks so that the interesting cases are not rare.
COLLECTION_OF = {"concat", "sum", "product", "max", "min", "sort"}


def export_name(builtin: str) -> str:
    return "a1_b_" + builtin.replace(".", "_")


def test_every_builtin_is_exported() -> None:
    names = {e.name for e in Runtime._module.exports}
    missing = [b for b in BUILTINS if export_name(b) not in names]
    assert not missing


def test_c_builtins_are_the_compilers() -> None:
    # Every C builtin is one the compiler calls, and each is tested here; the
    # others are host builtins (policies/runtime/host/), and a C twin would be dead code.
    from policies.compiler.builtins import BUILTINS as COMPILED

    assert set(BUILTINS) == set(COMPILED)
    assert all(export_name(b) == COMPILED[b][0] for b in BUILTINS)
    names = {e.name for e in Runtime._module.exports if e.name.startswith("a1_b_")}
    assert names == {export for export, _ in COMPILED.values()}


@pytest.mark.parametrize("builtin", sorted(BUILTINS))
def test_builtin_matches_regorus(rt: Runtime, builtin: str) -> None:
    @given(st.tuples(*BUILTINS[builtin]))
    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    def prop(args: tuple[Any, ...]) -> None:
        expr = f"{builtin}({', '.join(f'a{i}' for i in range(len(args)))})"
        check(rt, export_name(builtin), expr, *args)

    prop()


@pytest.mark.parametrize(
    ("builtin", "args"),
    [
        ("count", ("😀",)),
        ("count", ("ab😀é",)),
        ("count", ("",)),
        ("indexof", ("😀a😀b", "b")),
        ("substring", ("a😀b😀", 1, 2)),
        ("strings.reverse", ("a😀é",)),
        ("split", ("a😀b", "")),
        ("trim", ("😀a😀", "😀")),
        ("upper", ("𐐨ß😀",)),
        ("lower", ("𐐀ΑΣ😀",)),
        ("replace", ("😀", "", "-")),
    ],
)
def test_astral_strings(rt: Runtime, builtin: str, args: tuple[Any, ...]) -> None:
    # Code points above U+FFFF: regorus counts them twice in count() only.
    expr = f"{builtin}({', '.join(f'a{i}' for i in range(len(args)))})"
    check(rt, export_name(builtin), expr, *args)


@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=12))
@PROP
@example("ΑΣ")
@example("ΑΣ Σ")
@example("Σ")
@example("aΣ'")
@example("aΣ'b")
@example("ǅǄǆ ßİ ﬃ ŉ")
def test_case_mapping_all_unicode(rt: Runtime, s: str) -> None:
    check(rt, "a1_b_lower", "lower(a0)", s)
    check(rt, "a1_b_upper", "upper(a0)", s)


# ---------------------------------------------------------------- numbers


def python_display(x: float) -> str:
    """Rust's f64 Display (regorus's number format) computed from Python's
    repr. Both print the shortest round-trip digits; on an exact tie between
    two shortest candidates Python rounds half to even and Rust up."""
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    if x.is_integer() and abs(x) < 2**64:
        return str(int(x))
    return format(Decimal(repr(x)), "f")


def assert_shortest(x: float, ours: str) -> None:
    """ours is Rust's rendering of x: round-trips, as short as Python's
    shortest, and where it differs, the upper candidate of an exact tie."""
    theirs = python_display(x)
    assert float(ours) == x, (x, ours)
    if ours == theirs:
        return
    exact, a, b = Decimal(x), Decimal(ours), Decimal(theirs)
    digits = lambda d: len(d.as_tuple().digits)  # noqa: E731
    assert digits(a.normalize()) == digits(b.normalize()), (x, ours, theirs)
    assert abs(a - exact) == abs(b - exact) and abs(a) > abs(b), (x, ours, theirs)


def fmt_num(rt: Runtime, x: float) -> str:
    rt.reset()
    return rt.get(rt.call("a1_to_string", rt.call("a1_num", x)))


def test_number_format_random_doubles(rt: Runtime) -> None:
    rng = random.Random(11)
    for _ in range(1500):
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            assert_shortest(x, fmt_num(rt, x))
    for x in [
        5e-324,
        2.2250738585072014e-308,
        2.225073858507201e-308,
        1.7976931348623157e308,
        0.1,
        0.2,
        0.3,
        2.0**-1074 * 3,
        1e23,
        9.007199254740993e15,
        2.0**64,
        2.0**63,
        18446744073709551615.0,
        1e22,
        4.35e-6,
        123.456,
        -1.5,
        2.0**-20,
        562949953421312.25,
        -0.0,
        1e21,
        1e-7,
    ]:
        assert_shortest(x, fmt_num(rt, x))
    assert fmt_num(rt, 562949953421312.25) == "562949953421312.3"  # a tie: Rust rounds up
    assert fmt_num(rt, 1e21) == "1" + "0" * 21
    assert fmt_num(rt, 1e-7) == "0.0000001"
    assert fmt_num(rt, 2.0**64) == "18446744073709552000"  # shortest digits from 2^64
    assert fmt_num(rt, 2.0**63) == "9223372036854775808"


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-(2.0**53), max_value=2.0**53))
@PROP
@example(1e-7)
@example(0.30000000000000004)
@example(562949953421312.25)
@example(-0.0)
@example(5e-324)
def test_number_format_matches_regorus(rt: Runtime, x: float) -> None:
    ours = fmt_num(rt, x)
    assert_shortest(x, ours)
    o = Oracle('sprintf("%v", [a0])', (x,), ours)
    assert o.error is None
    assert o.equals_ours(), (x, ours, o.shown())


@given(st.floats(allow_nan=False, allow_infinity=False))
@PROP
@example(5e-324)
@example(2.4703282292062327e-324)
@example(2.4703282292062328e-324)
def test_parse_numbers_roundtrip(rt: Runtime, x: float) -> None:
    for s in {repr(x), f"{x:.17e}", f"{x:.25e}", f"{x:.3e}", python_display(x)}:
        if "inf" in s or s.endswith("."):
            continue
        s = s.replace("e+", "e")
        if not math.isfinite(float(s)):
            continue
        rt.reset()
        if re.fullmatch(r"-?[1-9][0-9]*", s) and not -(2**63) <= int(s) < 2**63:
            with pytest.raises(Trapped) as info:  # an integer past int64: refused, not rounded
                rt.call("a1_b_to_number", rt.put(s))
            assert info.value.code == E_RANGE
            continue
        got = rt.get(rt.call("a1_b_to_number", rt.put(s)))
        assert got == float(s), (s, got)


@pytest.mark.parametrize(
    "s",
    [
        "0",
        "-0",
        "1e400",
        "1e-400",
        "01",
        "1.",
        ".5",
        "+5",
        " 1 ",
        "\t2\n",
        "",
        "-",
        "1e",
        "0.1e1",
        "1" + "0" * 400 + "e-400",
        "0." + "0" * 400 + "1e400",
        "1_0",
        "0x10",
        "NaN",
        "Infinity",
        "1e+2",
        "1E-2",
        "-0.0",
        "00.5",
        "1e09",
        " ",
        "1 2",
    ],
)
def test_to_number_edges(rt: Runtime, s: str) -> None:
    check(rt, "a1_b_to_number", "to_number(a0)", s)


HALF_MIN = "2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264"


@pytest.mark.parametrize(
    "s",
    [
        "123456789012345678901234567890.0",
        "9007199254740993.0",
        "9007199254740995e0",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        HALF_MIN + "e-324",
        HALF_MIN + "1e-324",
        "4.9406564584124654e-324",
        "0.1",
        "0." + "3" * 800,
        "1" * 900 + "e-900",
        "7" * 30 + "." + "1" * 30,
        "8.5e-323",
        "1e-320",
        "1e23",
        "8.98846567431158e307",
        "4.4501477170144023e-308",
        "1e-7",
    ],
)
def test_to_number_correctly_rounded(rt: Runtime, s: str) -> None:
    # regorus (serde_json) is not always correctly rounded here; Python is.
    rt.reset()
    got = rt.get(rt.call("a1_b_to_number", rt.put(s)))
    assert got == float(s)


@pytest.mark.parametrize(
    "s",
    [
        "9007199254740993",
        "-9007199254740993",
        " 9223372036854775807\n",
        "-9223372036854775808",
        "9007199254740992",
        "1234567890123456",
    ],
)
def test_to_number_integers_exact(rt: Runtime, s: str) -> None:
    rt.reset()
    got = rt.get(rt.call("a1_b_to_number", rt.put(s)))
    assert type(got) is int and got == int(s)


@pytest.mark.parametrize(
    "s",
    [
        "9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1" + "0" * 400,
    ],
)
def test_to_number_integers_past_int64_refused(rt: Runtime, s: str) -> None:
    rt.reset()
    with pytest.raises(Trapped) as info:
        rt.call("a1_b_to_number", rt.put(s))
    assert info.value.code == E_RANGE
