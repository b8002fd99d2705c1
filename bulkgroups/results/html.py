"""A report as one self-contained HTML page: inline CSS and an inline SVG chart, no scripts
and no external assets, so it can be mailed or opened from a shared folder as it is. It leads
with the verdict (what happened, what needs doing, the command), then the job, target, input
and runs, the counts, the groups, the failed rows and a chart of progress over time."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import orjson

from bulkgroups.results.file import MAX_ROW, ResultsReader
from bulkgroups.results.report import STATUSES, Report, Timeline, parse_time
from bulkgroups.results.verdict import not_reached, runs, verdict

_W: Final = 760
_H: Final = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 24, 20, 62
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
.verdict{border-left:6px solid #888;background:#f6f6f6;padding:.6em 1em;margin:1em 0;
max-width:60em}
.verdict p{margin:.3em 0}.verdict .head{font-size:1.15em;font-weight:600}
.verdict.ok{border-color:#1e8e3e;background:#eef8f0}
.verdict.warn{border-color:#c77c00;background:#fff6e5}
.verdict.bad{border-color:#b00020;background:#fdecee}
.cmd code{background:#fff;border:1px solid #ccc;padding:.15em .4em;font-size:1em}
"""


def _n(value: int) -> str:
    return f"{value:,}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} ms"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.3g} s"
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
    out = ["<table>"]
    if any(head):
        out += ["<tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        out += [f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _tick_label(t: float, first: float, span_s: float, axis_s: float) -> str:
    """`span_s`: first to last finish; `axis_s`: the time the axis shows (pauses cut)."""
    if span_s < 2:
        return f"+{t - first:,.2f} s"
    if span_s < 120:
        return f"+{t - first:,.1f} s"
    fmt = "%H:%M:%S" if axis_s < 7200 else "%H:%M"
    return datetime.fromtimestamp(t, UTC).strftime(fmt if span_s < 86400 else "%m-%d " + fmt)


def chart_svg(timeline: Timeline) -> str:
    """Rows finished over time (all, and failed), cumulative, as an inline SVG with labelled
    axes: rows on the left, time along the bottom (seconds since the first finish for a run
    under two minutes, UTC clock time otherwise)."""
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

    def real_time(v: float) -> float:
        """The clock time at axis position v (inside a cut pause: its start)."""
        i = max(0, bisect_right(xs, v) - 1)
        return points[i][0] + min(v - xs[i], width)

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
    first = points[0][0]
    wall = points[-1][0] + width - first
    parts = [
        head,
        f'<line x1="{_LEFT}" y1="{base}" x2="{_W - _RIGHT}" y2="{base}" stroke="#888"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base}" stroke="#888"/>',
        # Axis titles.
        f'<text x="16" y="{_TOP + plot_h / 2:.0f}" font-size="11" fill="#444" '
        f'text-anchor="middle" transform="rotate(-90 16 {_TOP + plot_h / 2:.0f})">'
        "outcomes written (cumulative)</text>",
        f'<text x="{_LEFT + plot_w / 2:.0f}" y="{_H - 22}" font-size="11" fill="#444" '
        'text-anchor="middle">'
        + (escape(f"seconds since the first row finished ({_utc(first)})") if wall < 120
           else "time (UTC)" + (" — long pauses cut short" if gaps else ""))
        + "</text>",
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = round(total * frac)
        y = py(value)
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#444">{_n(value)}</text>')
    for k in range(6):
        v = span * k / 5
        tx = px(v)
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        parts.append(f'<line x1="{tx:.1f}" y1="{base}" x2="{tx:.1f}" y2="{base + 4}" '
                     'stroke="#888"/>')
        label = escape(_tick_label(real_time(v), first, wall, span))
        parts.append(f'<text x="{tx:.1f}" y="{base + 16}" font-size="11" fill="#444" '
                     f'text-anchor="{anchor}">{label}</text>')
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
        f'<text x="{_LEFT}" y="{_H - 6}" font-size="11" fill="#1f5fbf">— outcomes written '
        "(a resumed row counts again)</text>",
        f'<text x="{_LEFT + 300}" y="{_H - 6}" font-size="11" fill="#b00020">— of them failed'
        "</text>",
        f'<text x="{_W - _RIGHT}" y="{_H - 6}" font-size="11" fill="#666" text-anchor="end">'
        f"{len(points):,} steps of {_duration(width)}</text>",
        "</svg>",
    ]
    return "".join(parts)


# --- the rows themselves: groups, failed rows, a fine timeline ------------------------------

FAILED_SHOWN: Final = 100  # failed (and invalid) rows listed; the rest are counted
GROUPS_SHOWN: Final = 50
_CHART_STEPS: Final = 240  # a timeline this fine over the active time, whatever its length


@dataclass(frozen=True, slots=True)
class Listed:
    """One row's last line, as the page lists it."""

    row: int
    line: int | None
    op: str
    group: str
    member: str
    to_group: str
    http_status: int | None
    attempts: int | None
    error: str


@dataclass(frozen=True, slots=True)
class Details:
    groups: tuple[tuple[str, dict[str, int]], ...]  # the busiest groups first
    more_groups: int
    failed: tuple[Listed, ...]
    invalid: tuple[Listed, ...]
    timeline: Timeline


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _listed(obj: dict[str, Any]) -> Listed:
    def num(key: str) -> int | None:
        v = obj.get(key)
        return v if type(v) is int else None

    return Listed(row=num("row") or 0, line=num("line"), op=_text(obj, "op"),
                  group=_text(obj, "group"), member=_text(obj, "member"),
                  to_group=_text(obj, "to_group"), http_status=num("http_status"),
                  attempts=num("attempts"), error=_text(obj, "error"))


def details(path: Path, report: Report, *, max_row: int = MAX_ROW) -> Details:
    """A second pass over the results: each row's group and status by its last line (5
    bytes a row), the first failed and invalid rows, and finish times in steps fine enough
    that a run of a few seconds still draws a curve, not three points."""
    groups: dict[str, int] = {}
    group_of = array("I")
    state = bytearray()
    offset = array("Q")
    code = {st: i + 1 for i, st in enumerate(STATUSES)}
    active = max(report.timeline.bucket_s * len(report.timeline.points), 0.05)
    width = max(active / _CHART_STEPS, 0.001)
    buckets: dict[int, list[int]] = {}
    for record in ResultsReader(path, max_row=max_row):
        row, status = record.row, record.status.value
        if row >= len(state):
            more = max(row + 1, 2 * len(state), 1024) - len(state)
            state.extend(bytes(more))
            group_of.frombytes(bytes(more * group_of.itemsize))
            offset.frombytes(bytes(more * offset.itemsize))
        g = record.group or "(none)"
        gi = groups.get(g)
        if gi is None:
            gi = groups[g] = len(groups)
        state[row], group_of[row], offset[row] = code[status], gi, record.offset
        t = parse_time(record.finished_at)
        if t is not None:
            slot = buckets.setdefault(math.floor(t / width), [0, 0])
            slot[0] += 1
            slot[1] += status == "failed"
    names = {i: g for g, i in groups.items()}
    per: dict[int, dict[str, int]] = {}
    failed_at: list[int] = []
    invalid_at: list[int] = []
    for row in range(len(state)):
        st = state[row]
        if not st:
            continue
        name = STATUSES[st - 1]
        counts = per.setdefault(group_of[row], dict.fromkeys(STATUSES, 0))
        counts[name] += 1
        if name == "failed" and len(failed_at) < FAILED_SHOWN:
            failed_at.append(offset[row])
        elif name == "invalid" and len(invalid_at) < FAILED_SHOWN:
            invalid_at.append(offset[row])
    ranked = sorted(per.items(), key=lambda kv: (-sum(kv[1].values()), names[kv[0]]))
    shown = tuple((names[i], c) for i, c in ranked[:GROUPS_SHOWN])
    failed, invalid = _read_at(path, failed_at), _read_at(path, invalid_at)
    points = tuple((k * width, n, f) for k, (n, f) in sorted(buckets.items()))
    return Details(groups=shown, more_groups=max(0, len(ranked) - GROUPS_SHOWN),
                   failed=failed, invalid=invalid, timeline=Timeline(width, points))


def _read_at(path: Path, offsets: Sequence[int]) -> tuple[Listed, ...]:
    found: list[Listed] = []
    with open(path, "rb") as f:
        for at in offsets:
            f.seek(at)
            try:
                obj = orjson.loads(f.readline())
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                found.append(_listed(obj))
    return tuple(found)


# --- the page ------------------------------------------------------------------------------


def _dur_between(a: str | None, b: str | None) -> str:
    ta, tb = parse_time(a), parse_time(b)
    return "–" if ta is None or tb is None else _duration(tb - ta)


def _when(iso: str | None) -> str:
    t = parse_time(iso)
    return "–" if t is None else _utc(t)


def _meta_str(meta: Mapping[str, Any] | None, *keys: str) -> str:
    value: Any = meta or {}
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


def _rows_table(rows: Sequence[Listed], total: int, what: str, hint: str) -> str:
    if not rows:
        return f"<p>no {what} rows</p>"
    head = ("row", "line", "op", "group", "member", "to_group", "HTTP", "tries", "error")
    cells = [
        (_n(r.row), "" if r.line is None else _n(r.line), escape(r.op),
         f"<code>{escape(r.group)}</code>", f"<code>{escape(r.member)}</code>",
         f"<code>{escape(r.to_group)}</code>",
         "" if r.http_status is None else str(r.http_status),
         "" if r.attempts is None else str(r.attempts), escape(r.error))
        for r in rows
    ]
    more = total - len(rows)
    tail = (f'<p class="muted">and {_n(more)} more {what} rows not listed here; {hint}</p>'
            if more > 0 else "")
    return _table(head, cells, {0, 1, 6, 7}) + tail


def render_html(report: Report, *, source: str, generated_at: str,
                meta: Mapping[str, Any] | None = None, results: Path | None = None) -> str:
    """The whole page. `source` names the results file, `generated_at` says when; with
    `results` (the file itself) the page lists groups and failed rows and charts finely."""
    history = runs(meta)
    job_path = _meta_str(meta, "job") or None
    judged = verdict(report, history, results=source, job=job_path)
    missing = not_reached(report, history)
    more = details(results, report) if results is not None else None

    counts = [(escape(s), _n(report.counts[s])) for s in STATUSES]
    if missing:
        counts.append(("<b>finished</b>", f"<b>{_n(report.rows)}</b>"))
        counts.append(('<b class="failed">not reached</b>',
                       f'<b class="failed">{_n(missing)}</b>'))
        counts.append(("input rows", _n(report.rows + missing)))
    else:
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
    about = [
        ("job", escape(_meta_str(meta, "job_name") or "–")
         + (f'<br><code class="muted">{escape(job_path)}</code>' if job_path else "")),
        ("target", escape(" ".join(x for x in (_meta_str(meta, "target", "kind"),
                                                _meta_str(meta, "target", "base_url")) if x)
                          or "–")),
        ("input", f"<code>{escape(_meta_str(meta, 'input') or '–')}</code>"
         + (f" ({_n(report.rows + (missing or 0))} rows)" if missing is not None else "")),
        ("results", f"<code>{escape(source)}</code>"),
        ("report made", escape(generated_at)),
    ]
    run_rows = [
        (str(i), escape(r.command), escape(_when(r.started_at)), escape(_when(r.ended_at)),
         escape(_dur_between(r.started_at, r.ended_at)),
         "–" if r.finished is None else _n(r.finished),
         "–" if r.not_reached is None else _n(r.not_reached),
         "–" if r.exit is None else str(r.exit),
         escape(r.how))
        for i, r in enumerate(history, 1)
    ]
    name = _meta_str(meta, "job_name")
    title = f"bulkgroups report: {name or source}"
    command = (f'<p class="cmd"><span class="muted">run:</span> <code>{escape(judged.command)}'
               "</code></p>" if judged.command else "")
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>bulkgroups report{': ' + escape(name) if name else ''}</h1>"
        f'<p class="muted">{escape(source)} · generated {escape(generated_at)}</p>',
        f'<div class="verdict {judged.level}"><p class="head">{escape(judged.headline)}</p>'
        f"<p>{escape(judged.todo)}</p>{command}</div>",
        "<h2>Job, target and input</h2>",
        _table(("", ""), [(f"<b>{k}</b>", v) for k, v in about], set()),
        "<h2>Runs</h2>",
        _table(("#", "command", "started", "ended", "took", "rows finished", "not reached",
                "exit", "how it ended"), run_rows, {0, 5, 6, 7})
        if run_rows else "<p>no runs recorded (no metadata file beside the results)</p>",
        "<h2>Rows by status</h2>",
        "<p class=\"muted\">Each row counts once, by its last outcome.</p>",
        _table(("status", "rows"), counts, {1}),
        "<h2>By operation</h2>",
        _table(("op", *STATUSES), by_op, set(range(1, len(STATUSES) + 1)))
        if by_op else "<p>no rows</p>",
    ]
    body += [
        "<h2>Progress</h2>",
        chart_svg(more.timeline if more is not None else report.timeline),
        "<h2>Errors</h2>",
        _table(("message", "rows", "example rows"), errors, {1}) if errors
        else "<p>no errors</p>",
    ]
    if more is not None:
        groups = [(f"<code>{escape(g)}</code>", *(_n(c[s]) for s in STATUSES),
                   _n(sum(c.values()))) for g, c in more.groups]
        body += [
            "<h2>By group</h2>",
            _table(("group", *STATUSES, "rows"), groups, set(range(1, len(STATUSES) + 2)))
            if groups else "<p>no rows</p>",
            f'<p class="muted">and {_n(more.more_groups)} more groups</p>'
            if more.more_groups else "",
            "<h2>Failed rows</h2>",
            '<p class="muted">Each failed row’s last attempt; <code>bulkgroups resume</code> '
            "sends them again.</p>",
            _rows_table(more.failed, report.counts.get("failed", 0), "failed",
                        f"<code>bulkgroups report {escape(source)} --failed-csv FILE</code> "
                        "writes them all"),
            "<h2>Invalid rows</h2>",
            _rows_table(more.invalid, report.counts.get("invalid", 0), "invalid",
                        "<code>bulkgroups validate JOB.toml</code> lists them all"),
        ]
    body += [
        "<h2>Speed</h2>",
        "<p class=\"muted\">Latency and retries count every line, resumes included.</p>",
        _table(("figure", "value"), figures, {1}),
        "</body></html>",
    ]
    return "\n".join(body) + "\n"
