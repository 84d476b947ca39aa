"""``ContainerLauncher``: the :class:`a1.launcher.Launcher` interface with one docker
container per process, so the supervisor, the stack and the conformance nemeses run
the same code on either runtime.

Each ``start(spec)`` creates container ``a1-<run>-<spec.name>`` from the image of the
spec's :class:`ContainerPlacement` (kind, networks with fixed IPs, published ports),
runs it as the host's uid:gid with ``init`` (docker-init reaps and forwards signals),
and bind-mounts the state directory at its own absolute path, so every path the stack
writes into its files holds inside the container too. The process writes to
``spec.log_path`` through ``sh -c 'exec "$@" >>"$0" 2>&1'``, exactly as on the host,
so ``log_tail`` and ``with_log`` are unchanged. One waiter thread per container
(``docker wait``) records its exit, so ``alive()`` costs no API call.

A restart removes the old container and creates a fresh one, same name and addresses.
``close()`` (also at interpreter exit) removes every container and network labelled
with the run, whatever state they are in; if this process dies without running it
(SIGKILL), a sweeper process it started removes them (``a1.containers.reaper``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from a1.containers import engine, names, network
from a1.containers.network import AddressPlan
from a1.launcher import Launcher, LaunchError, ManagedProcess, Probe, ProcessSpec
from policies.core.errors import UserError

# The exec probe: GET a URL from inside a container (cells are on internal networks).
_EXEC_GET = ("import sys,urllib.request as u;"
             "sys.exit(0 if u.urlopen(sys.argv[1],timeout=1).status==200 else 1)")
_PYTHONS = {sys.executable, "python", "python3", os.path.basename(sys.executable)}


@dataclass(frozen=True)
class ContainerPlacement:
    """Where a process runs: its image kind, its networks ``{name: ip}`` (the first is
    the one it is created on) and the ports published on 127.0.0.1 with the same number."""

    kind: str
    networks: dict[str, str]
    ports: tuple[int, ...] = ()
    user: str | None = None  # None: the host's uid:gid


@dataclass
class ContainerProcess(ManagedProcess):
    """A ManagedProcess whose process is a container; ``popen`` is unused (None)."""

    container: Any = None
    placement: ContainerPlacement | None = None
    host_pid: int = 0
    _code: int | None = None
    _exited: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.host_pid

    @property
    def container_name(self) -> str:
        return str(self.container.name)

    def alive(self) -> bool:
        return not self._exited.is_set()

    @property
    def returncode(self) -> int | None:
        return self._code if self._exited.is_set() else None

    def describe_exit(self) -> str:
        where = f"container {self.container_name}"
        code = self.returncode
        if code is None:
            return f"{self.name} ({where}) is running"
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"{self.name} ({where}) exited with {how}"

    def _set_exit(self, code: int) -> None:
        # docker-init reports a child killed by signal N as 128+N: say it as the process
        # runtime does (negative), so nemeses compare codes the same way on both.
        if 128 < code <= 128 + 64:
            with contextlib.suppress(ValueError):
                code = -signal.Signals(code - 128).value
        if not self._exited.is_set():
            self._code = code
            self._exited.set()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the exit the waiter thread records; also ask the engine now and then,
        for a container that never started (so has no waiter) or that is gone."""
        from docker.errors import NotFound

        deadline = time.monotonic() + timeout
        while not self._exited.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            try:
                self.container.reload()
                state = self.container.attrs["State"]
                if state.get("Status") not in ("running", "paused", "restarting"):
                    self._set_exit(int(state.get("ExitCode") or 0))
            except NotFound:
                self._set_exit(255)
            except Exception:
                pass
            if time.monotonic() >= deadline:
                break
        return self.returncode


