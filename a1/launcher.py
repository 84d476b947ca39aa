"""Process supervision shared by ``a1 up``, the e2e tests and the conformance suite.

Guarantees:
- Each child runs in its own session and process group (``start_new_session``),
  so a terminal's Ctrl-C reaches only ``a1``, which then stops the children in
  reverse start order, and stopping a child signals its whole group
  (``killpg``): grandchildren cannot linger.
- On Linux each child gets ``PR_SET_PDEATHSIG=SIGKILL`` (``prctl`` through
  ctypes), so children die even if ``a1`` itself is SIGKILLed. The signal fires
  when the *thread* that forked the child exits, so every child is forked by one
  long-lived spawner thread owned by the launcher, whichever thread calls
  :meth:`Launcher.start`. It is set by a tiny exec wrapper (``python -I -S -c``)
  rather than ``preexec_fn``, which is unsafe in a process with threads (gRPC,
  test clients); the wrapper also exits at once if its parent is already gone.
- Readiness is polled (``Probe``), never slept for. A child that exits while we
  wait, or later without being asked to, is reported by name with its exit code
  and the tail of its log.
- A child restarted under the same name keeps its place in the stop order, and
  ``close`` first lets a spawn in flight finish and be recorded, so a child
  forked while a shutdown begins is stopped too, not orphaned.

Supervision (``a1/supervisor.py``, used by ``a1 up``) builds on these: a child
that dies unasked is reported with its log tail and restarted alone, with capped
exponential backoff, until too many failures in a window; the others are never
touched. Only Ctrl-C or SIGTERM to ``a1`` (→ :meth:`Launcher.close`) stops
everything, or giving up on Envoy or the sidecar, which ``a1 up`` reports and
exits non-zero for. One-shot runs where any death is fatal (the
benchmarks) poll :meth:`Launcher.unexpected_exits` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from policies.core.errors import UserError

# Runs in the child between fork and exec: set the parent-death signal, make sure
# the parent has not died already (the race prctl cannot close), exec the target.
_PDEATHSIG_EXEC = (
    "import ctypes,os,sys\n"
    "libc=ctypes.CDLL(None,use_errno=True)\n"
    "if libc.prctl(1,9,0,0,0)!=0:\n"  # PR_SET_PDEATHSIG=1, SIGKILL=9
    "    sys.stderr.write('a1 launcher: prctl(PR_SET_PDEATHSIG) failed\\n')\n"
    "if os.getppid()!=int(sys.argv[1]):\n"
    "    os._exit(1)\n"
    "try:\n"
    "    os.execvp(sys.argv[2],sys.argv[2:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('a1 launcher: cannot run %s: %s\\n'%(sys.argv[2],e.strerror))\n"
    "    os._exit(127)\n"
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but \t and \n


class LaunchError(UserError):
    """A child failed to start, to become ready, or died (exit code 1)."""


class Probe:
    """A readiness check: a callable returning True once the process serves."""

    def __init__(self, description: str, check: Callable[[], bool]) -> None:
        self.description = description
        self._check = check

    def __call__(self) -> bool:
        try:
            return self._check()
        except Exception:
            return False

    def __repr__(self) -> str:
        return f"Probe({self.description})"


def http_probe(url: str, expect: int = 200, cafile: Path | None = None,
               timeout: float = 1.0) -> Probe:
    """GET ``url`` answers ``expect``."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
                return int(resp.status) == expect
        except urllib.error.HTTPError as err:
            return int(err.code) == expect

    return Probe(f"GET {url} -> {expect}", check)


def grpc_health_probe(address: str, service: str = "", timeout: float = 1.0) -> Probe:
    """grpc.health.v1 Check(service) answers SERVING."""

    def check() -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(address) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    return Probe(f"gRPC health {address} SERVING", check)


def tcp_probe(host: str, port: int, timeout: float = 0.5) -> Probe:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    return Probe(f"TCP {host}:{port} accepts", check)


# -- ports ----------------------------------------------------------------------------


