"""``a1 images build`` on the real engine: the images build (or are found up to date),
a second build changes nothing, every process starts in its image as a non-root uid
with no /etc/passwd entry, and every image carries its labels.

Uses the default cache (~/.cache/a1/images or $A1_IMAGE_CACHE), so after the first
run this costs a project-wheel build and a few container starts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest

from a1.containers import names
from a1.containers.images import rootfs
from e2e.docker_support import engine_or_skip

pytestmark = pytest.mark.e2e

UID = "1000:1000"
LIBRARY = "/usr/local/lib/python3.11/dist-packages/policies/library"
# Every process the runtime and the suite start, as each image runs it.
PROCESSES = {
    names.IMAGE_ENVOY: [["envoy", "--version"]],
    names.IMAGE_SIDECAR: [["python3", "-m", "ext_proc", "--help"]],
    names.IMAGE_CELL: [["python3", "-m", "a1.cell", "--help"]],
    names.IMAGE_CONTROL: [
        ["python3", "-m", "a1", "control", "serve", "--help"],
        ["python3", "-m", "control.relay", "--help"],
        ["python3", "-m", "conformance.harness.sink", "--help"],
        ["python3", "-m", "conformance.nemesis.proxy", "--help"],
        ["a1", "--help"],
        # A policy compile writes into HOME as a uid with no /etc/passwd entry.
        [
            "sh",
            "-c",
            f"a1 policy build --data {LIBRARY}/data.json -e a1/authz/decision "
            f"-o $HOME/p.wasm {LIBRARY}/authz.rego && test -s $HOME/p.wasm",
        ],
    ],
}


def images_build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "a1", "images", "build", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(scope="module")
def built() -> tuple[Any, str]:
    client = engine_or_skip()
    from docker.errors import ImageNotFound

    have_base = True
    try:
        client.images.get(names.image_ref(names.IMAGE_BASE))
    except ImageNotFound:
        have_base = False
    if not have_base:
        if os.geteuid() != 0:
            pytest.skip("a1-base missing and building it (debootstrap) needs root")
        if shutil.which("debootstrap") is None:
            pytest.skip("a1-base missing and debootstrap is not installed")
    first = images_build()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = images_build()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return client, second.stdout


def test_second_build_is_a_no_op(built: tuple[Any, str]) -> None:
    _client, out = built
    for name in (names.IMAGE_BASE, *names.COMPONENT_IMAGES):
        assert re.search(rf"^{name}\s+up to date", out, re.M), out
    assert " built (" not in out and "Step " not in out, out
    assert "0 built, 5 up to date" in out, out
    assert re.search(r"^a1-envoy:\S+\s+\d+ MB\s+up to date$", out, re.M), out
    assert "unique disk: " in out


def test_list_says_up_to_date(built: tuple[Any, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "a1", "images", "list"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in (names.IMAGE_BASE, *names.COMPONENT_IMAGES):
        assert re.search(rf"^{name}:\S+\s+\d+ MB\s+up to date$", proc.stdout, re.M), proc.stdout


def test_labels(built: tuple[Any, str]) -> None:
    client, _out = built
    for name in (names.IMAGE_BASE, *names.COMPONENT_IMAGES):
        labels = client.images.get(names.image_ref(name)).labels
        assert labels[names.LABEL_PROJECT] == names.PROJECT
        assert re.fullmatch(r"[0-9a-f]{64}", labels[names.LABEL_INPUTS])
        assert labels[names.LABEL_COMPONENT] == name.removeprefix("a1-")


@pytest.mark.parametrize(
    ("image", "cmd"),
    [(i, c) for i, cmds in PROCESSES.items() for c in cmds],
    ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40],
)
def test_process_starts_as_non_root(built: tuple[Any, str], image: str, cmd: list[str]) -> None:
    client, _out = built
    out = client.containers.run(
        names.image_ref(image),
        cmd,
        user=UID,
        remove=True,
        network_disabled=True,
        labels={names.LABEL_PROJECT: names.PROJECT},
        stdout=True,
        stderr=True,
    )
    text = out.decode(errors="replace")
    assert "Traceback" not in text
    assert "usage:" in text or "version" in text or cmd[0] == "sh", text


def test_images_carry_only_what_they_need(built: tuple[Any, str]) -> None:
    client, _out = built
    check = (
        "import importlib.util as u; print([m for m in ('scipy', 'numpy', 'docker', "
        "'envoy._bin') if u.find_spec(m)])"
    )
    out = client.containers.run(
        names.image_ref(names.IMAGE_CELL),
        ["python3", "-c", check],
        user=UID,
        remove=True,
        network_disabled=True,
    )
    assert out.decode().strip() == "[]"
    out = client.containers.run(
        names.image_ref(names.IMAGE_ENVOY),
        ["sh", "-c", "echo $HOME; ls /usr/share/doc | wc -l"],
        user=UID,
        remove=True,
        network_disabled=True,
    )
    home, docs = out.decode().split()
    assert home == rootfs.HOME and docs == "0"


def test_a_failing_step_names_the_image_and_shows_its_last_lines(built: tuple[Any, str]) -> None:
    """A build that fails on the real engine: one head line naming the image and step,
    then the step's own output; no container is left behind."""
    from a1.containers.images import build
    from policies.core.errors import UserError

    client, _out = built
    base = names.image_ref(names.IMAGE_BASE)
    image = build.Image(
        "a1-test-broken",
        "test",
        "0" * 64,
        f"FROM {base}\nRUN echo boom-marker-h1; exit 3\n",
    )
    before = {c.id for c in client.containers.list(all=True, filters={"ancestor": base})}
    with pytest.raises(UserError) as err:
        build._build_child(client, image, nocache=True, say=lambda _l: None)
    head, *tail = str(err.value).splitlines()
    assert head.startswith(f"a1 images: building {image.ref} failed at Step 2/")
    assert "RUN echo boom-marker-h1" in head
    assert any("boom-marker-h1" in line for line in tail), tail
    assert "non-zero code: 3" in tail[-1]
    after = {c.id for c in client.containers.list(all=True, filters={"ancestor": base})}
    assert after <= before  # forcerm: the failed step's container is gone
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        client.images.get(image.ref)
