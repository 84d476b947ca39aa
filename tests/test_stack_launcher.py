"""The process launcher with real child processes: readiness, stop, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from a1.launcher import (
    Launcher,
    LaunchError,
    ProcessSpec,
    check_ports_free,
    free_ports,
    http_probe,
    tcp_probe,
)


def gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (absent, or a zombie awaiting its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_until(cond: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``cond`` until it is true (→ True) or ``timeout`` passes (→ False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    with Launcher() as lau:
        yield lau


def read_pid(path: Path, timeout: float = 10.0) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().strip(), timeout)
    return int(path.read_text())


def test_ready_then_stop(launcher: Launcher, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    spec = ProcessSpec("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1",
                               str(port)], tmp_path / "web.log",
                       ready=http_probe(f"http://127.0.0.1:{port}/"))
    proc = launcher.start(spec)
    launcher.wait_ready(timeout=20)
    assert proc.alive()
    with pytest.raises(LaunchError, match=f"port 127.0.0.1:{port} \\(web\\) is already in use"):
        check_ports_free([("web", "127.0.0.1", port)])
    launcher.stop("web")
    assert not proc.alive() and launcher.unexpected_exits() == []
    check_ports_free([("web", "127.0.0.1", port)])


def test_stop_takes_the_whole_process_group(launcher: Launcher, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    launcher.start(ProcessSpec("parent", py(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "60"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(60)
    """), tmp_path / "parent.log"))
    grandchild = read_pid(pidfile)
    launcher.stop("parent")
    assert wait_until(lambda: gone(grandchild))


def test_sigterm_ignored_means_sigkill_after_timeout(launcher: Launcher, tmp_path: Path) -> None:
    flag = tmp_path / "armed"
    spec = ProcessSpec("stubborn", py(f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(flag)!r}, "w").write("1")
        time.sleep(60)
    """), tmp_path / "stubborn.log", stop_timeout=0.5)
    proc = launcher.start(spec)
    assert wait_until(flag.exists)
    started = time.monotonic()
    assert launcher.stop("stubborn") == -signal.SIGKILL
    assert time.monotonic() - started < 5 and not proc.alive()


def test_exit_during_startup_is_reported_with_its_log(launcher: Launcher,
                                                      tmp_path: Path) -> None:
    launcher.start(ProcessSpec("broken", py("import sys; print('bad config: x'); sys.exit(3)"),
                               tmp_path / "broken.log", ready=tcp_probe("127.0.0.1", 1)))
    with pytest.raises(LaunchError) as err:
        launcher.wait_ready(timeout=20)
    text = str(err.value)
    assert "broken" in text and "exit code 3" in text and "bad config: x" in text


def test_readiness_timeout_names_the_probe(launcher: Launcher, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    launcher.start(ProcessSpec("idle", ["sleep", "30"], tmp_path / "idle.log",
                               ready=tcp_probe("127.0.0.1", port)))
    with pytest.raises(LaunchError, match=f"not ready after 1s: idle: .*127.0.0.1:{port}"):
        launcher.wait_ready(timeout=1)


def test_unexpected_exits_name_the_child_that_died(launcher: Launcher, tmp_path: Path) -> None:
    launcher.start(ProcessSpec("steady", ["sleep", "30"], tmp_path / "steady.log"))
    launcher.start(ProcessSpec("victim", ["sleep", "30"], tmp_path / "victim.log"))
    launcher.start(ProcessSpec("stopped", ["sleep", "30"], tmp_path / "stopped.log"))
    launcher.stop("stopped")  # asked to stop: not a death
    os.kill(launcher["victim"].pid, signal.SIGKILL)  # from outside: a death
    assert wait_until(lambda: bool(launcher.unexpected_exits()))
    (dead,) = launcher.unexpected_exits()
    assert dead.name == "victim"
    assert "victim" in launcher.death_report(dead) and "SIGKILL" in launcher.death_report(dead)


def test_kill_and_restart(launcher: Launcher, tmp_path: Path) -> None:
    port = free_ports(1)[0]
    spec = ProcessSpec("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1",
                               str(port)], tmp_path / "web.log",
                       ready=http_probe(f"http://127.0.0.1:{port}/"))
    first = launcher.start(spec)
    launcher.wait_ready(timeout=20)
    assert launcher.kill("web") == -signal.SIGKILL
    assert launcher.unexpected_exits() == []
    second = launcher.restart("web")
    assert second.pid != first.pid and second.alive()


def test_missing_program_is_named(launcher: Launcher, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="no-such-program-a1"):
        launcher.start(ProcessSpec("x", ["no-such-program-a1"], tmp_path / "x.log"))


def test_children_die_with_a_sigkilled_parent_even_if_spawned_from_a_thread(
        tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: the parent is SIGKILLed, so nothing of its own can clean up."""
    pidfile = tmp_path / "child.pid"
    code = f"""
        import threading, time
        from pathlib import Path
        from a1.launcher import Launcher, ProcessSpec
        lau = Launcher()
        def spawn():  # a short-lived thread: PDEATHSIG must not fire when it exits
            log = Path({str(tmp_path)!r}) / "s.log"
            p = lau.start(ProcessSpec("sleeper", ["sleep", "60"], log))
            open({str(pidfile)!r}, "w").write(str(p.pid))
        t = threading.Thread(target=spawn); t.start(); t.join()
        time.sleep(60)
    """
    parent = subprocess.Popen(py(code), start_new_session=True)
    try:
        child = read_pid(pidfile, timeout=20)
        time.sleep(0.3)  # the spawning thread has exited by now; the child must live on
        assert not gone(child)
        parent.kill()
        parent.wait()
        assert wait_until(lambda: gone(child)), "child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for p in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_start_interrupted_while_forking_is_still_stopped_by_close(tmp_path: Path) -> None:
    """Ctrl-C while a child is being forked: close() must still find and stop it."""
    lau = Launcher(use_pdeathsig=False)  # no parent-death signal to hide an orphan
    busy = threading.Event()
    lau._spawner.submit(busy.wait, 10)  # start() has to wait its turn for the spawner

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            lau.start(ProcessSpec("late", ["sleep", "60"], tmp_path / "late.log"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    busy.set()
    lau.close()
    assert lau.names() == ["late"], "the child forked after the interrupt was lost"
    assert not lau["late"].alive()


def test_a_log_tail_cannot_smuggle_terminal_escapes(launcher: Launcher, tmp_path: Path) -> None:
    """The tail is printed on the operator's terminal; a logged path is attacker text."""
    launcher.start(ProcessSpec("loud", py(r"""
        import sys
        sys.stdout.write("GET /t/\x1b[2J\x1b]0;owned\x07x\rfake line\x9b31m\tok\n")
        sys.exit(3)
    """), tmp_path / "loud.log", ready=tcp_probe("127.0.0.1", 1)))
    with pytest.raises(LaunchError) as err:
        launcher.wait_ready(timeout=20)
    text = str(err.value)
    assert "GET /t/\\x1b[2J\\x1b]0;owned\\x07x\\x0dfake line\\x9b31m\tok" in text
    assert not any(c in text for c in "\x1b\x07\r\x9b")
