"""Assembling and running the engine process: shards, servicers, health, reflection, shutdown.

Start-up either serves or ends with one line on stderr and a non-zero exit (:class:`StartupFailure`):
a refused configuration, a port another engine holds, shards that do not answer within
``COFFER_STARTUP_TIMEOUT_SECONDS``, or SIGTERM/SIGINT while waiting for them. The checks that
need neither gRPC nor a database are in :mod:`engine.startup`.

``COFFER_WORKERS > 1``: the light parent (:mod:`engine.supervisor`) runs :func:`run_preparation`
once in a short-lived child, then each worker process runs :func:`run_worker` (both started
through :mod:`engine.worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, DBAPIError

from coffer.v1 import admin_pb2, admin_pb2_grpc, engine_pb2, engine_pb2_grpc
from engine.api.admin import AdminServicer
from engine.api.auth import Authenticator, AuthInterceptor, CertificateAuthenticator, TokenAuthenticator
from engine.api.metrics import (
    MetricsServer,
    Observer,
    ObservingInterceptor,
    record_call,
    record_shard_up,
    serve_metrics,
    watch_pools,
)
from engine.api.request_log import REQUEST_LOG
from engine.api.runner import UseCaseRunner
from engine.api.servicer import TransactionEngineServicer
from engine.config import Settings
from engine.domain.errors import require
from engine.jobs.run import run_expire
from engine.security.tokens import TokenVerifier
from engine.service.context import EngineContext
from engine.startup import (
    EXIT_STARTUP_FAILED,
    StartupFailure,
    check_listen_allowed,
    check_port_free,
    split_listen,
)
from engine.storage.errors import first_line
from engine.storage.migrations import ShardConfigurationMismatch, migrate_all
from engine.storage.router import Shard, ShardRouter
from engine.storage.shards import open_router

__all__ = [
    "EngineServer",
    "run",
    "run_preparation",
    "run_worker",
    "wait_for_shards",
]

logger = logging.getLogger("coffer")

#: Waiting for shards retries after this long, doubling up to the maximum.
SHARD_WAIT_FIRST_INTERVAL_SECONDS = 0.5
SHARD_WAIT_MAX_INTERVAL_SECONDS = 5.0
#: How often a serving engine probes each shard for ``coffer_shard_up``.
SHARD_PROBE_INTERVAL_SECONDS = 15.0
#: How long a thread may hold the GIL while another wants it. The group-commit writers wake
#: after every database round trip and then wait for the GIL the event loop holds; CPython's
#: 5 ms default made each round trip cost up to 5 ms of waiting (docs/performance.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.0005
#: gRPC message size bound (a charge has at most 200 items; 4 MiB is ample).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVICE_NAMES = (
    engine_pb2.DESCRIPTOR.services_by_name["TransactionEngine"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
)


def _open_router(settings: Settings) -> ShardRouter:
    try:
        return open_router(settings)
    except (ValueError, ArgumentError) as error:
        raise StartupFailure(f"COFFER_SHARDS: {first_line(error)}") from error


def _describe(shard: Shard) -> str:
    return f"shard {shard.index} ({shard.engine.url.render_as_string(hide_password=True)})"


def ping_shard(shard: Shard) -> None:
    """Raises when the shard does not answer a trivial query."""
    with shard.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def wait_for_shards(
    router: ShardRouter, *, timeout_seconds: float, stop: threading.Event | None = None
) -> None:
    """Wait until every shard answers, then create or migrate the schema on each.

    Bounded by ``timeout_seconds``; ``stop`` (set by a signal) ends the wait early. Raises
    :class:`StartupFailure` for a timeout, a stop, or shards whose records disagree with the
    configuration (that is never retried)."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout_seconds
    interval = SHARD_WAIT_FIRST_INTERVAL_SECONDS
    while True:
        waiting_for = "the shards"
        try:
            for shard in router.shards:
                waiting_for = _describe(shard)
                ping_shard(shard)
            waiting_for = "the schema migration"
            migrate_all(router)
            return
        except ShardConfigurationMismatch as error:
            raise StartupFailure(f"refused: {error}") from error
        except (DBAPIError, OSError) as error:
            problem = first_line(error)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StartupFailure(
                f"gave up after {timeout_seconds:g}s waiting for {waiting_for}: {problem} "
                "(COFFER_STARTUP_TIMEOUT_SECONDS)"
            )
        logger.warning("waiting for %s: %s (%.0fs left)", waiting_for, problem, remaining)
        if stop.wait(min(interval, remaining)):
            raise StartupFailure(f"stopped by a signal while waiting for {waiting_for}")
        interval = min(interval * 2, SHARD_WAIT_MAX_INTERVAL_SECONDS)


