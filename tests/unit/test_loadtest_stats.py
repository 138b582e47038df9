"""The harness's recording without an engine: HdrHistograms of several load processes merge into
the percentiles of all their calls, and the chart draws every RPC in every chart over whole
seconds only."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from clients.loadtest import chart
from clients.loadtest.stats import Recorder

MS = 0.001


@contextmanager
def clock(start: float = 1000.0) -> Iterator[list[float]]:
    """A monotonic clock the test moves by hand: ``now[0]``."""
    now = [start]
    with mock.patch("clients.loadtest.stats.time.monotonic", side_effect=lambda: now[0]):
        yield now


def record(recorder: Recorder, now: list[float], rpc: str, at_s: float, latency_ms: float) -> None:
    """One measured call of ``rpc`` that ends ``at_s`` into the run after ``latency_ms``."""
    now[0] = recorder.started + at_s - latency_ms * MS

    def work() -> str:
        now[0] += latency_ms * MS
        return "answer"

    assert recorder.call(rpc, work) == "answer"


def measuring(now: list[float]) -> Recorder:
    recorder = Recorder()
    recorder.restart_clock(now[0])
    recorder.measuring = True
    return recorder


def test_merged_histograms_give_the_percentiles_of_all_calls() -> None:
    with clock() as now:
        fast, slow = measuring(now), measuring(now)
        for index in range(90):
            record(fast, now, "Charge", 0.5, 1.0 + index * 0.01)
        for _ in range(10):
            record(slow, now, "Charge", 0.5, 500.0)
        record(slow, now, "Refund", 0.7, 20.0)
        slow.violation("a check failed")
    merged = Recorder()
    for part in (fast, slow):
        # What a load process sends back must survive pickling (a spawned process's queue).
        merged.merge(pickle.loads(pickle.dumps(part.export())))
    summary = merged.rpc_summary(duration_s=1.0)
    charge = summary["Charge"]
    assert charge["measured_calls"] == charge["calls"] == charge["ok"] == 100
    assert 1.0 <= charge["p50_ms"] <= 2.0  # the fast process's calls alone would say the same
    assert 490.0 <= charge["p95_ms"] <= charge["p99_ms"] <= charge["max_ms"] <= 505.0
    assert fast.rpc_summary(1.0)["Charge"]["p99_ms"] < 2.0  # ... but not the 95th percentile
    assert summary["Refund"]["measured_calls"] == 1 and 19.0 <= summary["Refund"]["p50_ms"] <= 20.5
    assert merged.violation_count == 1 and merged.violations == ["a check failed"]
    assert merged.measured_ok["Charge"] == 100


def test_calls_outside_the_measured_window_are_counted_not_measured() -> None:
    with clock() as now:
        recorder = Recorder()
        recorder.call("Issue", lambda: None)  # seeding
        recorder.restart_clock(now[0])
        recorder.measuring = True
        recorder.call("Issue", lambda: None)
    summary = recorder.rpc_summary(1.0)["Issue"]
    assert summary["calls"] == summary["ok"] == 2 and summary["measured_calls"] == 1


def test_open_loop_latency_counts_from_the_scheduled_start() -> None:
    with clock() as now:
        recorder = measuring(now)
        recorder.intend(now[0] - 0.250)  # due 250 ms ago: every caller was busy
        record_at = now[0]

        def work() -> None:
            now[0] = record_at + 0.010

        recorder.call("Charge", work)
        recorder.call("Charge", work)  # the next call is not scheduled: measured from its start
    histogram = recorder.latency["Charge"]
    assert histogram.get_total_count() == 2
    assert 259_000 <= histogram.get_max_value() <= 261_000
    assert histogram.get_min_value() < 1_000


def test_chart_draws_every_rpc_in_every_chart_over_whole_seconds() -> None:
    rpcs = ("Charge", "Refund", "Issue", "Capture", "Void", "Redeem")
    with clock() as now:
        recorder = measuring(now)
        for second in range(3):
            for index, rpc in enumerate(rpcs):
                for call in range(10 - index):
                    record(recorder, now, rpc, second + 0.1 + call * 0.05, 2.0 + index)
        # The run stopped issuing at 3.0 s; calls in flight ended in the partial fourth second.
        record(recorder, now, "Charge", 3.2, 40.0)
    report = {"config": {"duration_s": 3.0}, "rpcs": recorder.rpc_summary(3.2), "ok": True}
    seconds = chart.full_seconds(report)
    assert seconds == 3
    throughput = chart.throughput_series(recorder, seconds)
    latency = chart.latency_series(recorder, seconds)
    cdf = chart.cdf_series(recorder)
    for series in (throughput, latency, cdf):
        assert set(series) == set(rpcs)
    for rpc in rpcs:
        assert [x for x, _ in throughput[rpc]] == [0.5, 1.5, 2.5]  # no collapse in second 3
        assert all(count > 0 for _, count in throughput[rpc])
        p50, p99 = latency[rpc]
        assert len(p50[rpc]) == len(p99[rpc]) == 3
        assert cdf[rpc][-1][1] == 100.0
    assert throughput["Charge"][0][1] == 10 and throughput["Redeem"][0][1] == 5
    page = chart.render_html(report, recorder)
    assert page.count("<svg") == 3
    palette = chart.colours(list(rpcs))
    assert len(set(palette.values())) == len(rpcs)
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL):
        for rpc in rpcs:
            assert f">{rpc}</text>" in svg  # in the legend of every chart ...
            assert f'stroke="{palette[rpc]}"' in svg  # ... and drawn in its own colour
    assert "{" not in page.split("<style>")[1].split("</style>")[1]  # no raw Python dict anywhere
