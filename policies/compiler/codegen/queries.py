"""Queries: literals in a scheduled order, unification and destructuring,
iteration, ``not``, ``every`` and ``with``.

A query is straight-line code with one structured loop per iteration point: each
literal falls through on success or branches to the innermost backtrack label,
the enclosing loop's "next element" (or the query's end when nothing iterates).
Terms come from ``TermEmitter``, which the generator also is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from policies.compiler import ir
from policies.compiler.codegen.abi import E_TYPE, TAG_ARRAY, TAG_OBJECT
from policies.compiler.codegen.emitter import Emitter, Unsafe, redefined
from policies.compiler.errors import CompileError, unsupported


class QueryEmitter(Emitter):
    def _schedule(self, lits: list[ir.Lit]) -> None:
        """Emit ``lits`` in an order where every variable is bound before it is read.

        Like regorus's scheduler (and OPA's safety reordering): the first literal,
        in source order, that compiles with the variables bound so far goes next.
        When none does, the first one left reports its unsafe variable. A literal
        is tried again only once the variable it missed is bound, which keeps a
        long body in reverse order linear rather than quadratic in trials.
        """
        pending = list(lits)
        waits: dict[int, str] = {}  # id(literal) -> the variable it last missed
        while pending:
            for i, lit in enumerate(pending):
                missed = waits.get(id(lit))
                if missed is not None and missed not in self.fn.bound:
                    continue
                mark = self._mark()
                try:
                    self.literal(lit)
                except Unsafe as err:
                    self._rewind(mark)
                    waits[id(lit)] = err.name
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
        if isinstance(lit, (ir.ExprLit, ir.AssignLit, ir.SomeInLit)) and lit.withs:
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
                    raise redefined(var)
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

    def assign(self, lit: ir.AssignLit) -> None:
        fn = self.fn
        lhs, rhs = lit.lhs, lit.rhs
        if lit.declare:
            for var in self._pattern_locals(lhs):
                if var.name in fn.scope:
                    raise redefined(var)
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
                    f"(local.set {got} {self.call('a1_get', f'(local.get {v})', self.term(key))})",
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
        self._schedule(lit.body)
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
        self._schedule(lit.body)
        fn.emit(f"(br {nxt})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end", f"(br {outer})", "end", "end")
        fn.closers, fn.bound, fn.renames, fn.scope = *saved, saved_scope
        fn.fail = outer

    def _with(self, lit: ir.ExprLit | ir.AssignLit | ir.SomeInLit) -> None:
        """Evaluate ``lit`` with what its ``with`` statements replace, then restore.

        Every value is evaluated first, in the outer state. The literal runs in a
        memo epoch of its own, so no rule answers with a value computed under other
        replacements. When it iterates, its solutions (the variables it binds) are
        collected under the replacements and iterated after they are undone.
        """
        fn = self.fn
        outer = fn.fail
        sets: list[tuple[str, str]] = []  # (global, value) in order
        if any(w.target[0] == "input" for w in lit.withs):
            sets.append(("$slots", self._with_input(lit.withs)))
        for w in lit.withs:
            if w.target[0] == "data":
                i = self.data_mocks.index(w.target[1:])
                sets.append((f"$dm{i}", self._value_local(w.value)))  # type: ignore[arg-type]
            elif w.target[0] == "function":
                j = list(self.func_mocks).index(w.target[1])
                if w.replacement is None:
                    sets.append((f"$fv{j}", self._value_local(w.value)))  # type: ignore[arg-type]
                    sets.append((f"$fm{j}", "(i32.const 1)"))
                else:
                    reps = self.func_mocks[w.target[1]]
                    n = next(
                        n
                        for n, r in enumerate(reps)
                        if (r.name, r.func) == (w.replacement.name, w.replacement.func)
                    )
                    sets.append((f"$fm{j}", f"(i32.const {2 + n})"))
        saved: dict[str, str] = {}
        for name, _ in sets:
            if name not in saved:
                saved[name] = self.temp()
                fn.emit(f"(local.set {saved[name]} (global.get {name}))")

        def restore() -> None:
            for name, t in saved.items():
                fn.emit(f"(global.set {name} (local.get {t}))")

        for name, value in sets:
            fn.emit(f"(global.set {name} {value})")
        epoch = self.enter_epoch()
        ok, acc = self.temp(), self.temp()
        fn.emit(f"(local.set {ok} (i32.const 0))")
        end = self.label("with")
        fn.emit(f"block {end}")
        saved_closers, bound_before = fn.closers, set(fn.bound)
        fn.fail, fn.closers = end, []
        plain = dataclasses.replace(lit, withs=[])
        start = len(fn.lines)
        self.literal(plain)
        iterates = bool(fn.closers)
        names = sorted(fn.bound - bound_before)
        if iterates:
            # all solutions: each one's bindings pushed to an array
            fn.lines.insert(start, f"(local.set {acc} {self.call('a1_arr_new', '(i32.const 4)')})")
            row = self.temp()
            fn.emit(
                f"(local.set {row} {self.call('a1_arr_new', f'(i32.const {max(len(names), 1)})')})"
            )
            for name in names:
                push = self.call(
                    "a1_arr_push", f"(local.get {row})", f"(local.get {self.var(name)})"
                )
                fn.emit(f"(local.set {row} {push})")
            push = self.call("a1_arr_push", f"(local.get {acc})", f"(local.get {row})")
            fn.emit(f"(local.set {acc} {push})", f"(br {fn.fail})")
        else:
            fn.emit(f"(local.set {ok} (i32.const 1))", f"(br {end})")
        for closer in reversed(fn.closers):
            fn.emit(*closer)
        fn.emit("end")
        fn.closers, fn.fail = saved_closers, outer
        restore()
        self.leave_epoch(epoch)
        if not iterates:
            fn.emit(f"(br_if {outer} (i32.eqz (local.get {ok})))")
            return
        _, row = self.iterate(f"(local.get {acc})")
        for i, name in enumerate(names):
            value = self.call("a1_val_at", f"(local.get {row})", f"(i32.const {i})")
            fn.emit(f"(local.set {self.var(name)} {value})")

    def _value_local(self, term: ir.Term) -> str:
        t = self.temp()
        self.fn.emit(f"(local.set {t} {self.term(term)})")
        return f"(local.get {t})"

    def _with_input(self, withs: list[ir.With]) -> str:
        """A copy of the input slot table with ``with input…`` applied, in order."""
        fn = self.fn
        slots = self.temp()
        size = f"(i32.const {max(4, 4 * len(self.slots))})"
        fn.emit(f"(local.set {slots} {self.call('a1_alloc', size)})")
        for idx in range(len(self.slots)):
            fn.emit(
                f"(i32.store offset={4 * idx} (local.get {slots}) "
                f"(i32.load offset={4 * idx} (global.get $slots)))"
            )
        for w in withs:
            if w.target[0] != "input":
                continue
            target = w.target[1:]
            value = self._value_local(w.value)  # type: ignore[arg-type]
            for idx, slot in enumerate(self.slots):
                current = f"(i32.load offset={4 * idx} (local.get {slots}))"
                if slot[: len(target)] == target:
                    v = self.get_path(value, slot[len(target) :])
                elif target[: len(slot)] == slot:
                    # part of a document the policy reads whole: put into a copy of it
                    v = self.set_path(current, target[len(slot) :], value)
                else:
                    continue
                fn.emit(f"(i32.store offset={4 * idx} (local.get {slots}) {v})")
        return f"(local.get {slots})"
