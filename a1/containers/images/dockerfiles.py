"""The Dockerfile text of each component image (part of each image's inputs digest).

Every image starts ``FROM a1-base:<version>`` (a local image: nothing is pulled).
The python images share one Dockerfile up to the last line, so the engine's layer
cache gives the three of them the same install layers (stored once on disk); only
the default command differs.
"""

from __future__ import annotations

import json

from a1.containers.images.rootfs import HOME
from a1.containers.names import IMAGE_BASE, image_ref

# The default command of each python image (the runtime always passes a full one).
COMMANDS = {
    "sidecar": ["python3", "-m", "ext_proc"],
    "control": ["python3", "-m", "a1", "control", "serve"],
    "cell": ["python3", "-m", "a1.cell"],
}

# ``docker import`` instructions for a1-base (labels are added by the builder).
BASE_CHANGES = (
    f"ENV HOME={HOME}",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["sh"]',
)


def envoy() -> str:
    return "\n".join(
        [
            f"FROM {image_ref(IMAGE_BASE)}",
            "COPY envoy /usr/local/bin/envoy",
            'CMD ["envoy", "--version"]',
            "",
        ]
    )


def python(component: str, pip_wheel: str) -> str:
    """Wheels are installed in build stages and only what pip wrote is copied out, so
    the wheel files (~60 MB) never become a layer. The dependencies and A1 are two
    layers: a source change rebuilds only A1's (a few MB), the 100 MB one stays cached."""
    base = image_ref(IMAGE_BASE)
    pip = (
        f"python3 /p/{pip_wheel}/pip install --no-index --no-deps --no-cache-dir"
        " --break-system-packages --disable-pip-version-check --root-user-action=ignore"
    )
    return "\n".join(
        [
            f"FROM {base} AS deps",
            "COPY pip/ /p/",
            "COPY wheels/ /w/",
            f"RUN {pip} /w/*.whl",
            "FROM deps AS project",
            "COPY project/ /a/",
            f"RUN {pip} --root /out /a/*.whl",
            f"FROM {base}",
            "COPY --from=deps /usr/local /usr/local",
            "COPY --from=project /out/ /",
            "ENV PYTHONUNBUFFERED=1",
            f"CMD {json.dumps(COMMANDS[component])}",
            "",
        ]
    )
