"""Configuration (CONTRACT §6): ``COFFER_*`` environment variables over an optional TOML file.

The TOML file is named by ``COFFER_CONFIG`` and uses the same keys in lower case without the
prefix (``listen = "0.0.0.0:50051"``). The environment wins. Every setting is declared once, on
:class:`Settings`, with its meaning: ``python server.py --help`` lists them from there.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from engine.domain.ids import MAX_VIRTUAL_SHARDS

__all__ = [
    "CONFIG_FILE_VARIABLE",
    "DEFAULT_SQLITE_DIRECTORY",
    "ENVIRONMENT_PREFIX",
    "MAX_STARTUP_TIMEOUT_SECONDS",
    "MAX_WORKERS",
    "ConfigurationError",
    "LogFormat",
    "OneLineArgumentParser",
    "Settings",
    "describe_settings",
    "load_settings",
    "variable_name",
]

DEFAULT_SQLITE_DIRECTORY = Path("var")
MAX_WORKERS = 64
#: Start-up waits for the shards at most one hour, however it is configured.
MAX_STARTUP_TIMEOUT_SECONDS = 3600.0
ENVIRONMENT_PREFIX = "COFFER_"
CONFIG_FILE_VARIABLE = "COFFER_CONFIG"
_MEANING = "meaning"
T = TypeVar("T")


class ConfigurationError(ValueError):
    """A setting is missing, malformed or out of range; the message names the variable."""


class LogFormat(StrEnum):
    #: One human-readable line per record, ISO-8601 times.
    TEXT = "text"
    #: One JSON object per line (for log collectors).
    JSON = "json"


def _setting(default: T, meaning: str) -> T:
    # A dataclass field carrying its meaning, so the help text has one source.
    return field(default=default, metadata={_MEANING: meaning})


def _setting_from(factory: Callable[[], T], meaning: str) -> T:
    return field(default_factory=factory, metadata={_MEANING: meaning})


def _default_shards() -> tuple[str, ...]:
    return tuple(f"sqlite:///{DEFAULT_SQLITE_DIRECTORY}/shard{index}.db" for index in range(2))


@dataclass(frozen=True)
class Settings:
    listen: str = _setting("127.0.0.1:50051", "gRPC address (host:port)")
    shards: tuple[str, ...] = _setting_from(
        _default_shards,
        "comma-separated SQLAlchemy URLs, one per physical shard "
        "(postgresql+psycopg://user@host:port/db or sqlite:///path)",
    )
    virtual_shards: int = _setting(128, "virtual shard count; fixed once the shards are created")
    redis_url: str = _setting("", "Redis for risk counters and caches (empty: in-process)")
    auth: str = _setting("none", "none (allowed only on a loopback address), token or mtls")
    tls_cert: str = _setting("", "the server's TLS certificate chain, PEM (empty: plaintext, loopback only)")
    tls_key: str = _setting("", "the server certificate's private key, PEM")
    tls_client_ca: str = _setting("", "the CA that signs client certificates, PEM (COFFER_AUTH=mtls)")
    token_keys: str = _setting(
        "", "file of PEM public keys (Ed25519 or RSA) or an HS256 secret verifying caller tokens (token)"
    )
    probe_listen: str = _setting(
        "",
        "COFFER_AUTH=mtls: a second TLS address that asks for no client certificate, for health "
        "and reflection (every coffer RPC there is UNAUTHENTICATED); empty: none",
    )
    metrics_port: int = _setting(9464, "Prometheus /metrics port on the listen host (0: off)")
    log_format: LogFormat = _setting(  # noqa: RUF009 - _setting returns a dataclasses.Field
        LogFormat.TEXT, "text (human-readable) or json (one object per line)"
    )
    currency: str = _setting("CNY", "the deployment's currency")
    timezone: str = _setting("Asia/Shanghai", "the business time zone (daily caps, business days)")
    points_per_yuan: int = _setting(100, "points worth 1 unit of the currency (100: 1 point = 1 fen)")
    points_cap_bps: int = _setting(5000, "at most this share (bps) of the amount after discount in points")
    points_earn_bps: int = _setting(0, "points earned per fen captured, in bps (0: earning is off)")
    points_earn_ttl_days: int = _setting(365, "lifetime of a lot of earned points in days (0: never expires)")
    hold_ttl_seconds: int = _setting(
        7 * 24 * 3600, "how long an authorization holds its legs before the expiry job releases them"
    )
    job_interval_seconds: int = _setting(60, "how often the server runs the expiry job itself (0: never)")
    job_batch_size: int = _setting(500, "items per expiry-job batch")
    pool_size: int = _setting(
        16, "database connections per physical shard; also bounds concurrent work per shard"
    )
    # More threads than this only fight over the GIL: 16 gave 140 charges/s where 32 gave 100
    # (docs/performance.md).
    worker_threads: int = _setting(16, "threads running blocking database work off the event loop")
    workers: int = _setting(
        1, f"engine processes sharing the listen port (1..{MAX_WORKERS}); more than one uses more cores"
    )
    lock_timeout_ms: int = _setting(5000, "longest wait for a row lock before a retry or refusal (ms)")
    statement_timeout_ms: int = _setting(30000, "longest SQL statement (ms)")
    transaction_attempts: int = _setting(6, "attempts for a transaction that hits a serialization failure")
    startup_timeout_seconds: float = _setting(
        60.0, "how long start-up waits for every shard to answer before giving up (s)"
    )
    shutdown_grace_seconds: float = _setting(10.0, "how long in-flight calls may finish after SIGTERM (s)")
    exchange_daily_cap_points: int = _setting(100_000, "per-user daily cap on points exchanged for cash")
    exchange_points_per_fen: int = _setting(1, "points needed for 1 fen of cash in an exchange")

    def __post_init__(self) -> None:
        try:
            # Settings(log_format="json") from code gets the enum like the environment does.
            object.__setattr__(self, "log_format", LogFormat(self.log_format))
        except ValueError as error:
            raise ConfigurationError("COFFER_LOG_FORMAT must be text or json") from error
        if not self.shards:
            raise ConfigurationError("COFFER_SHARDS names no database")
        if not 1 <= self.virtual_shards <= MAX_VIRTUAL_SHARDS:
            raise ConfigurationError(f"COFFER_VIRTUAL_SHARDS must be within 1..{MAX_VIRTUAL_SHARDS}")
        if self.virtual_shards < len(self.shards):
            raise ConfigurationError("fewer virtual shards than physical shards")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigurationError(f"COFFER_WORKERS must be within 1..{MAX_WORKERS}")
        if self.auth not in ("none", "token", "mtls"):
            raise ConfigurationError("COFFER_AUTH must be none, token or mtls")
        self._check_security()
        if self.points_per_yuan <= 0 or not 0 <= self.points_cap_bps <= 10_000:
            raise ConfigurationError("points rate must be positive and the cap within 0..10000 bps")
        if not 0 < self.startup_timeout_seconds <= MAX_STARTUP_TIMEOUT_SECONDS:
            raise ConfigurationError(
                f"COFFER_STARTUP_TIMEOUT_SECONDS must be above 0 and at most {MAX_STARTUP_TIMEOUT_SECONDS:g}"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError("COFFER_METRICS_PORT must be within 0..65535")

    def _check_security(self) -> None:
        """The TLS files come as a pair; token and mtls need TLS and their own trust anchor."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("COFFER_TLS_CERT and COFFER_TLS_KEY are set together or not at all")
        if self.auth != "none" and not self.tls_cert:
            raise ConfigurationError(
                f"COFFER_AUTH={self.auth} needs TLS: set COFFER_TLS_CERT and COFFER_TLS_KEY"
            )
        if self.auth == "mtls" and not self.tls_client_ca:
            raise ConfigurationError("COFFER_AUTH=mtls needs COFFER_TLS_CLIENT_CA")
        if self.auth == "token" and not self.token_keys:
            raise ConfigurationError("COFFER_AUTH=token needs COFFER_TOKEN_KEYS")
        if self.probe_listen and self.auth != "mtls":
            raise ConfigurationError("COFFER_PROBE_LISTEN is for COFFER_AUTH=mtls only")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


