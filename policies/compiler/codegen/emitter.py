"""The state of code emission and its small tools: fresh locals and labels, the
runtime imports used, the constant pool, and marks to take back code emitted
on trial (the scheduler tries literals in turn)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.compiler import ir
from policies.compiler.builtins import BUILTINS
from policies.compiler.codegen.abi import CONST_BASE, E_TYPE, RUNTIME_SIGS, TAG_OBJECT
from policies.compiler.consts import ConstPool
from policies.compiler.errors import CompileError


@dataclass
class FnState:
    """Per wasm-function emission state."""

    lines: list[str] = field(default_factory=list)
    locals: dict[str, str] = field(default_factory=dict)  # wasm local name -> type
    fail: str = ""
    closers: list[list[str]] = field(default_factory=list)
    bound: set[str] = field(default_factory=set)
    scope: set[str] = field(default_factory=set)  # bound by this query itself
    renames: dict[str, str] = field(default_factory=dict)  # shadowing name -> wasm local

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)


class Unsafe(CompileError):
    """A variable read before anything binds it: maybe fine in another order."""

    def __init__(self, loc: ir.Loc, name: str) -> None:
        super().__init__(loc, "type", f"var {name.lstrip('$')} is unsafe (used before it is bound)")
        self.name = name


def redefined(var: ir.Local) -> CompileError:
    """regorus's words for a name a query binds twice."""
    return CompileError(var.loc, "type", f"var `{var.name}` used before definition below")


