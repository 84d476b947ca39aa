"""The conformance report (``a1 conformance --report DIR``): YAML, JUnit XML and HTML.

One module per output: ``yaml_report`` (the Gateway-API-style ``report.yaml``),
``junit`` (``junit.xml`` for CI), ``page`` with ``svg`` and ``timeline`` (the
self-contained ``report.html``), and ``render`` (``screenshot``: headless
Chromium, for the test that looks at the page and for the docs).
``docs/conformance-report.md`` explains how to read them.
"""

from typing import Any

from conformance.report.writer import write_report

__all__ = ["screenshot", "write_report"]


def __getattr__(name: str) -> Any:
    """``screenshot`` loads ``render`` on first use, so ``python -m
    conformance.report.render`` does not run a module the package already imported."""
    if name == "screenshot":
        from conformance.report.render import screenshot
        return screenshot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
