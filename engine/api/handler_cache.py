"""Interceptors' wrapped handlers, built once per method.

grpc.aio asks every interceptor for the method's handler on every call; an interceptor that
wraps the handler it is given (to observe, to authenticate) would build a new wrapper, a new
``RpcMethodHandler`` and a new closure per call. The handler it is given is the same object call
after call (the servicer's, or the inner interceptor's cached wrapper), so the wrapper is built
the first time and reused while that stays true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import grpc

__all__ = ["MAX_CACHED_METHODS", "HandlerCache"]

#: A string: grpc's runtime class takes no type arguments (only its stubs do).
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

#: Methods a cache holds: more than the services register; a name beyond it is wrapped per call.
MAX_CACHED_METHODS = 256


class HandlerCache:
    """``wrap(handler)`` for each method, remembered as long as the method's handler is the same."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def wrapped(self, method: str, handler: Handler, wrap: Callable[[Handler], Handler]) -> Handler:
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        result = wrap(handler)
        if len(self._wrapped) < MAX_CACHED_METHODS or method in self._wrapped:
            self._wrapped[method] = (handler, result)
        return result
