"""``PlaneStore``: what the control plane keeps on disk so a restart resumes a rollout.

Without it a restarted plane takes the spec's policy as its first version and puts
it on every cell at once: the candidate of a rollout in progress skips its canary,
and one that was just rolled back comes back everywhere. So after every change of
the rollout's decision the plane writes, in its state directory (a ``BundleStore``):

    bundles/<version>.bundle   every signed bundle the assignment names (pinned)
    state/rollout.json         {"format": 1, "rollout": RolloutController.export()}

bundles first, then the state that names them, each atomically (write, fsync,
rename), so a crash between the two leaves the previous state with its bundles.

Disk is an input surface: the state is parsed as untrusted JSON (bounded bytes,
checked fields) and every bundle read back is verified again with the plane's own
public key. ``load`` never raises for what it finds: anything missing or refused
falls back (docs/rollout.md, Restarts) and says why in one line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.bundle import BundleRefused, BundleStore, SigningKey, TrustedKeys, verify_bundle
from policies.core.errors import ConfigError, one_line
from policies.core.xds.types import canonical_json

STATE_NAME = "rollout.json"
FORMAT = 1
MAX_STATE_BYTES = 64 * 1024  # an export() is a few hundred bytes
MAX_BUNDLES = 8  # at most two are pinned (stable and candidate); the rest is history


@dataclass(frozen=True)
class Restored:
    """What ``load`` found: ``rollout`` to pass to ``RolloutController.restore`` (None:
    start fresh), the verified ``bundles`` it names, and ``outcome``:

    - ``none``: no state saved yet (a first start);
    - ``restored``: the stable version and the rollout as they were;
    - ``stable``: the stable version everywhere; the candidate's bundle was refused;
    - ``spec``: nothing usable; the spec's policy everywhere.

    ``error`` says, on one line, why anything was left out."""

    outcome: str
    rollout: dict[str, Any] | None = None
    bundles: Mapping[str, bytes] = field(default_factory=dict)
    error: str | None = None


class PlaneStore:
    """The state directory of one control plane, signed and verified with ``key``."""

    def __init__(self, directory: Path, key: SigningKey) -> None:
        self.directory = Path(directory)
        self.store = BundleStore(self.directory, max_bundles=MAX_BUNDLES,
                                 max_state_bytes=MAX_STATE_BYTES)  # ConfigError: unusable dir
        self.keys = TrustedKeys([key.public_key()])
        self._saved: tuple[bytes, frozenset[str]] | None = None
        self._on_disk: set[str] = set()  # versions written or verified by this process

    # -- reading ------------------------------------------------------------------------

    def load(self, available: Mapping[str, bytes] | None = None) -> Restored:
        """The saved rollout and its bundles, or the fallback (see ``Restored``).

        ``available``: bundles known good without the disk (the spec's policy, just
        compiled and signed); a version found there is not read back."""
        available = available or {}
        try:
            raw = self.store.load_state(STATE_NAME)
            if raw is None:
                return Restored("none")
            rollout = self._parse(raw)
        except (ConfigError, ValueError) as err:
            return Restored("spec", error=one_line(err))
        bundles: dict[str, bytes] = {}
        stable = rollout.get("stable")
        if stable is None:
            return Restored("none")
        try:
            bundles[stable] = self._bundle(stable, available)
        except (ConfigError, BundleRefused) as err:
            return Restored("spec", error=f"stable version {stable[:12]}: {one_line(err)}")
        candidate = rollout.get("candidate")
        if candidate is not None and candidate != stable:
            try:
                bundles[candidate] = self._bundle(candidate, available)
            except (ConfigError, BundleRefused) as err:
                rollout = {**rollout, "candidate": None}
                return Restored("stable", rollout, bundles,
                                f"candidate {candidate[:12]}: {one_line(err)}")
        return Restored("restored", rollout, bundles)

    def _parse(self, raw: bytes) -> dict[str, Any]:
        where = self.directory / "state" / STATE_NAME
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            raise ValueError(f"{where}: not JSON ({one_line(err, 200)})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{where}: not a format {FORMAT} control-plane state")
        rollout = doc.get("rollout")
        if not isinstance(rollout, dict):
            raise ValueError(f"{where}: rollout: expected an object")
        for key in ("stable", "candidate"):
            if rollout.get(key) is not None and not isinstance(rollout[key], str):
                raise ValueError(f"{where}: rollout.{key}: expected a string or null")
        return rollout

    def _bundle(self, version: str, available: Mapping[str, bytes]) -> bytes:
        if version in available:
            return available[version]
        data = self.store.load(version, self.keys).data  # verified again, version checked
        self._on_disk.add(version)
        return data

    # -- writing ------------------------------------------------------------------------

    def save(self, rollout: Mapping[str, Any], bundles: Mapping[str, bytes]) -> bool:
        """Persist ``rollout`` (an ``export()``) and ``bundles`` (every version it assigns);
        False when that is what was saved last. ConfigError (disk full, store bounds,
        a bundle that does not verify) leaves the previous state in place."""
        doc = canonical_json({"format": FORMAT, "rollout": dict(rollout)})
        versions = frozenset(bundles)
        if self._saved == (doc, versions):
            return False
        keep = versions | (self._saved[1] if self._saved else frozenset())
        for version in sorted(versions - self._on_disk):
            try:
                verified = verify_bundle(bundles[version], self.keys, source=f"bundle {version}")
            except BundleRefused as err:  # a bug: the plane signed it with this very key
                raise ConfigError(str(err)) from None
            self.store.save(verified, keep=keep)
            self._on_disk.add(version)
        self.store.save_state(STATE_NAME, doc)
        self._saved = (doc, versions)
        self._on_disk &= set(self.store.versions())  # evicted ones must be written again
        return True
