"""The engine side of the docker runtime: the one-line errors a user can cause, who owns
a run, and that leftovers are removed only when they are provably ours and orphaned."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a1.containers import engine, names
from e2e.docker_support import engine_or_skip, images_or_skip
from policies.core.errors import UserError


def test_run_id_is_stable_and_distinct(tmp_path: Path) -> None:
    assert engine.run_id(tmp_path) == engine.run_id(Path(str(tmp_path)))
    assert engine.run_id(tmp_path / "a") != engine.run_id(tmp_path / "b")
    assert len(engine.run_id(tmp_path)) == 10


def test_owner_alive_only_until_provably_dead() -> None:
    assert engine.owner_alive(engine.owner_token())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = engine.owner_token(child.pid)
    child.wait()
    assert not engine.owner_alive(token)  # gone: its objects may be removed
    # Tokens we cannot judge count as alive: never remove what might be someone's.
    host, pid, start = engine.owner_token().split("/")
    assert engine.owner_alive(f"another-host/{pid}/{start}")
    assert engine.owner_alive("")
    assert engine.owner_alive("garbage/x/y")
    assert not engine.owner_alive(f"{host}/{pid}/{int(start) + 1}")  # a recycled pid


def test_unreachable_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(UserError) as err:
        engine.connect("a1 up --runtime docker")
    text = str(err.value)
    assert "\n" not in text and "unix:///nonexistent/docker.sock" in text
    assert "DOCKER_HOST" in text and "start dockerd" in text


def test_up_without_engine_exits_1_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    proc = subprocess.run([sys.executable, "-m", "a1", "up", "--runtime", "docker",
                           "--state-dir", str(tmp_path / "s")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "start dockerd" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- with an engine ----------------------------------------------------------------------


@pytest.fixture
def client() -> Any:
    return engine_or_skip()


@pytest.fixture
def made(client: Any) -> Iterator[list[Any]]:
    """Containers a test makes; removed afterwards whatever happened."""
    out: list[Any] = []
    yield out
    for c in out:
        engine.remove_container(c)


def _container(client: Any, made: list[Any], name: str, labels: dict[str, str]) -> Any:
    images_or_skip(client, ["control"])
    c = client.containers.create(names.image_for("control"), ["true"], name=name,
                                 labels=labels)
    made.append(c)
    return c


def test_missing_image_names_it_and_the_fix(client: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names, "image_for", lambda kind: f"a1-no-such-{kind}:0")
    with pytest.raises(UserError, match=r"image a1-no-such-cell:0 is missing: run `a1 images "
                                        r"build`"):
        engine.check_images(client, ["cell"])


def test_leftovers_of_a_dead_owner_are_removed(client: Any, made: list[Any],
                                                tmp_path: Path) -> None:
    run = engine.run_id(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    labels = {**engine.labels(run, tmp_path, "envoy"),
              engine.LABEL_OWNER: engine.owner_token(child.pid)}
    c = _container(client, made, f"a1-{run}-envoy", labels)
    notes = engine.clear_leftovers(client, run, tmp_path, [c.name], [])
    assert notes and "1 container(s)" in notes[0]
    assert not client.containers.list(all=True, filters={"name": c.name})


def test_live_owner_is_refused_and_untouched(client: Any, made: list[Any],
                                              tmp_path: Path) -> None:
    run = engine.run_id(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        labels = {**engine.labels(run, tmp_path, "envoy"),
                  engine.LABEL_OWNER: engine.owner_token(sleeper.pid)}
        c = _container(client, made, f"a1-{run}-envoy", labels)
        with pytest.raises(UserError, match=r"another a1 .* runs this stack"):
            engine.clear_leftovers(client, run, tmp_path, [c.name], [])
        c.reload()  # still there
    finally:
        sleeper.kill()
        sleeper.wait()


def test_foreign_container_with_our_name_is_refused_and_untouched(
        client: Any, made: list[Any], tmp_path: Path) -> None:
    run = engine.run_id(tmp_path)
    c = _container(client, made, f"a1-{run}-envoy", {})
    with pytest.raises(UserError, match=f"container a1-{run}-envoy exists and is not this "
                                        f"stack's"):
        engine.clear_leftovers(client, run, tmp_path, [c.name], [])
    c.reload()


def test_spoofed_labels_of_another_state_dir_are_refused(client: Any, made: list[Any],
                                                          tmp_path: Path) -> None:
    """Our project and run labels but another state directory (and a dead owner): not
    ours to remove, whatever the labels claim."""
    run = engine.run_id(tmp_path)
    labels = {**engine.labels(run, tmp_path / "other", "envoy"),
              engine.LABEL_OWNER: "nobody/1/1"}
    c = _container(client, made, f"a1-{run}-spoof", labels)
    with pytest.raises(UserError, match="belongs to state directory"):
        engine.clear_leftovers(client, run, tmp_path, [], [])
    c.reload()


def test_an_image_not_built_by_a1_is_stale(client: Any, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """Same name and tag, but not from `a1 images build` (no inputs label): refused."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("empty")
        tar.addfile(info, io.BytesIO(b""))
    ref = f"a1-test-unlabelled:{os.getpid()}"
    client.api.import_image_from_data(data.getvalue(), repository=ref.split(":")[0],
                                      tag=ref.split(":")[1])
    try:
        monkeypatch.setattr(names, "image_for", lambda kind: ref)
        with pytest.raises(UserError, match=rf"image {ref} is stale \(not built by `a1 images "
                                            rf"build`\): run `a1 images build`"):
            engine.check_images(client, ["envoy"])
    finally:
        client.images.remove(ref, force=True)


def test_an_image_built_from_other_source_is_stale(client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Built by `a1 images build`, but from another checkout or an older commit (its
    source label differs from this tree's): refused before anything starts."""
    import io

    images_or_skip(client, ["cell"])
    ref = f"a1-test-oldsource:{os.getpid()}"
    dockerfile = f"FROM {names.image_for('cell')}\nLABEL {names.LABEL_SOURCE}=0123abcd\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, pull=False, rm=True)
    try:
        monkeypatch.setattr(names, "image_for", lambda kind: ref)
        with pytest.raises(UserError, match=rf"image {ref} is stale \(built from other A1 "
                                            r"source than this checkout's\): run `a1 images "
                                            r"build`"):
            engine.check_images(client, ["cell"])
    finally:
        client.images.remove(ref, force=True)
