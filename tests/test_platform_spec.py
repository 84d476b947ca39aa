"""The platform spec: the example, every schema and semantic error with its place,
attacks on the directory and the parser, the digest, the cell edits and the bucket rule."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from control.spec import PlatformSpec, add_cell, load_spec, remove_cell, schema
from control.spec import files as spec_files
from control.spec.table import replay
from policies.core.cells import CELL_NAME_GRAMMAR, MAX_BUCKETS, CellTable
from policies.core.errors import ConfigError
from policies.core.tenant import TENANT_GRAMMAR

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"
EXAMPLE_TEXT = (EXAMPLE / "platform.yaml").read_text()


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spec"
    shutil.copytree(EXAMPLE, d)
    return d


def write(d: Path, text: str) -> None:
    (d / "platform.yaml").write_text(text)


def edited(d: Path, old: str, new: str) -> None:
    text = (d / "platform.yaml").read_text()
    assert old in text, old
    write(d, text.replace(old, new, 1))


def refused(d: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(d)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def doc_of(cells: list[str], buckets: int, **extra: object) -> str:
    doc = yaml.safe_load(EXAMPLE_TEXT)
    doc["cells"] = [{"name": c, "endpoints": [f"127.0.0.1:{20000 + i}"]}
                    for i, c in enumerate(cells)]
    doc["buckets"] = buckets
    doc["rollout"]["canary_cell"] = cells[0]
    doc.update(extra)
    return yaml.safe_dump(doc, sort_keys=False)


# -- the example ---------------------------------------------------------------------------


def test_the_example_loads_with_every_field(spec_dir: Path) -> None:
    spec = load_spec(EXAMPLE)
    assert isinstance(spec, PlatformSpec)
    assert spec.region == "local"
    assert spec.cell_names == ("cell-1", "cell-2", "cell-3")
    assert [str(c.endpoints[0]) for c in spec.cells] == [
        "127.0.0.1:10111", "127.0.0.1:10112", "127.0.0.1:10113"]
    assert spec.buckets == 16384 and dict(spec.overrides) == {}
    assert list(spec.policy.sources) == ["policy/authz.rego"]
    assert spec.policy.sources["policy/authz.rego"] == (
        ROOT / "policies/library/authz.rego").read_text()
    assert spec.policy.entrypoint == "a1/authz/decision"
    assert isinstance(spec.policy.data, dict)
    assert spec.jwt[0].issuer == "a1-dev" and spec.jwt[0].audiences == ("a1",)
    assert json.loads(spec.jwt[0].jwks)["keys"][0]["crv"] == "P-256"
    assert spec.listeners.http is not None and spec.listeners.http.port == 10000
    assert spec.listeners.https is None
    assert spec.sidecar.mode == "grpc" and spec.sidecar.grpc == "127.0.0.1:10100"
    assert spec.rollout.canary_cell == "cell-1" and spec.rollout.max_error_rate == 0.01
    assert spec.cell_table().bucket_counts() == {"cell-1": 5461, "cell-2": 5462,
                                                 "cell-3": 5461}
    assert re.fullmatch("[0-9a-f]{64}", spec.digest)


def test_the_example_matches_a1_up_defaults() -> None:
    from a1.stack import ENTRYPOINT, StackPorts, cell_names

    spec = load_spec(EXAMPLE)
    ports = StackPorts.defaults(3)
    assert list(spec.cell_names) == cell_names(3)
    assert [c.endpoints[0].port for c in spec.cells] == list(ports.cells)
    assert spec.listeners.http is not None and spec.listeners.http.port == ports.http
    assert spec.sidecar.grpc.endswith(f":{ports.sidecar_grpc}")
    assert spec.policy.entrypoint == ENTRYPOINT


@pytest.mark.parametrize("name", ["authz.rego", "data.json"])
def test_the_example_policy_is_the_shipped_library(name: str) -> None:
    assert (EXAMPLE / "policy" / name).read_bytes() == (
        ROOT / "policies/library" / name).read_bytes()


def test_the_schema_agrees_with_the_shared_grammars() -> None:
    s = schema()
    assert s["properties"]["buckets"]["maximum"] == MAX_BUCKETS
    assert s["$defs"]["cell_name"]["pattern"] == f"^{CELL_NAME_GRAMMAR}$"
    assert s["properties"]["overrides"]["propertyNames"]["pattern"] == f"^{TENANT_GRAMMAR}$"


def test_the_schema_ships_as_package_data() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "spec/*.json" in data["tool"]["setuptools"]["package-data"]["control"]


# -- schema errors: file:line:col, field, message ------------------------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("region: local", "region: Local",
     r"platform.yaml:4:9: region: 'Local' does not match"),
    ("version: 1", "version: 2", r"platform.yaml:3:10: version: 1 was expected"),
    ("buckets: 16384", "buckets: true", r":18:10: buckets: True is not of type 'integer'"),
    ("buckets: 16384", "buckets: 0", r":18:10: buckets: 0 is less than the minimum of 1"),
    ("buckets: 16384", "buckets: 2000000", r":18:10: buckets: 2000000 is greater than"),
    ("buckets: 16384", "buckets: 16384.5", r":18:10: buckets: 16384.5 is not of type"),
    ("overrides: {}", "overrides: [cell-1]", r":21:12: overrides: \['cell-1'\] is not of type"),
    ("overrides: {}", "overrides: {Acme: cell-1}",
     r":21:13: overrides.Acme: tenant id 'Acme' does not match"),
    ("overrides: {}", "overrides: {acme: Cell-1}",
     r":21:19: overrides.acme: 'Cell-1' is not a cell name"),
    ("region: local", "region: local\ncolour: red",
     r":5:1: colour: unknown field \(expected version, region, cells"),
    ("  - name: cell-2\n", "  - name: no\n",
     r":12:11: cells\[1\].name: False is not a string \(quote it"),
    ('["127.0.0.1:10112"]', '["127.0.0.1"]',
     r":13:17: cells\[1\].endpoints\[0\]: '127.0.0.1' does not match"),
    ('endpoints: ["127.0.0.1:10113"]', "endpoints: []",
     r":15:16: cells\[2\].endpoints: \[\] should be non-empty"),
    ('endpoints: ["127.0.0.1:10113"]', 'endpoints: ["127.0.0.1:10113"]\n    weight: 3',
     r":16:5: cells\[2\].weight: unknown field \(expected name, endpoints\)"),
    ("sources: [policy/authz.rego]", "sources: [policy/authz.txt]",
     r":24:13: policy.sources\[0\]: 'policy/authz.txt' is not a .rego file"),
    ("entrypoint: a1/authz/decision", "entrypoint: a1/authz/../x",
     r":26:15: policy.entrypoint: 'a1/authz/../x' does not match"),
    ("audiences: [a1]", "audiences: a1", r":31:18: jwt.issuers\[0\].audiences: 'a1' is not"),
    ("http: {address: 127.0.0.1, port: 10000}", "http: {address: 127.0.0.1, port: 0}",
     r":36:36: listeners.http.port: 0 is less than the minimum of 1"),
    ("http: {address: 127.0.0.1, port: 10000}", "http: {address: 127.0.0.1, port: '80'}",
     r":36:36: listeners.http.port: '80' is not of type 'integer'"),
    ("http: {address: 127.0.0.1, port: 10000}", "https: {address: 127.0.0.1, port: 10443}",
     r":36:10: listeners.https: missing required field 'tls'"),
    ("mode: grpc", "mode: wasm", r":45:9: sidecar.mode: 'wasm' is not one of"),
    ("grpc: 127.0.0.1:10100", "grpc: unix:relative.sock",
     r":46:9: sidecar.grpc: 'unix:relative.sock' does not match"),
    ("max_error_rate: 0.01", "max_error_rate: 1.5",
     r":53:19: rollout.max_error_rate: 1.5 is greater than the maximum of 1"),
    ("max_deny_rate: 0.2", "max_deny_rate: -0.1",
     r":54:18: rollout.max_deny_rate: -0.1 is less than the minimum of 0"),
    ("soak_seconds: 60", "soak_seconds: sixty",
     r":52:17: rollout.soak_seconds: 'sixty' is not of type 'integer'"),
    ("min_requests: 100", "min_requests: [100]",
     r":55:17: rollout.min_requests: \[100\] is not of type 'integer'"),
])
def test_schema_errors_name_file_line_col_and_field(spec_dir: Path, old: str, new: str,
                                                     expected: str) -> None:
    edited(spec_dir, old, new)
    message = refused(spec_dir)
    assert message.startswith(str(spec_dir / "platform.yaml") + ":"), message
    assert re.search(expected, message), message


def test_http_mode_needs_the_sidecar_http_address(spec_dir: Path) -> None:
    edited(spec_dir, "  http: 127.0.0.1:10101\n", "")
    load_spec(spec_dir)  # grpc mode: the http address is optional
    edited(spec_dir, "mode: grpc", "mode: http")
    assert re.search(r":45:3: sidecar: missing required field 'http'", refused(spec_dir))


def test_a_missing_top_level_field_is_named(spec_dir: Path) -> None:
    edited(spec_dir, "region: local\n", "")
    assert refused(spec_dir).endswith("platform.yaml:3:1: (top level): missing required "
                                      "field 'region'")


def test_the_first_error_in_file_order_is_reported(spec_dir: Path) -> None:
    edited(spec_dir, "max_deny_rate: 0.2", "max_deny_rate: 2")
    edited(spec_dir, "region: local", "region: LOCAL")
    assert re.search(r":4:9: region:", refused(spec_dir))


def test_a_huge_value_is_not_echoed_in_full(spec_dir: Path) -> None:
    edited(spec_dir, "region: local", "region: " + "X" * 100_000)
    assert len(refused(spec_dir)) < 600


# -- semantic errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("name: cell-2", "name: cell-1",
     r":12:11: cells\[1\].name: duplicate cell 'cell-1' \(also cells\[0\]\)"),
    ("canary_cell: cell-1", "canary_cell: cell-9",
     r":51:16: rollout.canary_cell: unknown cell 'cell-9' \(cells are cell-1, cell-2, cell-3\)"),
    ("overrides: {}", "overrides: {acme: cell-9}",
     r":21:19: overrides.acme: unknown cell 'cell-9'"),
    ('["127.0.0.1:10112"]', '["127.0.0.1:70000"]',
     r":13:17: cells\[1\].endpoints\[0\]: port 70000 in '127.0.0.1:70000' is outside"),
    ('["127.0.0.1:10112"]', '["127.0.0.1:0"]', r"cells\[1\].endpoints\[0\]: port 0 "),
    ('["127.0.0.1:10112"]', '["999.1.1.1:80"]',
     r"cells\[1\].endpoints\[0\]: '999.1.1.1' is not an IPv4 address"),
    ('["127.0.0.1:10112"]', '["[::zz]:80"]', r"does not match|is not an IPv6 address"),
    ('["127.0.0.1:10112"]', '["[::1]:80", "[::1]:80"]',
     r":13:29: cells\[1\].endpoints\[1\]: duplicate endpoint"),
    ('["127.0.0.1:10112"]', '["a..b:80"]', r"'a..b' is not a host name"),
    ('["127.0.0.1:10112"]', '["127.0.0.1:10000"]',
     r"cells\[1\].endpoints\[0\]: 127.0.0.1:10000 is the http listener's address"),
    ('["127.0.0.1:10112"]', '["127.0.0.1:10100"]',
     r"cells\[1\].endpoints\[0\]: 127.0.0.1:10100 is sidecar.grpc's address"),
    ("buckets: 16384", "buckets: 2",
     r":18:10: buckets: 2 buckets for 3 cells; every cell needs at least one"),
    ("http: {address: 127.0.0.1, port: 10000}", "http: {address: localhost, port: 10000}",
     r"listeners.http.address: 'localhost' is not an IP address"),
    ("grpc: 127.0.0.1:10100", "grpc: 127.0.0.1:10000",
     r":46:9: sidecar.grpc: 127.0.0.1:10000 is also the http listener's address"),
    ("grpc: 127.0.0.1:10100", "grpc: 0.0.0.0:10000",
     r"sidecar.grpc: 0.0.0.0:10000 is also the http listener's address"),
    ("http: 127.0.0.1:10101", "http: 127.0.0.1:10100",
     r":47:9: sidecar.http: 127.0.0.1:10100 is also sidecar.grpc"),
    ("grpc: 127.0.0.1:10100", "grpc: unix:/" + "s" * 120,
     r"sidecar.grpc: unix socket path is 121 bytes long"),
    ("- issuer: a1-dev\n      audiences: [a1]\n      # An example public key. `a1 up` "
     "makes its own signing key and JWKS.\n      jwks: jwks.json\n",
     "- {issuer: a1-dev, audiences: [a1], jwks: jwks.json}\n"
     "    - {issuer: a1-dev, audiences: [b], jwks: jwks.json}\n",
     r":31:16: jwt.issuers\[1\].issuer: duplicate issuer 'a1-dev'"),
    ("data: policy/data.json", "data: policy/missing.json",
     r":25:9: policy.data: policy/missing.json: file not found"),
    ("sources: [policy/authz.rego]", "sources: [policy/authz.rego, ./policy/authz.rego]",
     r"policy.sources\[1\]: policy/authz.rego is listed twice"),
])
def test_semantic_errors_name_file_line_col_and_field(spec_dir: Path, old: str, new: str,
                                                      expected: str) -> None:
    edited(spec_dir, old, new)
    message = refused(spec_dir)
    assert re.search(expected, message), message


def test_sidecar_unix_addresses_are_accepted(spec_dir: Path) -> None:
    edited(spec_dir, "grpc: 127.0.0.1:10100", "grpc: unix:/run/a1/sidecar-grpc.sock")
    assert load_spec(spec_dir).sidecar.grpc == "unix:/run/a1/sidecar-grpc.sock"


@pytest.mark.parametrize(("content", "expected"), [
    (b"[1, 2]", r"policy.data: policy/data.json: must hold a JSON object"),
    (b'{"a": ', r"policy.data: .*policy/data.json:1:7: invalid JSON"),
    (b"[" * 100 + b"]" * 100, r"policy.data: .*policy/data.json:1:65: nesting deeper than 64"),
    (b'{"a": "\xff"}', r"policy.data: .*policy/data.json:1:8: not valid UTF-8 \(byte 7\)"),
])
def test_bad_data_files_are_refused_with_the_field(spec_dir: Path, content: bytes,
                                                   expected: str) -> None:
    (spec_dir / "policy/data.json").write_bytes(content)
    assert re.search(expected, refused(spec_dir))


@pytest.mark.parametrize(("jwks", "expected"), [
    ({"keys": []}, r"a JWKS must be an object with a non-empty \"keys\" list"),
    ({"nokeys": 1}, r"a JWKS must be an object"),
    ({"keys": [{"x": 1}]}, r"keys\[0\] is not a JWK"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "secret"}]},
     r"keys\[0\] holds private or secret key material"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
     r"keys\[0\] holds private or secret key material"),
])
def test_bad_jwks_files_are_refused(spec_dir: Path, jwks: object, expected: str) -> None:
    (spec_dir / "jwks.json").write_text(json.dumps(jwks))
    message = refused(spec_dir)
    assert re.search(r":33:13: jwt.issuers\[0\].jwks: jwks.json: " + expected, message), message


def test_a_non_utf8_policy_source_is_refused(spec_dir: Path) -> None:
    (spec_dir / "policy/authz.rego").write_bytes(b"package a1\n\xc3(\n")
    assert re.search(r":24:13: policy.sources\[0\]: .*authz.rego:2:1: not valid UTF-8 "
                     r"\(byte 11\)", refused(spec_dir))


# -- TLS -----------------------------------------------------------------------------------


def make_pem(d: Path, name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


HTTPS = ("  # https:\n  #   address: 127.0.0.1\n  #   port: 10443\n"
         "  #   tls: {cert: tls/server.pem, key: tls/server-key.pem}\n")


def with_https(d: Path, port: int = 10443) -> None:
    (d / "tls").mkdir()
    cert, key = make_pem(d, "localhost")
    (d / "tls/server.pem").write_bytes(cert)
    (d / "tls/server-key.pem").write_bytes(key)
    edited(d, HTTPS, f"  https:\n    address: 127.0.0.1\n    port: {port}\n"
                     "    tls: {cert: tls/server.pem, key: tls/server-key.pem}\n")


def test_tls_material_is_read_and_checked(spec_dir: Path) -> None:
    with_https(spec_dir)
    spec = load_spec(spec_dir)
    https = spec.listeners.https
    assert https is not None and https.tls is not None and https.port == 10443
    assert https.tls.cert_pem == (spec_dir / "tls/server.pem").read_bytes()
    assert https.tls.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert "tls/server-key.pem" in spec.files


def test_a_key_that_does_not_match_its_certificate_is_refused(spec_dir: Path) -> None:
    with_https(spec_dir)
    _, other = make_pem(spec_dir, "other")
    (spec_dir / "tls/server-key.pem").write_bytes(other)
    assert re.search(r":40:38: listeners.https.tls.key: tls/server-key.pem: does not match "
                     r"the certificate in tls/server.pem", refused(spec_dir))


def test_garbage_pem_is_refused(spec_dir: Path) -> None:
    with_https(spec_dir)
    (spec_dir / "tls/server.pem").write_bytes(b"not a cert")
    assert re.search(r"listeners.https.tls.cert: tls/server.pem: no PEM certificate",
                     refused(spec_dir))


def test_http_and_https_on_one_address_are_refused(spec_dir: Path) -> None:
    with_https(spec_dir, port=10000)
    assert re.search(r"listeners.https.port: 127.0.0.1:10000 is also the http listener's",
                     refused(spec_dir))


# -- attacks on the directory --------------------------------------------------------------


@pytest.mark.parametrize(("ref", "expected"), [
    ("../outside.rego", r"path has a '..' component"),
    ("policy/../../outside.rego", r"path has a '..' component"),
    ("/etc/passwd.rego", r"absolute path"),
    ("policy\\\\authz.rego", r"backslash"),
    ("%2e%2e/authz.rego", r"%2e%2e/authz.rego: file not found"),
    ("policy/%2e%2e%2fauthz.rego", r"file not found"),
    ("policy/", r"does not match|is not a .rego file"),
    (".", r"is not a .rego file"),
])
def test_references_cannot_leave_the_directory(spec_dir: Path, ref: str, expected: str) -> None:
    (spec_dir.parent / "outside.rego").write_text("package secret\n")
    edited(spec_dir, "sources: [policy/authz.rego]", f'sources: ["{ref}"]')
    message = refused(spec_dir)
    assert re.search(r":24:13: policy.sources\[0\]: ", message), message
    assert re.search(expected, message), message


def test_a_symlink_out_of_the_directory_is_refused(spec_dir: Path) -> None:
    secret = spec_dir.parent / "secret.json"
    secret.write_text('{"keys": [{"kty": "EC"}]}')
    (spec_dir / "jwks.json").unlink()
    (spec_dir / "jwks.json").symlink_to(secret)
    assert re.search(r"jwt.issuers\[0\].jwks: jwks.json: resolves \(through a symlink\) "
                     r"outside the spec directory", refused(spec_dir))


def test_a_symlinked_directory_out_is_refused(spec_dir: Path) -> None:
    outside = spec_dir.parent / "elsewhere"
    shutil.move(spec_dir / "policy", outside)
    (spec_dir / "policy").symlink_to(outside)
    assert "outside the spec directory" in refused(spec_dir)


def test_a_symlink_inside_the_directory_is_followed(spec_dir: Path) -> None:
    (spec_dir / "keys").mkdir()
    shutil.move(spec_dir / "jwks.json", spec_dir / "keys/jwks.json")
    (spec_dir / "jwks.json").symlink_to("keys/jwks.json")
    assert load_spec(spec_dir).jwt[0].jwks == (spec_dir / "keys/jwks.json").read_text()


def test_a_platform_yaml_symlinked_out_is_refused(spec_dir: Path) -> None:
    outside = spec_dir.parent / "platform.yaml"
    shutil.move(spec_dir / "platform.yaml", outside)
    (spec_dir / "platform.yaml").symlink_to(outside)
    assert refused(spec_dir).endswith("platform.yaml: resolves (through a symlink) outside "
                                      "the spec directory")


def test_a_symlink_loop_is_refused(spec_dir: Path) -> None:
    (spec_dir / "jwks.json").unlink()
    (spec_dir / "jwks.json").symlink_to("jwks.json")
    assert re.search(r"jwt.issuers\[0\].jwks: jwks.json: cannot resolve", refused(spec_dir))


def test_a_fifo_or_a_directory_is_refused_without_blocking(spec_dir: Path) -> None:
    (spec_dir / "jwks.json").unlink()
    os.mkfifo(spec_dir / "jwks.json")  # opening it for reading would block without O_NONBLOCK
    assert "jwks.json: not a regular file" in refused(spec_dir)
    (spec_dir / "jwks.json").unlink()
    (spec_dir / "jwks.json").mkdir()
    assert "jwks.json: not a regular file" in refused(spec_dir)


def test_a_socket_is_refused(spec_dir: Path) -> None:
    (spec_dir / "jwks.json").unlink()
    path = spec_dir / "jwks.json"
    if len(str(path)) > 100:
        pytest.skip("temporary path too long for a unix socket")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert "jwks.json: " in refused(spec_dir)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    assert "spec directory not found" in refused(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "not a directory" in refused(tmp_path / "file")
    assert refused(tmp_path).endswith("platform.yaml: file not found")


# -- attacks on the parser -----------------------------------------------------------------


def test_a_platform_yaml_over_1_mib_is_refused(spec_dir: Path) -> None:
    write(spec_dir, EXAMPLE_TEXT + "#" * (1 << 20))
    assert re.search(r"platform.yaml: file is \d+ bytes; at most 1048576", refused(spec_dir))


def test_a_referenced_file_over_16_mib_is_refused_unread(spec_dir: Path) -> None:
    with open(spec_dir / "policy/data.json", "r+b") as f:  # sparse: costs no disk
        f.truncate(spec_files.MAX_FILE_BYTES + 1)
    assert re.search(r"policy.data: policy/data.json: file is 16777217 bytes; at most 16777216",
                     refused(spec_dir))


def test_the_referenced_files_are_bounded_in_total(spec_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    size = len((spec_dir / "policy/authz.rego").read_bytes())
    monkeypatch.setattr(spec_files, "MAX_TOTAL_BYTES", size + 10)
    assert "the referenced files exceed" in refused(spec_dir)


def test_deep_nesting_is_refused_before_recursing(spec_dir: Path) -> None:
    write(spec_dir, "region: " + "[" * 100_000)
    assert refused(spec_dir).endswith("platform.yaml:1:72: nested deeper than 64 levels")
    write(spec_dir, "".join(f"{' ' * i}a:\n" for i in range(200)))
    assert "nested deeper than 64 levels" in refused(spec_dir)


def test_an_alias_bomb_is_refused(spec_dir: Path) -> None:
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    bomb += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}" + f",*{chr(97 + i)}" * 8 + "]"
             for i in range(8)]
    write(spec_dir, "\n".join(bomb) + "\n")
    assert refused(spec_dir).endswith("platform.yaml:1:4: YAML anchors (&name) are not "
                                      "allowed in a spec")


def test_aliases_and_merge_keys_are_refused(spec_dir: Path) -> None:
    write(spec_dir, EXAMPLE_TEXT + "x: *a\n")
    assert refused(spec_dir).endswith("platform.yaml:56:4: YAML aliases (*name) are not "
                                      "allowed in a spec")
    write(spec_dir, "region: {<<: {a: 1}}\n")
    assert "unsupported YAML tag 'tag:yaml.org,2002:merge'" in refused(spec_dir)


@pytest.mark.parametrize(("text", "expected"), [
    ("", r"platform.yaml:1:1: the spec is empty; expected a mapping"),
    ("- a\n- b\n", r"platform.yaml:1:1: the spec is a list; expected a mapping"),
    ("region: a\nregion: b\n", r"platform.yaml:2:1: duplicate key 'region' \(first at line 1\)"),
    ("cells:\n  - name: a\n    name: b\n", r":3:5: duplicate key 'name' \(first at line 2\)"),
    ("a: 1\n---\nb: 2\n", r"platform.yaml:2:1: invalid YAML: but found another document"),
    ("a: [1,\n", r"platform.yaml:2:1: invalid YAML"),
    ("buckets: " + "9" * 5000 + "\n", r":1:10: cannot read '9999.*' \(5000 characters\) as int"),
    ("max: .nan\n", r":1:6: '.nan' is not a finite number"),
    ("region: !!binary aGk=\n", r":1:9: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
    ("region: !!python/object:os.system x\n", r":1:9: unsupported YAML tag"),
    ("? [a]\n: b\n", r":1:3: mapping keys must be plain strings"),
    ("1: b\n", r":1:1: mapping key '1' is read as int; quote it"),
])
def test_the_parser_refuses_what_safe_load_would_accept(spec_dir: Path, text: str,
                                                        expected: str) -> None:
    write(spec_dir, text)
    message = refused(spec_dir)
    assert re.search(expected, message), message


def test_a_non_utf8_platform_yaml_is_refused_at_the_byte(spec_dir: Path) -> None:
    (spec_dir / "platform.yaml").write_bytes(b"version: 1\nregion: \xe9t\xe9\n")
    assert refused(spec_dir).endswith("platform.yaml:2:9: not valid UTF-8 (byte 19)")


def test_dates_are_read_as_text(spec_dir: Path) -> None:
    edited(spec_dir, "region: local", "region: 2024-01-01")
    assert load_spec(spec_dir).region == "2024-01-01"


# -- the digest ----------------------------------------------------------------------------


def test_the_digest_is_stable_across_loads_and_copies(spec_dir: Path, tmp_path: Path) -> None:
    first = load_spec(spec_dir)
    assert load_spec(spec_dir).digest == first.digest
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(spec_dir, copy)
    assert load_spec(copy).digest == first.digest
    assert load_spec(copy) == first  # equal content, equal specs (the directory aside)
    edited(copy, "# Tenants pinned", "# Pinned tenants")  # comments are not content
    edited(copy, "region: local", "region:   'local'")
    assert load_spec(copy).digest == first.digest


def test_defaults_written_out_do_not_change_the_digest(spec_dir: Path) -> None:
    before = load_spec(spec_dir).digest
    edited(spec_dir, "buckets: 16384\n", "")
    edited(spec_dir, "  timeout_ms: 500\n", "")
    edited(spec_dir, "  canary_cell: cell-1\n", "")
    assert load_spec(spec_dir).digest == before


@pytest.mark.parametrize("change", [
    lambda d: (d / "policy/data.json").write_text('{"changed": true}'),
    lambda d: (d / "policy/authz.rego").write_text(
        (d / "policy/authz.rego").read_text() + "\n# x\n"),
    lambda d: (d / "jwks.json").write_text((d / "jwks.json").read_text().replace(
        "example-1", "example-2")),
    lambda d: edited(d, "soak_seconds: 60", "soak_seconds: 61"),
    lambda d: edited(d, "overrides: {}", "overrides: {acme: cell-2}"),
])
def test_the_digest_changes_with_any_content(spec_dir: Path, change: object) -> None:
    before = load_spec(spec_dir).digest
    change(spec_dir)  # type: ignore[operator]
    assert load_spec(spec_dir).digest != before


# -- the bucket table ----------------------------------------------------------------------


def test_without_a_record_the_table_replays_the_cell_order(spec_dir: Path) -> None:
    spec = load_spec(spec_dir)
    assert spec.cell_table() == replay(["cell-1", "cell-2", "cell-3"], 16384)
    edited(spec_dir, "overrides: {}", "overrides: {acme: cell-3}")
    assert load_spec(spec_dir).cell_table().lookup("acme") == "cell-3"


def test_a_hand_removal_drains_only_that_cell_once_a_table_is_recorded(spec_dir: Path) -> None:
    add_cell(spec_dir, "cell-4", ["127.0.0.1:10114"])  # records cell-table.yaml
    before = load_spec(spec_dir).cell_table()
    edited(spec_dir, '  - name: cell-2\n    endpoints: ["127.0.0.1:10112"]\n', "")
    after = load_spec(spec_dir).cell_table()
    moved = {before.cell_of_bucket(b) for b in range(before.buckets)
             if before.cell_of_bucket(b) != after.cell_of_bucket(b)}
    assert moved == {"cell-2"}
    counts = after.bucket_counts()
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_recorded_table_with_another_bucket_count_is_refused(spec_dir: Path) -> None:
    add_cell(spec_dir, "cell-4", ["127.0.0.1:10114"])
    edited(spec_dir, "buckets: 16384", "buckets: 1024")
    assert re.search(r":20:10: buckets: 1024, but cell-table.yaml records 16384 buckets",
                     refused(spec_dir))


def test_a_corrupt_recorded_table_is_refused(spec_dir: Path) -> None:
    (spec_dir / "cell-table.yaml").write_text("buckets: 16384\ncells: [cell-1]\nassignment: "
                                              "[[0, 10, cell-1]]\n")
    assert re.search(r"cell-table.yaml: assignment: covers buckets 0..10", refused(spec_dir))
    (spec_dir / "cell-table.yaml").write_text("a: &x 1\n")
    assert "cell-table.yaml:1:4: YAML anchors" in refused(spec_dir)


def test_drain_is_refused_for_the_last_cell_and_pinned_tenants() -> None:
    table = CellTable.balanced(["a"], 8)
    with pytest.raises(ValueError, match="last cell"):
        table.remove_cells(["a"])
    pinned = CellTable.balanced(["a", "b"], 8).with_overrides({"t": "b"})
    with pytest.raises(ValueError, match="overrides pin 't'"):
        pinned.remove_cells(["b"])


# -- edits ---------------------------------------------------------------------------------


def test_add_cell_appends_and_keeps_comments_and_mode(spec_dir: Path) -> None:
    os.chmod(spec_dir / "platform.yaml", 0o640)
    add_cell(spec_dir, "cell-4", ["127.0.0.1:10114", "[::1]:10114"])
    text = (spec_dir / "platform.yaml").read_text()
    assert text == EXAMPLE_TEXT.replace(
        '    endpoints: ["127.0.0.1:10113"]\n',
        '    endpoints: ["127.0.0.1:10113"]\n'
        '  - name: cell-4\n    endpoints: ["127.0.0.1:10114", "[::1]:10114"]\n')
    assert stat.S_IMODE(os.stat(spec_dir / "platform.yaml").st_mode) == 0o640
    spec = load_spec(spec_dir)
    assert spec.cell_names[-1] == "cell-4"
    assert [str(e) for e in spec.cell("cell-4").endpoints] == ["127.0.0.1:10114", "[::1]:10114"]
    assert (spec_dir / "cell-table.yaml").exists()
    assert not [p for p in spec_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_name_yaml_would_misread_is_quoted(spec_dir: Path) -> None:
    add_cell(spec_dir, "123", ["127.0.0.1:10114"])
    add_cell(spec_dir, "no", ["127.0.0.1:10115"])
    assert load_spec(spec_dir).cell_names[-2:] == ("123", "no")


def test_remove_cell_cuts_its_lines_and_comment(spec_dir: Path) -> None:
    edited(spec_dir, "  - name: cell-2\n", "  # cell-2 serves the EU tenants\n  - name: cell-2\n")
    remove_cell(spec_dir, "cell-2")
    assert (spec_dir / "platform.yaml").read_text() == EXAMPLE_TEXT.replace(
        '  - name: cell-2\n    endpoints: ["127.0.0.1:10112"]\n', "")
    remove_cell(spec_dir, "cell-3")
    assert load_spec(spec_dir).cell_names == ("cell-1",)


def test_edits_of_a_flow_style_cell_list(spec_dir: Path) -> None:
    write(spec_dir, doc_of(["a", "b"], 64).replace(
        "cells:\n- name: a\n  endpoints:\n  - 127.0.0.1:20000\n- name: b\n  endpoints:\n"
        "  - 127.0.0.1:20001\n",
        'cells: [{name: a, endpoints: ["127.0.0.1:20000"]}, '
        '{name: b, endpoints: ["127.0.0.1:20001"]}]  # flow\n'))
    add_cell(spec_dir, "c", ["127.0.0.1:20002"])
    remove_cell(spec_dir, "b")
    assert load_spec(spec_dir).cell_names == ("a", "c")
    assert "]  # flow\n" in (spec_dir / "platform.yaml").read_text()


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: remove_cell(d, "cell-1"), r"cannot remove 'cell-1': it is the canary cell"),
    (lambda d: remove_cell(d, "cell-9"), r"cannot remove 'cell-9': no such cell"),
    (lambda d: add_cell(d, "cell-2", ["127.0.0.1:1"]), r"cannot add 'cell-2': it already exists"),
    (lambda d: add_cell(d, "Cell-4", ["127.0.0.1:1"]), r"cannot add: invalid cell name 'Cell-4'"),
    (lambda d: add_cell(d, "cell-4", []), r"at least one endpoint"),
    (lambda d: add_cell(d, "cell-4", ["nohost"]),
     r"the result would be invalid: .*cells\[3\].endpoints\[0\]: 'nohost' does not match"),
    (lambda d: add_cell(d, "cell-4", ["127.0.0.1:10000"]),
     r"the result would be invalid: .*is the http listener's address"),
    (lambda d: add_cell(d, "cell-4", ['a"b:1']), r"the result would be invalid"),
])
def test_refused_edits_leave_the_directory_untouched(spec_dir: Path, edit: object,
                                                      expected: str) -> None:
    before = {p.name: p.read_bytes() for p in spec_dir.iterdir() if p.is_file()}
    with pytest.raises(ConfigError) as info:
        edit(spec_dir)  # type: ignore[operator]
    assert re.search(expected, str(info.value)), str(info.value)
    assert str(info.value).startswith(str(spec_dir / "platform.yaml") + ": cells: ")
    assert {p.name: p.read_bytes() for p in spec_dir.iterdir() if p.is_file()} == before


def test_removing_the_last_or_a_pinned_cell_is_refused(spec_dir: Path) -> None:
    edited(spec_dir, "overrides: {}", "overrides: {acme: cell-2}")
    with pytest.raises(ConfigError, match=r"overrides pin 1 tenant\(s\) to it \(acme\)"):
        remove_cell(spec_dir, "cell-2")
    write(spec_dir, doc_of(["only"], 16))
    with pytest.raises(ConfigError, match="it is the last cell"):
        remove_cell(spec_dir, "only")


def test_an_invalid_spec_is_not_edited(spec_dir: Path) -> None:
    edited(spec_dir, "region: local", "region: LOCAL")
    with pytest.raises(ConfigError, match="region"):
        add_cell(spec_dir, "cell-4", ["127.0.0.1:10114"])


def test_every_intermediate_state_of_a_removal_derives_the_final_table(spec_dir: Path) -> None:
    """remove_cell writes cell-table.yaml (unchanged), then platform.yaml, then
    cell-table.yaml again: a reader between any two writes sees the drained table."""
    before = load_spec(spec_dir).cell_table()
    expected = before.remove_cells(["cell-2"])
    remove_cell(spec_dir, "cell-2")
    assert load_spec(spec_dir).cell_table() == expected
    # the state between the two writes: the new platform.yaml with the old record
    (spec_dir / "cell-table.yaml").write_text(yaml.safe_dump(
        {k: v for k, v in before.to_dict().items() if k != "overrides"}))
    assert load_spec(spec_dir).cell_table() == expected


# -- properties ----------------------------------------------------------------------------

NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=8,
                 unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=NAMES, new=st.from_regex(r"z[a-z0-9]{0,6}", fullmatch=True),
       buckets=st.integers(min_value=9, max_value=2048))
def test_add_cell_moves_only_to_the_new_cell_about_1_over_n_plus_1(
        cells: list[str], new: str, buckets: int) -> None:
    assume(new not in cells)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "spec"
        shutil.copytree(EXAMPLE, d)
        write(d, doc_of(cells, buckets))
        before = load_spec(d).cell_table()
        add_cell(d, new, ["127.0.0.1:30000"])
        after = load_spec(d).cell_table()
    moved = [b for b in range(buckets) if before.cell_of_bucket(b) != after.cell_of_bucket(b)]
    assert all(after.cell_of_bucket(b) == new for b in moved)
    assert len(moved) == buckets // (len(cells) + 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=NAMES.filter(lambda c: len(c) >= 2), data=st.data(),
       buckets=st.integers(min_value=8, max_value=2048))
def test_remove_cell_moves_only_that_cells_buckets_and_stays_balanced(
        cells: list[str], data: st.DataObject, buckets: int) -> None:
    gone = data.draw(st.sampled_from(cells[1:]))  # cells[0] is the canary
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "spec"
        shutil.copytree(EXAMPLE, d)
        write(d, doc_of(cells, buckets))
        before = load_spec(d).cell_table()
        remove_cell(d, gone)
        after = load_spec(d).cell_table()
    assert after.cells == tuple(c for c in cells if c != gone)
    for b in range(buckets):
        if before.cell_of_bucket(b) != gone:
            assert after.cell_of_bucket(b) == before.cell_of_bucket(b)
    counts = after.bucket_counts().values()
    assert max(counts) - min(counts) <= 1


@settings(max_examples=50, deadline=None)
@given(cells=NAMES, buckets=st.integers(min_value=1, max_value=3000))
def test_replay_is_add_cells_in_list_order(cells: list[str], buckets: int) -> None:
    assert replay(cells, buckets) == CellTable.balanced([cells[0]], buckets).add_cells(cells[1:])


def test_a_recorded_table_with_too_many_cells_is_refused(spec_dir: Path) -> None:
    names = [f"c{i}" for i in range(300)]
    (spec_dir / "cell-table.yaml").write_text(yaml.safe_dump(
        {k: v for k, v in CellTable.balanced(names, 16384).to_dict().items()
         if k != "overrides"}))
    assert refused(spec_dir).endswith("cell-table.yaml: cells: 300 cells; at most 256")


# -- listeners.access_log -------------------------------------------------------------------


def test_an_access_log_path_reaches_the_spec_and_the_digest(spec_dir: Path) -> None:
    before = load_spec(spec_dir).digest
    edited(spec_dir, "listeners:\n", "listeners:\n  access_log: /var/log/a1/access.log\n")
    spec = load_spec(spec_dir)
    assert spec.listeners.access_log == "/var/log/a1/access.log"
    assert spec.digest != before


@pytest.mark.parametrize("value, problem", [
    ("relative/access.log", "listeners.access_log"),
    ("/var/log/../../etc/passwd", "'.' or '..' segment"),
    ("/var/log/./a.log", "'.' or '..' segment"),
    ("/var/log/a\\nb.log", "listeners.access_log"),
    ("/" + "a" * 2000, "listeners.access_log"),
])
def test_a_bad_access_log_path_is_refused(spec_dir: Path, value: str, problem: str) -> None:
    edited(spec_dir, "listeners:\n", f'listeners:\n  access_log: "{value}"\n')
    assert problem in refused(spec_dir)


def test_listeners_need_http_or_https_besides_an_access_log(spec_dir: Path) -> None:
    edited(spec_dir, "  http: {address: 127.0.0.1, port: 10000}\n",
           "  access_log: /tmp/a.log\n")
    assert "listeners" in refused(spec_dir)
