"""Signed policy bundles: the format, signing, verification, keys and the last-good store.

A bundle is a compiled policy module with its entrypoint, signed by the control
plane's ed25519 key; the sidecar loads nothing that does not verify
(docs/bundles.md).
"""

from policies.bundle.errors import BundleRefused
from policies.bundle.format import (
    DEFAULT_MAX_MODULE_BYTES,
    FORMAT_VERSION,
    MAGIC,
    MAX_MANIFEST_BYTES,
)
from policies.bundle.keys import (
    SigningKey,
    TrustedKeys,
    ensure_signing_key,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    load_trusted_keys,
    public_key_path,
)
from policies.bundle.sign import build_signed_bundle, sign_bundle
from policies.bundle.store import BundleStore, StoreFull
from policies.bundle.verify import VerifiedBundle, verify_bundle

__all__ = [
    "DEFAULT_MAX_MODULE_BYTES",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_MANIFEST_BYTES",
    "BundleRefused",
    "BundleStore",
    "SigningKey",
    "StoreFull",
    "TrustedKeys",
    "VerifiedBundle",
    "build_signed_bundle",
    "ensure_signing_key",
    "generate_signing_key",
    "key_id",
    "load_public_key",
    "load_signing_key",
    "load_trusted_keys",
    "public_key_path",
    "sign_bundle",
    "verify_bundle",
]