def _read_pem(variable: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise StartupFailure(f"{variable}={path}: {error.strerror}") from error


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for the listen port (``None``: plaintext). With mtls the handshake demands a client
    certificate signed by ``COFFER_TLS_CLIENT_CA``: grpc's Python API cannot ask for one without
    demanding it (``require_client_auth=False`` asks for none), so health and reflection are
    open on ``COFFER_PROBE_LISTEN`` instead (docs/security.md)."""
    if not settings.tls:
        return None
    pair = (_read_pem("COFFER_TLS_KEY", settings.tls_key), _read_pem("COFFER_TLS_CERT", settings.tls_cert))
    if settings.auth == "mtls":
        client_ca = _read_pem("COFFER_TLS_CLIENT_CA", settings.tls_client_ca)
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=True)
    return grpc.ssl_server_credentials([pair])


def probe_credentials(settings: Settings) -> grpc.ServerCredentials:
    """TLS without client certificates, for ``COFFER_PROBE_LISTEN``."""
    pair = (_read_pem("COFFER_TLS_KEY", settings.tls_key), _read_pem("COFFER_TLS_CERT", settings.tls_cert))
    return grpc.ssl_server_credentials([pair])


def authenticator(settings: Settings) -> Authenticator | None:
    """Who the callers are under ``COFFER_AUTH`` (``None`` for none: loopback only, no roles)."""
    if settings.auth == "mtls":
        return CertificateAuthenticator()
    if settings.auth == "token":
        try:
            return TokenAuthenticator(TokenVerifier.from_file(Path(settings.token_keys)))
        except (OSError, ValueError) as error:
            raise StartupFailure(f"COFFER_TOKEN_KEYS={settings.token_keys}: {first_line(error)}") from error
    return None


class EngineServer:
    """One engine: gRPC services on the listen port, metrics, the scheduled jobs.

    ``share_port`` is for the workers of one multi-worker engine only (SO_REUSEPORT)."""

    def __init__(self, settings: Settings, *, share_port: bool = False) -> None:
        self.settings = settings
        if not share_port:
            check_port_free(settings.listen)
        self.router = _open_router(settings)
        self.context = EngineContext(self.router, settings)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        self.runner = UseCaseRunner(settings.worker_threads, self.router)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        callers = authenticator(settings)
        # The auth check runs innermost, so metrics and the request log count its refusals too.
        interceptors: list[grpc.aio.ServerInterceptor] = [
            ObservingInterceptor([Observer(record_call), REQUEST_LOG])
        ]
        if callers is not None:
            interceptors.append(AuthInterceptor(callers))
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1 if share_port else 0),
            ],
            maximum_concurrent_rpcs=settings.worker_threads * 64,
            interceptors=interceptors,
        )
        engine_pb2_grpc.add_TransactionEngineServicer_to_server(
            TransactionEngineServicer(self.context, self.runner), self.server
        )
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self.context, self.runner), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        try:
            self.port = self._add_port(settings.listen, server_credentials(settings))
            self.probe_port = 0
            if settings.probe_listen:
                self.probe_port = self._add_port(settings.probe_listen, probe_credentials(settings))
        except (RuntimeError, StartupFailure) as error:
            self.runner.shutdown()
            self.router.dispose()
            if isinstance(error, StartupFailure):
                raise
            raise StartupFailure(f"cannot listen on {error} (is the port in use?)") from error
        self._stopping = asyncio.Event()
        self._stop_waiting = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics: MetricsServer | None = None
        # Probes get their own thread so a hung shard never takes a use-case thread.
        self._probe_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coffer-probe")

    def _add_port(self, listen: str, credentials: grpc.ServerCredentials | None) -> int:
        try:
            if credentials is None:
                return self.server.add_insecure_port(listen)
            return self.server.add_secure_port(listen, credentials)
        except RuntimeError as error:
            raise RuntimeError(listen) from error

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def start(self) -> None:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        host, _port = split_listen(self.settings.listen)
        try:
            self._metrics = serve_metrics(host, self.settings.metrics_port)
        except OSError as error:
            raise StartupFailure(
                f"cannot serve metrics on port {self.settings.metrics_port}: {error.strerror} "
                "(COFFER_METRICS_PORT; 0 turns metrics off)"
            ) from error
        await self.server.start()
        _settle_garbage_collector()
        logger.info(
            "listening on %s (port %d); waiting up to %gs for %d shard(s)",
            self.settings.listen,
            self.port,
            self.settings.startup_timeout_seconds,
            self.router.physical_count,
        )
        await asyncio.get_running_loop().run_in_executor(
            self._probe_executor,
            lambda: wait_for_shards(
                self.router, timeout_seconds=self.settings.startup_timeout_seconds, stop=self._stop_waiting
            ),
        )
        for shard in self.router.shards:
            record_shard_up(shard.index, True)
        watch_pools(self.router)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving on %d shard(s)", self.router.physical_count)
        self._tasks.append(asyncio.create_task(self._probe_shards_periodically()))
        if self.settings.job_interval_seconds > 0:
            self._tasks.append(asyncio.create_task(self._run_jobs_periodically()))

    async def _probe_shards_periodically(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SHARD_PROBE_INTERVAL_SECONDS)
            for shard in self.router.shards:
                try:
                    await loop.run_in_executor(self._probe_executor, ping_shard, shard)
                except (DBAPIError, OSError) as error:
                    logger.warning("%s does not answer: %s", _describe(shard), first_line(error))
                    record_shard_up(shard.index, False)
                else:
                    record_shard_up(shard.index, True)

    async def _run_jobs_periodically(self) -> None:
        """The expiry job every ``job_interval_seconds``, on the use-case thread pool; a failed
        run is logged and the next one comes at the next interval."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.job_interval_seconds)
            try:
                await loop.run_in_executor(self.runner.executor, run_expire, self.context)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduled expiry job failed")

    def request_stop(self) -> None:
        """What SIGTERM/SIGINT do: stop waiting for shards, or stop serving."""
        self._stop_waiting.set()
        self._stopping.set()

    async def stop(self) -> None:
        """Health goes NOT_SERVING, new calls are refused, in-flight calls get a bounded grace."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._stop_waiting.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop(self.settings.shutdown_grace_seconds)
        self.runner.shutdown()
        self._probe_executor.shutdown(wait=True, cancel_futures=True)
        if self._metrics is not None:
            self._metrics.stop()
        self.router.dispose()

    async def serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, self.request_stop)
        try:
            await self.start()
            await self._stopping.wait()
            logger.info("shutting down (grace %.1fs)", self.settings.shutdown_grace_seconds)
        finally:
            await self.stop()


async def _main(settings: Settings, *, share_port: bool = False) -> None:
    # grpc.aio binds its server to the running loop, so it is built inside it.
    server = EngineServer(settings, share_port=share_port)
    await server.serve_until_signalled()


#: Allocations between young-generation collections (CPython's default is 700). A request
#: allocates thousands of short-lived objects; collecting every 700 of them costs CPU for nothing
#: (they die young by reference counting), and every tenth young collection scans more.
GC_YOUNG_THRESHOLD = 20_000


def _settle_garbage_collector() -> None:
    """Once the engine is built: move everything allocated so far (modules, statements, the
    server) out of the collector's sight (``gc.freeze``), so a full collection scans only what
    requests left behind — an unfrozen one paused the engine for 25–200 ms under load — and
    collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _serve(settings: Settings, *, share_port: bool = False) -> int:
    try:
        # uvloop's event loop: measured 2-15% more charges and 5-7% more echo calls per second
        # than asyncio's on this machine (docs/performance.md "uvloop").
        uvloop.run(_main(settings, share_port=share_port))
    except StartupFailure as failure:
        return _print_failure(failure)
    return 0


def _worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s share: its own metrics port, and only worker 0 schedules jobs."""
    return dataclasses.replace(
        settings,
        workers=1,
        metrics_port=settings.metrics_port + index if settings.metrics_port else 0,
        job_interval_seconds=settings.job_interval_seconds if index == 0 else 0,
    )


def _print_failure(failure: StartupFailure) -> int:
    print(f"coffer: {failure}", file=sys.stderr)
    return EXIT_STARTUP_FAILED


def run(settings: Settings) -> int:
    """Serve in this one process until signalled; the exit status (0, or
    :data:`EXIT_STARTUP_FAILED` after printing the one-line reason). ``COFFER_WORKERS > 1`` is
    :func:`engine.supervisor.run_workers`' job."""
    require(settings.workers == 1, f"run serves one process, not COFFER_WORKERS={settings.workers}")
    try:
        check_listen_allowed(settings)
    except StartupFailure as failure:
        return _print_failure(failure)
    return _serve(settings)


def run_preparation(settings: Settings) -> int:
    """A multi-worker engine's one-time preparation, before its workers start: wait for the shards
    and migrate them once (so the workers never race each other's migrations). The exit status,
    as :func:`run`'s; SIGTERM/SIGINT end the wait with a one-line failure."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _number, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _number, _frame: stop.set())
    try:
        router = _open_router(settings)
        try:
            logger.info(
                "waiting up to %gs for %d shard(s)", settings.startup_timeout_seconds, router.physical_count
            )
            wait_for_shards(router, timeout_seconds=settings.startup_timeout_seconds, stop=stop)
        finally:
            router.dispose()
    except StartupFailure as failure:
        return _print_failure(failure)
    return 0


def run_worker(settings: Settings, index: int) -> int:
    """Worker ``index`` of a multi-worker engine: serve its share on the port the workers share
    until signalled; the exit status, as :func:`run`'s."""
    return _serve(_worker_settings(settings, index), share_port=True)