class Emitter:
    """Shared by the emitters of rules, queries and terms (one generator, in parts)."""

    def __init__(self, program: ir.Program) -> None:
        self.program = program
        self.pool = ConstPool(CONST_BASE)
        self.labels = itertools.count()
        self.temps = itertools.count()
        self.imports: set[str] = set()
        self.rule_ids: dict[ir.RulePath, int] = {}
        self.functions: list[str] = []
        self.fn = FnState()
        self.slots: list[tuple[str, ...]] = []
        self.recursive: set[ir.RulePath] = set()  # rules on a dependency cycle
        self.pure = True  # calls no impure builtin (then time_now_ns is imported)
        self.host_names: list[str] = []  # host builtins called, by index (a1_host_call)
        # What `with` replaces (analysis.mock_tables): data path i is global $dm{i} (its
        # value, 0 when not replaced); function j is $fm{j}, its mode (0: itself, 1: the
        # value in $fv{j}, 2 + n: the n-th replacement function).
        self.walk_used = False  # the module needs the $a1w_walk helper (terms.WALK_FUNCTION)
        self.scratch = False  # code thrown away (rules no entrypoint reaches): nothing refused
        self.data_mocks: list[tuple[str, ...]] = []
        self.func_mocks: dict[str, list[ir.MockFn]] = {}

    # ------------------------------------------------------------ tools

    def _sig(self, name: str) -> tuple[str, str]:
        if name in RUNTIME_SIGS:
            return RUNTIME_SIGS[name]
        for export, arity in BUILTINS.values():
            if export == name:
                return " ".join(["i32"] * arity), "i32"
        raise AssertionError(name)

    def call(self, name: str, *args: str) -> str:
        self.imports.add(name)
        return f"(call ${name}{''.join(' ' + a for a in args)})"

    def _begin(self) -> FnState:
        self.fn = FnState()
        return self.fn

    def _finish(self, header: str, result: str) -> None:
        fn = self.fn
        decls = [f"    (local {name} {ty})" for name, ty in fn.locals.items()]
        body = [f"    {line}" for line in fn.lines]
        self.functions.append("\n".join([f"  {header}", *decls, *body, f"    {result}", "  )"]))

    def temp(self, ty: str = "i32") -> str:
        name = f"$t{next(self.temps)}"
        self.fn.locals[name] = ty
        return name

    def label(self, kind: str) -> str:
        return f"${kind}{next(self.labels)}"

    def var(self, name: str) -> str:
        # Rego names and our fresh ``$_N`` names are valid WAT ids
        wasm = self.fn.renames.get(name, "$v_" + name)
        self.fn.locals.setdefault(wasm, "i32")
        return wasm

    def shadow(self, name: str) -> None:
        """A new variable ``name`` hides a bound one: give it its own wasm local."""
        if name in self.fn.bound:
            # `.` is no Rego identifier character: no clash with a variable `x_3`
            self.fn.renames[name] = f"$v_{name}.{next(self.temps)}"
        self.fn.bound.discard(name)

    def _mark(self) -> tuple[Any, ...]:
        fn = self.fn
        lines, closers, renames = len(fn.lines), list(fn.closers), dict(fn.renames)
        return (lines, closers, set(fn.bound), set(fn.scope), renames, fn.fail)

    def _rewind(self, mark: tuple[Any, ...]) -> None:
        """Forget the code emitted since ``mark`` (constants and imports may stay)."""
        fn = self.fn
        del fn.lines[mark[0] :]
        fn.closers[:] = mark[1]
        fn.bound, fn.scope, fn.renames, fn.fail = mark[2], mark[3], mark[4], mark[5]

    def branch(self, cond: str, out: str, gen: Callable[[], str]) -> None:
        """``if cond: out = gen()``, the statements ``gen`` emits inside the branch.
        ``gen`` may not open a loop (its operands are evaluated already)."""
        fn = self.fn
        start, closers = len(fn.lines), len(fn.closers)
        expr = gen()
        if len(fn.closers) != closers:
            raise AssertionError("a loop opened inside a branch")
        body = fn.lines[start:]
        del fn.lines[start:]
        fn.emit(f"(if {cond} (then", *body, f"(local.set {out} {expr})", "))")

    def get_path(self, value: str, keys: tuple[str, ...]) -> str:
        """``value[k0][k1]...`` with constant keys (undefined where one is missing)."""
        for key in keys:
            value = self.call("a1_get", value, self.const(key))
        return value

    def set_path(self, doc: str, keys: tuple[str, ...], value: str) -> str:
        """A copy of ``doc`` with ``value`` at ``keys``, objects made where there are none
        (what ``with`` does to a document; ``doc`` itself may be shared: never written)."""
        fn = self.fn
        levels = [self.temp()]
        fn.emit(f"(local.set {levels[0]} {doc})")
        for key in keys[:-1]:
            nxt = self.temp()
            down = self.call("a1_get", f"(local.get {levels[-1]})", self.const(key))
            fn.emit(f"(local.set {nxt} {down})")
            levels.append(nxt)
        cur = self.temp()
        fn.emit(f"(local.set {cur} {value})")
        for key, level in reversed(list(zip(keys, levels, strict=True))):
            is_obj = (
                f"(i32.eq {self.call('a1_tag', f'(local.get {level})')} (i32.const {TAG_OBJECT}))"
            )
            rest = self.call("a1_b_object_remove", f"(local.get {level})", self.const([key]))
            base = f"(if (result i32) {is_obj} (then {rest}) (else {self.call('a1_obj_new')}))"
            put = self.call("a1_obj_put", base, self.const(key), f"(local.get {cur})")
            fn.emit(f"(local.set {cur} {put})")
        return f"(local.get {cur})"

    def data_mocked(self, path: tuple[str, ...], original: Callable[[], str]) -> str:
        """The data document at ``path`` as the active ``with data.…`` make it: a
        replacement at or above ``path`` is read instead of ``original`` (not evaluated
        then), one below it is put into ``original``'s value."""
        above = [i for i, t in enumerate(self.data_mocks) if path[: len(t)] == t]
        below = [i for i, t in enumerate(self.data_mocks) if t != path and t[: len(path)] == path]
        if not above and not below:
            return original()
        fn = self.fn
        out = self.temp()
        if above:  # at most one: targets are never nested
            (i,) = above
            mocked = self.get_path(f"(global.get $dm{i})", path[len(self.data_mocks[i]) :])
            fn.emit(f"(local.set {out} {mocked})")
            self.branch(f"(i32.eqz (global.get $dm{i}))", out, original)
            return f"(local.get {out})"
        fn.emit(f"(local.set {out} {original()})")
        for i in below:
            keys = self.data_mocks[i][len(path) :]
            self.branch(
                f"(global.get $dm{i})",
                out,
                lambda i=i, keys=keys: self.set_path(
                    f"(local.get {out})", keys, f"(global.get $dm{i})"
                ),
            )
        return f"(local.get {out})"

    def enter_epoch(self) -> str:
        """Start a new memo epoch (rules evaluated in it never answer from an older
        one); return the local holding the old one, for ``leave_epoch``."""
        saved = self.temp()
        self.fn.emit(
            f"(local.set {saved} (global.get $epoch))",
            "(global.set $epoch_ctr (i32.add (global.get $epoch_ctr) (i32.const 1)))",
            "(global.set $epoch (global.get $epoch_ctr))",
        )
        return saved

    def leave_epoch(self, saved: str) -> None:
        self.fn.emit(f"(global.set $epoch (local.get {saved}))")

    def const(self, value: Any) -> str:
        return f"(i32.const {self.pool.add(value)})"

    def _fail(self) -> str:
        """An expression that raises a type error when evaluated (see ``ir.Fail``)."""
        return f"(block (result i32) {self.call('a1_fail', f'(i32.const {E_TYPE})')} (unreachable))"
