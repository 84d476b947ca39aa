"""The decision pipeline shared by the three front doors (ext_authz gRPC, ext_proc, HTTP).

identity + target tenant → cell → that cell's policy version (through the exact
decision cache) → a ``Decision`` that each front door renders once and then reuses.

Staged rollout: a snapshot holds a default policy module and per-cell overrides
(the canary cell runs the new version first). The cell is picked first, then the
module assigned to it, so a request is evaluated, cached, labelled
(``x-a1-policy-version``, decision log, metrics) with exactly one version.

Concurrency: the engine serves from one immutable ``Snapshot`` (policy versions,
cell table, cache) that a ``ConfigSource`` swaps in with a single attribute store.
Evaluators are not thread-safe, so each thread keeps its own per version, rebuilt
when the snapshot changes. Everything that goes wrong inside ``decide`` is a deny.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ext_proc import defaults
from ext_proc.config import DEFAULT_ENTRYPOINT, TenantSource
from ext_proc.decision_log import DecisionLog
from ext_proc.logutil import RateLimited, describe
from ext_proc.opa_envoy import A1_INPUT, INPUT_KINDS, OPA_ENVOY_INPUT
from ext_proc.opa_envoy.decision import Malformed, allow_headers, header_refusal, parse_decision
from ext_proc.opa_envoy.input import InputRefused, RequestView, build_input
from ext_proc.policy import UNDEFINED, PolicyError
from ext_proc.request import A1_PREFIX, RequestFacts, RequestReader
from ext_proc.stats import Stats, StatsKey, ThreadStats
from policies.core.bounded import ENTRY_OVERHEAD, ByteLRU
from policies.core.cells import CellTable
from policies.headers import CELL_HEADER, VERSION_HEADER

log = logging.getLogger("ext_proc.engine")

REASON_HEADER = "x-a1-deny-reason"
__all__ = ["A1_PREFIX", "Decision", "Engine", "PolicyVersion", "deny"]
# What front doors may memoise per decision (pre-serialized responses: one door's
# typical allow rendering is 170-260 bytes, so three doors' fit).
RENDER_BUDGET = 1024

_perf_ns = time.perf_counter_ns
_now = time.time


class Decision:
    """One outcome, immutable once built; front doors memoise their renderings in ``rendered``.

    ``headers`` are the upstream request headers to set on allow, or the client
    response headers on deny. ``set_names`` lets a front door strip every other
    client-supplied ``x-a1-*`` header.
    """

    __slots__ = (
        "allow", "body", "cell", "cost", "dropped", "headers", "metadata", "reason",
        "remove_headers", "rendered", "rendered_bytes", "response_headers", "result",
        "set_names", "stats_key", "status", "version",
    )  # fmt: skip

    def __init__(
        self,
        allow: bool,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        cell: str,
        version: str,
        result: str,
        dropped: tuple[str, ...] = (),
        route: str | None = None,
        response_headers: tuple[tuple[str, str], ...] = (),
        remove_headers: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.allow = allow
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.cell = cell
        self.version = version
        self.result = result  # metric label: allow | deny | error
        self.set_names = frozenset(k for k, _ in headers)
        self.dropped = dropped  # metric labels of policy headers refused (policies.headers)
        # OPA-Envoy decisions (ext_proc.opa_envoy.decision): client response headers on
        # allow, upstream headers to remove on allow, Envoy dynamic metadata.
        self.response_headers = response_headers
        self.remove_headers = remove_headers
        self.metadata = metadata
        # The counter it bumps (ext_proc.stats): built once, so counting allocates nothing.
        # ``route`` is the cell the request went to when the decision names none (errors);
        # with no route and no cell it counts under no version either.
        route = cell if route is None else route
        self.stats_key: StatsKey = (result, cell, route, version if route else "")
        self.rendered: dict[Any, bytes] = {}
        self.rendered_bytes = 0
        # Bytes charged to a cache holding this decision: its strings, the renderings
        # budget and a fixed overhead (ext_proc.bounded).
        self.cost = (
            len(reason) + len(body) + len(cell) + len(version)
            + sum(len(k) + len(v) + 64 for k, v in headers)
            + sum(len(k) + len(v) + 64 for k, v in response_headers)
            + sum(len(k) + 64 for k in remove_headers)
            + (len(json.dumps(metadata)) if metadata else 0)
            + RENDER_BUDGET + 2 * ENTRY_OVERHEAD
        )  # fmt: skip

    def memo_render(self, key: Any, b: bytes) -> None:
        """Keep a front door's rendering, within ``RENDER_BUDGET`` bytes per decision."""
        n = len(b) + sizeof_key(key)
        if self.rendered_bytes + n <= RENDER_BUDGET:
            self.rendered[key] = b
            self.rendered_bytes += n

    def __repr__(self) -> str:
        return (
            f"Decision(allow={self.allow}, status={self.status}, reason={self.reason!r}, "
            f"cell={self.cell!r}, headers={self.headers!r})"
        )


