"""The one interceptor that decides who may call what (CONTRACT §3 Security).

Every coffer RPC passes :class:`AuthInterceptor`: the caller is authenticated (a verified client
certificate, or a bearer token in ``authorization`` metadata) — none or a bad one is
UNAUTHENTICATED / UNAUTHENTICATED —, then checked against :data:`engine.api.roles.RPC_RULES`: a
role the RPC does not admit, a merchant that is not the caller's, or an RPC the table does not
name is PERMISSION_DENIED / ROLE_FORBIDDEN. Refused calls never reach a use case. Health and
reflection (:data:`~engine.api.roles.OPEN_SERVICES`) pass untouched.

The admitted caller is available to the servicer for the rest of the call through
:func:`current_caller` (a context variable of the call's task); read it in the async handler, not
in the thread-pool work, which runs outside that context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol, TypeAlias

import grpc

from engine.api.errors import to_status
from engine.api.handler_cache import HandlerCache
from engine.api.metrics import note_refusal
from engine.api.roles import OPEN_SERVICES, RPC_RULES, RpcRule
from engine.domain.errors import CofferError, Reason
from engine.security.certificates import caller_from_certificate
from engine.security.identity import Caller, unauthenticated
from engine.security.tokens import TokenVerifier

__all__ = [
    "AUTHORIZATION_METADATA",
    "AuthInterceptor",
    "Authenticator",
    "CertificateAuthenticator",
    "TokenAuthenticator",
    "authorize",
    "caller_merchant_scope",
    "current_caller",
]

Context = grpc.aio.ServicerContext[Any, Any]
# grpc's handler type is generic only to the type checker, hence the quoted aliases.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
#: What an interceptor is given to find the handler of a call.
HandlerLookup: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
AUTHORIZATION_METADATA = "authorization"
_BEARER = "bearer "
_PEER_CERTIFICATE = "x509_pem_cert"

_CALLER: ContextVar[Caller | None] = ContextVar("coffer_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the current call; ``None`` without authentication (``COFFER_AUTH=none``)."""
    return _CALLER.get()


def caller_merchant_scope() -> str | None:
    """The merchant the current caller is bound to, ``None`` when it may act for any."""
    caller = _CALLER.get()
    return None if caller is None else caller.merchant_id


class Authenticator(Protocol):
    def authenticate(self, context: Context) -> Caller:
        """The caller of this call, or :class:`CofferError` UNAUTHENTICATED."""
        ...


class CertificateAuthenticator:
    """``COFFER_AUTH=mtls``: the client certificate the handshake verified against the client CA."""

    def authenticate(self, context: Context) -> Caller:
        certificates = list(context.auth_context().get(_PEER_CERTIFICATE) or ())
        if len(certificates) != 1:
            raise unauthenticated("no verified client certificate")
        return caller_from_certificate(bytes(certificates[0]))


class TokenAuthenticator:
    """``COFFER_AUTH=token``: ``authorization: Bearer <token>`` in the call's metadata."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def authenticate(self, context: Context) -> Caller:
        values = [
            value for key, value in (context.invocation_metadata() or ()) if key == AUTHORIZATION_METADATA
        ]
        if len(values) != 1 or not isinstance(values[0], str):
            raise unauthenticated("exactly one 'authorization: Bearer <token>' metadata entry is required")
        header = values[0]
        if not header.lower().startswith(_BEARER):
            raise unauthenticated("the authorization metadata is not a Bearer token")
        return self._verifier.caller(header[len(_BEARER) :].strip())


def _forbidden(message: str, caller: Caller, **metadata: str) -> CofferError:
    return CofferError(
        Reason.ROLE_FORBIDDEN,
        message,
        metadata={"role": caller.role.value, "caller": caller.name, **metadata},
    )


def authorize(method: str, rule: RpcRule | None, caller: Caller, request: Any) -> None:
    """Raises ROLE_FORBIDDEN unless ``caller`` may make this request."""
    rpc = method.rsplit("/", 1)[-1]
    if rule is None:
        raise _forbidden(f"{rpc} is open to no role", caller, rpc=rpc)
    if caller.role not in rule.allowed(request):
        raise _forbidden(
            f"the {caller.role.value} role may not call {rpc} with this request", caller, rpc=rpc
        )
    if caller.merchant_id is not None and rule.merchant_field:
        named = getattr(request, rule.merchant_field)
        if named != caller.merchant_id:
            raise _forbidden(
                f"this caller acts for merchant {caller.merchant_id!r} only",
                caller,
                rpc=rpc,
                field=rule.merchant_field,
            )


def _service_of(method: str) -> str:
    return method.lstrip("/").split("/", 1)[0]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes every call outside :data:`OPEN_SERVICES`."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self._handlers = HandlerCache()

    async def intercept_service(
        self, continuation: HandlerLookup, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or _service_of(method) in OPEN_SERVICES:
            return handler
        return self._handlers.wrapped(
            method, handler, lambda inner: self._guard(inner, method, RPC_RULES.get(method))
        )

    async def _admit(self, method: str, rule: RpcRule | None, request: Any, context: Context) -> Caller:
        try:
            caller = self._authenticator.authenticate(context)
            authorize(method, rule, caller, request)
        except CofferError as error:
            note_refusal(error.reason.label)
            await context.abort_with_status(to_status(error))
            raise AssertionError("abort always raises") from error  # pragma: no cover
        return caller

    def _guard(self, handler: Handler, method: str, rule: RpcRule | None) -> Handler:
        inner = handler.unary_unary
        if inner is None:
            # No coffer RPC streams yet: a streaming one is refused until its rule is written here.
            return self._refusing(handler, method)

        async def guarded(request: Any, context: Context) -> Any:
            caller = await self._admit(method, rule, request, context)
            token = _CALLER.set(caller)
            try:
                # grpc.aio hands its own context to the (async) handler it wrapped.
                return await inner(request, context)  # type: ignore[arg-type]
            finally:
                _CALLER.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _refusing(self, handler: Handler, method: str) -> Handler:
        async def refuse(request: Any, context: Context) -> None:
            await self._admit(method, None, request, context)

        factory = (
            grpc.unary_stream_rpc_method_handler
            if not handler.request_streaming
            else grpc.stream_stream_rpc_method_handler
            if handler.response_streaming
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
