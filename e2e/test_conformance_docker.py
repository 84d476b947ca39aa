"""The conformance suite on the docker runtime, through the CLI a user (and CI) runs.

``a1 conformance --runtime docker --profile quick`` must exit 0, say the runtime in
every output (printed verdict, report.yaml, junit.xml, report.html), give every
invariant of the quick profile a verdict, and leave no container or network of the
run behind. The harness's own surfaces are attacked too: a fault proxy's control API
is reachable from the host's 127.0.0.1 but not from a stack container, and the
proxy and the sink refuse non-loopback addresses unless told otherwise.
Docker tests skip with the reason when there is no engine or no images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from a1.containers import engine, names
from conformance.checkers.registry import CHECKERS
from conformance.scenarios.catalog import select
from e2e.docker_support import engine_or_skip, images_or_skip

pytestmark = pytest.mark.e2e

SEED = 11
# quick (the default) takes ~5 min on docker on 2 cores; CI's budget wants docker-ci
# (a kill, a pause, a network cut, a proxy toxic, a killed sidecar: ~2 min).
PROFILE = os.environ.get("A1_CONFORMANCE_DOCKER_PROFILE", "quick")
RUN_TIMEOUT = 1200.0  # seconds: the quick profile on docker, with room on a loaded machine


def _objects_under(client: Any, root: Path) -> list[str]:
    """Every object labelled as A1's whose state directory lies under ``root``."""
    flt = {"label": [f"{names.LABEL_PROJECT}={names.PROJECT}"]}
    out = []
    for c in client.containers.list(all=True, filters=flt):
        if (c.labels or {}).get(engine.LABEL_STATE_DIR, "").startswith(str(root)):
            out.append(f"container {c.name}")
    for n in client.networks.list(filters=flt):
        if (n.attrs.get("Labels") or {}).get(engine.LABEL_STATE_DIR, "").startswith(str(root)):
            out.append(f"network {n.name}")
    return out


