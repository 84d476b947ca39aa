"""The conformance report (``a1 conformance --report DIR``): YAML, JUnit XML and HTML.

One module per output: ``yaml_report`` (the Gateway-API-style ``report.yaml``),
``junit`` (``junit.xml`` for CI), ``page`` with ``svg`` and ``timeline`` (the
self-contained ``report.html``), and ``screenshot`` (headless Chromium, for the
test that looks at the page and for the docs). ``docs/conformance-report.md``
explains how to read them.
"""

from conformance.report.screenshot import screenshot
from conformance.report.writer import write_report

__all__ = ["screenshot", "write_report"]
