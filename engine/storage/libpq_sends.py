"""The pipeline's two sending calls (libpq's ``PQpipelineSync`` and ``PQflush``) made with the
GIL released.

Why: psycopg's binary implementation calls libpq holding the GIL. These two calls write a whole
pipeline to the socket, and a loopback send wakes the PostgreSQL backend that reads it; on this
2-core machine the kernel often runs that backend at once on the sending core, so the writer
thread is descheduled while it still holds the GIL and the worker's event loop (the other
thread of the process, which answers and accepts calls) waits until it is scheduled back.
py-spy ``--gil`` put 14% of the writer thread's GIL-held samples on the ``pipeline_sync()``
line. A call through :mod:`ctypes` releases the GIL for its duration. Interleaved A/B runs of
the bench's plain phase (docs/performance.md): +10.6% charges/s, -8.5% engine CPU per charge.

Which library: the libpq already mapped into this process — the one psycopg's extension was
linked with, found in ``/proc/self/maps`` — never a second copy, whose ``PGconn`` could be laid
out differently. With no ``/proc``, no or more than one libpq mapped, or psycopg's pure-Python
implementation (which already calls libpq through ctypes, the GIL released), psycopg's own
methods are used: the same calls, only holding the GIL.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import pq

__all__ = ["MAPS_PATH", "flush", "libpq_path", "pipeline_sync", "releases_gil"]

#: Where Linux lists this process's mapped files.
MAPS_PATH = Path("/proc/self/maps")
#: A shared libpq, as distributions (``libpq.so.5``) and psycopg's wheels (``libpq-<hash>.so.5.18``) name it.
_LIBPQ_NAME = re.compile(r"^libpq(?:-[0-9a-f]+)?\.so(?:\.\d+)*$")
#: Bounds the scan of the maps file (a Python process maps a few thousand regions).
MAX_MAPPED_REGIONS = 100_000


class _SendingCalls(Protocol):
    """The two libpq functions, as ctypes exposes them (``int f(PGconn *)``)."""

    def PQpipelineSync(self, connection: int, /) -> int: ...

    def PQflush(self, connection: int, /) -> int: ...


def libpq_path(mapped_lines: Iterable[str]) -> str | None:
    """The one libpq among a maps listing's files, or ``None`` when there is none or several."""
    found: set[str] = set()
    for count, line in enumerate(mapped_lines):
        if count >= MAX_MAPPED_REGIONS:
            return None
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            path = fields[5].rstrip("\n")
            if _LIBPQ_NAME.match(path.rsplit("/", 1)[-1]):
                found.add(path)
    return found.pop() if len(found) == 1 else None


@functools.cache
def _loaded() -> _SendingCalls | None:
    if pq.__impl__ == "python":
        return None
    try:
        with MAPS_PATH.open(encoding="utf-8", errors="replace") as maps:
            path = libpq_path(maps)
        if path is None:
            return None
        library = ctypes.CDLL(path)  # already mapped: dlopen hands back the loaded object
    except OSError:
        return None
    for function in (library.PQpipelineSync, library.PQflush):
        function.argtypes = [ctypes.c_void_p]
        function.restype = ctypes.c_int
    calls: _SendingCalls = library
    return calls


def releases_gil() -> bool:
    """Whether :func:`pipeline_sync` and :func:`flush` run with the GIL released here."""
    return _loaded() is not None


def _pointer(pgconn: pq.abc.PGconn) -> int:
    pointer: int | None = getattr(pgconn, "pgconn_ptr", None)
    if not pointer:
        raise psycopg.OperationalError("the connection is closed")
    return pointer


def pipeline_sync(pgconn: pq.abc.PGconn) -> None:
    """``pgconn.pipeline_sync()``: mark the pipeline's end and send what is queued."""
    calls = _loaded()
    if calls is None:
        pgconn.pipeline_sync()
        return
    if calls.PQpipelineSync(_pointer(pgconn)) != 1:
        raise psycopg.OperationalError(f"pipeline sync failed: {pgconn.get_error_message()}")


def flush(pgconn: pq.abc.PGconn) -> int:
    """``pgconn.flush()``: 0 once everything queued is sent, 1 while some is left to send."""
    calls = _loaded()
    if calls is None:
        return pgconn.flush()
    sent = calls.PQflush(_pointer(pgconn))
    if sent < 0:
        raise psycopg.OperationalError(f"flushing failed: {pgconn.get_error_message()}")
    return sent
