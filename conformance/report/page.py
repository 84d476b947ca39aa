"""``report.html``: one self-contained page a platform team reads after a run.

No scripts, no external stylesheets, fonts or images: inline CSS and inline SVG
only, so it opens from a CI artifact or a mail attachment as it is. Every string
that comes from a run (tenant, group, scenario and fault names, details) is
escaped: a tenant named ``<script>`` shows as text. The page's size is bounded by
the timeline's per-group aggregation, not by the run's length.
"""

from __future__ import annotations

import json
import math
from typing import Any

from conformance.checkers.base import CheckResult
from conformance.history import History, Op
from conformance.report.model import (
    ScheduledFault,
    by_invariant,
    fault_schedule,
    overall,
    plain,
    sorted_results,
    statistics,
)
from conformance.report.svg import chart, esc, fmt_latency, fmt_t, legend, scale_for
from conformance.report.timeline import series
from conformance.report.titles import title

MAX_DETAIL = 2000  # characters of a detail shown in the page (report.yaml has more)
MAX_VALUE = 160  # characters of one bound or measured value in the summary table
COLUMNS = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in (
    9, 9, 7, 17, 15, 22, 21)) + "</colgroup>"  # invariant .. detail: fixed, so long
# keys and details wrap inside their column instead of squeezing the others
MAX_ROWS = 40  # bounds or measured values shown per check

CSS = """
body{font:14px/1.45 Helvetica,Arial,sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1360px;margin:0 auto;padding:18px 20px 40px}
h1{font-size:24px;margin:4px 0 10px}h2{font-size:19px;margin:28px 0 10px;
border-bottom:2px solid #ddd;padding-bottom:4px}h3{font-size:16px;margin:22px 0 6px}
h4{font-size:13px;margin:12px 0 2px;font-weight:600;color:#333}
.meta{display:grid;grid-template-columns:repeat(4,auto);gap:2px 18px;justify-content:start;
margin:0 0 10px}.meta dt{color:#666}.meta dd{margin:0;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;
font-weight:700;text-transform:uppercase;letter-spacing:.03em;color:#fff;white-space:nowrap}
.badge.passed,.badge.success{background:#2e7d32}.badge.failed,.badge.failure{background:#c62828}
.badge.skipped,.badge.partial{background:#8d6e00}
h1 .badge{font-size:15px;vertical-align:middle;margin-left:8px}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #ddd;padding:5px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-size:12px}
tr.failed>td{background:#fff3f2}tr.skipped>td{background:#fffbea}
table.summary{table-layout:fixed}td.pairs{font-size:12px}
.kv{display:inline-block;margin:0 8px 2px 0;color:#555;overflow-wrap:anywhere}
.kv b{color:#111;font-weight:600;font-variant-numeric:tabular-nums}.kv.both{color:#111}
.kv.both b{background:#eef3fb;padding:0 3px;border-radius:3px}
.zero{opacity:.4}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.detail{white-space:pre-wrap;word-break:break-word;font:12px/1.4 Menlo,Consolas,monospace;
max-height:14em;overflow:auto}
.statistic{font-size:12px}
summary{cursor:pointer;color:#333}details[open] summary{color:#777}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:6px 0 4px;
padding:6px 8px;background:#fff;border:1px solid #ddd}
.legend span{display:inline-flex;align-items:center;gap:5px}
.scenario{background:#fff;border:1px solid #ddd;padding:2px 12px 10px;margin:14px 0}
.scenario p{margin:4px 0;font-size:13px}svg.chart{display:block;max-width:100%;height:auto}
.muted{color:#666}footer{margin-top:30px;font-size:12px;color:#555}
"""