class ContainerLauncher(Launcher):
    """Starts, watches and stops named processes as containers of one run."""

    def __init__(self, run: str, state_dir: Path,
                 placement: Callable[[ProcessSpec], ContainerPlacement],
                 client: Any | None = None, image_for: Callable[[str], str] = names.image_for,
                 mounts: Sequence[Any] = ()) -> None:
        super().__init__(use_pdeathsig=False)
        atexit.unregister(self.stop_all)  # close() is what must run at exit here
        self.run = run
        self.state_dir = state_dir
        self.placement = placement
        self.client = client if client is not None else engine.connect("a1 up --runtime docker")
        self.image_for = image_for
        self.extra_mounts = list(mounts)
        self.plan: AddressPlan | None = None
        self._reaper = self._start_reaper()
        atexit.register(self.close)

    def _start_reaper(self) -> subprocess.Popen[bytes]:
        """The sweeper that removes this run's objects if this process dies uncleanly
        (``a1.containers.reaper``): it waits for end-of-file on the pipe only we hold."""
        log = self.state_dir / "logs" / "reaper.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "a1.containers.reaper", "--run", self.run,
                 "--owner", engine.owner_token()],
                stdin=subprocess.PIPE, stdout=out, stderr=out, start_new_session=True)

    def container_name(self, name: str) -> str:
        return f"a1-{self.run}-{name}"

    # -- networks ---------------------------------------------------------------------

    def create_networks(self, plan: AddressPlan) -> None:
        """Create ``plan``'s networks (labelled with the run); the plan is kept for
        reconnects. A subnet taken meanwhile by someone else is the caller's retry."""
        from docker.types import IPAMConfig, IPAMPool

        self.plan = plan
        for net in plan.networks:
            self.client.networks.create(
                net.name, driver="bridge", internal=net.internal, check_duplicate=True,
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(net.subnet),
                                                       gateway=net.gateway)]),
                labels=engine.labels(self.run, self.state_dir, f"network-{net.role}"))

    def provision_networks(self, make_plan: Callable[[list[IPv4Network]], AddressPlan],
                           attempts: int = 5) -> AddressPlan:
        """Plan against the subnets in use now and create the networks; when another run
        took one of them meanwhile (the engine refuses overlapping pools), remove what
        was made and plan again. Returns the plan that was created."""
        from docker.errors import APIError

        failed: list[IPv4Network] = []
        for attempt in range(attempts):
            plan = make_plan([*network.docker_subnets(self.client), *failed])
            try:
                self.create_networks(plan)
                return plan
            except APIError as err:
                for net in engine.our_objects(self.client, self.run, engine.owner_token())[1]:
                    engine.remove_network(net)
                if "overlap" not in str(err) or attempt == attempts - 1:
                    raise UserError(f"--runtime docker: cannot create the stack's networks: "
                                    f"{_one_line(err)}") from None
                failed += [n.subnet for n in plan.networks]
        raise AssertionError("unreachable")

    def disconnect(self, name: str, network: str) -> None:
        """Cut ``name``'s container off ``network`` (a fault: its links there fail)."""
        self.client.networks.get(network).disconnect(self[name].container, force=True)

    def connect(self, name: str, network: str) -> None:
        """Reattach ``name`` to ``network`` at its planned address."""
        placement = self[name].placement
        ip = placement.networks[network] if placement else None
        self.client.networks.get(network).connect(self[name].container, ipv4_address=ip)

    # -- starting ---------------------------------------------------------------------

    def start(self, spec: ProcessSpec) -> ManagedProcess:
        """Create and start ``spec``'s container. The lock is held only to check and to
        record, so several starts overlap (``start_many``); a container created after
        ``close()`` began is removed at once."""
        with self._lock:
            if self._closed:
                raise LaunchError("launcher is closed")
            old = self._procs.get(spec.name)
            if old is not None and old.alive():
                raise LaunchError(f"{spec.name} is already running ({old.describe_exit()})")
            placement = self.placement(spec)
        cname = self.container_name(spec.name)
        self._remove_own(cname)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as log:
            offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} a1 launcher: {' '.join(spec.argv)} "
                      f"(container {cname})\n".encode())
        proc = ContainerProcess(spec, None, log_offset=offset,  # type: ignore[arg-type]
                                placement=placement)
        try:
            proc.container = self._create(spec, placement, cname)
            with self._lock:
                self._procs[spec.name] = proc
                if self._closed:
                    engine.remove_container(proc.container)
                    raise LaunchError("launcher is closed")
            proc.container.start()
            proc.container.reload()
            proc.host_pid = int(proc.container.attrs["State"].get("Pid") or 0)
        except LaunchError:
            proc._set_exit(127)
            raise
        except Exception as err:
            proc._set_exit(127)
            with self._lock:
                self._procs[spec.name] = proc
            raise LaunchError(f"{spec.name}: cannot start container {cname}: "
                              f"{_one_line(err)}") from None
        threading.Thread(target=self._wait, args=(proc,), daemon=True,
                         name=f"a1-wait-{spec.name}").start()
        return proc

    @staticmethod
    def container_argv(spec: ProcessSpec) -> list[str]:
        """The container's command: ``spec.argv`` (the host's Python is the image's
        ``python3``) with its output appended to ``spec.log_path``, as on the host."""
        argv = list(spec.argv)
        if argv and argv[0] in _PYTHONS:
            argv[0] = "python3"
        return ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(spec.log_path), *argv]

    def start_many(self, specs: Sequence[ProcessSpec]) -> list[ManagedProcess]:
        """Create and start the containers at once (each is mostly engine round trips);
        every one started is recorded before an error is raised, so close() finds it."""
        if len(specs) < 2:
            return [self.start(s) for s in specs]
        with ThreadPoolExecutor(max_workers=len(specs), thread_name_prefix="a1-start") as pool:
            futures = [pool.submit(self.start, s) for s in specs]
        return [f.result() for f in futures]

    def _create(self, spec: ProcessSpec, placement: ContainerPlacement, cname: str) -> Any:
        from docker.types import EndpointConfig, Mount

        command = self.container_argv(spec)
        state = str(self.state_dir)
        mounts = [Mount(target=state, source=state, type="bind"), *self.extra_mounts]
        nets = list(placement.networks.items())
        first, first_ip = nets[0]
        api = self.client.api
        container = self.client.containers.create(
            self.image_for(placement.kind), command, name=cname, hostname=spec.name,
            user=placement.user or f"{os.getuid()}:{os.getgid()}",
            environment={"PYTHONUNBUFFERED": "1", "HOME": "/tmp", **(spec.env or {})},
            working_dir=str(spec.cwd or "/"), init=True, mounts=mounts,
            labels=engine.labels(self.run, self.state_dir, spec.name),
            ports={f"{p}/tcp": ("127.0.0.1", p) for p in placement.ports},
            network=first,
            networking_config={first: EndpointConfig(api._version, ipv4_address=first_ip)},
            stop_signal="SIGTERM")
        try:
            for net, ip in nets[1:]:
                self.client.networks.get(net).connect(container, ipv4_address=ip)
        except Exception:
            engine.remove_container(container)
            raise
        return container

    def _remove_own(self, cname: str) -> None:
        """Remove a container of this run with ``cname`` (an earlier start); refuse one
        that is not ours."""
        from docker.errors import NotFound

        try:
            c = self.client.containers.get(cname)
        except NotFound:
            return
        lab = c.labels or {}
        if lab.get(names.LABEL_RUN) != self.run or lab.get(engine.LABEL_STATE_DIR) != str(
                self.state_dir):
            raise LaunchError(f"container {cname} exists and is not this stack's; remove it")
        engine.remove_container(c)

    def _wait(self, proc: ContainerProcess) -> None:
        try:
            code = int(proc.container.wait(timeout=None).get("StatusCode", 255))
        except Exception:  # removed under us, or the engine went away
            code = 255
        proc._set_exit(code)

    def exec_probe(self, name: str, url: str) -> Probe:
        """GET ``url`` answers 200, asked from inside ``name``'s container (for
        processes on internal networks the host cannot reach)."""

        def check() -> bool:
            proc = self[name]
            if not proc.alive():
                return False
            res = proc.container.exec_run(["python3", "-I", "-S", "-c", _EXEC_GET, url],
                                          user=f"{os.getuid()}:{os.getgid()}")
            return bool(res.exit_code == 0)

        return Probe(f"GET {url} -> 200 (inside container {self.container_name(name)})",
                     check)

    # -- faults -------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Freeze every process of ``name`` (docker pause: the cgroup freezer)."""
        self[name].container.pause()

    def resume(self, name: str) -> None:
        self[name].container.unpause()

    def paused(self, name: str) -> bool:
        proc = self[name]
        proc.container.reload()
        return bool(proc.container.attrs["State"].get("Paused"))

    def signal(self, name: str, sig: int) -> None:
        """``sig`` to the process (through docker-init); SIGSTOP/SIGCONT pause/resume."""
        proc = self[name]
        if sig == signal.SIGSTOP:
            self.pause(name)
            return
        if sig == signal.SIGCONT:
            with contextlib.suppress(Exception):
                self.resume(name)
            return
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            proc.expected_exit = True
        with contextlib.suppress(Exception):
            proc.container.kill(signal=int(sig))

    # -- stopping -----------------------------------------------------------------------

    def kill(self, name: str) -> int:
        proc = self._container(name)
        proc.expected_exit = True
        with contextlib.suppress(Exception):
            proc.container.kill()
        code = proc.wait_exit(30)
        engine.remove_container(proc.container)
        return code if code is not None else -signal.SIGKILL

    def stop(self, name: str, timeout: float | None = None) -> int | None:
        proc = self._container(name)
        proc.expected_exit = True
        wait = proc.spec.stop_timeout if timeout is None else timeout
        if proc.alive():
            with contextlib.suppress(Exception):
                if self.paused(name):
                    self.resume(name)
            with contextlib.suppress(Exception):
                proc.container.stop(timeout=max(1, round(wait)))
            proc.wait_exit(wait + 10)
        with contextlib.suppress(Exception):
            engine.remove_container(proc.container)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop Envoy first (no new requests), then every other container at once: a
        docker stop is mostly waiting on the engine, and serial stops add up."""
        with self._lock:
            procs = list(reversed(self._procs.values()))

        def stop(proc: ManagedProcess) -> None:
            try:
                self.stop(proc.name)
            except Exception as err:  # keep stopping the others
                print(f"a1 launcher: stopping {proc.name}: {err}", file=sys.stderr)

        first = [p for p in procs if p.name == "envoy"]
        for proc in first:
            stop(proc)
        rest = [p for p in procs if p not in first]
        if rest:
            with ThreadPoolExecutor(max_workers=len(rest),
                                    thread_name_prefix="a1-stop") as pool:
                list(pool.map(stop, rest))

    def _container(self, name: str) -> ContainerProcess:
        proc = self[name]
        assert isinstance(proc, ContainerProcess)
        return proc

    def close(self) -> None:
        """Stop every container newest first, then remove everything of the run this a1
        made (containers in any state, then networks). Idempotent; runs at exit too."""
        with self._lock:
            self._closed = True
        try:
            self.stop_all()
        finally:
            try:
                # Only what this a1 made: a refused second `a1 up` of the same state
                # directory must not take down the stack that runs.
                engine.remove_owned(self.client, self.run, engine.owner_token())
            except Exception as err:
                print(f"a1: removing run {self.run}'s containers and networks: "
                      f"{_one_line(err)}", file=sys.stderr)
            atexit.unregister(self.close)
            # Done: the sweeper finds nothing of ours and exits (collected off this path).
            reaper = self._reaper
            if reaper.stdin is not None and not reaper.stdin.closed:
                with contextlib.suppress(OSError):
                    reaper.stdin.close()
                threading.Thread(target=reaper.wait, daemon=True, name="a1-reaper").start()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:300]
