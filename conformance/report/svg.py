"""Inline SVG timelines: one chart per tenant group, the windows and faults behind it.

Plain SVG text, no scripts and no external fonts or images, so the page renders
the same offline, in a CI artifact viewer and in headless Chromium. Every string
from the run (group, tenant, fault names) goes through ``esc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from conformance.history import Window
from conformance.report.model import ScheduledFault, clean
from conformance.report.timeline import MIN_LATENCY, Series

WIDTH = 1320
LEFT, RIGHT = 78, 18
PLOT_H = 150
GAP = 10
STRIP_H = 24
AXIS_H = 30
CHAR_W = 6.3  # px per character of 11px sans-serif, for label placement
ROW_H = 14

WINDOW_FILL = {"control": "#e6f2e8", "fault": "#fbdcdb", "recovery": "#e2eafa"}
WINDOW_TEXT = {"control": "#2f6b3a", "fault": "#a1221b", "recovery": "#2c4f96"}
P50, P99, DOT, BAD = "#1f4e9c", "#e07b00", "#7f9cc9", "#d21f1f"


def esc(text: object) -> str:
    """HTML-escaped, quotes too (it goes into attributes), controls made visible."""
    return escape(clean(str(text)), quote=True)


def fmt_latency(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_t(seconds: float) -> str:
    return f"{seconds:.4g} s"


@dataclass(frozen=True)
class Scale:
    """The shared axes of one scenario's charts: time span and log10 latency range."""

    t0: float
    t1: float
    lo: int  # log10 of the bottom of the latency axis
    hi: int

    def x(self, t: float) -> float:
        frac = (t - self.t0) / max(self.t1 - self.t0, 1e-9)
        return LEFT + min(1.0, max(0.0, frac)) * (WIDTH - LEFT - RIGHT)

    def y(self, latency: float, top: float) -> float:
        v = math.log10(max(latency, MIN_LATENCY))
        frac = (v - self.lo) / max(self.hi - self.lo, 1e-9)
        return top + PLOT_H - min(1.0, max(0.0, frac)) * PLOT_H


def scale_for(t0: float, t1: float, groups: list[Series]) -> Scale:
    """Axes that fit every group of the scenario, so groups compare at a glance."""
    values = [v for s in groups for b in s.buckets for v in (b.p50, b.p99) if v]
    values += [p.latency for s in groups for p in s.points]
    if not values:
        return Scale(t0, t1, -4, -1)
    lo = math.floor(math.log10(max(min(values), MIN_LATENCY)))
    hi = math.ceil(math.log10(max(max(values), MIN_LATENCY)) + 1e-9)
    return Scale(t0, t1, lo, max(hi, lo + 1))


