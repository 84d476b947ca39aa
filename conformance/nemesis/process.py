"""Process nemeses: kill, pause and restart the stack's processes by launcher name.

Each builder returns a ``Fault`` over the launcher's primitives (``a1/launcher.py``),
so the same nemesis runs on either runtime. The process launcher starts every child
in its own session and process group and pauses the whole group (SIGSTOP), so a
pause also stops a child's own children and they resume together; the docker
runtime's ``ContainerLauncher`` pauses the container (the cgroup freezer), kills and
restarts it under the same name and addresses.

A SIGSTOPped process outlives a failed run badly: it holds its ports and files and
never reads a SIGTERM. So every pause is recorded in a module registry until its
repair, and :func:`resume_all` (which the runner calls at teardown; it is also an
``atexit`` hook, registered at the first pause so it runs before the launcher's
own ``stop_all``) resumes whatever is still paused.

``inject`` returns only once the fault is in effect (a paused process's state is
``T``; a killed process has been reaped), so the fault window starts when the fault
does, not when a signal happened to be sent.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from dataclasses import dataclass

from a1.launcher import Launcher, ManagedProcess
from conformance.harness.waiting import poll
from conformance.nemesis.base import Fault, Target
from policies.core.errors import UserError

SETTLE_TIMEOUT = 5.0  # seconds for a signalled process to reach the state we asked for
READY_TIMEOUT = 60.0  # seconds for a restarted process to pass its readiness probe


def kill(target: Target, name: str, ready_timeout: float = READY_TIMEOUT) -> Fault:
    """SIGKILL ``name``'s process group; the repair restarts it and waits until ready."""
    launcher = target.launcher
    _check_names(launcher, [name])
    return Fault(
        name=f"kill:{name}",
        inject=lambda: _kill(launcher, name),
        repair=lambda: _restart(launcher, name, ready_timeout),
        expect=f"{name} is gone until the repair restarts it; the rest of the stack keeps "
               "serving and clients converge after the restart",
    )


def pause(target: Target, *names: str) -> Fault:
    """SIGSTOP every named process group; the repair SIGCONTs them (and teardown does,
    through :func:`resume_all`, if the repair never runs)."""
    launcher = target.launcher
    if not names:
        raise UserError("pause: name at least one process")
    _check_names(launcher, names)
    return Fault(
        name="pause:" + ",".join(names),
        inject=lambda: _pause(launcher, names),
        repair=lambda: _resume(launcher, names),
        expect=f"{', '.join(names)} frozen (SIGSTOP): the data plane serves without them; "
               "after SIGCONT they catch up",
    )


def restart(target: Target, name: str, ready_timeout: float = READY_TIMEOUT) -> Fault:
    """Stop ``name`` (SIGTERM, then SIGKILL), start it again and wait until ready, all
    in the inject; the repair has nothing left to undo."""
    launcher = target.launcher
    _check_names(launcher, [name])
    return Fault(
        name=f"restart:{name}",
        inject=lambda: _restart(launcher, name, ready_timeout),
        repair=lambda: None,
        expect=f"{name} restarts with the same configuration; the stack converges",
    )


# -- the pause registry ---------------------------------------------------------------


@dataclass(frozen=True)
class _Paused:
    launcher: Launcher
    name: str
    proc: ManagedProcess  # the run we stopped: a restart under the same name is not paused


_paused: dict[int, _Paused] = {}  # by process-group id
_lock = threading.Lock()
_atexit_registered = False


def paused() -> list[str]:
    """Names of the processes a pause has stopped and nothing has resumed yet."""
    with _lock:
        return [p.name for p in _paused.values()]


def resume_all() -> list[str]:
    """SIGCONT every process still paused; returns their names. Idempotent; for the
    runner's teardown (and run at interpreter exit)."""
    with _lock:
        entries = list(_paused.values())
        _paused.clear()
    resumed = []
    for entry in entries:
        # By the paused run's own group, not by name: a restart under the same name
        # is another process. ``alive()`` polls that Popen, so the pid is not reused.
        if entry.proc.alive():
            container = getattr(entry.proc, "container", None)
            if container is not None:  # the docker runtime: that very container
                with contextlib.suppress(Exception):
                    container.unpause()
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(entry.proc.pid, signal.SIGCONT)
            resumed.append(entry.name)
    return resumed


# -- actions --------------------------------------------------------------------------


def _kill(launcher: Launcher, name: str) -> None:
    proc = launcher[name]
    with _lock:
        _paused.pop(proc.pid, None)  # killed while paused: nothing left to resume
    launcher.kill(name)


def _restart(launcher: Launcher, name: str, ready_timeout: float) -> None:
    launcher.restart(name, timeout=ready_timeout)


def _pause(launcher: Launcher, names: tuple[str, ...]) -> None:
    global _atexit_registered
    procs = [launcher[n] for n in names]
    for proc in procs:
        if not proc.alive():
            raise UserError(f"pause: {launcher.death_report(proc)}")
    with _lock:
        if not _atexit_registered:
            atexit.register(resume_all)
            _atexit_registered = True
        for name, proc in zip(names, procs, strict=True):
            _paused[proc.pid] = _Paused(launcher, name, proc)
    for name in names:
        launcher.pause(name)
    for name, proc in zip(names, procs, strict=True):
        poll(lambda n=name, p=proc: not p.alive() or launcher.paused(n),
             timeout=SETTLE_TIMEOUT, interval=0.01, what=f"{proc.name} (pid {proc.pid}) to stop")


def _resume(launcher: Launcher, names: tuple[str, ...]) -> None:
    """SIGCONT every name, even when one fails (then the first error is raised): a
    process left stopped would fail every later scenario."""
    errors: list[Exception] = []
    for name in names:
        try:
            proc = launcher[name]
            with _lock:
                _paused.pop(proc.pid, None)
            launcher.resume(name)
            poll(lambda n=name: not launcher.paused(n), timeout=SETTLE_TIMEOUT,
                 interval=0.01, what=f"{name} (pid {proc.pid}) to resume")
        except Exception as err:
            errors.append(err)
    if errors:
        raise errors[0]


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``R``, ``S``, ``T`` stopped, ``Z``…),
    None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _check_names(launcher: Launcher, names: list[str] | tuple[str, ...]) -> None:
    known = launcher.names()
    for name in names:
        if name not in known:
            raise UserError(f"unknown process {name!r}; known: {', '.join(known) or '(none)'}")
