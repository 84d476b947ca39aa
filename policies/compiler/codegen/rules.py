"""Rules and the module: one wasm function per reachable rule (memoised per
evaluation, guarded when on a dependency cycle), the ``a1_eval`` export that
dispatches on the entrypoint, and the module text around them."""

from __future__ import annotations

from dataclasses import dataclass

from policies.compiler import ir
from policies.compiler.codegen import analysis
from policies.compiler.codegen.abi import (
    CONST_BASE,
    E_CONFLICT,
    E_INTERNAL,
    E_TYPE,
    HOST_CALL,
    TAG_OBJECT,
    wat_bytes,
)
from policies.compiler.codegen.analysis import UNDEFINED
from policies.compiler.codegen.emitter import Unsafe
from policies.compiler.codegen.queries import QueryEmitter
from policies.compiler.codegen.terms import WALK_FUNCTION, TermEmitter
from policies.compiler.errors import CompileError


@dataclass
class Module:
    wat: str
    entrypoints: list[str]
    input_paths: list[tuple[str, ...]]
    pure: bool
    host_builtins: list[str]


class Generator(QueryEmitter, TermEmitter):
    def module(self, entrypoints: list[str]) -> Module:
        """Analyse, then emit: the rules the entrypoints reach, then ``a1_eval``."""
        roots = analysis.entrypoint_roots(self.program, entrypoints)
        reachable, self.recursive = analysis.reachable(self.program, roots)
        self.slots = analysis.input_slots(self.program, reachable)
        self.pure = analysis.is_pure(self.program, reachable)
        self.data_mocks, self.func_mocks = analysis.mock_tables(self.program)
        for i, path in enumerate(sorted(reachable)):
            self.rule_ids[path] = i
        for path in sorted(reachable):
            self._rule_function(self.program.rules[path])
        self._eval_function(roots)
        self._check_unreachable(reachable)
        wat = self._assemble()
        return Module(wat, list(entrypoints), self.slots, self.pure, list(self.host_names))

    def _check_unreachable(self, reachable: set[ir.RulePath]) -> None:
        """regorus rejects a program with an unsafe variable in any rule, reached
        or not: generate the other rules too (and throw the code away) to find them."""
        others = sorted(set(self.program.rules) - reachable)
        if not others:
            return
        scratch = Generator(self.program)
        scratch.slots = [()]
        scratch.scratch = True
        scratch.data_mocks, scratch.func_mocks = self.data_mocks, self.func_mocks
        scratch.rule_ids = {p: i for i, p in enumerate(sorted(self.program.rules))}
        for path in others:
            try:
                scratch._rule_function(self.program.rules[path])
            except CompileError as err:
                if err.kind != "unsupported":
                    raise

    def _assemble(self) -> str:
        data = self.pool.data()
        input_base = (CONST_BASE + len(data) + 7) & ~7
        out = ["(module"]
        pages = (input_base + 0xFFFF) // 0x10000 + 1
        out.append(f'  (import "env" "memory" (memory {pages}))')
        if not self.pure:
            out.append('  (import "env" "time_now_ns" (func $time_now_ns (result i64)))')
        if self.host_names:
            out.append(
                f'  (import "env" "{HOST_CALL}" (func ${HOST_CALL} (param i32 i32) (result i32)))'
            )
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
        for i in range(len(self.data_mocks)):
            out.append(f"  (global $dm{i} (mut i32) (i32.const 0))")
        for j in range(len(self.func_mocks)):
            out.append(f"  (global $fm{j} (mut i32) (i32.const 0))")
            out.append(f"  (global $fv{j} (mut i32) (i32.const 0))")
        for path in sorted(self.recursive):  # in progress: the epoch it started in
            out.append(f"  (global $p{self.rule_ids[path]} (mut i32) (i32.const 0))")
        if data:
            out.append(f'  (data (i32.const {CONST_BASE}) "{wat_bytes(data)}")')
        out.extend(self.functions)
        if self.walk_used:
            out.append(WALK_FUNCTION)
        out.append(")")
        return "\n".join(out)

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

        elif rule.kind == "tree" and rule.skeleton is not None:
            fn.emit(f"(local.set {res} {self.const(rule.skeleton)})")
        for definition in rule.defs:
            self._definition(rule, definition, res)
        if rule.kind == "tree" and rule.soft_skeleton is not None:
            # A partial object's path is an object, unless a value sits there.
            skeleton = self.const(rule.soft_skeleton)
            union = self.call("a1_b_object_union", skeleton, f"(local.get {res})")
            is_obj = (
                f"(i32.eq {self.call('a1_tag', f'(local.get {res})')} (i32.const {TAG_OBJECT}))"
            )
            fn.emit(
                f"(if (i32.eqz (local.get {res})) (then (local.set {res} {skeleton}))",
                f"  (else (if {is_obj} (then (local.set {res} {union})))))",
            )
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
            if rule.kind == "tree":
                operands = [*(body.keys or []), body.value]
                *keys, value = self.terms(operands)  # type: ignore[arg-type]
                fn.emit(f"(local.set {hit} (i32.const 1))")
                self._tree_put(res, keys, value)
                if body.first_only or all(isinstance(t, ir.Const) for t in operands):
                    fn.emit(f"(br {chain_done})")
                return
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
            except Unsafe:
                self._rewind(mark)
                self.fn.emit(f"(drop {self._fail()})")

        self.query(body.lits, on_success, bound, scope)

    def _tree_put(self, res: str, keys: list[str], value: str) -> None:
        """Put ``value`` at ``keys`` in the object a ``tree`` rule builds.

        As in regorus, a value may not sit where another rule put a different
        value, above one (a prefix of its keys holds a value) or below one (a
        value is already inside it): each is a conflict. The paths that hold
        values are kept in a set beside the object, so a value that is itself
        an object is never extended by a longer path.
        """
        fn = self.fn
        leaves = self._tree_leaves(res)
        conflict = self.call("a1_fail", f"(i32.const {E_CONFLICT})")

        def path(n: int) -> str:
            arr = self.temp()
            fn.emit(f"(local.set {arr} {self.call('a1_arr_new', f'(i32.const {max(n, 1)})')})")
            for k in keys[:n]:
                fn.emit(f"(local.set {arr} {self.call('a1_arr_push', f'(local.get {arr})', k)})")
            return f"(local.get {arr})"

        for n in range(len(keys)):
            held = self.call("a1_get", f"(local.get {leaves})", path(n))
            fn.emit(f"(if {held} (then {conflict}))")
        cur = self.temp()
        fn.emit(f"(local.set {cur} (local.get {res}))")
        for k in keys:
            fn.emit(f"(local.set {cur} {self.call('a1_get', f'(local.get {cur})', k)})")
        full = path(len(keys))
        nested = self.temp()
        fn.emit(f"(local.set {nested} {value})")
        for k in reversed(keys):
            put = self.call("a1_obj_put", self.call("a1_obj_new"), k, f"(local.get {nested})")
            fn.emit(f"(local.set {nested} {put})")
        held = self.call("a1_get", f"(local.get {leaves})", full)
        same = self.call("a1_eq", f"(local.get {cur})", value)
        union = self.call("a1_b_object_union", f"(local.get {res})", f"(local.get {nested})")
        add_leaf = self.call("a1_set_add", f"(local.get {leaves})", full)
        fn.emit(
            f"(if (local.get {cur})",
            f"  (then (if (i32.or (i32.eqz {held}) (i32.eqz {same})) (then {conflict})))",
            f"  (else (local.set {leaves} {add_leaf})",
            f"    (local.set {res} (if (result i32) (local.get {res}) (then {union})"
            f" (else (local.get {nested}))))))",
        )

    def _tree_leaves(self, res: str) -> str:
        """The set of paths holding values beside ``res`` (one per rule function)."""
        name = f"{res}_leaves"
        if name not in self.fn.locals:
            self.fn.locals[name] = "i32"
            self.fn.lines.insert(0, f"(local.set {name} {self.call('a1_set_new')})")
        return name

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
            value = "(i32.const 0)" if root is UNDEFINED else self.term_maybe(root)
            fn.lines.append(f"(local.set $r {value})")
            fn.emit(f"(br {done})))")
        fn.emit(self.call("a1_fail", f"(i32.const {E_INTERNAL})"), "end")
        header = (
            '(func $a1_eval (export "a1_eval") (param $entry i32) (param $len i32) (result i32)'
        )
        self._finish(header, "(local.get $r)")
