"""Prometheus metrics: calls and latency per RPC and status, refusals per contract reason."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

RPC_SECONDS = Histogram(
    "coffer_rpc_seconds",
    "Time to answer one RPC, by method and gRPC status code.",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REFUSALS = Counter(
    "coffer_refusals_total",
    "Requests refused with a CONTRACT §4 reason, by reason.",
    ["reason"],
)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            try:
                # grpc.aio hands its own context to the (async) handler it wrapped.
                return await inner(request, context)  # type: ignore[arg-type]
            finally:
                code = context.code()
                name = code.name if isinstance(code, grpc.StatusCode) else "OK"
                RPC_SECONDS.labels(method, name).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def serve_metrics(host: str, port: int) -> None:
    """Expose ``/metrics`` on ``host:port`` (port 0: metrics are off)."""
    if port:
        start_http_server(port, addr=host)