def _nice_step(span: float, target: int = 10) -> float:
    raw = max(span, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _latency_ticks(scale: Scale) -> list[tuple[float, bool]]:
    """(latency, major) ticks: every decade, and 2 and 5 times it when there is room."""
    ticks: list[tuple[float, bool]] = []
    for e in range(scale.lo, scale.hi + 1):
        ticks.append((10.0 ** e, True))
        if scale.hi - scale.lo <= 2 and e < scale.hi:
            ticks += [(2 * 10.0 ** e, False), (5 * 10.0 ** e, False)]
    return ticks


def _label_rows(faults: list[ScheduledFault], scale: Scale) -> list[int]:
    """Row of each fault label, stacking labels that would overlap."""
    ends: list[float] = []
    rows = []
    for f in faults:
        x = scale.x(f.inject if f.inject is not None else (f.repair or scale.t0))
        width = len(_short(f.fault)) * CHAR_W + 16
        row = next((i for i, end in enumerate(ends) if x > end + 6), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = x + width
        rows.append(row)
    return rows


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chart(series: Series, scale: Scale, windows: list[Window],
          faults: list[ScheduledFault]) -> str:
    """One group's timeline: latency (log scale) above, unexpected-outcome rate below."""
    rows = _label_rows(faults, scale)
    top = 20 + ROW_H * (max(rows) + 1 if rows else 0) + 4
    strip = top + PLOT_H + GAP
    height = strip + STRIP_H + AXIS_H
    right = WIDTH - RIGHT
    out = [f'<svg width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" class="chart" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f"<title>{esc(series.group)}: latency and unexpected outcomes over time</title>"]
    # windows: shaded bands behind the plot and the strip, named above them
    for w in windows:
        x0, x1 = scale.x(w.start), scale.x(w.end)
        fill = WINDOW_FILL.get(w.name, "#eeeeee")
        out.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0.5):.1f}" '
                   f'height="{strip + STRIP_H - top}" fill="{fill}">'
                   f"<title>{esc(w.name)} window {fmt_t(w.start)} – {fmt_t(w.end)}</title></rect>")
        name = esc(w.name)
        if len(w.name) * CHAR_W + 8 <= x1 - x0:
            out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="13" text-anchor="middle" '
                       f'font-weight="bold" fill="{WINDOW_TEXT.get(w.name, "#444")}">'
                       f"{name}</text>")
    # latency grid and axis
    for lat, major in _latency_ticks(scale):
        y = scale.y(lat, top)
        out.append(f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{"#b9b9b9" if major else "#dedede"}" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'fill="{"#333" if major else "#888"}">{esc(fmt_latency(lat))}</text>')
    out.append(f'<text transform="translate(14 {top + PLOT_H / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle" fill="#333">latency (log)</text>')
    # time axis
    step = _nice_step(scale.t1 - scale.t0)
    t = math.ceil(scale.t0 / step) * step
    while t <= scale.t1 + 1e-9:
        x = scale.x(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{strip + STRIP_H}" '
                   f'y2="{strip + STRIP_H + 4}" stroke="#555"/>')
        out.append(f'<text x="{x:.1f}" y="{strip + STRIP_H + 16}" text-anchor="middle" '
                   f'fill="#333">{t:g} s</text>')
        t += step
    out.append(f'<text x="{right}" y="{height - 2}" text-anchor="end" fill="#555">'
               f"time since run start</text>")
    # ops: a sample of every op, then the p50 and p99 per bucket, then the unexpected ones
    for p in series.points:
        if not p.bad:
            out.append(f'<circle cx="{scale.x(p.t):.1f}" cy="{scale.y(p.latency, top):.1f}" '
                       f'r="1.6" fill="{DOT}" fill-opacity="0.55"/>')
    for attr, colour, width in (("p50", P50, 1.8), ("p99", P99, 1.8)):
        path = _bucket_path(series, scale, top, attr)
        if path:
            out.append(f'<path d="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="{width}" stroke-linejoin="round"/>')
    for p in series.points:
        if p.bad:
            x, y = scale.x(p.t), scale.y(p.latency, top)
            out.append(f'<path d="M{x - 3:.1f} {y - 3:.1f}L{x + 3:.1f} {y + 3:.1f}'
                       f'M{x - 3:.1f} {y + 3:.1f}L{x + 3:.1f} {y - 3:.1f}" stroke="{BAD}" '
                       f'stroke-width="1.6"><title>{esc(fmt_t(p.t))}: {esc(p.label)}'
                       f"</title></path>")
    # faults: inject (solid) and repair (dashed) lines, the name at the inject line
    for f, row in zip(faults, rows, strict=True):
        for when, dash, colour in ((f.inject, "", BAD), (f.repair, ' stroke-dasharray="4 3"',
                                                         "#2f6b3a")):
            if when is not None:
                x = scale.x(when)
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                           f'y2="{strip + STRIP_H}" stroke="{colour}" stroke-width="1.4"{dash}/>')
        x = scale.x(f.inject if f.inject is not None else (f.repair or scale.t0))
        y = 20 + ROW_H * row + 9
        out.append(f'<text x="{x + 3:.1f}" y="{y}" fill="{BAD}">⚡ {esc(_short(f.fault))}'
                   f"<title>{esc(f.fault)}: {esc(f.expect)}</title></text>")
    # plot frame, then the unexpected-outcome strip
    out.append(f'<rect x="{LEFT}" y="{top}" width="{right - LEFT}" height="{PLOT_H}" '
               f'fill="none" stroke="#888"/>')
    out.append(f'<rect x="{LEFT}" y="{strip}" width="{right - LEFT}" height="{STRIP_H}" '
               f'fill="#ffffff" fill-opacity="0.55" stroke="#888"/>')
    out.append(f'<text x="{LEFT - 6}" y="{strip + STRIP_H / 2 + 4}" text-anchor="end" '
               f'fill="{BAD}">errors</text>')
    for b in series.buckets:
        if b.bad:
            x0, x1 = scale.x(b.t0), scale.x(b.t1)
            h = max(2.0, STRIP_H * b.bad / b.n)
            out.append(f'<rect x="{x0:.1f}" y="{strip + STRIP_H - h:.1f}" '
                       f'width="{max(x1 - x0, 1.5):.1f}" height="{h:.1f}" fill="{BAD}">'
                       f"<title>{esc(fmt_t(b.t0))}: {b.bad} of {b.n} ops unexpected</title>"
                       f"</rect>")
    if not series.n:
        out.append(f'<text x="{(LEFT + right) / 2}" y="{top + PLOT_H / 2}" '
                   f'text-anchor="middle" fill="#777">no operations recorded</text>')
    out.append("</svg>")
    return "\n".join(out)


