"""Runs use cases off the event loop and turns refusals into gRPC statuses.

Mutations go to their shard's group-commit writer (:mod:`engine.service.group_commit`): the
handler awaits a future that the writer settles after the batch holding it has committed, one
wake-up of the event loop per batch and no thread hop per request. Reads, admin calls and jobs
run on a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import grpc

from engine.api.auth import current_caller
from engine.api.errors import to_status
from engine.api.metrics import note_refusal
from engine.domain.errors import CofferError
from engine.service.audit_trail import bound_to_caller
from engine.service.group_commit import GroupCommit, Joinable, PendingWrite, WriteRoute
from engine.storage.router import ShardRouter

__all__ = ["UseCaseRunner"]

T = TypeVar("T")
logger = logging.getLogger("coffer.api")
Waiter = asyncio.Future[object]


def _deliver(settled: Sequence[PendingWrite[Waiter]]) -> None:
    """Called on a writer thread once per committed batch: one wake-up of the loop for all."""
    if settled:
        settled[0].token.get_loop().call_soon_threadsafe(_settle_all, settled)


def _settle_all(settled: Sequence[PendingWrite[Waiter]]) -> None:
    for request in settled:
        waiter = request.token
        if waiter.done():  # the caller went away (deadline, cancel); the outcome stands
            continue
        if request.error is not None:
            waiter.set_exception(request.error)
        else:
            waiter.set_result(request.result)


class UseCaseRunner:
    """A bounded thread pool for reads and admin work, and the shards' group-commit writers."""

    def __init__(self, worker_threads: int, router: ShardRouter | None = None) -> None:
        self.executor = ThreadPoolExecutor(max_workers=worker_threads, thread_name_prefix="coffer-db")
        self.group_commit: GroupCommit[Waiter] | None = (
            GroupCommit(router, _deliver) if router is not None else None
        )

    async def run(self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], T]) -> T:
        """``work`` on the thread pool, in its own transaction(s)."""
        work = bound_to_caller(current_caller(), work)  # for the audit trail, on the pool thread
        loop = asyncio.get_running_loop()
        return await self._answer(context, lambda: loop.run_in_executor(self.executor, work))

    async def write(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        route: WriteRoute | None,
        work: Callable[[], T],
        *,
        joinable: Joinable | None = None,
    ) -> T:
        """A mutation: ``work`` runs in a batch on ``route``'s shard writer (``None``: a request
        that names no shard of ours, which ``work`` refuses — it runs on the thread pool). With
        ``joinable`` the writer may apply it together with its neighbours instead (group_commit)."""
        group_commit = self.group_commit
        if route is None or group_commit is None:
            return await self.run(context, work)

        acting = bound_to_caller(current_caller(), work)  # for the audit trail, on the writer thread

        def submit() -> Awaitable[T]:
            waiter: Waiter = asyncio.get_running_loop().create_future()
            group_commit.submit(route, acting, waiter, joinable)
            return cast(Awaitable[T], waiter)

        return await self._answer(context, submit)

    async def _answer(
        self, context: grpc.aio.ServicerContext[Any, Any], start: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            return await start()
        except CofferError as error:
            note_refusal(error.reason.label)
            await context.abort_with_status(to_status(error))
        except Exception:
            logger.exception("unexpected failure in a use case")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; nothing was applied")
        raise AssertionError("abort always raises")  # pragma: no cover

    def shutdown(self) -> None:
        """After the server stopped taking calls: the writers finish what is queued, then the pool."""
        if self.group_commit is not None:
            self.group_commit.stop()
        self.executor.shutdown(wait=True, cancel_futures=False)