def deny(
    status: int,
    reason: str,
    cell: str = "",
    version: str = "",
    result: str = "deny",
    route: str | None = None,
) -> Decision:
    reason = header_safe(reason)
    return Decision(
        False,
        status,
        reason,
        ((REASON_HEADER, reason), ("content-type", "application/json")),
        json.dumps({"error": reason}).encode(),
        cell,
        version,
        result,
        route=route,
    )


def header_safe(value: str) -> str:
    """Printable ASCII only: a policy string must not be able to break a header."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def sizeof_key(key: Any) -> int:
    """Bytes of a flat tuple key's str/bytes parts (memo, exact and rendering keys)."""
    n = 0
    for part in key:
        t = type(part)
        if t is str or t is bytes:
            n += len(part)
        elif t is tuple:
            n += sum(len(x) for x in part)
    return n


class Caches:
    """The two layers of the decision cache of one snapshot (pure policy versions only).

    ``exact`` is keyed on ``(ev.encode(input), cell)``: exactly the values the
    policy reads, so requests that differ only in what the policy ignores share
    an entry. ``memo`` sits in front of ``encode`` (about 5 us): it is keyed on the
    raw request fields that the input and the cell are computed from, so a repeat
    request costs one tuple hash. Both are invalidated together, by replacing the
    snapshot, whenever a bundle version, the assignment or the cell table changes.

    One pair serves every policy version of the snapshot, and that is exact:
    within a snapshot the cell is a function of the memo key (of ``tenant``, or
    of the subject ``subject_key`` determines) and the version a function of the
    cell, so neither layer can hand one version's decision to a request routed to
    another (``exact`` names the cell outright). Sharing keeps the whole snapshot
    within ``max_bytes`` and lets the LRU give the bytes to whichever version has
    the traffic, instead of reserving a share for a canary that sees 1% of it.

    Each layer holds at most ``size`` entries and ``max_bytes / 2`` bytes: a key
    costs its strings' lengths plus ``ENTRY_OVERHEAD``, and each layer also
    charges the decision it points to (``Decision.cost``), so that a decision
    evicted from one layer is still paid for while the other keeps it alive.
    """

    __slots__ = ("exact", "memo")

    def __init__(self, size: int, max_bytes: int = defaults.CACHE_BYTES) -> None:
        self.exact: ByteLRU[Decision] = ByteLRU(size, max_bytes // 2)
        self.memo: ByteLRU[Decision] = ByteLRU(size, max_bytes // 2)

    def __len__(self) -> int:
        return len(self.exact)


class PolicyVersion:
    """One policy module as a snapshot serves it; ``index`` is its evaluator's slot in
    each thread's list (``_Local.evs``)."""

    __slots__ = ("index", "module", "paths", "pure", "version")

    def __init__(self, index: int, module: Any) -> None:
        self.index = index
        self.module = module
        self.version: str = module.version
        self.pure = bool(getattr(module.meta, "pure", False))
        # What an OPA-Envoy input is built for: exactly the paths the policy reads.
        self.paths: tuple[tuple[str, ...], ...] = tuple(
            tuple(p) for p in getattr(module.meta, "input_paths", ((),))
        )

    def __repr__(self) -> str:
        return f"PolicyVersion({self.index}, {self.version[:12]})"


class Snapshot:
    """What the engine serves from: the policy versions, the cell table, their caches.

    ``default`` serves every cell without an override in ``by_cell``. Modules with
    equal versions share one ``PolicyVersion``, so a snapshot holds as many
    versions (and each thread as many evaluators) as distinct bundles are
    assigned: in a rollout, two. ``live`` is this snapshot's versions plus the
    previous snapshot's: the versions whose per-version counters are exposed.
    """

    __slots__ = (
        "by_cell", "cache", "cells", "default", "entrypoint", "live", "module", "version",
        "versions",
    )  # fmt: skip

    def __init__(
        self,
        module: Any,
        cells: CellTable,
        entrypoint: str,
        cache_size: int,
        cache_bytes: int = defaults.CACHE_BYTES,
        cell_modules: Mapping[str, Any] | None = None,
        previous: Snapshot | None = None,
    ) -> None:
        self.cells = cells
        self.entrypoint = entrypoint
        by_version: dict[str, PolicyVersion] = {}

        def version_of(mod: Any) -> PolicyVersion:
            pv = by_version.get(mod.version)
            if pv is None:
                pv = by_version[mod.version] = PolicyVersion(len(by_version), mod)
            return pv

        self.default = version_of(module)
        self.module = module
        self.version: str = self.default.version
        # Overrides naming a cell the table lacks are kept out: they could never route.
        self.by_cell: dict[str, PolicyVersion] = {
            cell: version_of(mod)
            for cell, mod in sorted((cell_modules or {}).items())
            if cell in cells.cells and mod.version != self.version
        }
        self.versions: tuple[PolicyVersion, ...] = tuple(by_version.values())
        mine = frozenset(by_version)
        self.live: frozenset[str] = mine | (
            frozenset(pv.version for pv in previous.versions) if previous is not None else mine
        )
        # A new snapshot means new caches: the versions are implicit in the keys.
        pure = any(pv.pure for pv in self.versions)
        self.cache = (
            Caches(cache_size, cache_bytes) if pure and cache_size > 0 and cache_bytes > 0 else None
        )

    def version_of_cell(self, cell: str) -> PolicyVersion:
        return self.by_cell.get(cell, self.default)

    def cell_versions(self) -> dict[str, str]:
        """Each cell of the table and the policy version its requests are evaluated with."""
        return {cell: self.version_of_cell(cell).version for cell in self.cells.cells}


class _Local(threading.local):
    def __init__(self) -> None:  # runs once per thread
        self.snap: Snapshot | None = None
        self.evs: list[Any] = []  # the evaluator of each of ``snap.versions``, made on first use
        self.stats: ThreadStats | None = None


class Engine:
    """``decide_facts(RequestFacts) -> Decision``; never raises. ``decide(method, path,
    host, tenant_header, subject)`` reads the facts first (``ext_proc.request``)."""

    def __init__(
        self,
        tenant: TenantSource | None = None,
        entrypoint: str = DEFAULT_ENTRYPOINT,
        cache_size: int = defaults.CACHE_ENTRIES,
        stats: Stats | None = None,
        decision_log: DecisionLog | None = None,
        cache_bytes: int = defaults.CACHE_BYTES,
        max_path: int = defaults.MAX_PATH,
        input_kind: str = A1_INPUT,
    ) -> None:
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {', '.join(INPUT_KINDS)}")
        self.reader = RequestReader(tenant, max_path)
        # ``opa-envoy``: the policy reads OPA-Envoy's input document and answers in its
        # decision shapes (ext_proc.opa_envoy); the front doors then hand ``decide_facts``
        # a view of the whole request.
        self.opa_envoy = input_kind == OPA_ENVOY_INPUT
        self.entrypoint = entrypoint
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self.stats = stats or Stats()
        self.decision_log = decision_log
        self._snap: Snapshot | None = None
        self._limited = RateLimited(log)
        self._local = _Local()
        self._no_policy = deny(503, "no policy loaded", result="error")
        self._internal_error = deny(500, "internal error", result="error")
        self._apply_lock = threading.Lock()

    # -- configuration (the ConfigSource sink) -------------------------------------------

    def apply(
        self, module: Any, cells: CellTable, cell_modules: Mapping[str, Any] | None = None
    ) -> None:
        """Install a new snapshot atomically (one attribute store).

        ``module`` is the default policy, serving every cell without an entry in
        ``cell_modules``; ``cell_modules[cell]`` overrides it for that cell (the
        canary). Entries for cells the table does not have are ignored.
        """
        with self._apply_lock:  # ``previous`` must be the snapshot this one replaces
            snap = Snapshot(
                module, cells, self.entrypoint, self.cache_size, self.cache_bytes,
                cell_modules, self._snap,
            )  # fmt: skip
            # Versions first: a scrape between the two stores sees a superset, never
            # counts of a version it does not know yet.
            self.stats.set_versions(snap.version, cells.version, snap.cell_versions(), snap.live)
            self._snap = snap

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snap

    @property
    def policy_version(self) -> str:
        return self._snap.version if self._snap is not None else ""

    @property
    def tenant_header(self) -> str | None:
        return self.reader.tenant_header

    def set_tenant_fn(self, fn: Callable[[str, str, str | None], str | None]) -> None:
        self.reader.tenant_fn = fn
        self.reader.tenant_kind = "custom"

    # -- the hot path -----------------------------------------------------------------------

    def decide(
        self,
        method: str,
        path: str,
        host: str = "",
        tenant_header: str | None = None,
        subject: dict[str, Any] | None = None,
        subject_key: Any = None,
    ) -> Decision:
        """Decide one request given as fields. ``subject_key``, if given, must determine
        ``subject`` exactly (the raw claims carrier); it enables the memo."""
        try:
            f = self.reader.facts(method, path, host, tenant_header, subject, subject_key)
        except Exception as err:
            st = self._stats()
            st.eval_errors += 1
            self._limited.log(logging.ERROR, "internal", "internal error (deny): %s", describe(err))
            st.record(self._internal_error.stats_key, 0)
            return self._internal_error
        return self.decide_facts(f)

    def _stats(self) -> ThreadStats:
        loc = self._local
        st = loc.stats
        if st is None:
            st = loc.stats = self.stats.mine()
        return st

    def decide_facts(self, f: RequestFacts, view: RequestView | None = None) -> Decision:
        """Decide one request (see ``ext_proc.request`` for how facts are read).

        ``view`` is the whole request, which an OPA-Envoy policy's input is built from."""
        t0 = _perf_ns()
        loc = self._local
        st = loc.stats
        if st is None:
            st = loc.stats = self.stats.mine()
        method, path, tenant, subject = f.method, f.path, f.tenant, f.subject
        cached = False
        try:
            snap = self._snap
            if f.status:
                d = deny(f.status, f.reason, version=snap.version if snap is not None else "")
            elif snap is None:
                d = self._no_policy
            elif self.opa_envoy:
                # No memo: the policy reads more than (method, path, tenant, claims).
                d, cached = self._decide_opa(snap, loc, st, f, view)
            else:
                memo_key = None
                cache = snap.cache
                subject_key = f.subject_key
                if cache is not None and (subject_key is not None or subject is None):
                    # Everything the input and the cell (hence the version) derive from:
                    # a hit skips encode too.
                    memo_key = (method, path, tenant, subject_key)
                    d = cache.memo.get(memo_key)  # type: ignore[assignment]
                    if d is not None:
                        st.cache_hits += 1
                        cached = True
                if not cached:
                    d, cached = self._decide(snap, loc, st, method, path, tenant, subject, memo_key)
        except PolicyError as err:  # raised outside evaluation (the evaluator's own setup)
            st.eval_errors += 1
            self._limited.log(logging.WARNING, "eval", "policy evaluation error (deny): %s", err)
            d = deny(500, "policy evaluation failed", result="error")
        except Exception as err:
            st.eval_errors += 1
            self._limited.log(logging.ERROR, "internal", "internal error (deny): %s", describe(err))
            d = self._internal_error
        elapsed = _perf_ns() - t0
        st.record(d.stats_key, elapsed)
        if d.dropped:
            st.drop_headers(d.dropped)
        dl = self.decision_log
        if dl is not None:
            sub = subject.get("sub") if subject is not None else None
            dl.append(
                (_now(), method, path, tenant, sub, d.cell, d.allow, d.status, d.reason,
                 d.version, cached, elapsed)
            )  # fmt: skip
        return d

    def _policy(
        self,
        snap: Snapshot,
        loc: _Local,
        st: ThreadStats,
        tenant: str | None,
        subject: dict[str, Any] | None,
    ) -> tuple[str, PolicyVersion, Any]:
        """The request's cell (by its tenant, else its subject's, else the default cell),
        the cell's policy version and this thread's evaluator of it (made on first use)."""
        if tenant is not None:
            cell = snap.cells.lookup(tenant)
        elif subject is not None and isinstance(subject.get("tenant"), str):
            cell = snap.cells.lookup(subject["tenant"])
        else:
            cell = snap.cells.lookup("")
        pv = snap.version_of_cell(cell)
        if loc.snap is not snap:
            self._switch(loc, st, snap)
        ev = loc.evs[pv.index]
        if ev is None:
            ev = loc.evs[pv.index] = pv.module.evaluator(snap.entrypoint)
        return cell, pv, ev

    def _decide(
        self,
        snap: Snapshot,
        loc: _Local,
        st: ThreadStats,
        method: str,
        path: str,
        tenant: str | None,
        subject: dict[str, Any] | None,
        memo_key: tuple[Any, ...] | None,
    ) -> tuple[Decision, bool]:
        """Cell, its policy version, input document, exact cache on the encoded input,
        evaluation; then the memo (``memo_key``, if any) learns the decision.

        Returns the decision and whether it came from the cache."""
        inp: dict[str, Any] = {"method": method, "path": path}
        if tenant is not None:
            inp["tenant"] = tenant
        if subject is not None:
            inp["subject"] = subject
        cell, pv, ev = self._policy(snap, loc, st, tenant, subject)
        version = pv.version
        cache = snap.cache if pv.pure else None
        hit = None
        try:
            key = ev.encode(inp)
            if cache is not None:
                ck = (key, cell)
                hit = cache.exact.get(ck)
            if hit is not None:
                st.cache_hits += 1
                d = hit
            else:
                d = self._render(ev.eval_encoded(key), cell, version)
                if cache is not None and d.result != "error":
                    cache.exact.put(ck, d, len(key) + len(cell) + ENTRY_OVERHEAD + d.cost)
        except PolicyError as err:
            # Counted against the cell and the version that failed: what a rollout watches.
            self._limited.log(logging.WARNING, "eval", "policy evaluation error (deny): %s", err)
            d = deny(500, "policy evaluation failed", "", version, "error", route=cell)
        if d.result == "error":
            st.eval_errors += 1
        elif memo_key is not None and cache is not None:
            cache.memo.put(memo_key, d, sizeof_key(memo_key) + ENTRY_OVERHEAD + d.cost)
        return d, hit is not None

    def _decide_opa(
        self,
        snap: Snapshot,
        loc: _Local,
        st: ThreadStats,
        f: RequestFacts,
        view: RequestView | None,
    ) -> tuple[Decision, bool]:
        """An OPA-Envoy policy: cell, version, the input built from ``view`` for the
        paths the policy reads, the exact cache (pure policies; keyed on the encoded
        input, so a hit answers only a request equal in everything the policy reads),
        evaluation, OPA-Envoy's decision shapes."""
        cell, pv, ev = self._policy(snap, loc, st, f.tenant, f.subject)
        version = pv.version
        if view is None:  # a front door that cannot present the request: never allow
            self._limited.log(logging.ERROR, "opa", "OPA-Envoy input without a request view")
            return deny(500, "internal error", "", version, "error", route=cell), False
        try:
            key = ev.encode(build_input(pv.paths, view))
        except InputRefused as err:
            return deny(err.status, err.reason, "", version, route=cell), False
        except ValueError as err:  # a value the ABI cannot carry (lone surrogate, depth)
            self._limited.log(logging.WARNING, "opa", "request input refused: %s", err)
            return deny(400, "request cannot be presented to the policy", "", version,
                        route=cell), False  # fmt: skip
        cache = snap.cache if pv.pure else None
        ck = (key, cell)
        hit = cache.exact.get(ck) if cache is not None else None
        if hit is not None:
            st.cache_hits += 1
            return hit, True
        try:
            d = self._render_opa(ev.eval_encoded(key), cell, version)
        except PolicyError as err:
            self._limited.log(logging.WARNING, "eval", "policy evaluation error (deny): %s", err)
            d = deny(500, "policy evaluation failed", "", version, "error", route=cell)
        if d.result == "error":
            st.eval_errors += 1
        elif cache is not None:
            cache.exact.put(ck, d, len(key) + len(cell) + ENTRY_OVERHEAD + d.cost)
        return d, False

    def _render_opa(self, result: Any, cell: str, version: str) -> Decision:
        """OPA-Envoy's decision (a boolean or its object form) → a Decision; malformed
        denies with 500 (ext_proc.opa_envoy.decision)."""

        def warn(message: str) -> None:
            self._limited.log(logging.WARNING, "header", "%s", message)

        try:
            p = parse_decision(result, warn)
        except Malformed as err:
            self._limited.log(logging.WARNING, "shape", "OPA-Envoy decision malformed (deny): %s",
                              err)  # fmt: skip
            return deny(500, "policy decision malformed", cell, version, "error")
        dropped = tuple(p.dropped)
        if p.allowed:
            return Decision(True, 200, "allowed", allow_headers(p, cell, version), b"", cell,
                            version, "allow", dropped, None, p.response_headers, p.remove,
                            p.metadata)  # fmt: skip
        if p.status_refused is not None:
            self._limited.log(logging.WARNING, "status",
                              "OPA-Envoy deny with http_status %d: answered 403 instead",
                              p.status_refused)  # fmt: skip
        reason = "denied"
        if p.body is None:  # A1's deny body and its headers, then the policy's
            plain = deny(p.status, reason, cell, version)
            headers, body = (*plain.headers, *p.headers), plain.body
        else:
            headers, body = ((REASON_HEADER, reason), *p.headers), p.body.encode()
        return Decision(False, p.status, reason, headers, body, cell, version, "deny", dropped,
                        None, (), (), p.metadata)  # fmt: skip

    @staticmethod
    def _switch(loc: _Local, st: ThreadStats, snap: Snapshot) -> None:
        """This thread's first decision under ``snap``: keep the evaluators of modules
        it still serves (one per version, so at most ``len(snap.versions)``), and
        retire the counters of versions out of service."""
        old = loc.snap
        keep: dict[int, Any] = {}
        if old is not None:
            for opv, ev in zip(old.versions, loc.evs, strict=True):
                if ev is not None:
                    keep[id(opv.module)] = ev
        loc.evs = [keep.get(id(pv.module)) for pv in snap.versions]
        loc.snap = snap
        st.retire(snap.live)

    def _render(self, result: Any, cell: str, version: str) -> Decision:
        """Map the policy's decision object to a Decision; anything malformed denies."""
        if result is UNDEFINED or not isinstance(result, dict):
            self._limited.log(
                logging.WARNING,
                "shape",
                "policy decision is %s, not an object (deny)",
                _short(result),
            )
            return deny(500, "policy decision undefined", cell, version, "error")
        allow = result.get("allow")
        reason = result.get("reason")
        if not isinstance(reason, str):
            reason = "allowed" if allow is True else "denied"
        if allow is True:
            headers = [(CELL_HEADER, cell), (VERSION_HEADER, version)]
            dropped: list[str] = []
            extra = result.get("headers")
            if extra is not None:
                if not isinstance(extra, dict):
                    self._limited.log(
                        logging.WARNING,
                        "shape",
                        "policy decision headers is %s (deny)",
                        _short(extra),
                    )
                    return deny(500, "policy decision malformed", cell, version, "error")
                for k, v in sorted(extra.items(), key=lambda kv: str(kv[0])):
                    if not isinstance(k, str) or not isinstance(v, str):
                        return deny(500, "policy decision malformed", cell, version, "error")
                    k = k.lower()
                    refused = header_refusal(k, v)
                    if refused is not None:
                        # Refused, not fatal: the rest of the decision stands.
                        dropped.append(refused[1])
                        self._limited.log(logging.WARNING, "header",
                                          "policy header dropped: %s", refused[0])  # fmt: skip
                        continue
                    headers.append((k, header_safe(v)))
            return Decision(True, 200, reason, tuple(headers), b"", cell, version, "allow",
                            tuple(dropped))  # fmt: skip
        status = result.get("status")
        if isinstance(status, float) and status.is_integer():
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            status = 403
        return deny(status, reason, cell, version)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 80 else s[:77] + "..."
