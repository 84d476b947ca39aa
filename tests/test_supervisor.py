"""The supervisor's restart policy and state machine, driven by real short-lived children."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from a1.launcher import Launcher, Probe, ProcessSpec
from a1.supervisor import GaveUp, RestartPolicy, State, Supervisor
from tests.test_stack_launcher import gone, py, wait_until

FAST = RestartPolicy(initial_backoff=0.05, max_backoff=0.2, stable_after=30.0,
                     max_failures=5, failure_window=60.0, ready_timeout=10.0)


class Lines:
    """Collects what the supervisor reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def matching(self, part: str) -> list[str]:
        return [ln for ln in self.lines if part in ln]


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    with Launcher() as lau:
        yield lau


@pytest.fixture
def lines() -> Lines:
    return Lines()


def drive(sup: Supervisor, until: Callable[[], bool], timeout: float = 20.0) -> GaveUp | None:
    """Step the supervisor until ``until()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not until():
        gave_up = sup.step()
        if gave_up is not None:
            return gave_up
        if time.monotonic() > deadline:
            pytest.fail(f"supervisor did not reach the condition: {sup.status()}")
        time.sleep(0.01)
    return None


def status(path: Path) -> dict[str, dict[str, object]]:
    doc = json.loads(path.read_text())
    return {c["name"]: c for c in doc["components"]}


def start(launcher: Launcher, tmp_path: Path, name: str, argv: list[str]) -> int:
    return launcher.start(ProcessSpec(name, argv, tmp_path / f"{name}.log")).pid


def test_a_killed_child_is_reported_and_restarted_alone(launcher: Launcher, lines: Lines,
                                                        tmp_path: Path) -> None:
    steady = start(launcher, tmp_path, "steady", ["sleep", "60"])
    victim = start(launcher, tmp_path, "victim", py("""
        print('victim serving', flush=True)
        import time; time.sleep(60)
    """))
    sup = Supervisor(launcher, FAST, tmp_path / "status.json", report=lines)
    sup.watch("steady")
    sup.watch("victim", kind="cell", impact="victim is down: its tenants get 503")
    sup.adopt()
    assert wait_until(lambda: "victim serving" in (tmp_path / "victim.log").read_text())
    os.kill(victim, signal.SIGKILL)
    drive(sup, lambda: sup["victim"].state is State.RUNNING and sup["victim"].restarts == 1)

    new = launcher["victim"].pid
    assert new != victim and gone(victim) and launcher["victim"].alive()
    assert launcher["steady"].pid == steady and launcher["steady"].alive()
    death = lines.matching("SIGKILL")
    assert len(death) == 1 and "victim" in death[0] and "victim serving" in death[0]  # log tail
    assert lines.matching("victim is down: its tenants get 503; restarting victim in 0.05s")
    assert lines.matching(f"restarted victim (pid {new}, restart 1)")
    assert lines.matching("victim is back")
    assert not [ln for ln in lines.lines if "steady" in ln]
    comps = status(tmp_path / "status.json")
    assert comps["victim"]["state"] == "running" and comps["victim"]["restarts"] == 1
    assert comps["victim"]["pid"] == new
    assert comps["victim"]["last_exit"]["signal"] == "SIGKILL"  # type: ignore[index]
    assert comps["steady"] == {**comps["steady"], "state": "running", "restarts": 0,
                               "pid": steady, "last_exit": None}


def test_a_crash_loop_backs_off_doubling_to_the_cap_then_is_given_up(
        launcher: Launcher, lines: Lines, tmp_path: Path) -> None:
    steady = start(launcher, tmp_path, "steady", ["sleep", "60"])
    start(launcher, tmp_path, "broken", py("print('bad config: x'); raise SystemExit(2)"))
    sup = Supervisor(launcher, FAST, tmp_path / "status.json", report=lines)
    sup.watch("steady")
    sup.watch("broken", impact="broken is down")
    sup.adopt()
    began = time.monotonic()
    assert drive(sup, lambda: sup["broken"].state is State.FAILED) is None  # not critical
    elapsed = time.monotonic() - began

    delays = [ln.split(" in ")[1].split("s ")[0] for ln in lines.matching("restarting broken")]
    assert delays == ["0.05", "0.1", "0.2", "0.2"]  # doubling, capped at max_backoff
    assert elapsed >= 0.05 + 0.1 + 0.2 + 0.2
    assert sup["broken"].restarts == 4
    assert len(lines.matching("exit code 2")) == 5
    assert len(lines.matching("bad config: x")) == 5  # each exit with its log tail
    assert lines.matching("gave up on broken after 5 failures within 60s; broken is down")
    # Given up means given up: no further start however long we keep supervising.
    for _ in range(30):
        assert sup.step() is None
    assert sup["broken"].restarts == 4 and not launcher["broken"].alive()
    assert launcher["steady"].pid == steady and launcher["steady"].alive()
    comps = status(tmp_path / "status.json")
    assert comps["broken"]["state"] == "failed" and comps["broken"]["pid"] is None
    assert comps["broken"]["last_exit"]["code"] == 2  # type: ignore[index]
    assert json.loads((tmp_path / "status.json").read_text())["stack"] == "degraded"


def test_giving_up_on_a_critical_child_ends_run(launcher: Launcher, lines: Lines,
                                                tmp_path: Path) -> None:
    start(launcher, tmp_path, "envoy", py("raise SystemExit(1)"))
    sup = Supervisor(launcher, FAST, tmp_path / "status.json", report=lines)
    sup.watch("envoy", critical=True, stack_wide=True, impact="no tenant can reach the stack")
    sup.adopt()
    gave_up = sup.run(threading.Event(), interval=0.01)
    assert gave_up is not None and gave_up.name == "envoy"
    assert "gave up on envoy after 5 failures" in gave_up.report
    assert "no tenant can reach the stack" in gave_up.report
    outages = lines.matching("a1: stack-wide outage: envoy (pid")
    assert len(outages) == 5 and all("exit code 1" in ln for ln in outages)
    assert json.loads((tmp_path / "status.json").read_text())["stack"] == "outage"


def test_the_backoff_resets_once_a_restart_has_stayed_up(launcher: Launcher, lines: Lines,
                                                         tmp_path: Path) -> None:
    policy = RestartPolicy(initial_backoff=0.05, max_backoff=5.0, stable_after=0.2,
                           max_failures=100, failure_window=60.0)
    start(launcher, tmp_path, "slow", py("import time; time.sleep(0.5); raise SystemExit(1)"))
    sup = Supervisor(launcher, policy, report=lines)
    sup.watch("slow")
    sup.adopt()
    drive(sup, lambda: sup["slow"].restarts >= 3)
    delays = [ln.split(" in ")[1].split("s ")[0] for ln in lines.matching("restarting slow")]
    assert delays[:3] == ["0.05", "0.05", "0.05"]  # each run outlived stable_after


def test_failures_outside_the_window_do_not_count(launcher: Launcher, lines: Lines,
                                                  tmp_path: Path) -> None:
    policy = RestartPolicy(initial_backoff=0.05, max_backoff=0.05, max_failures=2,
                           failure_window=0.3)
    start(launcher, tmp_path, "slow", py("import time; time.sleep(0.4); raise SystemExit(1)"))
    sup = Supervisor(launcher, policy, report=lines)
    sup.watch("slow")
    sup.adopt()
    drive(sup, lambda: sup["slow"].restarts >= 3)
    assert sup["slow"].state is not State.FAILED and not lines.matching("gave up")


def test_a_restart_that_never_becomes_ready_is_stopped_and_counted(
        launcher: Launcher, lines: Lines, tmp_path: Path) -> None:
    policy = RestartPolicy(initial_backoff=0.05, max_backoff=0.05, ready_timeout=0.3,
                           max_failures=2)
    first = start(launcher, tmp_path, "deaf", ["sleep", "60"])
    sup = Supervisor(launcher, policy, report=lines)
    sup.watch("deaf", ready=Probe("never", lambda: False))
    sup.adopt()
    os.kill(first, signal.SIGKILL)
    drive(sup, lambda: sup["deaf"].restarts == 1 and sup["deaf"].state is State.STARTING)
    second = launcher["deaf"].pid
    drive(sup, lambda: sup["deaf"].state is State.FAILED)
    assert wait_until(lambda: gone(second))
    assert lines.matching(f"deaf (pid {second}) was not ready after 0.3s (Probe(never))")


def test_a_dead_childs_grandchildren_are_reaped_before_the_restart(
        launcher: Launcher, lines: Lines, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    parent = start(launcher, tmp_path, "parent", py(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "60"])
        open({str(pidfile)!r} + ".tmp", "w").write(str(p.pid))
        import os; os.replace({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(60)
    """))
    sup = Supervisor(launcher, FAST, report=lines)
    sup.watch("parent")
    sup.adopt()
    assert wait_until(pidfile.exists)
    grandchild = int(pidfile.read_text())
    pidfile.unlink()
    os.kill(parent, signal.SIGKILL)
    drive(sup, lambda: sup["parent"].restarts == 1)
    assert wait_until(lambda: gone(grandchild)), "a dead child's grandchild outlived it"


