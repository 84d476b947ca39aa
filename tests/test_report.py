"""The conformance report: YAML, JUnit XML and HTML written from a realistic history.

The history is synthetic but shaped like a run's: several scenarios, each with
control, fault and recovery windows, tenant groups, faults injected and repaired,
failures inside a fault window, a failed and a skipped check, and names carrying
markup. The HTML page is rendered in headless Chromium and the PNG decoded here
(a small zlib reader: no imaging dependency) to prove it is not blank.
"""

from __future__ import annotations

import json
import random
import struct
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.checkers.base import CheckResult
from conformance.checkers.registry import check
from conformance.history import FaultEvent, History, Meta, Observation, Op, Recorder, Window
from conformance.report import screenshot, write_report
from conformance.report.junit import xml_text
from conformance.report.model import fault_schedule, plain
from conformance.report.render import find_chromium
from conformance.report.titles import TITLES
from conformance.report.yaml_report import dump_yaml
from policies.core.errors import UserError

EVIL = "<script>alert(1)</script>"
EVIL_FAULT = '<img src=x onerror="alert(2)">'


def _load(rec: Recorder, rng: random.Random, scenario: str, groups: dict[str, float],
          t0: float, t1: float, rate: float = 40.0, fail=lambda g, t: None) -> None:
    """Ops at ``rate`` per second per group; ``fail(group, t)`` gives a failing status."""
    for group, median in groups.items():
        t = t0
        n = 0
        while t < t1:
            lat = rng.lognormvariate(0, 0.35) * median
            status = fail(group, t)
            n += 1
            if status == 0:  # no response: the client timed out
                rec.record(Op(scenario, "read", f"{group}-t{n % 5}", group, t, t + 0.5, None,
                              error="timed out"))
            else:
                f = "write" if n % 4 == 0 else "read"
                rec.record(Op(scenario, f, f"{group}-t{n % 5}", group, t, t + lat,
                              status or 200, expected_cell="cell-1", observed_cell="cell-1",
                              policy_version="v1", value=n if f == "write" else None))
            t += rng.expovariate(rate)


def _scenario(rec: Recorder, name: str, t0: float, faults: list[tuple[str, float, float, str]],
              length: float = 10.0) -> tuple[float, float, float, float]:
    """Windows control/fault/recovery of ``length`` s each, and the faults' events."""
    c, f, r, end = t0, t0 + length, t0 + 2 * length, t0 + 3 * length
    for wname, a, b in (("control", c, f), ("fault", f, r), ("recovery", r, end)):
        rec.record(Window(name, wname, a, b))
    for fault, inject, repair, expect in faults:
        rec.record(FaultEvent(name, fault, "inject", inject, expect))
        rec.record(FaultEvent(name, fault, "repair", repair, expect))
    return c, f, r, end


def synthetic_history(seed: int = 7, rate: float = 40.0) -> History:
    rng = random.Random(seed)
    rec = Recorder()
    rec.record(Meta("run-1234", seed, "quick", "a1", "0.1.0", "2025-01-01T12:00:00+00:00"))
    # I-1: the control plane killed; the data plane keeps serving
    c, f, r, end = _scenario(rec, "I-1 kill control plane", 0.0,
                             [("kill:control", 10.0, 20.0, "no request fails; xDS resyncs")])
    _load(rec, rng, "I-1 kill control plane", {"cell-1 tenants": 0.003, "cell-2 tenants": 0.004},
          c, end, rate)
    rec.record(Observation("I-1 kill control plane", "resync_s", 21.2, 1.2))
    # I-5: a cell killed; its tenants fail, and one bystander failure is a violation
    s5 = "I-5 kill cell-2"
    c, f, r, end = _scenario(rec, s5, 32.0, [("kill:cell-2", 42.0, 52.0,
                                              "only cell-2's tenants fail")])

    def blast(group: str, t: float) -> int | None:
        if group == "victim" and f <= t < r + 1.5:
            return 0 if rng.random() < 0.3 else 503
        if group == "bystander" and 47.0 <= t < 47.05:
            return 503
        return None

    _load(rec, rng, s5, {"victim": 0.004, "bystander": 0.003, EVIL: 0.005}, c, end, rate, blast)
    for i in range(20):
        t = c + i * 1.4
        rec.record(Op(s5, "misroute", f"victim-t{i % 5}", "misroute", t, t + 0.002,
                      421 if i != 13 else 200, expected_cell="cell-2", observed_cell="cell-1"))
    # I-8: three bad configs in one fault window; probes that must be refused
    s8 = "I-8 bad config"
    c, f, r, end = _scenario(rec, s8, 64.0, [
        ("config:invalid-spec", 74.0, 77.0, "refused; old config serves"),
        ("config:envoy-nack", 77.5, 80.5, "NACKed once per subscriber"),
        (EVIL_FAULT, 80.0, 84.0, "bundle refused"),
    ])
    _load(rec, rng, s8, {"stable": 0.002}, c, end, rate)
    for fault in ("config:invalid-spec", "config:envoy-nack", EVIL_FAULT):
        rec.record(Observation(s8, "rejection_visible", 85.0,
                               {"fault": fault, "visible": True, "where": "a1 status"}))
        rec.record(Observation(s8, "xds_nacks", 85.0,
                               {"fault": fault, "nacks": 1, "subscribers": 1}))
    for i in range(30):
        t = c + i
        rec.record(Op(s8, "probe", "stable-t1", "probes", t, t + 0.001, 403, authorized=False))
    rec.record(Op(s8, "readback", "stable-t1", "stable", 200.0, 200.01, 200, value=[1, 2]))
    return rec.history


