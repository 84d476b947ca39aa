"""The Docker engine as the docker runtime sees it: connecting with a one-line error,
the labels every object of a run carries, who owns a run, the images a stack needs,
and the leftovers of a run whose owner died.

Ownership: every container and network of a run is labelled with the state directory
and the owner (``host/pid/start-time``: the start time tells a live owner from a
recycled pid). Leftovers are only ever removed when they carry *our* state directory
and run, and their owner is provably dead on this host; anything else with our name
is someone else's and is reported, never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from a1.containers import names
from policies.core.errors import UserError

LABEL_OWNER = f"{names.LABEL_PREFIX}.owner"  # host/pid/start-time of the a1 that made it
LABEL_STATE_DIR = f"{names.LABEL_PREFIX}.state-dir"


def run_id(state_dir: Path) -> str:
    """A run's id: from its state directory, so a crashed run's objects are found again
    by name, and two state directories never share a name."""
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]


def connect(what: str = "a1") -> Any:
    """A docker client that has answered a ping; one-line UserError otherwise."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - a dependency
        raise UserError(f"{what}: the docker SDK is not installed (pip install docker)") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(max_pool_size=64, timeout=60)
        client.ping()
    except (DockerException, OSError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{what}: cannot reach the Docker engine at {where} (DOCKER_HOST): "
                        f"{why[:300]}; start dockerd") from None
    return client


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after "pid (comm)"


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{pid}/{_start_time(pid) or '?'}"


def owner_alive(token: str) -> bool:
    """True unless ``token``'s process is provably gone (same host, pid absent or a
    different process now). A malformed or foreign-host token counts as alive: we
    cannot tell, so we must not remove its objects."""
    try:
        host, pid, start = token.split("/")
        pid_n = int(pid)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    now = _start_time(pid_n)
    return now is not None and now == start


def labels(run: str, state_dir: Path, component: str | None = None) -> dict[str, str]:
    out = {names.LABEL_PROJECT: names.PROJECT, names.LABEL_RUN: run,
           LABEL_STATE_DIR: str(state_dir), LABEL_OWNER: owner_token()}
    if component is not None:
        out[names.LABEL_COMPONENT] = component
    return out


def check_images(client: Any, kinds: Iterable[str]) -> None:
    """Every image the stack runs exists and is current: else a one-line UserError."""
    from docker.errors import ImageNotFound

    source = checkout_source()
    for ref in sorted({names.image_for(k) for k in kinds}):
        try:
            image = client.images.get(ref)
        except ImageNotFound:
            raise UserError(f"image {ref} is missing: run `a1 images build`") from None
        stale = stale_reason(image, source)
        if stale:
            raise UserError(f"image {ref} is stale ({stale}): run `a1 images build`")


def checkout_source() -> str | None:
    """The source digest of the checkout A1 runs from; None when A1 runs from an
    installed wheel (no checkout to compare with, and none to build images from)."""
    from a1.containers.images import wheels

    try:
        return wheels.source_digest(wheels.source_root())
    except (UserError, OSError):
        return None


def stale_reason(image: Any, source: str | None) -> str | None:
    """Why ``image`` cannot be trusted as this checkout's. The full check (every input's
    digest, ``a1 images list``) builds the project wheel, too slow for every start; the
    source label (the python images) is compared instead, ~10 ms. An image without the
    inputs label was not made by ``a1 images build`` at all."""
    lab = image.labels or {}
    if not lab.get(names.LABEL_INPUTS) or lab.get(names.LABEL_PROJECT) != names.PROJECT:
        return "not built by `a1 images build`"
    if (source is not None and lab.get(names.LABEL_COMPONENT) in names.PYTHON_COMPONENTS
            and lab.get(names.LABEL_SOURCE) != source):
        return "built from other A1 source than this checkout's"
    return None


def our_objects(client: Any, run: str, owner: str | None = None) -> tuple[list[Any], list[Any]]:
    """The containers (all states) and networks labelled with ``run`` (and made by
    ``owner``, an :func:`owner_token`, if given)."""
    flt = [f"{names.LABEL_PROJECT}={names.PROJECT}", f"{names.LABEL_RUN}={run}"]
    if owner is not None:
        flt.append(f"{LABEL_OWNER}={owner}")
    # ignore_removed: a container removed between the list and its inspect is just gone.
    return (client.containers.list(all=True, filters={"label": flt}, ignore_removed=True),
            client.networks.list(filters={"label": flt}))


def clear_leftovers(client: Any, run: str, state_dir: Path, container_names: Iterable[str],
                    network_names: Iterable[str]) -> list[str]:
    """Remove what a dead earlier run of ``state_dir`` left; returns notes of what went.

    A live owner of the same state directory, or an object with one of our names that
    is not ours (no labels, another state directory or run), is a UserError naming it.
    """
    from docker.errors import NotFound

    notes: list[str] = []
    mine = str(state_dir)
    containers, networks = our_objects(client, run)
    by_name = {c.name: c for c in containers}
    for name in container_names:  # same name, not labelled as ours: someone else's
        if name in by_name:
            continue
        try:
            other = client.containers.get(name)
        except NotFound:
            continue
        raise UserError(f"container {name} exists and is not this stack's (labels "
                        f"{_short_labels(other.labels)}); remove it or use another "
                        f"--state-dir")
    for obj in [*containers, *networks]:
        lab = _labels_of(obj)
        if lab.get(LABEL_STATE_DIR) != mine:
            raise UserError(f"{_kind(obj)} {obj.name} has this stack's name but belongs to "
                            f"state directory {lab.get(LABEL_STATE_DIR)!r}; remove it")
        owner = lab.get(LABEL_OWNER, "")
        if owner != owner_token() and owner_alive(owner):
            raise UserError(f"{mine}: another a1 ({owner}) runs this stack "
                            f"({_kind(obj)} {obj.name}); stop it first")
    for c in containers:
        remove_container(c)
    taken = {n.name for n in networks}
    for net in client.networks.list(names=list(network_names)):
        if net.name in taken or net.name not in set(network_names):
            continue
        raise UserError(f"network {net.name} exists and is not this stack's; remove it "
                        f"or use another --state-dir")
    for net in networks:
        remove_network(net)
    if containers or networks:
        owners = sorted({_labels_of(o).get(LABEL_OWNER, "?") for o in [*containers, *networks]})
        notes.append(f"removed {len(containers)} container(s) and {len(networks)} network(s) "
                     f"of run {run} left by an earlier a1 that died ({', '.join(owners)})")
    return notes


def _labels_of(obj: Any) -> dict[str, str]:
    if hasattr(obj, "image"):  # a container
        return dict(obj.labels or {})
    return dict(obj.attrs.get("Labels") or {})


def _kind(obj: Any) -> str:
    return "container" if hasattr(obj, "image") else "network"


def _short_labels(lab: dict[str, str] | None) -> str:
    if not lab:
        return "none"
    return ", ".join(f"{k}={v}" for k, v in sorted(lab.items())[:4])


def remove_owned(client: Any, run: str, owner: str) -> tuple[int, int]:
    """Remove every container (any state), then every network, of ``run`` made by
    ``owner``, going on past one that will not go; ``(containers, networks)`` found."""
    containers, networks = our_objects(client, run, owner)
    for c in containers:
        with contextlib.suppress(Exception):
            remove_container(c)
    for net in networks:
        with contextlib.suppress(Exception):
            remove_network(net)
    return len(containers), len(networks)


def remove_container(container: Any) -> None:
    from docker.errors import APIError, NotFound

    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except APIError as err:
        if "already in progress" not in str(err):
            raise


def remove_network(network: Any) -> None:
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        network.remove()
