"""Where the engine's (policy module, cell table) snapshots come from.

``ConfigSource`` is the seam: today a file watcher, later the xDS client. A source
pushes complete pairs into a sink (``Engine.apply``), so the engine never serves a
new policy with an old table half-applied. A source refuses anything invalid,
logs why (naming the file), counts it, and keeps the last good pair serving.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ext_proc.logutil import describe
from ext_proc.policy import load_policy
from policies.core.cells import CellTable
from policies.core.errors import ConfigError

log = logging.getLogger("ext_proc.source")

# ``Engine.apply(module, cells, cell_modules=None)``: the default policy module, the
# cell table, and per-cell overrides (staged rollout). A file source has no
# overrides and calls ``sink(module, cells)``.
Sink = Callable[..., None]
FailureSink = Callable[[str], None]


class ConfigSource(Protocol):
    """Pushes ``(policy module, cell table[, cell_modules])`` snapshots into ``sink``
    until stopped; ``cell_modules`` maps a cell to the module that overrides the
    default one there (the canary of a staged rollout).

    ``start`` pushes the first complete pair before it returns (or raises
    ConfigError when it has none); later pairs come from the source's own thread or
    task. Each refused update is reported to ``on_failure`` with a one-line reason
    naming its origin (file, or xDS resource), and the last good pair keeps serving.
    Implementations validate with ``ext_proc.policy.load_policy`` and
    ``CellTable.from_dict``, as the file source does.
    """

    def start(self, sink: Sink, on_failure: FailureSink | None = None) -> None: ...

    def stop(self) -> None: ...


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        s = os.stat(path)
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_size, s.st_ino)


class FileConfigSource:
    """Loads the policy module and the cell table from files and polls them.

    Polling mtime+size+inode every ``interval`` seconds on one daemon thread: no
    dependency, and a rename-into-place (the safe way to replace a file) is seen
    as a change even within one mtime tick.
    """

    def __init__(
        self,
        policy_path: Path,
        cells_path: Path,
        entrypoint: str,
        interval: float = 0.2,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.policy_path = Path(policy_path)
        self.cells_path = Path(cells_path)
        self.entrypoint = entrypoint
        self.interval = interval
        self.on_failure = on_failure
        self._module: Any = None
        self._cells: CellTable | None = None
        self._policy_stat: tuple[int, int, int] | None = None
        self._cells_stat: tuple[int, int, int] | None = None
        self._sink: Sink | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_initial(self) -> tuple[Any, CellTable]:
        """Load both files or raise ConfigError (startup: there is no last good config)."""
        self._policy_stat = _stat(self.policy_path)
        self._cells_stat = _stat(self.cells_path)
        self._cells = CellTable.load(self.cells_path)
        self._module = self._read_policy()
        return self._module, self._cells

    def _read_policy(self) -> Any:
        try:
            data = self.policy_path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{self.policy_path}: policy.module: file not found") from None
        except OSError as err:
            raise ConfigError(f"{self.policy_path}: policy.module: cannot read: {err}") from None
        return load_policy(data, self.entrypoint, str(self.policy_path))

    @property
    def current(self) -> tuple[Any, CellTable | None]:
        """The last good (policy module, cell table)."""
        return self._module, self._cells

    def start(self, sink: Sink, on_failure: FailureSink | None = None) -> None:
        if on_failure is not None:
            self.on_failure = on_failure
        if self._module is None or self._cells is None:
            self.load_initial()
        self._sink = sink
        assert self._cells is not None
        sink(self._module, self._cells)
        self._thread = threading.Thread(target=self._run, name="config-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poll(self) -> bool:
        """Check both files once; push a new snapshot if either changed validly."""
        changed = False
        st = _stat(self.cells_path)
        if st != self._cells_stat:
            self._cells_stat = st
            try:
                cells = CellTable.load(self.cells_path)
            except ConfigError as err:
                self._refuse("cell table", err)
            else:
                if cells != self._cells:
                    self._cells = cells
                    changed = True
                    log.info(
                        "loaded cell table %s (version %s)", self.cells_path, cells.version[:12]
                    )
        st = _stat(self.policy_path)
        if st != self._policy_stat:
            self._policy_stat = st
            try:
                module = self._read_policy()
            except ConfigError as err:
                self._refuse("policy module", err)
            else:
                if module.version != getattr(self._module, "version", None):
                    self._module = module
                    changed = True
                    log.info(
                        "loaded policy module %s (version %s)", self.policy_path, module.version
                    )
        if changed and self._sink is not None:
            assert self._cells is not None
            self._sink(self._module, self._cells)
        return changed

    def _refuse(self, what: str, err: ConfigError) -> None:
        log.error("refused new %s, keeping the last good one: %s", what, err)
        if self.on_failure is not None:
            self.on_failure(str(err))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as err:  # the watcher must survive anything; serving continues
                log.error("config watcher error (keeping the last good config): %s", describe(err))
