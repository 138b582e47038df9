"""A self-contained HTML page with SVG charts of a harness run (no JavaScript, no downloads).

Three charts: calls per second over time per RPC, p50/p99 latency per second per RPC, and the
latency distribution (CDF) per RPC; plus the report's tables. Every RPC the run measured is drawn
in every chart, always in the same colour. Only whole seconds of the load are drawn: the last,
partial second (the run stops issuing mid-second) would otherwise look like a collapse to zero.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.loadtest.config import format_mix
from clients.loadtest.stats import Recorder

__all__ = [
    "Line",
    "cdf_series",
    "colours",
    "full_seconds",
    "latency_series",
    "line_chart",
    "render_html",
    "throughput_series",
    "write_html",
]

WIDTH, HEIGHT = 920, 320
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 36, 44
PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
#: RPCs in the order their colours are handed out, so a report's Charge is always the same blue.
KNOWN_RPCS = ("Charge", "Refund", "Issue", "Capture", "Void", "Redeem", "QuoteCharge", "GetWallet", "Check")
CDF_POINTS = 200
MICROSECONDS_PER_MILLISECOND = 1000.0

Series = dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Line:
    rpc: str
    points: list[tuple[float, float]]
    dashed: bool = False


def colours(rpcs: Sequence[str]) -> dict[str, str]:
    """One colour per RPC: the known ones in a fixed order, any other after them by name."""
    ordered = [rpc for rpc in KNOWN_RPCS if rpc in rpcs] + sorted(set(rpcs) - set(KNOWN_RPCS))
    return {rpc: PALETTE[index % len(PALETTE)] for index, rpc in enumerate(ordered)}


def full_seconds(report: dict[str, Any]) -> int:
    """Whole seconds of load in a run (the per-second buckets 0 .. n-1 are all complete)."""
    return max(0, math.floor(float(report.get("config", {}).get("duration_s", 0.0))))


def _measured_rpcs(recorder: Recorder) -> list[str]:
    return sorted(recorder.latency, key=lambda rpc: -recorder.latency[rpc].get_total_count())


def throughput_series(recorder: Recorder, seconds: int) -> Series:
    """Calls per second per RPC, for every whole second of the run (zero where none ended)."""
    series: Series = {}
    for rpc in _measured_rpcs(recorder):
        points = []
        for second in range(seconds):
            bucket = recorder.timeline.get((rpc, second))
            points.append((second + 0.5, float(bucket.get_total_count() if bucket else 0)))
        series[rpc] = points
    return series


def latency_series(recorder: Recorder, seconds: int) -> dict[str, tuple[Series, Series]]:
    """Per RPC: (p50, p99) latency in ms per whole second in which it had calls."""
    result: dict[str, tuple[Series, Series]] = {}
    for rpc in _measured_rpcs(recorder):
        lines: list[Series] = []
        for percent in (50.0, 99.0):
            points = []
            for second in range(seconds):
                bucket = recorder.timeline.get((rpc, second))
                if bucket is not None and bucket.get_total_count():
                    value = bucket.get_value_at_percentile(percent) / MICROSECONDS_PER_MILLISECOND
                    points.append((second + 0.5, value))
            lines.append({rpc: points})
        result[rpc] = (lines[0], lines[1])
    return result


def cdf_series(recorder: Recorder) -> Series:
    """Per RPC: (latency ms, % of calls at or below it), at most about CDF_POINTS points."""
    series: Series = {}
    for rpc in _measured_rpcs(recorder):
        histogram = recorder.latency[rpc]
        total = histogram.get_total_count()
        if not total:
            continue
        steps = [
            (item.value_iterated_to / MICROSECONDS_PER_MILLISECOND, item.total_count_to_this_value)
            for item in histogram.get_recorded_iterator()
        ]
        stride = max(1, len(steps) // CDF_POINTS)
        points = [(value, count / total * 100.0) for value, count in steps[::stride]]
        points.append((steps[-1][0], 100.0))
        series[rpc] = points
    return series


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
    title: str,
    lines: Sequence[Line],
    palette: dict[str, str],
    *,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    log_y: bool = False,
) -> str:
    """An SVG line chart; the legend names each RPC once, in its colour."""
    points = [point for line in lines for point in line.points]
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
            # Short spans (the usual latency chart) also get 2x and 5x ticks, so the axis reads.
            steps = (1.0,) if high - low > 2 else (1.0, 2.0, 5.0)
            powers = range(math.floor(low), math.ceil(high) + 1)
            return [step * 10.0**power for power in powers for step in steps]
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
    legend: list[str] = []
    for line in lines:
        colour = palette.get(line.rpc, PALETTE[-1])
        dash = ' stroke-dasharray="5,3"' if line.dashed else ""
        if len(line.points) == 1:
            x, y = line.points[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>')
        elif line.points:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line.points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} points="{path}"/>'
            )
        if line.rpc not in legend:
            legend.append(line.rpc)
    for index, rpc in enumerate(legend):
        colour = palette.get(rpc, PALETTE[-1])
        legend_y = TOP + 6 + index * 16
        parts.append(
            f'<line x1="{WIDTH - RIGHT + 12}" y1="{legend_y}" x2="{WIDTH - RIGHT + 34}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y + 4}">{html.escape(rpc)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _lines(series: Series, *, dashed: bool = False) -> list[Line]:
    return [Line(rpc, points, dashed) for rpc, points in series.items()]


def _counts(counts: dict[str, int]) -> str:
    """``{"Charge": 3, "Refund": 1}`` -> ``Charge 3, Refund 1`` (no Python dict in a table)."""
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _charts(recorder: Recorder, seconds: int) -> list[str]:
    palette = colours(list(recorder.latency))
    latency_lines: list[Line] = []
    for p50, p99 in latency_series(recorder, seconds).values():
        latency_lines += _lines(p50) + _lines(p99, dashed=True)
    return [
        line_chart(
            "Calls per second",
            _lines(throughput_series(recorder, seconds)),
            palette,
            x_label="seconds into the run",
            y_label="calls/s",
        ),
        line_chart(
            "Latency per second: p50 (solid), p99 (dashed)",
            latency_lines,
            palette,
            x_label="seconds into the run",
            y_label="ms (log)",
            log_y=True,
        ),
        line_chart(
            "Latency distribution (CDF)",
            _lines(cdf_series(recorder)),
            palette,
            x_label="ms (log)",
            y_label="% of calls at or below",
            log_x=True,
        ),
    ]


def render_html(report: dict[str, Any], recorder: Recorder) -> str:
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
            _counts(s.get("retries", {})),
        )
        for rpc, s in report.get("rpcs", {}).items()
    ]
    error_rows = [
        (reason, entry["count"], "expected" if entry["expected"] else "UNEXPECTED", _counts(entry["by_rpc"]))
        for reason, entry in report.get("errors", {}).items()
    ]
    operation_rows = [
        (kind, entry["count"], entry["failed"], entry["skipped"])
        for kind, entry in report.get("operations", {}).items()
    ]
    audit = report.get("audit", {})
    verdict = "ok" if report.get("ok") else "FAILED: " + "; ".join(report.get("failures", []))
    config = report.get("config", {})
    totals = report.get("totals", {})
    mix = format_mix(report.get("active_mix", {})) or "nothing"
    rate = config.get("rate_per_s")
    loop = f"open loop at {rate:g} operations/s" if rate else "closed loop"
    title = html.escape(str(report.get("run_id", "")))
    charts = "\n".join(_charts(recorder, full_seconds(report)))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>coffer loadtest {title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}
td:first-child, th:first-child {{ text-align: left; }}
.ok {{ color: #2a7; }} .bad {{ color: #c22; }}
</style></head><body>
<h1>coffer load test</h1>
<p>target <b>{html.escape(str(report.get("target")))}</b>, {config.get("users")} users,
concurrency {config.get("concurrency")} in {config.get("processes", 1)} process(es), {loop},
{report.get("duration_s")} s, mix {html.escape(mix)}; started {html.escape(str(report.get("started_at")))}</p>
<p class="{"ok" if report.get("ok") else "bad"}"><b>verdict: {html.escape(verdict)}</b>
&nbsp; audit: {"ok" if audit.get("ok") else "BROKEN"}</p>
<p>{totals.get("operations")} operations, {totals.get("operations_per_s")} ops/s,
{totals.get("calls_per_s")} calls/s; harness CPU {totals.get("client_cpu_us_per_call")} µs per call</p>
<h2>Latency per RPC (ms)</h2>
{_table(("rpc", "calls", "ok", "refused", "calls/s", "p50", "p95", "p99", "max", "retries"), rpc_rows)}
<h2>Refusals and errors</h2>
{_table(("reason", "count", "verdict", "by rpc"), error_rows) if error_rows else "<p>none</p>"}
<h2>Operations</h2>
{_table(("kind", "count", "refused or failed", "skipped"), operation_rows)}
{charts}
</body></html>
"""


def write_html(path: Path, report: dict[str, Any], recorder: Recorder) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, recorder), encoding="utf-8")
