"""Names shared by the image builder, the docker runtime and the conformance backend.

Every object a run creates carries ``LABEL_PROJECT`` (so leftovers are found by
label) and ``LABEL_RUN`` (so one run's objects are told from another's).
"""

from __future__ import annotations

import importlib.metadata

LABEL_PREFIX = "org.a1"
LABEL_PROJECT = f"{LABEL_PREFIX}.project"  # value "a1" on every container, network, volume
LABEL_RUN = f"{LABEL_PREFIX}.run"  # the run's id
LABEL_COMPONENT = f"{LABEL_PREFIX}.component"  # envoy, sidecar, control, relay, cell-1, ...
LABEL_INPUTS = f"{LABEL_PREFIX}.inputs"  # on images: sha256 of everything the image is built from
LABEL_SOURCE = f"{LABEL_PREFIX}.source"  # on the python images: sha256 of A1's source tree
PROJECT = "a1"


def version() -> str:
    try:
        return importlib.metadata.version("a1")
    except importlib.metadata.PackageNotFoundError:  # a source tree run without install
        return "0.0.0"


# The component images. The python images hold the same A1 install; each names its
# component (labels, default command). ``python3 -m <module>`` runs A1 in them,
# ``envoy`` runs Envoy in the Envoy image; ``sh`` is in every image.
IMAGE_BASE = "a1-base"
IMAGE_ENVOY = "a1-envoy"
IMAGE_SIDECAR = "a1-sidecar"
IMAGE_CONTROL = "a1-control"  # the control plane, Envoy's xDS relay, the suite's tools
IMAGE_CELL = "a1-cell"
COMPONENT_IMAGES = (IMAGE_ENVOY, IMAGE_SIDECAR, IMAGE_CONTROL, IMAGE_CELL)


def image_ref(name: str) -> str:
    """``name:<A1 version>``: a new release never runs an older release's image."""
    return f"{name}:{version()}"


KINDS = ("envoy", "sidecar", "control", "cell")
PYTHON_COMPONENTS = ("sidecar", "control", "cell")  # the images holding A1 itself


def image_for(kind: str) -> str:
    """The image a stack process of ``kind`` runs in: envoy, sidecar, cell, or anything
    else (the control plane, the relay, the suite's sink and fault proxies)."""
    if kind == "envoy":
        return image_ref(IMAGE_ENVOY)
    if kind == "sidecar":
        return image_ref(IMAGE_SIDECAR)
    if kind == "cell":
        return image_ref(IMAGE_CELL)
    return image_ref(IMAGE_CONTROL)