def _a1(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "a1", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_quick_profile_passes_on_docker(tmp_path: Path) -> None:
    client = engine_or_skip()
    images_or_skip(client)
    # The suite's run directory (its state dir) goes under here: short, for the sockets.
    runs = Path(tempfile.mkdtemp(prefix="a1cd-"))
    report = tmp_path / "report"
    t0 = time.monotonic()
    done = _a1("conformance", "--runtime", "docker", "--profile", PROFILE, "--seed", str(SEED),
               "--report", str(report), env={"TMPDIR": str(runs)}, timeout=RUN_TIMEOUT)
    took = time.monotonic() - t0
    try:
        assert done.returncode == 0, \
            f"exit {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
        assert f"runtime docker, seed {SEED}" in done.stdout, done.stdout
        doc = yaml.safe_load((report / "report.yaml").read_text())
        assert doc["runtime"] == "docker"
        judged = {r["id"] for r in doc["invariants"]}
        wanted = {s.invariant for s in select(PROFILE)} | {
            i for i, c in CHECKERS.items() if c.whole_history}
        assert wanted <= judged, f"no verdict for {sorted(wanted - judged)}"
        for r in doc["invariants"]:  # nothing quietly passed: a skip says why
            assert r["result"] in ("passed", "skipped"), r
            if r["result"] == "skipped":
                assert r["skippedReason"], r
        junit = ET.parse(report / "junit.xml").getroot()
        props = {p.get("name"): p.get("value") for p in junit.iter("property")}
        assert props.get("runtime") == "docker"
        assert "docker" in (report / "report.html").read_text()
        print(f"{PROFILE} profile on docker: {took:.0f} s")
    finally:
        left = _objects_under(client, runs)
        shutil.rmtree(runs, ignore_errors=True)
        assert left == [], "the run left containers or networks"


# -- the harness's own surfaces -------------------------------------------------------


@pytest.fixture(scope="module")
def docker_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from conformance.harness.docker_target import DockerTarget
    from conformance.harness.target import TargetOptions

    client = engine_or_skip()
    images_or_skip(client)
    root = tmp_path_factory.mktemp("dtarget")
    target = DockerTarget(TargetOptions(root=root / "stack", seed=SEED))
    with target:
        yield target
    assert _objects_under(client, root) == []


def test_proxy_control_reachable_from_host_not_from_the_stack(docker_target: Any) -> None:
    """A stack component (a cell, the sidecar) cannot reach a fault proxy's control API
    to cut the planes apart: it binds the harness network only; the host drives it
    through 127.0.0.1."""
    launcher = docker_target.container_launcher
    probe = ("import socket,sys\n"
             "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
             "except OSError: sys.exit(3)\n")
    for link in docker_target.links:
        assert docker_target.proxy(link).toxics() == []  # from the host
        host, port = docker_target.proxy_control_bind(link).rsplit(":", 1)
        for member in ("cell-1", "sidecar", "control"):
            got = launcher[member].container.exec_run(["python3", "-c", probe, host, port])
            assert got.exit_code == 3, f"{member} reached {link}'s control API at {host}:{port}"


def test_cut_cell_errors_only_its_tenants_and_heals(docker_target: Any) -> None:
    from conformance.harness.client import Client
    from conformance.harness.stacks import tenants_by_cell
    from conformance.harness.waiting import poll
    from conformance.nemesis.network import cut_cell

    tenants = tenants_by_cell(docker_target, per_cell=1)
    client = Client(docker_target.http_url, timeout=3)

    def status(cell: str) -> int:
        tenant = tenants[cell][0]
        token = docker_target.token(tenant, ["reader"])
        try:
            return client.get(f"/t/{tenant}/items?limit=1", token).status
        except OSError:
            return 599

    ok = {c: status(c) for c in docker_target.cell_names}
    fault = cut_cell(docker_target, "cell-3")
    assert fault.unavailable is None
    fault.inject()
    try:
        poll(lambda: status("cell-3") >= 500, timeout=30, what="cell-3's tenants to fail")
        assert status("cell-1") == ok["cell-1"] and status("cell-2") == ok["cell-2"]
    finally:
        fault.repair()
    poll(lambda: status("cell-3") == ok["cell-3"], timeout=60, what="cell-3 to heal")


def test_proxy_refuses_non_loopback_control_unless_exposed() -> None:
    done = subprocess.run([sys.executable, "-m", "conformance.nemesis.proxy", "--listen",
                           "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--control",
                           "0.0.0.0:0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "not a loopback address" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_sink_refuses_non_loopback_scrape_unless_named(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "conformance.harness.sink", "--listen",
                           "127.0.0.1:0", "--out", str(tmp_path), "--scrape",
                           "http://10.1.2.3:9/metrics"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "--scrape" in done.stderr, done.stderr


def test_cli_runtime_usage_errors() -> None:
    done = _a1("conformance", "--runtime", "podman")
    assert done.returncode == 2 and "--runtime" in done.stderr
    done = _a1("conformance", "--runtime", "docker", "--selftest")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "process runtime" in done.stderr


def test_interrupted_run_leaves_nothing() -> None:
    """SIGINT in the middle of a scenario: the run stops, and every container and
    network it made is gone (the fault is repaired or removed with its container)."""
    import signal

    from conformance.harness.waiting import poll

    client = engine_or_skip()
    images_or_skip(client)
    runs = Path(tempfile.mkdtemp(prefix="a1ci-"))
    err = runs / "stderr"
    try:
        with open(err, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "a1", "conformance", "--runtime", "docker", "--profile",
                 "docker-ci", "--seed", str(SEED)], stdout=subprocess.DEVNULL, stderr=out,
                env={**os.environ, "TMPDIR": str(runs)})
        try:
            poll(lambda: b"fault window" in err.read_bytes() or proc.poll() is not None,
                 timeout=300, interval=0.5, what="the first fault window")
            assert proc.poll() is None, err.read_text()[-2000:]
            assert _objects_under(client, runs), "no container of the run while it runs"
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert _objects_under(client, runs) == []
    finally:
        shutil.rmtree(runs, ignore_errors=True)
