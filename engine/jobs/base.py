"""What an expiry task is; :mod:`engine.jobs.registry` lists them.

A task works in keyset-paged batches: ``run_batch(context, shard, now_us, limit, after)`` looks
at up to ``limit`` due items whose key sorts after ``after`` (``""`` for the first batch),
resolves each one in its own transaction (re-checking under a lock that it is still due, so a
concurrent Capture/Void or a second job run changes nothing twice), and reports what it did.
Its ``preview(context, shard, now_us, cap)`` is the dry run: one read-only, bounded count (and
total, in the task's :class:`AmountUnit`) of the items those batches would look at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from engine.service.batches import BatchOutcome, DueSummary
from engine.service.context import EngineContext
from engine.storage.router import Shard


class JobName(StrEnum):
    EXPIRE = "expire"
    SETTLE = "settle"
    AUDIT = "audit"


class JobOutcome(StrEnum):
    OK = "ok"
    #: Some items could not be resolved; they are logged and the next run retries them.
    PARTIAL = "partial"
    #: The audit found a broken invariant.
    VIOLATIONS = "violations"
    #: The run raised (a shard down, a bug); nothing after the failure ran.
    FAILED = "failed"


class AmountUnit(StrEnum):
    """What a task's :attr:`DueSummary.total` counts (the key it has in the dry-run report)."""

    FEN = "fen"
    POINTS = "points"


BatchRunner = Callable[[EngineContext, Shard, int, int, str], BatchOutcome]
#: ``(context, shard, now_us, cap)``: at most ``cap`` due items counted, read-only.
Previewer = Callable[[EngineContext, Shard, int, int], DueSummary]


@dataclass(frozen=True)
class ExpireTask:
    name: str
    run_batch: BatchRunner
    preview: Previewer
    #: The unit of the preview's total; None when the task has no cheap total (coupons).
    unit: AmountUnit | None = None
