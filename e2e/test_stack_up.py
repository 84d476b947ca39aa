"""``a1 up`` as a user runs it: a real subprocess, real signals, no orphans afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.harness.client import Client
from conformance.harness.stacks import port_args
from conformance.harness.waiting import poll

pytestmark = pytest.mark.e2e

A1 = [sys.executable, "-m", "a1.cli"]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found




class Up:
    """A running ``a1 up``; stdout and stderr go to files we poll."""

    def __init__(self, state: Path, *extra: str) -> None:
        self.state = state
        self.ports = port_args()
        self.out = state.parent / f"{state.name}.stdout"
        self.err = state.parent / f"{state.name}.stderr"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([*A1, "up", "--state-dir", str(state), *self.ports,
                                          *extra], stdout=out, stderr=err,
                                         start_new_session=True)

    @property
    def http_port(self) -> int:
        return int(self.ports[1])

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_up(self, timeout: float = 90.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"a1 up exited {self.proc.returncode}: {self.stderr()}")
            return "A1 stack is up" in self.stdout()
        poll(up, timeout=timeout, what="a1 up to print its banner")

    def children(self) -> list[int]:
        return [p for p in processes_mentioning(str(self.state)) if p != self.proc.pid]

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.children():  # a failed test must not leak processes either
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[type[Up]]:
    started: list[Up] = []

    class Tracked(Up):
        def __init__(self, state: Path, *extra: str) -> None:
            super().__init__(state, *extra)
            started.append(self)

    yield Tracked
    for u in started:
        u.cleanup()


def run_a1(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*A1, *args], capture_output=True, text=True, timeout=60, check=False)


def test_up_serves_with_a_minted_token_and_sigterm_stops_everything(
        up_factory: type[Up], tmp_path: Path) -> None:
    up = up_factory(tmp_path / "state")
    up.wait_up()
    assert len(up.children()) == 7  # control plane, relay, three cells, sidecar, Envoy
    token = run_a1("token", "--tenant", "initech", "--roles", "reader,writer",
                   "--state-dir", str(up.state))
    assert token.returncode == 0, token.stderr
    lookup = run_a1("cells", "lookup", "initech", "--state-dir", str(up.state))
    assert lookup.returncode == 0, lookup.stderr
    cell = lookup.stdout.split("cell=")[1].split()[0]
    client = Client(f"http://127.0.0.1:{up.http_port}")
    resp = client.post("/t/initech/items", token.stdout.strip(), {"from": "a1 token"})
    assert resp.status == 201 and resp.headers["x-a1-cell"] == cell
    banner_token = up.stdout().split("TOKEN=")[1].split()[0]  # the banner's sample works too
    assert client.get("/t/acme/items", banner_token).status == 200

    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
    assert up.children() == []


def test_sigkilled_up_leaves_no_orphans(up_factory: type[Up], tmp_path: Path) -> None:
    up = up_factory(tmp_path / "state", "--mode", "none", "--cells", "2")
    up.wait_up()
    children = up.children()
    assert len(children) == 3  # two cells and Envoy (no sidecar in mode none)
    up.proc.kill()  # SIGKILL: a1 cannot clean up; PR_SET_PDEATHSIG must
    up.proc.wait()
    poll(lambda: up.children() == [], timeout=10, what="children to die with a1")


def test_ctrl_c_stops_everything(up_factory: type[Up], tmp_path: Path) -> None:
    up = up_factory(tmp_path / "state", "--mode", "none", "--cells", "1")
    up.wait_up()
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=30) == 0
    assert up.children() == []


def test_a_dying_child_is_named_and_restarted_alone(up_factory: type[Up],
                                                    tmp_path: Path) -> None:
    """The supervisor's behaviour (e2e/test_up_supervisor.py has the traffic checks)."""
    up = up_factory(tmp_path / "state", "--mode", "none", "--cells", "2")
    up.wait_up()
    cells = {name: [p for p in up.children()
                    if f"--name\0{name}\0".encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
             for name in ("cell-1", "cell-2")}
    assert [len(v) for v in cells.values()] == [1, 1]
    os.kill(cells["cell-2"][0], signal.SIGKILL)
    poll(lambda: "cell-2 is back" in up.stderr(), timeout=30, what="cell-2 restarted")
    assert f"cell-2 (pid {cells['cell-2'][0]}) exited with signal SIGKILL unexpectedly" \
        in up.stderr()
    assert up.proc.poll() is None  # a1 up, Envoy and cell-1 kept running
    assert cells["cell-1"][0] in up.children() and cells["cell-2"][0] not in up.children()
    assert len(up.children()) == 3
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
    assert up.children() == []


def test_port_in_use_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = port_args()
        args[1] = str(port)  # --http-port
        result = run_a1("up", "--mode", "none", "--state-dir", str(state), *args)
    assert result.returncode != 0
    assert f"port 127.0.0.1:{port} (Envoy HTTP listener, --http-port) is already in use" \
        in result.stderr
    assert processes_mentioning(str(state)) == []


def test_up_adopts_an_existing_cell_table(up_factory: type[Up], tmp_path: Path) -> None:
    from policies.core.cells import CellTable

    state = tmp_path / "state"
    state.mkdir()
    table = CellTable.balanced(["east", "west"]).with_overrides({"pinned-co": "west"})
    table.save(state / "cells.yaml")
    up = up_factory(state, "--mode", "none")
    up.wait_up()
    assert "east http://" in up.stdout() and "west http://" in up.stdout()
    assert CellTable.load(state / "cells.yaml") == table  # reused as it was, overrides kept
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
