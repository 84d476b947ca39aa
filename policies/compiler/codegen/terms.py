"""Terms: values, references (input slots, rules, packages, data), operators,
collections, comprehensions and calls. Every value is a pointer into linear
memory; 0 means undefined. Queries come from ``QueryEmitter``, which the
generator also is.
"""

from __future__ import annotations

from typing import Any

from policies.compiler import ir
from policies.compiler.builtins import (
    BUILTINS,
    IMPURE_BUILTINS,
    PATTERN_BUILTINS,
    HostBuiltin,
    host_builtin,
)
from policies.compiler.codegen.abi import BINOPS, CMP_OPS, E_HOST, E_TYPE, HOST_CALL, HOST_ERROR
from policies.compiler.codegen.analysis import const_prefix, constant_value, lookup, package_rules
from policies.compiler.codegen.emitter import Emitter, Unsafe
from policies.compiler.errors import CompileError, unsupported


class TermEmitter(Emitter):
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
                raise Unsafe(term.loc, term.name)
            return f"(local.get {self.var(term.name)})"
        if isinstance(term, ir.InputRoot):
            return self._slot(())[0]
        if isinstance(term, ir.DataRoot):
            raise unsupported(term.loc, "reference to the whole `data` document")
        if isinstance(term, ir.Ref):
            return self._ref(term)
        if isinstance(term, ir.RuleRef):
            rule_ref = term
            return self.data_mocked(term.path, lambda: self._rule_value(rule_ref))
        if isinstance(term, ir.PackageRef):
            package = term
            return self.data_mocked(term.path, lambda: self._package(package))
        if isinstance(term, ir.DataDoc):
            doc = term
            return self.data_mocked(
                term.path,
                lambda: "(i32.const 0)" if doc.value is None else self.const(doc.value[0]),
            )
        if isinstance(term, ir.Fail):
            if term.refused is not None and not self.scratch:
                raise unsupported(term.loc, term.refused)
            _, defined = self.operands(term.args)  # an undefined argument: no call at all
            return self.guarded(self._fail(), defined)
        if isinstance(term, ir.Call):
            return self._call(term)
        if isinstance(term, ir.BinOp):
            values, defined = self.operands([term.lhs, term.rhs])
            return self.guarded(self.call(BINOPS[term.op], *values), defined)
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

    def _rule_value(self, term: ir.RuleRef) -> str:
        rule = self.program.rules[term.path]
        if rule.kind == "function" and rule.arity:
            return self._fail()  # regorus: a function used as a value, once evaluated
        if rule.kind == "function" and len(rule.defs) > 1:
            # regorus merges the objects several definitions produce.
            raise unsupported(
                term.loc, f"`{'.'.join(term.path)}()` with several definitions as a value"
            )
        constant = constant_value(rule)
        if term.override is not None:
            if constant is None:  # evaluated for its errors; the data's value wins
                self.fn.emit(f"(drop (call $r{self.rule_ids[term.path]}))")
            return self.const(term.override[0])
        if constant is not None:
            return self.const(constant.value)
        return f"(call $r{self.rule_ids[term.path]})"

    def compare(self, term: ir.Compare) -> str:
        """A test of ``term`` for a condition: backtracks when an operand is undefined."""
        return self._compare_values(term.op, self.terms([term.lhs, term.rhs]))

    def _compare_values(self, op: str, values: list[str]) -> str:
        lhs, rhs = values
        if op == "==":
            return self.call("a1_eq", lhs, rhs)
        if op == "!=":
            return f"(i32.eqz {self.call('a1_eq', lhs, rhs)})"
        return self.call("a1_cmp_op", f"(i32.const {CMP_OPS[op]})", lhs, rhs)

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
            prefix = const_prefix(keys)
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
        found = lookup(self.program.data, ref.path)
        doc = found[0] if found is not None and isinstance(found[0], dict) else {}
        children: dict[str, list[ir.RulePath]] = {}
        for path in package_rules(self.program, ref.path):
            children.setdefault(path[len(ref.path)], []).append(path)
        for path in self.program.rules:  # a level holding only functions: {} (regorus)
            if path[: len(ref.path)] == ref.path and len(path) > len(ref.path) + 1:
                children.setdefault(path[len(ref.path)], [])
        merged = {  # subpackages whose data is an object: merged below
            name
            for name, paths in children.items()
            if isinstance(doc.get(name), dict) and (not paths or len(paths[0]) > len(ref.path) + 1)
        }
        for key, value in sorted(doc.items()):
            if key not in merged:
                put = self.call(
                    "a1_obj_put", f"(local.get {obj})", self.const(key), self.const(value)
                )
                fn.emit(f"(local.set {obj} {put})")
        for name, paths in sorted(children.items()):
            if name in doc and name not in merged:  # the data document's value wins
                for path in paths:  # ... but the rules still run, for their errors
                    if len(path) == len(ref.path) + 1:
                        self.term_maybe(ir.RuleRef(path, ref.loc, (doc[name],)))
                    else:
                        self.fn.emit(f"(drop {self.term_maybe(ir.RuleRef(path, ref.loc))})")
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

    def _call(self, call: ir.Call, *, mockable: bool = True) -> str:
        if mockable and ir.call_key(call) in self.func_mocks:
            return self._mocked_call(call)
        if call.func is not None:
            args, defined = self.operands(call.args)
            expr = f"(call $r{self.rule_ids[call.func]}{''.join(' ' + a for a in args)})"
            return self.guarded(expr, defined)
        name = call.name
        if name == "walk":  # the front end makes only `walk(x, out)` one (iterating)
            if not self._arity(call, 1):
                return self._fail()
            (value,), defined = self.operands(call.args)
            self.walk_used = True
            for export in _WALK_IMPORTS:
                self.imports.add(export)
            start = "(call $a1_arr_new (i32.const 4))"
            return self.guarded(f"(call $a1w_walk {start} {value} {start})", defined)
        if name in IMPURE_BUILTINS:
            if not self._arity(call, IMPURE_BUILTINS[name]):
                return self._fail()
            return self.call("a1_int", "(call $time_now_ns)")
        if name in PATTERN_BUILTINS and (_constant_pattern(call) or host_builtin(name) is None):
            return self._pattern_call(call)
        if name in BUILTINS:
            export, arity = BUILTINS[name]
            if not self._arity(call, arity):
                return self._fail()
            args, defined = self.operands(call.args)
            return self.guarded(self.call(export, *args), defined)
        host = host_builtin(name)
        if host is None:
            raise unsupported(call.loc, f"builtin function `{name}`")
        return self._host_call(call, host)

    def _mocked_call(self, call: ir.Call) -> str:
        """A call of a function some ``with`` replaces: the arguments once, then the
        function itself, the value, or a replacement, as the ``with`` in force says.

        A replacement runs as OPA and regorus run it: with no function replaced (it
        may call the original), in a memo epoch of its own."""
        fn = self.fn
        key = ir.call_key(call)
        j = list(self.func_mocks).index(key)
        args: list[ir.Term] = []
        for arg in call.args:
            if isinstance(arg, ir.Const):
                args.append(arg)  # constant patterns stay constant
                continue
            t = self.temp()
            fn.emit(f"(local.set {t} {self.term_maybe(arg)})")
            name = f"$mock{t[2:]}"
            fn.renames[name] = t
            fn.bound.add(name)
            args.append(ir.Local(name, arg.loc))
        plain = ir.Call(call.name, args, call.loc, call.func)
        out = self.temp()
        mode = f"(global.get $fm{j})"
        fn.emit(f"(local.set {out} (i32.const 0))")
        self.branch(f"(i32.eqz {mode})", out, lambda: self._call(plain, mockable=False))

        def value() -> str:
            _, defined = self.operands(args)
            return self.guarded(f"(global.get $fv{j})", defined)

        self.branch(f"(i32.eq {mode} (i32.const 1))", out, value)
        for n, rep in enumerate(self.func_mocks[key]):
            self.branch(
                f"(i32.eq {mode} (i32.const {2 + n}))",
                out,
                lambda rep=rep: self._replaced(rep, args, call.loc),
            )
        return f"(local.get {out})"

    def _replaced(self, rep: ir.MockFn, args: list[ir.Term], loc: ir.Loc) -> str:
        """A call of the replacement ``rep``, with every function mock off meanwhile."""
        fn = self.fn
        saved = [self.temp() for _ in self.func_mocks]
        for j, t in enumerate(saved):
            fn.emit(f"(local.set {t} (global.get $fm{j}))", f"(global.set $fm{j} (i32.const 0))")
        epoch = self.enter_epoch()
        term: ir.Term
        if rep.func is not None:
            arity = self.program.rules[rep.func].arity
            if arity != len(args):
                message = f"mismatch in number of arguments. supplied {len(args)}, expected {arity}"
                term = ir.Fail(message, loc, args)
            else:
                term = ir.Call(rep.name, args, loc, rep.func)
        else:
            term = ir.Call(rep.name, args, loc)
        out = self.temp()
        value = (
            self._call(term, mockable=False) if isinstance(term, ir.Call) else self.term_maybe(term)
        )
        fn.emit(f"(local.set {out} {value})")
        self.leave_epoch(epoch)
        for j, t in enumerate(saved):
            fn.emit(f"(global.set $fm{j} (local.get {t}))")
        return f"(local.get {out})"

    def _host_call(self, call: ir.Call, host: HostBuiltin) -> str:
        """The arguments in an array, then ``env.a1_host_call(index, array)``: the
        host traps the evaluation (``E_HOST``) when the builtin refuses them."""
        if not self._arity(call, host.arity):
            return self._fail()
        args, defined = self.operands(call.args)
        if host.name not in self.host_names:
            self.host_names.append(host.name)
        index = self.host_names.index(host.name)
        arr, out = self.temp(), self.temp()
        steps = [f"(local.set {arr} {self.call('a1_arr_new', f'(i32.const {len(args)})')})"]
        steps += [
            f"(local.set {arr} {self.call('a1_arr_push', f'(local.get {arr})', a)})" for a in args
        ]
        steps += [
            f"(local.set {out} (call ${HOST_CALL} (i32.const {index}) (local.get {arr})))",
            f"(if (i32.eq (local.get {out}) (i32.const {HOST_ERROR})) (then "
            f"{self.call('a1_fail', f'(i32.const {E_HOST})')}))",
        ]
        if defined is None:
            self.fn.emit(*steps)
        else:
            self.fn.emit(f"(local.set {out} (i32.const 0))", f"(if {defined} (then", *steps, "))")
        return f"(local.get {out})"

    @staticmethod
    def _arity(call: ir.Call, arity: int) -> bool:
        """regorus checks a builtin's arity when it evaluates the call."""
        return len(call.args) == arity

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
            host = host_builtin(call.name)
            if err.unsupported and host is not None:
                # Past what the automata do ((?i), \b, a huge DFA): the host's RE2 runs it.
                return self._host_call(call, host)
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


