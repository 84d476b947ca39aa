"""``crypto.x509.parse_rsa_private_key`` (``policies/runtime/host/x509.py``), against PyJWT's
independent JWK encoding of the same key (regorus lacks the builtin)."""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from policies.runtime.host import REGISTRY
from policies.runtime.host import x509 as host_x509
from policies.runtime.host.base import BuiltinError

FN = "crypto.x509.parse_rsa_private_key"


def parse(pem: object) -> dict[str, str]:
    return REGISTRY[FN].fn(pem)  # type: ignore[no-any-return]


def refused(pem: object) -> str:
    with pytest.raises(BuiltinError) as info:
        parse(pem)
    return str(info.value)


@cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pkcs1(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("bits", [1024, 2048])
def test_the_jwk_is_the_keys_numbers(bits: int) -> None:
    key = rsa_key(bits)
    expected = json.loads(RSAAlgorithm.to_jwk(key))
    expected.pop("key_ops", None)
    assert parse(pkcs1(key)) == expected
    b64 = base64.b64encode(pkcs1(key).encode()).decode()
    assert parse(b64) == expected  # base64 of the PEM, as OPA accepts it


def test_the_first_rsa_block_is_read() -> None:
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert parse(other + pkcs1(rsa_key(1024)))["n"] == parse(pkcs1(rsa_key(1024)))["n"]
    assert "no PEM block" in refused(other)


def test_refusals() -> None:
    assert "illegal base64" in refused("invalid")
    assert "empty" in refused("")
    assert "operand 1 must be string" in refused(1)
    pkcs8 = (
        rsa_key(1024)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert "no PEM block" in refused(pkcs8)  # OPA reads RSA PRIVATE KEY blocks only
    lines = pkcs1(rsa_key(1024)).splitlines()
    lines[3] = lines[3][::-1]  # the key's numbers, scrambled
    assert "invalid RSA private key" in refused("\n".join(lines) + "\n")
    assert "longer than" in refused("-----BEGIN" + "A" * host_x509.MAX_PEM)
    huge = "-----BEGIN RSA PRIVATE KEY-----\n" + "QUFB" * 4000 + "\n-----END RSA PRIVATE KEY-----\n"
    assert "beyond" in refused(huge)
