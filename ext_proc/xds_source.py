"""The sidecar's config over ADS: signed policy bundles, the cell table, the assignment.

``XdsConfigSource`` is a ``ConfigSource`` (``ext_proc.source``) fed by the generic
``AdsClient`` on its own thread, so no request ever waits on the control plane.
It subscribes to three types (docs/sidecar-xds.md):

- ``POLICY_BUNDLE``, wildcard. The control plane publishes only the bundles its
  assignment and rollout reference, and pushes them BEFORE the assignment (push
  order), so by the time an assignment arrives every version it names is already
  verified and loaded. A named subscription would need a round trip per new
  version and a pending state while it travels.
- ``CELL_TABLE`` named ``cells``; ``POLICY_ASSIGNMENT`` named ``assignment``.

Every bundle is verified (ed25519 signature, module digest, version = its resource
name, entrypoint = ours) before ``load_policy`` sees it. ACK means "verified and
serving": an update is applied (default module, table, per-cell modules) in one
``sink`` call, or refused (NACK with the reason, ``on_failure`` counts it, the last
good keeps serving). Each applied state is persisted to ``state_dir``; with the
control plane unreachable at boot, the sidecar starts from there, verifying it again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ext_proc.config import XdsSourceConfig
from ext_proc.policy import load_policy
from policies.bundle import (
    DEFAULT_MAX_MODULE_BYTES,
    BundleStore,
    TrustedKeys,
    VerifiedBundle,
    load_trusted_keys,
    verify_bundle,
)
from policies.bundle.format import DEFAULT_INPUT
from policies.core.cells import CellTable, cell_name_error
from policies.core.errors import ConfigError, one_line
from policies.core.xds import types
from policies.core.xds.client import AdsClient, ClientStatus, Node
from policies.core.xds.types import ASSIGNMENT_NAME, METRICS_URL_KEY, TABLE_NAME

log = logging.getLogger("ext_proc.xds")

STATE_NAME = "lkg.json"  # the applied assignment + table; bundles live beside it in the store
_VERSION_CHARS = frozenset("0123456789abcdef")

# sink(default module, table, {cell: module}): Engine.apply, per-cell modules override.
XdsSink = Callable[[Any, CellTable, Mapping[str, Any]], None]
FailureSink = Callable[[str], None]


@dataclass(frozen=True)
class Assignment:
    """Which bundle version serves: ``default`` everywhere, ``cells`` overriding per cell."""

    default: str
    cells: Mapping[str, str]

    def versions(self) -> set[str]:
        return {self.default, *self.cells.values()}

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default, "cells": dict(sorted(self.cells.items()))}

    @classmethod
    def from_dict(cls, d: Any, source: str) -> Assignment:
        def version(v: Any, field: str) -> str:
            if not isinstance(v, str) or len(v) != 64 or not set(v) <= _VERSION_CHARS:
                raise ConfigError(f"{source}: {field}: not a bundle version (64 hex digits): "
                                  f"{str(v)[:80]!r}")  # fmt: skip
            return v

        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping with keys default, cells")
        extra = sorted(str(k) for k in d if k not in ("default", "cells"))
        if extra:
            raise ConfigError(f"{source}: {extra[0][:80]}: unknown field (expected default, cells)")
        if "default" not in d:
            raise ConfigError(f"{source}: default: missing")
        cells = d.get("cells", {})
        if not isinstance(cells, dict):
            raise ConfigError(f"{source}: cells: must be a mapping of cell name to bundle version")
        for cell in cells:
            why = cell_name_error(cell) if isinstance(cell, str) else f"invalid cell name {cell!r}"
            if why is not None:
                raise ConfigError(f"{source}: cells: {why}")
        return cls(
            version(d["default"], "default"),
            {c: version(v, f"cells.{c}") for c, v in cells.items()},
        )


@dataclass(frozen=True)
class _Loaded:
    bundle: VerifiedBundle
    module: Any  # PolicyModule


@dataclass(frozen=True)
class _Applied:
    assignment: Assignment
    table: CellTable
    modules: dict[str, _Loaded]  # version -> loaded, every version in use

    def key(self) -> tuple[Any, ...]:
        return (self.table.version, tuple(sorted(self.assignment.to_dict()["cells"].items())),
                self.assignment.default)  # fmt: skip


class XdsConfigSource:
    """``start(sink, on_failure)`` blocks until the first config is applied, then streams."""

    def __init__(
        self,
        cfg: XdsSourceConfig,
        entrypoint: str,
        keys: TrustedKeys | None = None,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
        input_kind: str = DEFAULT_INPUT,
    ) -> None:
        self.cfg = cfg
        self.entrypoint = entrypoint
        self.input_kind = input_kind  # policy.input: every bundle must declare the same
        self.keys = keys if keys is not None else load_trusted_keys(cfg.trusted_keys)
        self.max_module_bytes = max_module_bytes
        self.store = BundleStore(
            cfg.state_dir, max_bundles=cfg.max_bundles, max_module_bytes=max_module_bytes
        )
        self.booted_from = ""  # "xds" or "disk", once started
        self._lock = threading.RLock()
        self._applied_once = threading.Event()
        self._sink: XdsSink | None = None
        self._on_failure: FailureSink | None = None
        self._bundles: dict[str, _Loaded] = {}  # the ACKed bundle set, all verified + loaded
        self._table: CellTable | None = None
        self._assignment: Assignment | None = None
        self._applied: _Applied | None = None
        self.client = AdsClient(
            cfg.address,
            Node(cfg.node_id, cfg.cluster,
                 {METRICS_URL_KEY: cfg.metrics_url} if cfg.metrics_url else {}),
            {
                types.POLICY_BUNDLE: None,
                types.CELL_TABLE: [TABLE_NAME],
                types.POLICY_ASSIGNMENT: [ASSIGNMENT_NAME],
            },
            self._on_update,
            delta=cfg.delta,
            max_message_bytes=cfg.max_message_bytes,
            max_type_bytes=cfg.max_message_bytes,
            name="sidecar-ads",
        )

    # -- ConfigSource --------------------------------------------------------------------

    def start(self, sink: XdsSink, on_failure: FailureSink | None = None) -> None:
        self._sink = sink
        self._on_failure = on_failure
        self.client.start()
        if self._applied_once.wait(self.cfg.boot_timeout):
            self.booted_from = "xds"
            return
        with self._lock:
            if self._applied is not None:  # applied between the timeout and the lock
                self.booted_from = "xds"
                return
            try:
                self._boot_from_disk()
            except ConfigError:
                self.client.stop()
                raise
            self.booted_from = "disk"

    def stop(self) -> None:
        self.client.stop()

    def status(self) -> dict[str, Any]:
        """What is serving and what the client reported (for status pages and tests)."""
        with self._lock:
            applied = self._applied
        cs: ClientStatus = self.client.status()
        return {
            "booted_from": self.booted_from,
            "assignment": applied.assignment.to_dict() if applied else None,
            "cells_version": applied.table.version if applied else None,
            "connected": cs.connected,
            "types": {
                url: {"version": t.version, "acks": t.acks, "nacks": t.nacks,
                      "last_nack": t.last_nack}
                for url, t in cs.types.items()
            },
        }  # fmt: skip

    # -- updates from the control plane (the client's thread) -----------------------------

    def _on_update(self, type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        try:
            with self._lock:
                # Each branch installs the new set, tries to apply, and puts the old set
                # back if that fails: a NACKed update leaves nothing of itself behind.
                if type_url == types.POLICY_BUNDLE:
                    self._try("_bundles", self._load_bundles(resources), strict=False)
                elif type_url == types.CELL_TABLE:
                    self._try("_table", self._parse_table(resources), strict=False)
                elif type_url == types.POLICY_ASSIGNMENT:
                    self._try("_assignment", self._parse_assignment(resources), strict=True)
        except Exception as err:
            message = one_line(err)
            log.error("refused %s, keeping the last good config: %s", type_url, message)
            if self._on_failure is not None:
                self._on_failure(message)
            raise

    def _try(self, attr: str, value: Any, *, strict: bool) -> None:
        old = getattr(self, attr)
        setattr(self, attr, value)
        try:
            self._apply_if_ready(strict=strict)
        except Exception:
            setattr(self, attr, old)
            raise

    def _load_bundles(self, resources: dict[str, bytes]) -> dict[str, _Loaded]:
        if len(resources) > self.cfg.max_bundles:
            raise ConfigError(
                f"xds: {types.POLICY_BUNDLE}: {len(resources)} bundles, over the sidecar's "
                f"max_bundles of {self.cfg.max_bundles}"
            )
        out = {}
        for name, data in sorted(resources.items()):
            have = self._bundles.get(name) or self._in_use(name)
            if have is not None and have.bundle.data == data:
                out[name] = have  # verified when it arrived; the bytes are identical
            else:
                out[name] = self._verified(data, f"xds:PolicyBundle/{name[:64]}", name)
        return out

    def _in_use(self, version: str) -> _Loaded | None:
        return self._applied.modules.get(version) if self._applied is not None else None

    def _verified(self, data: bytes, source: str, expected_version: str) -> _Loaded:
        """Signature and digest first, then the name, the entrypoint, then the module loads."""
        bundle = verify_bundle(
            data, self.keys, source=source, max_module_bytes=self.max_module_bytes
        )
        if bundle.version != expected_version:
            raise ConfigError(
                f"{source}: holds bundle {bundle.version[:16]}, not the version it is named for"
            )
        if bundle.entrypoint != self.entrypoint:
            raise ConfigError(
                f"{source}: bundle entrypoint {bundle.entrypoint!r} is not the sidecar's "
                f"policy.entrypoint {self.entrypoint!r}"
            )
        if bundle.input != self.input_kind:
            raise ConfigError(
                f"{source}: bundle input {bundle.input!r} is not the sidecar's "
                f"policy.input {self.input_kind!r}"
            )
        return _Loaded(bundle, load_policy(bundle.module, self.entrypoint, source))

    def _parse_table(self, resources: dict[str, bytes]) -> CellTable:
        source = f"xds:CellTable/{TABLE_NAME}"
        return CellTable.from_dict(_json(resources, TABLE_NAME, source), source)

    def _parse_assignment(self, resources: dict[str, bytes]) -> Assignment:
        source = f"xds:PolicyAssignment/{ASSIGNMENT_NAME}"
        return Assignment.from_dict(_json(resources, ASSIGNMENT_NAME, source), source)

    # -- applying --------------------------------------------------------------------------

    def _apply_if_ready(self, strict: bool) -> None:
        """Apply the held (bundles, table, assignment) if complete and changed.

        ``strict`` (an assignment arrived: it is the last type in push order, so what
        it names must be here): every version it names is loaded and every cell it
        names is in the table, else ConfigError (NACK). Otherwise (bundles or table
        arrived) a version being replaced stays loaded while the applied assignment
        uses it, and an override for a cell the new table dropped is left out (no
        tenant can reach it).
        """
        a, table = self._assignment, self._table
        if a is None or table is None:
            return
        pool = {**(self._applied.modules if self._applied else {}), **self._bundles}
        cells = {}
        for cell, version in sorted(a.cells.items()):
            if cell in table.cells:
                cells[cell] = version
            elif strict:
                raise ConfigError(
                    f"xds:PolicyAssignment/{ASSIGNMENT_NAME}: cells.{cell}: no such cell in "
                    f"the cell table (version {table.version[:12]})"
                )
        effective = Assignment(a.default, cells)
        missing = sorted(v for v in effective.versions() if v not in pool)
        if missing:
            if strict:
                raise ConfigError(
                    f"xds:PolicyAssignment/{ASSIGNMENT_NAME}: names bundle version "
                    f"{missing[0][:16]}, which the sidecar has not verified and loaded"
                )
            return  # cannot happen: the applied versions stay in the pool
        if len(effective.versions()) > self.cfg.max_bundles:
            raise ConfigError(
                f"xds:PolicyAssignment/{ASSIGNMENT_NAME}: names {len(effective.versions())} "
                f"bundle versions, over the sidecar's max_bundles of {self.cfg.max_bundles}"
            )
        applied = _Applied(effective, table, {v: pool[v] for v in effective.versions()})
        if self._applied is not None and self._applied.key() == applied.key():
            return
        self._install(applied)
        self._persist(applied)

    def _install(self, applied: _Applied) -> None:
        assert self._sink is not None
        default = applied.modules[applied.assignment.default].module
        per_cell = {
            c: applied.modules[v].module
            for c, v in applied.assignment.cells.items()
            if v != applied.assignment.default
        }
        self._sink(default, applied.table, per_cell)
        self._applied = applied
        self._applied_once.set()
        log.info(
            "applied policy %s (%d per-cell), cells %s",
            applied.assignment.default[:16], len(per_cell), applied.table.version[:12],
        )  # fmt: skip

    def _persist(self, applied: _Applied) -> None:
        """Bundles first, then the state file that names them: a crash leaves the old state."""
        try:
            keep = set(applied.modules)
            stored = set(self.store.versions())
            for version, loaded in applied.modules.items():
                if version not in stored:  # a bundle's bytes never change for its version
                    self.store.save(loaded.bundle, keep=keep)
            state = {"assignment": applied.assignment.to_dict(), "cells": applied.table.to_dict()}
            self.store.save_state(STATE_NAME, types.canonical_json(state))
        except (ConfigError, OSError) as err:
            # Serving is unaffected; only a restart during an outage would miss this state.
            log.error("could not persist last-known-good to %s: %s", self.cfg.state_dir,
                      one_line(err))  # fmt: skip

    # -- boot from disk ----------------------------------------------------------------------

    def _boot_from_disk(self) -> None:
        """Apply the persisted state, verifying every bundle again, or raise ConfigError.

        A state that fails any check is refused, not replaced by an older one: an
        older policy may be one the control plane withdrew, and a disk someone can
        write should not be able to choose it (docs/sidecar-xds.md).
        """
        where = self.store.directory / "state" / STATE_NAME
        raw = self.store.load_state(STATE_NAME)
        cs = self.client.status()
        if raw is None:
            why = cs.last_error or "no consistent config yet"
            raise ConfigError(
                f"no config: control plane at {self.cfg.address} unreachable or incomplete "
                f"within {self.cfg.boot_timeout:g}s ({why}) and no last-known-good in "
                f"{self.cfg.state_dir}"
            )
        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"{where}: last-known-good is not JSON: {one_line(err)}") from None
        if not isinstance(d, dict) or set(d) != {"assignment", "cells"}:
            raise ConfigError(f"{where}: last-known-good: expected keys assignment, cells")
        assignment = Assignment.from_dict(d["assignment"], f"{where}: assignment")
        table = CellTable.from_dict(d["cells"], f"{where}: cells")
        modules = {}
        for version in sorted(assignment.versions()):
            bundle = self.store.load(version, self.keys)  # verified again: BundleRefused
            modules[version] = self._verified(bundle.data, str(self.store.path(version)), version)
        for cell in assignment.cells:
            if cell not in table.cells:
                raise ConfigError(f"{where}: assignment.cells.{cell}: no such cell in the table")
        self._bundles = dict(modules)
        self._table = table
        self._assignment = assignment
        self._install(_Applied(assignment, table, modules))
        log.warning(
            "control plane at %s not synced within %gs; serving last-known-good from %s",
            self.cfg.address, self.cfg.boot_timeout, self.cfg.state_dir,
        )  # fmt: skip


def _json(resources: dict[str, bytes], name: str, source: str) -> Any:
    data = resources.get(name)
    if data is None:
        raise ConfigError(f"{source}: missing from the update (removed?); keeping the last good")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ConfigError(f"{source}: not JSON: {one_line(err, 200)}") from None
