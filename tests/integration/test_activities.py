"""Activities (seed 001 §4.3): the NEW_USER_REGISTER bundle (2 × coupon + 100 points) under
context rules; issue 4 must-show 6 — twenty concurrent grants for one user give one bundle."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.domain.commands import ActivitySpec, IssueCommand, RequestContext
from engine.domain.coupons.definitions import (
    ActivityReward,
    ActivityRules,
    CreateActivityCommand,
)
from engine.domain.coupons.rules import CouponType
from engine.domain.errors import CofferError, Reason
from engine.domain.results import IssueResult
from engine.service.activities import create_activity
from engine.service.audit import audit
from engine.service.issue import issue
from engine.service.queries import get_wallet
from tests.support.coupons import claim, key, template

USER = 4001
SHANGHAI = RequestContext(ip_city="上海", device_id="device-ok")


def new_user_activity(context, template_id: str, **rules) -> str:  # type: ignore[no-untyped-def]
    return create_activity(
        context,
        CreateActivityCommand(
            idempotency_key=key("act"),
            name="NEW_USER_REGISTER",
            rewards=(ActivityReward(template_id=template_id, quantity=2), ActivityReward(points=100)),
            rules=ActivityRules(device_blacklist=("device-bad",), ip_cities=("上海",), **rules),
        ),
    ).activity_id


def grant(context, activity_id: str, user_id: int = USER, request: RequestContext = SHANGHAI) -> IssueResult:  # type: ignore[no-untyped-def]
    return issue(context, IssueCommand(key("grant"), user_id, ActivitySpec(activity_id), request))


def points(context, user_id: int) -> int:  # type: ignore[no-untyped-def]
    return next(b.available for b in get_wallet(context, user_id).balances if b.asset == "POINTS")


def test_the_bundle_and_its_rules(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    c10 = template(context, CouponType.NO_THRESHOLD, amount_off=1000, per_user_limit=1, total_stock=100)
    activity_id = new_user_activity(context, c10)
    for request, rule in (
        (RequestContext(ip_city="北京", device_id="device-ok"), "ip_cities"),
        (RequestContext(ip_city="上海", device_id="device-bad"), "device_blacklist"),
        (RequestContext(ip_city="上海"), "device_blacklist"),
    ):
        with pytest.raises(CofferError) as refused:
            grant(context, activity_id, request=request)
        assert refused.value.reason is Reason.ACTIVITY_NOT_ELIGIBLE
        assert refused.value.metadata["rule"] == rule
    granted = grant(context, activity_id)
    assert len(granted.coupons) == 2 and {c.template_id for c in granted.coupons} == {c10}
    assert points(context, USER) == 100
    with pytest.raises(CofferError) as again:
        grant(context, activity_id)
    assert again.value.reason is Reason.ACTIVITY_ALREADY_GRANTED
    # Bundle coupons do not count against the template's per-user claim limit.
    assert claim(context, USER, c10).coupons
    with pytest.raises(CofferError) as unknown:
        grant(context, "act_0000000000000000000000")
    assert unknown.value.reason is Reason.ACTIVITY_NOT_FOUND
    assert audit(context).ok


def test_a_bundle_is_all_or_nothing(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    scarce = template(context, CouponType.NO_THRESHOLD, amount_off=1000, total_stock=1)
    activity_id = new_user_activity(context, scarce)
    with pytest.raises(CofferError) as refused:
        grant(context, activity_id)
    assert refused.value.reason is Reason.STOCK_EXHAUSTED
    wallet = get_wallet(context, USER)
    assert wallet.coupons == () and points(context, USER) == 0
    assert audit(context).ok


def test_twenty_concurrent_grants_give_one_bundle(pg_context) -> None:  # type: ignore[no-untyped-def]
    context = pg_context
    c10 = template(context, CouponType.NO_THRESHOLD, amount_off=1000, total_stock=1000)
    activity_id = new_user_activity(context, c10)
    barrier = threading.Barrier(20)

    def attempt(_index: int) -> IssueResult | CofferError:
        barrier.wait()
        try:
            return grant(context, activity_id)
        except CofferError as error:
            return error

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    granted = [result for result in results if isinstance(result, IssueResult)]
    refused = [result for result in results if isinstance(result, CofferError)]
    assert len(granted) == 1
    assert {error.reason for error in refused} == {Reason.ACTIVITY_ALREADY_GRANTED}
    wallet = get_wallet(context, USER)
    assert len(wallet.coupons) == 2
    assert points(context, USER) == 100
    assert len(wallet.points_lots) == 1
    assert audit(context).ok
