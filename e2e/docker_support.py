"""Shared helpers for the docker e2e tests: an engine or a stated skip, the images or a
stated skip, and checks that a run left nothing behind.

Every docker test calls :func:`engine_or_skip` (and :func:`images_or_skip` when it runs
the stack), so a machine without an engine or images skips with the reason, never
fails silently or passes vacuously.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from a1.containers import engine, names
from policies.core.errors import UserError


def engine_or_skip() -> Any:
    """A docker client that answered a ping, or skip saying why there is none."""
    try:
        return engine.connect("docker tests")
    except UserError as err:
        pytest.skip(f"no Docker engine: {err}")


def images_or_skip(client: Any, kinds: Iterable[str] = names.KINDS) -> None:
    """Skip unless every component image of this A1 version exists."""
    from docker.errors import ImageNotFound

    missing = []
    for kind in kinds:
        try:
            client.images.get(names.image_for(kind))
        except ImageNotFound:
            missing.append(names.image_for(kind))
    if missing:
        pytest.skip(f"images missing ({', '.join(sorted(set(missing)))}): "
                    f"run `a1 images build`")


def run_objects(client: Any, run: str) -> list[str]:
    """Names of every container, network and volume labelled with ``run``."""
    flt = {"label": [f"{names.LABEL_PROJECT}={names.PROJECT}", f"{names.LABEL_RUN}={run}"]}
    out = [f"container {c.name}" for c in client.containers.list(all=True, filters=flt,
                                                                          ignore_removed=True)]
    out += [f"network {n.name}" for n in client.networks.list(filters=flt)]
    out += [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
    return out
