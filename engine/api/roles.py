"""Which role may call which RPC (CONTRACT §3 Security) — data, checked by :mod:`engine.api.auth`.

:data:`RPC_RULES` names every RPC of ``coffer.v1`` by its full method name. An RPC it does not
name is refused to every caller (deny by default), and a unit test fails when the protos gain an
RPC this table does not name. ``Issue`` is refined by the request's ``kind``
(:data:`ISSUE_KIND_ROLES`): a top-up or a paid gift card is the payment callback's, a grant is
ops'. A caller bound to a merchant (a till) may name only that merchant in a request's
``merchant_field``; ``Refund`` names only a charge, so the refund use case checks the charge's
merchant (``RefundCommand.merchant_scope``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from coffer.v1 import admin_pb2, engine_pb2
from engine.security.identity import Role

__all__ = [
    "ADMIN_SERVICE",
    "ENGINE_SERVICE",
    "ISSUE_KIND_ROLES",
    "OPEN_SERVICES",
    "RPC_RULES",
    "RpcRule",
    "issue_kind",
    "method_name",
]

ENGINE_SERVICE = engine_pb2.DESCRIPTOR.services_by_name["TransactionEngine"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
#: Services that answer without a caller identity: probes and tooling must reach them.
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
#: The ``kind`` of a gift-card Issue paid through a payment channel (a purchase or a paid reload).
GIFT_CARD_PURCHASE = "gift_card_purchase"

ORDER_SERVICE = frozenset({Role.ORDER_SERVICE})
OPS = frozenset({Role.OPS})
PAYMENT_CALLBACK = frozenset({Role.PAYMENT_CALLBACK})
READERS = frozenset({Role.ORDER_SERVICE, Role.AUDITOR})
AUDIT_READERS = frozenset({Role.OPS, Role.AUDITOR})

#: ``IssueRequest.kind`` → the roles that may issue it. A kind not named here is refused.
ISSUE_KIND_ROLES: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        "top_up": PAYMENT_CALLBACK,
        GIFT_CARD_PURCHASE: PAYMENT_CALLBACK,
        # Without a payment channel a gift card is promotional, paid from the coupon-expense account.
        "gift_card": OPS,
        "points": OPS,
        "coins": OPS,
        "coupon": OPS,
        "activity": OPS,
    }
)
#: An Issue without a kind is every issuer's to get INVALID_ARGUMENT for, not a role question.
_ANY_ISSUER = frozenset().union(*ISSUE_KIND_ROLES.values())


def issue_kind(request: engine_pb2.IssueRequest) -> str:
    """The request's kind as :data:`ISSUE_KIND_ROLES` names it ("" when none is set)."""
    kind = request.WhichOneof("kind") or ""
    if kind == "gift_card" and request.gift_card.payment_channel:
        return GIFT_CARD_PURCHASE
    return kind


def _issue_roles(request: Any) -> frozenset[Role]:
    kind = issue_kind(request)
    if not kind:
        return _ANY_ISSUER
    return ISSUE_KIND_ROLES.get(kind, frozenset())


@dataclass(frozen=True)
class RpcRule:
    #: Who may call the RPC (unless ``roles_for`` refines it by the request).
    roles: frozenset[Role]
    #: The request field that names the merchant; a merchant-bound caller may name only its own.
    merchant_field: str = ""
    #: Roles decided by the request itself (Issue's kind), instead of ``roles``.
    roles_for: Callable[[Any], frozenset[Role]] | None = None

    def allowed(self, request: Any) -> frozenset[Role]:
        return self.roles if self.roles_for is None else self.roles_for(request)


def method_name(service: str, rpc: str) -> str:
    """The full method name gRPC routes by: ``/coffer.v1.TransactionEngine/Charge``."""
    return f"/{service}/{rpc}"


def _engine(rpc: str) -> str:
    return method_name(ENGINE_SERVICE, rpc)


def _admin(rpc: str) -> str:
    return method_name(ADMIN_SERVICE, rpc)


RPC_RULES: Mapping[str, RpcRule] = MappingProxyType(
    {
        _engine("Issue"): RpcRule(frozenset(), roles_for=_issue_roles),
        # IssueBatch and ListAuditEvents are announced by CONTRACT §2; named here so they are
        # ops' / the auditors' the day their protos land.
        _engine("IssueBatch"): RpcRule(OPS),
        _engine("Charge"): RpcRule(frozenset({Role.ORDER_SERVICE, Role.POS}), merchant_field="merchant_id"),
        # Capture/Void of withdrawals will be the payment callback's (CONTRACT §3) once they exist.
        _engine("Capture"): RpcRule(ORDER_SERVICE),
        _engine("Void"): RpcRule(ORDER_SERVICE),
        # A till's refund is limited to its merchant's charges by the use case (merchant_scope).
        _engine("Refund"): RpcRule(frozenset({Role.ORDER_SERVICE, Role.POS})),
        _engine("Redeem"): RpcRule(frozenset({Role.POS}), merchant_field="merchant_id"),
        _engine("QuoteCharge"): RpcRule(ORDER_SERVICE),
        _engine("GetWallet"): RpcRule(READERS),
        _engine("GetCharge"): RpcRule(READERS),
        _engine("ListTransactions"): RpcRule(READERS),
        _engine("GetGiftCard"): RpcRule(frozenset({Role.ORDER_SERVICE, Role.POS, Role.AUDITOR})),
        _admin("CreateCouponTemplate"): RpcRule(OPS),
        _admin("CreateActivity"): RpcRule(OPS),
        _admin("FreezeAccount"): RpcRule(OPS),
        _admin("UnfreezeAccount"): RpcRule(OPS),
        _admin("FreezeCoupon"): RpcRule(OPS),
        _admin("UnfreezeCoupon"): RpcRule(OPS),
        _admin("Adjust"): RpcRule(OPS),
        _admin("Audit"): RpcRule(AUDIT_READERS),
        _admin("ListAuditEvents"): RpcRule(AUDIT_READERS),
    }
)
