"""Running the expiry job once over every shard, bounded and logged."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.jobs.base import ExpireTask
from engine.service.context import EngineContext

logger = logging.getLogger("coffer.jobs")

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
    if tasks is None:
        from engine.jobs.registry import EXPIRE_TASKS

        tasks = EXPIRE_TASKS
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
    logger.info("expire run at %d: %s", now, report.summary())
    return report
