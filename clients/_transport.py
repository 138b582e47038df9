"""The plumbing under the order-service client: channels (one or several connections), the stubs,
one deadline per attempt and the retry loop. Every typed method ends in :meth:`Transport.send`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from clients._requests import new_idempotency_key
from clients._retry import RetryHook, RetryPolicy, call_with_retries
from clients.errors import from_rpc_error
from coffer.v1 import admin_pb2, admin_pb2_grpc, engine_pb2, engine_pb2_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Hard bound on what a caller may configure.
MAX_CONNECTIONS = 64

#: Reconnect quickly after the engine restarts (gRPC's own default backoff grows to 120 s).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
)

#: Longest credential file read (a CA bundle, a certificate chain or a key is a few KiB).
MAX_CREDENTIAL_FILE_BYTES = 1 << 20
#: Per-call metadata key of the bearer token (the security issue's token authentication).
AUTHORIZATION_KEY = "authorization"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS channel: ``ca`` verifies the engine; ``cert`` and ``key`` (both or
    neither) are this client's certificate chain and private key for mutual TLS."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate and its key go together: give both or neither")


def _read_pem(path: Path) -> bytes:
    with path.open("rb") as file:
        data = file.read(MAX_CREDENTIAL_FILE_BYTES + 1)
    if len(data) > MAX_CREDENTIAL_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes; not a PEM file")
    return data


def tls_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Channel credentials from the PEM files (read once, here; OSError when one is missing)."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(files.ca),
        private_key=None if files.key is None else _read_pem(files.key),
        certificate_chain=None if files.cert is None else _read_pem(files.cert),
    )


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """``authorization: Bearer <token>`` as per-call metadata (empty without a token). Per-call
    metadata, not call credentials, so the same token also rides a plaintext loopback channel."""
    if token is None:
        return ()
    if not token or any(char.isspace() for char in token):
        raise ValueError("a token is a non-empty string without spaces")
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


def _health_messages() -> tuple[type[Message], type[Message]]:
    """``grpc.health.v1`` request and response classes, built from a two-message descriptor in a
    private pool: the client then needs no grpcio-health-checking, and cannot clash with the
    engine's registration of the same file when both run in one process (the tests)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="clients/grpc_health_v1.proto", package="grpc.health.v1", syntax="proto3"
    )
    request = proto.message_type.add(name="HealthCheckRequest")
    request.field.add(
        name="service",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    response = proto.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(HEALTH_STATUSES):
        status.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


#: ``grpc.health.v1.HealthCheckResponse.ServingStatus`` by number.
HEALTH_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
HealthCheckRequest, HealthCheckResponse = _health_messages()

#: "Service.Method" -> (service, request type) for :meth:`OrderClient.send`.
RPCS: dict[str, tuple[str, type[Message]]] = {
    "TransactionEngine.Issue": ("engine", engine_pb2.IssueRequest),
    "TransactionEngine.IssueBatch": ("engine", engine_pb2.IssueBatchRequest),
    "TransactionEngine.Charge": ("engine", engine_pb2.ChargeRequest),
    "TransactionEngine.Capture": ("engine", engine_pb2.CaptureRequest),
    "TransactionEngine.Void": ("engine", engine_pb2.VoidRequest),
    "TransactionEngine.Refund": ("engine", engine_pb2.RefundRequest),
    "TransactionEngine.Redeem": ("engine", engine_pb2.RedeemRequest),
    "TransactionEngine.QuoteCharge": ("engine", engine_pb2.ChargeRequest),
    "TransactionEngine.GetWallet": ("engine", engine_pb2.GetWalletRequest),
    "TransactionEngine.GetCharge": ("engine", engine_pb2.GetChargeRequest),
    "TransactionEngine.ListTransactions": ("engine", engine_pb2.ListTransactionsRequest),
    "TransactionEngine.GetGiftCard": ("engine", engine_pb2.GetGiftCardRequest),
    "Admin.CreateCouponTemplate": ("admin", admin_pb2.CreateCouponTemplateRequest),
    "Admin.CreateActivity": ("admin", admin_pb2.CreateActivityRequest),
    "Admin.FreezeAccount": ("admin", admin_pb2.FreezeAccountRequest),
    "Admin.UnfreezeAccount": ("admin", admin_pb2.FreezeAccountRequest),
    "Admin.FreezeCoupon": ("admin", admin_pb2.FreezeCouponRequest),
    "Admin.UnfreezeCoupon": ("admin", admin_pb2.FreezeCouponRequest),
    "Admin.Adjust": ("admin", admin_pb2.AdjustRequest),
    "Admin.Audit": ("admin", admin_pb2.AuditRequest),
    "Admin.ListAuditEvents": ("admin", admin_pb2.ListAuditEventsRequest),
}


class Transport:
    """Channels, stubs, deadlines and retries under :class:`clients.order_client.OrderClient`
    (whose docstring describes the constructor's arguments)."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        tls: TlsFiles | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        key_prefix: str = "oc",
        on_retry: RetryHook | None = None,
        connections: int = 1,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be within 1..{MAX_CONNECTIONS}")
        if tls is not None:
            if credentials is not None:
                raise ValueError("give tls or credentials, not both")
            credentials = tls_credentials(tls)
        self.target = target
        self.secure = credentials is not None
        self._owns_channel = channel is None
        if channel is None:
            # Several connections let an engine running several worker processes on one port
            # (COFFER_WORKERS, SO_REUSEPORT) spread the calls: the kernel balances connections,
            # not calls. Each channel gets its own subchannel, hence its own TCP connection.
            options = (*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1 if connections > 1 else 0))
            channels = [
                grpc.insecure_channel(target, options=options)
                if credentials is None
                else grpc.secure_channel(target, credentials, options=options)
                for _ in range(connections)
            ]
        else:
            channels = [channel]
        self._channels = channels
        self.channel = channels[0]
        self._stubs = [
            (engine_pb2_grpc.TransactionEngineStub(each), admin_pb2_grpc.AdminStub(each)) for each in channels
        ]
        self._next_stub = itertools.cycle(range(len(channels)))
        self.engine, self.admin = self._stubs[0]
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = (*metadata, *bearer_metadata(token))
        self.key_prefix = key_prefix
        self.on_retry = on_retry

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_channel:
            for channel in self._channels:
                channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new_key(self) -> str:
        return new_idempotency_key(self.key_prefix)

    def _key(self, idempotency_key: str | None) -> str:
        return idempotency_key if idempotency_key else self.new_key()

    def _stub_method(self, rpc: str) -> Callable[..., Any]:
        service, _ = RPCS[rpc]
        engine, admin = self._stubs[next(self._next_stub)]
        stub = engine if service == "engine" else admin
        return getattr(stub, rpc.split(".", 1)[1])  # type: ignore[no-any-return]

    def send(
        self,
        rpc: str,
        request: Message,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Call ``rpc`` ("TransactionEngine.Charge", "Admin.Audit", ...) with a prepared request.

        Every typed method ends here: one deadline per attempt, retries on the retryable codes
        only, the same request object (hence the same idempotency key) on every attempt.
        """
        if rpc not in RPCS:
            raise ValueError(f"unknown RPC {rpc!r}")
        expected = RPCS[rpc][1]
        if not isinstance(request, expected):
            raise TypeError(f"{rpc} takes {expected.__name__}, not {type(request).__name__}")
        method = self._stub_method(rpc)
        per_attempt = self.timeout if timeout is None else timeout
        if per_attempt <= 0:
            raise ValueError("timeout must be positive")
        policy = retry or self.retry

        def attempt() -> Any:
            try:
                return method(request, timeout=per_attempt, metadata=self.metadata)
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None

        return call_with_retries(rpc, attempt, policy, self.on_retry)

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """``grpc.health.v1.Health/Check`` once (no retries: a probe reports what it sees now):
        ``"SERVING"``, ``"NOT_SERVING"``, ... Raises the typed error when the engine does not answer."""
        check = self.channel.unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        # Set by name: the message class is built at run time (``_health_messages``), so its
        # fields are unknown to the type checker.
        request = json_format.ParseDict({"service": service}, HealthCheckRequest())
        try:
            answer = check(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self.metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        status: int = getattr(answer, "status", 0)
        return HEALTH_STATUSES[status] if 0 <= status < len(HEALTH_STATUSES) else str(status)