def test_a_child_stopped_on_purpose_is_not_restarted(launcher: Launcher, lines: Lines,
                                                     tmp_path: Path) -> None:
    start(launcher, tmp_path, "quiet", ["sleep", "60"])
    sup = Supervisor(launcher, FAST, report=lines)
    sup.watch("quiet")
    sup.adopt()
    launcher.stop("quiet")
    for _ in range(20):
        sup.step()
    assert sup["quiet"].state is State.STOPPED and sup["quiet"].restarts == 0
    assert lines.lines == []


def test_a_restart_that_cannot_start_counts_as_a_failure(launcher: Launcher, lines: Lines,
                                                         tmp_path: Path) -> None:
    program = tmp_path / "server.sh"
    program.write_text("#!/bin/sh\nexec sleep 60\n")
    program.chmod(0o755)
    first = start(launcher, tmp_path, "server", [str(program)])
    sup = Supervisor(launcher, FAST, report=lines)
    sup.watch("server", critical=True)
    sup.adopt()
    program.unlink()
    os.kill(first, signal.SIGKILL)
    gave_up = drive(sup, lambda: False)
    assert gave_up is not None and gave_up.name == "server"
    assert len(lines.matching("restarting server: server: cannot run")) == 4


def test_run_returns_none_on_stop_and_the_final_status_says_stopped(
        launcher: Launcher, lines: Lines, tmp_path: Path) -> None:
    start(launcher, tmp_path, "a", ["sleep", "60"])
    start(launcher, tmp_path, "b", py("raise SystemExit(4)"))
    path = tmp_path / "status.json"
    sup = Supervisor(launcher, RestartPolicy(initial_backoff=0.01, max_backoff=0.01,
                                             max_failures=1), path, report=lines)
    sup.watch("a")
    sup.watch("b")
    sup.adopt()
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert sup.run(stop, interval=0.01) is None
    sup.stopping()
    doc = json.loads(path.read_text())
    assert doc["stack"] == "stopping"
    assert [c["state"] for c in doc["components"]] == ["running", "failed"]
    launcher.stop_all()
    sup.stopped()
    doc = json.loads(path.read_text())
    assert doc["stack"] == "stopped" and doc["a1_pid"] == os.getpid()
    assert [(c["name"], c["state"]) for c in doc["components"]] == [("a", "stopped"),
                                                                   ("b", "failed")]
    assert doc["policy"]["max_failures"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".status")] == []


