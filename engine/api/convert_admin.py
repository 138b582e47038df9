"""Proto <-> domain conversions for the requests and responses of ``admin.proto`` (``Admin``).
Pure data mapping; every rule stays in the service layer."""

from __future__ import annotations

from coffer.v1 import admin_pb2, common_pb2
from engine.api.convert_common import (
    coupon_to_proto,
    microseconds,
    timestamp,
    transaction_to_proto,
    wallet_to_proto,
)
from engine.domain.coupons.definitions import (
    ActivityReward,
    ActivityRules,
    CreateActivityCommand,
    CreateCouponTemplateCommand,
    Eligibility,
)
from engine.domain.coupons.messages import CouponStateResult, FreezeCouponCommand
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.domain.results import (
    AccountStateResult,
    AdjustResult,
    AuditReport,
)
from engine.service.audit_trail import AuditEventPage, AuditEventQuery, ListedAuditEvent
from engine.storage.audit_trail import AuditFilter

# --- coupons and activities (docs/coupons.md) -----------------------------------------------

_COUPON_TYPE_FROM_PROTO = {
    common_pb2.COUPON_TYPE_FIXED_OFF: CouponType.FIXED_OFF,
    common_pb2.COUPON_TYPE_PERCENT_OFF: CouponType.PERCENT_OFF,
    common_pb2.COUPON_TYPE_NO_THRESHOLD: CouponType.NO_THRESHOLD,
}


def _optional_time(message: object, field: str) -> int | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return microseconds(getattr(message, field))


def adjust_to_proto(result: AdjustResult) -> admin_pb2.AdjustResponse:
    return admin_pb2.AdjustResponse(
        transaction=transaction_to_proto(result.transaction),
        replayed=result.replayed,
        wallet=wallet_to_proto(result.wallet),
    )


def account_state_to_proto(result: AccountStateResult) -> admin_pb2.AccountState:
    return admin_pb2.AccountState(
        user_id=result.user_id, frozen=result.frozen, reason=result.reason, replayed=result.replayed
    )


def audit_to_proto(report: AuditReport) -> admin_pb2.AuditReport:
    return admin_pb2.AuditReport(
        ok=report.ok,
        checked_at=timestamp(report.checked_at_us),
        shards=[
            admin_pb2.ShardAudit(
                shard=shard.shard,
                ok=shard.ok,
                violations=[
                    admin_pb2.InvariantViolation(invariant=violation.invariant, detail=violation.detail)
                    for violation in shard.violations
                ],
                transactions_checked=shard.transactions_checked,
                accounts_checked=shard.accounts_checked,
                audit_events_checked=shard.audit_events_checked,
                broken_chains=[
                    admin_pb2.BrokenAuditChain(user_id=chain.user_id, seq=chain.seq, problem=chain.problem)
                    for chain in shard.broken_chains
                ],
            )
            for shard in report.shards
        ],
    )


def audit_query_from_proto(request: admin_pb2.ListAuditEventsRequest) -> AuditEventQuery:
    return AuditEventQuery(
        where=AuditFilter(
            user_id=request.user_id or None,
            order_id=request.order_id,
            charge_id=request.charge_id,
            caller=request.caller,
            from_us=_optional_time(request, "since"),
            until_us=_optional_time(request, "until"),
        ),
        page_size=request.page_size,
        page_token=request.page_token,
    )


def _audit_event_to_proto(listed: ListedAuditEvent) -> admin_pb2.AuditEvent:
    event = listed.stored.event
    return admin_pb2.AuditEvent(
        user_id=event.user_id,
        seq=event.seq,
        at=timestamp(event.at_us),
        caller=event.caller,
        role=event.role,
        merchant_id=event.merchant_id,
        rpc=event.rpc,
        idempotency_key=event.idempotency_key,
        request_digest=event.request_digest,
        outcome=event.outcome.value,
        reason=event.reason,
        order_id=event.order_id,
        charge_id=event.charge_id,
        transaction_id=event.transaction_id,
        amount=event.amount,
        prev_hash=event.prev_hash,
        hash=listed.stored.hash,
        shard=listed.shard,
    )


def audit_events_to_proto(page: AuditEventPage) -> admin_pb2.ListAuditEventsResponse:
    return admin_pb2.ListAuditEventsResponse(
        events=[_audit_event_to_proto(listed) for listed in page.events],
        next_page_token=page.next_page_token,
    )


def template_from_proto(request: admin_pb2.CreateCouponTemplateRequest) -> CreateCouponTemplateCommand:
    return CreateCouponTemplateCommand(
        idempotency_key=request.idempotency_key,
        name=request.name,
        type=_COUPON_TYPE_FROM_PROTO.get(request.type),
        amount_off=request.amount_off,
        discount_bps=request.discount_bps,
        min_spend=request.min_spend,
        max_discount=request.max_discount,
        total_stock=request.total_stock,
        per_user_limit=request.per_user_limit,
        valid_from_us=_optional_time(request, "valid_from"),
        valid_until_us=_optional_time(request, "valid_until"),
        valid_days_after_claim=request.valid_days_after_claim,
        scope=CouponScope(
            categories=tuple(request.scope.categories),
            merchants=tuple(request.scope.merchants),
            business_lines=tuple(request.scope.business_lines),
        ),
        stackable=request.stackable,
        restore_on_refund=request.restore_on_refund if request.HasField("restore_on_refund") else True,
        eligibility=Eligibility(
            new_users_only=request.eligibility.new_users_only,
            new_user_days=request.eligibility.new_user_days,
            min_member_level=request.eligibility.min_member_level,
        ),
    )


def activity_from_proto(request: admin_pb2.CreateActivityRequest) -> CreateActivityCommand:
    rules = request.rules
    return CreateActivityCommand(
        idempotency_key=request.idempotency_key,
        name=request.name,
        rewards=tuple(
            ActivityReward(
                template_id=reward.template_id,
                quantity=reward.quantity,
                points=reward.points,
                points_ttl_days=reward.points_ttl_days,
            )
            for reward in request.rewards
        ),
        rules=ActivityRules(
            device_blacklist=tuple(rules.device_blacklist),
            ip_cities=tuple(rules.ip_cities),
            new_users_only=rules.new_users_only,
            min_member_level=rules.min_member_level,
            phone_blacklist=tuple(rules.phone_blacklist),
        ),
        valid_from_us=_optional_time(request, "valid_from"),
        valid_until_us=_optional_time(request, "valid_until"),
    )


def freeze_coupon_from_proto(request: admin_pb2.FreezeCouponRequest, *, frozen: bool) -> FreezeCouponCommand:
    return FreezeCouponCommand(
        idempotency_key=request.idempotency_key,
        coupon_id=request.coupon_id,
        frozen=frozen,
        reason=request.reason,
        operator_id=request.operator_id,
    )


def coupon_state_to_proto(result: CouponStateResult) -> admin_pb2.CouponStateResponse:
    return admin_pb2.CouponStateResponse(coupon=coupon_to_proto(result.coupon), replayed=result.replayed)