def _bucket_path(series: Series, scale: Scale, top: float, attr: str) -> str:
    """An SVG path through the bucket centres, broken where buckets are empty."""
    parts: list[str] = []
    prev_t1: float | None = None
    for b in series.buckets:
        value = getattr(b, attr)
        if value is None:
            continue
        x, y = scale.x((b.t0 + b.t1) / 2), scale.y(value, top)
        joined = prev_t1 is not None and abs(b.t0 - prev_t1) < (b.t1 - b.t0) * 0.01
        parts.append(f"{'L' if joined else 'M'}{x:.1f} {y:.1f}")
        prev_t1 = b.t1
    return "".join(parts)


def legend() -> str:
    """The key shared by every chart."""
    items = [
        f'<svg width="26" height="12"><line x1="1" x2="25" y1="6" y2="6" stroke="{P50}" '
        f'stroke-width="2"/></svg> p50 per interval',
        f'<svg width="26" height="12"><line x1="1" x2="25" y1="6" y2="6" stroke="{P99}" '
        f'stroke-width="2"/></svg> p99 per interval',
        f'<svg width="12" height="12"><circle cx="6" cy="6" r="2.5" fill="{DOT}"/></svg> '
        "an op (sampled)",
        f'<svg width="12" height="12"><path d="M2 2L10 10M2 10L10 2" stroke="{BAD}" '
        f'stroke-width="2"/></svg> unexpected outcome',
        f'<svg width="14" height="12"><rect width="14" height="12" '
        f'fill="{WINDOW_FILL["control"]}"/></svg> control window',
        f'<svg width="14" height="12"><rect width="14" height="12" '
        f'fill="{WINDOW_FILL["fault"]}"/></svg> fault window',
        f'<svg width="14" height="12"><rect width="14" height="12" '
        f'fill="{WINDOW_FILL["recovery"]}"/></svg> recovery window',
        f'<svg width="14" height="12"><line x1="7" x2="7" y1="0" y2="12" stroke="{BAD}" '
        f'stroke-width="2"/></svg> inject',
        '<svg width="14" height="12"><line x1="7" x2="7" y1="0" y2="12" stroke="#2f6b3a" '
        'stroke-width="2" stroke-dasharray="3 2"/></svg> repair',
    ]
    return '<div class="legend">' + "".join(f"<span>{i}</span>" for i in items) + "</div>"
