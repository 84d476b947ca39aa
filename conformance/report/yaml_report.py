"""``report.yaml``: the run in the style of the Gateway API conformance report.

Same top-level shape (apiVersion, kind, date, implementation, a result with
Passed/Failed/Skipped statistics and the failed and skipped test names), with
A1's own fields in place of ``gatewayAPIVersion``: runtime, profile, seed,
duration, and per invariant its statistic, bounds and measured values. Written
with ``yaml.safe_dump`` and a fixed key order, so two reports diff cleanly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from conformance.checkers.base import CheckResult
from conformance.history import History
from conformance.report.model import (
    by_invariant,
    fault_schedule,
    overall,
    plain,
    sorted_results,
    statistics,
    window_span,
)
from conformance.report.titles import title

API_VERSION = "a1.dev/v1alpha1"
KIND = "ConformanceReport"


def report_document(history: History, results: list[CheckResult], *, profile: str,
                    implementation: str, version: str, runtime: str,
                    duration_s: float) -> dict[str, Any]:
    """The report as a plain mapping (what ``report.yaml`` holds), keys in output order."""
    meta = history.meta
    ordered = sorted_results(results)
    stats = statistics(ordered)
    names = [f"{r.invariant}/{r.scenario}" for r in ordered]
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "date": meta.started_at if meta else datetime.now(UTC).isoformat(timespec="seconds"),
        "implementation": {"project": implementation, "version": version},
        "runtime": runtime,
        "profile": profile,
        "seed": meta.seed if meta else None,
        "runId": meta.run_id if meta else None,
        "durationSeconds": round(float(duration_s), 3),
        "result": overall(ordered),
        "summary": {
            "statistics": stats,
            "failedTests": [n for n, r in zip(names, ordered, strict=True)
                            if r.outcome == "failed"],
            "skippedTests": [n for n, r in zip(names, ordered, strict=True)
                             if r.outcome == "skipped"],
            "invariants": by_invariant(ordered),
            "text": summary_text(stats),
        },
        "invariants": [_result(r) for r in ordered],
        "scenarios": [_scenario(history, s) for s in history.scenarios()],
    }
    return doc


def summary_text(stats: dict[str, int]) -> str:
    return (f"{stats['Passed']} passed, {stats['Failed']} failed, "
            f"{stats['Skipped']} skipped.")


def _result(r: CheckResult) -> dict[str, Any]:
    return {
        "id": r.invariant,
        "title": title(r.invariant),
        "result": r.outcome,
        "scenario": r.scenario,
        "statistic": plain(r.statistic),
        "bounds": plain(r.bounds),
        "measured": plain(r.measured),
        "detail": plain(r.detail),
        "skippedReason": plain(r.skipped),
    }


def _scenario(history: History, scenario: str) -> dict[str, Any]:
    ops = history.ops(scenario)
    return {
        "name": scenario,
        "durationSeconds": round(window_span(history, scenario), 3),
        "windows": [{"name": w.name, "start": round(w.start, 3), "end": round(w.end, 3)}
                    for w in history.windows(scenario)],
        "faults": [{"fault": f.fault,
                    "inject": None if f.inject is None else round(f.inject, 3),
                    "repair": None if f.repair is None else round(f.repair, 3),
                    "expect": plain(f.expect)}
                   for f in fault_schedule(history, scenario)],
        "ops": {"total": len(ops), "ok": sum(op.ok for op in ops)},
    }


class _Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes a string holding NEL (U+0085): PyYAML writes it raw
    in a plain scalar, and reading it back turns it into a space."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if "\x85" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(doc: Any) -> str:
    """Safe YAML (only plain types), keys in the order given, readable Unicode."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
