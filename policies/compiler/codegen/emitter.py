"""The state of code emission and its small tools: fresh locals and labels, the
runtime imports used, the constant pool, and marks to take back code emitted
on trial (the scheduler tries literals in turn)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from policies.compiler import ir
from policies.compiler.builtins import BUILTINS
from policies.compiler.codegen.abi import CONST_BASE, E_TYPE, RUNTIME_SIGS
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

    def const(self, value: Any) -> str:
        return f"(i32.const {self.pool.add(value)})"

    def _fail(self) -> str:
        """An expression that raises a type error when evaluated (see ``ir.Fail``)."""
        return f"(block (result i32) {self.call('a1_fail', f'(i32.const {E_TYPE})')} (unreachable))"
