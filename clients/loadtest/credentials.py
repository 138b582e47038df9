"""The harness's credentials (docs/security.md): TLS files and a token, or a directory of
per-role client certificates from which each RPC goes out with the role it needs.

Under ``COFFER_AUTH=mtls`` one certificate names one role, but a run needs several: ops creates
coupon templates, grants points and coins and runs ``Admin.Audit``; the payment callback tops
up; the order service charges, captures, voids and refunds; a till (``pos``) redeems. With
``directory`` (``--credentials-dir``, laid out as ``scripts/make_certs.py`` writes it:
``ca.pem``, ``<role>.pem``, ``<role>.key``) :func:`open_client` returns a :class:`RoleClient`
that sends each RPC over the channel of the role :func:`role_for` names.

:data:`RPC_ROLES` and :data:`ISSUE_KIND_ROLES` are the client's copy of the contract's table
(clients never import the engine); ``tests/unit/test_loadtest_roles.py`` checks them against
``engine.api.roles.RPC_RULES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from google.protobuf.message import Message

from clients._retry import RetryHook, RetryPolicy
from clients._transport import TlsFiles
from clients.order_client import OrderClient
from coffer.v1 import engine_pb2

__all__ = [
    "CA_FILE",
    "ISSUE_KIND_ROLES",
    "RPC_ROLES",
    "Credentials",
    "Role",
    "RoleClient",
    "open_client",
    "role_files",
    "role_for",
    "till_merchant_of",
]

CA_FILE = "ca.pem"
#: How a till certificate names its merchant: a subjectAltName URI with this prefix.
MERCHANT_URI_PREFIX = "coffer:merchant:"


class Role(StrEnum):
    """The caller roles of CONTRACT §3 (the OU of a client certificate)."""

    ORDER_SERVICE = "order_service"
    POS = "pos"
    PAYMENT_CALLBACK = "payment_callback"
    OPS = "ops"
    AUDITOR = "auditor"


#: "Service.Method" (as :data:`clients._transport.RPCS` names it) -> the role the harness calls
#: it with. Issue is decided by its kind (:data:`ISSUE_KIND_ROLES`).
RPC_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        "TransactionEngine.IssueBatch": Role.OPS,
        "TransactionEngine.Charge": Role.ORDER_SERVICE,
        "TransactionEngine.Capture": Role.ORDER_SERVICE,
        "TransactionEngine.Void": Role.ORDER_SERVICE,
        "TransactionEngine.Refund": Role.ORDER_SERVICE,
        "TransactionEngine.Redeem": Role.POS,
        "TransactionEngine.QuoteCharge": Role.ORDER_SERVICE,
        "TransactionEngine.GetWallet": Role.ORDER_SERVICE,
        "TransactionEngine.GetCharge": Role.ORDER_SERVICE,
        "TransactionEngine.ListTransactions": Role.ORDER_SERVICE,
        "TransactionEngine.GetGiftCard": Role.ORDER_SERVICE,
        "Admin.CreateCouponTemplate": Role.OPS,
        "Admin.CreateActivity": Role.OPS,
        "Admin.FreezeAccount": Role.OPS,
        "Admin.UnfreezeAccount": Role.OPS,
        "Admin.FreezeCoupon": Role.OPS,
        "Admin.UnfreezeCoupon": Role.OPS,
        "Admin.Adjust": Role.OPS,
        "Admin.Audit": Role.OPS,
        "Admin.ListAuditEvents": Role.OPS,
    }
)
#: The kind of a gift-card Issue paid through a payment channel (a purchase, the callback's).
GIFT_CARD_PURCHASE = "gift_card_purchase"
#: ``IssueRequest`` kind -> the role that issues it.
ISSUE_KIND_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        "top_up": Role.PAYMENT_CALLBACK,
        GIFT_CARD_PURCHASE: Role.PAYMENT_CALLBACK,
        "gift_card": Role.OPS,
        "points": Role.OPS,
        "coins": Role.OPS,
        "coupon": Role.OPS,
        "activity": Role.OPS,
    }
)


def _issue_kind(request: engine_pb2.IssueRequest) -> str:
    kind = request.WhichOneof("kind") or ""
    if kind == "gift_card" and request.gift_card.payment_channel:
        return GIFT_CARD_PURCHASE
    return kind


def role_for(rpc: str, request: Message) -> Role:
    """The role whose credential the harness sends ``rpc`` with. An Issue without a known kind
    goes out as ops (the engine answers INVALID_ARGUMENT, a request problem, for any issuer)."""
    if isinstance(request, engine_pb2.IssueRequest):
        return ISSUE_KIND_ROLES.get(_issue_kind(request), Role.OPS)
    role = RPC_ROLES.get(rpc)
    if role is None:
        raise ValueError(f"no role is known for {rpc!r}")
    return role


def role_files(directory: Path, role: Role) -> TlsFiles:
    """``role``'s client certificate, its key and the CA, as ``scripts/make_certs.py`` names them."""
    return TlsFiles(directory / CA_FILE, _certificate(directory, role), directory / f"{role.value}.key")


