"""Prometheus metrics and the ``/metrics`` endpoint.

* ``coffer_rpc_seconds{method,code}``: time to answer one RPC (a histogram, so it also counts).
* ``coffer_requests_total{method,outcome,reason}``: RPCs by outcome (ok, refused with a
  CONTRACT §4 reason, failed with a gRPC status such as INTERNAL or CANCELLED).
* ``coffer_refusals_total{reason}``: refusals by contract reason, over every method.
* ``coffer_shard_up{shard}``: 1 when the shard answered the engine's last probe, 0 otherwise.
* ``coffer_db_pool_checked_out{shard}`` / ``coffer_db_pool_size{shard}``: connections in use
  and the pool's size, read from SQLAlchemy's pool when scraped.

The interceptor below times each unary call once and hands the result to an observer; the
metrics and the request log (:mod:`engine.api.request_log`) are two such observers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.pool import QueuePool

from engine.api.handler_cache import HandlerCache
from engine.storage.router import ShardRouter

__all__ = [
    "DB_POOL_CHECKED_OUT",
    "DB_POOL_SIZE",
    "METRICS_PATH",
    "REFUSALS",
    "REQUESTS",
    "RPC_SECONDS",
    "SHARD_UP",
    "CallObserver",
    "CallResult",
    "MetricsServer",
    "Observer",
    "ObservingInterceptor",
    "Outcome",
    "note_refusal",
    "observe_unary_calls",
    "record_call",
    "record_shard_up",
    "serve_metrics",
    "watch_pools",
]

METRICS_PATH = "/metrics"

RPC_SECONDS = Histogram(
    "coffer_rpc_seconds",
    "Time to answer one RPC, by method and gRPC status code.",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUESTS = Counter(
    "coffer_requests_total",
    "RPCs answered, by method, outcome (ok, refused, failed) and reason (contract reason or gRPC code).",
    ["method", "outcome", "reason"],
)
REFUSALS = Counter(
    "coffer_refusals_total",
    "Requests refused with a CONTRACT §4 reason, by reason.",
    ["reason"],
)
SHARD_UP = Gauge(
    "coffer_shard_up",
    "1 when the physical shard answered the engine's last probe, 0 when it did not.",
    ["shard"],
)
DB_POOL_CHECKED_OUT = Gauge(
    "coffer_db_pool_checked_out",
    "Database connections checked out of the shard's pool (in use by a request or job).",
    ["shard"],
)
DB_POOL_SIZE = Gauge("coffer_db_pool_size", "Connections the shard's pool may hold.", ["shard"])

#: The contract reason of the refusal the current call ended with ("" for none). Set by the
#: use-case runner inside the call's task, read by the interceptor wrapping that same task.
_REFUSAL_REASON: ContextVar[str] = ContextVar("coffer_refusal_reason", default="")


class Outcome(StrEnum):
    OK = "ok"
    #: Refused with a contract reason (CONTRACT §4): the caller's request, not the engine, is at fault.
    REFUSED = "refused"
    #: Any other non-OK status (INTERNAL, CANCELLED, DEADLINE_EXCEEDED, ...).
    FAILED = "failed"


@dataclass(frozen=True)
class CallResult:
    method: str
    outcome: Outcome
    #: The contract reason (refused), the gRPC status name (failed) or "" (ok).
    reason: str
    code: str
    duration_s: float


def note_refusal(reason: str) -> None:
    """Count a contract refusal and remember it for the current call's outcome."""
    REFUSALS.labels(reason).inc()
    _REFUSAL_REASON.set(reason)


def _result(
    method: str, context: grpc.aio.ServicerContext[Any, Any], raised: BaseException | None, duration_s: float
) -> CallResult:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        name = code.name
    elif raised is None or isinstance(raised, grpc.aio.AbortError):
        name = grpc.StatusCode.OK.name
    else:
        # An exception the handler did not turn into a status: grpc answers UNKNOWN (or CANCELLED).
        name = "UNKNOWN" if isinstance(raised, Exception) else "CANCELLED"
    reason = _REFUSAL_REASON.get()
    if name == grpc.StatusCode.OK.name:
        return CallResult(method, Outcome.OK, "", name, duration_s)
    if reason:
        return CallResult(method, Outcome.REFUSED, reason, name, duration_s)
    return CallResult(method, Outcome.FAILED, name, name, duration_s)


#: Called once per finished unary call with the request and what came of it.
CallObserver = Callable[[Any, CallResult], None]


@dataclass(frozen=True)
class Observer:
    """``observe`` for every finished unary call whose full method name starts with ``method_prefix``."""

    observe: CallObserver
    method_prefix: str = "/"


def observe_unary_calls(
    handler: grpc.RpcMethodHandler[Any, Any], full_method: str, observers: Sequence[CallObserver]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` wrapped so that each of ``observers`` gets ``(request, result)`` when a call ends."""
    if handler.unary_unary is None:
        return handler
    method = full_method.rsplit("/", 1)[-1]
    inner = handler.unary_unary

    async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        _REFUSAL_REASON.set("")
        started = time.perf_counter()
        raised: BaseException | None = None
        try:
            # grpc.aio hands its own context to the (async) handler it wrapped.
            return await inner(request, context)  # type: ignore[arg-type]
        except BaseException as error:
            raised = error
            raise
        finally:
            result = _result(method, context, raised, time.perf_counter() - started)
            for observe in observers:
                observe(request, result)

    return grpc.unary_unary_rpc_method_handler(
        observed,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def record_call(_request: Any, result: CallResult) -> None:
    """Every RPC (health and reflection included) in ``coffer_rpc_seconds`` and ``coffer_requests_total``."""
    RPC_SECONDS.labels(result.method, result.code).observe(result.duration_s)
    REQUESTS.labels(result.method, result.outcome.value, result.reason).inc()


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """One wrapper per method (built once, engine.api.handler_cache) handing each finished unary
    call to the observers whose prefix its method has — the metrics and the request log in one
    layer, so a call pays for one wrapper, one clock and one outcome, not one per observer."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)
        self._handlers = HandlerCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._handlers.wrapped(method, handler, lambda inner: self._wrap(inner, method))

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
        observers = [
            observer.observe for observer in self._observers if method.startswith(observer.method_prefix)
        ]
        return observe_unary_calls(handler, method, observers) if observers else handler


def record_shard_up(shard_index: int, up: bool) -> None:
    SHARD_UP.labels(str(shard_index)).set(1 if up else 0)


def watch_pools(router: ShardRouter) -> None:
    """Pool gauges read the router's pools when scraped (no I/O: SQLAlchemy counts in memory)."""
    for shard in router.shards:
        pool = shard.engine.pool
        if isinstance(pool, QueuePool):
            label = str(shard.index)
            DB_POOL_CHECKED_OUT.labels(label).set_function(pool.checkedout)
            DB_POOL_SIZE.labels(label).set_function(pool.size)


_NOT_FOUND = b"not found: metrics are served on /metrics only\n"


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._answer(404, _NOT_FOUND, "text/plain; charset=utf-8")
            return
        self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # A scrape every few seconds is not worth a log line.
        return


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` on a daemon thread; any other path is 404. Binding raises ``OSError``."""

    def __init__(self, host: str, port: int) -> None:
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), _MetricsHandler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="coffer-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(host: str, port: int) -> MetricsServer | None:
    """Expose ``/metrics`` on ``host:port`` (port 0: metrics are off)."""
    return MetricsServer(host, port) if port else None
