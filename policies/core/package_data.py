"""Where A1's shipped files are, found through ``importlib.resources``.

Relative to the imported packages, never to a source checkout: an installed wheel
and an editable install resolve alike, from any working directory. A1 installs as
files, never zipped, because these paths are handed to Envoy, the compiler and the
sidecar; a resource that is not a real file is refused with a clear error.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from policies.core.errors import UserError


def packaged(package: str, *parts: str) -> Path:
    """The real path of ``parts`` inside ``package``, symlinks resolved."""
    found = resources.files(package).joinpath(*parts)
    if not isinstance(found, Path):
        where = "/".join((package.replace(".", "/"), *parts))
        raise UserError(f"{where}: A1 must be installed as files, not from a zip archive", 2)
    return found.resolve()