def test_the_status_file_has_the_documented_fields(launcher: Launcher, lines: Lines,
                                                   tmp_path: Path) -> None:
    pid = start(launcher, tmp_path, "cell-1", ["sleep", "60"])
    path = tmp_path / "status.json"
    sup = Supervisor(launcher, FAST, path, report=lines)
    sup.watch("cell-1", kind="cell")
    sup.adopt()
    doc = json.loads(path.read_text())
    assert set(doc) == {"format", "a1_pid", "updated", "stack", "policy", "components"}
    assert doc["format"] == 1 and doc["stack"] == "running"
    assert doc["policy"] == {"initial_backoff_s": 0.05, "max_backoff_s": 0.2,
                             "stable_after_s": 30.0, "max_failures": 5,
                             "failure_window_s": 60.0, "ready_timeout_s": 10.0}
    (comp,) = doc["components"]
    assert set(comp) == {"name", "kind", "state", "pid", "restarts", "last_exit", "since",
                         "critical"}
    assert comp["pid"] == pid and comp["kind"] == "cell" and comp["critical"] is False
    assert time.strptime(comp["since"][:19], "%Y-%m-%dT%H:%M:%S") and comp["since"][-1] == "Z"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_launcher_close_stops_a_restarted_child(tmp_path: Path, lines: Lines) -> None:
    lau = Launcher()
    try:
        first = start(lau, tmp_path, "a", ["sleep", "60"])
        start(lau, tmp_path, "b", ["sleep", "60"])
        sup = Supervisor(lau, FAST, report=lines)
        sup.watch("a")
        sup.watch("b")
        sup.adopt()
        os.kill(first, signal.SIGKILL)
        drive(sup, lambda: sup["a"].state is State.RUNNING and sup["a"].restarts == 1)
        assert lau.names() == ["a", "b"]  # the restart kept its place in the stop order
        restarted = lau["a"].pid
    finally:
        lau.close()
    assert wait_until(lambda: gone(restarted))


