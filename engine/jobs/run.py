"""Running a job once: the expiry job over every shard (bounded), the audit; each run logged
and counted in ``coffer_job_runs_total{job,outcome}``. :func:`preview_expire` is the expiry job's
dry run: what a run as of the same instant would change, read once per task and shard, with
nothing written (and not counted as a run)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter

from engine.domain.results import AuditReport
from engine.jobs.base import AmountUnit, ExpireTask, JobName, JobOutcome
from engine.jobs.registry import EXPIRE_TASKS
from engine.process_log import log_time
from engine.service.audit import audit
from engine.service.context import EngineContext

__all__ = [
    "JOB_RUNS",
    "MAX_BATCHES_PER_RUN",
    "ExpirePreview",
    "ExpireReport",
    "TaskCount",
    "TaskPreview",
    "preview_expire",
    "run_audit",
    "run_expire",
]

logger = logging.getLogger("coffer.jobs")
R = TypeVar("R")

JOB_RUNS = Counter(
    "coffer_job_runs_total",
    "Job runs by job (expire, audit) and outcome (ok, partial: some items failed and wait for the "
    "next run, violations: the audit found a broken invariant, failed: the run raised).",
    ["job", "outcome"],
)

#: At most this many batches per task and shard in one run; what is left waits for the next run.
MAX_BATCHES_PER_RUN = 100


@dataclass
class TaskCount:
    seen: int = 0
    changed: int = 0
    failed: int = 0
    batches: int = 0
    #: True when the run stopped at MAX_BATCHES_PER_RUN with due items possibly left.
    truncated: bool = False


@dataclass
class ExpireReport:
    now_us: int
    tasks: dict[str, TaskCount] = field(default_factory=dict)

    def changed(self, name: str) -> int:
        count = self.tasks.get(name)
        return count.changed if count else 0

    def outcome(self) -> JobOutcome:
        failed = any(count.failed for count in self.tasks.values())
        return JobOutcome.PARTIAL if failed else JobOutcome.OK

    def summary(self) -> str:
        parts = [
            f"{name}: {count.changed} changed of {count.seen} due"
            + (f", {count.failed} failed" if count.failed else "")
            + (" (more left for the next run)" if count.truncated else "")
            for name, count in self.tasks.items()
        ]
        return "; ".join(parts)


@dataclass
class TaskPreview:
    """What one task would change in a run: due items per physical shard and their total."""

    unit: AmountUnit | None
    #: Physical shard index -> (due items, their total in ``unit``; 0 without a unit).
    shards: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: True when some shard has a full run's worth due (MAX_BATCHES_PER_RUN batches): more may be left.
    more_left: bool = False

    @property
    def due(self) -> int:
        return sum(count for count, _total in self.shards.values())

    @property
    def total(self) -> int:
        return sum(total for _count, total in self.shards.values())


@dataclass
class ExpirePreview:
    now_us: int
    tasks: dict[str, TaskPreview] = field(default_factory=dict)

    def due(self, name: str) -> int:
        preview = self.tasks.get(name)
        return preview.due if preview else 0

    def summary(self) -> str:
        parts = [
            f"{name}: {preview.due} due"
            + (f" ({preview.total} {preview.unit.value})" if preview.unit is not None else "")
            + (" (more than one run's worth)" if preview.more_left else "")
            for name, preview in self.tasks.items()
        ]
        return "; ".join(parts)


def preview_expire(
    context: EngineContext,
    now_us: int | None = None,
    *,
    tasks: Sequence[ExpireTask] | None = None,
    batch_size: int | None = None,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> ExpirePreview:
    """The dry run of :func:`run_expire` with the same arguments: each task's due items on each
    shard, counted up to what one run would handle, and nothing changed.

    It counts what is due now; a hold the run releases may hand back a coupon already past its
    validity, which the real run then expires too (holds run first)."""
    now = context.now_us() if now_us is None else now_us
    per_run = _batch_limit(context, batch_size) * max_batches
    preview = ExpirePreview(now_us=now)
    for task in EXPIRE_TASKS if tasks is None else tasks:
        task_preview = preview.tasks.setdefault(task.name, TaskPreview(task.unit))
        for shard in context.router.shards:
            summary = task.preview(context, shard, now, per_run)
            # As a run's ``truncated``: a full run's worth may leave more for the next run.
            if summary.count >= per_run:
                task_preview.more_left = True
            task_preview.shards[shard.index] = (summary.count, summary.total)
    logger.info("expire dry run at %s: %s", log_time(now), preview.summary() or "no tasks")
    return preview


def run_expire(
    context: EngineContext,
    now_us: int | None = None,
    *,
    tasks: Sequence[ExpireTask] | None = None,
    batch_size: int | None = None,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> ExpireReport:
    """Run every expiry task on every shard once, as of ``now_us`` (default: the context's clock)."""
    return _count_run(
        JobName.EXPIRE,
        lambda: _expire(
            context,
            now_us,
            tasks=EXPIRE_TASKS if tasks is None else tasks,
            batch_size=batch_size,
            max_batches=max_batches,
        ),
        ExpireReport.outcome,
    )


def run_audit(context: EngineContext, shard_index: int | None = None) -> AuditReport:
    """The CONTRACT §8 checks on every shard (or one), counted like the other jobs."""
    return _count_run(
        JobName.AUDIT,
        lambda: audit(context, shard_index),
        lambda report: JobOutcome.OK if report.ok else JobOutcome.VIOLATIONS,
    )


def _count_run(job: JobName, work: Callable[[], R], outcome_of: Callable[[R], JobOutcome]) -> R:
    try:
        result = work()
    except BaseException:
        JOB_RUNS.labels(job.value, JobOutcome.FAILED.value).inc()
        raise
    JOB_RUNS.labels(job.value, outcome_of(result).value).inc()
    return result


def _expire(
    context: EngineContext,
    now_us: int | None,
    *,
    tasks: Sequence[ExpireTask],
    batch_size: int | None,
    max_batches: int,
) -> ExpireReport:
    now = context.now_us() if now_us is None else now_us
    limit = _batch_limit(context, batch_size)
    report = ExpireReport(now_us=now)
    for task in tasks:
        count = report.tasks.setdefault(task.name, TaskCount())
        for shard in context.router.shards:
            after = ""
            for batch in range(max_batches):
                outcome = task.run_batch(context, shard, now, limit, after)
                count.batches += 1
                count.seen += outcome.seen
                count.changed += outcome.changed
                count.failed += outcome.failed
                if outcome.seen < limit:
                    break
                after = outcome.last_key
                if batch == max_batches - 1:
                    count.truncated = True
    logger.info("expire run at %s: %s", log_time(now), report.summary() or "no tasks")
    return report


def _batch_limit(context: EngineContext, batch_size: int | None) -> int:
    limit = batch_size or context.settings.job_batch_size
    if limit <= 0:
        raise ValueError("job_batch_size must be positive")
    return limit
