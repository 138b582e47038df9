"""Issue 4 must-show 1: a flash claim never over-issues (real PostgreSQL, 2 shards, real threads).

A template with stock 500 and a limit of 1 per user; 2,000 users claim at once, plus 200
duplicate attempts by the same users (100 retries under the original key, 100 under a new key).
Exactly 500 coupons exist afterwards, no user holds two, and issued + remaining = 500.
"""

from __future__ import annotations

import collections
import random
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from engine.domain.coupons.rules import CouponType
from engine.domain.errors import CofferError, Reason
from engine.domain.results import IssueResult
from engine.service.audit import audit
from engine.storage.schema import coupon_claims, coupon_stock, user_coupons
from tests.support.coupons import claim, template
from tests.support.engines import make_context

USERS = 2_000
STOCK = 500
WORKERS = 48
CONTENTION_RETRIES = 5


def _claim(context, user_id: int, template_id: str, key: str) -> IssueResult | CofferError:  # type: ignore[no-untyped-def]
    for _attempt in range(CONTENTION_RETRIES):
        try:
            return claim(context, user_id, template_id, key)
        except CofferError as error:
            if error.reason not in (Reason.CONTENTION, Reason.IDEMPOTENCY_KEY_IN_USE):
                return error
            time.sleep(0.01)
    return CofferError(Reason.CONTENTION, "gave up")


def test_flash_claim_issues_exactly_the_stock(pg_shard_urls: list[str]) -> None:
    context = make_context(pg_shard_urls, pool_size=32)
    try:
        template_id = template(
            context, CouponType.NO_THRESHOLD, amount_off=500, total_stock=STOCK, per_user_limit=1
        )
        users = list(range(1, USERS + 1))
        attempts = [(user, f"flash-{user}") for user in users]
        attempts += [(user, f"flash-{user}") for user in random.sample(users, 100)]
        attempts += [(user, f"flash-again-{user}") for user in random.sample(users, 100)]
        random.shuffle(attempts)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            outcomes = list(
                pool.map(
                    lambda attempt: (attempt, _claim(context, attempt[0], template_id, attempt[1])), attempts
                )
            )
        elapsed = time.monotonic() - started

        fresh = [
            result for _attempt, result in outcomes if isinstance(result, IssueResult) and not result.replayed
        ]
        replays = [
            result for _attempt, result in outcomes if isinstance(result, IssueResult) and result.replayed
        ]
        refusals = collections.Counter(
            result.reason.label for _attempt, result in outcomes if isinstance(result, CofferError)
        )
        print(
            f"\nflash claim: {len(attempts)} attempts in {elapsed:.1f}s "
            f"({len(attempts) / elapsed:.0f}/s): {len(fresh)} issued, {len(replays)} replays, "
            f"refused {dict(refusals)}"
        )
        assert len(fresh) == STOCK
        assert set(refusals) <= {"STOCK_EXHAUSTED", "CLAIM_LIMIT_REACHED"}
        issued_ids = {result.coupons[0].coupon_id for result in fresh}
        assert len(issued_ids) == STOCK
        # A replay answers with the original coupon, never a second one.
        assert {result.coupons[0].coupon_id for result in replays} <= issued_ids

        coupons = allotted = remaining = 0
        holders: collections.Counter[int] = collections.Counter()
        for shard in context.router.shards:
            with shard.engine.connect() as connection:
                rows = connection.execute(
                    select(user_coupons.c.user_id).where(user_coupons.c.template_id == template_id)
                ).scalars()
                holders.update(rows)
                totals = connection.execute(
                    select(func.sum(coupon_stock.c.allotment), func.sum(coupon_stock.c.remaining)).where(
                        coupon_stock.c.template_id == template_id
                    )
                ).one()
                allotted += int(totals[0])
                remaining += int(totals[1])
                over = connection.execute(
                    select(func.count()).where(
                        coupon_claims.c.template_id == template_id, coupon_claims.c.claimed > 1
                    )
                ).scalar_one()
                assert over == 0
        coupons = sum(holders.values())
        assert coupons == STOCK
        assert max(holders.values()) == 1, "a user holds two coupons"
        assert allotted == STOCK
        assert coupons + remaining == STOCK
        assert remaining == 0
        report = audit(context)
        assert report.ok, report
    finally:
        context.router.dispose()
