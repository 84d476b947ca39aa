"""Signing: a compiled policy module and its entrypoint become one signed bundle.

Nothing time- or host-dependent enters the bytes, so two control-plane replicas
signing the same module with the same key produce identical bundles (ed25519
signatures are deterministic).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from policies.bundle.format import (
    DEFAULT_INPUT,
    DEFAULT_MAX_MODULE_BYTES,
    ENTRYPOINT,
    INPUT_KINDS,
    SHA256_HEX,
    Manifest,
    check_module_cap,
    encode_signed_part,
)
from policies.bundle.keys import SigningKey, load_signing_key
from policies.core.errors import ConfigError
from policies.runtime.module import META_SECTION, BundleError, Metadata
from policies.runtime.wasmbin import WasmFormatError, custom_sections


def _metadata(module: bytes, source: str) -> Metadata:
    try:
        sections = custom_sections(module)
    except WasmFormatError as err:
        raise ConfigError(f"{source}: cannot sign: {err}") from None
    if META_SECTION not in sections:
        raise ConfigError(
            f"{source}: cannot sign: no {META_SECTION} section (not an A1 policy module)"
        )
    try:
        return Metadata.parse(sections[META_SECTION])
    except BundleError as err:
        raise ConfigError(f"{source}: cannot sign: {err}") from None


def sign_bundle(
    module: bytes,
    *,
    entrypoint: str,
    key: SigningKey,
    max_module_bytes: int = DEFAULT_MAX_MODULE_BYTES,
    source: str = "<module>",
    input: str = DEFAULT_INPUT,
) -> bytes:
    """The signed bundle of ``module`` evaluated at ``entrypoint``; ConfigError naming ``source``.

    ``input`` declares the input document the policy expects (``a1`` or ``opa-envoy``).

    The module must carry an ``a1.meta`` section that lists ``entrypoint`` and a
    sha256 source digest: a bundle the sidecar could never load is refused here,
    at the control plane, rather than NACKed by every sidecar.
    """
    check_module_cap(max_module_bytes)
    if not module:
        raise ConfigError(f"{source}: cannot sign: empty module")
    if len(module) > max_module_bytes:
        raise ConfigError(
            f"{source}: cannot sign: {len(module)} bytes, over the cap of {max_module_bytes}"
        )
    meta = _metadata(module, source)
    if not ENTRYPOINT.fullmatch(entrypoint):
        raise ConfigError(
            f"{source}: cannot sign: entrypoint {entrypoint!r} must be 1 to 256 printable "
            f"ASCII characters, no spaces"
        )
    if entrypoint not in meta.entrypoints:
        raise ConfigError(
            f"{source}: cannot sign: the module has no entrypoint {entrypoint!r} "
            f"(it has {', '.join(meta.entrypoints)})"
        )
    if not SHA256_HEX.fullmatch(meta.source_sha256):
        raise ConfigError(
            f"{source}: cannot sign: {META_SECTION} source_sha256 is not a sha256 hex digest"
        )
    if input not in INPUT_KINDS:
        raise ConfigError(
            f"{source}: cannot sign: input {input!r} must be one of {', '.join(INPUT_KINDS)}"
        )
    manifest = Manifest(
        version=hashlib.sha256(module).hexdigest(),
        entrypoint=entrypoint,
        source_sha256=meta.source_sha256,
        input=input,
    )
    signed = encode_signed_part(bytes.fromhex(key.key_id), manifest.to_json(), module)
    return signed + key.sign(signed)


def build_signed_bundle(module_bytes: bytes, entrypoint: str, key_path: Path | str) -> bytes:
    """What the control plane and ``a1`` call: load the key at ``key_path`` and sign."""
    return sign_bundle(module_bytes, entrypoint=entrypoint, key=load_signing_key(key_path))