def report_html(history: History, results: list[CheckResult], *, profile: str,
                implementation: str, version: str, runtime: str, duration_s: float,
                date: str) -> str:
    ordered = sorted_results(results)
    scenarios = history.scenarios()
    anchors = {s: f"scenario-{i}" for i, s in enumerate(scenarios)}
    meta = history.meta
    stats = statistics(ordered)
    result = overall(ordered)
    fields = [("implementation", implementation), ("version", version),
              ("profile", profile), ("runtime", runtime),
              ("seed", meta.seed if meta else "—"), ("run id", meta.run_id if meta else "—"),
              ("date", date), ("duration", f"{duration_s:.1f} s")]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(implementation)} conformance report: {esc(result)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f'<h1>{esc(implementation)} conformance report <span class="badge {result}">'
        f"{result}</span></h1>",
        '<dl class="meta">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fields)
        + "</dl>",
        "<p>" + " ".join(
            f'<span class="badge {k.lower()}{"" if n else " zero"}">{n} {k.lower()}</span>'
            for k, n in stats.items()) + " "
        f'<span class="muted">checks over {len(by_invariant(ordered))} invariants and '
        f"{len(scenarios)} scenarios</span></p>",
        _summary(ordered, anchors),
        _schedule(fault_schedule(history), anchors),
        _timelines(history, ordered, scenarios, anchors),
        "<footer>Times are seconds since the run started. Every chart of a scenario shares "
        "its time and latency axes. Red marks are unexpected outcomes: a failed authorized "
        "request, a request that had to be refused but succeeded, or a misroute not "
        "answered 421. The full history is the run's <code>history.jsonl</code>; "
        "<code>report.yaml</code> holds every figure of this page.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(results: list[CheckResult], anchors: dict[str, str]) -> str:
    rows = ['<section id="summary"><h2>Invariants</h2><table class="summary">' + COLUMNS +
            "<thead><tr>"
            "<th>invariant</th><th>scenario</th><th>result</th><th>statistic</th>"
            "<th>bounds</th><th>measured</th><th>detail</th></tr></thead><tbody>"]
    for r in results:
        link = anchors.get(r.scenario)
        scenario = (f'<a href="#{link}">{esc(r.scenario)}</a>' if link
                    else esc(r.scenario))
        why = r.skipped if r.outcome == "skipped" else r.detail
        rows.append(
            f'<tr class="{r.outcome}"><td><b>{esc(r.invariant)}</b><br>'
            f"{esc(title(r.invariant))}</td><td>{scenario}</td>"
            f'<td><span class="badge {r.outcome}">{r.outcome}</span></td>'
            f'<td class="statistic">{_statistic(r.statistic)}</td>'
            f'<td class="pairs">{_pairs(r.bounds, r.measured)}</td>'
            f'<td class="pairs">{_pairs(r.measured, r.bounds)}</td>'
            f'<td><div class="detail">{esc(_cut(str(why or ""), MAX_DETAIL))}</div></td></tr>')
    if not results:
        rows.append('<tr><td colspan="7" class="muted">no checks ran</td></tr>')
    rows.append("</tbody></table></section>")
    return "\n".join(rows)


def _statistic(text: str) -> str:
    """A long statistic folds under its first clause (``details``: no script needed)."""
    text = _cut(str(text), MAX_DETAIL)
    if len(text) <= 140:
        return esc(text)
    head = text.split(";", 1)[0]
    head = head if len(head) <= 110 else head[:100].rsplit(" ", 1)[0]
    return f"<details><summary>{esc(head)} …</summary>{esc(text)}</details>"


def _pairs(value: Any, other: Any) -> str:
    """``key value`` chips, wrapping; a key the other side also has is in bold, so a
    bound and the figure measured against it are easy to pair by eye."""
    mine, theirs = _flat(value), _flat(other)
    if not mine:
        return '<span class="muted">—</span>'
    chips = [f'<span class="kv{" both" if k in theirs else ""}">{esc(k)} '
             f"<b>{_value(v)}</b></span>" for k, v in list(mine.items())[:MAX_ROWS]]
    if len(mine) > MAX_ROWS:
        chips.append(f'<span class="muted">… {len(mine) - MAX_ROWS} more (report.yaml)</span>')
    return "".join(chips)


def _flat(value: Any) -> dict[str, Any]:
    """Nested mappings as dotted keys (``latency.victim.p99_ms``), so a bound and the
    figure measured against it share a row; lists stay whole."""
    doc = plain(value)
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any, depth: int) -> None:
        if isinstance(v, dict) and v and depth < 4:
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), sub, depth + 1)
        else:
            out[prefix or "value"] = v

    if doc not in ({}, [], None, ""):
        walk("", doc, 0)
    return out


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return esc(_cut(text, MAX_VALUE))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "… (truncated; see report.yaml)"


