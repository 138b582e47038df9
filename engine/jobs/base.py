"""What an expiry task is; :mod:`engine.jobs.registry` lists them.

A task works in keyset-paged batches: ``run_batch(context, shard, now_us, limit, after)`` looks
at up to ``limit`` due items whose key sorts after ``after`` (``""`` for the first batch),
resolves each one in its own transaction (re-checking under a lock that it is still due, so a
concurrent Capture/Void or a second job run changes nothing twice), and reports what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from engine.service.batches import BatchOutcome
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


BatchRunner = Callable[[EngineContext, Shard, int, int, str], BatchOutcome]


@dataclass(frozen=True)
class ExpireTask:
    name: str
    run_batch: BatchRunner
