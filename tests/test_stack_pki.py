"""Development PKI: real TLS handshakes against the generated CA, real JWT checks via JWKS."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import jwt
import pytest

from a1 import pki
from policies.core.errors import UserError


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


# -- private files: no symlink is followed, directories are 0700 ---------------------


def test_state_and_pki_directories_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    p = pki.ensure_pki(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.ca_key.parent.stat().st_mode) == 0o700


def test_wider_existing_directories_are_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    os.chmod(state, 0o755)
    os.chmod(state / "pki", 0o777)
    pki.ensure_pki(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "pki").stat().st_mode) == 0o700


def test_stack_prepare_tightens_the_state_directory(tmp_path: Path) -> None:
    from a1.stack import Stack, StackOptions

    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    Stack(StackOptions(state_dir=state, cells=1, mode="none")).prepare()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_symlinked_pki_directory_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "pki").symlink_to(elsewhere)
    with pytest.raises(UserError, match=r"pki: not a directory"):
        pki.ensure_pki(tmp_path / "state")
    assert list(elsewhere.iterdir()) == []


def test_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """Keys and public files used to be written through a fixed `.NAME.tmp`, following a
    planted symlink."""
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    victim = tmp_path / "victim.pem"
    names = ("ca-key.pem", "server-key.pem", "jwt-signing-key.pem", "ca.pem", "server.pem")
    for name in names:
        (state / "pki" / f".{name}.tmp").symlink_to(victim)
    (state / ".jwks.json.tmp").symlink_to(victim)
    p = pki.ensure_pki(state)
    assert not victim.exists()
    for key in (p.ca_key, p.server_key, p.jwt_key):
        assert not key.is_symlink() and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_exclusive_create_refuses_a_symlink_at_the_temporary_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a guessed temporary name is never opened through a symlink (O_EXCL|O_NOFOLLOW)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    import policies.core.files

    monkeypatch.setattr(policies.core.files.secrets, "token_hex", lambda n: "guessed")
    victim = tmp_path / "victim.pem"
    victim.write_text("precious\n")
    target = tmp_path / "key.pem"
    (tmp_path / ".key.pem.guessed.tmp").symlink_to(victim)
    with pytest.raises(UserError, match=r"\.key\.pem\.guessed\.tmp: cannot create"):
        pki._write_private(target, ec.generate_private_key(ec.SECP256R1()))
    assert victim.read_text() == "precious\n" and not target.exists()


@pytest.mark.parametrize("dangling", [True, False])
def test_symlink_at_a_key_path_is_refused_not_followed(tmp_path: Path, dangling: bool) -> None:
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    victim = tmp_path / "victim.pem"
    if not dangling:  # a valid key the attacker controls: must not be adopted either
        other = pki.ensure_pki(tmp_path / "other")
        victim.write_bytes(other.jwt_key.read_bytes())
    (state / "pki" / "jwt-signing-key.pem").symlink_to(victim)
    with pytest.raises(UserError, match=r"jwt-signing-key\.pem: is a symlink"):
        pki.ensure_pki(state)
    assert victim.exists() is not dangling


# -- tokens: the tenant grammar and the lifetime bound --------------------------------


@pytest.mark.parametrize("tenant", ["%61%63me", "Acme", "acme/../globex", "", "-acme", "a" * 64,
                                    "acme\n", "acmé", "a_b", "..", "acme%2Fglobex"])
def test_minting_refuses_a_tenant_outside_the_grammar(state: Path, tenant: str) -> None:
    with pytest.raises(UserError, match=r"^--tenant: ") as err:
        pki.mint_token(state, tenant, ["reader"])
    assert "\n" not in str(err.value)


def test_minting_refuses_a_lifetime_over_the_maximum(state: Path) -> None:
    pki.mint_token(state, "acme", ["reader"], ttl=pki.MAX_TOKEN_LIFETIME_S)
    with pytest.raises(UserError, match=r"^--ttl: .*maximum token lifetime of 86400 seconds$"):
        pki.mint_token(state, "acme", ["reader"], ttl=pki.MAX_TOKEN_LIFETIME_S + 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "%61%63me", "--roles", "reader"], "a1: --tenant: tenant id '%61%63me' does "
                                                    "not match [a-z0-9][a-z0-9-]{0,62}\n"),
    (["--tenant", "acme", "--roles", "reader", "--ttl", "86401"],
     "a1: --ttl: 86401 seconds is over the maximum token lifetime of 86400 seconds\n"),
])
def test_a1_token_refuses_with_one_line(state: Path, capsys: pytest.CaptureFixture[str],
                                        args: list[str], message: str) -> None:
    from a1.cli import main

    assert main(["token", *args, "--state-dir", str(state)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == message


def test_a1_token_mints_platform_admin(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from a1.cli import main

    assert main(["token", "--tenant", "platform", "--roles", "platform-admin",
                 "--state-dir", str(state)]) == 0
    claims = pki.verify_token(state, capsys.readouterr().out.strip())
    assert claims["roles"] == ["platform-admin"] and claims["exp"] - claims["iat"] == 3600


def test_verify_token_requires_exp_and_bounds_it(state: Path) -> None:
    key = pki._read_key(pki.DevPKI(state).jwt_key)
    now = int(time.time())
    base = {"iss": "a1-dev", "aud": "a1", "sub": "x", "tenant": "acme", "iat": now}
    for claims in (base, {**base, "exp": now + pki.MAX_TOKEN_LIFETIME_S + 600}):
        token = jwt.encode(claims, key, algorithm="ES256")
        with pytest.raises(jwt.InvalidTokenError):
            pki.verify_token(state, token)