def _schedule(faults: list[ScheduledFault], anchors: dict[str, str]) -> str:
    rows = ['<section id="faults"><h2>Fault schedule</h2><table><thead><tr><th>scenario</th>'
            "<th>fault</th><th>inject</th><th>repair</th><th>duration</th>"
            "<th>expected outcome</th></tr></thead><tbody>"]
    for f in faults:
        link = anchors.get(f.scenario, "")
        rows.append(
            f'<tr><td><a href="#{link}">{esc(f.scenario)}</a></td><td>{esc(f.fault)}</td>'
            f"<td class=num>{_time(f.inject)}</td><td class=num>{_time(f.repair)}</td>"
            f"<td class=num>{_time(f.duration)}</td><td>{esc(f.expect)}</td></tr>")
    if not faults:
        rows.append('<tr><td colspan="6" class="muted">no faults injected</td></tr>')
    rows.append("</tbody></table></section>")
    return "\n".join(rows)


def _time(t: float | None) -> str:
    return "never" if t is None else esc(fmt_t(t))


def _timelines(history: History, results: list[CheckResult], scenarios: list[str],
               anchors: dict[str, str]) -> str:
    parts = ['<section id="timelines"><h2>Timelines</h2>',
             '<p class="muted">Per scenario, one chart per tenant group: the latency of '
             "requests over time (log scale; the p50 and p99 lines are of the requests "
             "whose outcome was the expected one, red crosses are the others) and, in the "
             "strip below, the share of unexpected outcomes per interval.</p>", legend()]
    for s in scenarios:
        parts.append(_scenario(history, s, [r for r in results if r.scenario == s],
                               anchors[s]))
    parts.append("</section>")
    return "\n".join(parts)


def _scenario(history: History, scenario: str, results: list[CheckResult],
              anchor: str) -> str:
    windows = history.windows(scenario)
    faults = fault_schedule(history, scenario)
    # the post-run readback is not load: it would stretch the time axis past the windows
    ops = [op for op in history.ops(scenario) if op.f != "readback"]
    groups: dict[str, list[Op]] = {}
    for op in ops:
        groups.setdefault(op.group, []).append(op)
    out = [f'<article class="scenario" id="{anchor}"><h3>{esc(scenario)}</h3>']
    if results:
        out.append("<p>" + " ".join(
            f'<span class="badge {r.outcome}">{esc(r.invariant)} {r.outcome}</span>'
            for r in results) + "</p>")
    if windows:
        out.append("<p>windows: " + " · ".join(
            f"<b>{esc(w.name)}</b> {esc(fmt_t(w.start))} – {esc(fmt_t(w.end))}"
            for w in windows) + "</p>")
    times = [t for w in windows for t in (w.start, w.end)]
    times += [t for f in faults for t in (f.inject, f.repair) if t is not None]
    times += [t for op in ops for t in (op.invoke, op.complete)]
    times = [t for t in times if math.isfinite(t)]
    if not times:
        out.append('<p class="muted">nothing recorded</p></article>')
        return "\n".join(out)
    t0, t1 = min(times), max(times)
    if t1 <= t0:
        t1 = t0 + 1.0
    drawn = [series(g, g_ops, t0, t1) for g, g_ops in groups.items()]
    scale = scale_for(t0, t1, drawn)
    for s in drawn or [series("(no load)", [], t0, t1)]:
        summary = (f"{s.n} ops, {s.bad} unexpected" +
                   (f"; the others: p50 {fmt_latency(s.p50)}, p99 {fmt_latency(s.p99)}"
                    if s.p50 is not None and s.p99 is not None else ""))
        out.append(f'<h4>group {esc(s.group)} <span class="muted">({esc(summary)})</span></h4>')
        out.append(chart(s, scale, windows, faults))
    out.append("</article>")
    return "\n".join(out)
