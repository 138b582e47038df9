"""Configuration (CONTRACT §6): ``COFFER_*`` environment variables over an optional TOML file.

The TOML file is named by ``COFFER_CONFIG`` and uses the same keys in lower case without the
prefix (``listen = "0.0.0.0:50051"``). The environment wins.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.domain.ids import MAX_VIRTUAL_SHARDS

DEFAULT_SQLITE_DIRECTORY = Path("var")
MAX_WORKERS = 64


def _default_shards() -> tuple[str, ...]:
    return tuple(f"sqlite:///{DEFAULT_SQLITE_DIRECTORY}/shard{index}.db" for index in range(2))


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    shards: tuple[str, ...] = field(default_factory=_default_shards)
    virtual_shards: int = 128
    redis_url: str = ""
    auth: str = "none"
    metrics_port: int = 9464
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"
    #: 100 points are worth 1 CNY (seed 002), so 1 point = 1 fen.
    points_per_yuan: int = 100
    #: At most this share of the amount after discount may be paid with points.
    points_cap_bps: int = 5000
    #: Points earned per fen captured, in bps (0: earning is off).
    points_earn_bps: int = 0
    #: Lifetime of a lot of earned points (0: never expires).
    points_earn_ttl_days: int = 365
    #: How long an authorization holds its legs before the expiry job releases them.
    hold_ttl_seconds: int = 7 * 24 * 3600
    #: How often the server runs the expiry job itself (0: never).
    job_interval_seconds: int = 60
    job_batch_size: int = 500
    #: Database connections per physical shard; also bounds concurrent work per shard.
    pool_size: int = 16
    #: Threads running blocking database work off the event loop. More threads than this only
    #: fight over the GIL: 16 gave 140 charges/s where 32 gave 100 (docs/performance.md).
    worker_threads: int = 16
    #: Engine processes sharing the listen port (SO_REUSEPORT); each is a whole engine, and
    #: more than one lets the engine use more than one core despite Python's GIL.
    workers: int = 1
    #: A transaction waits at most this long for a row lock before it is retried or refused.
    lock_timeout_ms: int = 5000
    statement_timeout_ms: int = 30000
    #: Attempts for a transaction that hits a serialization failure or deadlock.
    transaction_attempts: int = 6
    #: How long in-flight calls may finish after SIGTERM.
    shutdown_grace_seconds: float = 10.0
    #: Per-user daily cap on points exchanged for cash (points).
    exchange_daily_cap_points: int = 100_000
    #: Points needed for 1 fen of cash in an exchange.
    exchange_points_per_fen: int = 1

    def __post_init__(self) -> None:
        if not self.shards:
            raise ValueError("COFFER_SHARDS names no database")
        if not 1 <= self.virtual_shards <= MAX_VIRTUAL_SHARDS:
            raise ValueError(f"COFFER_VIRTUAL_SHARDS must be within 1..{MAX_VIRTUAL_SHARDS}")
        if self.virtual_shards < len(self.shards):
            raise ValueError("fewer virtual shards than physical shards")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"COFFER_WORKERS must be within 1..{MAX_WORKERS}")
        if self.auth not in ("none", "token", "mtls"):
            raise ValueError("COFFER_AUTH must be none, token or mtls")
        if self.points_per_yuan <= 0 or not 0 <= self.points_cap_bps <= 10_000:
            raise ValueError("points rate must be positive and the cap within 0..10000 bps")


def _coerce(name: str, raw: Any, template: Any) -> Any:
    if isinstance(template, tuple):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(raw)
    if isinstance(template, bool):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    if isinstance(template, int):
        return int(raw)
    if isinstance(template, float):
        return float(raw)
    return str(raw)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``COFFER_CONFIG`` (TOML) then ``COFFER_*`` variables; the environment wins."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    config_path = environ.get("COFFER_CONFIG")
    if config_path:
        with open(config_path, "rb") as handle:
            values.update(tomllib.load(handle))
    for item in fields(Settings):
        variable = f"COFFER_{item.name.upper()}"
        if variable in environ and environ[variable] != "":
            values[item.name] = environ[variable]
    known = {item.name for item in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
    coerced = {name: _coerce(name, raw, getattr(defaults, name)) for name, raw in values.items()}
    return Settings(**coerced)
