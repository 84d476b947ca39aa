"""The quick conformance profile under pytest: one stack, every scenario, every checker.

The same scenarios ``a1 conformance --profile quick`` plays (CI runs them here), one
pytest test per scenario on one shared target under one steady load, each asserting
its invariant's checker passed; then the whole-history invariants (I-6 fail
closed, I-11 nothing lost) after the readback, the report written and rendered in
headless Chromium, and the saved history judged again offline to the same verdicts.
"""

from __future__ import annotations

import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from a1.cli import main as a1_main
from conformance.checkers.base import CheckResult
from conformance.checkers.registry import check
from conformance.runner import Run
from conformance.scenarios.catalog import select
from conformance.suite import SuiteOptions, finish, netns_cell, rejudge, session

pytestmark = pytest.mark.e2e

SCENARIOS = select("quick")
SEED = 8


class Suite:
    def __init__(self, report: Path) -> None:
        self.options = SuiteOptions(profile="quick", report=report, seed=SEED,
                                    netns_cell=netns_cell(None))
        self.started = time.monotonic()
        self.stack = ExitStack()
        self.run: Run = self.stack.enter_context(
            session(self.options, [s.id for s in SCENARIOS]))
        self.played: set[str] = set()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    s = Suite(tmp_path_factory.mktemp("conformance-report"))
    try:
        yield s
    finally:
        s.stack.close()


def explain(result: CheckResult) -> str:
    return (f"{result.invariant} {result.scenario}: {result.outcome}: {result.detail}\n"
            f"  bounds {result.bounds}\n  measured {result.measured}")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario_holds_its_invariant(suite: Suite, scenario) -> None:  # type: ignore[no-untyped-def]
    outcome = suite.run.play(scenario)
    suite.played.add(scenario.id)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.error is None, outcome.error
    result = check(suite.run.recorder.history, scenario.id, scenario.invariant)
    assert result.passed, explain(result)


def test_whole_run_fails_closed_loses_nothing_and_reports(suite: Suite) -> None:
    if len(suite.played) < len(SCENARIOS):
        pytest.skip("the scenarios did not all run in this session")
    suite.stack.close()  # stop the load, read every write back, stop the stack
    result = finish(suite.run, suite.options, suite.started)
    whole = {r.invariant: r for r in result.results if r.scenario == "*"}
    assert set(whole) == {"I-6", "I-11"}
    for r in whole.values():
        assert r.passed, explain(r)
    assert whole["I-11"].measured["acknowledged"] > 100, whole["I-11"].measured

    report = suite.options.report
    assert report is not None
    doc = yaml.safe_load((report / "report.yaml").read_text())
    assert doc["kind"] == "ConformanceReport" and doc["profile"] == "quick"
    tested = {i["id"] for i in doc["invariants"]}
    assert tested == {f"I-{n}" for n in range(1, 12)}, tested
    suites = ET.parse(report / "junit.xml").getroot()
    assert int(suites.get("failures") or suites[0].get("failures") or 0) == 0

    # The saved history, judged offline, gives the same verdicts.
    again = rejudge(report / "history.jsonl")
    assert [(r.scenario, r.invariant, r.outcome) for r in again] == \
        [(r.scenario, r.invariant, r.outcome) for r in result.results]

    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed: the HTML report is not rendered")
    from conformance.report import screenshot

    png = report / "report.png"
    screenshot(report / "report.html", png)
    assert png.stat().st_size > 20_000


EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "platform"


def test_cli_runs_one_invariant_on_a_users_spec_and_exits_by_its_verdict(
        tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert a1_main(["conformance", "--only", "I-5", "--seed", "3", "--report", str(out),
                    "--config", str(EXAMPLE_SPEC)]) == 0
    meta = yaml.safe_load((out / "report.yaml").read_text())
    assert "I-5" in {i["id"] for i in meta["invariants"]}
    assert {"report.yaml", "junit.xml", "report.html", "history.jsonl"} <= \
        {p.name for p in out.iterdir()}
    assert a1_main(["conformance", "--check", str(out / "history.jsonl")]) == 0


def test_cli_refuses_bad_usage_with_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert a1_main(["conformance", "--config", str(tmp_path)]) == 2
    assert a1_main(["conformance", "--only", "I-99"]) == 2
    bad = tmp_path / "history.jsonl"
    bad.write_text('{"type": "op", "scenario": 1}\nnot json\n')
    assert a1_main(["conformance", "--check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{bad}:1:" in err
