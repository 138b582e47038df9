"""Audit: run every CONTRACT §8 check, and verify the audit trail's hash chains, on one shard or
all of them."""

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
        checked = check_shard(shard.engine)
        reports.append(
            ShardAuditReport(
                shard=shard.index,
                violations=tuple(checked.violations),
                transactions_checked=checked.transactions_checked,
                accounts_checked=checked.accounts_checked,
                audit_events_checked=checked.chains.events_checked,
                broken_chains=checked.chains.broken,
            )
        )
    return AuditReport(shards=tuple(reports), checked_at_us=context.now_us())
