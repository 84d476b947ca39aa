"""The sidecar's last-known-good store: verified bundles and applied state, on local disk.

Disk is an input surface like the network: every bundle read back is verified
again, and the store holds a bounded number of bundles and bytes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from policies.bundle.errors import BundleRefused
from policies.bundle.format import DEFAULT_MAX_MODULE_BYTES, check_module_cap, max_bundle_bytes
from policies.bundle.keys import TrustedKeys
from policies.bundle.verify import VerifiedBundle, verify_bundle
from policies.core.errors import ConfigError
from policies.core.files import read_bounded, write_private

BUNDLE_SUFFIX = ".bundle"
VERSION_NAME = re.compile(r"[0-9a-f]{64}")
STATE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}(\.[a-z0-9_-]{1,16})?")
DEFAULT_MAX_BUNDLES = 8
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_STATE_BYTES = 16 * 1024 * 1024


class StoreFull(ConfigError):
    """A save that would break the store's bounds with nothing left to evict."""


@dataclass(frozen=True)
class _Entry:
    version: str
    path: Path
    size: int
    mtime_ns: int


class BundleStore:
    """``directory/bundles/<version>.bundle`` and ``directory/state/<name>``, all 0600.

    Oldest means least recently saved: ``save`` stamps each file's mtime one
    nanosecond past the newest, so the order holds even within a clock tick.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bundles: int = DEFAULT_MAX_BUNDLES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
        max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
    ) -> None:
        check_module_cap(max_module_bytes)
        if max_bundles < 1 or max_bytes < 1 or max_state_bytes < 1:
            raise ValueError("store bounds must be positive")
        self.directory = Path(directory)
        self.max_bundles = max_bundles
        self.max_bytes = max_bytes
        self.max_module_bytes = max_module_bytes
        self.max_state_bytes = max_state_bytes
        self._bundles = self.directory / "bundles"
        self._state = self.directory / "state"
        for d in (self.directory, self._bundles, self._state):
            if d.is_symlink():
                raise ConfigError(f"{d}: is a symlink; refusing to follow it")
            try:
                d.mkdir(mode=0o700, exist_ok=True)
            except OSError as err:
                raise ConfigError(f"{d}: cannot create: {err.strerror}") from None
            if not d.is_dir():
                raise ConfigError(f"{d}: not a directory")
        for d in (self._bundles, self._state):  # left by a crash between create and rename
            for tmp in d.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- bundles ---------------------------------------------------------------------

    def path(self, version: str) -> Path:
        if not VERSION_NAME.fullmatch(version):
            raise ConfigError(f"{version!r}: not a bundle version (64 lowercase hex digits)")
        return self._bundles / f"{version}{BUNDLE_SUFFIX}"

    def _entries(self) -> list[_Entry]:
        """The store's bundle files, oldest first; other names are not ours and not counted."""
        out = []
        for path in self._bundles.iterdir():
            version = path.name.removesuffix(BUNDLE_SUFFIX)
            if path.name.endswith(BUNDLE_SUFFIX) and VERSION_NAME.fullmatch(version):
                info = path.lstat()
                out.append(_Entry(version, path, info.st_size, info.st_mtime_ns))
        return sorted(out, key=lambda e: (e.mtime_ns, e.version))

    def versions(self) -> list[str]:
        """Stored bundle versions, newest first."""
        return [e.version for e in reversed(self._entries())]

    def total_bytes(self) -> int:
        return sum(e.size for e in self._entries())

    def save(self, bundle: VerifiedBundle, *, keep: Collection[str] = ()) -> None:
        """Persist ``bundle`` as the newest, evicting the oldest beyond the bounds.

        Only a ``VerifiedBundle`` can be saved, so nothing unverified reaches
        disk. Versions in ``keep`` (those the applied assignment references)
        are never evicted; ``StoreFull`` if the bounds cannot hold otherwise.
        """
        size = len(bundle.data)
        entries = [e for e in self._entries() if e.version != bundle.version]
        evict: list[_Entry] = []
        count, total = len(entries) + 1, sum(e.size for e in entries) + size
        for entry in entries:  # oldest first
            if count <= self.max_bundles and total <= self.max_bytes:
                break
            if entry.version in keep:
                continue
            evict.append(entry)
            count, total = count - 1, total - entry.size
        if count > self.max_bundles or total > self.max_bytes:
            raise StoreFull(
                f"{self._bundles}: saving {bundle.version[:16]} ({size} bytes) would hold "
                f"{count} bundles / {total} bytes, over {self.max_bundles} / {self.max_bytes}"
            )
        path = self.path(bundle.version)
        write_private(path, bundle.data, 0o600)
        newest = max((e.mtime_ns for e in entries), default=0)
        stamp = max(time.time_ns(), newest + 1)
        os.utime(path, ns=(stamp, stamp), follow_symlinks=False)
        for entry in evict:
            entry.path.unlink(missing_ok=True)

    def load(self, version: str, keys: TrustedKeys) -> VerifiedBundle:
        """The stored bundle ``version``, verified again; ``BundleRefused`` if absent or bad."""
        path = self.path(version)
        try:
            data = read_bounded(path, max_bundle_bytes(self.max_module_bytes))
        except ConfigError as err:
            raise BundleRefused(str(err)) from None
        bundle = verify_bundle(
            data, keys, source=str(path), max_module_bytes=self.max_module_bytes
        )
        if bundle.version != version:  # a file renamed, or copied over another
            raise BundleRefused(f"{path}: holds bundle {bundle.version[:16]}, not {version[:16]}")
        return bundle

    # -- applied state ---------------------------------------------------------------

    def _state_path(self, name: str) -> Path:
        if not STATE_NAME.fullmatch(name):
            raise ConfigError(
                f"{name!r}: not a state name (lowercase letters, digits, _ and -, "
                f"one optional .suffix)"
            )
        return self._state / name

    def save_state(self, name: str, data: bytes) -> None:
        """Replace state ``name`` atomically (0600). The caller validates it again on load."""
        if len(data) > self.max_state_bytes:
            raise StoreFull(
                f"{self._state / name}: {len(data)} bytes, over the cap of {self.max_state_bytes}"
            )
        write_private(self._state_path(name), data, 0o600)

    def load_state(self, name: str) -> bytes | None:
        """State ``name`` as saved, or None if never saved; not a symlink, within the cap.

        The bytes are only as trustworthy as the disk: parse and check them as
        any input (``CellTable.from_dict``, the assignment's fields).
        """
        path = self._state_path(name)
        if not path.exists() and not path.is_symlink():
            return None
        return read_bounded(path, self.max_state_bytes)
