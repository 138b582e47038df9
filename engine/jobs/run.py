"""Running a job once: the expiry job over every shard (bounded), the audit; each run logged
and counted in ``coffer_job_runs_total{job,outcome}``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter

from engine.domain.results import AuditReport
from engine.jobs.base import ExpireTask, JobName, JobOutcome
from engine.jobs.registry import EXPIRE_TASKS
from engine.process_log import log_time
from engine.service.audit import audit
from engine.service.context import EngineContext

__all__ = [
    "JOB_RUNS",
    "MAX_BATCHES_PER_RUN",
    "ExpireReport",
    "TaskCount",
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
    limit = batch_size or context.settings.job_batch_size
    if limit <= 0:
        raise ValueError("job_batch_size must be positive")
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
