"""The operator commands against a real control plane: ``a1 control serve`` as a process
(startup, refusal of an invalid spec, SIGTERM), and ``a1 status``, ``a1 policy rollout``
and ``a1 cells add|remove`` through ``a1.cli.main`` against an in-process ControlPlane."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1.cli import main
from control.plane.serve import ControlPlane, PlaneOptions
from policies.bundle import generate_signing_key
from policies.core.xds.client import AdsClient, Node
from policies.core.xds.types import CELL_TABLE
from tests.waiting import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"




@pytest.fixture
def config(tmp_path: Path) -> Path:
    target = tmp_path / "platform"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture
def plane(config: Path, tmp_path: Path) -> Iterator[ControlPlane]:
    key = tmp_path / "signing.key"
    generate_signing_key(key)
    p = ControlPlane(PlaneOptions(config=config, signing_key=key, xds_port=0, status_port=0))
    p.start()
    try:
        yield p
    finally:
        p.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_table_and_json(plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    held: dict[str, bytes] = {}

    def refuse_second(type_url: str, resources: dict[str, bytes], removed: list[str]) -> None:
        if held:
            raise ValueError("cells table refused: test says no")
        held.update(resources)

    client = AdsClient(f"127.0.0.1:{plane.xds_port}", Node("cli-sidecar", "a1-sidecar"),
                       {CELL_TABLE: ["cells"]}, refuse_second)
    client.start()
    try:
        assert client.wait_synced(20)
        code, out, _ = run(capsys, "status", "--control", plane.status_url)
        assert code == 0
        assert "cli-sidecar" in out and "a1-sidecar" in out and "CellTable" in out
        assert plane.spec_digest[:8] in out and "rollout state=idle" in out
        (plane.options.config / "platform.yaml").write_text(
            (plane.options.config / "platform.yaml").read_text().replace(
                "overrides: {}", "overrides: {acme: cell-2}"))
        wait_until(lambda: client.status().types[CELL_TABLE].nacks, "the NACK")
        code, out, _ = run(capsys, "status", "--control", plane.status_url)
        assert "NACK" in out and "cells table refused: test says no" in out
        code, out, _ = run(capsys, "status", "--control", plane.status_url, "--json")
        doc = json.loads(out)
        [me] = [c for c in doc["clients"] if c["node_id"] == "cli-sidecar"]
        assert me["types"]["CellTable"]["nacks"] == 1
        assert me["types"]["CellTable"]["last_nack"] == "cells table refused: test says no"
    finally:
        client.stop()


def test_rollout_commands(plane: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "rollout", "status", "--control", plane.status_url)
    assert code == 0 and "state=idle" in out
    code, out, _ = run(capsys, "policy", "rollout", "status", "--control", plane.status_url,
                       "--json")
    assert json.loads(out)["state"] == "idle"
    code, _, err = run(capsys, "policy", "rollout", "promote", "--control", plane.status_url)
    assert code == 1 and "HTTP 409" in err and "no rollout in progress" in err
    assert len(err.strip().splitlines()) == 1
    # a new policy: a canary, then the operator promotes it cell by cell to the end
    data = plane.options.config / "policy" / "data.json"
    doc = json.loads(data.read_text())
    doc["cli_marker"] = True
    data.write_text(json.dumps(doc))
    wait_until(lambda: plane.status()["rollout"]["state"] == "canary", "the canary")
    code, out, _ = run(capsys, "policy", "rollout", "promote", "--control", plane.status_url,
                       "--json")
    assert code == 0 and json.loads(out)["rollout"]["state"] == "promoting"
    code, out, _ = run(capsys, "policy", "rollout", "abort", "--control", plane.status_url)
    assert code == 0 and "state=aborted" in out
    assert plane.status()["policy"]["assignment"]["cells"] == {}


def test_unreachable_control_plane_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["status"], ["policy", "rollout", "status"], ["policy", "rollout", "abort"]):
        code, out, err = run(capsys, *argv, "--control", url)
        assert code == 1 and out == ""
        assert err.strip() == f"a1: control plane at {url} unreachable (Connection refused)"
    code, _, err = run(capsys, "status", "--control", "file:///etc/passwd")
    assert code == 2 and "not an http(s) URL" in err


def test_cells_add_and_remove_reach_the_running_plane(
        plane: ControlPlane, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cells", "add", "cell-4", "--endpoint", "127.0.0.1:10114",
                       "--config", str(config))
    assert code == 0 and "added cell cell-4" in out
    wait_until(lambda: "cell-4" in plane.status()["spec"]["cells"], "cell-4 published")
    wait_until(lambda: plane.status()["transition"] is None, "the transition's end")
    assert plane.status()["last_error"] is None
    code, _, err = run(capsys, "cells", "add", "cell-4", "--endpoint", "127.0.0.1:1",
                       "--config", str(config))
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "cells", "remove", "cell-1", "--config", str(config))
    assert code == 2 and "canary" in err
    code, out, _ = run(capsys, "cells", "remove", "cell-4", "--config", str(config))
    assert code == 0
    wait_until(lambda: "cell-4" not in plane.status()["spec"]["cells"], "cell-4 removed")
    code, _, err = run(capsys, "cells", "add", "bad name", "--endpoint", "127.0.0.1:1",
                       "--config", str(config))
    assert code == 2 and "cell" in err


# -- a1 control serve as a process ---------------------------------------------------------------


def serve(config: Path, state: Path, *extra: str) -> tuple[subprocess.Popen[str], int, int]:
    xds, status = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "a1.cli", "control", "serve", "--config", str(config),
         "--state-dir", str(state), "--xds-port", str(xds), "--status-port", str(status),
         *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, xds, status


def test_serve_process_starts_serves_and_stops_on_sigterm(config: Path, tmp_path: Path) -> None:
    proc, xds, status = serve(config, tmp_path / "state")
    try:
        def up() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status}/status", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                assert proc.poll() is None, proc.communicate()
                return None
        doc = wait_until(up, "the status endpoint", timeout=60)
        assert doc["xds"]["address"] == f"127.0.0.1:{xds}"
        assert (tmp_path / "state" / "bundle-signing.key").exists()
        assert (tmp_path / "state" / "bundle-signing.pub").exists()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"ADS on 127.0.0.1:{xds}" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_refuses_an_invalid_spec_with_one_line(config: Path, tmp_path: Path) -> None:
    spec = config / "platform.yaml"
    spec.write_text(spec.read_text().replace("buckets: 16384", "buckets: many"))
    proc, _, _ = serve(config, tmp_path / "state")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("a1:")]
    assert len(lines) == 1 and "platform.yaml" in lines[0] and "buckets" in lines[0]
    assert "Traceback" not in err


def test_serve_reports_a_busy_port(config: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        xds = free_port()
        proc = subprocess.run(
            [sys.executable, "-m", "a1.cli", "control", "serve", "--config", str(config),
             "--state-dir", str(tmp_path / "s"), "--xds-port", str(xds),
             "--status-port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr


@pytest.mark.parametrize("host", ["", "a b", "http://x", "10.0.0.1:80", "-x", "é.example"])
def test_serve_refuses_a_bad_scrape_host_naming_the_flag(host: str,
                                                          capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(["control", "serve", "--config", str(tmp_path), "--state-dir", str(tmp_path),
              "--scrape-host", host])
    assert exc.value.code == 2 and "--scrape-host" in capsys.readouterr().err


def test_scrape_hosts_take_one_canonical_form() -> None:
    from a1.commands.control import _scrape_host

    assert _scrape_host("10.9.0.5") == "10.9.0.5"
    assert _scrape_host("[FD00::1]") == "fd00::1"
    assert _scrape_host("Sidecar.Internal") == "sidecar.internal"
