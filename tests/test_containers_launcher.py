"""ContainerLauncher through real docker (skips with the reason without an engine or
images), and the process Launcher's pause/resume, which nemeses share with it."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1.containers import engine, names, network
from a1.containers.launcher import ContainerLauncher, ContainerPlacement
from a1.launcher import Launcher, LaunchError, ProcessSpec
from conformance.harness.waiting import poll
from e2e.docker_support import engine_or_skip, images_or_skip, run_objects

SLEEP = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]


@pytest.fixture
def client() -> Any:
    c = engine_or_skip()
    images_or_skip(c, ["control"])
    return c


@pytest.fixture
def state(tmp_path: Path) -> Path:
    # Spaces, quotes, a colon and a dollar: the bind mount, the log path and sh must all
    # take the path as it is.
    d = tmp_path / "state dir 'q' $HOME:x"
    d.mkdir()
    return d


@pytest.fixture
def launcher(client: Any, state: Path) -> Iterator[ContainerLauncher]:
    run = engine.run_id(state)

    def make_plan(taken: list[Any]) -> network.AddressPlan:
        return network.plan(run, ["c1"], network.free_subnets([*taken, *network.host_routes()]),
                            with_control=False, with_sidecar=False)

    def place(spec: ProcessSpec) -> ContainerPlacement:
        member = "envoy" if spec.name != "c1" else "c1"
        assert lau.plan is not None
        return ContainerPlacement("control", lau.plan.networks_of(member))

    lau = ContainerLauncher(run, state, place, client)
    try:
        lau.provision_networks(make_plan)
        yield lau
    finally:
        lau.close()
        assert run_objects(client, run) == []  # close leaves nothing it made


def spec(state: Path, name: str, argv: list[str]) -> ProcessSpec:
    return ProcessSpec(name=name, argv=argv, log_path=state / "logs" / f"{name}.log",
                       stop_timeout=2)


def test_runs_argv_logs_to_the_same_file_and_reports_exit(launcher: ContainerLauncher,
                                                          state: Path) -> None:
    proc = launcher.start(spec(state, "envoy", [sys.executable, "-c",
                                                "import os; print('uid', os.getuid(), "
                                                "os.environ['HOME']); raise SystemExit(3)"]))
    poll(lambda: not proc.alive(), timeout=30, what="the container to exit")
    assert proc.returncode == 3
    assert f"uid {__import__('os').getuid()} /tmp" in proc.log_tail()
    assert "exited with exit code 3" in proc.describe_exit()
    assert launcher.container_name("envoy") in proc.describe_exit()
    assert [p.name for p in launcher.unexpected_exits()] == ["envoy"]


def test_pause_resume_kill_and_restart_at_the_same_address(
        launcher: ContainerLauncher, state: Path, client: Any) -> None:
    proc = launcher.start(spec(state, "c1", SLEEP))
    poll(lambda: "started" in proc.log_tail(), timeout=30, what="the process to start")
    launcher.signal("c1", signal.SIGSTOP)
    assert launcher.paused("c1")
    launcher.resume("c1")
    assert not launcher.paused("c1")
    assert launcher.kill("c1") == -signal.SIGKILL  # as the process runtime reports it
    assert launcher["c1"].expected_exit and not launcher.unexpected_exits()
    old_id = proc.container.id
    new = launcher.restart("c1")
    assert new.alive() and new.container.id != old_id
    new.container.reload()
    ips = {n: v["IPAddress"] for n, v in
           new.container.attrs["NetworkSettings"]["Networks"].items()}
    assert launcher.plan is not None
    assert ips == launcher.plan.networks_of("c1")
    launcher.disconnect("c1", launcher.plan.cell_network("c1"))
    new.container.reload()
    assert new.container.attrs["NetworkSettings"]["Networks"] == {}
    launcher.connect("c1", launcher.plan.cell_network("c1"))
    new.container.reload()
    assert {n: v["IPAddress"] for n, v in
            new.container.attrs["NetworkSettings"]["Networks"].items()} == ips
    t0 = time.monotonic()
    assert launcher.stop("c1") is not None and time.monotonic() - t0 < 20


def test_refuses_a_foreign_container_with_its_name(launcher: ContainerLauncher, state: Path,
                                                   client: Any) -> None:
    foreign = client.containers.create(names.image_for("control"), ["true"],
                                       name=launcher.container_name("envoy"))
    try:
        with pytest.raises(LaunchError, match="exists and is not this stack's"):
            launcher.start(spec(state, "envoy", SLEEP))
        foreign.reload()  # untouched
    finally:
        engine.remove_container(foreign)


def test_close_leaves_another_runs_objects_alone(launcher: ContainerLauncher, state: Path,
                                                 client: Any) -> None:
    """A container labelled as A1's but of another run, or of this run but made by
    another (live) a1, survives this launcher's close."""
    other = client.containers.create(
        names.image_for("control"), ["true"], name=f"a1-other-{launcher.run}",
        labels={names.LABEL_PROJECT: names.PROJECT, names.LABEL_RUN: "another-run"})
    sibling = client.containers.create(
        names.image_for("control"), ["true"], name=f"a1-sibling-{launcher.run}",
        labels={**engine.labels(launcher.run, state), engine.LABEL_OWNER: "elsewhere/1/1"})
    try:
        launcher.start(spec(state, "envoy", SLEEP))
        launcher.close()
        other.reload()
        sibling.reload()
    finally:
        engine.remove_container(other)
        engine.remove_container(sibling)


def test_process_launcher_pause_resume(tmp_path: Path) -> None:
    with Launcher() as lau:
        lau.start(ProcessSpec("p", SLEEP, tmp_path / "p.log"))
        poll(lambda: "started" in lau["p"].log_tail(), timeout=30, what="p to start")
        assert not lau.paused("p")
        lau.pause("p")
        poll(lambda: lau.paused("p"), timeout=5, what="p stopped")
        lau.resume("p")
        poll(lambda: not lau.paused("p"), timeout=5, what="p running")
        assert lau["p"].alive()


def test_a_subnet_taken_meanwhile_means_a_new_plan(client: Any, tmp_path: Path) -> None:
    """Another run creates a network on our planned subnet between plan and create: the
    engine refuses the overlap, what was made is removed, and a new plan is created."""
    from docker.types import IPAMConfig, IPAMPool

    state = tmp_path / "s"
    state.mkdir()
    run = engine.run_id(state)
    free = network.free_subnets([*network.docker_subnets(client), *network.host_routes()])
    first, second = next(free), next(free)
    rival = client.networks.create(f"a1-test-rival-{run}", driver="bridge", ipam=IPAMConfig(
        pool_configs=[IPAMPool(subnet=str(second))]))
    plans = []

    def make_plan(taken: list[Any]) -> network.AddressPlan:
        # The first plan is made "before" the rival existed: it ignores what is taken.
        subs = iter([first, second]) if not plans else network.free_subnets(
            [*taken, *network.host_routes()])
        plans.append(network.plan(run, ["c1"], subs, with_control=False, with_sidecar=False))
        return plans[-1]

    lau = ContainerLauncher(run, state, lambda spec: ContainerPlacement("control", {}), client)
    try:
        plan = lau.provision_networks(make_plan)
        assert len(plans) == 2 and plan is plans[1]
        assert not {n.subnet for n in plan.networks} & {first, second}
        assert sorted(run_objects(client, run)) == sorted(f"network {n.name}"
                                                          for n in plan.networks)
    finally:
        lau.close()
        rival.remove()
