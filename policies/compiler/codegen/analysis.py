"""Analysis of a program before any code is emitted: which rules the entrypoints
reach (and which of them sit on a dependency cycle), which input paths they read
(the module's input slots), and whether the policy is pure (cacheable)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.compiler import ir
from policies.compiler.builtins import IMPURE_BUILTINS, host_builtin
from policies.compiler.errors import CompileError

# The root of an entrypoint that is always undefined (a function with arguments).
UNDEFINED = ir.Const(None, ir.Loc("<undefined>", 1, 1))


def entrypoint_roots(program: ir.Program, entrypoints: list[str]) -> list[ir.Term]:
    """The term each entrypoint (``a/b/c``) evaluates, resolved as regorus does."""
    roots: list[ir.Term] = []
    where = ir.Loc("<entrypoint>", 1, 1)
    for ep in entrypoints:
        path = tuple(p for p in ep.strip("/").split("/") if p)
        overridden = lookup(program.data, path) if path in program.rules else None
        if overridden is not None and program.rules[path].kind != "function":
            roots.append(ir.RuleRef(path, where, overridden))  # data wins, as in regorus
        elif overridden is not None:
            roots.append(ir.Const(overridden[0], where))
        elif path in program.rules and not is_value(program.rules[path]):
            roots.append(UNDEFINED)  # regorus: a function is not a value
        elif path in program.rules:
            roots.append(ir.RuleRef(path, where))
        elif path and any(p[: len(path)] == path for p in program.packages):
            roots.append(ir.PackageRef(path, where))
        else:
            raise CompileError(None, "type", f"entrypoint {ep!r} is neither a rule nor a package")
    return roots


def reachable(
    program: ir.Program, roots: list[ir.Term]
) -> tuple[set[ir.RulePath], set[ir.RulePath]]:
    """The rules ``roots`` depend on, and those of them on a dependency cycle."""
    todo: list[ir.RulePath] = []
    for root in roots:
        if isinstance(root, ir.RuleRef):
            todo.append(root.path)
        elif isinstance(root, ir.PackageRef):
            todo.extend(package_rules(program, root.path))
    seen: set[ir.RulePath] = set()
    recursive: set[ir.RulePath] = set()

    # Depth-first; every cycle has a back edge, whose rules get a guard that
    # fails at run time: regorus reports recursion only when it evaluates it.
    def visit(path: ir.RulePath, stack: list[ir.RulePath]) -> None:
        if path in stack:
            recursive.update(stack[stack.index(path) :])
            return
        if path in seen:
            return
        seen.add(path)
        for dep in sorted(rule_deps(program.rules[path], program)):
            visit(dep, [*stack, path])

    for path in todo:
        visit(path, [])
    return seen, recursive


def input_slots(program: ir.Program, rules: set[ir.RulePath]) -> list[tuple[str, ...]]:
    """The minimal set of input paths ``rules`` read (docs/policy-abi.md)."""
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
            paths.add(const_prefix(node.keys))
            visit(node.keys)
            return
        for name in node.__dataclass_fields__:
            visit(getattr(node, name))

    for path in rules:
        visit(program.rules[path].defs)
        visit(program.rules[path].default)
    return sorted(p for p in paths if not any(q != p and p[: len(q)] == q for q in paths))


def is_pure(program: ir.Program, rules: set[ir.RulePath]) -> bool:
    """Whether ``rules`` call no impure builtin (``time.now_ns``, an impure host builtin):
    decisions may be cached."""
    for path in rules:
        rule = program.rules[path]
        for n in walk_terms([rule.defs, rule.default]):
            if isinstance(n, ir.Call) and n.func is None:
                if IMPURE_BUILTINS.get(n.name) == len(n.args):
                    return False
                host = host_builtin(n.name)
                if host is not None and not host.pure:
                    return False
    return True


def const_prefix(keys: list[ir.Term]) -> tuple[str, ...]:
    """The leading constant string keys of a reference: ``input.a.b[x]`` -> (a, b)."""
    out: list[str] = []
    for k in keys:
        if isinstance(k, ir.Const) and isinstance(k.value, str):
            out.append(k.value)
        else:
            break
    return tuple(out)


def walk_terms(node: Any) -> Iterator[Any]:
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


def rule_deps(rule: ir.Rule, program: ir.Program) -> set[ir.RulePath]:
    deps: set[ir.RulePath] = set()
    for n in walk_terms([rule.defs, rule.default]):
        if isinstance(n, ir.RuleRef):
            deps.add(n.path)
        elif isinstance(n, (ir.Call, ir.MockFn)) and n.func is not None:
            deps.add(n.func)  # a call, or a function a `with` calls instead of another
        elif isinstance(n, ir.PackageRef):
            deps.update(package_rules(program, n.path))
    return deps


def mock_tables(
    program: ir.Program,
) -> tuple[list[tuple[str, ...]], dict[str, list[ir.MockFn]]]:
    """What the program's ``with`` statements replace: the data paths, and per function
    (``ir.call_key``) the functions that replace it, in a fixed order (each gets a mode)."""
    data: set[tuple[str, ...]] = set()
    funcs: dict[str, dict[tuple[str, tuple[str, ...] | None], ir.MockFn]] = {}
    for rule in program.rules.values():
        for n in walk_terms([rule.defs, rule.default]):
            if not isinstance(n, ir.With):
                continue
            if n.target[0] == "data":
                data.add(n.target[1:])
            elif n.target[0] == "function":
                reps = funcs.setdefault(n.target[1], {})
                if n.replacement is not None:
                    reps.setdefault((n.replacement.name, n.replacement.func), n.replacement)
    return sorted(data), {k: [v[r] for r in sorted(v, key=str)] for k, v in sorted(funcs.items())}


def package_rules(program: ir.Program, prefix: tuple[str, ...]) -> list[ir.RulePath]:
    """The rules under a package path that are documents (the package object's parts)."""
    return sorted(
        p
        for p, r in program.rules.items()
        if p[: len(prefix)] == prefix and len(p) > len(prefix) and is_value(r)
    )


def is_value(rule: ir.Rule) -> bool:
    """Rules that are documents: all but functions with arguments (regorus evaluates
    ``f()`` as a value, like a complete rule)."""
    return rule.kind != "function" or rule.arity == 0


def lookup(doc: Any, path: tuple[str, ...]) -> tuple[Any] | None:
    """``(value,)`` at ``path`` in the data document, or None when there is none."""
    for key in path:
        if not (isinstance(doc, dict) and key in doc):
            return None
        doc = doc[key]
    return (doc,)


def constant_value(rule: ir.Rule) -> ir.Const | None:
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
