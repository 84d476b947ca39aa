"""Front end: Rego source → regorus AST (JSON) → IR with names resolved.

regorus parses (we never write a Rego parser); this module only walks its AST.
The AST's JSON shape is not a stable API, which is why the regorus version is
pinned exactly in pyproject.toml.
"""

from __future__ import annotations

import decimal
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import regorus

from policies.compiler import ir
from policies.compiler.builtins import (
    BUILTINS,
    IMPURE_BUILTINS,
    PATTERN_BUILTINS,
    host_builtin,
    known_builtin,
)
from policies.compiler.codegen.analysis import const_prefix
from policies.compiler.errors import CompileError, from_regorus, unsupported
from policies.compiler.limits import check_rego, check_value, exact_range
from policies.compiler.respell import Respelled, respell
from policies.runtime.values import MAX_EXACT_INT, RegoSet

_ARITH = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Mod": "%"}
_BOOL = {"Eq": "==", "Ne": "!=", "Lt": "<", "Le": "<=", "Gt": ">", "Ge": ">="}
_SETOP = {"Union": "|", "Intersection": "&"}
_IGNORED_IMPORTS = {("rego", "v1"), ("future", "keywords")}


def parse_sources(sources: Mapping[str, str], data: Any = None) -> ir.Program:
    """Parse every module with regorus, then lower all of them to one IR program.

    The nesting limits come first: regorus's parse time doubles with each
    level of some brackets, and deep values overflow recursive walkers.
    """
    for name, text in sources.items():
        check_rego(name, text)
    check_value("data document", data)
    modules = []
    for name, text in sources.items():
        spelled = respell(text, name)
        engine = regorus.Engine()
        try:
            engine.add_policy(name, spelled.text)
            asts = json.loads(engine.get_ast_as_json())
        except RuntimeError as err:
            error = from_regorus(str(err), name)
            if error.loc is not None and error.loc.file == name:
                error = CompileError(
                    ir.Loc(name, *spelled.old_line_col(error.loc.line, error.loc.col)),
                    error.kind,
                    error.message,
                )
            if "cannot parse number" in error.message and error.loc is not None:
                raise _number_refused(text, error) from None
            if "maximum column width" in error.message:
                # regorus's own limit, on a line re-spelling could not shorten
                raise unsupported(error.loc, f"a line this long ({error.message})") from None
            if "keyword is required" in error.message and _parses_as_v0(name, spelled.text):
                # Valid Rego, just not the v1 syntax this compiler takes: refused, not wrong.
                raise unsupported(error.loc, f"Rego v0 syntax ({error.message})") from None
            raise error from None
        finally:
            # regorus engines are unsendable: free it on this thread now, not later in a
            # collection of the error's traceback cycle on whatever thread runs the GC.
            del engine
        for module in asts:
            modules.append((name, spelled, module["ast"]))
    return _Lowerer(modules, data if data is not None else {}, dict(sources)).program()


def _number_refused(text: str, error: CompileError) -> CompileError:
    """regorus cannot even read some number literals (``1`` and 400 zeros), which OPA
    takes as exact numbers: refused as unsupported, not as a syntax error."""
    assert error.loc is not None
    line = text.split("\n")[error.loc.line - 1] if error.loc.line <= text.count("\n") + 1 else ""
    m = _NUMBER.match(line, error.loc.col - 1)
    if m is None:
        return error
    shown = m.group() if len(m.group()) <= 40 else m.group()[:37] + "..."
    if "." in m.group() or "e" in m.group().lower():
        return unsupported(error.loc, f"number literal {shown} ({error.message})")
    return unsupported(error.loc, f"integer literal {shown} is beyond {exact_range()}")


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _parses_as_v0(name: str, text: str) -> bool:
    engine = regorus.Engine()
    engine.set_rego_v0(True)
    try:
        engine.add_policy(name, text)
    except RuntimeError:
        return False
    return True


# --------------------------------------------------------------------- helpers


class _Lines:
    """Byte offset → (line, col): regorus spans give byte offsets into the re-spelled
    text; a place is reported in the user's text, where columns count characters."""

    def __init__(self, spelled: Respelled) -> None:
        self.spelled = spelled
        self.data = spelled.original.encode()

    def loc(self, file: str, offset: int) -> ir.Loc:
        offset = self.spelled.old_offset(offset)
        line_start = self.data.rfind(b"\n", 0, offset) + 1
        line = self.data.count(b"\n", 0, offset) + 1
        return ir.Loc(file, line, len(self.data[line_start:offset].decode(errors="replace")) + 1)


def _loc(file: str, lines: _Lines | None, node: Any) -> ir.Loc:
    """The start of ``node`` (a variant wrapper, a node with a span, or a bare span)."""
    if isinstance(node, Mapping) and len(node) == 1:
        ((_, inner),) = node.items()
        if isinstance(inner, Mapping) and "span" in inner:
            node = inner
    span = node.get("span") if isinstance(node, Mapping) else None
    if not isinstance(span, Mapping) and isinstance(node, Mapping) and "start" in node:
        span = node
    if isinstance(span, Mapping):
        if lines is not None and "start" in span:
            return lines.loc(file, span["start"])
        return ir.Loc(file, span["line"], span["col"])
    return ir.Loc(file, 1, 1)


