"""Reading the files a spec directory holds, without ever leaving the directory.

A spec names its files (policy sources, data, JWKS, TLS material) by paths
relative to its directory. Whoever can write ``platform.yaml`` must not be able
to make the control plane read, digest and push some other file of the host
(``/etc/shadow``, a private key elsewhere), nor hang it on a FIFO or a device,
nor exhaust its memory. So a reference is refused if it is absolute, has a
``..`` component or a NUL byte, or resolves (through symlinks) outside the
directory; the file is opened ``O_NOFOLLOW|O_NONBLOCK`` at its resolved path,
must be a regular file, and is read only up to its size bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

SPEC_FILE = "platform.yaml"
TABLE_FILE = "cell-table.yaml"
MAX_SPEC_BYTES = 1 << 20
"""``platform.yaml`` (and ``cell-table.yaml``) at most 1 MiB."""
MAX_FILE_BYTES = 16 << 20
"""Each referenced file at most 16 MiB."""
MAX_TOTAL_BYTES = 64 << 20
"""All referenced files of one spec together at most 64 MiB."""


class FileRefused(Exception):
    """A reference that is not read; the message says why (the caller adds the place)."""


def ref_error(ref: str) -> str | None:
    """Why ``ref`` is not a path relative to the spec directory, or None."""
    if "\0" in ref:
        return "path contains a NUL byte"
    if "\\" in ref:
        return "path contains a backslash (use /)"
    p = PurePosixPath(ref)
    if p.is_absolute():
        return "absolute path; files must be given relative to the spec directory"
    if ".." in p.parts:
        return "path has a '..' component; files must stay inside the spec directory"
    if not p.parts or p == PurePosixPath("."):
        return "path names the spec directory itself, not a file"
    return None


def spec_root(directory: Path) -> Path:
    """The resolved spec directory; FileRefused if it is not a directory."""
    try:
        root = directory.resolve(strict=True)
    except (OSError, RuntimeError) as err:
        raise FileRefused(f"{directory}: spec directory not found ({_why(err)})") from None
    if not root.is_dir():
        raise FileRefused(f"{directory}: not a directory")
    return root


def read_ref(root: Path, ref: str, limit: int) -> bytes:
    """The bytes of ``root/ref``: inside ``root`` after resolving symlinks, a regular
    file, at most ``limit`` bytes. ``root`` comes from :func:`spec_root`."""
    why = ref_error(ref)
    if why is not None:
        raise FileRefused(why)
    try:
        target = (root / ref).resolve(strict=True)
    except FileNotFoundError:
        raise FileRefused("file not found") from None
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FileRefused(f"cannot resolve: {_why(err)}") from None
    if not target.is_relative_to(root):
        raise FileRefused("resolves (through a symlink) outside the spec directory")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags)
    except OSError as err:
        raise FileRefused(f"cannot open: {_why(err)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused("not a regular file")
        if st.st_size > limit:
            raise FileRefused(f"file is {st.st_size} bytes; at most {limit} are allowed")
        chunks: list[bytes] = []
        size = 0
        while True:  # the file may grow between fstat and read: bound the read itself
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise FileRefused(f"file is over {limit} bytes")
        return b"".join(chunks)
    except OSError as err:
        raise FileRefused(f"cannot read: {_why(err)}") from None
    finally:
        os.close(fd)


def _why(err: BaseException) -> str:
    return (err.strerror if isinstance(err, OSError) else None) or str(err)