_WALK_IMPORTS = (
    "a1_arr_new",
    "a1_arr_push",
    "a1_len",
    "a1_key_at",
    "a1_val_at",
    "a1_b_array_concat",
)

WALK_FUNCTION = """\
  (func $a1w_walk (param $path i32) (param $v i32) (param $out i32) (result i32)
    ;; walk(x): every [path, value] pair below $v, depth first, children in Rego's order
    (local $pair i32) (local $n i32) (local $i i32) (local $key i32)
    (local.set $pair (call $a1_arr_push (call $a1_arr_push (call $a1_arr_new (i32.const 2))
      (local.get $path)) (local.get $v)))
    (local.set $out (call $a1_arr_push (local.get $out) (local.get $pair)))
    (local.set $n (call $a1_len (local.get $v)))
    (local.set $i (i32.const 0))
    (block $done
      (loop $next
        (br_if $done (i32.ge_s (local.get $i) (local.get $n)))
        (local.set $key (call $a1_arr_push (call $a1_arr_new (i32.const 1))
          (call $a1_key_at (local.get $v) (local.get $i))))
        (local.set $out (call $a1w_walk
          (call $a1_b_array_concat (local.get $path) (local.get $key))
          (call $a1_val_at (local.get $v) (local.get $i))
          (local.get $out)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $out))"""


def _constant_pattern(call: ir.Call) -> bool:
    """Whether a pattern builtin's pattern (and glob delimiters) are known at build
    time: then it compiles to an automaton, else it is a host call."""
    first = call.args[0] if call.args else None
    if not isinstance(first, ir.Const) or not isinstance(first.value, str):
        return False
    if call.name == "glob.match" and len(call.args) > 1:
        delims = call.args[1]
        return isinstance(delims, ir.Const) and (
            delims.value is None or isinstance(delims.value, list)
        )
    return True
