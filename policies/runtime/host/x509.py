"""``crypto.x509.parse_rsa_private_key``: a PEM RSA key as OPA returns it, a JWK object.

regorus lacks the ``crypto.x509.*`` family; A1 follows OPA. The input is PEM text or
base64 of PEM text (as OPA reads it); the first ``RSA PRIVATE KEY`` (PKCS #1) block is
parsed with ``cryptography`` (which checks the key's consistency, as Go's
``x509.ParsePKCS1PrivateKey`` does) and returned as lestrrat-go/jwx spells an RSA
private JWK: ``kty``, ``n``, ``e``, ``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi`` in
unpadded base64url. Input is bounded (``MAX_PEM`` characters, ``MAX_RSA_BITS``).

The certificate builtins (``parse_certificates``, ``parse_and_verify_certificates``,
``parse_certificate_request``, ``parse_keypair``) are not here yet: OPA returns Go's
``x509.Certificate`` as JSON, whose ``SerialNumber`` is usually past int64, which
A1's numbers cannot hold exactly.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key

from policies.runtime.host.base import BuiltinError, builtin, want

__all__ = ["MAX_PEM", "MAX_RSA_BITS"]

MAX_PEM = 64 * 1024
"""Longest PEM (or base64 of PEM) text read, in characters."""
MAX_RSA_BITS = 16384
"""Largest RSA modulus accepted: checking a larger key's consistency costs seconds."""

_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(?:[A-Za-z-]+:[^\n]*\r?\n)*\r?\n?(.*?)-----END \1-----",
    re.S,
)


def _pem_text(fn: str, text: str) -> str:
    if len(text) > MAX_PEM:
        raise BuiltinError(f"{fn}: input longer than {MAX_PEM} characters")
    if not text:
        raise BuiltinError(f"{fn}: input PEM data was empty")
    if text.startswith("-----BEGIN"):
        return text
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BuiltinError(f"{fn}: illegal base64 data in the input") from None


def _b64url_int(n: int) -> str:
    raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@builtin("crypto.x509.parse_rsa_private_key")
def parse_rsa_private_key(pem: Any) -> dict[str, str]:
    fn = "crypto.x509.parse_rsa_private_key"
    text = _pem_text(fn, want(fn, 1, pem, "string"))
    block = next((m for m in _BLOCK.finditer(text) if m.group(1) == "RSA PRIVATE KEY"), None)
    if block is None:
        raise BuiltinError(f"{fn}: found no PEM block of type RSA PRIVATE KEY")
    if re.search(r"^Proc-Type:.*ENCRYPTED", block.group(0), re.M):
        raise BuiltinError(f"{fn}: encrypted PEM keys are not supported")
    try:
        der = base64.b64decode("".join(block.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise BuiltinError(f"{fn}: illegal base64 data in the PEM block") from None
    if len(der) > MAX_RSA_BITS // 8 * 5 + 64:  # n, d, p, q, dp, dq, qi with DER framing
        raise BuiltinError(f"{fn}: RSA keys beyond {MAX_RSA_BITS} bits are not supported")
    try:
        key = load_der_private_key(der, password=None)
    except (ValueError, TypeError) as err:
        raise BuiltinError(f"{fn}: invalid RSA private key: {str(err)[:120]}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BuiltinError(f"{fn}: the key is not an RSA key")
    if key.key_size > MAX_RSA_BITS:
        raise BuiltinError(f"{fn}: RSA keys beyond {MAX_RSA_BITS} bits are not supported")
    priv = key.private_numbers()
    pub = priv.public_numbers
    return {
        "kty": "RSA",
        "n": _b64url_int(pub.n),
        "e": _b64url_int(pub.e),
        "d": _b64url_int(priv.d),
        "p": _b64url_int(priv.p),
        "q": _b64url_int(priv.q),
        "dp": _b64url_int(priv.dmp1),
        "dq": _b64url_int(priv.dmq1),
        "qi": _b64url_int(priv.iqmp),
    }
