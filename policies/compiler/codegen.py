"""Back end: IR → WAT text for one policy module (see docs/policy-abi.md).

Rule bodies compile to straight-line code with one structured loop per
iteration point, in the style of a query planner: each literal either falls
through (success) or branches to the innermost backtrack label, which is the
enclosing loop's "next element" (or the body's end when nothing iterates).
Every value is a pointer into linear memory; 0 means undefined.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from policies.compiler import ir
from policies.compiler.builtins import BUILTINS, IMPURE_BUILTINS, PATTERN_BUILTINS
from policies.compiler.consts import ConstPool
from policies.compiler.errors import CompileError, unsupported

# Error codes the generated code raises (docs/policy-abi.md).
E_TYPE = 1
E_CONFLICT = 3
E_INTERNAL = 6

CONST_BASE = 0x10_0000
TAG_ARRAY = 5
TAG_OBJECT = 7

# Runtime exports that are not builtins: name -> (params, results).
_RUNTIME_SIGS: dict[str, tuple[str, str]] = {
    "a1_reset": ("i32", ""),
    "a1_alloc": ("i32", "i32"),
    "a1_fail": ("i32", ""),
    "a1_bool": ("i32", "i32"),
    "a1_num": ("f64", "i32"),
    "a1_arr_new": ("i32", "i32"),
    "a1_arr_push": ("i32 i32", "i32"),
    "a1_set_new": ("", "i32"),
    "a1_set_add": ("i32 i32", "i32"),
    "a1_obj_new": ("", "i32"),
    "a1_obj_put": ("i32 i32 i32", "i32"),
    "a1_truthy": ("i32", "i32"),
    "a1_tag": ("i32", "i32"),
    "a1_len": ("i32", "i32"),
    "a1_key_at": ("i32 i32", "i32"),
    "a1_val_at": ("i32 i32", "i32"),
    "a1_get": ("i32 i32", "i32"),
    "a1_eq": ("i32 i32", "i32"),
    "a1_cmp_op": ("i32 i32 i32", "i32"),
    "a1_in": ("i32 i32", "i32"),
    "a1_in2": ("i32 i32 i32", "i32"),
    "a1_add": ("i32 i32", "i32"),
    "a1_sub": ("i32 i32", "i32"),
    "a1_mul": ("i32 i32", "i32"),
    "a1_div": ("i32 i32", "i32"),
    "a1_rem": ("i32 i32", "i32"),
    "a1_or": ("i32 i32", "i32"),
    "a1_and": ("i32 i32", "i32"),
    "a1_dfa_match": ("i32 i32", "i32"),
    "a1_cidr_match": ("i32 i32", "i32"),
}
_BINOPS = {
    "+": "a1_add",
    "-": "a1_sub",
    "*": "a1_mul",
    "/": "a1_div",
    "%": "a1_rem",
    "|": "a1_or",
    "&": "a1_and",
}
_CMP_OPS = {"<": 0, "<=": 1, ">": 2, ">=": 3}


@dataclass
class Module:
    wat: str
    entrypoints: list[str]
    input_paths: list[tuple[str, ...]]
    pure: bool


def generate(program: ir.Program, entrypoints: list[str]) -> Module:
    return _Generator(program).module(entrypoints)


# --------------------------------------------------------------------- helpers


def _walk_terms(node: Any) -> Iterator[Any]:
    """Every IR node below ``node`` (terms, literals, bodies), depth first."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(n)
            continue
        if not hasattr(n, "__dataclass_fields__"):
            continue
        yield n
        if isinstance(n, ir.Const):
            continue
        for name in n.__dataclass_fields__:
            stack.append(getattr(n, name))


def _rule_deps(rule: ir.Rule, program: ir.Program) -> set[ir.RulePath]:
    deps: set[ir.RulePath] = set()
    for n in _walk_terms([rule.defs, rule.default]):
        if isinstance(n, ir.RuleRef):
            deps.add(n.path)
        elif isinstance(n, ir.Call) and n.func is not None:
            deps.add(n.func)
        elif isinstance(n, ir.PackageRef):
            deps.update(_package_rules(program, n.path))
    return deps


def _package_rules(program: ir.Program, prefix: tuple[str, ...]) -> list[ir.RulePath]:
    return sorted(
        p
        for p, r in program.rules.items()
        if p[: len(prefix)] == prefix and len(p) > len(prefix) and _is_value(r)
    )


def _is_value(rule: ir.Rule) -> bool:
    """Rules that are documents: all but functions with arguments (regorus evaluates
    ``f()`` as a value, like a complete rule)."""
    return rule.kind != "function" or rule.arity == 0


@dataclass
class _Fn:
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


