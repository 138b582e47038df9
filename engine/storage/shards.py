"""The shards as the configuration names them: one engine per ``COFFER_SHARDS`` URL, routed by
virtual shard — opened the same way by the server, the jobs and the operator tools."""

from __future__ import annotations

from engine.config import Settings
from engine.storage.database import create_shard_engine
from engine.storage.router import ShardRouter

__all__ = ["open_router"]


def open_router(settings: Settings, *, pool_size: int | None = None) -> ShardRouter:
    """``pool_size`` overrides the server's pool (a one-shot command needs only a few)."""
    engines = [
        create_shard_engine(
            url,
            pool_size=settings.pool_size if pool_size is None else pool_size,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        for url in settings.shards
    ]
    return ShardRouter(engines, settings.virtual_shards)
