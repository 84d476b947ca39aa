"""Development PKI: a local CA and server certificate, an ES256 JWT key, its JWKS, tokens.

Everything lives in the stack's state directory and is reused when present, so
a restarted stack keeps accepting the tokens and trusting the CA it handed out.
The state and PKI directories are kept at mode 0700 (tightened if they already
existed with wider modes), and private keys are created 0600 with
``O_EXCL|O_NOFOLLOW`` under an unpredictable temporary name, then renamed into
place: a planted symlink is never followed, neither at the temporary nor at the
final name. Nothing here is meant for production: the CA has no revocation, and
anyone who can read the state directory can mint tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from a1.files import write_atomic
from policies.core.errors import UserError
from policies.core.files import write_private
from policies.core.identity import MAX_TOKEN_LIFETIME_S
from policies.core.tenant import tenant_error

ISSUER = "a1-dev"
AUDIENCE = "a1"
CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=2)
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class DevPKI:
    """Paths of the development PKI inside a state directory."""

    state_dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "pki" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.state_dir / "pki" / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.state_dir / "pki" / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.state_dir / "pki" / "server-key.pem"

    @property
    def jwt_key(self) -> Path:
        return self.state_dir / "pki" / "jwt-signing-key.pem"

    @property
    def jwks(self) -> Path:
        return self.state_dir / "jwks.json"


def ensure_pki(state_dir: Path) -> DevPKI:
    """Create whatever is missing or about to expire; reuse everything else."""
    pki = DevPKI(Path(state_dir))
    private_dir(pki.state_dir)
    private_dir(pki.ca_cert.parent)
    ca_key, ca_cert, ca_new = _ensure_ca(pki)
    _ensure_server(pki, ca_key, ca_cert, force=ca_new)
    _ensure_jwt_key(pki)
    return pki


# -- certificates ---------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or tighten an existing one to 0700; never via a symlink."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise UserError(f"{path}: not a directory (a symlink is not accepted here)")
        if stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE, follow_symlinks=False)
    except OSError as err:
        raise UserError(f"{path}: cannot create a private directory: {err.strerror}") from None


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise UserError(f"{path}: is a symlink; refusing to follow it (remove it to regenerate)")


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a key 0600 through ``policies.core.files.write_private`` (O_EXCL|O_NOFOLLOW
    under an unpredictable name, then rename: a planted symlink is never followed)."""
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    _refuse_symlink(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as err:
        raise UserError(f"{path}: not a PEM private key ({err}); delete it to regenerate") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UserError(f"{path}: expected an EC P-256 private key; delete it to regenerate")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as err:
        raise UserError(f"{path}: not a PEM certificate ({err}); delete it to regenerate") from None


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _ensure_ca(pki: DevPKI) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    _refuse_symlink(pki.ca_key)
    if pki.ca_key.exists() and pki.ca_cert.exists():
        key, cert = _read_key(pki.ca_key), _read_cert(pki.ca_cert)
        if _fresh(cert) and cert.public_key() == key.public_key():
            return key, cert, False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A1 development CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "A1 dev")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pki.ca_key, key)
    write_atomic(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, True


def _ensure_server(pki: DevPKI, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                   force: bool) -> None:
    _refuse_symlink(pki.server_key)
    if not force and pki.server_key.exists() and pki.server_cert.exists():
        key, cert = _read_key(pki.server_key), _read_cert(pki.server_cert)
        if (_fresh(cert) and cert.issuer == ca_cert.subject
                and cert.public_key() == key.public_key()):
            return
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki.server_key, key)
    write_atomic(pki.server_cert, cert.public_bytes(serialization.Encoding.PEM))


# -- JWT ------------------------------------------------------------------------------


def _b64url_uint(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public key as a JWK, with an RFC 7638 thumbprint as ``kid``."""
    numbers = key.public_key().public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": _b64url_uint(numbers.x), "y": _b64url_uint(numbers.y)}
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def _ensure_jwt_key(pki: DevPKI) -> None:
    _refuse_symlink(pki.jwt_key)
    if pki.jwt_key.exists():
        key = _read_key(pki.jwt_key)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_private(pki.jwt_key, key)
    jwks = json.dumps({"keys": [public_jwk(key)]}, indent=2) + "\n"
    if not pki.jwks.exists() or pki.jwks.read_text() != jwks:
        write_atomic(pki.jwks, jwks.encode())


def mint_token(
    state_dir: Path,
    tenant: str,
    roles: list[str],
    sub: str | None = None,
    ttl: int = 3600,
    extra: dict[str, Any] | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
) -> str:
    """A development JWT signed with the state directory's ES256 key.

    ``tenant`` must be a canonical tenant id and ``ttl`` at most
    :data:`MAX_TOKEN_LIFETIME_S` (Envoy refuses longer-lived tokens). A negative
    ``ttl`` is allowed, for tests of expired tokens.
    """
    problem = tenant_error(tenant)
    if problem is not None:
        raise UserError(f"--tenant: {problem}", 2)
    if ttl > MAX_TOKEN_LIFETIME_S:
        raise UserError(f"--ttl: {ttl} seconds is over the maximum token lifetime of "
                        f"{MAX_TOKEN_LIFETIME_S} seconds", 2)
    pki = DevPKI(Path(state_dir))
    if not pki.jwt_key.exists():
        raise UserError(f"{pki.jwt_key}: no JWT signing key; run `a1 up --state-dir "
                        f"{state_dir}` first (it creates one)")
    key = _read_key(pki.jwt_key)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": sub or f"{tenant}-user", "tenant": tenant,
        "roles": list(roles), "iat": now, "nbf": now - 5, "exp": now + ttl,
        **(extra or {}),
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": public_jwk(key)["kid"]})


def verify_token(state_dir: Path, token: str) -> dict[str, Any]:
    """Check a token the way Envoy will (signature, issuer, audience, expiry, lifetime)."""
    key = _read_key(DevPKI(Path(state_dir)).jwt_key)
    claims: dict[str, Any] = jwt.decode(token, key.public_key(), algorithms=["ES256"],
                                        audience=AUDIENCE, issuer=ISSUER,
                                        options={"require": ["exp"]})
    if claims["exp"] > time.time() + MAX_TOKEN_LIFETIME_S + 30:  # jwt_authn's clock skew
        raise jwt.InvalidTokenError(f"exp: more than {MAX_TOKEN_LIFETIME_S} s ahead")
    return claims
