"""Coupons over gRPC: CreateCouponTemplate (and its field errors), Issue(coupon), FreezeCoupon /
UnfreezeCoupon, CreateActivity + Issue(activity), Redeem(coupon_code) and its Refund."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from coffer.v1 import admin_pb2, common_pb2, engine_pb2
from engine.service.audit import audit
from tests.support.grpc_errors import details_of

USER = 6001


def template_request(key: str, **fields) -> admin_pb2.CreateCouponTemplateRequest:  # type: ignore[no-untyped-def]
    values = {
        "idempotency_key": key,
        "name": "满100减20",
        "type": common_pb2.COUPON_TYPE_FIXED_OFF,
        "amount_off": 2000,
        "min_spend": 10000,
        "total_stock": 100,
        "per_user_limit": 2,
        "valid_days_after_claim": 7,
    }
    values.update(fields)
    return admin_pb2.CreateCouponTemplateRequest(**values)


BAD_TEMPLATES = [
    ({"type": common_pb2.COUPON_TYPE_UNSPECIFIED}, "type"),
    ({"name": ""}, "name"),
    ({"amount_off": 0}, "amount_off"),
    ({"min_spend": 1000}, "min_spend"),
    ({"discount_bps": 500}, "discount_bps"),
    ({"max_discount": 500}, "max_discount"),
    ({"total_stock": 0}, "total_stock"),
    ({"per_user_limit": -1}, "per_user_limit"),
    ({"valid_days_after_claim": 0}, "valid_until"),
    (
        {"type": common_pb2.COUPON_TYPE_PERCENT_OFF, "amount_off": 0, "discount_bps": 10001},
        "discount_bps",
    ),
    ({"type": common_pb2.COUPON_TYPE_NO_THRESHOLD, "min_spend": 100}, "min_spend"),
    ({"valid_until": Timestamp(seconds=1)}, "valid_until"),
    ({"scope": admin_pb2.CouponScope(categories=[""])}, "scope.categories[0]"),
]


def test_template_validation(grpc_engine) -> None:  # type: ignore[no-untyped-def]
    for index, (fields, field) in enumerate(BAD_TEMPLATES):
        with pytest.raises(grpc.RpcError) as error:
            grpc_engine.admin.CreateCouponTemplate(template_request(f"bad-{index}", **fields), timeout=10)
        details = details_of(error.value)
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.reason == "INVALID_ARGUMENT"
        assert field in details.field_violations, (field, details)


def test_coupon_lifecycle_over_grpc(pg_grpc_engine) -> None:  # type: ignore[no-untyped-def]
    engine, admin = pg_grpc_engine.engine, pg_grpc_engine.admin
    created = admin.CreateCouponTemplate(template_request("tpl-1"), timeout=10)
    replay = admin.CreateCouponTemplate(template_request("tpl-1"), timeout=10)
    assert replay.replayed and replay.template_id == created.template_id
    with pytest.raises(grpc.RpcError) as reused:
        admin.CreateCouponTemplate(template_request("tpl-1", total_stock=5), timeout=10)
    assert details_of(reused.value).reason == "IDEMPOTENCY_KEY_REUSED"

    claimed = engine.Issue(
        engine_pb2.IssueRequest(
            idempotency_key="claim-1",
            user_id=USER,
            coupon=engine_pb2.CouponClaim(template_id=created.template_id),
        ),
        timeout=10,
    )
    coupon = claimed.coupons[0]
    assert coupon.state == common_pb2.COUPON_STATE_ACTIVATED
    wallet = engine.GetWallet(engine_pb2.GetWalletRequest(user_id=USER), timeout=10)
    assert [c.coupon_id for c in wallet.coupons] == [coupon.coupon_id]
    with pytest.raises(grpc.RpcError) as unknown:
        engine.Issue(
            engine_pb2.IssueRequest(
                idempotency_key="claim-x",
                user_id=USER,
                coupon=engine_pb2.CouponClaim(template_id="tpl_0000000000000000000000"),
            ),
            timeout=10,
        )
    assert details_of(unknown.value).code is grpc.StatusCode.NOT_FOUND
    assert details_of(unknown.value).reason == "TEMPLATE_NOT_FOUND"

    frozen = admin.FreezeCoupon(
        admin_pb2.FreezeCouponRequest(idempotency_key="fz-1", coupon_id=coupon.coupon_id, reason="risk"),
        timeout=10,
    )
    assert frozen.coupon.state == common_pb2.COUPON_STATE_FROZEN
    redeem = engine_pb2.RedeemRequest(
        idempotency_key="till-1",
        merchant_id="10086",
        coupon_code=engine_pb2.CouponCodeRedemption(code=coupon.code, order_amount=15000),
    )
    with pytest.raises(grpc.RpcError) as refused:
        engine.Redeem(redeem, timeout=10)
    assert details_of(refused.value).reason == "COUPON_FROZEN"
    with pytest.raises(grpc.RpcError) as illegal:
        admin.FreezeCoupon(
            admin_pb2.FreezeCouponRequest(idempotency_key="fz-2", coupon_id=coupon.coupon_id), timeout=10
        )
    assert details_of(illegal.value).reason == "ILLEGAL_STATE_TRANSITION"
    thawed = admin.UnfreezeCoupon(
        admin_pb2.FreezeCouponRequest(idempotency_key="uf-1", coupon_id=coupon.coupon_id), timeout=10
    )
    assert thawed.coupon.state == common_pb2.COUPON_STATE_ACTIVATED

    redeemed = engine.Redeem(redeem, timeout=10)
    assert redeemed.discount == 2000 and redeemed.transaction_id
    assert redeemed.coupon.state == common_pb2.COUPON_STATE_USED
    refunded = engine.Refund(
        engine_pb2.RefundRequest(idempotency_key="till-rf-1", charge_id=redeemed.transaction_id, amount=0),
        timeout=10,
    )
    assert refunded.charge.status == common_pb2.CHARGE_STATUS_REFUNDED
    wallet = engine.GetWallet(engine_pb2.GetWalletRequest(user_id=USER), timeout=10)
    assert [c.state for c in wallet.coupons] == [common_pb2.COUPON_STATE_ACTIVATED]

    activity = admin.CreateActivity(
        admin_pb2.CreateActivityRequest(
            idempotency_key="act-1",
            name="NEW_USER_REGISTER",
            rewards=[
                admin_pb2.ActivityReward(template_id=created.template_id, quantity=2),
                admin_pb2.ActivityReward(points=100),
            ],
            rules=admin_pb2.ActivityRules(device_blacklist=["bad-device"], ip_cities=["上海"]),
        ),
        timeout=10,
    )
    grant = engine_pb2.IssueRequest(
        idempotency_key="grant-1",
        user_id=USER,
        activity=engine_pb2.ActivityGrant(activity_id=activity.activity_id),
        context=common_pb2.RequestContext(ip_city="上海", device_id="good-device"),
    )
    bundle = engine.Issue(grant, timeout=10)
    assert len(bundle.coupons) == 2
    points = {b.asset: b.available for b in bundle.wallet.balances}[common_pb2.ASSET_POINTS]
    assert points == 100
    grant.idempotency_key = "grant-2"
    with pytest.raises(grpc.RpcError) as twice:
        engine.Issue(grant, timeout=10)
    assert details_of(twice.value).code is grpc.StatusCode.ALREADY_EXISTS
    assert details_of(twice.value).reason == "ACTIVITY_ALREADY_GRANTED"
    assert audit(pg_grpc_engine.context).ok