def synthetic_results() -> list[CheckResult]:
    return [
        CheckResult("I-1", "I-1 kill control plane", True,
                    "failed ops in fault+recovery (count); resync_s <= bound",
                    {"failed_ops": 0, "resync_s": 5.0},
                    {"failed_ops": 0, "resync_s": 1.2, "ops": 2400}),
        CheckResult("I-5", "I-5 kill cell-2", False,
                    "bystander failed ops (count) == 0; every misroute got 421",
                    {"bystander_failed_ops": 0, "misroute_not_421": 0},
                    {"bystander_failed_ops": 2, "misroute_not_421": 1, "victim_converged_s": 1.6,
                     "violations": [{"tenant": EVIL, "status": 503, "t": 47.01}]},
                    f"2 bystander ops failed at 47.0 s (tenant {EVIL}); misroute #13 got 200\n"
                    "second line\x00with a NUL"),
        CheckResult("I-3", "I-3 SIGSTOP all", False, "Mann–Whitney U (two-sided, alpha 0.01)",
                    skipped="needs root to SIGSTOP the control plane's process group"),
        CheckResult("I-8", "I-8 bad config", True,
                    "failed ops == 0; every rejection visible; <= 1 NACK per subscriber",
                    {"failed_ops": 0, "nacks_per_subscriber": 1},
                    {"failed_ops": 0, "nacks_per_subscriber": 1.0,
                     "rejections": {"config:invalid-spec": "status"}}),
        CheckResult("I-6", "I-8 bad config", True, "2xx ops with authorized=False (count)",
                    {"unauthorized_2xx": 0}, {"unauthorized_2xx": 0, "probes": 30}),
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report") / "nested" / "dir"
    return write_report(out, synthetic_history(), synthetic_results(), profile="quick",
                        version="0.1.0", duration_s=97.25)


def test_reports_what_the_real_checkers_return(tmp_path: Path) -> None:
    history = synthetic_history()
    results = [check(history, "I-1 kill control plane", "I-1"),
               check(history, "I-1 kill control plane", "I-2"),
               check(history, "I-5 kill cell-2", "I-5"),
               check(history, None, "I-6"),
               check(history, "I-8 bad config", "I-8")]
    assert [r.outcome for r in results] == ["passed", "passed", "failed", "passed", "passed"]
    paths = write_report(tmp_path, history, results, profile="quick", version="0.1.0",
                         duration_s=97.0)
    doc = yaml.safe_load(paths["yaml"].read_text())
    assert doc["summary"]["statistics"] == {"Passed": 4, "Failed": 1, "Skipped": 0}
    i2 = next(i for i in doc["invariants"] if i["id"] == "I-2")
    assert i2["measured"]["latency"]["p_value"] == results[1].measured["latency"]["p_value"]
    assert "bystander" in next(i for i in doc["invariants"] if i["id"] == "I-5")["detail"]


def test_write_report_returns_the_three_files(report: dict[str, Path]) -> None:
    assert {k: p.name for k, p in report.items()} == {
        "yaml": "report.yaml", "junit": "junit.xml", "html": "report.html"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in report.values())
    assert not list(report["yaml"].parent.glob(".*.tmp"))


def test_yaml_is_a_gateway_style_report_with_every_figure(report: dict[str, Path]) -> None:
    doc = yaml.safe_load(report["yaml"].read_text())
    assert list(doc)[:4] == ["apiVersion", "kind", "date", "implementation"]
    assert doc["apiVersion"] == "a1.dev/v1alpha1" and doc["kind"] == "ConformanceReport"
    assert doc["date"] == "2025-01-01T12:00:00+00:00"
    assert doc["implementation"] == {"project": "a1", "version": "0.1.0"}
    assert (doc["profile"], doc["seed"], doc["runtime"], doc["runId"]) == (
        "quick", 7, "process", "run-1234")
    assert doc["durationSeconds"] == 97.25 and doc["result"] == "failure"
    summary = doc["summary"]
    assert summary["statistics"] == {"Passed": 3, "Failed": 1, "Skipped": 1}
    assert summary["failedTests"] == ["I-5/I-5 kill cell-2"]
    assert summary["skippedTests"] == ["I-3/I-3 SIGSTOP all"]
    assert summary["invariants"] == {"I-1": "passed", "I-3": "skipped", "I-5": "failed",
                                     "I-6": "passed", "I-8": "passed"}
    ids = [i["id"] for i in doc["invariants"]]
    assert ids == ["I-1", "I-3", "I-5", "I-6", "I-8"]  # by number, not as recorded
    i5 = doc["invariants"][2]
    assert list(i5) == ["id", "title", "result", "scenario", "statistic", "bounds",
                        "measured", "detail", "skippedReason"]
    assert i5["title"] == TITLES["I-5"] and i5["result"] == "failed"
    assert i5["bounds"]["bystander_failed_ops"] == 0
    assert i5["measured"]["bystander_failed_ops"] == 2
    assert i5["measured"]["violations"][0]["tenant"] == EVIL
    assert "\x00" in i5["detail"]  # safe_dump escapes it; it round-trips
    i3 = doc["invariants"][1]
    assert i3["result"] == "skipped" and i3["skippedReason"].startswith("needs root")
    scenarios = {s["name"]: s for s in doc["scenarios"]}
    assert list(scenarios) == ["I-1 kill control plane", "I-5 kill cell-2", "I-8 bad config"]
    assert scenarios["I-5 kill cell-2"]["faults"] == [
        {"fault": "kill:cell-2", "inject": 42.0, "repair": 52.0,
         "expect": "only cell-2's tenants fail"}]
    assert [w["name"] for w in scenarios["I-8 bad config"]["windows"]] == [
        "control", "fault", "recovery"]
    assert len(scenarios["I-8 bad config"]["faults"]) == 3
    assert scenarios["I-1 kill control plane"]["durationSeconds"] == 30.0


def test_junit_counts_failures_skips_and_properties(report: dict[str, Path]) -> None:
    root = ET.parse(report["junit"]).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"),
            root.get("errors")) == ("5", "1", "1", "0")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "a1.conformance.quick" and suite.get("tests") == "5"
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert suite_props["seed"] == "7" and suite_props["version"] == "0.1.0"
    cases = suite.findall("testcase")
    assert len(cases) == 5
    failed = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("classname") for c in failed] == ["a1.conformance.quick.I-5"]
    assert [c.get("classname") for c in skipped] == ["a1.conformance.quick.I-3"]
    failure = failed[0].find("failure")
    assert "\n" not in failure.get("message") and "bystander" in failure.get("message")
    assert "\ufffd" in failure.text and EVIL in failure.text  # NUL replaced, markup as text
    props = {p.get("name"): p.get("value") for p in failed[0].find("properties")}
    assert props["bound.bystander_failed_ops"] == "0"
    assert props["measured.bystander_failed_ops"] == "2"
    assert json.loads(props["measured.violations"])[0]["status"] == 503
    assert skipped[0].find("skipped").get("message").startswith("needs root")
    assert float(cases[0].get("time")) == 30.0


