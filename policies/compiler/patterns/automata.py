"""Syntax tree → Thompson NFA → DFA (subset construction, pruning, minimisation) →
the blob ``a1rt_match.c`` walks."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from policies.compiler.patterns.constants import (
    BLOB_VERSION,
    DFA_CAP,
    DFA_MAGIC,
    NFA_CAP,
    S_EOI,
    S_MATCH,
    TABLE_CAP,
)
from policies.compiler.patterns.errors import unsupported_feature
from policies.compiler.patterns.nodes import Alt, Assert, Cat, Node, Set, nfa_size
from policies.compiler.patterns.ranges import Ranges


class _NFA:
    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.sym: list[tuple[Ranges, int] | None] = []
        self.asserts: list[tuple[bool, int] | None] = []

    def new(self) -> int:
        self.eps.append([])
        self.sym.append(None)
        self.asserts.append(None)
        return len(self.eps) - 1

    def build(self, node: Node) -> tuple[int, int]:
        s = self.new()
        if isinstance(node, Set):
            t = self.new()
            self.sym[s] = (node.ranges, t)
        elif isinstance(node, Assert):
            t = self.new()
            self.asserts[s] = (node.end, t)
        elif isinstance(node, Cat):
            cur = s
            for item in node.items:
                a, b = self.build(item)
                self.eps[cur].append(a)
                cur = b
            t = cur
        elif isinstance(node, Alt):
            t = self.new()
            for item in node.items:
                a, b = self.build(item)
                self.eps[s].append(a)
                self.eps[b].append(t)
        else:
            cur = s
            for _ in range(node.lo):
                a, b = self.build(node.item)
                self.eps[cur].append(a)
                cur = b
            t = self.new()
            if node.hi is None:
                a, b = self.build(node.item)
                self.eps[cur].extend((a, t))
                self.eps[b].extend((a, t))
            else:
                for _ in range(node.hi - node.lo):
                    a, b = self.build(node.item)
                    self.eps[cur].extend((a, t))
                    cur = b
                self.eps[cur].append(t)
        return s, t

    def closure(self, states: Iterable[int], at_start: bool, at_end: bool) -> set[int]:
        seen: set[int] = set()
        todo = list(states)
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            todo.extend(self.eps[s])
            a = self.asserts[s]
            if a is not None and (at_end if a[0] else at_start):
                todo.append(a[1])
        return seen


@dataclass
class _DFA:
    """A DFA over symbol classes. ``classes`` maps sorted, disjoint symbol ranges to a class;
    symbols outside every range are class 0. ``table[state][class]`` is a state or -1 (dead)."""

    start: int  # -1: the pattern matches nothing
    flags: list[int]
    table: list[list[int]]
    classes: list[tuple[int, int, int]]

    def class_of(self, sym: int) -> int:
        for lo, hi, k in self.classes:
            if lo <= sym <= hi:
                return k
        return 0


def _alphabet(sets: list[Ranges]) -> tuple[list[tuple[int, int, int]], list[frozenset[int]]]:
    """Split the symbols into classes that every set in ``sets`` either holds or excludes.

    Returns the class ranges and, per class, the indices of the sets that hold it; class 0
    is the symbols no set holds.
    """
    events: dict[int, list[tuple[int, int]]] = {}
    for i, ranges in enumerate(sets):
        for lo, hi in ranges:
            events.setdefault(lo, []).append((i, 1))
            events.setdefault(hi + 1, []).append((i, -1))
    sigs: dict[frozenset[int], int] = {frozenset(): 0}
    out: list[tuple[int, int, int]] = []
    active: dict[int, int] = {}
    cuts = sorted(events)
    for n, at in enumerate(cuts):
        for i, d in events[at]:
            active[i] = active.get(i, 0) + d
            if not active[i]:
                del active[i]
        if n + 1 == len(cuts) or not active:
            continue
        k = sigs.setdefault(frozenset(active), len(sigs))
        hi = cuts[n + 1] - 1
        if out and out[-1][2] == k and out[-1][1] + 1 == at:
            out[-1] = (out[-1][0], hi, k)
        else:
            out.append((at, hi, k))
    by_class = [frozenset()] * len(sigs)
    for sig, k in sigs.items():
        by_class[k] = sig
    return out, by_class


def build_dfa(node: Node, *, search: bool) -> _DFA:
    if nfa_size(node) > NFA_CAP:
        raise unsupported_feature("pattern too large (repetition counts expand past the cap)", 0)
    nfa = _NFA()
    entry, accept = nfa.build(node)

    set_index: dict[Ranges, int] = {}
    sym_set: dict[int, int] = {}
    for s, sym in enumerate(nfa.sym):
        if sym is not None:
            sym_set[s] = set_index.setdefault(sym[0], len(set_index))
    classes, members = _alphabet(list(set_index))

    ids: dict[tuple[frozenset[int], int], int] = {}
    kernels: list[frozenset[int]] = []
    flags: list[int] = []
    match_id = -1

    def add(kernel: frozenset[int], f: int) -> int:
        key = (kernel, f)
        if key not in ids:
            if len(kernels) >= DFA_CAP:
                raise unsupported_feature(f"pattern needs more than {DFA_CAP} automaton states", 0)
            ids[key] = len(kernels)
            kernels.append(kernel)
            flags.append(f)
        return ids[key]

    def intern(closed: set[int], at_start: bool) -> int:
        nonlocal match_id
        if search and accept in closed:
            if match_id < 0:
                match_id = add(frozenset(), S_MATCH)
            return match_id
        eoi = accept in nfa.closure(closed, at_start, True)
        kernel = frozenset(s for s in closed if s in sym_set)
        if not kernel and not eoi:
            return -1
        return add(kernel, S_EOI if eoi else 0)

    restart = nfa.closure([entry], False, False) if search else set()
    start = intern(nfa.closure([entry], True, False), True)
    table: list[list[int]] = []
    cache: dict[frozenset[int], int] = {}
    i = 0
    while i < len(kernels):
        by_set: dict[int, list[int]] = {}
        for s in kernels[i]:
            by_set.setdefault(sym_set[s], []).append(nfa.sym[s][1])  # type: ignore[index]
        row: list[int] = []
        for k in range(len(members)):
            if flags[i] & S_MATCH:
                row.append(-1)
                continue
            targets = frozenset(t for j in members[k] for t in by_set.get(j, ()))
            if targets not in cache:
                cache[targets] = intern(nfa.closure(targets, False, False) | restart, False)
            row.append(cache[targets])
        table.append(row)
        i += 1
    return _DFA(start, flags, table, classes)


def minimise(dfa: _DFA) -> _DFA:
    """Drop states that cannot accept, merge equivalent states (Moore), then merge classes
    whose columns agree."""
    n = len(dfa.flags)
    rev: list[set[int]] = [set() for _ in range(n)]
    for s, row in enumerate(dfa.table):
        for t in row:
            if t >= 0:
                rev[t].add(s)
    live = {s for s in range(n) if dfa.flags[s]}
    todo = list(live)
    while todo:
        for p in rev[todo.pop()]:
            if p not in live:
                live.add(p)
                todo.append(p)
    if dfa.start not in live:
        return _DFA(-1, [], [], [])
    block = _hopcroft(dfa, live)
    # One state per block, numbered breadth-first from the start.
    order: dict[int, int] = {}
    reps: list[int] = []
    queue = [dfa.start]
    while queue:
        s = queue.pop(0)
        if block[s] in order:
            continue
        order[block[s]] = len(reps)
        reps.append(s)
        queue.extend(t for t in dfa.table[s] if t in live)
    table = [[order[block[t]] if t in live else -1 for t in dfa.table[s]] for s in reps]
    return _merge_classes(_DFA(0, [dfa.flags[s] for s in reps], table, dfa.classes))


def _hopcroft(dfa: _DFA, live: set[int]) -> dict[int, int]:
    """Hopcroft's partition refinement over the live states; transitions to states outside
    ``live`` count as one dead sink. Returns each live state's block."""
    sink = len(dfa.flags)
    states = [*sorted(live), sink]
    n_classes = len(dfa.table[0])
    inverse: list[dict[int, list[int]]] = [{} for _ in range(n_classes)]
    for s in states:
        row = dfa.table[s] if s != sink else [sink] * n_classes
        for k, t in enumerate(row):
            inverse[k].setdefault(t if t in live else sink, []).append(s)
    by_flags: dict[int, set[int]] = {}
    for s in live:
        by_flags.setdefault(dfa.flags[s], set()).add(s)
    blocks: list[set[int]] = [{sink}, *by_flags.values()]
    block_of = {s: b for b, members in enumerate(blocks) for s in members}
    work = list(range(len(blocks)))
    pending = set(work)
    while work:
        a = work.pop()
        pending.discard(a)
        splitter = list(blocks[a])
        for k in range(n_classes):
            hit: dict[int, list[int]] = {}
            for t in splitter:
                for s in inverse[k].get(t, ()):
                    hit.setdefault(block_of[s], []).append(s)
            for b, inside in hit.items():
                if len(inside) == len(blocks[b]):
                    continue
                new = len(blocks)
                blocks.append(set(inside))
                blocks[b].difference_update(inside)
                for s in inside:
                    block_of[s] = new
                if b in pending or len(blocks[new]) <= len(blocks[b]):
                    work.append(new)
                    pending.add(new)
                else:
                    work.append(b)
                    pending.add(b)
    return {s: block_of[s] for s in live}


