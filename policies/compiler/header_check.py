"""Refuse at build time a decision that sets a header no policy may set.

The sidecar turns a decision's ``headers`` object into upstream request headers
and drops forbidden names at run time (``policies/headers.py`` holds the one
rule list: framing and hop-by-hop headers, ``host``, pseudo-headers,
``x-envoy-*``, the sidecar's own names, non-tokens). Here the compiler refuses
the policy where it can see such a name for certain, so the mistake shows at
``a1 policy build`` with its place instead of as a silently missing header.

Only what is certain is refused: a constant key (or constant value) of an object
that is the ``headers`` entry of an entrypoint's result, following rule
references, partial object rules, packages and body-local variables bound to a
term. Anything computed (input, calls, comprehensions) is left to the sidecar.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from policies.compiler import ir
from policies.compiler.errors import CompileError
from policies.headers import forbidden_header_reason, header_value_reason

_MAX_STEPS = 10_000  # bound the walk on any program: forms visited per entrypoint
_MAX_DEPTH = 64  # references followed from one term (x = y, y = x must end)

Env = dict[str, list[ir.Term]]
Item = tuple[ir.Term, ir.Term, Env]


def check_decision_headers(program: ir.Program, entrypoints: Sequence[str]) -> None:
    """Raise ``CompileError`` (exit 2) at the first forbidden header an entrypoint sets."""
    where = ir.Loc("<entrypoint>", 1, 1)
    for ep in entrypoints:
        path = tuple(p for p in ep.strip("/").split("/") if p)
        root: ir.Term
        if path in program.rules:
            root = ir.RuleRef(path, where)
        elif path and any(p[: len(path)] == path for p in program.packages):
            root = ir.PackageRef(path, where)
        else:
            continue  # code generation reports an unknown entrypoint
        _Walker(program).result(root)


class _Walker:
    def __init__(self, program: ir.Program) -> None:
        self.program = program
        self.steps = 0
        self.active: set[ir.RulePath] = set()

    def result(self, root: ir.Term) -> None:
        for key, value, env in self._items(root, {}):
            if "headers" in self._consts(key, env):
                self._headers(value, env)

    def _headers(self, term: ir.Term, env: Env) -> None:
        for key, value, item_env in self._items(term, env):
            for name, loc in self._const_locs(key, item_env):
                if not isinstance(name, str):
                    continue
                reason = forbidden_header_reason(name)
                if reason is not None:
                    raise CompileError(loc, "type", f"decision sets a forbidden header: {reason}")
                for v, vloc in self._const_locs(value, item_env):
                    bad = isinstance(v, str) and header_value_reason(v)
                    if bad:
                        raise CompileError(vloc, "type", f"decision header {name!r}: {bad}")

    # -------------------------------------------------------------- resolution

    def _forms(
        self, term: ir.Term | None, env: Env, depth: int = 0
    ) -> Iterator[tuple[ir.Term, Env]]:
        """The terms ``term`` may evaluate to, as far as they are visible: constants,
        object literals (partial object rules and packages become object literals)."""
        self.steps += 1
        if term is None or self.steps > _MAX_STEPS or depth > _MAX_DEPTH:
            return
        if isinstance(term, (ir.Const, ir.ObjectLit)):
            yield term, env
        elif isinstance(term, ir.Local):
            for bound in env.get(term.name, ()):
                yield from self._forms(bound, env, depth + 1)
        elif isinstance(term, ir.RuleRef):
            yield from self._rule(term.path, depth + 1)
        elif isinstance(term, ir.PackageRef):
            n = len(term.path)
            items: list[tuple[ir.Term, ir.Term]] = [
                (ir.Const(p[n], term.loc), ir.RuleRef(p, term.loc))
                for p in self.program.rules
                if len(p) == n + 1 and p[:n] == term.path
            ]
            yield ir.ObjectLit(items, term.loc), {}

    def _rule(self, path: ir.RulePath, depth: int) -> Iterator[tuple[ir.Term, Env]]:
        rule = self.program.rules.get(path)
        if rule is None or path in self.active or rule.kind not in ("complete", "object"):
            return
        self.active.add(path)
        try:
            if rule.default is not None:
                yield from self._forms(rule.default, {}, depth)
            for definition in rule.defs:
                for body in definition.bodies:
                    env = _bindings(body.lits)
                    if rule.kind == "object" and body.key is not None and body.value is not None:
                        loc = body.loc or rule.loc
                        yield ir.ObjectLit([(body.key, body.value)], loc), env
                    elif rule.kind == "complete":
                        yield from self._forms(body.value, env, depth)
        finally:
            self.active.discard(path)

    def _items(self, term: ir.Term, env: Env) -> Iterator[Item]:
        """(key, value, env) of every object ``term`` may be."""
        for form, form_env in self._forms(term, env):
            if isinstance(form, ir.ObjectLit):
                for key, value in form.items:
                    yield key, value, form_env
            elif isinstance(form, ir.Const) and isinstance(form.value, dict):
                for k, v in form.value.items():
                    loc = self._key_loc(form.loc, k)
                    yield ir.Const(k, loc), ir.Const(v, loc), {}

    def _consts(self, term: ir.Term, env: Env) -> list[Any]:
        return [value for value, _ in self._const_locs(term, env)]

    def _const_locs(self, term: ir.Term, env: Env) -> list[tuple[Any, ir.Loc]]:
        return [(f.value, f.loc) for f, _ in self._forms(term, env) if isinstance(f, ir.Const)]

    def _key_loc(self, loc: ir.Loc, key: Any) -> ir.Loc:
        """Where a constant-folded object literal spells ``key``; else the literal itself."""
        text = self.program.sources.get(loc.file)
        if text is None or not isinstance(key, str):
            return loc
        lines = text.split("\n")
        if not 1 <= loc.line <= len(lines):
            return loc
        start = sum(len(line) + 1 for line in lines[: loc.line - 1]) + loc.col - 1
        found = [i for q in ('"', "`") if (i := text.find(f"{q}{key}{q}", start)) >= 0]
        if not found:
            return loc
        return ir.Loc.at(loc.file, text, min(found))


def _bindings(lits: list[ir.Lit]) -> Env:
    """Body-local variables bound by ``x := t`` / ``x = t`` / ``t = x`` at the top level."""
    env: Env = {}
    for lit in lits:
        if isinstance(lit, ir.AssignLit) and not lit.withs:
            if isinstance(lit.lhs, ir.Local):
                env.setdefault(lit.lhs.name, []).append(lit.rhs)
            elif isinstance(lit.rhs, ir.Local) and not lit.declare:
                env.setdefault(lit.rhs.name, []).append(lit.lhs)
    return env