SAFE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "h4",
             "dl", "dt", "dd", "p", "span", "b", "br", "code", "a", "section", "article",
             "footer", "table", "thead", "tbody", "tr", "th", "td", "div", "svg", "rect",
             "line", "text", "circle", "path", "colgroup", "col", "details", "summary"}


class Tags(HTMLParser):
    """The tags, attributes, links and CSS of a page, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.hrefs: list[str] = []
        self.bad_attrs: list[tuple[str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name == "href":
                self.hrefs.append(value or "")
            elif name in ("src", "srcset", "xlink:href", "action") or name.startswith("on"):
                self.bad_attrs.append((tag, name))
            elif name == "style":
                self.styles.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def test_html_is_self_contained_and_escapes_run_strings(report: dict[str, Path]) -> None:
    page = report["html"].read_text()
    tags = Tags()
    tags.feed(page)
    assert tags.names <= SAFE_TAGS, tags.names - SAFE_TAGS  # no script, img, link, iframe
    assert not tags.bad_attrs, tags.bad_attrs  # no src, no on*, links only to anchors
    assert all(a.startswith("#") for a in tags.hrefs) and tags.hrefs
    for ref in ("http:", "https:", "url(", "@import", "javascript:"):
        assert ref not in "".join(tags.styles).lower(), ref
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a tenant group's name
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page  # a fault's name
    for text in ("Invariants", "Fault schedule", "Timelines", TITLES["I-5"],
                 "config:envoy-nack", "bystander", "victim", "p99 per interval",
                 "needs root"):
        assert text in page, text
    assert page.count('class="chart"') == 3 + 3 + 2  # groups per scenario (misroute, probes)


def test_a_long_run_gives_a_bounded_page(tmp_path: Path) -> None:
    history = synthetic_history(seed=3, rate=1000.0)  # ~180k ops, 25 times the small run's
    assert len(history.events) > 150_000
    paths = write_report(tmp_path, history, synthetic_results(), profile="full",
                         version="0.1.0", duration_s=100.0)
    assert paths["html"].stat().st_size < 3_000_000
    small = write_report(tmp_path / "small", synthetic_history(), synthetic_results(),
                         profile="full", version="0.1.0", duration_s=100.0)
    assert paths["html"].stat().st_size < 3 * small["html"].stat().st_size


def test_huge_checker_output_is_capped(tmp_path: Path) -> None:
    big = CheckResult("I-6", "I-8 bad config", False, "count",
                      {"unauthorized_2xx": 0},
                      {"violations": list(range(100_000)), "text": "x" * 1_000_000},
                      "y" * 1_000_000)
    paths = write_report(tmp_path, synthetic_history(), [big], profile="quick",
                         version="0", duration_s=1.0)
    assert all(p.stat().st_size < 2_000_000 for p in paths.values())
    doc = yaml.safe_load(paths["yaml"].read_text())
    violations = doc["invariants"][0]["measured"]["violations"]
    assert len(violations) == 201 and "more items" in violations[-1]


def test_unrepaired_fault_and_empty_history(tmp_path: Path) -> None:
    rec = Recorder()
    rec.record(FaultEvent("s", "pause:sink", "inject", 3.0, "telemetry only"))
    (fault,) = fault_schedule(rec.history)
    assert (fault.inject, fault.repair, fault.duration) == (3.0, None, None)
    paths = write_report(tmp_path, rec.history, [], profile="quick", version="0",
                         duration_s=0.0)
    assert "never" in paths["html"].read_text()
    doc = yaml.safe_load(paths["yaml"].read_text())
    assert doc["result"] == "partial" and doc["seed"] is None  # nothing proven
    assert ET.parse(paths["junit"]).getroot().get("tests") == "0"


def test_a_report_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError) as err:
        write_report(tmp_path / "f", History(), [], profile="quick", version="0",
                     duration_s=0.0)
    assert str(err.value).startswith(str(tmp_path / "f")) and "\n" not in str(err.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_checker_value_dumps_as_safe_yaml_and_json(value: object) -> None:
    doc = plain(value)
    assert yaml.safe_load(dump_yaml(doc)) == doc
    json.dumps(doc, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_makes_parseable_junit(text: str) -> None:
    root = ET.Element("testcase", {"name": xml_text(text)})
    root.text = xml_text(text)
    parsed = ET.fromstring(ET.tostring(root, encoding="utf-8"))
    assert parsed.get("name") == (parsed.text or "") == xml_text(text)


# ---- the page as a user sees it -------------------------------------------------------

def decode_png(data: bytes, max_rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes): 8-bit, non-interlaced PNGs as Chromium writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(min(height, max_rows or height)):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_the_page_renders_in_headless_chromium(report: dict[str, Path], tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.skip("no chromium on PATH: install Debian's chromium to render the report")
    png = tmp_path / "report.png"
    screenshot(report["html"], png, width=1400, height=2000)
    data = png.read_bytes()
    assert 30_000 < len(data) < 20_000_000
    width, height, rows = decode_png(data, max_rows=1200)
    assert (width, height) == (1400, 2000)
    bpp = len(rows[0]) // width
    colours = {row[x:x + 3] for row in rows[::3] for x in range(0, len(row), bpp * 3)}
    assert len(colours) > 40  # text, badges, shading and lines, not one flat colour
    white = sum(1 for row in rows[::3] for x in range(0, len(row), bpp * 3)
                if row[x:x + 3] == b"\xff\xff\xff")
    assert white < 0.95 * len(rows[::3]) * (width // 3 + 1)
    assert any(c[0] > 180 and c[1] < 80 and c[2] < 80 for c in colours)  # red: the failures


def test_screenshot_without_chromium_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as err:
        screenshot(tmp_path / "r.html", tmp_path / "r.png")
    assert "chromium" in str(err.value) and "\n" not in str(err.value)
