"""A self-contained HTML page with SVG charts of a harness run (no JavaScript, no downloads).

Three charts: calls per second over time per RPC, p50/p99 latency per second per RPC, and the
latency distribution (CDF) per RPC; plus the report's tables.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clients.loadtest.stats import Sample, percentile

WIDTH, HEIGHT = 920, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 36, 44
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
CDF_POINTS = 200

Series = dict[str, list[tuple[float, float]]]


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks: list[float] = []
    value = first
    while value <= high + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def line_chart(
    title: str, series: Series, *, x_label: str, y_label: str, log_x: bool = False, log_y: bool = False
) -> str:
    points = [point for values in series.values() for point in values]
    if not points:
        return f"<p><em>{html.escape(title)}: no data</em></p>"

    def scale(value: float, log: bool) -> float:
        return math.log10(max(value, 1e-3)) if log else value

    xs = [scale(x, log_x) for x, _ in points]
    ys = [scale(y, log_y) for _, y in points]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = (min(ys), max(ys)) if log_y else (0.0, max(ys))
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        y_high = y_low + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (scale(x, log_x) - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (scale(y, log_y) - y_low) / (y_high - y_low) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]

    def axis_ticks(low: float, high: float, log: bool) -> list[float]:
        if log:
            return [10.0**power for power in range(math.floor(low), math.ceil(high) + 1)]
        return _ticks(low, high)

    for tick in axis_ticks(y_low, y_high, log_y):
        if not y_low <= scale(tick, log_y) <= y_high + 1e-9:
            continue
        y = py(tick)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>')
    for tick in axis_ticks(x_low, x_high, log_x):
        if not x_low - 1e-9 <= scale(tick, log_x) <= x_high + 1e-9:
            continue
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#f3f3f3"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_fmt(tick)}</text>')
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">{html.escape(y_label)}</text>'
    )
    for index, (name, values) in enumerate(series.items()):
        if not values:
            continue
        color = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="5,3"' if name.endswith("p99") else ""
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{path}"/>')
        legend_y = TOP + 6 + index * 16
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 12}" y1="{legend_y}" x2="{WIDTH - RIGHT + 34}" y2="{legend_y}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y + 4}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _by_rpc(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.rpc].append(sample)
    return dict(sorted(grouped.items(), key=lambda item: -len(item[1])))


def throughput_series(samples: Sequence[Sample]) -> Series:
    series: Series = {}
    for rpc, rows in _by_rpc(samples).items():
        buckets: dict[int, int] = defaultdict(int)
        for sample in rows:
            buckets[int(sample.at)] += 1
        last = max(buckets)
        series[rpc] = [(second + 0.5, float(buckets.get(second, 0))) for second in range(last + 1)]
    return series


def latency_series(samples: Sequence[Sample], top: int = 4) -> Series:
    series: Series = {}
    for rpc, rows in list(_by_rpc(samples).items())[:top]:
        buckets: dict[int, list[float]] = defaultdict(list)
        for sample in rows:
            buckets[int(sample.at)].append(sample.latency_s * 1000.0)
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            series[f"{rpc} {label}"] = [
                (second + 0.5, percentile(sorted(values), fraction))
                for second, values in sorted(buckets.items())
            ]
    return series


def cdf_series(samples: Sequence[Sample]) -> Series:
    series: Series = {}
    for rpc, rows in _by_rpc(samples).items():
        values = sorted(sample.latency_s * 1000.0 for sample in rows)
        count = len(values)
        step = max(1, count // CDF_POINTS)
        points = [(values[index], (index + 1) / count * 100.0) for index in range(0, count, step)]
        points.append((values[-1], 100.0))
        series[rpc] = points
    return series


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: dict[str, Any], samples: Sequence[Sample]) -> str:
    rpc_rows = [
        (
            rpc,
            s["measured_calls"],
            s["ok"],
            s["refused_or_failed"],
            s["rps"],
            s["p50_ms"],
            s["p95_ms"],
            s["p99_ms"],
            s["max_ms"],
        )
        for rpc, s in report.get("rpcs", {}).items()
    ]
    error_rows = [
        (reason, entry["count"], "expected" if entry["expected"] else "UNEXPECTED", entry["by_rpc"])
        for reason, entry in report.get("errors", {}).items()
    ]
    audit = report.get("audit", {})
    verdict = "ok" if report.get("ok") else "FAILED: " + "; ".join(report.get("failures", []))
    config = report.get("config", {})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>coffer loadtest {html.escape(str(report.get("run_id", "")))}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}
td:first-child, th:first-child {{ text-align: left; }}
.ok {{ color: #2a7; }} .bad {{ color: #c22; }}
</style></head><body>
<h1>coffer load test</h1>
<p>target <b>{html.escape(str(report.get("target")))}</b>, {config.get("users")} users,
concurrency {config.get("concurrency")}, {report.get("duration_s")} s, mix {
        html.escape(str(report.get("active_mix")))
    }
({config.get("driver")}); started {html.escape(str(report.get("started_at")))}</p>
<p class="{"ok" if report.get("ok") else "bad"}"><b>verdict: {html.escape(verdict)}</b>
&nbsp; audit: {"ok" if audit.get("ok") else "BROKEN"}</p>
<p>{report.get("totals", {}).get("operations")} operations,
{report.get("totals", {}).get("operations_per_s")} ops/s, {
        report.get("totals", {}).get("calls_per_s")
    } calls/s</p>
<h2>Latency per RPC (ms)</h2>
{_table(("rpc", "calls", "ok", "refused", "calls/s", "p50", "p95", "p99", "max"), rpc_rows)}
<h2>Refusals and errors</h2>
{_table(("reason", "count", "verdict", "by rpc"), error_rows) if error_rows else "<p>none</p>"}
{
        line_chart(
            "Calls per second", throughput_series(samples), x_label="seconds into the run", y_label="calls/s"
        )
    }
{
        line_chart(
            "Latency per second: p50 (solid), p99 (dashed)",
            latency_series(samples),
            x_label="seconds into the run",
            y_label="ms (log)",
            log_y=True,
        )
    }
{
        line_chart(
            "Latency distribution (CDF)",
            cdf_series(samples),
            x_label="ms (log)",
            y_label="% of calls at or below",
            log_x=True,
        )
    }
</body></html>
"""


def write_html(path: Path, report: dict[str, Any], samples: Sequence[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, samples), encoding="utf-8")