def variable_name(setting: str) -> str:
    return f"{ENVIRONMENT_PREFIX}{setting.upper()}"


def _coerce(name: str, raw: Any, template: Any) -> Any:
    if isinstance(template, tuple):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(raw)
    if isinstance(template, StrEnum):
        return type(template)(str(raw).lower())
    if isinstance(template, bool):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    if isinstance(template, int):
        return int(raw)
    if isinstance(template, float):
        return float(raw)
    return str(raw)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``COFFER_CONFIG`` (TOML) then ``COFFER_*`` variables; the environment wins.

    Raises :class:`ConfigurationError` (one line, naming the variable) on a bad value."""
    environ = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    config_path = environ.get(CONFIG_FILE_VARIABLE)
    if config_path:
        try:
            with open(config_path, "rb") as handle:
                values.update(tomllib.load(handle))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}={config_path}: {error}") from error
    for item in fields(Settings):
        variable = variable_name(item.name)
        if variable in environ and environ[variable] != "":
            values[item.name] = environ[variable]
    known = {item.name for item in fields(Settings)}
    unknown = set(values) - known
    if unknown:
        raise ConfigurationError(f"unknown configuration keys: {sorted(unknown)}")
    coerced: dict[str, Any] = {}
    for name, raw in values.items():
        template = getattr(defaults, name)
        try:
            coerced[name] = _coerce(name, raw, template)
        except ValueError as error:
            raise ConfigurationError(f"{variable_name(name)}={raw!r} is not a valid value") from error
    return Settings(**coerced)


def _shown_default(item: Field[Any]) -> str:
    value = getattr(Settings(), item.name)
    if isinstance(value, tuple):
        return ",".join(value)
    text = str(value)
    return text if text else "unset"


def describe_settings() -> str:
    """Every ``COFFER_*`` variable with its meaning and default, for ``--help``."""
    rows = [
        (variable_name(item.name), str(item.metadata.get(_MEANING, "")), _shown_default(item))
        for item in fields(Settings)
    ]
    width = max(len(name) for name, _meaning, _default in rows)
    lines = [f"  {name:<{width}}  {meaning} [default: {default}]" for name, meaning, default in rows]
    lines.append(
        f"  {CONFIG_FILE_VARIABLE:<{width}}  a TOML file with the same keys in lower case without the "
        "prefix; the environment wins"
    )
    return "\n".join(lines)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (``prog: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def fail(self, message: str) -> NoReturn:
        """A domain-level bad argument (a shard out of range, a time too far ahead)."""
        self.error(message)
