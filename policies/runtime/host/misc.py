"""Bitwise, number-range, graph, array and random builtins.

Bits, ranges and graphs are as regorus computes them; ``array.flatten`` and
``rand.intn``, which regorus lacks, as OPA (the users' policies come from OPA).

Every result is bounded before it is built: a bitwise result must be exact as a
double (regorus keeps big integers; A1 refuses what it cannot hold rather than
round it), a range or a path set has at most ``MAX_ITEMS``
elements, and a graph walk at most ``MAX_STEPS`` steps, so a small input cannot
make a builtin allocate gigabytes or enumerate an exponential number of paths.
Graph walks are iterative: a deep graph cannot exhaust Python's stack.

``walk`` is not here: it is a relation (``walk(x, [path, value])`` enumerates),
which a host builtin returning one value cannot express.
"""

from __future__ import annotations

import secrets
from typing import Any

from policies.runtime.host.base import BuiltinError, EvalContext, builtin, want
from policies.runtime.values import UNDEFINED, RegoSet, rego_sort_key

__all__ = ["MAX_ITEMS", "MAX_STEPS"]

MAX_ITEMS = 1 << 20
"""Most elements a range, a reachable set or a path set may have."""

MAX_STEPS = 1 << 18
"""Most vertex visits (plus path elements recorded) one graph builtin may make: path
enumeration is exponential in the graph's size."""

_EXACT = 2**53
_U32_MAX = 2**32 - 1


# ---------------------------------------------------------------- bits


def _integer(fn: str, position: int, v: Any) -> int:
    want(fn, position, v, "number")
    if type(v) is float and not v.is_integer():
        raise BuiltinError(f"{fn}: operand {position} must be an integer but got {v}")
    return int(v)


def _exact(fn: str, r: int) -> int:
    """regorus holds any integer exactly; A1's numbers are doubles, so a result past 2^53
    is an error rather than a rounded value."""
    if not -_EXACT <= r <= _EXACT:
        raise BuiltinError(f"{fn}: result beyond 2^53 cannot be represented exactly")
    return r


@builtin("bits.and")
def bits_and(x: Any, y: Any) -> int:
    return _exact("bits.and", _integer("bits.and", 1, x) & _integer("bits.and", 2, y))


@builtin("bits.or")
def bits_or(x: Any, y: Any) -> int:
    return _exact("bits.or", _integer("bits.or", 1, x) | _integer("bits.or", 2, y))


@builtin("bits.xor")
def bits_xor(x: Any, y: Any) -> int:
    return _exact("bits.xor", _integer("bits.xor", 1, x) ^ _integer("bits.xor", 2, y))


@builtin("bits.negate")
def bits_negate(x: Any) -> int:
    return _exact("bits.negate", ~_integer("bits.negate", 1, x))


def _shift_count(fn: str, x: Any, s: Any) -> tuple[int, int | None]:
    a = _integer(fn, 1, x)
    n = _integer(fn, 2, s)
    if n < 0:
        raise BuiltinError(f"{fn}: the shift count must not be negative but got {n}")
    return a, (None if n > _U32_MAX else n)  # regorus: a count past u32 is undefined


@builtin("bits.lsh")
def bits_lsh(x: Any, s: Any) -> Any:
    a, n = _shift_count("bits.lsh", x, s)
    if n is None:
        return UNDEFINED
    if a == 0:
        return 0
    if a.bit_length() + n > 64:  # past 2^53 whatever a is: never build 1 << 10**9
        raise BuiltinError("bits.lsh: result beyond 2^53 cannot be represented exactly")
    return _exact("bits.lsh", a << n)


@builtin("bits.rsh")
def bits_rsh(x: Any, s: Any) -> Any:
    a, n = _shift_count("bits.rsh", x, s)
    if n is None:
        return UNDEFINED
    return _exact("bits.rsh", a >> min(n, 2048))  # arithmetic: a negative a ends at -1


# ---------------------------------------------------------------- numbers


@builtin("numbers.range_step")
def range_step(a: Any, b: Any, step: Any) -> list[int]:
    fn = "numbers.range_step"
    want(fn, 1, a, "number")
    want(fn, 2, b, "number")
    want(fn, 3, step, "number")
    if any(isinstance(x, float) and not x.is_integer() for x in (a, b)):
        raise BuiltinError(f"{fn}: operands 1 and 2 must be integers")
    if (isinstance(step, float) and not step.is_integer()) or step <= 0:
        raise BuiltinError(f"{fn}: step must be a positive integer")
    lo, hi, by = int(a), int(b), int(step)
    if abs(hi - lo) // by + 1 > MAX_ITEMS:
        raise BuiltinError(f"{fn}: more than {MAX_ITEMS} elements")
    return list(range(lo, hi + 1, by)) if hi >= lo else list(range(lo, hi - 1, -by))


# ---------------------------------------------------------------- graphs


def _vertices(fn: str, v: Any) -> list[Any]:
    if type(v) is list or isinstance(v, (RegoSet, set, frozenset)):
        return list(v)
    raise BuiltinError(f"{fn}: initial vertices must be an array or a set")


