"""``a1 compose``: the Compose file says what ``a1 up --runtime docker`` does, and a state
directory named with ``$``, quotes and spaces reaches docker unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from a1.containers import compose, network
from a1.containers.stack import DockerStack
from a1.stack import StackOptions, StackPorts

ODD = "st ate 'q' $HOME ${X:-y}"


def stack(tmp_path: Path, cells: int = 2) -> DockerStack:
    s = DockerStack(StackOptions(state_dir=tmp_path / ODD, cells=cells,
                                 ports=StackPorts.defaults(cells, 21000, 20000, 20443, 29901)))
    s.use_plan(s.make_plan([]))
    s.prepare()
    return s


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[DockerStack, dict[str, Any]]:
    s = stack(tmp_path_factory.mktemp("compose"))
    return s, compose.document(s)


def test_services_in_start_order_gated_on_health(doc: tuple[DockerStack, Any]) -> None:
    s, d = doc
    svc = d["services"]
    assert list(svc) == ["control", "relay", "cell-1", "cell-2", "sidecar", "envoy"]
    healthy = {"condition": "service_healthy"}
    assert svc["relay"]["depends_on"] == {"control": healthy}
    assert svc["cell-1"]["depends_on"] == svc["sidecar"]["depends_on"] == {"relay": healthy}
    assert svc["envoy"]["depends_on"] == {n: healthy for n in ("cell-1", "cell-2", "sidecar")}
    for name in ("control", "relay", "cell-1", "cell-2", "sidecar"):
        assert svc[name]["healthcheck"]["test"][0] == "CMD"
    for name, kind in [("envoy", "envoy"), ("sidecar", "sidecar"), ("cell-1", "cell"),
                       ("control", "control"), ("relay", "control")]:
        assert svc[name]["image"].startswith(f"a1-{kind}:")
        assert svc[name]["container_name"] == f"a1-{s.run}-{name}"
        assert svc[name]["init"] is True and svc[name]["user"] == f"{os.getuid()}:{os.getgid()}"


def test_only_the_process_runtimes_ports_on_loopback(doc: tuple[DockerStack, Any]) -> None:
    _, d = doc
    published = {n: v.get("ports", []) for n, v in d["services"].items()}
    assert published == {"control": ["127.0.0.1:21004:21004"], "relay": [], "cell-1": [],
                         "cell-2": [], "sidecar": ["127.0.0.1:21002:21002"],
                         "envoy": ["127.0.0.1:20000:20000", "127.0.0.1:20443:20443",
                                   "127.0.0.1:29901:29901"]}


def test_networks_subnets_and_fixed_addresses(doc: tuple[DockerStack, Any]) -> None:
    s, d = doc
    nets = d["networks"]
    assert {n: v["internal"] for n, v in nets.items()} == {
        n.name: n.internal for n in s.plan.networks}
    for net in s.plan.networks:
        assert nets[net.name]["ipam"]["config"] == [{"subnet": str(net.subnet),
                                                    "gateway": net.gateway}]
    for name in ("envoy", "cell-2", "control"):
        assert {n: v["ipv4_address"] for n, v in d["services"][name]["networks"].items()} \
            == s.plan.networks_of(name)
    # Envoy's EDS endpoints are the cells' fixed addresses on their own networks.
    platform = (s.files.platform / "platform.yaml").read_text()
    host, port = s.cell_endpoint("cell-2")
    assert f"{host}:{port}" in platform and host.startswith(
        str(s.plan.network(s.plan.cell_network("cell-2")).subnet.network_address)[:-1])


def test_every_dollar_is_escaped(doc: tuple[DockerStack, Any]) -> None:
    s, d = doc
    control = d["services"]["control"]
    state = str(s.files.state_dir).replace("$", "$$")
    assert control["command"][:3] == ["sh", "-c", 'exec "$$@" >>"$$0" 2>&1']
    assert control["volumes"] == [{"type": "bind", "source": state, "target": state}]
    assert all("$" not in str(v).replace("$$", "") for v in control["command"])


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (apt-get install docker-compose)")
def test_docker_compose_accepts_it_and_reads_paths_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "compose.yaml"
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # no engine needed
    proc = subprocess.run([sys.executable, "-m", "a1", "compose", "--state-dir",
                           str(tmp_path / ODD), "--cells", "1", "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "subnets are chosen against host routes only" in proc.stderr
    checked = subprocess.run(["docker-compose", "-f", str(out), "config"], capture_output=True,
                             text=True, timeout=60, check=False, env={**os.environ, "X": "z"})
    assert checked.returncode == 0, checked.stderr
    cfg = yaml.safe_load(checked.stdout.replace("$$", "$"))
    state = str((tmp_path / ODD).resolve())
    assert cfg["services"]["cell-1"]["volumes"][0]["source"] == state
    assert cfg["services"]["cell-1"]["command"][3] == f"{state}/logs/cell-1.log"


def test_plan_avoids_taken_subnets(tmp_path: Path) -> None:
    s = DockerStack(StackOptions(state_dir=tmp_path / "s", cells=1))
    taken = list(network.free_subnets([]))[:5]
    s.use_plan(s.make_plan(taken))
    assert not any(n.subnet in taken for n in s.plan.networks)


@pytest.mark.parametrize("bad", ["envoy", "control", "Cell", "../x", "a b", "c" * 64])
def test_cell_names_that_would_clash_or_break_docker_names_are_refused(
        tmp_path: Path, bad: str) -> None:
    """A cell name becomes a container, host and network name: a component's name
    (which would take its address) or a name outside the grammar is a usage error."""
    from policies.core.errors import UserError

    with pytest.raises(UserError) as err:
        DockerStack(StackOptions(state_dir=tmp_path / "s", cell_names=(bad, "cell-2")))
    assert err.value.code == 2 and "--runtime docker" in str(err.value)
