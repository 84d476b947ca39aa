"""Every bootstrap variant passes ``envoy --mode validate`` (the real Envoy 1.40 binary)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from a1 import envoy_bootstrap, pki
from a1.cli import main
from a1.commands.stack import validate_bootstrap
from policies.core.errors import UserError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("state")
    pki.ensure_pki(d)  # Envoy validation reads the certificate and JWKS files
    return d


@pytest.mark.parametrize("mode", envoy_bootstrap.MODES)
def test_a1_envoy_bootstrap_validates(state: Path, tmp_path: Path, mode: str) -> None:
    out = tmp_path / f"envoy-{mode}.yaml"
    assert main(["envoy", "bootstrap", "--mode", mode, "--state-dir", str(state),
                 "--validate", "-o", str(out)]) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                         "port_value": 9901}


def test_bootstrap_prints_to_stdout_with_overridden_ports(state: Path) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["envoy", "bootstrap", "--state-dir", str(state), "--http-port", "18000",
                     "--https-port", "18443", "--admin-port", "18901", "--cells", "4"]) == 0
    doc = yaml.safe_load(buf.getvalue())
    ports = [lst["address"]["socket_address"]["port_value"]
             for lst in doc["static_resources"]["listeners"]]
    assert ports == [18000, 18443]
    assert doc["admin"]["address"]["socket_address"]["port_value"] == 18901
    clusters = doc["static_resources"]["clusters"]
    cells = [c["name"] for c in clusters if c["name"].startswith("cell_")]
    assert cells == ["cell_cell-1", "cell_cell-2", "cell_cell-3", "cell_cell-4"]


def test_validation_rejects_a_broken_variant(state: Path, tmp_path: Path) -> None:
    """The check can fail: a route to a cluster that does not exist is refused by Envoy."""
    params = envoy_bootstrap.BootstrapParams(
        cells=[envoy_bootstrap.CellEndpoint("cell-1", "127.0.0.1", 1)],
        jwks_path=pki.DevPKI(state).jwks, tls_cert=pki.DevPKI(state).server_cert,
        tls_key=pki.DevPKI(state).server_key)
    doc = envoy_bootstrap.render_bootstrap(params)
    doc["static_resources"]["clusters"] = [c for c in doc["static_resources"]["clusters"]
                                           if c["name"] != "cell_cell-1"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(envoy_bootstrap.dump(doc))
    with pytest.raises(UserError, match="rejected by envoy --mode validate"):
        validate_bootstrap(broken)
