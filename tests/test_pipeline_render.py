"""The pipeline's generate step: a PlatformState renders to one checked, deterministic Snapshot.

Everything goes through the real parts: the example spec loaded by control.spec, the
real compiler and signer, control.envoy's resources parsed into xds-protos messages,
the sidecar's own parsers for A1's resources, and real Envoy (``--mode validate``) on
the same resources inlined as a static bootstrap.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from a1 import pki
from control.envoy import static_bootstrap
from control.pipeline import (
    Assignment,
    PlatformState,
    compile_bundle,
    envoy_params,
    initial_state,
    render,
    state_for_spec,
)
from control.spec import load_spec
from control.spec.model import Cell, Endpoint
from ext_proc.xds_source import Assignment as SidecarAssignment
from policies.bundle import SigningKey, TrustedKeys, verify_bundle
from policies.core.cells import CellTable
from policies.core.errors import ConfigError
from policies.core.xds import types as xt

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"
# A fixed key, so that two processes sign identical bundles.
SEED = bytes(range(32))


def fixed_key() -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return SigningKey.of(Ed25519PrivateKey.from_private_bytes(SEED))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return fixed_key()


@pytest.fixture(scope="module")
def example(key: SigningKey) -> PlatformState:
    spec = load_spec(EXAMPLE)
    return initial_state(spec, *compile_bundle(spec.policy, key))


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spec"
    shutil.copytree(EXAMPLE, d)
    return d


def edit(d: Path, old: str, new: str) -> None:
    text = (d / "platform.yaml").read_text()
    assert old in text, old
    (d / "platform.yaml").write_text(text.replace(old, new, 1))


def refused(state: PlatformState) -> str:
    with pytest.raises(ConfigError) as info:
        render(state)
    message = str(info.value)
    assert "\n" not in message
    return message


def hcm_of(listener_bytes: bytes) -> hcm_pb2.HttpConnectionManager:
    listener = listener_pb2.Listener.FromString(listener_bytes)
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def jwt_config(listener_bytes: bytes) -> jwt_pb2.JwtAuthentication:
    hcm = hcm_of(listener_bytes)
    (jwt,) = [f for f in hcm.http_filters if f.name == "envoy.filters.http.jwt_authn"]
    config = jwt_pb2.JwtAuthentication()
    assert jwt.typed_config.Unpack(config)
    return config


# -- the example ------------------------------------------------------------------------------


def test_the_example_renders_every_resource(example: PlatformState, key: SigningKey) -> None:
    snap = render(example)
    names = {t: sorted(snap.resources(t)) for t in xt.PUSH_ORDER}
    assert names[xt.CLUSTER] == ["a1_sidecar_grpc", "cell_cell-1", "cell_cell-2", "cell_cell-3"]
    assert names[xt.ENDPOINT] == ["cell_cell-1", "cell_cell-2", "cell_cell-3"]
    assert names[xt.LISTENER] == ["a1_http"]  # the example declares no https listener
    assert names[xt.SECRET] == []
    assert names[xt.ROUTE] == ["a1_routes"]
    assert names[xt.CELL_TABLE] == ["cells"]
    assert names[xt.POLICY_ASSIGNMENT] == ["assignment"]
    (version,) = names[xt.POLICY_BUNDLE]
    assert version == example.assignment.default
    # The sidecar's own parsers and verifier accept what we publish.
    bundle = verify_bundle(snap.resources(xt.POLICY_BUNDLE)[version].value,
                           TrustedKeys([key.public_key()]), source="test")
    assert bundle.version == version
    table = json.loads(snap.resources(xt.CELL_TABLE)["cells"].value)
    assert CellTable.from_dict(table, "cells") == example.spec.cell_table()
    assignment = json.loads(snap.resources(xt.POLICY_ASSIGNMENT)["assignment"].value)
    assert SidecarAssignment.from_dict(assignment, "assignment").to_dict() == {
        "default": version, "cells": {}}
    snap.check()
    # The listener: the spec's address and port, its issuer's JWKS inline.
    listener = listener_pb2.Listener.FromString(snap.resources(xt.LISTENER)["a1_http"].value)
    assert listener.address.socket_address.address == "127.0.0.1"
    assert listener.address.socket_address.port_value == 10000
    (provider,) = jwt_config(snap.resources(xt.LISTENER)["a1_http"].value).providers.values()
    assert provider.issuer == "a1-dev" and list(provider.audiences) == ["a1"]
    assert json.loads(provider.local_jwks.inline_string) == json.loads(
        (EXAMPLE / "jwks.json").read_text())


def test_sidecar_settings_come_from_the_spec(spec_dir: Path, key: SigningKey) -> None:
    edit(spec_dir, "mode: grpc", "mode: http")
    edit(spec_dir, "timeout_ms: 500", "timeout_ms: 750")
    spec = load_spec(spec_dir)
    snap = render(initial_state(spec, *compile_bundle(spec.policy, key)))
    assert "a1_sidecar_http" in snap.resources(xt.CLUSTER)
    assert "a1_sidecar_grpc" not in snap.resources(xt.CLUSTER)
    hcm = hcm_of(snap.resources(xt.LISTENER)["a1_http"].value)
    (authz,) = [f for f in hcm.http_filters if f.name == "envoy.filters.http.ext_authz"]
    config = ext_authz_pb2.ExtAuthz()
    assert authz.typed_config.Unpack(config)
    assert config.http_service.server_uri.uri == "http://127.0.0.1:10101"
    assert config.http_service.server_uri.timeout.ToMilliseconds() == 750


def test_rendering_is_deterministic_across_processes(tmp_path: Path) -> None:
    """Same state, byte-identical resources, in processes with different hash seeds."""
    script = (
        "import hashlib, json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.test_pipeline_render import fixed_key\n"
        "from control.spec import load_spec\n"
        "from control.pipeline import compile_bundle, initial_state, render\n"
        "spec = load_spec(Path(sys.argv[2]))\n"
        "snap = render(initial_state(spec, *compile_bundle(spec.policy, fixed_key())))\n"
        "out = {t: {n: hashlib.sha256(r.value).hexdigest() for n, r in snap.resources(t).items()}"
        " for t in snap.versions()}\n"
        "print(json.dumps({'versions': snap.versions(), 'values': out}, sort_keys=True))\n"
    )
    outputs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", script, str(ROOT), str(EXAMPLE)],
                             capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]["values"][xt.POLICY_BUNDLE]) == 1


# -- HTTPS with the PEM inline, several issuers, real Envoy ----------------------------------


@pytest.fixture(scope="module")
def https_spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("https")
    d = base / "spec"
    shutil.copytree(EXAMPLE, d)
    dev = pki.ensure_pki(base / "state")
    (d / "tls").mkdir()
    shutil.copy(dev.server_cert, d / "tls" / "server.pem")
    shutil.copy(dev.server_key, d / "tls" / "server-key.pem")
    shutil.copy(dev.jwks, d / "jwks-2.json")
    edit(d, "  # https:\n  #   address: 127.0.0.1\n  #   port: 10443\n"
            "  #   tls: {cert: tls/server.pem, key: tls/server-key.pem}",
         "  https:\n    address: 127.0.0.2\n    port: 10443\n"
         "    tls: {cert: tls/server.pem, key: tls/server-key.pem}")
    edit(d, "      jwks: jwks.json\n",
         "      jwks: jwks.json\n    - issuer: second\n      audiences: [a1, other]\n"
         "      jwks: jwks-2.json\n")
    return d


def test_https_pushes_the_pem_inline_and_no_host_path(https_spec_dir: Path,
                                                      key: SigningKey) -> None:
    spec = load_spec(https_spec_dir)
    snap = render(initial_state(spec, *compile_bundle(spec.policy, key)))
    assert sorted(snap.resources(xt.LISTENER)) == ["a1_http", "a1_https"]
    https = listener_pb2.Listener.FromString(snap.resources(xt.LISTENER)["a1_https"].value)
    assert https.address.socket_address.address == "127.0.0.2"
    assert https.address.socket_address.port_value == 10443
    secret = secret_pb2.Secret.FromString(snap.resources(xt.SECRET)["a1_tls"].value)
    cert = secret.tls_certificate
    assert cert.certificate_chain.inline_bytes == (https_spec_dir / "tls/server.pem").read_bytes()
    assert cert.private_key.inline_bytes == (https_spec_dir / "tls/server-key.pem").read_bytes()
    assert not cert.certificate_chain.filename and not cert.private_key.filename
    # No path of the control plane's host in anything Envoy receives.
    for type_url in (xt.CLUSTER, xt.ENDPOINT, xt.SECRET, xt.LISTENER, xt.ROUTE):
        for resource in snap.resources(type_url).values():
            assert str(https_spec_dir).encode() not in resource.value
            assert b"server.pem" not in resource.value and b"jwks" not in resource.value


def test_several_issuers_are_several_providers_any_of_which_suffices(
        https_spec_dir: Path, key: SigningKey) -> None:
    spec = load_spec(https_spec_dir)
    snap = render(initial_state(spec, *compile_bundle(spec.policy, key)))
    for name in ("a1_http", "a1_https"):
        config = jwt_config(snap.resources(xt.LISTENER)[name].value)
        providers = dict(config.providers)
        assert sorted(providers) == ["issuer-0", "issuer-1"]
        assert providers["issuer-0"].issuer == "a1-dev"
        assert providers["issuer-1"].issuer == "second"
        assert list(providers["issuer-1"].audiences) == ["a1", "other"]
        assert json.loads(providers["issuer-1"].local_jwks.inline_string) == json.loads(
            (https_spec_dir / "jwks-2.json").read_text())
        (protected,) = [r for r in config.rules if r.HasField("requires")]
        names = [r.provider_name for r in protected.requires.requires_any.requirements]
        assert names == ["issuer-0", "issuer-1"]
        # Every provider keeps the template's settings (header only, bounded lifetime).
        assert all(p.require_expiration and p.max_lifetime.seconds > 0
                   and [h.name for h in p.from_headers] == ["authorization"]
                   for p in providers.values())


def test_real_envoy_accepts_the_rendered_config(https_spec_dir: Path, key: SigningKey,
                                                tmp_path: Path) -> None:
    """The same resources inlined as a static bootstrap pass ``envoy --mode validate``."""
    envoy = shutil.which("envoy")
    if envoy is None:
        pytest.skip("no envoy binary")
    spec = load_spec(https_spec_dir)
    bootstrap = static_bootstrap(envoy_params(initial_state(spec, *compile_bundle(spec.policy,
                                                                                  key))))
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    run = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    # ... and a broken one does not (the check can fail).
    secret = bootstrap["static_resources"]["secrets"][0]["tls_certificate"]
    secret["private_key"] = {"inline_bytes": base64.b64encode(b"not a key").decode()}
    path.write_text(json.dumps(bootstrap))
    run = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "-l", "error"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0


# -- consistency: a bad state never becomes a snapshot ---------------------------------------


def test_a_table_naming_an_unrouted_cell_is_refused(example: PlatformState) -> None:
    bigger = example.table.add_cell("cell-9")
    assert "CellTable 'cells': cell 'cell-9'" in refused(dataclasses.replace(example,
                                                                             table=bigger))
    assert "CellTable 'cells.accept.0': cell 'cell-9'" in refused(
        dataclasses.replace(example, accept=(bigger,)))


def test_a_routed_cell_needs_endpoints(example: PlatformState) -> None:
    state = dataclasses.replace(example, routed_cells=(*example.routed_cells, "ghost"))
    assert "routed cell 'ghost': no endpoints" in refused(state)
    retired = dataclasses.replace(state, retired_cells=(Cell("ghost", (
        Endpoint("127.0.0.1", 10119),)),))
    snap = render(retired)
    assert "cell_ghost" in snap.resources(xt.CLUSTER)


def test_assignment_must_name_bundles_and_routed_cells(example: PlatformState) -> None:
    other = "ab" * 32
    assert f"bundle version {other} has no PolicyBundle" in refused(
        dataclasses.replace(example, assignment=Assignment(other)))
    assert "PolicyAssignment 'assignment': cells.cell-7" in refused(
        dataclasses.replace(example, assignment=Assignment(example.assignment.default,
                                                           {"cell-7": other})))


@pytest.mark.parametrize("mutate", [
    lambda b: b[:40],                        # truncated
    lambda b: b"\0asm" + b[4:],              # a bare module
    lambda b: b"garbage" * 10,               # not a bundle
])
def test_a_malformed_bundle_is_refused_naming_it(example: PlatformState, mutate: Any) -> None:
    version = example.assignment.default
    state = dataclasses.replace(example, bundles={version: mutate(example.bundles[version])})
    assert f"PolicyBundle {version!r}" in refused(state)


def test_a_bundle_under_another_version_is_refused(example: PlatformState) -> None:
    version = example.assignment.default
    forged = "cd" * 32
    state = dataclasses.replace(example, bundles={forged: example.bundles[version]},
                                assignment=Assignment(forged))
    assert "not the version it is named for" in refused(state)


def test_a_parameter_envoy_would_refuse_is_a_config_error(example: PlatformState) -> None:
    bad = dataclasses.replace(example.spec, cells=(Cell("cell-1", (Endpoint("not-an-ip", 1),)),
                                                   *example.spec.cells[1:]))
    assert "host must be an IP address" in refused(dataclasses.replace(example, spec=bad))


# -- the IR -----------------------------------------------------------------------------------


def test_assignment_has_one_form() -> None:
    a = Assignment("a" * 64, {"cell-2": "b" * 64, "cell-1": "a" * 64})
    assert dict(a.cells) == {"cell-2": "b" * 64}  # an override equal to the default says nothing
    assert a == Assignment("a" * 64, {"cell-2": "b" * 64})
    assert a.to_json() == json.dumps({"cells": {"cell-2": "b" * 64}, "default": "a" * 64},
                                     separators=(",", ":")).encode()
    assert a.version_of("cell-2") == "b" * 64 and a.version_of("cell-9") == "a" * 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.default = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.cells["cell-3"] = "c"  # type: ignore[index]


def test_state_for_spec_carries_the_rollout_and_drops_what_left(spec_dir: Path,
                                                                key: SigningKey) -> None:
    spec = load_spec(spec_dir)
    v1, b1 = compile_bundle(spec.policy, key)
    first = state_for_spec(spec, None, (v1, b1))
    assert first == initial_state(spec, v1, b1)
    (spec_dir / "policy" / "data.json").write_text(json.dumps(
        {"a1": {"tenants": {"suspended": ["t-9"]}}}))
    spec2 = load_spec(spec_dir)
    v2, b2 = compile_bundle(spec2.policy, key)
    assert v2 != v1
    # A canary on cell-2: both bundles published, and only those two.
    canary = state_for_spec(spec2, first, (v2, b2), Assignment(v1, {"cell-2": v2}))
    assert dict(canary.bundles) == {v1: b1, v2: b2}
    render(canary)
    # No rollout controller, same policy: the overrides carry over.
    assert state_for_spec(spec2, canary, (v1, b1)).assignment == canary.assignment
    # A new policy without a rollout controller: every cell on it, the old bundle gone.
    switched = state_for_spec(spec2, canary, (v2, b2))
    assert switched.assignment == Assignment(v2) and dict(switched.bundles) == {v2: b2}
    # An override for a cell the spec no longer has is dropped.
    gone = state_for_spec(spec2, canary, (v2, b2), Assignment(v1, {"cell-2": v2, "old": v2}))
    assert dict(gone.assignment.cells) == {"cell-2": v2}
    with pytest.raises(ConfigError, match="bundle version ef"):
        state_for_spec(spec2, canary, (v2, b2), Assignment("ef" * 32))


def test_states_are_frozen_values(example: PlatformState) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.table = example.table  # type: ignore[misc]
    with pytest.raises(TypeError):
        example.bundles["x"] = b""  # type: ignore[index]
    same = dataclasses.replace(example)
    assert same == example and hash(same) == hash(example)
    assert hashlib.sha256(render(same).resources(xt.CELL_TABLE)["cells"].value).digest() == \
        hashlib.sha256(render(example).resources(xt.CELL_TABLE)["cells"].value).digest()


# -- control.envoy's extensions: inline PEM, several issuers, optional listeners --------------

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]})


def extended(**kw: Any) -> Any:
    from control.envoy import CellEndpoint, EnvoyParams, JwtProvider

    base: dict[str, Any] = {
        "cells": [CellEndpoint("cell-1", "127.0.0.1", 20001)], "jwks_path": None,
        "tls_cert": None, "tls_key": None, "tls_cert_pem": PEM, "tls_key_pem": PEM,
        "jwt_providers": (JwtProvider("a", ("x",), JWKS), JwtProvider("b", ("y", "z"), JWKS))}
    return EnvoyParams(**{**base, **kw})


def test_static_and_xds_forms_agree_for_the_extensions() -> None:
    """The RESOURCES oracle (protobuf normal form) holds for inline PEM and several issuers."""
    from tests.test_envoy_resources import static_normal_form, xds_normal_form

    for params in (extended(), extended(listeners=("https",), https_bind_address="::1"),
                   extended(listeners=("http",), tls_cert_pem=None, tls_key_pem=None)):
        assert static_normal_form(params) == xds_normal_form(params)


@pytest.mark.parametrize(("kw", "message"), [
    ({"tls_cert_pem": None}, "the https listener needs"),
    ({"tls_cert": Path("/c.pem")}, "the https listener needs"),
    ({"tls_key_pem": b"not pem"}, "tls_key_pem: not PEM"),
    ({"tls_key_pem": "text"}, "tls_key_pem: must be non-empty PEM bytes"),
    ({"tls_cert_pem": b"-----BEGIN " + b"A" * 300_000}, "tls_cert_pem: 300011 bytes"),
    ({"listeners": ()}, "listeners: must be a non-empty tuple"),
    ({"listeners": ("http", "http")}, "listeners: must be a non-empty tuple"),
    ({"listeners": ("ftp",)}, "listeners: must be a non-empty tuple"),
    ({"https_bind_address": "example.com"}, "https_bind_address: host must be an IP"),
    ({"jwks_inline": JWKS}, "jwt_providers replace jwks_path and jwks_inline"),
    ({"jwt_providers": ()}, "give exactly one of jwks_path and jwks_inline"),
    ({"jwt_providers": ("a",)}, "jwt_providers[0]: must be a JwtProvider"),
])
def test_bad_extension_parameters_are_refused_naming_the_field(kw: dict[str, Any],
                                                               message: str) -> None:
    from control.envoy import build_resources
    from policies.core.errors import UserError

    with pytest.raises(UserError) as info:
        build_resources(extended(**kw))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("provider", "message"), [
    (("", ("x",), JWKS), "jwt_providers[0].issuer: must be non-empty text"),
    (("a", (), JWKS), "jwt_providers[0].audiences: must be a non-empty tuple"),
    (("a", ["x"], JWKS), "jwt_providers[0].audiences: must be a non-empty tuple"),
    (("a", ("x", "\udcff"), JWKS), "jwt_providers[0].audiences[1]: not valid UTF-8"),
    (("a", ("x",), '{"keys": []}'), "jwt_providers[0].jwks: must be a JSON object"),
    (("a", ("x",), "[" * 100_000), "jwt_providers[0].jwks: 100000 bytes"),
    (("a", ("x",), '{"keys": [1]}'), "jwt_providers[0].jwks: every entry"),
])
def test_bad_issuers_are_refused_naming_the_field(provider: tuple[Any, ...],
                                                  message: str) -> None:
    from control.envoy import JwtProvider, build_resources
    from policies.core.errors import UserError

    with pytest.raises(UserError) as info:
        build_resources(extended(jwt_providers=(JwtProvider(*provider),)))
    assert message in str(info.value)


def test_a_jwks_that_looks_like_structure_stays_one_string() -> None:
    from control.envoy import JwtProvider, build_resources
    from control.envoy.protos import pack

    sneaky = json.dumps({"keys": [{"kty": "EC", "x": '"}, "rules": [], "y": "${issuer}'}]})
    params = extended(jwt_providers=(JwtProvider("${audience}", ("a\nb: c",), sneaky),))
    listener = pack(build_resources(params))[xt.LISTENER]["a1_http"]
    config = jwt_config(listener)
    (provider,) = config.providers.values()
    assert provider.local_jwks.inline_string == sneaky
    assert provider.issuer == "${audience}" and list(provider.audiences) == ["a\nb: c"]
    assert len(config.rules) == 2
