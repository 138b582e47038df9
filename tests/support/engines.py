"""Running the engine for tests: in-process contexts, an in-thread gRPC server, a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coffer.v1 import admin_pb2_grpc, engine_pb2_grpc
from engine.app import EngineServer
from engine.config import Settings
from engine.service.context import EngineContext, system_now_us
from engine.storage.migrations import migrate_all
from engine.storage.shards import open_router
from tests.support.servers import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
SERVING_TIMEOUT_SECONDS = 60
MICROSECONDS_PER_SECOND = 1_000_000


class ManualClock:
    """Real time plus an offset the test moves forward (holds, lots and cards expire by it)."""

    def __init__(self) -> None:
        self.offset_us = 0

    def __call__(self) -> int:
        return system_now_us() + self.offset_us

    def advance(self, *, seconds: float = 0, days: float = 0) -> None:
        self.offset_us += int((seconds + days * 86_400) * MICROSECONDS_PER_SECOND)


def make_context(shard_urls: list[str], **overrides: object) -> EngineContext:
    settings = Settings(shards=tuple(shard_urls), **overrides)  # type: ignore[arg-type]
    router = open_router(settings)
    migrate_all(router)
    return EngineContext(router, settings, clock=ManualClock())


def wait_serving(
    target: str,
    timeout_seconds: float = SERVING_TIMEOUT_SECONDS,
    *,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Until the health check at ``target`` says SERVING (over TLS with ``credentials``)."""
    deadline = time.monotonic() + timeout_seconds
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"engine at {target} did not become SERVING")


class ThreadEngine:
    """The real gRPC server, on its own event loop in a background thread."""

    def __init__(self, settings: Settings) -> None:
        # Metrics off unless the test asks: prometheus binds one port per process.
        metrics_port = settings.metrics_port if settings.metrics_port != Settings().metrics_port else 0
        self.settings = replace(settings, listen=f"127.0.0.1:{free_port()}", metrics_port=metrics_port)
        self.target = self.settings.listen
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(SERVING_TIMEOUT_SECONDS):
            raise TimeoutError("engine thread did not start")
        wait_serving(self.target)
        self.channel = grpc.insecure_channel(self.target)
        self.engine = engine_pb2_grpc.TransactionEngineStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self.server = EngineServer(self.settings)
            self._stop_event = asyncio.Event()
            self._ready.set()
            await self.server.start()
            await self._stop_event.wait()
            await self.server.stop()

        self._loop.run_until_complete(main())

    @property
    def context(self) -> EngineContext:
        return self.server.context

    def stop(self) -> None:
        self.channel.close()
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout=30)


class EngineProcess:
    """``python server.py`` as a child process, for crash (kill -9) and shutdown tests."""

    def __init__(
        self,
        environment: Mapping[str, str],
        *,
        log_path: Path | None = None,
        cwd: Path = REPOSITORY,
        command: list[str] | None = None,
        port: int | None = None,
        wait: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.target = f"127.0.0.1:{self.port}"
        env = {**os.environ, "COFFER_METRICS_PORT": "0", **environment, "COFFER_LISTEN": self.target}
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command or [sys.executable, str(REPOSITORY / "server.py")],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        if wait:
            wait_serving(self.target)

    def kill(self) -> None:
        """SIGKILL the whole process group (``make run`` puts the server under make)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> int:
        os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=60)