def find_executable(name: str) -> str | None:
    """``name`` on PATH, else beside this interpreter (where pip put ``envoy``, say,
    when a version manager's shims have not been refreshed)."""
    found = shutil.which(name)
    if found is None and os.sep not in name:
        found = shutil.which(name, path=sysconfig.get_path("scripts"))
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (held together while chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def check_ports_free(ports: Iterable[tuple[str, str, int]]) -> None:
    """Raise a LaunchError naming the first (label, host, port) someone already listens on."""
    for label, host, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # SO_REUSEADDR, as Envoy and http.server use: TIME_WAIT leftovers are not a conflict.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as err:
                why = "already in use" if err.errno == errno.EADDRINUSE else err.strerror
                raise LaunchError(f"port {host}:{port} ({label}) is {why}") from None


# -- processes ------------------------------------------------------------------------


@dataclass
class ProcessSpec:
    """How to run one child. ``argv[0]`` is looked up on PATH."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Probe | None = None
    env: Mapping[str, str] | None = None  # added to the launcher's environment
    cwd: Path | None = None
    stop_timeout: float = 5.0


@dataclass
class ManagedProcess:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)
    expected_exit: bool = False  # we stopped or killed it on purpose
    log_offset: int = 0  # where this run's output starts in the (appended) log

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def describe_exit(self) -> str:
        code = self.popen.poll()
        if code is None:
            return f"{self.name} (pid {self.pid}) is running"
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{self.name} (pid {self.pid}) exited with {how}"

    def with_log(self, head: str) -> str:
        """``head``, then where the log is and its tail: what a failure report shows."""
        tail = self.log_tail()
        return f"{head}; log {self.spec.log_path}" + (f":\n{tail}" if tail else "")

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.spec.log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self.log_offset, size - 8192))
                data = f.read()
        except OSError:
            return ""
        text = data.decode(errors="replace")
        # Shown on the operator's terminal: a logged request path must not smuggle
        # escape sequences (colours, window titles, cursor moves) into it.
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
        return "\n".join(text.splitlines()[-lines:])


def _pdeathsig_supported() -> bool:
    return sys.platform.startswith("linux")


class Launcher:
    """Starts, watches and stops a set of named child processes."""

    def __init__(self, use_pdeathsig: bool = True) -> None:
        self.use_pdeathsig = use_pdeathsig and _pdeathsig_supported()
        self._procs: dict[str, ManagedProcess] = {}
        self._lock = threading.RLock()
        # One long-lived thread forks every child (see the module doc on PDEATHSIG).
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="a1-spawner")
        self._closed = False
        atexit.register(self.stop_all)

    # -- starting ---------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> ManagedProcess:
        with self._lock:
            if self._closed:
                raise LaunchError("launcher is closed")
            old = self._procs.get(spec.name)
            if old is not None and old.alive():
                raise LaunchError(f"{spec.name} is already running (pid {old.pid})")
            exe = find_executable(spec.argv[0])
            if exe is None:
                raise LaunchError(f"{spec.name}: cannot run {spec.argv[0]!r}: not found on PATH")
            return self._spawner.submit(self._spawn, spec, exe).result()

    def start_many(self, specs: Sequence[ProcessSpec]) -> list[ManagedProcess]:
        """Start each of ``specs`` (no order among them); the docker runtime overlaps them."""
        return [self.start(spec) for spec in specs]

    def _spawn(self, spec: ProcessSpec, exe: str) -> ManagedProcess:
        proc = self._popen(spec, exe)
        # Recorded here, in the spawner thread, not by start(): a start() interrupted
        # while waiting must not lose a child that was forked. (The GIL makes this
        # one dict store atomic; start() holds the lock meanwhile.)
        self._procs[spec.name] = proc
        return proc

    def _popen(self, spec: ProcessSpec, exe: str) -> ManagedProcess:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [exe, *spec.argv[1:]]
        if self.use_pdeathsig:
            argv = [sys.executable, "-I", "-S", "-c", _PDEATHSIG_EXEC, str(os.getpid()), *argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(spec.env or {})}
        with open(spec.log_path, "ab") as log:
            offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} a1 launcher: {' '.join(spec.argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=spec.cwd, env=env, start_new_session=True, close_fds=True,
            )
        return ManagedProcess(spec, popen, log_offset=offset)

    def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 30.0,
                   interval: float = 0.05) -> None:
        """Poll every named child's probe until all pass; fail fast if one exits."""
        with self._lock:
            pending = [self._procs[n] for n in (names if names is not None else self._procs)]
        deadline = time.monotonic() + timeout
        while True:
            for proc in list(pending):
                if not proc.alive():
                    raise LaunchError(self._death_report(proc, "while starting"))
                if proc.spec.ready is None or proc.spec.ready():
                    pending.remove(proc)
            if not pending:
                return
            if time.monotonic() > deadline:
                waiting = "; ".join(f"{p.name}: {p.spec.ready!r}" for p in pending)
                tails = "\n".join(f"--- {p.name} ({p.spec.log_path}):\n{p.log_tail()}"
                                  for p in pending)
                raise LaunchError(f"not ready after {timeout:.0f}s: {waiting}\n{tails}")
            time.sleep(interval)

    # -- inspecting -------------------------------------------------------------------

    def __getitem__(self, name: str) -> ManagedProcess:
        with self._lock:
            return self._procs[name]

    def names(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    def unexpected_exits(self) -> list[ManagedProcess]:
        with self._lock:
            return [p for p in self._procs.values() if not p.expected_exit and not p.alive()]

    def _death_report(self, proc: ManagedProcess, when: str) -> str:
        return proc.with_log(f"{proc.describe_exit()} {when}")

    def death_report(self, proc: ManagedProcess) -> str:
        return self._death_report(proc, "unexpectedly")

    # -- stopping ---------------------------------------------------------------------

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (e.g. SIGSTOP for a fault)."""
        proc = self[name]
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            proc.expected_exit = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def pause(self, name: str) -> None:
        """Freeze the child's whole group (SIGSTOP); the docker runtime's is docker pause,
        so a nemesis pauses a component the same way on either runtime."""
        self.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.signal(name, signal.SIGCONT)

    def paused(self, name: str) -> bool:
        """The child is stopped (state T in /proc), i.e. paused."""
        try:
            stat = Path(f"/proc/{self[name].pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

    def kill(self, name: str) -> int:
        """SIGKILL the child's group at once (a fault, not a shutdown); returns its code."""
        proc = self[name]
        self.signal(name, signal.SIGKILL)
        code = proc.popen.wait()
        self._reap_group(proc)
        return code

    def stop(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM the child's group, then SIGKILL after ``timeout``; returns its code."""
        proc = self[name]
        proc.expected_exit = True
        if proc.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a SIGSTOPped child must run to exit
            try:
                proc.popen.wait(timeout if timeout is not None else proc.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait()
        self._reap_group(proc)
        return proc.popen.returncode

    @staticmethod
    def _reap_group(proc: ManagedProcess) -> None:
        """The group leader is gone; make sure nothing else in its group survives."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def restart(self, name: str, timeout: float = 30.0) -> ManagedProcess:
        """Stop (if running) and start again with the same spec, then wait until ready."""
        proc = self[name]
        self.stop(name)
        new = self.start(proc.spec)
        self.wait_ready([name], timeout=timeout)
        return new

    def stop_all(self) -> None:
        """Stop every child, newest first. Idempotent; also runs at interpreter exit."""
        with self._lock:
            procs = list(self._procs.values())
        for proc in reversed(procs):
            try:
                self.stop(proc.name)
            except Exception as err:  # keep stopping the others
                print(f"a1 launcher: stopping {proc.name}: {err}", file=sys.stderr)

    def close(self) -> None:
        # A start() interrupted (Ctrl-C) while its child was being forked: let the
        # spawner finish and record it, so stop_all sees it. (Not shutdown(): the
        # spawner thread's exit would SIGKILL every child through PDEATHSIG.)
        with contextlib.suppress(RuntimeError):
            self._spawner.submit(lambda: None).result()
        self.stop_all()
        with self._lock:
            self._closed = True
        self._spawner.shutdown(wait=True)
        atexit.unregister(self.stop_all)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
