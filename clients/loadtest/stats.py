"""Thread-safe recording of every call the harness makes: latency, outcome, retries, checks.

Latency goes into HdrHistograms (microseconds), not a list of samples: memory stays bounded
however long the run, and histograms from several load processes merge exactly (each process
:meth:`Recorder.export`\\ s its state, encoded, and the parent :meth:`Recorder.merge`\\ s them).

Per RPC the recorder keeps one histogram of the whole run (the percentiles of the report and the
CDF of the chart) and one coarser histogram per second of the run (the chart's p50/p99 lines).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from clients.errors import CofferError

__all__ = [
    "MAX_KEPT_VIOLATIONS",
    "MAX_LATENCY_US",
    "TOLERATED_REASONS",
    "Recorder",
    "RecorderState",
    "new_histogram",
]

T = TypeVar("T")

#: Latencies are recorded in microseconds between 1 µs and 10 minutes (longer ones are clamped):
#: every deadline the harness sets is far below that.
MIN_LATENCY_US = 1
MAX_LATENCY_US = 600 * 1_000_000
#: 3 significant digits for the whole-run histograms (0.1% error), 2 for the per-second ones
#: (1%, and a tenth of the memory: there is one per RPC per second).
RUN_DIGITS = 3
SECOND_DIGITS = 2
#: Seconds of per-second histograms kept per RPC (beyond, the chart's lines stop; totals go on).
MAX_TIMELINE_SECONDS = 4 * 3600
#: Violations kept verbatim in the report (all are counted).
MAX_KEPT_VIOLATIONS = 50

#: Answers that only mean "try again" and may remain after the client's own bounded retries under
#: heavy contention. They fail nothing, but they are reported.
TOLERATED_REASONS = frozenset({"CONTENTION", "IDEMPOTENCY_KEY_IN_USE"})


def new_histogram(digits: int = RUN_DIGITS) -> HdrHistogram:
    return HdrHistogram(MIN_LATENCY_US, MAX_LATENCY_US, digits)


def _record(histogram: HdrHistogram, latency_us: int) -> None:
    histogram.record_value(min(max(latency_us, MIN_LATENCY_US), MAX_LATENCY_US))


def _merge_histograms(target: dict[Any, HdrHistogram], encoded: dict[Any, bytes], digits: int) -> None:
    for key, blob in encoded.items():
        if key not in target:
            target[key] = new_histogram(digits)
        target[key].add(HdrHistogram.decode(blob))


def _merge_nested(target: dict[str, Counter[str]], source: dict[str, dict[str, int]]) -> None:
    for name, counts in source.items():
        target[name].update(counts)


@dataclass
class RecorderState:
    """What one recorder saw, in plain picklable values (histograms encoded): what a load
    process sends back to the parent."""

    calls: dict[str, int] = field(default_factory=dict)
    ok: dict[str, int] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    expected: dict[str, dict[str, int]] = field(default_factory=dict)
    unexpected: dict[str, dict[str, int]] = field(default_factory=dict)
    retries: dict[str, dict[str, int]] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    operations_failed: dict[str, int] = field(default_factory=dict)
    operations_skipped: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    measured_ok: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    unexpected_examples: dict[str, str] = field(default_factory=dict)
    #: rpc -> encoded whole-run histogram of measured calls.
    latency: dict[str, bytes] = field(default_factory=dict)
    #: (rpc, second) -> encoded histogram of the measured calls that ended in that second.
    timeline: dict[tuple[str, int], bytes] = field(default_factory=dict)


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.started = time.monotonic()
        self.calls: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = defaultdict(Counter)
        self.expected: dict[str, Counter[str]] = defaultdict(Counter)
        self.unexpected: dict[str, Counter[str]] = defaultdict(Counter)
        self.retries: dict[str, Counter[str]] = defaultdict(Counter)
        self.operations: Counter[str] = Counter()
        self.operations_failed: Counter[str] = Counter()
        self.operations_skipped: Counter[str] = Counter()
        self.violations: list[str] = []
        self.violation_count = 0
        self.unexpected_examples: dict[str, str] = {}
        self.counters: Counter[str] = Counter()
        #: Successful measured calls per RPC (``ok`` counts seeding and audit calls too).
        self.measured_ok: Counter[str] = Counter()
        self.latency: dict[str, HdrHistogram] = {}
        self.timeline: dict[tuple[str, int], HdrHistogram] = {}
        #: Set while the workload runs; calls outside it (seeding, audit) are not measured.
        self.measuring = False

    def restart_clock(self, started: float | None = None) -> None:
        with self._lock:
            self.started = time.monotonic() if started is None else started

    def intend(self, scheduled: float) -> None:
        """The next call on this thread was due at ``scheduled`` (``time.monotonic()``): an
        open-loop run measures latency from when the call should have started, so a stalled
        engine shows up as latency instead of as calls never made (coordinated omission)."""
        self._local.scheduled = scheduled

    def call(self, rpc: str, work: Callable[[], T], *, expected: Iterable[str] = ()) -> T | CofferError:
        """Run one client call; return its answer, or the :class:`CofferError` it raised.

        A refusal whose reason is in ``expected`` (or tolerated) is an ordinary outcome; any other
        one is counted as unexpected and fails the run."""
        scheduled: float | None = getattr(self._local, "scheduled", None)
        self._local.scheduled = None
        began = time.monotonic() if scheduled is None else scheduled
        try:
            answer = work()
        except CofferError as error:
            self._finish(rpc, began, error, error.reason in expected or error.reason in TOLERATED_REASONS)
            return error
        self._finish(rpc, began, None, True)
        return answer

    def _finish(self, rpc: str, began: float, error: CofferError | None, expected: bool) -> None:
        ended = time.monotonic()
        latency_us = int((ended - began) * 1_000_000)
        with self._lock:
            self.calls[rpc] += 1
            if error is None:
                self.ok[rpc] += 1
            else:
                self.errors[rpc][error.reason] += 1
                (self.expected if expected else self.unexpected)[rpc][error.reason] += 1
                if not expected and error.reason not in self.unexpected_examples:
                    self.unexpected_examples[error.reason] = f"{rpc}: {error} {error.metadata}"
            if not self.measuring:
                return
            if error is None:
                self.measured_ok[rpc] += 1
            if rpc not in self.latency:
                self.latency[rpc] = new_histogram()
            _record(self.latency[rpc], latency_us)
            second = int(ended - self.started)
            if 0 <= second < MAX_TIMELINE_SECONDS:
                bucket = self.timeline.get((rpc, second))
                if bucket is None:
                    bucket = self.timeline[(rpc, second)] = new_histogram(SECOND_DIGITS)
                _record(bucket, latency_us)

    def on_retry(self, rpc: str, error: CofferError, attempt: int) -> None:
        with self._lock:
            self.retries[rpc.split(".")[-1]][error.reason] += 1

    def operation(self, kind: str, succeeded: bool | None) -> None:
        """Count an operation: True succeeded, False refused or failed, None skipped (no call)."""
        with self._lock:
            if succeeded is None:
                self.operations_skipped[kind] += 1
                return
            self.operations[kind] += 1
            if not succeeded:
                self.operations_failed[kind] += 1

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def violation(self, text: str) -> None:
        """A harness-side check failed (idempotency, over-issue): fails the run."""
        with self._lock:
            self.violation_count += 1
            if len(self.violations) < MAX_KEPT_VIOLATIONS:
                self.violations.append(text)

    def snapshot(self) -> tuple[int, int, int]:
        """(operations, refused or failed calls, unexpected errors) for the progress line."""
        with self._lock:
            errors = sum(sum(counter.values()) for counter in self.errors.values())
            unexpected = sum(sum(counter.values()) for counter in self.unexpected.values())
            return sum(self.operations.values()), errors, unexpected

    def unexpected_total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counter in self.unexpected.values():
            total.update(counter)
        return total

    def measured_calls(self) -> int:
        with self._lock:
            return sum(histogram.get_total_count() for histogram in self.latency.values())

    # -- across processes ----------------------------------------------------------------------

    def export(self) -> RecorderState:
        with self._lock:
            return RecorderState(
                calls=dict(self.calls),
                ok=dict(self.ok),
                errors={rpc: dict(counter) for rpc, counter in self.errors.items()},
                expected={rpc: dict(counter) for rpc, counter in self.expected.items()},
                unexpected={rpc: dict(counter) for rpc, counter in self.unexpected.items()},
                retries={rpc: dict(counter) for rpc, counter in self.retries.items()},
                operations=dict(self.operations),
                operations_failed=dict(self.operations_failed),
                operations_skipped=dict(self.operations_skipped),
                counters=dict(self.counters),
                measured_ok=dict(self.measured_ok),
                violations=list(self.violations),
                violation_count=self.violation_count,
                unexpected_examples=dict(self.unexpected_examples),
                latency={rpc: histogram.encode() for rpc, histogram in self.latency.items()},
                timeline={key: histogram.encode() for key, histogram in self.timeline.items()},
            )

    def merge(self, state: RecorderState) -> None:
        """Add another recorder's counts and histograms to this one's."""
        with self._lock:
            for mine, theirs in (
                (self.calls, state.calls),
                (self.ok, state.ok),
                (self.operations, state.operations),
                (self.operations_failed, state.operations_failed),
                (self.operations_skipped, state.operations_skipped),
                (self.counters, state.counters),
                (self.measured_ok, state.measured_ok),
            ):
                mine.update(theirs)
            for nested, source in (
                (self.errors, state.errors),
                (self.expected, state.expected),
                (self.unexpected, state.unexpected),
                (self.retries, state.retries),
            ):
                _merge_nested(nested, source)
            self.violation_count += state.violation_count
            room = MAX_KEPT_VIOLATIONS - len(self.violations)
            self.violations.extend(state.violations[: max(0, room)])
            for reason, example in state.unexpected_examples.items():
                self.unexpected_examples.setdefault(reason, example)
            _merge_histograms(self.latency, state.latency, RUN_DIGITS)
            _merge_histograms(self.timeline, state.timeline, SECOND_DIGITS)

    # -- summaries -----------------------------------------------------------------------------

    def rpc_summary(self, duration_s: float) -> dict[str, dict[str, Any]]:
        with self._lock:
            summary: dict[str, dict[str, Any]] = {}
            for rpc in sorted(self.calls):
                latency = _latency_summary(self.latency.get(rpc))
                measured = latency.pop("measured_calls")
                summary[rpc] = {
                    "calls": self.calls[rpc],
                    "ok": self.ok[rpc],
                    "refused_or_failed": self.calls[rpc] - self.ok[rpc],
                    "measured_calls": measured,
                    "rps": round(measured / duration_s, 2) if duration_s > 0 else 0.0,
                    "ok_rps": round(self.measured_ok[rpc] / duration_s, 2) if duration_s > 0 else 0.0,
                    **latency,
                    "errors": dict(self.errors.get(rpc, {})),
                    "retries": dict(self.retries.get(rpc, {})),
                }
            return summary


def _latency_summary(histogram: HdrHistogram | None) -> dict[str, Any]:
    """Count and p50/p95/p99/max/mean in ms of one RPC's whole-run histogram."""
    measured = histogram.get_total_count() if histogram is not None else 0
    if histogram is None or not measured:
        return {
            "measured_calls": 0,
            "p50_ms": 0.0,
            "p95_ms": 0.0,
            "p99_ms": 0.0,
            "max_ms": 0.0,
            "mean_ms": 0.0,
        }

    def ms(value_us: float) -> float:
        return round(value_us / 1000.0, 2)

    return {
        "measured_calls": measured,
        "p50_ms": ms(histogram.get_value_at_percentile(50.0)),
        "p95_ms": ms(histogram.get_value_at_percentile(95.0)),
        "p99_ms": ms(histogram.get_value_at_percentile(99.0)),
        "max_ms": ms(histogram.get_max_value()),
        "mean_ms": ms(histogram.get_mean_value()),
    }