def _variant(node: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    ((kind, body),) = node.items()
    return kind, body


def _span_text(text: str, span: Mapping[str, Any]) -> str:
    return text.encode()[span["start"] : span["end"]].decode()


@dataclass
class _Head:
    """A rule head: the path of the rule it defines, its kind and, for an object
    or a ``tree`` rule, the keys below that path (names or AST of computed keys)."""

    path: ir.RulePath
    kind: str
    keys: list[str | Mapping[str, Any]]
    loc: ir.Loc
    default: bool = False
    first_only: bool = False  # a partial object merged into a tree (`p[k] if` stops at one)


class _Lowerer:
    def __init__(
        self, modules: list[tuple[str, Respelled, Any]], data: Any, sources: dict[str, str]
    ):
        self.modules = modules
        self.data = data
        self.sources = sources
        self.rules: dict[ir.RulePath, ir.Rule] = {}
        self.packages: set[tuple[str, ...]] = set()
        self._fresh = itertools.count()
        # per module state
        self.file = ""
        self.text = ""
        self.lines: _Lines | None = None
        self.spelled = respell("")
        self.package: tuple[str, ...] = ()
        self.aliases: dict[str, ir.Term] = {}
        self._pending: set[str] = set()  # declared later in the enclosing queries
        self._outer_decls: set[str] = set()  # declared anywhere in the enclosing queries
        self._head_of_body = False  # lowering the head of a rule body with statements
        self._poisoned: dict[ir.RulePath, str] = {}  # rules that fail when evaluated
        self._heads: dict[int, _Head] = {}  # id(rule AST) -> its head
        self._arities: dict[ir.RulePath, int] = {}
        self._virtual: set[tuple[str, ...]] = set()  # paths inside rule heads (`p` of `p.q`)
        self.data_targets: set[tuple[str, ...]] = set()  # `with data.…` paths of the program

    # ------------------------------------------------------------ program

    def program(self) -> ir.Program:
        # Pass 1: every package and rule name, so references across files resolve.
        heads: list[tuple[str, Respelled, tuple[str, ...], Any]] = []
        for file, spelled, ast in self.modules:
            self.file, self.text, self.lines = file, spelled.text, _Lines(spelled)
            self.spelled = spelled
            package = tuple(self._ref_path(ast["package"]["refr"]))
            self.packages.add(package)
            for rule in ast["rules"]:
                heads.append((file, spelled, package, rule))
                self._declare(package, rule)
        self._group_heads()
        for file, spelled, ast in self.modules:
            self.file, self.text, self.lines = file, spelled.text, _Lines(spelled)
            self.spelled = spelled
            self._scan_data_targets(ast)
        # Pass 2: lower bodies with full knowledge of the namespace.
        for file, spelled, ast in self.modules:
            self.file, self.text, self.lines = file, spelled.text, _Lines(spelled)
            self.spelled = spelled
            self.package = tuple(self._ref_path(ast["package"]["refr"]))
            self.aliases = self._imports(ast.get("imports", []))
            for f, _t, package, rule in heads:
                if f == file and package == self.package:
                    self._lower_rule(rule)
        for rule in self.rules.values():
            self._check_data_prefixes(rule)
        for path, message in self._poisoned.items():
            self._poison(self.rules[path], message)
        for rule in self.rules.values():
            if not rule.defs and rule.default is None:
                raise CompileError(rule.loc, "type", f"rule {'.'.join(rule.path)} has no body")
        return ir.Program(self.rules, self.packages, self.data, self.sources)

    def _scan_data_targets(self, ast: Any) -> None:
        """Every ``with data.…`` target, before any body is lowered: a reference to
        the data document they overlap is read at run time, not folded."""
        stack = [ast]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, dict):
                for mod in node.get("with_mods") or []:
                    try:
                        path = tuple(self._ref_path(mod["refr"]))
                    except CompileError:
                        continue  # refused where the statement is lowered
                    if path[0] == "data":
                        self._check_data_target(path[1:], self._leftmost(mod["refr"]))
                        self.data_targets.add(path[1:])
                stack.extend(node.values())

    def _check_data_target(self, target: tuple[str, ...], loc: ir.Loc) -> None:
        """``with data.…`` may replace base data or a whole rule. What regorus cannot
        evaluate (part of a rule's value, a package holding rules) or ignores (a
        function through its data path), and targets nested in one another, are
        refused."""
        where = "data." + ".".join(target)
        if not target:
            raise unsupported(loc, "`with data` (the whole data document)")
        for path, rule in self.rules.items():
            if path == target and rule.kind == "function":
                raise unsupported(loc, f"`with {where}` on a function (name it without data.)")
            if path != target and path[: len(target)] == target:
                raise unsupported(loc, f"`with {where}` on a package holding rules")
            if path != target and target[: len(path)] == path:
                raise unsupported(loc, f"`with {where}` on part of rule {'.'.join(path)}")
        for other in self.data_targets:
            if other != target and (
                other[: len(target)] == target or target[: len(other)] == other
            ):
                raise unsupported(
                    loc,
                    f"`with {where}` beside `with data.{'.'.join(other)}` (one inside the other)",
                )

    def _check_data_prefixes(self, rule: ir.Rule) -> None:
        """A rule extends the data document: every prefix there must be an object."""
        for n in range(1, len(rule.path)):
            value = _lookup_data(self.data, rule.path[:n])
            if value is not _MISSING and not isinstance(value, dict):
                where = "data." + ".".join(rule.path[:n])
                message = f"previous value is not an object: {where} in the data"
                self._poisoned.setdefault(rule.path, message)

    def _poison(self, rule: ir.Rule, message: str) -> None:
        """regorus rejects some rules only when it evaluates them (an invalid default
        value, a rule under a scalar in the data): such a rule is an error then."""
        fail = ir.ExprLit(ir.Fail(message, rule.loc), rule.loc)
        body = ir.Body([fail], ir.Const(True, rule.loc), ir.Const(True, rule.loc), rule.loc)
        args: list[ir.Term] | None = None
        if rule.kind == "function":
            args = [ir.Local(self._fresh_name(), rule.loc) for _ in range(rule.arity)]
        rule.defs, rule.default = [ir.Definition([body], args, rule.loc)], None

    def _loc(self, node: Any) -> ir.Loc:
        return _loc(self.file, self.lines, node)

    def _leftmost(self, node: Mapping[str, Any]) -> ir.Loc:
        """Where a reference starts: ``http.send`` at ``h``, not at its last dot."""
        kind, body = _variant(node)
        while kind in ("RefDot", "RefBrack"):
            kind, body = _variant(body["refr"])
        return self._loc(body)

    def _ref_path(self, node: Mapping[str, Any]) -> list[str]:
        kind, body = _variant(node)
        if kind == "Var":
            return [body["value"]]
        if kind == "RefDot":
            return [*self._ref_path(body["refr"]), body["field"][1]]
        if kind == "RefBrack":
            index_kind, index = _variant(body["index"])
            if index_kind in ("String", "RawString"):
                return [*self._ref_path(body["refr"]), self.spelled.string(index["value"])]
        raise unsupported(self._loc(body), f"reference form {kind} here")

    def _head_segments(self, refr: Any) -> list[str | Mapping[str, Any]]:
        """A rule head's reference as segments: names (``.q``, ``["q"]``) or the
        AST of a computed key (``[k]``)."""
        segments: list[str | Mapping[str, Any]] = []
        kind, body = _variant(refr)
        while kind in ("RefDot", "RefBrack"):
            if kind == "RefDot":
                segments.append(body["field"][1])
            else:
                index_kind, index = _variant(body["index"])
                if index_kind in ("String", "RawString"):
                    segments.append(self.spelled.string(index["value"]))
                else:
                    segments.append(body["index"])
            kind, body = _variant(body["refr"])
        if kind != "Var":
            raise unsupported(self._loc(body), f"rule head reference form {kind}")
        segments.append(body["value"])
        segments.reverse()
        return segments

    def _declare(self, package: tuple[str, ...], rule: Mapping[str, Any]) -> None:
        """Record a rule's head: its kind and the path it defines (``_group_heads``
        then merges heads that build one nested object)."""
        kind, body = _variant(rule)
        loc = self._loc(body)
        if kind == "Default":
            segments, head_kind = self._head_segments(body["refr"]), "Default"
        else:
            head_kind, head = _variant(body["head"])
            if head_kind not in ("Func", "Set", "Compr"):
                raise unsupported(loc, f"rule head {head_kind}")
            segments = self._head_segments(head["refr"])
        ground = list(itertools.takewhile(lambda seg: isinstance(seg, str), segments))
        rest = segments[len(ground) :]
        what = {"Default": "a default rule", "Func": "a function", "Set": "a `contains` rule"}
        if rest and head_kind in what:
            raise unsupported(loc, f"{what[head_kind]} with a computed key in its head")
        if head_kind == "Func":
            rule_kind = "function"
        elif head_kind == "Set":
            rule_kind = "set"
        elif not rest or head_kind == "Default":
            rule_kind = "complete"
        elif len(rest) == 1:
            # `p[x] if ...` without a value is an object of `true`s in Rego v1.
            rule_kind = "object"
        else:
            rule_kind = "tree"
            for seg in rest:
                if not isinstance(seg, str) and _variant(seg)[0] != "Var":
                    # regorus builds such a level even when the body fails
                    raise unsupported(
                        self._loc(seg), "a rule head key computed by an expression (not a variable)"
                    )
        path = (*package, *ground)
        self._heads[id(rule)] = _Head(path, rule_kind, rest, loc, kind == "Default")
        if head_kind == "Func":
            self._arities[path] = len(head["args"])

    def _group_heads(self) -> None:
        """Register every rule. Heads that build one nested object (``p.q.r := 1``
        beside ``p.q[k] := v``, or ``p[q].r := v``) become one ``tree`` rule at
        their shortest common path, each head a path of keys into it."""
        anchors = {id_: h.path for id_, h in self._heads.items()}
        roots = {h.path for h in self._heads.values() if h.kind == "tree"}
        paths = sorted(set(anchors.values()))
        for a in paths:
            if any(b != a and b[: len(a)] == a for b in paths):
                roots.add(a)

        roots = {r for r in roots if not any(q != r and r[: len(q)] == q for q in roots)}
        for head in self._heads.values():
            root = next((r for r in roots if head.path[: len(r)] == r), None)
            if root is None:
                rule = self._rule(head.path, head.kind, head.loc)
                if head.kind == "function":
                    rule.arity = self._arities[head.path]
                continue
            if head.kind in ("function", "set") or head.default:
                what = {"function": "a function", "set": "a `contains` rule"}.get(
                    head.kind, "a default rule"
                )
                where = ".".join(root)
                raise unsupported(
                    head.loc, f"{what} inside the object other rules build at {where}"
                )
            # regorus makes an object of every level above a head's ground path
            # (a value there conflicts), and of a partial object's own path (a
            # value there wins).
            ground = head.path[len(root) :]
            if head.kind == "complete" and not ground:
                # OPA refuses this at build time; regorus's answer depends on rule order.
                where = ".".join(root)
                raise unsupported(head.loc, f"a complete rule {where} beside rules inside it")
            tree = self._rule(root, "tree", head.loc)
            levels = [(ground[:n], "skeleton") for n in range(len(ground))]
            if head.kind == "object":
                levels.append((ground, "soft_skeleton"))
            for level, attr in levels:
                node = getattr(tree, attr)
                if node is None:
                    node = {}
                    setattr(tree, attr, node)
                for key in level:
                    node = node.setdefault(key, {})
            head.keys = [*ground, *head.keys]
            head.first_only = head.kind == "object"
            head.path, head.kind = root, "tree"
        for path in [*self.rules, *roots]:
            package = max((p for p in self.packages if path[: len(p)] == p), key=len, default=())
            for n in range(len(package) + 1, len(path)):
                self._virtual.add(path[:n])
        self.packages |= self._virtual

    def _rule(self, path: ir.RulePath, kind: str, loc: ir.Loc) -> ir.Rule:
        existing = self.rules.get(path)
        if existing is None:
            existing = ir.Rule(path, kind, [], None, loc)  # type: ignore[arg-type]
            self.rules[path] = existing
        elif existing.kind != kind:
            # regorus merges some of these (a set and an object, say); we do not.
            raise unsupported(
                loc, f"rule {'.'.join(path)} defined as both {existing.kind} and {kind}"
            )
        return existing

    def _imports(self, imports: Iterable[Mapping[str, Any]]) -> dict[str, ir.Term]:
        aliases: dict[str, ir.Term] = {}
        for imp in imports:
            loc = self._loc(imp)
            path = self._ref_path(imp["refr"])
            if tuple(path[:2]) in _IGNORED_IMPORTS:
                continue
            if path[0] not in ("data", "input"):
                raise unsupported(loc, f"import {'.'.join(path)}")
            alias_span = imp.get("as")
            alias = _span_text(self.text, alias_span) if alias_span else path[-1]
            root: ir.Term = ir.DataRoot(loc) if path[0] == "data" else ir.InputRoot(loc)
            keys: list[ir.Term] = [ir.Const(p, loc) for p in path[1:]]
            aliases[alias] = ir.Ref(root, keys, loc) if keys else root
        return aliases

    # -------------------------------------------------------------- rules

    def _lower_rule(self, rule: Mapping[str, Any]) -> None:
        kind, body = _variant(rule)
        loc = self._loc(body)
        info = self._heads[id(rule)]
        if kind == "Default":
            path = info.path
            target = self.rules[path]
            if body.get("args"):
                raise unsupported(loc, "default function")
            try:
                self._check_default(body["value"])
            except CompileError as err:
                self._poisoned.setdefault(path, err.message)
                return
            if target.default is not None:
                return  # regorus keeps the first default rule
            target.default = self._term(body["value"], set())
            return
        head_kind, head = _variant(body["head"])
        target = self.rules[info.path]
        arg_names: set[str] = set()
        args: list[ir.Term] | None = None
        if head_kind == "Func":
            for a in head["args"]:
                arg_names |= self._vars_in(a)
            args = [self._term(a, arg_names) for a in head["args"]]
        bodies = body["bodies"] or [{"assign": None, "query": {"stmts": []}}]
        lowered: list[ir.Body] = []
        for i, b in enumerate(bodies):
            # Names a body declares are in scope after their declaration, and in its head.
            self._outer_decls = set(arg_names)
            lits, locals_ = self._query_scope(b["query"], arg_names)
            self._outer_decls = set(locals_)  # the head's comprehensions are inside them
            self._head_of_body = bool(b["query"]["stmts"])
            key: ir.Term | None = None
            keys: list[ir.Term] | None = None
            value: ir.Term | None
            assign = head.get("assign") if i == 0 else b.get("assign")
            if i > 0 and target.kind not in ("complete", "function", "tree"):
                raise unsupported(loc, "`else` on a partial rule")
            if i > 0 and target.kind == "tree" and info.first_only:
                raise unsupported(loc, "`else` on a partial rule")
            if target.kind == "tree":
                keys = [
                    ir.Const(k, loc) if isinstance(k, str) else self._term(k, locals_)
                    for k in info.keys
                ]
            elif head_kind == "Set":
                key = self._term(head["key"], locals_)
            elif target.kind == "object":
                key = self._term(info.keys[0], locals_)  # type: ignore[arg-type]
            if head_kind == "Set":
                value = None
            else:
                value = self._term(assign["value"], locals_) if assign else ir.Const(True, loc)
            self._outer_decls, self._head_of_body = set(), False
            first_only = (info.first_only or target.kind == "object") and not assign
            where = self._loc(b.get("query"))
            lowered.append(ir.Body(lits, value, key, where, first_only, keys))
        target.defs.append(ir.Definition(lowered, args, loc))

    def _vars_in(self, node: Mapping[str, Any]) -> set[str]:
        return {name for _, name in self._pattern_var_spans(node)}

    # ------------------------------------------------------------ queries

    def _query(self, query: Mapping[str, Any], locals_: set[str]) -> list[ir.Lit]:
        return self._query_scope(query, locals_)[0]

    def _query_scope(
        self, query: Mapping[str, Any], locals_: set[str]
    ) -> tuple[list[ir.Lit], set[str]]:
        """Lower statements in order; return them and the names in scope at the end.

        As in regorus, a name declared (``:=``, ``some``) is local from its
        declaration on; using it in an earlier statement of the same query is an
        error, but the right side of its own ``:=`` still sees the outer meaning.
        """
        stmts = query["stmts"]
        declared = [self._declares(st["literal"]) for st in stmts]
        kinds = [_variant(st["literal"])[0] for st in stmts]
        # later[i]: the names `:=` declares after statement i (suffix unions, linear)
        later: list[set[str]] = [set() for _ in range(len(stmts) + 1)]
        for i in range(len(stmts) - 1, -1, -1):
            later[i] = later[i + 1] | (declared[i] if kinds[i] == "Expr" else set())
        scope = set(locals_)
        lits: list[ir.Lit] = []
        saved, outer = self._pending, self._outer_decls
        everything = outer.union(*declared)
        before: set[str] = set()  # the names statements before i declare
        for i, stmt in enumerate(stmts):
            if kinds[i] == "SomeIn":
                # `some x in` may not reuse a name another declaration here or
                # around declares (regorus); `:=` in a nested query may.
                self._check_some_unique(stmt["literal"], (outer, before, later[i + 1]))
            # Only `:=` must come first; regorus schedules `some .. in` as needed.
            self._pending = saved | (later[i + 1] - scope - declared[i])
            self._outer_decls = everything
            lits.append(self._stmt(stmt, scope, declared[i]))
            scope |= declared[i]
            before |= declared[i]
        self._pending, self._outer_decls = saved, outer
        return lits, scope

    def _check_some_unique(self, literal: Mapping[str, Any], others: tuple[set[str], ...]) -> None:
        _, body = _variant(literal)
        for pattern in (body.get("key"), body["value"]):
            for span, name in self._pattern_var_spans(pattern):
                if any(name in names for names in others):
                    raise CompileError(
                        self._loc(span), "type", f"var `{name}` used before definition below"
                    )

    def _pattern_var_spans(self, node: Mapping[str, Any] | None) -> list[tuple[Any, str]]:
        if node is None:
            return []
        kind, body = _variant(node)
        if kind == "Var":
            return [(body, body["value"])] if body["value"] != "_" else []
        if kind == "Array":
            return [v for i in body["items"] for v in self._pattern_var_spans(i)]
        if kind == "Object":
            return [v for f in body["fields"] for v in self._pattern_var_spans(f[2])]
        return []

    def _declares(self, literal: Mapping[str, Any]) -> set[str]:
        kind, body = _variant(literal)
        if kind == "Expr":
            expr_kind, expr = _variant(body["expr"])
            if expr_kind == "AssignExpr" and expr["op"] == "ColEq":
                return self._vars_in(expr["lhs"])
        elif kind == "SomeVars":
            return {_span_text(self.text, s) for s in body["vars"]}
        elif kind == "SomeIn":
            names = self._vars_in(body["value"])
            return names | self._vars_in(body["key"]) if body.get("key") else names
        return set()

    def _stmt(
        self,
        stmt: Mapping[str, Any],
        locals_: set[str],
        declared: AbstractSet[str] = frozenset(),
    ) -> ir.Lit:
        """One statement; ``declared`` are the names it declares (its patterns' scope)."""
        withs = [self._with(w, locals_) for w in stmt.get("with_mods") or []]
        kind, body = _variant(stmt["literal"])
        loc = self._loc(body)
        lit: ir.Lit
        if kind == "Expr":
            expr_kind, expr = _variant(body["expr"])
            if expr_kind == "AssignExpr":
                self._check_literal_unify(expr["lhs"], expr["rhs"])
                lit = ir.AssignLit(
                    self._term(expr["lhs"], locals_ | declared),
                    self._term(expr["rhs"], locals_),
                    expr["op"] == "ColEq",
                    self._loc(expr),
                    withs,
                )
                return lit
            return self._expr_lit(body["expr"], locals_, loc, withs)
        if kind == "NotExpr":
            expr_kind, expr = _variant(body["expr"])
            if expr_kind == "Call" and self._is_walk(expr["fcn"]):
                # regorus is undefined for every `not walk(..)`; OPA is not
                raise unsupported(loc, "`not walk(…)`")
            return ir.NotLit([self._expr_lit(body["expr"], locals_, loc, withs)], loc)
        if withs and kind != "SomeIn":
            raise unsupported(withs[0].loc, f"`with` on a {kind} literal")
        if kind == "SomeIn":
            for pattern in (body.get("key"), body["value"]):
                if pattern is not None:
                    self._check_some_vars(pattern)
            self._check_some_lengths(body["value"], body["collection"])
            inner = locals_ | declared
            key = self._term(body["key"], inner) if body.get("key") else None
            return ir.SomeInLit(
                key,
                self._term(body["value"], inner),
                self._term(body["collection"], locals_),
                loc,
                withs,
            )
        if kind == "SomeVars":
            names = [_span_text(self.text, s) for s in body["vars"]]
            for span, name in zip(body["vars"], names, strict=True):
                if self._global_name(name):
                    raise unsupported(self._loc(span), f"`some {name}` naming a rule or import")
            return ir.SomeDeclLit(names, loc)
        if kind == "Every":
            key = _span_text(self.text, body["key"]) if body.get("key") else None
            value = _span_text(self.text, body["value"])
            inner = locals_ | {n for n in (key, value) if n}
            if key == "_":
                key = self._fresh_name()
            if value == "_":
                value = self._fresh_name()
            return ir.EveryLit(
                key,
                value,
                self._term(body["domain"], locals_),
                self._query(body["query"], inner),
                loc,
            )
        raise unsupported(loc, f"literal {kind}")

    def _expr_lit(
        self, expr: Mapping[str, Any], locals_: set[str], loc: ir.Loc, withs: list[ir.With]
    ) -> ir.Lit:
        """An expression statement. A call with one argument more than its function
        takes is the output form (``count(x, n)``): ``n = count(x)``, which binds an
        unbound ``n`` and compares a bound one or a constant, as in OPA and regorus."""
        kind, body = _variant(expr)
        if kind == "Call" and self._is_walk(body["fcn"]):
            if len(body["params"]) != 2:
                raise unsupported(loc, "`walk` other than `walk(x, [path, value])`")
            # each [path, value] pair below x: iterate the array the runtime builds
            x, out = (self._term(p, locals_) for p in body["params"])
            pairs = ir.Call("walk", [x], self._loc(body))
            each = ir.Ref(pairs, [ir.Local(self._fresh_name(), loc)], loc)
            return ir.AssignLit(out, each, False, loc, withs)
        if kind == "Call":
            arity = self._call_arity(body["fcn"])
            if arity is not None and len(body["params"]) == arity + 1:
                *params, out = body["params"]
                call = self._call({**body, "params": params}, locals_, self._loc(body))
                return ir.AssignLit(self._term(out, locals_), call, False, loc, withs)
        return ir.ExprLit(self._term(expr, locals_), loc, withs)

    def _is_walk(self, fcn: Mapping[str, Any]) -> bool:
        """Whether a call names the builtin ``walk`` (not a function of the package)."""
        try:
            parts = self._ref_path(fcn)
        except CompileError:
            return False
        return parts == ["walk"] and (*self.package, "walk") not in self.rules

    def _call_arity(self, fcn: Mapping[str, Any]) -> int | None:
        """The number of arguments the function a call names takes (None: unknown)."""
        try:
            parts = self._ref_path(fcn)
        except CompileError:
            return None
        relative = self.rules.get((*self.package, *parts))
        if relative is not None and relative.kind == "function":
            return relative.arity
        if parts[0] == "data":
            rule = self.rules.get(tuple(parts[1:]))
            return rule.arity if rule is not None and rule.kind == "function" else None
        return _builtin_arity(".".join(parts))

    # regorus checks some things statically; so do we, with its words.

    _DEFAULT_INVALID = {
        "Call": "call",
        "RefDot": "ref",
        "RefBrack": "ref",
        "ArithExpr": "arithexpr",
        "BinExpr": "binexpr",
        "BoolExpr": "boolexpr",
        "Var": "var",
        "Membership": "membership",
    }

    def _check_default(self, node: Mapping[str, Any]) -> None:
        """A default value is a constant, a collection of them, or a comprehension."""
        kind, body = _variant(node)
        if kind in self._DEFAULT_INVALID:
            raise CompileError(
                self._loc(body), "type", f"invalid `{self._DEFAULT_INVALID[kind]}` in default value"
            )
        if kind == "UnaryExpr" and _variant(body["expr"])[0] != "Number":
            raise CompileError(self._loc(body), "type", "invalid `unaryexpr` in default value")
        if kind in ("Array", "Set"):
            for item in body["items"]:
                self._check_default(item)
        elif kind == "Object":
            for field in body["fields"]:
                self._check_default(field[1])
                self._check_default(field[2])

    def _pattern_has_vars(self, node: Mapping[str, Any]) -> bool:
        kind, body = _variant(node)
        if kind == "Var":
            return True
        if kind == "Array":
            return any(self._pattern_has_vars(i) for i in body["items"])
        if kind == "Object":
            return any(self._pattern_has_vars(f[2]) for f in body["fields"])
        return False

    def _check_literal_unify(self, lhs: Mapping[str, Any], rhs: Mapping[str, Any]) -> None:
        """Two literal patterns that can never unify are an error in regorus, not false."""
        (lk, lb), (rk, rb) = _variant(lhs), _variant(rhs)
        has_vars = self._pattern_has_vars(lhs) or self._pattern_has_vars(rhs)
        if lk == rk == "Array":
            if len(lb["items"]) != len(rb["items"]):
                raise CompileError(self._loc(rb), "type", "mismatch in number of array elements")
            for a, b in zip(lb["items"], rb["items"], strict=True):
                self._check_literal_unify(a, b)
        elif {lk, rk} == {"Array", "Object"} and has_vars:
            raise CompileError(
                self._loc(lb),
                "type",
                "incompatible destructuring patterns: both sides must be arrays or objects "
                "with matching structure",
            )
        elif lk == rk == "Object" and has_vars:
            left = {_literal_key(f[1]): f[2] for f in lb["fields"]}
            right = {_literal_key(f[1]): f[2] for f in rb["fields"]}
            if None in left or None in right:
                return
            if set(left) != set(right):
                raise CompileError(self._loc(lb), "type", "object literal keys mismatch")
            for key, value in left.items():
                self._check_literal_unify(value, right[key])

    def _check_some_lengths(self, pattern: Mapping[str, Any], coll: Mapping[str, Any]) -> None:
        """``some [a, b] in [[1, 2, 3]]``: no element of a literal can match: an error."""
        (pk, pb), (ck, cb) = _variant(pattern), _variant(coll)
        if pk != "Array" or ck not in ("Array", "Set") or not cb["items"]:
            return
        items = [_variant(i) for i in cb["items"]]
        if all(k == "Array" and len(b["items"]) != len(pb["items"]) for k, b in items):
            raise CompileError(self._loc(cb), "type", "mismatch in number of array elements")

    def _global_name(self, name: str) -> bool:
        path = (*self.package, name)
        return path in self.rules or path in self._virtual or name in self.aliases

    def _check_some_vars(self, node: Mapping[str, Any]) -> None:
        """regorus refuses ``some x in ...`` where ``x`` names a rule or an import."""
        for span, name in self._pattern_var_spans(node):
            if self._global_name(name):
                raise CompileError(
                    self._loc(span), "type", f"var `{name}` used before definition below"
                )

    def _with(self, mod: Mapping[str, Any], locals_: set[str]) -> ir.With:
        """``with input…``, ``with data…`` (checked by ``_scan_data_targets``), or a
        function or builtin, replaced by a value or by another function (as in OPA)."""
        loc = self._leftmost(mod["refr"])
        path = tuple(self._ref_path(mod["refr"]))
        if path[0] in ("input", "data"):
            return ir.With(path, self._term(mod["as"], locals_), loc)
        name = ".".join(path)
        key: str | None = None
        relative = (*self.package, *path)
        if relative in self.rules and self.rules[relative].kind == "function":
            key = "data." + ".".join(relative)
        elif path[0] in locals_ or relative in self.rules or relative in self._virtual:
            key = None
        elif known_builtin(name):
            key = name
        if key is None:
            raise unsupported(loc, f"`with {name}`: neither input, data nor a function")
        if key == "walk":
            raise unsupported(loc, "`with walk` (a relation)")
        replacement = self._mock_function(mod["as"], locals_)
        value = None if replacement is not None else self._term(mod["as"], locals_)
        return ir.With(("function", key), value, loc, replacement)

    def _mock_function(self, node: Mapping[str, Any], locals_: set[str]) -> ir.MockFn | None:
        """The function ``with f as <node>`` names, if it names one (else a value)."""
        if _variant(node)[0] not in ("Var", "RefDot", "RefBrack"):
            return None
        try:
            parts = self._ref_path(node)
        except CompileError:
            return None
        loc = self._leftmost(node)
        if parts[0] in locals_:
            return None
        for path in ((*self.package, *parts), tuple(parts[1:]) if parts[0] == "data" else None):
            rule = self.rules.get(path) if path else None
            if rule is not None:
                if rule.kind == "function" and rule.arity > 0:
                    return ir.MockFn(".".join(path), path, loc)  # type: ignore[arg-type]
                return None
        name = ".".join(parts)
        if (*self.package, parts[0]) in self._virtual or parts[0] in self.aliases:
            return None
        if parts[0] not in ("data", "input") and known_builtin(name):
            return ir.MockFn(name, None, loc)
        return None

    def _fresh_name(self) -> str:
        return f"$_{next(self._fresh)}"

    # -------------------------------------------------------------- terms

    def _term(self, node: Mapping[str, Any], locals_: set[str]) -> ir.Term:
        kind, body = _variant(node)
        loc = self._loc(body)
        if kind in ("String", "RawString"):
            return ir.Const(self.spelled.string(body["value"]), loc)
        if kind == "Number":
            return ir.Const(self._number(body, loc), loc)
        if kind == "Bool":
            return ir.Const(bool(body["value"]), loc)
        if kind == "Null":
            return ir.Const(None, loc)
        if kind == "Var":
            return self._var(body["value"], locals_, loc)
        if kind in ("RefDot", "RefBrack"):
            # Build the whole chain first: `data.a.b.c` resolves as one path.
            keys: list[ir.Term] = []
            node_kind, node_body = kind, body
            while node_kind in ("RefDot", "RefBrack"):
                if node_kind == "RefDot":
                    field_loc = self._loc(node_body)
                    keys.append(ir.Const(node_body["field"][1], field_loc))
                else:
                    keys.append(self._term(node_body["index"], locals_))
                node_kind, node_body = _variant(node_body["refr"])
            base = self._term({node_kind: node_body}, locals_)
            keys.reverse()
            if isinstance(base, ir.Ref):
                return self._resolve(ir.Ref(base.base, [*base.keys, *keys], base.loc), loc)
            return self._resolve(ir.Ref(base, keys, loc), loc)
        if kind == "Array":
            items = [self._term(i, locals_) for i in body["items"]]
            if all(isinstance(i, ir.Const) for i in items):
                return ir.Const([i.value for i in items], loc)  # type: ignore[union-attr]
            return ir.ArrayLit(items, loc)
        if kind == "Set":
            items = [self._term(i, locals_) for i in body["items"]]
            if all(isinstance(i, ir.Const) for i in items):
                return ir.Const(RegoSet(i.value for i in items), loc)  # type: ignore[union-attr]
            return ir.SetLit(items, loc)
        if kind == "Object":
            pairs = [(self._term(f[1], locals_), self._term(f[2], locals_)) for f in body["fields"]]
            if all(isinstance(k, ir.Const) and isinstance(v, ir.Const) for k, v in pairs):
                keys = [k.value for k, _ in pairs]  # type: ignore[union-attr]
                if all(isinstance(k, str) for k in keys):
                    return ir.Const({k.value: v.value for k, v in pairs}, loc)  # type: ignore[union-attr]
            return ir.ObjectLit(pairs, loc)
        if kind in ("ArrayCompr", "SetCompr", "ObjectCompr") and self._head_of_body:
            # regorus fails such a rule ("statements not scheduled") once its body holds.
            raise unsupported(loc, "a comprehension in the head of a rule with a body")
        if kind in ("ArrayCompr", "SetCompr"):
            lits, scope = self._query_scope(body["query"], locals_)  # the head sees its names
            kind_ = "array" if kind == "ArrayCompr" else "set"
            return ir.Compr(kind_, self._term(body["term"], scope), None, lits, loc)
        if kind == "ObjectCompr":
            lits, scope = self._query_scope(body["query"], locals_)
            key, value = self._term(body["key"], scope), self._term(body["value"], scope)
            return ir.Compr("object", key, value, lits, loc)
        if kind == "Call":
            return self._call(body, locals_, loc)
        if kind == "UnaryExpr":
            inner = self._term(body["expr"], locals_)
            value = inner.value if isinstance(inner, ir.Const) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return ir.Const(-value, loc)
            # regorus: "unary - can only be used with numeric literals", once evaluated
            return ir.Fail("unary minus only applies to numeric literals", loc)
        if kind == "ArithExpr":
            op = _ARITH[body["op"]]
            return ir.BinOp(
                op, self._term(body["lhs"], locals_), self._term(body["rhs"], locals_), loc
            )  # type: ignore[arg-type]
        if kind == "BinExpr":
            op = _SETOP.get(body["op"])
            if op is None:
                raise unsupported(loc, f"operator {body['op']}")
            return ir.BinOp(
                op, self._term(body["lhs"], locals_), self._term(body["rhs"], locals_), loc
            )  # type: ignore[arg-type]
        if kind == "BoolExpr":
            op = _BOOL[body["op"]]
            return ir.Compare(
                op, self._term(body["lhs"], locals_), self._term(body["rhs"], locals_), loc
            )  # type: ignore[arg-type]
        if kind == "Membership":
            key = self._term(body["key"], locals_) if body.get("key") else None
            return ir.Member(
                key,
                self._term(body["value"], locals_),
                self._term(body["collection"], locals_),
                loc,
            )
        if kind == "AssignExpr":
            raise unsupported(loc, "assignment inside an expression")
        raise unsupported(loc, f"expression {kind}")

    def _number(self, body: Mapping[str, Any], loc: ir.Loc) -> int | float:
        """A number literal, read from its source text: regorus parses an integer
        past 2^64 as a double, which would pass any range check on its value.
        An integer (``1e3`` too) beyond the exact range is refused, never rounded."""
        value = body["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CompileError(loc, "syntax", f"invalid number {value!r}")
        text = _span_text(self.text, body["span"]).strip() if "span" in body else repr(value)
        try:
            exact = decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise CompileError(loc, "syntax", f"invalid number {text!r}") from None
        if not exact.is_finite() or exact != exact.to_integral_value():
            return value
        if abs(exact) > MAX_EXACT_INT:
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise unsupported(loc, f"integer literal {shown} is beyond {exact_range()}")
        return int(exact)

    def _var(self, name: str, locals_: set[str], loc: ir.Loc) -> ir.Term:
        if name == "_":
            return ir.Local(self._fresh_name(), loc)
        if name in locals_:
            return ir.Local(name, loc)
        if name in self._pending:
            raise CompileError(loc, "type", f"var `{name}` used before definition below")
        if name == "input":
            return ir.InputRoot(loc)
        if name == "data":
            return ir.DataRoot(loc)
        # A rule of the package shadows an import of the same name (as in regorus).
        if (*self.package, name) in self.rules:
            return self._rule_ref((*self.package, name), [], loc)
        if (*self.package, name) in self._virtual:  # `p` of a rule `p.q := ...`
            keys: list[ir.Term] = [ir.Const(k, loc) for k in (*self.package, name)]
            return self._resolve(ir.Ref(ir.DataRoot(loc), keys, loc), loc)
        if name in self.aliases:
            alias = self.aliases[name]
            return self._resolve(alias, loc) if isinstance(alias, ir.Ref) else alias
        return ir.Local(name, loc)

    def _rule_ref(self, path: ir.RulePath, rest: list[ir.Term], loc: ir.Loc) -> ir.Term:
        """A reference to a rule; a value at the same path in the data document wins."""
        overridden = _lookup_data(self.data, path)
        rule = ir.RuleRef(path, loc)
        if overridden is not _MISSING and self.rules[path].kind != "function":
            rule.override = (overridden,)
            if rest and isinstance(rest[0], ir.Const):
                rest = [ir.Const(_data_key(overridden, rest[0].value), rest[0].loc), *rest[1:]]
        return ir.Ref(rule, rest, loc) if rest else rule

    @staticmethod
    def _index_const(doc: Any, keys: list[ir.Term], loc: ir.Loc) -> ir.Term:
        """``doc[k0][k1]...``, folding constant keys that exist (numbers index objects as
        their string form, as regorus does for references into ``data``)."""
        used = 0
        for key in keys:
            if not isinstance(key, ir.Const):
                break
            nxt = _lookup_data(doc, (_data_key(doc, key.value),))
            if nxt is _MISSING:
                break
            doc, used = nxt, used + 1
        rest = [
            ir.Const(_data_key(doc, k.value), k.loc) if i == 0 and isinstance(k, ir.Const) else k
            for i, k in enumerate(keys[used:])
        ]
        const = ir.Const(doc, loc)
        return ir.Ref(const, rest, loc) if rest else const

    def _resolve(self, ref: ir.Ref, loc: ir.Loc) -> ir.Term:
        """Resolve ``data.a.b...`` against packages, rules and the data document.

        As in regorus, a value in the data document at a rule's path wins over
        the rule, and a package evaluates to its data merged with its rules.
        """
        if isinstance(ref.base, ir.PackageRef):
            ref = ir.Ref(
                ir.DataRoot(ref.base.loc),
                [ir.Const(p, ref.base.loc) for p in ref.base.path] + ref.keys,
                ref.loc,
            )
        if not isinstance(ref.base, ir.DataRoot):
            return ref
        keys = ref.keys
        path: list[str] = []
        for i, key in enumerate(keys):
            if not (isinstance(key, ir.Const) and isinstance(key.value, str)):
                break
            path.append(key.value)
            if tuple(path) in self.rules:
                return self._rule_ref(tuple(path), keys[i + 1 :], ref.loc)
        # A package or a prefix of packages (and nothing past it): the object of its rules.
        prefix: tuple[str, ...] = ()
        for key in keys:
            if not (isinstance(key, ir.Const) and isinstance(key.value, str)):
                break
            candidate = (*prefix, key.value)
            if not any(p[: len(candidate)] == candidate for p in self.packages):
                break
            prefix = candidate
        rest = keys[len(prefix) :]
        if prefix and not (rest and isinstance(rest[0], ir.Const)):
            if self.package[: len(prefix)] == prefix:
                # regorus leaves out the referring module's own rules here.
                raise unsupported(
                    loc, f"reference to data.{'.'.join(prefix)} from inside that package"
                )
            pkg = ir.PackageRef(prefix, ref.loc)
            return ir.Ref(pkg, rest, ref.loc) if rest else pkg
        # The base data document: fold constant keys into a constant, unless a
        # `with data.…` may replace a part of it.
        path = const_prefix(keys)
        computed = len(path) < len(keys) and not isinstance(keys[len(path)], ir.Const)
        if computed and any(r[: len(path)] == path for r in self.rules):
            # `data[x]`: the key may select a package, which the base document lacks
            where = "data." + ".".join(path) if path else "data"
            raise unsupported(loc, f"a computed key into {where}, where rules are")
        if any(t[: len(path)] == path or path[: len(t)] == t for t in self.data_targets):
            found = _lookup_data(self.data, path)
            doc = ir.DataDoc(path, None if found is _MISSING else (found,), ref.loc)
            rest = keys[len(path) :]
            return ir.Ref(doc, rest, ref.loc) if rest else doc
        return self._index_const(self.data, keys, ref.loc)

    def _call(self, body: Mapping[str, Any], locals_: set[str], loc: ir.Loc) -> ir.Term:
        fcn = body["fcn"]
        loc = self._leftmost(fcn)
        args = [self._term(p, locals_) for p in body["params"]]
        try:
            name_parts = self._ref_path(fcn)
        except CompileError:
            raise unsupported(loc, "call of a computed function") from None
        # regorus resolves a call name relative to the package first (so the
        # package's own `count` or `json.unmarshal` wins over the builtin), then
        # as a builtin, then as an absolute `data.` path. Import aliases play no
        # part in calls.
        target: ir.RulePath | None = None
        relative = (*self.package, *name_parts)
        if relative in self.rules and self.rules[relative].kind == "function":
            target = relative
        elif name_parts[0] == "data":
            target = tuple(name_parts[1:])
        # regorus finds a call's function, and checks its arity, when it evaluates
        # the call: an error there, not in a policy that never gets that far.
        if target is not None:
            rule = self.rules.get(target)
            if rule is None or rule.kind != "function":
                return self._unknown_function(".".join(name_parts), loc, args)
            if rule.arity != len(args):
                what = f"function {'.'.join(target)} takes {rule.arity} arguments"
                return ir.Fail(f"{what}, got {len(args)}", loc, args)
            return ir.Call(".".join(target), args, loc, func=target)
        name = ".".join(name_parts)
        if name == "walk":
            # a relation: OPA iterates `x := walk(y)`, regorus answers something else
            raise unsupported(loc, "`walk` other than `walk(x, [path, value])`")
        if not known_builtin(name):
            return self._unknown_function(name, loc, args)
        return ir.Call(name, args, loc)

    @staticmethod
    def _unknown_function(name: str, loc: ir.Loc, args: list[ir.Term]) -> ir.Fail:
        """A call of a function nobody defines: OPA refuses it when it compiles, regorus
        when it evaluates it; refused at build time here where an entrypoint reaches it."""
        return ir.Fail(f"could not find function {name}", loc, args, f"unknown function {name}")


_MISSING = object()


def _builtin_arity(name: str) -> int | None:
    """How many arguments a builtin the compiler knows takes (None: no such builtin)."""
    for table in (BUILTINS, PATTERN_BUILTINS, IMPURE_BUILTINS):
        if name in table:
            entry = table[name]
            return entry[1] if isinstance(entry, tuple) else entry
    host = host_builtin(name)
    return host.arity if host is not None else None


def _literal_key(node: Mapping[str, Any]) -> tuple[str, Any] | None:
    kind, body = _variant(node)
    if kind in ("String", "RawString", "Number", "Bool"):
        return ("S" if kind == "RawString" else kind[0], body["value"])
    if kind == "Null":
        return ("N", None)
    return None


def _data_key(doc: Any, key: Any) -> Any:
    """regorus indexes an object in ``data`` with a number as with its string form."""
    if isinstance(doc, dict) and isinstance(key, (int, float)) and not isinstance(key, bool):
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        return str(key)
    return key


def _lookup_data(doc: Any, path: Iterable[Any]) -> Any:
    for key in path:
        if isinstance(doc, dict) and isinstance(key, str) and key in doc:
            doc = doc[key]
        else:
            return _MISSING
    return doc
