"""The store fault: a cell's SQLite store locked, so that cell's writes fail.

``store_fault(target, cell)`` takes SQLite's write lock on the store the cell's
process really has open (``BEGIN EXCLUSIVE`` on a connection of its own) and holds
it until the repair rolls back. The cell's store is in WAL mode, so its reads go
on; its writes wait out SQLite's busy timeout and fail. It is I-5's fault for the
``shared-cell-store`` variant: with one store per cell only the victim's writes
fail, with a shared store every sharing cell's do.

The store is found from the process, not assumed from ``--db``: the file among the
process's open files (``/proc/PID/fd``) that starts with SQLite's header. So a
wrapper that moved the store is locked where the cell actually writes. Without
``/proc`` (or with the process gone) the ``--db`` argument is used.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from conformance.nemesis.base import Fault, Target
from conformance.variants.wrapper import arg_value
from policies.core.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
LOCK_TIMEOUT = 10.0  # seconds to wait for the cell's own write to finish before locking


def open_stores(pid: int) -> list[Path]:
    """The SQLite database files (not their -wal or -shm) process ``pid`` holds open."""
    found: list[Path] = []
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return found
    for fd in fds:
        try:
            path = Path(os.readlink(fd))
            if not path.is_absolute() or not path.is_file() or path in found:
                continue
            with path.open("rb") as f:
                if f.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                    found.append(path)
        except OSError:
            continue  # closed meanwhile, or not a file we may read
    return found


def cell_store(target: Target, cell: str) -> Path:
    """The store ``cell``'s process writes to (see the module doc)."""
    try:
        proc = target.launcher[cell]
    except KeyError:
        raise UserError(f"store fault: no process named {cell!r}", 2) from None
    if proc.alive():
        stores = open_stores(proc.pid)
        if len(stores) == 1:
            return stores[0]
    db = arg_value(list(proc.spec.argv), "--db")
    if db is None:
        raise UserError(f"store fault: {cell!r} has no --db argument and no open store", 2)
    return Path(db)


class StoreLock:
    """SQLite's write lock on one database file, held from ``take`` to ``release``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self._db is not None:
                return
            db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute("BEGIN EXCLUSIVE")
            except sqlite3.Error as err:
                db.close()
                raise UserError(f"store fault: cannot lock {self.path}: {err}", 1) from None
            self._db = db

    def release(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                try:
                    db.execute("ROLLBACK")
                finally:
                    db.close()

    @property
    def held(self) -> bool:
        return self._db is not None


def store_fault(target: Target, cell: str) -> Fault:
    """Lock ``cell``'s store for the fault window; the repair releases it.

    The store is looked up at inject time, so a cell restarted since the fault was
    built is locked where its new process writes.
    """
    locks: list[StoreLock] = []

    def inject() -> None:
        lock = StoreLock(cell_store(target, cell))
        lock.take()
        locks.append(lock)

    def repair() -> None:
        while locks:
            locks.pop().release()

    return Fault(
        name=f"lock-store:{cell}",
        inject=inject,
        repair=repair,
        expect=f"{cell}'s store is locked: its writes fail, its reads go on; every other "
               "cell's writes succeed (cells share no store)",
    )