@given(st.floats(0.001, 5.0), st.floats(0.001, 100.0), st.integers(1, 200))
def test_backoff_doubles_and_never_exceeds_the_cap(initial: float, cap: float,
                                                   n: int) -> None:
    if initial > cap:
        initial, cap = cap, initial
    policy = RestartPolicy(initial_backoff=initial, max_backoff=cap)
    delays = [policy.backoff(i) for i in range(1, n + 1)]
    assert delays[0] == initial
    assert all(initial <= d <= cap for d in delays)
    assert all(b == min(cap, 2 * a) for a, b in itertools.pairwise(delays))


@pytest.mark.parametrize("bad", [{"initial_backoff": 0}, {"initial_backoff": 2,
                                                         "max_backoff": 1},
                                 {"max_failures": 0}, {"failure_window": 0},
                                 {"ready_timeout": -1}])
def test_a_nonsense_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**bad)  # type: ignore[arg-type]


def test_the_status_file_replaces_a_planted_symlink_not_its_target(
        launcher: Launcher, lines: Lines, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    path = tmp_path / "status.json"
    path.symlink_to(target)
    start(launcher, tmp_path, "a", ["sleep", "60"])
    sup = Supervisor(launcher, FAST, path, report=lines)
    sup.watch("a")
    sup.adopt()
    assert target.read_text() == "keep me"
    assert not path.is_symlink() and json.loads(path.read_text())["stack"] == "running"


def test_a_restart_that_raises_oserror_is_a_counted_failure(launcher: Launcher, lines: Lines,
                                                            tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pid = launcher.start(ProcessSpec("a", ["sleep", "60"], logs / "a.log")).pid
    sup = Supervisor(launcher, FAST, report=lines)
    sup.watch("a", critical=True)
    sup.adopt()
    (logs / "a.log").unlink()
    logs.rmdir()
    logs.write_text("not a directory")  # the log cannot be opened: the start fails
    os.kill(pid, signal.SIGKILL)
    gave_up = drive(sup, lambda: False)
    assert gave_up is not None and gave_up.name == "a"
    assert len(lines.matching("restarting a: File exists")) == 4
    assert sup["a"].last_exit is not None and sup["a"].last_exit.code is None
