"""``junit.xml``: one testsuite per profile, one testcase per invariant and scenario.

CI systems (GitLab, Jenkins, GitHub test reporters) read this to show which
invariant failed. A testcase's ``properties`` carry the statistic, bounds and
measured values (``bound.<name>``, ``measured.<name>``), as pytest's
``record_property`` does; the same text is in ``system-out`` for consumers that
ignore testcase properties. Characters XML 1.0 cannot hold (NUL, other C0
controls) are replaced, so a detail copied from a response never breaks the file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.history import History
from conformance.report.model import clean, plain, sorted_results, statistics, window_span
from conformance.report.titles import title
from policies.core.errors import one_line


def xml_text(value: Any) -> str:
    """``value`` as text XML 1.0 can carry (``model.clean``); non-strings as JSON."""
    text = value if isinstance(value, str) else json.dumps(
        plain(value), ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    return clean(text)


def junit_xml(history: History, results: list[CheckResult], *, profile: str,
              implementation: str, version: str, runtime: str, duration_s: float,
              timestamp: str) -> bytes:
    """The JUnit XML document (UTF-8, with declaration)."""
    ordered = sorted_results(results)
    stats = statistics(ordered)
    counts = {"tests": str(len(ordered)), "failures": str(stats["Failed"]), "errors": "0",
              "skipped": str(stats["Skipped"]), "time": f"{duration_s:.3f}"}
    root = ET.Element("testsuites", {"name": f"{implementation} conformance", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": xml_text(f"{implementation}.conformance.{profile}"), **counts,
        "timestamp": xml_text(timestamp)})
    meta = history.meta
    props = ET.SubElement(suite, "properties")
    for name, value in (("implementation", implementation), ("version", version),
                        ("profile", profile), ("runtime", runtime),
                        ("seed", meta.seed if meta else ""),
                        ("run_id", meta.run_id if meta else "")):
        ET.SubElement(props, "property", {"name": name, "value": xml_text(str(value))})
    for r in ordered:
        _testcase(suite, r, history, implementation, profile)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _testcase(suite: ET.Element, r: CheckResult, history: History, implementation: str,
              profile: str) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": xml_text(f"{implementation}.conformance.{profile}.{r.invariant}"),
        "name": xml_text(f"{r.invariant} {title(r.invariant)} [{r.scenario}]"),
        "time": f"{window_span(history, r.scenario):.3f}"})
    props = ET.SubElement(case, "properties")
    rows = [("statistic", r.statistic)]
    rows += [(f"bound.{k}", v) for k, v in _items(r.bounds)]
    rows += [(f"measured.{k}", v) for k, v in _items(r.measured)]
    for name, value in rows:
        ET.SubElement(props, "property", {"name": xml_text(name), "value": xml_text(value)})
    evidence = "\n".join(f"{name}: {xml_text(value)}" for name, value in rows)
    if r.outcome == "skipped":
        ET.SubElement(case, "skipped", {"message": xml_text(one_line(r.skipped or "skipped"))})
    elif r.outcome == "failed":
        failure = ET.SubElement(case, "failure", {
            "message": xml_text(one_line(r.detail or "invariant violated")),
            "type": "InvariantViolated"})
        failure.text = xml_text(plain(r.detail)) + "\n\n" + evidence
    ET.SubElement(case, "system-out").text = evidence


def _items(value: Any) -> list[tuple[str, Any]]:
    doc = plain(value)
    return list(doc.items()) if isinstance(doc, dict) else [("value", doc)]
