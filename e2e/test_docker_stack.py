"""``a1 up --runtime docker`` as a user runs it: a real subprocess, real containers, real
signals; faults made with docker itself (network cut, pause, kill); nothing left after.

One stack for the module (its state directory has spaces, a quote and a ``$``), plus
short-lived ones for the crash, leftover and attacker cases. Skips with the reason when
no engine or no images are there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1 import pki
from a1.containers import engine, names
from conformance.harness.client import Client
from conformance.harness.stacks import port_args
from conformance.harness.waiting import poll
from e2e.docker_support import engine_or_skip, images_or_skip, run_objects

pytestmark = pytest.mark.e2e

A1 = [sys.executable, "-m", "a1"]


class Up:
    """A running ``a1 up --runtime docker``; its output goes to files we poll."""

    def __init__(self, state: Path, *extra: str) -> None:
        self.state = state
        self.ports = port_args()
        self.run = engine.run_id(state.resolve())
        self.out = state.parent / f"{state.name}.stdout"
        self.err = state.parent / f"{state.name}.stderr"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [*A1, "up", "--runtime", "docker", "--state-dir", str(state), *self.ports,
                 *extra], stdout=out, stderr=err, start_new_session=True)

    @property
    def http(self) -> Client:
        return Client(f"http://127.0.0.1:{self.ports[1]}", timeout=5)

    @property
    def https(self) -> Client:
        return Client(f"https://localhost:{self.ports[3]}", cafile=self.state / "pki" / "ca.pem",
                      timeout=5)

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def wait_up(self, timeout: float = 120.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"a1 up exited {self.proc.returncode}: {self.output()}")
            return "A1 stack is up" in self.out.read_text()
        poll(up, timeout=timeout, what="a1 up --runtime docker to print its banner")

    def wait_exit(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def container(self, client: Any, name: str) -> Any:
        return client.containers.get(f"a1-{self.run}-{name}")

    def reaper_pids(self) -> list[int]:
        """This a1's sweepers (``a1.containers.reaper --run RUN --owner HOST/PID/START``)."""
        owner = f"/{self.proc.pid}/".encode()
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if (b"a1.containers.reaper" in argv and self.run.encode() in argv
                            and any(owner in a for a in argv)):
                        out.append(int(entry.name))
        return out

    def cleanup(self, client: Any) -> None:
        """Whatever happened: the process gone, the run's objects removed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        containers, networks = engine.our_objects(client, self.run)
        for obj in [*containers, *networks]:
            with contextlib.suppress(Exception):
                obj.remove(force=True) if obj in containers else obj.remove()


@pytest.fixture(scope="module")
def client() -> Any:
    c = engine_or_skip()
    images_or_skip(c)
    return c


@pytest.fixture(scope="module")
def up(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    state = tmp_path_factory.mktemp("docker") / "state dir 'q' $x"
    u = Up(state)
    try:
        u.wait_up()
        yield u
    finally:
        u.cleanup(client)


def tenant_of(up: Up, cell: str) -> str:
    from control.spec import load_spec

    table = load_spec(up.state / "platform").cell_table()
    return next(t for t in (f"t{i}" for i in range(1000)) if table.lookup(t) == cell)


def token(up: Up, tenant: str) -> str:
    return pki.mint_token(up.state, tenant, ["reader", "writer"])


def status(up: Up, tenant: str) -> int:
    try:
        return up.http.get(f"/t/{tenant}/items", token=token(up, tenant)).status
    except OSError:
        return 0


# -- the session a user types -------------------------------------------------------------


def test_banner_and_the_readme_curl_session(up: Up) -> None:
    banner = up.out.read_text()
    assert "runtime docker" in banner
    assert all(f"a1-{up.run}-{n}" in banner for n in ("envoy", "sidecar", "control", "relay",
                                                       "cell-1", "cell-2", "cell-3"))
    tok = next(line.split("TOKEN=", 1)[1] for line in banner.splitlines() if "TOKEN=" in line)
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    http, https = f"http://127.0.0.1:{up.ports[1]}", f"https://localhost:{up.ports[3]}"
    posted = subprocess.run(
        [curl, "-s", "-H", f"authorization: Bearer {tok}", "-H", "content-type: application/json",
         "-d", '{"name": "first"}', f"{http}/t/acme/items"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert '"name":"first"' in posted.replace(" ", "")
    got = subprocess.run(
        [curl, "-s", "--cacert", str(up.state / "pki" / "ca.pem"), "-H",
         f"authorization: Bearer {tok}", f"{https}/t/acme/items"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert '"first"' in got
    assert up.https.get("/t/acme/items", token=tok).status == 200


def test_only_the_process_runtimes_ports_are_published(up: Up, client: Any) -> None:
    published = {}
    for c in engine.our_objects(client, up.run)[0]:
        ports = c.attrs["HostConfig"].get("PortBindings") or {}
        published[c.labels[names.LABEL_COMPONENT]] = sorted(
            (b["HostIp"], int(b["HostPort"])) for v in ports.values() for b in v)
    p = [int(x) for x in up.ports[1::2]]
    base = p[3]
    assert published == {
        "envoy": sorted([("127.0.0.1", p[0]), ("127.0.0.1", p[1]), ("127.0.0.1", p[2])]),
        "sidecar": [("127.0.0.1", base + 2)], "control": [("127.0.0.1", base + 4)],
        "relay": [], "cell-1": [], "cell-2": [], "cell-3": []}


# -- faults -------------------------------------------------------------------------------


def test_a_cut_cell_network_errors_only_its_tenants_and_heals(up: Up, client: Any) -> None:
    victim, others = tenant_of(up, "cell-2"), [tenant_of(up, "cell-1"), tenant_of(up, "cell-3")]
    net = client.networks.get(f"a1-{up.run}-cell-cell-2")
    cell = up.container(client, "cell-2")
    ip = cell.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
    net.disconnect(cell, force=True)
    try:
        poll(lambda: status(up, victim) >= 500, timeout=30, what="cell-2's tenant to fail")
        assert [status(up, t) for t in others] == [200, 200]
    finally:
        net.connect(cell, ipv4_address=ip)
    poll(lambda: status(up, victim) == 200, timeout=30, what="cell-2's tenant to heal")


def test_a_paused_control_plane_leaves_traffic_at_100_percent(up: Up, client: Any) -> None:
    tenants = [tenant_of(up, c) for c in ("cell-1", "cell-2", "cell-3")]
    tokens = {t: token(up, t) for t in tenants}
    control = up.container(client, "control")
    control.pause()
    try:
        codes = [up.http.get(f"/t/{t}/items", token=tokens[t]).status
                 for _ in range(100) for t in tenants]
    finally:
        control.unpause()
    assert codes.count(200) == len(codes) == 300


def test_a_killed_cell_container_is_restarted_alone(up: Up, client: Any) -> None:
    envoy_id = up.container(client, "envoy").id
    up.container(client, "cell-1").kill()
    poll(lambda: "a1: cell-1 is back" in up.err.read_text(), timeout=60,
         what="the supervisor to restart cell-1")
    poll(lambda: status(up, tenant_of(up, "cell-1")) == 200, timeout=30,
         what="cell-1's tenant served again")
    assert up.container(client, "envoy").id == envoy_id  # nothing else was touched


def test_sigint_removes_every_container_and_network(up: Up, client: Any) -> None:
    os.kill(up.proc.pid, signal.SIGINT)
    assert up.wait_exit() == 0
    assert run_objects(client, up.run) == []


# -- crashes, leftovers and attackers ---------------------------------------------------------


def test_crash_leftovers_are_cleaned_by_the_next_run_and_attackers_refused(
        client: Any, tmp_path: Path) -> None:
    state = tmp_path / "crash"
    run = engine.run_id(state.resolve())
    # A foreign container with one of our names: refused in one line, never touched.
    foreign = client.containers.create(names.image_for("control"), ["true"],
                                       name=f"a1-{run}-envoy")
    spoof = None
    ups: list[Up] = []
    try:
        refused = Up(state)
        ups.append(refused)
        assert refused.wait_exit(120) == 1
        err = refused.err.read_text().strip()
        assert len(err.splitlines()) == 1 and f"container a1-{run}-envoy exists" in err
        foreign.reload()
        engine.remove_container(foreign)

        first = Up(state)
        ups.append(first)
        first.wait_up()
        second = Up(state)  # a live owner: refused, and the running stack untouched
        ups.append(second)
        assert second.wait_exit(120) == 1
        assert "another a1" in second.err.read_text()
        assert status(first, "acme") == 200

        # A crash that took the sweeper too (a host reset, a cgroup OOM kill): nothing
        # cleaned up, so the next run must.
        sweepers = first.reaper_pids()
        assert len(sweepers) == 1, sweepers
        os.kill(sweepers[0], signal.SIGKILL)
        first.proc.kill()
        first.proc.wait()
        left = run_objects(client, run)
        assert any(o.startswith("container") for o in left)
        # Labelled as A1's but of another run, owner unknown: must survive what follows.
        spoof = client.containers.create(
            names.image_for("control"), ["true"], name=f"a1-spoof-{run}",
            labels={names.LABEL_PROJECT: names.PROJECT, names.LABEL_RUN: "not-" + run})

        third = Up(state)
        ups.append(third)
        third.wait_up()
        assert "left by an earlier a1 that died" in third.out.read_text()
        assert status(third, "acme") == 200
        os.kill(third.proc.pid, signal.SIGINT)
        assert third.wait_exit() == 0
        assert run_objects(client, run) == []
        spoof.reload()
    finally:
        for u in ups:
            u.cleanup(client)
        for c in (foreign, spoof):
            if c is not None:
                engine.remove_container(c)


def test_a_sigkilled_a1_up_leaves_nothing(client: Any, tmp_path: Path) -> None:
    """No cleanup code of a1 runs on SIGKILL; its sweeper sees the pipe close and
    removes the run's containers and networks, and then exits itself."""
    u = Up(tmp_path / "killed")
    try:
        u.wait_up()
        sweepers = u.reaper_pids()
        assert len(sweepers) == 1, sweepers
        assert run_objects(client, u.run)
        u.proc.kill()
        u.proc.wait()
        poll(lambda: run_objects(client, u.run) == [], timeout=60,
             what="the sweeper to remove the killed run's objects")
        poll(lambda: not u.reaper_pids(), timeout=30, what="the sweeper to exit")
        log = (u.state / "logs" / "reaper.log").read_text()
        assert "ended without cleaning up" in log, log
    finally:
        u.cleanup(client)


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (apt-get install docker-compose)")
def test_the_compose_file_runs_the_same_stack(client: Any, tmp_path: Path) -> None:
    state = tmp_path / "compose state"
    ports = port_args()
    out = tmp_path / "compose.yaml"
    subprocess.run([*A1, "compose", "--state-dir", str(state), "--cells", "2", *ports,
                    "-o", str(out)], check=True, timeout=120)
    run = engine.run_id(state.resolve())
    dc = ["docker-compose", "-p", f"a1{run}", "-f", str(out)]
    try:
        subprocess.run([*dc, "up", "-d"], check=True, timeout=180, capture_output=True)
        http = Client(f"http://127.0.0.1:{ports[1]}", timeout=5)
        tok = pki.mint_token(state, "acme", ["reader"])

        def served() -> bool:
            try:
                return http.get("/t/acme/items", token=tok).status == 200
            except OSError:
                return False
        poll(served, timeout=60, what="the compose stack to serve")
    finally:
        subprocess.run([*dc, "down"], timeout=120, capture_output=True, check=False)
    assert run_objects(client, run) == []


def test_ctrl_c_during_start_exits_promptly_and_leaves_nothing(client: Any,
                                                               tmp_path: Path) -> None:
    """Interrupted while the cells start (some containers created, some not yet started):
    every container is found and removed, none waited on for its full stop timeout."""
    u = Up(tmp_path / "interrupted")
    try:
        def cells_starting() -> bool:
            assert u.proc.poll() is None, u.output()
            flt = {"label": [f"{names.LABEL_RUN}={u.run}", f"{names.LABEL_COMPONENT}=cell-1"]}
            return bool(client.containers.list(all=True, filters=flt, ignore_removed=True))
        poll(cells_starting, timeout=120, interval=0.01, what="the cells' containers")
        os.kill(u.proc.pid, signal.SIGINT)
        assert u.wait_exit(15) == 0
        assert run_objects(client, u.run) == []
    finally:
        u.cleanup(client)
