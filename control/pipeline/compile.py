"""Compile the spec's policy with the real compiler and sign it: the bundle the sidecars load.

Memoised by the policy's content digest (sources, data, entrypoint, signing key id)
in a small cache bounded in entries and bytes, so a spec change that leaves the
policy alone (a cell added, a listener moved) never recompiles, and the bundle
version (the module's sha256) stays the same, which is what lets a rollout in
progress carry on across unrelated edits. The compiler and ed25519 are both
deterministic, so a replica compiling the same policy gets the same bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from control.spec.model import Policy
from policies.bundle import SigningKey, sign_bundle
from policies.compiler import CompileError, compile_sources
from policies.core.errors import ConfigError
from policies.core.xds.types import canonical_json

#: Bounds of the memo: a few policies in flight (current, canary, the next edit).
MAX_ENTRIES = 8
MAX_BYTES = 64 * 1024 * 1024

_lock = threading.Lock()
_memo: OrderedDict[str, tuple[str, bytes]] = OrderedDict()


def policy_digest(policy: Policy, key_id: str) -> str:
    """SHA-256 over everything a bundle depends on; equal digests, equal bundles."""
    h = hashlib.sha256()
    for part in (
        canonical_json(list(policy.sources.items())),  # in spec order, as compiled
        canonical_json(policy.data),
        policy.entrypoint.encode(),
        policy.input.encode(),
        key_id.encode(),
    ):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def compile_bundle(policy: Policy, signing_key: SigningKey, *, origin: str = "policy"
                   ) -> tuple[str, bytes]:
    """``(version, signed bundle)`` of ``policy``; ConfigError ``"<origin>: file:line:col: ..."``.

    ``origin`` says where the sources' relative paths live (the spec directory), so
    the status names the spec a failing ``.rego`` file belongs to.
    """
    digest = policy_digest(policy, signing_key.key_id)
    with _lock:
        hit = _memo.get(digest)
        if hit is not None:
            _memo.move_to_end(digest)
            return hit
    try:
        module = compile_sources(dict(policy.sources), policy.data, [policy.entrypoint])
    except CompileError as err:  # already "file:line:col: kind: message"
        raise ConfigError(f"{origin}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: policy nested too deeply to compile") from None
    bundle = sign_bundle(module, entrypoint=policy.entrypoint, key=signing_key, source=origin,
                         input=policy.input)
    entry = (hashlib.sha256(module).hexdigest(), bundle)
    with _lock:
        _memo[digest] = entry
        _memo.move_to_end(digest)
        while len(_memo) > MAX_ENTRIES or (
                len(_memo) > 1 and sum(len(b) for _, b in _memo.values()) > MAX_BYTES):
            _memo.popitem(last=False)
    return entry


def clear_cache() -> None:
    """Forget every memoised bundle (tests; a key rotation does not need it)."""
    with _lock:
        _memo.clear()


def cache_info() -> tuple[int, int]:
    """(entries, bytes) held by the memo."""
    with _lock:
        return len(_memo), sum(len(b) for _, b in _memo.values())