def _certificate(directory: Path, role: Role) -> Path:
    return directory / f"{role.value}.pem"


def till_merchant_of(directory: Path) -> str:
    """The merchant the ``pos`` certificate of ``directory`` is bound to ("" when it names none)."""
    certificate = x509.load_pem_x509_certificate(_certificate(directory, Role.POS).read_bytes())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    merchants = [uri.removeprefix(MERCHANT_URI_PREFIX) for uri in uris if uri.startswith(MERCHANT_URI_PREFIX)]
    return merchants[0] if len(merchants) == 1 else ""


@dataclass(frozen=True)
class Credentials:
    """What the harness connects with: nothing (plaintext), TLS files and/or a token (one role
    for every call), or a directory of per-role certificates (mutual TLS, a role per RPC)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None
    directory: Path | None = None

    def __post_init__(self) -> None:
        if self.ca is None and (self.cert is not None or self.key is not None):
            raise ValueError("--cert and --key-file need --ca (they only make sense over TLS)")
        if self.directory is not None and (self.ca is not None or self.token is not None):
            raise ValueError("--credentials-dir replaces --ca, --cert, --key-file and --token")

    @property
    def tls(self) -> TlsFiles | None:
        return None if self.ca is None else TlsFiles(self.ca, self.cert, self.key)


class RoleClient(OrderClient):
    """An order client over a directory of per-role certificates: its own channels carry the
    order service's certificate; an RPC of another role goes through that role's client."""

    def __init__(self, target: str, directory: Path, **options: Any) -> None:
        super().__init__(target, tls=role_files(directory, Role.ORDER_SERVICE), **options)
        self._by_role = {
            role: OrderClient(target, tls=role_files(directory, role), **options)
            for role in (Role.POS, Role.PAYMENT_CALLBACK, Role.OPS)
        }

    def send(
        self, rpc: str, request: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> Any:
        role = role_for(rpc, request)
        if role is Role.ORDER_SERVICE:
            return super().send(rpc, request, timeout=timeout, retry=retry)
        return self._by_role[role].send(rpc, request, timeout=timeout, retry=retry)

    def close(self) -> None:
        super().close()
        for client in self._by_role.values():
            client.close()


def open_client(
    target: str,
    credentials: Credentials,
    *,
    timeout: float,
    retry: RetryPolicy,
    on_retry: RetryHook | None = None,
    connections: int = 1,
) -> OrderClient:
    """The harness's client for ``credentials`` (a :class:`RoleClient` with a directory)."""
    options: dict[str, Any] = {
        "timeout": timeout,
        "retry": retry,
        "on_retry": on_retry,
        "connections": connections,
    }
    if credentials.directory is not None:
        return RoleClient(target, credentials.directory, **options)
    return OrderClient(target, tls=credentials.tls, token=credentials.token, **options)
