"""Development PKI: real TLS handshakes against the generated CA, real JWT checks via JWKS."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest

from a1 import pki
from a1.errors import UserError


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("state")
    pki.ensure_pki(d)
    return d


def _files(d: Path) -> dict[str, bytes]:
    p = pki.DevPKI(d)
    return {f.name: f.read_bytes()
            for f in (p.ca_cert, p.ca_key, p.server_cert, p.server_key, p.jwt_key, p.jwks)}


def test_private_keys_are_owner_only(state: Path) -> None:
    p = pki.DevPKI(state)
    for key in (p.ca_key, p.server_key, p.jwt_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_second_run_reuses_everything(state: Path) -> None:
    before = _files(state)
    pki.ensure_pki(state)
    assert _files(state) == before


def test_missing_server_cert_is_regenerated_under_the_same_ca(tmp_path: Path) -> None:
    p = pki.ensure_pki(tmp_path)
    ca, jwt_key = p.ca_cert.read_bytes(), p.jwt_key.read_bytes()
    old = p.server_cert.read_bytes()
    p.server_cert.unlink()
    pki.ensure_pki(tmp_path)
    assert p.ca_cert.read_bytes() == ca and p.jwt_key.read_bytes() == jwt_key
    assert p.server_cert.read_bytes() != old


def test_corrupt_key_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    p = pki.ensure_pki(tmp_path)
    p.jwt_key.write_text("not a key\n")
    with pytest.raises(UserError, match=r"jwt-signing-key\.pem"):
        pki.ensure_pki(tmp_path)


def _handshake(state: Path, server_hostname: str) -> str:
    """A real TLS handshake: server with the generated cert, client trusting only the CA."""
    p = pki.DevPKI(state)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(p.server_cert, p.server_key)
    client_ctx = ssl.create_default_context(cafile=str(p.ca_cert))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError) as err:
            errors.append(err)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(5).decode()
    finally:
        t.join(5)
        listener.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_server_cert_verifies_against_dev_ca(state: Path, name: str) -> None:
    assert _handshake(state, name) == "hello"


def test_server_cert_does_not_verify_for_other_names(state: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(state, "example.com")


def _jwks_key(state: Path) -> jwt.PyJWK:
    keys = json.loads(pki.DevPKI(state).jwks.read_text())["keys"]
    assert len(keys) == 1 and keys[0]["alg"] == "ES256" and "d" not in keys[0]
    return jwt.PyJWK(keys[0])


def test_token_verifies_with_the_published_jwks(state: Path) -> None:
    token = pki.mint_token(state, "acme", ["reader", "writer"], sub="alice", ttl=60)
    header = jwt.get_unverified_header(token)
    key = _jwks_key(state)
    assert header["kid"] == key.key_id and header["alg"] == "ES256"
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="a1", issuer="a1-dev")
    assert claims["sub"] == "alice" and claims["tenant"] == "acme"
    assert claims["roles"] == ["reader", "writer"]
    assert 55 <= claims["exp"] - time.time() <= 61


def test_tampered_token_fails_verification(state: Path) -> None:
    token = pki.mint_token(state, "acme", ["reader"])
    head, _, sig = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps(
        {**jwt.decode(token, options={"verify_signature": False}), "roles": ["admin"]}).encode())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged.decode()}.{sig}", _jwks_key(state).key,
                   algorithms=["ES256"], audience="a1")


def test_minting_without_a_key_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"jwt-signing-key\.pem"):
        pki.mint_token(tmp_path, "acme", ["reader"])
