"""Render a report page to PNG with headless Chromium (Debian's ``chromium``).

For the test that looks at the page and for the screenshot in the docs:
``python -m conformance.report.render report.html out.png [WIDTH HEIGHT]``.
Chromium runs with a throwaway profile directory, in its own process group, and
is killed with its helpers if it outlives a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from policies.core.errors import UserError, one_line

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120.0


def find_chromium() -> str | None:
    """The first Chromium-family browser on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, *, width: int = 1400, height: int = 2000) -> None:
    """Render ``html`` into ``png`` at ``width`` x ``height`` CSS pixels (the top of the
    page). UserError, one line, when no browser is installed or it produced no image."""
    browser = find_chromium()
    if browser is None:
        raise UserError("cannot render the report: no chromium on PATH "
                        "(install Debian's chromium package)")
    page = Path(html).resolve()
    if not page.is_file():
        raise UserError(f"{html}: no such report page")
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="a1-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", "--force-device-scale-factor=1",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={png}", page.as_uri()]
        # its own process group: on a timeout the renderer and GPU helpers die with it
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise UserError(f"chromium did not render {html} within {TIMEOUT_S:g}s") from None
    if not png.is_file() or png.stat().st_size == 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"chromium wrote no screenshot of {html} (exit {proc.returncode}): "
                        f"{one_line(tail[0], 300)}")


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4):
        print("usage: python -m conformance.report.render PAGE.html OUT.png "
              "[WIDTH HEIGHT]", file=sys.stderr)
        return 2
    try:
        size = (int(argv[2]), int(argv[3])) if len(argv) == 4 else (1400, 2000)
        screenshot(Path(argv[0]), Path(argv[1]), width=size[0], height=size[1])
    except ValueError:
        print("WIDTH and HEIGHT are integers (CSS pixels)", file=sys.stderr)
        return 2
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
