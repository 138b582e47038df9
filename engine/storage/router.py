"""The shard router: ``user_id % virtual_shards`` picks a virtual shard, the shard map a database.

Every id the engine hands out carries its virtual shard (:mod:`engine.domain.ids`), so a call
that names only a charge, refund or gift-card code routes here without a lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from engine.domain.ids import code_virtual_shard, id_virtual_shard


@dataclass(frozen=True)
class Shard:
    index: int
    engine: Engine


class ShardRouter:
    def __init__(self, engines: Sequence[Engine], virtual_shards: int) -> None:
        self.shards = tuple(Shard(index, engine) for index, engine in enumerate(engines))
        self.virtual_shards = virtual_shards

    @property
    def physical_count(self) -> int:
        return len(self.shards)

    def shard_map(self) -> list[int]:
        """Default map (CONTRACT §1): virtual shard ``v`` lives on physical ``v % N``."""
        return [virtual % self.physical_count for virtual in range(self.virtual_shards)]

    def virtual_shard_of_user(self, user_id: int) -> int:
        return user_id % self.virtual_shards

    def for_virtual(self, virtual_shard: int) -> Shard:
        return self.shards[virtual_shard % self.physical_count]

    def for_user(self, user_id: int) -> Shard:
        return self.for_virtual(self.virtual_shard_of_user(user_id))

    def for_id(self, identifier: str) -> Shard | None:
        """The shard an engine id lives on, or ``None`` if the id cannot be one of ours."""
        virtual = id_virtual_shard(identifier)
        if virtual is None or virtual >= self.virtual_shards:
            return None
        return self.for_virtual(virtual)

    def for_code(self, code: str) -> Shard | None:
        virtual = code_virtual_shard(code)
        if virtual is None or virtual >= self.virtual_shards:
            return None
        return self.for_virtual(virtual)

    def dispose(self) -> None:
        for shard in self.shards:
            shard.engine.dispose()
