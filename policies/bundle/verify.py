"""Verification: a bundle is loaded only after every check passes, in a fixed order.

Nothing of variable shape is parsed before the signature verifies: the fixed
header names the signer, so the JSON parser only ever sees signed bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from policies.bundle.errors import BundleRefused
from policies.bundle.format import (
    DEFAULT_INPUT,
    DEFAULT_MAX_MODULE_BYTES,
    check_module_cap,
    parse_manifest,
    split,
)
from policies.bundle.keys import TrustedKeys


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and digest verified; ``version`` is the module's sha256 hex.

    ``version`` equals ``PolicyModule.version`` of the loaded module, so a
    decision cache keyed on it is keyed on exactly the verified bytes.
    """

    version: str
    entrypoint: str
    source_sha256: str
    module: bytes
    key_id: str
    data: bytes  # the signed bundle as received: what a store persists
    input: str = DEFAULT_INPUT  # the input document the policy expects (manifest ``input``)

    def __repr__(self) -> str:  # never dump megabytes into a log line
        return (
            f"VerifiedBundle(version={self.version[:16]}, entrypoint={self.entrypoint!r}, "
            f"key_id={self.key_id}, {len(self.module)} module bytes)"
        )


def verify_bundle(
    data: bytes,
    keys: TrustedKeys,
    *,
    source: str = "bundle",
    max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
) -> VerifiedBundle:
    """``data`` verified against ``keys``, else ``BundleRefused`` naming ``source``.

    Order: size bounds, magic, format version, lengths, key id known,
    signature, manifest, module digest (docs/bundles.md). Any other exception
    is a bug, but still a refusal: a bundle that cannot be checked is not loaded.
    """
    check_module_cap(max_module_bytes)
    try:
        return _verify(bytes(data), keys, source, max_module_bytes)
    except BundleRefused:
        raise
    except Exception as err:  # fail closed, on one line
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BundleRefused(f"{source}: cannot verify: {why}") from None


def _verify(data: bytes, keys: TrustedKeys, source: str, max_module_bytes: int) -> VerifiedBundle:
    frame = split(data, source, max_module_bytes)
    public = keys.get(frame.key_id)
    if public is None:
        trusted = ", ".join(keys.ids()) or "none"
        raise BundleRefused(
            f"{source}: signed by unknown key {frame.key_id} (trusted: {trusted})"
        )
    try:
        public.verify(frame.signature, frame.signed)
    except InvalidSignature:
        raise BundleRefused(
            f"{source}: signature does not verify with key {frame.key_id} (tampered or forged)"
        ) from None
    manifest = parse_manifest(frame.manifest, source)
    digest = hashlib.sha256(frame.module).hexdigest()
    if digest != manifest.version:
        raise BundleRefused(
            f"{source}: module sha256 {digest[:16]}... is not the manifest's version "
            f"{manifest.version[:16]}..."
        )
    return VerifiedBundle(
        version=manifest.version,
        entrypoint=manifest.entrypoint,
        source_sha256=manifest.source_sha256,
        module=frame.module,
        key_id=frame.key_id,
        data=data,
        input=manifest.input,
    )