def _merge_classes(dfa: _DFA) -> _DFA:
    n_classes = len(dfa.table[0]) if dfa.table else 1
    columns = [tuple(row[k] for row in dfa.table) for k in range(n_classes)]
    ids: dict[tuple[int, ...], int] = {columns[0]: 0}
    remap = [ids.setdefault(col, len(ids)) for col in columns]
    classes: list[tuple[int, int, int]] = []
    for lo, hi, k in dfa.classes:
        nk = remap[k]
        if nk == 0:
            continue
        if classes and classes[-1][2] == nk and classes[-1][1] + 1 == lo:
            classes[-1] = (classes[-1][0], hi, nk)
        else:
            classes.append((lo, hi, nk))
    firsts = {}
    for k, nk in enumerate(remap):
        firsts.setdefault(nk, k)
    table = [[row[firsts[nk]] for nk in range(len(ids))] for row in dfa.table]
    return _DFA(dfa.start, dfa.flags, table, classes)


def fold_bytes(dfa: _DFA, mapping: list[bytes | None]) -> _DFA:
    """A DFA that reads byte ``b`` as the byte string ``mapping[b]`` (None: no transition)."""
    byte_class = [dfa.class_of(b) for b in range(256)]
    table: list[list[int]] = []
    for s in range(len(dfa.flags)):
        row = [-1]  # class 0: no byte is left outside the classes below
        for b in range(256):
            seq = mapping[b]
            t = -1 if seq is None else s
            for x in seq or b"":
                t = dfa.table[t][byte_class[x]]
                if t < 0:
                    break
            row.append(t)
        table.append(row)
    classes = [(b, b, b + 1) for b in range(256)]
    return _DFA(dfa.start, list(dfa.flags), table, classes)


def serialise(dfa: _DFA, blob_flags: int) -> bytes:
    n = len(dfa.flags)
    n_classes = len(dfa.table[0]) if n else 1
    if n * n_classes > TABLE_CAP:
        raise unsupported_feature(
            f"pattern automaton too large ({n} states x {n_classes} symbol classes)", 0
        )
    total = 32 + 12 * len(dfa.classes) + 4 * n + 4 * n * n_classes
    total += -total % 8
    out = bytearray(
        struct.pack(
            "<8I",
            DFA_MAGIC,
            BLOB_VERSION,
            blob_flags,
            n,
            dfa.start if n else 0xFFFFFFFF,
            n_classes,
            len(dfa.classes),
            total,
        )
    )
    for lo, hi, k in dfa.classes:
        out += struct.pack("<3I", lo, hi, k)
    out += struct.pack(f"<{n}I", *dfa.flags)
    for row in dfa.table:
        out += struct.pack(f"<{n_classes}I", *(t & 0xFFFFFFFF for t in row))
    out += bytes(total - len(out))
    return bytes(out)
