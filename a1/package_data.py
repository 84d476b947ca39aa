"""Where A1's shipped data lives: the Envoy templates and the shipped policies.

Everything is found through ``importlib.resources``, relative to the imported
packages, never to a source checkout: an installed wheel and an editable install
of the repository resolve the same way, from any working directory.

- The Envoy templates sit at the top of the repository in ``envoy/``. That
  directory is not a Python package (``envoy`` is the namespace of the Envoy
  wheel and of the xDS protobuf classes, which it must not shadow), so the
  symlink ``control/envoy_templates -> ../envoy`` makes them package data of
  ``control``, which builds Envoy's config (``control.envoy.templates``); a wheel
  carries them as real files under ``control/envoy_templates/``.
- The shipped policies are package data of ``policies`` (``policies/library``).
- The policy runtime ``a1rt.wasm`` is package data of ``policies.runtime``,
  read by ``policies.runtime.module``.

``policies.core.package_data.packaged`` finds each one (and refuses a zipped
install).
"""

from __future__ import annotations

from pathlib import Path

from control.envoy.templates import template_dir
from policies.core.package_data import packaged


def envoy_templates() -> Path:
    """The directory holding ``bootstrap.yaml`` and ``fragments/``."""
    return template_dir()


def policy_library() -> Path:
    """The directory of the shipped policy, its tests and its data."""
    return packaged("policies", "library")
