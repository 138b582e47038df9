"""Database errors as the one line an operator reads.

Here rather than in :mod:`engine.process_log` because it knows SQLAlchemy's error wrapper, and the
multi-worker engine's parent (:mod:`engine.supervisor`) logs through process_log without loading
SQLAlchemy (docs/performance.md "Memory").
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

__all__ = ["first_line"]


def first_line(error: BaseException) -> str:
    """An error as one line: a database error's driver message without SQLAlchemy's multi-line
    "background on this error" note, otherwise the error's first line."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