class _Generator:
    def __init__(self, program: ir.Program) -> None:
        self.program = program
        self.pool = ConstPool(CONST_BASE)
        self.labels = itertools.count()
        self.temps = itertools.count()
        self.imports: set[str] = set()
        self.host_time = False
        self.rule_ids: dict[ir.RulePath, int] = {}
        self.functions: list[str] = []
        self.fn = _Fn()
        self.slots: list[tuple[str, ...]] = []
        self.recursive: set[ir.RulePath] = set()  # rules on a dependency cycle

    # ------------------------------------------------------------ module

    def module(self, entrypoints: list[str]) -> Module:
        roots: list[ir.Term] = []
        where = ir.Loc("<entrypoint>", 1, 1)
        for ep in entrypoints:
            path = tuple(p for p in ep.strip("/").split("/") if p)
            overridden = _lookup(self.program.data, path) if path in self.program.rules else None
            if overridden is not None and self.program.rules[path].kind != "function":
                roots.append(ir.RuleRef(path, where, overridden))  # data wins, as in regorus
            elif overridden is not None:
                roots.append(ir.Const(overridden[0], where))
            elif path in self.program.rules and not _is_value(self.program.rules[path]):
                roots.append(_UNDEFINED)  # regorus: a function is not a value
            elif path in self.program.rules:
                roots.append(ir.RuleRef(path, where))
            elif path and any(p[: len(path)] == path for p in self.program.packages):
                roots.append(ir.PackageRef(path, where))
            else:
                raise CompileError(
                    None, "type", f"entrypoint {ep!r} is neither a rule nor a package"
                )
        reachable = self._reachable(roots)
        self.slots = self._input_slots(reachable)
        for i, path in enumerate(sorted(reachable)):
            self.rule_ids[path] = i
        for path in sorted(reachable):
            self._rule_function(self.program.rules[path])
        self._eval_function(roots)
        self._check_unreachable(reachable)
        pure = not self.host_time
        return Module(self._assemble(), list(entrypoints), self.slots, pure)

    def _reachable(self, roots: list[ir.Term]) -> set[ir.RulePath]:
        todo: list[ir.RulePath] = []
        for root in roots:
            if isinstance(root, ir.RuleRef):
                todo.append(root.path)
            elif isinstance(root, ir.PackageRef):
                todo.extend(_package_rules(self.program, root.path))
        seen: set[ir.RulePath] = set()

        # Depth-first; every cycle has a back edge, whose rules get a guard that
        # fails at run time: regorus reports recursion only when it evaluates it.
        def visit(path: ir.RulePath, stack: list[ir.RulePath]) -> None:
            if path in stack:
                self.recursive.update(stack[stack.index(path) :])
                return
            if path in seen:
                return
            seen.add(path)
            rule = self.program.rules[path]
            for dep in sorted(_rule_deps(rule, self.program)):
                visit(dep, [*stack, path])

        for path in todo:
            visit(path, [])
        return seen

    def _check_unreachable(self, reachable: set[ir.RulePath]) -> None:
        """regorus rejects a program with an unsafe variable in any rule, reached
        or not: generate the other rules too (and throw the code away) to find them."""
        others = sorted(set(self.program.rules) - reachable)
        if not others:
            return
        scratch = _Generator(self.program)
        scratch.slots = [()]
        scratch.rule_ids = {p: i for i, p in enumerate(sorted(self.program.rules))}
        for path in others:
            try:
                scratch._rule_function(self.program.rules[path])
            except CompileError as err:
                if err.kind != "unsupported":
                    raise

    def _input_slots(self, reachable: set[ir.RulePath]) -> list[tuple[str, ...]]:
        """The minimal set of input paths the reachable rules read (docs/policy-abi.md)."""
        paths: set[tuple[str, ...]] = set()

        def visit(node: Any) -> None:
            if isinstance(node, (list, tuple)):
                for n in node:
                    visit(n)
                return
            if not hasattr(node, "__dataclass_fields__") or isinstance(node, ir.Const):
                return
            if isinstance(node, ir.InputRoot):
                paths.add(())
                return
            if isinstance(node, ir.Ref) and isinstance(node.base, ir.InputRoot):
                paths.add(self._const_prefix(node.keys))
                visit(node.keys)
                return
            for name in node.__dataclass_fields__:
                visit(getattr(node, name))

        for path in reachable:
            visit(self.program.rules[path].defs)
            visit(self.program.rules[path].default)
        return sorted(p for p in paths if not any(q != p and p[: len(q)] == q for q in paths))

    @staticmethod
    def _const_prefix(keys: list[ir.Term]) -> tuple[str, ...]:
        out: list[str] = []
        for k in keys:
            if isinstance(k, ir.Const) and isinstance(k.value, str):
                out.append(k.value)
            else:
                break
        return tuple(out)

    def _assemble(self) -> str:
        data = self.pool.data()
        input_base = (CONST_BASE + len(data) + 7) & ~7
        out = ["(module"]
        pages = (input_base + 0xFFFF) // 0x10000 + 1
        out.append(f'  (import "env" "memory" (memory {pages}))')
        if self.host_time:
            out.append('  (import "env" "time_now_ns" (func $time_now_ns (result f64)))')
        for name in sorted(self.imports):
            params, results = self._sig(name)
            p = f" (param {params})" if params else ""
            r = f" (result {results})" if results else ""
            out.append(f'  (import "a1rt" "{name}" (func ${name}{p}{r}))')
        out.append(f"  (global $input_base i32 (i32.const {input_base}))")
        out.append('  (export "a1_input_base" (global $input_base))')
        out.append("  (global $slots (mut i32) (i32.const 0))")
        out.append("  (global $epoch (mut i32) (i32.const 0))")
        out.append("  (global $epoch_ctr (mut i32) (i32.const 0))")
        for i in range(len(self.rule_ids)):
            out.append(f"  (global $m{i} (mut i32) (i32.const 0))")
            out.append(f"  (global $e{i} (mut i32) (i32.const 0))")
        for path in sorted(self.recursive):  # in progress: the epoch it started in
            out.append(f"  (global $p{self.rule_ids[path]} (mut i32) (i32.const 0))")
        if data:
            out.append(f'  (data (i32.const {CONST_BASE}) "{_wat_bytes(data)}")')
        out.extend(self.functions)
        out.append(")")
        return "\n".join(out)

    def _sig(self, name: str) -> tuple[str, str]:
        if name in _RUNTIME_SIGS:
            return _RUNTIME_SIGS[name]
        for export, arity in BUILTINS.values():
            if export == name:
                return " ".join(["i32"] * arity), "i32"
        raise AssertionError(name)

    def call(self, name: str, *args: str) -> str:
        self.imports.add(name)
        return f"(call ${name}{''.join(' ' + a for a in args)})"

    # ---------------------------------------------------------- functions

    def _begin(self) -> _Fn:
        self.fn = _Fn()
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
            self.fn.renames[name] = f"$v_{name}_{next(self.temps)}"
        self.fn.bound.discard(name)

    def _rule_function(self, rule: ir.Rule) -> None:
        rid = self.rule_ids[rule.path]
        fn = self._begin()
        res = self.temp()
        name = ".".join(rule.path)
        if rule.kind == "function":
            params = " ".join(f"(param $a{i} i32)" for i in range(rule.arity))
            header = f"(func $r{rid} {params} (result i32) ;; {name}"
        else:
            header = f"(func $r{rid} (result i32) ;; {name}"
            fn.emit(
                f"(if (i32.eq (global.get $e{rid}) (global.get $epoch))",
                f"  (then (return (global.get $m{rid}))))",
            )
        if rule.path in self.recursive:
            fail = self.call("a1_fail", f"(i32.const {E_TYPE})")
            fn.emit(
                f"(if (i32.eq (global.get $p{rid}) (global.get $epoch)) (then {fail}))",
                f"(global.set $p{rid} (global.get $epoch))",
            )
        if rule.kind == "set":
            fn.emit(f"(local.set {res} {self.call('a1_set_new')})")
        elif rule.kind == "object":
            fn.emit(f"(local.set {res} {self.call('a1_obj_new')})")
        for definition in rule.defs:
            self._definition(rule, definition, res)
        if isinstance(rule.default, ir.Const):
            default = self.const(rule.default.value)
            fn.emit(f"(if (i32.eqz (local.get {res})) (then (local.set {res} {default})))")
        elif rule.default is not None:  # a computed default, e.g. a comprehension
            skip = self.label("default")
            fn.emit(f"block {skip}", f"(br_if {skip} (local.get {res}))")
            fn.fail, fn.closers, fn.bound = skip, [], set()
            fn.emit(f"(local.set {res} {self.term(rule.default)})", "end")
        if rule.path in self.recursive:
            fn.emit(f"(global.set $p{rid} (i32.const 0))")
        if rule.kind != "function":
            fn.emit(
                f"(global.set $m{rid} (local.get {res}))",
                f"(global.set $e{rid} (global.get $epoch))",
            )
        self._finish(header, f"(local.get {res})")

    def _definition(self, rule: ir.Rule, definition: ir.Definition, res: str) -> None:
        """One definition and its else chain.

        As in regorus, every definition is evaluated (so an error in a later
        one is raised even after an earlier one succeeded), and a body whose
        head (value, or set element / object key and value) is constant stops
        at its first solution.
        """
        fn = self.fn
        chain_done = self.label("chain")
        fn.emit(f"block {chain_done}")
        hit = self.temp()
        for body in definition.bodies:
            fn.emit(f"(local.set {hit} (i32.const 0))")
            fn.bound = set()
            if definition.args is not None:
                arg_fail = self.label("args")
                fn.emit(f"block {arg_fail}")
                fn.fail = arg_fail
                for i, pattern in enumerate(definition.args):
                    self.unify(pattern, f"(local.get $a{i})", pattern.loc)
                inner_bound = set(fn.bound)
                self._body(body, rule, res, hit, chain_done, inner_bound, scope=inner_bound)
                fn.emit("end")
            else:
                self._body(body, rule, res, hit, chain_done, set())
            # An else branch runs only when this body produced nothing.
            fn.emit(f"(br_if {chain_done} (local.get {hit}))")
        fn.emit("end")

    def _body(
        self,
        body: ir.Body,
        rule: ir.Rule,
        res: str,
        hit: str,
        chain_done: str,
        bound: set[str],
        scope: set[str] | None = None,
    ) -> None:
        def emit_head() -> None:
            # The head is evaluated before the body counts as a hit: a body whose
            # head value is undefined falls through to the else branch.
            fn = self.fn
            if rule.kind in ("set", "object"):
                operands = [body.key] if rule.kind == "set" else [body.key, body.value]
                args = self.terms(operands)  # type: ignore[arg-type]
                name = "a1_set_add" if rule.kind == "set" else "a1_obj_put"
                fn.emit(
                    f"(local.set {hit} (i32.const 1))",
                    f"(local.set {res} {self.call(name, f'(local.get {res})', *args)})",
                )
                if body.first_only or all(isinstance(t, ir.Const) for t in operands):
                    fn.emit(f"(br {chain_done})")
                return
            value = self.term(body.value)  # type: ignore[arg-type]
            fn.emit(f"(local.set {hit} (i32.const 1))")
            conflict = self.call("a1_fail", f"(i32.const {E_CONFLICT})")
            eq = self.call("a1_eq", f"(local.get {res})", value)
            fn.emit(
                f"(if (local.get {res})",
                f"  (then (if (i32.eqz {eq}) (then {conflict})))",
                f"  (else (local.set {res} {value})))",
            )
            if isinstance(body.value, ir.Const):
                fn.emit(f"(br {chain_done})")

        def on_success() -> None:
            # regorus checks a head (an unbound variable in it, say) only once
            # the body has succeeded: such a head is an error at run time.
            mark = self._mark()
            try:
                emit_head()
            except _Unsafe:
                self._rewind(mark)
                self.fn.emit(f"(drop {self._fail()})")

        self.query(body.lits, on_success, bound, scope)

    def _eval_function(self, roots: list[ir.Term]) -> None:
        fn = self._begin()
        fn.locals["$r"] = "i32"
        fn.emit(
            "(global.set $slots (global.get $input_base))",
            "(call $a1_reset (i32.and (i32.add (i32.add (global.get $input_base)"
            " (local.get $len)) (i32.const 7)) (i32.const -8)))",
            "(global.set $epoch_ctr (i32.add (global.get $epoch_ctr) (i32.const 1)))",
            "(global.set $epoch (global.get $epoch_ctr))",
        )
        self.imports.add("a1_reset")
        self.imports.add("a1_fail")
        done = self.label("done")
        fn.emit(f"block {done}")
        for i, root in enumerate(roots):
            fn.fail = done
            fn.emit(f"(if (i32.eq (local.get $entry) (i32.const {i})) (then")
            value = "(i32.const 0)" if root is _UNDEFINED else self.term_maybe(root)
            fn.lines.append(f"(local.set $r {value})")
            fn.emit(f"(br {done})))")
        fn.emit(self.call("a1_fail", f"(i32.const {E_INTERNAL})"), "end")
        header = (
            '(func $a1_eval (export "a1_eval") (param $entry i32) (param $len i32) (result i32)'
        )
        self._finish(header, "(local.get $r)")

    # ------------------------------------------------------------ queries

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

    def _schedule(self, lits: list[ir.Lit]) -> None:
        """Emit ``lits`` in an order where every variable is bound before it is read.

        Like regorus's scheduler (and OPA's safety reordering): the first literal,
        in source order, that compiles with the variables bound so far goes next.
        When none does, the first one left reports its unsafe variable.
        """
        pending = list(lits)
        while pending:
            for i, lit in enumerate(pending):
                mark = self._mark()
                try:
                    self.literal(lit)
                except _Unsafe:
                    self._rewind(mark)
                    continue
                del pending[i]
                break
            else:
                self.literal(pending[0])
                del pending[0]

    def query(
        self,
        lits: list[ir.Lit],
        on_success: Callable[[], None],
        bound: set[str],
        scope: set[str] | None = None,
    ) -> None:
        """Emit ``lits``; run ``on_success`` once per solution, then backtrack.

        ``scope`` holds the names this query binds itself (a function's arguments
        count): as in regorus, ``:=`` may not bind one of them again.
        """
        fn = self.fn
        saved = (fn.fail, fn.closers, fn.bound, fn.scope, dict(fn.renames))
        end = self.label("q")
        fn.emit(f"block {end}")
        fn.fail, fn.closers, fn.bound = end, [], set(bound)
        fn.scope = set(scope or ())
        self._schedule(lits)
        on_success()
        fn.emit(f"(br {fn.fail})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end")
        fn.fail, fn.closers, fn.bound, fn.scope, fn.renames = saved

    def literal(self, lit: ir.Lit) -> None:
        fn = self.fn
        if isinstance(lit, (ir.ExprLit, ir.AssignLit)) and lit.withs:
            self._with(lit)
            return
        if isinstance(lit, ir.ExprLit):
            self.condition(lit.term)
        elif isinstance(lit, ir.AssignLit):
            self.assign(lit)
        elif isinstance(lit, ir.SomeDeclLit):
            for name in lit.names:
                self.shadow(name)
        elif isinstance(lit, ir.SomeInLit):
            coll = self.term(lit.coll)
            key, value = self.iterate(coll, strict=True)
            for var in self._pattern_locals(lit.value) + (
                self._pattern_locals(lit.key) if lit.key else []
            ):
                if var.name in fn.bound or var.name in fn.scope:
                    raise _redefined(var)
            for name in self._pattern_vars(lit.value) | (
                self._pattern_vars(lit.key) if lit.key else set()
            ):
                fn.bound.discard(name)
            if lit.key is not None:
                self.unify(lit.key, f"(local.get {key})", lit.loc)
            self.unify(lit.value, f"(local.get {value})", lit.loc)
        elif isinstance(lit, ir.NotLit):
            self._not(lit)
        elif isinstance(lit, ir.EveryLit):
            self._every(lit)
        else:  # pragma: no cover - the front end produces nothing else
            raise unsupported(getattr(lit, "loc", None), type(lit).__name__)

    def _pattern_locals(self, term: ir.Term) -> list[ir.Local]:
        if isinstance(term, ir.Local):
            return [term]
        if isinstance(term, ir.ArrayLit):
            return [v for i in term.items for v in self._pattern_locals(i)]
        if isinstance(term, ir.ObjectLit):
            return [v for _, i in term.items for v in self._pattern_locals(i)]
        return []

    def _pattern_vars(self, term: ir.Term) -> set[str]:
        if isinstance(term, ir.Local):
            return {term.name}
        if isinstance(term, ir.ArrayLit):
            return set().union(*(self._pattern_vars(i) for i in term.items))
        if isinstance(term, ir.ObjectLit):
            return set().union(*(self._pattern_vars(v) for _, v in term.items))
        return set()

    def condition(self, term: ir.Term) -> None:
        """Emit a test of ``term``; branch to the backtrack label when it fails."""
        # Operands first: evaluating them may open a loop and move the backtrack label.
        if isinstance(term, ir.Compare):
            test = self.compare(term)
        elif isinstance(term, ir.Member):
            test = self.member(term)
        else:
            test = self.call("a1_truthy", self.term(term))
        self.fn.emit(f"(br_if {self.fn.fail} (i32.eqz {test}))")

    def compare(self, term: ir.Compare) -> str:
        """A test of ``term`` for a condition: backtracks when an operand is undefined."""
        return self._compare_values(term.op, self.terms([term.lhs, term.rhs]))

    def _compare_values(self, op: str, values: list[str]) -> str:
        lhs, rhs = values
        if op == "==":
            return self.call("a1_eq", lhs, rhs)
        if op == "!=":
            return f"(i32.eqz {self.call('a1_eq', lhs, rhs)})"
        return self.call("a1_cmp_op", f"(i32.const {_CMP_OPS[op]})", lhs, rhs)

    def member(self, term: ir.Member) -> str:
        """``in`` is false, never undefined, when an operand is undefined (as in regorus)."""
        operands = (
            [term.value, term.coll] if term.key is None else [term.key, term.value, term.coll]
        )
        temps = []
        for operand in operands:
            t = self.temp()
            self.fn.emit(f"(local.set {t} {self.term_maybe(operand)})")
            temps.append(f"(local.get {t})")
        defined = temps[0]
        for t in temps[1:]:
            defined = f"(i32.and (i32.ne {defined} (i32.const 0)) (i32.ne {t} (i32.const 0)))"
        name = "a1_in" if term.key is None else "a1_in2"
        return f"(if (result i32) {defined} (then {self.call(name, *temps)}) (else (i32.const 0)))"

    def assign(self, lit: ir.AssignLit) -> None:
        fn = self.fn
        lhs, rhs = lit.lhs, lit.rhs
        if lit.declare:
            for var in self._pattern_locals(lhs):
                if var.name in fn.scope:
                    raise _redefined(var)
                self.shadow(var.name)
        if (
            isinstance(lhs, ir.ArrayLit)
            and isinstance(rhs, ir.ArrayLit)
            and len(lhs.items) == len(rhs.items)
            and (self._unbound_pattern(lhs) or self._unbound_pattern(rhs))
        ):
            # [a, 1] = [2, b]: element by element, left to right.
            for left, right in zip(lhs.items, rhs.items, strict=True):
                self.assign(ir.AssignLit(left, right, lit.declare, lit.loc))
        elif self._unbound_pattern(lhs):
            self.unify(lhs, self.term(rhs), lit.loc)
        elif not lit.declare and self._unbound_pattern(rhs):
            self.unify(rhs, self.term(lhs), lit.loc)
        elif lit.declare:
            raise CompileError(lit.loc, "type", "left side of `:=` must be a variable or pattern")
        else:
            test = self.call("a1_eq", *self.terms([lhs, rhs]))
            fn.emit(f"(br_if {fn.fail} (i32.eqz {test}))")

    def _unbound_pattern(self, term: ir.Term) -> bool:
        if isinstance(term, ir.Local):
            return term.name not in self.fn.bound
        if isinstance(term, ir.ArrayLit):
            return any(self._unbound_pattern(i) for i in term.items)
        if isinstance(term, ir.ObjectLit):
            return any(self._unbound_pattern(v) for _, v in term.items)
        return False

    def unify(self, pattern: ir.Term, value: str, loc: ir.Loc) -> None:
        """Bind the unbound variables of ``pattern`` to ``value``; compare the rest."""
        fn = self.fn
        if isinstance(pattern, ir.Local) and pattern.name not in fn.bound:
            fn.emit(f"(local.set {self.var(pattern.name)} {value})")
            fn.bound.add(pattern.name)
            fn.scope.add(pattern.name)
            return
        if isinstance(pattern, ir.ArrayLit) and self._unbound_pattern(pattern):
            v = self.temp()
            fn.emit(f"(local.set {v} {value})")
            fn.emit(
                f"(br_if {fn.fail} (i32.ne {self.call('a1_tag', f'(local.get {v})')}"
                f" (i32.const {TAG_ARRAY})))",
                f"(br_if {fn.fail} (i32.ne {self.call('a1_len', f'(local.get {v})')}"
                f" (i32.const {len(pattern.items)})))",
            )
            for i, item in enumerate(pattern.items):
                self.unify(
                    item, self.call("a1_val_at", f"(local.get {v})", f"(i32.const {i})"), loc
                )
            return
        if isinstance(pattern, ir.ObjectLit) and self._unbound_pattern(pattern):
            # As regorus: each key of the pattern must be in the object (other keys
            # may be too), and its value must unify with the key's pattern.
            v = self.temp()
            fn.emit(
                f"(local.set {v} {value})",
                f"(br_if {fn.fail} (i32.ne {self.call('a1_tag', f'(local.get {v})')}"
                f" (i32.const {TAG_OBJECT})))",
            )
            for key, item in pattern.items:
                if self._unbound_pattern(key):
                    raise unsupported(key.loc, "a variable object key in a pattern")
                got = self.temp()
                fn.emit(
                    f"(local.set {got} "
                    f"{self.call('a1_get', f'(local.get {v})', self.term(key))})",
                    f"(br_if {fn.fail} (i32.eqz (local.get {got})))",
                )
                self.unify(item, f"(local.get {got})", loc)
            return
        test = self.call("a1_eq", self.term(pattern), value)
        fn.emit(f"(br_if {fn.fail} (i32.eqz {test}))")

    def iterate(self, coll: str, *, strict: bool = False) -> tuple[str, str]:
        """Open a loop over ``coll``'s elements; the rest of the query runs inside it.

        Iterating a scalar is undefined for a reference (``x[_]``) and a type error
        for ``some .. in`` (``strict``), as in regorus.
        """
        fn = self.fn
        c, n, i, k, v = self.temp(), self.temp(), self.temp(), self.temp(), self.temp()
        done, nxt = self.label("done"), self.label("next")
        not_coll = self.call("a1_fail", f"(i32.const {E_TYPE})") if strict else f"(br {fn.fail})"
        fn.emit(
            f"(local.set {c} {coll})",
            f"(local.set {n} {self.call('a1_len', f'(local.get {c})')})",
            f"(if (i32.lt_s (local.get {n}) (i32.const 0)) (then {not_coll}))",
            f"(local.set {i} (i32.const 0))",
            f"block {done}",
            f"loop {nxt}",
            f"(br_if {done} (i32.ge_s (local.get {i}) (local.get {n})))",
            f"(local.set {k} {self.call('a1_key_at', f'(local.get {c})', f'(local.get {i})')})",
            f"(local.set {v} {self.call('a1_val_at', f'(local.get {c})', f'(local.get {i})')})",
            f"(local.set {i} (i32.add (local.get {i}) (i32.const 1)))",
        )
        fn.closers.append([f"(br {nxt})", "end", "end", f"(br {fn.fail})"])
        fn.fail = nxt
        return k, v

    def _not(self, lit: ir.NotLit) -> None:
        fn = self.fn
        outer = fn.fail
        inner_fail = self.label("not")
        fn.emit(f"block {inner_fail}")
        saved = (fn.closers, set(fn.bound), dict(fn.renames))
        saved_scope = set(fn.scope)
        fn.fail, fn.closers = inner_fail, []
        for inner in lit.body:
            self.literal(inner)
        fn.emit(f"(br {outer})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end")
        fn.closers, fn.bound, fn.renames, fn.scope = *saved, saved_scope
        fn.fail = outer

    def _every(self, lit: ir.EveryLit) -> None:
        fn = self.fn
        outer = fn.fail
        domain = self.term(lit.domain)
        saved = (fn.closers, set(fn.bound), dict(fn.renames))
        for name in (lit.key, lit.value):
            if name is not None:
                self.shadow(name)
        saved_scope, fn.scope = fn.scope, set()
        fn.closers = []
        c, n, i = self.temp(), self.temp(), self.temp()
        done, nxt, body_fail = self.label("done"), self.label("next"), self.label("every")
        fn.emit(
            f"(local.set {c} {domain})",
            f"(local.set {n} {self.call('a1_len', f'(local.get {c})')})",
            f"(br_if {outer} (i32.lt_s (local.get {n}) (i32.const 0)))",
            f"(local.set {i} (i32.const 0))",
            f"block {done}",
            f"loop {nxt}",
            f"(br_if {done} (i32.ge_s (local.get {i}) (local.get {n})))",
        )
        if lit.key is not None:
            fn.emit(
                f"(local.set {self.var(lit.key)} "
                f"{self.call('a1_key_at', f'(local.get {c})', f'(local.get {i})')})"
            )
            fn.bound.add(lit.key)
        fn.emit(
            f"(local.set {self.var(lit.value)} "
            f"{self.call('a1_val_at', f'(local.get {c})', f'(local.get {i})')})",
            f"(local.set {i} (i32.add (local.get {i}) (i32.const 1)))",
        )
        fn.bound.add(lit.value)
        fn.emit(f"block {body_fail}")
        fn.fail = body_fail
        for inner in lit.body:
            self.literal(inner)
        fn.emit(f"(br {nxt})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end", f"(br {outer})", "end", "end")
        fn.closers, fn.bound, fn.renames, fn.scope = *saved, saved_scope
        fn.fail = outer

    def _with(self, lit: ir.ExprLit | ir.AssignLit) -> None:
        """Evaluate ``lit`` (first solution) with ``input`` replaced, then restore."""
        fn = self.fn
        outer = fn.fail
        slots = self.temp()
        size = f"(i32.const {max(4, 4 * len(self.slots))})"
        fn.emit(f"(local.set {slots} {self.call('a1_alloc', size)})")
        for idx in range(len(self.slots)):
            fn.emit(
                f"(i32.store offset={4 * idx} (local.get {slots}) "
                f"(i32.load offset={4 * idx} (global.get $slots)))"
            )
        for w in lit.withs:
            target = w.target[1:]
            value = self.term(w.value)
            for idx, slot in enumerate(self.slots):
                if slot[: len(target)] == target:
                    v = value
                    for key in slot[len(target) :]:
                        v = self.call("a1_get", v, self.const(key))
                    fn.emit(f"(i32.store offset={4 * idx} (local.get {slots}) {v})")
                elif target[: len(slot)] == slot:
                    raise unsupported(
                        w.loc, "`with` on part of an input document the policy also reads whole"
                    )
        saved_slots, saved_epoch, ok = self.temp(), self.temp(), self.temp()
        fn.emit(
            f"(local.set {saved_slots} (global.get $slots))",
            f"(local.set {saved_epoch} (global.get $epoch))",
            f"(global.set $slots (local.get {slots}))",
            "(global.set $epoch_ctr (i32.add (global.get $epoch_ctr) (i32.const 1)))",
            "(global.set $epoch (global.get $epoch_ctr))",
            f"(local.set {ok} (i32.const 0))",
        )
        end = self.label("with")
        fn.emit(f"block {end}")
        saved_closers = fn.closers
        fn.fail, fn.closers = end, []
        plain = (
            ir.ExprLit(lit.term, lit.loc)
            if isinstance(lit, ir.ExprLit)
            else ir.AssignLit(lit.lhs, lit.rhs, lit.declare, lit.loc)
        )
        self.literal(plain)
        fn.emit(f"(local.set {ok} (i32.const 1))", f"(br {end})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end")
        fn.closers, fn.fail = saved_closers, outer
        fn.emit(
            f"(global.set $slots (local.get {saved_slots}))",
            f"(global.set $epoch (local.get {saved_epoch}))",
            f"(br_if {outer} (i32.eqz (local.get {ok})))",
        )

    # -------------------------------------------------------------- terms

    def const(self, value: Any) -> str:
        return f"(i32.const {self.pool.add(value)})"

    def term(self, term: ir.Term) -> str:
        """Emit ``term``; return an expression for its (defined) value.

        Undefined values branch to the backtrack label. Unbound variables used as
        reference keys open an iteration.
        """
        value = self.term_maybe(term)
        if self._always_defined(value):
            return value
        t = self.temp()
        self.fn.emit(
            f"(local.set {t} {value})", f"(br_if {self.fn.fail} (i32.eqz (local.get {t})))"
        )
        return f"(local.get {t})"

    @staticmethod
    def _always_defined(value: str) -> bool:
        return value.startswith("(i32.const") or value.startswith("(local.get $v_")

    def operands(self, terms: list[ir.Term]) -> tuple[list[str], str | None]:
        """Evaluate every operand, undefined ones included; return them and an
        "all defined" test (None when they always are).

        regorus evaluates expressions eagerly, with undefined as a value that
        propagates: an error in a later operand is raised even when an earlier
        one is undefined. The order is observable, so we keep it.
        """
        values, maybe = [], []
        for t in terms:
            v = self.term_maybe(t)
            if not self._always_defined(v):
                tmp = self.temp()
                self.fn.emit(f"(local.set {tmp} {v})")
                v = f"(local.get {tmp})"
                maybe.append(v)
            values.append(v)
        if not maybe:
            return values, None
        test = f"(i32.ne {maybe[0]} (i32.const 0))"
        for v in maybe[1:]:
            test = f"(i32.and {test} (i32.ne {v} (i32.const 0)))"
        return values, test

    @staticmethod
    def guarded(expr: str, defined: str | None) -> str:
        """``expr`` when the operands are defined, else undefined (0)."""
        if defined is None:
            return expr
        return f"(if (result i32) {defined} (then {expr}) (else (i32.const 0)))"

    def terms(self, terms: list[ir.Term]) -> list[str]:
        """Evaluate every operand, then backtrack if any is undefined."""
        values, defined = self.operands(terms)
        if defined is not None:
            self.fn.emit(f"(br_if {self.fn.fail} (i32.eqz {defined}))")
        return values

    def term_maybe(self, term: ir.Term) -> str:
        fn = self.fn
        if isinstance(term, ir.Const):
            return self.const(term.value)
        if isinstance(term, ir.Local):
            if term.name not in fn.bound:
                raise _Unsafe(
                    term.loc,
                    "type",
                    f"var {term.name.lstrip('$')} is unsafe (used before it is bound)",
                )
            return f"(local.get {self.var(term.name)})"
        if isinstance(term, ir.InputRoot):
            return self._slot(())[0]
        if isinstance(term, ir.DataRoot):
            raise unsupported(term.loc, "reference to the whole `data` document")
        if isinstance(term, ir.Ref):
            return self._ref(term)
        if isinstance(term, ir.RuleRef):
            rule = self.program.rules[term.path]
            if rule.kind == "function" and rule.arity:
                return self._fail()  # regorus: a function used as a value, once evaluated
            if rule.kind == "function" and len(rule.defs) > 1:
                # regorus merges the objects several definitions produce.
                raise unsupported(
                    term.loc, f"`{'.'.join(term.path)}()` with several definitions as a value"
                )
            constant = _constant_value(rule)
            if term.override is not None:
                if constant is None:  # evaluated for its errors; the data's value wins
                    self.fn.emit(f"(drop (call $r{self.rule_ids[term.path]}))")
                return self.const(term.override[0])
            if constant is not None:
                return self.const(constant.value)
            return f"(call $r{self.rule_ids[term.path]})"
        if isinstance(term, ir.PackageRef):
            return self._package(term)
        if isinstance(term, ir.Fail):
            _, defined = self.operands(term.args)  # an undefined argument: no call at all
            return self.guarded(self._fail(), defined)
        if isinstance(term, ir.Call):
            return self._call(term)
        if isinstance(term, ir.BinOp):
            values, defined = self.operands([term.lhs, term.rhs])
            return self.guarded(self.call(_BINOPS[term.op], *values), defined)
        if isinstance(term, ir.Compare):
            values, defined = self.operands([term.lhs, term.rhs])
            return self.guarded(
                self.call("a1_bool", self._compare_values(term.op, values)), defined
            )
        if isinstance(term, ir.Member):
            return self.call("a1_bool", self.member(term))
        if isinstance(term, (ir.ArrayLit, ir.SetLit, ir.ObjectLit)):
            return self._collection(term)
        if isinstance(term, ir.Compr):
            return self._compr(term)
        raise unsupported(getattr(term, "loc", None), type(term).__name__)

    def _collection(self, term: ir.ArrayLit | ir.SetLit | ir.ObjectLit) -> str:
        """A literal with computed elements: undefined if any element is.

        regorus evaluates the elements left to right and stops at the first
        undefined one (an error in a later element is never raised). Elements
        that iterate (``[input.xs[i]]``) open loops, which cannot sit inside the
        block that stops early: those are evaluated first, and all of them.
        """
        fn = self.fn
        items = (
            [x for pair in term.items for x in pair]
            if isinstance(term, ir.ObjectLit)
            else list(term.items)
        )
        c = self.temp()
        stop: str | None = None
        if any(self._iterates(t) for t in items):
            values, defined = self.operands(items)
        else:
            stop, values, defined = self.label("elems"), [], None
            fn.emit(f"(local.set {c} (i32.const 0))", f"block {stop}")
            for item in items:
                v = self.term_maybe(item)
                if not self._always_defined(v):
                    t = self.temp()
                    fn.emit(f"(local.set {t} {v})", f"(br_if {stop} (i32.eqz (local.get {t})))")
                    v = f"(local.get {t})"
                values.append(v)
        if isinstance(term, ir.ObjectLit):
            new, add = self.call("a1_obj_new"), "a1_obj_put"
            groups = [values[i : i + 2] for i in range(0, len(values), 2)]
        elif isinstance(term, ir.ArrayLit):
            new, add = self.call("a1_arr_new", f"(i32.const {len(values)})"), "a1_arr_push"
            groups = [[v] for v in values]
        else:
            new, add = self.call("a1_set_new"), "a1_set_add"
            groups = [[v] for v in values]
        steps = [f"(local.set {c} {new})"]
        steps += [f"(local.set {c} {self.call(add, f'(local.get {c})', *g)})" for g in groups]
        if stop is not None:
            fn.emit(*steps, "end")
        elif defined is None:
            fn.emit(*steps)
        else:
            fn.emit(f"(local.set {c} (i32.const 0))", f"(if {defined} (then", *steps, "))")
        return f"(local.get {c})"

    def _iterates(self, term: ir.Term) -> bool:
        """Whether evaluating ``term`` opens a loop (a reference key nothing binds)."""
        stack: list[Any] = [term]
        while stack:
            n = stack.pop()
            if isinstance(n, (list, tuple)):
                stack.extend(n)
            elif isinstance(n, ir.Ref):
                if any(isinstance(k, ir.Local) and k.name not in self.fn.bound for k in n.keys):
                    return True
                stack.extend([n.base, *n.keys])
            elif hasattr(n, "__dataclass_fields__") and not isinstance(n, (ir.Const, ir.Compr)):
                stack.extend(getattr(n, f) for f in n.__dataclass_fields__ if f != "loc")
        return False

    def _slot(self, path: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        for idx, slot in enumerate(self.slots):
            if path[: len(slot)] == slot:
                return f"(i32.load offset={4 * idx} (global.get $slots))", path[len(slot) :]
        raise AssertionError(f"no input slot for {path}")

    def _ref(self, ref: ir.Ref) -> str:
        fn = self.fn
        keys = list(ref.keys)
        if isinstance(ref.base, ir.InputRoot):
            prefix = self._const_prefix(keys)
            cur, rest = self._slot(prefix)
            keys = [ir.Const(k, ref.loc) for k in rest] + keys[len(prefix) :]
        else:
            cur = self.term_maybe(ref.base)
        for key in keys:
            t = self.temp()
            fn.emit(f"(local.set {t} {cur})")
            if isinstance(key, ir.Local) and key.name not in fn.bound:
                # Nothing to iterate in an undefined collection: no solutions.
                fn.emit(f"(br_if {fn.fail} (i32.eqz (local.get {t})))")
                k, v = self.iterate(f"(local.get {t})")
                fn.emit(f"(local.set {self.var(key.name)} (local.get {k}))")
                fn.bound.add(key.name)
                fn.scope.add(key.name)
                cur = f"(local.get {v})"
            else:
                (k,), defined = self.operands([key])
                test = f"(i32.ne (local.get {t}) (i32.const 0))"
                if defined is not None:
                    test = f"(i32.and {test} {defined})"
                cur = self.guarded(self.call("a1_get", f"(local.get {t})", k), test)
        return cur

    def _package(self, ref: ir.PackageRef) -> str:
        """The package's object: its data merged with its rules; data wins (regorus)."""
        fn = self.fn
        obj = self.temp()
        fn.emit(f"(local.set {obj} {self.call('a1_obj_new')})")
        found = _lookup(self.program.data, ref.path)
        doc = found[0] if found is not None and isinstance(found[0], dict) else {}
        children: dict[str, list[ir.RulePath]] = {}
        for path in _package_rules(self.program, ref.path):
            children.setdefault(path[len(ref.path)], []).append(path)
        merged = {  # subpackages whose data is an object: merged below
            name
            for name, paths in children.items()
            if isinstance(doc.get(name), dict) and len(paths[0]) > len(ref.path) + 1
        }
        for key, value in sorted(doc.items()):
            if key not in merged:
                put = self.call(
                    "a1_obj_put", f"(local.get {obj})", self.const(key), self.const(value)
                )
                fn.emit(f"(local.set {obj} {put})")
        for name, paths in sorted(children.items()):
            if name in doc and name not in merged:  # the data document's value wins
                for path in paths:
                    if len(path) == len(ref.path) + 1:
                        self.term_maybe(ir.RuleRef(path, ref.loc, (doc[name],)))
                continue
            if len(paths) == 1 and len(paths[0]) == len(ref.path) + 1:
                v = self.temp()
                put = self.call(
                    "a1_obj_put", f"(local.get {obj})", self.const(name), f"(local.get {v})"
                )
                fn.emit(
                    f"(local.set {v} {self.term_maybe(ir.RuleRef(paths[0], ref.loc))})",
                    f"(if (local.get {v}) (then (local.set {obj} {put})))",
                )
            else:
                sub = self._package(ir.PackageRef((*ref.path, name), ref.loc))
                fn.emit(
                    f"(local.set {obj} "
                    f"{self.call('a1_obj_put', f'(local.get {obj})', self.const(name), sub)})"
                )
        return f"(local.get {obj})"

    def _compr(self, term: ir.Compr) -> str:
        fn = self.fn
        acc = self.temp()
        new = {
            "array": self.call("a1_arr_new", "(i32.const 4)"),
            "set": self.call("a1_set_new"),
            "object": self.call("a1_obj_new"),
        }[term.kind]
        fn.emit(f"(local.set {acc} {new})")

        def on_success() -> None:
            head = self.term(term.head)
            if term.kind == "array":
                fn.emit(f"(local.set {acc} {self.call('a1_arr_push', f'(local.get {acc})', head)})")
            elif term.kind == "set":
                fn.emit(f"(local.set {acc} {self.call('a1_set_add', f'(local.get {acc})', head)})")
            else:
                value = self.term(term.value)  # type: ignore[arg-type]
                fn.emit(
                    f"(local.set {acc} "
                    f"{self.call('a1_obj_put', f'(local.get {acc})', head, value)})"
                )

        self.query(term.body, on_success, fn.bound)
        return f"(local.get {acc})"

    def _call(self, call: ir.Call) -> str:
        if call.func is not None:
            args, defined = self.operands(call.args)
            expr = f"(call $r{self.rule_ids[call.func]}{''.join(' ' + a for a in args)})"
            return self.guarded(expr, defined)
        name = call.name
        if name in IMPURE_BUILTINS:
            if not self._arity(call, IMPURE_BUILTINS[name]):
                return self._fail()
            self.host_time = True
            return self.call("a1_num", "(call $time_now_ns)")
        if name in PATTERN_BUILTINS:
            return self._pattern_call(call)
        if name not in BUILTINS:
            raise unsupported(call.loc, f"builtin function `{name}`")
        export, arity = BUILTINS[name]
        if not self._arity(call, arity):
            return self._fail()
        args, defined = self.operands(call.args)
        return self.guarded(self.call(export, *args), defined)

    @staticmethod
    def _arity(call: ir.Call, arity: int) -> bool:
        """regorus checks a builtin's arity when it evaluates the call."""
        return len(call.args) == arity

    def _fail(self) -> str:
        """An expression that raises a type error when evaluated (see ``ir.Fail``)."""
        return f"(block (result i32) {self.call('a1_fail', f'(i32.const {E_TYPE})')} (unreachable))"

    def _pattern_call(self, call: ir.Call) -> str:
        if not self._arity(call, PATTERN_BUILTINS[call.name]):
            return self._fail()
        first = call.args[0]
        if not isinstance(first, ir.Const) or not isinstance(first.value, str):
            raise unsupported(call.loc, f"{call.name} with a non-constant pattern")
        from policies.compiler import patterns  # build-time only

        try:
            if call.name == "regex.match":
                blob, fn_name, subject = (
                    patterns.compile_regex(first.value),
                    "a1_dfa_match",
                    call.args[1],
                )
            elif call.name == "glob.match":
                delims = call.args[1]
                if not isinstance(delims, ir.Const) or not (
                    delims.value is None or isinstance(delims.value, list)
                ):
                    raise unsupported(call.loc, "glob.match with non-constant delimiters")
                blob = patterns.compile_glob(first.value, delims.value)
                fn_name, subject = "a1_dfa_match", call.args[2]
            else:
                blob, fn_name, subject = (
                    patterns.compile_cidr(first.value),
                    "a1_cidr_match",
                    call.args[1],
                )
        except patterns.PatternError as err:
            raise CompileError(
                call.loc, "unsupported" if err.unsupported else "type", f"{call.name}: {err}"
            ) from None
        addr = self.pool.add_blob(blob)
        fn = self.fn
        (value,), defined = self.operands([subject])
        r, out = self.temp(), self.temp()
        steps = [
            f"(local.set {r} {self.call(fn_name, f'(i32.const {addr})', value)})",
            f"(if (i32.lt_s (local.get {r}) (i32.const 0)) (then "
            f"{self.call('a1_fail', f'(i32.const {E_TYPE})')}))",
            f"(local.set {out} {self.call('a1_bool', f'(local.get {r})')})",
        ]
        if defined is None:
            fn.emit(*steps)
        else:
            fn.emit(f"(local.set {out} (i32.const 0))", f"(if {defined} (then", *steps, "))")
        return f"(local.get {out})"


class _Unsafe(CompileError):
    """A variable read before anything binds it: maybe fine in another order."""


def _redefined(var: ir.Local) -> CompileError:
    return CompileError(var.loc, "type", f"var `{var.name}` used before definition below")


_UNDEFINED = ir.Const(None, ir.Loc("<undefined>", 1, 1))


def _lookup(doc: Any, path: tuple[str, ...]) -> tuple[Any] | None:
    """``(value,)`` at ``path`` in the data document, or None when there is none."""
    for key in path:
        if not (isinstance(doc, dict) and key in doc):
            return None
        doc = doc[key]
    return (doc,)


def _constant_value(rule: ir.Rule) -> ir.Const | None:
    """The value of a rule that is one unconditional constant (``x := 3``): inlined."""
    if rule.kind == "complete" and len(rule.defs) == 1:
        (definition,) = rule.defs
        if len(definition.bodies) == 1:
            (body,) = definition.bodies
            if not body.lits and isinstance(body.value, ir.Const):
                return body.value
    if rule.kind == "complete" and not rule.defs and isinstance(rule.default, ir.Const):
        return rule.default
    return None


def _wat_bytes(data: bytes) -> str:
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:02x}" for b in data
    )
