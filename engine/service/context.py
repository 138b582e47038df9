"""What every use case needs: the shard router, the settings and the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.config import Settings
from engine.domain.charge_plan import PointsPolicy
from engine.storage.router import ShardRouter


def system_now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class EngineContext:
    router: ShardRouter
    settings: Settings
    #: Microseconds since the epoch; tests and job replays substitute their own clock.
    clock: Callable[[], int] = field(default=system_now_us)

    def now_us(self) -> int:
        return self.clock()

    @property
    def points_policy(self) -> PointsPolicy:
        return PointsPolicy(
            points_per_yuan=self.settings.points_per_yuan, cap_bps=self.settings.points_cap_bps
        )
