"""How the engine's processes log: ISO-8601 times, text or one JSON object per line.

``COFFER_LOG_FORMAT=json`` gives every record as ``{"ts", "level", "logger", "message", ...}``
with the record's structured fields (``extra={"fields": {...}}``) merged in; ``text`` gives
``<ts> <LEVEL> <logger>: <message>``. The server and ``python -m engine.jobs`` share this.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from engine.config import LogFormat
from engine.domain.time_units import MICROSECONDS_PER_SECOND

__all__ = [
    "FIELDS_ATTRIBUTE",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_time",
]

#: The record attribute holding a structured record's fields (``extra={FIELDS_ATTRIBUTE: {...}}``).
FIELDS_ATTRIBUTE = "fields"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def log_time(now_us: int) -> str:
    """An engine clock reading (µs since the epoch) as an ISO-8601 UTC time, for log lines."""
    return datetime.fromtimestamp(now_us / MICROSECONDS_PER_SECOND, UTC).isoformat(timespec="microseconds")


class TextFormatter(logging.Formatter):
    def __init__(self, *, with_pid: bool = False) -> None:
        name = "%(name)s[%(process)d]" if with_pid else "%(name)s"
        super().__init__(f"%(asctime)s %(levelname)s {name}: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(log_format: LogFormat, *, with_pid: bool = False) -> None:
    """Root logging at INFO on stderr in ``log_format`` (replacing any earlier set-up)."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format is LogFormat.JSON else TextFormatter(with_pid=with_pid)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Alembic narrates every migration context at INFO (twice per shard, even when there is
    # nothing to do); the engine logs what it migrates itself, so only its warnings pass.
    logging.getLogger("alembic").setLevel(logging.WARNING)
