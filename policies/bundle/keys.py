"""Ed25519 signing keys for bundles: generated 0600, loaded without following links.

A key's id is the first 16 hex digits of the sha256 of its raw public key; the
bundle header names the signer by it, so a verifier holding several keys (a
rotation in progress) knows which one to try.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from policies.core.errors import ConfigError
from policies.core.files import read_bounded, write_private

MAX_KEY_FILE_BYTES = 16 * 1024
PUBLIC_SUFFIX = ".pub"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """The control plane's private key and its id."""

    private: Ed25519PrivateKey
    key_id: str

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> SigningKey:
        return cls(private, key_id(private.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key in memory only (tests, or a caller that stores it itself)."""
        return cls.of(Ed25519PrivateKey.generate())

    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes | memoryview) -> bytes:
        return self.private.sign(bytes(data))


class TrustedKeys:
    """The public keys a verifier accepts, by key id; several during a key rotation."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: Ed25519PublicKey, source: str = "<key>") -> str:
        """Trust ``key``; refuse a different key whose id collides with one already trusted."""
        kid = key_id(key)
        have = self._keys.get(kid)
        if have is not None and have != key:
            raise ConfigError(f"{source}: key id {kid} collides with another trusted key")
        self._keys[kid] = key
        return kid

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())


def public_key_path(private_path: Path) -> Path:
    """Where ``generate_signing_key`` writes the public half: ``signing.key`` → ``signing.pub``."""
    return private_path.with_suffix(PUBLIC_SUFFIX)


def generate_signing_key(path: Path | str) -> SigningKey:
    """A new key written to ``path`` (PEM PKCS#8, 0600) and its public key beside it (0644).

    Refuses to replace an existing key: rotating is a deliberate act (trust the
    new public key everywhere first, see docs/bundles.md).
    """
    path = Path(path)
    pub = public_key_path(path)
    if pub == path:
        raise ConfigError(f"{path}: a private key file must not end in {PUBLIC_SUFFIX}")
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path}: already exists; refusing to replace a signing key")
    key = SigningKey.generate()
    private = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, private, 0o600)
    write_private(pub, key.public_pem(), 0o644)
    return key


def ensure_signing_key(path: Path | str) -> SigningKey:
    """The key at ``path``, generated first if there is none (what ``a1 up`` does for dev)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return generate_signing_key(path)
    key = load_signing_key(path)
    pub = public_key_path(path)
    try:
        current = key_id(load_public_key(pub))
    except ConfigError:  # missing or unreadable: it is derived from the private key
        current = None
    if current != key.key_id:
        write_private(pub, key.public_pem(), 0o644)
    return key


def load_signing_key(path: Path | str) -> SigningKey:
    """The private key at ``path``: a 0600 regular file, not a symlink, PEM PKCS#8 Ed25519."""
    path = Path(path)
    data = read_bounded(path, MAX_KEY_FILE_BYTES, private=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({why})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return SigningKey.of(key)


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """A PEM SubjectPublicKeyInfo Ed25519 key (follows symlinks: public, and mounted that way)."""
    path = Path(path)
    data = read_bounded(path, MAX_KEY_FILE_BYTES, follow=True)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: not a PEM public key ({why})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


def load_trusted_keys(paths: Path | str | Sequence[Path | str]) -> TrustedKeys:
    """The public keys in ``paths``: files, or directories whose ``*.pub`` files are read.

    An empty result is refused: a verifier that trusts nothing would refuse
    every bundle, which is a configuration mistake to report at startup.
    """
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    trusted = TrustedKeys()
    for item in items:
        files = sorted(item.glob(f"*{PUBLIC_SUFFIX}")) if item.is_dir() else [item]
        for file in files:
            trusted.add(load_public_key(file), str(file))
    if not trusted:
        shown = ", ".join(str(p) for p in items) or "(no paths)"
        raise ConfigError(f"{shown}: no trusted bundle keys (*{PUBLIC_SUFFIX} files)")
    return trusted