def _index(graph: dict[Any, Any]) -> dict[Any, Any]:
    """The graph keyed by Rego equality (``rego_sort_key``: ``1`` and ``1.0`` are one
    key, ``true`` and ``1`` are two, arrays and tuples alike)."""
    return {rego_sort_key(k): v for k, v in graph.items()}


def _neighbours(edges: Any) -> list[Any] | None:
    if type(edges) is list or type(edges) is tuple or isinstance(edges, (RegoSet, set, frozenset)):
        return list(edges)
    return None


@builtin("graph.reachable")
def reachable(graph: Any, initial: Any) -> RegoSet:
    """Vertices reachable from ``initial`` (included when they are vertices of the graph)."""
    fn = "graph.reachable"
    want(fn, 1, graph, "object")
    todo = _vertices(fn, initial)
    index = _index(graph)
    seen: dict[Any, Any] = {}
    steps = 0
    while todo:
        v = todo.pop()
        k = rego_sort_key(v)
        if k in seen or k not in index:
            continue
        steps += 1
        if steps > MAX_STEPS or len(todo) > MAX_STEPS:
            raise BuiltinError(f"{fn}: graph too large (more than {MAX_STEPS} steps)")
        todo.extend(_neighbours(index[k]) or ())
        seen[k] = v
    return RegoSet(seen.values())


@builtin("graph.reachable_paths")
def reachable_paths(graph: Any, initial: Any) -> RegoSet:
    """Every maximal simple path from each initial vertex, as regorus enumerates them: a
    path ends at a vertex without neighbours, before a vertex already on it, or before
    a neighbour that is no vertex of the graph (and at ``""``)."""
    fn = "graph.reachable_paths"
    want(fn, 1, graph, "object")
    roots = _vertices(fn, initial)
    index = _index(graph)
    paths: dict[Any, list[Any]] = {}
    budget = [MAX_STEPS]

    def record(path: list[Any]) -> None:
        budget[0] -= len(path)
        key = tuple(rego_sort_key(x) for x in path)
        if key not in paths:
            if len(paths) >= MAX_ITEMS:
                raise BuiltinError(f"{fn}: more than {MAX_ITEMS} paths")
            paths[key] = list(path)

    # one explicit stack of (vertex key, its neighbours, next neighbour to visit); the
    # path and its vertices are empty again after each root
    path: list[Any] = []
    on_path: set[Any] = set()
    frames: list[tuple[Any, list[Any], int]] = []

    def enter(v: Any) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise BuiltinError(f"{fn}: graph too large (more than {MAX_STEPS} steps)")
        if v == "" and type(v) is str:
            if path:
                record(path)
            return
        k = rego_sort_key(v)
        if k not in index:
            if path:
                record(path)
            return
        if k in on_path:
            record(path)
            return
        edges = index[k]
        nbrs = _neighbours(edges)
        if nbrs is None:
            if edges is not None:
                raise BuiltinError(f"{fn}: neighbours of a vertex must be an array or a set")
            nbrs = []
        path.append(v)
        on_path.add(k)
        if not nbrs:
            record(path)
        frames.append((k, nbrs[::-1], 0))

    for root in roots:
        enter(root)
        while frames:
            k, nbrs, i = frames[-1]
            if i < len(nbrs):
                frames[-1] = (k, nbrs, i + 1)
                enter(nbrs[i])
            else:
                frames.pop()
                on_path.discard(k)
                path.pop()
    return RegoSet(paths.values())


# ---------------------------------------------------------------- arrays


@builtin("array.flatten")
def array_flatten(arr: Any) -> list[Any]:
    """OPA's ``array.flatten``: one level of nesting removed (regorus lacks it)."""
    want("array.flatten", 1, arr, "array")
    out: list[Any] = []
    for item in arr:
        if type(item) is list or type(item) is tuple:
            out.extend(item)
        else:
            out.append(item)
        if len(out) > MAX_ITEMS:
            raise BuiltinError(f"array.flatten: more than {MAX_ITEMS} elements")
    return out


# ---------------------------------------------------------------- random


_MAX_RAND_MEMO = 4096


@builtin("rand.intn", pure=False)
def rand_intn(ctx: EvalContext, key: Any, n: Any) -> int:
    """OPA's ``rand.intn``: a random integer in ``[0, |n|)`` (0 for ``n == 0``), the same
    for the same ``(key, n)`` within one evaluation, as OPA caches it per query.

    The memo is the evaluation's (``EvalContext.memo``, cleared for each evaluation).
    """
    fn = "rand.intn"
    want(fn, 1, key, "string")
    n = abs(_integer(fn, 2, n))
    if n == 0:
        return 0
    memo = ctx.memo
    value = memo.get((fn, key, n))
    if value is None:
        if sum(1 for k in memo if k[0] == fn) >= _MAX_RAND_MEMO:
            raise BuiltinError(f"{fn}: more than {_MAX_RAND_MEMO} distinct calls in one evaluation")
        value = memo[(fn, key, n)] = secrets.randbelow(n)
    return value  # type: ignore[no-any-return]
