"""Issue 4 must-show 4: QuoteCharge picks the best coupon combination on tabled carts and explains
every rejected coupon — without any effect (service layer on both databases, and over gRPC)."""

from __future__ import annotations

from coffer.v1 import common_pb2, engine_pb2
from engine.domain.commands import ChargeCommand, LineItem
from engine.domain.coupons.messages import FreezeCouponCommand
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.coupon_admin import set_coupon_frozen
from engine.service.queries import get_wallet, list_transactions
from engine.service.quote import quote_charge
from tests.support.coupons import claim_one, key, template, top_up

USER = 3001


def wallet_of_coupons(context):  # type: ignore[no-untyped-def]
    """A wallet with a mix of coupons; returns name -> coupon id."""
    made = {
        "man100": template(context, CouponType.FIXED_OFF, amount_off=2000, min_spend=10000),
        "man200": template(context, CouponType.FIXED_OFF, amount_off=5000, min_spend=20000),
        "pct10": template(context, CouponType.PERCENT_OFF, discount_bps=1000, max_discount=3000),
        "s5": template(context, CouponType.NO_THRESHOLD, amount_off=500, stackable=True),
        "s8": template(context, CouponType.NO_THRESHOLD, amount_off=800, stackable=True),
        "veg15": template(
            context,
            CouponType.FIXED_OFF,
            amount_off=1500,
            min_spend=5000,
            stackable=True,
            scope=CouponScope(categories=("veg",)),
        ),
        "m2only": template(
            context, CouponType.NO_THRESHOLD, amount_off=9000, scope=CouponScope(merchants=("m-2",))
        ),
    }
    return {name: claim_one(context, USER, tid) for name, tid in made.items()}


def cart(
    amount: int, lines: tuple[tuple[str, int], ...] = (), coupons: tuple[str, ...] = ()
) -> ChargeCommand:
    items = tuple(
        LineItem(f"sku{index}", category, price, 1) for index, (category, price) in enumerate(lines)
    )
    return ChargeCommand("", USER, key("order"), "m-1", "", amount, items=items, coupon_ids=coupons)


TABLE = [
    # (amount, lines, best, discount)
    (4000, (), ("s8", "s5"), 1300),
    (10000, (), ("veg15", "s8", "s5"), 2800),
    (25000, (), ("man200",), 5000),
    (25000, (("beer", 25000),), ("man200",), 5000),
    (12000, (("veg", 6000), ("beer", 6000)), ("veg15", "s8", "s5"), 2800),
    (300, (), ("s5",), 300),
]


def test_best_combination_on_tabled_carts(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    coupons = wallet_of_coupons(context)
    names = {coupon_id: name for name, coupon_id in coupons.items()}
    before = get_wallet(context, USER)
    for amount, lines, best, discount in TABLE:
        quote = quote_charge(context, cart(amount, lines))
        assert tuple(names[coupon_id] for coupon_id in quote.best_coupon_ids) == best, (amount, lines)
        assert quote.best_breakdown.discount == discount
        assert quote.best_breakdown.cash_amount == amount - discount
        # The request as given names no coupon: its breakdown is all cash.
        assert quote.error_reason == ""
        assert quote.breakdown is not None and quote.breakdown.cash_amount == amount
        rejected = {names[item.coupon_id]: item.reason for item in quote.rejected}
        assert set(rejected) == set(coupons) - set(best)
        assert rejected["m2only"] == "COUPON_NOT_APPLICABLE"
        assert all(reason for reason in rejected.values())
    # No effect: same wallet, no transaction beyond the setup.
    assert get_wallet(context, USER) == before
    assert len(list_transactions(context, USER, 50, "").transactions) == 1 + len(coupons)


def test_quote_explains_the_request_as_given(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 5_000)
    coupons = wallet_of_coupons(context)
    as_given = quote_charge(context, cart(10000, coupons=(coupons["man100"],)))
    # 100 - 20 = 80 of cash is more than the 50 the wallet holds: Charge would refuse it.
    assert as_given.error_reason == "INSUFFICIENT_FUNDS"
    assert as_given.breakdown is None
    fits = quote_charge(context, cart(6000, coupons=(coupons["s5"], coupons["s8"])))
    assert fits.error_reason == "" and fits.breakdown is not None
    assert fits.breakdown.discount == 1300 and fits.breakdown.cash_amount == 4700
    lonely = quote_charge(context, cart(30000, coupons=(coupons["man200"], coupons["s5"])))
    assert lonely.error_reason == "COUPONS_NOT_STACKABLE"
    set_coupon_frozen(context, FreezeCouponCommand(key("fz"), coupons["man200"], True, "risk"))
    frozen = quote_charge(context, cart(30000, coupons=(coupons["man200"],)))
    assert frozen.error_reason == "COUPON_FROZEN"
    assert {item.coupon_id: item.reason for item in frozen.rejected}[coupons["man200"]] == "COUPON_FROZEN"
    # The quote's best choice is what a Charge with those coupons takes.
    best = quote_charge(context, cart(4000))
    top_up(context, USER, 10_000)
    charged = charge(
        context,
        ChargeCommand(key("ch"), USER, key("order"), "m-1", "", 4000, coupon_ids=best.best_coupon_ids),
    )
    assert charged.breakdown.discount == best.best_breakdown.discount
    assert audit(context).ok


def test_quote_over_grpc(grpc_engine) -> None:  # type: ignore[no-untyped-def]
    context = grpc_engine.context
    top_up(context, USER, 100_000)
    coupons = wallet_of_coupons(context)
    response = grpc_engine.engine.QuoteCharge(
        engine_pb2.ChargeRequest(
            user_id=USER,
            order_id="o-quote",
            merchant_id="m-1",
            amount=25000,
            items=[common_pb2.LineItem(sku="a", category="beer", unit_price=25000, quantity=1)],
            coupon_ids=[coupons["veg15"]],
        ),
        timeout=10,
    )
    assert response.error_reason == "COUPON_NOT_APPLICABLE"
    assert list(response.best_coupon_ids) == [coupons["man200"]]
    assert response.best_breakdown.discount == 5000
    reasons = {item.coupon_id: item.reason for item in response.rejected}
    assert reasons[coupons["veg15"]] == "COUPON_NOT_APPLICABLE"
    assert reasons[coupons["man100"]] == "COUPONS_NOT_STACKABLE"
