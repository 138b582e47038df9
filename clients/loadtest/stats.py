"""Thread-safe recording of every call the harness makes: latency, outcome, retries, checks."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from clients.errors import CofferError

T = TypeVar("T")

#: Samples kept for percentiles and the chart; beyond this, calls are still counted, not sampled.
MAX_SAMPLES = 2_000_000
#: Violations kept verbatim in the report (all are counted).
MAX_KEPT_VIOLATIONS = 50

#: Answers that only mean "try again" and may remain after the client's own bounded retries under
#: heavy contention. They fail nothing, but they are reported.
TOLERATED_REASONS = frozenset({"CONTENTION", "IDEMPOTENCY_KEY_IN_USE"})


@dataclass(frozen=True)
class Sample:
    #: Seconds since the run started, when the call ended.
    at: float
    rpc: str
    latency_s: float
    #: None: the call succeeded; else the reason it was refused or failed.
    reason: str | None


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.dropped_samples = 0
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
        #: Set while the workload runs; calls outside it (seeding, audit) are not sampled.
        self.measuring = False

    def restart_clock(self) -> None:
        with self._lock:
            self.started = time.monotonic()

    def call(self, rpc: str, work: Callable[[], T], *, expected: Iterable[str] = ()) -> T | CofferError:
        """Run one client call; return its answer, or the :class:`CofferError` it raised.

        A refusal whose reason is in ``expected`` (or tolerated) is an ordinary outcome; any other
        one is counted as unexpected and fails the run."""
        began = time.monotonic()
        try:
            answer = work()
        except CofferError as error:
            self._finish(rpc, began, error, error.reason in expected or error.reason in TOLERATED_REASONS)
            return error
        self._finish(rpc, began, None, True)
        return answer

    def _finish(self, rpc: str, began: float, error: CofferError | None, expected: bool) -> None:
        ended = time.monotonic()
        reason = None if error is None else error.reason
        with self._lock:
            self.calls[rpc] += 1
            if error is None:
                self.ok[rpc] += 1
            else:
                self.errors[rpc][error.reason] += 1
                (self.expected if expected else self.unexpected)[rpc][error.reason] += 1
                if not expected and error.reason not in self.unexpected_examples:
                    self.unexpected_examples[error.reason] = f"{rpc}: {error} {error.metadata}"
            if self.measuring:
                if len(self.samples) < MAX_SAMPLES:
                    self.samples.append(Sample(ended - self.started, rpc, ended - began, reason))
                else:
                    self.dropped_samples += 1

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

    def rpc_summary(self, duration_s: float) -> dict[str, dict[str, Any]]:
        latencies: dict[str, list[float]] = defaultdict(list)
        measured_ok: Counter[str] = Counter()
        with self._lock:
            for sample in self.samples:
                latencies[sample.rpc].append(sample.latency_s * 1000.0)
                if sample.reason is None:
                    measured_ok[sample.rpc] += 1
            summary: dict[str, dict[str, Any]] = {}
            for rpc in sorted(self.calls):
                values = sorted(latencies.get(rpc, []))
                summary[rpc] = {
                    "calls": self.calls[rpc],
                    "ok": self.ok[rpc],
                    "refused_or_failed": self.calls[rpc] - self.ok[rpc],
                    "measured_calls": len(values),
                    "rps": round(len(values) / duration_s, 2) if duration_s > 0 else 0.0,
                    "ok_rps": round(measured_ok[rpc] / duration_s, 2) if duration_s > 0 else 0.0,
                    "p50_ms": round(percentile(values, 0.50), 2),
                    "p95_ms": round(percentile(values, 0.95), 2),
                    "p99_ms": round(percentile(values, 0.99), 2),
                    "max_ms": round(values[-1], 2) if values else 0.0,
                    "mean_ms": round(sum(values) / len(values), 2) if values else 0.0,
                    "errors": dict(self.errors.get(rpc, {})),
                    "retries": dict(self.retries.get(rpc, {})),
                }
            return summary
