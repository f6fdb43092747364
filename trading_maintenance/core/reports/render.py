"""A report dict as HTML (one self-contained file, inline SVG charts), JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from html import escape

CSV_COLUMNS = ("task", "runs", "succeeded", "failed", "canceled", "dry_runs", "duration_p50_s", "duration_p95_s",
               "bytes_freed", "files_processed")
_TITLES = {
    "resources": "Resource trends", "failures": "Failures", "recommendations": "Recommendations",
    "efficiency": "Efficiency", "health_trends": "System health trends", "effectiveness": "Task effectiveness ranking",
    "benchmarks": "Performance benchmarks", "resource_usage": "Resource usage analysis", "error_patterns": "Error patterns",
    "optimization_impact": "Optimization impact",
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2430;margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#57606a;margin-bottom:16px}table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f3f5f7}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b3261e;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
figure{margin:0;border:1px solid #d0d7de;padding:6px}figcaption{font-size:12px;color:#57606a}
svg .line{fill:none;stroke:#0a66c2;stroke-width:1.6}svg .axis{stroke:#8c959f;stroke-width:1}svg text{font-size:10px;fill:#57606a}
.sev-critical{color:#b3261e;font-weight:600}.sev-warning{color:#9a6700;font-weight:600}
@media print{body{margin:0;max-width:none}figure,table,tr{break-inside:avoid}h2{break-after:avoid}a{color:inherit}}
"""


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)


def render_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["tasks"]:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_COLUMNS})
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, float)):
        return f'<td class="n">{value:,}</td>' if isinstance(value, int) else f'<td class="n">{value:,.3f}</td>'.replace(".000<", "<")
    return f"<td>{escape(str(value))}</td>"


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    columns = columns or list(rows[0].keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def svg_line_chart(series: list[list[float]], title: str, width: int = 320, height: int = 120) -> str:
    """A line chart as inline SVG; the polyline carries the points so a reader (or test) sees the data."""
    pad_left, pad_bottom, pad_top = 38, 16, 6
    if len(series) < 2:
        return (
            f'<svg role="img" aria-label="{escape(title)}: not enough samples" width="{width}" height="{height}">'
            '<text x="8" y="20">not enough samples</text></svg>'
        )
    xs, ys = [p[0] for p in series], [p[1] for p in series]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top

    def sx(x: float) -> float:
        return pad_left + (x - x0) / ((x1 - x0) or 1) * plot_w

    def sy(y: float) -> float:
        return pad_top + (1 - (y - y0) / (y1 - y0)) * plot_h

    points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
    start = datetime.fromtimestamp(x0, timezone.utc).strftime("%m-%d %H:%M")
    end = datetime.fromtimestamp(x1, timezone.utc).strftime("%m-%d %H:%M")
    return (
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<line class="axis" x1="{pad_left}" y1="{pad_top}" x2="{pad_left}" y2="{pad_top + plot_h}"/>'
        f'<line class="axis" x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 4}" y2="{pad_top + plot_h}"/>'
        f'<text x="2" y="{pad_top + 8}">{_short(y1)}</text><text x="2" y="{pad_top + plot_h}">{_short(y0)}</text>'
        f'<text x="{pad_left}" y="{height - 3}">{start} UTC</text><text x="{width - 4}" y="{height - 3}" text-anchor="end">{end}</text>'
        f'<polyline class="line" points="{points}"/></svg>'
    )


def _short(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}"


def _resources_html(resources: dict) -> str:
    figures, rows = [], []
    for metric, data in resources.items():
        figures.append(f"<figure>{svg_line_chart(data['series'], metric)}<figcaption>{escape(metric)}</figcaption></figure>")
        cur, prev = data["current"], data["previous"]
        rows.append({"metric": metric, "samples": cur["samples"], "min": cur["min"], "mean": cur["mean"], "max": cur["max"],
                     "last": cur["last"], "previous mean": prev["mean"], "previous max": prev["max"]})
    return f'<div class="charts">{"".join(figures)}</div>' + _table(rows)


def _recommendations_html(items: list[dict]) -> str:
    if not items:
        return "<p><em>none</em></p>"
    lis = "".join(
        f'<li><span class="sev-{escape(i["severity"])}">{escape(i["severity"])}</span> <strong>{escape(str(i["topic"]))}</strong>: '
        f'{escape(i["message"])} &mdash; {escape(i["action"])}</li>' for i in items
    )
    return f"<ul>{lis}</ul>"


def render_html(report: dict, ui_base_url: str = "") -> str:
    period = report["period"]
    title = f"Maintenance report ({report['type']}) {period['label']}"
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(period["start"])} to {escape(period["end"])} &middot; generated {escape(report["generated_at"])}</p>',
        "<h2>Task execution summary</h2>",
        _table(report["tasks"], list(CSV_COLUMNS)),
        _table([{"": "all tasks", **report["totals"]}]),
    ]
    for section in report["sections"]:
        if section == "tasks" or section not in report:
            continue
        parts.append(f"<h2>{escape(_TITLES.get(section, section))}</h2>")
        data = report[section]
        if section == "resources":
            parts.append(_resources_html(data))
        elif section == "recommendations":
            parts.append(_recommendations_html(data))
        elif section == "failures":
            rows = [{**f, "run": f["run_id"]} for f in data]
            html = _table(rows, ["task", "status", "started", "error_type", "error", "run"])
            if ui_base_url:
                for f in data:
                    link = f'<a href="{escape(ui_base_url.rstrip("/"))}/runs/{escape(f["run_id"])}">{escape(f["run_id"][:8])}</a>'
                    html = html.replace(f"<td>{escape(f['run_id'])}</td>", f"<td>{link}</td>", 1)
            parts.append(html)
        elif section == "health_trends":
            series = [[_day_ts(r["day"]), r["mean"]] for r in data]
            parts.append(f"<figure>{svg_line_chart(series, 'daily mean health score', 640, 140)}<figcaption>daily mean health score</figcaption></figure>")
            parts.append(_table(data))
        elif isinstance(data, dict):
            parts.append(_table([data]))
        else:
            parts.append(_table(data))
    parts.append("</body></html>")
    return "".join(parts)


def _day_ts(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()


RENDERERS = {"html": render_html, "json": render_json, "csv": render_csv}
