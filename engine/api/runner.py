"""Runs blocking use cases off the event loop and turns refusals into gRPC statuses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from engine.api.errors import to_status
from engine.api.metrics import note_refusal
from engine.domain.errors import CofferError

T = TypeVar("T")
logger = logging.getLogger("coffer.api")


class UseCaseRunner:
    """A bounded thread pool for database work; the gRPC event loop never blocks on a query."""

    def __init__(self, worker_threads: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=worker_threads, thread_name_prefix="coffer-db")

    async def run(self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, work)
        except CofferError as error:
            note_refusal(error.reason.label)
            await context.abort_with_status(to_status(error))
        except Exception:
            logger.exception("unexpected failure in a use case")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; nothing was applied")
        raise AssertionError("abort always raises")  # pragma: no cover

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)
