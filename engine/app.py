"""Assembling and running the engine process: shards, servicers, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import multiprocessing
import os
import signal
import sys
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import text

from coffer.v1 import admin_pb2, admin_pb2_grpc, engine_pb2, engine_pb2_grpc
from engine.api.admin import AdminServicer
from engine.api.metrics import MetricsInterceptor, serve_metrics
from engine.api.runner import UseCaseRunner
from engine.api.servicer import TransactionEngineServicer
from engine.config import Settings
from engine.service.context import EngineContext
from engine.storage.database import create_shard_engine
from engine.storage.migrations import ShardConfigurationMismatch, migrate_all
from engine.storage.router import ShardRouter

logger = logging.getLogger("coffer")

#: How long start-up waits for every shard to answer before giving up.
SHARD_WAIT_ATTEMPTS = 60
SHARD_WAIT_INTERVAL_SECONDS = 1.0
#: How often the worker supervisor looks for a worker that exited.
WORKER_POLL_SECONDS = 0.5
#: gRPC message size bound (a charge has at most 200 items; 4 MiB is ample).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVICE_NAMES = (
    engine_pb2.DESCRIPTOR.services_by_name["TransactionEngine"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
)


def build_router(settings: Settings) -> ShardRouter:
    engines = [
        create_shard_engine(
            url,
            pool_size=settings.pool_size,
            lock_timeout_ms=settings.lock_timeout_ms,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        for url in settings.shards
    ]
    return ShardRouter(engines, settings.virtual_shards)


def check_listen_allowed(settings: Settings) -> None:
    """``COFFER_AUTH=none`` is refused anywhere but a loopback address (CONTRACT §6)."""
    host = settings.listen.rsplit(":", 1)[0].strip("[]")
    if settings.auth != "none":
        raise SystemExit(f"COFFER_AUTH={settings.auth} is not available yet; use none on loopback")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise SystemExit(f"COFFER_AUTH=none is allowed only on a loopback address, not {host!r}")


def wait_for_shards(router: ShardRouter) -> None:
    """Create or migrate the schema on every shard, waiting (bounded) until each answers."""
    for attempt in range(1, SHARD_WAIT_ATTEMPTS + 1):
        try:
            migrate_all(router)
            for shard in router.shards:
                with shard.engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            return
        except ShardConfigurationMismatch:
            raise
        except Exception as error:
            if attempt == SHARD_WAIT_ATTEMPTS:
                raise
            logger.warning("waiting for shards (attempt %d): %s", attempt, error)
            time.sleep(SHARD_WAIT_INTERVAL_SECONDS)


class EngineServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = build_router(settings)
        self.context = EngineContext(self.router, settings)
        self.runner = UseCaseRunner(settings.worker_threads)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=settings.worker_threads * 64,
            interceptors=[MetricsInterceptor()],
        )
        engine_pb2_grpc.add_TransactionEngineServicer_to_server(
            TransactionEngineServicer(self.context, self.runner), self.server
        )
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self.context, self.runner), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = self.server.add_insecure_port(settings.listen)
        self._stopping = asyncio.Event()
        self._job_task: asyncio.Task[None] | None = None

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        serve_metrics(self.settings.listen.rsplit(":", 1)[0].strip("[]"), self.settings.metrics_port)
        await self.server.start()
        logger.info("listening on %s (port %d); waiting for shards", self.settings.listen, self.port)
        await asyncio.get_running_loop().run_in_executor(None, wait_for_shards, self.router)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving on %d shard(s)", self.router.physical_count)
        if self.settings.job_interval_seconds > 0:
            self._job_task = asyncio.create_task(self._run_jobs_periodically())

    async def _run_jobs_periodically(self) -> None:
        """The expiry job every ``job_interval_seconds``, on the use-case thread pool; a failed
        run is logged and the next one comes at the next interval."""
        from engine.jobs.run import run_expire

        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.job_interval_seconds)
            try:
                await loop.run_in_executor(self.runner.executor, run_expire, self.context)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduled expiry job failed")

    async def stop(self) -> None:
        """Health goes NOT_SERVING, new calls are refused, in-flight calls get a bounded grace."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._job_task is not None:
            self._job_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job_task
        await self.server.stop(self.settings.shutdown_grace_seconds)
        self.runner.shutdown()
        self.router.dispose()

    async def serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, self._stopping.set)
        await self.start()
        await self._stopping.wait()
        logger.info("shutting down (grace %.1fs)", self.settings.shutdown_grace_seconds)
        await self.stop()


async def _main(settings: Settings) -> None:
    # grpc.aio binds its server to the running loop, so it is built inside it.
    server = EngineServer(settings)
    await server.serve_until_signalled()


def _worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s share: its own metrics port, and only worker 0 schedules jobs."""
    return dataclasses.replace(
        settings,
        workers=1,
        metrics_port=settings.metrics_port + index if settings.metrics_port else 0,
        job_interval_seconds=settings.job_interval_seconds if index == 0 else 0,
    )


def _worker_main(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s"
    )
    asyncio.run(_main(settings))


def run_workers(settings: Settings) -> int:
    """``COFFER_WORKERS`` engine processes on one port. The parent migrates the shards once,
    starts the workers, forwards SIGTERM/SIGINT to them and exits when they have all exited;
    if one dies on its own, the others are stopped too (a supervisor restarts the whole)."""
    if settings.listen.rsplit(":", 1)[-1] == "0":
        raise SystemExit("COFFER_WORKERS > 1 needs a fixed port in COFFER_LISTEN")
    router = build_router(settings)
    try:
        wait_for_shards(router)
    finally:
        router.dispose()
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_worker_main, args=(_worker_settings(settings, index),), name=f"coffer-{index}")
        for index in range(settings.workers)
    ]
    stopping = False

    def forward(signal_number: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        for worker in workers:
            worker.join(timeout=WORKER_POLL_SECONDS)
            if not stopping and worker.exitcode is not None:
                logger.error("worker %s exited with %s; stopping the others", worker.name, worker.exitcode)
                forward(signal.SIGTERM, None)
    return max(abs(worker.exitcode or 0) for worker in workers) if not stopping else 0


def run(settings: Settings) -> None:
    check_listen_allowed(settings)
    if settings.workers > 1:
        sys.exit(run_workers(settings))
    asyncio.run(_main(settings))
