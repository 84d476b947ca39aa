"""The base image's root file system: a Debian ``minbase`` debootstrap with python3.

debootstrap is not reproducible byte for byte, so the base's inputs digest is the
recipe (suite, variant, mirror, packages, what is stripped), not the tarball; the
tarball is cached under that digest so debootstrap runs once per recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from policies.core.errors import UserError

SUITE = "bookworm"  # python3 is 3.11 there: the host's cp311 wheels fit
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
# python3 only: the wheels carry every native library A1 imports (grpcio's BoringSSL,
# cffi's libffi, RE2), so nothing else from Debian is needed.
PACKAGES = ("python3",)
# Never read at run time; dropping them saves ~40 MB per image.
STRIP = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
)
# Containers run as the host user's uid with no /etc/passwd entry: HOME must be
# writable by any uid (sticky, like /tmp).
HOME = "/home/a1"


def recipe() -> dict[str, object]:
    return {
        "suite": SUITE,
        "variant": VARIANT,
        "mirror": MIRROR,
        "packages": list(PACKAGES),
        "strip": list(STRIP),
        "home": HOME,
    }


def digest() -> str:
    """sha256 of the recipe: changes exactly when the base would be built differently."""
    text = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()


def tarball_path(cache: Path) -> Path:
    return cache / f"rootfs-{SUITE}-{digest()[:16]}.tar"


def build_tarball(cache: Path, *, force: bool = False) -> Path:
    """The cached rootfs tarball for the current recipe; runs debootstrap if missing."""
    out = tarball_path(cache)
    if out.is_file() and not force:
        return out
    if shutil.which("debootstrap") is None:
        raise UserError(
            "a1 images: debootstrap is not installed (needed to build a1-base); "
            "install it: apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise UserError(
            "a1 images: building a1-base runs debootstrap, which needs root; "
            "run `a1 images build` as root"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="a1-rootfs-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        cmd = [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            MIRROR,
        ]
        _run(cmd, "debootstrap")
        for rel in STRIP:
            path = root / rel
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
        home = root / HOME.lstrip("/")
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o1777)
        partial = Path(tmp) / "rootfs.tar"  # same file system: the replace is atomic
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "tar")
        partial.replace(out)
    for old in cache.glob(f"rootfs-{SUITE}-*.tar"):  # older recipes: never used again
        if old != out:
            old.unlink()
    return out


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise UserError(f"a1 images: building a1-base: {what} failed ({proc.returncode}): {tail}")
