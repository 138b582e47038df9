"""Stock stranded on another physical database, and the rebalance that moves it (docs/coupons.md)."""

from __future__ import annotations

import pytest

from engine.domain.coupons.rules import CouponType
from engine.domain.errors import CofferError, Reason
from engine.service.audit import audit
from engine.service.coupon_stock import move_stock, stock_report
from tests.support.coupons import claim, template


def test_stranded_stock_is_moved_once(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    # 4 units over 128 virtual shards: virtual shards 0..3 hold one each; 0 and 2 live on
    # physical shard 0, 1 and 3 on physical shard 1.
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=100, total_stock=4, per_user_limit=1)
    assert [(line.allotted, line.remaining) for line in stock_report(context, tid)] == [(2, 2), (2, 2)]
    even_users = [2, 4, 6]  # all on physical shard 0
    claim(context, even_users[0], tid)
    claim(context, even_users[1], tid)
    with pytest.raises(CofferError) as stranded:
        claim(context, even_users[2], tid)
    assert stranded.value.reason is Reason.STOCK_EXHAUSTED

    assert move_stock(context, tid, from_shard=1, to_shard=0, units=1, transfer_id="T1") == 1
    assert move_stock(context, tid, from_shard=1, to_shard=0, units=1, transfer_id="T1") == 0
    assert claim(context, even_users[2], tid).coupons
    report = stock_report(context, tid)
    assert [(line.allotted, line.remaining, line.issued) for line in report] == [(3, 0, 3), (1, 1, 0)]
    assert sum(line.allotted for line in report) == 4
    with pytest.raises(CofferError) as too_many:
        move_stock(context, tid, from_shard=1, to_shard=0, units=2, transfer_id="T2")
    assert too_many.value.reason is Reason.STOCK_EXHAUSTED
    assert audit(context).ok
