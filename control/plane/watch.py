"""``SpecWatcher``: notice edits of the spec directory by polling, and debounce bursts.

Polling, not inotify: it works on every filesystem (bind mounts, NFS, Kubernetes
ConfigMap symlink swaps) and needs no dependency. Each poll takes a fingerprint of
the directory: (relative path, inode, size, mtime_ns) of every file under it,
symlinks followed for files, never for directories, and at most ``max_files``
files (a directory past that bound is reported as a change with an error, and
the loader then refuses it, naming the file). A change is reported once the
directory has been quiet for ``quiet`` seconds, so an editor's write-rename-chmod
or a ``git checkout`` is one change; under continuous churn it is still reported
at least every ``max_delay`` seconds, and never more often than ``min_interval``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("a1.control.watch")

Fingerprint = tuple[tuple[str, int, int, int], ...]

MAX_FILES = 10_000
MAX_DEPTH = 16


class TooManyFiles(Exception):
    """The directory holds more files than the watcher fingerprints."""


def fingerprint(directory: Path, max_files: int = MAX_FILES) -> Fingerprint:
    """Every file under ``directory`` as (path, inode, size, mtime_ns), sorted.

    A file that vanishes between listing and stat is left out (the next poll sees
    the settled state). Raises TooManyFiles past ``max_files``; OSError if the
    directory itself cannot be listed.
    """
    root = str(directory)
    out: list[tuple[str, int, int, int]] = []
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as entries:
            for entry in entries:
                path = os.path.join(rel, entry.name) if rel else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth < MAX_DEPTH:
                            stack.append((path, depth + 1))
                        continue
                    st = entry.stat(follow_symlinks=True)
                except OSError:
                    continue
                out.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
                if len(out) > max_files:
                    raise TooManyFiles(f"{directory}: more than {max_files} files")
    out.sort()
    return tuple(out)


class SpecWatcher:
    """Calls ``on_change()`` on its own thread after the directory changed and settled.

    ``on_change`` runs on the watcher's thread, one call at a time, so a slow
    publish delays the next notice instead of overlapping it; edits made during
    the call are seen by the next poll.
    """

    def __init__(
        self,
        directory: Path,
        on_change: Callable[[], None],
        *,
        poll: float = 0.05,
        quiet: float = 0.2,
        max_delay: float = 2.0,
        min_interval: float = 0.1,
        max_files: int = MAX_FILES,
    ) -> None:
        self.directory = Path(directory)
        self.on_change = on_change
        self.poll, self.quiet = poll, quiet
        self.max_delay, self.min_interval = max_delay, min_interval
        self.max_files = max_files
        self.changes = 0  # notices delivered, for status and tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = self._take()

    def _take(self) -> Fingerprint | str:
        try:
            return fingerprint(self.directory, self.max_files)
        except (OSError, TooManyFiles) as err:
            return f"unreadable: {err}"  # a state of its own: a change to and from it counts

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="a1-spec-watch", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        first_change: float | None = None  # first unreported change of the burst
        last_change = 0.0
        last_notice = 0.0
        while not self._stop.wait(self.poll):
            now = time.monotonic()
            current = self._take()
            if current != self._last:
                self._last = current
                last_change = now
                if first_change is None:
                    first_change = now
            if first_change is None:
                continue
            settled = now - last_change >= self.quiet
            overdue = now - first_change >= self.max_delay
            if (settled or overdue) and now - last_notice >= self.min_interval:
                first_change = None
                last_notice = now
                self.changes += 1
                try:
                    self.on_change()
                except Exception as err:  # the callback reports its own errors; keep watching
                    log.error("control: handling a spec change failed: %s", err)
