"""A report as one self-contained HTML page: inline CSS and an inline SVG chart, no scripts
and no external assets, so it can be mailed or opened from a shared folder as it is."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from typing import Final

from bulkgroups.results.report import STATUSES, Report, Timeline

_W: Final = 760
_H: Final = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 20, 46
# A pause longer than this (between a run and its resume, or a long Retry-After) is drawn
# this wide and marked, so a resume a week later does not flatten the chart to two spikes.
_MIN_GAP_S: Final = 300.0

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}.muted{color:#666}.failed{color:#b00020}
code{font-size:.95em;word-break:break-all}
svg{border:1px solid #ddd;background:#fff;max-width:100%;height:auto}
"""


def _n(value: int) -> str:
    return f"{value:,}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {s} s"


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A table of already-escaped cells."""
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        out += [f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def chart_svg(timeline: Timeline) -> str:
    """Rows finished over time (all, and failed), cumulative, as an inline SVG."""
    head = (f'<svg width="{_W}" height="{_H}" '
            f'viewBox="0 0 {_W} {_H}" role="img" aria-label="rows finished over time">')
    points = timeline.points
    if not points:
        return (head + f'<text x="{_W // 2}" y="{_H // 2}" text-anchor="middle" fill="#666">'
                "no finish times to chart</text></svg>")
    width = timeline.bucket_s
    long_pause = max(_MIN_GAP_S, 10 * width)
    starts = [t for t, _, _ in points]
    pauses = [max(0.0, b - a - width) for a, b in pairwise(starts)]
    active = len(points) * width + sum(p for p in pauses if p <= long_pause)
    # Time on the x axis counts only while rows were finishing; a long pause is drawn as a
    # sliver of the active time and marked with how long it really was.
    cut = max(2 * width, active / 20)
    xs: list[float] = [0.0]
    gaps: list[tuple[float, float]] = []  # (x where the pause starts, its real length)
    for pause in pauses:
        x = xs[-1] + width
        if pause > long_pause:
            gaps.append((x, pause))
            pause = cut
        xs.append(x + pause)
    x = xs[-1] + width
    span = x or 1.0
    total = sum(n for _, n, _ in points)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(v: float) -> float:
        return _LEFT + v / span * plot_w

    def py(v: float) -> float:
        return _TOP + plot_h - v / max(total, 1) * plot_h

    all_path = [f"M{px(0):.1f},{py(0):.1f}"]
    failed_path = [f"M{px(0):.1f},{py(0):.1f}"]
    done = failed = 0
    for x0, (_, n, f) in zip(xs, points, strict=True):
        all_path.append(f"L{px(x0):.1f},{py(done):.1f}")
        failed_path.append(f"L{px(x0):.1f},{py(failed):.1f}")
        done += n
        failed += f
        all_path.append(f"L{px(x0 + width):.1f},{py(done):.1f}")
        failed_path.append(f"L{px(x0 + width):.1f},{py(failed):.1f}")
    base = _TOP + plot_h
    parts = [
        head,
        f'<line x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}" stroke="#888"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}" stroke="#888"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        value = round(total * frac)
        y = py(value)
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#444">{_n(value)}</text>')
    for gx, pause in gaps:
        gxp = px(gx + cut / 2)
        parts.append(f'<line x1="{gxp:.1f}" y1="{_TOP}" x2="{gxp:.1f}" y2="{base}" '
                     f'stroke="#999" stroke-dasharray="4 3"><title>paused {_duration(pause)}'
                     "</title></line>")
        parts.append(f'<text x="{gxp + 3:.1f}" y="{_TOP + 12}" font-size="10" fill="#666">'
                     f"paused {_duration(pause)}</text>")
    parts += [
        f'<path d="{" ".join(all_path)}" fill="none" stroke="#1f5fbf" stroke-width="2"/>',
        f'<path d="{" ".join(failed_path)}" fill="none" stroke="#b00020" stroke-width="1.5"/>',
        f'<text x="{_LEFT}" y="{_H - 24}" font-size="11" fill="#444">'
        f"{escape(_utc(points[0][0]))}</text>",
        f'<text x="{_W - _RIGHT}" y="{_H - 24}" font-size="11" fill="#444" text-anchor="end">'
        f"{escape(_utc(points[-1][0] + width))}</text>",
        f'<text x="{_LEFT}" y="{_H - 6}" font-size="11" fill="#1f5fbf">— rows finished</text>',
        f'<text x="{_LEFT + 130}" y="{_H - 6}" font-size="11" fill="#b00020">— of them failed'
        "</text>",
        f'<text x="{_W - _RIGHT}" y="{_H - 6}" font-size="11" fill="#666" text-anchor="end">'
        f"buckets of {_duration(width)}</text>",
        "</svg>",
    ]
    return "".join(parts)


def render_html(report: Report, *, source: str, generated_at: str) -> str:
    """The whole page. `source` names the results file, `generated_at` says when."""
    counts = [(escape(s), _n(report.counts[s])) for s in STATUSES]
    counts.append(("<b>total rows</b>", f"<b>{_n(report.rows)}</b>"))
    by_op = [(escape(op), *(_n(per[s]) for s in STATUSES)) for op, per in report.by_op.items()]
    rate = "–" if report.rows_per_s is None else f"{report.rows_per_s:,.2f}"
    over = ("" if report.run_seconds is None
            else f" over {_duration(report.run_seconds)} of "
            + ("run time" if report.rate_from == "runs" else "first to last finish"))
    lat = report.latency_ms
    figures = [
        ("rows a second", rate + escape(over)),
        ("latency p50", _ms(lat.p50)),
        ("latency p95", _ms(lat.p95)),
        ("latency max", _ms(lat.max)),
        ("rows that sent requests", _n(report.requests)),
        ("retries", _n(report.retries)),
        ("results lines", _n(report.lines)),
        ("unreadable lines (skipped)", _n(report.unreadable)),
    ]
    errors = [
        (f"<code>{escape(e.message)}</code>", _n(e.count),
         escape(", ".join(str(r) for r in e.rows)) + (" …" if e.count > len(e.rows) else ""))
        for e in report.errors
    ]
    title = f"bulkgroups report: {source}"
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>bulkgroups report</h1><p class=\"muted\">{escape(source)}<br>"
        f"generated {escape(generated_at)}</p>",
        "<h2>Rows by status</h2>",
        "<p class=\"muted\">Each row counts once, by its last outcome.</p>",
        _table(("status", "rows"), counts, {1}),
        "<h2>By operation</h2>",
        _table(("op", *STATUSES), by_op, set(range(1, len(STATUSES) + 1)))
        if by_op else "<p>no rows</p>",
        "<h2>Speed</h2>",
        "<p class=\"muted\">Latency and retries count every line, resumes included.</p>",
        _table(("figure", "value"), figures, {1}),
        "<h2>Progress</h2>",
        chart_svg(report.timeline),
        "<h2>Errors</h2>",
        _table(("message", "rows", "example rows"), errors, {1}) if errors
        else "<p>no errors</p>",
        "</body></html>",
    ]
    return "\n".join(body) + "\n"
