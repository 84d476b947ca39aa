"""The control plane as a process, with a real Envoy, sidecar and cells as its clients.

``a1 control serve`` on a spec directory; an Envoy booted from ``ads_bootstrap``
straight on the xDS port; the sidecar with ``source: {kind: xds}``; demo cells with
``--xds``. A token minted against the JWKS in the spec gets 200 through a cell; a
spec change (an override moving the tenant) reaches Envoy, the sidecar and the
cells; an https listener on a port some other socket holds is NACKed by Envoy, the
NACK shows in /status with its text, and traffic keeps flowing on the old config.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from a1 import pki
from a1.launcher import free_ports
from conformance.harness.client import Client, Response
from control.envoy import ads_bootstrap

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("envoy") is None, reason="envoy is not on PATH"),
]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "platform"
CELLS = ("cell-1", "cell-2", "cell-3")


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 60.0,
               procs: list[subprocess.Popen[bytes]] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for p in procs or ():
            if p.poll() is not None:
                raise AssertionError(f"{p.args[:4]} exited with {p.returncode} while waiting "
                                     f"for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


@dataclass
class Platform:
    dir: Path
    config: Path
    state: Path
    ports: dict[str, int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['status']}/status"

    def status(self) -> Any:
        return get_json(self.status_url)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.dir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append(proc)
        return proc

    def tail(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-2500:]}"
                         for n, p in self.logs.items() if p.exists())

    def edit_spec(self, edit: Callable[[dict[str, Any]], None]) -> None:
        path = self.config / "platform.yaml"
        doc = yaml.safe_load(path.read_text())
        edit(doc)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(path)


def write_spec(p: Platform) -> None:
    shutil.copytree(EXAMPLE, p.config)
    dev = pki.ensure_pki(p.state)
    shutil.copy(dev.jwks, p.config / "jwks.json")
    (p.config / "tls").mkdir()
    shutil.copy(dev.server_cert, p.config / "tls" / "server.pem")
    shutil.copy(dev.server_key, p.config / "tls" / "server-key.pem")
    ports = p.ports

    def edit(doc: dict[str, Any]) -> None:
        doc["cells"] = [{"name": c, "endpoints": [f"127.0.0.1:{ports[c]}"]} for c in CELLS]
        doc["listeners"] = {"http": {"address": "127.0.0.1", "port": ports["http"]}}
        doc["sidecar"] = {"mode": "grpc", "grpc": f"127.0.0.1:{ports['sidecar_grpc']}",
                          "http": f"127.0.0.1:{ports['sidecar_http']}", "timeout_ms": 1000}
    p.edit_spec(edit)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("control-envoy")
    names = ["xds", "status", "http", "https", "admin", "sidecar_grpc", "sidecar_http",
             "sidecar_metrics", *CELLS]
    p = Platform(base, base / "platform", base / "state", dict(zip(names, free_ports(len(names)),
                                                                   strict=True)))
    try:
        write_spec(p)
        py = sys.executable
        cp_state = base / "control-state"
        control = p.start("control", [
            py, "-m", "a1.cli", "control", "serve", "--config", str(p.config),
            "--state-dir", str(cp_state), "--xds-port", str(p.ports["xds"]),
            "--status-port", str(p.ports["status"]), "--ack-timeout", "20"])
        wait_until(p.status, "the control plane's status", procs=[control])
        xds = f"127.0.0.1:{p.ports['xds']}"
        for cell in CELLS:
            p.start(cell, [py, "-m", "a1.cell", "--name", cell, "--port", str(p.ports[cell]),
                           "--db", str(base / f"{cell}.db"), "--xds", xds])
        sidecar_config = base / "sidecar.yaml"
        sidecar_config.write_text(yaml.safe_dump({
            "grpc_address": f"127.0.0.1:{p.ports['sidecar_grpc']}",
            "http_address": f"127.0.0.1:{p.ports['sidecar_http']}",
            "metrics_address": f"127.0.0.1:{p.ports['sidecar_metrics']}",
            "policy": {"entrypoint": "a1/authz/decision"},
            "source": {"kind": "xds", "address": xds, "state_dir": str(base / "sidecar-lkg"),
                       "trusted_keys": str(cp_state / "bundle-signing.pub"),
                       "node_id": "e2e-sidecar-1", "boot_timeout": 20},
        }))
        p.start("sidecar", [py, "-m", "ext_proc", "--config", str(sidecar_config)])
        boot = base / "envoy.json"
        boot.write_text(json.dumps(ads_bootstrap("e2e-envoy-1", xds,
                                                 admin_port=p.ports["admin"])))
        p.start("envoy", ["envoy", "-c", str(boot), "--use-dynamic-base-id", "-l", "info"])
        yield p
    finally:
        for proc in reversed(p.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in p.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def echo(p: Platform, token: str) -> Response | None:
    try:
        return Client(f"http://127.0.0.1:{p.ports['http']}", timeout=5).request(
            "GET", "/t/acme/echo", token=token)
    except OSError:
        return None


def clients_by_cluster(p: Platform) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in (p.status() or {}).get("clients", []):
        out.setdefault(c["node_cluster"], []).append(c)
    return out


def test_spec_change_reaches_envoy_and_sidecar_and_a_nack_is_visible(platform: Platform
                                                                     ) -> None:
    p = platform
    token = pki.mint_token(p.state, "acme", ["reader", "writer"])

    def served() -> Response | None:
        r = echo(p, token)
        return r if r is not None and r.status == 200 else None

    try:
        first = wait_until(served, "a 200 through Envoy, the sidecar and a cell", 90, p.procs)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{json.dumps(p.status(), indent=1)[-3000:]}\n"
                             f"{p.tail()}") from None
    cell = first.headers["x-a1-cell"]
    assert cell in CELLS
    clusters = clients_by_cluster(p)
    assert {"a1-edge", "a1-sidecar", "a1-cell"} <= set(clusters), clusters
    assert len(clusters["a1-cell"]) == 3

    # a spec change: an override moves acme to another cell
    target = next(c for c in CELLS if c != cell)
    p.edit_spec(lambda doc: doc.__setitem__("overrides", {"acme": target}))
    moved = wait_until(lambda: (r := served()) is not None
                       and r.headers.get("x-a1-cell") == target and r, "acme on " + target,
                       60, p.procs)
    assert moved.status == 200
    def settled() -> bool:
        status = p.status()
        if status["transition"] is not None or status["last_error"] is not None:
            return False
        versions = status["snapshot"]["versions"]
        return all(c["types"].get(t, {}).get("acked_version") == versions[t]
                   for c in status["clients"] for t in c["types"])

    wait_until(settled, "every client holding the published versions", 60, p.procs)

    # a resource Envoy rejects: an https listener on a port another socket holds
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        holder.bind(("127.0.0.1", p.ports["https"]))
        holder.listen()

        def https(doc: dict[str, Any]) -> None:
            doc["listeners"]["https"] = {
                "address": "127.0.0.1", "port": p.ports["https"],
                "tls": {"cert": "tls/server.pem", "key": "tls/server-key.pem"}}
        p.edit_spec(https)

        def nack() -> dict[str, Any] | None:
            for c in clients_by_cluster(p).get("a1-edge", []):
                st = c["types"].get("Listener", {})
                if st.get("nacks"):
                    return st
            return None

        st = wait_until(nack, "Envoy's NACK of the listener in /status", 60, p.procs)
        assert str(p.ports["https"]) in st["last_nack"], st
        assert st["acked_version"] != st["last_nack_version"]
        for _ in range(20):  # traffic keeps flowing on the old config
            r = served()
            assert r is not None and r.headers["x-a1-cell"] == target
        # the CLI shows the NACK too
        out = subprocess.run([sys.executable, "-m", "a1.cli", "status", "--control",
                              f"http://127.0.0.1:{p.ports['status']}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0 and "NACK" in out.stdout and "e2e-envoy-1" in out.stdout
