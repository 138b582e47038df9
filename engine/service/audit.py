"""Audit: run every CONTRACT §8 check on one shard or all of them."""

from __future__ import annotations

from engine.domain.errors import invalid_argument
from engine.domain.results import AuditReport, ShardAuditReport
from engine.service.context import EngineContext
from engine.storage.audit import check_shard

__all__ = ["audit"]


def audit(context: EngineContext, shard_index: int | None = None) -> AuditReport:
    shards = context.router.shards
    if shard_index is not None:
        if not 0 <= shard_index < len(shards):
            raise invalid_argument("shard", f"must be within 0..{len(shards) - 1}")
        shards = (shards[shard_index],)
    reports = []
    for shard in shards:
        violations, transactions, accounts = check_shard(shard.engine)
        reports.append(
            ShardAuditReport(
                shard=shard.index,
                violations=tuple(violations),
                transactions_checked=transactions,
                accounts_checked=accounts,
            )
        )
    return AuditReport(shards=tuple(reports), checked_at_us=context.now_us())
