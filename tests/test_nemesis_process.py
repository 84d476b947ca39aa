"""Process nemeses on real child processes through a real Launcher: kill, pause, restart.

The children are counters: each rewrites a file with an ever-growing number, so
"progress" is observable without timing. A pause is shown by a reference counter
(never paused) advancing well past while the paused one stands still.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from a1.launcher import Launcher, Probe, ProcessSpec
from conformance.nemesis import process
from conformance.nemesis.process import kill, pause, process_state, restart, resume_all
from policies.core.errors import UserError
from tests.waiting import wait_until

# Rewrites argv[1] with 1, 2, 3… (atomically, by rename). With argv[2], it first
# starts a copy of itself in the same process group, counting into argv[2]: what a
# group-wide signal must reach too.
COUNTER = textwrap.dedent("""
    import os, subprocess, sys, time
    path = sys.argv[1]
    if len(sys.argv) > 2:
        subprocess.Popen([sys.executable, __file__, sys.argv[2]])
    n = 0
    while True:
        n += 1
        with open(path + ".tmp", "w") as f:
            f.write(str(n))
        os.replace(path + ".tmp", path)
        time.sleep(0.005)
""")


def counter_argv(path: Path, child: Path | None = None) -> list[str]:
    script = path.parent / "counter.py"
    if not script.exists():
        script.write_text(COUNTER)
    return [sys.executable, str(script), str(path), *([str(child)] if child else [])]


def count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def counting(path: Path) -> Probe:
    return Probe(f"{path.name} counts", lambda: count(path) > 0)


@dataclass
class StubTarget:
    """The parts of ``conformance.nemesis.base.Target`` process nemeses use."""

    launcher: Launcher
    state_dir: Path
    spec_dir: Path

    def proxy(self, link: str) -> Any:  # pragma: no cover - unused here
        raise NotImplementedError


@pytest.fixture
def target(tmp_path: Path) -> Iterator[StubTarget]:
    with Launcher() as launcher:
        try:
            yield StubTarget(launcher, tmp_path, tmp_path)
        finally:
            resume_all()


def start_counter(target: StubTarget, name: str, child: bool = False) -> Path:
    path = target.state_dir / f"{name}.count"
    child_path = target.state_dir / f"{name}-child.count" if child else None
    target.launcher.start(ProcessSpec(name, counter_argv(path, child_path),
                                      target.state_dir / f"{name}.log", ready=counting(path)))
    target.launcher.wait_ready([name], timeout=20)
    if child_path:
        wait_until(lambda: count(child_path) > 0, "the child counter to start")
    return path


def stands_still_while(path: Path, reference: Path, ticks: int = 40) -> bool:
    """``path``'s count does not move while ``reference``'s advances by ``ticks``."""
    before, ref = count(path), count(reference)
    wait_until(lambda: count(reference) >= ref + ticks, "the reference counter to advance")
    return count(path) == before


def advances(path: Path, ticks: int = 10) -> None:
    start = count(path)
    wait_until(lambda: count(path) >= start + ticks, f"{path.name} to advance")


def test_kill_then_repair_restarts_and_waits_until_ready(target: StubTarget) -> None:
    path = start_counter(target, "cell-1")
    old = target.launcher["cell-1"]
    fault = kill(target, "cell-1")
    assert fault.name == "kill:cell-1" and fault.unavailable is None
    fault.inject()
    assert old.returncode == -signal.SIGKILL  # reaped when inject returns
    path.unlink()
    fault.repair()
    new = target.launcher["cell-1"]
    assert new is not old and new.alive() and count(path) > 0  # ready: probe passed
    advances(path)
    assert target.launcher.unexpected_exits() == []


def test_pause_stops_the_whole_group_and_repair_resumes(target: StubTarget) -> None:
    path = start_counter(target, "control", child=True)
    child_path = target.state_dir / "control-child.count"
    reference = start_counter(target, "envoy")
    fault = pause(target, "control")
    fault.inject()
    assert process_state(target.launcher["control"].pid) == "T"
    assert process.paused() == ["control"]
    assert stands_still_while(path, reference)
    assert stands_still_while(child_path, reference)  # the child is in the group: stopped too
    fault.repair()
    assert process.paused() == []
    advances(path)
    advances(child_path)


def test_pause_of_several_processes(target: StubTarget) -> None:
    a, b = start_counter(target, "control"), start_counter(target, "sink")
    reference = start_counter(target, "envoy")
    fault = pause(target, "control", "sink")
    assert fault.name == "pause:control,sink"
    fault.inject()
    assert stands_still_while(a, reference) and stands_still_while(b, reference)
    fault.repair()
    advances(a)
    advances(b)


def test_paused_process_stops_answering_tcp(target: StubTarget) -> None:
    """A paused server's kernel still completes handshakes (the backlog), but nothing
    answers: the stall a client sees from a frozen control plane."""
    port_file = target.state_dir / "port"
    server = textwrap.dedent(f"""
        import os, socket
        s = socket.create_server(("127.0.0.1", 0))
        open({str(port_file)!r} + ".tmp", "w").write(str(s.getsockname()[1]))
        os.replace({str(port_file)!r} + ".tmp", {str(port_file)!r})
        while True:
            c, _ = s.accept()
            c.sendall(b"hello")
            c.close()
    """)
    target.launcher.start(ProcessSpec("relay", [sys.executable, "-c", server],
                                      target.state_dir / "relay.log",
                                      ready=Probe("port file", port_file.exists)))
    target.launcher.wait_ready(["relay"], timeout=20)
    port = int(port_file.read_text())

    def greet(timeout: float) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            return c.recv(5)

    assert greet(5) == b"hello"
    fault = pause(target, "relay")
    fault.inject()
    with pytest.raises(TimeoutError):
        greet(0.3)
    fault.repair()
    assert greet(5) == b"hello"


def test_teardown_resumes_what_the_repair_never_did(target: StubTarget) -> None:
    path = start_counter(target, "sidecar")
    pause(target, "sidecar").inject()  # the run fails here: no repair
    assert resume_all() == ["sidecar"]
    assert process_state(target.launcher["sidecar"].pid) != "T"
    advances(path)
    assert resume_all() == []  # idempotent


def test_interpreter_exit_resumes_paused_processes(tmp_path: Path) -> None:
    """Even when no one calls resume_all, exiting the interpreter does (atexit)."""
    script = textwrap.dedent(f"""
        import atexit, sys
        from pathlib import Path
        from a1.launcher import Launcher, ProcessSpec
        from conformance.nemesis.process import pause
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_nemesis_process import StubTarget, counter_argv, counting
        d = Path({str(tmp_path)!r})
        lau = Launcher(use_pdeathsig=False)
        atexit.unregister(lau.stop_all)  # leave the child behind to look at it
        lau.start(ProcessSpec("sink", counter_argv(d / "n"), d / "log", ready=counting(d / "n")))
        lau.wait_ready(timeout=20)
        pause(StubTarget(lau, d, d), "sink").inject()
        print(lau["sink"].pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    try:
        assert wait_until(lambda: process_state(pid) not in ("T", None), "the resume")
        advances(tmp_path / "n")
    finally:
        os.killpg(pid, signal.SIGKILL)


def test_kill_of_a_paused_process_forgets_the_pause(target: StubTarget) -> None:
    start_counter(target, "cell-2")
    pause(target, "cell-2").inject()
    kill(target, "cell-2").inject()
    assert process.paused() == [] and resume_all() == []


def test_restart_brings_a_new_process_up(target: StubTarget) -> None:
    path = start_counter(target, "relay")
    old = target.launcher["relay"]
    fault = restart(target, "relay")
    fault.inject()
    assert target.launcher["relay"] is not old and not old.alive()
    fault.repair()
    advances(path)
    assert target.launcher.unexpected_exits() == []


@pytest.mark.parametrize("build", [
    lambda t: kill(t, "contrl"), lambda t: pause(t, "envoy", "sidecr"),
    lambda t: restart(t, "cell-9"),
])
def test_unknown_names_are_one_line_errors_listing_the_known(target: StubTarget,
                                                             build: Any) -> None:
    start_counter(target, "envoy")
    with pytest.raises(UserError) as err:
        build(target)
    message = str(err.value)
    assert "\n" not in message and "unknown process" in message and "known: envoy" in message


def test_pause_needs_a_name(target: StubTarget) -> None:
    with pytest.raises(UserError, match="at least one"):
        pause(target)
